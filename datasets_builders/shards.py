"""Raw shards of long resumable jobs (rejection sampling, CoT synthesis): the files their builders read.

A job cuts its source split into chunks of consecutive rows. Each chunk's records are written as one JSON-lines file,
renamed into place only when complete (`trl_mig.io_utils.atomic_write`), so a chunk file exists whole or not at all:
after a kill, a rerun does the missing chunks only, and no row is lost or written twice. `plan.json` records what the
job was asked to do; a rerun under another plan is refused instead of mixing two runs in one folder.

After a `kill -9` (no cleanup runs) a folder may also hold a hidden `.chunk-*.tmp` (removed by the next run,
`remove_stale_temp_files`) and `output_claim.json` (the job was writing its final set: `claim_output`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from trl_mig.io_utils import atomic_write


__all__ = [
    "PLAN_FILE",
    "check_plan",
    "claim_output",
    "done_chunks",
    "read_plan",
    "read_records",
    "release_output",
    "remove_stale_temp_files",
    "shard_path",
    "write_shard",
]

PLAN_FILE = "plan.json"
SHARD_PREFIX = "chunk-"
SHARD_SUFFIX = ".jsonl"


def shard_path(directory: str | os.PathLike, chunk: int) -> Path:
    return Path(directory) / f"{SHARD_PREFIX}{chunk:06d}{SHARD_SUFFIX}"


def _chunk_of(path: Path) -> int | None:
    name = path.name
    if not (name.startswith(SHARD_PREFIX) and name.endswith(SHARD_SUFFIX)):
        return None
    digits = name[len(SHARD_PREFIX) : -len(SHARD_SUFFIX)]
    return int(digits) if digits.isdigit() else None


def done_chunks(directory: str | os.PathLike) -> set[int]:
    """Chunks whose shard file is complete (files are renamed into place only when written in full)."""
    directory = Path(directory)
    if not directory.is_dir():
        return set()
    return {chunk for path in directory.iterdir() if (chunk := _chunk_of(path)) is not None}


def write_shard(
    directory: str | os.PathLike, chunk: int, records: Iterable[Mapping[str, Any]], *, label: str | None = None
) -> Path:
    """Write one chunk's records as JSON lines, atomically (serialised first: a bad record writes nothing).

    `label` prefixes the crash point between the temp file and its rename (`<label>.shard.before_rename`, test-only).
    """
    target = shard_path(directory, chunk)
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    return atomic_write(
        target, lambda handle: handle.write(lines.encode("utf-8")), label=f"{label}.shard" if label else None
    )


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove the hidden temporary files (`.chunk-*.tmp`, `.plan.json.*.tmp`) a `kill -9` left between an
    `atomic_write`'s write and its rename. They are never read (`done_chunks` ignores them); this only keeps a resumed
    folder clean. Call it from one process, before any process of the job starts writing shards.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def read_records(
    directory: str | os.PathLike, required: Sequence[str] = ("id",), what: str = "shard"
) -> dict[str, dict[str, Any]]:
    """Every record of the complete shards, by `id`, in chunk order.

    Raises:
        `FileNotFoundError`: no shard in `directory`.
        `ValueError`: a line that is not JSON or lacks a `required` key (naming file and line), or an id that two
            shards both hold (shards of two different runs mixed in one folder).
    """
    directory = Path(directory)
    chunks = sorted(done_chunks(directory))
    if not chunks:
        raise FileNotFoundError(f"no {what} shards ({SHARD_PREFIX}*{SHARD_SUFFIX}) in {directory}")
    records: dict[str, dict[str, Any]] = {}
    where: dict[str, str] = {}
    for chunk in chunks:
        path = shard_path(directory, chunk)
        with path.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{line_no}: not a JSON line ({exc})") from exc
                missing = [k for k in required if k not in record]
                if missing:
                    raise ValueError(f"{path}:{line_no}: {what} record lacks {missing}")
                rid = str(record["id"])
                if rid in records:
                    raise ValueError(
                        f"id {rid!r} is in both {where[rid]} and {path.name}: shards of two runs are mixed in "
                        f"{directory}; start again in an empty folder"
                    )
                records[rid] = record
                where[rid] = path.name
    return records


def read_plan(directory: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(directory) / PLAN_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def check_plan(directory: str | os.PathLike, plan: Mapping[str, Any], restart_flag: str = "--resample") -> None:
    """Write `plan`, or check that the shards already in `directory` were made under the same one.

    Raises:
        `ValueError`: the folder holds shards of another plan (naming the keys that differ), or shards without a plan.
    """
    directory = Path(directory)
    existing = read_plan(directory)
    plan = json.loads(json.dumps(dict(plan)))  # as it reads back from JSON (tuples become lists)
    if existing is not None and existing != plan:
        keys = sorted(k for k in set(plan) | set(existing) if plan.get(k) != existing.get(k))
        raise ValueError(
            f"{directory} holds shards made with other settings (different: {', '.join(keys)}); resume with the same "
            f"settings, pass {restart_flag} to discard them, or choose another folder"
        )
    if existing is None and done_chunks(directory):
        raise ValueError(f"{directory} holds shards but no {PLAN_FILE}; pass {restart_flag} or choose another folder")
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / PLAN_FILE, lambda handle: handle.write(json.dumps(plan, indent=2).encode()))


CLAIM_FILE = "output_claim.json"


def claim_output(directory: str | os.PathLike, output_dir: str | os.PathLike, overwrite: bool) -> bool:
    """Whether the job whose shards are in `directory` may write its set into `output_dir`, recording that it may.

    Why: the set is written (atomically) before the job's last bookkeeping; a job killed in between finds, on its
    rerun, an `output_dir` that it wrote itself and that `overwrite=False` would refuse. So before writing, the job
    records `CLAIM_FILE` naming `output_dir` when it is allowed to write there (`overwrite`, or `output_dir` absent or
    empty); a rerun that finds the claim may replace the set (rebuilt from the same shards, it is the same set).
    `release_output` drops the claim once the job is done. Returns `False` (recording nothing) when the job may not
    write there: the writer then refuses as usual.
    """
    path, target = Path(directory) / CLAIM_FILE, str(Path(output_dir).resolve())
    claimed = path.is_file() and json.loads(path.read_text()).get("output_dir") == target
    output_dir = Path(output_dir)
    free = not output_dir.exists() or (output_dir.is_dir() and not any(output_dir.iterdir()))
    if claimed or overwrite or free:
        if not claimed:
            text = json.dumps({"output_dir": target})
            atomic_write(path, lambda handle: handle.write(text.encode()))
        return True
    return False


def release_output(directory: str | os.PathLike) -> None:
    """Drop the claim of `claim_output` (the job finished its bookkeeping)."""
    (Path(directory) / CLAIM_FILE).unlink(missing_ok=True)


def load_planned_source(
    directory: str | os.PathLike, source: str | None, config: str | None, split: str | None
) -> tuple[Any, str]:
    """The split a job's shards were made from: the explicit `source`/`config`/`split`, else what `plan.json` names.

    Returns `(dataset, source name)`; raises `ValueError` when neither names a source.
    """
    from .reader import load_schema_dataset

    plan = read_plan(directory) or {}
    source = source or plan.get("dataset")
    if not source:
        raise ValueError(f"--source is required: {directory} has no {PLAN_FILE} naming the dataset")
    dataset = load_schema_dataset(
        source, config or plan.get("dataset_config"), split=split or plan.get("split") or "train"
    )
    return dataset, source
