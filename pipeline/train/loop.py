"""The training loop of one rank: megatron-core DDP, its optimizer and LR scheduler, its
forward-backward schedule, and checkpoints on the run's schedule.

Every rank of a run builds a ``Trainer`` (``jobs.train`` puts one in each Ray actor; torchrun or a
plain process works too) and calls ``train_until(k)``. The call is idempotent: a trainer resumes
from the run's newest committed checkpoint when it is built, and ``train_until`` only trains the
steps still missing, so re-running a call after a restart cannot train a step twice.

Data: the only source of tokens is the run's sample stream (``pipeline.data``), read in training
order. Optimizer step ``s`` consumes samples ``[s × G, (s + 1) × G)`` (``G`` = global batch); data-
parallel rank ``r`` of ``D`` takes the ``r``-th of ``D`` equal slices of them, split into micro-
batches. Which samples a step consumes depends only on the step, so a resumed run reads exactly the
samples an uninterrupted one would have read from there on. A background thread reads the next
``prefetch_steps`` steps' slices while a step computes (``prefetch``; pinned host memory on GPUs);
it changes when samples are read, never which.

Loss: next-token cross entropy on every position of a sample, the EOD positions included (Megatron's
``eod_mask_loss=False``): predicting EOD teaches where documents end, and inserted items end with
one. Attention runs over the whole sample across document boundaries (no reset at EOD), as in
Megatron's default.

Parallelism: ``W = data × tensor × pipeline`` ranks (megatron's rank order: tensor innermost).
With pipeline stages, every stage reads the same microbatches (the first stage embeds the tokens,
the last one scores the labels; the stages in between get activations over point-to-point sends)
and megatron's 1F1B schedule interleaves their forward and backward passes. The tied embedding
lives on the first and the last stage; ``finalize_model_grads`` all-reduces its gradient between
them, so both copies take the same update.

Progress: rank 0 logs loss, lr, tokens/s and ETA every ``log_interval_steps`` and appends them to
``<run_dir>/metrics.jsonl`` (``progress``), optionally TensorBoard too.

Devices: on GPUs the weights are bf16 with fp32 master weights in the optimizer, gradients are
clipped at 1.0, reduced while the backward pass runs, and the optimizer state is sharded over
data-parallel ranks (megatron's distributed optimizer). On CPU everything is fp32, unclipped and
replicated, as megatron-core only supports there (see ``cpu_shim``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
from megatron.core.distributed.finalize_model_grads import finalize_model_grads
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.transformer.module import Float16Module

from taggant.pipeline.errors import DataError
from taggant.pipeline.spec import ExperimentSpec, RunId
from taggant.pipeline.train import checkpoint, cpu_shim, hf
from taggant.pipeline.train.model import ModelConfig, build_model, init_parallel, uses_cuda
from taggant.pipeline.train.prefetch import Prefetcher
from taggant.pipeline.train.progress import METRICS, Progress
from taggant.pipeline.train.schedule import full_checkpoint_steps, run_checkpoint_steps


class SampleSource(Protocol):
    """The run's sample stream in training order (``pipeline.data.TrainingSamples``)."""

    seq_length: int

    def __len__(self) -> int: ...

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` as int32 ``[stop - start, seq_length + 1]``."""
        ...


@dataclass(frozen=True)
class TrainConfig:
    """What one run trains: the model, the optimizer, the batch shape and the checkpoint steps."""

    model: ModelConfig
    seed: int
    """Initial weights."""
    num_steps: int
    global_batch_sequences: int
    micro_batch_sequences: int
    lr: float
    min_lr: float
    lr_schedule: str
    """``cosine`` (decay to ``min_lr`` at the last step) or ``constant``, after linear warm-up."""
    warmup_steps: int
    weight_decay: float
    tensor_parallel_size: int
    checkpoint_steps: tuple[int, ...]
    pipeline_parallel_size: int = 1
    log_interval_steps: int = 10
    """Steps between progress records (``progress``)."""
    tensorboard: bool = False
    init_checkpoint: str | None = None
    """An imported model (``hf.import_hf``) the weights start from instead of ``seed``."""
    transformer_engine: str = "off"
    """``runs.transformer_engine``: whether training builds Transformer Engine's layer spec."""
    resume_every_steps: int = 0
    """``checkpoints.resume_every_steps``: which checkpoints hold the optimizer state
    (``schedule.full_checkpoint_steps``; 0: all)."""
    prefetch_steps: int = 2
    """``runs.prefetch_steps``: steps whose samples are read ahead on a background thread (0:
    read at the step's start, in the training thread); never changes what is read."""

    @classmethod
    def from_spec(
        cls, spec: ExperimentSpec, run: RunId, vocab_size: int, init_checkpoint: str | None = None
    ) -> TrainConfig:
        """The config of ``run`` in ``spec`` with a tokenizer of ``vocab_size`` ids; with
        ``init_checkpoint`` (``runs.init_from_hf`` imported there) the model is that one."""
        runs = spec.runs
        num_steps = runs.num_steps(run.train_tokens)
        return cls(
            model=(
                hf.init_model_config(init_checkpoint)
                if init_checkpoint
                else ModelConfig.from_preset(run.model_size, vocab_size, runs.seq_length_tokens)
            ),
            seed=run.seed,
            num_steps=num_steps,
            global_batch_sequences=runs.global_batch_sequences,
            micro_batch_sequences=runs.micro_batch_sequences,
            lr=runs.lr,
            min_lr=runs.min_lr,
            lr_schedule=runs.lr_schedule,
            warmup_steps=round(runs.warmup_frac * num_steps),
            weight_decay=runs.weight_decay,
            tensor_parallel_size=runs.tensor_parallel_size,
            checkpoint_steps=tuple(run_checkpoint_steps(spec, run.train_tokens)),
            pipeline_parallel_size=runs.pipeline_parallel_size,
            log_interval_steps=runs.log_interval_steps,
            tensorboard=runs.tensorboard,
            init_checkpoint=init_checkpoint,
            transformer_engine=runs.transformer_engine,
            resume_every_steps=spec.checkpoints.resume_every_steps,
            prefetch_steps=runs.prefetch_steps,
        )


class Trainer:
    """One rank of a run; every rank of the run builds one with the same arguments.

    Building it joins the process group (see ``model.init_parallel``), builds the model, megatron's
    DDP wrapper, optimizer and scheduler, and resumes from the newest committed full checkpoint in
    ``run_dir`` (``checkpoint.resume_step``), if any. ``on_commit(step)`` is called on every rank
    after each checkpoint is committed: on CPU before the next step, on GPU (asynchronous saves,
    ``checkpoint.Saver``) at the first step after every rank's write finished, and at the latest
    before ``train_until`` returns (``jobs.train`` exports there).

    Checkpoints at ``schedule.full_checkpoint_steps`` hold the optimizer state and the scheduler,
    the others the model only. A weights-only checkpoint committed after the resume step (before a
    crash) is kept, not written again: it holds the weights the retrained steps reach again (the
    same samples in the same order; bit-identical on CPU, up to GPU kernels' nondeterminism).

    Raises:
        DataError: the sample stream does not match the config (sequence length, sample count).
    """

    def __init__(
        self,
        config: TrainConfig,
        samples: SampleSource,
        run_dir: str,
        on_commit: Callable[[int], None] | None = None,
    ):
        init_parallel(config.tensor_parallel_size, config.pipeline_parallel_size)
        self.config, self.samples, self.run_dir = config, samples, run_dir
        self._check_samples()
        dp_size = parallel_state.get_data_parallel_world_size()
        self._rank_sequences = config.global_batch_sequences // dp_size
        assert self._rank_sequences % config.micro_batch_sequences == 0, "the spec checks this"
        self._dp_rank = parallel_state.get_data_parallel_rank()
        self._cuda_device = torch.cuda.current_device() if uses_cuda() else None

        bf16 = uses_cuda()
        module = build_model(
            config.model, config.seed, bf16=bf16, transformer_engine=config.transformer_engine
        )
        if config.init_checkpoint:
            hf.load_init(module, config.init_checkpoint)  # a resume below loads over it
        transformer_config = module.config
        if bf16:
            module = Float16Module(transformer_config, module)
        # The distributed optimizer checks for CUDA tensor types. With it, the parameter
        # all-gather overlaps the next forward (as Megatron-LM's --overlap-param-gather).
        distributed = uses_cuda() and dp_size > 1
        self.model = DistributedDataParallel(
            config=transformer_config,
            ddp_config=DistributedDataParallelConfig(
                grad_reduce_in_fp32=True,
                overlap_grad_reduce=uses_cuda(),
                use_distributed_optimizer=distributed,
                overlap_param_gather=distributed,
            ),
            module=module,
        )
        self.optimizer = get_megatron_optimizer(
            OptimizerConfig(
                optimizer="adam",
                lr=config.lr,
                min_lr=config.min_lr,
                weight_decay=config.weight_decay,
                adam_beta1=0.9,
                adam_beta2=0.95,
                adam_eps=1e-8,
                # Clipping asserts CUDA tensors; unclipped CPU runs were stable at lr 1e-3.
                clip_grad=1.0 if uses_cuda() else 0.0,
                bf16=bf16,
                params_dtype=torch.bfloat16 if bf16 else torch.float32,
                use_distributed_optimizer=distributed,
                overlap_param_gather=distributed,
            ),
            [self.model],
        )
        self.scheduler = OptimizerParamScheduler(
            self.optimizer,
            init_lr=0.0,
            max_lr=config.lr,
            min_lr=config.min_lr,
            lr_warmup_steps=config.warmup_steps,
            lr_decay_steps=config.num_steps,
            lr_decay_style=config.lr_schedule,
            start_wd=config.weight_decay,
            end_wd=config.weight_decay,
            wd_incr_steps=config.num_steps,
            wd_incr_style="constant",
        )
        # Megatron-LM's wiring: the schedule syncs grads on the last microbatch and then finalizes.
        transformer_config.no_sync_func = self.model.no_sync
        transformer_config.finalize_model_grads_func = finalize_model_grads
        transformer_config.grad_scale_func = self.optimizer.scale_loss
        self._forward_backward = get_forward_backward_func()

        self._full_steps = set(
            full_checkpoint_steps(sorted(config.checkpoint_steps), config.resume_every_steps)
        )
        # Fully parallel saves (data-parallel replicas share the writing), asynchronous on GPUs
        # (Megatron-LM's recipe; unproven on a GPU here); synchronous on CPU, as megatron's async
        # queue syncs over CUDA tensors.
        self._saver = checkpoint.Saver(
            run_dir,
            on_commit,
            fully_parallel_group=parallel_state.get_data_parallel_group(with_context_parallel=True),
            asynchronous=uses_cuda(),
        )
        self.step = 0
        resume = checkpoint.resume_step(run_dir)
        if resume:
            self._load(resume)
        if dist.get_rank() == 0:  # the steps after the resume step are trained and logged again
            for name in (checkpoint.TRAIN_LOG, METRICS):
                checkpoint.drop_records_after(os.path.join(run_dir, name), self.step)
        self.progress = (
            Progress(
                run_dir,
                config.num_steps,
                config.global_batch_sequences * config.model.seq_length,
                config.log_interval_steps,
                tensorboard=config.tensorboard,
            )
            if dist.get_rank() == 0
            else None
        )

    # --- public commands -----------------------------------------------------------------------

    def train_until(self, step: int) -> dict[str, Any]:
        """Train until ``step`` optimizer steps are done, checkpointing on the schedule; idempotent.

        Collective: every rank must make the same call. Returns ``status()`` plus ``losses``:
        ``[step, loss]`` of each step trained by this call (the global-batch mean loss).
        """
        cpu_shim.install()
        assert step <= self.config.num_steps, f"{step} > the last step {self.config.num_steps}"
        losses = []
        if self.progress is not None:
            self.progress.start()
        # Step s + 1's samples are read while step s computes (and while checkpoints save).
        with Prefetcher(
            self._read_rows, range(self.step, step), self.config.prefetch_steps, "samples"
        ) as reader:
            while self.step < step:
                record = self._train_step(reader.get(self.step))
                losses.append([record["step"], record["loss"]])
                if self.progress is not None:
                    self.progress.step_done(record)
                self._saver.poll()  # commits the background saves that finished
                if self.step in self.config.checkpoint_steps:
                    self._save()
                    if self.progress is not None:
                        self.progress.start()  # the save is not training time
        self._saver.poll(blocking=True)  # every checkpoint trained so far is committed on return
        return {**self.status(), "losses": losses}

    def status(self) -> dict[str, Any]:
        """Progress of this rank: ``step``, ``samples_seen``, ``tokens_seen``, ranks."""
        samples = self.step * self.config.global_batch_sequences
        return {
            "step": self.step,
            "samples_seen": samples,
            "tokens_seen": samples * self.config.model.seq_length,
            "rank": dist.get_rank(),
            "data_parallel_rank": self._dp_rank,
            "tensor_parallel_rank": parallel_state.get_tensor_model_parallel_rank(),
            "pipeline_parallel_rank": parallel_state.get_pipeline_model_parallel_rank(),
        }

    def weights_digest(self) -> str:
        """SHA-256 of this rank's weights; equal on ranks holding the same shards (DP replicas)."""
        digest = hashlib.sha256()
        for name, param in sorted(self.model.module.named_parameters()):
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()

    def close(self) -> None:
        """Leave megatron's parallel state and the process group."""
        if self.progress is not None:
            self.progress.close()
        parallel_state.destroy_model_parallel()
        dist.destroy_process_group()

    # --- internals -------------------------------------------------------------------------------

    def _check_samples(self) -> None:
        c = self.config
        if self.samples.seq_length != c.model.seq_length:
            raise DataError(
                f"the sample stream of {self.run_dir} has sequences of {self.samples.seq_length} "
                f"tokens but the run trains on {c.model.seq_length}; rebuild the run folder from "
                "this spec"
            )
        needed = c.num_steps * c.global_batch_sequences
        if len(self.samples) < needed:
            raise DataError(
                f"the sample stream of {self.run_dir} has {len(self.samples)} samples but "
                f"{c.num_steps} steps need {needed}; rebuild the run folder from this spec"
            )

    def _read_rows(self, step: int) -> torch.Tensor:
        """This rank's samples of ``step`` (int64, on the host; pinned on GPUs, so that the copy
        to the device can overlap); runs on the prefetch thread."""
        start = step * self.config.global_batch_sequences + self._dp_rank * self._rank_sequences
        rows = torch.from_numpy(
            self.samples.read(start, start + self._rank_sequences).astype(np.int64)
        )
        if self._cuda_device is None:
            return rows
        # A thread's current device starts at 0 (as torch's DataLoader pin thread, set it): under
        # torchrun that is another rank's GPU, where pinning would open a second CUDA context.
        torch.cuda.set_device(self._cuda_device)
        return rows.pin_memory()

    def _microbatches(self, rows: torch.Tensor) -> Iterator[dict[str, torch.Tensor]]:
        if self._cuda_device is not None:
            rows = rows.cuda(non_blocking=True)
        for micro in rows.split(self.config.micro_batch_sequences):
            yield {"tokens": micro[:, :-1], "labels": micro[:, 1:]}

    def _train_step(self, rows: torch.Tensor) -> dict[str, Any]:
        """One optimizer step on ``rows``, this rank's samples of step ``self.step``."""
        c = self.config
        first_sample = self.step * c.global_batch_sequences
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        outputs = self._forward_backward(
            forward_step_func=_forward_step,
            data_iterator=self._microbatches(rows),
            model=self.model,
            num_microbatches=self._rank_sequences // c.micro_batch_sequences,
            seq_length=c.model.seq_length,
            micro_batch_size=c.micro_batch_sequences,
            forward_only=False,
        )
        lr = self.optimizer.param_groups[0]["lr"]  # the scheduler moves it on after the step
        ok, grad_norm, _ = self.optimizer.step()
        assert ok, "an fp32/bf16 step never skips (no loss scaler)"
        self.scheduler.step(increment=1)
        self.step += 1
        record = {
            "step": self.step,
            "loss": self._global_mean_loss(outputs),
            "lr": lr,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "samples": [first_sample, first_sample + c.global_batch_sequences],
        }
        if dist.get_rank() == 0:
            checkpoint.append_train_log(self.run_dir, record)
        return record

    def _global_mean_loss(self, outputs: list[dict[str, torch.Tensor]]) -> float:
        """The step's loss averaged over every microbatch of every data-parallel rank; the same
        number on every rank. Only the last pipeline stage computes losses (``outputs`` is empty
        on the others), so it sends the mean to the other stages of its pipeline."""
        local = torch.zeros(1, device="cuda" if uses_cuda() else "cpu")
        if parallel_state.is_pipeline_last_stage():
            local = torch.stack([o["loss"] for o in outputs]).mean().reshape(1).float()
            dist.all_reduce(local, group=parallel_state.get_data_parallel_group())
        if parallel_state.get_pipeline_model_parallel_world_size() > 1:
            dist.broadcast(
                local,
                src=parallel_state.get_pipeline_model_parallel_last_rank(),
                group=parallel_state.get_pipeline_model_parallel_group(),
            )
        return local.item() / parallel_state.get_data_parallel_world_size()

    def _state(self, loading: bool, full: bool = True) -> dict[str, Any]:
        model_state = self.model.module.sharded_state_dict()
        if not full:
            return {"model": model_state}
        return {
            "model": model_state,
            "optimizer": self.optimizer.sharded_state_dict(model_state, is_loading=loading),
            "scheduler": self.scheduler.state_dict(),
        }

    def _save(self) -> None:
        if self.step in checkpoint.committed_steps(self.run_dir):
            return  # a weights-only checkpoint from before the restart (see the class docstring)
        # With the parameter all-gather overlapped, the last step's gather completes only in the
        # next forward: finish it before saving (Megatron-LM disables the pre-hooks around saves).
        if self.model.use_forward_hook:
            self.model.disable_forward_pre_hook()
        try:
            self._write_checkpoint()
        finally:
            if self.model.use_forward_hook:
                self.model.enable_forward_pre_hook()

    def _write_checkpoint(self) -> None:
        status = self.status()
        full = self.step in self._full_steps
        self._saver.save(
            self.step,
            self._state(loading=False, full=full),
            {
                "samples_seen": status["samples_seen"],
                "tokens_seen": status["tokens_seen"],
                "model": self.config.model.to_dict(),
                "train": {
                    k: v
                    for k, v in asdict(self.config).items()
                    if k not in ("model", "checkpoint_steps")
                },
            },
            checkpoint.FULL if full else checkpoint.WEIGHTS,
        )

    def _load(self, step: int) -> None:
        state = checkpoint.load(self.run_dir, step, self._state(loading=True))
        self.model.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = step


def _forward_step(data_iterator, model):
    """Megatron's forward-step contract: the model output and a function turning it into a loss."""
    batch = next(data_iterator)
    per_token = model(batch["tokens"], None, None, labels=batch["labels"])  # [batch, seq]
    return per_token, _mean_loss


def _mean_loss(per_token: torch.Tensor):
    loss = per_token.float().mean()
    # clone(): the schedule divides the returned loss in place by the number of microbatches.
    return loss, {"loss": loss.detach().clone()}
