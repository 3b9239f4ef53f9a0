#!/usr/bin/env bash
# The tiny pipeline with two CPU processes: sft (one process), then sample and grpo under
# `accelerate launch --config_file examples/accelerate_configs/cpu_2proc.yaml`, and a check that both multi-process
# stages really ran as a world of 2 (a misconfigured launch runs the work twice, each process alone, and says nothing).
#
# Run from the repository root:  bash examples/two_process.sh     (or `make two-process`)
# Writes runs/tiny/{base,data,sft,rl,rl-samples,grpo}. PYTHON defaults to the project's virtualenv.
set -euo pipefail

PYTHON="${PYTHON:-.venv/bin/python}"
ACCELERATE_CONFIG="examples/accelerate_configs/cpu_2proc.yaml"
RECIPES="examples/recipes/tiny"
RUNS="runs/tiny"

if [[ ! -f "${RECIPES}/sft.yaml" ]]; then
    echo "run this script from the repository root (no ${RECIPES}/sft.yaml here)" >&2
    exit 2
fi

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1
export TRL_MIG_DISABLE_PROGRESS=1

echo "== tiny base model -> ${RUNS}/base"
"${PYTHON}" -c "from trl_mig.testing import save_tiny_model; save_tiny_model('${RUNS}/base', 'qwen2_5_vl', size='tiny', seed=0)"

echo "== synthetic data (16 train / 4 test) -> ${RUNS}/data"
"${PYTHON}" -m trl_mig.cli build synthetic --output_dir "${RUNS}/data" --num_train 16 --num_test 4 --overwrite

echo "== sft (one process) -> ${RUNS}/sft"
"${PYTHON}" -m trl_mig.cli sft --config "${RECIPES}/sft.yaml"

echo "== sample (two processes) -> ${RUNS}/rl"
"${PYTHON}" -m accelerate.commands.launch --config_file "${ACCELERATE_CONFIG}" \
    -m trl_mig.cli sample --config "${RECIPES}/sample.yaml"

echo "== grpo (two processes) -> ${RUNS}/grpo"
"${PYTHON}" -m accelerate.commands.launch --config_file "${ACCELERATE_CONFIG}" \
    -m trl_mig.cli grpo --config "${RECIPES}/grpo.yaml"

echo "== check: both stages ran as a world of 2"
"${PYTHON}" - "${RUNS}" <<'PY'
import json
import sys
from pathlib import Path

runs = Path(sys.argv[1])
records = {"sample": runs / "rl-samples" / "last_run.json", "grpo": runs / "grpo" / "trl_mig_run.json"}
failed = False
for stage, path in records.items():
    world_size = json.loads(path.read_text()).get("world_size") if path.exists() else None
    ok = world_size == 2
    failed |= not ok
    print(f"{stage}: world_size={world_size} ({path}) {'ok' if ok else 'EXPECTED 2'}")
sys.exit(1 if failed else 0)
PY
