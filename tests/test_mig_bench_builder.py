"""`trl-mig build mig_bench` on the real annotation file, with generated placeholder images at the paths it names."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from datasets import load_dataset
from PIL import Image

from trl_mig.datasets_builders.mig_bench import BuildArguments, build, default_annotations
from trl_mig.schema import BOX_TAG_RE


REPAIRED = [7, 34, 105, 126, 163, 512, 703]


def _placeholder_size(relative: str) -> tuple[int, int]:
    """A distinct, deterministic size per path, so `image_sizes` can be checked against the file."""
    return 20 + len(relative) % 17, 16 + sum(map(ord, relative)) % 23


@pytest.fixture(scope="module")
def records():
    return json.loads(default_annotations().read_text())


@pytest.fixture(scope="module")
def image_root(tmp_path_factory, records) -> Path:
    root = tmp_path_factory.mktemp("mig_images")
    for relative in {p for rec in records for p in rec["images"]}:
        path = root / relative.removeprefix("./")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", _placeholder_size(relative), (len(relative) % 255, 90, 160)).save(path, format="PNG")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory, image_root):
    out = tmp_path_factory.mktemp("mig_out") / "mig_bench"
    result = build(BuildArguments(image_root=str(image_root), output_dir=str(out)))
    return out, result


def test_full_file_converts(built, records):
    out, result = built
    assert result["rows"] == {"train": 4295}
    assert result["repaired"] == REPAIRED
    assert (out / "README.md").exists() and list((out / "data").glob("train-*.parquet"))


def test_load_dataset_round_trip_and_rules(built, records, tmp_path):
    out, _ = built
    ds = load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 4295
    assert type(ds.features["images"]).__name__ == "List" and type(ds.features["images"].feature).__name__ == "Image"
    meta = ds.remove_columns("images")
    assert len(set(meta["task"])) == 10
    targets = Counter((task, t[0]) for task, t in zip(meta["task"], meta["target_image"]))
    assert {t for (task, t) in targets if task == "region"} == {0}
    assert {t for (task, t) in targets if task in ("correspondence", "view_diff", "refer_grounding", "reasoning")} == {
        1
    }
    assert {t for (task, t) in targets if task == "diff"} == {-1}
    assert (
        targets["object_tracking", 0] == 0
        and sum(n for (task, _), n in targets.items() if task == "group_grounding") == 499
    )
    for i in (0, 1461, 1960, 3644, 4294):  # one row per kind of record: ids are positions in the official file
        assert meta[i]["id"] == str(i)
        assert meta[i]["image_sizes"] == [list(_placeholder_size(p)) for p in records[i]["images"]]
    for i in REPAIRED:
        x1, y1, x2, y2 = meta[i]["solution"][0]
        assert 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1
    assert not any("<|" in q for q in meta["question"])  # Qwen markup gone
    with_ref = [q for q in meta["question"] if BOX_TAG_RE.search(q)]
    assert len(with_ref) == 838 and all('<box image="0">' in q for q in with_ref)
    first = ds[0]["images"]
    assert [im.size for im in first] == [_placeholder_size(p) for p in records[0]["images"]]


def test_card_counts_repairs_and_markup(built):
    card = (built[0] / "README.md").read_text()
    assert "7, 34, 105, 126, 163, 512, 703" in card
    assert "| Qwen markup tokens stripped from questions | 998 |" in card
    assert "license: mit" in card


def test_strict_missing_image_names_record_and_path_and_writes_nothing(tmp_path, records):
    root = tmp_path / "imgs"
    for relative in records[0]["images"][:-1]:  # record 0's last image is missing
        path = root / relative.removeprefix("./")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(path)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"record 0: missing image .*images2\.jpg"):
        build(BuildArguments(image_root=str(root), output_dir=str(out), limit=3))
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def test_non_strict_skips_and_counts(tmp_path, records, image_root):
    annotations = tmp_path / "ann.json"
    sample = records[:5]
    sample[1] = {**sample[1], "images": [*sample[1]["images"][:-1], "./MIG-Bench/images/nowhere.jpg"]}
    annotations.write_text(json.dumps(sample))
    result = build(BuildArguments(image_root=str(image_root), output_dir=str(tmp_path / "o"), annotations=str(annotations),
                                  strict=False))  # fmt: skip
    assert result["rows"] == {"train": 4} and result["skipped"] == {"missing image": 1}
    assert "| missing image | 1 |" in (tmp_path / "o" / "README.md").read_text()


def test_cli_build_with_both_spellings(tmp_path, image_root):
    for name in ("mig-bench", "mig_bench"):
        out = tmp_path / name
        proc = subprocess.run(
            [sys.executable, "-m", "trl_mig.cli", "build", name, "--image-root", str(image_root), "--output-dir",
             str(out), "--limit", "12"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "rows: {'train': 12}" in proc.stdout
        assert list((out / "data").glob("train-*.parquet"))


def _noise_png(path: Path, seed: int, side: int = 40) -> None:
    """An incompressible PNG of a few KB (`side`² x 3 bytes of noise), so embedded bytes show in memory peaks."""
    import random

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(side * side * 3)).save(path, format="PNG")


def _region_records(n: int, images: list[str]) -> list[dict]:
    """`n` MIG-Bench `region` records (target: image 0) over the two-image pairs of `images`, in turn."""
    return [
        {"task": "region", "images": [images[i % len(images)], images[(i + 1) % len(images)]],
         "question": f"Find object {i}.", "answer": [0.1, 0.2, 0.5, 0.6]}
        for i in range(n)
    ]  # fmt: skip


def _build_peak(tmp_path: Path, root: Path, images: list[str], n: int) -> tuple[int, dict, int]:
    import tracemalloc

    annotations = tmp_path / f"ann-{n}.json"
    annotations.write_text(json.dumps(_region_records(n, images)))
    out = tmp_path / f"out-{n}"
    tracemalloc.start()
    try:
        result = build(BuildArguments(image_root=str(root), output_dir=str(out), annotations=str(annotations)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result, sum(p.stat().st_size for p in (out / "data").glob("*.parquet"))


def test_build_memory_stays_flat(tmp_path):
    """4x the records, about the same peak: rows stream to parquet (one 100-row group held), nothing accumulates."""
    root = tmp_path / "imgs"
    images = [f"./MIG-Bench/images/noise{i}.png" for i in range(6)]
    for i, relative in enumerate(images):
        _noise_png(root / relative.removeprefix("./"), i)  # ~5 KB each, read (a new bytes object) per row
    _build_peak(tmp_path, root, images, 3)  # warm up: imports, PIL plugins, Arrow pools are not the build's memory
    small, _, _ = _build_peak(tmp_path, root, images, 150)
    big, result, written = _build_peak(tmp_path, root, images, 600)
    assert result["rows"] == {"train": 600}
    # measured: 4.6 MB and 4.9 MB (written: 6 MB); the list-holding build it replaced peaked at 6.7 MB and 26 MB
    assert big < 1.3 * small, (small, big)
    assert big - small < written / 4, (small, big, written)


@pytest.fixture
def escape_root(tmp_path) -> Path:
    """`tmp_path/root` with two good images and a symlink to `tmp_path/secret.png`, a real image outside the root
    (so a builder without the check would read it and succeed)."""
    root = tmp_path / "root"
    for name in ("a.png", "b.png"):
        _noise_png(root / "MIG-Bench" / "images" / name, len(name), side=12)
    _noise_png(tmp_path / "secret.png", 99, side=12)
    (root / "MIG-Bench" / "images" / "link.png").symlink_to(tmp_path / "secret.png")
    return root


ESCAPES = ["../secret.png", "./MIG-Bench/../../secret.png", "MIG-Bench/images/../../../secret.png",
           "ABSOLUTE", "./MIG-Bench/images/link.png"]  # fmt: skip


def _escape_path(tmp_path: Path, escape: str) -> str:
    return str(tmp_path / "secret.png") if escape == "ABSOLUTE" else escape


@pytest.mark.parametrize("escape", ESCAPES)
def test_image_path_outside_the_root_is_refused(tmp_path, escape_root, escape):
    good = ["./MIG-Bench/images/a.png", "./MIG-Bench/images/b.png"]
    records = _region_records(3, good)
    records[1]["images"] = [good[0], _escape_path(tmp_path, escape)]
    annotations = tmp_path / "ann.json"
    annotations.write_text(json.dumps(records))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"MIG-Bench record 1: image path outside the image root .*secret\.png|"
                                         r"MIG-Bench record 1: image path outside the image root .*link\.png"):  # fmt: skip
        build(BuildArguments(image_root=str(escape_root), output_dir=str(out), annotations=str(annotations)))
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))
    result = build(BuildArguments(image_root=str(escape_root), output_dir=str(out), annotations=str(annotations),
                                  strict=False))  # fmt: skip
    assert result["rows"] == {"train": 2} and result["skipped"] == {"image path outside the image root": 1}
    assert "| image path outside the image root | 1 |" in (out / "README.md").read_text()
    ds = load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.remove_columns("images")["id"] == ["0", "2"]


def test_resolve_under(tmp_path, escape_root):
    from trl_mig.datasets_builders.paths import resolve_under
    from trl_mig.datasets_builders.writer import BadRecordError

    images = escape_root / "MIG-Bench" / "images"
    (images / "inner.png").symlink_to(images / "a.png")  # a link that stays inside the root is fine
    assert resolve_under(escape_root, "./MIG-Bench/images/inner.png", "r") == (images / "a.png").resolve()
    assert resolve_under(escape_root, "MIG-Bench/x/../images/b.png", "r") == (images / "b.png").resolve()
    assert resolve_under(escape_root, str(images / "b.png"), "r") == (images / "b.png").resolve()  # absolute, inside
    assert resolve_under(escape_root, "MIG-Bench/images/missing.png", "r").name == "missing.png"  # caller's error
    linked_root = tmp_path / "linked-root"  # the root itself may be a symlink
    linked_root.symlink_to(escape_root)
    assert resolve_under(linked_root, "MIG-Bench/images/a.png", "r") == (images / "a.png").resolve()
    for escape in ESCAPES:
        with pytest.raises(BadRecordError, match=r"^record 7: image path outside the image root") as info:
            resolve_under(escape_root, _escape_path(tmp_path, escape), "record 7")
        assert info.value.reason == "image path outside the image root"
    for bad in ("", "a\x00b.png", None, 3):
        with pytest.raises(BadRecordError, match=r"record 7: invalid image path"):
            resolve_under(escape_root, bad, "record 7")
