"""Tests for `trl_mig.parsing`: every answer syntax of DESIGN.md section 4, the answer region, and robustness."""

from __future__ import annotations

import json
import re
import signal
import time
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trl_mig.parsing as parsing
from trl_mig.parsing import Prediction, answer_region, completion_text, parse_answer, parse_image_reference


SYNTAXES = {"json", "box_tokens", "tuple", "list"}
#: a correctness guard against catastrophic backtracking / quadratic scans, not a benchmark
TIME_BOUND_S = 2.0


def _check(prediction: Prediction | None, boxes, images, syntax, no_target=False) -> None:
    assert prediction is not None, "expected a parse, got None"
    assert prediction.boxes == tuple(tuple(float(v) for v in box) for box in boxes)
    assert prediction.images == tuple(images)
    assert prediction.syntax == syntax
    assert prediction.no_target is no_target


def _assert_well_formed(prediction: Prediction | None) -> None:
    """Invariants every `Prediction` satisfies, whatever the input."""
    if prediction is None:
        return
    assert isinstance(prediction, Prediction)
    assert prediction.syntax in SYNTAXES
    assert len(prediction.boxes) == len(prediction.images)
    for box in prediction.boxes:
        assert len(box) == 4 and all(isinstance(v, float) for v in box)
    for image in prediction.images:
        assert image is None or (isinstance(image, int) and image >= -1)
    if prediction.no_target:
        assert prediction.boxes == () and prediction.box is None and prediction.image is None
    else:
        assert prediction.boxes, "a Prediction without boxes must be an explicit no-target answer"
        assert prediction.box == prediction.boxes[0] and prediction.image == prediction.images[0]


# ---------------------------------------------------------------------------------------------------------------------
# one table: text -> (boxes, 0-based images, syntax)

B1, B2 = (1, 2, 3, 4), (5, 6, 7, 8)

PARSES = {
    # --- JSON (the default answer); images are 1-based in text, 0-based in a Prediction
    "json_default": (
        '<think>look</think><answer>{"image": 2, "bbox_2d": [10, 20, 110, 220]}</answer>',
        [(10, 20, 110, 220)], [1], "json",
    ),
    "json_image_1": ('{"image": 1, "bbox_2d": [1, 2, 3, 4]}', [B1], [0], "json"),
    "json_image_0_is_no_image": ('{"image": 0, "bbox_2d": [1, 2, 3, 4]}', [B1], [-1], "json"),
    "json_image_negative": ('{"image": -1, "bbox_2d": [1, 2, 3, 4]}', [B1], [-1], "json"),
    "json_image_string": ('{"image": "2", "bbox_2d": [1, 2, 3, 4]}', [B1], [1], "json"),
    "json_image_named_string": ('{"image": "Image-3", "bbox_2d": [1, 2, 3, 4]}', [B1], [2], "json"),
    "json_without_image": ('{"bbox_2d": [1, 2, 3, 4]}', [B1], [None], "json"),
    "json_image_after_bbox": ('{"bbox_2d": [1, 2, 3, 4], "image": 3}', [B1], [2], "json"),
    "json_extra_keys": ('{"bbox_2d": [1, 2, 3, 4], "label": "the cat", "image": 2}', [B1], [1], "json"),
    "json_python_quotes": ("{'image': 3, 'bbox_2d': [1, 2, 3, 4]}", [B1], [2], "json"),
    "json_fence": ('```json\n{"image": 1, "bbox_2d": [1, 2, 3, 4]}\n```', [B1], [0], "json"),
    "json_fence_in_answer": (
        '<think>ok</think><answer>\n```json\n[{"image": 2, "bbox_2d": [5, 6, 7, 8]}]\n```\n</answer>',
        [B2], [1], "json",
    ),
    "json_list_of_objects": (
        '[{"image": 1, "bbox_2d": [1, 2, 3, 4]}, {"image": 3, "bbox_2d": [5, 6, 7, 8]}]', [B1, B2], [0, 2], "json",
    ),
    "json_list_per_box_image_missing": (
        '[{"image": 1, "bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [5, 6, 7, 8]}]', [B1, B2], [0, None], "json",
    ),
    "json_list_image_after_bbox": (
        '[{"bbox_2d": [1, 2, 3, 4], "image": 2}, {"bbox_2d": [5, 6, 7, 8], "image": 1}]', [B1, B2], [1, 0], "json",
    ),
    "json_bbox_key": ('{"image": 2, "bbox": [1, 2, 3, 4]}', [B1], [1], "json"),
    "json_numbers": ('{"image": 1, "bbox_2d": [-1.5, 2e2, 0.5, 1E+3]}', [(-1.5, 200, 0.5, 1000)], [0], "json"),
    "json_real_box_beside_no_target": (
        '[{"image": 1, "bbox_2d": [1, 2, 3, 4]}, {"image": null, "bbox_2d": []}]', [B1], [0], "json",
    ),
    "json_text_image_prefix": ('The object is in image 3. {"bbox_2d": [1, 2, 3, 4]}', [B1], [2], "json"),
    "json_text_image_suffix": (
        '{"bbox_2d": [1, 2, 3, 4]} in image 2, {"bbox_2d": [5, 6, 7, 8]} in image 3', [B1, B2], [1, 2], "json",
    ),
    "json_explicit_image_beats_text": ('In image 3: {"image": 1, "bbox_2d": [1, 2, 3, 4]}', [B1], [0], "json"),
    # --- Qwen2-VL box tokens and bare tuples
    "box_tokens": ("<|box_start|>(316,58),(764,999)<|box_end|>", [(316, 58, 764, 999)], [None], "box_tokens"),
    "box_tokens_with_ref": (
        "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>", [B1], [None], "box_tokens",
    ),
    "box_tokens_third_image": (
        "It's in the third image. <|box_start|>(316,58),(764,999)<|box_end|>", [(316, 58, 764, 999)], [2], "box_tokens",
    ),
    "box_tokens_several": (
        "<|box_start|>(1,2),(3,4)<|box_end|><|box_start|>(5,6),(7,8)<|box_end|>", [B1, B2], [None, None], "box_tokens",
    ),
    "tuple": ("(1,2),(3,4)", [B1], [None], "tuple"),
    "tuple_spaces": ("( 1 , 2 ) , ( 3 , 4 )", [B1], [None], "tuple"),
    "tuple_no_comma": ("(1,2)(3,4)", [B1], [None], "tuple"),
    "tuple_numbers": ("(-5, 10.5), (2e2, .5)", [(-5, 10.5, 200, 0.5)], [None], "tuple"),
    "tuple_several": ("(1,2),(3,4) and (5,6),(7,8)", [B1, B2], [None, None], "tuple"),
    # --- bare lists
    "list": ("[1, 2, 3, 4]", [B1], [None], "list"),
    "list_in_prose": ("The cat is at [1, 2, 3, 4].", [B1], [None], "list"),
    "list_several": ("[1, 2, 3, 4] and [5, 6, 7, 8]", [B1, B2], [None, None], "list"),
    "list_numbers": ("[-1.5, 2e2, .5, +4E-1]", [(-1.5, 200, 0.5, 0.4)], [None], "list"),
    "list_trailing_dots": ("[1., 2., 3., 4.]", [B1], [None], "list"),
    "list_negative_scientific": ("[-1e-3, -2.5E2, 3e+1, 4]", [(-0.001, -250, 30, 4)], [None], "list"),
    # --- image names in free text
    "name_image_dash": ("Image-2: [1, 2, 3, 4]", [B1], [1], "list"),
    "name_image_space": ("image 2 [1, 2, 3, 4]", [B1], [1], "list"),
    "name_image_glued": ("image2 [1, 2, 3, 4]", [B1], [1], "list"),
    "name_image_hash": ("Image #3: [1, 2, 3, 4]", [B1], [2], "list"),
    "name_img_underscore": ("img_2 [1, 2, 3, 4]", [B1], [1], "list"),
    "name_image_10": ("Image 10 [1, 2, 3, 4]", [B1], [9], "list"),
    "name_the_second_image": ("It is in the second image: [1, 2, 3, 4]", [B1], [1], "list"),
    "name_upper_case": ("THE SECOND IMAGE [1, 2, 3, 4]", [B1], [1], "list"),
    "name_tenth_image": ("the tenth image [1, 2, 3, 4]", [B1], [9], "list"),
    "name_in_the_1th_image": ("in the 1th image (1,2),(3,4)", [B1], [0], "tuple"),
    "name_2nd_image": ("2nd image: (1,2),(3,4)", [B1], [1], "tuple"),
    "name_1st_image": ("1st image (1,2),(3,4)", [B1], [0], "tuple"),
    "name_3rd_image": ("in the 3rd image [1, 2, 3, 4]", [B1], [2], "list"),
    "name_image_0": ("[1, 2, 3, 4] in image 0", [B1], [-1], "list"),
    "name_first_image_suffix": ("[1, 2, 3, 4] is in the first image", [B1], [0], "list"),
    # --- several boxes: prefix style and suffix style association
    "prefix_style": ("Image 1: [1, 2, 3, 4], Image 3: [5, 6, 7, 8]", [B1, B2], [0, 2], "list"),
    "prefix_style_ordinals": (
        "In the first image (1,2),(3,4); in the third image (5,6),(7,8)", [B1, B2], [0, 2], "tuple",
    ),
    "prefix_style_json": (
        'Image 1: {"bbox_2d": [1, 2, 3, 4]} Image 3: {"bbox_2d": [5, 6, 7, 8]}', [B1, B2], [0, 2], "json",
    ),
    "suffix_style": ("[1, 2, 3, 4] in image 2, [5, 6, 7, 8] in image 3", [B1, B2], [1, 2], "list"),
    "suffix_style_reversed_order": (
        "(1,2),(3,4) is in image 2 and (5,6),(7,8) is in image 1", [B1, B2], [1, 0], "tuple",
    ),
    # --- answer region
    "region_inside_answer": ("<think>[9, 9, 9, 9] in image 1</think><answer>[1, 2, 3, 4]</answer>", [B1], [None], "list"),
    "region_first_answer": ("<answer>[1, 2, 3, 4]</answer><answer>[5, 6, 7, 8]</answer>", [B1], [None], "list"),
    "region_text_after_answer_ignored": ("<answer>[1, 2, 3, 4]</answer> [5, 6, 7, 8] image 2", [B1], [None], "list"),
    "region_after_think": ("<think>(9,9),(9,9) in image 1</think> [1, 2, 3, 4] in image 2", [B1], [1], "list"),
    "region_after_last_think": ("<think>a</think> [9, 9, 9, 9] <think>b</think> [1, 2, 3, 4]", [B1], [None], "list"),
    "region_case_insensitive_answer": ("<ANSWER>[1, 2, 3, 4]</ANSWER> [5, 6, 7, 8]", [B1], [None], "list"),
    "region_case_insensitive_think": ("<THINK>[9, 9, 9, 9]</THINK>[1, 2, 3, 4]", [B1], [None], "list"),
    "region_unclosed_answer_truncated": (
        '<think>done</think><answer>{"image": 1, "bbox_2d": [1, 2, 3, 4]', [B1], [0], "json",
    ),
    "region_unclosed_answer_bare": ("<answer>[1, 2, 3, 4]", [B1], [None], "list"),
    "region_unclosed_think_with_answer": ("<think>hmm <answer>[1, 2, 3, 4]</answer>", [B1], [None], "list"),
    "region_whole_text": ("The box is [1, 2, 3, 4]", [B1], [None], "list"),
    # --- wrong coordinate counts are skipped, the rest is read
    "counts_json_skip_three": ('{"bbox_2d": [1, 2, 3]}, {"bbox_2d": [5, 6, 7, 8]}', [B2], [None], "json"),
    "counts_list_skip_three": ("[1, 2, 3] [5, 6, 7, 8]", [B2], [None], "list"),
    "counts_list_skip_five": ("[1, 2, 3, 4, 5] then [5, 6, 7, 8]", [B2], [None], "list"),
}  # fmt: skip


@pytest.mark.parametrize(("text", "boxes", "images", "syntax"), list(PARSES.values()), ids=list(PARSES))
def test_parse_answer(text, boxes, images, syntax):
    prediction = parse_answer(text)
    _check(prediction, boxes, images, syntax)
    _assert_well_formed(prediction)


# ---------------------------------------------------------------------------------------------------------------------
# "no target" is explicit, never a parse failure in disguise

NO_TARGET = {
    "json_null": '{"image": null, "bbox_2d": []}',
    "python_none": "{'image': None, 'bbox_2d': []}",
    "in_answer": '<think>nothing there</think><answer>{"image": null, "bbox_2d": []}</answer>',
    "fenced": '```json\n{"image": null, "bbox_2d": []}\n```',
    "null_after_bbox": '{"bbox_2d": [], "image": null}',
}


@pytest.mark.parametrize("text", list(NO_TARGET.values()), ids=list(NO_TARGET))
def test_explicit_no_target(text):
    prediction = parse_answer(text)
    _check(prediction, [], [], "json", no_target=True)
    assert prediction.box is None and prediction.image is None


NOT_NO_TARGET = {
    "empty_with_image": '{"image": 2, "bbox_2d": []}',
    "empty_with_image_0": '{"image": 0, "bbox_2d": []}',
    "empty_with_image_string": '{"image": "Image-2", "bbox_2d": []}',
    "empty_image_after_bbox": '{"bbox_2d": [], "image": 2}',
    "bare_empty_list": "[]",
    "empty_object": "{}",
    "image_only": '{"image": 2}',
    "truncated_in_think": '<think>maybe {"image": null, "bbox_2d": []}',
}


@pytest.mark.parametrize("text", list(NOT_NO_TARGET.values()), ids=list(NOT_NO_TARGET))
def test_empty_box_with_an_image_is_not_no_target(text):
    assert parse_answer(text) is None


def test_truncated_empty_box_with_image_after_is_not_no_target():
    assert parse_answer('<think>done</think><answer>{"bbox_2d": [], "image": 2') is None


# ---------------------------------------------------------------------------------------------------------------------
# unparsable -> None


UNPARSABLE = {
    "prose": "I cannot tell.",
    "empty": "",
    "image_only_prose": "The answer is image 2.",
    "unclosed_think_tuple": "<think>hmm (1,2),(3,4)",
    "unclosed_think_json": '<think>the box is {"image": 1, "bbox_2d": [1, 2, 3, 4]}',
    "unclosed_think_list": "<think>[1, 2, 3, 4]",
    "box_only_in_think": "<think>[9, 9, 9, 9]</think><answer>I cannot tell</answer>",
    "empty_answer": "<think>x</think><answer></answer>",
    "truncated_mid_box": '<answer>{"image": 1, "bbox_2d": [1, 2, 3',
    "list_three": "[1, 2, 3]",
    "list_five": "[1, 2, 3, 4, 5]",
    "json_three": '{"bbox_2d": [1, 2, 3]}',
    "json_five": '{"bbox_2d": [1, 2, 3, 4, 5]}',
    "json_non_number": '{"bbox_2d": [1, 2, "x", 4]}',
    "tuple_short": "(1,2),(3)",
    "single_point": "(1, 2)",
    "words_in_list": "[a, b, c, d]",
}


@pytest.mark.parametrize("text", list(UNPARSABLE.values()), ids=list(UNPARSABLE))
def test_unparsable_is_none(text):
    assert parse_answer(text) is None


# ---------------------------------------------------------------------------------------------------------------------
# conversational completions (what TRL passes for conversational datasets)

CONVERSATIONAL = {
    "content_str": [{"role": "assistant", "content": "<answer>[1, 2, 3, 4]</answer>"}],
    "content_parts": [{"role": "assistant", "content": [{"type": "text", "text": "<answer>[1, 2, 3, 4]</answer>"}]}],
    "content_parts_split": [
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "<answer>[1, 2,"}, {"type": "text", "text": " 3, 4]"}],
        }
    ],
    "content_parts_with_image": [
        {"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "[1, 2, 3, 4]"}]}
    ],
    "last_assistant": [
        {"role": "user", "content": "[9, 9, 9, 9]"},
        {"role": "assistant", "content": "[5, 5, 5, 5]"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "[1, 2, 3, 4]"},
    ],
    "single_message_dict": {"role": "assistant", "content": "[1, 2, 3, 4]"},
    "no_role": [{"content": "[1, 2, 3, 4]"}],
    "tuple_of_messages": ({"role": "assistant", "content": "[1, 2, 3, 4]"},),
}


@pytest.mark.parametrize("completion", list(CONVERSATIONAL.values()), ids=list(CONVERSATIONAL))
def test_conversational_completion(completion):
    _check(parse_answer(completion), [B1], [None], "list")


def test_conversational_json_with_image():
    completion = [{"role": "assistant", "content": '<answer>{"image": 3, "bbox_2d": [1, 2, 3, 4]}</answer>'}]
    _check(parse_answer(completion), [B1], [2], "json")


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("plain", "plain"),
        ([{"role": "assistant", "content": "a"}], "a"),
        ([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "ab"),
        ([{"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "b"}]}], "b"),
        ([{"role": "user", "content": "u"}], "u"),  # no assistant message: the last message is read
        ([], ""),
        ([{}], ""),
        ([{"role": "assistant", "content": None}], ""),
        (None, ""),
        (42, ""),
        (b"[1, 2, 3, 4]", ""),
        (["not a message"], ""),
    ],
)
def test_completion_text(completion, text):
    assert completion_text(completion) == text


@pytest.mark.parametrize(
    "completion",
    [None, 42, 4.2, b"[1, 2, 3, 4]", [], [{}], ["[1, 2, 3, 4]"], [{"role": "assistant"}], {"content": 5},
     [{"role": "assistant", "content": [None, 3, {"type": "text", "text": None}]}], object(), {1, 2}],
)  # fmt: skip
def test_non_text_completions_return_none(completion):
    assert parse_answer(completion) is None


# ---------------------------------------------------------------------------------------------------------------------
# helpers


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("<think>look</think><answer>[1, 2, 3, 4]</answer>", "[1, 2, 3, 4]"),
        ("<answer>a</answer><answer>b</answer>", "a"),
        ("<answer>truncated", "truncated"),
        ("<think>a</think>b<think>c</think>d", "d"),
        ("<think>still looking (1,2),(3,4)", None),
        ("no tags at all", "no tags at all"),
        ("", ""),
    ],
)
def test_answer_region(text, region):
    assert answer_region(text) == region


@pytest.mark.parametrize(
    ("value", "index"),
    [
        (1, 0),
        (2, 1),
        (0, -1),
        (-3, -1),
        (2.0, 1),
        (2.5, -1),
        ("2", 1),
        ("'3'", 2),
        ("0", -1),
        ("Image-2", 1),
        ("image 4", 3),
        ("the second image", 1),
        ("third image", 2),
        ("in the 1th image", 0),
        ("2nd image", 1),
        (True, None),
        (None, None),
        ("null", None),
        ("None", None),
        ("", None),
        ("cat", None),
    ],
)
def test_parse_image_reference(value, index):
    assert parse_image_reference(value) == index


def test_prediction_first_box_and_image():
    prediction = parse_answer("Image 1: [1, 2, 3, 4], Image 3: [5, 6, 7, 8]")
    assert prediction.box == (1.0, 2.0, 3.0, 4.0)
    assert prediction.image == 0


# ---------------------------------------------------------------------------------------------------------------------
# round trips: what a model writes in each syntax is read back exactly

coordinates = st.one_of(st.integers(-5000, 5000), st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False))
boxes = st.tuples(coordinates, coordinates, coordinates, coordinates)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    box=boxes,
    image=st.integers(1, 12),
    thought=st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=80),
)
def test_default_answer_round_trip(box, image, thought):
    text = f'<think>{thought}</think><answer>{{"image": {image}, "bbox_2d": [{", ".join(map(repr, box))}]}}</answer>'
    _check(parse_answer(text), [box], [image - 1], "json")


@FUZZ
@given(box=boxes, image=st.integers(1, 12), style=st.sampled_from(["box_tokens", "tuple", "list"]))
def test_positional_round_trip(box, image, style):
    x1, y1, x2, y2 = map(repr, box)
    written = {
        "box_tokens": f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>",
        "tuple": f"({x1}, {y1}), ({x2}, {y2})",
        "list": f"[{x1}, {y1}, {x2}, {y2}]",
    }[style]
    _check(parse_answer(f"In image {image}: {written}"), [box], [image - 1], style)


@FUZZ
@given(
    items=st.lists(st.tuples(boxes, st.integers(1, 9)), min_size=1, max_size=5),
    key=st.sampled_from(["bbox_2d", "bbox"]),
    quote=st.sampled_from(['"', "'"]),
)
def test_json_list_round_trip(items, key, quote):
    objects = [f"{{{quote}image{quote}: {i}, {quote}{key}{quote}: [{', '.join(map(repr, b))}]}}" for b, i in items]
    text = "```json\n[" + ", ".join(objects) + "]\n```"
    _check(parse_answer(text), [b for b, _ in items], [i - 1 for _, i in items], "json")


# ---------------------------------------------------------------------------------------------------------------------
# garbage never raises


FRAGMENTS = [
    "<answer>", "</answer>", "<think>", "</think>", "<|box_start|>", "<|box_end|>", "{", "}", "[", "]", "(", ")",
    ",", ":", '"', "'", '"image"', "'image'", '"bbox_2d"', "bbox", "null", "None", "image", "Image-2", " ", "\n",
    "second", "image 2", "2nd", "1th", "0", "1", "-", "+", ".", "e", "E", "12", "3.5", "-7", "1e3", "nan", "inf",
    "```json", "```", "\\", "\x00", "é", "🙂",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_random_text_never_raises(text):
    _assert_well_formed(parse_answer(text))


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(st.sampled_from(FRAGMENTS), max_size=60))
def test_fragment_soup_never_raises(parts):
    text = "".join(parts)
    prediction = parse_answer(text)
    _assert_well_formed(prediction)
    if prediction is not None and prediction.no_target:
        # unparsable output is never read as "no target": it takes an explicit empty bbox key
        assert "bbox" in text.lower() and "[]" in "".join(text.split())


@settings(max_examples=100, deadline=None)
@given(
    completion=st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.binary(max_size=8)),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.sampled_from(["role", "content", "type", "text"]), children),
        ),
        max_leaves=12,
    )
)
def test_random_structures_never_raise(completion):
    _assert_well_formed(parse_answer(completion))


# ---------------------------------------------------------------------------------------------------------------------
# pathological inputs parse in bounded time


class _TooSlow(BaseException):  # a BaseException, so parse_answer's `except Exception` cannot swallow it
    pass


@contextmanager
def _time_limit(seconds: float):
    """Fail when the block runs longer than `seconds`; the alarm also stops a runaway parse early (POSIX)."""

    def _alarm(signum, frame):
        raise _TooSlow

    use_alarm = hasattr(signal, "setitimer")
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        yield
    except _TooSlow:
        pytest.fail(f"parse_answer ran past {seconds} s and was stopped")
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"parse_answer took {elapsed:.2f} s"


PATHOLOGICAL = {
    "digits_100k": "1" * 100_000,
    "digits_100k_in_list": "[" + "1" * 100_000,
    "digits_100k_in_tuple": "(" + "1" * 100_000 + ",",
    "open_parens_10k": "(" * 10_000,
    "open_brackets_10k": "[" * 10_000,
    "open_braces_10k": "{" * 10_000,
    "parens_100k": "(" * 100_000 + ")" * 100_000,
    "brackets_100k": "[" * 100_000 + "]" * 100_000,
    "partial_lists": "[1, 2, 3, " * 10_000,
    "partial_tuples": "(1, 2), (3, " * 10_000,
    "signs": "+-" * 50_000,
    "dots": "." * 100_000,
    "exponents": "1e" * 50_000,
    "decimals": "1." * 50_000,
    "commas": "," * 100_000,
    "spaces_then_list": " " * 100_000 + "[1, 2, 3, 4",
    "long_number_list": "[" + ", ".join(["1"] * 50_000) + "]",
    "answer_tags": "<answer>" * 20_000,
    "think_tags": "<think>" * 20_000,
    "close_think_tags": "</think>" * 20_000 + "[1, 2, 3, 4]",
    "image_words": "image " * 20_000 + "[1, 2, 3, 4]",
    "image_spaces": "image" + " " * 100_000 + "2",
    "ordinal_words": "second " * 20_000,
    "suffix_words": "1st " * 20_000,
    "bbox_keys_unclosed": '"bbox_2d": [' * 10_000,
    "image_keys": '{"image": ' * 10_000,
    "quotes": '"' * 100_000,
    "box_tokens_unclosed": "<|box_start|>(" * 10_000,
    "many_lists": "[1, 2, 3, 4] " * 5_000,
    "many_tuples": "(1,2),(3,4) " * 5_000,
    "many_lists_one_mention": "[1, 2, 3, 4] " * 5_000 + "in image 2",
    "many_empty_bbox_no_braces": '"bbox_2d": [], ' * 5_000,
}


@pytest.mark.parametrize("text", list(PATHOLOGICAL.values()), ids=list(PATHOLOGICAL))
def test_pathological_inputs_are_fast(text):
    with _time_limit(TIME_BOUND_S):
        prediction = parse_answer(text)
    _assert_well_formed(prediction)


@pytest.mark.parametrize(
    "text",
    ["{" + '"bbox_2d": [1, 2, 3, 4], ' * 5_000 + "}", "{" + '"bbox_2d": [], ' * 5_000 + "}"],
    ids=["boxes", "empty_boxes"],
)
def test_many_json_boxes_parse_fast(text):
    with _time_limit(TIME_BOUND_S):
        parse_answer(text)


def test_many_boxes_with_mentions_parse_fast():
    with _time_limit(TIME_BOUND_S):
        parse_answer("[1, 2, 3, 4] image 2 " * 20_000)


@given(
    image=st.integers(1, 12),
    coords=st.lists(st.integers(-50, 5000) | st.floats(-10, 5000, allow_nan=False), min_size=4, max_size=4),
    spaces=st.sampled_from(["", " ", "\n", "  "]),
)
def test_canonical_fast_path_agrees_with_the_general_parser(image, coords, spaces):
    text = f'<answer>{spaces}{{"image": {image},{spaces}"bbox_2d": {json.dumps(coords)}}}{spaces}</answer>'
    fast = parse_answer(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parsing, "_CANONICAL_JSON_RE", re.compile(r"(?!)"))  # never matches: general parser only
        general = parse_answer(text)
    assert fast == general
    assert fast is not None and fast.image == image - 1
