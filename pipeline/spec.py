"""The experiment spec: one strict, frozen, documented tree loaded from YAML.

Shape and types are checked by pydantic (``extra="forbid"``, every model frozen); cross-field rules
(unique names, insertions that fit their phase windows) are checked after, in ``_check_cross_fields``.
Every problem becomes a ``(field.path, message-with-fix)`` pair of one ``ConfigError``, so a user sees
all of them at once and before any Ray or GPU work starts.

Units live in names: ``_tokens``, ``_frac``, ``_bytes``, ``_steps``, ``_sequences``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from taggant.pipeline.errors import ConfigError
from taggant.pipeline.models import MODEL_PRESETS
from taggant.pipeline.perturb.registry import PERTURBATION_KINDS, SPEC_CLASSES, PerturbationSpec
from taggant.pipeline.perturb.setspec import PerturbationSet
from taggant.pipeline.spec_model import NAME_PATTERN
from taggant.pipeline.spec_model import SpecModel as _Spec

PROBE_NAMES = (
    "loss",
    "zlib_ratio",
    "min_k",
    "min_k_plus_plus",
    "exact_match",
    "longest_prefix",
    "suffix_logprob",
    "extraction_strength",
    "probabilistic_extraction",
    "exposure",
    "ghost_last_k",
    "watermark",
    "testset_accuracy",
    "testset_formats",
    "generation",
    "biography_choice",
    "biography_generation",
)


class CorpusSpec(_Spec):
    """Where the raw text comes from and how to read it."""

    paths: list[str] = Field(min_length=1)
    """fsspec URLs or globs of JSONL (``.jsonl``, ``.jsonl.zst``, ``.jsonl.gz``) or Parquet files;
    relative paths are taken from the current directory."""
    format: Literal["auto", "jsonl", "parquet"] = "auto"
    """File format; ``auto`` decides by extension."""
    text_field: str = "text"
    """Record field holding the document text."""
    id_field: str = "id"
    """Record field holding the document id; a missing id becomes ``<relative path>:<line>``."""
    max_doc_bytes: int = Field(default=1_000_000, gt=0)
    """Records whose UTF-8 text is longer go to the quarantine with reason ``too_large``."""
    max_shard_docs: int = Field(default=50_000, gt=0)
    """Most documents in one output shard; a bigger input file is split into several shards."""


class DedupSpec(_Spec):
    """Exact and MinHash-LSH near-duplicate removal; each cluster keeps its first document in corpus
    order (its lowest ``doc_index``: shards in name order, rows in order), whatever its ``id``."""

    exact: bool = True
    """Remove documents whose normalized text hashes equal (xxh3-128)."""
    near: bool = True
    """Remove near-duplicates found by MinHash-LSH."""
    threshold: float = Field(default=0.8, gt=0.0, lt=1.0)
    """Jaccard similarity of word n-gram sets at and above which two documents are duplicates."""
    num_perm: int = Field(default=128, ge=16, le=1024)
    """MinHash permutations per document."""
    ngram_words: int = Field(default=5, ge=1, le=32)
    """Words per shingle."""
    bands: int | None = Field(default=None, ge=1)
    """LSH bands; ``None`` chooses bands and rows from ``threshold`` (set both or neither)."""
    rows: int | None = Field(default=None, ge=1)
    """Rows per LSH band; ``None`` chooses them from ``threshold`` (set both or neither)."""
    verify: bool = True
    """Check each LSH candidate pair against the threshold before merging it into a cluster."""
    verify_error: float = Field(default=1e-6, ge=0.0, lt=0.5)
    """Largest chance, for any one pair, that its MinHash signatures decide it wrongly: pairs they
    settle at this error skip the exact Jaccard; ``0`` computes it for every candidate."""

    @model_validator(mode="after")
    def _bands_and_rows(self) -> DedupSpec:
        if (self.bands is None) != (self.rows is None):
            raise ValueError(
                "set both `bands` and `rows`, or neither to derive them from `threshold`"
            )
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"bands × rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}; "
                "lower bands or rows, or raise num_perm"
            )
        return self


_SET_ADAPTER: TypeAdapter = TypeAdapter(PerturbationSpec)


class TokenizerSpec(_Spec):
    """The tokenizer: a byte-level BPE trained on the corpus, or a ``tokenizer.json`` from a path."""

    kind: Literal["bpe", "file"] = "bpe"
    """``bpe`` trains one on the deduplicated corpus; ``file`` loads ``path``."""
    vocab_size: int = Field(default=4096, ge=256, le=1_000_000)
    """Vocabulary size of a trained BPE (special tokens included)."""
    train_bytes: int = Field(default=8_000_000, gt=0)
    """Corpus bytes a BPE is trained on (the first documents in doc-id order)."""
    path: str | None = None
    """A ``tokenizer.json`` (Hugging Face tokenizers format) when ``kind`` is ``file``."""

    @model_validator(mode="after")
    def _path_for_file(self) -> TokenizerSpec:
        if self.kind == "file" and self.path is None:
            raise ValueError("kind `file` needs `path` to a tokenizer.json")
        if self.kind == "bpe" and self.path is not None:
            raise ValueError("`path` is only read when kind is `file`; remove it or set kind: file")
        return self


class RunsSpec(_Spec):
    """The grid of training runs: every model size × token budget × seed, perturbed and (optionally)
    its standard twin, which reads the same samples with no insertions."""

    init_from_hf: str | None = None
    """Continued pretraining: a local Hugging Face Llama model folder (``config.json``,
    ``*.safetensors``) every run starts from, with its shape instead of a preset's; ``model_sizes``
    then holds one name of your choice for the runs (e.g. ``smollm2-135m``), and the tokenizer
    must be the model's own (``tokenizer: {kind: file, path: <folder>/tokenizer.json}``)."""
    model_sizes: list[str] = Field(min_length=1)
    """Model presets by name (see ``pipeline.models.MODEL_PRESETS``); with ``init_from_hf``, one
    name for the imported model."""
    train_tokens: list[int] = Field(min_length=1)
    """Token budgets; each run trains on ``train_tokens // seq_length_tokens`` samples, rounded down
    to whole global batches."""
    seeds: list[int] = Field(default=[0], min_length=1)
    """Training seeds (model init and sample order)."""
    standard_twin: bool = True
    """Also train each run without perturbations, on the same samples in the same order."""
    seq_length_tokens: int = Field(default=128, ge=8)
    """Tokens per training sample."""
    global_batch_sequences: int = Field(default=8, ge=1)
    """Samples per optimizer step, over all data-parallel ranks."""
    micro_batch_sequences: int = Field(default=4, ge=1)
    """Samples per forward/backward on one rank."""
    lr: float = Field(default=1e-3, gt=0.0)
    """Peak learning rate."""
    min_lr: float = Field(default=1e-4, ge=0.0)
    """Learning rate at the end of the cosine decay."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """Decay after warm-up."""
    warmup_frac: float = Field(default=0.02, ge=0.0, lt=1.0)
    """Fraction of steps with linear warm-up."""
    weight_decay: float = Field(default=0.01, ge=0.0)
    """AdamW weight decay."""
    data_parallel_size: int = Field(default=1, ge=1)
    """Data-parallel ranks per run."""
    tensor_parallel_size: int = Field(default=1, ge=1)
    """Tensor-parallel ranks per model replica."""
    pipeline_parallel_size: int = Field(default=1, ge=1)
    """Pipeline stages per model replica (megatron's 1F1B schedule over a step's microbatches);
    must divide every model size's layer count. A run has data × tensor × pipeline ranks."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` uses CUDA when present."""
    transformer_engine: Literal["auto", "on", "off"] = "off"
    """Transformer Engine's fused layers for training on GPUs (the image installs TE only when
    built with ``--build-arg TRANSFORMER_ENGINE=1``, see cluster/README.md): ``on`` requires it
    (an error without CUDA or TE), ``auto`` uses it when both are present, ``off`` never does.
    Off by default so that one spec trains the same kernels in every image. Probes and exports
    never use TE; its checkpoints load into them (megatron maps the layer-norm keys)."""
    log_interval_steps: int = Field(default=10, ge=1)
    """Steps between progress records (loss, lr, tokens/s, ETA): a console line and a line of
    ``<run_dir>/metrics.jsonl``. Does not change what is trained."""
    tensorboard: bool = False
    """Also write the progress scalars as TensorBoard events in ``<run_dir>/tensorboard/`` (needs
    the ``tensorboard`` extra). The store stays the source of truth; this is for watching."""
    prefetch_steps: int = Field(default=2, ge=0, le=8)
    """Optimizer steps whose samples each rank reads ahead on a background thread while the
    current step computes (pinned host memory on GPUs); 0 reads them at the step's start in the
    training thread. Never changes which samples are read or in what order."""
    local_copy_dir: str | None = None
    """A node-local folder (NVMe, ``/tmp``) the base dataset (``.bin``/``.idx``) is copied into at
    the start of training, once per node, so that ranks read their samples from local disk instead
    of the shared volume; each copy is checked against its source's size and hash. None (the
    default) reads the shared copy. Never changes which samples are read."""

    @field_validator("model_sizes")
    @classmethod
    def _known_presets(cls, sizes: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("init_from_hf"):
            if len(sizes) != 1 or not re.match(NAME_PATTERN, sizes[0]):
                raise ValueError(
                    f"with init_from_hf, give one name for the imported model (got "
                    f"{sizes}), lowercase letters, digits, - and _"
                )
            return sizes
        for size in sizes:
            if size not in MODEL_PRESETS:
                close = difflib.get_close_matches(size, MODEL_PRESETS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(
                    f"unknown model size {size!r}; {hint}known: {', '.join(MODEL_PRESETS)}"
                )
        return sizes

    @field_validator("local_copy_dir")
    @classmethod
    def _absolute_local_copy_dir(cls, folder: str | None) -> str | None:
        if folder is not None and not Path(folder).is_absolute():
            raise ValueError(
                f"{folder!r} is relative: each rank would resolve it in its own working "
                "directory; give an absolute node-local path, e.g. /tmp/taggant-data"
            )
        return folder

    @field_validator("train_tokens")
    @classmethod
    def _positive_budgets(cls, budgets: list[int]) -> list[int]:
        if any(b <= 0 for b in budgets):
            raise ValueError(f"token budgets {budgets} must be positive")
        return budgets

    @model_validator(mode="after")
    def _batch_shape(self) -> RunsSpec:
        per_step = self.micro_batch_sequences * self.data_parallel_size
        if self.global_batch_sequences % per_step:
            raise ValueError(
                f"global_batch_sequences {self.global_batch_sequences} is not a multiple of "
                f"micro_batch_sequences × data_parallel_size = {per_step}; adjust one of them"
            )
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} is above lr {self.lr}")
        for size in self.model_sizes if self.init_from_hf is None else ():
            layers = MODEL_PRESETS[size].num_layers
            if layers % self.pipeline_parallel_size:
                raise ValueError(
                    f"pipeline_parallel_size {self.pipeline_parallel_size} does not divide the "
                    f"{layers} layers of {size}; use a divisor of {layers}"
                )
        return self

    def num_steps(self, train_tokens: int) -> int:
        """Optimizer steps of a run with this token budget."""
        return train_tokens // (self.seq_length_tokens * self.global_batch_sequences)

    def num_samples(self, train_tokens: int) -> int:
        """Training samples of a run with this token budget (whole global batches)."""
        return self.num_steps(train_tokens) * self.global_batch_sequences

    def grid(self) -> list[RunId]:
        """Every run: sizes × budgets × seeds, each perturbed and (if ``standard_twin``) standard."""
        variants = (True, False) if self.standard_twin else (True,)
        return [
            RunId(model_size=m, train_tokens=t, seed=s, perturbed=p)
            for m in self.model_sizes
            for t in self.train_tokens
            for s in self.seeds
            for p in variants
        ]


class RunId(BaseModel):
    """One cell of the run grid."""

    model_config = ConfigDict(frozen=True)

    model_size: str
    train_tokens: int
    seed: int
    perturbed: bool

    @property
    def name(self) -> str:
        """``<model>-<tokens>t-s<seed>-<perturbed|standard>``: the store's ``run`` partition."""
        variant = "perturbed" if self.perturbed else "standard"
        return f"{self.model_size}-{self.train_tokens}t-s{self.seed}-{variant}"


class CheckpointsSpec(_Spec):
    """When checkpoints are written; each one is probed as soon as it is committed."""

    log_spaced: int = Field(default=4, ge=0)
    """Log-spaced early checkpoints before the first ``interval_steps``."""
    interval_steps: int = Field(default=500, ge=1)
    """A checkpoint every this many steps, and always at the last step."""
    after_window_steps: list[int] = Field(default=[10, 50])
    """Extra checkpoints this many steps after each phase window closes (forgetting is fastest
    there)."""
    keep_last: int = Field(default=0, ge=0)
    """Checkpoints kept on disk after they are probed; 0 keeps all."""
    resume_every_steps: int = Field(default=0, ge=0)
    """Which checkpoints carry the optimizer state and the LR schedule (a "full" checkpoint, 14
    bytes per parameter on GPU, a run resumes only from one) rather than only the weights (2 bytes
    per parameter in bf16, enough for probes and exports): 0 makes every checkpoint full; N makes
    full the first checkpoint at or after each multiple of N steps, and the last one. A run cut
    off resumes from its newest full checkpoint and trains the steps after it again."""
    disk_budget_bytes: int | None = Field(default=None, ge=1)
    """Most bytes the checkpoints of all runs may take together, as ``taggant plan`` estimates
    them (``pipeline.train.disk``, ``keep_last`` counted); a spec that needs more is refused
    before anything runs. None: no limit."""
    export_hf: bool = False
    """Also write each committed checkpoint as a Hugging Face ``LlamaForCausalLM`` folder
    (safetensors, config, the run's tokenizer, ``taggant_export.json``) in
    ``<run_dir>/hf/iter_<step>/``, in a Ray task that training does not wait for (one at a time,
    each taking every step not exported yet); all are written when the run's training ends.
    ``keep_last`` deletes checkpoints once exported, never exports."""


class WatcherSpec(_Spec):
    """What each run's probe watcher (``jobs.probe``) takes from the Ray cluster. Only
    ``num_gpus`` can change a probe's result, through the precision a GPU watcher probes in
    (``ProbesSpec.precision``, recorded in every row's ``probe_config``); the rest enters no
    stage's key."""

    num_cpus: float = Field(default=0, ge=0)
    """CPUs Ray reserves for a watcher. 0 (the default) reserves none, so a cluster sized for the
    training ranks alone (a laptop, the 2-CPU tests) still fits the watchers, which then share
    their node's cores; on a real cluster set it to the cores a watcher should own, or training's
    placement groups and the watchers compete for the same cores."""
    num_gpus: float = Field(default=0, ge=0)
    """GPUs Ray gives a watcher, which probes on the one Ray hands it (its own, never a training
    rank's: the ranks hold theirs), in bf16. 0: it probes on CPU, in fp32, and sees no GPU."""
    threads: int | None = Field(default=None, ge=1)
    """Torch threads of a watcher on CPU; None: ``num_cpus`` rounded up, at least 1."""
    on_head: bool = False
    """Whether a watcher may run on the head node of a multi-node cluster (the head holds Ray's
    control plane; a model copy there can take its memory). A one-node cluster has only the head,
    so there it always may."""

    @property
    def torch_threads(self) -> int:
        """The threads a watcher gives torch."""
        return self.threads or max(1, math.ceil(self.num_cpus))


class ProbesSpec(_Spec):
    """Which memorization probes run on every checkpoint, and their shapes."""

    names: list[Literal[PROBE_NAMES]] = Field(
        default=["loss", "zlib_ratio", "min_k", "min_k_plus_plus", "exact_match"], min_length=1
    )
    """Probes to run (versioned implementations are recorded in every store row). The default
    gives every membership attack's score and greedy extraction from one teacher-forced pass per
    item. ``exposure`` is not a default: it scores each canary's ``num_references`` reference
    texts at every checkpoint, their shared prompt once (measured on tiny-2m, one CPU thread:
    ~3.2 CPU-s per canary with 1000 references at load average ~20 on 2 cores,
    ``bench/exposure_cost.py``), so 60 canaries cost minutes per checkpoint on a CPU; ask for it
    where a GPU or few checkpoints allow."""
    prefix_tokens: int = Field(default=32, ge=1)
    """Prompt tokens for items that have no prompt of their own (watermarked documents, bare
    passphrases): the first ``prefix_tokens`` tokens are the prompt, Carlini-style."""
    suffix_tokens: int = Field(default=32, ge=1)
    """Most target tokens an extraction probe must reproduce (the target after the prompt)."""
    batch_items: int = Field(default=64, ge=1)
    """Items per forward pass."""
    watcher: WatcherSpec = WatcherSpec()
    """The resources of each run's watcher."""

    @property
    def precision(self) -> Literal["float32", "bfloat16"]:
        """The dtype checkpoints are probed in: ``bfloat16`` when watchers hold a GPU (the
        precision GPU training keeps its weights in; half the memory of fp32, so a watcher's GPU
        fits twice the model), else ``float32`` (CPU training is fp32, and bf16 matmuls are slow
        on CPU). Values differ between the two by bf16 rounding of the logits, so it is part of
        every row's ``probe_config`` and of the probe stage's key; ``taggant probe`` on a
        checkpoint uses it too, whatever device it runs on."""
        return "bfloat16" if self.watcher.num_gpus > 0 else "float32"


class StoreSpec(_Spec):
    """The results store."""

    url: str
    """fsspec URL of the partitioned Parquet store (local path, ``s3://``, ``gs://``, ``memory://``);
    a relative path is taken from the current directory."""


class FitSpec(_Spec):
    """What the fit stage reports as its headline membership audit, fixed before looking: one
    attack at one checkpoint (``mia.headline_audit``), never the maximum over attacks and steps,
    which is not a bound at ``confidence``."""

    audit_attack: Literal["loss", "zlib", "min_k", "min_k_plus_plus", "twin_reference"] = "loss"
    """The membership attack of the headline ε (a name of ``mia.ATTACKS``)."""
    audit_step: Literal["last"] | int = "last"
    """The checkpoint of the headline ε: ``last`` (each run's last) or a training step ≥ 0."""
    audit_delta: float = Field(default=0.0, ge=0.0, lt=1.0)
    """δ of the audited (ε, δ) guarantee (0: pure ε-DP; a DP claim would typically use ≤ 1e-5).
    A larger δ gives a smaller ε lower bound."""
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    """Confidence of the ε lower bounds and of the AUROC and low-FPR TPR intervals."""

    @field_validator("audit_step")
    @classmethod
    def _step(cls, step: str | int) -> str | int:
        if isinstance(step, int) and step < 0:
            raise ValueError(f"{step} is negative; use 'last' or a checkpoint step ≥ 0")
        return step


class ExperimentSpec(_Spec):
    """One experiment: corpus, dedup, perturbations, runs, probes, store and fit."""

    name: str = Field(pattern=NAME_PATTERN)
    """Experiment id; used in folder names and the store's ``experiment`` partition."""
    seed: int = Field(ge=0)
    """Root of every random choice (hashed with purpose, set name and item index)."""
    work_dir: str
    """Folder (or fsspec URL) holding every stage's output; relative to the current directory."""
    corpus: CorpusSpec
    dedup: DedupSpec = DedupSpec()
    perturbations: list[PerturbationSpec] = []
    tokenizer: TokenizerSpec = TokenizerSpec()
    runs: RunsSpec
    checkpoints: CheckpointsSpec = CheckpointsSpec()
    probes: ProbesSpec = ProbesSpec()
    store: StoreSpec
    fit: FitSpec = FitSpec()

    @model_validator(mode="after")
    def _cross_fields(self) -> ExperimentSpec:
        # Raised as ConfigError (not ValueError) so pydantic lets it through with exact paths.
        problems = _check_cross_fields(
            list(enumerate(self.perturbations)), self.runs, self.tokenizer
        )
        if problems:
            raise ConfigError(problems)
        return self


def _check_cross_fields(
    sets: list[tuple[int, PerturbationSet]],
    runs: RunsSpec | None,
    tokenizer: TokenizerSpec | None,
) -> list[tuple[str, str]]:
    """The rules between sections, on the parts that are valid on their own: ``sets`` are
    ``(index in perturbations, set)``; ``None`` for a section that has field errors (its rules
    are then not checked), so a field error never hides the cross-field errors of other parts."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for i, pset in sets:
        if pset.name in seen:
            problems.append(
                (
                    f"perturbations[{i}].name",
                    f"{pset.name!r} is also perturbations[{seen[pset.name]}]; names must be unique",
                )
            )
        seen.setdefault(pset.name, i)
    if runs is None:
        return problems
    for budget in runs.train_tokens:
        problems += _check_insertions_fit(sets, runs, budget)
    if runs.init_from_hf and tokenizer is not None and tokenizer.kind != "file":
        problems.append(
            (
                "tokenizer.kind",
                "runs.init_from_hf needs the model's own tokenizer; "
                "set tokenizer: {kind: file, path: <model folder>/tokenizer.json}",
            )
        )
    return problems


def _check_insertions_fit(
    indexed: Sequence[tuple[int, PerturbationSet]], runs: RunsSpec, train_tokens: int
) -> list[tuple[str, str]]:
    """At most one occurrence per sample, each inside its set's window: feasible iff for every
    interval [a, b) of window boundaries, the sets whose windows lie inside it need no more
    occurrences than it has samples (Hall's condition for interval matching)."""
    num_samples = runs.num_samples(train_tokens)
    if num_samples == 0:
        return [
            ("runs.train_tokens", f"{train_tokens} tokens is less than one global batch; raise it")
        ]
    sets = [s for _, s in indexed]
    ranges = [s.phase.sample_range(num_samples) for s in sets]
    problems = []
    for (i, pset), (lo, hi) in zip(indexed, ranges):
        if pset.num_occurrences > hi - lo:
            problems.append(
                (
                    f"perturbations[{i}].phase",
                    f"window [{pset.phase.start_frac}, {pset.phase.end_frac}) holds {hi - lo} samples at "
                    f"train_tokens={train_tokens} but set {pset.name!r} needs {pset.num_occurrences} "
                    "occurrences (one per sample); widen the window, lower count or dup_levels, or raise "
                    "runs.train_tokens",
                )
            )
    if problems:
        return problems
    bounds = sorted({b for r in ranges for b in r})
    for a in bounds:
        for b in (x for x in bounds if x > a):
            inside = [i for i, (lo, hi) in enumerate(ranges) if a <= lo and hi <= b]
            need = sum(sets[i].num_occurrences for i in inside)
            if len(inside) > 1 and need > b - a:
                names = ", ".join(sets[i].name for i in inside)
                return [
                    (
                        "perturbations",
                        f"sets {names} need {need} occurrences inside samples [{a}, {b}) which hold only "
                        f"{b - a} at train_tokens={train_tokens}; spread their phase windows or insert less",
                    )
                ]
    return []


_M = TypeVar("_M", bound=BaseModel)


# --- loading ---------------------------------------------------------------------------------


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentSpec:
    """Read a YAML spec, apply ``a.b=v`` overrides, validate, and make relative paths absolute
    (relative to the current directory, so a shipped spec works from wherever it is installed).

    Raises:
        ConfigError: with every problem found, each as ``(field.path, message with fix)``.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError([(str(path), "no such spec file")]) from None
    except yaml.YAMLError as e:
        raise ConfigError([(str(path), f"not valid YAML: {e}")]) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            [(str(path), "the spec must be a YAML mapping of sections (name, corpus, ...)")]
        )
    for override in overrides:
        apply_override(raw, override)
    spec = parse_spec(raw)
    return resolve_paths(spec, Path.cwd())


def parse_spec(raw: dict[str, Any]) -> ExperimentSpec:
    """Validate a spec given as plain data; raises ``ConfigError`` listing every problem: field
    errors, and the cross-field errors of the sections that have none."""
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as e:
        problems = [_describe(err) for err in e.errors()]
    raise ConfigError(problems + _check_cross_fields(*_valid_parts(raw)))


def _valid_parts(
    raw: dict[str, Any],
) -> tuple[list[tuple[int, PerturbationSet]], RunsSpec | None, TokenizerSpec | None]:
    """The perturbation sets (with their indices), runs and tokenizer of ``raw`` that are valid on
    their own; ``None`` for a section that is not."""

    def valid(adapter: TypeAdapter, value: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except ValidationError:
            return None

    sets = raw.get("perturbations")
    parsed = [
        (i, valid(_SET_ADAPTER, s)) for i, s in enumerate(sets if isinstance(sets, list) else [])
    ]
    return (
        [(i, s) for i, s in parsed if s is not None],
        valid(TypeAdapter(RunsSpec), raw.get("runs")),
        valid(TypeAdapter(TokenizerSpec), raw.get("tokenizer", {})),
    )


def parse_section(model: type[_M], raw: dict[str, Any], path: str = "") -> _M:
    """Validate ``raw`` as ``model`` (a spec or one of its sections, found at ``path``)."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        problems = [_describe(err) for err in e.errors()]
        raise ConfigError([(f"{path}.{p}" if path else p, m) for p, m in problems]) from None


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.0.c=value`` in ``raw`` in place; the value is parsed as YAML (``8``, ``[1, 4]``)."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError([("--set", f"{override!r} is not of the form a.b=value")])
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError([(key, f"{part!r} is not an index of a list of {len(node)}")])
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError([(key, f"{'.'.join(parts[:depth])} is a value, not a section")])
        if last:
            node[part] = yaml.safe_load(value)
        else:
            if isinstance(node, dict) and part not in node:
                node[part] = {}
            node = node[part]


def resolve_paths(spec: ExperimentSpec, base: Path) -> ExperimentSpec:
    """Make the spec's relative local paths absolute, relative to ``base``."""

    def absolute(p: str) -> str:
        return p if "://" in p or Path(p).is_absolute() else str((base / p).resolve())

    update: dict[str, Any] = {
        "work_dir": absolute(spec.work_dir),
        "corpus": spec.corpus.model_copy(
            update={"paths": [absolute(p) for p in spec.corpus.paths]}
        ),
        "store": spec.store.model_copy(update={"url": absolute(spec.store.url)}),
        "perturbations": [
            p.model_copy(update={"path": absolute(p.path)}) if getattr(p, "path", None) else p
            for p in spec.perturbations
        ],
    }
    if spec.runs.init_from_hf:
        update["runs"] = spec.runs.model_copy(
            update={"init_from_hf": absolute(spec.runs.init_from_hf)}
        )
    if spec.tokenizer.path:
        update["tokenizer"] = spec.tokenizer.model_copy(
            update={"path": absolute(spec.tokenizer.path)}
        )
    return spec.model_copy(update=update)


def _describe(err: dict[str, Any]) -> tuple[str, str]:
    """Turn one pydantic error into ``(dotted.path[i], message with a fix)``."""
    loc = [part for i, part in enumerate(err["loc"]) if not _is_union_tag(err["loc"], i)]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return path, "required field is missing; add it (see the spec example in README.md)"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _ALL_FIELD_NAMES, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "remove it"
        return path, f"unknown field; {hint}"
    if kind == "union_tag_invalid":
        return (
            path + ".kind",
            f"unknown kind {err['input'].get('kind')!r}; use one of {', '.join(PERTURBATION_KINDS)}",
        )
    if kind == "union_tag_not_found":
        return path + ".kind", f"missing `kind`; use one of {', '.join(PERTURBATION_KINDS)}"
    msg = msg.removeprefix("Value error, ")
    return path or "<spec>", f"{msg} (got {err['input']!r})" if kind != "value_error" else msg


def _is_union_tag(loc: tuple, i: int) -> bool:
    return i > 0 and isinstance(loc[i - 1], int) and loc[i] in PERTURBATION_KINDS


def _field_names(model: type[BaseModel]) -> set[str]:
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for arg in getattr(field.annotation, "__args__", ()) or (field.annotation,):
            for sub in getattr(arg, "__args__", ()) or (arg,):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    names |= _field_names(sub)
    return names


_ALL_FIELD_NAMES = sorted(
    _field_names(ExperimentSpec) | set().union(*(_field_names(m) for m in SPEC_CLASSES))
)
