"""Fuzzing the builders' record conversion: a malformed record gives a valid row or a `BadRecordError` naming it.

Never another exception type (a `KeyError` or a bare `ValueError` escapes `--no-strict`'s skip-and-count and aborts a
whole build), never a hang. The named cases pin each kind of malformed record to its `BadRecordError` reason (the label
the card counts under `--no-strict`), and a `--no-strict` build over a file of such records completes.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from trl_mig.datasets_builders import mc_bench, mgrounding, mig_bench
from trl_mig.datasets_builders.writer import BadRecordError
from trl_mig.evaluation.sources import _decode
from trl_mig.geometry import is_valid_box
from trl_mig.schema import validate_row


FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Image root: two good images (20x10, 10x20), a truncated PNG, junk bytes named .jpg, a folder."""
    folder = tmp_path_factory.mktemp("fuzz_images")
    Image.new("RGB", (20, 10), (1, 2, 3)).save(folder / "a.png")
    Image.new("RGB", (10, 20), (4, 5, 6)).save(folder / "b.png")
    (folder / "trunc.png").write_bytes((folder / "a.png").read_bytes()[:30])
    (folder / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    (folder / "dir.png").mkdir()
    return folder


HOSTILE_VALUES = [
    None, 0, -1, 7, 1e308, -1e308, math.nan, math.inf, "", "x", "１２３", "\u202e", [], {}, [1, 2], [[1]], {"a": 1},
    True, "a.png", ["a.png"], ["missing.png"], ["trunc.png"], ["junk.jpg"], ["empty.png"], ["dir.png"], [5], [None],
]  # fmt: skip
IMAGE_PATHS = ["a.png", "b.png", "missing.png", "trunc.png", "junk.jpg", "empty.png", "dir.png", "", "./a.png",
               "/nonexistent/x.png", "a\x00.png", 5, None]  # fmt: skip
TEXT = st.one_of(
    st.text(max_size=60),
    st.lists(
        st.sampled_from(
            [
                "<image>",
                "\n",
                " ",
                "<|box_start|>",
                "<|box_end|>",
                "(100,200),(300,400)",
                "(5000,1),(2,2)",
                "(1,1),(1,1)",
                "image 2",
                "the 9th image",
                "in the 2th image",
                "<|object_ref_start|>",
                "cat",
                "[1, 2, 3, 4]",
                "99999999999999999999999",
            ]
        ),  # fmt: skip
        max_size=12,
    ).map("".join),
)


def _assert_rows_or_bad_record(call, record_label: str):
    """Run a conversion: valid schema rows, or a `BadRecordError` whose message names the record."""
    try:
        result = call()
    except BadRecordError as exc:
        assert record_label in str(exc), (record_label, str(exc))
        return None
    rows = result[0] if isinstance(result[0], list) else [result[0]]
    for row in rows:
        validate_row(row)
    return rows


# ----------------------------------------------------------------------------------------------------------------------
# MGrounding (a training source: every bad record must be skippable)
# ----------------------------------------------------------------------------------------------------------------------

MG_GOOD = {
    "id": "r1",
    "type": "gg_train",
    "images": ["a.png", "b.png"],
    "conversations": [
        {"from": "human", "value": "<image><image>Find <|object_ref_start|>the cat<|object_ref_end|>."},
        {"from": "gpt", "value": "It's in the second image.<|box_start|>(100,100),(300,300)<|box_end|>"},
    ],
}


@st.composite
def mgrounding_records(draw):
    record = copy.deepcopy(MG_GOOD)
    for _ in range(draw(st.integers(0, 4))):
        what = draw(st.sampled_from(["drop", "set", "images", "turn_text", "turn_role", "turns", "extra_turn"]))
        if what == "drop":
            record.pop(draw(st.sampled_from(sorted(MG_GOOD))), None)
        elif what == "set":
            record[draw(st.sampled_from(sorted(MG_GOOD)))] = draw(st.sampled_from(HOSTILE_VALUES))
        elif what == "images":
            record["images"] = draw(st.lists(st.sampled_from(IMAGE_PATHS), max_size=3))
        elif (
            what in ("turn_text", "turn_role")
            and isinstance(record.get("conversations"), list)
            and record["conversations"]
        ):
            turn = draw(st.sampled_from(record["conversations"]))
            if isinstance(turn, dict):
                if what == "turn_text":
                    turn["value"] = draw(st.one_of(TEXT, st.sampled_from(HOSTILE_VALUES)))
                else:
                    turn["from"] = draw(st.sampled_from(["human", "gpt", "system", None, 3]))
        elif what == "turns":
            record["conversations"] = draw(st.lists(st.sampled_from(HOSTILE_VALUES), max_size=3))
        elif what == "extra_turn" and isinstance(record.get("conversations"), list):
            record["conversations"].append({"from": draw(st.sampled_from(["human", "gpt"])), "value": draw(TEXT)})
    return record


@FUZZ
@given(record=mgrounding_records(), default_type=st.sampled_from([None, "ot_train_130k.json", "x.json"]))
def test_mgrounding_convert_record_gives_rows_or_a_bad_record(root, record, default_type):
    label = str(record.get("id", 3)) if isinstance(record, dict) else "3"
    # the message names the id as `repr` does (escaped: an id holding "\u202e" must not reorder the log line)
    rows = _assert_rows_or_bad_record(lambda: mgrounding.convert_record(record, 3, root, default_type), repr(label))
    for row in rows or []:
        assert row["id"].startswith(f"{label}:")


@pytest.mark.parametrize("record", [None, 5, "x", [MG_GOOD], []])
def test_mgrounding_non_objects_are_bad_records(root, record):
    with pytest.raises(BadRecordError, match="7"):
        mgrounding.convert_record(record, 7, root)


def test_mgrounding_convert_question_is_linear_in_whitespace():
    """`_PLACEHOLDER_RE` once rescanned a blank run from each of its positions: quadratic (100k spaces took 21 s)."""
    start = time.process_time()
    assert mgrounding.convert_question("r", " " * 25_000 + "find it", 2) == ("find it", 0)
    text = ("\t " * 25_000 + "<image>") * 2 + " " * 50_000 + "find it"
    assert mgrounding.convert_question("r", text, 2) == ("find it", 0)
    assert time.process_time() - start < 0.25


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<image>\n<image>\nFind it.", "Find it."),
        ("a <image>  <image> b", "ab"),
        ("a\t<image> \n <image>b", "ab"),
        ("<image><image>x", "x"),
        ("  x  <image>\n\ny", "x\ny"),
        ("<imag e> <image", "<imag e> <image"),
    ],
)
def test_mgrounding_placeholders_are_removed_with_their_blanks(text, expected):
    assert mgrounding.convert_question("r", text, 2)[0] == expected


def test_mgrounding_reference_box_beyond_int_limits_is_a_bad_record():
    with pytest.raises(BadRecordError, match="'r7': box outside the image"):
        mgrounding.convert_question("r7", "<|box_start|>(" + "9" * 5000 + ",1),(2,2)<|box_end|>", 2)


# ----------------------------------------------------------------------------------------------------------------------
# MC-Bench (a benchmark: strict by default, but every failure must still be a BadRecordError naming the description)
# ----------------------------------------------------------------------------------------------------------------------

POSITIVE_SIZES = [(1, 1), (20, 10), (20_000, 1), (1, 20_000), (20_000, 20_000)]
coords = st.one_of(st.floats(-1e300, 1e300), st.sampled_from([math.nan, math.inf, -math.inf, "3", "x", None, [1]]))


@FUZZ
@given(
    bbox=st.one_of(st.lists(coords, max_size=6), st.sampled_from([None, "abcd", 5, {"x": 1}])),
    size=st.sampled_from(POSITIVE_SIZES),
)
def test_mc_bench_convert_box_gives_a_valid_box_or_a_bad_record(bbox, size):
    try:
        box, repaired = mc_bench.convert_box(bbox, size, "d42", "a9")
    except BadRecordError as exc:
        assert "d42" in str(exc) and "a9" in str(exc)
        return
    assert is_valid_box(box) and all(0.0 <= v <= 1.0 for v in box)
    assert isinstance(repaired, bool)


@pytest.mark.parametrize(
    "bbox, size, reason",
    [
        pytest.param([1e308, 1e308, 1e308, 1e308], (20, 10), "malformed box", id="x+w-overflows-to-inf"),
        pytest.param([-1.7e308, 1, -1.7e308, 1], (20, 10), "malformed box", id="x+w-overflows-to-minus-inf"),
        pytest.param([10**400, 1, 2, 2], (20, 10), "malformed box", id="int-beyond-float"),
        pytest.param("1234", (20, 10), "malformed box", id="text-of-four-digits"),
        pytest.param([1, 1, 2, 2], (0, 0), "bad image size", id="zero-size-image"),
        pytest.param([1, 1, 2, 2], (0, 10), "bad image size", id="zero-width-image"),
    ],
)
def test_mc_bench_convert_box_overflow_and_zero_size_are_bad_records(bbox, size, reason):
    """Once plain `ValueError`s from `repair_box` / `to_canonical`."""
    with pytest.raises(BadRecordError, match="description d42: .*annotation a9") as info:
        mc_bench.convert_box(bbox, size, "d42", "a9")
    assert info.value.reason == reason


MC_IMAGES = {
    1: {"id": 1, "file_name": "a.png", "width": 20, "height": 10, "inter_img_id": 0},
    2: {"id": 2, "file_name": "b.png", "width": 10, "height": 20, "inter_img_id": 1},
}
MC_DESCRIPTION = {"id": 7, "text_style": "Referring", "images_id": [1, 2], "text": "the cat", "positive_sample": True}
MC_ANNOTATIONS = [{"id": 11, "image_id": 2, "bbox": [1, 1, 5, 5], "category_id": 3}]


def _mc(description=None, images=None, annotations=None, root=None):
    return mc_bench.convert_description(
        MC_DESCRIPTION if description is None else description,
        MC_IMAGES if images is None else images,
        MC_ANNOTATIONS if annotations is None else annotations,
        root,
    )


MC_CASES_OK = [
    pytest.param({"description": {**MC_DESCRIPTION, "text_style": None}}, id="style-none"),
    pytest.param({"description": {**MC_DESCRIPTION, "text_style": 5}}, id="style-int"),
    pytest.param({"description": {**MC_DESCRIPTION, "images_id": [1]}}, id="one-image"),
    pytest.param({"description": {**MC_DESCRIPTION, "images_id": [1, 2, 2]}}, id="three-images"),
    pytest.param({"description": {**MC_DESCRIPTION, "images_id": [1, 99]}}, id="unknown-image"),
    pytest.param({"description": {**MC_DESCRIPTION, "images_id": None}}, id="images-none"),
    pytest.param({"description": {**MC_DESCRIPTION, "positive_sample": False}}, id="negative-with-boxes"),
    pytest.param({"annotations": []}, id="positive-without-boxes"),
    pytest.param({"description": {**MC_DESCRIPTION, "text": None}}, id="text-none"),
    pytest.param({"description": {**MC_DESCRIPTION, "text": "\u202e１２３🐱" * 1000}}, id="unicode-text"),
    pytest.param({"annotations": [{**MC_ANNOTATIONS[0], "image_id": 99}]}, id="annotation-image-not-in-pair"),
    pytest.param({"annotations": [{**MC_ANNOTATIONS[0], "bbox": [math.nan, 1, 1, 1]}]}, id="nan-box"),
    pytest.param({"annotations": [{**MC_ANNOTATIONS[0], "bbox": "abcd"}]}, id="text-box"),
    pytest.param({"annotations": [{**MC_ANNOTATIONS[0], "bbox": None}]}, id="no-box"),
    pytest.param({"annotations": [{**MC_ANNOTATIONS[0], "bbox": [50, 50, 5, 5]}]}, id="box-outside"),
    pytest.param({"annotations": [{**MC_ANNOTATIONS[0], "bbox": [1, 1, 0, 5]}]}, id="zero-width-box"),
    pytest.param({"annotations": [{**MC_ANNOTATIONS[0], "bbox": [5, 5, -3, -3]}]}, id="negative-wh"),
    pytest.param({"annotations": [{**MC_ANNOTATIONS[0], "bbox": [-1e308, -1e308, 1e308, 1e308]}]}, id="huge-box"),
    pytest.param({"images": {1: {**MC_IMAGES[1], "file_name": "trunc.png"}, 2: MC_IMAGES[2]}}, id="truncated-png"),
    pytest.param({"images": {1: {**MC_IMAGES[1], "file_name": "junk.jpg"}, 2: MC_IMAGES[2]}}, id="junk-jpeg"),
    pytest.param({"images": {1: {**MC_IMAGES[1], "file_name": "empty.png"}, 2: MC_IMAGES[2]}}, id="empty-file"),
    pytest.param({"images": {1: {**MC_IMAGES[1], "file_name": "missing.png"}, 2: MC_IMAGES[2]}}, id="missing-file"),
    pytest.param({"images": {1: {**MC_IMAGES[1], "file_name": "dir.png"}, 2: MC_IMAGES[2]}}, id="folder"),
    pytest.param({"images": {1: {**MC_IMAGES[1], "width": 21}, 2: MC_IMAGES[2]}}, id="size-mismatch"),
    pytest.param({"images": {1: {**MC_IMAGES[1], "width": 0}, 2: MC_IMAGES[2]}}, id="zero-width-other-image"),
]
#: malformed descriptions that once escaped as KeyError / TypeError / plain ValueError, and the reason each gives now
MC_CASES_BAD = [
    pytest.param({"annotations": [{k: v for k, v in MC_ANNOTATIONS[0].items() if k != "bbox"}]}, "missing field",
                 id="no-bbox-key"),
    pytest.param({"annotations": [{k: v for k, v in MC_ANNOTATIONS[0].items() if k != "image_id"}]}, "missing field",
                 id="no-image-id"),
    pytest.param({"annotations": [{k: v for k, v in MC_ANNOTATIONS[0].items() if k != "id"}]}, "missing field",
                 id="no-annotation-id"),
    pytest.param({"annotations": [5]}, "malformed annotation", id="annotation-not-an-object"),
    pytest.param({"annotations": [{**MC_ANNOTATIONS[0], "category_id": [3]}]}, "malformed field",
                 id="category-unhashable"),
    pytest.param({"images": {1: {k: v for k, v in MC_IMAGES[1].items() if k != "width"}, 2: MC_IMAGES[2]}},
                 "missing field", id="no-width"),
    pytest.param({"images": {1: {k: v for k, v in MC_IMAGES[1].items() if k != "file_name"}, 2: MC_IMAGES[2]}},
                 "missing field", id="no-file-name"),
    pytest.param({"images": {1: {**MC_IMAGES[1], "file_name": 5}, 2: MC_IMAGES[2]}}, "malformed field",
                 id="int-file-name"),
    pytest.param({"images": {1: {**MC_IMAGES[1], "width": "x"}, 2: MC_IMAGES[2]}}, "bad image size", id="text-width"),
    pytest.param({"images": {1: MC_IMAGES[1], 2: {**MC_IMAGES[2], "width": 0}}}, "bad image size",
                 id="zero-width-box-image"),
    pytest.param({"images": {1: {**MC_IMAGES[1], "inter_img_id": None}, 2: MC_IMAGES[2]}}, "malformed field",
                 id="order-none"),
    pytest.param({"images": {1: {**MC_IMAGES[1], "inter_img_id": "a"}, 2: MC_IMAGES[2]}}, "malformed field",
                 id="mixed-order-types"),
    pytest.param({"images": {1: 5, 2: MC_IMAGES[2]}}, "unknown image id", id="image-entry-not-an-object"),
    pytest.param({"description": {**MC_DESCRIPTION, "images_id": 5}}, "malformed field", id="images-id-int"),
    pytest.param({"description": {**MC_DESCRIPTION, "images_id": [[1], [2]]}}, "malformed field",
                 id="images-id-unhashable"),
    pytest.param({"description": {**MC_DESCRIPTION, "text": 5}}, "malformed field", id="text-int"),
    pytest.param({"description": {k: v for k, v in MC_DESCRIPTION.items() if k != "text"}}, "missing field",
                 id="no-text"),
    pytest.param({"annotations": [{**MC_ANNOTATIONS[0], "bbox": [1e308, 1e308, 1e308, 1e308]}]}, "malformed box",
                 id="overflow-box"),
]  # fmt: skip


@pytest.mark.parametrize("change", MC_CASES_OK)
def test_mc_bench_malformed_descriptions_are_bad_records(root, change):
    rows = _assert_rows_or_bad_record(lambda: _mc(root=root, **change), "description 7")
    if rows:
        assert rows[0]["id"] == "7"


@pytest.mark.parametrize("change, reason", MC_CASES_BAD)
def test_mc_bench_malformed_descriptions_name_the_description(root, change, reason):
    with pytest.raises(BadRecordError, match="MC-Bench description 7: ") as info:
        _mc(root=root, **change)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "description, reason",
    [
        pytest.param({k: v for k, v in MC_DESCRIPTION.items() if k != "id"}, "missing field", id="no-description-id"),
        pytest.param({**MC_DESCRIPTION, "id": [7]}, "malformed field", id="unhashable-description-id"),
        pytest.param(5, "not a JSON object", id="not-an-object"),
    ],
)
def test_mc_bench_description_without_a_usable_id_is_named_by_position(root, description, reason):
    with pytest.raises(BadRecordError, match="MC-Bench description at position 4: ") as info:
        mc_bench.convert_description(description, MC_IMAGES, MC_ANNOTATIONS, root, position=4)
    assert info.value.reason == reason


def test_mc_bench_no_strict_build_skips_and_counts_malformed_records(root, tmp_path):
    """Malformed descriptions, images and annotations in one file: a `--no-strict` build skips each, counting why."""
    images = [{"id": 1, "file_name": "a.png", "width": 20, "height": 10, "inter_img_id": 0},
              {"id": 2, "file_name": "b.png", "width": 10, "height": 20, "inter_img_id": 1},
              {"id": 3, "file_name": "a.png", "width": "x", "height": 10, "inter_img_id": 0},
              {"file_name": "a.png"}, 5]  # fmt: skip
    descriptions = [MC_DESCRIPTION, {**MC_DESCRIPTION, "id": 8, "images_id": [[1], [2]]}, {"text": "no id"}, 5,
                    {**MC_DESCRIPTION, "id": [9]}, {**MC_DESCRIPTION, "id": 10, "images_id": [3, 2]},
                    {**MC_DESCRIPTION, "id": 11}]  # fmt: skip
    annotations = [{**MC_ANNOTATIONS[0], "text_id": 7}, {**MC_ANNOTATIONS[0], "id": 12, "text_id": 8},
                   {**MC_ANNOTATIONS[0], "id": 13, "text_id": 10}, {"id": 14, "text_id": 11}, 5,
                   {**MC_ANNOTATIONS[0], "id": 15, "text_id": [7]}]  # fmt: skip
    path = tmp_path / "mc.json"
    path.write_text(json.dumps({"descriptions": descriptions, "images": images, "annotations": annotations,
                                "categories": [{"id": 3}]}))  # fmt: skip
    out = tmp_path / "out"
    args = mc_bench.BuildArguments(annotations=str(path), image_root=str(root), output_dir=str(out), strict=False)
    result = mc_bench.build(args)
    assert result["rows"] == {"test": 1}
    assert result["skipped"] == {"malformed field": 2, "missing field": 2, "not a JSON object": 1, "bad image size": 1,
                                 "malformed annotation": 1, "annotation for a missing description": 1}  # fmt: skip
    assert "malformed annotation" in (out / "README.md").read_text()
    with pytest.raises(BadRecordError, match="MC-Bench annotation at position 4: malformed annotation"):
        mc_bench.build(mc_bench.BuildArguments(annotations=str(path), image_root=str(root),
                                               output_dir=str(tmp_path / "strict")))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# MIG-Bench (the records ship in the wheel, but `--annotations` takes any file)
# ----------------------------------------------------------------------------------------------------------------------

MIG_GOOD = {"images": ["a.png", "b.png"], "answer": [0.1, 0.1, 0.5, 0.5], "question": "find it in the 2th image",
            "task": "multi_view"}  # fmt: skip

MIG_CASES_OK = [
    pytest.param({}, id="good"),
    pytest.param({"images": ["missing.png"]}, id="missing-image"),
    pytest.param({"images": ["trunc.png", "a.png"]}, id="truncated-png"),
    pytest.param({"images": ["junk.jpg", "a.png"]}, id="junk-jpeg"),
    pytest.param({"images": ["empty.png", "a.png"]}, id="empty-file"),
    pytest.param({"images": ["dir.png", "a.png"]}, id="folder"),
    pytest.param({"images": [5, "a.png"]}, id="int-path"),
    pytest.param({"answer": [0.5, 0.5, 0.1, 0.1]}, id="inverted-answer-repaired"),
    pytest.param({"answer": [-0.2, 0.1, 1.5, 0.5]}, id="beyond-image-repaired"),
    pytest.param({"question": "x <|box_start|>(99999,1),(2,2)<|box_end|> in the 2th image"}, id="huge-reference"),
    pytest.param({"question": "\u202e１２３🐱 in the 2th image" * 500}, id="unicode-question"),
    pytest.param({"task": "region"}, id="fixed-task"),
    pytest.param({"task": "diff"}, id="unknown-target"),
]
#: malformed records that once escaped as KeyError / TypeError / plain ValueError, and the reason each gives now
MIG_CASES_BAD = [
    pytest.param({"answer": [math.nan, 0, 1, 1]}, "bad answer box", id="nan-answer"),
    pytest.param({"answer": [0, 1, 1]}, "bad answer box", id="short-answer"),
    pytest.param({"answer": "abcd1"}, "bad answer box", id="text-answer"),
    pytest.param({"answer": "0.10"}, "bad answer box", id="text-of-four-characters"),
    pytest.param({"answer": [0, 0, 10**400, 1]}, "bad answer box", id="int-beyond-float"),
    pytest.param({"answer": None}, "missing field", id="no-answer"),
    pytest.param({"task": "zzz"}, "unknown task", id="unknown-task"),
    pytest.param({"task": ["multi_view"]}, "unknown task", id="unhashable-task"),
    pytest.param({"question": "find it in the 9th image"}, "target image out of range", id="target-beyond-images"),
    pytest.param({"question": "find it in the 0th image"}, "target image out of range", id="target-0th-image"),
    pytest.param({"task": "correspondence", "images": ["a.png"]}, "target image out of range",
                 id="fixed-target-beyond-images"),
    pytest.param({"question": "find it"}, "target image not stated", id="question-names-no-image"),
    pytest.param({"task": "group_grounding"}, "target image not stated", id="group-grounding-without-info"),
    pytest.param({"question": 5}, "malformed field", id="question-not-text"),
    pytest.param({"question": "<|box_start|>(" + "9" * 5000 + ",1),(2,2)<|box_end|> in the 2th image"},
                 "malformed reference box", id="reference-box-beyond-int-limits"),
    pytest.param({"images": None}, "missing field", id="images-none"),
    pytest.param({"images": "a.png"}, "malformed field", id="images-text"),
    pytest.param({"images": []}, "no images", id="no-images"),
    pytest.param({"drop": "images"}, "missing field", id="no-images-key"),
    pytest.param({"drop": "answer"}, "missing field", id="no-answer-key"),
    pytest.param({"drop": "question"}, "missing field", id="no-question-key"),
    pytest.param({"drop": "task"}, "missing field", id="no-task-key"),
    pytest.param({"answer": [2.0, 2.0, 3.0, 3.0]}, "box outside the image", id="gold-wholly-outside"),
    pytest.param({"answer": [-0.5, 0.1, 0.0, 0.5]}, "box outside the image", id="gold-touching-the-edge-outside"),
    pytest.param({"answer": [0.2, 0.1, 0.2, 0.5]}, "degenerate box", id="gold-zero-width"),
]  # fmt: skip


def _mig(change, root):
    record = {**MIG_GOOD, **{k: v for k, v in change.items() if k != "drop"}}
    record.pop(change.get("drop"), None)
    return mig_bench.convert_record(record, 3, root)


@pytest.mark.parametrize("change", MIG_CASES_OK)
def test_mig_bench_malformed_records_are_bad_records(root, change):
    rows = _assert_rows_or_bad_record(lambda: _mig(change, root), "record 3")
    if rows:
        assert rows[0]["id"] == "3"


@pytest.mark.parametrize("change, reason", MIG_CASES_BAD)
def test_mig_bench_malformed_records_name_the_record(root, change, reason):
    with pytest.raises(BadRecordError, match="MIG-Bench record 3: ") as info:
        _mig(change, root)
    assert info.value.reason == reason


@pytest.mark.parametrize("record", [None, 5, "x", [MIG_GOOD]])
def test_mig_bench_non_objects_are_bad_records(root, record):
    with pytest.raises(BadRecordError, match="MIG-Bench record 3: not a JSON object"):
        mig_bench.convert_record(record, 3, root)


def test_mig_bench_target_image_for_still_raises_value_error_for_direct_callers():
    with pytest.raises(ValueError, match="record 3.*names no 'Nth image'") as info:
        mig_bench.target_image_for({**MIG_GOOD, "question": "find it"}, 3)
    assert not isinstance(info.value, BadRecordError)


def test_mig_bench_shipped_file_has_no_gold_box_the_builder_rejects():
    """The 'box outside the image' / 'degenerate box' rule rejects no record of the real file (its 7 repairs stay)."""
    records = json.loads(mig_bench.default_annotations().read_text())
    assert len(records) == 4295
    repaired = []
    for position, record in enumerate(records):
        mig_bench.check_record_fields(record, position)
        _, fixed = mig_bench.gold_box(record["answer"], position)
        mig_bench.checked_target_image(record, position)
        repaired += [position] * fixed
    assert repaired == [7, 34, 105, 126, 163, 512, 703]


def test_mig_bench_no_strict_build_skips_and_counts_malformed_records(root, tmp_path):
    records = [MIG_GOOD, {**MIG_GOOD, "answer": [math.nan, 0, 1, 1]}, {**MIG_GOOD, "task": "zzz"}, 5,
               {**MIG_GOOD, "question": "find it in the 9th image"}, {**MIG_GOOD, "answer": [2.0, 2.0, 3.0, 3.0]},
               {k: v for k, v in MIG_GOOD.items() if k != "answer"}, {**MIG_GOOD, "images": ["a.png", "missing.png"]}]  # fmt: skip
    path = tmp_path / "mig.json"
    path.write_text(json.dumps(records))
    out = tmp_path / "out"
    result = mig_bench.build(mig_bench.BuildArguments(image_root=str(root), output_dir=str(out), annotations=str(path),
                                                      strict=False))  # fmt: skip
    assert result["rows"] == {"train": 1}
    assert result["skipped"] == {"bad answer box": 1, "unknown task": 1, "not a JSON object": 1, "missing field": 1,
                                 "target image out of range": 1, "box outside the image": 1, "missing image": 1}  # fmt: skip
    assert "target image out of range" in (out / "README.md").read_text()


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation sources: an image that cannot be decoded is named
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, named",
    [
        pytest.param({"bytes": b"not an image", "path": "x/a.png"}, "x/a.png", id="junk-bytes"),
        pytest.param({"bytes": None, "path": "/nonexistent/b.png"}, "/nonexistent/b.png", id="missing-path"),
        pytest.param({"bytes": b"", "path": None}, "cannot decode image (", id="empty-bytes"),
        pytest.param(5, "of type int", id="not-an-image"),
    ],
)
def test_decode_names_the_row_and_the_image(image, named):
    with pytest.raises(ValueError, match="^row '12', image 1: cannot decode image") as info:
        _decode(image, "row '12', image 1")
    assert named in str(info.value)


def test_decode_still_decodes(root):
    image = _decode({"bytes": (root / "a.png").read_bytes(), "path": "a.png"}, "row '1', image 0")
    assert image.size == (20, 10) and image.mode == "RGB"
    assert _decode({"bytes": None, "path": str(root / "b.png")}).size == (10, 20)
