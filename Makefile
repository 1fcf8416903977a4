# receiptflow — every target sets up its own environment first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.receiptflow-installed

PEERS_VENV ?= .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.receiptflow-peers-installed

.PHONY: setup test demo bench bench-quality clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install-fonts.sh
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch and torchvision first and pinned: pip takes both from this machine's disk (DESIGN.md §7).
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[test]'
	bash scripts/install-fonts.sh
	touch $@

test: setup
	$(PY) -m pytest -q --durations=15

# synthetic receipts -> the whole run8-kfold pipeline, locally (kfp.local), with cpu_tiny
demo: setup
	$(VENV)/bin/receiptflow synth --out build/demo-data --n 120 --seed 0 --force
	$(VENV)/bin/receiptflow pipeline run --local --data build/demo-data --params-file demo

bench: setup
	$(PY) -m tests.benchmarks

# 5-fold CV on the shared SROIE sample: cpu_receipts trained per fold vs RapidOCR and EasyOCR
# (about an hour on 2 idle cores; resumable per fold: run it again to go on). ARGS: see `python -m tests.benchmarks.quality -h`
bench-quality: setup $(PEERS_STAMP)
	$(PY) -m tests.benchmarks.quality $(ARGS)

$(PEERS_STAMP): tests/benchmarks/quality/peers-requirements.txt
	python3 -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PEERS_VENV)/bin/python -m pip install -q -r tests/benchmarks/quality/peers-requirements.txt
	touch $@

clean:
	rm -rf build .pytest_cache
