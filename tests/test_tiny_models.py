"""Tiny offline Qwen-VL models: sizes, determinism, two-image processing and generation, save/load, registration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING, processor_class_from_name
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

import trl_mig
from trl_mig.models import MIGQwen2_5_VLProcessor, MIGQwen2VLProcessor, MIGQwen3VLProcessor
from trl_mig.testing import (
    FAMILIES,
    TinyModelConfig,
    build_tiny_model,
    build_tiny_processor,
    qwen_vl_chat_template,
    save_tiny_model,
    tiny_checkpoint,
)


ROOT = Path(__file__).resolve().parents[1]
STOCK = {"qwen2_5_vl": Qwen2_5_VLProcessor, "qwen2_vl": Qwen2VLProcessor, "qwen3_vl": Qwen3VLProcessor}
OURS = {"qwen2_5_vl": MIGQwen2_5_VLProcessor, "qwen2_vl": MIGQwen2VLProcessor, "qwen3_vl": MIGQwen3VLProcessor}
CONVERSATION = [
    {
        "role": "user",
        "content": [
            {"type": "image"},
            {"type": "image"},
            {"type": "text", "text": "Which image shows the red car? Answer with its bbox_2d."},
        ],
    }
]


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (100, 80), "red"), Image.new("RGB", (60, 130), "blue")]


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def processors():
    return {family: build_tiny_processor(family) for family in FAMILIES}


@pytest.fixture(scope="module")
def models(processors):
    return {family: build_tiny_model(family, "tiny", seed=0, processor=processors[family]) for family in FAMILIES}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {family: tiny_checkpoint(family, "tiny", seed=0, root=root) for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_processor_and_parameter_counts(family, processors, models):
    processor, model = processors[family], models[family]
    assert type(processor) is OURS[family]
    assert isinstance(processor.image_processor, Qwen2VLImageProcessorPil)
    assert model.config.model_type == family  # the frame comes from here
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert model.config.image_token_id == processor.image_token_id
    assert 100_000 <= model.num_parameters() <= 600_000
    small = build_tiny_model(family, "small", seed=0, processor=processor)
    assert 2_000_000 <= small.num_parameters() <= 10_000_000


def test_weights_depend_on_the_seed_only(processors, models):
    state = torch.get_rng_state()
    again = build_tiny_model("qwen2_5_vl", "tiny", seed=0, processor=processors["qwen2_5_vl"])
    other = build_tiny_model("qwen2_5_vl", "tiny", seed=1, processor=processors["qwen2_5_vl"])
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched
    assert _state_equal(models["qwen2_5_vl"], again)
    assert not _state_equal(models["qwen2_5_vl"], other)
    assert build_tiny_processor().tokenizer.get_vocab() == processors["qwen2_5_vl"].tokenizer.get_vocab()


def test_config_validation_and_family_spellings():
    assert TinyModelConfig.preset("small").mrope_section == [8, 12, 12]  # sums to head_dim / 2 = 32
    with pytest.raises(ValueError, match="multiple of 8"):
        TinyModelConfig(hidden_size=48, num_attention_heads=4)
    with pytest.raises(ValueError, match="unknown tiny model size"):
        build_tiny_model(size="huge")
    with pytest.raises(ValueError, match="unknown model family"):
        build_tiny_processor("llava")
    assert type(build_tiny_processor("qwen2-5-vl")) is MIGQwen2_5_VLProcessor


def test_chat_template_renders_one_vision_block_per_image(processors):
    processor = processors["qwen2_5_vl"]
    assert processor.chat_template == processor.tokenizer.chat_template == qwen_vl_chat_template()
    text = processor.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert text.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("family", FAMILIES)
def test_two_images_expand_to_their_grids(family, processors):
    processor = processors[family]
    text = processor.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    out = processor(text=[text], images=_images(), return_tensors="pt")
    grid = out["image_grid_thw"]
    assert grid.shape == (2, 3)
    merge = processor.image_processor.merge_size
    assert int((out["input_ids"] == processor.image_token_id).sum()) == int(grid.prod(-1).sum()) // merge**2
    # smart_resize within the tiny limits: every side a multiple of 2 patches, area <= 112 * 112
    patch = processor.image_processor.patch_size
    assert patch == (16 if family == "qwen3_vl" else 14)
    assert all(int(h) * int(w) * patch * patch <= 112 * 112 and h % 2 == 0 and w % 2 == 0 for _, h, w in grid)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_with_two_images(family, processors, models):
    processor, model = processors[family], models[family]
    short = processor.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    long = short.replace("the red car", "the small red car on the left")
    inputs = processor(text=[short, long], images=_images() * 2, return_tensors="pt", padding=True)
    assert inputs["attention_mask"][0, 0] == 0 and inputs["attention_mask"][0, -1] == 1  # left padding
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 2 and 0 < out.shape[1] - inputs["input_ids"].shape[1] <= 5
    assert len(processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)) == 2


def test_videos_are_refused_clearly(processors):
    with pytest.raises(ValueError, match="no video processor"):
        processors["qwen2_vl"](text=["<|vision_start|><|video_pad|><|vision_end|>"], videos=[[_images()[0]] * 2])


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_load_back(family, checkpoints, models):
    path = checkpoints[family]
    processor = AutoProcessor.from_pretrained(path)
    assert type(processor) is OURS[family]
    assert processor.tokenizer.padding_side == "left"
    assert processor.chat_template == qwen_vl_chat_template()
    assert json.loads((path / "processor_config.json").read_text())["processor_class"] == OURS[family].__name__
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert model.config.model_type == family
    assert _state_equal(model, models[family])  # same seed, same weights, through save/load


def test_fresh_offline_process_loads_and_generates(checkpoints, models):
    """A new process with `HF_HUB_OFFLINE=1`: `import trl_mig.models` is all it takes to load and run both families."""
    code = f"""
import json
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
import trl_mig.models
from trl_mig.testing import build_tiny_processor
paths = {json.dumps({f: str(p) for f, p in checkpoints.items()})}
report = {{"vocab": sorted(build_tiny_processor().tokenizer.get_vocab().items())}}
for family, path in paths.items():
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    conv = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "image"}}, {{"type": "text", "text": "Find it."}}]}}]
    text = processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
    images = [Image.new("RGB", (100, 80), "red"), Image.new("RGB", (60, 130), "blue")]
    inputs = processor(text=[text], images=images, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    report[family] = {{
        "processor": type(processor).__name__,
        "padding_side": processor.tokenizer.padding_side,
        "model": type(model).__name__,
        "checksum": sum(float(p.double().sum()) for p in model.state_dict().values()),
        "new_tokens": out.shape[1] - inputs["input_ids"].shape[1],
    }}
print(json.dumps(report))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(next(iter(checkpoints.values())).parent / "hub")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [tuple(item) for item in report["vocab"]] == sorted(build_tiny_processor().tokenizer.get_vocab().items())
    for family in FAMILIES:
        assert report[family]["processor"] == OURS[family].__name__
        assert report[family]["padding_side"] == "left"
        assert report[family]["model"] == type(models[family]).__name__
        assert report[family]["checksum"] == sum(float(p.double().sum()) for p in models[family].state_dict().values())
        assert 0 < report[family]["new_tokens"] <= 5


def test_registration_is_by_name_and_rewards_stay_light():
    assert processor_class_from_name("MIGQwen2_5_VLProcessor") is MIGQwen2_5_VLProcessor
    assert processor_class_from_name("MIGQwen2VLProcessor") is MIGQwen2VLProcessor
    assert trl_mig.MIGQwen2_5_VLProcessor is MIGQwen2_5_VLProcessor  # lazy top-level name
    code = (
        "import sys, trl_mig, trl_mig.rewards; "
        "assert 'trl_mig.models' in trl_mig._LAZY.values(); "
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'trl_mig.models') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("family", FAMILIES)
def test_real_format_checkpoints_still_resolve_to_transformers_classes(family, checkpoints, tmp_path, monkeypatch):
    """Registration must not hijack released checkpoints, whose files name transformers' classes (or none).

    Loading the stock processors for real needs torchvision (their video processor), which this environment lacks;
    so the stock class's `from_pretrained` is replaced by a recorder and we check that `AutoProcessor` dispatches
    to it, both when `processor_class` names it and when no file names a class (the config-type fallback).
    """
    config_class = {"qwen2_5_vl": Qwen2_5_VLConfig, "qwen2_vl": Qwen2VLConfig, "qwen3_vl": Qwen3VLConfig}[family]
    assert PROCESSOR_MAPPING[config_class] is STOCK[family]
    assert processor_class_from_name(STOCK[family].__name__) is STOCK[family]

    calls = []
    monkeypatch.setattr(STOCK[family], "from_pretrained", classmethod(lambda cls, path, **kw: calls.append(cls)))
    for processor_class in (STOCK[family].__name__, None):
        real = tmp_path / f"real-{processor_class}"
        shutil.copytree(checkpoints[family], real)
        for name in ("processor_config.json", "tokenizer_config.json"):
            config = json.loads((real / name).read_text())
            config.pop("processor_class")
            if processor_class is not None:
                config["processor_class"] = processor_class
            (real / name).write_text(json.dumps(config))
        AutoProcessor.from_pretrained(real)
    assert calls == [STOCK[family], STOCK[family]]


def test_save_tiny_model_with_a_custom_config(tmp_path):
    config = TinyModelConfig(hidden_size=32, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64)
    path = save_tiny_model(tmp_path / "custom", "qwen2_vl", size=config, seed=3, max_pixels=56 * 56)
    assert "import trl_mig.models" in (path / "README.md").read_text()
    processor = AutoProcessor.from_pretrained(path)
    assert processor.image_processor.size["longest_edge"] == 56 * 56
    assert AutoModelForImageTextToText.from_pretrained(path).config.text_config.hidden_size == 32
