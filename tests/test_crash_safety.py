"""Crash safety: every long job killed with a real `kill -9` at chosen moments, then resumed, ends with the outputs of
an uninterrupted run, nothing lost and nothing duplicated.

The kills are deterministic: the job runs as a real `trl-mig` subprocess with `TRL_MIG_CRASH_AT=point[:K]`, and
`trl_mig.crash.crash_point` sends the process `SIGKILL` when it reaches that point for the K-th time (no cleanup, no
atexit, no flush). Each test chains several kills (each resume is killed again at a later point), checks what a
reader would see after each kill (no half-written shard, no partial output folder), then resumes without the
variable and compares with an uninterrupted run: shards and `predictions.jsonl` byte for byte, parquet sets as
tables, training as losses and weights.

Runtime: every killed run is a fresh interpreter (importing torch/transformers/trl costs most of its ~8 s), so each
chain is kept short; the uninterrupted references and the final resumes run in this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trl_mig.crash import ENV_VAR
from trl_mig.datasets_builders import synthetic
from trl_mig.datasets_builders.shards import CLAIM_FILE, done_chunks, read_records
from trl_mig.testing import tiny_checkpoint


ENV = {k: v for k, v in os.environ.items() if k != ENV_VAR} | {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRL_MIG_DISABLE_PROGRESS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def killed_at(point: str, *args: str) -> subprocess.CompletedProcess:
    """Run `trl-mig ARGS` in a fresh interpreter with `TRL_MIG_CRASH_AT=point`; assert that it died of SIGKILL."""
    process = subprocess.run(
        [sys.executable, "-m", "trl_mig.cli", *map(str, args)], env=ENV | {ENV_VAR: point}, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert process.returncode == -signal.SIGKILL, f"{point}: exit {process.returncode}\n{process.stderr[-3000:]}"
    return process


def run_here(*args: str) -> None:
    """Run `trl-mig ARGS` in this process (the uninterrupted references and the final resumes)."""
    from trl_mig.cli import main

    assert main([str(a) for a in args]) == 0


def parquet_tables(folder: Path) -> dict[str, object]:
    import pyarrow.parquet as pq

    return {str(p.relative_to(folder)): pq.read_table(p) for p in sorted(folder.rglob("*.parquet"))}


def assert_same_set(got: Path, want: Path) -> None:
    """Two built sets hold the same files, the same tables (compared as tables) and the same card."""
    assert sorted(str(p.relative_to(got)) for p in got.rglob("*")) == sorted(
        str(p.relative_to(want)) for p in want.rglob("*")
    )
    got_tables, want_tables = parquet_tables(got), parquet_tables(want)
    assert list(got_tables) == list(want_tables) and got_tables
    for name, table in got_tables.items():
        assert table.equals(want_tables[name]), name
    assert (got / "README.md").read_text() == (want / "README.md").read_text()


def assert_same_shards(got: Path, want: Path) -> None:
    """Same chunk files, byte for byte, and nothing else left behind (no temp file, no claim)."""
    chunks = sorted(p.name for p in want.glob("chunk-*.jsonl"))
    assert chunks and sorted(p.name for p in got.glob("chunk-*.jsonl")) == chunks
    for name in chunks:
        assert (got / name).read_bytes() == (want / name).read_bytes(), name
    assert (got / "plan.json").read_bytes() == (want / "plan.json").read_bytes()
    assert not [p.name for p in got.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert not (got / CLAIM_FILE).exists()
    read_records(got)  # one record per id over all shards: nothing duplicated


def assert_no_partial_set(out: Path) -> None:
    """What a reader sees of a set after a kill: nothing, or a complete set (card + parquet)."""
    if out.exists():
        assert (out / "README.md").is_file() and list(out.rglob("*.parquet")), sorted(out.rglob("*"))
        assert not [p for p in out.rglob("*") if p.name.startswith(".")]


@pytest.fixture(scope="module", autouse=True)
def _quiet_progress():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRL_MIG_DISABLE_PROGRESS", "1")
        patch.delenv(ENV_VAR, raising=False)
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(root=tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("source") / "pool"
    synthetic.build(synthetic.BuildArguments(output_dir=str(out), num_train=6, num_test=0, seed=3))
    return out


def test_crash_point_kills_at_the_kth_time_and_is_a_no_op_otherwise():
    script = (
        "from trl_mig.crash import crash_point\nfor i in range(4):\n    crash_point('here')\n    print(i, flush=True)"
    )
    for value, rc, out in (("here:3", -signal.SIGKILL, "0\n1\n"), ("here", -signal.SIGKILL, ""),
                           ("elsewhere", 0, "0\n1\n2\n3\n")):  # fmt: skip
        done = subprocess.run([sys.executable, "-c", script], env=ENV | {ENV_VAR: value}, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert (done.returncode, done.stdout) == (rc, out), (value, done.stderr)


# ---------------------------------------------------------------------------------------------------------------------
# rejection sampling


def sample_args(checkpoint: Path, source_dir: Path, out: Path) -> list[str]:
    return ["sample", "--model_name_or_path", checkpoint, "--dataset_name", source_dir, "--output_dir", out,
            "--num_generations", "2", "--max_new_tokens", "8", "--chunk_size", "2", "--batch_size", "2", "--use_cpu",
            "--backend", "hf", "--seed", "7", "--include_min"]  # fmt: skip


@pytest.mark.parametrize(
    "chain",
    [
        # chunk 0 written, chunk 1 sampled and its temp file written but not renamed; then every shard written and
        # the RL set built, but the run record not written (the rerun must not refuse its own output_dir)
        ("sample.shard.before_rename:2", "sample.after_build"),
    ],
)
def test_sampler_killed_and_resumed(tmp_path, checkpoint, source_dir, chain):
    reference = tmp_path / "reference" / "rl"
    run_here(*sample_args(checkpoint, source_dir, reference))
    out = tmp_path / "killed" / "rl"
    samples = Path(f"{out}-samples")
    for point in chain:
        killed_at(point, *sample_args(checkpoint, source_dir, out))
        read_records(samples)  # every shard on disk reads whole
        assert_no_partial_set(out)
    assert done_chunks(samples) == {0, 1, 2} and (samples / CLAIM_FILE).is_file()
    run_here(*sample_args(checkpoint, source_dir, out))
    assert_same_shards(samples, Path(f"{reference}-samples"))
    assert_same_set(out, reference)
    run = json.loads((samples / "last_run.json").read_text())
    assert run["prompts"] == 6 and run["kept"] == 6


# ---------------------------------------------------------------------------------------------------------------------
# CoT synthesis: a stateless scripted teacher on loopback (its reply depends on the question and the try only)


def teacher_reply(row, attempt: int) -> str:
    from trl_mig.templates import render_answer

    if attempt != row["position"] % 2:  # right at try 1 or 2
        return "<think>hmm</think><answer>no box</answer>"
    answer = render_answer(row["solution"], row["target_image"], "qwen2_5_vl", row["image_sizes"])
    box = json.loads(answer)["bbox_2d"]
    return f"<think>In image {row['target_image'][0] + 1} the target is at {box}.</think><answer>{answer}</answer>"


@pytest.fixture(scope="module")
def teacher(source_dir):
    from trl_mig.datasets_builders.reader import load_schema_dataset
    from trl_mig.scoring import FrameSpec
    from trl_mig.synthesis import get_teacher_template

    template = get_teacher_template("teacher-cot-v1")
    rows = load_schema_dataset(str(source_dir), split="train")
    by_text = {}
    for i, row in enumerate(rows):
        by_text[template.prompt(row, FrameSpec("qwen2_5_vl"))[-1]["content"][-1]["text"]] = {**row, "position": i}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = next(p["text"] for p in body["messages"][-1]["content"] if p["type"] == "text")
            reply = teacher_reply(by_text[text], body["seed"] % 1000)  # seed = base + 1000 * row + try
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply},
                                               "finish_reason": "stop"}]}).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def synthesis_args(source_dir: Path, base_url: str, out: Path) -> list[str]:
    return ["synthesize-cot", "--dataset_name", source_dir, "--base_url", base_url, "--teacher_model", "teacher",
            "--num_tries", "2", "--chunk_size", "2", "--max_in_flight", "2", "--max_retries", "0", "--output_dir", out,
            "--api_key_env", "NO_SUCH_KEY_VAR"]  # fmt: skip


@pytest.mark.parametrize(
    "chain",
    [
        # chunk 0 answered but not written; then chunk 1's temp file written, not renamed; then the set built and
        # the claim not released
        ("synthesize.chunk_answered:1", "synthesize.shard.before_rename:2", "synthesize.after_build"),
        # two chunks written, then every chunk written and the claim taken, the set not yet written
        ("synthesize.chunk_done:2", "synthesize.before_build"),
    ],
)
def test_synthesis_killed_and_resumed(tmp_path, source_dir, teacher, chain):
    reference = tmp_path / "reference" / "cot"
    run_here(*synthesis_args(source_dir, teacher, reference))
    out = tmp_path / "killed" / "cot"
    shards = Path(f"{out}-shards")
    for point in chain:
        killed_at(point, *synthesis_args(source_dir, teacher, out))
        if done_chunks(shards):
            read_records(shards, what="CoT")
        assert_no_partial_set(out)
    run_here(*synthesis_args(source_dir, teacher, out))
    assert_same_shards(shards, Path(f"{reference}-shards"))
    assert_same_set(out, reference)


# ---------------------------------------------------------------------------------------------------------------------
# evaluation


def eval_args(checkpoint: Path, source_dir: Path, out: Path) -> list[str]:
    return ["eval", "--model", checkpoint, "--benchmark", "schema", "--data", source_dir, "--split", "train",
            "--output_dir", out, "--max_new_tokens", "8", "--batch_size", "2", "--gallery", "0", "--use_cpu",
            "--backend", "hf"]  # fmt: skip


def predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def eval_reference(tmp_path_factory, checkpoint, source_dir) -> Path:
    out = tmp_path_factory.mktemp("eval") / "reference"
    run_here(*eval_args(checkpoint, source_dir, out))
    return out


def assert_same_eval(got: Path, want: Path) -> None:
    assert (got / "predictions.jsonl").read_bytes() == (want / "predictions.jsonl").read_bytes()
    ids = [line["id"] for line in predictions(got / "predictions.jsonl")]
    assert len(ids) == len(set(ids)) == 6
    assert not list(got.glob("predictions.part-*")) and not [p for p in got.iterdir() if p.name.startswith(".")]
    results, expected = (json.loads((d / "results.json").read_text()) for d in (got, want))
    for key in ("overall", "tasks", "flags"):
        assert results[key] == expected[key], key


@pytest.mark.parametrize(
    "chain",
    [
        # batch 1 appended, batch 2 half written (a cut last line, repaired by the rerun); then every answer
        # merged into predictions.jsonl atomically, the part files (none with one process) not yet removed
        ("eval.mid_line:2", "eval.merge_before_unlink"),
    ],
)
def test_eval_killed_and_resumed(tmp_path, checkpoint, source_dir, eval_reference, chain):
    out = tmp_path / "killed"
    from trl_mig.evaluation.runner import read_predictions

    complete = []
    for point in chain:
        killed_at(point, *eval_args(checkpoint, source_dir, out))
        complete.append(len(read_predictions(out / "predictions.jsonl", repair=False)))
    assert 2 <= complete[0] < 6 and complete[-1] == 6 and not (out / "results.json").exists()
    run_here(*eval_args(checkpoint, source_dir, out))
    assert json.loads((out / "results.json").read_text())["meta"]["generated"] == 0
    assert_same_eval(out, eval_reference)


def test_eval_merge_killed_before_removing_parts_is_idempotent(tmp_path, checkpoint, source_dir, eval_reference):
    """What a two-process run killed between the merge's atomic write and the parts' removal leaves: a complete
    `predictions.jsonl` beside the part files (one with a cut last line). The rerun answers nothing, merges again
    and ends with one line per id."""
    out = tmp_path / "parts"
    out.mkdir()
    lines = (eval_reference / "predictions.jsonl").read_text().splitlines(keepends=True)
    (out / "eval_plan.json").write_bytes((eval_reference / "eval_plan.json").read_bytes())
    (out / "predictions.jsonl").write_text("".join(lines))
    (out / "predictions.part-0.jsonl").write_text("".join(lines[0::2]))
    (out / "predictions.part-1.jsonl").write_text("".join(lines[1::2]) + lines[1][: len(lines[1]) // 2])
    run_here(*eval_args(checkpoint, source_dir, out))
    assert json.loads((out / "results.json").read_text())["meta"]["generated"] == 0
    assert_same_eval(out, eval_reference)


# ---------------------------------------------------------------------------------------------------------------------
# a dataset builder


def build_args(out: Path, *extra: str) -> list[str]:
    return ["build", "synthetic", "--output_dir", out, "--num_train", "20", "--num_test", "4", "--shard_rows", "6",
            "--seed", "5", *extra]  # fmt: skip


def test_builder_killed_mid_way_leaves_no_partial_set(tmp_path):
    reference = tmp_path / "reference" / "set"
    run_here(*build_args(reference))
    assert len(list((reference / "data").glob("train-*.parquet"))) == 4
    out = tmp_path / "killed" / "set"
    # between two parquet shards of the first split: nothing visible, only the hidden staging folder
    killed_at("writer.shard_closed:2", *build_args(out))
    (first,) = out.parent.iterdir()
    assert not out.exists() and first.name.startswith(".set.partial-")
    # the set complete in staging, not yet renamed into place: still nothing visible (the first run's staging
    # folder, whose process is gone, was removed when the second run started)
    killed_at("writer.before_swap", *build_args(out))
    (second,) = out.parent.iterdir()
    assert not out.exists() and second.name.startswith(".set.partial-") and second != first
    run_here(*build_args(out))
    assert [p.name for p in out.parent.iterdir()] == ["set"]  # the killed runs' staging folders were removed
    assert_same_set(out, reference)
    # replacing a set (--overwrite): killed with the old set set aside and the new one complete in staging
    killed_at("writer.old_set_aside", *build_args(out, "--overwrite", "--seed", "6"))
    assert not out.exists() and not [p for p in out.parent.iterdir() if not p.name.startswith(".")]
    run_here(*build_args(out, "--overwrite"))
    assert [p.name for p in out.parent.iterdir()] == ["set"]
    assert_same_set(out, reference)


def test_staging_dir_swap_keeps_the_old_set_when_the_new_one_fails(tmp_path):
    from trl_mig.datasets_builders.writer import staging_dir

    out = tmp_path / "set"
    out.mkdir()
    (out / "README.md").write_text("old")
    with pytest.raises(RuntimeError), staging_dir(out) as staging:
        (staging / "README.md").write_text("new")
        raise RuntimeError("disk full")
    assert (out / "README.md").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["set"]
    with staging_dir(out) as staging:
        (staging / "README.md").write_text("new")
    assert (out / "README.md").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["set"]


# ---------------------------------------------------------------------------------------------------------------------
# training: killed after step 3, resumed from checkpoint-2


def sft_args(checkpoint: Path, source_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["sft", "--model_name_or_path", checkpoint, "--dataset_name", source_dir, "--output_dir", out,
            "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--per_device_train_batch_size", "2",
            "--learning_rate", "1e-3", "--lora_r", "8", "--lora_alpha", "16",
            "--lora_dropout", "0.1", "--merge_at_end", "false", "--activation_checkpointing", "false", "--use_cpu",
            "true", "--bf16", "false", "--report_to", "none", "--logging_steps", "1", "--disable_tqdm", "true",
            "--seed", "0", "--data_seed", "0", *extra]  # fmt: skip


def losses(out: Path) -> dict[int, float]:
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("use_lora", ["true", "false"], ids=["lora", "full"])
def test_sft_killed_after_step_3_resumes_exactly(tmp_path, checkpoint, source_dir, use_lora):
    """6 rows, batches of 2: 3 steps an epoch, so the resumed run skips 2 consumed batches mid-epoch and crosses an
    epoch boundary; LoRA dropout makes the RNG state matter. The full fine-tune checks that the resumed weights are
    the checkpoint's (transformers 5.24 alone would silently resume from the base weights: Qwen-VL key names)."""
    from safetensors.torch import load_file

    from trl_mig.scripts.common import last_complete_checkpoint

    lora = ("--use_lora", use_lora)
    reference = tmp_path / "reference"
    run_here(*sft_args(checkpoint, source_dir, reference, *lora))
    out = tmp_path / "killed"
    killed_at("train_step:3", *sft_args(checkpoint, source_dir, out, *lora, "--resume_from_checkpoint", "true"))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    (out / "checkpoint-3").mkdir()  # what a kill in the middle of a save leaves: a folder without trainer_state.json
    (out / "checkpoint-3" / "config.json").write_text("{}")
    assert last_complete_checkpoint(out) == str(out / "checkpoint-2")
    run_here(*sft_args(checkpoint, source_dir, out, *lora, "--resume_from_checkpoint", "true"))
    got, want = losses(out), losses(reference)
    assert sorted(got) == sorted(want) == [1, 2, 3, 4]
    assert got == want  # same batches, same dropout masks, same updates: bit for bit on CPU
    weights = "adapter_model.safetensors" if use_lora == "true" else "model.safetensors"
    got_w, want_w = load_file(out / "checkpoint-4" / weights), load_file(reference / "checkpoint-4" / weights)
    assert sorted(got_w) == sorted(want_w)
    assert all(got_w[k].equal(want_w[k]) for k in want_w)
