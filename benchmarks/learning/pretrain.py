"""Pre-train a tiny Qwen-VL on single-image direct-answer grounding (`single` rows, `mig-direct-v1`), on CPU.

Exploration for `make bench-learning` (issue 10): can a few-million-parameter model, trained from random weights on
two shared CPU cores, learn to ground at all, and how fast? Full fine-tuning with the real `MIGSFTTrainer`
(`use_lora=False`, vision tower trained too), stopped on a wall-clock budget of *training* time; at each checkpoint
(minutes of training, evaluation time excluded) greedy acc@0.5 on held-out `single` rows is measured with
`evaluate_generator`. At the end the model is saved and, optionally, evaluated on 2-3 image multi-image tasks with
`mig-think-v1` prompts (the "base" of the pipeline).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learning/pretrain.py --out /tmp/learning-a --lr 2e-3 --bs 8

Writes `OUT/results.json` (settings, loss curve, evaluations), `OUT/pretrained/` (model + processor).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


SHORT_TEMPLATE = "bench-short-v1"


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """Image and object settings shared by `pretrain.py` and `diagnose.py` (both must build the same data)."""
    p.add_argument("--image_min_side", type=int, default=112)
    p.add_argument("--image_max_side", type=int, default=112)
    p.add_argument("--max_aspect_ratio", type=float, default=1.5)
    p.add_argument("--min_pixels", type=int, default=56 * 56)
    p.add_argument("--max_pixels", type=int, default=112 * 112)
    p.add_argument("--max_objects", type=int, default=3)
    p.add_argument("--min_object_frac", type=float, default=0.2)
    p.add_argument("--texture_prob", type=float, default=0.4)


def register_short_template() -> None:
    """A compact direct-answer template (same completion as `mig-direct-v1`, a ~10-token instruction instead of
    ~300): an experiment on how much of the CPU time the fixed instruction text costs."""
    from trl_mig.templates.registry import TEMPLATES, PromptTemplate, register_template

    if SHORT_TEMPLATE not in TEMPLATES:
        text = '$images Answer <answer>{"image": N, "bbox_2d": [x1, y1, x2, y2]}</answer>.'
        register_template(PromptTemplate(SHORT_TEMPLATE, 1, reasoning=False,
                                         instructions={"json": text, "box_tokens": text}))  # fmt: skip


def parse_size(text: str):
    from trl_mig.models.tiny import TinyModelConfig

    if text in ("tiny", "small"):
        return TinyModelConfig.preset(text)
    # e.g. "hidden_size=128,num_hidden_layers=4,num_attention_heads=4,intermediate_size=384,vision_hidden_size=64"
    kwargs = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        kwargs[key.strip()] = float(value) if "." in value else int(value)
    return TinyModelConfig(**kwargs)


def generator_config(args, multi: bool = False):
    from trl_mig.datasets_builders.synthetic import GeneratorConfig

    return GeneratorConfig(
        image_min_side=args.image_min_side,
        image_max_side=args.image_max_side,
        max_aspect_ratio=args.max_aspect_ratio,
        min_images=2,
        max_images=args.multi_max_images if multi else 3,
        max_objects=args.max_objects,
        min_object_frac=args.min_object_frac,
        texture_prob=args.texture_prob,
    )


def schema_rows(split: str, n: int, seed: int, tasks: str, config):
    from datasets import Dataset

    from trl_mig.datasets_builders.synthetic import generate_rows
    from trl_mig.schema import features

    return Dataset.from_list(generate_rows(split, n, seed=seed, tasks=tasks, config=config),
                             features=features(reasoning=True))  # fmt: skip


def evaluate(model, processor, rendered, frame, limits, require_think, max_new_tokens, batch_size=16):
    from trl_mig.evaluation import evaluate_generator
    from trl_mig.sampling.generation import HFGenerator

    was_training = model.training
    model.eval()
    start = time.perf_counter()
    generator = HFGenerator(model, processor, max_new_tokens=max_new_tokens, temperature=0.0)
    result = evaluate_generator(generator, rendered, frame=frame, pixel_limits=limits, require_think=require_think,
                                batch_size=batch_size)  # fmt: skip
    if was_training:
        model.train()
    out = {k: result.metrics["overall"].get(k) for k in ("acc@0.3", "acc@0.5", "acc@0.7", "miou", "parse_fail_rate",
                                                         "wrong_image_rate", "format_rate")}  # fmt: skip
    out["per_task_acc@0.5"] = {t: v.get("acc@0.5") for t, v in (result.metrics.get("tasks") or {}).items()}
    out["eval_seconds"] = round(time.perf_counter() - start, 1)
    out["examples"] = [p["output"] for p in result.predictions[:3]]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--family", default="qwen2_5_vl", choices=["qwen2_5_vl", "qwen2_vl"])
    p.add_argument("--size", default="small", help="`tiny`, `small`, or key=value,... of TinyModelConfig")
    p.add_argument("--init", default=None, help="start from this checkpoint instead of random weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--bs", type=int, default=8)
    p.add_argument("--scheduler", default="cosine")
    p.add_argument("--schedule_steps", type=int, default=2000, help="max_steps the LR schedule is laid out over")
    p.add_argument("--warmup", type=float, default=0.03)
    p.add_argument("--weight_decay", type=float, default=0.0)
    p.add_argument("--minutes", default="2,5,10", help="training-time checkpoints (min) with an evaluation")
    p.add_argument("--num_train", type=int, default=8000)
    p.add_argument("--num_eval", type=int, default=200)
    p.add_argument("--num_multi", type=int, default=150, help="multi-image rows evaluated at the end (0: none)")
    p.add_argument("--multi_tasks", default="common_object,refer_grounding,group_grounding")
    p.add_argument("--multi_max_images", type=int, default=3)
    add_data_arguments(p)
    p.add_argument("--train_tasks", default="single")
    p.add_argument("--template", default="mig-direct-v1")
    p.add_argument("--use_lora", action="store_true")
    p.add_argument("--lora_r", type=int, default=32)
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    from transformers import PrinterCallback, TrainerCallback

    import trl_mig.models  # noqa: F401
    from trl_mig.models.loading import load_processor
    from trl_mig.templates import pixel_limits_from_processor, render_dataset
    from trl_mig.testing import save_tiny_model
    from trl_mig.trainers import MIGSFTConfig, MIGSFTTrainer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.init:
        base = Path(args.init)
    else:
        base = save_tiny_model(out / "random", args.family, size=parse_size(args.size), seed=args.seed,
                               min_pixels=args.min_pixels, max_pixels=args.max_pixels)  # fmt: skip
    processor = load_processor(str(base), args.min_pixels, args.max_pixels)
    limits = pixel_limits_from_processor(processor)
    cfg = generator_config(args)
    train = schema_rows("train", args.num_train, args.seed, args.train_tasks, cfg)
    test = schema_rows("test", args.num_eval, args.seed, "single", cfg)
    think = args.template == "mig-think-v1"
    register_short_template()
    single_template = SHORT_TEMPLATE if args.template == SHORT_TEMPLATE else "mig-direct-v1"
    test_r = render_dataset(test, single_template, args.family, processor=processor, with_completion=False)
    if args.train_tasks != "single":  # held-out rows of the training mix, in the training template
        # the same held-out multi-image rows as the final evaluation (`--num_multi`, `--multi_tasks`)
        test_mix = schema_rows("test", args.num_multi, args.seed + 1, args.multi_tasks, generator_config(args, True))
        test_mix_r = render_dataset(test_mix, args.template, args.family, processor=processor, with_completion=False)
    print(f"data ready in {time.perf_counter() - t0:.1f}s", flush=True)

    checkpoints = [float(m) for m in args.minutes.split(",")]
    results: dict = {"settings": vars(args), "evals": [], "loss": []}

    class Budget(TrainerCallback):
        """Stop on training wall-clock time (evaluation excluded); evaluate at each checkpoint."""

        def __init__(self):
            self.start = None
            self.excluded = 0.0
            self.pending = list(checkpoints)

        def on_train_begin(self, a, state, control, **kw):
            self.start = time.perf_counter()

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                results["loss"].append({"step": state.global_step, "loss": round(logs["loss"], 4),
                                        "min": round(self.elapsed() / 60, 2)})  # fmt: skip
                print(f"step {state.global_step} loss {logs['loss']:.4f} t={self.elapsed() / 60:.2f}min", flush=True)

        def elapsed(self):
            return time.perf_counter() - self.start - self.excluded

        def on_step_end(self, a, state, control, model=None, **kw):
            if not self.pending or self.elapsed() < 60 * self.pending[0]:
                return
            minute = self.pending.pop(0)
            t = time.perf_counter()
            entry = {"minutes": minute, "step": state.global_step, "samples": state.global_step * args.bs}
            entry["single_direct"] = evaluate(model, processor, test_r, args.family, limits, False, 40)
            if args.train_tasks != "single":
                entry["train_mix"] = evaluate(model, processor, test_mix_r, args.family, limits, think,
                                              256 if think else 40)  # fmt: skip
            results["evals"].append(entry)
            print(json.dumps(entry), flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=1))
            self.excluded += time.perf_counter() - t
            if not self.pending:
                control.should_training_stop = True

    config = MIGSFTConfig(
        str(out / "ckpt"), template=args.template, use_lora=args.use_lora, freeze_vision_tower=False,
        lora_r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0,
        learning_rate=args.lr, per_device_train_batch_size=args.bs, max_steps=args.schedule_steps,
        lr_scheduler_type=args.scheduler, warmup_steps=args.warmup, weight_decay=args.weight_decay,
        max_length=2048, use_cpu=True, bf16=False, report_to="none", disable_tqdm=True, save_strategy="no", logging_steps=10,
        activation_checkpointing=False, merge_at_end=False, seed=args.seed, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = MIGSFTTrainer(str(base), args=config, train_dataset=train, processing_class=processor)
    trainer.remove_callback(PrinterCallback)
    budget = Budget()
    trainer.add_callback(budget)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    results["n_params"] = n_params
    print(f"params {n_params:,}; trainer ready at {time.perf_counter() - t0:.1f}s", flush=True)
    trainer.train()
    results["train_minutes"] = round(budget.elapsed() / 60, 2)
    if args.use_lora:
        model = trainer.model.merge_and_unload()
    else:
        model = trainer.model
    model.save_pretrained(out / "pretrained")
    processor.save_pretrained(out / "pretrained")

    if args.template == SHORT_TEMPLATE:
        r = render_dataset(test, "mig-direct-v1", args.family, processor=processor, with_completion=False)
        results["single_mig-direct-v1_final"] = evaluate(model, processor, r, args.family, limits, False, 40)
        print("single mig-direct-v1", json.dumps(results["single_mig-direct-v1_final"]), flush=True)
    if args.num_multi:
        multi = schema_rows("test", args.num_multi, args.seed + 1, args.multi_tasks, generator_config(args, True))
        for template in ("mig-think-v1", "mig-direct-v1"):
            r = render_dataset(multi, template, args.family, processor=processor, with_completion=False)
            think = template == "mig-think-v1"
            results[f"multi_{template}"] = evaluate(model, processor, r, args.family, limits, think,
                                                    256 if think else 40)  # fmt: skip
            print(template, json.dumps(results[f"multi_{template}"]), flush=True)
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
