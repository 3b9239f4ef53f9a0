"""Files written all or nothing: what shards, reports and plots go through, so a kill never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .crash import crash_point


__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None], *, label: str | None = None) -> Path:
    """Write `path` through a temporary file in its folder, fsync, then `os.replace`: readers see the old file or the
    new one, never part of it; on error the temporary file is removed and the old file (if any) stays. After a
    `kill -9` a hidden `.<name>.*.tmp` file may stay behind (nothing can remove it); readers ignore such names.

    `label` names the crash point reached between the fsync and the rename (`<label>.before_rename`, besides
    `atomic_write.before_rename`; see `trl_mig.crash`, test-only).

    Example:
    ```python
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_write(target, lambda handle: handle.write(b"hello")).read_text()
    'hello'

    ```
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        crash_point("atomic_write.before_rename")
        if label:
            crash_point(f"{label}.before_rename")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
