"""Property / fuzz suite: parsers, geometry, rewards, the metrics and image decoding under hostile input.

Contracts checked (DESIGN.md sections 2-4): model output is scored, never raised on; unparsable output is never read as
"no target"; data errors raise `ValueError` naming the row and the field; nothing hangs (pathological regex inputs stay
well under a second); sizes and coordinates at the extremes (1x1, 20,000 px, 20000:1, 1e308, NaN, inf) give a valid
result or a clear `ValueError`. Builders are fuzzed in `test_fuzz_builders.py`.
"""

from __future__ import annotations

import io
import math
import re
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from trl_mig.evaluation.sources import _decode
from trl_mig.geometry import (
    Frame,
    box_iou,
    from_canonical,
    iou,
    is_valid_box,
    repair_box,
    resized_size,
    smart_resize,
    to_canonical,
)
from trl_mig.metrics import compute_grounding_metrics, compute_mc_bench_metrics
from trl_mig.parsing import Prediction, find_boxes, parse_answer, parse_image_reference
from trl_mig.rewards import (
    REWARD_FUNCS,
    FormatReward,
    IoUReward,
    IoUThresholdReward,
    MultiBoxIoUReward,
    format_reward,
    iou_reward,
)
from trl_mig.scoring import FrameSpec
from trl_mig.visualize import grounding_panel


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------------------------------------------------
# strategies: text that looks almost like an answer, with hostile numbers and unicode mixed in
# ----------------------------------------------------------------------------------------------------------------------

NUMBERS = [
    "0", "1", "-1", "+2", "999", "1.5", ".5", "5.", "1e3", "1E-3", "-0", "1e308", "-1e308", "1e400", "-1e400", "nan",
    "NaN", "inf", "-inf", "Infinity", "１２３", "٣", "9" * 400, "0x10", "1_000", "", " ", "--1", "1e", "e5",
]  # fmt: skip
FRAGMENTS = [
    "<think>", "</think>", "<answer>", "</answer>", "<ANSWER>", "</Answer>", "<|box_start|>", "<|box_end|>",
    "<|object_ref_start|>", "{", "}", "[", "]", "(", ")", ",", ":", '"', "'", "`", "```json\n", "```", "\n", " ",
    '"image"', "'image'", "image_index", '"bbox_2d"', "bbox", "'bbox_2d'", "null", "None", "Image-2", "image 3",
    "the second image", "in the 1th image", "2nd image", "img#4", "image 0", "\u202e", "\u200f", "\u0301", "\ufeff",
    "🐱", "\x00", "\ud7ff", "\uffff", "１", "，", "：", "［", "］",
]  # fmt: skip
tokens = st.one_of(st.sampled_from(FRAGMENTS), st.sampled_from(NUMBERS), st.text(max_size=6))
soup = st.lists(tokens, max_size=40).map("".join)
box_lists = st.lists(st.sampled_from(NUMBERS) | st.integers(-(10**6), 10**6).map(str), min_size=0, max_size=6).map(
    lambda xs: "[" + ", ".join(xs) + "]"
)
near_miss = st.builds(
    lambda pre, image, key, box, post: f'{pre}<answer>{{"image": {image}, {key}: {box}}}</answer>{post}',
    st.sampled_from(["", "<think>x</think>", "<think>", "</think>", "<think>a</think>\n"]),
    st.sampled_from(["1", "2", "0", "-1", "99", "null", '"Image-2"', '"x"', "1.0", "2.5", "9" * 5000, "true", "[]"]),
    st.sampled_from(['"bbox_2d"', '"bbox"', "'bbox_2d'", "bbox_2d", '"box"']),
    box_lists,
    st.sampled_from(["", "</answer>", " tail", "<answer>[1,2,3,4]</answer>"]),
)
completion_texts = st.one_of(soup, near_miss, st.text(max_size=200))
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["role", "content", "type", "text"]), children, max_size=4)
    ),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["assistant", "user", "system", None]),
            "content": st.one_of(completion_texts, json_like),
        }
    ),
    max_size=3,
)
any_completion = st.one_of(completion_texts, messages, json_like)

EXPLICIT_EMPTY_RE = re.compile(r"""bbox(?:_2d)?["']?\s*:\s*\[\s*\]""", re.IGNORECASE)


def _check_prediction(pred) -> None:
    assert pred is None or isinstance(pred, Prediction)
    if pred is None:
        return
    assert len(pred.boxes) == len(pred.images)
    for box in pred.boxes:
        assert len(box) == 4 and all(isinstance(v, float) for v in box)
    assert all(image is None or isinstance(image, int) for image in pred.images)
    assert pred.syntax in ("json", "box_tokens", "tuple", "list")
    if pred.no_target:
        assert pred.boxes == ()


# ----------------------------------------------------------------------------------------------------------------------
# parsers
# ----------------------------------------------------------------------------------------------------------------------


@FUZZ
@given(completion=any_completion)
def test_parse_answer_never_raises_and_returns_a_well_formed_prediction(completion):
    _check_prediction(parse_answer(completion))


@FUZZ
@given(text=st.one_of(soup, near_miss))
def test_no_target_only_for_the_explicit_empty_answer(text):
    pred = parse_answer(text)
    if pred is not None and pred.no_target:
        assert EXPLICIT_EMPTY_RE.search(text), text  # unparsable output is never read as "no target"


@FUZZ
@given(text=st.one_of(soup, st.text(max_size=200)))
def test_find_boxes_spans_are_ordered_disjoint_and_reparse(text):
    found = find_boxes(text)
    assert isinstance(found, list)
    end = 0
    for (start, stop), box, image in found:
        assert end <= start < stop <= len(text)
        end = stop
        assert len(box) == 4 and all(isinstance(v, float) for v in box)
        assert image is None or isinstance(image, int)
        again = find_boxes(text[start:stop])
        assert [b for _, b, _ in again] == [box] or all(math.isnan(v) for v in box)


UNICODE_CASES = [
    "\u202e<answer>[1, 2, 3, 4]</answer>",  # RTL override
    '<answer>\u200f{"image": 2, "bbox_2d": [1, 2, 3, 4]}\u200f</answer>',
    "<answer>[1\u0301, 2, 3, 4]</answer>",  # combining accent on a digit
    "<answer>[１２３, ４５, ６７８, ９９９]</answer>",  # full-width digits
    '<answer>{"image": ２, "bbox_2d": [１, ２, ３, ４]}</answer>',
    "<answer>［1，2，3，4］</answer>",  # full-width brackets and commas
    "🐱 in image 2 🐶 [1, 2, 3, 4] 🎉",
    '<answer>{"image": "第二", "bbox_2d": [1, 2, 3, 4]}</answer>',
    "\ufeff<think>\u0000</think><answer>(1,2),(3,4)</answer>",
    "<answer>[٣, ٤, ٥, ٦]</answer>",  # Arabic-Indic digits
    "\ud800",  # lone surrogate
]


@pytest.mark.parametrize("text", UNICODE_CASES)
def test_unicode_never_raises(text):
    _check_prediction(parse_answer(text))
    assert isinstance(find_boxes(text), list)
    assert format_reward([text]) in ([0.0], [1.0])
    assert parse_image_reference(text) is None or isinstance(parse_image_reference(text), int)


N = 200_000
PATHOLOGICAL = {
    "open_lists": "[1," * (N // 3),
    "open_parens": "(" * N,
    "open_brackets": "[" * N,
    "half_tuples": "(1,2),(3," * (N // 9),
    "tuples": "(1,2)," * (N // 6),
    "list_prefix": "[1,2,3," * (N // 7),
    "digits": "1" * N,
    "dots": "1." * (N // 2),
    "exponents": "1e" * (N // 2),
    "signs": "+-" * (N // 2),
    "bbox_keys": "bbox_2d: [" * (N // 10),
    "bbox_objects": '{"bbox_2d": [1,2,3,4]}' * (N // 22),
    "bbox_unclosed": '{"image": 1, "bbox_2d": [' + "1, " * (N // 3),
    "image_words": "image " * (N // 6),
    "image_mentions": "image 2 " * (N // 8),
    "image_keys": '"image": ' * (N // 9),
    "quotes": "'" * N,
    "answer_tags": "<answer>" * (N // 8),
    "upper_answer_tags": "<ANSWER>" * (N // 8),
    "think_tags": "</think>" * (N // 8),
    "think_answer_pairs": "<think>x" + "</think> <answer>" * (N // 18) + "</answer>x",
    "answer_closes": " <answer>" + "</answer>\n" * (N // 10) + "y",
    "whitespace": "<think>x</think>" + " " * N + "<answer>[1,2,3,4]</answer>" + " " * N + "x",
    "full_width": "１２３" * (N // 3),
    "rtl_lists": "\u202e[1,2,3,4]" * (N // 10),
    "ordinals": "2nd " * (N // 4),
    "huge_mention": "image " + "9" * 5000 + " [1, 2, 3, 4]",
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_pathological_inputs_stay_fast(name):
    # CPU time, not wall time: other processes on shared cores must not make this flaky; quadratic cases took 20 s
    text = PATHOLOGICAL[name]
    for func in (parse_answer, find_boxes, FormatReward().score, FormatReward(require_think=False).score):
        start = time.process_time()
        func(text)
        assert time.process_time() - start < 1.0, (func, name)
    start = time.process_time()
    out = iou_reward([text], solution=[[[0.1, 0.1, 0.5, 0.5]]], target_image=[[0]], image_sizes=[[(640, 480)]])
    assert time.process_time() - start < 1.0
    assert 0.0 <= out[0] <= 1.0


def test_huge_image_numbers_do_not_raise():
    # int() refuses more than 4,300 digits: an absurd image number must read as an image no row has
    big = "9" * 5000
    assert find_boxes(f"image {big} [1, 2, 3, 4]")[0][1:] == ((1.0, 2.0, 3.0, 4.0), 10**9 - 1)
    assert find_boxes(f"[1, 2, 3, 4] in the {big}th image")[0][2] == 10**9 - 1
    assert parse_image_reference(big) == 10**9 - 1
    assert parse_image_reference("0" * 5000 + "2") == 1
    assert parse_image_reference("-" + big) == -1
    pred = parse_answer(f'{{"image": {big}, "bbox_2d": [1, 2, 3, 4]}}')
    assert pred is not None and pred.box == (1.0, 2.0, 3.0, 4.0) and pred.image == 10**9 - 1
    out = iou_reward([f'<think>x</think><answer>{{"image": {big}, "bbox_2d": [1, 2, 3, 4]}}</answer>'],
                     solution=[[[0, 0, 1, 1]]], target_image=[[0]], image_sizes=[[(8, 8)]])  # fmt: skip
    assert out == [0.0]


# ----------------------------------------------------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------------------------------------------------

EXTREME_SIDES = [1, 2, 27, 28, 29, 199, 200, 201, 1000, 5600, 20_000, 200_000]


def _valid_resized(hw, factor=28):
    return all(isinstance(v, int) and v >= factor and v % factor == 0 for v in hw)


@pytest.mark.parametrize("height", EXTREME_SIDES)
@pytest.mark.parametrize("width", EXTREME_SIDES)
def test_smart_resize_extremes_give_a_valid_size_or_a_clear_error(height, width):
    for max_pixels in (3136, 1_003_520, 12_845_056):
        try:
            out = smart_resize(height, width, max_pixels=max_pixels)
        except ValueError as exc:
            assert "aspect ratio" in str(exc)
            assert max(height, width) / min(height, width) > 200
        else:
            assert _valid_resized(out)
            assert max(height, width) / min(height, width) <= 200
        # lenient (what rewards use): always a valid size, never an error
        w, h = resized_size((width, height), max_pixels=max_pixels)
        assert _valid_resized((h, w))
        if max(height, width) / min(height, width) <= 200:
            assert (h, w) == out


@FUZZ
@given(
    width=st.integers(-10, 10**6),
    height=st.integers(-10, 10**6),
    factor=st.sampled_from([14, 28, 32]),
    limits=st.sampled_from([(3136, 1_003_520), (3136, 12_845_056), (1, 10**9), (200_704, 200_704)]),
)
def test_resized_size_is_always_a_positive_multiple_of_the_factor(width, height, factor, limits):
    w, h = resized_size((width, height), factor, *limits)
    assert _valid_resized((w, h), factor)


@pytest.mark.parametrize("height, width", [(0, 5), (5, 0), (-1, 28), (28, -1), (0, 0)])
def test_smart_resize_strict_rejects_non_positive_sides(height, width):
    with pytest.raises(ValueError, match="positive"):
        smart_resize(height, width)


finite = st.floats(-1e6, 1e6, allow_nan=False)
hostile = st.one_of(
    finite,
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 1e-308, 5e-324, math.inf, -math.inf, math.nan, 1.7976931348623157e308]),
)
boxes = st.tuples(hostile, hostile, hostile, hostile)
zero_area = st.tuples(finite, finite).map(lambda p: (p[0], p[1], p[0], p[1] + 1))


@FUZZ
@given(a=st.one_of(boxes, zero_area), b=st.one_of(boxes, zero_area))
def test_iou_in_unit_interval_symmetric_and_equal_to_box_iou(a, b):
    value = iou(a, b)
    assert 0.0 <= value <= 1.0
    assert iou(b, a) == pytest.approx(value, abs=1e-12)
    with np.errstate(all="raise"):  # box_iou silences its own warnings
        matrix = box_iou([a], [b])
    assert matrix.shape == (1, 1)
    assert float(matrix[0, 0]) == pytest.approx(value, abs=1e-9)
    if not is_valid_box(a) or not is_valid_box(b):
        assert value == 0.0


@pytest.mark.parametrize(
    "bad", [None, 5, "abcd", [1, 2, 3], [1, 2, 3, 4, 5], ["a", 1, 2, 3], [[1], 2, 3, 4], object()]
)
def test_iou_never_raises_on_non_boxes(bad):
    assert iou(bad, (0, 0, 1, 1)) == 0.0 == iou((0, 0, 1, 1), bad)


SIZES = [(1, 1), (2, 1), (20_000, 1), (1, 20_000), (20_000, 20_000), (640, 480), (28, 5600)]
FRAMES = [f.value for f in Frame]


@FUZZ
@given(
    box=st.tuples(*[st.floats(0, 1) for _ in range(4)]).map(
        lambda v: (min(v[0], v[2]), min(v[1], v[3]), max(v[0], v[2]), max(v[1], v[3]))
    ),
    size=st.sampled_from(SIZES),
    frame=st.sampled_from(FRAMES),
)
def test_canonical_round_trip_at_extreme_sizes(box, size, frame):
    framed = from_canonical(box, frame, image_size=size)
    back = to_canonical(framed, frame, image_size=size)
    assert all(0.0 <= v <= 1.0 for v in back)
    if Frame.parse(frame).is_integer:  # rounded to whole units of the frame: within one unit
        sx, sy = (1000, 1000) if frame != "qwen2_5_vl" else resized_size(size)
        tol = (1 / sx + 1e-9, 1 / sy + 1e-9)
    else:
        tol = (1e-6, 1e-6)
    for k, (v, w) in enumerate(zip(back, box)):
        assert abs(v - w) <= tol[k % 2] * (1 if frame != "coco_xywh" else 2), (frame, size, box, back)


@FUZZ
@given(box=boxes, frame=st.sampled_from(FRAMES), size=st.sampled_from(SIZES))
def test_to_canonical_of_hostile_boxes_never_makes_a_non_finite_box_valid(box, frame, size):
    out = to_canonical(box, frame, image_size=size)
    assert len(out) == 4
    if not all(math.isfinite(v) for v in box):  # box rule 2: clipping must not turn a NaN/inf box into a valid one
        assert not is_valid_box(out)
        assert iou(out, (0, 0, 1, 1)) == 0.0
    else:
        assert all(0.0 <= v <= 1.0 for v in out if math.isfinite(v))


@pytest.mark.parametrize("size", [(0, 0), (0, 10), (10, 0), (-5, 10), (math.nan, 10), (math.inf, 10)])
@pytest.mark.parametrize("frame", ["pixel", "coco_xywh"])
def test_sized_frames_reject_a_non_positive_image_size_with_a_value_error(size, frame):
    with pytest.raises(ValueError, match="positive image size"):
        to_canonical([1, 1, 2, 2], frame, image_size=size)
    with pytest.raises(ValueError, match="positive image size"):
        from_canonical([0.1, 0.1, 0.2, 0.2], frame, image_size=size)


@FUZZ
@given(box=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=6))
def test_repair_box_repairs_finite_gold_and_rejects_the_rest(box):
    if len(box) == 4 and all(math.isfinite(v) for v in box):
        fixed, changed = repair_box(box)
        assert all(0.0 <= v <= 1.0 for v in fixed)
        assert fixed[0] <= fixed[2] and fixed[1] <= fixed[3]
        assert changed == (fixed != tuple(box))
        assert repair_box(fixed) == (fixed, False)  # idempotent
    else:
        with pytest.raises(ValueError, match="four finite"):
            repair_box(box)


# ----------------------------------------------------------------------------------------------------------------------
# rewards
# ----------------------------------------------------------------------------------------------------------------------

REWARDS = [
    *REWARD_FUNCS.values(),
    FormatReward(require_think=False),
    IoUReward(frame="qwen2_vl"),
    IoUThresholdReward(0.7, frame="pixel", max_pixels=12_845_056),
    MultiBoxIoUReward(frame="coco_xywh"),
    MultiBoxIoUReward(frame="normalized"),
]
gold_boxes = st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)).map(
    lambda v: [min(v[0], v[2]), min(v[1], v[3]), max(v[0], v[2]), max(v[1], v[3])]
)

valid_gold = gold_boxes.filter(is_valid_box)  # zero-area gold is flagged by the metric (`invalid_gold`)


@st.composite
def labelled_rows(draw):
    """One well-formed row of columns (gold is valid data: only the completion is hostile)."""
    sizes = draw(st.lists(st.sampled_from(SIZES), min_size=1, max_size=4))
    kind = draw(st.sampled_from(["boxes", "none", "empty"]))
    if kind == "none":
        return None, None, sizes
    if kind == "empty":
        return [], [], sizes
    n = draw(st.integers(1, 3))
    solution = draw(st.lists(gold_boxes, min_size=n, max_size=n))
    targets = draw(st.lists(st.integers(-1, len(sizes) - 1), min_size=n, max_size=n))
    return solution, targets, sizes


@FEW
@given(
    completions=st.lists(any_completion, min_size=1, max_size=6),
    rows=st.data(),
    frames=st.data(),
)
def test_every_reward_scores_any_completion_with_trl_signature(completions, rows, frames):
    n = len(completions)
    drawn = [rows.draw(labelled_rows()) for _ in range(n)]
    frame_column = frames.draw(
        st.one_of(st.none(), st.lists(st.sampled_from([*FRAMES, None]), min_size=n, max_size=n))
    )
    columns = {
        "solution": [d[0] for d in drawn],
        "target_image": [d[1] for d in drawn],
        "image_sizes": [d[2] for d in drawn],
        "frame": frame_column,
        "prompts": [None] * n,
        "completion_ids": [[1, 2]] * n,
        "trainer_state": object(),
        "log_metric": lambda *a, **k: None,
    }
    for reward in REWARDS:
        out = reward(completions=completions, **columns)
        assert isinstance(out, list) and len(out) == n
        for value, (solution, _, _) in zip(out, drawn):
            assert value is None or (type(value) is float and 0.0 <= value <= 1.0), (reward.__name__, value)
            if reward.__name__.startswith("format"):
                assert value is not None
            elif solution is None:
                assert value is None  # unlabeled rows: every grounding reward returns None


@pytest.mark.parametrize("resized", [[(0, 0)], [(28, 0)], [(-28, 56)], [(math.nan, 56)], [(1, 1)], [(10**9, 10**9)]])
def test_rewards_survive_odd_resized_sizes(resized):
    completion = '<think>x</think><answer>{"image": 1, "bbox_2d": [1, 2, 3, 4]}</answer>'
    for reward in REWARDS:
        out = reward([completion], solution=[[[0.1, 0.1, 0.5, 0.5]]], target_image=[[0]], image_sizes=[[(640, 480)]],
                     resized_sizes=[resized])  # fmt: skip
        assert out[0] is None or 0.0 <= out[0] <= 1.0


GOOD = {"solution": [[[0.1, 0.1, 0.5, 0.5]]], "target_image": [[0]], "image_sizes": [[(640, 480), (20, 10)]]}
BAD_DATA = [
    pytest.param({"solution": [[[math.nan, 0.1, 0.5, 0.5]]]}, "solution", id="nan-gold"),
    pytest.param({"solution": [[["a", 0.1, 0.5, 0.5]]]}, "solution", id="text-gold"),
    pytest.param({"solution": [[[0.1, 0.5, 0.5]]]}, "solution", id="short-gold"),
    pytest.param({"solution": [[[1e400, 0, 1, 1]]]}, "solution", id="inf-gold"),
    pytest.param({"target_image": [["x"]]}, "target_image", id="text-target"),
    pytest.param({"target_image": [[2]]}, "target_image", id="target-beyond-images"),
    pytest.param({"target_image": [[0, 1]]}, "target_image", id="two-targets-one-box"),
    pytest.param({"image_sizes": [[(math.nan, 480)]]}, "image_sizes", id="nan-size"),
    pytest.param({"image_sizes": [[(0, 0)]]}, "image_sizes", id="zero-size"),
    pytest.param({"image_sizes": [[(640,)]]}, "image_sizes", id="one-side"),
    pytest.param({"image_sizes": [["ab"]]}, "image_sizes", id="text-size"),
]


@pytest.mark.parametrize(
    "reward", [r for r in REWARDS if not r.__name__.startswith("format")], ids=lambda r: r.__name__
)
@pytest.mark.parametrize("change, field", BAD_DATA)
def test_bad_gold_data_raises_a_value_error_naming_row_and_field(reward, change, field):
    completion = '<answer>{"image": 1, "bbox_2d": [1, 2, 3, 4]}</answer>'
    with pytest.raises(ValueError, match=rf"row 0 \(id='r7'\).*{field}"):
        reward([completion], **{**GOOD, **change}, id=["r7"])


def test_answers_naming_images_the_row_lacks_score_zero_without_raising():
    # model output naming image 3 (or 0, or 10**9) of a one-image row: the wrong image, scored, never an error
    columns = {"solution": [[[0.1, 0.1, 0.5, 0.5]]] * 3, "target_image": [[0]] * 3, "image_sizes": [[(640, 480)]] * 3}
    answers = [
        f'<think>x</think><answer>{{"image": {k}, "bbox_2d": [64, 48, 320, 240]}}</answer>' for k in (3, 0, 10**9)
    ]
    for reward in REWARDS:
        out = reward(answers, **columns)
        expected = 1.0 if reward.__name__ == "format_reward" else 0.0  # the answer-only format refuses <think>
        assert out == [expected] * 3, reward.__name__
    metrics = compute_grounding_metrics(
        answers, columns["solution"], target_images=[0] * 3, image_sizes=[[(640, 480)]] * 3
    )
    assert metrics["overall"]["wrong_image_rate"] == 1.0 and metrics["overall"]["strict_acc@0.5"] == 0.0
    assert metrics["overall"]["acc@0.5"] == 1.0  # box only (the benchmarks' rule): converted in the target image


def test_frame_spec_rejects_a_zero_factor_at_construction():
    with pytest.raises(ValueError, match="factor"):
        IoUReward(factor=0)
    with pytest.raises(ValueError, match="factor"):
        FrameSpec("qwen2_5_vl", factor=-28)


# ----------------------------------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------------------------------


def _fractions(block):
    for key, value in block.items():
        if key != "n":
            assert value is None or 0.0 <= value <= 1.0, (key, value)


@FEW
@given(
    outputs=st.lists(any_completion, min_size=1, max_size=8),
    data=st.data(),
    frame=st.sampled_from(FRAMES),
    think=st.booleans(),
)
def test_grounding_metric_scores_any_output(outputs, data, frame, think):
    n = len(outputs)
    sizes = [data.draw(st.lists(st.sampled_from(SIZES), min_size=1, max_size=3)) for _ in range(n)]
    refs = [data.draw(st.one_of(st.just([]), st.lists(valid_gold, min_size=1, max_size=2))) for _ in range(n)]
    targets = [data.draw(st.integers(-1, len(s) - 1)) for s in sizes]
    tasks = [data.draw(st.sampled_from(["region", "diff", "x"])) for _ in range(n)]
    out = compute_grounding_metrics(outputs, refs, target_images=targets, image_sizes=sizes, tasks=tasks, frame=frame,
                                    require_think=think)  # fmt: skip
    _fractions(out["overall"])
    for block in out["tasks"].values():
        _fractions(block)
    assert out["flags"]["invalid_gold"] == []


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"references": [[["x", 0.1, 0.5, 0.5]]]}, "references"),
        ({"references": [5]}, "references"),
        ({"target_images": ["a"]}, "target_images"),
        ({"image_sizes": [[(math.nan, 4)]]}, "image_sizes"),
        ({"image_sizes": [[("w", "h")]]}, "image_sizes"),
        ({"references": [[[0, 0, 1, 1]], [[0, 0, 1, 1]]]}, "references"),
        ({"tasks": ["a", "b"]}, "tasks"),
        ({"frame": "bogus"}, "frame"),
    ],
)
def test_grounding_metric_bad_gold_raises_naming_the_field(kwargs, field):
    args = {"references": [[[0.1, 0.1, 0.5, 0.5]]], "target_images": [0], "image_sizes": [[(640, 480)]]} | kwargs
    with pytest.raises(ValueError, match=field):
        compute_grounding_metrics(['<answer>{"image": 1, "bbox_2d": [1, 2, 3, 4]}</answer>'], **args)


@pytest.mark.parametrize("gold", [[math.nan, 0, 1, 1], [0.5, 0.5, 0.1, 0.1], [0.1, 0.5, 0.5], [0.2, 0.2, 0.2, 0.2]])
def test_grounding_metric_flags_invalid_gold_boxes(gold):
    out = compute_grounding_metrics(["[1, 2, 3, 4]"], [[gold]], frame="normalized", ids=["g"])
    assert out["flags"]["invalid_gold"] == ["g"]
    _fractions(out["overall"])


MC_ROWS = [
    {"id": "a", "image_sizes": [[200, 100], [50, 50]], "solution": [[0.1, 0.1, 0.5, 0.5]], "target_image": [0],
     "task": "referring"},
    {"id": "b", "image_sizes": [[20_000, 1], [1, 1]], "solution": [], "target_image": [], "task": "comparison"},
    {"id": "c", "image_sizes": [[640, 480], [640, 480]], "solution": [[0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.3, 0.3]],
     "target_image": [0, 1], "task": "reasoning"},
]  # fmt: skip
MC_IDS = {"a": {"image_ids": [1, 2], "category_id": 1}, "b": {"image_ids": [3, 4], "category_id": 1},
          "c": {"image_ids": [5, 6], "category_id": 2}}  # fmt: skip


@FEW
@given(
    outputs=st.lists(any_completion, min_size=3, max_size=3),
    frame=st.sampled_from(FRAMES),
    confidences=st.one_of(st.none(), st.lists(st.one_of(st.none(), st.floats(0, 1)), min_size=3, max_size=3)),
)
def test_mc_bench_metric_scores_any_output(outputs, frame, confidences):
    out = compute_mc_bench_metrics(outputs, MC_ROWS, MC_IDS, spec=FrameSpec(frame), confidences=confidences)
    for block in [out["overall"], *out["tasks"].values()]:
        _fractions(block)
    assert set(out["flags"]["unparsable"]) <= {"a", "b", "c"}


def test_mc_bench_metric_bad_inputs_raise_value_errors():
    spec = FrameSpec("normalized")
    with pytest.raises(ValueError, match="finite"):
        compute_mc_bench_metrics(["x"] * 3, MC_ROWS, MC_IDS, spec=spec, confidences=[math.nan, 1, 1])
    with pytest.raises(ValueError, match="'zz'"):
        compute_mc_bench_metrics(["x"], [{**MC_ROWS[0], "id": "zz"}], MC_IDS, spec=spec)
    with pytest.raises(ValueError, match="outputs"):
        compute_mc_bench_metrics(["x"], MC_ROWS, MC_IDS, spec=spec)


# ----------------------------------------------------------------------------------------------------------------------
# images: corrupt bytes to the decoder, hostile boxes to the drawer
# ----------------------------------------------------------------------------------------------------------------------


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)  # noise: pixel data fills the file
    Image.fromarray(noise).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0, 1, 8, 30, 0.5, 0.9])
def test_decode_corrupt_image_bytes_raises_promptly(fmt, keep):
    data = _encoded(fmt)
    cut = data[: keep if isinstance(keep, int) else int(len(data) * keep)]
    start = time.perf_counter()
    with pytest.raises((OSError, ValueError)):  # PIL's UnidentifiedImageError is an OSError
        _decode({"bytes": cut, "path": "x.png"})
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decode_valid_and_garbage_values(fmt):
    assert _decode({"bytes": _encoded(fmt), "path": None}).size == (64, 48)
    for junk in (None, 5, {"bytes": None, "path": None}, {}):
        with pytest.raises(ValueError, match="cannot decode"):
            _decode(junk)
    with pytest.raises((OSError, ValueError)):
        _decode({"bytes": b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "path": None})


hostile_marks = st.lists(
    st.tuples(st.one_of(boxes, st.just("abcd"), st.just(None), st.just((1, 2))), st.integers(-3, 5)), max_size=5
)


@FEW
@given(gold=hostile_marks, pred=hostile_marks, caption=st.one_of(st.none(), st.text(max_size=300)),
       sizes=st.lists(st.sampled_from([(1, 1), (1, 40), (40, 1), (300, 2), (8, 8)]), max_size=3))  # fmt: skip
def test_grounding_panel_never_raises_on_hostile_boxes(gold, pred, caption, sizes):
    images = [Image.new("RGB", size) for size in sizes]
    panel = grounding_panel(images, gold=gold, pred=pred, caption=caption, height=32)
    assert panel.mode == "RGB" and panel.width > 0 and panel.height > 0
