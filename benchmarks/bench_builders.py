"""Dataset builder throughput and memory: rows written per second and peak RSS of `mig_bench`, `mgrounding` and
`synthetic`, each in a fresh process, against a bare process that only imports the same modules.

Why: the builders run once per dataset on a user's machine, and MGrounding-630k is large, so what matters is that a
build streams (its peak memory does not grow with the annotation file) and finishes in reasonable time. Every build
runs in its own subprocess (`--one NAME`) so `ru_maxrss` (the peak resident set, KiB on Linux) belongs to that build
alone; the baseline process (`--one baseline`) imports the same modules (the builders plus the libraries they import
lazily: `datasets`/pyarrow, `huggingface_hub`, Pillow) and exits, so the difference is the build's own
increment. Fixtures are made by the parent before the child starts and are not timed; the rate is the rows written
divided by the wall time of the `build(...)` call alone (parquet writing and the card included).

- `mig_bench`: the annotation file shipped in the package; one tiny placeholder PNG per referenced image (all of
  them unless `--mig-limit N`), images embedded (the builder always embeds).
- `mgrounding`: a generated merged `MGrounding-630k.json` in the documented ShareGPT format (`/work/shared/data/
  FORMATS.md`): a mix of types, 1-2 turns, `<image>` placeholders, 0-1000 `<|box_start|>` boxes, some `_gg_reg`
  records the builder skips; every record reuses a handful of small image files by path. 50,000 records by default
  (`--mgrounding-records N`); images embedded unless `--no-embed`.
- `synthetic`: `synthetic.build` with `--synthetic-rows` train rows (2,000 by default), no test split, one worker.

Run alone: `python benchmarks/bench_builders.py [--mgrounding-records 50000 --synthetic-rows 2000 --output FILE]`.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import SEED


BUILDERS = ("mig_bench", "mgrounding", "synthetic")
#: small images reused by every generated MGrounding record (name -> size)
MGROUNDING_IMAGES = {f"img{i}.{'png' if i % 3 == 0 else 'jpg'}": (48 + 8 * i, 40 + 6 * i) for i in range(6)}
ORDINALS = ("first", "second", "third", "fourth")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _import_builders() -> None:
    """What every child imports before it measures anything: the three builders and the libraries their `build`
    imports lazily (`datasets` with pyarrow, `huggingface_hub`, Pillow), so the baseline holds all the code."""
    import datasets  # noqa: F401
    import huggingface_hub  # noqa: F401
    import PIL.Image  # noqa: F401

    import trl_mig.datasets_builders.mgrounding  # noqa: F401
    import trl_mig.datasets_builders.mig_bench  # noqa: F401
    import trl_mig.datasets_builders.synthetic  # noqa: F401


# -- fixtures (parent process, untimed) ---------------------------------------------------------------------------


def make_mig_images(root: Path, limit: int | None) -> int:
    """One placeholder PNG per image the (first `limit`) MIG-Bench records reference, like the test suite's root."""
    from PIL import Image

    from trl_mig.datasets_builders.mig_bench import default_annotations

    records = json.loads(default_annotations().read_text())
    if limit is not None:
        records = records[:limit]
    paths = {p for rec in records for p in rec["images"]}
    for relative in paths:
        path = root / relative.removeprefix("./")
        path.parent.mkdir(parents=True, exist_ok=True)
        size = (20 + len(relative) % 17, 16 + sum(map(ord, relative)) % 23)
        Image.new("RGB", size, (len(relative) % 255, 90, 160)).save(path, format="PNG")
    return len(paths)


def _box(rng: random.Random) -> str:
    x1, y1 = rng.randrange(0, 600), rng.randrange(0, 600)
    x2, y2 = rng.randrange(x1 + 10, 1001), rng.randrange(y1 + 10, 1001)
    return f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"


def _mgrounding_record(i: int, rng: random.Random) -> dict[str, Any]:
    """One record in the documented shape; the type decides image count and answer style."""
    kind = rng.choices(
        ["gg_train", "common_train", "ot_train", "refer_train", "region_train", "free_form_grounding", "_gg_reg"],
        weights=[4, 2, 2, 2, 1, 2, 1],
    )[0]
    n_images = {"region_train": 1, "ot_train": 2, "refer_train": 2}.get(kind, rng.randint(2, 4))
    images = [f"imgs/{name}" for name in rng.choices(list(MGROUNDING_IMAGES), k=n_images)]
    turns = []
    for _ in range(rng.choice((1, 1, 2))):
        thing = rng.choice(("the red umbrella", "a dog on a mat", "the tallest tower", "a blue car"))
        if kind == "_gg_reg":
            turns.append((f"Describe the region {_box(rng)} of the first image.", f"It shows {thing}."))
            continue
        question = f"Find <|object_ref_start|>{thing}<|object_ref_end|> among the images."
        if kind == "ot_train":
            question = f"Track {_box(rng)} of the first image in the second image."
        answer = _box(rng)
        if n_images > 1 and kind in ("gg_train", "common_train", "free_form_grounding"):
            answer = f"It's in the {ORDINALS[rng.randrange(n_images)]} image. {answer}"
        turns.append((question, answer))
    conversations = []
    for t, (question, answer) in enumerate(turns):
        value = "<image>\n" * n_images + question if t == 0 else question
        conversations += [{"from": "human", "value": value}, {"from": "gpt", "value": answer}]
    return {"id": f"bench-{i}", "images": images, "conversations": conversations, "type": kind}


def make_mgrounding(root: Path, records: int) -> Path:
    """Small image files under `root/imgs` and a merged annotation file of `records` records (an indented array)."""
    from PIL import Image

    (root / "imgs").mkdir(parents=True, exist_ok=True)
    for name, size in MGROUNDING_IMAGES.items():
        Image.new("RGB", size, (120, 30, 200)).save(root / "imgs" / name)
    rng = random.Random(SEED)
    path = root / "MGrounding-630k.json"
    with path.open("w") as handle:  # written record by record: the fixture itself should not need 50k in memory
        handle.write("[\n")
        for i in range(records):
            text = json.dumps(_mgrounding_record(i, rng), indent=2, ensure_ascii=False)
            handle.write(("  ,\n" if i else "") + text + "\n")
        handle.write("]\n")
    return path


# -- one measurement (child process) ------------------------------------------------------------------------------


def run_one(name: str, work: Path, opts: argparse.Namespace) -> dict[str, Any]:
    """Import, build once, and report rows, wall seconds of the build call and peak RSS (MiB) of this process."""
    _import_builders()
    after_import = _peak_rss_mib()
    result: dict[str, Any] = {"builder": name, "rss_after_import_mib": round(after_import, 1)}
    if name == "baseline":
        result["peak_rss_mib"] = round(_peak_rss_mib(), 1)
        return result
    out = work / f"out-{name}"
    if name == "mig_bench":
        from trl_mig.datasets_builders import mig_bench

        args = mig_bench.BuildArguments(image_root=str(work / "mig_images"), output_dir=str(out), limit=opts.mig_limit)
        build = mig_bench.build
    elif name == "mgrounding":
        from trl_mig.datasets_builders import mgrounding

        args = mgrounding.BuildArguments(
            annotations=str(work / "mgrounding" / "MGrounding-630k.json"),
            image_root=str(work / "mgrounding"),
            output_dir=str(out),
            embed_images=opts.embed,
        )
        build = mgrounding.build
    elif name == "synthetic":
        from trl_mig.datasets_builders import synthetic

        args = synthetic.BuildArguments(output_dir=str(out), num_train=opts.synthetic_rows, num_test=0, seed=SEED)
        build = synthetic.build
    else:
        raise ValueError(f"unknown builder {name!r}; known: {['baseline', *BUILDERS]}")
    start = time.perf_counter()
    built = build(args)
    seconds = time.perf_counter() - start
    rows = sum(built["rows"].values())
    result.update(
        rows=rows,
        build_seconds=round(seconds, 3),
        rows_per_second=round(rows / seconds, 1),
        peak_rss_mib=round(_peak_rss_mib(), 1),
    )
    if "records" in built:
        result["records"] = built["records"]
        result["skipped"] = built["skipped"]
    return result


def _child(name: str, work: Path, opts: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", name, "--workdir", str(work), "--synthetic-rows",
               str(opts.synthetic_rows)]  # fmt: skip
    if opts.mig_limit is not None:
        command += ["--mig-limit", str(opts.mig_limit)]
    if not opts.embed:
        command.append("--no-embed")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(opts: argparse.Namespace) -> dict[str, Any]:
    work = Path(opts.workdir or tempfile.mkdtemp(prefix="bench-builders-"))
    fixtures: dict[str, Any] = {}
    start = time.perf_counter()
    fixtures["mig_bench_images"] = make_mig_images(work / "mig_images", opts.mig_limit)
    fixtures["mig_bench_seconds"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    annotations = make_mgrounding(work / "mgrounding", opts.mgrounding_records)
    fixtures["mgrounding_records"] = opts.mgrounding_records
    fixtures["mgrounding_file_mib"] = round(annotations.stat().st_size / 2**20, 1)
    fixtures["mgrounding_seconds"] = round(time.perf_counter() - start, 1)
    baseline = _child("baseline", work, opts)
    results = {name: _child(name, work, opts) for name in BUILDERS}
    for r in results.values():
        r["increment_over_baseline_mib"] = round(r["peak_rss_mib"] - baseline["peak_rss_mib"], 1)
    return {
        "baseline_peak_rss_mib": baseline["peak_rss_mib"],
        "mig_bench_limit": opts.mig_limit,
        "mgrounding_embed_images": opts.embed,
        "synthetic_rows": opts.synthetic_rows,
        "fixtures": fixtures,
        "builders": results,
    }


def print_table(report: dict[str, Any]) -> None:
    header = f"{'builder':<12}{'rows':>8}{'seconds':>10}{'rows/s':>10}{'peak RSS MiB':>14}{'over baseline':>15}"
    print(header)
    print("-" * len(header))
    print(f"{'baseline':<12}{'':>8}{'':>10}{'':>10}{report['baseline_peak_rss_mib']:>14.1f}{'':>15}")
    for name, r in report["builders"].items():
        print(
            f"{name:<12}{r['rows']:>8}{r['build_seconds']:>10.2f}{r['rows_per_second']:>10.1f}"
            f"{r['peak_rss_mib']:>14.1f}{r['increment_over_baseline_mib']:>15.1f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mgrounding-records", type=int, default=50_000, help="Records in the generated file.")
    parser.add_argument("--synthetic-rows", type=int, default=2000, help="Train rows of the synthetic build.")
    parser.add_argument("--mig-limit", type=int, default=None, help="Build only the first N MIG-Bench records.")
    parser.add_argument("--no-embed", dest="embed", action="store_false", help="mgrounding: store paths, not bytes.")
    parser.add_argument("--workdir", default=None, help="Fixture/output folder (default: a fresh temp folder).")
    parser.add_argument("--output", default=None, help="Also write the JSON report here.")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child mode: one builder or `baseline`
    opts = parser.parse_args(argv)
    if opts.one is not None:
        print(json.dumps(run_one(opts.one, Path(opts.workdir), opts)))
        return
    start = time.perf_counter()
    report = run(opts)
    report["total_wall_seconds"] = round(time.perf_counter() - start, 1)
    print_table(report)
    print(json.dumps(report, indent=2))
    if opts.output:
        Path(opts.output).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
