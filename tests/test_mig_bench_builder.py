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
