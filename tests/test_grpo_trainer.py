"""`MIGGRPOTrainer` / `MIGGRPOConfig` through TRL's real GRPO loop on a tiny offline Qwen2.5-VL (CPU), the rollout
metrics and failure taxonomy on hand-written completions, and the rewards standing alone in plain `trl.GRPOTrainer`
and in TRL's own `trl grpo` command.

The tiny model has random weights: its completions are garbage, so grounding rewards are 0 for every completion and
GRPO has no advantage to follow. Training tests therefore add `length_reward` (pays completion length), which gives
each group some variance so that the parameters move; the trl-mig rewards still run and are logged next to it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers import AutoProcessor
from trl import GRPOConfig, GRPOTrainer

import trl_mig.models  # noqa: F401  (registers the tiny processor class with AutoProcessor)
from trl_mig.datasets_builders.synthetic import generate_rows
from trl_mig.geometry import from_canonical
from trl_mig.metrics.core import compute_grounding_metrics
from trl_mig.rewards import IoUReward, format_reward, iou_reward
from trl_mig.schema import features
from trl_mig.scoring import FrameSpec
from trl_mig.templates import render_dataset
from trl_mig.testing import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint
from trl_mig.trainers import MIGGRPOConfig, MIGGRPOTrainer
from trl_mig.trainers.rollout_metrics import (
    FAILURES,
    CompletionScore,
    classify,
    metric_keys,
    rollout_metrics,
    score_completions,
)


# TRL 1.16's `disable_gradient_checkpointing` (every generation) and PEFT 0.21's `PeftModel.__init__` read
# `model.is_gradient_checkpointing`, which transformers 5.24 deprecates with a FutureWarning; pyproject turns
# FutureWarnings into errors. It comes from upstream code paths, not ours (MIGGRPOConfig sets the new
# `activation_checkpointing` name), so only that message is ignored here.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")  # TRL 1.16 GRPOConfig.loss_type


# ---------------------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(root=tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def processor(checkpoint):
    return AutoProcessor.from_pretrained(checkpoint)


@pytest.fixture(scope="module")
def schema_dataset() -> Dataset:
    rows = generate_rows("train", 4, seed=0)
    for row in rows:
        row.pop("reasoning")  # an RL set: no reasoning, so nothing renders a `completion`
    return Dataset.from_list(rows, features=features())


@pytest.fixture(scope="module")
def rendered_dataset(schema_dataset, processor) -> Dataset:
    return render_dataset(schema_dataset, "mig-think-v1", frame="qwen2_5_vl", processor=processor)


def length_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """Pays completion length: the only signal a random model's group can differ on (see the module docstring)."""
    return [len(c[0]["content"] if isinstance(c, list) else c) / 100 for c in completions]


class SpyReward:
    """Records the columns each call received and pays 0."""

    __name__ = "spy"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, completions: list[Any], **kwargs: Any) -> list[float]:
        self.calls.append({"completions": completions, **kwargs})
        return [0.0] * len(completions)


def _args(output_dir: Path, cls: type = MIGGRPOConfig, **overrides: Any) -> GRPOConfig:
    settings: dict[str, Any] = {
        "output_dir": str(output_dir),
        "use_cpu": True,  # CPU-only machines: TRL's bf16 default needs use_cpu, and is turned off below anyway
        "bf16": False,
        "report_to": "none",
        "learning_rate": 0.1,  # large, so that two steps visibly change a tiny model
        "per_device_train_batch_size": 4,  # 2 prompts x 2 generations per step
        "num_generations": 2,  # the fewest GRPO accepts
        "max_completion_length": 8,  # the random model never stops; short completions keep a step ~0.3 s
        "max_steps": 2,
        "logging_steps": 1,  # one log entry per step to assert on
        "activation_checkpointing": False,  # nothing to save on a tiny model; faster (and no deprecated alias)
    }
    if cls is MIGGRPOConfig:
        settings["log_boxes_steps"] = 0  # drawing is tested where it is asked for
    settings.update(overrides)
    return cls(**settings)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def _changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> list[str]:
    return [name for name, param in model.named_parameters() if not torch.equal(before[name], param.detach())]


def _logged(trainer: GRPOTrainer, key: str) -> list[float]:
    return [entry[key] for entry in trainer.state.log_history if key in entry]


# ---------------------------------------------------------------------------------------------------------------
# the failure taxonomy and the rollout metrics on hand-written completions (no model)

SIZES = [(640, 480), (320, 200)]  # original sizes of a two-image row
RESIZED = [(644, 476), (308, 196)]  # as a processor with the default limits resizes them (smart_resize, factor 28)
GOLD = [0.25, 0.25, 0.5, 0.75]  # canonical, in image 2 (0-based 1)
SPEC = FrameSpec("qwen2_5_vl")


def _answer(image: int | None, box: list[float], think: str = "look") -> str:
    named = "null" if image is None else str(image)
    return f'<think>{think}</think><answer>{{"image": {named}, "bbox_2d": {json.dumps(box)}}}</answer>'


def _in_frame(box: list[float], image: int = 1) -> list[int]:
    return list(from_canonical(box, "qwen2_5_vl", resized_size=RESIZED[image]))


CASES = {
    "correct": _answer(2, _in_frame(GOLD)),
    "no_answer": "<think>the red square is in the second image, near the",
    "unparsable": "<think>ok</think><answer>image 2, somewhere left</answer>",
    "missed_target": _answer(None, []),
    "wrong_image": _answer(1, _in_frame(GOLD, 0)),
    "invalid_box": _answer(2, [200, 150, 100, 50]),
    "whole_image_box": _answer(2, [0, 0, 308, 196]),
    "out_of_bounds": _answer(2, [250, 100, 900, 190]),
    "low_iou": _answer(2, _in_frame([0.6, 0.1, 0.7, 0.2])),
}


@pytest.mark.parametrize("expected", list(CASES))
def test_taxonomy_buckets(expected: str) -> None:
    outcome, value, strict, box, image = classify(CASES[expected], [GOLD], [1], SPEC, SIZES, RESIZED)
    assert outcome == expected
    assert strict is (expected == "correct")
    if expected == "correct":
        assert value > 0.99 and image == 1 and box is not None


def test_taxonomy_negative_rows_and_unknown_target() -> None:
    assert classify(_answer(None, []), [], [], SPEC, SIZES, RESIZED)[0] == "correct"
    assert classify(_answer(2, [1, 2, 30, 40]), [], [], SPEC, SIZES, RESIZED)[0] == "false_positive"
    assert classify("no box here", [], [], SPEC, SIZES, RESIZED)[0] == "no_answer"
    # target image unknown: box-only, so naming image 1 for a box that matches is right
    assert classify(_answer(1, _in_frame(GOLD, 0)), [GOLD], [-1], SPEC, SIZES, RESIZED)[0] == "correct"
    # an answer naming no image when the target is known counts as the wrong image (DESIGN.md section 4)
    unnamed = f'<think>x</think><answer>{{"bbox_2d": {_in_frame(GOLD)}}}</answer>'
    assert classify(unnamed, [GOLD], [1], SPEC, SIZES, RESIZED)[0] == "wrong_image"


@pytest.mark.parametrize(
    "garbage", ["", None, 12, [{"role": "assistant"}], "<answer>[nan, 1, 2, 3]</answer>", "\x00" * 50]
)
def test_taxonomy_never_raises_on_model_output(garbage: Any) -> None:
    outcome = classify(garbage, [GOLD], [1], SPEC, SIZES, RESIZED)[0]
    assert outcome in FAILURES


def test_rollout_metrics_partition_and_parity_with_the_metric() -> None:
    completions = list(CASES.values()) * 2 + ["unlabelled row, still format-checked"]
    n = len(completions)
    solution = [[GOLD]] * (n - 1) + [None]
    scores = score_completions(
        completions, solution, [[1]] * n, [SIZES] * n, [RESIZED] * n, ["qwen2_5_vl"] * n, spec=SPEC
    )
    metrics = rollout_metrics(scores)
    assert set(metrics) == set(metric_keys())
    failures = sum(metrics[f"grounding/failure/{bucket}"] for bucket in FAILURES)
    assert math.isclose(failures + metrics["grounding/strict_acc@0.5"], 1.0)
    assert math.isclose(metrics["grounding/failure/no_answer"], 1 / len(CASES))
    # the same numbers as the `grounding` metric on the labelled rows
    reference = compute_grounding_metrics(
        completions[:-1], [[GOLD]] * (n - 1), target_images=[1] * (n - 1), image_sizes=[SIZES] * (n - 1),
        resized_sizes=[RESIZED] * (n - 1), frame="qwen2_5_vl",
    )["overall"]  # fmt: skip
    for key in ("acc@0.5", "strict_acc@0.5", "miou"):
        assert math.isclose(metrics[f"grounding/{key}"], reference[key]), key
    # format_rate covers every completion, labelled or not
    assert math.isclose(metrics["grounding/format_rate"], (reference["format_rate"] * (n - 1)) / n)


def test_rollout_metrics_without_labels() -> None:
    assert rollout_metrics([]) == {}
    only_format = rollout_metrics([CompletionScore(None, 0.0, False, None, None, True)])
    assert only_format == {"grounding/format_rate": 1.0}


# ---------------------------------------------------------------------------------------------------------------
# config


def test_config_defaults_and_validation(tmp_path) -> None:
    args = MIGGRPOConfig(str(tmp_path), use_cpu=True, bf16=False, report_to="none")  # no FutureWarning (pyproject)
    assert args.activation_checkpointing is True and args.gradient_checkpointing is True  # TRL's default kept
    assert (args.template, args.frame, args.log_boxes_steps, args.grounding_metrics) == (
        "mig-think-v1",
        None,
        50,
        True,
    )
    assert (
        MIGGRPOConfig(str(tmp_path), use_cpu=True, frame="Qwen2.5-VL", template="mig_direct_v1").frame == "qwen2_5_vl"
    )
    with pytest.raises(ValueError, match="log_boxes_steps must be an integer >= 0, got -1"):
        MIGGRPOConfig(str(tmp_path), use_cpu=True, log_boxes_steps=-1)
    with pytest.raises(ValueError, match="num_boxed_completions=0"):
        MIGGRPOConfig(str(tmp_path), use_cpu=True, num_boxed_completions=0)
    with pytest.raises(ValueError, match="unknown coordinate frame 'xyz'"):
        MIGGRPOConfig(str(tmp_path), use_cpu=True, frame="xyz")
    with pytest.raises(ValueError, match="storage frame"):
        MIGGRPOConfig(str(tmp_path), use_cpu=True, frame="coco_xywh")
    with pytest.raises(ValueError, match="unknown prompt template 'mig-v9'"):
        MIGGRPOConfig(str(tmp_path), use_cpu=True, template="mig-v9")
    for name in ("template", "frame", "grounding_metrics", "log_boxes_steps", "num_boxed_completions"):
        assert MIGGRPOConfig.__dataclass_fields__[name].metadata["help"]


# ---------------------------------------------------------------------------------------------------------------
# MIGGRPOTrainer through TRL's loop


@pytest.fixture(scope="module")
def trained(checkpoint, schema_dataset, tmp_path_factory):
    """Three steps of MIGGRPOTrainer on *unrendered* schema rows, drawing at steps 0 and 2."""
    spy = SpyReward()
    output_dir = tmp_path_factory.mktemp("mig-grpo")
    trainer = MIGGRPOTrainer(
        model=str(checkpoint),
        reward_funcs=[format_reward, iou_reward, length_reward, spy],
        args=_args(output_dir, max_steps=3, log_boxes_steps=2, num_boxed_completions=3),
        train_dataset=schema_dataset,
    )
    before = _snapshot(trainer.model)
    trainer.train()
    return trainer, spy, before


def test_train_logs_loss_and_changes_parameters(trained) -> None:
    trainer, _, before = trained
    assert len(_logged(trainer, "loss")) == 3
    assert _changed(before, trainer.model)


def test_train_renders_schema_rows_for_the_model(trained) -> None:
    trainer, spy, _ = trained
    assert {"prompt", "frame"} <= set(trainer.train_dataset.column_names)
    assert trainer.frame.value == "qwen2_5_vl" and trainer.template.name == "mig-think-v1"
    assert trainer.pixel_limits == {"min_pixels": TINY_MIN_PIXELS, "max_pixels": TINY_MAX_PIXELS, "factor": 28}
    prompt_text = spy.calls[0]["prompts"][0][0]["content"][-1]["text"]
    assert "resized to" in prompt_text  # the qwen2_5_vl instructions state each image's processed size


def test_each_reward_and_grounding_metrics_are_logged(trained) -> None:
    trainer, _, _ = trained
    for name in ("format_reward", "iou_reward", "length_reward", "spy"):
        assert len(_logged(trainer, f"rewards/{name}/mean")) == 3
        assert len(_logged(trainer, f"rewards/{name}/std")) == 3
    for key in metric_keys():
        assert len(_logged(trainer, key)) == 3, key
    for entry in trainer.state.log_history[:3]:
        shares = sum(entry[f"grounding/failure/{bucket}"] for bucket in FAILURES) + entry["grounding/strict_acc@0.5"]
        assert math.isclose(shares, 1.0)
    # per-completion columns in TRL's completions table
    assert set(trainer._logs["extra"]) >= {"grounding_iou", "grounding_outcome"}


def test_resized_sizes_and_frame_reach_the_rewards(trained, processor) -> None:
    _, spy, _ = trained
    patch = processor.image_processor.patch_size
    assert spy.calls
    for call in spy.calls:
        assert call["frame"] == ["qwen2_5_vl"] * len(call["completions"])
        for images, resized in zip(call["images"], call["resized_sizes"]):
            grid = processor(images=images)["image_grid_thw"]
            assert resized == [(int(w) * patch, int(h) * patch) for _, h, w in grid.tolist()]


def test_boxed_completions_are_written(trained) -> None:
    trainer, _, _ = trained
    folder = Path(trainer.args.output_dir) / "completions"
    steps = {p.name for p in folder.iterdir() if p.is_dir()}
    assert {"step-000000", "step-000002"} <= steps and "step-000001" not in steps  # first generation, then every 2
    files = sorted((folder / "step-000000").glob("*.png"))
    assert len(files) == 3
    with Image.open(files[0]) as image:
        assert image.mode == "RGB" and image.width > 100


def test_boxed_images_go_to_trackers(trained, schema_dataset) -> None:
    trainer, _, _ = trained

    class FakeTracker:
        logged: list[dict[str, Any]] = []

        class Image:
            def __init__(self, image, caption=None):
                self.image, self.caption = image, caption

        @classmethod
        def log(cls, data):
            cls.logged.append(data)

    row = dict(schema_dataset[0])
    completions = [_answer(2, [10, 10, 40, 40])]
    columns = {k: [row[k]] for k in ("solution", "target_image", "image_sizes")}
    scores = score_completions(completions, **columns, resized_sizes=None, spec=trainer._mig_spec)
    trainer._image_trackers = lambda: [FakeTracker]
    try:
        trainer._draw([row], completions, scores)
    finally:
        del trainer._image_trackers
    (data,) = FakeTracker.logged
    (image,) = data["completions/boxes"]
    assert isinstance(image.image, Image.Image) and row["id"] in image.caption


def test_model_card_cites_the_paper_with_grounding_settings(trained) -> None:
    trainer, _, _ = trained
    trainer.create_model_card(model_name="tiny-mig-grpo", dataset_name="trl-mig/synthetic")
    card = (Path(trainer.args.output_dir) / "README.md").read_text()
    assert "https://huggingface.co/papers/2507.00748" in card and "2507.00748" in card.split("## Citations")[1]
    for tag in ("trl-mig", "multi-image-grounding", "grpo"):
        assert f"- {tag}" in card
    for text in (
        "| base model |", "`format_reward` (weight 1)", "`iou_reward` (weight 1)", "trl-mig/synthetic (4 rows)",
        "`mig-think-v1` (version 1)", "| frame | `qwen2_5_vl` |", "min_pixels=3,136, max_pixels=12,544, factor=28",
    ):  # fmt: skip
        assert text in card, text
    trainer.create_model_card()  # re-saving replaces the section; the name defaults as in TRL's checkpoints
    card = (Path(trainer.args.output_dir) / "README.md").read_text()
    assert card.count("## Multi-image grounding") == 1
    assert f"# Model Card for {Path(trainer.args.output_dir).name}" in card


def test_grounding_columns_without_a_tokenisation_to_reuse(trained, schema_dataset, processor) -> None:
    # a `rollout_func` or an environment bypasses `_tokenize_prompts`: the image processor is asked instead
    trainer, _, _ = trained
    rows = [dict(schema_dataset[i]) for i in range(2)]
    trainer._mig_resized = None
    columns = trainer._with_grounding_columns(rows)
    patch = processor.image_processor.patch_size
    for row, out in zip(rows, columns):
        grid = processor(images=row["images"])["image_grid_thw"].tolist()
        assert out["resized_sizes"] == [(w * patch, h * patch) for _, h, w in grid] and out["frame"] == "qwen2_5_vl"
        assert "resized_sizes" not in row  # copies: TRL's own rows are left as they were
    with pytest.raises(ValueError, match="a training batch: rows were rendered for frame qwen2_vl"):
        trainer._with_grounding_columns([{**rows[0], "frame": "qwen2_vl"}])


@pytest.mark.parametrize("template, format_name", [("mig-think-v1", "format_reward"),
                                                    ("mig-direct-v1", "format_reward_answer_only")])  # fmt: skip
def test_default_rewards(checkpoint, schema_dataset, tmp_path, template: str, format_name: str) -> None:
    trainer = MIGGRPOTrainer(str(checkpoint), args=_args(tmp_path, template=template), train_dataset=schema_dataset)
    assert trainer.reward_func_names == [format_name, "iou_reward"]
    assert trainer.reward_weights.tolist() == [1.0, 1.0]
    instructions = trainer.train_dataset[0]["prompt"][0]["content"][-1]["text"]
    assert ("<think>" in instructions) == (template == "mig-think-v1")


def test_eval_rows_are_rendered_too(checkpoint, schema_dataset, tmp_path) -> None:
    trainer = MIGGRPOTrainer(
        str(checkpoint), args=_args(tmp_path), train_dataset=schema_dataset, eval_dataset={"val": schema_dataset}
    )
    assert {"prompt", "frame"} <= set(trainer.eval_dataset["val"].column_names)


def test_frame_column_must_match_the_model(checkpoint, schema_dataset, processor, tmp_path) -> None:
    grid_rows = render_dataset(schema_dataset, "mig-think-v1", frame="qwen2_vl", processor=processor)
    with pytest.raises(ValueError, match="rendered for frame qwen2_vl but the model answers in 'qwen2_5_vl'"):
        MIGGRPOTrainer(str(checkpoint), args=_args(tmp_path), train_dataset=grid_rows)
    # declaring the frame the rows were rendered for is the documented way out
    trainer = MIGGRPOTrainer(str(checkpoint), args=_args(tmp_path, frame="qwen2_vl"), train_dataset=grid_rows)
    assert trainer.frame.value == "qwen2_vl"


def test_peft(checkpoint, rendered_dataset, tmp_path) -> None:
    from peft import LoraConfig

    trainer = MIGGRPOTrainer(
        str(checkpoint),
        reward_funcs=[format_reward, iou_reward, length_reward],
        args=_args(tmp_path),
        train_dataset=rendered_dataset,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    before = _snapshot(trainer.model)
    trainer.train()
    changed = _changed(before, trainer.model)
    assert changed and all("lora_" in name for name in changed)
    assert len(_logged(trainer, "grounding/miou")) == 2


def test_beta_loads_a_reference_model(checkpoint, rendered_dataset, tmp_path) -> None:
    trainer = MIGGRPOTrainer(
        str(checkpoint),  # a path: beta > 0 on a model built in memory has no reference to load
        reward_funcs=[format_reward, iou_reward, length_reward],
        args=_args(tmp_path, beta=0.1),
        train_dataset=rendered_dataset,
    )
    before = _snapshot(trainer.model)
    trainer.train()
    assert trainer.ref_model is not None and _changed(before, trainer.model)
    assert len(_logged(trainer, "kl")) == 2 and len(_logged(trainer, "grounding/acc@0.5")) == 2


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_every_loss_type(checkpoint, rendered_dataset, tmp_path, loss_type: str) -> None:
    extra = {"importance_sampling_level": "sequence"} if loss_type == "luspo" else {}  # luspo is sequence-level
    trainer = MIGGRPOTrainer(
        str(checkpoint),
        reward_funcs=[format_reward, iou_reward, length_reward],
        args=_args(tmp_path, loss_type=loss_type, max_steps=1, **extra),
        train_dataset=rendered_dataset,
    )
    trainer.train()
    (loss,) = _logged(trainer, "loss")
    assert math.isfinite(loss)
    assert _logged(trainer, "grounding/format_rate")


# ---------------------------------------------------------------------------------------------------------------
# the rewards stand alone: plain TRL, in Python and through `trl grpo`


def test_plain_grpo_trainer_with_trl_mig_rewards(checkpoint, rendered_dataset, tmp_path) -> None:
    # standalone, a reward computes resized sizes itself: give it the tiny processor's limits
    tiny_iou = IoUReward(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    trainer = GRPOTrainer(
        str(checkpoint),
        reward_funcs=[format_reward, tiny_iou, length_reward],
        args=_args(tmp_path, cls=GRPOConfig),
        train_dataset=rendered_dataset,
    )
    before = _snapshot(trainer.model)
    trainer.train()
    assert len(_logged(trainer, "loss")) == 2 and _changed(before, trainer.model)
    assert len(_logged(trainer, f"rewards/{tiny_iou.__name__}/mean")) == 2


def test_trl_grpo_command(checkpoint, rendered_dataset, tmp_path) -> None:
    data_dir = tmp_path / "rendered"
    rendered_dataset.to_parquet(str(data_dir / "data" / "train-00000-of-00001.parquet"))
    # `trl grpo` runs TRL's script in a child process (`accelerate launch`), and loading the tiny checkpoint's
    # processor class needs `import trl_mig.models` first (DESIGN.md section 6; real checkpoints do not).
    # A `sitecustomize` on PYTHONPATH is imported by every Python process started with that environment, the CLI and
    # its child alike, so that import happens without touching TRL's script.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import trl_mig.models  # registers the tiny processor class\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRL_EXPERIMENTAL_SILENCE="1", CI="1")
    output_dir = tmp_path / "out"
    command = [
        str(Path(sys.executable).with_name("trl")), "grpo",
        "--model_name_or_path", str(checkpoint),
        "--dataset_name", str(data_dir),
        "--reward_funcs", "trl_mig.rewards.iou_reward", "trl_mig.rewards.format_reward",
        "--output_dir", str(output_dir),
        "--max_steps", "2", "--logging_steps", "1", "--report_to", "none",
        "--use_cpu", "--bf16", "false", "--activation_checkpointing", "false",
        "--per_device_train_batch_size", "2", "--num_generations", "2", "--max_completion_length", "8",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'rewards/iou_reward/mean'" in result.stdout + result.stderr
    assert (output_dir / "model.safetensors").is_file()
