"""The documentation's examples run, and the API reference names what exists.

Conventions (docs/README.md): a fenced block opened with ```python run is executed in a fresh namespace with a fresh
temporary working directory; a block opened with ```python file=NAME.py is written to NAME.py beside it (and importable)
for every runnable block of the same page; plain ```python blocks are not run. Every `trl_mig....` dotted name written
in backticks in api.md must resolve.
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ("api.md", "bring_your_own_format.md")

# a fence line: ``` then the info string; blocks end at the next bare ```
_FENCE_RE = re.compile(r"^```(?P<info>[^`\n]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE_RE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_DOTTED_RE = re.compile(r"\btrl_mig(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


@dataclass
class Block:
    page: str
    line: int
    kind: str  # "run" or "file"
    code: str
    filename: str | None = None


def _blocks(page: str) -> list[Block]:
    text = (DOCS / page).read_text()
    blocks = []
    for match in _FENCE_RE.finditer(text):
        words = match.group("info").split()
        if not words or words[0] != "python":
            continue
        line = text.count("\n", 0, match.start()) + 1
        options = words[1:]
        if options == ["run"]:
            blocks.append(Block(page, line, "run", match.group("body")))
        elif len(options) == 1 and options[0].startswith("file="):
            name = options[0].removeprefix("file=")
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\.py", name), f"{page}:{line}: bad file name {name!r}"
            blocks.append(Block(page, line, "file", match.group("body"), name))
        else:
            assert not options, f"{page}:{line}: unknown fence options {options!r} (use `run` or `file=NAME.py`)"
    return blocks


ALL_BLOCKS = {page: _blocks(page) for page in PAGES}
RUN_BLOCKS = [b for page in PAGES for b in ALL_BLOCKS[page] if b.kind == "run"]


def test_conventions_are_used():
    """The guides keep their runnable examples (a parsing slip would otherwise silently run nothing)."""
    guide = ALL_BLOCKS["bring_your_own_format.md"]
    assert {b.filename for b in guide if b.kind == "file"} == {"pairs_csv.py", "make_pairs.py"}
    assert sum(b.kind == "run" for b in guide) >= 6
    assert sum(b.kind == "run" for b in ALL_BLOCKS["api.md"]) >= 6
    for page in PAGES:
        assert ">>>" not in (DOCS / page).read_text(), f"{page}: `>>>` would be collected by --doctest-glob='*.md'"


@pytest.fixture
def restore_registries(tmp_path):
    """Undo what a block may register globally: builders, model-type frames, templates, sys.path, file modules."""
    from trl_mig.datasets_builders import BUILDERS
    from trl_mig.geometry import MODEL_TYPE_FRAMES
    from trl_mig.templates import TEMPLATES

    saved = [(registry, dict(registry)) for registry in (BUILDERS, MODEL_TYPE_FRAMES, TEMPLATES)]
    path = list(sys.path)
    yield
    for registry, content in saved:
        registry.clear()
        registry.update(content)
    sys.path[:] = path
    for name, module in list(sys.modules.items()):  # the `file=` modules: the next block imports its own copy
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[f"{b.page}:{b.line}" for b in RUN_BLOCKS])
def test_runnable_block(block, tmp_path, monkeypatch, restore_registries):
    for other in ALL_BLOCKS[block.page]:
        if other.kind == "file":
            (tmp_path / other.filename).write_text(other.code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code = compile(block.code, f"{block.page}:{block.line}", "exec")
    namespace = {"__name__": f"docs_block_{block.line}"}
    exec(code, namespace)  # noqa: S102 - the documentation's own examples


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as exc:
            if exc.name is None or not ".".join(parts[:cut]).startswith(exc.name):
                raise  # a module that exists but fails to import is a real error
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def _api_names() -> list[str]:
    text = (DOCS / "api.md").read_text()
    text = _FENCE_RE.sub("", text)  # names inside fenced blocks are exercised (or shown) as code, not as references
    names = {name for span in _INLINE_CODE_RE.findall(text) for name in _DOTTED_RE.findall(span)}
    return sorted(names)


API_NAMES = _api_names()


def test_api_names_found():
    assert len(API_NAMES) > 150  # the reference names most of the public surface with full paths


@pytest.mark.parametrize("dotted", API_NAMES)
def test_api_name_resolves(dotted):
    try:
        _resolve(dotted)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"docs/api.md names `{dotted}`, which does not resolve: {exc!r}")
