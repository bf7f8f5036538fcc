"""taggant's megatron-core GPT ↔ Hugging Face ``LlamaForCausalLM``, both directions from one table.

taggant's model (``pipeline.train.model``) is Llama's architecture: RMSNorm before attention and
MLP, SwiGLU, rotary embeddings in the rotate-half convention (megatron's default,
``rotary_interleaved=False``, which is also HF Llama's), no biases, tied input and output
embeddings. The weights differ only in names and in two fusions, which ``_LAYER`` lists once:

- ``linear_qkv`` holds Q, K and V fused, interleaved per query group ``g``: the rows of the query
  heads of ``g``, then ``k_g``, then ``v_g`` (megatron's layout; HF keeps three matrices);
- ``linear_fc1`` holds SwiGLU's ``[gate; up]`` (HF: ``gate_proj``, ``up_proj``).

Both directions work on the full, unsharded state dict of a model built at tensor- and
pipeline-parallel size 1. Checkpoints of any parallel layout are read into that shape by
megatron's own ``dist_checkpointing`` resharding (``checkpoint.load_model``), and an imported model
is written as a model-only dist checkpoint that a trainer of any layout loads (``load_init``), so
no code here splits or gathers tensor-parallel shards.

Vocabulary: the embedding has ``ModelConfig.padded_vocab_size`` rows; an export keeps the first
``vocab_size`` (the tokenizer's ids) and drops the padding, which no token id reaches; an import
zero-pads the model's rows up to the padded size.

An export folder is self-describing: ``model.safetensors``, ``config.json``, the run's ``tokenizer.json`` (with a post-processor that puts the
end-of-document token before every text, as every training document followed one) and
``tokenizer_config.json``, and ``taggant_export.json`` (``EXPORT_META``: experiment, run, step,
tokens seen, manifest hash, taggant version, source checkpoint). Equal checkpoints give
byte-identical folders.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

from taggant.pipeline import io
from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.train import checkpoint

if TYPE_CHECKING:
    import torch

    from taggant.pipeline.train.model import ModelConfig

EXPORT_VERSION = "hf_export.v1"
IMPORT_VERSION = "hf_import.v1"
EXPORT_META = "taggant_export.json"
IMPORT_RECORD = "import.json"
WEIGHTS = "model.safetensors"

_GLOBAL = {
    "embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "decoder.final_layernorm.weight": "model.norm.weight",
}
"""Megatron name → HF name of the tensors outside the layers."""

_LAYER = {
    "input_layernorm.weight": ("input_layernorm.weight",),
    "self_attention.linear_qkv.weight": (
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
    ),
    "self_attention.linear_proj.weight": ("self_attn.o_proj.weight",),
    "pre_mlp_layernorm.weight": ("post_attention_layernorm.weight",),
    "mlp.linear_fc1.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
    "mlp.linear_fc2.weight": ("mlp.down_proj.weight",),
}
"""Megatron name (under ``decoder.layers.<i>.``) → HF names (under ``model.layers.<i>.``); a
fused megatron tensor maps to several HF ones, in the order they are fused."""

_TE_NAMES = {
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "mlp.linear_fc1.layer_norm_weight": "pre_mlp_layernorm.weight",
}
"""Transformer Engine's layer spec (used when TE is installed) fuses each norm into the linear
layer after it; these are the local spec's names for those weights."""


# --- the mapping -------------------------------------------------------------------------------


def to_hf(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """HF Llama tensors of a full megatron state dict (local- or TE-spec names).

    The embedding is cut to ``config.vocab_size`` rows. ``_extra_state`` entries and the tied
    output layer (absent from the state) are skipped.
    """
    import torch

    state = {_local_name(k): v for k, v in state.items() if not k.endswith("_extra_state")}
    out = {hf: state.pop(name) for name, hf in _GLOBAL.items()}
    out["model.embed_tokens.weight"] = out["model.embed_tokens.weight"][: config.vocab_size]
    for i in range(config.num_layers):
        for name, hf_names in _LAYER.items():
            parts = _split(name, state.pop(f"decoder.layers.{i}.{name}"), config)
            out.update({f"model.layers.{i}.{hf}": t for hf, t in zip(hf_names, parts)})
    assert not state, f"megatron tensors without an HF name: {sorted(state)}"
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


def from_hf(tensors: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """A full megatron state dict (local-spec names) of HF Llama ``tensors``.

    The embedding is cut or zero-padded to ``config.padded_vocab_size`` rows.

    Raises:
        DataError: a tensor is missing, one is left over, or an untied ``lm_head`` differs from
            the embedding (taggant's model ties them).
    """
    import torch

    tensors = dict(tensors)
    head = tensors.pop("lm_head.weight", None)
    missing = [hf for hf in _hf_names(config) if hf not in tensors]
    if missing:
        raise DataError(
            f"the Hugging Face weights lack {missing[:3]} (and {len(missing)} in all); "
            "give a complete LlamaForCausalLM checkpoint"
        )
    embedding = tensors["model.embed_tokens.weight"]
    if head is not None and not torch.equal(head, embedding):
        raise DataError(
            "lm_head.weight differs from model.embed_tokens.weight, but taggant's "
            "model ties them; use a model with tie_word_embeddings"
        )
    rows = torch.zeros(config.padded_vocab_size, embedding.shape[1], dtype=embedding.dtype)
    n = min(len(embedding), config.padded_vocab_size)
    rows[:n] = embedding[:n]
    tensors["model.embed_tokens.weight"] = rows
    out = {name: tensors.pop(hf) for name, hf in _GLOBAL.items()}
    for i in range(config.num_layers):
        for name, hf_names in _LAYER.items():
            parts = [tensors.pop(f"model.layers.{i}.{hf}") for hf in hf_names]
            out[f"decoder.layers.{i}.{name}"] = _fuse(name, parts, config)
    if tensors:
        raise DataError(
            f"the Hugging Face weights hold tensors taggant's model has no place for: "
            f"{sorted(tensors)[:3]}; only plain Llama checkpoints import"
        )
    return {k: v.to(torch.float32).contiguous() for k, v in out.items()}


def _hf_names(config: ModelConfig) -> list[str]:
    layers = [
        f"model.layers.{i}.{hf}"
        for i in range(config.num_layers)
        for hfs in _LAYER.values()
        for hf in hfs
    ]
    return [*_GLOBAL.values(), *layers]


def _local_name(name: str) -> str:
    prefix, _, rest = name.partition(".layers.")
    if rest:
        index, _, suffix = rest.partition(".")
        if suffix in _TE_NAMES:
            return f"{prefix}.layers.{index}.{_TE_NAMES[suffix]}"
    return name


def _qkv_shape(config: ModelConfig) -> tuple[int, int, int]:
    groups = config.num_query_groups or config.num_attention_heads
    return (
        groups,
        config.num_attention_heads // groups,
        config.hidden_size // config.num_attention_heads,
    )


def _split(name: str, tensor: torch.Tensor, config: ModelConfig) -> list[torch.Tensor]:
    """One megatron tensor as its HF parts (``_LAYER``'s order)."""
    if name == "self_attention.linear_qkv.weight":
        groups, per_group, head_dim = _qkv_shape(config)
        grouped = tensor.view(groups, per_group + 2, head_dim, config.hidden_size)
        return [
            grouped[:, :per_group].reshape(-1, config.hidden_size),
            grouped[:, per_group].reshape(-1, config.hidden_size),
            grouped[:, per_group + 1].reshape(-1, config.hidden_size),
        ]
    if name == "mlp.linear_fc1.weight":
        return list(tensor.chunk(2, dim=0))
    return [tensor]


def _fuse(name: str, parts: list[torch.Tensor], config: ModelConfig) -> torch.Tensor:
    """The inverse of ``_split``."""
    import torch

    if name == "self_attention.linear_qkv.weight":
        groups, per_group, head_dim = _qkv_shape(config)
        q, k, v = (p.reshape(groups, -1, head_dim, config.hidden_size) for p in parts)
        assert q.shape[1] == per_group, (q.shape, per_group)
        return torch.cat([q, k, v], dim=1).reshape(-1, config.hidden_size)
    return torch.cat(parts, dim=0)


# --- configs -----------------------------------------------------------------------------------


def llama_config(config: ModelConfig, eod_id: int):
    """The ``transformers.LlamaConfig`` of a model (``eod_id``: BOS and EOS token)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.ffn_hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_query_groups or config.num_attention_heads,
        head_dim=config.hidden_size // config.num_attention_heads,
        hidden_act="silu",
        max_position_embeddings=config.seq_length,
        rms_norm_eps=config.layernorm_epsilon,
        rope_parameters={"rope_type": "default", "rope_theta": config.rotary_base},
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=True,
        bos_token_id=eod_id,
        eos_token_id=eod_id,
        dtype="float32",
    )


def model_config_from_hf(folder: str, vocab_size: int, seq_length: int) -> ModelConfig:
    """The ``ModelConfig`` of the HF Llama model in ``folder`` for a tokenizer of ``vocab_size``
    ids and samples of ``seq_length`` tokens.

    Raises:
        ConfigError: the folder holds no Llama config, or a Llama variant taggant's model cannot
            express (biases, untied embeddings, scaled RoPE, another activation or head size).
        DataError: the tokenizer has more ids than the model has embedding rows.
    """
    _require_transformers("runs.init_from_hf")
    path = os.path.join(folder, "config.json")
    if not os.path.exists(path):
        raise ConfigError(
            [
                (
                    "runs.init_from_hf",
                    f"{folder!r} has no config.json; give a local "
                    "Hugging Face model folder (config.json, *.safetensors)",
                )
            ]
        )
    from transformers import LlamaConfig

    from taggant.pipeline.train.model import ModelConfig

    raw = io.read_json(path)
    if raw.get("model_type") != "llama":
        raise ConfigError(
            [
                (
                    "runs.init_from_hf",
                    f"{folder!r} holds a {raw.get('model_type')!r} "
                    "model; only Llama-architecture models (model_type llama) import",
                )
            ]
        )
    hf = LlamaConfig.from_pretrained(folder, local_files_only=True)
    rope = dict(hf.rope_parameters or {})
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    unsupported = [
        why
        for bad, why in (
            (hf.attention_bias or hf.mlp_bias, "biases"),
            (not hf.tie_word_embeddings, "an output layer not tied to the embedding"),
            (rope.get("rope_type", "default") != "default", f"RoPE scaling {rope}"),
            (hf.hidden_act != "silu", f"activation {hf.hidden_act!r}"),
            (
                head_dim * hf.num_attention_heads != hf.hidden_size,
                f"head_dim {head_dim} × {hf.num_attention_heads} heads ≠ hidden {hf.hidden_size}",
            ),
        )
        if bad
    ]
    if unsupported:
        raise ConfigError(
            [
                (
                    "runs.init_from_hf",
                    f"{folder!r} has {', '.join(unsupported)}; "
                    "taggant's model is plain Llama with tied embeddings",
                )
            ]
        )
    if vocab_size > hf.vocab_size:
        raise DataError(
            f"the tokenizer has {vocab_size} ids but {folder} embeds only "
            f"{hf.vocab_size}; use the model's own tokenizer.json"
        )
    groups = hf.num_key_value_heads
    return ModelConfig(
        num_layers=hf.num_hidden_layers,
        hidden_size=hf.hidden_size,
        num_attention_heads=hf.num_attention_heads,
        ffn_hidden_size=hf.intermediate_size,
        vocab_size=vocab_size,
        seq_length=seq_length,
        num_query_groups=None if groups == hf.num_attention_heads else groups,
        rotary_base=float(rope.get("rope_theta", 10000.0)),
        layernorm_epsilon=float(hf.rms_norm_eps),
    )


def _require_transformers(field: str) -> None:
    if importlib.util.find_spec("transformers") is None:
        raise ConfigError([(field, "needs transformers: pip install 'taggant[hf]'")])


# --- export ------------------------------------------------------------------------------------


def export_dir(run_dir: str, step: int) -> str:
    """Where the spec's ``checkpoints.export_hf`` puts the export of a step: beside the run's
    checkpoints, under the name of the checkpoint it came from."""
    return os.path.join(run_dir, "hf", f"iter_{step:07d}")


def exported_steps(run_dir: str) -> list[int]:
    """Sorted steps with a finished export in ``export_dir``."""
    return checkpoint.marked_steps(os.path.join(run_dir, "hf"), EXPORT_META)


def export_checkpoint(run_dir: str, step: int, out: str, experiment: str) -> dict[str, Any]:
    """Write the committed checkpoint at ``step`` of ``run_dir`` as an HF Llama folder ``out``.

    Reads the checkpoint into a model of parallel size 1 (any saved layout loads), so it runs in
    a process without another model-parallel group (``checkpoint.load_model``). The folder
    appears whole: it is written beside ``out`` and renamed; an existing ``out`` is replaced.

    Returns:
        the content of ``taggant_export.json``.

    Raises:
        DataError: ``run_dir`` is not a prepared run folder.
    """
    _require_transformers("checkpoints.export_hf")
    from safetensors.torch import save_file

    from taggant.pipeline.data import RunInfo
    from taggant.pipeline.train.model import ModelConfig

    info = RunInfo.read(run_dir)
    if step not in checkpoint.committed_steps(run_dir):
        raise DataError(
            f"{run_dir} has no committed checkpoint at step {step}; committed: "
            f"{checkpoint.committed_steps(run_dir)}"
        )
    commit = checkpoint.read_commit(run_dir, step)
    config = ModelConfig(**commit["model"])
    model = checkpoint.load_model(run_dir, step)
    tensors = to_hf(model.state_dict(), config)
    del model
    meta = {
        "version": EXPORT_VERSION,
        "experiment": experiment,
        "run": info.run,
        "perturbed": info.perturbed,
        "step": step,
        "samples_seen": commit["samples_seen"],
        "tokens_seen": commit["tokens_seen"],
        "manifest": info.manifest,
        "manifest_hash": manifest_hash(info.manifest),
        "source_checkpoint": checkpoint.step_dir(run_dir, step),
        "taggant_version": importlib.metadata.version("taggant"),
        "vocab": {
            "tokenizer_ids": config.vocab_size,
            "padded_rows_dropped": config.padded_vocab_size - config.vocab_size,
        },
    }
    eod = info.tokenizer["eod_id"]
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would keep the export from other users
    try:
        save_file(tensors, os.path.join(tmp, WEIGHTS), metadata={"format": "pt"})
        hf_config = llama_config(config, eod)
        hf_config.save_pretrained(tmp)
        _write_tokenizer(info.tokenizer_json, eod, info.tokenizer["pad_id"], config.seq_length, tmp)
        io.write_json(os.path.join(tmp, EXPORT_META), meta)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def manifest_hash(folder: str) -> str:
    """Hex SHA-256 over the files of a manifest (items, occurrences, manifest.json)."""
    digest = hashlib.sha256()
    for name in ("items.parquet", "occurrences.parquet", "manifest.json"):
        fs, path = io.filesystem(io.join(folder, name))
        digest.update(name.encode())
        digest.update(fs.cat_file(path))
    return digest.hexdigest()


def _write_tokenizer(
    tokenizer_json: str, eod_id: int, pad_id: int, seq_length: int, folder: str
) -> None:
    from tokenizers import Tokenizer, processors

    tokenizer = Tokenizer.from_file(tokenizer_json)
    eod = tokenizer.id_to_token(eod_id)
    # Every training document followed an EOD; consumers that add special tokens (lm-eval, the
    # HF pipelines) then score texts in the context they were trained in.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{eod} $A", pair=f"{eod} $A {eod} $B", special_tokens=[(eod, eod_id)]
    )
    tokenizer.save(os.path.join(folder, "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": eod,
        "eos_token": eod,
        "model_max_length": seq_length,
    }
    if pad_id >= 0:
        config["pad_token"] = tokenizer.id_to_token(pad_id)
    io.write_json(os.path.join(folder, "tokenizer_config.json"), config)


# --- import ------------------------------------------------------------------------------------


def read_hf_tensors(folder: str) -> dict[str, torch.Tensor]:
    """Every tensor of the ``*.safetensors`` files in ``folder``.

    Raises:
        ConfigError: the folder holds no safetensors file.
    """
    from safetensors.torch import load_file

    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        raise ConfigError(
            [
                (
                    "runs.init_from_hf",
                    f"{folder!r} has no *.safetensors weights; save "
                    "the model with save_pretrained(safe_serialization=True)",
                )
            ]
        )
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        tensors.update(load_file(os.path.join(folder, name)))
    return tensors


def num_params(folder: str) -> int:
    """Parameters of the HF model in ``folder``, from its safetensors headers (a tied
    ``lm_head`` counted once)."""
    import math

    from safetensors import safe_open

    total = 0
    for name in sorted(f for f in os.listdir(folder) if f.endswith(".safetensors")):
        with safe_open(os.path.join(folder, name), "pt") as weights:
            total += sum(
                math.prod(weights.get_slice(k).get_shape())
                for k in weights.keys()
                if k != "lm_head.weight"
            )
    return total


def fingerprint(folder: str) -> dict[str, int]:
    """Name → size of the files of an HF model folder: what the train stage's hash covers."""
    return {
        name: os.path.getsize(os.path.join(folder, name))
        for name in sorted(os.listdir(folder))
        if name.endswith((".json", ".safetensors"))
    }


def import_hf(folder: str, out: str, vocab_size: int, seq_length: int) -> dict[str, Any]:
    """Write the HF Llama model in ``folder`` as a model-only megatron dist checkpoint ``out``,
    with ``import.json`` (its ``ModelConfig``, source and fingerprint) written last.

    Runs in a process without another model-parallel group (it builds the model at parallel
    size 1); ``out`` loads into a model of any layout (``load_init``). Idempotent: an ``out``
    with its record is kept.

    Returns:
        the record.

    Raises:
        ConfigError, DataError: as ``model_config_from_hf`` and ``from_hf``.
    """
    from megatron.core import dist_checkpointing

    from taggant.pipeline.train.model import build_model, init_parallel

    record_path = os.path.join(out, IMPORT_RECORD)
    if os.path.exists(record_path):
        return io.read_json(record_path)
    config = model_config_from_hf(folder, vocab_size, seq_length)
    state = from_hf(read_hf_tensors(folder), config)
    init_parallel()
    model = build_model(config, seed=0)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("_extra_state")]
    assert not missing and not result.unexpected_keys, (missing, result.unexpected_keys)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    dist_checkpointing.save({"model": model.sharded_state_dict()}, out)
    record = {
        "version": IMPORT_VERSION,
        "source": os.path.abspath(folder),
        "fingerprint": fingerprint(folder),
        "model": config.to_dict(),
    }
    io.write_json(record_path, record)
    return record


def init_model_config(out: str) -> ModelConfig:
    """The ``ModelConfig`` of an imported model."""
    from taggant.pipeline.train.model import ModelConfig

    return ModelConfig(**io.read_json(os.path.join(out, IMPORT_RECORD))["model"])


def load_init(module, out: str) -> None:
    """Load the imported model ``out`` into ``module``, a megatron ``GPTModel`` of any parallel
    layout (collective: every rank of the model calls it)."""
    from megatron.core import dist_checkpointing

    state = dist_checkpointing.load({"model": module.sharded_state_dict()}, out)
    module.load_state_dict(state["model"])
