"""Reading a schema set by name: a builder's output folder or a Hub dataset id.

Why not plain `load_dataset(folder)`: datasets 5.2 caches a local folder whose card declares `configs` (every trl-mig
card does) under a key built from the file *patterns*, not the files: rebuild the folder in place (a second demo run,
a re-selected RL set) and `load_dataset(folder)` returns the old rows. Measured here: rewrite a 3-row set as 5 rows
and it still loads 3. Loading the folder's parquet files with the `parquet` builder keys the cache on the files
themselves (with their modification times), so a rebuilt folder is read afresh. Hub ids go to `load_dataset` as is.

A folder may hold several configs (a source with subsets, e.g. MGrounding's `type`): `data/<config>/<split>-*.parquet`.
Its `default` config (`config=None` or `"default"`) is every subset; `config="<subset>"` is that subset's files only,
as `load_dataset(folder, "<subset>")` would read them from the card.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any


__all__ = ["load_schema_dataset", "local_configs", "local_data_files"]

_SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)-\d{5}-of-\d{5}\.parquet$")
DEFAULT_CONFIG = "default"


def _shards(directory: Path) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for path in sorted(directory.iterdir()) if directory.is_dir() else ():
        match = _SHARD_RE.match(path.name)
        if match and path.is_file():
            files.setdefault(match["split"], []).append(str(path))
    return files


def local_configs(folder: str | os.PathLike) -> list[str]:
    """The subset configs of a multi-config builder folder (`data/<config>/` holding shards), sorted; `[]` if none."""
    data = Path(folder) / "data"
    if not data.is_dir():
        return []
    return sorted(p.name for p in data.iterdir() if p.is_dir() and _shards(p))


def local_data_files(folder: str | os.PathLike, config: str | None = None) -> dict[str, list[str]] | None:
    """`{split: [parquet files]}` of a builder's output folder, else `None` (no shard at all).

    `config` `None` / `"default"`: `data/<split>-XXXXX-of-XXXXX.parquet` plus every `data/<config>/<split>-...`;
    another name: `data/<name>/` only.

    Raises:
        `ValueError`: `config` names no subset of the folder (naming the ones it has).
    """
    data = Path(folder) / "data"
    if not data.is_dir():
        return None
    configs = local_configs(folder)
    if config not in (None, DEFAULT_CONFIG):
        if config not in configs:
            raise ValueError(f"{folder} has no config {config!r}; it has {[DEFAULT_CONFIG, *configs]}")
        configs = [config]
    else:
        configs = ["", *configs]  # "": files directly under data/ (single-config sets)
    files: dict[str, list[str]] = {}
    for name in configs:
        for split, paths in _shards(data / name).items():
            files.setdefault(split, []).extend(paths)
    return files or None


def load_schema_dataset(name: str, config: str | None = None, split: str | None = None, **kwargs: Any) -> Any:
    """`load_dataset` for a schema set: a `DatasetDict`, or one split when `split` is given.

    Args:
        name (`str`): a builder's output folder or a Hub dataset id.
        config (`str`, *optional*): a subset of a multi-config set; `None` or `"default"` reads every row.
        split (`str`, *optional*): one split.

    Raises:
        `ValueError`: `split` is not one of the folder's splits, or `config` not one of its configs (naming them).
    """
    from datasets import load_dataset

    files = local_data_files(name, config) if os.path.isdir(name) else None
    if files is None:
        return load_dataset(name, config, split=split, **kwargs)
    if split is not None and split not in files:
        raise ValueError(f"{name} has no split {split!r}; it has {sorted(files)}")
    chosen = {split: files[split]} if split is not None else files
    return load_dataset("parquet", data_files=chosen, split=split, **kwargs)
