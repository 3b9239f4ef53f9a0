"""`make bench-learning` end to end at a toy size: every stage runs with the real trainers, the report has issue 10's
layout, and a second run resumes from the cache instead of training again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest


# PEFT 0.21 and TRL 1.16 read `model.is_gradient_checkpointing`, deprecated by transformers 5.24 (see
# tests/test_grpo_trainer.py): only that message is ignored.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
LEARNING = Path(__file__).resolve().parents[1] / "benchmarks" / "learning"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(LEARNING))
    try:
        import bench_learning

        yield bench_learning
    finally:
        sys.path.remove(str(LEARNING))


def _argv(tmp_path: Path, seeds: str) -> list[str]:
    return ["--output_dir", str(tmp_path / "results"), "--cache_dir", str(tmp_path / "cache"), "--seeds", seeds,
            "--num_test", "6", "--num_cot", "6", "--num_pool", "3", "--max_images", "3", "--pretrain_steps", "2,2,2,2",
            "--pretrain_batch_size", "2", "--hidden_size", "32", "--num_layers", "1", "--sft_batch_size", "2",
            "--num_generations", "2", "--max_new_tokens", "16", "--grpo_steps", "2", "--grpo_prompts_per_step", "1",
            "--eval_batch_size", "6", "--include_all_wrong", "true"]  # fmt: skip


def test_bench_learning_end_to_end_and_resumes(bench, tmp_path):
    report = bench.main(_argv(tmp_path, "0,1"))
    out = tmp_path / "results"
    saved = json.loads((out / "learning.json").read_text())
    assert saved["sft_rl"] == report["sft_rl"]
    for stage in ("base", "sft", "sft_rl"):
        summary = saved[stage]
        assert 0.0 <= summary["acc@0.5"] <= 1.0 and len(summary["per_seed"]) == 2 and summary["spread"] >= 0.0
        assert summary["acc@0.5"] == pytest.approx(sum(summary["per_seed"]) / 2, abs=1e-4)
        assert set(summary["per_task_acc@0.5"]) <= {
            "group_grounding",
            "refer_grounding",
            "multi_view",
            "common_object",
        }
    assert set(saved["ablations"]) == {"rl_full_pool", "rl_no_format_reward", "rl_rejection_sampled (main run)"}
    assert saved["ablations"]["rl_full_pool"]["rows"] == 3 and saved["ablations"]["rl_full_pool"]["seed"] == 0
    assert saved["settings"]["template"] == "mig-think-brief-v1" and saved["settings"]["num_test"] == 6
    assert saved["wall_time_s"] > 0 and 0.0 <= saved["baselines"]["constant_box"]["acc@0.5"] <= 1.0
    assert len(saved["reward_curves"]["seed 0"]) == 2  # one logged reward per GRPO step (`logging_steps` <= 2)
    assert (out / "learning_reward.png").stat().st_size > 1000
    markdown = (out / "learning.md").read_text()
    assert "| sft_rl |" in markdown and "learning_reward.png" in markdown

    cache = tmp_path / "cache"
    base = next(cache.glob("base-*"))
    stamp = (base / "model.safetensors").stat().st_mtime_ns
    merged = next(cache.glob("run-*/seed0/sft-*/sft/merged/model.safetensors")).stat().st_mtime_ns
    again = bench.main(_argv(tmp_path, "0,1"))  # everything is cached: nothing trains or generates again
    assert (base / "model.safetensors").stat().st_mtime_ns == stamp
    assert next(cache.glob("run-*/seed0/sft-*/sft/merged/model.safetensors")).stat().st_mtime_ns == merged
    assert again["sft_rl"] == report["sft_rl"] and not list(cache.glob("*.partial"))


def test_pretraining_resumes_after_a_finished_phase_exactly(bench, tmp_path):
    import torch
    from base_model import PretrainPhase, pretrain
    from worlds import one_shape_rows

    from trl_mig.models.tiny import TinyModelConfig
    from trl_mig.testing import build_tiny_model, build_tiny_processor

    processor = build_tiny_processor("qwen3_vl", min_pixels=64 * 64, max_pixels=128 * 128)
    size = TinyModelConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                           intermediate_size=64, vision_hidden_size=32, vision_depth=1, vision_num_heads=2)  # fmt: skip
    data = {"shapes": one_shape_rows(8, 0)}
    phases = [PretrainPhase("a", 3, {"shapes": 1.0}, {"mig-direct-brief-v1": 1.0}),
              PretrainPhase("b", 3, {"shapes": 1.0}, {"mig-think-brief-v1": 1.0}, 1e-3)]  # fmt: skip
    kwargs = {"frame": "qwen3_vl", "batch_size": 2, "seed": 0}

    straight = build_tiny_model("qwen3_vl", size, processor=processor)
    (tmp_path / "a").mkdir()
    log = pretrain(straight, processor, data, phases, workdir=tmp_path / "a", **kwargs)
    assert [line["phase"] for line in log] == ["a", "b"] and log[-1]["seen"] == 12

    resumed = build_tiny_model("qwen3_vl", size, processor=processor)
    (tmp_path / "b").mkdir()
    pretrain(resumed, processor, data, phases[:1], workdir=tmp_path / "b", **kwargs)  # "stopped" after phase a
    fresh = build_tiny_model("qwen3_vl", size, processor=processor)  # a new process: weights come from the state
    again = pretrain(fresh, processor, data, phases, workdir=tmp_path / "b", **kwargs)
    untimed = [[{k: v for k, v in line.items() if k != "seconds"} for line in lines] for lines in (again, log)]
    assert untimed[0] == untimed[1]
    for (name, a), b in zip(straight.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    "overrides, match",
    [({"pretrain_steps": "10,10,10"}, "four step counts"), ({"pretrain_steps": "10,0,10,0"}, "four step counts"),
     ({"reasoning": "short"}, "full, brief"), ({"accuracy_reward": "iou@0.7"}, "iou_threshold_reward"),
     ({"pretrain_multi_share": 0.9}, r"\[0, 0.85\]"), ({"seeds": ""}, "no seed"), ({"num_generations": 1}, ">= 2"),
     ({"max_images": 6}, r"\[2, 5\]")],
)  # fmt: skip
def test_bad_settings_are_refused_before_anything_runs(bench, overrides, match):
    with pytest.raises(ValueError, match=match):
        bench.LearningArguments(**overrides)
