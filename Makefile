# Set-up and entry points. `make run` and `make test` work on a fresh machine: they create the
# virtual environment first (about 3 minutes, ~6 GB, torch from the machine's wheel cache or PyPI).
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run test dvc
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps torchattacks==3.5.1  # it pins an old requests; its real needs are in requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

run: setup  ## the paper parameter set's whole DAG (on a CPU, a time plan first when it exceeds a day)
	python -m aalp bench plan --if-slow 24
	snakemake --cores all --resources gpu=1

test: setup  ## unit tests and the end-to-end DAG on the CI parameter set (Snakemake and DVC)
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --durations=15  # test files side by side, in conftest's order

dvc: setup  ## regenerate dvc.yaml of every parameter set after changing an experiment matrix
	python -m aalp dvc && for p in configs/*/; do (cd $$p && python -m aalp dvc); done
