"""Is a checkpoint grounding, or answering one box for every image? Greedy answers on held-out rows, compared with
the best *constant* box (searched on the same rows) and the correlation of predicted and gold box centres.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learning/diagnose.py /tmp/learning-D/pretrained --n 150

Same data settings as `pretrain.py` (flags of the same names); prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pretrain import add_data_arguments  # sibling script (benchmarks/learning/ is on sys.path)


os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))


def iou(a, b):
    import numpy as np

    x1, y1 = np.maximum(a[..., 0], b[..., 0]), np.maximum(a[..., 1], b[..., 1])
    x2, y2 = np.minimum(a[..., 2], b[..., 2]), np.minimum(a[..., 3], b[..., 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: (z[..., 2] - z[..., 0]) * (z[..., 3] - z[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter + 1e-9)


def best_constant_box(gold):
    """acc@0.5 of the best single box (grid search, canonical 0-1 units) for every row."""
    import numpy as np

    best = (0.0, None)
    for cx in np.linspace(0.15, 0.85, 15):
        for cy in np.linspace(0.15, 0.85, 15):
            for w in np.linspace(0.2, 0.6, 9):
                for h in np.linspace(0.2, 0.6, 9):
                    box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
                    acc = float((iou(gold, box[None]) >= 0.5).mean())
                    if acc > best[0]:
                        best = (acc, box.round(3).tolist())
    return best


def main() -> None:
    import numpy as np
    import pretrain
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--n", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--family", default="qwen2_5_vl")
    p.add_argument("--tasks", default="single")
    p.add_argument("--template", default="mig-direct-v1")
    add_data_arguments(p)
    p.add_argument("--multi_max_images", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoModelForImageTextToText

    import trl_mig.models  # noqa: F401
    from trl_mig.models.loading import load_processor
    from trl_mig.templates import pixel_limits_from_processor, render_dataset

    pretrain.register_short_template()  # `--template bench-short-v1`
    processor = load_processor(args.model, args.min_pixels, args.max_pixels)
    model = AutoModelForImageTextToText.from_pretrained(args.model).eval()
    multi = args.tasks != "single"
    rows = pretrain.schema_rows("test", args.n, args.seed + (1 if multi else 0), args.tasks,
                                pretrain.generator_config(args, multi))  # fmt: skip
    rendered = render_dataset(rows, args.template, args.family, processor=processor, with_completion=False)
    think = args.template == "mig-think-v1"
    limits = pixel_limits_from_processor(processor)
    from trl_mig.evaluation import evaluate_generator
    from trl_mig.sampling.generation import HFGenerator

    gen = HFGenerator(model, processor, max_new_tokens=256 if think else 40, temperature=0.0)
    result = evaluate_generator(gen, rendered, frame=args.family, pixel_limits=limits, require_think=think)
    gold = np.array([r[0] for r in rows["solution"]], dtype=float)  # canonical 0-1
    pred = np.full_like(gold, np.nan)
    for i, score in enumerate(result.scores):
        if score.box is not None:
            pred[i] = np.asarray(score.box, dtype=float)
    # `score.box` is canonical (0-1) and clipped, like the gold boxes
    ok = ~np.isnan(pred).any(axis=1)
    centre = lambda b: ((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2)  # noqa: E731
    (gx, gy), (px, py) = centre(gold[ok]), centre(pred[ok])
    corr = lambda a, b: float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and a.std() > 0 and b.std() > 0 else 0.0  # noqa: E731
    const_acc, const_box = best_constant_box(gold)
    out = {
        "model": args.model,
        "tasks": args.tasks,
        "template": args.template,
        "n": args.n,
        "acc@0.5": result.metrics["overall"]["acc@0.5"],
        "acc@0.3": result.metrics["overall"]["acc@0.3"],
        "miou": round(result.metrics["overall"]["miou"], 4),
        "parse_fail_rate": result.metrics["overall"]["parse_fail_rate"],
        "wrong_image_rate": result.metrics["overall"].get("wrong_image_rate"),
        "best_constant_box_acc@0.5": const_acc,
        "best_constant_box": const_box,
        "corr_centre_x": round(corr(gx, px), 3),
        "corr_centre_y": round(corr(gy, py), 3),
        "distinct_predictions": len({tuple(np.round(b, 3)) for b in pred[ok]}),
        "examples": [p["output"] for p in result.predictions[:3]],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
