"""The ingest stage on Ray: one task per input file, results gathered in input order."""

from __future__ import annotations

from typing import Any

from taggant.pipeline import io
from taggant.pipeline.ingest import InputFile, ingest_file
from taggant.pipeline.spec import CorpusSpec
from taggant.pipeline.stage import Counts

TASK_RETRIES = 3


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
    return {"counts": total.to_dict(), "files": len(inputs), "shards": sum(len(r["shards"]) for r in results)}
