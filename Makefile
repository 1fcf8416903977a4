# receiptflow — every target sets up its own environment first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.receiptflow-installed
LOCK_STAMP := $(VENV)/.receiptflow-lock-installed

PEERS_VENV ?= .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.receiptflow-peers-installed

.PHONY: setup lock test test-fast demo bench bench-quality clean

setup: $(STAMP)

# The venv is made anew whenever the lock changes, so that it holds exactly the lock (pip freeze).
# Every file is checked against the lock's hashes; the package itself is then installed without
# dependencies and built with the lock's setuptools (no build isolation: nothing unlocked comes in).
$(LOCK_STAMP): requirements/dev.lock scripts/find-python.sh
	@PY3=$$(bash scripts/find-python.sh) && echo "python: $$PY3" && $$PY3 -m venv --clear $(VENV)
	$(PIP) install -q --require-hashes -r requirements/dev.lock
	touch $@

$(STAMP): $(LOCK_STAMP) pyproject.toml scripts/install-fonts.sh
	$(PIP) install -q --no-deps --no-build-isolation -e .
	bash scripts/install-fonts.sh
	touch $@

# Re-resolve the locks after a change to pyproject.toml's dependencies (versions already pinned
# stay): `make lock`; to upgrade one package: `make lock UV_ARGS="--upgrade-package numpy"`.
lock: setup
	bash scripts/lock.sh

# Lint first (ruff, the rules in pyproject.toml's [tool.ruff]), then everything, on every core (pytest-xdist);
# the 15 slowest tests at the end.
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -n auto --dist loadgroup --durations=15

# The unit tier: no training, no pipeline run, no wheel build (tests/conftest.py marks the rest
# `slow` by the fixtures they use); under 3 minutes on 2 cores.
test-fast: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -n auto --dist loadgroup -m "not slow" --durations=10

# synthetic receipts -> the whole run8-kfold pipeline, locally (kfp.local), with cpu_tiny
demo: setup
	$(VENV)/bin/receiptflow synth --out build/demo-data --n 120 --seed 0 --force
	$(VENV)/bin/receiptflow pipeline run --local --data build/demo-data --params-file demo

bench: setup
	$(PY) -m tests.benchmarks

# 5-fold CV on the shared SROIE sample: cpu_receipts trained per fold vs RapidOCR and EasyOCR
# (about two hours on 2 idle cores; resumable per fold: run it again to go on). ARGS: see
# `python -m tests.benchmarks.quality -h`; --record and `python -m tests.benchmarks.quality.record`
# write the docs' tables (docs/quality.md)
bench-quality: setup $(PEERS_STAMP)
	$(PY) -m tests.benchmarks.quality $(ARGS)

$(PEERS_STAMP): tests/benchmarks/quality/peers.lock scripts/find-python.sh
	@PY3=$$(bash scripts/find-python.sh) && $$PY3 -m venv --clear $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --require-hashes -r tests/benchmarks/quality/peers.lock
	touch $@

clean:
	rm -rf build .pytest_cache
