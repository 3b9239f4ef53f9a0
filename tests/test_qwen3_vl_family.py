"""A tiny Qwen3-VL through the real pipeline: LoRA SFT + merge, GRPO and greedy evaluation, in its own frame.

Qwen3-VL differs from Qwen2.5-VL where this project cares: 16-px patches, absolute position embeddings in the vision
tower, interleaved multimodal rotary sections, and a 0-1000 JSON `bbox_2d` answer frame (`qwen3_vl`). The frame is
read from `config.model_type` everywhere, so these tests check that nothing assumes Qwen2.5-VL: the prompts and
completions are rendered on the 0-1000 grid, both trainers run their real TRL loops and the evaluator scores the
answers in that frame. Hyper-parameters are shrunk for speed; nothing here measures learning.
"""

from __future__ import annotations

import json
import math

import pytest
from datasets import Dataset
from transformers import AutoModelForImageTextToText, AutoProcessor

import trl_mig.models  # noqa: F401  (registers the tiny processor classes with AutoProcessor)
from trl_mig import schema
from trl_mig.datasets_builders.synthetic import generate_rows
from trl_mig.evaluation import evaluate_generator
from trl_mig.geometry import frame_for_model
from trl_mig.sampling.generation import HFGenerator
from trl_mig.templates import pixel_limits_from_processor, render_dataset
from trl_mig.templates.dataset import render_info
from trl_mig.testing import tiny_checkpoint
from trl_mig.trainers import MIGGRPOConfig, MIGGRPOTrainer, MIGSFTConfig, MIGSFTTrainer


pytestmark = pytest.mark.filterwarnings(
    # peft 0.21 reads `model.is_gradient_checkpointing`, deprecated in transformers 5.24 (upstream pairing)
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)
QUIET = {"use_cpu": True, "bf16": False, "report_to": "none", "logging_steps": 1, "save_strategy": "no",
         "disable_tqdm": True, "seed": 0}  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint("qwen3_vl", root=tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="module")
def rows():
    return Dataset.from_list(generate_rows("train", 6, seed=0), features=schema.features(reasoning=True))


@pytest.fixture(scope="module")
def sft_dir(checkpoint, rows, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft-qwen3")
    args = MIGSFTConfig(str(out), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2, lora_r=4,
                        lora_alpha=8, **QUIET)  # fmt: skip
    trainer = MIGSFTTrainer(str(checkpoint), args=args, train_dataset=rows)
    assert render_info(trainer.train_dataset).frame == "qwen3_vl"  # rendered in the model's own frame
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    return out


def test_the_tiny_checkpoint_is_a_qwen3_vl(checkpoint):
    model = AutoModelForImageTextToText.from_pretrained(checkpoint)
    processor = AutoProcessor.from_pretrained(checkpoint)
    assert model.config.model_type == "qwen3_vl" and frame_for_model(model).value == "qwen3_vl"
    assert type(processor).__name__ == "MIGQwen3VLProcessor" and processor.image_processor.patch_size == 16
    assert model.model.visual.pos_embed.num_embeddings == model.config.vision_config.num_position_embeddings
    assert model.config.text_config.rope_parameters["mrope_interleaved"] is True


def test_rows_render_on_the_0_1000_grid(checkpoint, rows):
    processor = AutoProcessor.from_pretrained(checkpoint)
    rendered = render_dataset(rows, "mig-think-v1", "qwen3_vl", processor=processor, with_completion=True)
    completion = rendered[0]["completion"][0]["content"][0]["text"]
    answer = json.loads(completion.split("<answer>")[1].split("</answer>")[0])
    answer = answer[0] if isinstance(answer, list) else answer
    assert all(isinstance(v, int) and 0 <= v <= 1000 for v in answer["bbox_2d"])
    assert "0-1000 grid" in rendered[0]["prompt"][0]["content"][-1]["text"]


def test_sft_merges_into_a_standalone_qwen3_vl(sft_dir):
    merged = AutoModelForImageTextToText.from_pretrained(sft_dir / "merged")
    assert merged.config.model_type == "qwen3_vl"
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_grpo_and_greedy_evaluation_in_the_qwen3_frame(sft_dir, rows, tmp_path):
    args = MIGGRPOConfig(str(tmp_path / "grpo"), learning_rate=0.1, per_device_train_batch_size=4, num_generations=2,
                         max_completion_length=8, max_steps=2, log_boxes_steps=0, activation_checkpointing=False,
                         **QUIET)  # fmt: skip
    trainer = MIGGRPOTrainer(str(sft_dir / "merged"), args=args, train_dataset=rows)
    assert trainer.frame.value == "qwen3_vl"
    trainer.train()
    logged = [e for e in trainer.state.log_history if "reward" in e]
    assert len(logged) == 2 and all(math.isfinite(e["reward"]) for e in logged)

    processor = AutoProcessor.from_pretrained(sft_dir / "merged", padding_side="left")
    model = AutoModelForImageTextToText.from_pretrained(sft_dir / "merged").eval()
    rendered = render_dataset(rows, "mig-think-v1", "qwen3_vl", processor=processor)
    generator = HFGenerator(model, processor, max_new_tokens=8, temperature=0.0)
    result = evaluate_generator(generator, rendered, frame="qwen3_vl",
                                pixel_limits=pixel_limits_from_processor(processor), batch_size=3)  # fmt: skip
    assert 0.0 <= result.metrics["overall"]["acc@0.5"] <= 1.0
    assert sum(task["n"] for task in result.metrics["tasks"].values()) == len(rows)
    assert len(result.predictions) == len(rows)
