"""Image paths from untrusted annotation files: resolved, and refused unless they stay under the image root.

Annotation files are input, not code: a record naming `../../etc/passwd`, `/etc/passwd`, `MIG-Bench/../../x.png`
or a symlink that leads out of `--image-root` must not make a builder read (and embed in a dataset) a file it was
never pointed at. Every builder that reads images through a record's path goes through `resolve_under`.

Note: the check follows symlinks, so an image root whose files are symlinks to elsewhere (e.g. a Hugging Face cache
snapshot, whose files link to `../../blobs/`) is refused too: point `--image-root` at a real copy
(`snapshot_download(..., local_dir=...)`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from .writer import BadRecordError


#: the reason counted in the card (and named in the error) for a path that leads out of the image root
OUTSIDE_ROOT = "image path outside the image root"
#: the reason for a path that cannot be a file name at all (not a string, empty, NUL byte, symlink loop)
INVALID_PATH = "invalid image path"


@functools.lru_cache(maxsize=64)
def _resolved_root(root: str) -> Path:
    """The image root, resolved once per build (half the cost of a check is resolving the root again per image)."""
    return Path(root).resolve()


def resolve_under(root: str | Path, relative: Any, record_label: str) -> Path:
    """The real path of `relative` under `root`; `BadRecordError` if it is not inside `root` once resolved.

    `..`, absolute paths and symlinks are all resolved first (`Path.resolve()`), so whatever route leads outside
    `root` is refused. A leading `./` is ignored. The file need not exist (a missing file is the caller's error).

    Args:
        root: the image root (`--image-root`); itself may be a symlink.
        relative: the path as the record states it.
        record_label: names the record in the error, e.g. `"MIG-Bench record 12"`.

    Returns:
        the resolved path, to read from (not the path as written, so no link is followed after the check).

    Example:
    ```python
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> resolve_under(root, "./a/b.png", "record 0") == root.resolve() / "a" / "b.png"
    True
    >>> try:
    ...     resolve_under(root, "a/../../etc/passwd", "record 1")
    ... except BadRecordError as exc:
    ...     print(exc.reason)
    image path outside the image root

    ```
    """
    if not isinstance(relative, str) or not relative.strip():
        raise BadRecordError(f"{record_label}: {INVALID_PATH} ({relative!r})", INVALID_PATH)
    try:
        base = _resolved_root(str(root))
        resolved = (base / relative.removeprefix("./")).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # NUL byte, symlink loop
        raise BadRecordError(f"{record_label}: {INVALID_PATH} ({relative!r}: {exc})", INVALID_PATH) from exc
    if resolved != base and not resolved.is_relative_to(base):
        raise BadRecordError(
            f"{record_label}: {OUTSIDE_ROOT} ({relative!r} resolves to {resolved}, outside {base})", OUTSIDE_ROOT
        )
    return resolved


def read_image(root: str | Path, relative: Any, record_label: str) -> tuple[Path, bytes, tuple[int, int]]:
    """Read and verify one image a record names: `(path, bytes, (width, height))`.

    The path goes through `resolve_under`; a missing, truncated or undecodable file (or a decompression bomb) is a
    `BadRecordError` named `"<record_label>: missing image <path> (...)"` or `"... unreadable image ..."`. The bytes
    are read once and embedded as they are (no re-encoding); `verify()` catches truncated files that `open()` accepts.
    """
    from PIL import Image, UnidentifiedImageError

    path = resolve_under(root, relative, record_label)
    try:
        data = path.read_bytes()
        with Image.open(path) as image:
            size = image.size
            image.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = "missing image" if not path.exists() else "unreadable image"
        raise BadRecordError(f"{record_label}: {reason} {path} ({exc})", reason) from exc
    return path, data, (int(size[0]), int(size[1]))
