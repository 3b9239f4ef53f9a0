# Usual verbs. Every target installs what it needs first, so each works from a clean clone.
# On CPU machines torch==2.13.0 is installed explicitly before the package (an unpinned torch pulls a multi-GB CUDA
# build); on a GPU machine run `make install TORCH="torch"` or install your CUDA torch first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.trl-mig-installed
export HF_HUB_OFFLINE := 1
export HF_EVALUATE_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: install demo test bench bench-scaling bench-learning lint format clean two-process

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/trl-mig demo --output_dir trl-mig-demo

# the tiny recipes under `accelerate launch` with two CPU processes (a real gloo group; asserts world_size == 2)
two-process: install
	PYTHON=$(PY) bash examples/two_process.sh

test: install
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/run_all.py --output benchmarks/results.json
	$(PY) benchmarks/bench_synthesis.py
	$(PY) benchmarks/bench_builders.py
	$(PY) benchmarks/bench_eval.py --output benchmarks/results_eval.json

# 1 vs 2 processes (GRPO, sampler; the 4.5M-parameter model) and builder memory at 1x/10x/100x rows: about 10 minutes
bench-scaling: install
	$(PY) benchmarks/bench_scaling.py --model-size small --prompts 256 --max-new-tokens 64 --grpo-batch 8 \
		--output benchmarks/results_scaling.json

# base -> SFT -> rejection sampling -> GRPO on held-out multi-image questions, 3 seeds + ablations (issue 10):
# the base is pre-trained once (about 30 minutes here), then about 9 minutes per seed and 7 for the ablations; data,
# base and every stage are cached under .cache/bench-learning, each by the settings that determine it
bench-learning: install
	$(PY) benchmarks/learning/bench_learning.py --output_dir benchmarks/results

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) build dist *.egg-info trl-mig-demo runs
