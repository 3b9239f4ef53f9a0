"""`trl-mig eval --benchmark mig-bench` on a malformed annotation file: the real MIG-Bench file, one record broken in
`tmp_path`, must fail with the builder's `BadRecordError` naming the record's position and what is wrong with it (the
same error `trl-mig build mig_bench` gives), never a bare `KeyError` / `TypeError` / `AttributeError`.

Field errors surface when the source is made (every record is checked: the task column needs each), gold errors in
`gold()`, which the runner calls before generating; image errors when the image is opened (`image_sizes`, `rows`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trl_mig.datasets_builders.paths import OUTSIDE_ROOT
from trl_mig.datasets_builders.writer import BadRecordError
from trl_mig.evaluation.sources import MIGBenchSource


REAL_FILE = Path("/work/shared/data/mig_bench/MIG_data.json")
if not REAL_FILE.is_file():  # the copy shipped in the wheel is the same file
    from trl_mig.datasets_builders.mig_bench import default_annotations

    REAL_FILE = default_annotations()


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return json.loads(REAL_FILE.read_text(encoding="utf-8"))


def first(records: list[dict[str, Any]], task: str) -> int:
    return next(i for i, r in enumerate(records) if r["task"] == task)


def broken_file(tmp_path: Path, records: list[Any], position: int, change: Any) -> Path:
    """The real file with record `position` replaced (`change` not callable) or edited in place (`change(record)`)."""
    records = json.loads(json.dumps(records))  # a deep copy
    if callable(change):
        change(records[position])
    else:
        records[position] = change
    path = tmp_path / "MIG_data.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def drop(name: str):
    return lambda record: record.pop(name)


def set_to(name: str, value: Any):
    return lambda record: record.update({name: value})


# (task of the broken record, change, reason, a fragment of the detail)
AT_CONSTRUCTION = [
    ("region", [1, 2, 3], "not a JSON object", "got list"),
    ("region", "record", "not a JSON object", "got str"),
    ("region", drop("answer"), "missing field", "`answer`"),
    ("region", set_to("images", None), "missing field", "`images`"),
    ("region", set_to("images", "a.jpg"), "malformed field", "`images` is str"),
    ("region", set_to("images", []), "no images", ""),
    ("region", set_to("question", 7), "malformed field", "`question` is int"),
    ("region", set_to("task", "regoin"), "unknown task", "'regoin'"),
    ("region", set_to("task", ["region"]), "unknown task", "['region']"),
]

IN_GOLD = [
    ("region", set_to("answer", "0.1 0.1 0.5 0.5"), "bad answer box", "not four finite numbers"),
    ("region", set_to("answer", [0.1, 0.1, 0.5]), "bad answer box", "not four finite numbers"),
    ("region", set_to("answer", [0.1, "0.1", 0.5, 0.5]), "bad answer box", "not four finite numbers"),
    ("region", set_to("answer", [0.1, 0.1, float("inf"), 0.5]), "bad answer box", "not four finite numbers"),
    ("region", set_to("answer", [0.1, True, 0.5, 0.5]), "bad answer box", "not four finite numbers"),
    ("region", set_to("answer", [0.5, 0.2, 0.5, 0.9]), "degenerate box", "[0.5, 0.2, 0.5, 0.9]"),
    ("region", set_to("answer", [1.5, 1.2, 2.0, 3.0]), "box outside the image", "[1.5, 1.2, 2.0, 3.0]"),
    ("common_object", set_to("question", "Locate the shared object."), "target image not stated", "Nth image"),
    ("common_object", set_to("question", "Locate it in the 9th image."), "target image out of range", "image 9 of"),
    ("group_grounding", drop("additional_info"), "target image not stated", "names no image"),
]


def _check(info: pytest.ExceptionInfo, position: int, reason: str, detail: str) -> None:
    assert isinstance(info.value, ValueError)  # what callers catching bad data already catch
    assert info.value.reason == reason
    assert str(info.value).startswith(f"MIG-Bench record {position}: {reason}")
    assert detail in str(info.value)


def test_the_real_file_loads_and_scores_cleanly():
    source = MIGBenchSource(REAL_FILE)
    gold = source.gold()
    assert len(gold["id"]) == len(source.records) == 4295
    assert all(len(box) == 1 and len(box[0]) == 4 for box in gold["solution"])


@pytest.mark.parametrize(("task", "change", "reason", "detail"), AT_CONSTRUCTION)
def test_malformed_record_fails_at_construction(tmp_path, records, task, change, reason, detail):
    position = first(records, task) + 1  # not the first record: the position must be the record's, not a count
    path = broken_file(tmp_path, records, position, change)
    with pytest.raises(BadRecordError) as info:
        MIGBenchSource(path, tasks=["diff"])  # even in a task not selected: the file itself is malformed
    _check(info, position, reason, detail)


@pytest.mark.parametrize(("task", "change", "reason", "detail"), IN_GOLD)
def test_bad_gold_fails_in_gold(tmp_path, records, task, change, reason, detail):
    position = first(records, task) + 1
    path = broken_file(tmp_path, records, position, change)
    with pytest.raises(BadRecordError) as info:
        MIGBenchSource(path).gold()
    _check(info, position, reason, detail)
    other = "diff" if task != "diff" else "region"
    assert MIGBenchSource(path, tasks=[other]).gold()["id"]  # gold of the tasks selected only


@pytest.mark.parametrize(
    ("relative", "reason"),
    [("../../outside.jpg", OUTSIDE_ROOT), ("/etc/hostname", OUTSIDE_ROOT), ("", "invalid image path"),
     (3, "invalid image path"), ("MIG-Bench/images/none.jpg", "missing image"),
     ("MIG-Bench/images/broken.jpg", "unreadable image")],
)  # fmt: skip
def test_bad_image_paths_fail_when_sizes_are_read(tmp_path, records, relative, reason):
    root = tmp_path / "root"
    (root / "MIG-Bench" / "images").mkdir(parents=True)
    (root / "MIG-Bench" / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "outside.jpg").write_bytes(b"")
    position = first(records, "region") + 1

    def change(record: dict[str, Any]) -> None:
        record["images"][0] = relative

    source = MIGBenchSource(broken_file(tmp_path, records, position, change), image_root=root, limit=1)
    with pytest.raises(BadRecordError) as info:
        source.image_sizes(position)
    _check(info, position, reason, "")


@pytest.mark.parametrize(
    ("text", "match"),
    [('{"task": "region"}', "expected MIG-Bench's JSON list"), ('[{"task": "region"', "not a MIG-Bench annotation"),
     (b"\xff\xfe[", "not a MIG-Bench annotation")],
)  # fmt: skip
def test_a_file_that_is_not_a_record_list_is_refused(tmp_path, text, match):
    path = tmp_path / "MIG_data.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=match) as info:
        MIGBenchSource(path)
    assert str(path) in str(info.value)
