"""The tasks: each draws scenes, renders them, and writes the question and two reasonings from its ground truth.

The `full` reasoning lists every object of every image, the near misses and the target's box; the `brief` one keeps
only what decides the answer (the target's attributes, its image, a coarse position). Both are written from values
already drawn, after the last draw that shapes the row, so the same seed gives the same row in either mode.

Where each task's target is: `target_rules()` (also written into the dataset card).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from .sampling import (
    IDENTITY,
    GeneratorConfig,
    TaskSample,
    changeable,
    choose_attributes,
    distractor,
    layout,
    make_scene,
    n_distractors,
    random_object,
    random_size,
    random_value,
    render,
    sample_size,
)
from .scene import ObjectSpec, Scene, choose_background, place_objects, with_pose
from .text import (
    attribute_words,
    box_tag,
    description,
    listing,
    mismatches,
    object_phrase,
    ordinal,
    ordinal_word,
    position_phrase,
    with_article,
)


def target_rules(cfg: GeneratorConfig | None = None) -> str:
    """Per task: images, target image, what the question says (a markdown table; the dataset card quotes it)."""
    cfg = cfg or GeneratorConfig()
    some = f"{cfg.min_images}-{cfg.max_images}"
    return "\n".join(
        [
            "| task | images | `target_image` (0-based) | the question |",
            "| --- | --- | --- | --- |",
            '| `single` | 1 | 0 | names the target by a description: "Locate the red triangle." |',
            f'| `common_object` | {some} | N - 1, stated: "... in the Nth image" | one object (shape, colour, '
            "texture) is in every image, and no other |",
            '| `diff` | 2 | 1, stated: "... in the second image" | image 2 is image 1 with one object added, changed '
            "or moved; the box is that object in image 2 |",
            '| `refer_grounding` | 2 | 1 ("image-2") | image 1 shows the object alone; image 2 holds one object of '
            "the same shape, colour and texture |",
            f'| `group_grounding` | {some} | not stated; known from the generator | a description ("the small blue '
            'striped star") fits one object of all the images |',
            f'| `multi_view` | 2-{cfg.max_images} | N - 1 (N >= 2), stated: "... in the Nth image" | a reference box '
            '`<box image="0">[...]</box>` in the question marks the object in image 0 |',
        ]
    )


def _pick(rng: np.random.Generator, templates: tuple[str, ...]) -> str:
    return templates[int(rng.integers(len(templates)))]


def _texts(cfg: GeneratorConfig, full: str, brief: str) -> tuple[str, dict[str, str]]:
    """The reasoning `cfg` asks for and both texts (`TaskSample.reasoning`, `TaskSample.reasonings`); draws nothing."""
    texts = {"full": full, "brief": brief}
    return texts[cfg.reasoning], texts


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _notes(scope, target: ObjectSpec, attributes, *, limit: int = 3) -> str:
    """Sentences about near misses: objects that fit the description but for one attribute."""
    notes = []
    for where, obj, box in scope:
        wrong = mismatches(obj, target, attributes)
        if len(wrong) != 1:
            continue
        (attribute,) = wrong
        rest = attribute_words(obj, [a for a in attributes if a != attribute], plain=True)
        if attribute == "shape":
            subject, what, wanted = f"{rest} object".strip(), with_article(obj.shape), with_article(target.shape)
        else:
            subject, what, wanted = rest, getattr(obj, attribute), getattr(target, attribute)
        notes.append(f"The {subject} {position_phrase(box)}{where} is {what}, not {wanted}.")
        if len(notes) == limit:
            break
    return (" ".join(notes) + " ") if notes else ""


def single(rng: np.random.Generator, cfg: GeneratorConfig) -> TaskSample:
    size = sample_size(rng, cfg)
    target = random_object(rng, cfg)
    attributes = choose_attributes(rng, cfg, target)
    others = [distractor(rng, cfg, target, attributes) for _ in range(n_distractors(rng, cfg))]
    scene = make_scene(rng, cfg, size, layout(rng, cfg, size, [target], others))
    images, boxes = render([scene])
    objects, target_box, desc = scene.objects, boxes[0][0], description(target, attributes)
    question = _pick(
        rng, (f"Locate {desc}.", f"Find {desc} in the image.", f"Where is {desc}? Give its bounding box.")
    )
    notes = _notes([("", o, b) for o, b in zip(objects[1:], boxes[0][1:])], target, attributes)
    reasoning = (
        f"Image 1 shows {len(objects)} shapes: {listing(objects, boxes[0])}. {notes}Only one of them is "
        f"{with_article(desc.removeprefix('the '))}: it is {position_phrase(target_box)}, so the target is in image 1 "
        f"at {box_tag(target_box, 0)}."
    )
    brief = f"{_capitalised(desc)} is {position_phrase(target_box)} of image 1."
    reasoning, texts = _texts(cfg, reasoning, brief)
    info = {"attributes": attributes}
    return TaskSample("single", [scene], images, boxes, question, reasoning, 0, 0, info=info, reasonings=texts)


def common_object(rng: np.random.Generator, cfg: GeneratorConfig) -> TaskSample:
    n = int(rng.integers(cfg.min_images, cfg.max_images + 1))
    target_image = int(rng.integers(n))
    common = random_object(rng, cfg)
    sizes, placed = [], []
    for _ in range(n):
        size = sample_size(rng, cfg)
        others = [distractor(rng, cfg, common, IDENTITY) for _ in range(n_distractors(rng, cfg))]
        sizes.append(size)
        placed.append(layout(rng, cfg, size, [random_size(rng, common)], others))
    # exactly one identity may be in every image: drop any other from the first image
    shared = set.intersection(*({o.identity for o in objects[1:]} for objects in placed))
    placed[0] = [placed[0][0]] + [o for o in placed[0][1:] if o.identity not in shared]
    scenes = [make_scene(rng, cfg, size, objects) for size, objects in zip(sizes, placed)]
    images, boxes = render(scenes)
    target_box = boxes[target_image][0]
    nth = _pick(rng, (ordinal(target_image + 1), ordinal_word(target_image + 1)))
    question = _pick(
        rng,
        (
            f"These images share one object in common. Recognize and locate this object in the {nth} image.",
            f"Exactly one object appears in all of these images. Locate it in the {nth} image.",
        ),
    )
    lines = " ".join(f"Image {i + 1}: {listing(s.objects, b)}." for i, (s, b) in enumerate(zip(scenes, boxes)))
    words, where = attribute_words(common, IDENTITY), position_phrase(target_box)
    reasoning = (
        f"{lines} The {words} is the only object present in all {n} images. "
        f"In image {target_image + 1} it is {where}, at {box_tag(target_box, target_image)}."
    )
    brief = f"The {words} is in all {n} images; in image {target_image + 1} it is {where}."
    reasoning, texts = _texts(cfg, reasoning, brief)
    return TaskSample("common_object", scenes, images, boxes, question, reasoning, target_image, 0, reasonings=texts)


def diff(rng: np.random.Generator, cfg: GeneratorConfig) -> TaskSample:
    size = sample_size(rng, cfg)
    change = str(rng.choice(["added", "changed", "moved"]))
    frac = cfg.min_object_frac
    first = layout(
        rng, cfg, size, [random_object(rng, cfg)], [random_object(rng, cfg) for _ in range(cfg.max_objects - 2)]
    )
    first = first[: int(rng.integers(1, len(first) + 1))]
    if change == "added":
        (new,), _ = place_objects(
            rng, *size, [random_object(rng, cfg)], fixed=tuple(first), min_object_frac=frac, rotate=cfg.rotate
        )
        second, target = [*first, new], len(first)
    else:
        target = int(rng.integers(len(first)))
        old = first[target]
        if change == "changed":
            candidates = changeable(cfg, IDENTITY)
            attributes = [str(a) for a in rng.choice(candidates, size=int(rng.integers(1, 3)), replace=False)]
            new = replace(old, **{a: random_value(rng, cfg, a, other_than=getattr(old, a)) for a in attributes})
            new = with_pose(rng, new, rotate=cfg.rotate) if new.shape != old.shape else new
        else:
            others = tuple(o for k, o in enumerate(first) if k != target)
            (new,), _ = place_objects(rng, *size, [old], fixed=(*others, old), min_object_frac=frac, rotate=cfg.rotate)
        second = [new if k == target else o for k, o in enumerate(first)]
    background = choose_background(rng, (*first, *second), plain=cfg.plain_background)
    scenes = [Scene(*size, background, tuple(first)), Scene(*size, background, tuple(second))]
    images, boxes = render(scenes)
    target_box = boxes[1][target]
    question = _pick(
        rng,
        (
            "Compare these two images carefully and locate their difference in the second image.",
            "The two images differ in one object. Give the bounding box of the difference in the second image.",
        ),
    )
    seen = f"Image 1 shows {listing(first, boxes[0])}."
    where = position_phrase(target_box)
    if change == "added":
        what = f"Image 2 shows the same scene plus {object_phrase(second[target])} {where}."
        brief = f"Image 2 adds {object_phrase(second[target])} {where}."
    elif change == "changed":
        what = f"In image 2 the {attribute_words(first[target])} {where} has become {object_phrase(second[target])}."
        brief = what
    else:
        before = position_phrase(boxes[0][target])
        what = f"In image 2 the {attribute_words(first[target])} that was {before} is now {where}."
        brief = f"In image 2 the {attribute_words(first[target])} has moved and is now {where}."
    reasoning = (
        f"{seen} {what} Everything else is unchanged, so the difference is in image 2 at {box_tag(target_box, 1)}."
    )
    reasoning, texts = _texts(cfg, reasoning, brief)
    info = {"change": change}
    return TaskSample("diff", scenes, images, boxes, question, reasoning, 1, target, info=info, reasonings=texts)


def refer_grounding(rng: np.random.Generator, cfg: GeneratorConfig) -> TaskSample:
    side = int(rng.integers(max(48, cfg.image_min_side // 2), cfg.image_min_side + 1))
    target = random_object(rng, cfg)
    diameter = float(rng.uniform(0.5, 0.75)) * side
    cx, cy = side / 2 + rng.uniform(-1, 1, size=2) * max(0.0, (side - diameter) / 2 - 3)
    exemplar = replace(target, size="large", diameter=diameter, cx=float(cx), cy=float(cy))
    exemplar = with_pose(rng, exemplar, rotate=cfg.rotate)
    size = sample_size(rng, cfg)
    others = [distractor(rng, cfg, target, IDENTITY, near_p=0.6) for _ in range(n_distractors(rng, cfg))]
    scenes = [
        make_scene(rng, cfg, (side, side), [exemplar]),
        make_scene(rng, cfg, size, layout(rng, cfg, size, [random_size(rng, target)], others)),
    ]
    images, boxes = render(scenes)
    target_box = boxes[1][0]
    question = _pick(
        rng,
        (
            "Find and locate where the object in image-1 is in image-2.",
            "The first image shows an object. Locate the same object in the second image.",
        ),
    )
    objects = scenes[1].objects
    notes = _notes([("", o, b) for o, b in zip(objects[1:], boxes[1][1:])], target, IDENTITY)
    words = attribute_words(target, IDENTITY)
    reasoning = (
        f"Image 1 shows {with_article(words)} on its own. "
        f"Image 2 shows {listing(objects, boxes[1])}. {notes}The {words} in image 2 is {position_phrase(target_box)}, "
        f"at {box_tag(target_box, 1)}."
    )
    brief = f"Image 1 shows {with_article(words)}; in image 2 it is {position_phrase(target_box)}."
    reasoning, texts = _texts(cfg, reasoning, brief)
    return TaskSample("refer_grounding", scenes, images, boxes, question, reasoning, 1, 0, reasonings=texts)


def group_grounding(rng: np.random.Generator, cfg: GeneratorConfig) -> TaskSample:
    n = int(rng.integers(cfg.min_images, cfg.max_images + 1))
    target_image = int(rng.integers(n))
    target = random_object(rng, cfg)
    attributes = choose_attributes(rng, cfg, target)
    scenes = []
    for i in range(n):
        size = sample_size(rng, cfg)
        drawn = [distractor(rng, cfg, target, attributes) for _ in range(n_distractors(rng, cfg) + 1)]
        # the target image holds the target and distractors; the others at least one distractor
        required, others = ([target], drawn[1:]) if i == target_image else (drawn[:1], drawn[1:])
        scenes.append(make_scene(rng, cfg, size, layout(rng, cfg, size, required, others)))
    images, boxes = render(scenes)
    target_box = boxes[target_image][0]
    desc = description(target, attributes)
    question = _pick(
        rng,
        (
            f"Please find the bounding box of the area described by: {desc}.",
            f"One of these images contains {desc}. Locate it.",
            f"Locate {desc} in these images.",
        ),
    )
    lines = " ".join(f"Image {i + 1}: {listing(s.objects, b)}." for i, (s, b) in enumerate(zip(scenes, boxes)))
    scope = [(f" of image {i + 1}", o, b) for i, s in enumerate(scenes) for o, b in zip(s.objects, boxes[i])]
    notes = _notes(scope, target, attributes)
    reasoning = (
        f"I am looking for {desc}. {lines} {notes}Only image {target_image + 1} contains "
        f"{with_article(desc.removeprefix('the '))}, {position_phrase(target_box)}, at "
        f"{box_tag(target_box, target_image)}."
    )
    brief = f"{_capitalised(desc)} is in image {target_image + 1}, {position_phrase(target_box)}."
    reasoning, texts = _texts(cfg, reasoning, brief)
    info = {"attributes": attributes}
    return TaskSample(
        "group_grounding", scenes, images, boxes, question, reasoning, target_image, 0, info=info, reasonings=texts
    )


def multi_view(rng: np.random.Generator, cfg: GeneratorConfig) -> TaskSample:
    n = int(rng.integers(2, cfg.max_images + 1))
    target_image = int(rng.integers(1, n))
    target = random_object(rng, cfg)
    pool: list[ObjectSpec] = []  # objects that appear in several images, so that only the box tells the target
    n_pool = int(rng.integers(1, min(3, cfg.max_objects - 1) + 1))
    while len(pool) < n_pool:
        obj = random_object(rng, cfg)
        if obj.identity != target.identity and all(obj.identity != p.identity for p in pool):
            pool.append(obj)
    scenes = []
    for i in range(n):
        size = sample_size(rng, cfg)
        others = [distractor(rng, cfg, target, IDENTITY, near_p=0.3) for _ in range(n_distractors(rng, cfg))]
        others = [o for o in others if all(o.identity != p.identity for p in pool)]
        if i == 0:
            required = [target, *pool]
        elif i == target_image:
            required = [target, pool[int(rng.integers(len(pool)))]]
            others = [random_size(rng, p) for p in pool if p.identity != required[1].identity] + others
        else:
            required = [p for p in pool if rng.random() < 0.8] + ([target] if rng.random() < 0.6 else [])
            required = required or pool[:1]
        required = [random_size(rng, o) for o in required]
        scenes.append(make_scene(rng, cfg, size, layout(rng, cfg, size, required, others)))
    images, boxes = render(scenes)
    reference, target_box = boxes[0][0], boxes[target_image][0]
    nth = _pick(rng, (ordinal(target_image + 1), ordinal_word(target_image + 1)))
    tag = box_tag(reference, 0)
    question = _pick(
        rng,
        (
            f"These images share one object in common (the object in {tag} of the first image). Recognize and "
            f"locate this object in the {nth} image.",
            f"The region {tag} of the first image shows an object. Locate the same object in the {nth} image.",
        ),
    )
    words = attribute_words(target, IDENTITY)
    objects = scenes[target_image].objects
    reasoning = (
        f"The box {tag} in image 1 marks the {words}, {position_phrase(reference)}. Image {target_image + 1} shows "
        f"{listing(objects, boxes[target_image])}. The {words} there is {position_phrase(target_box)}, at "
        f"{box_tag(target_box, target_image)}."
    )
    brief = f"The box in image 1 marks the {words}; in image {target_image + 1} it is {position_phrase(target_box)}."
    reasoning, texts = _texts(cfg, reasoning, brief)
    return TaskSample(
        "multi_view", scenes, images, boxes, question, reasoning, target_image, 0, reference=(0, 0), reasonings=texts
    )


#: task name -> sampler `(rng, config) -> TaskSample`; names follow MIG-Bench's where a task corresponds
TASKS: dict[str, Callable[[np.random.Generator, GeneratorConfig], TaskSample]] = {
    "single": single,
    "common_object": common_object,
    "diff": diff,
    "refer_grounding": refer_grounding,
    "group_grounding": group_grounding,
    "multi_view": multi_view,
}
