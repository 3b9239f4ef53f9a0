"""Score simulated answers on the real MIG-Bench annotations, in three model frames, with trl-mig's rewards and metric.

Why: the same box is written three ways by three model families (Qwen2-VL box tokens on a 0-1000 grid, Qwen2.5-VL
JSON in pixels of the *resized* image, Qwen3-VL JSON on a 0-1000 grid). This example answers every MIG-Bench
question with a noisy copy of the gold box in each family's syntax and frame, then scores each set twice: with the
right declared frame (the scores agree across families) and with a wrong one (the same answers look wrong). It writes
`results.json` and `gallery.png` (predicted and gold boxes drawn) to `--output-dir`.

Images are not shipped with MIG-Bench, so image sizes are drawn from common photo sizes, seeded per image path.

    python examples/score_mig_bench_answers.py --output-dir trl-mig-demo
"""

from __future__ import annotations

import argparse
import json
import random
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

from trl_mig.datasets_builders.mig_bench import default_annotations, target_image_for
from trl_mig.geometry import from_canonical, repair_box
from trl_mig.metrics import compute_grounding_metrics
from trl_mig.parsing import parse_answer
from trl_mig.rewards import format_reward, iou_reward
from trl_mig.scoring import FrameSpec, canonical_box, scoring_image


PHOTO_SIZES = [(640, 480), (1024, 768), (1280, 720), (500, 375), (1920, 1080), (480, 640), (800, 800)]
FAMILIES = {
    "qwen2_vl": "box tokens, 0-1000 grid",
    "qwen2_5_vl": "JSON, resized pixels",
    "qwen3_vl": "JSON, 0-1000 grid",
}


def image_size(path: str) -> tuple[int, int]:
    return PHOTO_SIZES[zlib.crc32(path.encode()) % len(PHOTO_SIZES)]


def noisy(box: tuple[float, ...], rng: random.Random, scale: float) -> list[float]:
    w, h = box[2] - box[0], box[3] - box[1]
    return [box[0] + rng.gauss(0, scale) * w, box[1] + rng.gauss(0, scale) * h,
            box[2] + rng.gauss(0, scale) * w, box[3] + rng.gauss(0, scale) * h]  # fmt: skip


def write_answer(box: list[float], image: int, size: tuple[int, int], family: str) -> str:
    """A `<think>...</think><answer>...</answer>` completion as `family` would write it."""
    x1, y1, x2, y2 = from_canonical(box, family, image_size=size)
    if family == "qwen2_vl":
        answer = f"It is in image {image + 1}. <|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"
    else:
        answer = json.dumps({"image": image + 1, "bbox_2d": [x1, y1, x2, y2]})
    return f"<think>The target is in image {image + 1}.</think><answer>{answer}</answer>"


def simulate(records: list[dict], family: str, seed: int) -> list[str]:
    """Mostly close answers, some loose ones, some in the wrong image, a few unreadable."""
    rng = random.Random(f"{seed}-{family}")
    outputs = []
    for row in records:
        roll = rng.random()
        target = max(row["target"], 0)
        image = (target + 1) % len(row["sizes"]) if roll < 0.08 else target
        if roll > 0.95:
            outputs.append("<think>I cannot find it.</think><answer>not visible</answer>")
            continue
        box = noisy(row["gold"], rng, 0.04 if roll < 0.7 else 0.25)
        outputs.append(write_answer(box, image, row["sizes"][image], family))
    return outputs


def gallery(records: list[dict], outputs: list[str], family: str, path: Path, n: int = 8) -> None:
    """Gold (green) and predicted (red) boxes on a canvas of each target image's size, one tile per record."""
    tile = 256
    sheet = Image.new("RGB", (tile * 4, tile * ((n + 3) // 4)), "white")
    for k, (row, output) in enumerate(zip(records[:: len(records) // n][:n], outputs[:: len(records) // n][:n])):
        width, height = row["sizes"][max(row["target"], 0)]
        canvas = Image.new("RGB", (width, height), (235, 235, 235))
        draw = ImageDraw.Draw(canvas)
        gx1, gy1, gx2, gy2 = from_canonical(row["gold"], "pixel", image_size=(width, height))
        draw.rectangle([gx1, gy1, gx2, gy2], outline=(0, 160, 0), width=max(2, width // 100))
        pred = parse_answer(output)
        if pred is not None and pred.box is not None:
            where = scoring_image(row["target"], pred.image, len(row["sizes"]))
            canon = canonical_box(pred.box, where, FrameSpec(family), row["sizes"], None)
            if canon is not None:
                px = from_canonical(canon, "pixel", image_size=(width, height))
                draw.rectangle(list(px), outline=(220, 0, 0), width=max(2, width // 100))
        draw.text((8, 8), f"{row['task']} #{row['id']}", fill=(0, 0, 0))
        canvas.thumbnail((tile - 8, tile - 8))
        sheet.paste(canvas, ((k % 4) * tile + 4, (k // 4) * tile + 4))
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", type=Path, default=default_annotations())
    parser.add_argument("--output-dir", type=Path, default=Path("trl-mig-demo"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)

    raw = json.loads(args.annotations.read_text())
    records, repaired = [], []
    for i, rec in enumerate(raw):
        gold, changed = repair_box(rec["answer"])
        if changed:
            repaired.append(i)
        sizes = [image_size(p) for p in rec["images"]]
        records.append(
            {"id": i, "task": rec["task"], "gold": gold, "target": target_image_for(rec, i), "sizes": sizes}
        )
    print(f"MIG-Bench: {len(records)} records, {len({r['task'] for r in records})} tasks, gold repaired: {repaired}")

    columns = {
        "references": [[r["gold"]] for r in records],
        "target_images": [r["target"] for r in records],
        "image_sizes": [r["sizes"] for r in records],
        "tasks": [r["task"] for r in records],
    }
    results: dict = {"meta": {"annotations": str(args.annotations), "seed": args.seed, "repaired_gold": repaired}}
    print(
        f"\n{'answers written as':<37}{'read as':<13}{'acc@0.5':>8}{'strict':>8}{'miou':>7}{'format':>8}{'reward':>8}"
    )
    for family, description in FAMILIES.items():
        outputs = simulate(records, family, args.seed)
        rewards = iou_reward(outputs, solution=columns["references"], target_image=[[t] for t in columns["target_images"]],
                             image_sizes=columns["image_sizes"], frame=[family] * len(outputs))  # fmt: skip
        formats = format_reward(outputs)
        for declared in (family, "qwen2_5_vl" if family != "qwen2_5_vl" else "qwen3_vl"):
            metrics = compute_grounding_metrics(outputs, frame=declared, **columns)
            o = metrics["overall"]
            mean_reward = (
                sum(r for r in rewards if r is not None) / len(rewards) if declared == family else float("nan")
            )
            print(f"{family + ' (' + description + ')':<37}{declared:<13}{o['acc@0.5']:>8.3f}{o['strict_acc@0.5']:>8.3f}"
                  f"{o['miou']:>7.3f}{sum(formats) / len(formats):>8.3f}{mean_reward:>8.3f}")  # fmt: skip
            results[f"{family}/read_as_{declared}"] = metrics
        gallery(records, outputs, family, args.output_dir / f"gallery_{family}.png")
    (args.output_dir / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.output_dir / 'results.json'} and gallery_*.png (gold green, predicted red)")


if __name__ == "__main__":
    main()
