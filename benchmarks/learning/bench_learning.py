"""`make bench-learning`: does the method improve multi-image grounding, stage by stage, in miniature?

The paper's claim (arXiv 2507.00748): CoT cold start + LoRA SFT, then rejection-sampled rule-based RL, improves
multi-image grounding over the base model and over the SFT model. This benchmark re-runs that claim on a laptop:

1. **base** (cached, once): a tiny Qwen3-VL (about 1.3M parameters) pre-trained on single-image grounding, then
   on reasoning rows and some multi-image direct rows (`base_model.py`, `base_phases`), standing in for a pretrained
   MLLM that "already grounds a little".
2. **sft**: LoRA SFT with `MIGSFTTrainer` on multi-image chain-of-thought rows of the synthetic generator (`simple`
   style, 2-5 images, `--reasoning brief`: a tiny model cannot write the full one, NOTES.md), merged into the base
   (`merge_at_end`).
3. **rejection sampling** with `RejectionSampler`: several answers per prompt of a separate pool; the prompts whose
   pass rate is strictly between 0 and 1 form the RL set.
4. **sft_rl**: GRPO with `MIGGRPOTrainer` (format reward + IoU reward) on that set.

Every stage is evaluated greedily with `trl_mig.evaluation.run_evaluation` on the same held-out multi-image split
(>= 500 questions, the tasks below), per seed. Seeds change the LoRA initialisation, the sampling and the RL; the
data and the base model are shared (cached under `--cache_dir`). On seed `--ablation_seed` two more GRPO runs ask
what the rejection sampling and the format reward buy: RL on the whole pool, and RL without the format reward.

Writes `benchmarks/results/learning.json` (the layout of issue 10) and `learning.md` (table + reward curves).

    .venv/bin/python benchmarks/learning/bench_learning.py                 # everything: base 30 min, 9 min per seed
    .venv/bin/python benchmarks/learning/bench_learning.py --seeds 0 --ablations false   # one seed
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stages import FRAME, check_base, evaluate, run_grpo, run_sampling, run_sft  # noqa: E402


logger = logging.getLogger("bench_learning")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LearningArguments:
    """Settings of `make bench-learning`; all of them are recorded under `settings` in `learning.json`."""

    output_dir: str = field(default="benchmarks/results", metadata={"help": "learning.json, learning.md, plots"})
    cache_dir: str = field(default=".cache/bench-learning", metadata={"help": "data, base model, per-seed runs"})
    seeds: str = field(default="0,1,2", metadata={"help": "comma-separated training seeds"})
    ablations: bool = field(default=True, metadata={"help": "run the two RL ablations on --ablation_seed"})
    ablation_seed: int = field(default=0, metadata={"help": "the seed the ablations run on"})
    template: str = field(default="mig-think-brief-v1", metadata={"help": "prompt template of every stage"})
    tasks: str = field(default="group_grounding,refer_grounding,multi_view,common_object",
                       metadata={"help": "multi-image synthetic tasks (SFT, RL pool and held-out split)"})  # fmt: skip
    max_images: int = field(default=5, metadata={"help": "images per question: 2 to this"})
    max_objects: int = field(default=2, metadata={"help": "objects per image (generator, at least 2)"})
    data_seed: int = field(default=0, metadata={"help": "seed of every generated row set"})
    reasoning: str = field(default="brief", metadata={
        "help": "the generator's reasoning texts (CoT rows, the base's reasoning rows): `brief` (the target, its "
                "image, a coarse position) or `full` (every object of every image listed; NOTES.md 2026-12-08)"})  # fmt: skip
    num_test: int = field(default=500, metadata={"help": "held-out questions"})
    num_cot: int = field(default=2000, metadata={"help": "CoT SFT rows"})
    num_pool: int = field(default=400, metadata={"help": "prompts rejection sampling scores"})
    # base model
    hidden_size: int = field(default=128, metadata={"help": "tiny Qwen3-VL text width"})
    num_layers: int = field(default=4, metadata={"help": "tiny Qwen3-VL text layers"})
    rope_theta: float = field(default=1e6, metadata={"help": "text RoPE base (1e6 as released; NOTES.md)"})
    pretrain_steps: str = field(default="1200,400,1600,800", metadata={
        "help": "optimizer steps of phase 0 (one shape, plain format), 1 (one shape, the template), 2 (two-object "
                "single-image scenes, direct answers) and 3 (reasoning rows mixed in; 0 skips it)"})  # fmt: skip
    pretrain_multi_share: float = field(default=0.3, metadata={
        "help": "share of phase 3 rows that are multi-image rows of the pipeline's tasks (other seeds than every "
                "pipeline set; half of them with reasoning, like the rest of the phase)"})  # fmt: skip
    pretrain_batch_size: int = field(default=16, metadata={"help": "pre-training batch size"})
    pretrain_learning_rate: float = field(default=2e-3, metadata={"help": "pre-training peak learning rate"})
    # sft
    sft_epochs: float = field(default=1.0, metadata={"help": "SFT epochs over the CoT rows"})
    sft_learning_rate: float = field(default=1e-3, metadata={"help": "SFT (LoRA) learning rate"})
    sft_batch_size: int = field(default=8, metadata={"help": "SFT batch size"})
    lora_r: int = field(default=32, metadata={"help": "LoRA rank (alpha = 2r)"})
    # rejection sampling
    num_generations: int = field(default=6, metadata={"help": "answers per prompt (sampling and GRPO groups)"})
    max_new_tokens: int = field(default=128, metadata={
        "help": "generation budget (sampling, GRPO, evaluation): brief completions are 60-77 tokens; with "
                "--reasoning full use 448 (the longest held-out one is 426 tokens)"})  # fmt: skip
    include_all_wrong: bool = field(default=False, metadata={"help": "keep prompts no sample got right in the RL set "
                                                                    "(the band is 0 < pass rate < 1 without it)"})  # fmt: skip
    # grpo
    grpo_steps: int = field(default=100, metadata={"help": "GRPO optimizer steps"})
    grpo_learning_rate: float = field(
        default=1e-4,
        metadata={"help": "GRPO learning rate (full fine-tune; 5e-4 broke the format in 10 steps, NOTES.md)"},
    )
    grpo_prompts_per_step: int = field(default=2, metadata={"help": "prompts per GRPO step (x num_generations)"})
    accuracy_reward: str = field(default="iou", metadata={
        "help": "GRPO's accuracy reward, beside the format reward: `iou` (continuous IoU in the right image) or "
                "`iou_threshold_reward` (1 when IoU >= 0.5 in the right image: what acc@0.5 counts)"})  # fmt: skip
    grpo_beta: float = field(default=0.0, metadata={"help": "KL coefficient (TRL 1.16 default 0)"})
    eval_batch_size: int = field(default=32, metadata={"help": "greedy evaluation batch size"})
    threads: int = field(default=0, metadata={"help": "torch threads (0: torch's default)"})

    def __post_init__(self) -> None:
        steps = self.pretrain_step_list
        from trl_mig.datasets_builders.synthetic import REASONINGS

        if self.reasoning not in REASONINGS:
            raise ValueError(f"--reasoning must be one of {', '.join(REASONINGS)}, got {self.reasoning!r}")
        if self.accuracy_reward not in ("iou", "iou_threshold_reward"):
            raise ValueError(f"--accuracy_reward must be iou or iou_threshold_reward, got {self.accuracy_reward!r}")
        if not 0.0 <= self.pretrain_multi_share <= 0.85:
            raise ValueError(f"--pretrain_multi_share must be in [0, 0.85], got {self.pretrain_multi_share}")
        if len(steps) != 4 or min(steps[:3]) < 1 or steps[3] < 0:
            raise ValueError(
                f"--pretrain_steps needs four step counts, the first three positive, got {self.pretrain_steps!r}"
            )
        if not self.seed_list:
            raise ValueError("--seeds names no seed")
        if self.num_generations < 2:
            raise ValueError("--num_generations must be >= 2: GRPO and the pass rate compare several samples")
        if self.max_objects < 2 or not 2 <= self.max_images <= 5:
            raise ValueError("--max_objects must be >= 2 and --max_images in [2, 5] (the generator's limits)")

    @property
    def pretrain_step_list(self) -> list[int]:
        return [int(s) for s in str(self.pretrain_steps).split(",") if s.strip()]

    @property
    def seed_list(self) -> list[int]:
        return [int(s) for s in str(self.seeds).split(",") if s.strip()]

    @property
    def task_list(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]

    def key(self, *names: str) -> str:
        """A short hash of the named settings: the cache folder of what they determine."""
        values = {n: getattr(self, n) for n in names}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


_DATA_KEYS = ("tasks", "max_images", "max_objects", "data_seed", "reasoning", "num_test", "num_cot", "num_pool")
_BASE_KEYS = ("hidden_size", "num_layers", "rope_theta", "pretrain_steps", "pretrain_multi_share", "pretrain_batch_size",
              "pretrain_learning_rate", "max_objects", "data_seed", "reasoning")  # fmt: skip


# -- data ---------------------------------------------------------------------------------------------------------


def build_data(args: LearningArguments, cache: Path) -> dict[str, Path]:
    """The CoT rows (+ the held-out split) and the RL pool, built once with the synthetic builder (parquet)."""
    from trl_mig.datasets_builders import synthetic

    root = cache / f"data-{args.key(*_DATA_KEYS)}"
    common = {"tasks": args.task_list, "image_min_side": 112, "image_max_side": 112, "min_images": 2,
              "max_images": args.max_images, "max_objects": args.max_objects, "min_object_frac": 0.2,
              "style": "simple", "reasoning": args.reasoning, "num_workers": 2}  # fmt: skip
    out = {"cot": root / "cot", "pool": root / "pool"}
    if not (out["cot"] / "README.md").is_file():
        synthetic.build(synthetic.BuildArguments(output_dir=str(out["cot"]), num_train=args.num_cot,
                                                 num_test=args.num_test, seed=args.data_seed, overwrite=True,
                                                 repo_id="<org>/trl-mig-bench-learning-cot", **common))  # fmt: skip
    if not (out["pool"] / "README.md").is_file():
        synthetic.build(synthetic.BuildArguments(output_dir=str(out["pool"]), num_train=args.num_pool, num_test=0,
                                                 seed=args.data_seed + 1, overwrite=True,
                                                 repo_id="<org>/trl-mig-bench-learning-pool", **common))  # fmt: skip
    return out


# -- base model -----------------------------------------------------------------------------------------------------


def tiny_config(args: LearningArguments) -> Any:
    """The `bench` preset of `trl_mig.models.tiny` (the demo's model too), at `--hidden_size` and `--num_layers`."""
    from dataclasses import replace

    from trl_mig.models.tiny import TinyModelConfig

    return replace(TinyModelConfig.preset("bench"), hidden_size=args.hidden_size, num_hidden_layers=args.num_layers,
                   intermediate_size=3 * args.hidden_size, rope_theta=args.rope_theta)  # fmt: skip


def base_phases(args: LearningArguments) -> list[Any]:
    """The base model's curriculum (`base_model.py`): four phases, their row sets, templates and learning rates."""
    from base_model import PretrainPhase

    steps = args.pretrain_step_list
    lr, direct, think = args.pretrain_learning_rate, "mig-direct-brief-v1", "mig-think-brief-v1"
    return [
        PretrainPhase("warm-up, plain format", steps[0], {"one_shape": 1.0}, {direct: 1.0}, lr, True),
        PretrainPhase("one shape", steps[1], {"one_shape": 1.0}, {direct: 1.0}, lr),
        # NOTES.md "B3": the choice between two objects is learnt from direct answers at half the rate, not with
        # reasoning rows mixed in from the start
        PretrainPhase("two-object scenes", steps[2], {"one_shape": 0.25, "single": 0.75}, {direct: 1.0}, lr / 2),
        # the language of the reasoning (describing a scene, then the box), on rows the model can already answer:
        # multi-image rows here pulled every answer to the marginal box (NOTES.md, 2026-12-08)
        PretrainPhase("reasoning", steps[3], _phase3_mix(args.pretrain_multi_share), {direct: 0.5, think: 0.5},
                      lr * 0.15),
    ]  # fmt: skip


def _phase3_mix(multi: float) -> dict[str, float]:
    mix = {"one_shape": 0.15, "single": 0.85 - multi}
    return {**mix, "multi": multi} if multi > 0 else mix


def base_path(args: LearningArguments, cache: Path) -> Path:
    """The base's cache folder, named by the settings *and* the curriculum: a changed phase list never reuses an
    old base."""
    from base_model import phases_to_json

    curriculum = json.dumps(phases_to_json(base_phases(args)), sort_keys=True).encode()
    return cache / f"base-{args.key(*_BASE_KEYS)}-{hashlib.sha256(curriculum).hexdigest()[:6]}"


def build_base(args: LearningArguments, cache: Path) -> Path:
    """Pre-train the base model once (`base_model.py`); later runs with the same settings load it from the cache."""
    import torch
    from base_model import phases_to_json, pretrain
    from worlds import one_shape_rows, simple_rows

    from trl_mig.testing import build_tiny_model, build_tiny_processor

    path, phases, steps = base_path(args, cache), base_phases(args), args.pretrain_step_list
    if (path / "config.json").is_file():
        return path
    processor = build_tiny_processor(FRAME, min_pixels=64 * 64, max_pixels=128 * 128)
    model = build_tiny_model(FRAME, tiny_config(args), seed=args.data_seed, processor=processor)
    n = min(10_000, max(steps) * args.pretrain_batch_size // 2)
    datasets = {"one_shape": one_shape_rows(n, args.data_seed + 100, reasoning=args.reasoning),
                "single": simple_rows(n, args.data_seed + 100, "single", args.max_objects, reasoning=args.reasoning)}  # fmt: skip
    if args.pretrain_multi_share > 0:
        datasets["multi"] = simple_rows(min(n, 3000), args.data_seed + 200, args.task_list, args.max_objects,
                                        max_images=args.max_images, reasoning=args.reasoning)  # fmt: skip
    staging = path.with_name(path.name + ".partial")  # same settings, same folder: an interrupted run resumes
    staging.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log = pretrain(model, processor, datasets, phases, frame=FRAME, batch_size=args.pretrain_batch_size,
                   seed=args.data_seed, workdir=staging)  # fmt: skip
    # the per-phase states (`phase-<i>.pt`) stay: they let a later session evaluate what each phase taught
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    per_phase = {line["phase"]: line["seconds"] for line in log}  # each phase's last line: its training seconds
    meta = {"phases": phases_to_json(phases), "seconds": round(sum(per_phase.values()), 1),
            "phase_seconds": per_phase, "this_run_seconds": round(time.perf_counter() - started, 1),
            "parameters": sum(p.numel() for p in model.parameters()), "final_loss": log[-1]["loss"],
            "torch_threads": torch.get_num_threads()}  # fmt: skip
    (staging / "pretrain.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    staging.rename(path)  # a half-trained base never looks finished
    return path


# -- one seed -------------------------------------------------------------------------------------------------------


def run_seed(args: LearningArguments, base: Path, data: dict[str, Path], cache: Path, seed: int) -> dict[str, Any]:
    """SFT -> merge -> rejection sampling -> GRPO for one seed, each stage evaluated; resumable stage by stage."""
    from trl_mig.datasets_builders.reader import load_schema_dataset

    # each stage's folder is named by the settings that determine it, so changing a later stage's settings reuses
    # the earlier stages' results instead of training them again
    run = cache / f"run-{args.key(*_DATA_KEYS, *_BASE_KEYS)}" / f"seed{seed}"
    sft_dir = run / f"sft-{args.key(*_SFT_KEYS)}"
    rl_dir = sft_dir / f"rl-{args.key(*_SAMPLING_KEYS)}"
    grpo_dir = rl_dir / f"grpo-{args.key(*_GRPO_KEYS)}"
    grpo_dir.mkdir(parents=True, exist_ok=True)
    scored = f"eval-{args.key(*_EVAL_KEYS)}"  # each checkpoint's greedy evaluation, named by what changes it
    timings: dict[str, float] = {}
    # the seconds each stage took when it ran, by stage and folder, so that a report from cached stages still says
    # what they cost (a cached stage takes 0 s now)
    ledger_file = run / "seconds.json"
    ledger = json.loads(ledger_file.read_text(encoding="utf-8")) if ledger_file.is_file() else {}

    def timed(name: str, fn, where: Path):
        key = f"{name} @ {where.relative_to(run)}"
        started = time.perf_counter()
        value = fn()
        if key not in ledger:
            ledger[key] = round(time.perf_counter() - started, 1)
            ledger_file.write_text(json.dumps(ledger, indent=1, sort_keys=True), encoding="utf-8")
        timings[name] = ledger[key]
        logger.info("seed %d: %s done in %.0f s", seed, name, timings[name])
        return value

    results = {"base": timed("eval base", lambda: evaluate(args, base, data["cot"], run / f"{scored}-base", "base"),
                             run / f"{scored}-base")}  # fmt: skip
    merged = timed("sft", lambda: run_sft(args, base, data, sft_dir, seed), sft_dir)
    results["sft"] = timed("eval sft", lambda: evaluate(args, merged, data["cot"], sft_dir / scored, "sft"),
                           sft_dir / scored)  # fmt: skip
    sampling = timed("rejection sampling", lambda: run_sampling(args, merged, data, rl_dir, seed), rl_dir)
    rl_rows = load_schema_dataset(str(rl_dir / "rl"), split="train")
    final, history = timed("grpo", lambda: run_grpo(args, merged, rl_rows, grpo_dir / "sft_rl", seed),
                           grpo_dir / "sft_rl")  # fmt: skip
    results["sft_rl"] = timed("eval sft_rl", lambda: evaluate(args, final, data["cot"], grpo_dir / scored, "sft_rl"),
                              grpo_dir / scored)  # fmt: skip
    out = {"results": results, "reward_curve": _curve(history), "timings": timings, "rl_rows": len(rl_rows),
           "sampling": {k: sampling.get(k) for k in ("band", "prompts_sampled", "per_task", "rows")}}  # fmt: skip
    if args.ablations and seed == args.ablation_seed:
        pool = load_schema_dataset(str(data["pool"]), split="train")
        full, no_fmt = grpo_dir / "rl_full", grpo_dir / "rl_no_format"
        full_dir, full_history = timed("grpo full pool", lambda: run_grpo(args, merged, pool, full, seed), full)
        no_fmt_dir, no_fmt_history = timed(
            "grpo without format reward",
            lambda: run_grpo(args, merged, rl_rows, no_fmt, seed, with_format=False),
            no_fmt,
        )
        full_eval, no_fmt_eval = grpo_dir / f"{scored}-rl_full", grpo_dir / f"{scored}-rl_no_format"
        out["ablations"] = {
            "rl_full_pool": {
                "results": timed("eval full pool",
                                 lambda: evaluate(args, full_dir, data["cot"], full_eval, "rl_full"), full_eval),
                "rows": len(pool), "reward_curve": _curve(full_history)},
            "rl_no_format_reward": {
                "results": timed("eval no format",
                                 lambda: evaluate(args, no_fmt_dir, data["cot"], no_fmt_eval, "rl_no_format"),
                                 no_fmt_eval),
                "rows": len(rl_rows), "reward_curve": _curve(no_fmt_history)},
        }  # fmt: skip
    out["wall_time_s"] = round(sum(timings.values()), 1)
    (grpo_dir / "seed.json").write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
    return out


_EVAL_KEYS = ("template", "max_new_tokens")
_SFT_KEYS = ("template", "sft_epochs", "sft_learning_rate", "sft_batch_size", "lora_r")
_SAMPLING_KEYS = ("num_generations", "max_new_tokens", "include_all_wrong")
_GRPO_KEYS = ("grpo_steps", "grpo_learning_rate", "grpo_prompts_per_step", "grpo_beta", "accuracy_reward")


def _curve(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = (
        "step",
        "reward",
        "reward_std",
        "rewards/format_reward/mean",
        "rewards/iou_reward/mean",
        "rewards/iou_threshold_reward/mean",
    )
    return [{k: e[k] for k in keys if k in e} for e in history if "reward" in e]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from report import write_report
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(LearningArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cache = (ROOT / args.cache_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    data = build_data(args, cache)
    base = build_base(args, cache)
    base_check = check_base(args, base)
    seeds = {seed: run_seed(args, base, data, cache, seed) for seed in args.seed_list}
    # what every stage cost when it ran (cached stages take 0 s now): the base once, then each seed's stages
    base_seconds = json.loads((base / "pretrain.json").read_text(encoding="utf-8"))["seconds"]
    compute = base_seconds + sum(run["wall_time_s"] for run in seeds.values())
    report = write_report(asdict(args), seeds, base, base_check, data["cot"], ROOT / args.output_dir,
                          wall_time_s=compute)  # fmt: skip
    logger.info("report written in %.0f s (%.0f s of compute in all, cached stages included)",
                time.perf_counter() - started, compute)  # fmt: skip
    return report


if __name__ == "__main__":
    main()
