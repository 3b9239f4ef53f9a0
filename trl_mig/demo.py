"""`trl-mig demo`: the whole method, offline, on a laptop, in minutes: the embedded tiny default end to end.

Stages (DESIGN.md section 5), all in this process with the real trainers:

1. **data**: procedural multi-image grounding sets (`trl_mig.datasets_builders.synthetic`, `simple` style): a cold-start
   CoT set whose reasoning is written from the generator's ground truth (no teacher model exists offline), a prompt
   pool for rejection sampling, and a held-out test split;
2. **sft**: `MIGSFTTrainer`, LoRA on the language model of a tiny random Qwen3-VL (or `--base_model`), merged at the end;
3. **sample**: `RejectionSampler` with the merged model; prompts in the pass-rate band form the RL set;
4. **grpo**: `MIGGRPOTrainer` on the RL set, from the merged SFT model;
5. **eval**: greedy answers of `base`, `sft` and `sft_rl` on the held-out split, by `trl-mig eval`'s loop
   (`trl_mig.evaluation.run_evaluation`): `eval/<stage>/` holds `predictions.jsonl`, `results.json`, `results.md`, the
   per-task plot and a gallery of the best and worst answers with gold and predicted boxes; the results also go into
   the trained checkpoints' model cards as `model-index`.

Writes `DIR/report.json` (DESIGN.md section 4), `DIR/report.md` (table, reward curve, pictures), the dataset and model
cards next to what they describe, and each stage's evaluation folder.

Settings: those the learning benchmark found (`make bench-learning`, `benchmarks/learning/bench_learning.py`; the
findings in `benchmarks/learning/NOTES.md`), scaled to the demo's 5-minute budget: the benchmark's tiny Qwen3-VL
(preset `bench`, text width 128, 64x64 to 128x128 pixels per image), the `simple` synthetic world with 112-px images,
the multi-image tasks, the `mig-think-brief-v1` template in every stage, LoRA r32 SFT at 1e-3 (cosine), 6 samples per
prompt at temperature 1, GRPO at 1e-4 without KL. Fewer rows, steps and new tokens than the benchmark: those are the
knobs the budget sets. All of them are `DemoArguments` defaults.

What to expect: the benchmark first pre-trains its base model on grounding for about 30 minutes (cached once), which
the demo's budget has no room for. The demo's base starts from random weights and is not pre-trained, so the stages
run and hand each other what they need, but the model does not learn grounding: its answers stay wrong and metrics
near 0 are the expected result; when no prompt lands in the pass-rate band, the RL set is re-selected from the same
samples with the all-wrong prompts included, and the report says so. `--base_model` runs the same stages from a saved
checkpoint instead (for example the benchmark's cached pre-trained base); the recipes in `examples/recipes/` run the
method on a real model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import __version__
from .demo_config import FAMILY, MAX_PIXELS, MIN_PIXELS, WORLD, DemoArguments


logger = logging.getLogger(__name__)

__all__ = ["DemoArguments", "run_demo"]

STAGES = ("base", "sft", "sft_rl")
_MARKER = ".trl-mig-demo"
_REPORT_KEYS = ("acc@0.3", "acc@0.5", "acc@0.7", "strict_acc@0.5", "miou", "parse_fail_rate", "wrong_image_rate",
                "format_rate")  # fmt: skip


def _prepare_output(args: DemoArguments) -> Path:
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()):
        if not (out / _MARKER).exists():
            raise ValueError(
                f"{out} exists, is not empty and was not made by `trl-mig demo`; choose another --output_dir"
            )
        if not args.overwrite:
            raise ValueError(f"{out} holds a previous demo; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text(f"made by trl-mig {__version__} demo\n")
    return out


class _Clock:
    """Seconds per pipeline step, and the `pipeline` list of the report."""

    def __init__(self, root: Path) -> None:
        self.root, self.steps, self.seconds = root, [], {}

    def run(self, step: str, fn: Callable[[], Any], rows_in: int, rows_out: Callable[[Any], int], output: Any) -> Any:
        from rich.console import Console

        console = Console(stderr=True)
        start = time.perf_counter()
        with console.status(f"[bold]trl-mig demo[/bold]: {step} ..."):
            value = fn()
        seconds = time.perf_counter() - start
        console.print(f"[green]✓[/green] {step} ({seconds:.1f} s)")
        self.seconds[step] = seconds
        self.steps.append({
            "step": step, "rows_in": rows_in, "rows_out": rows_out(value), "seconds": round(seconds, 2),
            "output": _where(output, self.root) if output is not None else None,
        })  # fmt: skip
        return value


def _where(path: Path, root: Path) -> str:
    """`path` relative to the demo folder, or absolute when it lies outside (a `--base_model`)."""
    path, root = Path(path).resolve(), root.resolve()
    return os.path.relpath(path, root) if path.is_relative_to(root) else str(path)


def _base_frame(args: DemoArguments) -> tuple[str, str]:
    """The frame the base model answers in (from its `model_type`) and its name in the report."""
    if args.base_model is None:
        return FAMILY, f"tiny random Qwen3-VL ({args.model_size}), not pre-trained"
    from transformers import AutoConfig

    from .geometry import frame_for_model

    model_type = AutoConfig.from_pretrained(args.base_model).model_type
    return frame_for_model(model_type).value, f"{args.base_model} ({model_type})"


def _cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def run_demo(args: DemoArguments) -> dict[str, Any]:
    """Run every stage and write the report; returns the report dict (`report.json`)."""
    from transformers import AutoProcessor, PrinterCallback

    import trl_mig.models  # noqa: F401  (registers the tiny processor class with AutoProcessor)

    from .datasets_builders import synthetic
    from .datasets_builders.reader import load_schema_dataset as load_dataset
    from .datasets_builders.rl import EmptyRLSetError, PassRateBand, build_rl_set
    from .evaluation.runner import hf_generate_fn, run_evaluation
    from .evaluation.sources import SchemaSource
    from .reporting import print_summary, write_report
    from .sampling import RejectionSampler, RejectionSamplingConfig
    from .sampling.generation import HFGenerator
    from .templates import pixel_limits_from_processor
    from .testing import save_tiny_model
    from .trainers import MIGGRPOConfig, MIGGRPOTrainer, MIGSFTConfig, MIGSFTTrainer
    from .trainers.cards import add_eval_results

    started = time.perf_counter()
    frame, model_name = _base_frame(args)  # before the output folder is replaced: a checkpoint without a frame fails
    root = _prepare_output(args)
    clock = _Clock(root)
    data, models = root / "data", root / "models"
    cpu = _cpu()
    quiet = {"report_to": "none", "disable_tqdm": True, "use_cpu": cpu, "bf16": not cpu, "seed": args.seed,
             "activation_checkpointing": False, "save_strategy": "no", "logging_steps": 1}  # fmt: skip

    # 1. data --------------------------------------------------------------------------------------------------
    def make_data() -> dict[str, int]:
        common = {"tasks": args.tasks, "max_images": args.max_images, "reasoning": args.reasoning, **WORLD}
        synthetic.build(synthetic.BuildArguments(
            output_dir=str(data / "cot"), num_train=args.num_cot, num_test=args.num_test, seed=args.seed,
            repo_id="<org>/trl-mig-demo-cot", **common,
        ))  # fmt: skip
        synthetic.build(synthetic.BuildArguments(
            output_dir=str(data / "pool"), num_train=args.num_pool, num_test=0, seed=args.seed + 1,
            repo_id="<org>/trl-mig-demo-pool", **common,
        ))  # fmt: skip
        return {"cot": args.num_cot, "pool": args.num_pool, "test": args.num_test}

    clock.run("data", make_data, 0, lambda n: sum(n.values()), data)
    cot = load_dataset(str(data / "cot"))
    test_rows = cot["test"]

    base_dir = models / "base" if args.base_model is None else Path(args.base_model)

    def make_base() -> Path:
        if args.base_model is None:  # a given checkpoint is used as it is, never written to
            save_tiny_model(base_dir, FAMILY, size=args.model_size, seed=args.seed, min_pixels=MIN_PIXELS,
                            max_pixels=MAX_PIXELS)  # fmt: skip
        return base_dir

    clock.run("base model", make_base, 0, lambda _: 0, base_dir)
    processor = AutoProcessor.from_pretrained(str(base_dir), padding_side="left")
    limits = pixel_limits_from_processor(processor)

    # 2. sft ---------------------------------------------------------------------------------------------------
    sft_dir = models / "sft"
    sft_args = MIGSFTConfig(
        str(sft_dir), template=args.template, num_train_epochs=args.sft_epochs, learning_rate=args.sft_learning_rate,
        per_device_train_batch_size=args.batch_size, lora_r=args.lora_r, lora_alpha=2 * args.lora_r,
        lora_dropout=0.0, lr_scheduler_type="cosine", warmup_steps=0.05, max_length=2048, **quiet,
    )  # fmt: skip

    def sft() -> Any:
        trainer = MIGSFTTrainer(str(base_dir), args=sft_args, train_dataset=cot["train"])
        trainer.remove_callback(PrinterCallback)  # the report and the summary table say it; no dict per step
        trainer.train()  # merges into models/sft/merged at the end
        return trainer

    sft_trainer = clock.run("sft (LoRA + merge)", sft, len(cot["train"]), lambda t: len(t.train_dataset), sft_dir)
    merged = sft_dir / "merged"
    sft_log = [e for e in sft_trainer.state.log_history if "loss" in e]
    del sft_trainer

    # 3. rejection sampling --------------------------------------------------------------------------------------
    rl_dir = data / "rl"
    sample_config = RejectionSamplingConfig(
        model_name_or_path=str(merged), dataset_name=str(data / "pool"), output_dir=str(rl_dir),
        samples_dir=str(data / "rl-samples"), num_generations=args.num_generations, batch_size=args.batch_size,
        chunk_size=args.batch_size, max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
        use_cpu=cpu, backend="hf", template=args.template, repo_id="<org>/trl-mig-demo-rl",
        min_pass_rate=args.min_pass_rate, max_pass_rate=args.max_pass_rate, include_min=args.include_min,
    )  # fmt: skip

    def sample() -> dict[str, Any]:
        try:
            return RejectionSampler(sample_config).run()
        except EmptyRLSetError as exc:
            # What a random tiny model does: every sample wrong. The shards are complete; re-select from them with
            # the all-wrong prompts included (what `trl-mig build rl --include_min` does), and say so in the report.
            logger.warning("%s", exc)
            band = PassRateBand(sample_config.min_pass_rate, sample_config.max_pass_rate, True,
                                sample_config.include_max)  # fmt: skip
            source = load_dataset(str(data / "pool"), split="train")
            built = build_rl_set(source, sample_config.samples_dir, rl_dir, band, repo_id=sample_config.repo_id)
            built["fallback"] = (
                f"no prompt had a pass rate in {sample_config.band().describe()} (the model gets every sample "
                f"wrong); the RL set was re-selected from the same samples with {band.describe()}"
            )
            return built

    sampled = clock.run("sample", sample, args.num_pool, lambda r: r["rows"]["train"], rl_dir)

    # 4. grpo ----------------------------------------------------------------------------------------------------
    rl_model = models / "sft_rl"
    reward_curve: list[dict[str, Any]] = []
    if sampled["rows"]["train"] == 0:
        logger.warning("the RL set is empty (no prompt in the pass-rate band): GRPO is skipped, sft_rl = sft")
        grpo_rows = 0
    else:
        rl_dir_rows = load_dataset(str(rl_dir), split="train")
        grpo_args = MIGGRPOConfig(
            str(rl_model), template=args.template, max_steps=args.grpo_steps, learning_rate=args.grpo_learning_rate,
            num_generations=args.num_generations,
            per_device_train_batch_size=args.grpo_prompts_per_step * args.num_generations,
            max_completion_length=args.max_new_tokens, temperature=args.temperature, beta=args.grpo_beta,
            log_boxes_steps=max(1, args.grpo_steps // 2), num_boxed_completions=2, **quiet,
        )  # fmt: skip

        def grpo() -> Any:
            trainer = MIGGRPOTrainer(str(merged), args=grpo_args, train_dataset=rl_dir_rows)
            trainer.remove_callback(PrinterCallback)
            trainer.train()
            trainer.save_model(str(rl_model))
            processor.save_pretrained(str(rl_model))
            trainer.create_model_card(model_name="sft_rl", dataset_name="data/rl")
            return trainer

        grpo_trainer = clock.run("grpo", grpo, len(rl_dir_rows), lambda t: len(rl_dir_rows), rl_model)
        reward_curve = [e for e in grpo_trainer.state.log_history if "reward" in e]
        grpo_rows = len(rl_dir_rows)
        del grpo_trainer

    # 5. evaluation: `trl-mig eval`'s loop (resumable predictions, results.json, plot, gallery) per stage --------------
    source = SchemaSource(test_rows, name="schema")
    checkpoints = {"base": base_dir, "sft": merged, "sft_rl": rl_model if grpo_rows else merged}
    stages: dict[str, Any] = {}
    images: list[Path] = []
    from transformers import AutoModelForImageTextToText

    def evaluate(stage: str, path: Path) -> dict[str, Any]:
        model = AutoModelForImageTextToText.from_pretrained(str(path)).eval()
        generator = HFGenerator(model, processor, max_new_tokens=args.max_new_tokens, temperature=0.0)
        return run_evaluation(
            source, hf_generate_fn(generator, confidence=False), root / "eval" / stage, frame=frame,
            template=args.template, limits=limits, batch_size=args.batch_size, gallery=args.images_per_stage,
            meta={"model": f"{stage} ({_where(path, root)})", "stage": stage}, overwrite=True, progress=False,
        )  # fmt: skip

    train_rows = {"base": (0, 0), "sft": (args.num_cot, len(cot["train"])), "sft_rl": (args.num_pool, grpo_rows)}
    train_steps = {"base": (), "sft": ("sft (LoRA + merge)",), "sft_rl": ("sample", "grpo")}
    for stage, path in checkpoints.items():
        results = clock.run(f"eval {stage}", lambda stage=stage, path=path: evaluate(stage, path), len(source),
                            lambda r: r["meta"]["n"], root / "eval" / stage)  # fmt: skip
        images += sorted((root / "eval" / stage / "gallery").glob("*.png"))
        if stage != "base" and (path / "README.md").is_file():
            add_eval_results(path / "README.md", results, model_name=f"trl-mig-demo-{stage}")
        stages[stage] = {
            "metrics": {k: results["overall"].get(k) for k in _REPORT_KEYS},
            "rows_in": train_rows[stage][0],
            "rows_out": train_rows[stage][1],
            "seconds": round(sum(clock.seconds.get(step, 0.0) for step in train_steps[stage]), 2),
            "eval_rows": results["meta"]["n"],
            "eval_seconds": round(clock.seconds[f"eval {stage}"], 2),
            "checkpoint": _where(path, root),
            "results": os.path.relpath(root / "eval" / stage / "results.json", root),
        }

    total = time.perf_counter() - started
    report = {
        "stages": stages,
        "pipeline": clock.steps,
        "reward_curve": reward_curve,
        "sft_loss": [{"step": e.get("step"), "loss": e["loss"]} for e in sft_log],
        "rejection_sampling": {k: sampled.get(k) for k in ("band", "prompts_sampled", "per_task", "fallback")},
        "meta": {
            "template": args.template,
            "frame": frame,
            "pixel_limits": limits,
            "model": model_name,
            "seed": args.seed,
            "settings": asdict(args),
            "device": "cpu" if cpu else "cuda",
            "trl_mig_version": __version__,
            "versions": _versions(),
            "total_seconds": round(total, 1),
            "cards": [os.path.relpath(p, root) for p in sorted(root.rglob("README.md"))],
        },
    }
    write_report(report, root, images=images, title="trl-mig demo: base → SFT → rejection sampling → GRPO")
    rows = [{"stage": s, **{k: v["metrics"].get(k) for k in ("acc@0.5", "strict_acc@0.5", "miou", "format_rate")}}
            for s, v in stages.items()]  # fmt: skip
    print_summary(f"trl-mig demo ({total:.0f} s) -> {root}", rows, ["stage", "acc@0.5", "strict_acc@0.5", "miou",
                                                                   "format_rate"])  # fmt: skip
    return report


def _versions() -> dict[str, str]:
    from .scripts.common import versions

    return versions()


def main_json(args: DemoArguments) -> str:  # pragma: no cover - convenience for notebooks
    return json.dumps(run_demo(args), indent=2)
