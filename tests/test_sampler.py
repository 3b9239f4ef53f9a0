"""The rejection sampler and the RL-set builder: band edges, scoring as RL scores, shards, resumption after an
interruption and after a SIGKILL, plan checks, the card, and `trl-mig build rl` re-selecting from the same shards.

Two generators drive the real `RejectionSampler.run`: the tiny random Qwen2.5-VL through the HF backend (what
`trl-mig sample` uses; its answers are all wrong, which tests shards and resumption), and `ScriptedGenerator`, which
answers the gold box for a known number of each prompt's samples, so that every pass rate and band edge is known.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trl_mig.datasets_builders import get_builder, synthetic
from trl_mig.datasets_builders.reader import load_schema_dataset as load_dataset
from trl_mig.datasets_builders.rl import PassRateBand, build_rl_set, read_samples
from trl_mig.datasets_builders.shards import done_chunks, shard_path, write_shard
from trl_mig.sampling import RejectionSampler, RejectionSamplingConfig
from trl_mig.sampling.sampler import RUN_FILE, score_samples
from trl_mig.scoring import FrameSpec
from trl_mig.templates import render_answer, render_dataset
from trl_mig.testing import tiny_checkpoint


N = 4  # samples per prompt in the scripted runs: pass rates 0, 1/4, ..., 1
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRL_MIG_DISABLE_PROGRESS": "1"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(root=tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("source") / "pool"
    synthetic.build(synthetic.BuildArguments(output_dir=str(out), num_train=10, num_test=0, seed=3))
    return out


@pytest.fixture(scope="module")
def processor(checkpoint):
    from transformers import AutoProcessor

    import trl_mig.models  # noqa: F401

    return AutoProcessor.from_pretrained(checkpoint, padding_side="left")


def right_count(position: int) -> int:
    """How many of a prompt's N samples the scripted model gets right: 0, 1, 2, 3, 4, 0, 1, ..."""
    return position % (N + 1)


class ScriptedGenerator:
    """Answers the gold box (in the prompt's frame) for `right_count(position)` samples of each prompt, else a wrong
    box in the right image. Prompts are recognised by their text, so the sampler's batching and chunking are real."""

    def __init__(self, rendered) -> None:
        self.answers = {}
        for position, row in enumerate(rendered):
            gold = render_answer(row["solution"], row["target_image"], row["frame"], row["image_sizes"],
                                 row["resized_sizes"])  # fmt: skip
            wrong = json.dumps({"image": row["target_image"][0] + 1, "bbox_2d": [0, 0, 2, 2]})
            self.answers[self.key(row["prompt"])] = (gold, wrong, right_count(position))
        self.calls: list[int] = []

    @staticmethod
    def key(prompt) -> str:
        return json.dumps([m["content"] for m in prompt], sort_keys=True, default=str)

    def generate(self, prompts, images, n=1, seed=None):
        self.calls.append(len(prompts))
        out = []
        for prompt in prompts:
            gold, wrong, k = self.answers[self.key(prompt)]
            out.append([f"<think>look</think><answer>{gold if j < k else wrong}</answer>" for j in range(n)])
        return out


def scripted_run(tmp_path, checkpoint, source_dir, processor, **overrides):
    config = RejectionSamplingConfig(
        model_name_or_path=str(checkpoint), dataset_name=str(source_dir), output_dir=str(tmp_path / "rl"),
        num_generations=N, chunk_size=3, batch_size=2, use_cpu=True, **overrides,
    )  # fmt: skip
    rendered = render_dataset(
        load_dataset(str(source_dir), split="train"), "mig-think-v1", "qwen2_5_vl", processor=processor
    )
    return RejectionSampler(config, processor=processor, generator=ScriptedGenerator(rendered)).run(), config


# ---------------------------------------------------------------------------------------------------------------
# the band


@pytest.mark.parametrize(
    ("band", "kept"),
    [
        (PassRateBand(), {1, 2, 3}),  # default: 0 < pass_rate < 1
        (PassRateBand(include_low=True), {0, 1, 2, 3}),
        (PassRateBand(include_high=True), {1, 2, 3, 4}),
        (PassRateBand(0.25, 0.75), {2}),
        (PassRateBand(0.25, 0.75, include_low=True, include_high=True), {1, 2, 3}),
        (PassRateBand(0.5, 0.5, include_low=True, include_high=True), {2}),
    ],
)
def test_band_edges(band, kept):
    assert {k for k in range(N + 1) if band.contains(k / N)} == kept


def test_band_classifies_drops_and_refuses_empty_bands():
    band = PassRateBand(0.25, 0.75)
    assert [band.classify(r) for r in (0.0, 0.125, 0.5, 0.875, 1.0, None)] == [
        "dropped_all_wrong", "dropped_out_of_band", "kept", "dropped_out_of_band", "dropped_all_right",
        "dropped_unlabeled",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="empty"):
        PassRateBand(0.5, 0.5)
    with pytest.raises(ValueError, match="0 <= min_pass_rate <= max_pass_rate <= 1"):
        PassRateBand(0.8, 0.2)
    with pytest.raises(ValueError, match="empty"):
        RejectionSamplingConfig(min_pass_rate=1.0, max_pass_rate=1.0)


# ---------------------------------------------------------------------------------------------------------------
# scoring


def test_score_samples_scores_as_the_rl_rewards(source_dir, processor):
    from trl_mig.rewards import format_reward, iou_reward

    rendered = render_dataset(
        load_dataset(str(source_dir), split="train").select(range(2)), "mig-think-v1", "qwen2_5_vl",
        processor=processor,
    )  # fmt: skip
    rows = list(rendered)
    generator = ScriptedGenerator(rendered)  # row 0: 0 of 4 right; row 1: 1 of 4 right
    completions = generator.generate([r["prompt"] for r in rows], [r["images"] for r in rows], n=N)
    completions[0][0] = "I think it is somewhere"  # no answer at all: format 0, iou 0
    records = score_samples(rows, completions, [format_reward, iou_reward], FrameSpec("qwen2_5_vl"))
    assert [r["pass_rate"] for r in records] == [0.0, 0.25]
    assert records[1]["strict"] == [True, False, False, False]
    assert records[1]["iou"][0] > 0.9 and records[1]["iou"][1:] == [0.0, 0.0, 0.0]
    assert records[0]["rewards"]["format_reward"] == [0.0, 1.0, 1.0, 1.0]
    assert records[0]["outcomes"][0] == "no_answer" and records[0]["outcomes"][1] == "low_iou"
    assert records[1]["mean_iou"] == pytest.approx(records[1]["iou"][0] / 4)
    assert [r["id"] for r in records] == [rows[0]["id"], rows[1]["id"]]


def test_unlabelled_rows_have_no_pass_rate(source_dir, processor):
    from trl_mig.rewards import iou_reward

    rendered = render_dataset(
        load_dataset(str(source_dir), split="train").select(range(1)), "mig-think-v1", "qwen2_5_vl",
        processor=processor,
    )  # fmt: skip
    row = {**rendered[0], "solution": None, "target_image": []}
    (record,) = score_samples([row], [["<answer>[1, 2, 3, 4]</answer>"] * 2], [iou_reward], FrameSpec())
    assert record["pass_rate"] is None and record["rewards"]["iou_reward"] == [None, None]
    assert PassRateBand().classify(record["pass_rate"]) == "dropped_unlabeled"


# ---------------------------------------------------------------------------------------------------------------
# a full scripted run: the RL set, the card, the re-selection


def test_scripted_run_writes_the_rl_set(tmp_path, checkpoint, source_dir, processor):
    result, config = scripted_run(tmp_path, checkpoint, source_dir, processor)
    source = load_dataset(str(source_dir), split="train")
    expected = [rid for i, rid in enumerate(source["id"]) if 0 < right_count(i) < N]
    assert result["rows"]["train"] == len(expected) and result["world_size"] == 1

    rl = load_dataset(config.output_dir, split="train")
    assert rl["id"] == expected  # source order, no duplicates
    positions = {rid: i for i, rid in enumerate(source["id"])}
    assert rl["pass_rate"] == [pytest.approx(right_count(positions[rid]) / N) for rid in rl["id"]]
    assert all(0 < m < 1 for m in rl["mean_iou"])
    assert rl.features["images"].feature.decode and rl[0]["images"][0].size == tuple(rl[0]["image_sizes"][0])
    assert "reasoning" not in rl.column_names

    card = (Path(config.output_dir) / "README.md").read_text()
    assert "## Rejection sampling per task" in card and "0 < pass_rate < 1" in card
    per_task = result["per_task"]
    assert sum(c.get("kept", 0) for c in per_task.values()) == len(expected)
    all_right = sum(1 for i in range(len(source)) if right_count(i) == N)
    assert sum(c.get("dropped_all_right", 0) for c in per_task.values()) == all_right
    assert f"| **all** | {len(source)} | {len(expected)} | {all_right} |" in card

    # `trl-mig build rl` re-selects from the same shards with another band, without sampling
    from trl_mig.cli import main

    out = tmp_path / "rl-wide"
    assert main(["build", "rl", "--samples_dir", config.samples_dir, "--output_dir", str(out), "--include_min"]) == 0
    wide = load_dataset(str(out), split="train")
    assert wide["id"] == [rid for i, rid in enumerate(source["id"]) if right_count(i) < N]


def test_scripted_run_resumes_and_refuses_other_settings(tmp_path, checkpoint, source_dir, processor):
    first, config = scripted_run(tmp_path, checkpoint, source_dir, processor)
    assert first["resumed_chunks"] == 0 and first["chunks"] == 4
    again, _ = scripted_run(tmp_path, checkpoint, source_dir, processor, overwrite=True)
    assert again["resumed_chunks"] == 4 and again["rows"] == first["rows"]  # nothing sampled twice
    with pytest.raises(ValueError, match="generation"):
        scripted_run(tmp_path, checkpoint, source_dir, processor, temperature=0.7, overwrite=True)
    with pytest.raises(ValueError, match="exists and is not empty"):
        scripted_run(tmp_path, checkpoint, source_dir, processor)  # the RL set is there; overwrite not given
    fresh, _ = scripted_run(
        tmp_path, checkpoint, source_dir, processor, temperature=0.7, overwrite=True, resample=True
    )
    assert fresh["resumed_chunks"] == 0


# ---------------------------------------------------------------------------------------------------------------
# shards


def test_shards_are_atomic_and_duplicates_are_refused(tmp_path):
    write_shard(tmp_path, 0, [{"id": "a", "pass_rate": 0.5, "num_generations": 2}])
    with pytest.raises(TypeError):
        write_shard(tmp_path, 1, [{"id": "b", "pass_rate": 0.5, "num_generations": 2}, {"id": object()}])
    assert done_chunks(tmp_path) == {0} and sorted(p.name for p in tmp_path.iterdir()) == [
        shard_path(tmp_path, 0).name
    ]
    write_shard(tmp_path, 2, [{"id": "a", "pass_rate": 1.0, "num_generations": 2}])
    with pytest.raises(ValueError, match="id 'a' is in both chunk-000000.jsonl and chunk-000002.jsonl"):
        read_samples(tmp_path)
    shard_path(tmp_path, 2).write_text('{"id": "c", "num_generations": 2}\n')
    with pytest.raises(ValueError, match=r"chunk-000002.jsonl:1: sample record lacks \['pass_rate'\]"):
        read_samples(tmp_path)
    with pytest.raises(FileNotFoundError, match="no sample shards"):
        read_samples(tmp_path / "empty")


def test_selection_from_another_source_is_refused(tmp_path, source_dir):
    write_shard(tmp_path / "s", 0, [{"id": "not-a-row", "pass_rate": 0.5, "num_generations": 2}])
    with pytest.raises(ValueError, match="not in the source split"):
        build_rl_set(load_dataset(str(source_dir), split="train"), tmp_path / "s", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# the real tiny model: decoding, interruption, SIGKILL


def model_config(tmp_path, checkpoint, source_dir, name, **overrides) -> RejectionSamplingConfig:
    settings = dict(
        model_name_or_path=str(checkpoint), dataset_name=str(source_dir), output_dir=str(tmp_path / name),
        num_generations=2, max_new_tokens=12, chunk_size=2, batch_size=2, max_prompts=6, use_cpu=True, backend="hf",
        seed=7, include_min=True,  # a random model gets everything wrong: keep all-wrong prompts so the set is not empty
    )  # fmt: skip
    settings.update(overrides)
    return RejectionSamplingConfig(**settings)


def shard_records(samples_dir) -> dict[str, dict]:
    return {rid: {k: v for k, v in r.items()} for rid, r in read_samples(samples_dir).items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, checkpoint, source_dir):
    tmp = tmp_path_factory.mktemp("reference")
    config = model_config(tmp, checkpoint, source_dir, "rl")
    result = RejectionSampler(config).run()
    return config, result, shard_records(config.samples_dir)


def test_tiny_model_run_decodes_as_trl(reference):
    config, result, records = reference
    assert len(records) == 6 and result["chunks"] == 3
    for record in records.values():
        assert len(record["completions"]) == 2 and record["pass_rate"] == 0.0  # a random model
        assert not any("<|" in c for c in record["completions"])  # special tokens skipped, as TRL decodes
        assert set(record["rewards"]) == {"format_reward", "iou_reward"}
    run = json.loads((Path(config.samples_dir) / RUN_FILE).read_text())
    assert run["world_size"] == 1 and run["chunks_by_process"] == {"0": [0, 1, 2]}


def test_interrupted_run_resumes_to_the_same_samples(tmp_path, checkpoint, source_dir, reference):
    _, _, expected = reference
    config = model_config(tmp_path, checkpoint, source_dir, "rl")

    def stop_after_first(chunk: int) -> None:
        if chunk == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        RejectionSampler(config, on_chunk_done=stop_after_first).run()
    assert done_chunks(config.samples_dir) == {0} and not Path(config.output_dir).exists()
    result = RejectionSampler(config).run()
    assert result["resumed_chunks"] == 1
    assert shard_records(config.samples_dir) == expected


def test_killed_cli_run_resumes_to_the_same_samples(tmp_path, checkpoint, source_dir, reference):
    _, _, expected = reference
    out = tmp_path / "rl"
    args = [sys.executable, "-m", "trl_mig.cli", "sample", "--model_name_or_path", str(checkpoint), "--dataset_name",
            str(source_dir), "--output_dir", str(out), "--num_generations", "2", "--max_new_tokens", "12",
            "--chunk_size", "2", "--batch_size", "2", "--max_prompts", "6", "--use_cpu", "--backend", "hf",
            "--seed", "7", "--include_min"]  # fmt: skip
    samples = Path(f"{out}-samples")
    process = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not done_chunks(samples) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    killed_at = done_chunks(samples)
    assert killed_at and process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert len(killed_at) < 3, "the run finished before it could be killed"
    resumed = subprocess.run(args, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert shard_records(samples) == expected
    assert not list(samples.glob(".*.tmp"))  # no half-written shard left behind
    assert load_dataset(str(out), split="train")["id"] == list(expected)  # all-wrong prompts kept (include_min)


def test_empty_band_writes_nothing_and_says_what_to_do(tmp_path, checkpoint, source_dir, reference):
    from trl_mig.datasets_builders.rl import EmptyRLSetError

    config, _, _ = reference
    with pytest.raises(EmptyRLSetError, match="--include_min") as info:
        build_rl_set(load_dataset(str(source_dir), split="train"), config.samples_dir, tmp_path / "out")
    assert sum(c["dropped_all_wrong"] for c in info.value.per_task.values()) == 6
    assert not (tmp_path / "out").exists()


def test_rl_builder_is_registered():
    assert get_builder("rl").NAME == "rl"


def test_rl_set_decontaminated_against_a_benchmark(tmp_path, checkpoint, source_dir, processor):
    from trl_mig.datasets_builders.writer import write_dataset
    from trl_mig.schema import features

    source = load_dataset(str(source_dir), split="train")
    kept_ids = [rid for i, rid in enumerate(source["id"]) if 0 < right_count(i) < N]
    bench_rows = [{k: v for k, v in source[i].items() if k != "reasoning"} for i in (1, 2)]  # two kept prompts
    bench = tmp_path / "bench"
    write_dataset({"test": bench_rows}, bench, features(), "---\nlicense: mit\n---\n# bench\n")
    result, config = scripted_run(tmp_path, checkpoint, source_dir, processor, decontaminate_against=[str(bench)])
    rl = load_dataset(config.output_dir, split="train")
    assert rl["id"] == [rid for rid in kept_ids if rid not in (source["id"][1], source["id"][2])]
    assert (
        "decontamination: an image is in benchmark set `bench` | 2"
        in (Path(config.output_dir) / "README.md").read_text()
    )
