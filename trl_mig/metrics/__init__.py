"""Grounding metrics: plain functions (`compute_grounding_metrics`) and packaged `evaluate` modules (`load`).

MC-Bench's `ap50` / `image_acc` live in `mc_bench` (pycocotools, the `coco` extra, is imported only when scoring).
`import trl_mig.metrics` stays light (numpy only); `load` imports `evaluate` (and with it `datasets`) on demand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .core import MIG_BENCH_TASKS, THRESHOLDS, RowScore, aggregate, compute_grounding_metrics, score_rows
from .mc_bench import compute_mc_bench_metrics, mc_bench_detections, mc_bench_gold


#: metric name -> folder holding its `evaluate` script and card
METRICS_DIR = Path(__file__).parent
AVAILABLE_METRICS = ("grounding",)


def load(name: str = "grounding", **kwargs: Any):
    """Load a packaged `evaluate` metric by path (works offline, e.g. with `HF_EVALUATE_OFFLINE=1`).

    Args:
        name (`str`, *optional*, defaults to `"grounding"`): one of `AVAILABLE_METRICS`.
        **kwargs: passed to `evaluate.load` (e.g. `experiment_id`, `keep_in_memory`).
    """
    key = name.replace("-", "_")
    if key not in AVAILABLE_METRICS:
        raise ValueError(f"unknown trl-mig metric {name!r}; available: {', '.join(AVAILABLE_METRICS)}")
    import evaluate

    return evaluate.load(str(METRICS_DIR / key), **kwargs)


__all__ = [
    "AVAILABLE_METRICS",
    "MIG_BENCH_TASKS",
    "THRESHOLDS",
    "RowScore",
    "aggregate",
    "compute_grounding_metrics",
    "compute_mc_bench_metrics",
    "load",
    "mc_bench_detections",
    "mc_bench_gold",
    "score_rows",
]
