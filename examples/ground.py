"""Ask a grounding model where something is in a few images; print the boxes (original pixels) and draw them.

    python examples/ground.py --model PATH_OR_REPO --image a.jpg --image b.jpg --question "the red mug" \
        --output boxes.png

`--tiny` runs offline with no download: trl-mig's tiny random model (its answers are noise, the pipeline is real)
and two generated images. The drawing puts the input images side by side at their original sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from trl_mig.inference import ground, load_images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint directory or Hub repo id (not needed with --tiny)")
    parser.add_argument("--image", action="append", default=[], help="image path or URL; repeat, in order")
    parser.add_argument("--question", default="Find the red square.", help="what to look for")
    parser.add_argument("--output", default="boxes.png", help="where to save the drawing (PNG)")
    parser.add_argument("--tiny", action="store_true", help="offline tiny random model and generated images")
    parser.add_argument("--template", default="mig-think-v1", help="prompt template the model was trained with")
    parser.add_argument("--frame", default=None, help="answer frame; default: from the model's config")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--min-pixels", type=int, default=None, help="default: the processor's")
    parser.add_argument("--max-pixels", type=int, default=None, help="default: the processor's")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = parser.parse_args(argv)
    if not args.tiny and (not args.model or not args.image):
        parser.error("--model and at least one --image are required (or use --tiny)")
    return args


def demo_images() -> list[Image.Image]:
    """Two small scenes: a blue circle, then a red square (what the default question asks for)."""
    first = Image.new("RGB", (160, 120), "white")
    ImageDraw.Draw(first).ellipse((30, 20, 90, 80), fill="blue")
    second = Image.new("RGB", (128, 128), "white")
    ImageDraw.Draw(second).rectangle((60, 40, 110, 90), fill="red")
    return [first, second]


def load_model(name: str, device: str | None):
    """Model and processor; `import trl_mig.models` first so trl-mig's own processor classes load too."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import trl_mig.models  # noqa: F401

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForImageTextToText.from_pretrained(name, dtype="auto").to(device).eval()
    return model, AutoProcessor.from_pretrained(name)


def side_by_side(images: list[Image.Image], gap: int = 8) -> Image.Image:
    """One picture of the drawn images, left to right, top-aligned on white."""
    width = sum(image.width for image in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, max(image.height for image in images)), "white")
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width + gap
    return canvas


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tiny:
        from trl_mig.testing import tiny_checkpoint

        model_name, images = str(tiny_checkpoint()), demo_images()
        max_new_tokens = min(args.max_new_tokens, 32)  # random weights never stop on their own
    else:
        model_name, images, max_new_tokens = args.model, load_images(args.image), args.max_new_tokens
    model, processor = load_model(model_name, args.device)
    result = ground(
        model, processor, images, args.question, template=args.template, frame=args.frame,
        max_new_tokens=max_new_tokens, min_pixels=args.min_pixels, max_pixels=args.max_pixels,
    )  # fmt: skip
    print(f"answer: {result.text!r}")
    if not result.parsed:
        print("the answer could not be read: no boxes")
    elif result.no_target:
        print("the model says no image contains the target")
    for grounded in result.boxes:
        where = f"image {grounded.image + 1}" if grounded.image is not None else "no image named"
        print(f"{grounded.label}: {where}, box (x1, y1, x2, y2) = {tuple(round(v, 1) for v in grounded.box)}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    side_by_side(result.draw(images)).save(output)
    print(f"drawing saved to {output}")
    print(json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
