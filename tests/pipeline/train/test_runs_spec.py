"""The training fields of the spec: pipeline stages must divide every preset's layers; progress
fields and the data-reading fields (prefetch, node-local copy) have their defaults and never enter
the train stage's hash; the local copy's folder must be absolute."""

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


def test_data_reading_fields_do_not_change_the_train_stage_and_the_copy_dir_is_absolute():
    plain = spec()
    assert plain.runs.prefetch_steps == 2 and plain.runs.local_copy_dir is None
    read = spec(prefetch_steps=0, local_copy_dir="/tmp/taggant-data")
    assert train_job.stage_config(read) == train_job.stage_config(plain)
    with pytest.raises(ConfigError, match=r"runs.local_copy_dir: .*'nvme' is relative"):
        spec(local_copy_dir="nvme")
    with pytest.raises(ConfigError, match="runs.prefetch_steps"):
        spec(prefetch_steps=-1)
