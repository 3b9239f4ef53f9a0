"""Writing a schema dataset: parquet shards + dataset card, all or nothing.

Every builder ends here. The set is written into a temporary folder beside `output_dir` and moved into place only
when every split and the card are written, so an interrupted or failing build never leaves half a dataset behind,
even when killed with `kill -9` (see `staging_dir`; the next build of the same folder removes what a kill left).
Layout (DESIGN.md section 3): `OUT/README.md` + `OUT/data/<split>-<i>-of-<n>.parquet`, readable by
`datasets.load_dataset(OUT)`. A source with subsets (MGrounding's `type`) writes `OUT/data/<config>/<split>-...`
instead: one config per subset plus a `default` config holding them all (`render_dataset_card(configs=...)`).

Builders that stream (`mgrounding`, `synthetic`) write rows through `ParquetShardWriter`, which holds at most one
parquet row group in memory, so their peak memory does not grow with the number of rows.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trl_mig import __version__
from trl_mig.crash import crash_point
from trl_mig.hub_cards import TEMPLATES_DIR


logger = logging.getLogger(__name__)

#: rows per parquet shard: small enough to stream, large enough to keep file counts low
DEFAULT_SHARD_ROWS = 2000
#: rows per parquet row group of a streamed shard (what `ParquetShardWriter` holds in memory); 100 is the row group
#: size `datasets` long used for image sets: one random access reads one group
ROW_GROUP_ROWS = 100

_CITATION = """@article{mig-r1-2025,
  title={Improving the Reasoning of Multi-Image Grounding in MLLMs via Reinforcement Learning},
  journal={arXiv preprint arXiv:2507.00748},
  year={2025}
}"""


class BadRecordError(ValueError):
    """A record that cannot be converted; `reason` is the short label counted in the card."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def render_dataset_card(
    *,
    pretty_name: str,
    description: str,
    builder: str,
    split_rows: Mapping[str, int],
    license: str = "other",
    repo_id: str = "<org>/<name>",
    task_rows: Mapping[str, int] | None = None,
    repairs: Iterable[Any] = (),
    skipped: Mapping[str, int] | None = None,
    extra_stats: Mapping[str, Any] | None = None,
    extra_columns: Mapping[str, str] | None = None,
    extra_tables: Mapping[str, Mapping[str, Any]] | None = None,
    source_note: str = "",
    metadata: Mapping[str, Any] | None = None,
    configs: Sequence[str] = (),
) -> str:
    """Render `hub_cards/dataset_card.md.j2` with `huggingface_hub`'s card machinery (metadata validated as YAML).

    `extra_tables` maps a section title to `{"columns": [...], "rows": [[...], ...], "note": "..."}` (note optional),
    e.g. the rejection sampler's kept/dropped counts per task. `configs` names the subsets of a multi-config set
    (files under `data/<config>/`); see `card_configs`.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    card_data = DatasetCardData(
        license=license,
        pretty_name=pretty_name,
        tags=["trl-mig", "multi-image", "grounding"],
        task_categories=["image-text-to-text"],
        configs=card_configs(list(split_rows), configs),
        trl_mig={"builder": builder, "version": __version__, **dict(metadata or {})},
    )
    card = DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATES_DIR / "dataset_card.md.j2"),
        pretty_name=pretty_name,
        description=description,
        builder=builder,
        trl_mig_version=__version__,
        split_rows=dict(split_rows),
        task_rows=dict(sorted((task_rows or {}).items())),
        repairs=[str(r) for r in repairs],
        skipped=dict(skipped or {}),
        extra_stats=dict(extra_stats or {}),
        extra_columns=dict(extra_columns or {}),
        extra_tables=dict(extra_tables or {}),
        source_note=source_note,
        repo_id=repo_id,
        citation=_CITATION,
    )
    return str(card)


def card_configs(splits: Sequence[str], configs: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The card's `configs:` entries: one `default` config over `data/<split>-*.parquet`, or, with `configs`, a
    `default` config over every `data/*/<split>-*.parquet` plus one config per name over `data/<name>/`.

    Why explicit entries: `load_dataset(OUT, "gg_train")` and the Hub viewer find a config's files from the card only.

    Example:
    ```python
    >>> card_configs(["train"], ["gg_train"])[1]
    {'config_name': 'gg_train', 'data_files': [{'split': 'train', 'path': 'data/gg_train/train-*.parquet'}]}

    ```
    """
    if not configs:
        return [
            {"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in splits]}
        ]
    if "default" in configs:
        raise ValueError(f"a subset may not be named 'default' (it names the config holding every row): {configs}")
    entries = [
        {
            "config_name": "default",
            "data_files": [{"split": s, "path": f"data/*/{s}-*.parquet"} for s in splits],
            "default": True,
        }
    ]
    for name in configs:
        files = [{"split": s, "path": f"data/{name}/{s}-*.parquet"} for s in splits]
        entries.append({"config_name": name, "data_files": files})
    return entries


def encode_rows(rows: list[dict[str, Any]], features: Any) -> Any:
    """Rows as an Arrow table with `features`' schema and encoding (images to `{"bytes", "path"}`): what
    `Dataset.from_list(rows, features=features).data.table` gives, without building a `Dataset`, whose fingerprint
    (dill-hashing every row) cost a quarter of a build's time at one `Dataset` per row group.
    """
    import pyarrow as pa
    from datasets.arrow_writer import OptimizedTypedSequence

    arrays = {
        name: OptimizedTypedSequence(features.encode_column([row.get(name) for row in rows], name),
                                     type=features[name], col=name)
        for name in features
    }  # fmt: skip
    return pa.Table.from_pydict(arrays).replace_schema_metadata(features.arrow_schema.metadata)


class ParquetShardWriter:
    """Streams rows into `folder/<split>-XXXXX-of-XXXXX.parquet`, `shard_rows` rows per file, one row group at a time.

    Why: holding a whole split (or a whole shard: 2,000 rows of encoded images are over a GiB) before writing makes a
    build's memory grow with its size. Here at most `row_group_rows` rows are held; each group is converted with
    `datasets` (same Arrow encoding and schema metadata as `Dataset.to_parquet`) and appended to the open file. Files
    are written under hidden names and renamed `...-i-of-n` by `close()`, once `n` is known; a build that fails before
    then leaves only hidden files in its staging folder, which the builder removes.

    Args:
        folder (`Path`): where the shards go (created).
        split (`str`): the split name that opens every file name.
        features (`datasets.Features`): the schema.
        shard_rows (`int`): rows per file.
        row_group_rows (`int`, *optional*, defaults to `ROW_GROUP_ROWS`): rows per row group, held in memory.
    """

    def __init__(
        self,
        folder: str | Path,
        split: str,
        features: Any,
        shard_rows: int = DEFAULT_SHARD_ROWS,
        row_group_rows: int = ROW_GROUP_ROWS,
    ) -> None:
        if shard_rows < 1 or row_group_rows < 1:
            raise ValueError(f"shard_rows and row_group_rows must be >= 1, got {shard_rows} and {row_group_rows}")
        self.folder, self.split, self.features = Path(folder), split, features
        self.shard_rows, self.group_rows = shard_rows, min(row_group_rows, shard_rows)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.total, self.files, self._pending, self._writer, self._in_file = 0, [], [], None, 0

    def add(self, row: dict[str, Any]) -> None:
        """Queue one row; a full row group is written at once."""
        self._pending.append(row)
        if len(self._pending) >= min(self.group_rows, self.shard_rows - self._in_file):
            self._flush()

    def extend(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    def _open(self) -> None:
        import pyarrow.parquet as pq
        from datasets import config
        from datasets.arrow_writer import get_parquet_column_options

        schema = self.features.arrow_schema
        path = self.folder / f".{self.split}-{len(self.files):05d}.parquet"
        self._writer = pq.ParquetWriter(
            str(path),
            schema=schema,
            use_content_defined_chunking=config.DEFAULT_CDC_OPTIONS,
            write_page_index=True,
            **get_parquet_column_options(self.features, schema),
        )
        self.files.append(path)
        self._in_file = 0

    def _flush(self) -> None:
        if self._writer is None:
            self._open()
        if self._pending:
            table = encode_rows(self._pending, self.features)
            self._writer.write_table(table)
            self._in_file += len(self._pending)
            self.total += len(self._pending)
            self._pending = []
        if self._in_file >= self.shard_rows:
            self._close_file()

    def _close_file(self) -> None:
        import json

        from datasets import config

        self._writer.add_key_value_metadata({"content_defined_chunking": json.dumps(config.DEFAULT_CDC_OPTIONS)})
        self._writer.close()
        self._writer = None
        crash_point("writer.shard_closed")  # test-only (trl_mig.crash): a kill between two shards

    def close(self) -> list[Path]:
        """Write what is queued and name the files `<split>-i-of-n.parquet`; an empty split is one file with no rows.

        Returns:
            the final paths, in order.
        """
        if self._pending or self._writer is not None or not self.files:
            self._flush()
        if self._writer is not None:
            self._close_file()
        n = len(self.files)
        final = [self.folder / f"{self.split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
        for path, target in zip(self.files, final):
            path.rename(target)
        self.files = final
        return final


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(output_dir: str | Path) -> list[Path]:
    """Remove the hidden folders a killed build left beside `output_dir` (`.NAME.partial-PID-*`: a set being
    written; `.NAME.old-PID-*`: a replaced set being removed), when process PID is gone. A `kill -9` runs no cleanup,
    so these are what it leaves; they are never read, only big. Folders of a live process are kept.
    """
    output_dir = Path(output_dir)
    if not output_dir.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(output_dir.name)}\.(?:partial|old)-(\d+)-")
    removed = []
    for path in output_dir.parent.iterdir():
        match = pattern.match(path.name)
        if match and path.is_dir() and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        logger.info("removed %d folder(s) left by an interrupted build of %s", len(removed), output_dir)
    return removed


@contextmanager
def staging_dir(output_dir: str | Path) -> Iterator[Path]:
    """A fresh folder beside `output_dir` to write a set into; moved onto `output_dir` (replacing it) when the block
    ends normally, removed when it raises. Why beside: the final `rename` stays on one file system, hence atomic.

    Crash safety (a `kill -9` runs no cleanup): at any moment `output_dir` is either absent, the old set whole, or the
    new set whole. An old set is first renamed aside (`.NAME.old-PID-*`), then the new one renamed in, then the old
    one removed; a kill between the two renames leaves no `output_dir` (rerun the build). Hidden folders a killed
    build left are removed by the next build of the same `output_dir` (`remove_stale_staging`).

    The caller checks first that `output_dir` may be replaced (empty, or `--overwrite`).
    """
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output_dir)
    pid = os.getpid()
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-{pid}-", dir=output_dir.parent))
    old = aside = None
    try:
        yield staging
        crash_point("writer.before_swap")  # test-only (trl_mig.crash): the set complete in staging, not moved
        if output_dir.exists() or output_dir.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.old-{pid}-", dir=output_dir.parent))
            aside = old / "set"
            output_dir.rename(aside)
            crash_point("writer.old_set_aside")
        staging.rename(output_dir)
    except BaseException:
        if aside is not None and aside.exists() and not output_dir.exists():
            aside.rename(output_dir)  # the new set did not go in: put the old one back
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_dataset(
    splits: Mapping[str, list[dict[str, Any]]],
    output_dir: str | Path,
    features: Any,
    card: str,
    *,
    overwrite: bool = False,
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> dict[str, int]:
    """Write `splits` (split -> rows) as parquet shards plus `card` as `README.md`, atomically.

    Args:
        splits: rows per split; images may be PIL images, paths or `{"bytes": ..., "path": ...}` dicts.
        output_dir: destination; refused when it exists and is not empty unless `overwrite=True`.
        features (`datasets.Features`): the schema (`trl_mig.schema.features(...)`).
        card (`str`): the dataset card (`render_dataset_card`).
        shard_rows (`int`): rows per parquet file.

    Returns:
        rows written per split.
    """
    from datasets import Dataset

    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ValueError(f"{output_dir} exists and is not empty; pass overwrite=True (`--overwrite`) to replace it")
    counts: dict[str, int] = {}
    with staging_dir(output_dir) as staging:
        (staging / "data").mkdir()
        for split, rows in splits.items():
            rows = list(rows)
            if rows:
                dataset = Dataset.from_list(rows, features=features)
            else:  # an empty split (e.g. no prompt in the RL band) is still a valid, loadable split
                dataset = Dataset.from_dict({name: [] for name in features}, features=features)
            n_shards = max(1, -(-len(dataset) // shard_rows))
            for i in range(n_shards):
                shard = dataset.shard(n_shards, i, contiguous=True)
                shard.to_parquet(str(staging / "data" / f"{split}-{i:05d}-of-{n_shards:05d}.parquet"))
            counts[split] = len(dataset)
        (staging / "README.md").write_text(card)
    logger.info("wrote %s: %s", output_dir, counts)
    return counts


def count_by(rows: Iterable[Mapping[str, Any]], key: str) -> dict[str, int]:
    """Rows per value of `key` (for the card's per-task table)."""
    return dict(Counter(str(row[key]) for row in rows))


def schema_rows(source: Any, indices: Iterable[int]) -> list[dict[str, Any]]:
    """Rows `indices` of a schema split as dicts with the base schema columns only (rendered and set-specific columns
    dropped) and images as undecoded `{"bytes", "path"}`, so derived sets copy image bytes without re-encoding."""
    from datasets import Image, List

    from trl_mig.schema import features

    columns = [c for c in features() if c in source.column_names]
    rows = source.select_columns(columns).cast_column("images", List(Image(decode=False)))
    return rows.select(list(indices)).to_list()
