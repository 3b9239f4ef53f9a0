"""Words for objects, descriptions, positions and image ordinals; boxes written the way rows store them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from trl_mig.schema import format_box_tag

from .scene import ObjectSpec


#: attributes a description may name, in the order adjectives are written ("the small blue striped star")
ATTRIBUTES = ("size", "colour", "texture", "shape")
_ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


def ordinal(n: int) -> str:
    """`1` -> `"1st"`, `2` -> `"2nd"`, `11` -> `"11th"` (1-based, as people write image numbers)."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def ordinal_word(n: int) -> str:
    """`1` -> `"first"` ... `10` -> `"tenth"` (the words `trl_mig.parsing` reads back)."""
    return _ORDINAL_WORDS[n - 1]


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def attribute_words(obj: ObjectSpec, attributes: Sequence[str] = ATTRIBUTES, *, plain: bool = False) -> str:
    """Adjectives and noun for `obj`, restricted to `attributes`; `"plain"` is written only when `plain` is set."""
    words = []
    for attribute in ATTRIBUTES:
        if attribute not in attributes:
            continue
        value = getattr(obj, attribute)
        if attribute == "texture" and value == "plain":
            if plain:  # "the small plain cyan star" reads better than "the small cyan plain star"
                words.insert(1 if "size" in attributes else 0, value)
            continue
        words.append(value)
    return " ".join(words)


def object_phrase(obj: ObjectSpec) -> str:
    """`"a small red striped triangle"` (texture omitted when plain)."""
    return with_article(attribute_words(obj))


def description(obj: ObjectSpec, attributes: Sequence[str]) -> str:
    """A referring expression naming `attributes` of `obj`: `"the blue striped star"`."""
    return "the " + attribute_words(obj, attributes, plain=True)


def matches(obj: ObjectSpec, target: ObjectSpec, attributes: Sequence[str]) -> bool:
    """`obj` fits the description of `target` restricted to `attributes`."""
    return all(getattr(obj, a) == getattr(target, a) for a in attributes)


def mismatches(obj: ObjectSpec, target: ObjectSpec, attributes: Sequence[str]) -> list[str]:
    return [a for a in attributes if getattr(obj, a) != getattr(target, a)]


def canonical_box(box: Sequence[int], width: int, height: int) -> list[float]:
    """A pixel-edge box as canonical `xyxy` in [0, 1]."""
    x1, y1, x2, y2 = box
    return [x1 / width, y1 / height, x2 / width, y2 / height]


def box_tag(box: Sequence[float], image: int) -> str:
    """`<box image="1">[...]</box>`: 0-based image, canonical, 3 decimals (`trl_mig.schema.format_box_tag`)."""
    return format_box_tag(box, image)


_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "centre", "right")
_PLACES: Mapping[tuple[str, str], str] = {
    ("top", "left"): "near the top-left corner",
    ("top", "centre"): "near the top edge",
    ("top", "right"): "near the top-right corner",
    ("middle", "left"): "on the left side",
    ("middle", "centre"): "in the centre",
    ("middle", "right"): "on the right side",
    ("bottom", "left"): "near the bottom-left corner",
    ("bottom", "centre"): "near the bottom edge",
    ("bottom", "right"): "near the bottom-right corner",
}


def position_phrase(box: Sequence[float]) -> str:
    """Where a canonical box's centre lies, in thirds of the image: `"near the top-left corner"`."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return _PLACES[_ROWS[min(int(cy * 3), 2)], _COLS[min(int(cx * 3), 2)]]


def listing(objects: Sequence[ObjectSpec], boxes: Sequence[Sequence[float]]) -> str:
    """`"a red circle (on the left side), a blue star (in the centre) and ..."`, in reading order."""
    order = sorted(range(len(objects)), key=lambda k: (min(int((boxes[k][1] + boxes[k][3]) * 1.5), 2), boxes[k][0]))
    items = [f"{object_phrase(objects[k])} ({position_phrase(boxes[k])})" for k in order]
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]
