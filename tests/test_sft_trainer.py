"""MIGSFTTrainer through TRL's real SFT loop on a tiny Qwen2.5-VL (CPU, offline): LoRA and full fine-tuning on
multi-image rows with reasoning, loss on the completion only, the token budget, the merge and its reload without PEFT.

Hyper-parameters are shrunk for speed (each noted where set); nothing here measures learning.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from datasets import Dataset

import trl_mig.models  # noqa: F401  (registers the tiny processor class with AutoProcessor)
from trl_mig import schema
from trl_mig.datasets_builders.synthetic import generate_rows
from trl_mig.templates import render_dataset
from trl_mig.testing import build_tiny_model, build_tiny_processor, tiny_checkpoint
from trl_mig.trainers import MIGSFTConfig, MIGSFTTrainer, merge_adapter
from trl_mig.trainers.budget import check_token_budget, token_lengths
from trl_mig.trainers.sft import VISION_TOWER_PATTERN


pytestmark = pytest.mark.filterwarnings(
    # peft 0.21's `PeftModel.__init__` reads `model.is_gradient_checkpointing`, which transformers 5.24 deprecated in
    # favour of `is_activation_checkpointing`: every LoRA wrap warns once. Upstream pairing, not trl-mig code.
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)

PAPER_URL = "https://huggingface.co/papers/2507.00748"
MIG_SECTION = "## Multi-image grounding (trl-mig)"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(root=tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def processor(checkpoint):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(checkpoint)


@pytest.fixture(scope="module")
def schema_rows():
    # 8 rows of 1 to 4 images each, with reasoning (the CoT/SFT schema)
    rows = generate_rows("train", 8, seed=0)
    assert max(len(r["images"]) for r in rows) >= 3
    return Dataset.from_list(rows, features=schema.features(reasoning=True))


@pytest.fixture(scope="module")
def rendered_rows(schema_rows, processor):
    return render_dataset(schema_rows, "mig-think-v1", "qwen2_5_vl", processor=processor, with_completion=True)


def make_config(output_dir, **overrides) -> MIGSFTConfig:
    settings = dict(
        max_steps=3,  # a few optimizer steps: enough for parameters to move
        per_device_train_batch_size=2,  # two multi-image rows per batch: exercises padding
        learning_rate=1e-2,  # high, so that 3 steps visibly change the weights
        use_cpu=True,
        bf16=False,  # TRL's default bf16=True fails on CPU
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    settings.update(overrides)
    return MIGSFTConfig(str(output_dir), **settings)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def changed(model, before) -> set[str]:
    return {name for name, param in model.named_parameters() if not torch.equal(param.detach(), before[name])}


@pytest.fixture(scope="module")
def lora_run(checkpoint, schema_rows, tmp_path_factory):
    """One LoRA run on schema rows (rendered by the trainer), with TRL's default activation checkpointing."""
    output_dir = tmp_path_factory.mktemp("sft-lora")
    trainer = MIGSFTTrainer(str(checkpoint), args=make_config(output_dir), train_dataset=schema_rows)
    before = snapshot(trainer.model)
    trainer.train()
    return trainer, before, output_dir


def test_lora_trains_language_model_adapters_only(lora_run):
    trainer, before, _ = lora_run
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)

    trainable = {name for name, param in trainer.model.named_parameters() if param.requires_grad}
    assert trainable and all("lora_" in name and ".language_model." in name for name in trainable)
    moved = changed(trainer.model, before)
    assert moved and moved <= trainable  # LoRA weights changed; base weights, vision tower included, did not
    vision = [name for name in before if VISION_TOWER_PATTERN.search(name)]
    assert vision and not moved.intersection(vision)


def test_labels_cover_the_completion_only(lora_run, rendered_rows, processor):
    """A batch as training sees it: no prompt token, no image placeholder is a label; every completion token is."""
    from trl.data_utils import apply_chat_template

    trainer, _, _ = lora_run
    tokenizer = processor.tokenizer
    image_pad = processor.image_token_id
    assistant = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    completions = {
        apply_chat_template({"prompt": row["prompt"], "completion": row["completion"]}, processor)["completion"]
        for row in rendered_rows
    }
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["image_grid_thw"].shape[0] >= 2  # multi-image batch
    for ids, mask, labels in zip(
        batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist()
    ):
        assert image_pad in ids and image_pad not in labels
        starts = [i for i in range(len(ids)) if ids[i : i + len(assistant)] == assistant]
        start = starts[-1] + len(assistant)  # the completion follows the generation prompt
        assert all(label == -100 for label in labels[:start])
        assert [label for label, m in zip(labels[start:], mask[start:]) if m] == [
            i for i, m in zip(ids[start:], mask[start:]) if m
        ]
        assert all(label == -100 for label, m in zip(labels, mask) if not m)
        assert tokenizer.decode([label for label in labels if label != -100]) in completions


def test_merged_checkpoint_is_standalone_and_matches_the_adapter(lora_run):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    trainer, _, output_dir = lora_run
    merged_dir = output_dir / "merged"
    files = set(os.listdir(merged_dir))
    assert {"config.json", "model.safetensors", "chat_template.jinja", "README.md"} <= files
    assert "adapter_config.json" not in files and "adapter_config.json" in os.listdir(output_dir)
    assert AutoProcessor.from_pretrained(merged_dir).tokenizer.padding_side == "left"

    merged = AutoModelForImageTextToText.from_pretrained(merged_dir).eval()
    batch = next(iter(trainer.get_train_dataloader()))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(**inputs).logits
        got = merged(**inputs).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_merged_checkpoint_reloads_without_peft_and_generates_with_two_images(lora_run):
    _, _, output_dir = lora_run
    script = textwrap.dedent(
        """
        import sys

        import trl_mig.models  # registers the tiny processor class, as any process loading a tiny model does
        from PIL import Image
        from transformers import AutoModelForImageTextToText, AutoProcessor

        path = sys.argv[1]
        processor = AutoProcessor.from_pretrained(path)
        model = AutoModelForImageTextToText.from_pretrained(path)
        assert processor.tokenizer.padding_side == "left"
        content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Where is the red square?"}]
        text = processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        images = [Image.new("RGB", (80, 60), "red"), Image.new("RGB", (64, 96), "blue")]
        inputs = processor(images=images, text=[text], return_tensors="pt")
        assert inputs["image_grid_thw"].shape[0] == 2
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        assert out.shape[1] > inputs["input_ids"].shape[1]
        loaded = sorted(name for name in sys.modules if name == "peft" or name.startswith("peft."))
        assert not loaded, loaded
        print("generated", out.shape[1] - inputs["input_ids"].shape[1])
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(output_dir / "merged")], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "generated" in result.stdout


def test_cards_cite_the_paper_and_record_the_grounding_settings(lora_run):
    _, _, output_dir = lora_run
    merged = (output_dir / "merged" / "README.md").read_text()
    adapter = (output_dir / "README.md").read_text()
    for card in (merged, adapter):
        assert PAPER_URL in card and MIG_SECTION in card and card.count(MIG_SECTION) == 1
        assert "- trl-mig" in card and "MIG-SFT" in card
        for setting in ("mig-think-v1 (v1)", "| frame | qwen2_5_vl |", "min_pixels=3136", "LoRA r=16, alpha=32"):
            assert setting in card
    assert "library_name: transformers" in merged  # loads without PEFT
    assert "library_name: peft" in adapter


def test_full_finetuning_trains_language_model_with_vision_tower_frozen(checkpoint, rendered_rows, tmp_path):
    config = make_config(
        tmp_path,
        use_lora=False,
        max_steps=2,  # shorter: the LoRA run covers the loop
        learning_rate=1e-3,
        activation_checkpointing=False,  # speed; the LoRA run covers TRL's default
    )
    trainer = MIGSFTTrainer(str(checkpoint), args=config, train_dataset=rendered_rows)  # already rendered rows
    before = snapshot(trainer.model)
    trainer.train()
    moved = changed(trainer.model, before)
    vision = {name for name in before if VISION_TOWER_PATTERN.search(name)}
    assert vision and not moved & vision
    assert any(".language_model.layers." in name for name in moved)
    assert "model.language_model.embed_tokens.weight" in moved  # tied to lm_head in the tiny model
    merged = tmp_path / "merged"
    assert "adapter_config.json" not in os.listdir(merged)
    card = (merged / "README.md").read_text()
    assert "full fine-tuning, vision tower frozen" in card and PAPER_URL in card


def test_token_lengths_match_the_collator(rendered_rows, processor):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    collator = DataCollatorForVisionLanguageModeling(processor, max_length=None, completion_only_loss=True)
    lengths = token_lengths(rendered_rows, processor)
    for row, length in zip(rendered_rows, lengths):
        batch = collator([{k: row[k] for k in ("prompt", "completion", "images")}])
        assert length.id == row["id"]
        assert length.total == int(batch["attention_mask"].sum())
        assert length.completion_tokens == int((batch["labels"] != -100).sum())
        assert sum(length.image_tokens) == int((batch["input_ids"] == processor.image_token_id).sum())


def test_budget_refuses_a_row_just_over_max_length(rendered_rows, processor, checkpoint, schema_rows, tmp_path):
    lengths = token_lengths(rendered_rows, processor)
    longest = max(lengths, key=lambda r: r.total)
    assert sum(r.total == longest.total for r in lengths) == 1
    max_length = longest.total - 1
    with pytest.raises(ValueError) as info:
        check_token_budget(rendered_rows, processor, max_length)
    message = str(info.value)
    assert f"1 of {len(lengths)} train rows" in message and f"max_length={max_length}" in message
    assert f"row {longest.id!r}: {longest.total} tokens" in message
    for fix in (f"raise `max_length` to at least {longest.total}", "max_pixels", "drop_over_budget=True"):
        assert fix in message

    kept = check_token_budget(rendered_rows, processor, max_length, drop=True)
    assert longest.id not in kept["id"] and len(kept) == len(rendered_rows) - 1
    assert check_token_budget(rendered_rows, processor, longest.total) is rendered_rows
    with pytest.raises(ValueError) as info:  # a streamed set is checked row by row as it is read
        list(check_token_budget(rendered_rows.to_iterable_dataset(), processor, max_length))
    assert "a streamed train row is longer" in str(info.value) and longest.id in str(info.value)

    with pytest.raises(ValueError, match=longest.id):  # the trainer runs the check before anything trains
        MIGSFTTrainer(str(checkpoint), args=make_config(tmp_path, max_length=max_length), train_dataset=schema_rows)


def test_rendered_rows_must_match_the_processor_pixel_limits(checkpoint, schema_rows, processor, tmp_path):
    rows = render_dataset(schema_rows.select(range(2)), "mig-think-v1", "qwen2_5_vl", max_pixels=56 * 56 * 2)
    with pytest.raises(ValueError, match="Re-render the rows"):
        MIGSFTTrainer(str(checkpoint), args=make_config(tmp_path), train_dataset=rows, processing_class=processor)
    with pytest.raises(ValueError, match="rendered in frame 'qwen2_5_vl'"):
        MIGSFTTrainer(str(checkpoint), args=make_config(tmp_path, frame="qwen2_vl"), train_dataset=rows)


def test_merge_adapter_merges_an_in_memory_peft_model(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from trl_mig.trainers.sft_config import DEFAULT_LORA_TARGET_MODULES

    processor = build_tiny_processor()
    lora = LoraConfig(r=4, target_modules=DEFAULT_LORA_TARGET_MODULES, init_lora_weights=False)  # B != 0
    model = get_peft_model(build_tiny_model(processor=processor), lora).eval()
    assert all(".language_model." in name for name, _ in model.named_parameters() if "lora_" in name)
    input_ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        expected = model(input_ids=input_ids).logits
    out = merge_adapter(model, tmp_path / "merged", processor=processor, card_settings={"template": "mig-think-v1"})
    reloaded = AutoModelForImageTextToText.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=input_ids).logits, expected, atol=1e-5, rtol=1e-5)
    card = (out / "README.md").read_text()
    assert PAPER_URL in card and "| template | mig-think-v1 |" in card


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"lora_r": 0}, "lora_r must be a positive integer, got 0"),
        ({"lora_dropout": 1.0}, r"lora_dropout must be in \[0, 1\), got 1.0"),
        ({"completion_only_loss": False}, "completion only"),
        ({"assistant_only_loss": True}, "assistant_only_loss=False"),
        ({"template": "mig-nope-v1"}, "unknown prompt template"),
        ({"frame": "coco_xywh"}, "storage frame"),
        ({"lora_target_modules": []}, "empty list"),
    ],
)
def test_config_refuses_bad_values(overrides, match):
    with pytest.raises(ValueError, match=match):
        MIGSFTConfig("out", use_cpu=True, **overrides)


def test_config_defaults_and_cli():
    from transformers import HfArgumentParser

    from trl_mig.trainers.sft_config import DEFAULT_LORA_TARGET_MODULES

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the defaults raise no deprecation warning (TRL's would, via the alias)
        config = MIGSFTConfig("out", use_cpu=True)
    assert config.activation_checkpointing and config.gradient_checkpointing
    assert config.max_length == 4096 and config.completion_only_loss is True and config.use_lora
    assert config.resolved_lora_target_modules == DEFAULT_LORA_TARGET_MODULES
    (parsed,) = HfArgumentParser(MIGSFTConfig).parse_args_into_dataclasses(
        ["--output_dir", "out", "--use_cpu", "--lora_target_modules", "all-linear", "--frame", "qwen2-5-vl"]
    )
    assert parsed.lora_target_modules == "all-linear" and parsed.frame == "qwen2_5_vl"


def test_full_fine_tune_merge_ignores_a_stale_adapter(tmp_path):
    """A full fine-tune written over an earlier LoRA run's folder must not be merged as that old adapter."""
    from trl_mig.trainers.sft import _drop_stale_adapter

    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"old")
    (tmp_path / "model.safetensors").write_bytes(b"new")
    _drop_stale_adapter(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
