"""`trl_mig.inference`: answers read into original pixels (numbers worked out by hand), and `ground` end to end.

Hand arithmetic used below (`smart_resize`, factor 28, DESIGN.md section 2), for a 1000x500 (width x height) image:
- default limits (3136, 1003520): round(500/28)=18 -> 504, round(1000/28)=36 -> 1008; 504*1008 fits: 1008x504.
- max_pixels = 78400: beta = sqrt(500000/78400) = 2.525; floor(500/2.525/28)=7 -> 196, floor(1000/2.525/28)=14 -> 392.
- tiny processor, max_pixels = 12544: beta = 6.31; floor(500/6.31/28)=2 -> 56, floor(1000/6.31/28)=5 -> 140.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import trl_mig
from trl_mig.inference import (
    GroundedBox,
    GroundingResult,
    _with_pixel_limits,
    boxes_from_answer,
    ground,
    load_images,
)


REPO = Path(__file__).resolve().parents[1]
WIDE = [(1000, 500)]


def _boxes(text: str, sizes, frame: str, **kwargs) -> list[tuple[int | None, tuple[float, ...]]]:
    return [(b.image, pytest.approx(b.box)) for b in boxes_from_answer(text, sizes, frame=frame, **kwargs)]


# --- boxes_from_answer: the pure conversion ---------------------------------------------------------------------


def test_qwen2_5_vl_resized_pixels_to_original_default_limits():
    # 1008x504 resized: x * 1000/1008, y * 500/504
    text = '<think>it is there</think><answer>{"image": 1, "bbox_2d": [252, 126, 504, 378]}</answer>'
    assert _boxes(text, WIDE, "qwen2_5_vl") == [(0, (250.0, 125.0, 500.0, 375.0))]


def test_qwen2_5_vl_resized_pixels_to_original_given_limits():
    # 392x196 resized: [98, 49, 196, 147] is [0.25, 0.25, 0.5, 0.75] of the image
    text = '<answer>{"image": 1, "bbox_2d": [98, 49, 196, 147]}</answer>'
    assert _boxes(text, WIDE, "qwen2_5_vl", max_pixels=78400) == [(0, (250.0, 125.0, 500.0, 375.0))]
    # the same numbers read with the default limits (1008x504) land elsewhere: the limits matter
    assert _boxes(text, WIDE, "qwen2_5_vl") != [(0, (250.0, 125.0, 500.0, 375.0))]


def test_qwen2_5_vl_real_resized_sizes_win_over_limits():
    text = '{"image": 1, "bbox_2d": [100, 50, 250, 200]}'
    assert _boxes(text, WIDE, "qwen2_5_vl", resized_sizes=[(500, 250)]) == [(0, (200.0, 100.0, 500.0, 400.0))]


def test_qwen2_vl_grid_box_tokens():
    text = "<answer>Image-1: <|box_start|>(100,200),(500,800)<|box_end|></answer>"
    assert _boxes(text, WIDE, "qwen2_vl") == [(0, (100.0, 100.0, 500.0, 400.0))]


def test_qwen3_vl_box_naming_the_second_image():
    text = '<answer>{"image": 2, "bbox_2d": [250, 500, 750, 1000]}</answer>'
    assert _boxes(text, [(800, 600), (640, 480)], "qwen3_vl") == [(1, (160.0, 240.0, 480.0, 480.0))]


def test_several_boxes_across_images_keep_answer_order_and_labels():
    text = (
        '<answer>[{"image": 2, "bbox_2d": [0, 0, 500, 500]}, {"image": 1, "bbox_2d": [100, 200, 300, 400]}]</answer>'
    )
    boxes = boxes_from_answer(text, [(1000, 500), (200, 100)], frame="qwen2_vl")
    assert [(b.image, b.box, b.label) for b in boxes] == [
        (1, (0.0, 0.0, 100.0, 50.0), "box 1"),
        (0, (100.0, 100.0, 300.0, 200.0), "box 2"),
    ]
    assert boxes[1].canonical == pytest.approx((0.1, 0.2, 0.3, 0.4))


def test_pixel_and_normalized_frames():
    sizes = [(640, 480)]
    assert _boxes('{"image": 1, "bbox_2d": [64, 48, 320, 240]}', sizes, "pixel") == [(0, (64, 48, 320, 240))]
    assert _boxes("[0.1, 0.2, 0.5, 1.0]", sizes, "normalized") == [(0, (64.0, 96.0, 320.0, 480.0))]


def test_unnamed_box_belongs_to_the_only_image():
    assert _boxes("<answer>[100, 100, 500, 500]</answer>", [(200, 100)], "qwen3_vl") == [(0, (20, 10, 100, 50))]


def test_unnamed_or_nonexistent_image_with_several_images_is_kept_without_image():
    sizes = [(200, 100), (400, 400)]
    # converted in image 0's size (the evaluator's fallback), reported with image=None
    assert _boxes("[100, 100, 500, 500]", sizes, "qwen3_vl") == [(None, (20, 10, 100, 50))]
    assert _boxes('{"image": 3, "bbox_2d": [100, 100, 500, 500]}', sizes, "qwen3_vl") == [(None, (20, 10, 100, 50))]
    assert _boxes('{"image": 0, "bbox_2d": [100, 100, 500, 500]}', sizes, "qwen3_vl") == [(None, (20, 10, 100, 50))]


def test_out_of_image_coordinates_are_clipped_and_non_finite_dropped():
    assert _boxes("(500,500),(1200,900)", WIDE, "qwen2_vl") == [(0, (500.0, 250.0, 1000.0, 450.0))]
    assert boxes_from_answer('{"image": 1, "bbox_2d": [1e999, 0, 10, 10]}', WIDE, frame="pixel") == []


@pytest.mark.parametrize(
    "text", ["I cannot tell.", "", "<think>still looking at (1,2),(3,4)", '{"image": 1, "bbox_2d": [1, 2]}']
)
def test_unreadable_answers_give_no_boxes_and_keep_the_text(text):
    result = GroundingResult.from_answer(text, WIDE, frame="qwen2_5_vl")
    assert (result.boxes, result.parsed, result.no_target, result.text) == ([], False, False, text)


def test_explicit_no_target_answer():
    result = GroundingResult.from_answer('<answer>{"image": null, "bbox_2d": []}</answer>', WIDE, frame="qwen3_vl")
    assert (result.boxes, result.parsed, result.no_target) == ([], True, True)


def test_to_dict_is_json_ready():
    result = GroundingResult.from_answer('{"image": 1, "bbox_2d": [0, 0, 500, 1000]}', WIDE, frame="qwen3_vl")
    data = json.loads(json.dumps(result.to_dict()))
    assert data == {
        "text": '{"image": 1, "bbox_2d": [0, 0, 500, 1000]}',
        "boxes": [{"image": 0, "box": [0.0, 0.0, 500.0, 500.0], "canonical": [0.0, 0.0, 0.5, 1.0], "label": "box 1"}],
        "no_target": False,
        "parsed": True,
        "frame": "qwen3_vl",
        "image_sizes": [[1000, 500]],
    }


# --- drawing -------------------------------------------------------------------------------------------------------


def test_draw_outlines_named_boxes_on_copies_of_input_size():
    images = [Image.new("RGB", (100, 50), "white"), Image.new("L", (40, 80), 255)]
    result = GroundingResult(
        "...",
        [
            GroundedBox(1, (10.0, 20.0, 30.0, 60.0), (0.25, 0.25, 0.75, 0.75), "box 1"),
            GroundedBox(None, (0.0, 0.0, 100.0, 50.0), (0.0, 0.0, 1.0, 1.0), "box 2"),
        ],
        parsed=True,
        image_sizes=[(100, 50), (40, 80)],
    )
    drawn = result.draw(images)
    assert [d.size for d in drawn] == [(100, 50), (40, 80)]
    assert drawn[0].getcolors() == [(100 * 50, (255, 255, 255))]  # image=None boxes are not drawn
    red = drawn[1].getpixel((round(0.25 * 39), 40))
    assert red[0] > 200 and red[1] < 50  # the left edge of the box on image 2
    assert images[1].getpixel((round(0.25 * 39), 40)) == 255  # inputs untouched
    with pytest.raises(ValueError, match="2 images"):
        result.draw(images[:1])


def test_load_images_accepts_paths(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (30, 20), "blue").save(path)
    loaded = load_images([str(path), path, Image.new("RGB", (5, 5))])
    assert [im.size for im in loaded] == [(30, 20), (30, 20), (5, 5)]
    assert load_images(path)[0].size == (30, 20)


# --- ground() with the tiny model ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import trl_mig.models  # noqa: F401
    from trl_mig.testing import tiny_checkpoint

    path = tiny_checkpoint()
    return AutoModelForImageTextToText.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (1000, 500), "white"), Image.new("RGB", (64, 96), "gray")]


def test_ground_end_to_end_matches_greedy_hf_generator(tiny):
    from trl_mig.sampling.generation import HFGenerator
    from trl_mig.templates import render_prompt
    from trl_mig.testing import TINY_MAX_PIXELS, TINY_MIN_PIXELS

    model, processor = tiny
    images = _images()
    result = trl_mig.ground(model, processor, images, "Find the gray square.", max_new_tokens=12)
    assert isinstance(result, trl_mig.GroundingResult)
    assert result.frame == "qwen2_5_vl" and result.image_sizes == [(1000, 500), (64, 96)]
    row = {"question": "Find the gray square.", "image_sizes": [(1000, 500), (64, 96)]}
    prompt = render_prompt(row, "mig-think-v1", "qwen2_5_vl", min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    expected = HFGenerator(model, processor, max_new_tokens=12, temperature=0).generate([prompt], [images])[0][0]
    assert result.text == expected
    assert [d.size for d in result.draw(images)] == [(1000, 500), (64, 96)]


def test_ground_reads_the_answer_with_the_processor_limits(tiny, monkeypatch, tmp_path):
    from trl_mig.sampling.generation import HFGenerator

    seen = {}

    def answer(self, prompts, images, n=1, seed=None):
        seen["prompt"], seen["images"] = prompts[0], images[0]
        return [['<think>x</think><answer>{"image": 1, "bbox_2d": [35, 14, 70, 42]}</answer>']]

    monkeypatch.setattr(HFGenerator, "generate", answer)
    path = tmp_path / "wide.png"
    _images()[0].save(path)
    result = ground(*tiny, [path], "Where?")
    # tiny processor limits: 1000x500 is resized to 140x56, and the prompt says so
    assert "140x56" in seen["prompt"][0]["content"][-1]["text"]
    assert [im.size for im in seen["images"]] == [(1000, 500)]
    assert [(b.image, b.box) for b in result.boxes] == [(0, pytest.approx((250.0, 125.0, 500.0, 375.0)))]
    # a declared frame overrides the model's: the same numbers on the 0-1000 grid
    result = ground(*tiny, [path], "Where?", frame="qwen3_vl", max_new_tokens=4)
    assert result.frame == "qwen3_vl" and result.boxes[0].box == pytest.approx((35.0, 7.0, 70.0, 21.0))


def test_ground_pixel_limit_overrides_use_a_copy_of_the_processor(tiny):
    model, processor = tiny
    before = dict(processor.image_processor.size)
    copied = _with_pixel_limits(processor, {"min_pixels": 3136, "max_pixels": 78400})
    assert copied is not processor and copied.image_processor.size["longest_edge"] == 78400
    # the copy feeds the model 1000x500 at 392x196, the size a prompt with these limits states: 14 x 28 patches
    grid = copied(images=[_images()[0]], text=["<|image_pad|>"], return_tensors="pt")["image_grid_thw"]
    assert grid.tolist() == [[1, 14, 28]]
    assert processor.image_processor.size == before
    assert (
        _with_pixel_limits(processor, {"min_pixels": before["shortest_edge"], "max_pixels": before["longest_edge"]})
        is processor
    )
    result = ground(model, processor, _images(), "Find it.", max_pixels=78400, max_new_tokens=4)
    assert isinstance(result.text, str) and processor.image_processor.size == before


def test_ground_generation_kwargs_reach_generate(tiny, monkeypatch):
    model, processor = tiny
    calls = []
    original = type(model).generate

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "generate", spy)
    ground(model, processor, _images()[1], "Find it.", max_new_tokens=4, generation_kwargs={"repetition_penalty": 1.3})
    ground(
        model, processor, _images()[1], "Find it.", max_new_tokens=4, generation_kwargs={"temperature": 0.7}, seed=0
    )
    assert (calls[0]["repetition_penalty"], calls[0]["do_sample"]) == (1.3, False)
    assert (calls[1]["temperature"], calls[1]["do_sample"]) == (0.7, True)
    with pytest.raises(ValueError, match="num_return_sequences"):
        ground(model, processor, _images()[1], "Find it.", generation_kwargs={"num_return_sequences": 2})


# --- the example script --------------------------------------------------------------------------------------------


def test_example_script_runs_offline_with_tiny(tmp_path):
    output = tmp_path / "out" / "boxes.png"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "error::DeprecationWarning,error::FutureWarning"}
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "ground.py"), "--tiny", "--output", str(output)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "drawing saved to" in done.stdout
    assert Image.open(output).size == (160 + 8 + 128, 128)
    assert json.loads(done.stdout.strip().splitlines()[-1])["image_sizes"] == [[160, 120], [128, 128]]
