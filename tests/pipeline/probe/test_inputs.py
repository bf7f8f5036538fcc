"""A run folder records where its probe inputs live, once, and says what is wrong when it cannot."""

import pyarrow as pa
import pytest

from taggant.pipeline import io
from taggant.pipeline.errors import DataError
from taggant.pipeline.probe.inputs import RunInputs, read_references


def test_a_run_folder_records_its_inputs_once(tmp_path):
    inputs = RunInputs(
        str(tmp_path / "tokenize"), str(tmp_path / "manifest"), str(tmp_path / "references.parquet")
    )
    run_dir = str(tmp_path / "run")
    inputs.write(run_dir)
    inputs.write(run_dir)  # again, by the probe stage after the train stage: nothing changes
    assert RunInputs.read(run_dir) == inputs

    moved = RunInputs(inputs.tokenize_folder, str(tmp_path / "other"), inputs.references_url)
    with pytest.raises(DataError, match="records the inputs .* delete the file or the run folder"):
        moved.write(run_dir)
    with pytest.raises(DataError, match="has no probe_inputs.json: it is not a run folder"):
        RunInputs.read(str(tmp_path / "elsewhere"))


def test_references_come_back_per_set_in_draw_order(tmp_path):
    url = str(tmp_path / "references.parquet")
    io.write_table(
        url,
        pa.table(
            {"set": ["b", "a", "a"], "reference_index": [0, 1, 0], "secret": ["b0", "a1", "a0"]}
        ),
    )
    assert read_references(url) == {"a": ["a0", "a1"], "b": ["b0"]}
    with pytest.raises(DataError, match="references.parquet is missing"):
        read_references(str(tmp_path / "gone" / "references.parquet"))
