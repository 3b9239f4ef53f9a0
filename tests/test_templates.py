"""Prompt templates: registry, render/parse round trips per frame, reference boxes, messages, datasets, TRL formats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from trl_mig.geometry import Frame, iou, resized_size
from trl_mig.parsing import parse_answer
from trl_mig.rewards import FormatReward, IoUReward, format_reward, iou_reward, multi_box_iou_reward
from trl_mig.schema import features, format_box_tag
from trl_mig.scoring import FrameSpec, canonical_box
from trl_mig.templates import (
    NO_TARGET_ANSWER,
    TEMPLATES,
    PromptTemplate,
    RenderInfo,
    get_template,
    register_template,
    render_answer,
    render_boxes_in_text,
    render_completion,
    render_dataset,
    render_info,
    render_prompt,
)


FRAMES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "pixel", "normalized"]
LIMITS = [(3136, 1_003_520, 28), (3136, 12_845_056, 28), (256 * 28 * 28, 1280 * 28 * 28, 28), (3136, 1_003_520, 32)]
SIZES = [(640, 480), (800, 600)]
GOLD = [0.25, 0.2, 0.75, 0.6]


def _text(messages) -> str:
    return messages[-1]["content"][-1]["text"]


def _row(**overrides) -> dict:
    row = {
        "id": "r1",
        "question": f"Find the object marked {format_box_tag([0.451, 0.265, 0.519, 0.388], 0)} in the second image.",
        "solution": [GOLD],
        "target_image": [1],
        "image_sizes": SIZES,
        "reasoning": f"The mark {format_box_tag([0.1, 0.2, 0.3, 0.4], 0)} is a lamp; image 2 has one on the left.",
    }
    row.update(overrides)
    return row


def _strip_box_tokens(text: str) -> str:
    """What TRL's `skip_special_tokens=True` decoding leaves of Qwen2-VL's box tokens."""
    return text.replace("<|box_start|>", "").replace("<|box_end|>", "")


# --- registry ---------------------------------------------------------------------------------------------------------


def test_registry_names_versions_and_spellings():
    think, direct = get_template("mig-think-v1"), get_template("mig_direct_v1")
    assert (think.name, think.version, think.reasoning) == ("mig-think-v1", 1, True)
    assert (direct.name, direct.version, direct.reasoning) == ("mig-direct-v1", 1, False)
    assert get_template("MIG_THINK_V1") is think and get_template(think) is think
    assert set(think.instructions) == {"json", "box_tokens"}
    with pytest.raises(AttributeError):
        think.name = "other"  # frozen
    with pytest.raises(ValueError, match="mig-think-v1, mig-direct-v1, mig-think-brief-v1, mig-direct-brief-v1"):
        get_template("mig-think-v2")
    with pytest.raises(ValueError, match="already registered"):
        register_template(PromptTemplate("mig_think_v1", 1, True, dict(think.instructions)))
    with pytest.raises(ValueError, match="must end in -v2"):
        register_template(PromptTemplate("mig-think-v1b", 2, True, dict(think.instructions)))
    assert set(TEMPLATES) == {"mig-think-v1", "mig-direct-v1", "mig-think-brief-v1", "mig-direct-brief-v1"}
    assert not think.text_first and get_template("mig_think_brief_v1").text_first


@pytest.mark.parametrize(
    "brief, full", [("mig-think-brief-v1", "mig-think-v1"), ("mig-direct-brief-v1", "mig-direct-v1")]
)
@pytest.mark.parametrize("frame", FRAMES)
def test_brief_templates_put_the_text_first_and_answer_alike(brief, full, frame):
    row = _row(question='Find <box image="0">[0.1,0.2,0.3,0.4]</box> in image 2.')
    short, long = render_prompt(row, brief, frame)[0]["content"], render_prompt(row, full, frame)[0]["content"]
    assert [p["type"] for p in short] == ["text", "image", "image"] and [p["type"] for p in long][-1] == "text"
    text = short[0]["text"]
    assert text.startswith(long[-1]["text"].splitlines()[0])  # the same question, reference box in the frame
    assert "The 2 images below are numbered 1 to 2 in order." in text and "above" not in text
    assert NO_TARGET_ANSWER in text and len(text) < len(long[-1]["text"]) / 2
    if frame in ("qwen2_5_vl", "pixel"):
        assert "image 1: " in text and "image 2: " in text  # the sizes coordinates refer to are still stated
    # the completion, the answer and so the rewards are the full template's
    assert render_completion(row, brief, frame) == render_completion(row, full, frame)


def test_import_is_light():
    code = (
        "import sys, trl_mig.templates; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'trl', 'datasets'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- round trips --------------------------------------------------------------------------------------------------------


def _frame_units(frame: str, size: tuple[int, int], limits) -> tuple[float, float]:
    """Rounding steps per image side: the frame's resolution."""
    if frame == "qwen2_5_vl":
        return resized_size(size, limits[2], limits[0], limits[1])
    if frame == "pixel":
        return size
    return 1000, 1000  # 0-1000 grids, and three decimals for `normalized`


@st.composite
def _cases(draw):
    n = draw(st.integers(1, 4))
    sizes = [
        draw(st.tuples(st.integers(32, 4000), st.integers(32, 4000)).filter(lambda s: max(s) / min(s) <= 50))
        for _ in range(n)
    ]
    target = draw(st.integers(0, n - 1))
    box = []
    for _ in range(2):
        lo = draw(st.floats(0, 0.999))
        hi = draw(st.floats(lo + 0.001, 1.0))
        box.append((lo, hi))
    return sizes, target, [box[0][0], box[1][0], box[0][1], box[1][1]], draw(st.sampled_from(LIMITS))


@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("syntax", ["json", "box_tokens"])
@settings(max_examples=60)
@given(case=_cases())
def test_round_trip_gold_answer(frame, syntax, case):
    sizes, target, gold, limits = case
    min_pixels, max_pixels, factor = limits
    row = _row(solution=[gold], target_image=[target], image_sizes=sizes, question="Find it.")
    kwargs = {"min_pixels": min_pixels, "max_pixels": max_pixels, "factor": factor, "answer_syntax": syntax}
    completion = render_completion(row, "mig-think-v1", frame, **kwargs)
    for text in (_text(completion), _strip_box_tokens(_text(completion))):
        prediction = parse_answer(text)
        assert prediction is not None and prediction.image == target and len(prediction.boxes) == 1
        spec = FrameSpec(frame, min_pixels, max_pixels, factor)
        box = canonical_box(prediction.box, prediction.image, spec, sizes, None)
        units = _frame_units(frame, sizes[target], limits)
        for k, value in enumerate(box):
            steps, extent = units[k % 2], gold[k % 2 + 2] - gold[k % 2]
            # the frame's rounding: half a step, or one step where a sub-step box is widened so it never collapses
            tolerance = (0.5 if extent * steps >= 1 else 1.0) / steps + 1e-9
            assert abs(value - gold[k]) <= tolerance, (k, value, gold, units)
        big = all(gold[k + 2] - gold[k] >= 0.05 and (gold[k + 2] - gold[k]) * units[k] >= 40 for k in (0, 1))
        reward = IoUReward(frame, min_pixels, max_pixels, factor)
        value = reward([text], solution=[[gold]], target_image=[[target]], image_sizes=[sizes], frame=[frame])[0]
        assert value == pytest.approx(iou(box, gold))
        if big:
            assert value >= 0.95
    assert format_reward([completion]) == [1.0]


@pytest.mark.parametrize("frame", FRAMES)
def test_rendered_gold_pays_full_iou(frame):
    """The default reward (default limits, `frame` column) on the rendered gold completion of a realistic row."""
    completion = render_completion(_row(), "mig-direct-v1", frame)
    kwargs = {"solution": [[GOLD]], "target_image": [[1]], "image_sizes": [SIZES], "frame": [frame]}
    assert iou_reward([completion], **kwargs)[0] == pytest.approx(1.0, abs=0.01)


# --- reference boxes, hand-worked ---------------------------------------------------------------------------------------

QUESTION = f"Find the cup ({format_box_tag(GOLD, 1)}) in the first image."


@pytest.mark.parametrize(
    ("frame", "kwargs", "expected"),
    [
        ("qwen2_vl", {}, "[250, 200, 750, 600] in image 2"),
        ("qwen3_vl", {}, "[250, 200, 750, 600] in image 2"),
        # 800x600 -> smart_resize -> 812x588: 0.25*812=203, 0.2*588=117.6, 0.75*812=609, 0.6*588=352.8
        ("qwen2_5_vl", {}, "[203, 118, 609, 353] in image 2"),
        ("qwen2_5_vl", {"resized_sizes": [(644, 476), (1000, 500)]}, "[250, 100, 750, 300] in image 2"),
        # 800x600 at 256*28*28 .. 1280*28*28 pixels: 812x588 again (inside the limits)
        ("qwen2_5_vl", {"min_pixels": 256 * 28 * 28, "max_pixels": 1280 * 28 * 28}, "[203, 118, 609, 353] in image 2"),
        # a low ceiling: 800x600 -> beta = sqrt(480000/100000) -> floor(273.9/28)*28 x floor(365.1/28)*28 = 364x252
        ("qwen2_5_vl", {"max_pixels": 100_000}, "[91, 50, 273, 151] in image 2"),
        ("pixel", {}, "[200, 120, 600, 360] in image 2"),
        ("normalized", {}, "[0.25, 0.2, 0.75, 0.6] in image 2"),
        ("qwen2_vl", {"answer_syntax": "box_tokens"}, "<|box_start|>(250,200),(750,600)<|box_end|> in image 2"),
    ],
)
def test_reference_box_in_question(frame, kwargs, expected):
    text = _text(render_prompt(_row(question=QUESTION), "mig-think-v1", frame, **kwargs))
    assert text.startswith(f"Find the cup ({expected}) in the first image.\n\n")
    assert "<box" not in text and "</box>" not in text
    assert render_boxes_in_text(QUESTION, frame, SIZES, **kwargs) == f"Find the cup ({expected}) in the first image."


def test_frame_instructions_state_the_frame():
    row = _row(question="Find it.")
    resized = _text(render_prompt(row, "mig-think-v1", "qwen2_5_vl"))
    assert "image 1: 644x476, image 2: 812x588 (width x height)" in resized
    big = _text(render_prompt(row, "mig-think-v1", "qwen2_5_vl", max_pixels=12_845_056))
    assert "image 1: 644x476, image 2: 812x588" in big  # inside both ceilings
    tiny = _text(render_prompt(row, "mig-think-v1", "qwen2_5_vl", max_pixels=100_000))
    assert "image 1: 364x252, image 2: 364x252" in tiny
    assert "image 1: 640x480, image 2: 800x600" in _text(render_prompt(row, "mig-think-v1", "pixel"))
    for frame in ("qwen2_vl", "qwen3_vl"):
        assert "0-1000 grid" in _text(render_prompt(row, "mig-think-v1", frame))
    assert "from 0 to 1 with three decimals" in _text(render_prompt(row, "mig-think-v1", "normalized"))
    one = _text(render_prompt(_row(question="Find it.", image_sizes=[(640, 480)]), "mig-think-v1", "qwen2_5_vl"))
    assert "The image above is image 1." in one and "resized to 644x476 (width x height)" in one
    think, direct = (_text(render_prompt(row, t, "qwen3_vl")) for t in ("mig-think-v1", "mig-direct-v1"))
    assert "<think>" in think and "<think>" not in direct
    assert NO_TARGET_ANSWER in think and NO_TARGET_ANSWER in direct
    assert "several objects" not in think
    assert "several objects" in _text(render_prompt(row, "mig-think-v1", "qwen3_vl", multi_target=True))


def test_reasoning_boxes_rendered_in_the_frame():
    text = _text(render_completion(_row(), "mig-think-v1", "qwen2_vl"))
    assert text == (
        "<think>The mark [100, 200, 300, 400] in image 1 is a lamp; image 2 has one on the left.</think>"
        '<answer>{"image": 2, "bbox_2d": [250, 200, 750, 600]}</answer>'
    )
    pixel = _text(render_completion(_row(), "mig-think-v1", "pixel"))
    assert "[64, 96, 192, 192] in image 1" in pixel and "<box" not in pixel
    direct = _text(render_completion(_row(), "mig-direct-v1", "pixel"))
    assert direct == '<answer>{"image": 2, "bbox_2d": [200, 120, 600, 360]}</answer>'


# --- messages -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_images", [1, 2, 5])
def test_message_structure(n_images):
    row = _row(image_sizes=[(320 + 10 * i, 240) for i in range(n_images)], target_image=[n_images - 1])
    prompt = render_prompt(row, "mig-think-v1", "qwen2_5_vl")
    assert len(prompt) == 1 and prompt[0]["role"] == "user"
    content = prompt[0]["content"]
    assert content[:n_images] == [{"type": "image"}] * n_images  # placeholders only: no `image` key
    assert len(content) == n_images + 1 and set(content[-1]) == {"type", "text"} and content[-1]["type"] == "text"
    with_images = _row(image_sizes=None, images=[Image.new("RGB", (320, 240)) for _ in range(n_images)])
    with_images["target_image"] = [0]
    assert render_prompt(with_images, "mig-think-v1", "pixel")[0]["content"][:-1] == [{"type": "image"}] * n_images
    completion = render_completion(row, "mig-think-v1", "qwen2_5_vl")
    assert completion == [{"role": "assistant", "content": [{"type": "text", "text": _text(completion)}]}]


def test_system_prompt_is_off_by_default():
    assert [m["role"] for m in render_prompt(_row(), "mig-think-v1", "qwen3_vl")] == ["user"]
    prompt = render_prompt(_row(), "mig-think-v1", "qwen3_vl", system_prompt="You ground objects.")
    assert prompt[0] == {"role": "system", "content": [{"type": "text", "text": "You ground objects."}]}
    assert prompt[1]["role"] == "user"


# --- format reward, no target, several boxes ----------------------------------------------------------------------------

SOLUTIONS = {
    "single": ([GOLD], [1]),
    "no_target": ([], []),
    "multi": ([GOLD, [0.1, 0.1, 0.4, 0.5]], [1, 0]),
}


@pytest.mark.parametrize("solution", SOLUTIONS)
@pytest.mark.parametrize("syntax", ["json", "box_tokens"])
@pytest.mark.parametrize("frame", FRAMES)
def test_both_templates_pass_their_format_reward(solution, syntax, frame):
    boxes, targets = SOLUTIONS[solution]
    row = _row(solution=boxes, target_image=targets)
    think = _text(render_completion(row, "mig-think-v1", frame, answer_syntax=syntax))
    direct = _text(render_completion(row, "mig-direct-v1", frame, answer_syntax=syntax))
    for text in (think, _strip_box_tokens(think)):
        assert format_reward([text]) == [1.0] and FormatReward(require_think=False)([text]) == [0.0]
    for text in (direct, _strip_box_tokens(direct)):
        assert FormatReward(require_think=False)([text]) == [1.0] and format_reward([text]) == [0.0]
    assert format_reward([render_completion(row, "mig-think-v1", frame, answer_syntax=syntax)]) == [1.0]


@pytest.mark.parametrize("frame", FRAMES)
def test_no_target_and_multi_box_rows(frame):
    no_target = _text(render_completion(_row(solution=[], target_image=[]), "mig-direct-v1", frame))
    assert no_target == f"<answer>{NO_TARGET_ANSWER}</answer>"
    assert parse_answer(no_target).no_target
    columns = {"target_image": [[]], "image_sizes": [SIZES], "frame": [frame]}
    assert multi_box_iou_reward([no_target], solution=[[]], **columns) == [1.0]
    assert iou_reward([no_target], solution=[[]], **columns) == [None]

    boxes, targets = SOLUTIONS["multi"]
    multi = _text(render_completion(_row(solution=boxes, target_image=targets), "mig-direct-v1", frame))
    assert multi.startswith('<answer>[{"image": 2, "bbox_2d": [') and multi.count('"image"') == 2
    prediction = parse_answer(multi)
    assert prediction.images == (1, 0) and len(prediction.boxes) == 2
    columns = {"target_image": [targets], "image_sizes": [SIZES], "frame": [frame]}
    assert multi_box_iou_reward([multi], solution=[boxes], **columns)[0] == pytest.approx(1.0, abs=0.01)
    assert iou_reward([multi], solution=[boxes], **columns)[0] == pytest.approx(1.0, abs=0.01)  # first box


def test_render_answer():
    assert render_answer([GOLD], [1], "qwen3_vl") == '{"image": 2, "bbox_2d": [250, 200, 750, 600]}'
    assert render_answer([GOLD], [0], "qwen2_vl", answer_syntax="box_tokens") == (
        "Image-1: <|box_start|>(250,200),(750,600)<|box_end|>"
    )
    assert render_answer([GOLD], [1], "pixel", image_sizes=SIZES) == '{"image": 2, "bbox_2d": [200, 120, 600, 360]}'
    assert render_answer([GOLD], [0], "qwen2_5_vl", resized_sizes=[(1000, 500)]) == (
        '{"image": 1, "bbox_2d": [250, 100, 750, 300]}'
    )
    assert render_answer([], [], "normalized") == NO_TARGET_ANSWER
    # a tiny box keeps a positive extent after rounding, inside the image
    assert render_answer([[0.9995, 0.5, 0.9999, 0.5004]], [0], "qwen3_vl") == (
        '{"image": 1, "bbox_2d": [999, 500, 1000, 501]}'
    )
    # one image: an unknown target (-1) is that image
    assert render_answer([GOLD], [-1], "qwen3_vl", image_sizes=[(10, 10)]).startswith('{"image": 1,')


# --- errors -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("render", "overrides", "match"),
    [
        (render_completion, {"solution": None}, "solution` is null"),
        (render_completion, {"reasoning": None}, "needs a non-empty `reasoning`"),
        (render_completion, {"reasoning": "  "}, "needs a non-empty `reasoning`"),
        (render_completion, {"reasoning": "a <think>b</think>"}, "contains <think>/<answer> tags"),
        (render_completion, {"target_image": [-1]}, "unknown image"),
        (render_completion, {"target_image": [5]}, "refers to image 6"),
        (render_completion, {"target_image": [0, 1]}, "1 gold boxes but 2"),
        (render_completion, {"reasoning": 'see <box image="3">[0.1,0.1,0.2,0.2]</box>'}, "refers to image 4"),
        (render_prompt, {"question": 'see <box image="2">[0.1,0.1,0.2,0.2]</box>'}, "refers to image 3"),
        (render_prompt, {"question": "see <box image=0>[0.1,0.1,0.2,0.2]</box>"}, "unreadable box tag"),
        (render_prompt, {"question": 'see <box image="0">[0.1,0.1,0.2]</box>'}, "four coordinates"),
        (render_prompt, {"question": 'see <box image="0">[a,b,c,d]</box>'}, "malformed reference box"),
        (render_prompt, {"image_sizes": [], "images": None}, "no images"),
        (render_prompt, {"images": [None]}, "1 images but 2"),
    ],
)
def test_errors_name_the_row(render, overrides, match):
    with pytest.raises(ValueError, match=match) as info:
        render(_row(id="mig-42", **overrides), "mig-think-v1", "pixel")
    assert str(info.value).startswith("row 'mig-42': ")


def test_configuration_errors():
    with pytest.raises(ValueError, match="storage frame"):
        render_prompt(_row(), "mig-think-v1", "coco_xywh")
    with pytest.raises(ValueError, match="unknown answer syntax"):
        render_prompt(_row(), "mig-think-v1", "qwen3_vl", answer_syntax="xml")
    with pytest.raises(ValueError, match="no coordinate frame is known"):
        render_prompt(_row(), "mig-think-v1", "llava")
    with pytest.raises(ValueError, match="unknown prompt template"):
        render_prompt(_row(), "r1-v1", "qwen3_vl")


def test_frame_from_a_model():
    model = SimpleNamespace(config=SimpleNamespace(model_type="qwen3_vl_moe"))
    assert _text(render_prompt(_row(), "mig-think-v1", model)) == _text(
        render_prompt(_row(), "mig-think-v1", "qwen3_vl")
    )
    assert _text(render_prompt(_row(), "mig-think-v1", Frame.QWEN2_5_VL)) == _text(
        render_prompt(_row(), "mig-think-v1", "qwen2-5-vl")
    )


# --- datasets -----------------------------------------------------------------------------------------------------------


def _dataset(reasoning: bool = True, unlabeled: bool = False, multi: bool = False):
    from datasets import Dataset

    sizes = [[(640, 480), (400, 800)], [(100, 100)], [(64, 48), (40, 80), (300, 300)]]
    rows = {
        "id": ["a", "b", "c"],
        "images": [[Image.new("RGB", s, "white") for s in row] for row in sizes],
        "question": [f"Find {format_box_tag([0.1, 0.1, 0.5, 0.5], 0)} in image 2.", "Find the cat.", "Where is it?"],
        "solution": [[GOLD], [], None if unlabeled else [[0.1, 0.1, 0.9, 0.9]] + ([GOLD] if multi else [])],
        "target_image": [[1], [], None if unlabeled else [2] + ([0] if multi else [])],
        "image_sizes": sizes,
        "task": ["multi_view", "common_object", "region"],
        "source": ["test"] * 3,
    }
    if reasoning:
        rows["reasoning"] = [f"It matches {format_box_tag([0.2, 0.2, 0.4, 0.4], 0)}.", "No cat anywhere.", "Top."]
    return Dataset.from_dict(rows, features=features(reasoning=reasoning))


def test_render_dataset_adds_columns_and_keeps_the_others():
    dataset = _dataset()
    dataset.info.description = "a test set"
    rendered = render_dataset(dataset, "mig_think_v1", "qwen2_5_vl", max_pixels=12_845_056)
    assert rendered.column_names == [*dataset.column_names, "frame", "resized_sizes", "prompt", "completion"]
    for column in dataset.column_names:
        if column != "images":
            assert rendered[column] == dataset[column], column
    assert [[im.size for im in row] for row in rendered["images"]] == [
        [tuple(s) for s in r] for r in dataset["image_sizes"]
    ]
    assert rendered["frame"] == ["qwen2_5_vl"] * 3
    info = render_info(rendered)
    assert info == RenderInfo("mig-think-v1", 1, "qwen2_5_vl", 3136, 12_845_056, 28, "json", True, False, None)
    assert rendered.info.description.startswith("a test set\n") and dataset.info.description == "a test set"
    assert render_info(dataset) is None
    for row in rendered:
        expected = render_prompt(row, "mig-think-v1", "qwen2_5_vl", max_pixels=12_845_056)
        assert [{k: v for k, v in p.items() if v is not None} for p in row["prompt"][0]["content"]] == (
            expected[0]["content"]
        )
        assert row["completion"] == render_completion(row, "mig-think-v1", "qwen2_5_vl", max_pixels=12_845_056)
    # the rewards read the kept columns directly
    columns = {k: rendered[k] for k in ("solution", "target_image", "image_sizes", "frame", "id")}
    reward = IoUReward(max_pixels=12_845_056)
    assert reward(rendered["completion"], **columns) == [
        pytest.approx(1.0, abs=0.02),
        None,
        pytest.approx(1.0, abs=0.02),
    ]
    assert format_reward(rendered["completion"]) == [1.0] * 3
    assert multi_box_iou_reward(rendered["completion"], **columns)[1] == 1.0
    # re-rendering replaces the record rather than stacking them
    again = render_dataset(rendered, "mig-direct-v1", "qwen3_vl")
    assert again.info.description.count("trl-mig render:") == 1 and render_info(again).template == "mig-direct-v1"


def test_render_dataset_defaults_and_options():
    from datasets import DatasetDict

    rl = render_dataset(_dataset(reasoning=False, unlabeled=True), "mig-direct-v1", "qwen3_vl")
    assert "completion" not in rl.column_names and render_info(rl).with_completion is False  # RL / benchmark sets
    with pytest.raises(ValueError, match="row 'c': `solution` is null"):
        render_dataset(_dataset(reasoning=False, unlabeled=True), "mig-direct-v1", "qwen3_vl", with_completion=True)
    multi = render_dataset(_dataset(multi=True), "mig-think-v1", "qwen3_vl")
    assert render_info(multi).multi_target and all("several objects" in _text(p) for p in multi["prompt"])
    processor = SimpleNamespace(
        image_processor=SimpleNamespace(
            size={"shortest_edge": 1024, "longest_edge": 4096}, patch_size=16, merge_size=2
        )
    )
    model = SimpleNamespace(config=SimpleNamespace(model_type="qwen2_5_vl"))
    from_processor = render_dataset(_dataset(), frame=model, processor=processor, max_pixels=8192)
    info = render_info(from_processor)
    assert (info.frame, info.min_pixels, info.max_pixels, info.factor) == ("qwen2_5_vl", 1024, 8192, 32)
    splits = render_dataset(DatasetDict(train=_dataset(), test=_dataset(multi=True)), "mig-think-v1", "pixel")
    assert isinstance(splits, DatasetDict) and all(render_info(s).multi_target for s in splits.values())
    system = render_dataset(_dataset(), "mig-think-v1", "pixel", system_prompt="Ground.", with_completion=False)
    assert system[0]["prompt"][0] == {"role": "system", "content": [{"type": "text", "text": "Ground."}]}
    with pytest.raises(ValueError, match=r"\['image_sizes'\]"):
        render_dataset(_dataset().remove_columns("image_sizes"))


def test_rendered_rows_work_with_trl_formats():
    """TRL 1.16 recognises the rendered rows, fills the image placeholders, and the Qwen template sees images."""
    import jinja2
    import trl
    from trl.data_utils import is_conversational, prepare_multimodal_messages

    rendered = render_dataset(_dataset(), "mig-think-v1", "qwen2_5_vl")
    template = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5_vl.jinja").read_text()
    for row in rendered:
        assert is_conversational(row) and is_conversational({"prompt": row["prompt"]})
        prompt = prepare_multimodal_messages(row["prompt"], images=row["images"])
        completion = prepare_multimodal_messages(row["completion"])
        assert [p["image"] for p in prompt[0]["content"][:-1]] == row["images"]
        text = jinja2.Template(template).render(messages=prompt + completion, add_generation_prompt=False)
        assert text.count("<|image_pad|>") == len(row["images"])
        assert "<box" not in text and text.rstrip().endswith("</answer><|im_end|>")


def test_render_dataset_adds_resized_sizes_so_plain_rewards_score_exactly():
    from datasets import Dataset

    from trl_mig.geometry import resized_size
    from trl_mig.rewards import iou_reward

    sizes = [[800, 600], [333, 1000]]
    rows = [
        {"id": "a", "images": [None, None], "question": "Find it.", "solution": [[0.2, 0.3, 0.6, 0.7]],
         "target_image": [1], "image_sizes": sizes, "task": "t", "source": "s", "reasoning": "It is there."}
    ]  # fmt: skip
    data = {k: [r[k] for r in rows] for k in rows[0] if k != "images"}
    ds = Dataset.from_dict(data)
    limits = {"min_pixels": 56 * 56, "max_pixels": 112 * 112}  # a small processor, as the tiny models use
    rendered = render_dataset(ds, "mig-think-v1", "qwen2_5_vl", **limits)
    assert rendered[0]["resized_sizes"] == [list(resized_size(s, 28, **limits)) for s in sizes]
    completion = rendered[0]["completion"][0]["content"][0]["text"]
    # the default reward knows nothing of these limits: the column makes it exact anyway
    cols = {k: rendered[k] for k in ("solution", "target_image", "image_sizes", "resized_sizes", "frame")}
    assert iou_reward([completion], **cols)[0] == pytest.approx(1.0, abs=0.05)
    without = {k: v for k, v in cols.items() if k != "resized_sizes"}
    assert iou_reward([completion], **without)[0] < 0.9
    # a grid frame needs no sizes: no column
    assert "resized_sizes" not in render_dataset(ds, "mig-think-v1", "qwen2_vl").column_names
