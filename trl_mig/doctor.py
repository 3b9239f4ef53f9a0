"""`trl-mig doctor`: catch the mistakes that silently ruin multi-image grounding training, before any GPU hour.

What it checks, and why each one matters:

1. **Boxes as the model sees them.** A few rows' gold boxes are rendered as the template writes the answer, in the
   model's frame (from `config.model_type`), for the images *as the processor resizes them* (its real output,
   `image_grid_thw` x patch size), parsed back and drawn on the resized images (PNG panels). A round trip that does
   not land on the gold (IoU < 0.99) is a finding: an error when the loss comes from sizes that disagree (the prompt
   states one resized size, the processor feeds another), a warning when integer coordinates on a small resized image
   cannot hold the box any closer (raise `min_pixels`).
2. **Pixel limits agree.** The processor saved with the model, the run record (`trl_mig_run.json`) of the run that
   produced it and the limits the user means to evaluate with decide the resized sizes, hence the `qwen2_5_vl`
   coordinates: a model trained at one `max_pixels` and evaluated at another is graded on boxes in a frame it never
   saw. Every disagreement is an error naming both values and where they come from.
3. **Token budget.** Prompt tokens (text + image tokens after the resize) against the prompt budget, prompt +
   completion against the total budget: TRL truncates silently, and a truncated multi-image prompt loses images.
4. **Row data.** Gold boxes outside their image or degenerate, targets naming no image, and prompts whose image
   placeholders do not match the row's images (the collator then pairs text and images wrongly, or fails mid-run).

`run_doctor(args)` returns a `DoctorReport` and writes `doctor.json` and the PNGs; `trl-mig doctor` prints the
findings and exits non-zero when any has severity `"error"`.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .geometry import MAX_ASPECT_RATIO, Frame, iou, resized_size
from .parsing import parse_answer
from .scoring import FrameSpec, canonical_box
from .templates import get_template, render_answer, render_completion, render_prompt, resolve_frame
from .templates.dataset import pixel_limits_from_processor


__all__ = ["DEFAULT_TEMPLATE", "DoctorArguments", "DoctorReport", "Finding", "LimitSource", "run_doctor"]

#: the template the trainers and the sampler default to (`MIGGRPOConfig.template`, `MIGSFTConfig.template`)
DEFAULT_TEMPLATE = "mig-think-v1"
#: a round trip below this IoU does not land on the gold
ROUND_TRIP_IOU = 0.99
#: tokenizers report "no limit" as a huge `model_max_length` (1e30); above this it is not a budget
_NO_LIMIT = 10**7
#: image markup left in a question's text: Qwen's image block or pad token (the tokenizer makes them image tokens, and
#: the processor then finds more slots than images) and the `<image>` placeholder of LLaVA-style templates
_IMAGE_MARKUP_RE = re.compile(r"<\|vision_start\|>\s*<\|image_pad\|>\s*<\|vision_end\|>|<\|image_pad\|>|<image>")
_RUN_RECORD = "trl_mig_run.json"
_LIMIT_KEYS = ("min_pixels", "max_pixels")
_BUDGET_KEYS = ("max_prompt_length", "max_length")


@dataclass
class DoctorArguments:
    """Arguments of `trl-mig doctor` (and of `run_doctor`)."""

    model: str | None = field(default=None, metadata={"help": "Model folder or Hub id (its config and processor)."})
    data: str | None = field(default=None, metadata={"help": "Schema set: a builder's output folder or Hub id."})
    split: str = field(default="train", metadata={"help": "Split to check."})
    rows: int = field(default=8, metadata={"help": "How many rows to draw (round trip + PNG panel)."})
    check_rows: int | None = field(default=None, metadata={"help": "How many rows to check; unset: all."})
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Where doctor.json and the PNGs go; unset: <data>/doctor for a folder, else doctor/."},
    )
    template: str = field(default=DEFAULT_TEMPLATE, metadata={"help": "Prompt template the rows are rendered with."})
    frame: str | None = field(
        default=None, metadata={"help": "Answer frame override; unset: from the model's config.model_type."}
    )
    min_pixels: int | None = field(
        default=None, metadata={"help": "min_pixels you intend to evaluate with; unset: the processor's."}
    )
    max_pixels: int | None = field(
        default=None, metadata={"help": "max_pixels you intend to evaluate with; unset: the processor's."}
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={"help": "Prompt token budget; unset: the run record's, else the tokenizer's model_max_length."},
    )
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "Prompt + completion budget; unset: the run record's, else the tokenizer's model_max_length."
        },
    )

    def __post_init__(self) -> None:
        if not self.model or not self.data:
            raise ValueError("--model and --data are required")
        if self.rows < 0 or (self.check_rows is not None and self.check_rows < 0):
            raise ValueError("--rows and --check-rows must be >= 0")


@dataclass(frozen=True)
class Finding:
    """One problem: `severity` is `"error"` (training or evaluation will be wrong) or `"warning"` (worth a look)."""

    severity: str
    check: str
    reason: str
    row_id: str | None = None


@dataclass(frozen=True)
class LimitSource:
    """Pixel limits and token budgets as one place states them (keys it does not state are absent)."""

    source: str
    values: Mapping[str, int]


@dataclass
class DoctorReport:
    """What `run_doctor` found, what it looked at, and where it wrote."""

    findings: list[Finding]
    checked_rows: int
    drawn_rows: int
    frame: str
    template: str
    limits: list[LimitSource]
    used: dict[str, Any]
    images: list[str]
    output_dir: str

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [asdict(f) for f in self.findings],
            "counts": {s: sum(f.severity == s for f in self.findings) for s in ("error", "warning")},
            "checked_rows": self.checked_rows,
            "drawn_rows": self.drawn_rows,
            "frame": self.frame,
            "template": self.template,
            "limits_seen": [{"source": s.source, **s.values} for s in self.limits],
            "used": self.used,
            "images": self.images,
        }


# --- pixel limits and budgets: where each value comes from ---------------------------------------------------------


def _argv_values(argv: Sequence[str] | str) -> dict[str, str]:
    """`--key value` / `--key=value` pairs of a recorded command line, keys with `_` (TrlParser takes both).

    A hand-written record may hold the command line as one string: it is split as a shell would.
    """
    out: dict[str, str] = {}
    argv = shlex.split(argv) if isinstance(argv, str) else list(argv)
    for i, token in enumerate(argv):
        if not token.startswith("--"):
            continue
        key, eq, value = token[2:].partition("=")
        if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
        out[key.replace("-", "_")] = value
    return out


def _config_values(path: str, base: Path) -> dict[str, Any]:
    """The recipe a run was started with (`--config`), when it can still be found: where argv did not set a value."""
    import yaml

    for candidate in (Path(path), base / path):
        if candidate.is_file():
            loaded = yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
            return loaded if isinstance(loaded, dict) else {}
    return {}


def _ints(values: Mapping[str, Any], keys: Iterable[str]) -> dict[str, int]:
    out = {}
    for key in keys:
        try:
            if values.get(key) not in (None, "", "None"):
                out[key] = int(values[key])
        except (TypeError, ValueError):
            continue
    return out


def run_record_path(model: str) -> Path | None:
    """The run record of the run that wrote `model`: in the folder, or in its parent when that names it as `merged`.

    `trl-mig sft` writes the record to `output_dir` and the merged model to `output_dir/merged`.
    """
    folder = Path(model)
    if (folder / _RUN_RECORD).is_file():
        return folder / _RUN_RECORD
    parent = folder.parent / _RUN_RECORD
    if parent.is_file():
        merged = json.loads(parent.read_text(encoding="utf-8")).get("merged")
        if merged and Path(merged).resolve() == folder.resolve():
            return parent
    return None


def run_record_limits(model: str) -> LimitSource | None:
    """Pixel limits and token budgets of the recorded run: its own keys, else its argv, else its `--config` recipe.

    `write_run_record` stores the command line (`argv`), not the parsed values, so the flags are read back here.
    """
    path = run_record_path(model)
    if path is None:
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    argv = _argv_values(record.get("argv") or [])
    config = _config_values(argv["config"], path.parent) if argv.get("config") else {}
    keys = (*_LIMIT_KEYS, *_BUDGET_KEYS)
    values = {**_ints(config, keys), **_ints(argv, keys), **_ints(record, keys)}
    return LimitSource(f"run record {path}", values)


def check_pixel_limits(sources: Sequence[LimitSource]) -> list[Finding]:
    """An error for every pair of sources that states a different `min_pixels` / `max_pixels`."""
    findings = []
    for i, a in enumerate(sources):
        for b in sources[i + 1 :]:
            for key in _LIMIT_KEYS:
                if key in a.values and key in b.values and a.values[key] != b.values[key]:
                    reason = f"{key} disagree: {a.values[key]:,} ({a.source}) vs {b.values[key]:,} ({b.source})"
                    findings.append(Finding("error", "pixel_limits", reason))
    return findings


def _budgets(args: DoctorArguments, record: LimitSource | None, tokenizer: Any) -> dict[str, tuple[int, str] | None]:
    """Each budget and where it comes from: the flag, else the run record, else the tokenizer's maximum."""
    model_max = getattr(tokenizer, "model_max_length", None)
    out: dict[str, tuple[int, str] | None] = {}
    for key in _BUDGET_KEYS:
        flag = getattr(args, key)
        if flag is not None:
            out[key] = (int(flag), f"--{key.replace('_', '-')}")
        elif record is not None and key in record.values:
            out[key] = (record.values[key], record.source)
        elif isinstance(model_max, int) and 0 < model_max < _NO_LIMIT:
            out[key] = (model_max, "tokenizer model_max_length")
        else:
            out[key] = None
    return out


# --- row checks ------------------------------------------------------------------------------------------------------


def check_gold(row: Mapping[str, Any], n_images: int) -> list[Finding]:
    """Gold boxes that are not canonical (four finite values in [0, 1], x1 < x2, y1 < y2) or name no image."""
    rid, findings = str(row.get("id")), []
    sizes = row.get("image_sizes")
    for k, size in enumerate(sizes or []):
        if len(size) != 2 or min(size) <= 0 or max(size) / min(size) > MAX_ASPECT_RATIO:
            reason = f"image {k + 1} has size {list(size)}: the processor refuses it (not positive, or above 200:1)"
            findings.append(Finding("error", "images", reason, rid))
    if sizes is not None and len(sizes) != n_images:
        findings.append(
            Finding("error", "images", f"`image_sizes` has {len(sizes)} entries for {n_images} images", rid)
        )
    solution, targets = row.get("solution"), row.get("target_image") or []
    if solution is None:
        return findings
    if len(targets) != len(solution):
        reason = f"{len(solution)} gold boxes but {len(targets)} `target_image` entries"
        findings.append(Finding("error", "gold", reason, rid))
    for k, box in enumerate(solution):
        values = [float(v) for v in box] if box is not None else []
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            findings.append(Finding("error", "gold", f"gold box {k} {values} is not four finite numbers", rid))
        elif not all(0.0 <= v <= 1.0 for v in values):
            findings.append(
                Finding("error", "gold", f"gold box {k} {values} lies outside its image (not in [0, 1])", rid)
            )
        elif values[0] >= values[2] or values[1] >= values[3]:
            findings.append(Finding("error", "gold", f"gold box {k} {values} is degenerate or inverted", rid))
    for k, target in enumerate(targets):
        if not -1 <= int(target) < n_images:
            reason = f"gold box {k} is in image {int(target)} (0-based) but the row has {n_images} images"
            findings.append(Finding("error", "gold", reason, rid))
    return findings


def count_placeholders(prompt: Sequence[Mapping[str, Any]]) -> int:
    """Image slots a conversational prompt opens: image parts, plus image markup left in its text parts."""
    count = 0
    for message in prompt:
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            if part.get("type") == "image" or part.get("image") is not None:
                count += 1
            elif part.get("text"):
                count += len(_IMAGE_MARKUP_RE.findall(str(part["text"])))
    return count


def stated_sizes(image_sizes: Sequence[Sequence[int]], limits: Mapping[str, int]) -> list[tuple[int, int]]:
    """`(width, height)` after `smart_resize` with `limits`: what the rendered prompt states and the rewards assume."""
    return [resized_size(tuple(s), limits["factor"], limits["min_pixels"], limits["max_pixels"]) for s in image_sizes]


def count_prompt_tokens(
    processor: Any, prompt: Sequence[Mapping[str, Any]], sizes: Sequence[Sequence[int]], factor: int
) -> int:
    """Tokens the processor makes of `prompt` with images resized to `sizes`: each image's one `<|image_pad|>` in the
    chat-templated text becomes `w * h / factor**2` tokens (one per merged patch), as the Qwen-VL processors expand it.
    """
    text = processor.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    pad_id = processor.tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", "<|image_pad|>"))
    pads = sum(1 for i in ids if i == pad_id)
    image_tokens = sum(int(w) * int(h) // factor**2 for w, h in list(sizes)[:pads])
    return len(ids) - pads + image_tokens


def completion_tokens(
    processor: Any, row: Mapping[str, Any], template: str, frame: Frame, limits: Mapping[str, int]
) -> int | None:
    """Tokens of the row's SFT completion (plus `<|im_end|>\\n`), or `None` when the row has none to render."""
    try:
        completion = render_completion(row, template, frame, **limits)
    except ValueError:
        return None
    return len(processor.tokenizer(completion[0]["content"][0]["text"], add_special_tokens=False)["input_ids"]) + 2


def row_prompt(row: Mapping[str, Any], template: str, frame: Frame, limits: Mapping[str, int]) -> list[dict[str, Any]]:
    """The row's rendered `prompt` column when it has one (a rendered set), else the template's rendering."""
    if row.get("prompt"):
        return list(row["prompt"])
    return render_prompt(row, template, frame, **limits)


def check_rendered(row: Mapping[str, Any], frame: Frame, stated: Sequence[Sequence[int]]) -> list[Finding]:
    """A rendered row states its frame and resized sizes (`frame`, `resized_sizes` columns): both must be what this
    model answers in and what its processor produces, or prompts and rewards describe a frame the model never sees."""
    rid, findings = str(row.get("id")), []
    if row.get("frame"):
        try:
            rendered = Frame.parse(row["frame"])
        except ValueError:
            rendered = None
        if rendered is not frame:
            reason = f"row was rendered for frame {row['frame']!r}; the model answers in {frame.value!r}"
            findings.append(Finding("error", "frame", reason, rid))
    if row.get("resized_sizes") is not None and [tuple(s) for s in row["resized_sizes"]] != [tuple(s) for s in stated]:
        said, real = [list(s) for s in row["resized_sizes"]], [list(s) for s in stated]
        reason = f"prompt states resized sizes {said}; the processor gives {real}"
        findings.append(Finding("error", "resize", reason, rid))
    return findings


def check_budget(rid: str, prompt_tokens: int, total: int | None, budgets: Mapping[str, Any]) -> list[Finding]:
    """Over-budget findings: TRL truncates such rows silently (and a truncated prompt loses image tokens)."""
    findings = []
    for key, count in (("max_prompt_length", prompt_tokens), ("max_length", total)):
        budget = budgets.get(key)
        if budget is not None and count is not None and count > budget[0]:
            what = "prompt" if key == "max_prompt_length" else "prompt + completion"
            reason = f"{count} {what} tokens > {key} {budget[0]} ({budget[1]})"
            findings.append(Finding("error", "token_budget", reason, rid))
    return findings


# --- drawing: the round trip as the model sees it -------------------------------------------------------------------


def processor_sizes(processor: Any, images: Sequence[Any]) -> list[tuple[int, int]]:
    """`(width, height)` the processor really feeds the model, from its `image_grid_thw` x patch size."""
    image_processor = processor.image_processor
    grid = image_processor(images=list(images), return_tensors="pt")["image_grid_thw"].tolist()
    patch = int(image_processor.patch_size)
    return [(int(w) * patch, int(h) * patch) for _, h, w in grid]


def _canonical_answer(text: str, spec: FrameSpec, sizes: Sequence[Sequence[int]], resized: Sequence[Sequence[int]]):
    """The parsed answer's boxes back in canonical form, with their 0-based image (`None` if it does not parse)."""
    prediction = parse_answer(text)
    if prediction is None:
        return None
    out = []
    for box, image in zip(prediction.boxes, prediction.images):
        where = 0 if image is None else image
        out.append((canonical_box(box, where, spec, sizes, resized, clip=False), where))
    return out


def round_trip(
    row: Mapping[str, Any], template: str, frame: Frame, limits: Mapping[str, int], real: Sequence[Sequence[int]]
) -> dict[str, Any]:
    """Render the gold answer with the sizes the prompt states, read it back with the sizes the processor produces.

    Returns the answer text, the canonical boxes read back, the IoU with the gold (the worst box) and the IoU the
    integer grid alone allows (reading back with the stated sizes), so a rounding loss and a size mismatch differ.
    """
    sizes = [tuple(s) for s in row["image_sizes"]]
    stated = stated_sizes(sizes, limits)
    answer = render_answer(row["solution"], row["target_image"], frame, sizes, stated, **limits)
    text = get_template(template).completion_text(answer, "")
    spec = FrameSpec(frame, limits["min_pixels"], limits["max_pixels"], limits["factor"])
    back, grid = _canonical_answer(text, spec, sizes, real), _canonical_answer(text, spec, sizes, stated)
    gold = list(zip(row["solution"], row["target_image"]))

    def worst(read):
        if read is None or len(read) != len(gold):
            return 0.0
        # an unknown target (-1) is scored box-only: any image the answer names will do
        return min((iou(b, g) if b is not None and t in (-1, i) else 0.0) for (b, i), (g, t) in zip(read, gold))

    return {"answer": answer, "boxes": back or [], "iou": worst(back), "grid_iou": worst(grid), "stated": stated}


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def draw_row(
    row: Mapping[str, Any],
    index: int,
    processor: Any,
    template: str,
    frame: Frame,
    limits: Mapping[str, int],
    out: Path,
) -> tuple[list[Finding], Path]:
    """Draw one row on its resized images, gold in green and the round-tripped answer in red; return findings, path."""
    from PIL import Image

    from .visualize import grounding_panel

    rid, images = str(row["id"]), [img.convert("RGB") for img in row["images"]]
    findings, real = [], processor_sizes(processor, images)
    sizes = [tuple(s) for s in row["image_sizes"]]
    for k, (image, size) in enumerate(zip(images, sizes)):
        if tuple(image.size) != tuple(size):
            reason = f"image {k + 1} is {image.size[0]}x{image.size[1]} but `image_sizes` says {size[0]}x{size[1]}"
            findings.append(Finding("error", "images", reason, rid))
    stated = stated_sizes(sizes, limits)
    for k, (a, b) in enumerate(zip(stated, real)):
        if tuple(a) != tuple(b):
            reason = (f"image {k + 1}: the processor resizes to {b[0]}x{b[1]} but smart_resize with {dict(limits)} "
                      f"gives {a[0]}x{a[1]}")  # fmt: skip
            findings.append(Finding("error", "resize", reason, rid))
    resized = [img.resize(tuple(size), Image.Resampling.BICUBIC) for img, size in zip(images, real)]
    gold = list(zip(row.get("solution") or [], row.get("target_image") or []))
    caption, pred = f"row {rid} | frame {frame.value} | resized {' '.join(f'{w}x{h}' for w, h in real)}", []
    if gold:
        try:
            trip = round_trip(row, template, frame, limits, real)
        except ValueError as exc:
            findings.append(Finding("warning", "round_trip", f"cannot render the gold answer: {exc}", rid))
        else:
            pred = [(b, i) for b, i in trip["boxes"] if b is not None]
            caption += (
                f"\nanswer {trip['answer']}\nround-trip IoU {trip['iou']:.3f} (grid allows {trip['grid_iou']:.3f})"
            )
            findings.extend(_round_trip_findings(rid, trip))
    path = out / f"{index:03d}-{_safe_name(rid)}.png"
    grounding_panel(resized, gold=gold, pred=pred, caption=caption).save(path)
    return findings, path


def _round_trip_findings(rid: str, trip: Mapping[str, Any]) -> list[Finding]:
    """IoU < 0.99: an error when sizes or frames disagree, a warning when only the integer grid loses precision."""
    if trip["iou"] >= ROUND_TRIP_IOU:
        return []
    if trip["iou"] < trip["grid_iou"] - 1e-6:
        reason = (f"round trip lands at IoU {trip['iou']:.3f} with the processor's sizes, {trip['grid_iou']:.3f} with "
                  f"the stated ones: prompts and answers use another resize than the processor")  # fmt: skip
        return [Finding("error", "round_trip", reason, rid)]
    reason = (f"round trip IoU {trip['iou']:.3f} < {ROUND_TRIP_IOU}: integer coordinates on images resized to "
              f"{trip['stated']} cannot hold this box closer; a larger resize (min/max_pixels) would")  # fmt: skip
    return [Finding("warning", "round_trip", reason, rid)]


# --- the run --------------------------------------------------------------------------------------------------------


def _model_frame(args: DoctorArguments) -> tuple[Frame, str]:
    if args.frame:
        return resolve_frame(args.frame), "--frame"
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(args.model)
    return resolve_frame(config.model_type), f"config.model_type {config.model_type!r}"


def _image_counts(dataset: Any) -> list[int]:
    """Images per row, read from Arrow without decoding a single image."""
    import pyarrow.compute as pc

    column = dataset.data.column("images")
    return [int(v) if v is not None else 0 for v in pc.list_value_length(column).to_pylist()]


def _check_rows(dataset: Any, args: DoctorArguments, processor: Any, frame: Frame, limits: Mapping[str, int],
                budgets: Mapping[str, Any]) -> tuple[list[Finding], int]:  # fmt: skip
    """Checks 3 and 4 on the first `check_rows` rows (images are counted, never decoded)."""
    n = len(dataset) if args.check_rows is None else min(args.check_rows, len(dataset))
    counts = _image_counts(dataset)
    rows = dataset.select_columns([c for c in dataset.column_names if c != "images"])
    findings: list[Finding] = []
    for i in range(n):
        row = rows[i]
        rid = str(row.get("id"))
        row_findings = check_gold(row, counts[i])
        findings.extend(row_findings)
        if any(f.check == "images" for f in row_findings):
            continue  # the prompt cannot be rendered from mismatched sizes; the finding says why
        try:
            prompt = row_prompt(row, args.template, frame, limits)
        except ValueError as exc:
            findings.append(Finding("error", "prompt", f"prompt does not render: {exc}", rid))
            continue
        slots = count_placeholders(prompt)
        if slots != counts[i]:
            findings.append(
                Finding("error", "images", f"prompt has {slots} image placeholders for {counts[i]} images", rid)
            )
            continue
        sizes = stated_sizes(row["image_sizes"], limits)
        findings.extend(check_rendered(row, frame, sizes))
        prompt_tokens = count_prompt_tokens(processor, prompt, sizes, limits["factor"])
        extra = completion_tokens(processor, row, args.template, frame, limits)
        findings.extend(check_budget(rid, prompt_tokens, None if extra is None else prompt_tokens + extra, budgets))
    return findings, n


def _output_dir(args: DoctorArguments) -> Path:
    if args.output_dir:
        return Path(args.output_dir)
    return Path(args.data) / "doctor" if Path(args.data).is_dir() else Path("doctor")


def run_doctor(args: DoctorArguments) -> DoctorReport:
    """Run every check on `args.model` and `args.data`; write `doctor.json` and the PNG panels; return the report."""
    from . import models  # noqa: F401 - registers trl-mig's processor classes (tiny checkpoints)
    from .datasets_builders.reader import load_schema_dataset
    from .models import load_processor

    frame, frame_source = _model_frame(args)
    get_template(args.template)  # fail early on an unknown name
    saved = load_processor(args.model)
    sources = [LimitSource(f"processor saved in {args.model}", pixel_limits_from_processor(saved))]
    record = run_record_limits(args.model) if Path(args.model).is_dir() else None
    if record is not None:
        sources.append(record)
    intended = {k: int(getattr(args, k)) for k in _LIMIT_KEYS if getattr(args, k) is not None}
    if intended:
        sources.append(LimitSource("--min-pixels/--max-pixels flags", intended))
    findings = check_pixel_limits(sources)
    # what evaluation will run with: the saved processor, with the intended limits when given
    processor = load_processor(args.model, args.min_pixels, args.max_pixels) if intended else saved
    limits = {k: v for k, v in pixel_limits_from_processor(processor).items() if k in (*_LIMIT_KEYS, "factor")}
    budgets = _budgets(args, record, processor.tokenizer)
    dataset = load_schema_dataset(args.data, split=args.split)
    row_findings, checked = _check_rows(dataset, args, processor, frame, limits, budgets)
    findings.extend(row_findings)
    out = _output_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(min(args.rows, len(dataset))):
        row = dataset[i]
        try:
            drawn, path = draw_row(row, i, processor, args.template, frame, limits, out)
        except (ValueError, OSError) as exc:  # an image the processor refuses: say so and draw the others
            findings.append(Finding("error", "images", f"cannot draw the row: {exc}", str(row.get("id"))))
            continue
        findings.extend(drawn)
        images.append(str(path))
    used = {"frame_source": frame_source, "pixel_limits": limits,
            "budgets": {k: (None if v is None else {"value": v[0], "source": v[1]}) for k, v in budgets.items()},
            "model": args.model, "data": args.data, "split": args.split}  # fmt: skip
    report = DoctorReport(findings, checked, len(images), frame.value, args.template, sources, used, images, str(out))
    (out / "doctor.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report


def print_findings(report: DoctorReport, console: Any | None = None) -> None:
    """The findings as a rich table on stdout (a summary line when there are none)."""
    from rich.console import Console

    from .reporting import print_summary

    console = console or Console()
    rows = [asdict(f) for f in report.findings] or [{"severity": "ok", "check": "-", "reason": "no findings"}]
    title = (f"trl-mig doctor: {len(report.errors)} errors, {len(report.findings) - len(report.errors)} warnings, "
             f"{report.checked_rows} rows checked, {report.drawn_rows} drawn ({report.output_dir})")  # fmt: skip
    print_summary(title, rows, ["severity", "check", "row_id", "reason"], console=console)
