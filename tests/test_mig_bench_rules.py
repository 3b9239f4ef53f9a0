"""The real MIG-Bench annotation file: shipped, target image per task, the seven malformed gold boxes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from trl_mig.datasets_builders.mig_bench import FIXED_TARGET, default_annotations, target_image_for
from trl_mig.geometry import repair_box
from trl_mig.parsing import parse_answer


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def records():
    return json.loads(default_annotations().read_text())


def test_shipped_file_matches_the_shared_original(records):
    shared = ROOT.parent / "shared" / "data" / "mig_bench" / "MIG_data.json"
    if shared.exists():
        assert json.loads(shared.read_text()) == records
    assert len(records) == 4295
    assert (default_annotations().parent / "LICENSE").read_text().startswith("MIT")


def test_target_rule_per_task(records):
    counts = Counter()
    for i, rec in enumerate(records):
        target = target_image_for(rec, i)
        assert -1 <= target < len(rec["images"]), i
        counts[rec["task"], target] += 1
        if rec["task"] in FIXED_TARGET:
            assert target == FIXED_TARGET[rec["task"]]
        if rec["task"] == "group_grounding":
            # the box tokens beside the image name are the gold box on the 0-1000 grid
            box = parse_answer(rec["additional_info"]).box
            assert [round(v / 1000, 3) for v in box] == pytest.approx(rec["answer"], abs=1e-3)
    assert counts["diff", -1] == 528
    assert sum(n for (task, _), n in counts.items() if task == "object_tracking") == 550
    assert counts["object_tracking", 0] == 0  # "the first image marked with red" names the reference, not the target
    assert len({task for task, _ in counts}) == 10


def test_seven_gold_boxes_need_repair(records):
    assert [i for i, rec in enumerate(records) if repair_box(rec["answer"])[1]] == [7, 34, 105, 126, 163, 512, 703]


def test_unknown_task_names_the_record():
    with pytest.raises(ValueError, match="record 12.*unknown task"):
        target_image_for({"task": "nope"}, 12)


def test_scoring_example_runs(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "score_mig_bench_answers.py"), "--output-dir",
                          str(tmp_path)], capture_output=True, text=True, check=True)  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["meta"]["repaired_gold"] == [7, 34, 105, 126, 163, 512, 703]
    for family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        right = results[f"{family}/read_as_{family}"]
        assert right["overall"]["acc@0.5"] > 0.7, out.stdout
        assert len(right["tasks"]) == 10 and "mig_bench_avg_acc@0.5" in right
        wrong = next(
            v for k, v in results.items() if k.startswith(f"{family}/read_as_") and k != f"{family}/read_as_{family}"
        )
        assert wrong["overall"]["acc@0.5"] < 0.3  # a wrongly declared frame is visibly wrong
        assert (tmp_path / f"gallery_{family}.png").stat().st_size > 0
