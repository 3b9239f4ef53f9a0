"""The wheel ships what a pip user needs: top-level builders and card templates mapped inside, the metric module."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("trl_mig-*.whl")
    return path


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "trl_mig/datasets_builders/__init__.py",
        "trl_mig/hub_cards/__init__.py",
        "trl_mig/metrics/grounding/grounding.py",
        "trl_mig/metrics/grounding/README.md",
        "trl_mig/rewards/__init__.py",
        "trl_mig/geometry/frames.py",
        "trl_mig/datasets_builders/mig_bench.py",
        "trl_mig/hub_cards/dataset_card.md.j2",
        "trl_mig/data/mig_bench/MIG_data.json",
        "trl_mig/data/mig_bench/LICENSE",
    ):
        assert expected in names
    # every package of the source tree ships (the package list in pyproject.toml is explicit)
    for init in (ROOT / "trl_mig").rglob("__init__.py"):
        assert init.relative_to(ROOT).as_posix() in names, f"{init} is missing from the wheel: add it to pyproject"
    for init in (ROOT / "datasets_builders").rglob("__init__.py"):
        assert "trl_mig/" + init.relative_to(ROOT).as_posix() in names
    assert not any(name.startswith(("tests/", "datasets_builders/", "hub_cards/", "benchmarks/")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "trl-mig = trl_mig.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_wheel_install_imports_and_loads_the_metric(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)  # fmt: skip
    code = (
        "import trl_mig, trl_mig.datasets_builders, trl_mig.hub_cards, trl_mig.metrics; "
        f"assert trl_mig.__file__.startswith({str(target)!r}), trl_mig.__file__; "
        "from trl_mig.datasets_builders.mig_bench import default_annotations; "
        f"assert default_annotations().is_file() and str(default_annotations()).startswith({str(target)!r}); "
        "m = trl_mig.metrics.load('grounding'); "
        "print(m.compute(predictions=['[0, 0, 500, 500]'], references=[[[0, 0, 0.5, 0.5]]], frame='qwen2_vl')"
        "['overall']['acc@0.5'])"
    )
    env = {**os.environ, "PYTHONPATH": str(target), "HF_EVALUATE_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1.0"


def test_console_script():
    out = subprocess.run([sys.executable, "-m", "trl_mig.cli", "env"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("trl-mig: ")
    assert "trl: 1.16" in out.stdout


def test_build_help_lists_the_builders(capsys):
    from trl_mig.cli import main
    from trl_mig.datasets_builders import BUILDERS

    assert main(["build", "--help"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in BUILDERS)
    assert main(["build"]) == 2  # no builder named: the same list, and a usage error


def test_every_command_has_help(capsys):
    from trl_mig.cli import main
    from trl_mig.scripts import COMMANDS

    for command in COMMANDS:  # in-process: the parsers are what is tested; `test_console_script` runs the entry point
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0, command
        assert f"usage: trl-mig {command}" in capsys.readouterr().out, command
