"""`trl-mig eval`: external predictions scored by hand, the tiny model end to end on real MIG-Bench records and on an
MC-Bench-format fixture, resumption, the model card's `model-index`, and the CLI.

MIG-Bench rows come from the real annotation file shipped in the wheel; images are placeholders generated at the paths
the records name (the benchmark's images are not redistributable).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from trl_mig.evaluation.runner import EvalArguments, evaluate_model, read_predictions, run_evaluation
from trl_mig.evaluation.sources import MIGBenchSource, SchemaSource
from trl_mig.metrics.core import MIG_BENCH_TASKS


REPAIRED = ["7", "34", "105", "126", "163", "512", "703"]
PREDICTION_KEYS = {"id", "task", "output", "pred_boxes", "pred_image", "iou", "correct"}


def _answer(image: int | None, box: list[float]) -> str:
    return f"<think>look</think><answer>{json.dumps({'image': image, 'bbox_2d': box})}</answer>"


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _placeholder_images(root: Path, source: MIGBenchSource, size=(96, 64), positions=None) -> None:
    for position in positions if positions is not None else source.positions:
        for k, relative in enumerate(source.records[position]["images"]):
            path = root / relative.removeprefix("./")
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", size, (position % 251, 60 + 40 * k, 120)).save(path)


# ------------------------------------------------------------------------------------------------- external predictions
#
# Six view_diff records (94 rows, target = the second image), answers in the `normalized` frame:
#   3451 exact box, right image                          IoU 1    -> right
#   3452 exact box, names image 1 (wrong image)          IoU 1    -> right box-only (the benchmark's rule), not strict
#   3453 two boxes, the first disjoint from the gold     IoU 0    -> wrong (the first box is scored)
#   3454 "I cannot find it."                             parse failure -> wrong
#   3455 0-1000 grid numbers in a normalized answer      clipped to (1, 1, 1, 1), IoU 0 -> wrong (wrong frame)
#   3456 60% of the gold's width, same height            IoU 0.6  -> right at 0.5, wrong at 0.7
# The other 88 view_diff rows have no prediction: wrong, listed as missing.
# acc@0.5 = 3/94, acc@0.7 = 2/94, strict_acc@0.5 = 2/94, miou = 2.6/94, parse_fail_rate = 89/94.

GOLD = {
    3451: [0.383, 0.722, 0.603, 0.816],
    3452: [0.0, 0.881, 0.043, 0.999],
    3453: [0.521, 0.325, 0.608, 0.428],
    3456: [0.767, 0.314, 0.955, 0.771],
}


@pytest.fixture
def external(tmp_path: Path) -> Path:
    x2 = 0.767 + 0.6 * (0.955 - 0.767)
    two = [{"image": 2, "bbox_2d": [0.0, 0.0, 0.1, 0.1]}, {"image": 2, "bbox_2d": GOLD[3453]}]
    return _write_jsonl(tmp_path / "preds.jsonl", [
        {"id": 3451, "output": _answer(2, GOLD[3451])},
        {"id": "3452", "output": _answer(1, GOLD[3452])},
        {"id": "3453", "output": f"<answer>{json.dumps(two)}</answer>"},
        {"id": " 3454 ", "output": "I cannot find it."},
        {"id": 3455, "output": _answer(2, [391, 737, 493, 888])},
        {"id": 3456, "output": _answer(2, [0.767, 0.314, x2, 0.771])},
        {"id": 0, "output": "a common_object row, left out by --tasks"},
    ])  # fmt: skip


def test_external_predictions_scored_by_hand(external: Path, tmp_path: Path) -> None:
    from trl_mig.evaluation.runner import score_predictions

    out = tmp_path / "out"
    results = score_predictions(external, frame="normalized", tasks=["view_diff"], output_dir=out)
    task = results["tasks"]["view_diff"]
    assert task["n"] == 94 and results["meta"]["n"] == 94
    assert task["acc@0.5"] == pytest.approx(3 / 94)
    assert task["acc@0.7"] == pytest.approx(2 / 94)
    assert task["strict_acc@0.5"] == pytest.approx(2 / 94)
    assert task["miou"] == pytest.approx(2.6 / 94)
    assert task["parse_fail_rate"] == pytest.approx(89 / 94)
    # format judged against the template: mig-think-v1 wants <think> + <answer> (3451, 3452, 3455, 3456)
    assert task["format_rate"] == pytest.approx(4 / 94) and results["meta"]["template"] == "mig-think-v1"
    direct = score_predictions(external, frame="normalized", tasks=["view_diff"], template="mig-direct-v1")
    assert direct["tasks"]["view_diff"]["format_rate"] == pytest.approx(1 / 94)  # only 3453 is a bare answer block
    assert direct["tasks"]["view_diff"]["acc@0.5"] == task["acc@0.5"]  # boxes read the same way whatever the format
    assert results["overall"]["acc@0.5"] == pytest.approx(3 / 94)
    assert len(results["flags"]["missing_ids"]) == 88 and "3451" not in results["flags"]["missing_ids"]
    assert results["meta"]["lines_read"] == 7 and results["meta"]["lines_of_other_tasks"] == 1
    assert results["flags"]["repaired_gold_ids"] == []  # none of the seven is a view_diff record
    # the files: results.json equals the returned dict, scored predictions in the DESIGN layout, a plot
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    lines = {line["id"]: line for line in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    assert set(lines["3451"]) >= PREDICTION_KEYS and len(lines) == 94
    assert lines["3452"]["correct"] and lines["3452"]["pred_image"] == 0
    assert not lines["3453"]["correct"] and lines["3453"]["iou"] == 0.0
    assert lines["3456"]["iou"] == pytest.approx(0.6, abs=1e-6)
    assert (out / "results.md").read_text().count("view_diff") >= 1 and (out / "task_accuracy.png").is_file()


def test_external_predictions_all_tasks_flag_repaired_and_average(external: Path) -> None:
    from trl_mig.evaluation.runner import score_predictions

    results = score_predictions(external, frame="normalized")
    assert results["flags"]["repaired_gold_ids"] == REPAIRED
    assert sorted(results["tasks"]) == sorted(MIG_BENCH_TASKS) and results["meta"]["n"] == 4295
    # row 0's answer is unparsable: every task scores 0 except view_diff (3/94)
    assert results["mig_bench_avg_acc@0.5"] == pytest.approx((3 / 94) / 10)
    assert len(results["flags"]["missing_ids"]) == 4295 - 7


def test_external_predictions_errors(tmp_path: Path, external: Path) -> None:
    from trl_mig.evaluation.runner import score_predictions

    unknown = _write_jsonl(tmp_path / "unknown.jsonl", [{"id": 4295, "output": "x"}, {"id": "abc", "output": "x"}])
    with pytest.raises(ValueError, match=r"2 id\(s\) are not mig-bench ids: 4295 \(line 1\), 'abc' \(line 2\)"):
        score_predictions(unknown, frame="qwen2_vl")
    twice = _write_jsonl(tmp_path / "twice.jsonl", [{"id": 5, "output": "x"}, {"id": "5", "output": "y"}])
    with pytest.raises(ValueError, match="given twice"):
        score_predictions(twice, frame="qwen2_vl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1, "output": "x"}\n{"id": 2, "output": \n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2: not JSON"):
        score_predictions(broken, frame="qwen2_vl")
    with pytest.raises(ValueError, match="--image-root"):
        score_predictions(external, frame="pixel")
    with pytest.raises(ValueError, match="--min-pixels and --max-pixels"):
        score_predictions(external, frame="qwen2_5_vl", image_root=str(tmp_path))
    with pytest.raises(ValueError, match="not tasks of MIG-Bench"):
        score_predictions(external, frame="qwen2_vl", tasks=["counting"])


def test_external_predictions_in_resized_pixels_need_the_images(tmp_path: Path) -> None:
    """qwen2_5_vl answers are in the resized image: 800x600 with the default limits is 812x588 (multiples of 28).

    Gold of 3451 in that frame: (0.383 * 812, 0.722 * 588, 0.603 * 812, 0.816 * 588) = (311.0, 424.5, 489.6, 479.8).
    """
    from trl_mig.evaluation.runner import score_predictions

    source = MIGBenchSource(tasks=["view_diff"])
    _placeholder_images(tmp_path, source, size=(800, 600))
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"id": 3451, "output": _answer(2, [311, 425, 490, 480])}])
    results = score_predictions(preds, frame="qwen2_5_vl", tasks=["view_diff"], image_root=str(tmp_path),
                                min_pixels=3136, max_pixels=1003520, output_dir=tmp_path / "out", gallery=1)  # fmt: skip
    assert results["tasks"]["view_diff"]["acc@0.5"] == pytest.approx(1 / 94)
    line = json.loads((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()[0])
    assert line["id"] == "3451" and line["iou"] > 0.98
    assert len(list((tmp_path / "out" / "gallery").glob("*.png"))) == 2  # best and worst, drawn on the images


def test_cli_scores_external_predictions(external: Path, tmp_path: Path) -> None:
    from trl_mig.cli import main

    out = tmp_path / "cli"
    assert main(["eval", "--predictions", str(external), "--frame", "normalized", "--tasks", "view_diff",
                 "--output-dir", str(out), "--gallery", "0"]) == 0  # fmt: skip
    assert json.loads((out / "results.json").read_text())["tasks"]["view_diff"]["acc@0.5"] == pytest.approx(3 / 94)


def test_arguments_need_a_model_or_predictions() -> None:
    with pytest.raises(ValueError, match="--model"):
        EvalArguments()
    with pytest.raises(ValueError, match="exclude each other"):
        EvalArguments(model="m", predictions="p.jsonl")


# --------------------------------------------------------------------------------------------------------- a model


@pytest.fixture(scope="module")
def mig_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mig_images")
    _placeholder_images(root, MIGBenchSource(limit=1))
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trl_mig.testing import tiny_checkpoint

    return tiny_checkpoint(root=tmp_path_factory.mktemp("tiny"))


def _args(checkpoint: Path, root: Path, out: Path, **kwargs) -> EvalArguments:
    settings = {"model": str(checkpoint), "benchmark": "mig-bench", "image_root": str(root), "output_dir": str(out),
                "limit": 1, "max_new_tokens": 12, "batch_size": 4, "gallery": 1}  # fmt: skip
    return EvalArguments(**(settings | kwargs))


def test_tiny_model_on_mig_bench_records(checkpoint: Path, mig_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    results = evaluate_model(_args(checkpoint, mig_root, out))
    assert sorted(results["tasks"]) == sorted(MIG_BENCH_TASKS)
    assert all(values["n"] == 1 for values in results["tasks"].values())
    meta = results["meta"]
    assert meta["template"] == "mig-think-v1" and meta["frame"] == "qwen2_5_vl" and meta["backend"] == "hf"
    assert set(meta["pixel_limits"]) == {"min_pixels", "max_pixels", "factor"} and "transformers" in meta["versions"]
    assert "mig_bench_avg_acc@0.5" in results and 0.0 <= results["mig_bench_avg_acc@0.5"] <= 1.0
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 10 and all(set(line) >= PREDICTION_KEYS for line in lines)
    assert json.loads((out / "results.json").read_text())["meta"]["n"] == 10
    assert (out / "task_accuracy.png").is_file() and len(list((out / "gallery").glob("*.png"))) == 2
    assert "![task_accuracy](task_accuracy.png)" in (out / "results.md").read_text()


def test_resume_equals_an_uninterrupted_run(checkpoint: Path, mig_root: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText

    from trl_mig.evaluation.runner import hf_generate_fn
    from trl_mig.models.loading import load_processor
    from trl_mig.sampling.generation import HFGenerator
    from trl_mig.templates import pixel_limits_from_processor

    processor = load_processor(str(checkpoint))
    model = AutoModelForImageTextToText.from_pretrained(str(checkpoint)).eval()
    generate = hf_generate_fn(HFGenerator(model, processor, max_new_tokens=12, temperature=0.0), confidence=False)
    limits = pixel_limits_from_processor(processor)
    source = MIGBenchSource(image_root=mig_root, limit=1)
    settings = {"frame": "qwen2_5_vl", "limits": limits, "batch_size": 3, "gallery": 0, "progress": False}

    whole = run_evaluation(source, generate, tmp_path / "whole", **settings)

    calls = []

    def dies_after_one_batch(prompts, images):
        if calls:
            raise KeyboardInterrupt
        calls.append(len(prompts))
        return generate(prompts, images)

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(source, dies_after_one_batch, tmp_path / "resumed", **settings)
    partial = tmp_path / "resumed" / "predictions.jsonl"
    assert len(read_predictions(partial)) == 3
    with partial.open("a") as handle:  # a crash in the middle of a write leaves half a line
        handle.write('{"id": "9999", "outp')
    resumed = run_evaluation(source, generate, tmp_path / "resumed", **settings)
    assert resumed["meta"]["generated"] == 7 and whole["meta"]["generated"] == 10
    assert partial.read_text() == (tmp_path / "whole" / "predictions.jsonl").read_text()
    for key in ("overall", "tasks", "mig_bench_avg_acc@0.5", "flags"):
        assert resumed[key] == whole[key]
    # resuming under other settings would mix two runs: refused unless --overwrite
    with pytest.raises(ValueError, match="template"):
        run_evaluation(source, generate, tmp_path / "resumed", **settings, template="mig-direct-v1")
    # a part file left by a killed multi-process run counts as answers too, and --overwrite removes it
    (tmp_path / "resumed" / "predictions.jsonl").rename(tmp_path / "resumed" / "predictions.part-1.jsonl")
    with pytest.raises(ValueError, match="template"):
        run_evaluation(source, generate, tmp_path / "resumed", **settings, template="mig-direct-v1")
    fresh = run_evaluation(source, generate, tmp_path / "resumed", **settings, template="mig-direct-v1",
                           overwrite=True)  # fmt: skip
    assert fresh["meta"]["generated"] == 10 and not list((tmp_path / "resumed").glob("predictions.part-*"))


def test_update_model_card_writes_model_index(checkpoint: Path, mig_root: Path, tmp_path: Path) -> None:
    import shutil

    from huggingface_hub import ModelCard

    model = tmp_path / "model"
    shutil.copytree(checkpoint, model)
    (model / "README.md").write_text("---\nlibrary_name: transformers\n---\n\n# tiny\n")
    results = evaluate_model(_args(model, mig_root, tmp_path / "eval", tasks=["diff", "region"], update_model_card=True,
                                   gallery=0))  # fmt: skip
    card = ModelCard.load(model / "README.md")
    names = [r.metric_name for r in card.data.eval_results]
    assert names == ["mig_bench_avg_acc@0.5", "diff acc@0.5", "region acc@0.5"]
    assert card.data.eval_results[0].metric_value == pytest.approx(results["mig_bench_avg_acc@0.5"])
    assert card.data.eval_results[0].dataset_type == "Michael4933/MIG-Bench"
    assert "<!-- trl-mig:eval-results:start -->" in card.text and "region acc@0.5" in card.text


def test_tiny_model_on_mc_bench_fixture(checkpoint: Path, tmp_path: Path) -> None:
    from test_mc_bench_builder import write_mc_bench

    from trl_mig.datasets_builders.mc_bench import BuildArguments, build

    samples = [
        {"text": "the red cup", "style": "Referring", "sizes": [(80, 60), (64, 64)],
         "boxes": [[[10, 10, 20, 20]], [[5, 5, 30, 30], [40, 40, 10, 12]]]},
        {"text": "what differs", "style": "Comparison", "sizes": [(72, 56), (72, 56)], "boxes": [[], [[1, 2, 30, 20]]]},
        {"text": "a unicorn", "style": "Reasoning", "sizes": [(64, 48), (64, 48)], "boxes": [[], []]},
    ]  # fmt: skip
    annotations = write_mc_bench(tmp_path, samples)
    args = {"model": str(checkpoint), "benchmark": "mc-bench", "annotations": str(annotations),
            "image_root": str(tmp_path), "max_new_tokens": 12, "gallery": 1}  # fmt: skip
    results = evaluate_model(EvalArguments(output_dir=str(tmp_path / "eval"), **args))
    assert {"ap50", "image_acc"} <= set(results["overall"]) and results["meta"]["n"] == 3
    assert sorted(results["tasks"]) == ["comparison", "reasoning", "referring"]
    lines = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert all(0.0 < line["confidence"] <= 1.0 for line in lines)  # exp(mean token log-prob) of a greedy answer
    # the same benchmark through a built set (`trl-mig build mc_bench`, its coco_ids.json sidecar) scores the same
    build(BuildArguments(annotations=str(annotations), image_root=str(tmp_path), output_dir=str(tmp_path / "built")))
    built = dict(args, annotations=None, data=str(tmp_path / "built"))
    again = evaluate_model(EvalArguments(output_dir=str(tmp_path / "eval2"), **built))
    assert again["overall"] == results["overall"]


def test_schema_source_selects_per_task(tmp_path: Path) -> None:
    from datasets import Dataset

    from trl_mig.schema import features

    rows = [{"id": f"r{i}", "images": [], "question": "q", "solution": [[0.1, 0.1, 0.5, 0.5]], "target_image": [0],
             "image_sizes": [[10, 10]], "task": "a" if i % 3 else "b", "source": "t"} for i in range(7)]  # fmt: skip
    dataset = Dataset.from_list(rows, features=features())
    source = SchemaSource(dataset, limit=2)
    assert source.ids == ["r0", "r1", "r2", "r3"] and source.tasks == ["b", "a", "a", "b"]
    with pytest.raises(ValueError, match="not tasks of"):
        SchemaSource(dataset, tasks=["c"])


def test_vllm_gets_the_processors_pixel_limits(checkpoint: Path) -> None:
    """vLLM resizes with the model folder's saved limits unless told: the engine must get the processor's own, which
    the prompts state and the answers are scored with (not run: no vLLM here)."""
    from trl_mig.models.loading import load_processor
    from trl_mig.sampling.generation import _pixel_limits

    processor = load_processor(str(checkpoint), min_pixels=4000, max_pixels=20000)
    assert _pixel_limits(processor) == {"min_pixels": 4000, "max_pixels": 20000}
    assert _pixel_limits(object()) == {}
