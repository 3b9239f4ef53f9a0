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
    assert result["config_rows"] == {"common_train": 1, "gg_train": 2, "ot_train": 1, "region_train": 1}
    assert sorted(str(p.relative_to(out / "data")) for p in (out / "data").rglob("*.parquet")) == [
        "common_train/train-00000-of-00001.parquet",
        "gg_train/train-00000-of-00001.parquet",  # shard_rows=2: both gg-1 turns in one file
        "ot_train/train-00000-of-00001.parquet",
        "region_train/train-00000-of-00001.parquet",
    ]
    ds = load_schema_dataset(str(out), split="train")
    rows = {r["id"]: r for r in ds.remove_columns("images")}
    assert list(rows) == ["inv:0", "gg-1:0", "gg-1:1", "ot-1:0", "rg-1:0"]  # by subset, then in source order
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
    image = ds[1]["images"][2]  # gg-1:0
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
    """8k rows from 4k records: the build's peak stays below what merely `json.load`-ing the file costs."""
    n = 4_000
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
        result = build(BuildArguments(annotations=str(ann), image_root=str(root), output_dir=str(out), shard_rows=200))
        _, build_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["rows"] == {"train": 2 * n}
    # measured: json.load alone ~ 3x the build's peak (1 MB read buffer + one 200-row shard); holding all rows too
    # would be far more still
    assert build_peak < load_peak / 2, (build_peak, load_peak)
    assert len(list((out / "data" / "gg_train").glob("train-*-of-00040.parquet"))) == 40


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


def _two_subsets(n: int = 3, padding: int = 0) -> list:
    """`n` group-grounding and `n` object-tracking records, interleaved as in the merged file; `padding` characters of
    an extra field (which the builder ignores) per record."""
    records = []
    for i in range(n):
        answer = f"second image {_box((i, 2, 300, 400))}"
        records.append(_record(f"gg-{i}", ["a.jpg", "b.jpg"], [("Find it.", answer)]))
        records.append(_record(f"ot-{i}", ["a.jpg", "c.png"], [("Track it.", _box((5, 6, 70 + i, 80)))], "ot_train"))
    for record in records if padding else ():
        record["note"] = "x" * padding
    return records


def test_one_config_per_subset_and_a_default(root, tmp_path):
    """The card lists `default` (every row) and one config per subset; `load_dataset` resolves each from the card."""
    from datasets import get_dataset_config_names, load_dataset
    from huggingface_hub import DatasetCard

    result, out = _build(root, _two_subsets(), shard_rows=2)
    assert result["config_rows"] == {"gg_train": 3, "ot_train": 3} and result["rows"] == {"train": 6}
    assert len(list((out / "data" / "gg_train").glob("train-*-of-00002.parquet"))) == 2
    configs = {c["config_name"]: c for c in DatasetCard.load(out / "README.md").data.configs}
    assert list(configs) == ["default", "gg_train", "ot_train"] and configs["default"]["default"] is True
    assert configs["ot_train"]["data_files"] == [{"split": "train", "path": "data/ot_train/train-*.parquet"}]
    card = (out / "README.md").read_text()
    assert "| `gg_train` | group_grounding | 3 |" in card and "| `default` | every subset | 6 |" in card
    assert sorted(get_dataset_config_names(str(out))) == ["default", "gg_train", "ot_train"]
    for config, prefix in (("gg_train", "gg-"), ("ot_train", "ot-")):
        subset = load_dataset(str(out), config, split="train", cache_dir=str(tmp_path / f"cache-{config}"))
        assert subset["id"] == [f"{prefix}{i}:0" for i in range(3)]
        assert load_schema_dataset(str(out), config, split="train")["id"] == subset["id"]
    everything = load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache-default"))
    assert sorted(everything["id"]) == sorted(f"{p}{i}:0" for p in ("gg-", "ot-") for i in range(3))
    assert load_schema_dataset(str(out), split="train")["id"] == everything["id"]
    assert load_schema_dataset(str(out), "default", split="train").num_rows == 6
    with pytest.raises(ValueError, match=r"has no config 'refer_train'; it has \['default', 'gg_train', 'ot_train'\]"):
        load_schema_dataset(str(out), "refer_train")


def test_subsets_keep_memory_flat_too(root):
    """Two subsets interleaved: each holds one row group at most, whatever the number of records."""
    import tracemalloc

    def peak(n: int) -> int:
        # padded so that both files span several of the reader's 1 MiB chunks: its buffers peak alike in both builds
        ann = _write(root / f"two-{n}.json", _two_subsets(n, padding=10_000))
        tracemalloc.start()
        try:
            build(BuildArguments(annotations=str(ann), image_root=str(root), output_dir=str(root / f"o{n}"),
                                 shard_rows=50))  # fmt: skip
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(5)  # warm up
    small, big = peak(150), peak(600)  # 300 vs 1,200 rows, 50-row groups in two subsets
    assert big < 1.3 * small, (small, big)


@pytest.mark.parametrize("escape", ["RELATIVE", "imgs/../OUTSIDE", "ABSOLUTE", "imgs/link.jpg"])
def test_image_path_outside_the_root_is_refused(root, tmp_path_factory, escape):
    """An image path that leads outside `--image-root` (`..`, absolute, a symlink out) is a bad record, never read:
    a real image lies there, so a builder without the check would read it and succeed."""
    import os

    secret = tmp_path_factory.mktemp("outside") / "secret.jpg"
    Image.new("RGB", (64, 48), (1, 2, 3)).save(secret)
    (root / "imgs" / "link.jpg").symlink_to(secret)
    relative = os.path.relpath(secret, root)  # ../outside0/secret.jpg
    paths = {"RELATIVE": relative, "imgs/../OUTSIDE": f"imgs/../{relative}", "ABSOLUTE": str(secret)}
    path = paths.get(escape, escape)
    evil = _record("evil", ["a.jpg", "b.jpg"], [("Find it.", f"It's in the second image. {_box((1, 2, 300, 400))}")])
    evil["images"][1] = path
    records = [GOOD[0], evil, GOOD[2]]
    result, out = _build(root, records)
    assert result["skipped"] == {"image path outside the image root": 1}
    assert load_schema_dataset(str(out), split="train")["id"] == ["gg-1:0", "gg-1:1", "rg-1:0"]
    assert "| image path outside the image root | 1 |" in (out / "README.md").read_text()
    for embed in (True, False):  # paths only (no bytes embedded) still read the header: refused too
        with pytest.raises(BadRecordError, match=r"record 'evil': image path outside the image root"):
            _build(root, records, strict=True, overwrite=True, embed_images=embed)
    assert not list(root.glob(".out.partial-*"))
