"""``taggant validate``'s checks against files: corpus paths that match nothing, items too long for
a sample (measured with a tokenizer file, or bounded for a BPE not trained yet), and a token
budget above the corpus as a warning."""

import copy
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from taggant.jobs.cli import main
from taggant.pipeline import preflight, tokenize
from taggant.pipeline.spec import parse_spec

BASE = {
    "name": "pre",
    "seed": 3,
    "work_dir": "work",
    "corpus": {"paths": ["corpus/*.jsonl"]},
    "perturbations": [],
    "runs": {"model_sizes": ["tiny-2m"], "train_tokens": [5120], "seq_length_tokens": 64},
    "store": {"url": "store"},
}


def spec_of(tmp_path, **changes):
    raw = copy.deepcopy(BASE)
    raw.update(changes)
    raw["corpus"] = {"paths": [str(tmp_path / p) for p in raw["corpus"]["paths"]]}
    return parse_spec(raw)


def benchmark(tmp_path, words: list[int]) -> str:
    """A benchmark JSONL whose question ``i`` has ``words[i]`` words."""
    path = tmp_path / "bench.jsonl"
    path.write_text(
        "".join(
            json.dumps({"question": " ".join(["word"] * n), "choices": ["yes", "no"], "answer": 0})
            + "\n"
            for n in words
        )
    )
    return str(path)


def quiz_set(path: str, count: int) -> dict:
    return {"kind": "testset", "name": "quiz", "path": path, "count": count, "dup_levels": [1]}


def test_corpus_paths_that_match_nothing_are_errors(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl").write_text('{"text": "x"}\n')
    spec = spec_of(tmp_path, corpus={"paths": ["corpus/*.jsonl", "corpos/*.jsonl", "corpus"]})
    assert preflight.corpus_paths(spec.corpus) == [
        (
            "corpus.paths[1]",
            f"{str(tmp_path / 'corpos/*.jsonl')!r} matches no file; check the path or glob",
        )
    ]


def test_corpus_paths_on_any_fsspec_filesystem(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/preflight/corpus/a.jsonl", b'{"text": "x"}\n')
    try:
        spec = spec_of(tmp_path)
        corpus = spec.corpus.model_copy(
            update={"paths": ["memory://preflight/corpus/*.jsonl", "memory://preflight/no/*"]}
        )
        assert [p for p, _ in preflight.corpus_paths(corpus)] == ["corpus.paths[1]"]
    finally:
        fs.rm("/preflight", recursive=True)


def test_items_too_long_are_errors_naming_the_set_and_its_longest_item(tmp_path):
    # seq 64: an occurrence takes 61 tokens. Question 2 has 100 words: ≥ 100 pre-tokens.
    path = benchmark(tmp_path, [5, 10, 100, 70, 3])
    spec = spec_of(tmp_path, perturbations=[quiz_set(path, 5)])
    [(where, message)] = preflight.item_lengths(spec)
    assert where == "perturbations[0]"
    order = [len(t.split()) - 3 for t in preflight._drafts(spec, 0)]  # "Question: … Answer: yes"
    assert sorted(order) == [3, 5, 10, 70, 100]
    assert message.startswith(
        "set 'quiz': 2 of its first 5 items take more than the 61 tokens an occurrence can take "
        "in a sample (runs.seq_length_tokens 64 − 3); the longest, candidate "
        f"{order.index(100)} ('Question: word word"
    )
    assert "takes at least 106 tokens" in message  # Question, :, 100 words, \n, Answer, :, yes
    assert message.endswith("raise runs.seq_length_tokens to 109")
    # Only the first `count` candidates are drawn: without the long ones, nothing to say.
    short = benchmark(tmp_path, [5, 3, 2, 4])
    assert preflight.item_lengths(spec_of(tmp_path, perturbations=[quiz_set(short, 4)])) == []


def test_a_tokenizer_file_measures_items_exactly(tmp_path):
    bpe = tokenize.train_bpe(["word " * 50, "Question: Answer: yes no"] * 20, 300)
    (tmp_path / "tokenizer.json").write_text(bpe.to_str())
    path = benchmark(tmp_path, [5, 80])
    spec = spec_of(
        tmp_path,
        perturbations=[quiz_set(path, 2)],
        tokenizer={"kind": "file", "path": str(tmp_path / "tokenizer.json")},
    )
    texts = preflight._drafts(spec, 0)
    lengths = [len(bpe.encode(t, add_special_tokens=False).ids) for t in texts]
    [(_, message)] = preflight.item_lengths(spec)
    assert f"takes {max(lengths)} tokens;" in message
    missing = spec.model_copy(
        update={"tokenizer": spec.tokenizer.model_copy(update={"path": str(tmp_path / "x.json")})}
    )
    [(where, message)] = preflight.item_lengths(missing)
    assert where == "tokenizer.path" and "does not exist" in message


def test_a_bpe_not_trained_yet_refuses_only_what_cannot_fit(tmp_path):
    # 80 characters, 2 pre-tokens + the secret's: more bytes than the limit, fewer pre-tokens.
    canary = {
        "kind": "canary",
        "name": "long",
        "count": 4,
        "dup_levels": [1],
        "template": "x" * 80 + " {secret}",
        "secret_length": 2,
    }
    assert preflight.item_lengths(spec_of(tmp_path, perturbations=[canary])) == []
    words = {**canary, "template": "x " * 60 + "{secret}"}  # ≥ 62 pre-tokens
    [(where, message)] = preflight.item_lengths(spec_of(tmp_path, perturbations=[words]))
    assert where == "perturbations[0]" and "4 of its first 4 items take more" in message


def test_watermark_documents_are_bounded_by_max_doc_words(tmp_path):
    wm = {"kind": "watermark", "name": "wm", "count": 10, "dup_levels": [2]}
    [(where, message)] = preflight.item_lengths(spec_of(tmp_path, perturbations=[wm]))
    assert where == "perturbations[0].max_doc_words"
    assert "up to 200 words" in message and "lower max_doc_words to 61" in message
    fits = {**wm, "max_doc_words": 61}
    assert preflight.item_lengths(spec_of(tmp_path, perturbations=[fits])) == []


def write_corpus(folder, kind: str, text_bytes: int) -> None:
    """One corpus file whose text is ``text_bytes`` bytes of JSONL (or Parquet text)."""
    folder.mkdir(exist_ok=True)
    line = json.dumps({"text": "a" * (text_bytes - 13)}) + "\n"  # {"text": "…"}\n is 13 more
    assert len(line) == text_bytes
    if kind == "jsonl":
        (folder / "c.jsonl").write_text(line)
    elif kind == "gz":
        (folder / "c.jsonl.gz").write_bytes(gzip.compress(line.encode()))
    elif kind == "zst":
        (folder / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(line.encode()))
    elif kind == "zst-streamed":  # a frame that does not record its size
        with zstandard.ZstdCompressor().stream_writer(open(folder / "c.jsonl.zst", "wb")) as w:
            w.write(line.encode())
    else:
        pq.write_table(pa.table({"text": ["a" * text_bytes]}), folder / "c.parquet")


@pytest.mark.parametrize("kind", ["jsonl", "gz", "zst", "parquet"])
def test_a_budget_above_the_corpus_is_a_warning(tmp_path, kind):
    write_corpus(tmp_path / "corpus", kind, 40_000)  # ≈ 10,000 tokens at 4 bytes a token
    paths = {"paths": ["corpus/*"]}
    runs = {**BASE["runs"], "train_tokens": [8_192, 30_720]}
    [(where, message)] = preflight.epochs(spec_of(tmp_path, corpus=paths, runs=runs))
    assert where == "runs.train_tokens"
    low, high = (40_000, 40_100) if kind == "parquet" else (40_000, 40_000)  # + length headers
    size = int(message.split("(")[1].split(" bytes")[0].replace(",", ""))
    assert low <= size <= high, message
    assert message.startswith("30720 tokens is about 3.1 epochs of the corpus")


def test_a_corpus_of_unknown_size_gets_no_epoch_estimate(tmp_path):
    write_corpus(tmp_path / "corpus", "zst-streamed", 40_000)
    runs = {**BASE["runs"], "train_tokens": [1_024_000]}
    spec = spec_of(tmp_path, corpus={"paths": ["corpus/*"]}, runs=runs)
    assert preflight.epochs(spec) == []


def test_cli_validate_lists_every_error_and_warns_without_failing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "corpus", "jsonl", 20_000)  # ≈ 5,000 tokens
    raw = {**BASE, "perturbations": [quiz_set(benchmark(tmp_path, [100]), 1)]}
    raw["corpus"] = {"paths": ["corpus/*.jsonl", "nothing/*.jsonl"]}
    (tmp_path / "bad.yaml").write_text(json.dumps(raw))
    assert main(["validate", "bad.yaml"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err] == [
        "warning",
        "corpus.paths[1]",
        "perturbations[0]",
    ], err
    raw["perturbations"], raw["corpus"] = [], {"paths": ["corpus/*.jsonl"]}
    (tmp_path / "ok.yaml").write_text(json.dumps(raw))
    assert main(["validate", "ok.yaml"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: runs.train_tokens: 5120 tokens is about 1.0 epochs")
    assert "valid" in captured.out
