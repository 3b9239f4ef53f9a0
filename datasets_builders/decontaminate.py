"""Decontamination: drop training rows whose images also appear in a benchmark set.

Two checks, both on pixels (so a re-encoded or renamed copy of a benchmark image is still caught):
- **exact**: SHA-256 of the image's RGB pixels and size (`content_hash`): the same picture under another name or in
  another lossless file; a lossy re-encoding changes pixels, hence
- **near-duplicate** (cheap): a 64-bit difference hash of a 9x8 greyscale thumbnail (`dhash`); two images whose hashes
  differ in at most `max_distance` bits (default 10 of 64) count as the same picture (resized, re-compressed, slightly
  re-coloured). Measured on the synthetic images: JPEG-recompressed, 80%-resized copies 0-10 bits apart, distinct
  images 17-41. Lookups compare against every benchmark hash with a numpy popcount: fine for benchmark-sized sets
  (MIG-Bench has about 4,300 images, MC-Bench 4,000).

A row is dropped when any of its images matches; the builder counts the drops per benchmark in its card.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image


__all__ = ["BenchmarkIndex", "content_hash", "decontaminate_field", "dhash", "drop_contaminated"]

#: grey levels a thumbnail must span for its difference hash to mean anything
_FLAT_RANGE = 8


def _open(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, dict):  # datasets' undecoded form
        if image.get("bytes"):
            return Image.open(io.BytesIO(image["bytes"]))
        return Image.open(image["path"])
    return Image.open(image)


def content_hash(image: Any) -> str:
    """SHA-256 of the RGB pixels and the size: the same picture in any file format and name hashes the same."""
    rgb = _open(image).convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def dhash(image: Any) -> int | None:
    """64-bit difference hash: 9x8 greyscale thumbnail, one bit per horizontal neighbour comparison; `None` for a
    (nearly) flat image, whose hash says nothing (every blank image would hash 0 and "match" every other).

    Example:
    ```python
    >>> from PIL import Image
    >>> a = Image.linear_gradient("L").convert("RGB")
    >>> dhash(a) == dhash(a.resize((97, 53)))
    True
    >>> dhash(Image.new("RGB", (32, 32), "red")) is None
    True

    ```
    """
    grey = np.asarray(_open(image).convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    if int(grey.max()) - int(grey.min()) < _FLAT_RANGE:
        return None
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


@dataclass
class BenchmarkIndex:
    """Hashes of every image of one or more benchmark sets, and the check of a row against them.

    Args:
        max_distance: near-duplicate threshold in bits (0 disables the near-duplicate check).
    """

    max_distance: int = 10
    exact: dict[str, str] = field(default_factory=dict)  # content hash -> benchmark name
    near: list[tuple[int, str]] = field(default_factory=list)
    _near_array: np.ndarray | None = None

    def add(self, images: Iterable[Any], name: str) -> int:
        n = 0
        for image in images:
            self.exact.setdefault(content_hash(image), name)
            near = dhash(image) if self.max_distance > 0 else None
            if near is not None:
                self.near.append((near, name))
            n += 1
        self._near_array = None
        return n

    @classmethod
    def from_dirs(cls, dirs: Sequence[str | os.PathLike], max_distance: int = 10) -> BenchmarkIndex:
        """Index every image of the schema sets in `dirs` (builder output folders, every split)."""
        from .reader import load_schema_dataset

        index = cls(max_distance=max_distance)
        for directory in dirs:
            dataset = load_schema_dataset(str(directory))
            name = os.path.basename(os.path.normpath(str(directory)))
            for split in dataset.values():
                index.add((image for row in split for image in row["images"]), name)
        return index

    def match(self, image: Any) -> str | None:
        """The benchmark an image belongs to (exactly or as a near-duplicate), else `None`."""
        found = self.exact.get(content_hash(image))
        if found is not None or not self.near:
            return found
        if self._near_array is None:
            self._near_array = np.array([h for h, _ in self.near], dtype=np.uint64)
        near = dhash(image)
        if near is None:
            return None
        xor = self._near_array ^ np.uint64(near)
        distance = np.unpackbits(xor.view(np.uint8)).reshape(len(xor), 64).sum(axis=1)  # popcount, numpy 1.26 too
        best = int(np.argmin(distance))
        return self.near[best][1] if int(distance[best]) <= self.max_distance else None

    def filter(self, rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter]:
        """The rows with no image in any benchmark, and how many were dropped per benchmark."""
        kept, dropped = [], Counter()
        for row in rows:
            hit = next((m for m in (self.match(image) for image in row["images"]) if m is not None), None)
            if hit is None:
                kept.append(row)
            else:
                dropped[hit] += 1
        return kept, dropped


def drop_contaminated(rows: list[dict[str, Any]], dirs: Sequence[str | os.PathLike]) -> tuple[list[dict], dict]:
    """`rows` without those sharing an image with the benchmark sets in `dirs`, and the drops per benchmark (card
    `skipped` entries). No `dirs`: the rows unchanged."""
    if not dirs:
        return rows, {}
    kept, dropped = BenchmarkIndex.from_dirs(dirs).filter(rows)
    return kept, {f"decontamination: an image is in benchmark set `{b}`": n for b, n in dropped.items()}


def decontaminate_field() -> Any:
    """The `decontaminate_against` dataclass field every training-set builder and job shares (`--decontaminate-against
    DIR [DIR ...]`)."""
    from dataclasses import field as dataclass_field

    return dataclass_field(
        default_factory=list,
        metadata={"help": "Benchmark set folders: rows with an image in one of them (exact or near-duplicate) are "
                  "dropped and counted in the card."},
    )  # fmt: skip
