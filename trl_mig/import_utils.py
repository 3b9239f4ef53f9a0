"""Optional dependencies, guarded in one place: `is_x_available()` and an `ImportError` naming the pip extra."""

from __future__ import annotations

import functools
import importlib.util


_EXTRAS = {
    "vllm": ("vllm", "vllm"),
    "pycocotools": ("pycocotools", "coco"),
    "fastapi": ("fastapi", "serving"),
    "uvicorn": ("uvicorn", "serving"),
    "openai": ("openai", "serving"),
}


@functools.cache
def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def is_vllm_available() -> bool:
    """vLLM, for fast generation in the sampler and GRPO (extra `vllm`)."""
    return _available("vllm")


def is_pycocotools_available() -> bool:
    """pycocotools, for the official MC-Bench scorer (extra `coco`)."""
    return _available("pycocotools")


def is_serving_available() -> bool:
    """fastapi + uvicorn + openai, for `transformers serve` teachers (extra `serving`)."""
    return all(_available(m) for m in ("fastapi", "uvicorn", "openai"))


def require(name: str, purpose: str) -> None:
    """Raise an `ImportError` that names the pip extra providing `name` when it is missing.

    Example:
    ```python
    >>> require("json", "reading JSON")  # stdlib: present, returns quietly

    ```
    """
    module, extra = _EXTRAS.get(name, (name, None))
    if not _available(module):
        hint = f"pip install 'trl-mig[{extra}]'" if extra else f"pip install {name}"
        raise ImportError(f"{purpose} needs `{module}`, which is not installed: {hint}")
