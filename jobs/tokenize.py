"""The tokenize stage on Ray: one task per corpus shard, merged in shard order into one dataset.

Then, on the driver: the items' ``token_ids``, every run's sample order (megatron-core), and each
occurrence's ``token_offset``, written as the completed manifests ``<folder>/manifests/<run>/``
(``pipeline.data.complete_manifests``); the plan's own manifests are left as they are. Outputs
depend only on the inputs, never on the number of workers or the order tasks finish in; timings
are logged, not stored.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from tqdm import tqdm

from taggant.pipeline import data, io, tokenize
from taggant.pipeline.spec import ExperimentSpec
from taggant.pipeline.stage import StageDecl
from taggant.pipeline.tokenize import TokenizeFolder

TASK_RETRIES = 3

log = logging.getLogger(__name__)


def stage_config(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec fields the tokenize output depends on, for its ``StageKey`` (version
    ``pipeline.tokenize.TOKENIZE_VERSION``; the plan stage's hash goes in ``inputs``: it covers
    the corpus shards and the manifests). A tokenizer file enters by content, not by path."""
    runs = spec.runs
    orders = {data.SampleOrder.of_run(runs, r.train_tokens, r.seed).hash for r in runs.grid()}
    config: dict[str, Any] = {
        "tokenizer": spec.tokenizer.model_dump(mode="json"),
        "seed": spec.seed,
        "overlay": data.OVERLAY_VERSION,
        "orders": sorted(orders),
    }
    if spec.tokenizer.kind == "file":
        fs, path = io.filesystem(spec.tokenizer.path)
        config["tokenizer_sha256"] = hashlib.sha256(fs.cat_file(path)).hexdigest()
    return config


STAGE = StageDecl(
    name="tokenize",
    version=tokenize.TOKENIZE_VERSION,
    inputs=("plan",),  # the plan folder holds both the corpus shards and the manifests
    config=stage_config,
    execute=lambda context: run(
        context.spec,
        context.folder,
        context.folders["plan"],
        io.join(context.folders["plan"], "manifests"),
    ),
)


def run(
    spec: ExperimentSpec, folder: str, corpus_folder: str, manifests_folder: str
) -> dict[str, Any]:
    """Tokenize the corpus shards of ``corpus_folder`` into ``folder`` and complete there the
    per-run manifests of ``manifests_folder`` (the plan's ``<plan>/manifests``); returns the
    stage stats.

    Raises:
        DataError: when the corpus has no shards, an item is too long for a sample, or a
            manifest is missing or was planned for another sample order.
    """
    import ray

    out = TokenizeFolder(folder)
    shards = tokenize.list_corpus_shards(corpus_folder)
    tokenizer_json = ray.get(ray.remote(num_cpus=1)(_tokenizer_json).remote(spec, shards))
    info = tokenize.save_tokenizer(out, tokenizer_json)
    shard_stats = _tokenize_shards(tokenizer_json, shards, out)
    tokenize.assemble(out, shards, info.dtype)
    completed = data.complete_manifests(spec, out, manifests_folder)
    return {
        "shards": len(shards),
        "docs": sum(s["docs"] for s in shard_stats),
        "tokens": sum(s["tokens"] for s in shard_stats),
        "bytes": sum(s["bytes"] for s in shard_stats),
        "tokenizer": info.to_dict(),
        **completed,
    }


def _tokenizer_json(spec: ExperimentSpec, shards: list[str]) -> str:
    return tokenize.build_tokenizer(spec.tokenizer, shards).to_str()


def _tokenize_shards(tokenizer_json: str, shards: list[str], out: TokenizeFolder) -> list[dict]:
    """Run one task per shard; write per-shard stats; log throughput. Results in shard order."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=[OSError])(
        tokenize.tokenize_shard
    )
    tokenizer_ref = ray.put(tokenizer_json)
    refs = [task.remote(tokenizer_ref, url, out.shard_prefix(i)) for i, url in enumerate(shards)]
    start = time.perf_counter()
    pending = list(refs)
    with tqdm(total=len(refs), desc="tokenize", unit="shard") as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(len(done))
    results = ray.get(refs)
    wall = time.perf_counter() - start
    megabytes = sum(r["bytes"] for r in results) / 1e6
    encode_s = sum(r.pop("encode_s") for r in results)
    log.info(
        "tokenized %.1f MB in %d shards: %.2f MB/s, %.2f MB/s per core encoding",
        megabytes,
        len(shards),
        megabytes / wall,
        megabytes / max(encode_s, 1e-9),
    )
    for i, result in enumerate(results):
        io.write_json(out.shard_stats(i), result)
    return results
