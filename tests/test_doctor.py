"""`trl-mig doctor`: a clean set passes; each planted mistake (pixel limits, boxes, placeholders, budget) is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from datasets import Dataset, Features, List, Value
from PIL import Image

from trl_mig.datasets_builders.reader import load_schema_dataset
from trl_mig.datasets_builders.synthetic import BuildArguments, build
from trl_mig.doctor import (
    DoctorArguments,
    Finding,
    check_gold,
    count_prompt_tokens,
    round_trip,
    run_doctor,
    stated_sizes,
)
from trl_mig.doctor import _round_trip_findings as round_trip_findings
from trl_mig.geometry import Frame
from trl_mig.schema import features
from trl_mig.templates import render_prompt
from trl_mig.testing import TINY_MAX_PIXELS, tiny_checkpoint


NUM_ROWS = 6


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(tiny_checkpoint(root=tmp_path_factory.mktemp("doctor-model")))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("doctor-data") / "synthetic"
    build(BuildArguments(output_dir=str(out), num_train=NUM_ROWS, num_test=0, seed=5))
    return str(out)


def _errors(report, check: str) -> list[Finding]:
    return [f for f in report.errors if f.check == check]


def test_clean_set_has_no_errors_and_draws_the_rows(model, data, tmp_path):
    report = run_doctor(DoctorArguments(model=model, data=data, rows=3, output_dir=str(tmp_path)))
    assert report.errors == []
    assert report.checked_rows == NUM_ROWS and report.drawn_rows == 3 and report.frame == "qwen2_5_vl"
    pngs = sorted(tmp_path.glob("*.png"))
    assert [str(p) for p in pngs] == report.images and len(pngs) == 3
    with Image.open(pngs[0]) as image:
        assert image.format == "PNG" and image.height > 100
    saved = json.loads((tmp_path / "doctor.json").read_text())
    assert saved["counts"]["error"] == 0 and saved["checked_rows"] == NUM_ROWS
    assert saved["used"]["pixel_limits"]["max_pixels"] == TINY_MAX_PIXELS
    assert saved["limits_seen"][0]["source"].startswith("processor saved in")


def test_default_output_dir_is_inside_the_data_folder(model, data):
    report = run_doctor(DoctorArguments(model=model, data=data, rows=1, check_rows=2))
    assert Path(report.output_dir) == Path(data) / "doctor" and report.checked_rows == 2
    assert (Path(data) / "doctor" / "doctor.json").is_file()
    assert load_schema_dataset(data, split="train").num_rows == NUM_ROWS  # the set still reads as before


def test_round_trip_lands_on_gold_with_room_and_blames_a_size_mismatch():
    row = {
        "id": "r",
        "solution": [[0.2, 0.3, 0.45, 0.6]],
        "target_image": [1],
        "image_sizes": [[640, 480], [500, 400]],
    }
    limits = {"min_pixels": 3136, "max_pixels": 1_003_520, "factor": 28}
    stated = stated_sizes(row["image_sizes"], limits)
    trip = round_trip(row, "mig-think-v1", Frame.QWEN2_5_VL, limits, stated)
    assert trip["iou"] >= 0.99 and round_trip_findings("r", trip) == []
    single = {**row, "target_image": [-1], "image_sizes": [[640, 480]]}  # unknown target: scored box-only
    trip = round_trip(single, "mig-direct-v1", Frame.QWEN2_5_VL, limits, stated[:1])
    assert trip["iou"] >= 0.99 and trip["answer"].startswith('{"image": 1,')
    # the processor feeding other sizes than the prompt states: the answer is read in the wrong frame
    other = [(w * 2, h * 2) for w, h in stated]
    trip = round_trip(row, "mig-think-v1", Frame.QWEN2_5_VL, limits, other)
    assert trip["iou"] < 0.5 <= trip["grid_iou"]
    assert [f.severity for f in round_trip_findings("r", trip)] == ["error"]
    # a small resize only loses what the integer grid cannot hold: a warning
    small = {"min_pixels": 3136, "max_pixels": 3136, "factor": 28}
    row_small = {**row, "solution": [[0.11, 0.13, 0.29, 0.31]]}
    trip = round_trip(row_small, "mig-think-v1", Frame.QWEN2_5_VL, small, stated_sizes(row["image_sizes"], small))
    assert trip["iou"] < 0.99 and [f.severity for f in round_trip_findings("r", trip)] == ["warning"]


def test_eval_max_pixels_that_differ_from_the_processor_are_an_error(model, data, tmp_path):
    report = run_doctor(DoctorArguments(model=model, data=data, rows=0, max_pixels=6272, output_dir=str(tmp_path)))
    (finding,) = _errors(report, "pixel_limits")
    assert "max_pixels" in finding.reason and "12,544" in finding.reason and "6,272" in finding.reason
    assert "processor saved in" in finding.reason and "--min-pixels/--max-pixels flags" in finding.reason
    assert report.used["pixel_limits"]["max_pixels"] == 6272  # rows are checked as evaluation will see them


def test_run_record_limits_and_budgets_are_read_from_argv_and_recipe(model, data, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    (folder / "recipe.yaml").write_text("max_prompt_length: 40\nmax_pixels: 99\n")
    record = {"command": "grpo", "argv": ["--config", "recipe.yaml", "--max-pixels=401408"], "rows": 6}
    (folder / "trl_mig_run.json").write_text(json.dumps(record))
    report = run_doctor(DoctorArguments(model=str(folder), data=data, rows=0, output_dir=str(tmp_path / "out")))
    (limit,) = _errors(report, "pixel_limits")
    assert "401,408" in limit.reason and "12,544" in limit.reason and "trl_mig_run.json" in limit.reason
    budget = _errors(report, "token_budget")
    assert len(budget) == NUM_ROWS and all("max_prompt_length 40 (run record" in f.reason for f in budget)


def test_check_gold_names_each_problem():
    row = {
        "id": "x",
        "image_sizes": [[1000, 4], [50, 50]],
        "solution": [[0.5, 0.5, 0.5, 0.7], [0.1, 0.1, 0.2, float("nan")], [0.1, 0.1, 0.3, 0.3]],
        "target_image": [0, 1, 3],
    }
    reasons = [f.reason for f in check_gold(row, 2)]
    assert len(reasons) == 4 and all(f.row_id == "x" for f in check_gold(row, 2))
    assert "[1000, 4]" in reasons[0] and "200:1" in reasons[0]
    assert "degenerate" in reasons[1] and "finite" in reasons[2] and "image 3 (0-based)" in reasons[3]
    assert check_gold({**row, "image_sizes": [[60, 40], [50, 50]], "solution": [], "target_image": []}, 2) == []


def _message_feature():
    return List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})


@pytest.fixture(scope="module")
def planted(data, tmp_path_factory) -> str:
    """A rendered set (with `prompt`) holding one clean row and three bad ones, written without `validate_row`."""
    clean = load_schema_dataset(data, split="train")
    multi = next(i for i in range(len(clean)) if len(clean[i]["images"]) > 1)
    rows = []
    for rid, edit in (("clean", None), ("bad-box", "box"), ("few-placeholders", "drop"), ("markup", "markup")):
        row = dict(clean[multi])
        row["id"] = rid
        if edit == "box":
            row["solution"] = [[0.5, 0.5, 1.4, 0.9]]
        if edit == "markup":
            row["question"] = "<image> " + row["question"]
        prompt = render_prompt(row, "mig-think-v1", "qwen2_5_vl", min_pixels=3136, max_pixels=TINY_MAX_PIXELS)
        if edit == "drop":
            prompt[0]["content"] = prompt[0]["content"][1:]
        rows.append({**row, "prompt": prompt})
    schema = features(reasoning=True)
    out = tmp_path_factory.mktemp("doctor-planted")
    (out / "data").mkdir()
    dataset = Dataset.from_list(rows, features=Features({**schema, "prompt": _message_feature()}))
    dataset.to_parquet(str(out / "data" / "train-00000-of-00001.parquet"))
    return str(out)


def test_planted_bad_rows_are_named_with_their_reason(model, planted, tmp_path):
    report = run_doctor(DoctorArguments(model=model, data=planted, output_dir=str(tmp_path)))
    by_row = {}
    for finding in report.errors:
        by_row.setdefault(finding.row_id, []).append(finding)
    assert "clean" not in by_row and report.checked_rows == 4 and report.drawn_rows == 4
    assert any(f.check == "gold" and "outside its image" in f.reason for f in by_row["bad-box"])
    n = len(load_schema_dataset(planted, split="train")[0]["images"])
    (few,) = by_row["few-placeholders"]
    assert few.check == "images" and f"prompt has {n - 1} image placeholders for {n} images" in few.reason
    (markup,) = by_row["markup"]
    assert f"prompt has {n + 1} image placeholders for {n} images" in markup.reason


def test_tiny_max_prompt_length_lists_every_row(model, data, tmp_path):
    report = run_doctor(
        DoctorArguments(model=model, data=data, rows=0, max_prompt_length=20, output_dir=str(tmp_path))
    )
    over = _errors(report, "token_budget")
    assert sorted(f.row_id for f in over) == [f"synthetic-train-{i:06d}" for i in range(NUM_ROWS)]
    assert all("> max_prompt_length 20 (--max-prompt-length)" in f.reason for f in over)
    roomy = run_doctor(
        DoctorArguments(model=model, data=data, rows=0, max_prompt_length=5000, output_dir=str(tmp_path))
    )
    assert _errors(roomy, "token_budget") == []


def test_prompt_token_count_matches_the_processor(model, data):
    from trl_mig.models import load_processor

    processor = load_processor(model)
    row = next(r for r in load_schema_dataset(data, split="train") if len(r["images"]) > 1)
    limits = {"min_pixels": 3136, "max_pixels": TINY_MAX_PIXELS, "factor": 28}
    prompt = render_prompt(row, "mig-think-v1", "qwen2_5_vl", **limits)
    text = processor.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    real = processor(text=[text], images=row["images"], return_tensors="pt")["input_ids"].shape[1]
    assert count_prompt_tokens(processor, prompt, stated_sizes(row["image_sizes"], limits), 28) == real


def test_cli_exit_codes(model, data, tmp_path):
    from trl_mig.cli import main

    flags = ["doctor", "--model", model, "--data", data, "--rows", "1", "--check-rows", "2"]
    assert main([*flags, "--output-dir", str(tmp_path / "ok")]) == 0
    assert (tmp_path / "ok" / "doctor.json").is_file()
    with pytest.raises(SystemExit) as exc:
        main([*flags, "--output_dir", str(tmp_path / "bad"), "--max-pixels", "6272"])
    assert exc.value.code == 1
    saved = json.loads((tmp_path / "bad" / "doctor.json").read_text())
    assert saved["counts"]["error"] == 1 and saved["findings"][0]["check"] == "pixel_limits"


def test_a_set_rendered_for_other_limits_or_another_frame_is_flagged(model, data, tmp_path):
    from trl_mig.templates import render_dataset

    clean = load_schema_dataset(data, split="train")
    rendered = render_dataset(clean, "mig-think-v1", "qwen2_5_vl", min_pixels=3136, max_pixels=TINY_MAX_PIXELS)
    (tmp_path / "ok" / "data").mkdir(parents=True)
    rendered.to_parquet(str(tmp_path / "ok" / "data" / "train-00000-of-00001.parquet"))
    report = run_doctor(DoctorArguments(model=model, data=str(tmp_path / "ok"), rows=1))
    assert report.errors == []
    other = render_dataset(clean, "mig-think-v1", "qwen2_5_vl", min_pixels=3136, max_pixels=6272)
    other = other.map(lambda row, i: {"frame": "qwen2_vl" if i == 0 else row["frame"]}, with_indices=True)
    (tmp_path / "bad" / "data").mkdir(parents=True)
    other.to_parquet(str(tmp_path / "bad" / "data" / "train-00000-of-00001.parquet"))
    report = run_doctor(DoctorArguments(model=model, data=str(tmp_path / "bad"), rows=0))
    (frame,) = _errors(report, "frame")
    assert frame.row_id == "synthetic-train-000000" and "'qwen2_vl'" in frame.reason
    resize = _errors(report, "resize")
    assert len(resize) >= 1 and all("prompt states resized sizes" in f.reason for f in resize)
