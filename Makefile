# receiptflow — every target sets up its own environment first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.receiptflow-installed

.PHONY: setup test demo bench clean

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

clean:
	rm -rf build .pytest_cache
