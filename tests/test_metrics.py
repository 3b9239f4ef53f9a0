"""The grounding metric: the plain function, the `evaluate` module loaded by path offline, agreement with rewards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import trl_mig.metrics
from trl_mig.geometry import from_canonical
from trl_mig.metrics import MIG_BENCH_TASKS, compute_grounding_metrics
from trl_mig.rewards import IoUThresholdReward, iou_reward


KEYS = {
    "acc@0.3",
    "acc@0.5",
    "acc@0.7",
    "strict_acc@0.5",
    "miou",
    "parse_fail_rate",
    "wrong_image_rate",
    "format_rate",
}
SIZES = [(640, 480), (800, 600)]


def _json_answer(box, image, size=SIZES[1]):
    x1, y1, x2, y2 = from_canonical(box, "qwen2_5_vl", image_size=size)
    return f'<think>t</think><answer>{{"image": {image}, "bbox_2d": [{x1}, {y1}, {x2}, {y2}]}}</answer>'


@pytest.fixture(scope="module")
def metric():
    return trl_mig.metrics.load("grounding")


def _rows():
    gold = [0.2, 0.2, 0.6, 0.6]
    predictions = [
        _json_answer(gold, 2),  # right box, right image
        _json_answer(
            gold, 1, SIZES[0]
        ),  # right box in the wrong image (pixels of the image it names): box-only acc counts it, strict does not
        _json_answer([0.2, 0.2, 0.6, 0.45], 2),  # IoU 0.625
        _json_answer([0.2, 0.2, 0.6, 0.35], 2),  # IoU 0.375
        "I am not sure.",  # unparsable
        _json_answer(gold, 2).split("<answer>")[1].removesuffix("</answer>"),  # right box, no think: format fails
    ]
    return predictions, [[gold]] * 6, [1] * 6, [SIZES] * 6


def test_values_hand_worked():
    predictions, references, targets, sizes = _rows()
    out = compute_grounding_metrics(predictions, references, targets, sizes)["overall"]
    assert set(out) == KEYS
    assert out["acc@0.5"] == pytest.approx(4 / 6, abs=1e-9)
    assert out["acc@0.3"] == pytest.approx(5 / 6)
    assert out["acc@0.7"] == pytest.approx(3 / 6)
    assert out["strict_acc@0.5"] == pytest.approx(3 / 6)
    assert out["parse_fail_rate"] == pytest.approx(1 / 6)
    assert out["wrong_image_rate"] == pytest.approx(1 / 6)
    assert out["format_rate"] == pytest.approx(4 / 6)
    assert out["miou"] == pytest.approx((1 + 1 + 0.625 + 0.375 + 0 + 1) / 6, abs=0.01)


def test_strict_accuracy_agrees_with_the_threshold_reward():
    predictions, references, targets, sizes = _rows()
    out = compute_grounding_metrics(predictions, references, targets, sizes)["overall"]
    rewards = IoUThresholdReward(0.5)(predictions, solution=references, target_image=[[t] for t in targets],
                                      image_sizes=sizes)  # fmt: skip
    assert out["strict_acc@0.5"] == pytest.approx(sum(rewards) / len(rewards))
    ious = iou_reward(predictions, solution=references, target_image=[[t] for t in targets], image_sizes=sizes)
    assert ious[1] == 0.0  # the reward pays nothing in the wrong image, the box-only metric does


def test_per_task_and_mig_bench_average():
    predictions, references, targets, sizes = _rows()
    tasks = ["region", "diff", "region", "diff", "region", "diff"]
    out = compute_grounding_metrics(predictions, references, targets, sizes, tasks=tasks)
    assert set(out["tasks"]) == {"diff", "region"}
    assert out["tasks"]["region"]["n"] == 3
    assert out["tasks"]["region"]["acc@0.5"] == pytest.approx(2 / 3)
    assert out["tasks"]["diff"]["acc@0.5"] == pytest.approx(2 / 3)
    assert out["mig_bench_avg_acc@0.5"] == pytest.approx(2 / 3)
    assert set(out["flags"]["missing_mig_bench_tasks"]) == set(MIG_BENCH_TASKS) - {"diff", "region"}
    other = compute_grounding_metrics(predictions, references, targets, sizes, tasks=["mine"] * 6)
    assert "mig_bench_avg_acc@0.5" not in other


def test_parsed_predictions_and_negatives_and_flags():
    out = compute_grounding_metrics(
        [{"boxes": [[0.1, 0.1, 0.5, 0.5]], "image": 0}, {"boxes": [], "image": -1}, {"boxes": [], "no_target": True}],
        [[[0.1, 0.1, 0.5, 0.5]], [[0.5, 0.5, 0.4, 0.9]], []],
        target_images=[0, 0, -1],
        ids=["a", "b", "c"],
    )
    assert out["overall"]["acc@0.5"] == pytest.approx(2 / 3)
    assert out["overall"]["parse_fail_rate"] == pytest.approx(1 / 3)
    assert out["overall"]["format_rate"] is None
    assert out["flags"]["invalid_gold"] == ["b"]


def test_bad_inputs_raise_with_the_field():
    with pytest.raises(ValueError, match="references"):
        compute_grounding_metrics(["a", "b"], [[[0, 0, 1, 1]]])
    with pytest.raises(ValueError, match="image_sizes"):
        compute_grounding_metrics(["a"], [[[0, 0, 1, 1]]], frame="pixel")


def test_evaluate_load_by_path_offline(metric, monkeypatch):
    predictions, references, targets, sizes = _rows()
    out = metric.compute(predictions=predictions, references=references, target_images=targets, image_sizes=sizes,
                         tasks=["region"] * 6)  # fmt: skip
    assert out == json.loads(json.dumps(compute_grounding_metrics(predictions, references, targets, sizes,
                                                                  tasks=["region"] * 6)))  # fmt: skip
    parsed = metric.compute(predictions=[{"boxes": [[0.2, 0.2, 0.6, 0.6]], "image": 1}], references=[[[0.2, 0.2, 0.6, 0.6]]],
                            target_images=[1])  # fmt: skip
    assert parsed["overall"]["strict_acc@0.5"] == 1.0


def test_unknown_metric_name():
    with pytest.raises(ValueError, match="grounding"):
        trl_mig.metrics.load("nope")


def test_metric_card_states_inputs_outputs_and_limitations():
    card = (Path(trl_mig.metrics.METRICS_DIR) / "grounding" / "README.md").read_text()
    for heading in ("### Inputs", "### Output values", "## Limitations and bias"):
        assert heading in card


# the array path (`_score_texts`, raw answers) against the per-row path (`score_single`, what the rewards use) -----------
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


_coord = st.one_of(st.integers(-50, 1200), st.floats(-0.5, 1.5, allow_nan=False), st.sampled_from(["nan", "1e400"]))
_answer = st.one_of(
    st.tuples(st.sampled_from(["1", "2", "3", "0", "null", '"Image-2"']), st.lists(_coord, min_size=4, max_size=4),
              st.booleans()).map(
        lambda t: ("<think>x</think>" if t[2] else "") + f'<answer>{{"image": {t[0]}, "bbox_2d": [{", ".join(map(str, t[1]))}]}}</answer>'),
    st.lists(_coord, min_size=4, max_size=4).map(lambda c: f"In the second image: ({c[0]},{c[1]}),({c[2]},{c[3]})"),
    st.just('<answer>{"image": null, "bbox_2d": []}</answer>'),
    st.just("<think>unfinished (1,2),(3,4)"),
    st.text(max_size=30),
)  # fmt: skip
_gold = st.one_of(
    st.just([]),
    st.lists(st.floats(0, 1, allow_nan=False), min_size=4, max_size=4).map(lambda b: [b]),
    st.just([[0.5, 0.1, 0.2, 0.9]]),  # inverted: invalid gold
)
_row = st.tuples(_answer, _gold, st.integers(-1, 2), st.sampled_from([None, [(640, 480), (800, 600)],
                                                                      [(1000, 500)]]))  # fmt: skip


@given(
    rows=st.lists(_row, min_size=1, max_size=12),
    frame=st.sampled_from(["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "pixel", "normalized", "coco_xywh"]),
    think=st.booleans(),
)
def test_array_path_equals_the_per_row_path(rows, frame, think):
    from trl_mig.metrics.core import _score_parsed, _score_texts
    from trl_mig.scoring import FrameSpec

    answers, golds, targets, sizes = (list(c) for c in zip(*rows))
    spec = FrameSpec(frame)
    if spec.frame.needs_image_size:
        sizes = [s or [(320, 240)] for s in sizes]
    fast = _score_texts(answers, golds, targets, sizes, None, spec, think).rows()
    slow = _score_parsed(answers, golds, targets, sizes, None, spec, think)
    for a, b in zip(fast, slow):
        assert a.iou == pytest.approx(b.iou, abs=1e-12)
        assert (a.pred_image, a.right_image, a.parsed, a.format_ok, a.gold_valid) == (
            b.pred_image, b.right_image, b.parsed, b.format_ok, b.gold_valid)  # fmt: skip
        assert len(a.pred_boxes) == len(b.pred_boxes)
        for x, y in zip(a.pred_boxes, b.pred_boxes):
            assert x == pytest.approx(list(y), abs=1e-12, nan_ok=True)
