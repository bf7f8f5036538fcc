"""The training sample stream: megatron-core's GPT sample order over the base corpus + the overlay.

**Sample order.** Sample ``i`` of a run is sample ``i`` of the ``GPTDataset`` that megatron-core
builds over the base ``IndexedDataset`` with the run's sequence length, sample count and seed
(``random_seed`` = the run's seed, whole corpus as the train split, one extra token per sample).
It is megatron-core's own code that builds it (``GPTDataset`` with its ``_build_document_index``,
C++ ``build_sample_idx`` and shuffle index from one ``numpy.random.RandomState``), so stock
Megatron-LM trained with ``--data-path <tokenize>/base --split 100,0,0 --seq-length L --seed S
--train-samples N`` reads the same samples in the same order. Samples are consumed in order:
sample ``i`` belongs to optimizer step ``i // global_batch_sequences``.

**Overlay.** A perturbed run adds its occurrences at read time; the base ``.bin`` is never
rewritten, so the standard twin reads the same base with no overlay. An occurrence of an item
with ``n`` tokens in sample ``i`` at ``token_offset`` ``p`` writes ``EOD, item tokens, EOD`` over
positions ``p-1 … p+n`` of that sample's ``seq_length + 1`` tokens, so the item starts at a
document boundary and ends with EOD. ``p`` is chosen once, at tokenize time, by
``place_occurrence``: a position right after a natural EOD of the base sample where the item fits,
or, when there is none, any position (the EOD written at ``p-1`` then ends the natural document
early). Positions 0 and ``seq_length`` are never written: in megatron's sample index they are the
tokens a sample shares with its neighbours in corpus order (Hubble's overlay leaked one token into
the neighbour through them), so a materialized copy (``materialize``) equals the overlay exactly.

**Run folder.** ``prepare_run_dir`` writes, and ``open_training_samples`` reads::

    <run_dir>/run.json        RunInfo: run name, perturbed flag, base dataset prefix, tokenizer
                              info, manifest folder, sample-order config and its hash, digest of
                              megatron's index arrays
    <run_dir>/index_cache/    megatron-core's document/sample/shuffle index .npy files (built once
                              by prepare_run_dir, loaded by every reader, never rebuilt by one)

The trainer may put its own sub-folders (checkpoints, logs) beside these.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taggant.pipeline import io, manifest, stage
from taggant.pipeline.errors import DataError
from taggant.pipeline.occurrence import max_item_tokens
from taggant.pipeline.perturb import plan, rng
from taggant.pipeline.spec import ExperimentSpec, RunId, RunsSpec
from taggant.pipeline.tokenize import TokenizeFolder, TokenizerInfo, tokenize_items

OVERLAY_VERSION = "overlay.v1"
RUN_VERSION = "run.v1"
RUN_FILE = "run.json"
INDEX_CACHE = "index_cache"
ORDER_SPLIT = "100,0,0"
"""The whole base corpus is the train split (Megatron-LM: ``--split 100,0,0``)."""


# --- sample order ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleOrder:
    """Everything that fixes a run's sample order over a given base dataset.

    Attributes:
        seq_length: tokens per training sample (each read gives ``seq_length + 1``).
        num_samples: samples the run consumes (whole global batches).
        seed: megatron's ``random_seed``: the run's seed.
        global_batch_sequences: samples per optimizer step (``step = sample_index // this``).
        hash: ``pipeline.perturb.plan.sample_order_hash`` of these: what manifests record.
    """

    seq_length: int
    num_samples: int
    seed: int
    global_batch_sequences: int
    hash: str

    @classmethod
    def of_run(cls, runs: RunsSpec, train_tokens: int, seed: int) -> SampleOrder:
        return cls(
            runs.seq_length_tokens,
            runs.num_samples(train_tokens),
            seed,
            runs.global_batch_sequences,
            plan.sample_order_hash(runs, train_tokens, seed),
        )


@dataclass(frozen=True)
class _OrderTokenizer:
    """The tokenizer fields ``GPTDatasetConfig`` reads; they never change the sample order."""

    vocab_size: int
    eod: int
    pad: int

    @property
    def unique_identifiers(self) -> dict[str, Any]:
        return {"class": "taggant", "vocab_size": self.vocab_size, "eod": self.eod}


class SampleStream:
    """Base samples in megatron-core's GPT sample order, with no overlay.

    Args:
        prefix: Megatron dataset prefix of the base corpus (``<prefix>.bin``/``.idx``, local).
        order: the run's sample-order config.
        info: the tokenizer the base was written with.
        cache_dir: where megatron-core keeps its index ``.npy`` files; built there when missing.
        read_prefix: a byte-identical copy of ``prefix`` to read the tokens from (a node-local
            copy, ``pipeline.train.local_copy``); megatron's index cache stays keyed by
            ``prefix``, so both give the same samples.
    """

    def __init__(
        self,
        prefix: str,
        order: SampleOrder,
        info: TokenizerInfo,
        cache_dir: str,
        read_prefix: str | None = None,
    ):
        from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
        from megatron.core.datasets.utils import Split

        config = GPTDatasetConfig(
            random_seed=order.seed,
            sequence_length=order.seq_length,
            blend=([prefix], None),
            split=ORDER_SPLIT,
            path_to_cache=cache_dir,
            tokenizer=_OrderTokenizer(info.vocab_size, info.eod_id, info.pad_id),
            reset_position_ids=False,
            reset_attention_mask=False,
            eod_mask_loss=False,
            create_attention_mask=False,
        )
        indexed = GPTDataset.build_low_level_dataset(read_prefix or prefix, config)
        # Exactly the arguments BlendedMegatronDatasetBuilder passes for a single prefix and the
        # split 100,0,0 (all documents, in index order); built directly because the builder
        # synchronizes ranks with barriers whenever torch.distributed is initialized.
        documents = np.arange(len(indexed.sequence_lengths), dtype=np.int32)
        self.dataset = GPTDataset(
            indexed, prefix, documents, order.num_samples, Split.train, config
        )
        self.order = order
        self.eod_id = info.eod_id

    @property
    def num_epochs(self) -> int:
        """Passes over the base corpus the run makes."""
        return len(self.dataset.document_index) // len(self.dataset.indices)

    def sample(self, sample_index: int) -> np.ndarray:
        """Base tokens of one sample: int64, shape ``(seq_length + 1,)``."""
        assert 0 <= sample_index < self.order.num_samples, sample_index
        # What GPTDataset.__getitem__ reads, before it builds masks and tensors.
        tokens, _ = self.dataset._query_document_sample_shuffle_indices(sample_index)
        return tokens

    def token_positions(self, sample_index: int) -> np.ndarray:
        """Where each of the sample's ``seq_length + 1`` tokens lies in the base ``.bin``, as
        int64 token indices (byte offset / token size); ``sample`` reads exactly these."""
        ds = self.dataset
        j = int(ds.shuffle_index[sample_index])
        (first, first_offset), (last, last_offset) = ds.sample_index[j], ds.sample_index[j + 1]
        index = ds.dataset.index
        pieces = []
        for k in range(int(first), int(last) + 1):
            doc = int(ds.document_index[k])
            begin = int(first_offset) if k == first else 0
            end = int(last_offset) + 1 if k == last else int(index.sequence_lengths[doc])
            start = int(index.sequence_pointers[doc]) // index.dtype_size
            pieces.append(start + np.arange(begin, end))
        return np.concatenate(pieces)

    def digest(self) -> str:
        """Hex SHA-256 of megatron's document, sample and shuffle index arrays."""
        h = hashlib.sha256()
        ds = self.dataset
        for array in (ds.document_index, ds.sample_index, ds.shuffle_index):
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()


# --- overlay -----------------------------------------------------------------------------------


def overlay_rng(seed: int, item_id: str, sample_index: int) -> np.random.Generator:
    """The generator of one placement: ``pipeline.perturb.rng`` keyed by the experiment seed, the
    overlay version, the item's set (``item_id`` is ``<set>/<index>``) and ``(item, sample)``."""
    set_name = item_id.rsplit("/", 1)[0]
    return rng.generator(seed, OVERLAY_VERSION, set_name, f"{item_id}@{sample_index}")


def place_occurrence(
    sample: np.ndarray, num_item_tokens: int, eod_id: int, gen: np.random.Generator
) -> int:
    """The ``token_offset`` of an item of ``num_item_tokens`` tokens in base ``sample``.

    Uniform among the natural document boundaries ``p`` (``sample[p-1]`` is EOD) where
    ``EOD + item + EOD`` fits between positions 1 and ``seq_length - 1``; uniform over
    ``[2, seq_length - num_item_tokens - 1]`` when there is none.
    """
    last = len(sample) - 1 - (num_item_tokens + 1)  # highest p with p + n + 1 ≤ seq_length
    assert last >= 2, f"an item of {num_item_tokens} tokens does not fit a sample of {len(sample)}"
    boundaries = np.flatnonzero(sample[:last] == eod_id) + 1
    if boundaries.size:
        return int(gen.choice(boundaries))
    return int(gen.integers(2, last + 1))


def place_run(stream: SampleStream, occurrences: pa.Table, items: pa.Table, seed: int) -> pa.Table:
    """``occurrences`` (one run) with ``token_offset`` fixed by ``place_occurrence`` for the
    tokens each inserts (``manifest.occurrence_tokens``: its item's, or its variant's).

    Raises:
        DataError: when two occurrences share a sample or one lies outside the run.
    """
    samples = occurrences["sample_index"].to_numpy()
    _check_samples(samples, stream.order.num_samples, "occurrences")
    offsets = [
        place_occurrence(
            stream.sample(int(i)),
            len(ids),
            stream.eod_id,
            overlay_rng(seed, item, int(i)),
        )
        for item, i, ids in zip(
            occurrences["item_id"].to_pylist(),
            samples,
            manifest.occurrence_tokens(items, occurrences),
        )
    ]
    column = pa.array(offsets, pa.int32())
    index = occurrences.schema.get_field_index("token_offset")
    return occurrences.set_column(index, "token_offset", column)


def _check_samples(samples: np.ndarray, num_samples: int, what: str) -> None:
    if samples.size and (samples.min() < 0 or samples.max() >= num_samples):
        raise DataError(
            f"{what} reach sample {samples.max()} but the run has {num_samples} "
            "samples; re-run the plan stage with this spec"
        )
    if len(np.unique(samples)) != len(samples):
        raise DataError(f"{what} put two occurrences in one sample; re-run the plan stage")


def complete_manifests(
    spec: ExperimentSpec, folder: TokenizeFolder, manifests_folder: str
) -> dict[str, Any]:
    """Complete every perturbed run's manifest and record every run's sample order.

    For each perturbed run, reads the plan's manifest ``<manifests_folder>/<run>/``, fills the
    items' ``token_ids`` (the tokenizer in ``folder``), builds the run's sample order over
    ``folder.base_prefix``, fixes each occurrence's ``token_offset`` (``place_run``) and writes
    the result to ``folder.manifest(run)``. Writes ``folder.orders``: order hash → ``{order,
    digest, epochs, runs}`` for every run of the grid, which ``prepare_run_dir`` checks.

    Returns:
        ``{"items": ..., "occurrences": {run: count}, "orders": ...}`` for the stage stats.

    Raises:
        DataError: when a run has no manifest, an item is too long, or a manifest was planned
            for another sample order or another run.
    """
    info = TokenizerInfo.read(folder)
    tokenizer = folder.load_tokenizer()
    orders: dict[str, dict] = {}
    streams: dict[str, SampleStream] = {}
    counts: dict[str, int] = {}
    num_items = 0
    with tempfile.TemporaryDirectory(prefix="taggant-order-") as cache:
        for run_id in spec.runs.grid():
            order = SampleOrder.of_run(spec.runs, run_id.train_tokens, run_id.seed)
            if order.hash not in streams:
                stream = SampleStream(folder.base_prefix, order, info, cache)
                streams[order.hash] = stream
                orders[order.hash] = {
                    "order": asdict(order),
                    "digest": stream.digest(),
                    "epochs": stream.num_epochs,
                    "runs": [],
                }
            orders[order.hash]["runs"].append(run_id.name)
            if not run_id.perturbed:
                continue
            source = io.join(manifests_folder, run_id.name)
            check_manifest_order(source, order)
            items, occurrences, meta = manifest.read(source)
            if set(occurrences["run"].to_pylist()) - {run_id.name}:
                raise DataError(
                    f"the manifest in {source} holds occurrences of other runs; "
                    "re-run the plan stage"
                )
            items = tokenize_items(tokenizer, items, max_item_tokens(order.seq_length))
            occurrences = place_run(streams[order.hash], occurrences, items, spec.seed)
            manifest.write(
                folder.manifest(run_id.name), items, occurrences, meta["sample_order_hash"]
            )
            counts[run_id.name] = occurrences.num_rows
            num_items = items.num_rows
    io.write_json(folder.orders, orders)
    return {"items": num_items, "occurrences": counts, "orders": len(orders)}


class Overlay:
    """The occurrences of one perturbed run, applied to samples as they are read.

    ``patches[sample_index] = (start, tokens)``: ``tokens`` (int32, ``EOD + item + EOD``)
    overwrite the sample from position ``start = token_offset - 1``. One dict probe per sample.
    """

    def __init__(self, patches: dict[int, tuple[int, np.ndarray]]):
        self.patches = patches

    @classmethod
    def from_manifest(
        cls, items: pa.Table, occurrences: pa.Table, run: str, eod_id: int, order: SampleOrder
    ) -> Overlay:
        """The overlay of ``run`` from a completed manifest.

        Raises:
            DataError: when an occurrence has no fixed offset, an unknown item, or does not fit.
        """
        mine = occurrences.filter(pc.equal(occurrences["run"], run))
        samples = mine["sample_index"].to_numpy()
        _check_samples(samples, order.num_samples, f"occurrences of {run}")
        patches = {}
        offsets = mine["token_offset"].to_pylist()
        tokens = manifest.occurrence_tokens(items, mine)
        for item, sample, offset, ids in zip(mine["item_id"].to_pylist(), samples, offsets, tokens):
            if not ids or offset < 1 or offset + len(ids) + 1 > order.seq_length:
                raise DataError(
                    f"occurrence of {item!r} in sample {sample} of {run} has token_offset {offset} "
                    f"and {len(ids or [])} item tokens; use the manifest the tokenize stage "
                    "completed (<tokenize>/manifests/<run>), not the plan's"
                )
            patches[int(sample)] = (offset - 1, np.array([eod_id, *ids, eod_id], dtype=np.int32))
        return cls(patches)

    def apply(self, sample_index: int, tokens: np.ndarray) -> None:
        """Write the occurrence of ``sample_index`` (if any) into ``tokens`` in place."""
        patch = self.patches.get(sample_index)
        if patch is not None:
            start, ids = patch
            tokens[start : start + len(ids)] = ids


# --- the run folder ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """The content of ``<run_dir>/run.json``.

    Attributes:
        run: run name (``RunId.name``).
        perturbed: whether the overlay applies.
        manifest_run: the perturbed run whose manifest holds the items (a twin names its
            sibling: their manifest must agree on the sample order too).
        data_prefix: Megatron prefix of the base dataset.
        tokenizer_json: the tokenizer file.
        tokenizer: ``TokenizerInfo`` as a dict.
        manifest: folder of the completed manifest of ``manifest_run``.
        runs: the spec's ``runs`` section; with ``train_tokens`` it re-derives ``order``.
        train_tokens: the run's token budget.
        order: ``SampleOrder`` as a dict (its ``hash`` included).
        order_digest: ``SampleStream.digest()`` at tokenize time.
        experiment_seed: the spec's seed.
    """

    run: str
    perturbed: bool
    manifest_run: str
    data_prefix: str
    tokenizer_json: str
    tokenizer: dict[str, Any]
    manifest: str
    runs: dict[str, Any]
    train_tokens: int
    order: dict[str, Any]
    order_digest: str
    experiment_seed: int
    version: str = RUN_VERSION

    @classmethod
    def read(cls, run_dir: str) -> RunInfo:
        path = io.join(run_dir, RUN_FILE)
        if not io.exists(path):
            raise DataError(f"{run_dir} has no {RUN_FILE}; call prepare_run_dir first")
        return cls(**io.read_json(path))


def prepare_run_dir(
    run_dir: str,
    spec: ExperimentSpec,
    run_id: RunId,
    tokenize_folder: str,
    manifest_folder: str | None = None,
) -> RunInfo:
    """Write ``run.json`` and megatron's index cache for one run (perturbed or twin).

    Idempotent; call it once before any reader opens the run (it builds the index cache that
    readers only load). ``manifest_folder`` defaults to the completed manifest of the run (of
    its perturbed sibling for a twin) in the tokenize folder.

    Raises:
        DataError: when the tokenize stage is unfinished, the manifest was planned for another
            sample order, or megatron-core now builds a different order than at tokenize time.
    """
    folder = TokenizeFolder(tokenize_folder)
    if not stage.is_done(tokenize_folder):
        raise DataError(f"{tokenize_folder} is not a finished tokenize stage; run that stage first")
    manifest_run = run_id.model_copy(update={"perturbed": True}).name
    manifest_folder = manifest_folder or folder.manifest(manifest_run)
    order = SampleOrder.of_run(spec.runs, run_id.train_tokens, run_id.seed)
    check_manifest_order(manifest_folder, order)
    recorded = io.read_json(folder.orders).get(order.hash)
    if recorded is None:
        raise DataError(
            f"{tokenize_folder} built no sample order for {run_id.name}; the spec "
            "changed since tokenize: re-run the stage"
        )
    info = TokenizerInfo.read(folder)
    run_info = RunInfo(
        run=run_id.name,
        perturbed=run_id.perturbed,
        manifest_run=manifest_run,
        data_prefix=folder.base_prefix,
        tokenizer_json=folder.tokenizer_json,
        tokenizer=info.to_dict(),
        manifest=manifest_folder,
        runs=spec.runs.model_dump(mode="json"),
        train_tokens=run_id.train_tokens,
        order=asdict(order),
        order_digest=recorded["digest"],
        experiment_seed=spec.seed,
    )
    run_file = io.join(run_dir, RUN_FILE)
    cache = os.path.join(run_dir, INDEX_CACHE)
    if io.exists(run_file) and os.path.isdir(cache) and RunInfo.read(run_dir) == run_info:
        return run_info
    os.makedirs(run_dir, exist_ok=True)
    # megatron writes its .npy files in place: build them aside, check, then rename into place.
    tmp = tempfile.mkdtemp(prefix=".index_cache-", dir=run_dir)
    digest = SampleStream(folder.base_prefix, order, info, tmp).digest()
    if digest != recorded["digest"]:
        shutil.rmtree(tmp)
        raise DataError(
            f"megatron-core builds a different sample order for {run_id.name} than at "
            "tokenize time (was megatron-core upgraded?); re-run the tokenize stage"
        )
    shutil.rmtree(cache, ignore_errors=True)
    os.replace(tmp, cache)
    io.write_json(run_file, asdict(run_info))
    return run_info


def check_manifest_order(manifest_folder: str, order: SampleOrder) -> None:
    """Refuse a missing manifest or one planned for another sample order.

    Raises:
        DataError: naming both hashes and the fix.
    """
    meta = io.join(manifest_folder, "manifest.json")
    if not io.exists(meta):
        raise DataError(
            f"{manifest_folder} holds no manifest; run the plan and tokenize stages with this spec"
        )
    planned = io.read_json(meta)["sample_order_hash"]
    if planned != order.hash:
        raise DataError(
            f"the manifest in {manifest_folder} was planned for sample order {planned[:12]} but "
            f"this run reads order {order.hash[:12]} ({asdict(order)}); re-run plan and tokenize "
            "with this spec"
        )


# --- what the trainer consumes -----------------------------------------------------------------


class TrainingSamples:
    """The token sequences a run trains on, in training order.

    Sample ``i`` (``0 ≤ i < len(self)``) is consumed at optimizer step
    ``i // global_batch_sequences``. A row holds ``seq_length + 1`` tokens: the model's input is
    ``row[:-1]`` and its labels are ``row[1:]``.

    Attributes:
        run: run name. perturbed: whether the overlay applies.
        seq_length, global_batch_sequences: the run's batch shape.
        eod_id, pad_id, vocab_size: from the tokenizer (``pad_id`` -1 when it has none).
        overlay: the occurrences applied (empty for a standard twin).
    """

    def __init__(self, info: RunInfo, stream: SampleStream, overlay: Overlay):
        self.info = info
        self.run = info.run
        self.perturbed = info.perturbed
        self.seq_length = stream.order.seq_length
        self.global_batch_sequences = stream.order.global_batch_sequences
        self.eod_id = info.tokenizer["eod_id"]
        self.pad_id = info.tokenizer["pad_id"]
        self.vocab_size = info.tokenizer["vocab_size"]
        self.stream = stream
        self.overlay = overlay

    def __len__(self) -> int:
        return self.stream.order.num_samples

    @property
    def num_steps(self) -> int:
        return len(self) // self.global_batch_sequences

    def step_of(self, sample_index: int) -> int:
        """The optimizer step that consumes sample ``sample_index``."""
        return sample_index // self.global_batch_sequences

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start … stop-1``: int32 array of shape ``(stop - start, seq_length + 1)``.

        Deterministic: equal run folders give equal arrays, in any process, in any order of calls.
        """
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"samples [{start}, {stop}) outside [0, {len(self)})")
        out = np.empty((stop - start, self.seq_length + 1), dtype=np.int32)
        for row, i in enumerate(range(start, stop)):
            out[row] = self.stream.sample(i)
            self.overlay.apply(i, out[row])
        return out


def open_training_samples(run_dir: str, local_copy_dir: str | None = None) -> TrainingSamples:
    """The samples of the run prepared in ``run_dir``: what the trainer, the audit and tests read.

    Checks the sample-order hash of ``run.json`` against its recorded config and against the
    manifest before anything is read (the twin checks its perturbed sibling's manifest too).
    With ``local_copy_dir`` (``runs.local_copy_dir``) the tokens are read from a copy of the base
    dataset there, made once per node (``pipeline.train.local_copy``); the samples are the same.

    Raises:
        DataError: when ``run_dir`` is not prepared or any hash disagrees, or the local copy
            cannot be made.
    """
    info = RunInfo.read(run_dir)
    runs = RunsSpec.model_validate(info.runs)
    order = SampleOrder.of_run(runs, info.train_tokens, info.order["seed"])
    if asdict(order) != info.order:
        raise DataError(
            f"{run_dir}/{RUN_FILE} was edited: its order {info.order} is not the one "
            f"its runs section gives ({asdict(order)}); call prepare_run_dir again"
        )
    check_manifest_order(info.manifest, order)
    cache = os.path.join(run_dir, INDEX_CACHE)
    if not os.path.isdir(cache):
        raise DataError(f"{run_dir} has no {INDEX_CACHE}/; call prepare_run_dir again")
    tokenizer = TokenizerInfo(**info.tokenizer)
    read_prefix = None
    if local_copy_dir is not None:
        from taggant.pipeline.train.local_copy import copy_dataset

        read_prefix = copy_dataset(info.data_prefix, local_copy_dir).prefix
    stream = SampleStream(info.data_prefix, order, tokenizer, cache, read_prefix)
    overlay = Overlay({})
    if info.perturbed:
        items, occurrences, _ = manifest.read(info.manifest)
        overlay = Overlay.from_manifest(
            items, occurrences, info.manifest_run, tokenizer.eod_id, order
        )
    return TrainingSamples(info, stream, overlay)


# --- materialize -------------------------------------------------------------------------------


def materialize(run_dir: str, out_folder: str) -> dict[str, Any]:
    """Write a self-contained copy of the run's data for stock Megatron-LM.

    ``<out>/<run>.bin/.idx`` is the base dataset with each occurrence written into the bytes of
    its sample (the ``.idx`` is unchanged, so megatron-core builds the same sample order over
    it); ``document_index.npy``, ``sample_index.npy`` and ``shuffle_index.npy`` are megatron's
    order arrays for checking; ``materialize.json`` holds the run info and the Megatron-LM
    arguments that read the samples in the order the manifest was planned for. Training on it
    reads exactly ``open_training_samples(run_dir)``: occurrences never touch the tokens a sample
    shares with its neighbours.

    Raises:
        DataError: when the run reads the base more than once (each rewritten token would then
            also appear in another epoch's sample); use taggant's driver, which overlays at read
            time, or a larger corpus.
    """
    samples = open_training_samples(run_dir)
    stream = samples.stream
    if stream.num_epochs != 1:
        raise DataError(
            f"{samples.run} reads the base corpus {stream.num_epochs} times; a rewritten copy "
            "would repeat each occurrence in every epoch. Train with taggant's driver (read-time "
            "overlay) or tokenize a corpus with more tokens than the run's budget"
        )
    os.makedirs(out_folder, exist_ok=True)
    prefix = os.path.join(out_folder, samples.run)
    shutil.copyfile(samples.info.data_prefix + ".idx", prefix + ".idx")
    tmp_bin = f"{prefix}.bin.tmp-{os.getpid()}"
    shutil.copyfile(samples.info.data_prefix + ".bin", tmp_bin)
    dtype = np.dtype(samples.info.tokenizer["dtype"])
    tokens = np.memmap(tmp_bin, dtype=dtype, mode="r+")
    for sample_index, (start, ids) in sorted(samples.overlay.patches.items()):
        positions = stream.token_positions(sample_index)
        # A patch starting at 0 only rewrites an EOD that is already there; assert it stays so.
        assert start > 0 or tokens[positions[0]] == ids[0], sample_index
        tokens[positions[start : start + len(ids)]] = ids.astype(dtype)
    tokens.flush()
    del tokens
    os.replace(tmp_bin, prefix + ".bin")
    for name in ("document_index", "sample_index", "shuffle_index"):
        array = np.asarray(getattr(stream.dataset, name))
        np.save(os.path.join(out_folder, f"{name}.npy"), array)
    order = stream.order
    description = {
        "run": asdict(samples.info),
        "data_prefix": prefix,
        "occurrences": len(samples.overlay.patches),
        "megatron_lm_args": [
            "--data-path",
            prefix,
            "--split",
            ORDER_SPLIT,
            "--seq-length",
            str(order.seq_length),
            "--seed",
            str(order.seed),
            "--train-samples",
            str(order.num_samples),
            "--global-batch-size",
            str(order.global_batch_sequences),
        ],
    }
    io.write_json(os.path.join(out_folder, "materialize.json"), description)
    return description
