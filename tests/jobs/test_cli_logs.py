"""Every ``taggant`` command logs to a file; a failure prints one line and that file's path (exit 1),
a spec error its ``field.path: message`` lines (exit 2)."""

from pathlib import Path

from taggant.jobs.cli import main
from tests.conftest import tiny_spec_file


def logs(cache: Path) -> list[Path]:
    return sorted((cache / "taggant" / "logs").glob("*.log"))


def test_a_failing_command_prints_its_cause_and_its_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    missing = tmp_path / "no-run"

    assert main(["materialize", str(missing), str(tmp_path / "out")]) == 1

    [log] = logs(tmp_path / "cache")
    assert capsys.readouterr().err == (
        f"error: {missing} has no run.json; call prepare_run_dir first (log: {log})\n"
    )
    assert log.name.startswith("materialize-")
    text = log.read_text()
    assert f"taggant materialize {missing}" in text
    assert "Traceback" in text and "DataError" in text


def test_a_command_that_succeeds_logs_too_and_each_call_gets_its_own_file(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = tiny_spec_file(tmp_path, tmp_path / "corpus")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "debian-copyright.jsonl.zst").write_bytes(b"")  # validate looks

    assert main(["validate", str(spec)]) == 0
    assert main(["validate", str(spec), "--set", "seed=-1"]) == 2

    assert capsys.readouterr().err == "seed: Input should be greater than or equal to 0 (got -1)\n"
    texts = [log.read_text() for log in logs(tmp_path / "cache")]
    assert len(texts) == 2
    assert sum(f"taggant validate {spec}\n" in text for text in texts) == 1
    assert sum(f"taggant validate {spec} --set seed=-1\n" in text for text in texts) == 1
