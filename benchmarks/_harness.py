"""Timing plumbing shared by the benchmark scripts: one-core pinning, best-of-N timing, machine facts, a table.

Kept apart so every `bench_*.py` measures the same way whether it runs alone or under `run_all.py`. Not a package:
the scripts import it as a sibling module (Python puts a script's own folder first on `sys.path`).
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


#: Every benchmark draws its data from this seed, so two runs time the same inputs.
SEED = 0


def pin_to_one_core() -> str:
    """Pin this process to one CPU core and say what happened, in words for the report.

    Throughput "on one core" is the figure that matters for a reward (TRL calls rewards in the training process), and
    pinning keeps the scheduler from moving us between cores mid-measurement. Best effort: platforms without
    `os.sched_setaffinity` (macOS, Windows) run unpinned, and the report says so.
    """
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (os.sched_setaffinity unavailable on this platform)"
    allowed = sorted(os.sched_getaffinity(0))
    core = 0 if 0 in allowed else allowed[0]  # a container may not hand us core 0
    try:
        os.sched_setaffinity(0, {core})
    except OSError as exc:
        return f"not pinned ({exc})"
    return f"pinned to CPU core {core}"


def best_of(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Best wall time of `repeats` calls of `fn`, in seconds, after `warmup` untimed calls.

    The minimum is the least noisy estimate of what the code costs (noise only ever adds time). Warm-up calls fill
    caches a training run keeps warm anyway (imports, regexes, the `smart_resize` cache). `gc.collect()` before each
    call stops one repeat from paying for another's garbage; the collector stays on while timing, as in training.
    """
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def machine_info(pinning: str) -> dict[str, Any]:
    """Facts needed to compare two result files: interpreter, library versions, CPUs and the pinning used."""
    import numpy as np
    import PIL

    try:
        import scipy

        scipy_version = scipy.__version__
    except ImportError:  # only match_boxes needs scipy; these benchmarks do not
        scipy_version = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "scipy": scipy_version,
        "pillow": PIL.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "pinning": pinning,
        # Other jobs on a shared machine inflate wall times; a load near the CPU count means read figures loosely.
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "executable": sys.executable,
    }


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left-aligned text table (no dependency for something this small)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
