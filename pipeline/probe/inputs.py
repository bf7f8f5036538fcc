"""What a run is probed with: its items, the canary references and the tokenizer they were
tokenized with, found from the run folder alone.

The stage that probes a run records where these live in ``<run_dir>/probe_inputs.json``
(``RunInputs.write``, before training starts), so that ``taggant probe --checkpoint RUN_DIR`` and
the probe watchers read the same inputs: the completed manifest of the perturbed run (a standard
twin is probed on its sibling's items), the plan stage's ``references.parquet`` and the tokenize
stage's tokenizer, whose end-of-document id goes before every item as the document boundary it
followed in training.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from taggant.pipeline import io, manifest
from taggant.pipeline.errors import DataError
from taggant.pipeline.probe.generation import Decode
from taggant.pipeline.probe.registry import References
from taggant.pipeline.probe.run import Tokenize
from taggant.pipeline.tokenize import TokenizeFolder, TokenizerInfo

INPUTS_FILE = "probe_inputs.json"


@dataclass(frozen=True)
class RunInputs:
    """Where a run's probe inputs live (plain paths: it travels to watcher tasks).

    Attributes:
        tokenize_folder: the tokenize stage folder (tokenizer and its EOD id).
        items_url: the completed manifest folder holding the items.
        references_url: the plan stage's ``references.parquet`` (canary reference secrets).
    """

    tokenize_folder: str
    items_url: str
    references_url: str

    def write(self, run_dir: str) -> None:
        """Record these inputs in ``run_dir`` unless they already are: a run folder's inputs are
        fixed by its stage hash, so a finished train stage's folder is never rewritten.

        Raises:
            DataError: the folder records other inputs (it was moved or copied between
                experiments).
        """
        path = io.join(run_dir, INPUTS_FILE)
        if not io.exists(path):
            io.write_json(path, asdict(self))
        elif (recorded := RunInputs.read(run_dir)) != self:
            raise DataError(
                f"{path} records the inputs {recorded} but this experiment probes the "
                f"run with {self}; delete the file or the run folder"
            )

    @classmethod
    def read(cls, run_dir: str) -> RunInputs:
        """The inputs recorded in ``run_dir``.

        Raises:
            DataError: the folder records none (it is not a run folder of ``taggant run``).
        """
        path = io.join(run_dir, INPUTS_FILE)
        if not io.exists(path):
            raise DataError(
                f"{run_dir} has no {INPUTS_FILE}: it is not a run folder of a train "
                "stage (<work_dir>/train-*/<run>), or its stage has not started; "
                "give the folder `taggant run` trained"
            )
        return cls(**io.read_json(path))

    def load(self) -> LoadedInputs:
        """The inputs themselves, read once per process (every checkpoint of a run shares them)."""
        return _load(self)


@dataclass(frozen=True)
class LoadedInputs:
    """A run's probe inputs, read.

    Attributes:
        items: the manifest's items (``pipeline.manifest.ITEMS_SCHEMA``).
        references: canary set → reference secrets in draw order.
        tokenize: the run's tokenizer, without special tokens.
        bos_id: its end-of-document id, put before every item.
        decode: token ids → text (for generation probes).
    """

    items: pa.Table
    references: References
    tokenize: Tokenize
    bos_id: int
    decode: Decode


@functools.lru_cache(maxsize=8)
def _load(inputs: RunInputs) -> LoadedInputs:
    folder = TokenizeFolder(inputs.tokenize_folder)
    tokenizer = folder.load_tokenizer()
    items, _, _ = manifest.read(inputs.items_url)
    return LoadedInputs(
        items,
        read_references(inputs.references_url),
        lambda text: tokenizer.encode(text, add_special_tokens=False).ids,
        TokenizerInfo.read(folder).eod_id,
        lambda ids: tokenizer.decode(list(ids), skip_special_tokens=True),
    )


def read_references(url: str) -> dict[str, list[str]]:
    """Canary set → its reference secrets in draw order, from the plan stage's
    ``references.parquet``.

    Raises:
        DataError: the file is missing (the plan stage folder was moved or deleted).
    """
    if not io.exists(url):
        raise DataError(
            f"{url} is missing: the canary references of the plan stage; re-run the "
            "plan stage (taggant run) or restore its folder"
        )
    refs: dict[str, list[str]] = {}
    rows: list[dict[str, Any]] = (
        io.read_table(url)
        .sort_by([("set", "ascending"), ("reference_index", "ascending")])
        .to_pylist()
    )
    for row in rows:
        refs.setdefault(row["set"], []).append(row["secret"])
    return refs
