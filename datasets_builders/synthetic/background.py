"""Backgrounds as pure specifications: gradients, blobs, low-contrast patterns and noise (or one plain colour).

A `Background` holds its own noise seed, so rendering it twice gives the same pixels (two `diff` images share one).
Its pixel range is known without rendering it, which lets `choose_background` keep every object colour apart from
every background pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image


#: smallest distance (Euclidean, RGB) between an object or texture colour and the range of its background's pixels
COLOUR_MARGIN = 80.0


class PlacementError(RuntimeError):
    """A scene could not be laid out; the task sampler draws again (from the same, still deterministic, stream)."""


@dataclass(frozen=True)
class Background:
    """A background: a linear or radial gradient between two colours, a low-contrast pattern, pixel noise; or plain.

    `seed` drives the noise and the blobs, so rendering a `Background` twice gives the same pixels.
    """

    kind: str  # "linear", "radial", "blobs" or "plain" (uniform `colour_a`)
    colour_a: tuple[int, int, int]
    colour_b: tuple[int, int, int]
    angle: float
    pattern: str  # "none", "checker", "stripes", "grid"
    pattern_period: int
    pattern_amplitude: int
    noise_amplitude: int
    seed: int


@lru_cache(maxsize=32)
def background_pixels(background: Background, width: int, height: int) -> np.ndarray:
    """The `(height, width, 3)` uint8 pixels of `background` (read-only, cached)."""
    rng = np.random.default_rng(background.seed)
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    if background.kind == "plain":
        t = np.zeros((1, 1), np.float32)
    elif background.kind == "linear":
        theta = math.radians(background.angle)
        u = xs * math.cos(theta) + ys * math.sin(theta)
        t = (u - u.min()) / max(float(u.max() - u.min()), 1.0)
    elif background.kind == "radial":
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        t = r / max(float(r.max()), 1.0)
    else:  # blobs: a coarse random grid, upsampled smoothly
        coarse = (rng.random((4, 4)) * 255).astype(np.uint8)
        t = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32) / 255
    # per-pixel offset shared by the three channels: the pattern
    period, amplitude = background.pattern_period, np.float32(background.pattern_amplitude)
    ix, iy = np.arange(width)[None, :], np.arange(height)[:, None]
    if background.pattern == "checker":
        offset = np.where((ix // period + iy // period) % 2 == 1, amplitude, -amplitude)
    elif background.pattern == "stripes":
        offset = np.where((ix + iy) // period % 2 == 1, amplitude, -amplitude)
    elif background.pattern == "grid":
        offset = np.where((ix % period == 0) | (iy % period == 0), amplitude, np.float32(0))
    else:
        offset = np.zeros((1, 1), np.float32)
    # channel-first: numpy is several times faster on (3, H, W) than on a trailing axis of 3
    t = np.broadcast_to(t, (height, width))
    pixels = np.empty((3, height, width), np.float32)
    for c, (a, b) in enumerate(zip(background.colour_a, background.colour_b)):
        np.multiply(t, np.float32(b - a), out=pixels[c])
        pixels[c] += np.float32(a) + offset
    if background.noise_amplitude:
        n = background.noise_amplitude
        pixels += rng.integers(-n, n + 1, size=pixels.shape, dtype=np.int8)
    pixels += 0.5
    np.clip(pixels, 0, 255, out=pixels)
    out = np.ascontiguousarray(pixels.astype(np.uint8).transpose(1, 2, 0))
    out.setflags(write=False)
    return out


def background_range(background: Background) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel bounds of the background's pixels, without rendering it.

    The gradient stays between its two colours (the blobs' upsampled grid is clipped to [0, 1]); the pattern and the
    noise move a pixel by at most their amplitudes.
    """
    a, b = np.asarray(background.colour_a, np.float32), np.asarray(background.colour_b, np.float32)
    spread = background.pattern_amplitude + background.noise_amplitude
    return np.clip(np.minimum(a, b) - spread, 0, 255), np.clip(np.maximum(a, b) + spread, 0, 255)


def _random_background(rng: np.random.Generator, scale: float = 1.0) -> Background:
    """A muted random background.

    `scale` in [0, 1] shrinks its brightness range, saturation and contrast towards a flat mid grey, which keeps the
    colour margin from every object colour.
    """
    hue, saturation = rng.random(), rng.uniform(0.05, 0.3) * scale
    value = 0.55 + rng.uniform(-0.25, 0.25) * scale
    base = np.asarray(_hsv_to_rgb(hue, saturation, value)) * 255
    spread = rng.uniform(10, 35) * scale
    shift = rng.normal(size=3)
    shift = shift / max(float(np.linalg.norm(shift)), 1e-6) * spread
    colour_a = tuple(int(v) for v in np.clip(base - shift, 0, 255))
    colour_b = tuple(int(v) for v in np.clip(base + shift, 0, 255))
    return Background(
        kind=str(rng.choice(["linear", "radial", "blobs"])),
        colour_a=colour_a,
        colour_b=colour_b,
        angle=float(rng.uniform(0, 360)),
        pattern=str(rng.choice(["none", "checker", "stripes", "grid"])),
        pattern_period=int(rng.integers(6, 20)),
        pattern_amplitude=int(rng.integers(3, 9) * scale),
        noise_amplitude=int(rng.integers(0, 4)),
        seed=int(rng.integers(2**31)),
    )


def _plain_background(rng: np.random.Generator, scale: float = 1.0) -> Background:
    """A muted uniform colour: `_random_background`'s base colour, without gradient, pattern or noise."""
    hue, saturation = rng.random(), rng.uniform(0.05, 0.3) * scale
    value = 0.55 + rng.uniform(-0.25, 0.25) * scale
    colour = tuple(int(v) for v in np.clip(np.asarray(_hsv_to_rgb(hue, saturation, value)) * 255, 0, 255))
    return Background("plain", colour, colour, 0.0, "none", 1, 0, 0, 0)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def colours_fit(background: Background, colours: Sequence[tuple[int, int, int]]) -> bool:
    """Every colour is at least `COLOUR_MARGIN` away from every pixel of `background`."""
    low, high = background_range(background)
    for rgb in colours:
        rgb = np.asarray(rgb, np.float32)
        nearest = np.clip(rgb, low, high)  # nearest point of the background's colour box
        if float(np.linalg.norm(rgb - nearest)) < COLOUR_MARGIN:
            return False
    return True


def choose_background(
    rng: np.random.Generator, colours: Sequence[tuple[int, int, int]], tries: int = 40, *, plain: bool = False
) -> Background:
    """A random background all `colours` stand out from; `PlacementError` when none is found.

    Candidates become flatter and greyer try after try, so that scenes with both light and dark objects find one.
    `plain` draws uniform colours (kind `"plain"`: no gradient, pattern or noise) under the same margin.
    """
    draw = _plain_background if plain else _random_background
    for k in range(tries):
        background = draw(rng, 1 - k / tries)
        if colours_fit(background, colours):
            return background
    raise PlacementError("no background keeps a colour margin from every object")
