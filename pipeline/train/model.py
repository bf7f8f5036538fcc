"""A Llama-style megatron-core GPTModel (RMSNorm, SwiGLU, RoPE, no biases, tied embeddings) from a
named preset, and the process groups it needs.

The layer spec is megatron-core's local spec with its core attention swapped for
``torch.nn.functional.scaled_dot_product_attention`` (the local ``DotProductAttention`` allocates
from a CUDA memory buffer, which fails on CPU, and SDPA picks torch's flash kernel on GPUs anyway),
or Transformer Engine's (fused norm+linear, fused RoPE, TE attention) when training asks for it
(``runs.transformer_engine``, ``use_transformer_engine``). Both specs give the same sharded
checkpoint keys (the local spec maps its norms to TE's names), so a checkpoint trained with TE
loads into the local-spec models that probes and exports build.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from megatron.core import parallel_state, tensor_parallel
from megatron.core.models.gpt import gpt_layer_specs
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig

from taggant.pipeline.errors import ConfigError
from taggant.pipeline.models import MODEL_PRESETS, ModelPreset
from taggant.pipeline.perturb.rng import derive_seed
from taggant.pipeline.train import cpu_shim

VOCAB_MULTIPLE = 128
"""The embedding is padded to a multiple of this (Megatron's ``make_vocab_size_divisible_by``); a
multiple of every tensor-parallel size a checkpoint may be resharded to, so the padded size does not
depend on the parallel layout."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the shapes of a model's weights; stored in each commit record."""

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    ffn_hidden_size: int
    vocab_size: int
    """Tokenizer vocabulary; the embedding has ``padded_vocab_size`` rows (ids above are unused)."""
    seq_length: int
    num_query_groups: int | None = None
    """Key/value heads (grouped-query attention); ``None``: one per attention head."""
    rotary_base: float = 10000.0
    """RoPE base (HF ``rope_theta``)."""
    layernorm_epsilon: float = 1e-5
    """RMSNorm epsilon. These three have the presets' values unless a model is imported
    (``pipeline.train.hf``)."""

    @classmethod
    def from_preset(cls, name: str, vocab_size: int, seq_length: int) -> ModelConfig:
        """The config of preset ``name`` (see ``pipeline.models.MODEL_PRESETS``)."""
        preset: ModelPreset = MODEL_PRESETS[name]
        return cls(**dataclasses.asdict(preset), vocab_size=vocab_size, seq_length=seq_length)

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and columns of the logits."""
        return -(-self.vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE

    def to_dict(self) -> dict[str, int | float | None]:
        return dataclasses.asdict(self)


def uses_cuda() -> bool:
    """Whether this process trains on a GPU (the CPU shim is installed otherwise)."""
    return torch.cuda.is_available()


PROCESS_GROUP_TIMEOUT_S = 1800.0
"""How long a collective (and a rank joining the group) may wait for its peers before it fails."""


def rendezvous_store(address: str, port: int, world_size: int, master: bool) -> dist.TCPStore:
    """The TCP store through which the ranks of a process group find each other.

    The master (rank 0) serves it on ``address``'s node, on ``port`` or, with ``port`` 0, on a
    port the OS picks (``.port``): bound from here on, so no other process can take it between
    its choice and the group's rendezvous. The other ranks connect to ``address:port``, waiting
    for the master up to ``PROCESS_GROUP_TIMEOUT_S``.
    """
    return dist.TCPStore(
        address,
        port,
        world_size,
        is_master=master,
        wait_for_workers=False,
        timeout=timedelta(seconds=PROCESS_GROUP_TIMEOUT_S),
    )


def init_parallel(
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    timeout_s: float = PROCESS_GROUP_TIMEOUT_S,
    store: dist.Store | None = None,
) -> None:
    """Join the process group and set up megatron's parallel state; idempotent.

    Ranks come from the environment (``RANK``, ``WORLD_SIZE``, and, without ``store``,
    ``MASTER_ADDR`` and ``MASTER_PORT`` as torchrun sets them); ``jobs.train`` passes the
    ``rendezvous_store`` its rank 0 opened instead. Without ``WORLD_SIZE`` the process makes a
    private world-size-1 group, which megatron's modules need even in one process (probes, tests).
    Backends: gloo on CPU; NCCL for CUDA tensors plus gloo for CPU ones on GPUs. ``timeout_s``
    bounds a collective, so a dead peer surfaces as an error instead of a hang. Megatron's rank
    order puts tensor parallel innermost, then data parallel, then pipeline stages (outermost), so
    ranks ``[k·TP, (k+1)·TP)`` form one tensor-parallel group.
    """
    cpu_shim.install()
    if not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s)
        backend = "cpu:gloo,cuda:nccl" if uses_cuda() else "gloo"
        if uses_cuda() and "LOCAL_RANK" in os.environ:
            # torchrun's LOCAL_RANK; jobs.train sets 0: Ray shows each rank actor only its GPU.
            # Without it the current device stays (a probe watcher picks Ray's GPU itself).
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
        if store is not None:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            dist.init_process_group(
                backend, store=store, rank=rank, world_size=world, timeout=timeout
            )
        elif "WORLD_SIZE" in os.environ:
            dist.init_process_group(backend, timeout=timeout)
        else:
            dist.init_process_group(
                backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout
            )
    if not parallel_state.model_parallel_is_initialized():
        world = dist.get_world_size()
        if world % (tensor_parallel_size * pipeline_parallel_size):
            raise ConfigError(
                [
                    (
                        "runs.tensor_parallel_size",
                        (
                            f"tensor {tensor_parallel_size} × pipeline {pipeline_parallel_size} does not "
                            f"divide the world size {world}"
                        ),
                    )
                ]
            )
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=tensor_parallel_size,
            pipeline_model_parallel_size=pipeline_parallel_size,
        )


def use_transformer_engine(choice: str, cuda: bool, installed: bool) -> bool:
    """Whether a model trains with Transformer Engine's layer spec, for ``runs.transformer_engine``
    = ``choice`` (``auto``, ``on`` or ``off``), given CUDA and TE's presence.

    TE's layers run only on CUDA, so without CUDA the answer is no (``on`` is then an error, as is
    ``on`` without TE installed), and importable TE alone never decides it: a CPU probe or export
    in an image that has TE must still build the local spec.
    """
    if choice not in ("auto", "on", "off"):
        raise ConfigError([("runs.transformer_engine", f"{choice!r}: use auto, on or off")])
    if choice == "off":
        return False
    if choice == "on" and not (cuda and installed):
        missing = " and ".join(
            m for m, ok in (("a CUDA device", cuda), ("transformer_engine", installed)) if not ok
        )
        fix = (
            f"'on' needs {missing}; build the image with --build-arg TRANSFORMER_ENGINE=1 "
            "(cluster/README.md) and train on GPUs, or set auto or off"
        )
        raise ConfigError([("runs.transformer_engine", fix)])
    return cuda and installed


def transformer_engine_installed() -> bool:
    return importlib.util.find_spec("transformer_engine") is not None


def build_model(
    config: ModelConfig, seed: int, bf16: bool = False, transformer_engine: str = "off"
) -> GPTModel:
    """A GPTModel on this process's device with identical initial weights on every data-parallel
    rank.

    Call ``init_parallel`` first. ``seed`` fixes the initial weights (``seed_init_rngs``): on CPU
    tensor-parallel ranks build their slices of the same full weights; on CUDA each draws its own
    slice, so there the initial weights depend on the tensor-parallel size. With pipeline stages
    each rank builds only its stage's layers (the embedding on the first, the output head on the
    last: megatron copies the tied embedding there and all-reduces its gradients), each stage from
    its own seed; as in Megatron-LM, the initial weights then depend on the pipeline layout, while
    checkpoints load into any layout. ``bf16`` keeps the weights in bf16 (GPU training; the
    megatron optimizer then holds fp32 master copies). ``transformer_engine``: the run's
    ``runs.transformer_engine``; the default ``off`` is what probes and exports use.
    """
    tp = parallel_state.get_tensor_model_parallel_world_size()
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    if config.num_layers % pp:
        raise ConfigError(
            [
                (
                    "runs.pipeline_parallel_size",
                    f"{pp} does not divide the {config.num_layers} layers; use a divisor",
                )
            ]
        )
    if config.num_attention_heads % tp or config.padded_vocab_size % tp:
        raise ConfigError(
            [
                (
                    "runs.tensor_parallel_size",
                    (
                        f"{tp} must divide the attention heads ({config.num_attention_heads}) and the padded "
                        f"vocabulary ({config.padded_vocab_size}); use a power of two up to the head count"
                    ),
                )
            ]
        )
    te = use_transformer_engine(transformer_engine, uses_cuda(), transformer_engine_installed())
    seed_init_rngs(seed, parallel_state.get_pipeline_model_parallel_rank(), uses_cuda())
    model = GPTModel(
        config=transformer_config(config, tp, bf16, pp, transformer_engine=te),
        transformer_layer_spec=_layer_spec(te),
        vocab_size=config.padded_vocab_size,
        max_sequence_length=config.seq_length,
        pre_process=parallel_state.is_pipeline_first_stage(),
        post_process=parallel_state.is_pipeline_last_stage(),
        position_embedding_type="rope",
        rotary_base=config.rotary_base,
        share_embeddings_and_output_weights=True,
    )
    return model.cuda() if uses_cuda() else model


def stage_seed(seed: int, pipeline_rank: int) -> int:
    """The initialisation seed of pipeline stage ``pipeline_rank`` of a run seeded ``seed``.

    Stage 0 keeps the run's seed, so a single-stage model's weights do not depend on this rule.
    Every later stage gets its own seed: stages after the first build no embedding, so with one
    seed they would draw the same numbers for the same shapes and start from identical layers.
    Megatron-LM adds ``100 * pp_rank``; a derived seed is used instead (``perturb.rng``) because
    ``seed + 100 * pp_rank`` makes the stage 1 of seed 0 start where stage 0 of seed 100 does,
    and seeds are replicates that must start apart. Reduced to 62 bits so that megatron's own
    offsets (``+ 2718 + tp_rank``, ``+ 1024 + ...``) stay within torch's 64-bit seed range.
    """
    if pipeline_rank == 0:
        return seed
    return derive_seed(seed, "model_init", "pipeline_stage", pipeline_rank) % 2**62


def seed_init_rngs(seed: int, pipeline_rank: int, cuda: bool) -> int:
    """Seed the generators the initial weights are drawn from, for one pipeline stage; returns
    the stage's seed (``stage_seed``).

    On CPU (``use_cpu_initialization``) megatron draws each full weight from torch's global
    generator and keeps this tensor-parallel rank's slice, so every tensor-parallel rank of a
    stage must share the seed. On CUDA it draws each rank's slice on the GPU inside megatron's RNG
    tracker, which ``model_parallel_cuda_manual_seed`` seeds ``stage seed + 2718 + tp_rank``:
    distinct per tensor-parallel rank, equal across data-parallel ranks (as in Megatron-LM). The
    tracker has no pipeline term, hence the stage seed here. Call after ``init_parallel``.
    """
    stage = stage_seed(seed, pipeline_rank)
    torch.manual_seed(stage)
    if cuda:
        tensor_parallel.model_parallel_cuda_manual_seed(stage)
    return stage


def transformer_config(
    config: ModelConfig,
    tensor_parallel_size: int,
    bf16: bool,
    pipeline_parallel_size: int = 1,
    transformer_engine: bool = False,
) -> TransformerConfig:
    """The megatron TransformerConfig of a Llama-style model; fusions that need CUDA kernels are
    on only with CUDA, and TE's fused RoPE only with ``transformer_engine``.

    On CUDA the bias-activation and bias-dropout fusions are megatron's ``jit_fuser`` functions,
    i.e. ``torch.compile``: Triton then builds its launcher with a C compiler and ``Python.h``,
    which the cluster image installs (cluster/Dockerfile)."""
    cuda = uses_cuda()
    dtype = torch.bfloat16 if bf16 else torch.float32
    return TransformerConfig(
        num_layers=config.num_layers,
        hidden_size=config.hidden_size,
        num_attention_heads=config.num_attention_heads,
        num_query_groups=config.num_query_groups,
        ffn_hidden_size=config.ffn_hidden_size,
        tensor_model_parallel_size=tensor_parallel_size,
        pipeline_model_parallel_size=pipeline_parallel_size,
        # Batched isend/irecv is for NCCL; gloo takes the plain point-to-point ops.
        batch_p2p_comm=cuda,
        normalization="RMSNorm",
        layernorm_epsilon=config.layernorm_epsilon,
        gated_linear_unit=True,  # SwiGLU = gated linear unit with SiLU
        activation_func=torch.nn.functional.silu,
        add_bias_linear=False,
        # No dropout: modern pretraining practice, and memorization is what is measured.
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=0.02,
        bf16=bf16,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        use_cpu_initialization=not cuda,
        bias_activation_fusion=cuda,
        bias_dropout_fusion=cuda,
        masked_softmax_fusion=False,
        # megatron's fused RoPE is TE's kernel (rope_utils); without TE it cannot be on.
        apply_rope_fusion=transformer_engine,
        persist_layer_norm=False,
    )


class SDPACoreAttention(MegatronModule):
    """Causal self-attention through ``scaled_dot_product_attention``.

    Takes megatron's ``[seq, batch, heads, head_dim]`` layout and returns
    ``[seq, batch, heads * head_dim]``, like ``DotProductAttention``. Attention is causal over the
    whole sample, across document boundaries (megatron's default: no mask reset at EOD).
    """

    def __init__(
        self,
        config,
        layer_number,
        attn_mask_type,
        attention_type,
        attention_dropout=None,
        softmax_scale=None,
        cp_comm_type=None,
        pg_collection=None,
    ):
        super().__init__(config=config)
        self.softmax_scale = softmax_scale

    def forward(
        self,
        query,
        key,
        value,
        attention_mask,
        attn_mask_type=None,
        attention_bias=None,
        packed_seq_params=None,
    ):
        seq, batch, heads, head_dim = query.shape
        q, k, v = (x.permute(1, 2, 0, 3) for x in (query, key, value))
        out = torch.nn.functional.scaled_dot_product_attention(
            q,
            k,
            v,
            is_causal=True,
            scale=self.softmax_scale,
            enable_gqa=k.shape[1] != q.shape[1],  # grouped-query attention (imported models)
        )
        return out.permute(2, 0, 1, 3).reshape(seq, batch, heads * head_dim)


def _layer_spec(transformer_engine: bool):
    if transformer_engine:
        return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec()
    spec = gpt_layer_specs.get_gpt_layer_local_spec(normalization="RMSNorm")
    spec.submodules.self_attention.submodules.core_attention = SDPACoreAttention
    return spec
