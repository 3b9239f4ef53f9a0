"""Security properties of trl-mig, checked for real.

1. No code runs from data or model output: a static scan (`ast`) of every module under `trl_mig/` and
   `datasets_builders/` for `eval`/`exec`, pickle-family modules, `torch.load` without `weights_only=True`, `yaml.load`
   without a safe loader, literal `trust_remote_code=True`, and shell execution (`shell=True`, `os.system`). A
   justified use goes in `ALLOWED` with its reason; there is none today.
2. `trust_remote_code` is off unless a user asks: every `from_pretrained` / `LLM(...)` call either omits it (the
   library default, False) or passes a `trust_remote_code` config field, and those fields default to False.
3. Weights are written as safetensors only: a tiny saved model, a merged LoRA, an `sft` run's adapter and merged model;
   `push_model` refuses pickled weight files.
4. Tokens and keys are never printed or written: a tiny `trl-mig sft` and `grpo` run with `HF_TOKEN` (and a teacher
   key) in the environment and `--hub_token` on the command line; no secret reaches stdout/stderr or any written file
   (the run record, the model card...), except `training_args.bin`, the trainer state transformers pickles, which
   `push_model` never uploads.

Covered elsewhere, not repeated here: the Hub token during `push_dataset` / `push_model` (logs, output, request
bodies, stored files, failures) in `tests/test_hub_server.py`; the teacher API key (repr, describe, errors echoing
it, logs) in `tests/test_teacher.py`. Paths in untrusted records: the dataset builders' own tests.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest


# transformers 5.24 deprecates `is_gradient_checkpointing` (FutureWarning), read by upstream code paths (PEFT's
# `save_pretrained` among them); see tests/test_grpo_trainer.py
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

ROOT = Path(__file__).resolve().parents[1]
SCANNED = (ROOT / "trl_mig", ROOT / "datasets_builders")
RECIPES = ROOT / "examples" / "recipes"

#: (path relative to the repository root, rule) -> why the use is safe. Empty: nothing needs an exception today.
ALLOWED: dict[tuple[str, str], str] = {}

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
UNSAFE_YAML = {"unsafe_load", "full_load", "unsafe_load_all", "full_load_all"}
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}
PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


# ---------------------------------------------------------------------------------------------------------------
# 1. static scan


def _dotted(node: ast.AST) -> str:
    """`a.b.c` for a Name/Attribute chain, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _keyword(call: ast.Call, name: str) -> ast.keyword | None:
    return next((k for k in call.keywords if k.arg == name), None)


def _keyword_is_true(call: ast.Call, name: str) -> bool:
    keyword = _keyword(call, name)
    return keyword is not None and _is_true(keyword.value)


def scan_source(source: str, filename: str = "<source>") -> list[tuple[int, str, str]]:
    """(line, rule, code) for every risky construct in `source`."""
    tree = ast.parse(source, filename=filename)
    found: list[tuple[int, str, str]] = []

    def hit(node: ast.AST, rule: str) -> None:
        found.append((node.lineno, rule, ast.get_source_segment(source, node) or ""))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(alias.name.split(".")[0] in PICKLE_MODULES for alias in node.names):
                hit(node, "pickle")
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            if module in PICKLE_MODULES:
                hit(node, "pickle")
            if module == "yaml" and any(a.name in {"load", "load_all", *UNSAFE_YAML} for a in node.names):
                hit(node, "yaml.load")
            if module == "builtins" and any(a.name in {"eval", "exec"} for a in node.names):
                hit(node, "eval/exec")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            if name in {"eval", "exec", "builtins.eval", "builtins.exec"}:
                hit(node, "eval/exec")
            if last in {"read_pickle", "to_pickle"}:
                hit(node, "pickle")
            if name in {"np.load", "numpy.load"} and _keyword_is_true(node, "allow_pickle"):
                hit(node, "pickle")
            if name == "torch.load":
                weights_only = _keyword(node, "weights_only")
                if weights_only is None or not _is_true(weights_only.value):
                    hit(node, "torch.load")
            if name.startswith("yaml."):
                if last in UNSAFE_YAML:
                    hit(node, "yaml.load")
                elif last in {"load", "load_all"}:
                    loader = _keyword(node, "Loader")
                    loader_name = _dotted(loader.value) if loader is not None else ""
                    if not loader_name.endswith(("SafeLoader", "CSafeLoader")) and len(node.args) < 2:
                        hit(node, "yaml.load")
                    elif len(node.args) >= 2 and not _dotted(node.args[1]).endswith("SafeLoader"):
                        hit(node, "yaml.load")
            if _keyword_is_true(node, "trust_remote_code"):
                hit(node, "trust_remote_code=True")
            if last == "setdefault" and len(node.args) == 2:
                key, value = node.args
                if isinstance(key, ast.Constant) and key.value == "trust_remote_code" and _is_true(value):
                    hit(node, "trust_remote_code=True")
            if _keyword_is_true(node, "shell"):
                hit(node, "shell")
            if tuple(name.split(".")[-2:]) in SHELL_CALLS:
                hit(node, "shell")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "trust_remote_code" and _is_true(value):
                    hit(node, "trust_remote_code=True")
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.slice, ast.Constant)
                    and target.slice.value == "trust_remote_code"
                    and _is_true(node.value)
                ):
                    hit(node, "trust_remote_code=True")
    return found


def python_files() -> list[Path]:
    return sorted(p for root in SCANNED for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_scanner_finds_each_risky_construct_and_passes_the_safe_forms() -> None:
    bad = """
import pickle
from dill import loads
import yaml, torch, subprocess, os
eval(text)
exec(code)
torch.load(path)
torch.load(path, weights_only=False)
yaml.load(stream)
yaml.load(stream, Loader=yaml.Loader)
yaml.unsafe_load(stream)
AutoModel.from_pretrained(name, trust_remote_code=True)
kwargs = {"trust_remote_code": True}
kwargs["trust_remote_code"] = True
kwargs.setdefault("trust_remote_code", True)
subprocess.run(command, shell=True)
os.system(command)
frame.to_pickle(path)
"""
    rules = [rule for _, rule, _ in scan_source(bad)]
    assert rules.count("pickle") == 3 and rules.count("eval/exec") == 2 and rules.count("torch.load") == 2
    assert rules.count("yaml.load") == 3 and rules.count("trust_remote_code=True") == 4 and rules.count("shell") == 2
    safe = """
import yaml, torch, subprocess
model.eval()
torch.load(path, weights_only=True)
yaml.safe_load(stream)
yaml.load(stream, Loader=yaml.SafeLoader)
AutoModel.from_pretrained(name, trust_remote_code=args.trust_remote_code)
AutoModel.from_pretrained(name, trust_remote_code=False)
subprocess.run(["git", "status"], check=True)
evaluate(model)
"""
    assert scan_source(safe) == []


def test_no_eval_pickle_unsafe_load_remote_code_or_shell_in_the_package() -> None:
    files = python_files()
    assert len(files) > 50, "the scan found too few modules: wrong root?"
    problems, used = [], set()
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        for line, rule, code in scan_source(path.read_text(encoding="utf-8"), relative):
            if (relative, rule) in ALLOWED:
                used.add((relative, rule))
                continue
            problems.append(f"{relative}:{line}: {rule}: {code}")
    assert not problems, "risky constructs (justify in ALLOWED or remove):\n" + "\n".join(problems)
    assert used == set(ALLOWED), f"stale ALLOWED entries: {set(ALLOWED) - used}"


# ---------------------------------------------------------------------------------------------------------------
# 2. trust_remote_code only from a user-set flag that defaults to False


def _flag_names(function: ast.AST) -> set[str]:
    """Local names bound from `<x>.trust_remote_code` in `function` (`remote = args.trust_remote_code`)."""
    names = set()
    for node in ast.walk(function):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            pairs = (
                zip(target.elts, node.value.elts, strict=False)
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                else [(target, node.value)]
            )
            for name, value in pairs:
                if (
                    isinstance(name, ast.Name)
                    and isinstance(value, ast.Attribute)
                    and value.attr == "trust_remote_code"
                ):
                    names.add(name.id)
    return names


def loader_calls() -> list[tuple[str, int, ast.keyword | None, set[str]]]:
    """(file, line, its trust_remote_code keyword, flag names of the enclosing function) per model-loading call."""
    calls = []
    for path in sorted((ROOT / "trl_mig").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for function in [tree, *functions]:
            flags = _flag_names(function)
            body = function.body if isinstance(function, ast.Module) else [function]
            for node in (n for stmt in body for n in ast.walk(stmt)):
                if isinstance(node, ast.Call) and (_dotted(node.func).endswith(".from_pretrained")
                                                   or _dotted(node.func) == "LLM"):  # fmt: skip
                    calls.append((path.relative_to(ROOT).as_posix(), node.lineno, _keyword(node, "trust_remote_code"),
                                  flags))  # fmt: skip
    return calls


def test_every_loader_passes_trust_remote_code_only_from_a_config_flag() -> None:
    calls = loader_calls()
    assert len({(f, line) for f, line, _, _ in calls}) >= 15, "too few from_pretrained call sites found"
    wrong = []
    for file, line, keyword, flags in calls:
        if keyword is None:
            continue  # not passed: transformers / vLLM / PEFT default, False
        value = keyword.value
        from_flag = (isinstance(value, ast.Attribute) and value.attr == "trust_remote_code") or (
            isinstance(value, ast.Name) and value.id in flags
        )
        if not from_flag:
            wrong.append(f"{file}:{line}: trust_remote_code={ast.unparse(value)}")
    assert not wrong, "trust_remote_code must come from a config flag:\n" + "\n".join(wrong)


def test_trust_remote_code_flags_default_to_false() -> None:
    from trl_mig.evaluation.runner import EvalArguments
    from trl_mig.sampling.config import RejectionSamplingConfig
    from trl_mig.scripts.common import TrainingScriptArguments
    from trl_mig.scripts.merge import MergeArguments
    from trl_mig.scripts.push import PushArguments
    from trl_mig.synthesis.config import SynthesisConfig
    from trl_mig.trainers import MIGGRPOConfig, MIGSFTConfig

    for config in (MIGSFTConfig, MIGGRPOConfig):  # TRL's field, used for the model, processor and vLLM engine
        assert config.__dataclass_fields__["trust_remote_code"].default is False, config.__name__
    # the other commands have no such flag: their loaders never pass it (off)
    for config in (EvalArguments, RejectionSamplingConfig, SynthesisConfig, TrainingScriptArguments, MergeArguments,
                   PushArguments):  # fmt: skip
        assert is_dataclass(config)
        field = {f.name: f for f in fields(config)}.get("trust_remote_code")
        assert field is None or field.default is False, config.__name__


# ---------------------------------------------------------------------------------------------------------------
# 3. weights as safetensors only


def weight_files(folder: Path) -> tuple[list[str], list[str]]:
    """(safetensors files, pickled files other than the trainer state `training_args.bin`) under `folder`."""
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    safe = [f for f in files if f.endswith(".safetensors")]
    pickled = [f for f in files if f.endswith(PICKLED_WEIGHTS) and Path(f).name != "training_args.bin"]
    return safe, pickled


def test_saved_tiny_model_and_merged_lora_are_safetensors_only(tmp_path) -> None:
    from peft import LoraConfig, get_peft_model

    from trl_mig.testing import build_tiny_model, build_tiny_processor, save_tiny_model
    from trl_mig.trainers import merge_adapter
    from trl_mig.trainers.sft_config import DEFAULT_LORA_TARGET_MODULES

    tiny = save_tiny_model(tmp_path / "tiny")
    assert weight_files(tiny) == (["model.safetensors"], [])

    processor = build_tiny_processor()
    lora = LoraConfig(r=4, target_modules=DEFAULT_LORA_TARGET_MODULES, init_lora_weights=False)
    model = get_peft_model(build_tiny_model(processor=processor), lora).eval()
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    assert weight_files(adapter) == (["adapter_model.safetensors"], [])
    merged = merge_adapter(model, tmp_path / "merged", processor=processor, card_settings={"template": "mig-think-v1"})
    safe, pickled = weight_files(merged)
    assert safe and not pickled, (safe, pickled)


def test_push_model_refuses_pickled_weights(tmp_path) -> None:
    from trl_mig.hub import MODEL_IGNORE_PATTERNS, push_model
    from trl_mig.testing import save_tiny_model

    folder = save_tiny_model(tmp_path / "tiny")
    (folder / "pytorch_model.bin").write_bytes(b"a pickle")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: pickled weights") as info:
        push_model(folder, "org/tiny", token="hf_not_used")  # refused before any request: no server needed
    assert "hf_not_used" not in str(info.value)
    assert "training_args.bin" in MODEL_IGNORE_PATTERNS  # the pickled trainer state never goes up


# ---------------------------------------------------------------------------------------------------------------
# 4. tokens and keys never printed or written by a run

ENV_TOKEN = "hf_secretEnvToken0123456789abcdef"
CLI_TOKEN = "hf_secretCliToken0123456789abcdef"
TEACHER_KEY = "sk-secretTeacherKey0123456789"


def test_run_record_redacts_credential_flags_only() -> None:
    from trl_mig.scripts.common import redact_argv

    argv = ["--config", "r.yaml", "--hub_token", CLI_TOKEN, "--max_new_tokens", "8", "--api_key=" + TEACHER_KEY,
            "--max_pixels", "640000", "--token", CLI_TOKEN, "--pad_token", "<|endoftext|>"]  # fmt: skip
    assert redact_argv(argv) == ["--config", "r.yaml", "--hub_token", "<redacted>", "--max_new_tokens", "8",
                                 "--api_key=<redacted>", "--max_pixels", "640000", "--token", "<redacted>",
                                 "--pad_token", "<|endoftext|>"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory) -> dict[str, Path]:
    from trl_mig.datasets_builders import synthetic
    from trl_mig.testing import save_tiny_model

    root = tmp_path_factory.mktemp("security")
    model = save_tiny_model(root / "base", "qwen2_5_vl", size="tiny", seed=0)
    synthetic.build(synthetic.BuildArguments(output_dir=str(root / "data"), num_train=4, num_test=0, seed=0))
    return {"root": root, "model": model, "data": root / "data"}


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_training_run_never_writes_or_prints_a_token(stage: str, tiny_inputs) -> None:
    output = tiny_inputs["root"] / stage
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
        "HF_TOKEN": ENV_TOKEN, "HUGGING_FACE_HUB_TOKEN": ENV_TOKEN, "OPENAI_API_KEY": TEACHER_KEY,
        "HF_HOME": str(tiny_inputs["root"] / "hf_home"), "TRL_MIG_DISABLE_PROGRESS": "1", "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    command = [
        sys.executable, "-m", "trl_mig.cli", stage, "--config", str(RECIPES / "tiny" / f"{stage}.yaml"),
        "--model_name_or_path", str(tiny_inputs["model"]), "--dataset_name", str(tiny_inputs["data"]),
        "--output_dir", str(output), "--max_steps", "1", "--hub_token", CLI_TOKEN,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    for secret in (ENV_TOKEN, CLI_TOKEN, TEACHER_KEY):
        assert secret not in result.stdout and secret not in result.stderr

    written = [p for p in output.rglob("*") if p.is_file()]
    names = {p.relative_to(output).as_posix() for p in written}
    assert {"trl_mig_run.json", "README.md"} <= names, names  # the run record and the model card were written
    leaks = []
    for path in written:
        data = path.read_bytes()
        for secret in (ENV_TOKEN, TEACHER_KEY):  # the environment's secrets: in no file at all
            if secret.encode() in data:
                leaks.append(f"{path.relative_to(output)} holds {secret[:10]}...")
        # a token given on the command line: only in the pickled trainer state transformers writes (the
        # TrainingArguments object, `hub_token` included), which `push_model` never uploads
        if CLI_TOKEN.encode() in data and path.name != "training_args.bin":
            leaks.append(f"{path.relative_to(output)} holds the --hub_token value")
    assert not leaks, leaks
    record = (output / "trl_mig_run.json").read_text()
    assert '"--hub_token",\n    "<redacted>"' in record
    safe, pickled = weight_files(output)
    assert safe and not pickled, (safe, pickled)  # sft: adapter + merged model; grpo: the model
