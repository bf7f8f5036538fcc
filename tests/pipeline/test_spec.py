"""The experiment spec: shape, cross-field rules, overrides, and the messages users see."""

import copy

import pytest
import yaml
from pydantic import ValidationError

from taggant.jobs.cli import EXPERIMENTS, main
from taggant.pipeline.errors import ConfigError
from taggant.pipeline.spec import apply_override, load_spec, parse_spec

DEMO = yaml.safe_load((EXPERIMENTS / "demo.yaml").read_text())


def problems_of(overrides: list[str]) -> dict[str, str]:
    raw = copy.deepcopy(DEMO)
    for o in overrides:
        apply_override(raw, o)
    with pytest.raises(ConfigError) as info:
        parse_spec(raw)
    return dict(info.value.problems)


@pytest.mark.parametrize(
    "override, path, fix",
    [
        ("perturbations.0.dup_levels=[1, -4]", "perturbations[0].dup_levels", "negative"),
        ("perturbations.0.dup_levels=[0, 4]", "perturbations[0].dup_levels", "control_frac"),
        (
            "perturbations.0.dup_levels=[4, 4]",
            "perturbations[0].dup_levels",
            "list each level once",
        ),
        ("perturbations.1.kind=canery", "perturbations[1].kind", "use one of canary, ghost"),
        ("perturbations.1.name=Early Set", "perturbations[1].name", "should match pattern"),
        (
            "perturbations.1.phase.start_frac=0.5",
            "perturbations[1].phase",
            "must be above start_frac",
        ),
        (
            "perturbations.2.phase.end_frac=1.5",
            "perturbations[2].phase.end_frac",
            "less than or equal to 1",
        ),
        ("perturbations.0.template=no slot here", "perturbations[0].template", "{secret}"),
        ("perturbations.0.count=3", "perturbations[0]", "raise `count`"),
        ("runs.model_sizes=[tiny-2M]", "runs.model_sizes", "did you mean 'tiny-2m'"),
        ("runs.global_batch_sequences=6", "runs", "not a multiple of"),
        ("dedup.bandz=3", "dedup.bandz", "did you mean 'bands'"),
        ("dedup.bands=64", "dedup", "set both `bands` and `rows`"),
        ("tokenizer.kind=file", "tokenizer", "needs `path`"),
        ("probes.names=[loss, perplexity]", "probes.names[1]", "'exact_match'"),
        ("seed=-1", "seed", "greater than or equal to 0"),
    ],
)
def test_each_bad_field_names_its_path_and_the_fix(override, path, fix):
    problems = problems_of([override])
    assert path in problems, problems
    assert fix in problems[path]


def test_missing_section_is_reported_by_name():
    raw = copy.deepcopy(DEMO)
    del raw["store"]
    with pytest.raises(ConfigError) as info:
        parse_spec(raw)
    assert info.value.problems == [
        ("store", "required field is missing; add it (see the spec example in README.md)")
    ]


def test_every_problem_is_reported_at_once():
    problems = problems_of(["seed=-1", "dedup.threshold=2", "runs.lr=0"])
    assert {"seed", "dedup.threshold", "runs.lr"} <= problems.keys()


def test_a_field_error_hides_no_cross_field_error():
    # A typo in one set, an unknown field in another section and a window too small for
    # canary-early (see below): all three at once, and no cross-field error of the broken set.
    problems = problems_of(
        [
            "perturbations.0.contol_frac=0.2",
            "store.urll=x",
            "runs.train_tokens=[200000]",
            "perturbations.0.count=100000",
        ]
    )
    assert problems["perturbations[0].contol_frac"] == "unknown field; did you mean 'control_frac'?"
    assert "store.urll" in problems
    assert "needs 512 occurrences" in problems["perturbations[1].phase"]
    assert "perturbations[0].phase" not in problems  # its set is not valid: not checked
    # A runs section with a field error: no rule that needs it is checked (nor guessed).
    problems = problems_of(["runs.lr=0", "perturbations.1.name=canary-ladder"])
    assert set(problems) == {"runs.lr", "perturbations[1].name"}, problems


def test_duplicate_set_names_are_refused():
    problems = problems_of(["perturbations.1.name=canary-ladder"])
    assert "must be unique" in problems["perturbations[1].name"]


def test_a_phase_window_too_small_for_its_occurrences_is_refused():
    # canary-early needs 32 members × 16 copies = 512 samples; 200k tokens give 390 in its window.
    problems = problems_of(["runs.train_tokens=[200000]"])
    assert "holds 390 samples" in problems["perturbations[1].phase"]
    assert "needs 512 occurrences" in problems["perturbations[1].phase"]


def test_sets_that_fit_alone_but_not_together_are_refused():
    # Two sets in the same first-quarter window: each fits its 3906 samples, together they do not.
    problems = problems_of(
        [
            "perturbations.0.phase={start_frac: 0.0, end_frac: 0.25}",
            "perturbations.3.phase={start_frac: 0.0, end_frac: 0.25}",
            "perturbations.0.count=100",
            "perturbations.3.count=60",
            "perturbations.3.dup_levels=[64]",
        ]
    )
    assert "spread their phase windows" in problems["perturbations"]


def test_member_split_and_occurrence_count_follow_the_ladder():
    spec = parse_spec(DEMO)
    ladder = spec.perturbations[0]
    assert (ladder.num_controls, ladder.num_members) == (32, 128)
    assert ladder.members_per_level() == [32, 32, 32, 32]
    assert ladder.num_occurrences == 32 * (1 + 4 + 16 + 64)
    assert spec.runs.num_samples(2_000_000) == 15_624


def test_spec_is_frozen():
    spec = parse_spec(DEMO)
    with pytest.raises(ValidationError):
        spec.runs.lr = 1.0


def test_override_sets_nested_values_and_list_items():
    raw = copy.deepcopy(DEMO)
    apply_override(raw, "runs.train_tokens=[3000000, 6000000]")
    apply_override(raw, "perturbations.1.phase.end_frac=0.3")
    spec = parse_spec(raw)
    assert spec.runs.train_tokens == [3_000_000, 6_000_000]
    assert spec.perturbations[1].phase.end_frac == 0.3


@pytest.mark.parametrize("bad", ["runs.lr", "perturbations.9.count=1", "seed.x=1"])
def test_malformed_overrides_are_config_errors(bad):
    with pytest.raises(ConfigError):
        apply_override(copy.deepcopy(DEMO), bad)


def test_relative_paths_resolve_against_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(EXPERIMENTS / "demo.yaml")
    assert spec.work_dir == str(tmp_path / "work/demo")
    assert spec.store.url == str(tmp_path / "work/demo/store")


def test_cli_validate_exits_2_with_field_paths(tmp_path, capsys):
    bad = copy.deepcopy(DEMO)
    bad["perturbations"][0]["dup_levels"] = [1, -2]
    bad["runs"]["model_sizes"] = ["huge"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("perturbations[0].dup_levels: ") for line in err), err
    assert any(line.startswith("runs.model_sizes: unknown model size 'huge'") for line in err), err


def test_cli_validate_accepts_the_demo_once_its_corpus_is_there(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the demo's corpus path is relative to the current directory
    assert main(["validate", str(EXPERIMENTS / "demo.yaml")]) == 2
    assert capsys.readouterr().err.startswith("corpus.paths[0]: ")
    (tmp_path / "work/demo/corpus").mkdir(parents=True)
    (tmp_path / "work/demo/corpus/debian.jsonl.zst").write_bytes(b"")
    assert main(["validate", str(EXPERIMENTS / "demo.yaml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_cli_reports_a_missing_or_unparsable_spec(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    (tmp_path / "broken.yaml").write_text("name: [unclosed")
    assert main(["validate", str(tmp_path / "broken.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
