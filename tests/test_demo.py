"""`trl-mig demo` end to end at a reduced size (every stage with the real trainers, on the tiny model), and the
stage commands `trl-mig sft`, `merge` and `grpo` run through the CLI in this process."""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from PIL import Image

from trl_mig.cli import main
from trl_mig.datasets_builders import synthetic
from trl_mig.datasets_builders.reader import load_schema_dataset as load_dataset
from trl_mig.demo import STAGES, DemoArguments, run_demo
from trl_mig.models.tiny import PRESETS
from trl_mig.testing import tiny_checkpoint


pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

METRIC_KEYS = {"acc@0.3", "acc@0.5", "acc@0.7", "strict_acc@0.5", "miou", "parse_fail_rate", "wrong_image_rate",
               "format_rate"}  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "trl-mig-demo"
    args = DemoArguments(
        output_dir=str(out), model_size="tiny", num_cot=8, num_pool=4, num_test=4, sft_epochs=1, grpo_steps=2,
        max_new_tokens=8, batch_size=4, num_generations=2, images_per_stage=1,
    )  # fmt: skip
    return out, run_demo(args)


def test_demo_report_layout(demo):
    out, report = demo
    assert json.loads((out / "report.json").read_text()) == report
    assert list(report["stages"]) == list(STAGES)
    for name, stage in report["stages"].items():
        assert set(stage["metrics"]) == METRIC_KEYS, name
        assert all(v is None or 0.0 <= v <= 1.0 for v in stage["metrics"].values())
        assert {"rows_in", "rows_out", "seconds"} <= set(stage) and stage["eval_rows"] == 4
    assert report["stages"]["sft"]["rows_in"] == 8 and report["stages"]["sft_rl"]["rows_out"] == 4
    steps = [s["step"] for s in report["pipeline"]]
    assert steps[:2] == ["data", "base model"] and "sample" in steps and "grpo" in steps
    assert [e["step"] for e in report["reward_curve"]] == [1, 2]
    assert report["meta"]["template"] == "mig-think-brief-v1" and report["meta"]["frame"] == "qwen3_vl"
    assert report["meta"]["pixel_limits"] == {"min_pixels": 64 * 64, "max_pixels": 128 * 128, "factor": 32}
    assert "not pre-trained" in report["meta"]["model"]
    config = json.loads((out / "models/base/config.json").read_text())
    assert config["model_type"] == "qwen3_vl"
    for stage in STAGES:  # every stage is rendered, sampled and scored with the same template and frame
        meta = json.loads((out / "eval" / stage / "results.json").read_text())["meta"]
        assert (meta["template"], meta["frame"]) == ("mig-think-brief-v1", "qwen3_vl"), stage


def test_demo_writes_what_people_look_at(demo):
    out, report = demo
    markdown = (out / "report.md").read_text()
    for stage in STAGES:
        assert f"| {stage} |" in markdown
    assert "reward_curve.png" in markdown and Image.open(out / "reward_curve.png").size[0] > 100
    for stage in STAGES:  # each stage evaluated by `trl-mig eval`'s loop: results, plot, best and worst answers drawn
        results = json.loads((out / "eval" / stage / "results.json").read_text())
        assert results["overall"] == {k: v for k, v in results["overall"].items()} and results["meta"]["n"] == 4
        assert report["stages"][stage]["metrics"]["acc@0.5"] == results["overall"]["acc@0.5"]
        assert len(list((out / "eval" / stage / "gallery").glob("*.png"))) == 2
        assert f"eval/{stage}/gallery/" in markdown
    for card in ("data/cot/README.md", "data/pool/README.md", "data/rl/README.md", "models/sft/README.md",
                 "models/sft/merged/README.md", "models/sft_rl/README.md"):  # fmt: skip
        assert (out / card).is_file(), card
        assert card in report["meta"]["cards"]
    assert "2507.00748" in (out / "models/sft_rl/README.md").read_text()
    assert "model-index" in (out / "models/sft_rl/README.md").read_text()  # the eval results, for the Hub
    lines = (out / "eval/sft_rl/predictions.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert set(json.loads(lines[0])) >= {"id", "output", "pred_boxes", "pred_image", "iou", "correct"}


def test_demo_data_sets_load_and_rl_set_has_measurements(demo):
    out, _ = demo
    rl = load_dataset(str(out / "data/rl"), split="train")
    assert rl.num_rows == 4 and set(rl["pass_rate"]) == {0.0}  # all wrong: re-selected with the lower edge included
    fallback = json.loads((out / "report.json").read_text())["rejection_sampling"]["fallback"]
    assert "0 < pass_rate < 1" in fallback and "0 <= pass_rate < 1" in fallback
    cot = load_dataset(str(out / "data/cot"))
    assert cot["train"].num_rows == 8 and cot["test"].num_rows == 4 and "reasoning" in cot["train"].column_names


def test_demo_reruns_in_its_own_folder_and_refuses_others(tmp_path, demo):
    out, _ = demo
    assert (out / ".trl-mig-demo").is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="was not made by `trl-mig demo`"):
        run_demo(DemoArguments(output_dir=str(tmp_path / "mine")))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="num_generations must be >= 2"):
        DemoArguments(num_generations=1)
    with pytest.raises(ValueError, match="unknown"):
        DemoArguments(template="no-such-template")
    with pytest.raises(ValueError, match="not a saved checkpoint"):
        DemoArguments(base_model=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="reasoning must be one of full, brief"):
        DemoArguments(reasoning="short")


def test_demo_defaults_are_the_learning_benchmarks():
    """The demo adopts the settings `make bench-learning` found (only the sizes differ): this fails when they drift."""
    learning = Path(__file__).resolve().parents[1] / "benchmarks" / "learning"
    sys.path.insert(0, str(learning))
    try:
        import bench_learning
        import stages
    finally:
        sys.path.remove(str(learning))
    bench, demo = bench_learning.LearningArguments(), DemoArguments()
    for name in ("template", "sft_epochs", "sft_learning_rate", "lora_r", "num_generations", "grpo_learning_rate",
                 "grpo_prompts_per_step", "grpo_beta", "max_new_tokens", "reasoning"):  # fmt: skip
        assert getattr(demo, name) == getattr(bench, name), name
    assert demo.tasks == bench.task_list and demo.max_pass_rate == 1.0 and not demo.include_min
    assert PRESETS[demo.model_size] == bench_learning.tiny_config(bench)
    assert stages.FRAME == "qwen3_vl"
    assert {f.name for f in fields(DemoArguments)} >= {"base_model", "template", "temperature", "grpo_beta"}


def test_demo_from_a_saved_base_model(tmp_path):
    """`--base_model`: the stages start from that checkpoint (never written to), in the frame of its `model_type`."""
    base = tiny_checkpoint("qwen2_5_vl", root=tmp_path)  # another family than the demo's own: the frame must follow
    before = sorted(p.name for p in base.iterdir())
    out = tmp_path / "demo"
    report = run_demo(DemoArguments(
        output_dir=str(out), base_model=str(base), template="mig-think-v1", num_cot=2, num_pool=2, num_test=2,
        grpo_steps=1, grpo_prompts_per_step=1, max_new_tokens=4, batch_size=2, num_generations=2, images_per_stage=0,
    ))  # fmt: skip
    assert report["meta"]["frame"] == "qwen2_5_vl" and report["meta"]["template"] == "mig-think-v1"
    assert report["meta"]["model"] == f"{base} (qwen2_5_vl)" and report["meta"]["settings"]["base_model"] == str(base)
    assert report["stages"]["base"]["checkpoint"] == str(base.resolve())
    assert not (out / "models" / "base").exists() and sorted(p.name for p in base.iterdir()) == before
    for stage in STAGES:
        meta = json.loads((out / "eval" / stage / "results.json").read_text())["meta"]
        assert (meta["template"], meta["frame"]) == ("mig-think-v1", "qwen2_5_vl"), stage
    merged = json.loads((out / "models/sft/merged/config.json").read_text())
    assert merged["model_type"] == "qwen2_5_vl"


# ---------------------------------------------------------------------------------------------------------------
# the stage commands, in this process


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "set"
    synthetic.build(synthetic.BuildArguments(output_dir=str(out), num_train=4, num_test=2, seed=5))
    return out


CPU = ["--use_cpu", "--bf16", "false", "--report_to", "none", "--activation_checkpointing", "false",
       "--disable_tqdm", "true"]  # fmt: skip


def test_sft_merge_grpo_commands(tmp_path, tiny_data):
    base = tiny_checkpoint(root=tmp_path)
    sft_out = tmp_path / "sft"
    assert main(["sft", "--model_name_or_path", str(base), "--dataset_name", str(tiny_data), "--output_dir",
                 str(sft_out), "--max_steps", "1", "--per_device_train_batch_size", "2", *CPU]) == 0  # fmt: skip
    run = json.loads((sft_out / "trl_mig_run.json").read_text())
    assert run["command"] == "sft" and run["world_size"] == 1 and run["global_step"] == 1 and run["rows"] == 4
    assert (sft_out / "merged" / "model.safetensors").is_file() and (sft_out / "adapter_config.json").is_file()

    merged_again = tmp_path / "merged-again"
    assert main(["merge", "--adapter", str(sft_out), "--output_dir", str(merged_again)]) == 0
    assert (merged_again / "model.safetensors").is_file() and not (merged_again / "adapter_config.json").exists()

    grpo_out = tmp_path / "grpo"
    assert main(["grpo", "--model_name_or_path", str(sft_out / "merged"), "--dataset_name", str(tiny_data),
                 "--output_dir", str(grpo_out), "--max_steps", "1", "--num_generations", "2",
                 "--per_device_train_batch_size", "4", "--max_completion_length", "8", "--log_boxes_steps", "0",
                 "--reward_funcs", "format_reward", "iou_threshold_reward", *CPU]) == 0  # fmt: skip
    run = json.loads((grpo_out / "trl_mig_run.json").read_text())
    assert run["command"] == "grpo" and run["global_step"] == 1
    assert run["last reward"] == 0.0  # a random model earns nothing, but the rewards ran and were logged


def test_stage_commands_refuse_bad_input(tmp_path, tiny_data):
    with pytest.raises(ValueError, match="--model_name_or_path is required"):
        main(["sft", "--dataset_name", str(tiny_data), "--output_dir", str(tmp_path / "x"), *CPU])
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        main(["grpo", "--model_name_or_path", str(tiny_checkpoint(root=tmp_path)), "--dataset_name", str(tiny_data),
              "--output_dir", str(tmp_path / "g"), "--reward_funcs", "nope", *CPU])  # fmt: skip
    with pytest.raises(SystemExit) as info:
        main(["sample", "--help"])
    assert info.value.code == 0


def test_load_processor_sets_the_pixel_budget(tmp_path):
    from PIL import Image as PILImage

    from trl_mig.models import load_processor
    from trl_mig.templates import pixel_limits_from_processor

    path = str(tiny_checkpoint(root=tmp_path))
    image = [PILImage.new("RGB", (200, 200))]
    default = load_processor(path)
    small = load_processor(path, max_pixels=6272)
    assert pixel_limits_from_processor(small)["max_pixels"] == 6272
    grids = [p.image_processor(images=image, return_tensors="pt")["image_grid_thw"].tolist() for p in (default, small)]
    assert grids[0] != grids[1] and grids[1] == [[1, 4, 4]]  # fewer patches under the smaller budget
    with pytest.raises(ValueError, match="min_pixels <= max_pixels"):
        load_processor(path, min_pixels=10_000, max_pixels=5_000)
