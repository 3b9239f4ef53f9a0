"""The generator's brief reasoning (`GeneratorConfig.reasoning="brief"`, `--reasoning brief`).

Both reasonings are written from the same draws: a seed gives the same images, questions and boxes in either mode,
only the `reasoning` differs. The brief text names the target, its image and a coarse position, never a box.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from trl_mig.datasets_builders.synthetic import TASKS, BuildArguments, GeneratorConfig, generate_rows, sample_task
from trl_mig.datasets_builders.synthetic.text import position_phrase


#: small images keep the module fast; the reasoning does not depend on size
SMALL = {"image_min_side": 96, "image_max_side": 128}
PER_TASK = 12
_IMAGE_RE = re.compile(r"\bimage (\d+)\b", re.IGNORECASE)


def _config(style: str, reasoning: str) -> GeneratorConfig:
    return GeneratorConfig.from_style(style, reasoning=reasoning, **SMALL)


@pytest.mark.parametrize("style", ["rich", "simple"])
def test_same_draws_in_both_modes(style):
    full = generate_rows("train", 6 * PER_TASK // 2, seed=4, config=_config(style, "full"))
    brief = generate_rows("train", 6 * PER_TASK // 2, seed=4, config=_config(style, "brief"))
    assert {r["task"] for r in full} == set(TASKS)
    for a, b in zip(full, brief, strict=True):
        for key in ("id", "task", "question", "solution", "target_image", "image_sizes", "source"):
            assert a[key] == b[key], (a["id"], key)
        assert len(a["images"]) == len(b["images"])
        assert all(x.size == y.size and x.tobytes() == y.tobytes() for x, y in zip(a["images"], b["images"]))
        assert a["reasoning"] != b["reasoning"], a["id"]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_brief_text_names_the_target_image_and_no_box(task):
    for k in range(PER_TASK):
        s = sample_task(task, (31, k), _config("rich", "brief"))
        brief, full = s.reasonings["brief"], s.reasonings["full"]
        assert s.reasoning == brief and full == sample_task(task, (31, k), _config("rich", "full")).reasoning
        assert "[" not in brief and "<box" not in brief, brief
        assert 1 <= brief.count(".") <= 2 and brief.endswith("."), brief
        # the last image named is the target's (1-based), and the target's coarse position is the full text's
        assert int(_IMAGE_RE.findall(brief)[-1]) == s.target_image + 1, brief
        assert position_phrase(s.solution) in brief and position_phrase(s.solution) in full, (brief, full)
        assert len(brief) < len(full)


def test_default_is_full_and_bad_values_are_refused():
    assert GeneratorConfig().reasoning == "full" == BuildArguments().generator_config().reasoning
    with pytest.raises(ValueError, match="^reasoning must be one of 'full', 'brief'; got 'short'"):
        GeneratorConfig(reasoning="short")
    with pytest.raises(ValueError, match="reasoning"):
        GeneratorConfig.from_style("simple", reasoning="Brief")
    with pytest.raises(ValueError, match="reasoning"):
        BuildArguments(reasoning="none")


def test_flag_round_trip():
    from trl import TrlParser

    parser = TrlParser((BuildArguments,))
    (args,) = parser.parse_args_and_config(["--style", "simple", "--reasoning", "brief"])
    assert args.generator_config() == GeneratorConfig.from_style("simple", reasoning="brief")
    with pytest.raises(SystemExit):
        parser.parse_args_and_config(["--reasoning", "short"])


def test_brief_completion_renders_think_then_answer():
    from trl_mig.templates import render_completion

    (row,) = generate_rows("train", 1, seed=0, tasks="group_grounding", config=_config("simple", "brief"))
    text = render_completion(row, "mig-think-brief-v1", "qwen3_vl")[0]["content"][0]["text"]
    match = re.fullmatch(r"<think>(.*)</think><answer>(.*)</answer>", text, re.DOTALL)
    assert match and match.group(1) == row["reasoning"]
    answer = json.loads(match.group(2))
    assert answer["image"] == row["target_image"][0] + 1 and len(answer["bbox_2d"]) == 4


def test_build_writes_brief_reasoning_and_records_it(tmp_path, capsys):
    from trl_mig.cli import main
    from trl_mig.datasets_builders.reader import load_schema_dataset

    out = tmp_path / "brief"
    flags = ["--output_dir", str(out), "--num_train", "6", "--num_test", "0", "--seed", "5", "--tasks",
             "group_grounding", "multi_view", "--image_min_side", "96", "--image_max_side", "112", "--style",
             "simple", "--reasoning", "brief"]  # fmt: skip
    assert main(["build", "synthetic", *flags]) == 0
    assert "rows: {'train': 6}" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    assert yaml.safe_load(card.split("---")[1])["trl_mig"]["reasoning"] == "brief"
    assert "| reasoning | brief |" in card and "no boxes and no other objects" in card
    loaded = load_schema_dataset(str(out), split="train")
    config = GeneratorConfig.from_style("simple", image_min_side=96, image_max_side=112, reasoning="brief")
    want = generate_rows("train", 6, seed=5, tasks=["group_grounding", "multi_view"], config=config)
    assert loaded["reasoning"] == [r["reasoning"] for r in want]
    assert all("[" not in text for text in loaded["reasoning"])
    assert loaded["question"] == [r["question"] for r in want]


def test_default_card_records_full(tmp_path):
    from trl_mig.datasets_builders.synthetic import build

    out = tmp_path / "full"
    build(BuildArguments(output_dir=str(out), num_train=2, num_test=0, tasks=["single"], **SMALL))
    card = (out / "README.md").read_text()
    assert yaml.safe_load(card.split("---")[1])["trl_mig"]["reasoning"] == "full"
    assert "| reasoning | full |" in card and "chain of thought" in card
