"""`trl-mig eval --model PATH_OR_REPO --benchmark {mig-bench,mc-bench,schema} --image-root DIR --output-dir DIR`.

Runs a model on MIG-Bench (annotations shipped with trl-mig), MC-Bench or a built schema set, or scores a file of
external predictions (`--predictions FILE.jsonl --frame FRAME`), and writes `predictions.jsonl`, `results.json`,
`results.md`, `task_accuracy.png` and `gallery/` to `--output-dir` (see `trl_mig.evaluation`). A killed run resumes:
run the same command again.
"""

from __future__ import annotations

from typing import Any

from ..evaluation.runner import EvalArguments


COMMAND = "eval"
HELP = "evaluate a model (or external predictions) on MIG-Bench, MC-Bench or a schema set; results, plot, gallery"


def dataclasses() -> tuple[type, ...]:
    return (EvalArguments,)


def main(args: EvalArguments) -> dict[str, Any]:
    from ..evaluation.results import headline
    from ..evaluation.runner import evaluate_model
    from ..reporting import print_summary

    results = evaluate_model(args)
    key, value = headline(results)
    columns = ["task", "n", "acc@0.5", "miou", *[k for k in ("ap50", "image_acc") if k in results["overall"]]]
    rows = [{"task": task, **values} for task, values in sorted((results.get("tasks") or {}).items())]
    rows.append({"task": "all", "n": results["meta"]["n"], **results["overall"]})
    shown = f"{value:.4f}" if isinstance(value, float) else value
    print_summary(f"trl-mig eval: {key} = {shown} -> {args.output_dir}", rows, columns)
    return results
