"""Decontamination: exact pixel hashes catch re-encoded copies, the difference hash catches resized / recompressed
ones, unrelated images pass, and `trl-mig build synthetic --decontaminate-against DIR` drops and counts overlaps."""

from __future__ import annotations

import io

from PIL import Image

from trl_mig.datasets_builders import synthetic
from trl_mig.datasets_builders.decontaminate import BenchmarkIndex, content_hash, dhash
from trl_mig.datasets_builders.reader import load_schema_dataset
from trl_mig.datasets_builders.synthetic import generate_rows
from trl_mig.datasets_builders.writer import write_dataset
from trl_mig.schema import features


def recompressed(image: Image.Image, scale: float = 0.8) -> Image.Image:
    buffer = io.BytesIO()
    small = image.convert("RGB").resize((int(image.width * scale), int(image.height * scale)))
    small.save(buffer, format="JPEG", quality=70)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_hashes_catch_copies_and_pass_other_images():
    a, b = (row["images"][0] for row in generate_rows("train", 2, seed=4, tasks={"single": 1}))
    png = io.BytesIO()
    a.save(png, format="PNG")
    assert content_hash(Image.open(io.BytesIO(png.getvalue()))) == content_hash(a)  # same pixels, other file
    index = BenchmarkIndex()
    index.add([a], "bench")
    assert index.match({"bytes": png.getvalue(), "path": None}) == "bench"
    assert content_hash(recompressed(a)) != content_hash(a) and index.match(recompressed(a)) == "bench"
    assert index.match(b) is None
    assert bin(dhash(a) ^ dhash(b)).count("1") > 10
    assert BenchmarkIndex(max_distance=0, exact=index.exact).match(recompressed(a)) is None  # exact only


def test_build_drops_and_counts_benchmark_images(tmp_path):
    # a "benchmark" holding recompressed copies of the first two training rows' images
    rows = generate_rows("train", 2, seed=0)
    for row in rows:
        row["images"] = [recompressed(image, 0.9) for image in row["images"]]
        row["image_sizes"] = [list(image.size) for image in row["images"]]
    bench = tmp_path / "mig_bench_copy"
    write_dataset({"test": rows}, bench, features(reasoning=True), "---\nlicense: mit\n---\n# bench\n")

    out = tmp_path / "train"
    result = synthetic.build(synthetic.BuildArguments(
        output_dir=str(out), num_train=6, num_test=0, seed=0, decontaminate_against=[str(bench)],
    ))  # fmt: skip
    assert result["decontaminated"] == {"mig_bench_copy": 2} and result["rows"] == {"train": 4}
    kept = load_schema_dataset(str(out), split="train")["id"]
    assert kept == [f"synthetic-train-{i:06d}" for i in range(2, 6)]
    assert "decontamination: an image is in benchmark set `mig_bench_copy` | 2" in (out / "README.md").read_text()
