"""`trl-mig build mgrounding` on files written in MGrounding-630k's documented format (data/FORMATS.md)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image

from trl_mig.datasets_builders.mgrounding import (
    REGION_DESCRIPTION_REASON,
    BadRecordError,
    BuildArguments,
    build,
    iter_json_records,
)
from trl_mig.datasets_builders.reader import load_schema_dataset
from trl_mig.geometry import from_canonical, to_canonical


SIZES = {"a.jpg": (64, 48), "b.jpg": (40, 60), "c.png": (32, 32)}


def _images(root: Path) -> None:
    for name, size in SIZES.items():
        path = root / "imgs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (120, 30, 200)).save(path)


def _box(box: tuple[int, int, int, int]) -> str:
    return f"<|box_start|>({box[0]},{box[1]}),({box[2]},{box[3]})<|box_end|>"


def _record(rid, images, turns, type_="gg_train", placeholders=None):
    """A record exactly as documented: `<image>` placeholders (one per image) open the first human turn."""
    n = len(images) if placeholders is None else placeholders
    conversations = []
    for i, (question, answer) in enumerate(turns):
        value = "<image>\n" * n + question if i == 0 else question
        conversations += [{"from": "human", "value": value}, {"from": "gpt", "value": answer}]
    record = {"id": rid, "images": [f"imgs/{p}" for p in images], "conversations": conversations}
    if type_ is not None:
        record["type"] = type_
    return record


def _write(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False))  # the released files are indented arrays
    return path


GOOD = [
    _record(
        "gg-1",
        ["a.jpg", "b.jpg", "c.png"],
        [
            (
                "Find <|object_ref_start|>the red umbrella<|object_ref_end|> among the images.",
                f"It's in the third image. {_box((316, 58, 764, 999))}",
            ),
            ("And the cat?", f"It's in the first image. {_box((10, 20, 500, 600))}"),
        ],
    ),
    _record(
        "ot-1",
        ["a.jpg", "b.jpg"],
        [(f"Track {_box((100, 100, 200, 300))} of image 1 in image 2.", _box((5, 6, 7, 8)))],
        "ot_train",
    ),
    _record(
        "rg-1",
        ["c.png"],
        [("Where is <|object_ref_start|>it<|object_ref_end|>?", _box((0, 0, 1000, 1000)))],
        "region_train",
    ),
    _record("reg-desc", ["a.jpg", "b.jpg"], [("Describe the region.", "A dog on a mat.")], "_gg_reg"),
    _record("inv", ["a.jpg"], [("x", _box((600, 700, 100, 200)))], "common_train"),
]


@pytest.fixture
def root(tmp_path) -> Path:
    _images(tmp_path)
    return tmp_path


def _build(root: Path, records: list, **kwargs) -> dict:
    ann = _write(root / kwargs.pop("file_name", "MGrounding-630k.json"), records)
    out = root / "out"
    return build(BuildArguments(annotations=str(ann), image_root=str(root), output_dir=str(out), **kwargs)), out


def test_rows_ids_boxes_and_card(root):
    result, out = _build(root, GOOD, shard_rows=2)
    assert result["rows"] == {"train": 5}
    assert result["skipped"] == {REGION_DESCRIPTION_REASON: 1}
    assert result["task_rows"] == {"group_grounding": 2, "object_tracking": 1, "region": 1, "common_object": 1}
    assert sorted(p.name for p in (out / "data").iterdir()) == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    ds = load_schema_dataset(str(out), split="train")
    rows = {r["id"]: r for r in ds.remove_columns("images")}
    assert list(rows) == ["gg-1:0", "gg-1:1", "ot-1:0", "rg-1:0", "inv:0"]
    first = rows["gg-1:0"]
    assert first["question"] == "Find the red umbrella among the images."
    assert first["target_image"] == [2] and first["task"] == "group_grounding" and first["source"] == "mgrounding"
    assert first["solution"][0] == pytest.approx([0.316, 0.058, 0.764, 0.999], abs=1e-6)
    assert first["image_sizes"] == [list(SIZES[n]) for n in ("a.jpg", "b.jpg", "c.png")]
    assert rows["gg-1:1"]["target_image"] == [0] and rows["gg-1:1"]["question"] == "And the cat?"
    assert rows["ot-1:0"]["target_image"] == [-1]  # not named, two images
    assert rows["ot-1:0"]["question"] == 'Track <box image="0">[0.100,0.100,0.200,0.300]</box> of image 1 in image 2.'
    assert rows["rg-1:0"]["target_image"] == [0]  # one image
    assert rows["inv:0"]["solution"][0] == pytest.approx([0.1, 0.2, 0.6, 0.7], abs=1e-6)  # repaired once
    assert result["repaired"] == 1
    image = ds[0]["images"][2]
    assert image.size == SIZES["c.png"]
    card = (out / "README.md").read_text()
    assert REGION_DESCRIPTION_REASON in card and "group_grounding" in card and "license: other" in card


def test_coordinate_round_trip():
    for box in [(0.1234, 0.5, 0.9, 0.75), (0.0, 0.0, 1.0, 1.0), (0.3333, 0.6667, 0.4444, 0.9999)]:
        grid = from_canonical(box, "qwen2_vl")
        back = to_canonical(grid, "qwen2_vl")
        assert all(abs(a - b) <= 1 / 1000 for a, b in zip(box, back))


def test_task_from_file_name(root):
    records = [_record("1", ["a.jpg", "b.jpg"], [("q", f"image 2: {_box((1, 2, 3, 4))}")], type_=None)]
    result, out = _build(root, records, file_name="refer_train_70k.json")
    assert result["task_rows"] == {"refer_grounding": 1}
    assert load_schema_dataset(str(out), split="train")[0]["target_image"] == [1]


BAD = {
    "missing image": _record("m", ["a.jpg", "nope.jpg"], [("q", f"first image {_box((1, 2, 3, 4))}")]),
    "wrong image count": _record("w", ["a.jpg", "b.jpg"], [("q", _box((1, 2, 3, 4)))], placeholders=1),
    "unknown task": _record("u", ["a.jpg"], [("q", _box((1, 2, 3, 4)))], "mystery_train"),
    "unparsable gpt answer": _record("p", ["a.jpg"], [("q", "I cannot see it.")]),
    "box outside the image": _record("o", ["a.jpg"], [("q", _box((10, 10, 1500, 200)))]),
    "image reference out of range": _record("r", ["a.jpg", "b.jpg"], [("q", f"fifth image {_box((1, 2, 3, 4))}")]),
}


def test_bad_records_counted(root):
    result, out = _build(root, [GOOD[0], *BAD.values()])
    assert result["skipped"] == dict.fromkeys(BAD, 1)
    assert result["rows"] == {"train": 2}
    card = (out / "README.md").read_text()
    assert all(reason in card for reason in BAD)


@pytest.mark.parametrize("reason", list(BAD))
def test_strict_names_record_and_reason(root, reason):
    with pytest.raises(BadRecordError, match=rf"record '{BAD[reason]['id']}': {reason}"):
        _build(root, [GOOD[0], BAD[reason]], strict=True)
    assert not (root / "out").exists() and not list(root.glob(".out.partial-*"))  # nothing partial written


def test_refuses_non_empty_output(root):
    _build(root, GOOD[:1])
    with pytest.raises(ValueError, match="overwrite"):
        _build(root, GOOD[:1])
    result, _ = _build(root, GOOD[:2], overwrite=True)
    assert result["rows"] == {"train": 3}


def test_iter_json_records_streams_arrays_and_lines(tmp_path):
    records = [{"id": i, "text": "x" * (i * 7), "nested": [1, {"a": "]"}]} for i in range(50)]
    array = tmp_path / "a.json"
    array.write_text(json.dumps(records, indent=1))
    lines = tmp_path / "b.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in records))
    assert list(iter_json_records(array, chunk_chars=16)) == records
    assert list(iter_json_records(lines, chunk_chars=5)) == records
    broken = tmp_path / "c.json"
    broken.write_text('[{"id": 1}, {"id": ')
    with pytest.raises(ValueError, match="invalid JSON"):
        list(iter_json_records(broken))


def test_memory_stays_flat(root):
    """20k rows from 10k records: the build's peak stays below what merely `json.load`-ing the file costs."""
    n = 10_000
    ann = root / "big.json"
    with ann.open("w") as handle:  # written incrementally so the fixture itself does not inflate the peak
        handle.write("[\n")
        for i in range(n):
            turns = [
                (
                    "Find the thing in the pictures, please.",
                    f"It's in the second image. {_box((i % 900, 5, 990, 999))}",
                ),
                ("And the other one?", f"It's in the first image. {_box((1, 2, 300, 400))}"),
            ]
            handle.write(("," if i else "") + json.dumps(_record(f"r{i}", ["a.jpg", "b.jpg"], turns)) + "\n")
        handle.write("]\n")
    _build(root, GOOD[:1])  # warm up: imports (datasets, PIL plugins) are not the build's memory
    tracemalloc.start()
    try:
        with ann.open() as handle:
            json.load(handle)
        _, load_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        out = root / "big"
        result = build(BuildArguments(annotations=str(ann), image_root=str(root), output_dir=str(out), shard_rows=500))
        _, build_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["rows"] == {"train": 2 * n}
    # measured: json.load alone ~ 3x the build's peak (1 MB read buffer + one 500-row shard); holding all rows too
    # would be far more still
    assert build_peak < load_peak / 2, (build_peak, load_peak)
    assert len(list((out / "data").glob("train-*-of-00040.parquet"))) == 40


def test_decontaminate_against_a_benchmark_set(root):
    from trl_mig.datasets_builders.writer import write_dataset
    from trl_mig.schema import features

    bench_row = {"id": "0", "images": [Image.open(root / "imgs" / "a.jpg")], "question": "q", "solution": [],
                 "target_image": [], "image_sizes": [[64, 48]], "task": "region", "source": "bench"}  # fmt: skip
    bench = root / "mig_bench"
    write_dataset({"test": [bench_row]}, bench, features(), "---\nlicense: mit\n---\n# bench\n")
    result, out = _build(root, GOOD, decontaminate_against=[str(bench)])
    reason = "decontamination: an image is in benchmark set `mig_bench`"
    assert result["skipped"][reason] == 3  # gg-1, ot-1 and inv use a.jpg; rg-1 (c.png, also flat) is kept
    assert load_schema_dataset(str(out), split="train")["id"] == ["rg-1:0"]
    assert reason in (out / "README.md").read_text()
