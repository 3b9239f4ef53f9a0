"""Deterministic crash points: test-only plumbing to prove that long jobs survive `kill -9` at a chosen moment.

A job calls `crash_point("sample.chunk_done")` at each moment where a kill is dangerous (a shard generated but not
written, a temporary file written but not renamed, a merge written but its parts not removed, ...). Normally this is
a no-op costing one comparison. When the environment variable `TRL_MIG_CRASH_AT` names the point, as `name` (the
first time it is reached) or `name:K` (the K-th time in this process, 1-based), the process sends itself `SIGKILL`:
a real `kill -9`, so no `finally`, no `atexit`, no buffered-file flush runs. Tests then rerun the job without the
variable and check that the result equals an uninterrupted run's, with nothing lost or duplicated.

Never set `TRL_MIG_CRASH_AT` outside tests. The points in use (`grep -rn crash_point trl_mig datasets_builders`):

| point | where |
|---|---|
| `atomic_write.before_rename`, `<label>.before_rename` | `io_utils.atomic_write`: temp file written + fsynced, not renamed |
| `sample.chunk_generated` / `sample.chunk_done` | sampler: a chunk sampled, shard not written / shard written |
| `sample.shard.before_rename` | sampler: shard's temp file written, not renamed |
| `sample.before_build` / `sample.after_build` | sampler: every shard written, RL set not built / built, run record not written |
| `synthesize.chunk_answered` / `synthesize.chunk_done` | CoT synthesis: same as the sampler's |
| `synthesize.shard.before_rename`, `synthesize.before_build` / `synthesize.after_build` | CoT synthesis |
| `eval.before_append` / `eval.after_append` | eval: a batch answered, not appended / appended |
| `eval.mid_line` | eval: half of a batch's lines written (the last one cut), fsynced |
| `eval.before_merge`, `eval.merge.before_rename`, `eval.merge_before_unlink` | eval: around `_merge` |
| `writer.shard_closed` | `ParquetShardWriter`: a parquet file closed, the next not started |
| `writer.before_swap` / `writer.old_set_aside` | `staging_dir`: the set complete in staging / the old set renamed aside, the new one not yet in place |
| `train_step` | `trl-mig sft` / `grpo`: end of each optimizer step (`on_step_end`), before its checkpoint save |
"""

from __future__ import annotations

import os
import signal
from collections import Counter


__all__ = ["ENV_VAR", "crash_point"]

ENV_VAR = "TRL_MIG_CRASH_AT"


def _parse(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    name, sep, count = value.rpartition(":")
    if sep and count.isdigit():
        return name, max(int(count), 1)
    return value, 1


_TARGET = _parse(os.environ.get(ENV_VAR))
_SEEN: Counter = Counter()


def crash_point(name: str) -> None:
    """Kill this process with `SIGKILL` if `TRL_MIG_CRASH_AT` is `name` or `name:K` and this is the K-th time `name`
    is reached in this process; else do nothing (the variable is read once, at import).

    Example:
    ```python
    >>> crash_point("sample.chunk_done")  # TRL_MIG_CRASH_AT unset: nothing happens

    ```
    """
    if _TARGET is None or name != _TARGET[0]:
        return
    _SEEN[name] += 1
    if _SEEN[name] == _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def wants(prefix: str) -> bool:
    """Whether `TRL_MIG_CRASH_AT` names a point starting with `prefix` (to install a hook only when asked for)."""
    return _TARGET is not None and _TARGET[0].startswith(prefix)
