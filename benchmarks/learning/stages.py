"""The pipeline stages of `make bench-learning`, one function each, every one resumable from what it wrote.

Each stage is the package's public API as a user calls it: `MIGSFTTrainer` (LoRA, merged), `RejectionSampler`,
`MIGGRPOTrainer`, and `trl_mig.evaluation.run_evaluation` for the greedy scores; `bench_learning.py` chains them per
seed and `report.py` aggregates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:  # pragma: no cover
    from bench_learning import LearningArguments

#: the tiny model's family and answer frame (Qwen3-VL: a 0-1000 grid per image)
FRAME = "qwen3_vl"


def _quiet_args(seed: int) -> dict[str, Any]:
    import torch

    cpu = not torch.cuda.is_available()
    return {"report_to": "none", "disable_tqdm": True, "use_cpu": cpu, "bf16": not cpu, "seed": seed,
            "activation_checkpointing": False, "save_strategy": "no", "logging_steps": 1}  # fmt: skip


def evaluate(args: LearningArguments, model_dir: Path, data: Any, out: Path, label: str, template: str | None = None):
    """Greedy `run_evaluation` of one checkpoint on `data` (the held-out split's folder, or an in-memory `Dataset`);
    resumable: the predictions are kept, and a finished `results.json` is read back."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import trl_mig.models  # noqa: F401  (registers the tiny processor class)
    from trl_mig.evaluation.runner import hf_generate_fn, run_evaluation
    from trl_mig.evaluation.sources import SchemaSource
    from trl_mig.sampling.generation import HFGenerator
    from trl_mig.templates import pixel_limits_from_processor

    results_file = out / "results.json"
    if results_file.is_file():
        return json.loads(results_file.read_text(encoding="utf-8"))
    processor = AutoProcessor.from_pretrained(str(model_dir), padding_side="left")
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir)).eval()
    generator = HFGenerator(model, processor, max_new_tokens=args.max_new_tokens, temperature=0.0)
    source = SchemaSource(str(data), split="test") if isinstance(data, (str, Path)) else SchemaSource(data)
    return run_evaluation(
        source, hf_generate_fn(generator, confidence=False), out, frame=FRAME, template=template or args.template,
        limits=pixel_limits_from_processor(processor), batch_size=args.eval_batch_size, gallery=4,
        meta={"model": label}, progress=False,
    )  # fmt: skip


def check_base(args: LearningArguments, base: Path) -> dict[str, Any]:
    """What the base learnt in pre-training: greedy acc@0.5 on held-out single-image rows of both phases' worlds,
    answered directly and with reasoning (`base/single-image-check.json`)."""
    from datasets import Dataset
    from worlds import one_shape_rows, simple_rows

    done = base / "single-image-check.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    n = max(4, min(100, args.num_test))
    worlds = {"one_shape": one_shape_rows(n, args.data_seed + 7_000),
              "single": simple_rows(n, args.data_seed + 7_000, "single", args.max_objects, split="test")}  # fmt: skip
    out = {}
    for world, rows in worlds.items():
        data = Dataset.from_list([{**r, "task": world} for r in rows])
        for template in ("mig-direct-brief-v1", "mig-think-brief-v1"):
            results = evaluate(args, base, data, base / "check" / f"{world}-{template}", "base", template)
            out[f"{world}/{template}"] = {k: results["overall"].get(k) for k in ("acc@0.5", "miou", "format_rate")}
    done.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return out


def run_sft(args: LearningArguments, base: Path, data: dict[str, Path], run: Path, seed: int) -> Path:
    from trl_mig.datasets_builders.reader import load_schema_dataset
    from trl_mig.trainers import MIGSFTConfig, MIGSFTTrainer

    merged = run / "sft" / "merged"
    if (merged / "config.json").is_file():
        return merged
    config = MIGSFTConfig(
        str(run / "sft"), template=args.template, num_train_epochs=args.sft_epochs,
        learning_rate=args.sft_learning_rate, per_device_train_batch_size=args.sft_batch_size, lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r, lora_dropout=0.0, lr_scheduler_type="cosine", warmup_steps=0.05,
        max_length=2048, **_quiet_args(seed),
    )  # fmt: skip
    trainer = MIGSFTTrainer(str(base), args=config, train_dataset=load_schema_dataset(str(data["cot"]), split="train"))
    trainer.train()
    _write_log(run / "sft" / "log_history.json", trainer.state.log_history)
    return merged


def run_sampling(args: LearningArguments, model: Path, data: dict[str, Path], run: Path, seed: int) -> dict:
    from trl_mig.sampling import RejectionSampler, RejectionSamplingConfig

    done = run / "rl" / "sampling.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    import torch

    config = RejectionSamplingConfig(
        model_name_or_path=str(model), dataset_name=str(data["pool"]), output_dir=str(run / "rl"),
        samples_dir=str(run / "rl-samples"), num_generations=args.num_generations, batch_size=args.eval_batch_size,
        chunk_size=args.eval_batch_size, max_new_tokens=args.max_new_tokens, temperature=1.0, seed=seed,
        use_cpu=not torch.cuda.is_available(), backend="hf", template=args.template,
        repo_id="<org>/trl-mig-bench-learning-rl", include_min=args.include_all_wrong,
    )  # fmt: skip
    summary = RejectionSampler(config).run()
    done.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return summary


def run_grpo(args: LearningArguments, model: Path, rows: Any, out: Path, seed: int, with_format: bool = True):
    """GRPO from `model` on `rows`; returns the final directory and the logged reward curve."""
    from trl_mig.rewards import format_reward, iou_reward, iou_threshold_reward
    from trl_mig.trainers import MIGGRPOConfig, MIGGRPOTrainer

    curve_file = out / "log_history.json"
    if (out / "config.json").is_file() and curve_file.is_file():
        return out, json.loads(curve_file.read_text(encoding="utf-8"))
    config = MIGGRPOConfig(
        str(out), template=args.template, max_steps=args.grpo_steps, learning_rate=args.grpo_learning_rate,
        num_generations=args.num_generations,
        per_device_train_batch_size=args.grpo_prompts_per_step * args.num_generations,
        max_completion_length=args.max_new_tokens, temperature=1.0, beta=args.grpo_beta,
        log_boxes_steps=max(1, args.grpo_steps // 2), num_boxed_completions=2, **_quiet_args(seed),
    )  # fmt: skip
    accuracy = iou_threshold_reward if args.accuracy_reward == "iou_threshold_reward" else iou_reward
    rewards = [format_reward, accuracy] if with_format else [accuracy]
    trainer = MIGGRPOTrainer(str(model), reward_funcs=rewards, args=config, train_dataset=rows)
    trainer.train()
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    _write_log(curve_file, trainer.state.log_history)
    return out, trainer.state.log_history


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(history, indent=1, default=str), encoding="utf-8")
