"""Probing taggant's own checkpoints: the one function that probes a committed checkpoint of a run,
for the probe watchers (``jobs.probe``) and ``taggant probe --checkpoint``.

A checkpoint that cannot be read (a malformed commit record; truncated, garbled or missing shard
files) raises ``UnreadableCheckpoint``: the only failure a watcher may skip. Anything that goes
wrong once the model is loaded (an item that cannot be probed, a bug) propagates as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa

from taggant.pipeline.errors import DataError, TaggantError, one_line
from taggant.pipeline.probe.cached import CachedLM
from taggant.pipeline.probe.generation import Greedy
from taggant.pipeline.probe.inputs import RunInputs
from taggant.pipeline.probe.run import Tokenize, probe_model
from taggant.pipeline.probe.scoring import LogitsFn
from taggant.pipeline.spec import ProbesSpec

T = TypeVar("T")


class UnreadableCheckpoint(DataError):
    """A committed checkpoint whose files cannot be loaded.

    Attributes:
        step: its step.
        reason: one line: the loader's error type and message.
    """

    def __init__(self, run_dir: str, step: int, error: BaseException):
        self.step = step
        self.reason = one_line(error)
        super().__init__(
            f"the checkpoint at step {step} of {run_dir} cannot be read "
            f"({self.reason}); delete its folder and train again from the one before"
        )


@dataclass(frozen=True)
class Checkpoint:
    """A committed checkpoint as a model under test (``probe.run.Model``).

    Attributes:
        step: its step.
        tokens_seen: training tokens it has seen (its commit record's).
        logits: the model.
        tokenize: the run's tokenizer.
        bos_id: the run's end-of-document id.
        lm: the checkpoint as an HF Llama with a KV cache (``pipeline.train.hf.to_hf``, in
            ``precision``, logits equal to the megatron model's up to float rounding), on the
            current CUDA device where there is one, built on first use only: it scores candidate
            texts and decodes.
        generate: greedy decoding on ``lm``, stopping at the end-of-document id.
        precision: the dtype both forms hold their weights in (``ProbesSpec.precision``).
    """

    step: int
    tokens_seen: int
    logits: LogitsFn
    tokenize: Tokenize
    bos_id: int
    lm: CachedLM
    generate: Greedy
    precision: str


def open_checkpoint(run_dir: str, step: int, inputs: RunInputs, precision: str) -> Checkpoint:
    """Load the committed checkpoint at ``step`` of ``run_dir`` in ``precision`` (``float32``,
    ``bfloat16``).

    Raises:
        UnreadableCheckpoint: its commit record or its files cannot be read.
    """
    from taggant.pipeline.train.checkpoint import load_logits_fn, read_commit
    from taggant.pipeline.train.model import init_parallel

    init_parallel()  # here, not in _reading: a process group that fails is not the checkpoint's
    record = _reading(run_dir, step, lambda: read_commit(run_dir, step))
    if not isinstance(record.get("tokens_seen"), int) or not isinstance(record.get("model"), dict):
        raise UnreadableCheckpoint(
            run_dir,
            step,
            ValueError(f"its commit record lacks tokens_seen or model; it has {sorted(record)}"),
        )
    logits = _reading(run_dir, step, lambda: load_logits_fn(run_dir, step, precision))
    loaded = inputs.load()
    vocab_size = record["model"]["vocab_size"]
    import torch

    # On the device the megatron model loads on: candidate texts are scored on this form.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = CachedLM(lambda: as_llama(run_dir, step, loaded.bos_id, precision), vocab_size, device)
    generate = Greedy(lm, loaded.decode, loaded.bos_id)
    return Checkpoint(
        step,
        record["tokens_seen"],
        logits,
        loaded.tokenize,
        loaded.bos_id,
        lm,
        generate,
        precision,
    )


def as_llama(run_dir: str, step: int, eod_id: int, precision: str):
    """The committed checkpoint at ``step`` as a ``transformers`` ``LlamaForCausalLM`` whose
    weights are in ``precision``."""
    import torch

    from taggant.pipeline.train import checkpoint
    from taggant.pipeline.train.model import ModelConfig

    config = ModelConfig(**checkpoint.read_commit(run_dir, step)["model"])
    llama = llama_of(checkpoint.load_model(run_dir, step), config, eod_id)
    return llama.to(getattr(torch, precision))


def llama_of(model, config, eod_id: int):
    """A megatron ``GPTModel`` of ``config`` (a ``ModelConfig``) as a ``transformers``
    ``LlamaForCausalLM`` (float32, tied embeddings, eval mode), through the same mapping as
    ``taggant export-hf`` (``pipeline.train.hf.to_hf``)."""
    from transformers import LlamaForCausalLM

    from taggant.pipeline.train import hf

    llama = LlamaForCausalLM(hf.llama_config(config, eod_id))
    missing, unexpected = llama.load_state_dict(hf.to_hf(model.state_dict(), config), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    llama.tie_weights()
    return llama.eval()


@dataclass(frozen=True)
class ProbedCheckpoint:
    """What ``probe_checkpoint`` measured.

    Attributes:
        step: the checkpoint's step.
        tokens_seen: training tokens it had seen.
        rows: the probe rows (``pipeline.store.PROBE_SCHEMA``).
    """

    step: int
    tokens_seen: int
    rows: pa.Table


def probe_checkpoint(
    run_dir: str, step: int, probes: ProbesSpec, inputs: RunInputs
) -> ProbedCheckpoint:
    """Probe the committed checkpoint at ``step`` of ``run_dir`` on the run's items with
    ``probes``.

    Raises:
        UnreadableCheckpoint: the checkpoint cannot be read.
        DataError: an item cannot be probed as asked (see ``probe_items``).
    """
    model = open_checkpoint(run_dir, step, inputs, probes.precision)
    loaded = inputs.load()
    rows = probe_model(
        model, loaded.items, probes, tokens_seen=model.tokens_seen, references=loaded.references
    )
    return ProbedCheckpoint(step, model.tokens_seen, rows)


def _reading(run_dir: str, step: int, read: Callable[[], T]) -> T:
    """``read()``, its failures as ``UnreadableCheckpoint``. The loaders raise whatever the bad
    bytes provoke (torch's ``CheckpointException``, a ``BaseException``; megatron's
    ``CheckpointingException``; ``UnpicklingError``, ``RuntimeError`` and ``AttributeError`` from
    torch.load; ``JSONDecodeError``; ``OSError``), so every error but taggant's own is the
    checkpoint's."""
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        return read()
    except TaggantError:
        raise
    except (Exception, CheckpointException) as e:  # noqa: BLE001 — re-raised, as the checkpoint's
        raise UnreadableCheckpoint(run_dir, step, e) from e
