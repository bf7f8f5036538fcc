"""The ingest stage on Ray: one task per input file, results gathered in input order."""

from __future__ import annotations

from typing import Any

from taggant.pipeline import io
from taggant.pipeline.errors import DataError
from taggant.pipeline.ingest import (
    INGEST_VERSION,
    InputFile,
    ingest_file,
    input_fingerprint,
    list_inputs,
)
from taggant.pipeline.spec import CorpusSpec
from taggant.pipeline.stage import Counts, Spec, StageContext, StageDecl

TASK_RETRIES = 3


def stage_config(spec: Spec) -> dict[str, Any]:
    """The corpus section and each input file's relative path and size: a corpus file that grows
    or shrinks makes a new ingest folder."""
    return {
        "corpus": spec.corpus.model_dump(mode="json"),
        "files": input_fingerprint(list_inputs(spec.corpus)),
    }


def _execute(context: StageContext) -> dict[str, Any]:
    # The files are listed again here: the key must describe the files that are read.
    inputs = list_inputs(context.spec.corpus)
    if input_fingerprint(inputs) != context.key.config["files"]:
        raise DataError(
            "corpus.paths: the corpus files changed after the stage graph was built; "
            "run again once they stop changing"
        )
    return run(context.spec.corpus, context.folder, inputs)


STAGE = StageDecl(
    name="ingest", version=INGEST_VERSION, inputs=(), config=stage_config, execute=_execute
)


def run(corpus: CorpusSpec, folder: str, inputs: list[InputFile]) -> dict[str, Any]:
    """Ingest every input file into ``folder``; returns the stage stats.

    A failed task is retried; its output files have fixed names, so a retry overwrites them.
    """
    import ray

    task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=[OSError])(ingest_file)
    results = ray.get([task.remote(f, corpus, folder) for f in inputs])
    for f, result in zip(inputs, results):
        io.write_json(io.join(folder, "stats", f"file-{f.index:05d}.json"), result)
    total = sum((Counts.from_dict(r["counts"]) for r in results), Counts())
    return {
        "counts": total.to_dict(),
        "files": len(inputs),
        "shards": sum(len(r["shards"]) for r in results),
    }
