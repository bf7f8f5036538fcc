"""Transformer Engine is opt-in: ``runs.transformer_engine`` decides, CUDA and TE's presence
permitting, and a model built without the option (probes, exports) never uses TE's spec."""

from __future__ import annotations

import pytest
from megatron.core import parallel_state

from taggant.pipeline.errors import ConfigError
from taggant.pipeline.train.model import (
    ModelConfig,
    SDPACoreAttention,
    build_model,
    init_parallel,
    transformer_engine_installed,
    use_transformer_engine,
)
from tests.pipeline.train.test_runs_spec import spec

CONFIG = ModelConfig(
    num_layers=2, hidden_size=32, num_attention_heads=4, ffn_hidden_size=64, vocab_size=100,
    seq_length=16,
)  # fmt: skip


@pytest.mark.parametrize(
    "choice, cuda, installed, expected",
    [
        ("off", True, True, False),
        ("auto", True, True, True),
        ("auto", True, False, False),
        ("auto", False, True, False),  # a CPU probe in an image with TE
        ("on", True, True, True),
    ],
)
def test_the_choice_and_the_machine_decide(choice, cuda, installed, expected):
    assert use_transformer_engine(choice, cuda, installed) is expected


@pytest.mark.parametrize(
    "cuda, installed, missing",
    [
        (False, True, "a CUDA device"),
        (True, False, "transformer_engine"),
        (False, False, "a CUDA device and transformer_engine"),
    ],
)
def test_on_without_what_it_needs_names_it(cuda, installed, missing):
    with pytest.raises(ConfigError, match=f"runs.transformer_engine: 'on' needs {missing};"):
        use_transformer_engine("on", cuda, installed)


def test_an_unknown_choice_is_refused():
    with pytest.raises(ConfigError, match="'yes': use auto, on or off"):
        use_transformer_engine("yes", True, True)


def test_the_spec_field_is_off_unless_asked_and_enters_the_train_stage():
    from taggant.jobs import train as train_job

    assert spec().runs.transformer_engine == "off"
    assert spec(transformer_engine="auto").runs.transformer_engine == "auto"
    with pytest.raises(ConfigError, match="transformer_engine"):
        spec(transformer_engine="yes")
    # TE's kernels change the numbers trained, so the option is part of the stage's key.
    assert train_job.stage_config(spec(transformer_engine="on")) != train_job.stage_config(spec())


@pytest.mark.parametrize("choice", ["off", "auto"])
def test_a_cpu_model_builds_the_local_spec(choice):
    init_parallel()
    try:
        model = build_model(CONFIG, seed=0, transformer_engine=choice)
    finally:
        parallel_state.set_pipeline_model_parallel_rank(None)
    attention = [m for m in model.modules() if isinstance(m, SDPACoreAttention)]
    assert len(attention) == CONFIG.num_layers
    assert not model.config.apply_rope_fusion
    assert not transformer_engine_installed()  # this CI's venv; the truth table covers the rest
    with pytest.raises(ConfigError, match="runs.transformer_engine"):
        build_model(CONFIG, seed=0, transformer_engine="on")
