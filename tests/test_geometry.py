"""Tests for `trl_mig.geometry`: IoU, matching, repair, frames, conversions and `smart_resize` (DESIGN.md section 2)."""

from __future__ import annotations

import itertools
import json
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trl_mig.geometry import (
    DEFAULT_FACTOR,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    MAX_ASPECT_RATIO,
    MODEL_TYPE_FRAMES,
    QWEN2_5_VL_RELEASED_MAX_PIXELS,
    Frame,
    box_iou,
    frame_for_model,
    from_canonical,
    iou,
    is_valid_box,
    match_boxes,
    repair_box,
    resized_size,
    smart_resize,
    to_canonical,
)


NAN = float("nan")
INF = float("inf")
MIG_BENCH = Path("/work/shared/data/mig_bench/MIG_data.json")
#: positions in the official MIG-Bench file whose gold `answer` box is inverted or exceeds the image (DESIGN.md 2)
MIG_BENCH_MALFORMED = (7, 34, 105, 126, 163, 512, 703)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------------------------------
# strategies


def _coords(lo: float = -1e3, hi: float = 1e3) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def valid_boxes(draw, lo: float = -1e3, hi: float = 1e3, min_side: float = 1e-2) -> tuple[float, ...]:
    """`x1 < x2`, `y1 < y2`, sides at least `min_side`, all coordinates in `[lo, hi + span]`."""
    x1, y1 = draw(_coords(lo, hi)), draw(_coords(lo, hi))
    w, h = draw(st.floats(min_side, hi - lo)), draw(st.floats(min_side, hi - lo))
    return (x1, y1, x1 + w, y1 + h)


@st.composite
def canonical_boxes(draw, min_side: float = 0.0) -> tuple[float, float, float, float]:
    """Boxes inside `[0, 1]` with `x2 - x1 >= min_side` and `y2 - y1 >= min_side` (degenerate when `min_side` is 0)."""
    x1, y1 = draw(st.floats(0, 1 - min_side)), draw(st.floats(0, 1 - min_side))
    x2, y2 = draw(st.floats(min(1.0, x1 + min_side), 1)), draw(st.floats(min(1.0, y1 + min_side), 1))
    return (x1, y1, x2, y2)


#: any 4 finite floats, including inverted, zero-width and huge boxes
finite_boxes = st.tuples(*[st.floats(allow_nan=False, allow_infinity=False)] * 4)
#: finite or infinite coordinates (no NaN)
infinite_boxes = st.tuples(*[st.floats(allow_nan=False)] * 4)
#: anything a float can be
garbage_boxes = st.tuples(*[st.floats()] * 4)
image_sizes = st.tuples(st.integers(1, 20_000), st.integers(1, 20_000))


# ---------------------------------------------------------------------------------------------------------------------
# box_iou: shapes and hand-worked values


@pytest.mark.parametrize(
    ("a", "b", "shape"),
    [
        (np.zeros((3, 4)), np.zeros((5, 4)), (3, 5)),
        (np.zeros((1, 4)), np.zeros((1, 4)), (1, 1)),
        (np.zeros((0, 4)), np.zeros((2, 4)), (0, 2)),
        (np.zeros((2, 4)), np.zeros((0, 4)), (2, 0)),
        (np.zeros((0, 4)), np.zeros((0, 4)), (0, 0)),
        ([], [[0, 0, 1, 1]], (0, 1)),
        ([[0, 0, 1, 1]], [[0, 0, 1, 1], [0, 0, 2, 2]], (1, 2)),
    ],
)
def test_box_iou_shape(a, b, shape):
    assert box_iou(a, b).shape == shape


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # identical boxes
        ([0, 0, 2, 2], [0, 0, 2, 2], 1.0),
        # overlap 1x1 = 1, union 4 + 4 - 1 = 7
        ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7),
        # b inside a: 1 / 4
        ([0, 0, 2, 2], [0.5, 0.5, 1.5, 1.5], 0.25),
        # half overlap along x: inter 1x2 = 2, union 4 + 4 - 2 = 6
        ([0, 0, 2, 2], [1, 0, 3, 2], 1 / 3),
        # touching edges: zero-width intersection
        ([0, 0, 1, 1], [1, 0, 2, 1], 0.0),
        # normalised coordinates work like any other frame: inter 0.1 x 0.2 = 0.02, union 0.04 + 0.06 - 0.02
        ([0.1, 0.1, 0.3, 0.3], [0.2, 0.1, 0.4, 0.4], 0.02 / 0.08),
        # non-square: a 4x1, b 1x4 crossing at a 1x1 square: union 4 + 4 - 1 = 7
        ([0, 1, 4, 2], [1, 0, 2, 4], 1 / 7),
    ],
)
def test_box_iou_hand_worked(a, b, expected):
    assert box_iou([a], [b])[0, 0] == pytest.approx(expected, abs=1e-12)
    assert iou(a, b) == pytest.approx(expected, abs=1e-12)


def test_box_iou_matrix_layout():
    a = [[0, 0, 2, 2], [5, 5, 6, 6], [0, 0, 1, 1]]
    b = [[1, 1, 3, 3], [5, 5, 6, 6]]
    expected = np.array([[1 / 7, 0.0], [0.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(box_iou(a, b), expected, atol=1e-12)


def test_box_iou_dtypes():
    f32 = np.array([[0, 0, 2, 2]], dtype=np.float32)
    f64 = np.array([[1, 1, 3, 3]], dtype=np.float64)
    assert box_iou(f32, f32).dtype == np.float32
    assert box_iou(f32, f64).dtype == np.float64
    assert box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3]]).dtype == np.float64  # int lists


# ---------------------------------------------------------------------------------------------------------------------
# box_iou: properties


@FAST
@given(a=st.lists(finite_boxes, max_size=5), b=st.lists(finite_boxes, max_size=5))
def test_box_iou_symmetric(a, b):
    a, b = np.array(a, dtype=float).reshape(-1, 4), np.array(b, dtype=float).reshape(-1, 4)
    np.testing.assert_array_equal(box_iou(a, b), box_iou(b, a).T)


@FAST
@given(box=valid_boxes(lo=-1e6, hi=1e6, min_side=1e-3))
def test_box_iou_identity(box):
    assert box_iou([box], [box])[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert iou(box, box) == pytest.approx(1.0, abs=1e-12)


@FAST
@given(
    a=valid_boxes(), w=st.floats(1e-2, 1e3), h=st.floats(1e-2, 1e3), gap=st.floats(0, 1e3), axis=st.sampled_from("xy")
)
def test_box_iou_disjoint_is_zero(a, w, h, gap, axis):
    # b starts `gap` to the right of (or below) a's far edge: the boxes share no area
    if axis == "x":
        b = (a[2] + gap, a[1], a[2] + gap + w, a[1] + h)
    else:
        b = (a[0], a[3] + gap, a[0] + w, a[3] + gap + h)
    assert box_iou([a], [b])[0, 0] == 0.0
    assert box_iou([b], [a])[0, 0] == 0.0
    assert iou(a, b) == 0.0


@FAST
@given(a=st.lists(garbage_boxes, min_size=1, max_size=6), b=st.lists(garbage_boxes, min_size=1, max_size=6))
def test_box_iou_values_in_unit_interval(a, b):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = box_iou(a, b)
    assert np.all(np.isfinite(values))
    assert np.all((values >= 0) & (values <= 1))


@FAST
@given(
    a=st.lists(valid_boxes(lo=-100, hi=100), min_size=1, max_size=4),
    b=st.lists(valid_boxes(lo=-100, hi=100), min_size=1, max_size=4),
    sx=st.floats(1e-3, 1e3),
    sy=st.floats(1e-3, 1e3),
)
def test_box_iou_invariant_under_per_axis_scaling(a, b, sx, sy):
    scale = np.array([sx, sy, sx, sy])
    np.testing.assert_allclose(box_iou(np.array(a) * scale, np.array(b) * scale), box_iou(a, b), atol=1e-9)


@FAST
@given(
    a=st.lists(valid_boxes(lo=0, hi=1, min_side=1e-2), min_size=1, max_size=4),
    b=st.lists(valid_boxes(lo=0, hi=1, min_side=1e-2), min_size=1, max_size=4),
)
def test_box_iou_float32_agrees_with_float64(a, b):
    a32, b32 = np.array(a, dtype=np.float32), np.array(b, dtype=np.float32)
    got = box_iou(a32, b32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, box_iou(a32.astype(np.float64), b32.astype(np.float64)), atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# the box rule: invalid and degenerate boxes score 0, never warn, never raise

UNIT = [0.0, 0.0, 1.0, 1.0]
RULE_CASES = {
    "nan_x1": [NAN, 0, 1, 1],
    "nan_y1": [0, NAN, 1, 1],
    "nan_x2": [0, 0, NAN, 1],
    "nan_y2": [0, 0, 1, NAN],
    "all_nan": [NAN] * 4,
    "inf_x2": [0, 0, INF, 1],
    "neg_inf_x1": [-INF, 0, 1, 1],
    "inf_everywhere": [-INF, -INF, INF, INF],
    "inf_inf": [INF, INF, INF, INF],
    "inverted_x": [1, 0, 0, 1],
    "inverted_y": [0, 1, 1, 0],
    "inverted_both": [1, 1, 0, 0],
    "zero_width": [0.5, 0, 0.5, 1],
    "zero_height": [0, 0.5, 1, 0.5],
    "point": [0.5, 0.5, 0.5, 0.5],
}


@pytest.mark.parametrize("box", list(RULE_CASES.values()), ids=list(RULE_CASES))
@pytest.mark.parametrize("other", ["unit", "big", "self"])
def test_box_rule_scores_zero_without_warnings(box, other):
    partner = {"unit": UNIT, "big": [-10, -10, 10, 10], "self": box}[other]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert box_iou([box], [partner])[0, 0] == 0.0
        assert box_iou([partner], [box])[0, 0] == 0.0
        assert box_iou(np.array([box], np.float32), np.array([partner], np.float32))[0, 0] == 0.0
        assert iou(box, partner) == 0.0
    assert not is_valid_box(box)


@pytest.mark.parametrize(
    "box",
    [[0, 0, 1e308, 1e308], [-1e308, -1e308, 1e308, 1e308], [0, 0, 1e308, 1], [1e308, 1e308, 1.7e308, 1.7e308]],
)
def test_box_iou_huge_values_do_not_overflow(box):
    # areas overflow to inf; the rule maps such unions to 0 instead of raising or returning NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for partner in (box, UNIT, [0, 0, 1e308, 1e308]):
            value = box_iou([box], [partner])[0, 0]
            assert math.isfinite(value) and 0.0 <= value <= 1.0
            assert iou(box, partner) == pytest.approx(value, abs=1e-9)


# ---------------------------------------------------------------------------------------------------------------------
# scalar iou


@settings(max_examples=300, deadline=None)
@given(a=infinite_boxes, b=infinite_boxes)
@example(a=(0, 0, 1, 1), b=(2, 2, 1, 1))  # inverted
@example(a=(0, 0, 1e308, 1e308), b=(0, 0, 1e308, 1e308))
@example(a=(0, 0, INF, 1), b=(0, 0, 1, 1))
@example(a=(-INF, 0, INF, 0), b=(0, 0, 1, 1))  # inf * 0 area
def test_scalar_iou_matches_box_iou_on_finite_and_infinite(a, b):
    assert iou(a, b) == pytest.approx(float(box_iou([a], [b])[0, 0]), abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(a=st.one_of(valid_boxes(), finite_boxes), b=st.one_of(valid_boxes(), finite_boxes))
def test_scalar_iou_matches_box_iou_on_realistic_boxes(a, b):
    assert iou(a, b) == pytest.approx(float(box_iou([a], [b])[0, 0]), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(a=garbage_boxes, b=garbage_boxes)
@example(a=(0.0, 0.0, 2.0, 2.0), b=(0.0, 0.0, 1.0, NAN))
@example(a=(0.0, 0.0, 2.0, 2.0), b=(NAN, 0.0, 1.0, 1.0))
def test_scalar_iou_matches_box_iou_with_nan(a, b):
    assert iou(a, b) == pytest.approx(float(box_iou([a], [b])[0, 0]), abs=1e-9)


@pytest.mark.parametrize("nan_box", [(0, 0, 1, NAN), (NAN, 0, 1, 1), (0, NAN, 1, 1), (0, 0, NAN, 1)])
def test_scalar_iou_nan_is_zero_in_either_position(nan_box):
    assert iou(nan_box, (0, 0, 2, 2)) == 0.0
    assert iou((0, 0, 2, 2), nan_box) == 0.0


@pytest.mark.parametrize(
    "bad",
    [None, "abcd", "", 5, 3.0, [0, 0, 1], [0, 0, 1, 1, 1], ["a", 0, 1, 1], [None] * 4, [object()] * 4, [1j] * 4,
     [10**400, 0, 1, 1], {"x": 1}, [[0, 0, 1, 1]], b"ab"],
)  # fmt: skip
def test_scalar_iou_never_raises_on_non_numeric(bad):
    assert iou(bad, UNIT) == 0.0
    assert iou(UNIT, bad) == 0.0
    assert iou(bad, bad) == 0.0


@FAST
@given(
    a=st.one_of(
        st.none(),
        st.text(max_size=8),
        st.lists(st.one_of(st.none(), st.text(max_size=3), st.floats(), st.integers()), max_size=6),
    ),
    b=st.one_of(st.none(), st.lists(st.floats(), min_size=4, max_size=4)),
)
def test_scalar_iou_never_raises_fuzz(a, b):
    value = iou(a, b)
    assert isinstance(value, float)
    assert 0.0 <= value <= 1.0


# ---------------------------------------------------------------------------------------------------------------------
# match_boxes


def test_match_boxes_beats_greedy():
    # All boxes span y in [0, 10], so IoU = 1-D IoU of the x intervals.
    #   G0 = [0, 10], G1 = [2, 12]; P0 = [0.8, 10.8], P1 = [0, 2]
    #   P0-G0: inter 9.2 / union 10.8  -> 0.8519 (the largest entry: greedy takes it first)
    #   P0-G1: inter 8.8 / union 11.2  -> 0.7857
    #   P1-G0: inter 2 / union 10      -> 0.2
    #   P1-G1: touching at x = 2       -> 0
    # greedy: 0.8519 + 0 = 0.8519; optimal: P0-G1 + P1-G0 = 0.7857 + 0.2 = 0.9857
    pred = [[0.8, 0, 10.8, 10], [0, 0, 2, 10]]
    gold = [[0, 0, 10, 10], [2, 0, 12, 10]]
    pairs, ious = match_boxes(pred, gold)
    assert pairs == [(0, 1), (1, 0)]
    np.testing.assert_allclose(ious, [88 / 112, 0.2], atol=1e-12)
    assert ious.sum() > 92 / 108  # strictly better than the greedy total


def test_match_boxes_rectangular_keeps_min_n_m_pairs():
    gold = [[0, 0, 1, 1]]
    pred = [[5, 5, 6, 6], [0, 0, 1, 1], [0, 0, 0.5, 1]]
    pairs, ious = match_boxes(pred, gold)
    assert pairs == [(1, 0)]
    np.testing.assert_allclose(ious, [1.0])
    pairs, ious = match_boxes(gold, pred)  # transposed: one gold index matched
    assert pairs == [(0, 1)]


def test_match_boxes_keeps_zero_pairs():
    pairs, ious = match_boxes([[0, 0, 1, 1]], [[5, 5, 6, 6]])
    assert pairs == [(0, 0)]
    assert ious.tolist() == [0.0]


@pytest.mark.parametrize(
    ("pred", "gold"), [([], []), ([], [[0, 0, 1, 1]]), ([[0, 0, 1, 1]], []), (np.zeros((0, 4)), np.zeros((3, 4)))]
)
def test_match_boxes_empty(pred, gold):
    pairs, ious = match_boxes(pred, gold)
    assert pairs == []
    assert ious.shape == (0,)


@FAST
@given(
    pred=st.lists(valid_boxes(lo=0, hi=10, min_side=0.5), min_size=1, max_size=4),
    gold=st.lists(valid_boxes(lo=0, hi=10, min_side=0.5), min_size=1, max_size=4),
)
def test_match_boxes_is_optimal_by_brute_force(pred, gold):
    matrix = box_iou(pred, gold)
    n, m = matrix.shape
    if n <= m:
        best = max(sum(matrix[i, j] for i, j in zip(range(n), perm)) for perm in itertools.permutations(range(m), n))
    else:
        best = max(sum(matrix[i, j] for i, j in zip(perm, range(m))) for perm in itertools.permutations(range(n), m))
    pairs, ious = match_boxes(pred, gold)
    assert len(pairs) == min(n, m)
    assert len({p for p, _ in pairs}) == len({g for _, g in pairs}) == len(pairs)  # one-to-one
    assert ious.sum() == pytest.approx(best, abs=1e-9)
    np.testing.assert_allclose(ious, [matrix[p, g] for p, g in pairs])


# ---------------------------------------------------------------------------------------------------------------------
# repair_box and is_valid_box


@pytest.mark.skipif(not MIG_BENCH.exists(), reason="MIG-Bench annotation file not available")
def test_repair_box_changes_exactly_the_seven_mig_bench_golds():
    records = json.loads(MIG_BENCH.read_text())
    assert len(records) == 4295
    changed = []
    for position, record in enumerate(records):
        fixed, did_change = repair_box(record["answer"])
        assert did_change == (fixed != tuple(float(v) for v in record["answer"]))
        if did_change:
            changed.append(position)
            assert is_valid_box(fixed), (position, record["answer"], fixed)
            assert all(0.0 <= v <= 1.0 for v in fixed)
        else:
            assert fixed == tuple(record["answer"])
    assert changed == list(MIG_BENCH_MALFORMED)
    # sanity: these seven are malformed before repair (inverted or beyond 1)
    for position in MIG_BENCH_MALFORMED:
        x1, y1, x2, y2 = records[position]["answer"]
        assert x1 > x2 or y1 > y2 or max(x1, y1, x2, y2) > 1


@pytest.mark.parametrize(
    ("box", "expected", "changed"),
    [
        ([0.027, 0.18, 0.143, 0.051], (0.027, 0.051, 0.143, 0.18), True),  # MIG-Bench 7: y inverted
        ([0.319, 0.186, 1.048, 0.535], (0.319, 0.186, 1.0, 0.535), True),  # 34: beyond the right edge
        ([0.502, 0.254, 0.99, 1.035], (0.502, 0.254, 0.99, 1.0), True),  # 703: beyond the bottom
        ([0.9, 0.9, -0.2, 0.1], (0.0, 0.1, 0.9, 0.9), True),  # inverted both ways and negative
        ([0.1, 0.2, 0.3, 0.4], (0.1, 0.2, 0.3, 0.4), False),
        ([0, 0, 1, 1], (0.0, 0.0, 1.0, 1.0), False),
    ],
)
def test_repair_box_values(box, expected, changed):
    fixed, did_change = repair_box(box)
    assert fixed == pytest.approx(expected)
    assert did_change is changed


@pytest.mark.parametrize(
    "box", [[NAN, 0, 1, 1], [0, 0, 1, INF], [-INF, 0, 1, 1], [0, 0, 1], [0, 0, 1, 1, 1], [], ["a", 0, 1, 1]]
)
def test_repair_box_rejects_bad_gold(box):
    with pytest.raises(ValueError):
        repair_box(box)


def test_repair_box_error_names_the_box():
    with pytest.raises(ValueError, match="four finite coordinates"):
        repair_box([0.1, NAN, 0.2, 0.3])


@pytest.mark.parametrize(
    ("box", "valid"),
    [
        ([0.1, 0.1, 0.5, 0.5], True),
        ((0, 0, 1, 1), True),
        ([0.5, 0.1, 0.1, 0.5], False),
        ([0.1, 0.1, 0.1, 0.5], False),
        ([0, 0, 1], False),
        ([0, 0, 1, 1, 1], False),
        ([0, 0, NAN, 1], False),
        ([0, 0, INF, 1], False),
        (["a", 0, 1, 1], False),
        (None, False),
        (5, False),
    ],
)
def test_is_valid_box(box, valid):
    assert is_valid_box(box) is valid


# ---------------------------------------------------------------------------------------------------------------------
# frames


@pytest.mark.parametrize(
    ("spelling", "frame"),
    [
        ("qwen2_5_vl", Frame.QWEN2_5_VL),
        ("qwen2-5-vl", Frame.QWEN2_5_VL),
        ("Qwen2.5-VL", Frame.QWEN2_5_VL),
        ("qwen2-vl", Frame.QWEN2_VL),
        ("qwen2_vl", Frame.QWEN2_VL),
        ("Qwen3-VL", Frame.QWEN3_VL),
        ("qwen3_vl", Frame.QWEN3_VL),
        ("pixel", Frame.PIXEL),
        (" PIXEL ", Frame.PIXEL),
        ("normalized", Frame.NORMALIZED),
        ("coco-xywh", Frame.COCO_XYWH),
        ("coco_xywh", Frame.COCO_XYWH),
        (Frame.COCO_XYWH, Frame.COCO_XYWH),
    ],
)
def test_frame_parse_accepts_both_spellings(spelling, frame):
    assert Frame.parse(spelling) is frame


@pytest.mark.parametrize("bad", ["qwen4_vl", "", "normalised", "xyxy", "llava"])
def test_frame_parse_unknown_lists_known_frames(bad):
    with pytest.raises(ValueError) as info:
        Frame.parse(bad)
    message = str(info.value)
    assert repr(bad) in message
    for frame in Frame:
        assert frame.value in message


def test_frame_properties():
    assert [f for f in Frame if f.is_integer] == [Frame.QWEN2_VL, Frame.QWEN2_5_VL, Frame.QWEN3_VL]
    assert [f for f in Frame if f.needs_resized_size] == [Frame.QWEN2_5_VL]
    assert {f for f in Frame if f.needs_image_size} == {Frame.QWEN2_5_VL, Frame.PIXEL, Frame.COCO_XYWH}


@pytest.mark.parametrize(
    ("model_type", "frame"),
    [("qwen2_vl", Frame.QWEN2_VL), ("qwen2_5_vl", Frame.QWEN2_5_VL), ("qwen3_vl", Frame.QWEN3_VL), ("qwen3_vl_moe", Frame.QWEN3_VL)],
)  # fmt: skip
def test_frame_for_model(model_type, frame):
    config = SimpleNamespace(model_type=model_type)
    model = SimpleNamespace(config=config)
    assert frame_for_model(model_type) is frame
    assert frame_for_model(config) is frame
    assert frame_for_model(model) is frame


@pytest.mark.parametrize(
    "thing", ["llava", SimpleNamespace(model_type="llama"), SimpleNamespace(config=SimpleNamespace()), None]
)
def test_frame_for_model_unknown_says_how_to_declare(thing):
    with pytest.raises(ValueError) as info:
        frame_for_model(thing)
    message = str(info.value)
    assert "declare" in message
    assert "frame=" in message and "--frame" in message
    for known in MODEL_TYPE_FRAMES:
        assert known in message


def test_frame_for_model_with_real_transformers_configs():
    transformers = pytest.importorskip("transformers")
    assert frame_for_model(transformers.Qwen2VLConfig()) is Frame.QWEN2_VL
    assert frame_for_model(transformers.Qwen2_5_VLConfig()) is Frame.QWEN2_5_VL
    assert frame_for_model(transformers.Qwen3VLConfig()) is Frame.QWEN3_VL


# ---------------------------------------------------------------------------------------------------------------------
# conversions, hand-worked for each frame

# qwen2_5_vl sizes, worked by hand with smart_resize(height, width), factor 28:
#   640x480 (w x h): round(480/28)=17 -> 476, round(640/28)=23 -> 644; 644*476 = 306,544 lies in
#       [3,136, 1,003,520] and in [3,136, 12,845,056], so 644x476 under both limits.
#   2000x1500: round(1500/28)=54 -> 1512, round(2000/28)=71 -> 1988; 1988*1512 = 3,005,856.
#       default max 1,003,520: too big -> beta = sqrt(3,000,000 / 1,003,520) = 1.72901;
#       h = floor(1500 / 1.72901 / 28) * 28 = floor(30.98) * 28 = 840, w = floor(2000 / 1.72901 / 28) * 28 = 41 * 28 = 1148
#       released max 12,845,056: fits -> 1988x1512.
CONVERSIONS = [
    # frame, framed box, canonical box, keyword arguments
    # qwen2_vl: 0-1000 grid -> divide by 1000
    ("qwen2_vl", (451, 265, 519, 388), (0.451, 0.265, 0.519, 0.388), {}),
    ("qwen2_vl", (0, 0, 1000, 500), (0.0, 0.0, 1.0, 0.5), {"image_size": (640, 480)}),  # size is irrelevant
    # qwen3_vl: same grid
    ("qwen3_vl", (100, 250, 600, 750), (0.1, 0.25, 0.6, 0.75), {}),
    # qwen2_5_vl: 640x480 resized to 644x476; 644/4 = 161, 476/4 = 119
    ("qwen2_5_vl", (161, 119, 322, 238), (0.25, 0.25, 0.5, 0.5), {"image_size": (640, 480)}),
    ("qwen2_5_vl", (161, 119, 322, 238), (0.25, 0.25, 0.5, 0.5),
     {"image_size": (640, 480), "max_pixels": QWEN2_5_VL_RELEASED_MAX_PIXELS}),
    # 2000x1500 -> 1148x840 (default limits): 1148/4 = 287, 840/4 = 210
    ("qwen2_5_vl", (287, 210, 574, 420), (0.25, 0.25, 0.5, 0.5), {"image_size": (2000, 1500)}),
    # 2000x1500 -> 1988x1512 (released limits): 1988/4 = 497, 1512/4 = 378
    ("qwen2_5_vl", (497, 378, 994, 756), (0.25, 0.25, 0.5, 0.5),
     {"image_size": (2000, 1500), "max_pixels": QWEN2_5_VL_RELEASED_MAX_PIXELS}),
    # explicit resized_size (1000x500) overrides what smart_resize would compute from image_size (644x476)
    ("qwen2_5_vl", (250, 125, 500, 250), (0.25, 0.25, 0.5, 0.5), {"image_size": (640, 480), "resized_size": (1000, 500)}),
    ("qwen2_5_vl", (250, 125, 500, 250), (0.25, 0.25, 0.5, 0.5), {"resized_size": (1000, 500)}),  # no original size
    # pixel: 200x100 original -> divide x by 200, y by 100
    ("pixel", (50.0, 25.0, 150.0, 75.0), (0.25, 0.25, 0.75, 0.75), {"image_size": (200, 100)}),
    # normalized: identity
    ("normalized", (0.1, 0.2, 0.3, 0.4), (0.1, 0.2, 0.3, 0.4), {}),
    # coco_xywh on 200x100: (20, 10, w=60, h=30) -> xyxy (20, 10, 80, 40) -> (0.1, 0.1, 0.4, 0.4)
    ("coco_xywh", (20.0, 10.0, 60.0, 30.0), (0.1, 0.1, 0.4, 0.4), {"image_size": (200, 100)}),
]  # fmt: skip


@pytest.mark.parametrize(("frame", "framed", "canonical", "kwargs"), CONVERSIONS)
def test_to_canonical_hand_worked(frame, framed, canonical, kwargs):
    assert to_canonical(framed, frame, **kwargs) == pytest.approx(canonical, abs=1e-12)


@pytest.mark.parametrize(("frame", "framed", "canonical", "kwargs"), CONVERSIONS)
def test_from_canonical_hand_worked(frame, framed, canonical, kwargs):
    got = from_canonical(canonical, frame, **kwargs)
    assert got == pytest.approx(framed, abs=1e-9)
    if Frame.parse(frame).is_integer:
        assert all(type(v) is int for v in got)
        assert got == framed


def test_from_canonical_integer_override():
    assert from_canonical([0.1234, 0.5, 0.9, 1.0], "qwen2_vl", integer=False) == pytest.approx((123.4, 500, 900, 1000))
    assert from_canonical([0.1234, 0.5, 0.9, 1.0], "pixel", image_size=(100, 10), integer=True) == (12, 5, 90, 10)


def test_qwen2_5_vl_uses_configured_limits():
    # 2000x1500 image, box covering the bottom-right quarter in resized pixels of 1988x1512 (released limits):
    # read with default limits (1148x840) it would mean something else entirely
    box = (994, 756, 1988, 1512)
    assert to_canonical(box, "qwen2_5_vl", (2000, 1500), max_pixels=QWEN2_5_VL_RELEASED_MAX_PIXELS) == pytest.approx(
        (0.5, 0.5, 1.0, 1.0)
    )
    assert to_canonical(box, "qwen2_5_vl", (2000, 1500), clip=False) == pytest.approx(
        (994 / 1148, 756 / 840, 1988 / 1148, 1512 / 840)
    )


@pytest.mark.parametrize("frame", ["pixel", "coco_xywh", "qwen2_5_vl"])
def test_frames_needing_a_size_say_so(frame):
    with pytest.raises(ValueError, match="image size"):
        to_canonical([1, 2, 3, 4], frame)
    with pytest.raises(ValueError, match="image size"):
        from_canonical([0.1, 0.2, 0.3, 0.4], frame)


# ---------------------------------------------------------------------------------------------------------------------
# round trips


def _frame_scale(frame: Frame, size: tuple[int, int]) -> tuple[float, float]:
    if frame in (Frame.QWEN2_VL, Frame.QWEN3_VL):
        return 1000.0, 1000.0
    if frame is Frame.QWEN2_5_VL:
        return tuple(float(v) for v in resized_size(size))  # type: ignore[return-value]
    if frame is Frame.NORMALIZED:
        return 1.0, 1.0
    return float(size[0]), float(size[1])


@settings(max_examples=150, deadline=None)
@given(box=canonical_boxes(), size=image_sizes, frame=st.sampled_from(list(Frame)))
def test_round_trip_canonical_frame_canonical(box, size, frame):
    framed = from_canonical(box, frame, image_size=size)
    back = to_canonical(framed, frame, image_size=size)
    sx, sy = _frame_scale(frame, size)
    if frame.is_integer:
        # rounding to the frame's integer grid moves each coordinate by at most half a unit of that grid
        tol = (0.5 / sx + 1e-9, 0.5 / sy + 1e-9, 0.5 / sx + 1e-9, 0.5 / sy + 1e-9)
    else:
        tol = (1e-9,) * 4
    for got, want, t in zip(back, box, tol):
        assert abs(got - want) <= t
        assert 0.0 <= got <= 1.0


@settings(max_examples=60, deadline=None)
@given(
    box=canonical_boxes(),
    size=image_sizes,
    max_pixels=st.sampled_from([DEFAULT_MAX_PIXELS, QWEN2_5_VL_RELEASED_MAX_PIXELS]),
)
def test_round_trip_qwen2_5_vl_with_limits(box, size, max_pixels):
    framed = from_canonical(box, "qwen2_5_vl", image_size=size, max_pixels=max_pixels)
    rw, rh = resized_size(size, max_pixels=max_pixels)
    assert all(0 <= v <= r for v, r in zip(framed, (rw, rh, rw, rh)))
    back = to_canonical(framed, "qwen2_5_vl", image_size=size, max_pixels=max_pixels)
    assert back == pytest.approx(box, abs=0.5 / min(rw, rh) + 1e-9)


@settings(max_examples=100, deadline=None)
@given(a=canonical_boxes(min_side=1e-3), b=canonical_boxes(min_side=1e-3), size=image_sizes)
def test_iou_invariant_under_frame_round_trip(a, b, size):
    canonical = box_iou([a], [b])[0, 0]
    pixel = [from_canonical(box, "pixel", image_size=size) for box in (a, b)]
    assert box_iou([pixel[0]], [pixel[1]])[0, 0] == pytest.approx(canonical, abs=1e-6)
    resized = [from_canonical(box, "qwen2_5_vl", image_size=size, integer=False) for box in (a, b)]
    assert box_iou([resized[0]], [resized[1]])[0, 0] == pytest.approx(canonical, abs=1e-6)
    back = [to_canonical(box, "pixel", image_size=size) for box in pixel]
    assert box_iou([back[0]], [back[1]])[0, 0] == pytest.approx(canonical, abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# clipping (box rule 4)


@pytest.mark.parametrize(
    ("frame", "box", "kwargs", "expected"),
    [
        ("qwen2_vl", (-100, -50, 1200, 500), {}, (0.0, 0.0, 1.0, 0.5)),
        ("qwen3_vl", (500, 500, 1000, 1001), {}, (0.5, 0.5, 1.0, 1.0)),
        ("pixel", (-20, 10, 250, 150), {"image_size": (200, 100)}, (0.0, 0.1, 1.0, 1.0)),
        ("normalized", (-0.5, 0.2, 1.5, 0.4), {}, (0.0, 0.2, 1.0, 0.4)),
        ("coco_xywh", (150, 50, 100, 100), {"image_size": (200, 100)}, (0.75, 0.5, 1.0, 1.0)),
        ("qwen2_5_vl", (-10, 0, 700, 476), {"image_size": (640, 480)}, (0.0, 0.0, 1.0, 1.0)),
    ],
)
def test_out_of_range_predictions_are_clipped(frame, box, kwargs, expected):
    assert to_canonical(box, frame, **kwargs) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("frame", "box", "kwargs"),
    [
        ("qwen2_vl", (1100, 100, 1300, 200), {}),  # right of the image
        ("qwen2_vl", (100, -300, 200, -100), {}),  # above the image
        ("pixel", (-50, -50, -10, -10), {"image_size": (100, 100)}),
        ("coco_xywh", (120, 0, 30, 50), {"image_size": (100, 100)}),
    ],
)
def test_box_entirely_outside_becomes_degenerate(frame, box, kwargs):
    canonical = to_canonical(box, frame, **kwargs)
    assert all(0.0 <= v <= 1.0 for v in canonical)
    assert not is_valid_box(canonical)
    assert iou(canonical, UNIT) == 0.0
    assert box_iou([canonical], [UNIT, canonical])[0].tolist() == [0.0, 0.0]


def test_clipping_can_be_disabled_and_order_is_kept():
    assert to_canonical((1100, 100, 1300, 200), "qwen2_vl", clip=False) == pytest.approx((1.1, 0.1, 1.3, 0.2))
    inverted = to_canonical((500, 0, 100, 100), "qwen2_vl")
    assert inverted == pytest.approx((0.5, 0.0, 0.1, 0.1))  # never re-ordered: a model writing x2 < x1 is wrong
    assert iou(inverted, UNIT) == 0.0


def test_non_finite_predictions_stay_invalid_after_conversion():
    for box in [(0, 0, INF, 500), (NAN, 0, 500, 500), (-INF, -INF, INF, INF)]:
        canonical = to_canonical(box, "qwen2_vl")
        assert not is_valid_box(canonical)
        assert box_iou([canonical], [UNIT])[0, 0] == 0.0


# ---------------------------------------------------------------------------------------------------------------------
# smart_resize


@pytest.fixture(scope="module")
def hf_smart_resize():
    """transformers' reference `smart_resize` (imports torch, so only the parity tests pay for it)."""
    try:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize
    except ImportError:
        # transformers 5 puts the torchvision backend in `image_processing_qwen2_vl`; without torchvision the PIL
        # backend module carries the same function ("Copied from ... image_processing_qwen2_vl.smart_resize")
        try:
            from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize
        except ImportError as exc:
            pytest.skip(f"transformers' smart_resize is not importable: {exc}")
    return hf_smart_resize


LIMITS = [
    (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS, DEFAULT_FACTOR),
    (DEFAULT_MIN_PIXELS, QWEN2_5_VL_RELEASED_MAX_PIXELS, 28),
    (256 * 28 * 28, 1280 * 28 * 28, 28),  # a common recipe setting
    (65536, 16777216, 32),  # Qwen3-VL style: patch 16 x merge 2
    (32 * 32, 1024 * 32 * 32, 32),
]


@st.composite
def bounded_aspect_sizes(draw) -> tuple[int, int]:
    """`(height, width)` in 1..20000 with aspect ratio at most 200."""
    short = draw(st.integers(1, 20_000))
    long = draw(st.integers(short, min(20_000, short * MAX_ASPECT_RATIO)))
    return (short, long) if draw(st.booleans()) else (long, short)


@settings(max_examples=150, deadline=None)
@given(size=bounded_aspect_sizes(), limits=st.sampled_from(LIMITS))
@example(size=(480, 640), limits=LIMITS[0])
@example(size=(1, 200), limits=LIMITS[0])
@example(size=(20_000, 100), limits=LIMITS[1])
@example(size=(1, 1), limits=LIMITS[3])
@example(size=(20_000, 20_000), limits=LIMITS[3])
def test_smart_resize_parity_with_transformers(hf_smart_resize, size, limits):
    height, width = size
    min_pixels, max_pixels, factor = limits
    expected = hf_smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    assert smart_resize(height, width, factor, min_pixels, max_pixels) == tuple(expected)
    assert smart_resize(height, width, factor, min_pixels, max_pixels, strict=False) == tuple(expected)
    assert resized_size((width, height), factor, min_pixels, max_pixels) == (expected[1], expected[0])


def test_smart_resize_transformers_defaults_match_ours(hf_smart_resize):
    import inspect

    params = inspect.signature(hf_smart_resize).parameters
    assert params["factor"].default == DEFAULT_FACTOR
    assert params["min_pixels"].default == DEFAULT_MIN_PIXELS
    assert params["max_pixels"].default == DEFAULT_MAX_PIXELS


@pytest.mark.parametrize(("height", "width"), [(1, 201), (201, 1), (100, 20_001), (20_001, 100), (1, 20_000)])
def test_smart_resize_both_raise_beyond_200_to_1(hf_smart_resize, height, width):
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(height, width)
    with pytest.raises(ValueError, match="aspect ratio"):
        hf_smart_resize(height, width)


@pytest.mark.parametrize(("height", "width"), [(1, 200), (200, 1), (100, 20_000)])
def test_smart_resize_exactly_200_to_1_is_allowed(hf_smart_resize, height, width):
    assert smart_resize(height, width) == tuple(hf_smart_resize(height, width))


@pytest.mark.parametrize(("height", "width"), [(0, 10), (10, 0), (-5, 10), (0, 0)])
def test_smart_resize_strict_rejects_non_positive_sides(height, width):
    with pytest.raises(ValueError, match="positive"):
        smart_resize(height, width)


def test_smart_resize_hand_worked():
    assert smart_resize(480, 640) == (476, 644)
    assert smart_resize(1500, 2000) == (840, 1148)
    assert smart_resize(1500, 2000, max_pixels=QWEN2_5_VL_RELEASED_MAX_PIXELS) == (1512, 1988)
    # 10x10 = 100 px < 3136: beta = sqrt(3136 / 100) = 5.6 -> ceil(56 / 28) * 28 = 56 on each side
    assert smart_resize(10, 10) == (56, 56)
    # factor 32: round(480/32)=15 -> 480, round(640/32)=20 -> 640
    assert smart_resize(480, 640, factor=32) == (480, 640)
    assert resized_size((640, 480)) == (644, 476)


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(-10, 10**6),
    width=st.integers(-10, 10**6),
    limits=st.sampled_from([*LIMITS, (0, 28 * 28, 28), (1, 1, 14)]),
)
@example(height=1, width=10**6, limits=LIMITS[0])
@example(height=0, width=0, limits=LIMITS[0])
@example(height=10**6, width=1, limits=LIMITS[1])
def test_smart_resize_lenient_never_raises(height, width, limits):
    min_pixels, max_pixels, factor = limits
    h, w = smart_resize(height, width, factor, min_pixels, max_pixels, strict=False)
    assert h >= factor and w >= factor
    assert h % factor == 0 and w % factor == 0
    assert resized_size((width, height), factor, min_pixels, max_pixels) == (w, h)
