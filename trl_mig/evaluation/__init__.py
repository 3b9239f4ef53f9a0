"""Evaluation: `trl-mig eval` (MIG-Bench, MC-Bench, schema sets), external predictions, results and `model-index`.

- `evaluate_model(EvalArguments(...))`: what the command runs; `score_predictions(...)`: external answers, no model.
- `run_evaluation(source, generate, output_dir, ...)`: the resumable loop over any `EvalSource` and generate function
  (the demo evaluates its three stages with it).
- `evaluate_generator` / `draw_predictions`: greedy answers on an already-rendered split, in memory.
- `model_index(results)`: `huggingface_hub.EvalResult` entries for a model card.

Submodules import torch/transformers only when a model runs.
"""

from __future__ import annotations

from .._lazy import lazy_getattr


_LAZY = {
    "EvalResult": "trl_mig.evaluation.core",
    "evaluate_generator": "trl_mig.evaluation.core",
    "draw_predictions": "trl_mig.evaluation.core",
    "overall": "trl_mig.evaluation.core",
    "EvalArguments": "trl_mig.evaluation.runner",
    "evaluate_model": "trl_mig.evaluation.runner",
    "run_evaluation": "trl_mig.evaluation.runner",
    "score_outputs": "trl_mig.evaluation.runner",
    "score_predictions": "trl_mig.evaluation.runner",
    "read_predictions": "trl_mig.evaluation.runner",
    "hf_generate_fn": "trl_mig.evaluation.runner",
    "EvalSource": "trl_mig.evaluation.sources",
    "MIGBenchSource": "trl_mig.evaluation.sources",
    "MCBenchSource": "trl_mig.evaluation.sources",
    "SchemaSource": "trl_mig.evaluation.sources",
    "make_source": "trl_mig.evaluation.sources",
    "model_index": "trl_mig.evaluation.results",
    "write_results": "trl_mig.evaluation.results",
    "results_markdown": "trl_mig.evaluation.results",
    "plot_task_accuracy": "trl_mig.evaluation.results",
    "draw_gallery": "trl_mig.evaluation.results",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
