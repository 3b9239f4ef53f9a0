"""Reading a schema set by name: a builder's output folder or a Hub dataset id.

Why not plain `load_dataset(folder)`: datasets 5.2 caches a local folder whose card declares `configs` (every trl-mig
card does) under a key built from the file *patterns*, not the files: rebuild the folder in place (a second demo run,
a re-selected RL set) and `load_dataset(folder)` returns the old rows. Measured here: rewrite a 3-row set as 5 rows
and it still loads 3. Loading the folder's parquet files with the `parquet` builder keys the cache on the files
themselves (with their modification times), so a rebuilt folder is read afresh. Hub ids go to `load_dataset` as is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any


__all__ = ["load_schema_dataset", "local_data_files"]

_SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)-\d{5}-of-\d{5}\.parquet$")


def local_data_files(folder: str | os.PathLike) -> dict[str, list[str]] | None:
    """`{split: [parquet files]}` of a builder's output folder (`data/<split>-XXXXX-of-XXXXX.parquet`), else `None`."""
    data = Path(folder) / "data"
    if not data.is_dir():
        return None
    files: dict[str, list[str]] = {}
    for path in sorted(data.iterdir()):
        match = _SHARD_RE.match(path.name)
        if match:
            files.setdefault(match["split"], []).append(str(path))
    return files or None


def load_schema_dataset(name: str, config: str | None = None, split: str | None = None, **kwargs: Any) -> Any:
    """`load_dataset` for a schema set: a `DatasetDict`, or one split when `split` is given.

    Raises:
        `ValueError`: `split` is not one of the folder's splits (naming the ones it has).
    """
    from datasets import load_dataset

    files = local_data_files(name) if os.path.isdir(name) else None
    if files is None:
        return load_dataset(name, config, split=split, **kwargs)
    if split is not None and split not in files:
        raise ValueError(f"{name} has no split {split!r}; it has {sorted(files)}")
    chosen = {split: files[split]} if split is not None else files
    return load_dataset("parquet", data_files=chosen, split=split, **kwargs)
