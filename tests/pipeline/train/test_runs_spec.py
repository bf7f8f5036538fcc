"""The training fields of the spec: pipeline stages must divide every preset's layers; progress
fields have their defaults and never enter the train stage's hash."""

import pytest

from taggant.jobs import train as train_job
from taggant.pipeline.errors import ConfigError
from taggant.pipeline.spec import parse_spec
from tests.conftest import TINY_SPEC


def spec(**runs):
    return parse_spec(
        {
            **TINY_SPEC,
            "corpus": {"paths": ["corpus.jsonl"]},
            "work_dir": "work",
            "store": {"url": "store"},
            "runs": {**TINY_SPEC["runs"], **runs},
        }
    )


def test_pipeline_stages_must_divide_the_layers():
    assert spec(pipeline_parallel_size=2).runs.pipeline_parallel_size == 2  # tiny-2m: 4 layers
    with pytest.raises(
        ConfigError,
        match="pipeline_parallel_size 3 does not divide the 4 layers "
        "of tiny-2m; use a divisor of 4",
    ):
        spec(pipeline_parallel_size=3)


def test_progress_fields_do_not_change_the_train_stage():
    plain = spec()
    assert plain.runs.log_interval_steps == 10 and plain.runs.tensorboard is False
    watched = spec(log_interval_steps=1, tensorboard=True)
    assert train_job.stage_config(watched) == train_job.stage_config(plain)
    assert train_job.stage_config(spec(pipeline_parallel_size=2)) != train_job.stage_config(plain)
