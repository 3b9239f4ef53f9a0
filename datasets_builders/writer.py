"""Writing a schema dataset: parquet shards + dataset card, all or nothing.

Every builder ends here. The set is written into a temporary folder beside `output_dir` and moved into place only
when every split and the card are written, so an interrupted or failing build never leaves half a dataset behind.
Layout (DESIGN.md section 3): `OUT/README.md` + `OUT/data/<split>-<i>-of-<n>.parquet`, readable by
`datasets.load_dataset(OUT)`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from trl_mig import __version__
from trl_mig.hub_cards import TEMPLATES_DIR


logger = logging.getLogger(__name__)

#: rows per parquet shard: small enough to stream, large enough to keep file counts low
DEFAULT_SHARD_ROWS = 2000

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
) -> str:
    """Render `hub_cards/dataset_card.md.j2` with `huggingface_hub`'s card machinery (metadata validated as YAML).

    `extra_tables` maps a section title to `{"columns": [...], "rows": [[...], ...], "note": "..."}` (note optional),
    e.g. the rejection sampler's kept/dropped counts per task.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    splits = list(split_rows)
    card_data = DatasetCardData(
        license=license,
        pretty_name=pretty_name,
        tags=["trl-mig", "multi-image", "grounding"],
        task_categories=["image-text-to-text"],
        configs=[
            {"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in splits]}
        ],
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
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    try:
        (staging / "data").mkdir()
        counts: dict[str, int] = {}
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
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
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
