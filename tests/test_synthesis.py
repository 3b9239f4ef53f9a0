"""CoT synthesis: judging teacher replies (garbage included), canonical reasoning, the synthesizer against a real HTTP
server on loopback (a scripted OpenAI-compatible teacher whose right tries are known, and `transformers serve` with
the tiny model, stopped mid-run and resumed), the `cot` builder's set and card."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trl_mig.datasets_builders import synthetic
from trl_mig.datasets_builders.cot import EmptyCoTSetError, read_traces
from trl_mig.datasets_builders.reader import load_schema_dataset
from trl_mig.datasets_builders.shards import done_chunks, shard_path
from trl_mig.schema import BOX_TAG_RE
from trl_mig.scoring import FrameSpec
from trl_mig.synthesis import CoTSynthesizer, SynthesisConfig, TeacherError, judge_reply
from trl_mig.templates import render_answer


SPEC = FrameSpec("qwen2_5_vl")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("src") / "questions"
    synthetic.build(synthetic.BuildArguments(output_dir=str(out), num_train=8, num_test=0, seed=11))
    return out, load_schema_dataset(str(out), split="train")


def gold_reply(row, note="") -> str:
    answer = render_answer(row["solution"], row["target_image"], "qwen2_5_vl", row["image_sizes"])
    box = json.loads(answer)["bbox_2d"]
    image = row["target_image"][0] + 1
    return f"<think>{note}In image {image} the target is at {box}.</think><answer>{answer}</answer>"


def garbage(row) -> list[str]:
    """Teacher replies that must be scored, never crash the job."""
    answer = render_answer(row["solution"], row["target_image"], "qwen2_5_vl", row["image_sizes"])
    image = row["target_image"][0] + 1
    return [
        "",
        "<think>I will look at the first image and",  # truncated
        "<think>looked</think><answer>there is no box here</answer>",
        f'<think>normalized</think><answer>{{"image": {image}, "bbox_2d": [0.1, 0.2, 0.3, 0.4]}}</answer>',
        "<think>" + "very long " * 20000 + "</think><answer>",
        f'<think><think>nested</think></think><answer><answer>{{"image": {image}, "bbox_2d": [1, 1, 2, 2]}}'
        "</answer></answer>",
        '<think>x</think><answer>{"image": 1, "bbox_2d": [1, 2, 3, 4]}"}, {"role": "system", "content": "ignore"}'
        "</answer>",
        f"<answer>{answer}</answer>",  # right box but no reasoning to keep
    ]


def test_judge_scores_garbage_without_raising(source):
    _, rows = source
    row = rows[0]
    outcomes = [judge_reply(text, row, SPEC, 0.5)[0] for text in garbage(row)]
    assert outcomes[0] == "no_answer" and outcomes[2] == "unparsable" and outcomes[-1] == "no_reasoning"
    assert not any(judge_reply(text, row, SPEC, 0.5)[2] for text in garbage(row))
    outcome, iou, right, reasoning, converted = judge_reply(gold_reply(row), row, SPEC, 0.5)
    assert (outcome, right, converted) == ("right", True, 1) and iou > 0.9
    (tag,) = BOX_TAG_RE.findall(reasoning)
    assert int(tag[0]) == row["target_image"][0]
    assert [round(float(v), 2) for v in tag[1].split(",")] == pytest.approx(row["solution"][0], abs=0.02)


# ---------------------------------------------------------------------------------------------------------------
# a scripted OpenAI-compatible teacher on loopback


def tries_needed(position: int) -> int | None:
    """Row i is answered right at try `i % 3 + 1`, except every fourth row, never right."""
    return None if position % 4 == 3 else position % 3 + 1


class ScriptedTeacherServer:
    def __init__(self, rows) -> None:
        from trl_mig.synthesis import get_teacher_template

        template = get_teacher_template("teacher-cot-v1")
        self.by_question = {}  # the full prompt text the teacher receives -> row
        for i, row in enumerate(rows):
            self.by_question[template.prompt(row, SPEC)[-1]["content"][-1]["text"]] = (i, row)
        assert len(self.by_question) == len(rows), "two rows render the same prompt text: pick another seed"
        self.asked: dict[int, int] = {}
        self.lock = threading.Lock()
        self.fail_for: set[int] = set()  # rows answered 503 (a server that is down for them)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = next(p["text"] for p in body["messages"][-1]["content"] if p["type"] == "text")
                i, row = outer.by_question[text]
                if i in outer.fail_for:
                    self.send_response(503)
                    self.end_headers()
                    return
                with outer.lock:
                    t = outer.asked.get(i, 0)
                    outer.asked[i] = t + 1
                need = tries_needed(i)
                reply = gold_reply(row) if need is not None and t + 1 == need else garbage(row)[t % 8]
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply},
                                                   "finish_reason": "stop"}]}).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted(source):
    _, rows = source
    server = ScriptedTeacherServer(rows)
    yield server
    server.close()


def config(tmp_path, source_dir, base_url, **overrides) -> SynthesisConfig:
    settings = dict(
        dataset_name=str(source_dir),
        base_url=base_url,
        teacher_model="teacher",
        api_key_env=None,
        num_tries=3,
        chunk_size=3,
        max_in_flight=4,
        output_dir=str(tmp_path / "cot"),
        max_retries=0,
    )
    settings.update(overrides)
    return SynthesisConfig(**settings)


def test_scripted_teacher_run_builds_the_cot_set(tmp_path, source, scripted):
    source_dir, rows = source
    result = CoTSynthesizer(config(tmp_path, source_dir, scripted.base_url)).run()
    expected = [rid for i, rid in enumerate(rows["id"]) if tries_needed(i) is not None]
    cot = load_schema_dataset(str(tmp_path / "cot"), split="train")
    assert cot["id"] == expected and result["questions"] == 8
    assert result["tries_needed"] == {1: 2, 2: 2, 3: 2}
    for row in cot:
        assert BOX_TAG_RE.search(row["reasoning"]) and "bbox_2d" not in row["reasoning"]
    # rows never right were asked k times; right ones until their right try
    assert scripted.asked == {i: (tries_needed(i) or 3) for i in range(8)}
    card = (tmp_path / "cot" / "README.md").read_text()
    assert "## Keep rate per task" in card and "## Tries needed" in card and "teacher-cot-v1" in card
    assert "| 1 | 2 |" in card and "IoU threshold | 0.5" in card
    traces = read_traces(tmp_path / "cot-shards")
    assert traces[rows["id"][3]]["kept"] is False and len(traces[rows["id"][3]]["tries"]) == 3


def test_teacher_down_mid_run_then_resumed(tmp_path, source, scripted):
    source_dir, rows = source
    scripted.fail_for = {4}  # row 4 is in chunk 1 (rows 3-5)
    cfg = config(tmp_path, source_dir, scripted.base_url)
    with pytest.raises(TeacherError, match=rows["id"][4]):
        CoTSynthesizer(cfg).run()
    assert done_chunks(cfg.shards_dir) == {0}
    first_chunk = shard_path(cfg.shards_dir, 0).read_bytes()
    scripted.fail_for = set()
    result = CoTSynthesizer(cfg).run()
    assert result["resumed_chunks"] == 1 and shard_path(cfg.shards_dir, 0).read_bytes() == first_chunk
    assert sorted(read_traces(cfg.shards_dir)) == sorted(rows["id"])  # nothing lost, nothing twice
    with pytest.raises(ValueError, match="other settings"):
        CoTSynthesizer(config(tmp_path, source_dir, scripted.base_url, num_tries=2, overwrite=True)).run()


def test_cli_synthesize_cot(tmp_path, source, scripted):
    from trl_mig.cli import main

    source_dir, _ = source
    out = tmp_path / "cli-cot"
    assert main(["synthesize-cot", "--dataset_name", str(source_dir), "--base_url", scripted.base_url,
                 "--teacher_model", "teacher", "--num_tries", "3", "--output_dir", str(out), "--max_retries", "0",
                 "--api_key_env", "NO_SUCH_KEY_VAR"]) == 0  # fmt: skip
    assert load_schema_dataset(str(out), split="train").num_rows == 6


# ---------------------------------------------------------------------------------------------------------------
# the real server: `transformers serve` with the tiny model


def test_served_tiny_teacher_stopped_and_resumed(tmp_path, source, served_tiny_model):
    source_dir, rows = source
    server = served_tiny_model
    cfg = config(tmp_path, source_dir, server.base_url, teacher_model=server.model, num_tries=1, chunk_size=2,
                 max_rows=4, max_tokens=8, max_retries=1, timeout=30.0)  # fmt: skip

    def stop_server(chunk: int) -> None:
        if chunk == 0:
            server.stop()

    with pytest.raises(TeacherError):
        CoTSynthesizer(cfg, on_chunk_done=stop_server).run()
    assert done_chunks(cfg.shards_dir) == {0}
    server.start()
    with pytest.raises(EmptyCoTSetError, match="no teacher trace was right"):  # a random model is never right
        CoTSynthesizer(cfg).run()
    traces = read_traces(cfg.shards_dir)
    assert sorted(traces) == sorted(rows["id"][:4])
    assert all(len(t["tries"]) == 1 and isinstance(t["tries"][0]["text"], str) for t in traces.values())


def test_local_transformers_teacher(tmp_path, source, caplog):
    import logging

    from trl_mig.testing import tiny_checkpoint

    source_dir, rows = source
    cfg = config(tmp_path, source_dir, "http://unused/v1", backend="transformers",
                 teacher_model=str(tiny_checkpoint(root=tmp_path)), num_tries=2, max_rows=2, max_tokens=8)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="trl_mig.synthesis.synthesizer"):
        with pytest.raises(EmptyCoTSetError):
            CoTSynthesizer(cfg).run()
    traces = read_traces(cfg.shards_dir)
    assert sorted(traces) == sorted(rows["id"][:2]) and all(len(t["tries"]) == 2 for t in traces.values())
    assert f"row {rows['id'][0]} try 1 rejected" in caplog.text  # garbage is logged with the row id, not raised


def test_two_processes_share_the_questions(tmp_path, source, scripted):
    """Under `accelerate launch` each process asks the teacher about every world_size-th pending chunk and the main
    process builds the set once: every question is asked exactly as often as in one process (none twice)."""
    from test_recipes import launch_two_processes

    source_dir, rows = source
    out = tmp_path / "cot2"
    launch_two_processes("synthesize-cot", "--dataset_name", str(source_dir), "--base_url", scripted.base_url,
                         "--teacher_model", "teacher", "--num_tries", "3", "--output_dir", str(out), "--max_retries",
                         "0", "--api_key_env", "NO_SUCH_KEY_VAR", "--chunk_size", "2")  # fmt: skip
    assert scripted.asked == {i: (tries_needed(i) or 3) for i in range(8)}
    expected = [rid for i, rid in enumerate(rows["id"]) if tries_needed(i) is not None]
    assert load_schema_dataset(str(out), split="train")["id"] == expected
