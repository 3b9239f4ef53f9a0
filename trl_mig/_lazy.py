"""PEP 562 lazy attributes for packages whose members import torch, transformers or trl.

`import trl_mig` and `import trl_mig.rewards` must stay light (no torch); packages list what they export and where it
lives, and the module is imported on first access.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package` that imports `exports[name]` on first access and caches the value.

    Example:
    ```python
    >>> getattr_ = lazy_getattr("json_like", {"dumps": "json"})
    >>> getattr_("dumps").__module__
    'json'

    ```
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            module = sys.modules.get(package)
            if module is not None:
                setattr(module, name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
