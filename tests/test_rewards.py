"""Reward contract (one table over every reward) and hand-worked reward cases."""

from __future__ import annotations

import importlib
import importlib.util
import math
import pickle
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from trl_mig.geometry import from_canonical
from trl_mig.rewards import (
    REWARD_FUNCS,
    FormatReward,
    IoUReward,
    IoUThresholdReward,
    MultiBoxIoUReward,
    format_reward,
    image_index_reward,
    iou_reward,
    iou_threshold_reward,
    multi_box_iou_reward,
)


GOLD = [0.25, 0.2, 0.75, 0.6]
SIZES = [(640, 480), (800, 600), (333, 1000)]


def _answer(box_canonical=GOLD, image=2, size=SIZES[1], frame="qwen2_5_vl", think="the cup is left"):
    x1, y1, x2, y2 = from_canonical(box_canonical, frame, image_size=size)
    return f'<think>{think}</think><answer>{{"image": {image}, "bbox_2d": [{x1}, {y1}, {x2}, {y2}]}}</answer>'


def _columns(n: int) -> dict:
    """Labelled rows, the target in image 1 (0-based), as the builders write them."""
    return {
        "solution": [[GOLD]] * n,
        "target_image": [[1]] * n,
        "image_sizes": [SIZES] * n,
    }


# (reward, whether it returns None for an unlabeled row)
CONTRACT = [
    pytest.param(format_reward, False, id="format_reward"),
    pytest.param(FormatReward(require_think=False), False, id="FormatReward(require_think=False)"),
    pytest.param(iou_reward, True, id="iou_reward"),
    pytest.param(IoUReward(frame="qwen2_vl"), True, id="IoUReward(qwen2_vl)"),
    pytest.param(iou_threshold_reward, True, id="iou_threshold_reward"),
    pytest.param(IoUThresholdReward(0.7, max_pixels=12_845_056), True, id="IoUThresholdReward(0.7)"),
    pytest.param(image_index_reward, True, id="image_index_reward"),
    pytest.param(multi_box_iou_reward, True, id="multi_box_iou_reward"),
    pytest.param(MultiBoxIoUReward(frame="qwen3-vl"), True, id="MultiBoxIoUReward(qwen3-vl)"),
]

TRL_EXTRAS = {
    "prompts": None,
    "completion_ids": None,
    "trainer_state": object(),
    "log_extra": lambda *a, **k: None,
    "log_metric": lambda *a, **k: None,
    "task": None,
    "source": None,
    "some_unknown_column": None,
}

GARBAGE = [
    "",
    "<answer></answer>",
    "<think>",
    "<answer>{",
    '{"bbox_2d": [1e400, -1e400, nan, 3]}',
    '{"image": "x", "bbox_2d": [1, 2, 3, 4, 5]}',
    '{"image": 99, "bbox_2d": [5, 5, 1, 1]}',
    "(0,0),(0,0)",
    "[" * 500,
    "9" * 5000,
    "\x00\ud7ff\uffff",
    [{"role": "assistant", "content": None}],
    [{"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "[1, 2, 3, 4]"}]}],
    [],
    None,
    12345,
]


def _extras(n: int) -> dict:
    return {k: ([v] * n if k in ("prompts", "completion_ids", "task", "source", "some_unknown_column") else v)
            for k, v in TRL_EXTRAS.items()}  # fmt: skip


@pytest.mark.parametrize("reward, none_when_unlabeled", CONTRACT)
class TestRewardContract:
    def test_length_types_and_range(self, reward, none_when_unlabeled):
        completions = [_answer(), _answer(image=1), _answer([0, 0, 0.1, 0.1]), *GARBAGE]
        out = reward(completions, **_columns(len(completions)), **_extras(len(completions)))
        assert len(out) == len(completions)
        for value in out:
            assert value is None or (isinstance(value, float) and 0.0 <= value <= 1.0), value

    def test_right_answer_pays_and_garbage_does_not(self, reward, none_when_unlabeled):
        frame = reward.spec.frame.value if hasattr(reward, "spec") else "qwen2_5_vl"
        max_pixels = reward.spec.max_pixels if hasattr(reward, "spec") else 1003520
        x1, y1, x2, y2 = from_canonical(GOLD, frame, image_size=SIZES[1], max_pixels=max_pixels)
        answer = f'{{"image": 2, "bbox_2d": [{x1}, {y1}, {x2}, {y2}]}}'
        right = f"<think>cup</think><answer>{answer}</answer>"
        if isinstance(reward, FormatReward) and not reward.require_think:
            right = f"<answer>{answer}</answer>"
        out = reward([right, "no box at all"], **_columns(2))
        assert out[0] == pytest.approx(1.0, abs=0.02)
        assert out[1] == 0.0

    def test_unlabeled_rows(self, reward, none_when_unlabeled):
        cols = _columns(2)
        cols["solution"] = [None, [GOLD]]
        out = reward([_answer(), _answer()], **cols)
        assert (out[0] is None) == none_when_unlabeled
        assert out[1] is not None

    def test_pickle_round_trip(self, reward, none_when_unlabeled):
        clone = pickle.loads(pickle.dumps(reward))
        assert clone.__name__ == reward.__name__
        completions = [_answer(), _answer(image=3), "junk"]
        assert clone(completions, **_columns(3)) == reward(completions, **_columns(3))

    def test_conversational_completions(self, reward, none_when_unlabeled):
        plain = [_answer(), _answer([0.3, 0.3, 0.7, 0.7])]
        messages = [[{"role": "assistant", "content": text}] for text in plain]
        parts = [[{"role": "assistant", "content": [{"type": "text", "text": text}]}] for text in plain]
        expected = reward(plain, **_columns(2))
        assert reward(messages, **_columns(2)) == expected
        assert reward(parts, **_columns(2)) == expected

    @settings(max_examples=200)  # ~3,000 generated strings per reward
    @given(st.lists(st.text(max_size=300), min_size=1, max_size=30))
    def test_never_raises_on_generated_garbage(self, reward, none_when_unlabeled, texts):
        out = reward(texts, **_columns(len(texts)))
        assert all(v is None or 0.0 <= v <= 1.0 for v in out)

    @given(
        st.lists(
            st.builds(
                lambda pre, nums, image, post: f'{pre}<answer>{{"image": {image}, "bbox_2d": {nums}}}</answer>{post}',
                st.sampled_from(["", "<think>x</think>", "<think>", "</think>"]),
                st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**6), 10**6), max_size=6),
                st.integers(-3, 9) | st.just("null") | st.just('"Image-2"'),
                st.sampled_from(["", "</answer>", " tail"]),
            ),
            min_size=1,
            max_size=8,
        )
    )
    def test_never_raises_on_near_miss_answers(self, reward, none_when_unlabeled, texts):
        out = reward(texts, **_columns(len(texts)))
        assert all(v is None or 0.0 <= v <= 1.0 for v in out)


def test_registry_names_match_public_callables():
    for name, func in REWARD_FUNCS.items():
        assert getattr(importlib.import_module("trl_mig.rewards"), name) is func
        assert func.__name__.startswith(name)


def test_two_thresholds_log_under_two_keys():
    names = {IoUThresholdReward(0.5).__name__, IoUThresholdReward(0.7).__name__, iou_threshold_reward.__name__}
    assert names == {"iou_threshold_reward_0.5", "iou_threshold_reward_0.7"}
    assert IoUReward(frame="qwen2-vl").__name__ == "iou_reward_qwen2_vl" != iou_reward.__name__


def test_dotted_path_resolves_like_trl_cli():
    # what `trl grpo --reward_funcs trl_mig.rewards.iou_reward` does (trl/scripts/grpo.py, TRL 1.16)
    module_path, name = "trl_mig.rewards.iou_reward".rsplit(".", 1)
    assert getattr(importlib.import_module(module_path), name) is iou_reward


def test_importing_rewards_loads_no_torch_transformers_or_trl():
    code = (
        "import sys, trl_mig, trl_mig.rewards, trl_mig.metrics; trl_mig.iou_reward; "
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'trl', 'datasets'}); "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


class TestIoUReward:
    def test_wrong_image_pays_nothing_and_unnamed_image_is_wrong(self):
        out = iou_reward([_answer(image=1), _answer(image=2), _answer(image=0), _answer(image=9)], **_columns(4))
        assert out == [0.0, pytest.approx(1.0, abs=0.01), 0.0, 0.0]
        no_image = '<answer>{"bbox_2d": [160, 112, 476, 336]}</answer>'
        assert iou_reward([no_image], **_columns(1)) == [0.0]

    def test_unknown_target_scores_box_only(self):
        cols = _columns(1)
        cols["target_image"] = [[-1]]
        assert iou_reward([_answer(image=1, size=SIZES[0])], **cols)[0] == pytest.approx(1.0, abs=0.01)

    def test_first_box_is_scored_so_listing_many_does_not_pay(self):
        right = from_canonical(GOLD, "qwen2_5_vl", image_size=SIZES[1])
        wrong = from_canonical([0, 0, 0.05, 0.05], "qwen2_5_vl", image_size=SIZES[1])
        many = f'[{{"image": 2, "bbox_2d": {list(wrong)}}}, {{"image": 2, "bbox_2d": {list(right)}}}]'
        assert iou_reward([many], **_columns(1)) == [0.0]

    def test_no_target_rows_are_not_applicable(self):
        cols = _columns(1)
        cols["solution"], cols["target_image"] = [[]], [[]]
        assert iou_reward(['{"image": null, "bbox_2d": []}'], **cols) == [None]

    def test_frame_column_overrides_instance_frame(self):
        grid = '<answer>{"image": 2, "bbox_2d": [250, 200, 750, 600]}</answer>'
        assert iou_reward([grid], **_columns(1))[0] < 0.5  # read as pixels of a 812x616 image: wrong
        assert iou_reward([grid], frame=["qwen3_vl"], **_columns(1)) == [1.0]

    def test_resized_sizes_win_over_computed_ones(self):
        # the processor resized image 1 to 1000x500: the answer is in those pixels
        answer = '<answer>{"image": 2, "bbox_2d": [250, 100, 750, 300]}</answer>'
        cols = _columns(1)
        assert iou_reward([answer], resized_sizes=[[(644, 476), (1000, 500), (336, 1008)]], **cols) == [1.0]
        assert iou_reward([answer], **cols)[0] < 0.9

    def test_sizes_fall_back_to_decoded_images(self):
        images = [[Image.new("RGB", size) for size in SIZES]]
        cols = {"solution": [[GOLD]], "target_image": [[1]], "images": images}
        assert iou_reward([_answer()], **cols)[0] == pytest.approx(1.0, abs=0.01)

    def test_threshold_reward(self):
        half = _answer([0.25, 0.2, 0.75, 0.4])  # IoU exactly 0.5 up to pixel rounding
        near = _answer([0.25, 0.2, 0.75, 0.55])
        assert iou_threshold_reward([near], **_columns(1)) == [1.0]
        assert IoUThresholdReward(0.95)([near], **_columns(1)) == [0.0]
        assert iou_reward([half], **_columns(1))[0] == pytest.approx(0.5, abs=0.02)


class TestDataErrors:
    def test_malformed_gold_names_the_row(self):
        with pytest.raises(ValueError, match=r"row 1 \(id='b'\).*solution"):
            iou_reward(["x", "y"], solution=[[GOLD], [[0, 0, math.nan, 1]]], target_image=[[0], [0]],
                       image_sizes=[SIZES] * 2, id=["a", "b"])  # fmt: skip

    def test_missing_sizes_for_pixel_frames(self):
        with pytest.raises(ValueError, match="image_sizes"):
            iou_reward(["x"], solution=[[GOLD]], target_image=[[0]])
        # grid frames need no sizes
        assert IoUReward(frame="qwen2_vl")(["x"], solution=[[GOLD]], target_image=[[0]]) == [0.0]

    def test_column_length_mismatch(self):
        with pytest.raises(ValueError, match="target_image"):
            iou_reward(["x", "y"], solution=[[GOLD]] * 2, target_image=[[0]], image_sizes=[SIZES] * 2)

    def test_missing_solution_column(self):
        with pytest.raises(ValueError, match="solution"):
            iou_reward(["x"], image_sizes=[SIZES])

    def test_invalid_threshold(self):
        with pytest.raises(ValueError, match="threshold"):
            IoUThresholdReward(1.5)


class TestImageIndexAndFormat:
    def test_image_index(self):
        cols = _columns(4)
        cols["target_image"] = [[1], [1], [-1], [1]]
        out = image_index_reward([_answer(image=2), _answer(image=3), _answer(), "junk"], **cols)
        assert out == [1.0, 0.0, None, 0.0]

    @pytest.mark.parametrize(
        "text, expected",
        [
            ("<think>a</think><answer>[1, 2, 3, 4]</answer>", 1.0),
            ("  <think>\na\n</think>\n<answer>\n(1,2),(3,4)\n</answer>\n", 1.0),
            ('<think>none here</think><answer>{"image": null, "bbox_2d": []}</answer>', 1.0),
            ("<think></think><answer>[1, 2, 3, 4]</answer>", 0.0),  # empty thought
            ("<think>a</think><answer>no box</answer>", 0.0),  # answer does not parse
            ("<answer>[1, 2, 3, 4]</answer><think>a</think>", 0.0),  # wrong order
            ("<think>a</think><answer>[1, 2, 3, 4]</answer> trailing", 0.0),
            ("<think>a</think><think>b</think><answer>[1, 2, 3, 4]</answer>", 0.0),
            ("<think>a</think><answer>[1, 2, 3, 4]</answer><answer>[1, 2, 3, 4]</answer>", 0.0),
        ],
    )
    def test_format(self, text, expected):
        assert format_reward([text]) == [expected]

    def test_answer_only_format(self):
        reward = FormatReward(require_think=False)
        assert reward(["<answer>[1, 2, 3, 4]</answer>", "<think>a</think><answer>[1, 2, 3, 4]</answer>"]) == [1.0, 0.0]


class TestMultiBox:
    def test_matching_across_images_normalised_by_max_count(self):
        reward = MultiBoxIoUReward(frame="normalized")
        gold = [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.1, 0.1, 0.2, 0.2]]
        targets = [0, 1, 1]
        both = '[{"image": 1, "bbox_2d": [0, 0, 0.5, 0.5]}, {"image": 2, "bbox_2d": [0.5, 0.5, 1, 1]}]'
        swapped = '[{"image": 2, "bbox_2d": [0, 0, 0.5, 0.5]}, {"image": 1, "bbox_2d": [0.5, 0.5, 1, 1]}]'
        spam = "[" + ", ".join(['{"image": 2, "bbox_2d": [0.5, 0.5, 1, 1]}'] * 6) + "]"
        out = reward([both, swapped, spam], solution=[gold] * 3, target_image=[targets] * 3)
        assert out[0] == pytest.approx(2 / 3)
        # swapped: only [0, 0, .5, .5] in image 2 touches the small gold box there (IoU .01 / .25)
        assert out[1] == pytest.approx(0.04 / 3)
        assert out[2] == pytest.approx(1 / 6)  # one match, six predictions: spamming boxes does not pay

    def test_negatives(self):
        reward = MultiBoxIoUReward(frame="normalized")
        no_target = '{"image": null, "bbox_2d": []}'
        out = reward([no_target, "[0, 0, 1, 1]", no_target, "junk"], solution=[[], [], [[0, 0, 1, 1]], []],
                     target_image=[[], [], [0], []])  # fmt: skip
        assert out == [1.0, 0.0, 0.0, 0.0]


def test_optional_dependencies_name_their_extra():
    from trl_mig.import_utils import is_pycocotools_available, require

    assert isinstance(is_pycocotools_available(), bool)
    with pytest.raises(ImportError, match=r"pip install 'trl-mig\[vllm\]'"):
        require("vllm", "fast generation") if not importlib.util.find_spec("vllm") else pytest.skip("vllm installed")
