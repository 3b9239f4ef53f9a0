"""`trl-mig build mc_bench` on a small file in the documented MC-Bench v0.2 format, with real PIL images in tmp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from trl_mig.datasets_builders.mc_bench import BuildArguments, build, load_coco_ids
from trl_mig.datasets_builders.reader import load_schema_dataset
from trl_mig.geometry import from_canonical, to_canonical


def write_mc_bench(root: Path, samples: list[dict]) -> Path:
    """Write images + `annotations.json` exactly as FORMATS.md documents MC-Bench v0.2.

    Each sample: `text`, `style`, `sizes` (two (w, h), in `inter_img_id` order), `boxes` (two lists of COCO pixel
    `[x, y, w, h]`), optional `id`, `swap_ids` (list `images_id` in reverse), `images_id` (override), `skip_file`
    (inter_img_id of an image not written). Image ids are offset (not positions) to catch index/id mix-ups.
    """
    data: dict = {
        "info": {"year": 2024, "version": "0.2", "description": "MC-Bench Dataset"},
        "descriptions": [],
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "group 1"}],
    }
    for k, sample in enumerate(samples):
        did = sample.get("id", k)
        ids = []
        for inter, (width, height) in enumerate(sample["sizes"]):
            image_id = 100 + 2 * k + inter
            file_name = f"D{k % 3}/{did:03d}_{inter}.jpg"
            if sample.get("skip_file") != inter:
                path = root / file_name
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (width, height), (40 * k % 255, 90, 30 * inter)).save(path, format="JPEG")
            data["images"].append(
                {"id": image_id, "text_id": did, "inter_img_id": inter, "file_name": file_name, "height": height,
                 "width": width}
            )  # fmt: skip
            ids.append(image_id)
            for bbox in sample["boxes"][inter]:
                data["annotations"].append(
                    {"id": len(data["annotations"]), "image_id": image_id, "text_id": did, "category_id": 1,
                     "area": bbox[2] * bbox[3], "bbox": list(bbox), "iscrowd": 0}
                )  # fmt: skip
        data["descriptions"].append(
            {"id": did, "images_id": sample.get("images_id", ids[::-1] if sample.get("swap_ids") else ids),
             "text": sample["text"], "positive_sample": any(sample["boxes"]), "text_style": sample["style"]}
        )  # fmt: skip
    path = root / "mc_bench.json"
    path.write_text(json.dumps(data))
    return path


# canonical boxes with exact pixel coordinates in a 200x100 (image 0) and a 160x120 (image 1) image
GOLD_0 = [[0.1, 0.1, 0.3, 0.4], [0.5, 0.2, 0.9, 0.9]]
GOLD_1 = [[0.25, 0.5, 0.75, 1.0]]
SIZES = [(200, 100), (160, 120)]


def _coco(box, size):
    return [int(v) for v in from_canonical(box, "coco_xywh", size, integer=False)]


BOTH = {
    "text": "The players holding a club",
    "style": "Comparison",
    "sizes": SIZES,
    "boxes": [[_coco(b, SIZES[0]) for b in GOLD_0], [_coco(b, SIZES[1]) for b in GOLD_1]],
    "swap_ids": True,  # `images_id` lists image 1 first: rows follow `inter_img_id`
}
NEGATIVE = {"text": "The dog wearing a hat", "style": "Reasoning", "sizes": [(64, 48), (48, 64)], "boxes": [[], []]}
REPAIRED = {  # one box runs past the right edge, one has a negative width: both repaired once
    "text": "The red car",
    "style": "Referring",
    "sizes": [(100, 80), (90, 90)],
    "boxes": [[], [[70, 10, 40, 20], [50, 10, -20, 30]]],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("mc_images")
    annotations = write_mc_bench(root, [BOTH, NEGATIVE, REPAIRED])
    out = tmp_path_factory.mktemp("mc_out") / "mc_bench"
    result = build(BuildArguments(annotations=str(annotations), image_root=str(root), output_dir=str(out)))
    return out, result


@pytest.mark.parametrize("size", [(200, 100), (640, 427), (33, 1001)])
@pytest.mark.parametrize("box", [[0.1, 0.1, 0.3, 0.4], [0.0, 0.0, 1.0, 1.0], [0.123, 0.456, 0.789, 0.9]])
def test_coco_xywh_round_trip(box, size):
    coco = from_canonical(box, "coco_xywh", size)
    assert to_canonical(coco, "coco_xywh", size) == pytest.approx(box, abs=1e-9)


def test_build_writes_rows_card_and_sidecar(built):
    out, result = built
    assert result["rows"] == {"test": 3} and result["repaired"] == ["2"] and result["skipped"] == {}
    assert (out / "README.md").exists() and list((out / "data").glob("test-*.parquet"))
    assert Path(result["coco_ids"]) == out / "coco_ids.json"


def test_pair_with_targets_in_both_images(built):
    out, _ = built
    ds = load_schema_dataset(str(out), split="test")
    row = ds[0]
    assert row["id"] == "0" and row["task"] == "comparison" and row["source"] == "mc_bench"
    assert row["question"] == "The players holding a club"
    assert row["image_sizes"] == [list(s) for s in SIZES]  # inter_img_id order, not images_id order
    assert [im.size for im in row["images"]] == SIZES
    assert row["target_image"] == [0, 0, 1]
    for got, want in zip(row["solution"], GOLD_0 + GOLD_1):
        assert got == pytest.approx(want, abs=1e-6)  # float32 storage


def test_negative_has_empty_solution(built):
    ds = load_schema_dataset(str(built[0]), split="test").remove_columns("images")
    row = ds[1]
    assert row["id"] == "1" and row["task"] == "reasoning"
    assert row["solution"] == [] and row["target_image"] == []


def test_repaired_boxes_and_card(built):
    out, _ = built
    row = load_schema_dataset(str(out), split="test").remove_columns("images")[2]
    assert row["target_image"] == [1, 1]
    assert row["solution"][0] == pytest.approx([70 / 90, 10 / 90, 1.0, 30 / 90], abs=1e-6)  # clipped at the edge
    assert row["solution"][1] == pytest.approx([30 / 90, 10 / 90, 50 / 90, 40 / 90], abs=1e-6)  # width -20: sorted
    card = (out / "README.md").read_text()
    assert "license: other" in card and "coco_ids_file: coco_ids.json" in card
    assert "| negative rows (no target, solution []) | 1 |" in card
    assert "| rows with targets in both images | 1 |" in card
    assert "| gold boxes repaired | 2 |" in card
    for n, rows in ((0, 1), (2, 1), (3, 1)):
        assert f"| rows with {n} gold boxes | {rows} |" in card
    assert "| comparison | 1 |" in card and "| referring | 1 |" in card


def test_coco_ids_sidecar(built):
    ids = load_coco_ids(built[0])
    assert ids["0"] == {"image_ids": [100, 101], "category_ids": [1], "annotation_ids": [0, 1, 2], "category_id": 1}
    assert ids["1"]["image_ids"] == [102, 103] and ids["1"]["category_id"] == 1 and ids["1"]["annotation_ids"] == []
    # a prediction in image i goes to image_ids[i], box back in COCO pixels of that image
    row = load_schema_dataset(str(built[0]), split="test").remove_columns("images")[0]
    box, target = row["solution"][2], row["target_image"][2]
    assert ids["0"]["image_ids"][target] == 101
    assert list(from_canonical(box, "coco_xywh", row["image_sizes"][target], integer=True)) == BOTH["boxes"][1][0]


def test_strict_missing_image_names_id_and_path_and_writes_nothing(tmp_path):
    annotations = write_mc_bench(tmp_path, [BOTH, {**NEGATIVE, "id": 7, "skip_file": 1}])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"description 7: missing image .*D1/007_1\.jpg"):
        build(BuildArguments(annotations=str(annotations), image_root=str(tmp_path), output_dir=str(out)))
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({**NEGATIVE, "style": "Counting"}, r"description 1: unknown text_style 'Counting'"),
        ({**NEGATIVE, "images_id": [102]}, r"description 1: image count != 2"),
        ({**NEGATIVE, "images_id": [102, 999]}, r"description 1: unknown image id \[999\]"),
        ({**REPAIRED, "boxes": [[], [[95, 95, 10, 10]]]}, r"description 1: box outside the image \(annotation 3"),
    ],
)
def test_strict_bad_records(tmp_path, sample, message):
    annotations = write_mc_bench(tmp_path, [BOTH, sample])
    with pytest.raises(ValueError, match=message):
        build(BuildArguments(annotations=str(annotations), image_root=str(tmp_path), output_dir=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_strict_orphan_annotation_and_size_mismatch(tmp_path):
    annotations = write_mc_bench(tmp_path, [BOTH])
    data = json.loads(annotations.read_text())
    orphan = {**data["annotations"][0], "id": 50, "text_id": 42}
    annotations.write_text(json.dumps({**data, "annotations": [*data["annotations"], orphan]}))
    with pytest.raises(ValueError, match=r"annotation 50: annotation for a missing description 42"):
        build(BuildArguments(annotations=str(annotations), image_root=str(tmp_path), output_dir=str(tmp_path / "o")))
    data["images"][0]["width"] = 201
    annotations.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"description 0: image size mismatch .*D0/000_0\.jpg"):
        build(BuildArguments(annotations=str(annotations), image_root=str(tmp_path), output_dir=str(tmp_path / "o")))


def test_non_strict_skips_and_counts_in_card(tmp_path):
    samples = [
        BOTH,
        {**NEGATIVE, "skip_file": 0},
        {**REPAIRED, "style": "Counting"},
        {**NEGATIVE, "skip_file": 1},
        NEGATIVE,
    ]
    annotations = write_mc_bench(tmp_path, samples)
    data = json.loads(annotations.read_text())
    data["annotations"].append({**data["annotations"][0], "id": 99, "text_id": 1234})
    annotations.write_text(json.dumps(data))
    out = tmp_path / "o"
    result = build(
        BuildArguments(annotations=str(annotations), image_root=str(tmp_path), output_dir=str(out), strict=False)
    )
    assert result["rows"] == {"test": 2}
    assert result["skipped"] == {
        "missing image": 2,
        "unknown text_style": 1,
        "annotation for a missing description": 1,
    }
    card = (out / "README.md").read_text()
    assert "| missing image | 2 |" in card and "| unknown text_style | 1 |" in card
    assert "strict: false" in card
    ds = load_schema_dataset(str(out), split="test")
    assert ds["id"] == ["0", "4"] and sorted(load_coco_ids(out)) == ["0", "4"]


def test_limit_and_repo_id(tmp_path):
    annotations = write_mc_bench(tmp_path, [BOTH, NEGATIVE, REPAIRED])
    out = tmp_path / "o"
    args = BuildArguments(annotations=str(annotations), image_root=str(tmp_path), output_dir=str(out), limit=2,
                          repo_id="org/mc-bench")  # fmt: skip
    assert build(args)["rows"] == {"test": 2}
    assert 'load_dataset("org/mc-bench", split="test")' in (out / "README.md").read_text()


def _noise(path: Path, size: tuple[int, int], seed: int) -> None:
    """An incompressible PNG (noise), a few KB for a small size, so embedded bytes show in memory peaks."""
    import random

    path.parent.mkdir(parents=True, exist_ok=True)
    data = random.Random(seed).randbytes(size[0] * size[1] * 3)
    Image.frombytes("RGB", size, data).save(path, format="PNG")


def _pairs_file(root: Path, n: int, files: list[str], size: tuple[int, int]) -> Path:
    """`n` positive descriptions (one box in image 1), each over two of `files` in turn (image ids distinct)."""
    data: dict = {"descriptions": [], "images": [], "annotations": [], "categories": [{"id": 1, "name": "group 1"}]}
    for k in range(n):
        ids = [2 * k, 2 * k + 1]
        for inter, image_id in enumerate(ids):
            data["images"].append({"id": image_id, "text_id": k, "inter_img_id": inter, "width": size[0],
                                   "height": size[1], "file_name": files[(k + inter) % len(files)]})  # fmt: skip
        data["annotations"].append(
            {"id": k, "image_id": ids[1], "text_id": k, "category_id": 1, "bbox": [2, 3, 10, 12], "iscrowd": 0}
        )
        data["descriptions"].append(
            {"id": k, "images_id": ids, "text": f"object {k}", "positive_sample": True, "text_style": "Referring"}
        )
    path = root / f"pairs-{n}.json"
    path.write_text(json.dumps(data))
    return path


def _build_peak(root: Path, files: list[str], n: int) -> tuple[int, dict, int]:
    import tracemalloc

    annotations = _pairs_file(root, n, files, (56, 56))
    out = root / f"out-{n}"
    tracemalloc.start()
    try:
        result = build(BuildArguments(annotations=str(annotations), image_root=str(root), output_dir=str(out)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result, sum(p.stat().st_size for p in (out / "data").glob("*.parquet"))


def test_build_memory_stays_flat(tmp_path):
    """4x the descriptions, about the same peak: rows stream to parquet (one 100-row group held), COCO ids to the
    sidecar file; nothing accumulates."""
    files = [f"D{i % 2}/noise_{i}.png" for i in range(6)]
    for i, name in enumerate(files):
        _noise(tmp_path / name, (56, 56), i)  # ~9.5 KB each, read (a new bytes object) per row
    _build_peak(tmp_path, files, 3)  # warm up: imports, PIL plugins, Arrow pools are not the build's memory
    small, _, _ = _build_peak(tmp_path, files, 150)
    big, result, written = _build_peak(tmp_path, files, 600)
    assert result["rows"] == {"test": 600}
    assert len(load_coco_ids(tmp_path / "out-600")) == 600
    # measured: 2.5 MB and 3.3 MB (written: 11.5 MB; what grows is the annotation JSON, held whole, about 2 KB per
    # description); the list-holding build it replaced peaked at 12.6 MB and 50 MB, growing with everything written
    assert big - small < written / 8, (small, big, written)
    assert big < written / 2, (big, written)


def test_coco_ids_sidecar_is_what_json_dumps_writes(built, tmp_path):
    """The streamed sidecar is byte for byte the file the list-holding builder wrote (`json.dumps(..., indent=1)`)."""
    out, _ = built
    text = (out / "coco_ids.json").read_text()
    assert text == json.dumps(json.loads(text), indent=1)
    annotations = write_mc_bench(tmp_path, [{**NEGATIVE, "style": "Counting"}])  # no row at all: `"rows": {}`
    build(BuildArguments(annotations=str(annotations), image_root=str(tmp_path), output_dir=str(tmp_path / "o"),
                         strict=False))  # fmt: skip
    text = (tmp_path / "o" / "coco_ids.json").read_text()
    assert text == json.dumps({"format": "mc-bench-coco-ids-v1", "split": "test", "rows": {}}, indent=1)
    assert [p.name for p in (tmp_path / "o").iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("escape", ["../secret.png", "D0/../../secret.png", "ABSOLUTE", "D0/link.png"])
def test_image_path_outside_the_root_is_refused(tmp_path, escape):
    """A `file_name` that leads outside `--image-root` (a real image of the declared size lies there, so a builder
    without the check would read it and succeed) is a bad record."""
    root = tmp_path / "root"
    annotations = write_mc_bench(root, [BOTH, NEGATIVE, REPAIRED])
    _noise(tmp_path / "secret.png", NEGATIVE["sizes"][1], 9)
    (root / "D0").mkdir(exist_ok=True)
    (root / "D0" / "link.png").symlink_to(tmp_path / "secret.png")
    data = json.loads(annotations.read_text())
    entry = next(e for e in data["images"] if e["text_id"] == 1 and e["inter_img_id"] == 1)
    entry["file_name"] = str(tmp_path / "secret.png") if escape == "ABSOLUTE" else escape
    annotations.write_text(json.dumps(data))
    out = tmp_path / "out"
    args = dict(annotations=str(annotations), image_root=str(root), output_dir=str(out))
    with pytest.raises(ValueError, match=r"MC-Bench description 1: image path outside the image root"):
        build(BuildArguments(**args))
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))
    result = build(BuildArguments(**args, strict=False))
    assert result["rows"] == {"test": 2} and result["skipped"] == {"image path outside the image root": 1}
    assert "| image path outside the image root | 1 |" in (out / "README.md").read_text()
    assert sorted(load_coco_ids(out)) == ["0", "2"]
    assert load_schema_dataset(str(out), split="test").remove_columns("images")["id"] == ["0", "2"]
