"""MC-Bench `ap50` / `image_acc` on a small built MC-Bench file, with AP values worked out by hand.

The fixture (COCO image ids 100..105, one category):
- row "0", referring: gold A in image 0 (200x100), image 1 empty;
- row "1", comparison: gold B in image 0, gold C in image 1 (both 100x100);
- row "2", reasoning: a negative (no target in either image).

COCO AP50 is the mean, over 101 recall points 0, 0.01, ..., 1, of the best precision reached at that recall or more.
With 3 gold boxes, a recall of 1/3 covers 34 points (0-0.33) and 2/3 covers 67 points (0-0.66).
"""

from __future__ import annotations

import json
import math
import sys

import pytest
from test_mc_bench_builder import write_mc_bench

from trl_mig import import_utils
from trl_mig.datasets_builders.mc_bench import BuildArguments, build, load_coco_ids
from trl_mig.datasets_builders.reader import load_schema_dataset
from trl_mig.import_utils import is_pycocotools_available
from trl_mig.metrics.mc_bench import compute_mc_bench_metrics, mc_bench_detections, mc_bench_gold
from trl_mig.scoring import FrameSpec


SPEC = FrameSpec("qwen2_vl")  # answers on the 0-1000 grid: the numbers below read as fractions x 1000
SAMPLES = [
    {"text": "The red kite", "style": "Referring", "sizes": [(200, 100), (100, 100)], "boxes": [[[20, 10, 80, 40]], []]},
    {"text": "The bigger dog", "style": "Comparison", "sizes": [(100, 100), (100, 100)],
     "boxes": [[[10, 10, 30, 30]], [[50, 50, 40, 40]]]},
    {"text": "The cat that can fly", "style": "Reasoning", "sizes": [(64, 48), (48, 64)], "boxes": [[], []]},
]  # fmt: skip


def answer(body: str) -> str:
    return f"<think>looking</think><answer>{body}</answer>"


A = '{"image": 1, "bbox_2d": [100, 100, 500, 500]}'
B = '{"image": 1, "bbox_2d": [100, 100, 400, 400]}'
C = '{"image": 2, "bbox_2d": [500, 500, 900, 900]}'
C_IN_WRONG_IMAGE = '{"image": 1, "bbox_2d": [500, 500, 900, 900]}'
NO_TARGET = '{"image": null, "bbox_2d": []}'
PERFECT = [answer(A), answer(f"[{B}, {C}]"), answer(NO_TARGET)]
# row 0 right; row 1 finds B, misses C and puts C's box in the wrong image; row 2 claims a target on the negative
FLAWED = [answer(A), answer(f"[{B}, {C_IN_WRONG_IMAGE}]"), answer('{"image": 2, "bbox_2d": [0, 0, 500, 500]}')]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("mc_images")
    out = tmp_path_factory.mktemp("mc_out") / "mc_bench"
    build(BuildArguments(annotations=str(write_mc_bench(root, SAMPLES)), image_root=str(root), output_dir=str(out)))
    return load_schema_dataset(str(out), split="test"), load_coco_ids(out)


def metrics(built, outputs, **kwargs):
    rows, ids = built
    return compute_mc_bench_metrics(outputs, rows, ids, spec=SPEC, **kwargs)


def test_gold_rebuilt_in_pixels(built):
    rows, ids = built
    gold = mc_bench_gold(rows, ids)
    assert [image["id"] for image in gold["images"]] == [100, 101, 102, 103, 104, 105]
    assert [(image["width"], image["height"]) for image in gold["images"]] == [
        (200, 100), (100, 100), (100, 100), (100, 100), (64, 48), (48, 64)]  # fmt: skip
    assert [a["id"] for a in gold["annotations"]] == [1, 2, 3]  # from 1: COCOeval reads gold id 0 as "unmatched"
    assert [a["image_id"] for a in gold["annotations"]] == [100, 102, 103]
    for ann, want in zip(gold["annotations"], ([20, 10, 80, 40], [10, 10, 30, 30], [50, 50, 40, 40])):
        assert ann["bbox"] == pytest.approx(want, abs=1e-4)  # float32 storage
        assert ann["area"] == pytest.approx(want[2] * want[3], rel=1e-5) and ann["iscrowd"] == 0
    assert gold["categories"] == [{"id": 1, "name": "category 1"}]


def test_detections_map_boxes_to_coco_images_with_confidences(built):
    rows, ids = built
    dets = mc_bench_detections(FLAWED, rows, ids, spec=SPEC, confidences=[0.2, 0.5, None])
    assert [(d["image_id"], d["category_id"], d["score"]) for d in dets] == [
        (100, 1, 0.2), (102, 1, 0.5), (102, 1, 0.5), (105, 1, 1.0)]  # fmt: skip
    for det, want in zip(dets, ([20, 10, 80, 40], [10, 10, 30, 30], [50, 50, 40, 40], [0, 0, 24, 32])):
        assert det["bbox"] == pytest.approx(want)
    assert mc_bench_detections(PERFECT, rows, ids, spec=SPEC)[-1]["image_id"] == 103  # no-target row: nothing


def test_perfect_answers_score_one(built):
    out = metrics(built, PERFECT)
    assert out["overall"] == {"ap50": pytest.approx(1.0), "image_acc": 1.0, "n": 3}
    assert out["tasks"]["referring"]["ap50"] == pytest.approx(1.0)
    assert out["tasks"]["reasoning"] == {"ap50": None, "image_acc": 1.0, "n": 1}  # no gold box: AP undefined
    assert out["flags"] == {"unparsable": [], "dropped_boxes": {}}


@pytest.mark.parametrize(
    ("confidences", "ap50"),
    [
        # ties keep COCO's order (image id, then answer order): TP A, TP B, FP, FP -> precision 1 up to recall 2/3
        (None, 67 / 101),
        # the negative's FP first, then row 1 (TP B, FP), then A: precisions 0, 1/2, 1/3, 1/2 -> 1/2 up to 2/3
        ([0.2, 0.5, 0.9], 0.5 * 67 / 101),
        # A (score 1) first, then the FP, then TP B, FP: 1 up to recall 1/3, 2/3 from there to 2/3
        ([None, 0.5, 0.9], (34 + 33 * 2 / 3) / 101),
    ],
)
def test_flawed_answers_ap_depends_on_ranking(built, confidences, ap50):
    out = metrics(built, FLAWED, confidences=confidences)
    assert out["overall"]["ap50"] == pytest.approx(ap50, abs=1e-9)
    # images right: row 0 both, row 1 image 0 only (C missed), row 2 image 0 only (FP in image 1)
    assert out["overall"]["image_acc"] == pytest.approx(4 / 6)


def test_flawed_answers_per_task(built):
    out = metrics(built, FLAWED)
    assert out["tasks"]["referring"] == {"ap50": pytest.approx(1.0), "image_acc": 1.0, "n": 1}
    # TP B then the wrong-image FP over gold B, C: precision 1 up to recall 1/2 (51 points)
    assert out["tasks"]["comparison"] == {"ap50": pytest.approx(51 / 101), "image_acc": 0.5, "n": 1}
    assert out["tasks"]["reasoning"] == {"ap50": None, "image_acc": 0.5, "n": 1}
    regrouped = metrics(built, FLAWED, tasks=["all"] * 3)
    assert regrouped["tasks"] == {"all": regrouped["overall"]}


@pytest.mark.parametrize(("y2", "ap50"), [(767, 1.0), (910, 0.0)])
def test_iou_threshold_is_one_half(built, y2, ap50):
    # gold A is [0.1, 0.1, 0.5, 0.5]: a box down to y2 has IoU 0.4 / (y2 / 1000 - 0.1), 0.5997 or 0.4938
    loose = [answer(f'{{"image": 1, "bbox_2d": [100, 100, 500, {y2}]}}'), PERFECT[1], PERFECT[2]]
    referring = metrics(built, loose)["tasks"]["referring"]
    assert referring["ap50"] == pytest.approx(ap50)  # AP at IoU 0.5 only: 0.5997 is as good as a perfect box
    assert referring["image_acc"] == 1.0  # image-level: a target was claimed where there is one


def test_degenerate_box_is_an_unmatchable_detection(built):
    rows, ids = built
    inverted = [answer('{"image": 1, "bbox_2d": [500, 500, 100, 100]}'), PERFECT[1], PERFECT[2]]
    det = mc_bench_detections(inverted, rows, ids, spec=SPEC)[0]
    assert det["image_id"] == 100 and det["bbox"] == pytest.approx([100, 50, 0, 0])
    out = metrics(built, inverted)
    # FP (image 100 first), TP B, TP C: precisions 0, 1/2, 2/3 -> 2/3 up to recall 2/3; A is missed
    assert out["overall"]["ap50"] == pytest.approx(67 * (2 / 3) / 101, abs=1e-9)
    assert out["overall"]["image_acc"] == 1.0  # it did claim a target in image 0, which has one


def test_garbage_is_scored_never_raised(built):
    rows, ids = built
    garbage = ["I cannot tell.", 12345, answer('[{"image": 3, "bbox_2d": [0, 0, 10, 10]}, {"bbox_2d": [0, 0, 9, 9]}]')]
    assert mc_bench_detections(garbage, rows, ids, spec=SPEC) == []
    out = metrics(built, garbage)
    assert out["overall"]["ap50"] == 0.0  # gold boxes but no detection (pycocotools' loadRes([]) would fail)
    # rows 0, 1 unparsable: never read as "no target", so their 4 images are wrong; row 2's negatives are right
    assert out["overall"]["image_acc"] == pytest.approx(2 / 6)
    assert out["flags"] == {"unparsable": ["0", "1"], "dropped_boxes": {"2": 2}}  # image 3 of 2, and no image


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"confidences": [0.5, float("nan"), 0.5]}, "finite"), ({"confidences": [0.5]}, "1 entries for 3"),
     ({"tasks": ["a"]}, "1 entries for 3")],
)  # fmt: skip
def test_caller_errors_raise(built, kwargs, message):
    with pytest.raises(ValueError, match=message):
        metrics(built, PERFECT, **kwargs)


def test_matches_pycocotools_on_json_files(built, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rows, ids = built
    confidences = [0.2, 0.5, 0.9]
    (tmp_path / "gold.json").write_text(json.dumps(mc_bench_gold(rows, ids)))
    dets = mc_bench_detections(FLAWED, rows, ids, spec=SPEC, confidences=confidences)
    (tmp_path / "results.json").write_text(json.dumps(dets))
    gold = COCO(str(tmp_path / "gold.json"))
    evaluator = COCOeval(gold, gold.loadRes(str(tmp_path / "results.json")), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    ours = metrics(built, FLAWED, confidences=confidences)["overall"]["ap50"]
    assert ours == pytest.approx(float(evaluator.stats[1]), abs=1e-12)
    assert math.isclose(ours, 0.5 * 67 / 101, abs_tol=1e-9)


@pytest.mark.parametrize("how", ["not_installed", "import_fails"])
def test_missing_pycocotools_names_the_extra(built, monkeypatch, how):
    rows, ids = built
    assert is_pycocotools_available()  # cached before hiding: the cache must not remember a hidden module
    if how == "not_installed":  # what `find_spec` reports on a machine without it
        monkeypatch.setattr(import_utils, "_available", lambda module: module != "pycocotools")
    else:  # installed but not importable
        for name in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval"):
            monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"MC-Bench AP50 .*pip install 'trl-mig\[coco\]'"):
        metrics(built, PERFECT)
    assert len(mc_bench_detections(PERFECT, rows, ids, spec=SPEC)) == 3  # the pure parts need no pycocotools
    assert len(mc_bench_gold(rows, ids)["annotations"]) == 3
