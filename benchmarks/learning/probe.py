"""Fast learnability probe: can a tiny Qwen-VL learn to read a box out of an image, and which part fails?

Issue 10 needs a base model that "already grounds a little". `pretrain.py` (the real `MIGSFTTrainer`, the real
templates) showed that tiny models trained from scratch never leave the constant-box baseline on the synthetic
`single` task. This probe answers *why*, quickly: a plain PyTorch loop (about 2x the samples per minute of the
trainer), a one-line prompt, answers as four integers on a 0-100 grid, and three read-outs:

- `--readout text`: the model writes `x1 y1 x2 y2` (cross-entropy on the answer tokens), evaluated greedily;
- `--readout llm`: a linear head on the language model's last hidden state regresses the box (L1): can the
  image-to-text read-out find the box at all, without the digits?
- `--readout vit`: a linear head on the flattened vision-tower tokens regresses the box: is the box in the image
  features?

Worlds (`--world`): `shapes` (one shape on a uniform background, "Locate the shape."), `pairs` (two shapes of named
colours, "Locate the red shape."), `synthetic` (the project's synthetic `single` task: `--style rich|simple`,
`--max_objects`, `--texture_prob`, `--plain_background`). `--mix_shapes F` adds
F x N `shapes` rows to the training rows. Families (`--family`, the project's tiny builders, `trl_mig.testing`):
`qwen2_5_vl` or `qwen3_vl`, whose vision tower adds learned *absolute* position embeddings (Qwen2.5-VL's has none).

Prints one JSON line per evaluation: acc@0.5, parse failures, the correlation of predicted and gold box centres (0
for a constant-box predictor), distinct boxes, samples seen, loss. `--save` writes the weights for `--init`.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learning/probe.py --family qwen3_vl --world shapes --minutes 8 \
        --save /tmp/probe-shapes.pt

Measured results and what they mean: `NOTES.md`, section "Probe".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time


os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


GRID = 100  # answers are integers on a 0-GRID grid
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
           "white": (245, 245, 245), "black": (15, 15, 15)}  # fmt: skip


def _draw(draw, box, side: int, fill, rng: np.random.Generator) -> None:
    shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
    shape([box[0] * side, box[1] * side, box[2] * side - 1, box[3] * side - 1], fill=fill)


def shapes_world(n: int, seed: int, side: int = 112) -> list[tuple]:
    """One axis-aligned rectangle or ellipse, 25-55 % of the side, contrasting with a uniform background."""
    from PIL import Image, ImageDraw

    rng, rows = np.random.default_rng(seed), []
    for _ in range(n):
        background = rng.integers(0, 256, 3)
        colour = tuple(int(v) for v in (background + rng.integers(80, 176, 3)) % 256)
        image = Image.new("RGB", (side, side), tuple(int(v) for v in background))
        w, h = rng.uniform(0.25, 0.55, 2)
        x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        box = [x0, y0, x0 + w, y0 + h]
        _draw(ImageDraw.Draw(image), box, side, colour, rng)
        rows.append((image, "Locate the shape.", box))
    return rows


def pairs_world(n: int, seed: int, side: int = 112) -> list[tuple]:
    """Two non-overlapping shapes of different named colours; the question names the target's colour."""
    from PIL import Image, ImageDraw

    rng, rows, names = np.random.default_rng(seed), [], list(COLOURS)
    while len(rows) < n:
        picked = rng.choice(len(names), 2, replace=False)
        image = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(90, 170, 3)))
        draw, boxes = ImageDraw.Draw(image), []
        for colour in picked:
            for _ in range(20):
                w, h = rng.uniform(0.25, 0.45, 2)
                x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
                box = [x0, y0, x0 + w, y0 + h]
                if all(box[2] < o[0] or o[2] < box[0] or box[3] < o[1] or o[3] < box[1] for o in boxes):
                    boxes.append(box)
                    _draw(draw, box, side, COLOURS[names[colour]], rng)
                    break
        if len(boxes) == 2:
            rows.append((image, f"Locate the {names[picked[0]]} shape.", boxes[0]))
    return rows


def synthetic_world(n: int, seed: int, split: str, args) -> list[tuple]:
    """The project's synthetic `single` rows (`trl_mig.datasets_builders.synthetic`), square 112-px images, in the
    generator's `--style` (`rich` or `simple`), `--plain_background` and `--texture_prob` overriding it."""
    from trl_mig.datasets_builders.synthetic import GeneratorConfig, generate_rows

    overrides = {"plain_background": True} if args.plain_background else {}
    if args.texture_prob is not None:
        overrides["texture_prob"] = args.texture_prob
    config = GeneratorConfig.from_style(args.style, image_min_side=112, image_max_side=112,
                                        max_objects=args.max_objects, min_object_frac=0.2, **overrides)  # fmt: skip
    rows = generate_rows(split, n, seed=seed, tasks="single", config=config)
    return [(r["images"][0].convert("RGB"), r["question"], r["solution"][0]) for r in rows]


def world(name: str, n: int, split: str, args) -> list[tuple]:
    seed = args.seed + (0 if split == "train" else 10_000)
    if name == "shapes":
        return shapes_world(n, seed)
    if name == "pairs":
        return pairs_world(n, seed)
    return synthetic_world(n, args.seed, split, args)


def build(args):
    """Processor + model from the project's tiny builders (`trl_mig.testing`), random weights.

    Images are 112 px: Qwen2.5-VL's 14-px patches and Qwen3-VL's 16-px ones (resized to 128 px) both give 8 x 8
    patches = 16 merged tokens per image.
    """
    from trl_mig.models.tiny import TinyModelConfig
    from trl_mig.testing import build_tiny_model, build_tiny_processor

    tiny = TinyModelConfig(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=3 * args.hidden, vision_hidden_size=64,
                           vision_depth=2, vision_num_heads=2, vision_mlp_ratio=4, rope_theta=args.rope_theta)  # fmt: skip
    side = 128 if args.family == "qwen3_vl" else 112
    processor = build_tiny_processor(args.family, min_pixels=(side // 2) ** 2, max_pixels=side * side)
    return processor, build_tiny_model(args.family, tiny, seed=args.seed, processor=processor)


class Probe:
    def __init__(self, args, processor, model):
        self.args, self.processor, self.model = args, processor, model
        self.tokenizer = processor.tokenizer
        self.eos = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.pad = self.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self.head = torch.nn.LazyLinear(4)  # regression read-outs only

    def prompt(self, question: str) -> str:
        image = "<|vision_start|><|image_pad|><|vision_end|>"
        return f"{question}\n{image}\n" if self.args.query_first else f"{image}{question}\n"

    def encode(self, rows, answers: bool):
        enc = self.processor(images=[r[0] for r in rows], text=[self.prompt(r[1]) for r in rows],
                             return_tensors="pt", padding=True)  # fmt: skip
        if not answers:
            return dict(enc)
        targets = [self.tokenizer(" ".join(str(round(v * GRID)) for v in r[2]), add_special_tokens=False)["input_ids"]
                   + [self.eos] for r in rows]  # fmt: skip
        (batch, length), extra = enc["input_ids"].shape, max(len(t) for t in targets)
        ids = torch.full((batch, length + extra), self.pad)
        labels = torch.full_like(ids, -100)
        mask = torch.zeros_like(ids)
        types = torch.zeros_like(ids)
        ids[:, :length], mask[:, :length], types[:, :length] = (
            enc["input_ids"],
            enc["attention_mask"],
            enc["mm_token_type_ids"],
        )
        for i, t in enumerate(targets):  # prompts are left-padded: answers follow every prompt directly
            ids[i, length : length + len(t)] = labels[i, length : length + len(t)] = torch.tensor(t)
            mask[i, length : length + len(t)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "mm_token_type_ids": types,
                "pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}  # fmt: skip

    def regress(self, rows) -> torch.Tensor:
        enc = self.encode(rows, answers=False)
        if self.args.readout == "vit":
            features = self.model.model.get_image_features(pixel_values=enc["pixel_values"],
                                                           image_grid_thw=enc["image_grid_thw"])  # fmt: skip
            features = getattr(features, "pooler_output", features)
            features = torch.cat(list(features)) if isinstance(features, (list, tuple)) else features
            hidden = features.reshape(len(rows), -1)
        else:
            hidden = self.model.model(**enc).last_hidden_state[:, -1]
        return torch.sigmoid(self.head(hidden))

    def loss(self, rows) -> torch.Tensor:
        if self.args.readout == "text":
            return self.model(**self.encode(rows, answers=True)).loss
        gold = torch.tensor([r[2] for r in rows], dtype=torch.float32)
        return (self.regress(rows) - gold).abs().mean()

    @torch.no_grad()
    def predict(self, rows) -> list[list[float] | None]:
        if self.args.readout != "text":
            return self.regress(rows).tolist()
        enc = self.encode(rows, answers=False)
        out = self.model.generate(**enc, max_new_tokens=16, do_sample=False, eos_token_id=self.eos,
                                  pad_token_id=self.pad)  # fmt: skip
        boxes = []
        for tokens in out[:, enc["input_ids"].shape[1] :]:
            numbers = re.findall(r"\d+", self.tokenizer.decode(tokens, skip_special_tokens=True))
            boxes.append([int(v) / GRID for v in numbers[:4]] if len(numbers) >= 4 else None)
        return boxes


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def evaluate(probe: Probe, rows) -> dict:
    probe.model.eval()
    predicted = [box for s in range(0, len(rows), 25) for box in probe.predict(rows[s : s + 25])]
    probe.model.train()
    pairs = [(p, r[2]) for p, r in zip(predicted, rows) if p is not None]
    result = {"acc@0.5": sum(iou(p, g) >= 0.5 for p, g in pairs) / len(rows),
              "parse_fail": round(1 - len(pairs) / len(rows), 3),
              "distinct_boxes": len({tuple(np.round(p, 3)) for p, _ in pairs})}  # fmt: skip
    for axis, name in ((0, "centre_corr_x"), (1, "centre_corr_y")):
        p = np.array([(b[axis] + b[axis + 2]) / 2 for b, _ in pairs])
        g = np.array([(b[axis] + b[axis + 2]) / 2 for _, b in pairs])
        result[name] = round(float(np.corrcoef(p, g)[0, 1]), 3) if len(p) > 2 and p.std() > 0 else 0.0
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="qwen2_5_vl", choices=["qwen2_5_vl", "qwen3_vl"])
    p.add_argument("--world", default="synthetic", choices=["shapes", "pairs", "synthetic"])
    p.add_argument("--readout", default="text", choices=["text", "llm", "vit"])
    p.add_argument("--minutes", type=float, default=8.0, help="training time (evaluations excluded)")
    p.add_argument("--num_train", type=int, default=20_000)
    p.add_argument("--num_eval", type=int, default=200)
    p.add_argument("--mix_shapes", type=float, default=0.0, help="add this fraction of `shapes` rows to training")
    p.add_argument("--max_objects", type=int, default=3)
    p.add_argument("--style", default="rich", choices=["rich", "simple"], help="synthetic world: generator style")
    p.add_argument("--texture_prob", type=float, default=None, help="synthetic world (default: the style's)")
    p.add_argument("--plain_background", action="store_true", help="synthetic world: one flat background colour")
    p.add_argument("--query_first", action="store_true", help="question before the image (image tokens see it)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--rope_theta", type=float, default=10.0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None, help="weights saved by --save")
    p.add_argument("--save", default=None)
    args = p.parse_args()
    random.seed(args.seed)
    train = world(args.world, args.num_train, "train", args)
    if args.mix_shapes:
        train += shapes_world(int(args.mix_shapes * args.num_train), args.seed + 1)
    test = world(args.world, args.num_eval, "test", args)
    processor, model = build(args)
    probe = Probe(args, processor, model)
    if args.readout != "text":
        probe.loss(train[:2])  # materialise the lazy head before the optimizer sees the parameters
        model.add_module("probe_head", probe.head)
    if args.init:
        model.load_state_dict(torch.load(args.init), strict=False)
    print(json.dumps({"params_m": round(sum(t.numel() for t in model.parameters()) / 1e6, 3), **vars(args)}))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    model.train()
    start, step, losses, next_eval = time.perf_counter(), 0, [], 1.0
    while (minutes := (time.perf_counter() - start) / 60) < args.minutes:
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 30)
        loss = probe.loss(random.sample(train, args.batch_size))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        step += 1
        if minutes >= next_eval:
            paused = time.perf_counter()
            row = {"minutes": round(minutes, 1), "step": step, "seen": step * args.batch_size,
                   "loss": round(float(np.mean(losses[-20:])), 3), **evaluate(probe, test)}  # fmt: skip
            print(json.dumps(row), flush=True)
            start += time.perf_counter() - paused
            next_eval = minutes * 1.6 + 0.5
    if args.save:
        torch.save(model.state_dict(), args.save)
    row = {"final": True, "step": step, "seen": step * args.batch_size,
           "loss": round(float(np.mean(losses[-20:])), 3) if losses else None, **evaluate(probe, test)}  # fmt: skip
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
