"""The procedural generator: reproducible rows, the target rule of every task, tight boxes, the builder's output."""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np
import pytest
from datasets import load_dataset
from PIL import Image

from trl_mig.datasets_builders import BUILDERS, get_builder
from trl_mig.datasets_builders.synthetic import (
    COLOURS,
    TASKS,
    BuildArguments,
    GeneratorConfig,
    build,
    generate_row,
    generate_rows,
    parse_tasks,
    render_scene,
    row_seed,
    sample_task,
)
from trl_mig.datasets_builders.synthetic.build import _generate
from trl_mig.datasets_builders.synthetic.text import matches
from trl_mig.parsing import parse_image_reference
from trl_mig.schema import BOX_TAG_RE, validate_row


PER_TASK = 12
_STATED_RE = re.compile(r"in the (\w+) image\.", re.IGNORECASE)


def _images_equal(a, b) -> bool:
    return a.size == b.size and a.mode == b.mode and a.tobytes() == b.tobytes()


def _rows_equal(a: dict, b: dict) -> bool:
    plain = {k: v for k, v in a.items() if k != "images"} == {k: v for k, v in b.items() if k != "images"}
    return plain and len(a["images"]) == len(b["images"]) and all(map(_images_equal, a["images"], b["images"]))


def _stated_image(question: str) -> int | None:
    """0-based image a question asks about ("... in the 3rd image." / "... in the second image.")."""
    found = _STATED_RE.findall(question)
    return parse_image_reference(f"{found[-1]} image") if found else None


@pytest.fixture(scope="module")
def samples() -> dict:
    return {task: [sample_task(task, (11, k)) for k in range(PER_TASK)] for task in TASKS}


# --- rows: schema, reproducibility ---------------------------------------------------------------------------------


def test_rows_follow_the_schema():
    rows = generate_rows("train", 24, seed=0)
    assert [r["id"] for r in rows] == [f"synthetic-train-{i:06d}" for i in range(24)]
    for row in rows:
        validate_row(row)
        assert row["source"] == "synthetic" and row["task"] in TASKS
        assert len(row["solution"]) == len(row["target_image"]) == 1
        assert row["image_sizes"] == [list(im.size) for im in row["images"]]
        assert all(im.mode == "RGB" for im in row["images"])
        assert "<|" not in row["question"] and row["reasoning"]


def test_same_seed_same_rows_and_rows_are_independent():
    first = generate_rows("train", 10, seed=5)
    assert all(map(_rows_equal, first, generate_rows("train", 10, seed=5)))
    # row i does not depend on how many rows are generated, nor on where generation starts (sharding)
    assert all(map(_rows_equal, first[6:], generate_rows("train", 4, seed=5, start=6)))
    assert _rows_equal(first[3], generate_rows("train", 4, seed=5)[3])
    # another seed, or another split, gives other rows
    other = generate_rows("train", 10, seed=6)
    assert not any(_images_equal(a["images"][0], b["images"][0]) for a, b in zip(first, other))
    test_split = generate_rows("test", 10, seed=5)
    assert not any(_images_equal(a["images"][0], b["images"][0]) for a, b in zip(first, test_split))
    # a single row from its seed, as the iterator draws it
    assert _rows_equal(generate_row(first[4]["task"], row_seed(5, "train", 4), row_id=first[4]["id"]), first[4])


def test_task_mix_and_weights():
    assert {r["task"] for r in generate_rows("train", 6, seed=0, tasks="diff")} == {"diff"}
    assert parse_tasks(["single=3", "group-grounding"]) == {"single": 3.0, "group_grounding": 1.0}
    assert parse_tasks({"diff": 2}) == {"diff": 2.0}
    counts = {t: 0 for t in TASKS}
    for row in generate_rows("train", 60, seed=2, tasks="single=5,multi_view=1"):
        counts[row["task"]] += 1
    assert counts["single"] > counts["multi_view"] > 0 and sum(counts.values()) == 60
    for bad in ("nope", "single=0", "single=x", ""):
        with pytest.raises(ValueError):
            parse_tasks(bad)


def test_configuration_is_validated_and_honoured():
    for bad in ({"max_images": 11}, {"min_images": 4, "max_images": 3}, {"image_min_side": 300}, {"max_objects": 1}):
        with pytest.raises(ValueError):
            GeneratorConfig(**bad)
    config = GeneratorConfig(image_min_side=160, image_max_side=200, max_aspect_ratio=1.1, max_images=3,
                             min_object_frac=0.15)  # fmt: skip
    for task in TASKS:
        sample = sample_task(task, 3, config)
        assert len(sample.images) <= 3
        for i, (scene, image) in enumerate(zip(sample.scenes, sample.images)):
            w, h = image.size
            if not (task == "refer_grounding" and i == 0):  # the exemplar is a smaller square
                assert 160 <= min(w, h) and max(w, h) <= 200 and max(w, h) <= 1.1 * min(w, h) + 1
            _, boxes = render_scene(scene)
            assert all(min(x2 - x1, y2 - y1) >= 0.15 * min(w, h) for x1, y1, x2, y2 in boxes), (task, i)


# --- the target rule of each task ----------------------------------------------------------------------------------


def test_single(samples):
    for s in samples["single"]:
        assert len(s.images) == 1 and s.target_image == 0
        objects, attributes = s.scenes[0].objects, s.info["attributes"]
        assert "shape" in attributes
        assert [k for k, o in enumerate(objects) if matches(o, objects[0], attributes)] == [0]


def test_common_object(samples):
    config = GeneratorConfig()
    for s in samples["common_object"]:
        n = len(s.images)
        assert config.min_images <= n <= config.max_images
        assert _stated_image(s.question) == s.target_image
        common = s.scenes[s.target_image].objects[s.target_object].identity
        for scene in s.scenes:
            assert [o.identity for o in scene.objects].count(common) == 1
        everywhere = set.intersection(*({o.identity for o in scene.objects} for scene in s.scenes))
        assert everywhere == {common}


def test_diff(samples):
    changes = set()
    for s in samples["diff"]:
        first, second = s.scenes
        assert s.target_image == 1 and _stated_image(s.question) == 1
        assert (first.width, first.height) == (second.width, second.height) and first.background == second.background
        change, k = s.info["change"], s.target_object
        changes.add(change)
        if change == "added":
            assert second.objects[:-1] == first.objects and k == len(first.objects)
        else:
            assert len(first.objects) == len(second.objects) and first.objects[k] != second.objects[k]
            assert all(a == b for i, (a, b) in enumerate(zip(first.objects, second.objects)) if i != k)
        # the images differ only where the object was and where it is
        a, b = (np.asarray(im) for im in s.images)
        ys, xs = np.nonzero((a != b).any(axis=-1))
        w, h = first.width, second.height
        regions = [s.boxes[1][k]] + ([s.boxes[0][k]] if change != "added" else [])
        inside = np.zeros(len(xs), bool)
        for x1, y1, x2, y2 in regions:
            inside |= (xs >= x1 * w - 1e-6) & (xs < x2 * w + 1e-6) & (ys >= y1 * h - 1e-6) & (ys < y2 * h + 1e-6)
        assert len(xs) and inside.all()
    assert len(changes) >= 2


def test_refer_grounding(samples):
    for s in samples["refer_grounding"]:
        assert len(s.images) == 2 and s.target_image == 1
        exemplar = s.scenes[0].objects
        assert len(exemplar) == 1
        identities = [o.identity for o in s.scenes[1].objects]
        assert identities.count(exemplar[0].identity) == 1 and identities[s.target_object] == exemplar[0].identity


def test_group_grounding(samples):
    config = GeneratorConfig()
    seen_targets = set()
    for s in samples["group_grounding"]:
        assert config.min_images <= len(s.images) <= config.max_images
        assert parse_image_reference(s.question) is None  # the question names no image
        target = s.scenes[s.target_image].objects[s.target_object]
        fits = [
            (i, k)
            for i, scene in enumerate(s.scenes)
            for k, obj in enumerate(scene.objects)
            if matches(obj, target, s.info["attributes"])
        ]
        assert fits == [(s.target_image, s.target_object)]
        seen_targets.add(s.target_image)
    assert len(seen_targets) > 1


def test_multi_view(samples):
    for s in samples["multi_view"]:
        assert 2 <= len(s.images) <= GeneratorConfig().max_images
        assert s.target_image >= 1 and _stated_image(s.question) == s.target_image
        assert s.reference == (0, 0)
        target = s.scenes[0].objects[0].identity
        assert [o.identity for o in s.scenes[0].objects].count(target) == 1
        in_target = [o.identity for o in s.scenes[s.target_image].objects]
        assert in_target.count(target) == 1 and in_target[s.target_object] == target
        # another object of image 0 is in the target image too: only the reference box tells which one is meant
        assert {o.identity for o in s.scenes[0].objects[1:]} & set(in_target)
        (tag,) = BOX_TAG_RE.finditer(s.question)
        coords = [float(v) for v in tag.group(2).split(",")]
        assert tag.group(1) == "0" and np.allclose(coords, s.boxes[0][0], atol=5e-4)
        assert 0 <= coords[0] < coords[2] <= 1 and 0 <= coords[1] < coords[3] <= 1


# --- boxes and text ------------------------------------------------------------------------------------------------


def test_solution_boxes_are_tight(samples):
    """The pixels the target changes (drawn vs not drawn) fill exactly its box; its colour is inside."""
    for task, task_samples in samples.items():
        for s in task_samples:
            scene, image = s.scenes[s.target_image], np.asarray(s.images[s.target_image])
            without = np.asarray(render_scene(scene, skip=s.target_object)[0])
            ys, xs = np.nonzero((image != without).any(axis=-1))
            w, h = scene.width, scene.height
            pixel_box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            x1, y1, x2, y2 = s.solution
            assert pixel_box == [round(x1 * w), round(y1 * h), round(x2 * w), round(y2 * h)], task
            colour = COLOURS[scene.objects[s.target_object].colour]
            crop = image[pixel_box[1] : pixel_box[3], pixel_box[0] : pixel_box[2]]
            assert (crop == colour).all(axis=-1).any(), task
            assert min(pixel_box[2] - pixel_box[0], pixel_box[3] - pixel_box[1]) >= 0.08 * min(w, h), task


def test_question_and_reasoning_text(samples):
    for task, task_samples in samples.items():
        for s in task_samples:
            assert "<box" not in s.question or task == "multi_view"
            tags = list(BOX_TAG_RE.finditer(s.reasoning))
            assert tags, task
            for tag in tags:
                assert 0 <= int(tag.group(1)) < len(s.images)
                assert len(tag.group(2).split(",")) == 4
            # the reasoning ends on the answer: the target box, in its image
            last = tags[-1]
            assert int(last.group(1)) == s.target_image
            assert np.allclose([float(v) for v in last.group(2).split(",")], s.solution, atol=5e-4)
            target = s.scenes[s.target_image].objects[s.target_object]
            assert f"image {s.target_image + 1}" in s.reasoning.lower() and target.shape in s.reasoning
            assert target.colour in s.reasoning


# --- the builder ---------------------------------------------------------------------------------------------------


def test_builder_is_registered_with_documented_arguments():
    module = get_builder("synthetic")
    assert module.build is build and module.BuildArguments is BuildArguments
    for f in dataclasses.fields(BuildArguments):
        assert f.metadata.get("help"), f.name
    with pytest.raises(ValueError):
        BuildArguments(tasks=["nope"])
    assert BuildArguments(tasks="single,diff=2").tasks == ["single,diff=2"]


def test_build_round_trip(tmp_path):
    out = tmp_path / "synthetic"
    result = build(BuildArguments(output_dir=str(out), num_train=9, num_test=5, seed=3))
    assert result["rows"] == {"train": 9, "test": 5} and sum(result["tasks"].values()) == 14
    card = (out / "README.md").read_text()
    assert "trl-mig synthetic multi-image grounding" in card and "generator_version" in card
    assert list((out / "data").glob("train-*.parquet")) and list((out / "data").glob("test-*.parquet"))
    loaded = load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"train", "test"}
    images = loaded["train"].features["images"]
    assert type(images).__name__ == "List" and type(images.feature).__name__ == "Image"
    for split, n in (("train", 9), ("test", 5)):
        expected = generate_rows(split, n, seed=3)
        for got, want in zip(loaded[split], expected):
            assert got["id"] == want["id"] and got["question"] == want["question"]
            assert got["reasoning"] == want["reasoning"] and got["target_image"] == want["target_image"]
            assert np.array_equal(np.float32(got["solution"]), np.float32(want["solution"]))
            assert all(
                np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b))
                for a, b in zip(got["images"], want["images"])
            )


def test_build_refuses_a_non_empty_directory(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        build(BuildArguments(output_dir=str(out), num_train=2, num_test=0))
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no staging folder left behind
    build(BuildArguments(output_dir=str(out), num_train=2, num_test=0, overwrite=True))
    assert not (out / "keep.txt").exists() and (out / "README.md").exists()


def test_parallel_generation_gives_the_same_rows():
    args = BuildArguments(num_train=8, num_test=0, seed=4)
    weights = parse_tasks(args.tasks)
    serial = list(_generate("train", 8, args, weights))
    parallel = list(_generate("train", 8, dataclasses.replace(args, num_workers=2), weights))
    assert parallel == serial  # same PNG bytes
    for row, want in zip(serial, generate_rows("train", 8, seed=4)):
        assert row["id"] == want["id"] and row["solution"] == want["solution"]
        decoded = [Image.open(io.BytesIO(image["bytes"])) for image in row["images"]]
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(decoded, want["images"]))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_cli_help_of_every_builder_renders(name):
    # argparse %-formats help strings: a stray "%" in a field's help breaks `--help`
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "trl_mig.cli", "build", name, "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "--output_dir" in out.stdout


def _build_peak(out, n: int) -> tuple[int, dict]:
    """Peak traced memory of one small-image build of `n` train rows, and its result."""
    import tracemalloc

    tracemalloc.start()
    try:
        args = BuildArguments(output_dir=str(out), num_train=n, num_test=0, tasks=["single"], image_min_side=64,
                              image_max_side=96, shard_rows=10, overwrite=True)  # fmt: skip
        result = build(args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result


def test_build_memory_stays_flat(tmp_path):
    """4x the rows, about the same peak: rows stream to parquet (one 10-row group held), nothing accumulates."""
    _build_peak(tmp_path / "warm", 3)  # imports, caches and PIL plugins are not the build's memory
    small, _ = _build_peak(tmp_path / "small", 40)
    big, result = _build_peak(tmp_path / "big", 160)
    assert result["rows"] == {"train": 160}
    written = sum(p.stat().st_size for p in (tmp_path / "big" / "data").glob("*.parquet"))
    # measured: ~1.4 MB for both (the generator's small caches grow a little); holding the 160 rows costs far more
    # than the PNG bytes of the 120 extra rows (decoded images, Arrow copies), which alone are ~3/4 of `written`
    assert big < 1.3 * small, (small, big)
    assert big - small < written / 4, (small, big, written)
    assert len(list((tmp_path / "big" / "data").glob("train-*-of-00016.parquet"))) == 16


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    import importlib

    build_module = importlib.import_module("trl_mig.datasets_builders.synthetic.build")  # package re-exports `build`
    calls = []

    def fail_on_the_25th(row):
        calls.append(row["id"])
        if len(calls) == 25:
            raise RuntimeError("disk full")

    monkeypatch.setattr(build_module, "validate_row", fail_on_the_25th)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk full"):
        build(BuildArguments(output_dir=str(out), num_train=30, num_test=0, tasks=["single"], shard_rows=10))
    assert len(calls) == 25 and list(tmp_path.iterdir()) == []  # two shards were written, then all removed


def test_build_card_counts_and_decontamination_while_streaming(tmp_path):
    out = tmp_path / "full"
    result = build(BuildArguments(output_dir=str(out), num_train=12, num_test=4, seed=1, shard_rows=5))
    rows = [r for split in ("train", "test") for r in generate_rows(split, {"train": 12, "test": 4}[split], seed=1)]
    tasks = {t: sum(r["task"] == t for r in rows) for t in {r["task"] for r in rows}}
    assert result["tasks"] == tasks and result["rows"] == {"train": 12, "test": 4}
    card = (out / "README.md").read_text()
    assert all(f"| {task} | {n} |" in card for task, n in tasks.items())
    n_images = [len(r["images"]) for r in rows]
    stat = f"{min(n_images)} / {sum(n_images) / len(n_images):.2f} / {max(n_images)}"
    assert f"| images per row (min / mean / max) | {stat} |" in card
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        *(f"train-0000{i}-of-00003.parquet" for i in range(3)),
    ]
    # a benchmark made of the same seed's rows: streaming drops what filtering the whole list drops; the card counts it
    from trl_mig.datasets_builders.decontaminate import BenchmarkIndex

    bench = tmp_path / "bench"
    build(BuildArguments(output_dir=str(bench), num_train=1, num_test=4, seed=1))
    again = build(BuildArguments(output_dir=str(tmp_path / "clean"), num_train=12, num_test=4, seed=1,
                                 decontaminate_against=[str(bench)]))  # fmt: skip
    kept, dropped = BenchmarkIndex.from_dirs([str(bench)]).filter(rows)
    assert again["rows"] == {"train": sum(r["id"].startswith("synthetic-train") for r in kept), "test": 0}
    assert again["decontaminated"] == dict(dropped) and dropped["bench"] >= 5
    assert "decontamination: an image is in benchmark set `bench`" in (tmp_path / "clean" / "README.md").read_text()
    from trl_mig.datasets_builders.reader import load_schema_dataset

    # (the emptied test split is written, but datasets 5.2 refuses to load a split with no rows, as before streaming)
    assert load_schema_dataset(str(tmp_path / "clean"), split="train")["id"] == [r["id"] for r in kept]
