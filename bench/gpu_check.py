"""One run that tells whether taggant's GPU training path works and how fast it is (no Ray).

Run it through ``bench/gpu_check.sh``, which installs what the machine lacks
(``bench/gpu_check_deps.py``) and names what it cannot install before starting. Usage:

    python bench/gpu_check.py [--tiny] [--data-parallel] [--out DIR]

What it does, for each preset (``gpt-125m`` and ``gpt-350m`` on a GPU; ``tiny-2m`` with
``--tiny``, which runs the same code on CPU in about a minute):

1. Builds a real run folder without Ray: the Python standard library's own source as the corpus,
   a byte-level BPE trained on it, the base tokenized into a Megatron dataset, 64 canaries planned
   at 4 and 16 copies with controls (``pipeline.perturb.plan``; no decontamination pass, which
   needs Ray), the manifests completed and the run prepared (``pipeline.data``), so training
   reads the sample stream *with its overlay*.
2. Trains ``pipeline.train.loop.Trainer`` (megatron DDP + optimizer + schedule; on a GPU bf16
   weights with fp32 main params in the optimizer, NCCL, SDPA attention or Transformer Engine's
   when installed): warm-up steps, then timed steps, then one step that saves and commits a
   checkpoint.
3. Probes the committed checkpoint into a Parquet store (``jobs.probe.probe_step``: load, loss and
   exact-match probes, rows, store commit) and times commit → probe rows in the store.
4. Times the probe pass (``probe_items``) against a plain forward of the same model over the same
   tokens in the same batches.
5. Trains on a few steps past the checkpoint, then resumes a new trainer from the checkpoint and
   trains the same steps again: same step, and losses equal up to ``RESUME_LOSS_TOLERANCE``.
6. With two or more GPUs (or ``--data-parallel``, which runs it on CPU/gloo), the first preset on
   two ranks (``check_data_parallel``): DP=2 over NCCL with the distributed optimizer (ZeRO-1,
   GPUs only) trains, saves a checkpoint and trains on; then TP=2 (another layout, and at DP=1
   megatron's non-distributed optimizer) resumes from that checkpoint and trains the same steps:
   same step, losses equal up to ``RESUME_LOSS_TOLERANCE``.

``<out>/gpu_check.json`` is rewritten after every phase (``phases_done``; ``status`` is
``running`` until the end), so a time-out keeps every figure measured so far.

Figures printed (and written to ``<out>/gpu_check.json``): training tokens/s; MFU = model FLOPs/s
over the dense bf16 peak of an H100/H200 SXM (989 TFLOP/s), with model FLOPs per token
``6·N + 12·L·d·s`` (PaLM's count: ``N`` all parameters with the tied embedding once, since the
output layer multiplies by it; ``12·L·d·s`` the attention score and value products of a causal
layer counted in full, forward and backward); checkpoint save + commit seconds; commit → probe
rows seconds; probe tokens/s and plain-forward tokens/s. The exit status is 1 if any check fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from megatron.core import parallel_state

from taggant.jobs import plan as plan_job
from taggant.jobs import probe as probe_job
from taggant.pipeline import data, io, manifest, stage, store, tokenize
from taggant.pipeline.models import MODEL_PRESETS, ModelPreset
from taggant.pipeline.perturb import canary, plan
from taggant.pipeline.probe.run import probe_items
from taggant.pipeline.spec import ExperimentSpec, parse_spec
from taggant.pipeline.stage import StageKey
from taggant.pipeline.tokenize import TokenizeFolder, TokenizerInfo
from taggant.pipeline.train import checkpoint
from taggant.pipeline.train.loop import TrainConfig, Trainer
from taggant.pipeline.train.model import ModelConfig

PEAK_BF16_FLOPS = 989e12
"""Dense bf16 tensor-core peak of an H100 / H200 SXM (NVIDIA's data sheet, without sparsity)."""
RESUME_LOSS_TOLERANCE = 0.05
"""Absolute, per step: a resumed run repeats the uninterrupted one's losses; on a GPU, bf16 and
non-deterministic kernel choices move them in the second or third decimal."""
PROBES = ["loss", "exact_match"]


@dataclasses.dataclass(frozen=True)
class Shape:
    """The batch shape and step counts of one mode."""

    presets: tuple[str, ...]
    seq: int
    global_batch: int
    micro_batch: int
    warmup_steps: int
    timed_steps: int
    resume_steps: int
    corpus_bytes: int
    vocab_size: int
    canaries: int
    probe_copies: int
    """The probe-throughput pass scores this many copies of every item (more tokens to time)."""
    parallel_steps: int
    """Steps of the two-rank phase before its checkpoint (then ``resume_steps`` more)."""


# 65k tokens per step in two microbatches of 16 × 2048; 231 steps per preset. At 20% MFU (half
# the goal) that is ~70 s for gpt-125m and ~200 s for gpt-350m, inside the script's 470 s.
GPU = Shape(
    presets=("gpt-125m", "gpt-350m"),
    seq=2048,
    global_batch=32,
    micro_batch=16,
    warmup_steps=10,
    timed_steps=200,
    resume_steps=10,
    corpus_bytes=12_000_000,
    vocab_size=32_000,
    canaries=64,
    probe_copies=32,
    parallel_steps=20,
)
TINY = Shape(
    presets=("tiny-2m",),
    seq=64,
    global_batch=8,
    micro_batch=4,
    warmup_steps=2,
    timed_steps=8,
    resume_steps=3,
    corpus_bytes=400_000,
    vocab_size=512,
    canaries=8,
    probe_copies=2,
    parallel_steps=3,
)


def flops_per_token(shape: ModelPreset, padded_vocab: int, seq: int) -> float:
    """Model FLOPs per trained token: ``6·N + 12·L·d·s`` (module docstring)."""
    return 6 * shape.num_params(padded_vocab) + 12 * shape.num_layers * shape.hidden_size * seq


def stdlib_corpus(folder: str, max_bytes: int) -> str:
    """The standard library's ``.py`` files (sorted, tests left out) up to ``max_bytes`` as one
    corpus shard; returns the corpus folder."""
    root = Path(sysconfig.get_paths()["stdlib"])
    ids, texts, size = [], [], 0
    for path in sorted(root.rglob("*.py")):
        if "test" in path.relative_to(root).parts[0] or "site-packages" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            continue
        ids.append(str(path.relative_to(root)))
        texts.append(text)
        size += len(text.encode())
        if size >= max_bytes:
            break
    corpus = io.join(folder, "corpus")
    io.write_table(
        io.join(corpus, "shard-00000.parquet"),
        pa.table({"doc_id": ids, "text": texts, "source": ["python-stdlib"] * len(ids)}),
    )
    return corpus


def experiment(shape: Shape, folder: str, corpus: str) -> ExperimentSpec:
    steps = shape.warmup_steps + shape.timed_steps + 1 + shape.resume_steps
    return parse_spec(
        {
            "name": "gpu-check",
            "seed": 3,
            "work_dir": folder,
            "corpus": {"paths": [corpus]},
            "perturbations": [
                {
                    "kind": "canary",
                    "name": "canaries",
                    "count": shape.canaries,
                    "dup_levels": [4, 16],
                    "control_frac": 0.25,
                    "secret_length": 4,
                }
            ],
            "tokenizer": {
                "kind": "bpe",
                "vocab_size": shape.vocab_size,
                "train_bytes": min(shape.corpus_bytes, 3_000_000),
            },
            "runs": {
                "model_sizes": list(shape.presets),
                "train_tokens": [steps * shape.global_batch * shape.seq],
                "seq_length_tokens": shape.seq,
                "global_batch_sequences": shape.global_batch,
                "micro_batch_sequences": shape.micro_batch,
                "lr": 3e-4,
                "min_lr": 3e-5,
                "warmup_frac": 0.05,
                "standard_twin": False,
            },
            "probes": {"names": PROBES, "prefix_tokens": 8, "suffix_tokens": 8, "batch_items": 32},
            "store": {"url": io.join(folder, "store")},
        }
    )


def prepare(spec: ExperimentSpec, folder: str, corpus: str) -> tuple[str, str]:
    """Plan, tokenize (in this process) and commit the stages; returns (plan, tokenize) folders."""
    plan_folder, tok_folder = io.join(folder, "plan"), io.join(folder, "tokenize")
    [pset] = spec.perturbations
    drafts = canary.CanarySource(pset, spec.seed).draw(0, pset.count)
    plan.write_manifests(plan_folder, spec, plan.items_table([pset], [drafts], spec.seed))
    # What the probes read besides the items; the plan stage writes it the same way.
    plan_job._write_references(plan_folder, spec, [drafts])
    out = TokenizeFolder(tok_folder)
    shards = tokenize.list_corpus_shards(corpus)
    tokenizer_json = tokenize.build_tokenizer(spec.tokenizer, shards).to_str()
    info = tokenize.save_tokenizer(out, tokenizer_json)
    stats = [
        tokenize.tokenize_shard(tokenizer_json, url, out.shard_prefix(i))
        for i, url in enumerate(shards)
    ]
    tokenize.assemble(out, shards, info.dtype)
    completed = data.complete_manifests(spec, out, io.join(plan_folder, "manifests"))
    stage.commit(
        tok_folder,
        StageKey("tokenize", "gpu-check", {}),
        {},
        {"tokens": sum(s["tokens"] for s in stats), **completed},
    )
    return plan_folder, tok_folder


class Report:
    """``<out>/gpu_check.json``, rewritten after every phase (to a temporary file, then renamed:
    a reader never sees half a report), so that a time-out keeps the figures measured so far."""

    def __init__(self, out: str, environment: dict, shape: Shape):
        os.makedirs(out, exist_ok=True)
        self.path = os.path.join(out, "gpu_check.json")
        self.data: dict = {
            "status": "running",
            "phases_done": [],
            "environment": environment,
            "shape": dataclasses.asdict(shape),
            "presets": [],
        }
        self.write()

    def done(self, phase: str) -> None:
        self.data["phases_done"].append(phase)
        self.write()

    def write(self) -> None:
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(self.path + ".tmp", self.path)


def check_preset(
    spec: ExperimentSpec,
    shape: Shape,
    run,
    folder: str,
    plan_folder: str,
    tok_folder: str,
    report: Report,
) -> dict:
    """Train, checkpoint, probe and resume one run; its figures and check results, added to
    ``report`` as they are measured."""
    run_dir = io.join(folder, "train", run.name)
    data.prepare_run_dir(run_dir, spec, run, tok_folder)
    samples = data.open_training_samples(run_dir)
    warm, timed = shape.warmup_steps, shape.warmup_steps + shape.timed_steps
    saved, last = timed + 1, timed + 1 + shape.resume_steps
    config = dataclasses.replace(
        TrainConfig.from_spec(spec, run, samples.vocab_size),
        checkpoint_steps=(saved,),
        log_interval_steps=max(1, timed // 6),
    )
    result: dict = {
        "preset": run.model_size,
        "num_params": MODEL_PRESETS[run.model_size].num_params(config.model.padded_vocab_size),
        "checks": {},
    }
    report.data["presets"].append(result)

    trainer = Trainer(config, samples, run_dir)
    result["device"] = str(next(trainer.model.parameters()).device)
    result["param_dtype"] = str(next(trainer.model.parameters()).dtype)
    trainer.train_until(warm)
    _sync()
    start = time.perf_counter()
    losses = dict(trainer.train_until(timed)["losses"])
    _sync()
    seconds = time.perf_counter() - start
    tokens_per_s = shape.timed_steps * shape.global_batch * shape.seq / seconds
    model_flops = flops_per_token(
        MODEL_PRESETS[run.model_size], config.model.padded_vocab_size, shape.seq
    )
    result.update(
        tokens_per_s=tokens_per_s,
        step_s=seconds / shape.timed_steps,
        mfu=tokens_per_s * model_flops / PEAK_BF16_FLOPS if torch.cuda.is_available() else None,
        flops_per_token=model_flops,
        peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30
        if torch.cuda.is_available()
        else None,
    )
    result["checks"]["loss_falls"] = losses[timed] < losses[warm + 1]
    report.done(f"{run.model_size}:train")

    start = time.perf_counter()
    trainer.train_until(saved)  # one step, then the checkpoint's save and commit
    result["step_and_save_s"] = time.perf_counter() - start
    result["checks"]["committed"] = checkpoint.committed_steps(run_dir) == [saved]
    report.done(f"{run.model_size}:checkpoint")

    target = probe_job.targets(spec, io.join(folder, "train"), tok_folder, plan_folder)[
        spec.runs.grid().index(run)
    ]
    probe_job.register_run(target, spec)
    start = time.perf_counter()
    rows = probe_job.probe_step(target, saved)
    result["commit_to_probe_rows_s"] = time.perf_counter() - start
    stored = store.read_probes(spec.store.url).to_pandas()
    result["checks"]["probe_rows_in_store"] = (
        rows > 0 and len(stored[(stored["run"] == run.name) & (stored["step"] == saved)]) == rows
    )
    report.done(f"{run.model_size}:probe_step")
    items_url = TokenizeFolder(tok_folder).manifest(run.name)  # the completed manifest
    result.update(probe_vs_forward(tok_folder, items_url, run_dir, saved, spec, shape.probe_copies))
    report.done(f"{run.model_size}:probe_vs_forward")

    reference = dict(trainer.train_until(last)["losses"])
    trainer.close()
    resumed = Trainer(config, samples, run_dir)
    result["checks"]["resumed_at_checkpoint"] = resumed.step == saved
    again = dict(resumed.train_until(last)["losses"])
    resumed.close()
    diffs = [abs(again[s] - reference[s]) for s in range(saved + 1, last + 1)]
    result["resume_max_loss_diff"] = max(diffs)
    result["checks"]["resume_matches"] = max(diffs) <= RESUME_LOSS_TOLERANCE
    result["losses"] = {
        "first": losses[warm + 1],
        "timed_last": losses[timed],
        "last": reference[last],
    }
    report.done(f"{run.model_size}:resume")
    return result


def check_data_parallel(
    spec: ExperimentSpec, shape: Shape, run, folder: str, tok_folder: str, report: Report
) -> dict:
    """Two ranks: DP=2 trains ``parallel_steps``, saves and trains ``resume_steps`` more; TP=2
    resumes from the checkpoint and trains the same steps. Its figures and checks, added to
    ``report`` as they are measured (``data_parallel``).

    On GPUs DP=2 runs NCCL and the distributed optimizer, whose sharded state TP=2 (DP=1, the
    non-distributed optimizer) must load; on CPU it runs gloo and megatron's plain optimizer at
    both layouts (the distributed optimizer needs CUDA tensors), which still checks the two-rank
    orchestration, the model's reshard and the resume."""
    run_dir = io.join(folder, "train-parallel", run.name)
    data.prepare_run_dir(run_dir, spec, run, tok_folder)
    vocab_size = data.open_training_samples(run_dir).vocab_size
    saved, last = shape.parallel_steps, shape.parallel_steps + shape.resume_steps
    config = dataclasses.replace(
        TrainConfig.from_spec(spec, run, vocab_size),
        checkpoint_steps=(saved,),
        log_interval_steps=1,
    )
    result: dict = {"preset": run.model_size, "checks": {}}
    report.data["data_parallel"] = result

    start = time.perf_counter()
    first = run_two_ranks(config, run_dir, last, folder)
    result["dp2_s"] = time.perf_counter() - start
    result["dp2_layout_dp_tp"] = [first["data_parallel_size"], first["tensor_parallel_size"]]
    result["checks"]["dp2_layout"] = result["dp2_layout_dp_tp"] == [2, 1]
    result["dp2_backend"] = first["backend"]
    result["dp2_distributed_optimizer"] = first["distributed_optimizer"]
    result["checks"]["dp2_committed"] = checkpoint.committed_steps(run_dir) == [saved]
    if torch.cuda.is_available():
        result["checks"]["dp2_nccl_and_distributed_optimizer"] = (
            "nccl" in first["backend"] and first["distributed_optimizer"]
        )
    report.done("data_parallel:dp2")

    start = time.perf_counter()
    again = run_two_ranks(
        dataclasses.replace(config, tensor_parallel_size=2), run_dir, last, folder
    )
    result["tp2_resume_s"] = time.perf_counter() - start
    result["tp2_layout_dp_tp"] = [again["data_parallel_size"], again["tensor_parallel_size"]]
    result["checks"]["tp2_layout"] = result["tp2_layout_dp_tp"] == [1, 2]
    result["checks"]["tp2_resumed_at_checkpoint"] = again["started_at"] == saved
    diffs = [abs(again["losses"][s] - first["losses"][s]) for s in range(saved + 1, last + 1)]
    result["tp2_resume_max_loss_diff"] = max(diffs)
    result["checks"]["tp2_resume_matches"] = max(diffs) <= RESUME_LOSS_TOLERANCE
    report.done("data_parallel:tp2_resume")
    return result


def run_two_ranks(config: TrainConfig, run_dir: str, until: int, folder: str) -> dict:
    """Rank 0's result of ``parallel_worker`` on two local ranks (this script with ``--worker``:
    separate processes, as torchrun would start them; on GPUs rank r uses GPU r)."""
    job = os.path.join(folder, f"job-{time.monotonic_ns()}.json")
    with open(job, "w") as f:
        json.dump({"config": dataclasses.asdict(config), "run_dir": run_dir, "until": until}, f)
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ranks = [
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", job],
            env={
                **os.environ,
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            },
        )
        for rank in range(2)
    ]
    codes = [rank.wait() for rank in ranks]
    if any(codes):
        raise RuntimeError(f"two-rank phase: the ranks exited with {codes}")
    with open(f"{job}.rank0") as f:
        result = json.load(f)
    result["losses"] = {int(step): loss for step, loss in result["losses"].items()}
    return result


def parallel_worker(job: str) -> None:
    """One rank of ``run_two_ranks``: resume (or start) the run and train until the job's step;
    writes what rank 0 reports to ``<job>.rank<RANK>``."""
    with open(job) as f:
        spec = json.load(f)
    fields = spec["config"]
    config = TrainConfig(
        **{
            **fields,
            "model": ModelConfig(**fields["model"]),
            "checkpoint_steps": tuple(fields["checkpoint_steps"]),
        }
    )
    if not torch.cuda.is_available():
        torch.set_num_threads(1)  # two ranks on a shared CPU
    trainer = Trainer(config, data.open_training_samples(spec["run_dir"]), spec["run_dir"])
    result = {
        "started_at": trainer.step,
        "tensor_parallel_size": parallel_state.get_tensor_model_parallel_world_size(),
        "data_parallel_size": parallel_state.get_data_parallel_world_size(),
        "backend": str(torch.distributed.get_backend()),
        "distributed_optimizer": trainer.model.ddp_config.use_distributed_optimizer,
    }
    result["losses"] = dict(trainer.train_until(spec["until"])["losses"])
    trainer.close()
    with open(f"{job}.rank{os.environ['RANK']}", "w") as f:
        json.dump(result, f)


def probe_vs_forward(
    tok_folder: str, items_url: str, run_dir: str, step: int, spec: ExperimentSpec, copies: int
) -> dict:
    """Tokens/s of ``probe_items`` and of a plain forward over the same tokens and batches:
    ``copies`` copies of every item (ids made distinct), so that there is work to time."""
    folder = TokenizeFolder(tok_folder)
    one, _, _ = manifest.read(items_url)
    items = pa.concat_tables([one] * copies)
    ids = [f"{i}#{k}" for k in range(copies) for i in one["item_id"].to_pylist()]
    items = items.set_column(items.schema.get_field_index("item_id"), "item_id", pa.array(ids))
    eod = TokenizerInfo.read(folder).eod_id
    tokenizer = folder.load_tokenizer()
    # What a watcher holding a GPU probes in (ProbesSpec.precision): bf16 on a GPU.
    precision = "bfloat16" if torch.cuda.is_available() else "float32"
    logits_fn = checkpoint.load_logits_fn(run_dir, step, precision)
    sequences = [[eod, *ids] for ids in items["token_ids"].to_pylist()]
    tokens = sum(len(s) for s in sequences)
    batch = spec.probes.batch_items

    def run_probe():
        probe_items(
            logits_fn,
            items,
            PROBES,
            spec.probes.prefix_tokens,
            spec.probes.suffix_tokens,
            batch,
            lambda text: tokenizer.encode(text, add_special_tokens=False).ids,
            tokens_seen=0,
            precision=precision,
            bos_id=eod,
        )

    def run_forward():
        for i in range(0, len(sequences), batch):
            chunk = sequences[i : i + batch]
            ids = np.full((len(chunk), max(map(len, chunk))), eod, dtype=np.int64)
            for row, seq in enumerate(chunk):
                ids[row, : len(seq)] = seq
            logits_fn(ids).float().cpu()

    out = {}
    for name, fn in (("probe", run_probe), ("plain_forward", run_forward)):
        fn()  # warm-up
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        out[f"{name}_tokens_per_s"] = tokens / (time.perf_counter() - start)
    out["probe_over_forward"] = out["probe_tokens_per_s"] / out["plain_forward_tokens_per_s"]
    return out


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def environment() -> dict:
    import megatron.core

    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "megatron_core": megatron.core.__version__,
        "transformer_engine": _has("transformer_engine"),
        "apex": _has("apex"),
        "cuda": torch.cuda.is_available(),
    }
    if env["cuda"]:
        env["gpu"] = torch.cuda.get_device_name(0)
        env["nccl"] = str(torch.cuda.nccl.version())
    return env


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="the tiny-2m preset on small batches: the CPU mode, seconds",
    )
    parser.add_argument(
        "--data-parallel",
        action="store_true",
        help="run the two-rank phase even with fewer than two GPUs (on CPU: gloo)",
    )
    parser.add_argument(
        "--out",
        default=os.environ.get("OUT") or ".",
        help="folder for gpu_check.json (default: $OUT, else .)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one rank of the two-rank phase
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("taggant.pipeline.train").setLevel(logging.INFO)
    if args.worker:
        parallel_worker(args.worker)
        return 0
    shape = TINY if args.tiny else GPU
    if not args.tiny and not torch.cuda.is_available():
        print("no CUDA device: run with --tiny on CPU", file=sys.stderr)
        return 2
    env = environment()
    print(json.dumps(env))
    report = Report(args.out, env, shape)
    signal.signal(signal.SIGTERM, _time_out)
    try:
        run_checks(shape, report, args.data_parallel or torch.cuda.device_count() >= 2)
    except BaseException as error:  # a time-out's SIGTERM included: say where it stopped
        report.data["status"] = f"error: {type(error).__name__}: {error}"
        report.write()
        raise
    failed = [
        f"{r['preset']}:{name}"
        for r in [*report.data["presets"], report.data.get("data_parallel", {"checks": {}})]
        for name, ok in r["checks"].items()
        if not ok
    ]
    report.data["status"] = "failed" if failed else "passed"
    report.write()
    print("ALL CHECKS PASSED" if not failed else f"FAILED CHECKS: {', '.join(failed)}")
    return 1 if failed else 0


def _time_out(signum, frame) -> None:
    raise TimeoutError("stopped by SIGTERM (gpu_check.sh's time limit?)")


def run_checks(shape: Shape, report: Report, data_parallel: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="taggant-gpu-check-") as folder:
        start = time.perf_counter()
        corpus = stdlib_corpus(folder, shape.corpus_bytes)
        spec = experiment(shape, folder, corpus)
        plan_folder, tok_folder = prepare(spec, folder, corpus)
        report.data["prepare_s"] = time.perf_counter() - start
        report.done("prepare")
        print(f"run folders ready in {report.data['prepare_s']:.1f} s")
        for run in spec.runs.grid():
            result = check_preset(spec, shape, run, folder, plan_folder, tok_folder, report)
            print_result(result)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
        if data_parallel:
            first = spec.runs.grid()[0]
            result = check_data_parallel(spec, shape, first, folder, tok_folder, report)
            print(f"two ranks ({result['preset']}): {json.dumps(result)}")


def print_result(r: dict) -> None:
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a (CPU)"
    if r["preset"] == "gpt-350m":
        mfu += f", goal >= 40% at 350M {'met' if r['mfu'] >= 0.40 else 'NOT met'}"
    lines = [
        f"{r['preset']}: {r['num_params'] / 1e6:.1f}M params on {r['device']} ({r['param_dtype']})",
        f"  train        {r['tokens_per_s']:,.0f} tokens/s, {r['step_s']:.3f} s/step, MFU {mfu} "
        f"(6N + 12·L·d·s = {r['flops_per_token'] / 1e9:.2f} GFLOP/token over 989 TFLOP/s)",
        f"  checkpoint   one step + save + commit {r['step_and_save_s']:.2f} s",
        f"  probe        commit -> probe rows in the store {r['commit_to_probe_rows_s']:.2f} s; "
        f"probe {r['probe_tokens_per_s']:,.0f} tokens/s vs plain forward "
        f"{r['plain_forward_tokens_per_s']:,.0f} tokens/s ({r['probe_over_forward']:.2f}x)",
        f"  resume       max |loss diff| {r['resume_max_loss_diff']:.4f} "
        f"(tolerance {RESUME_LOSS_TOLERANCE})",
        f"  losses       {r['losses']}",
        f"  checks       {r['checks']}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
