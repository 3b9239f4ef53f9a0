"""`ddp_timeout` of `trl-mig sample`, `eval` and `synthesize-cot`: how long a process waits for the others.

The three loops build accelerate's `PartialState` themselves (they are not `Trainer`s, whose
`TrainingArguments.ddp_timeout` does the same). accelerate 1.15 passes `PartialState(timeout=...)` to
`torch.distributed.init_process_group`, and gloo bounds every collective by it, barriers included.

What the two-process tests show (gloo on CPU, both processes on this host):
- a peer killed with `kill -9` closes its sockets: the others' next barrier fails at once ("Connection closed by
  peer" or "reset by peer"), whatever the timeout;
- a peer that hangs (here: stopped with `SIGSTOP`; in real life a deadlock or a host gone without closing its
  connections) is only noticed after `ddp_timeout` seconds ("Timed out waiting 20000ms"); without the setting, torch's
  default of 30 minutes.

The processes are started here with the variables `torchrun` sets, not through `accelerate launch`: its elastic agent
stops every process as soon as one dies, which would hide what the surviving processes do on their own (and, on a
hang, sees nothing to act on).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_crash_safety import ENV

from trl_mig.crash import ENV_VAR
from trl_mig.datasets_builders import synthetic
from trl_mig.testing import tiny_checkpoint


TIMEOUT = 20  # seconds: the `--ddp_timeout` of the two-process runs


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(root=tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("source") / "pool"
    synthetic.build(synthetic.BuildArguments(output_dir=str(out), num_train=12, num_test=0, seed=3))
    return out


def eval_args(checkpoint: Path, source_dir: Path, out: Path) -> list[str]:
    # one row per batch: each process writes a line of its part file per row, the sign the group is up
    return ["eval", "--model", checkpoint, "--benchmark", "schema", "--data", source_dir, "--split", "train",
            "--output_dir", out, "--max_new_tokens", "8", "--batch_size", "1", "--gallery", "0", "--use_cpu",
            "--backend", "hf", "--ddp_timeout", str(TIMEOUT)]  # fmt: skip


def start_two_processes(
    args: list[object], env_of_rank: dict[int, dict[str, str]], logs: Path
) -> list[subprocess.Popen]:
    """`trl-mig ARGS` as ranks 0 and 1 of a 2-process gloo group (the variables `torchrun` sets), no agent. Output goes
    to `logs/rank-N.log` (a pipe nobody reads while the test polls could fill up and block a process)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logs.mkdir(parents=True, exist_ok=True)
    processes = []
    for rank in (0, 1):
        env = ENV | {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}  # fmt: skip
        with open(logs / f"rank-{rank}.log", "w") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "trl_mig.cli", *map(str, args)],
                    env=env | env_of_rank.get(rank, {}),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return processes


def wait_for(process: subprocess.Popen, seconds: float, log: Path) -> tuple[int | None, str, float]:
    """(exit code or `None` if still running after `seconds`, the process's output, seconds waited)."""
    started = time.monotonic()
    try:
        code = process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        code = None
    return code, log.read_text(errors="replace"), time.monotonic() - started


def stop_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()  # SIGKILL also ends a stopped process
            process.wait()


def test_a_hung_peer_fails_the_others_after_ddp_timeout(tmp_path, checkpoint, source_dir):
    out = tmp_path / "eval"
    processes = start_two_processes(eval_args(checkpoint, source_dir, out), {}, tmp_path / "logs")
    try:
        part = out / "predictions.part-1.jsonl"
        deadline = time.monotonic() + 120
        while not (part.is_file() and part.stat().st_size) and time.monotonic() < deadline:
            assert all(p.poll() is None for p in processes), (tmp_path / "logs" / "rank-0.log").read_text()[-3000:]
            time.sleep(0.05)
        assert part.is_file(), "rank 1 answered nothing in 120 s"
        # the group is up and rank 1 has rows to go: rank 0 hangs wherever it is, before the last barrier
        os.kill(processes[0].pid, signal.SIGSTOP)
        code, output, waited = wait_for(processes[1], TIMEOUT + 60, tmp_path / "logs" / "rank-1.log")
        assert code is not None, f"rank 1 still waiting {waited:.0f} s after its peer hung (ddp_timeout {TIMEOUT} s)"
        assert code != 0 and f"Timed out waiting {TIMEOUT * 1000}ms" in output, output[-3000:]
        assert not (out / "results.json").exists()
    finally:
        stop_all(processes)


def test_a_killed_peer_fails_the_others_at_once(tmp_path, checkpoint, source_dir):
    """Rank 0 killed after every answer is written, before the merge: rank 1, at the barrier that waits for the merge,
    fails at once (gloo sees the closed connection), long before any timeout."""
    out = tmp_path / "eval"
    args = [*eval_args(checkpoint, source_dir, out)[:-1], "1800"]  # the default: the timeout plays no part
    processes = start_two_processes(args, {0: {ENV_VAR: "eval.before_merge"}}, tmp_path / "logs")
    try:
        code, output, _ = wait_for(processes[0], 180, tmp_path / "logs" / "rank-0.log")
        assert code == -signal.SIGKILL, output[-3000:]
        code, output, waited = wait_for(processes[1], 30, tmp_path / "logs" / "rank-1.log")
        assert code is not None and code != 0, f"rank 1 still running {waited:.0f} s after its peer was killed"
        assert "Connection closed by peer" in output or "Connection reset by peer" in output, output[-3000:]
    finally:
        stop_all(processes)


# ---------------------------------------------------------------------------------------------------------------------
# the setting reaches accelerate in each loop


class _Recorded(Exception):
    pass


@pytest.fixture
def partial_state_kwargs(monkeypatch) -> dict:
    """`accelerate.PartialState` replaced by a recorder that stops the caller once it has its arguments."""
    import accelerate

    seen: dict = {}

    def record(**kwargs):
        seen.update(kwargs)
        raise _Recorded

    monkeypatch.setattr(accelerate, "PartialState", record)
    return seen


def test_sampler_passes_ddp_timeout(partial_state_kwargs):
    from trl_mig.sampling.config import RejectionSamplingConfig
    from trl_mig.sampling.sampler import RejectionSampler

    config = RejectionSamplingConfig(model_name_or_path="m", dataset_name="d", use_cpu=True, ddp_timeout=7)
    with pytest.raises(_Recorded):
        RejectionSampler(config)._state()
    assert partial_state_kwargs["timeout"].total_seconds() == 7 and partial_state_kwargs["cpu"] is True


def test_eval_passes_ddp_timeout(partial_state_kwargs):
    from trl_mig.evaluation.runner import EvalArguments, evaluate_model

    with pytest.raises(_Recorded):
        evaluate_model(EvalArguments(model="m", benchmark="schema", data="d", use_cpu=True, ddp_timeout=9))
    assert partial_state_kwargs["timeout"].total_seconds() == 9


def test_synthesis_passes_ddp_timeout(partial_state_kwargs, monkeypatch):
    from trl_mig.synthesis import synthesizer

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(_Recorded):
        synthesizer._distributed_state(11)
    assert partial_state_kwargs["timeout"].total_seconds() == 11


def test_ddp_timeout_must_be_positive():
    from trl_mig.evaluation.runner import EvalArguments
    from trl_mig.sampling.config import RejectionSamplingConfig
    from trl_mig.synthesis.config import SynthesisConfig

    for make in (lambda: RejectionSamplingConfig(ddp_timeout=0), lambda: SynthesisConfig(ddp_timeout=-1),
                 lambda: EvalArguments(model="m", ddp_timeout=0)):  # fmt: skip
        with pytest.raises(ValueError, match="ddp.timeout must be > 0 seconds"):
            make()
    assert RejectionSamplingConfig().ddp_timeout == SynthesisConfig().ddp_timeout == 1800  # TrainingArguments' default
