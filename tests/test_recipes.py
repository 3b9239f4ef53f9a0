"""The recipes under `examples/recipes/` and the accelerate configs under `examples/accelerate_configs/`.

Every recipe is parsed exactly as `trl-mig STAGE --config recipe.yaml` parses it (TRL's `TrlParser` over the stage's
dataclasses, which build the configs and run their validation), so a renamed or removed field fails here, not on a
cluster. The last tests run the tiny sample and grpo recipes under `accelerate launch` with two CPU processes and check
that the processes formed one world of 2 and shared the work (a wrong launch runs everything twice, silently).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from datasets import Dataset
from trl import TrlParser

from trl_mig.scripts import COMMANDS


# transformers 5.24 deprecates `is_gradient_checkpointing` (FutureWarning), read by upstream code paths; see
# tests/test_grpo_trainer.py
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "examples" / "recipes"
ACCELERATE_CONFIGS = ROOT / "examples" / "accelerate_configs"
CPU_2PROC = ACCELERATE_CONFIGS / "cpu_2proc.yaml"
EXPECTED_RECIPES = {
    f"{model}/{stage}.yaml" for model in ("qwen2_5_vl_7b", "tiny") for stage in ("sft", "sample", "grpo")
}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1"}


def recipe_paths() -> list[Path]:
    return sorted(RECIPES.glob("*/*.yaml"))


def parse_recipe(path: Path, *overrides: str) -> tuple:
    """What `trl-mig STAGE --config path [overrides]` parses: the stage comes from the file name."""
    module = importlib.import_module(COMMANDS[path.stem])
    return TrlParser(module.dataclasses()).parse_args_and_config(["--config", str(path), *overrides])


def cpu_overrides(path: Path) -> list[str]:
    # The 7B training recipes say bf16 (GPU); transformers refuses bf16 without a GPU unless use_cpu is set. The
    # override touches nothing else, so bf16 itself is still read from the recipe and checked below.
    return ["--use_cpu", "true"] if path.stem in ("sft", "grpo") and path.parent.name != "tiny" else []


def parsed_by_name(path: Path) -> dict[str, object]:
    return {type(obj).__name__: obj for obj in parse_recipe(path, *cpu_overrides(path))}


# ---------------------------------------------------------------------------------------------------------------
# recipes parse with the stage's dataclasses, and say what they should


def test_every_expected_recipe_exists() -> None:
    found = {path.relative_to(RECIPES).as_posix() for path in recipe_paths()}
    assert EXPECTED_RECIPES <= found, f"missing recipes: {sorted(EXPECTED_RECIPES - found)}"
    assert {path.stem for path in recipe_paths()} <= {"sft", "sample", "grpo"}, "recipe names must be stage names"


@pytest.mark.parametrize("path", recipe_paths(), ids=lambda p: p.relative_to(RECIPES).as_posix())
def test_recipe_parses_with_its_command(path: Path) -> None:
    parsed = parse_recipe(path, *cpu_overrides(path))
    module = importlib.import_module(COMMANDS[path.stem])
    assert [type(obj) for obj in parsed] == list(module.dataclasses())
    # every key of the recipe reached a dataclass field with the recipe's value (not a default)
    recipe = yaml.safe_load(path.read_text())
    fields = {}
    for obj in parsed:
        fields.update(vars(obj))
    for key in ("model_name_or_path", "dataset_name", "output_dir", "template"):
        assert fields[key] == recipe[key], key


@pytest.mark.parametrize("stage", ["sft", "sample", "grpo"])
def test_unknown_recipe_key_is_refused(stage: str, tmp_path) -> None:
    text = (RECIPES / "tiny" / f"{stage}.yaml").read_text()
    path = tmp_path / f"{stage}.yaml"
    path.write_text(text + "\nnum_generation: 8   # a typo of num_generations\n")
    with pytest.raises(ValueError, match="Unknown arguments from config file.*num_generation"):
        parse_recipe(path)


def test_7b_sft_recipe() -> None:
    path = RECIPES / "qwen2_5_vl_7b" / "sft.yaml"
    script, config = parsed_by_name(path).values()
    assert script.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert config.use_lora and (config.lora_r, config.lora_alpha, config.lora_dropout) == (64, 128, 0.05)
    assert config.learning_rate == 1e-4
    assert config.bf16 and config.merge_at_end
    assert config.save_strategy == "steps" and config.report_to == ["wandb"]


def test_7b_sample_recipe() -> None:
    path = RECIPES / "qwen2_5_vl_7b" / "sample.yaml"
    (config,) = parse_recipe(path)
    assert (config.num_generations, config.temperature, config.max_new_tokens) == (8, 1.0, 256)
    assert config.backend == "auto"
    assert (config.min_pass_rate, config.max_pass_rate, config.include_min, config.include_max) == (0, 1, False, False)
    assert config.reward_funcs == ["format_reward", "iou_reward"]


def test_7b_grpo_recipe() -> None:
    path = RECIPES / "qwen2_5_vl_7b" / "grpo.yaml"
    script, config = parsed_by_name(path).values()
    assert script.reward_funcs == ["format_reward", "iou_reward"]
    assert config.reward_weights == [1.0, 1.0]
    assert config.learning_rate == 1e-6
    assert (config.num_generations, config.beta, config.epsilon, config.temperature) == (8, 0.04, 0.2, 1.0)
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (8, 2)
    assert config.max_completion_length == 256
    assert config.loss_type == "grpo"
    assert config.template == "mig-think-v1" and config.bf16


@pytest.mark.parametrize("stage", ["sft", "sample", "grpo"])
def test_7b_recipes_mark_their_assumptions(stage: str) -> None:
    text = (RECIPES / "qwen2_5_vl_7b" / f"{stage}.yaml").read_text()
    assert "# assumption: UniVG-R1" in text
    assert "2507.00748" in text  # the paper the stage belongs to
    assert "accelerate launch --config_file examples/accelerate_configs/" in text  # how to run it on a node


@pytest.mark.parametrize("model", ["qwen2_5_vl_7b", "tiny"])
def test_stages_hand_over(model: str) -> None:
    """sft's merged model samples and is trained by grpo; grpo trains on sample's RL set (tiny: on the data)."""
    sft = parsed_by_name(RECIPES / model / "sft.yaml")["MIGSFTConfig"]
    (sample,) = parse_recipe(RECIPES / model / "sample.yaml")
    grpo_script = parsed_by_name(RECIPES / model / "grpo.yaml")["GRPOScriptArguments"]
    merged = sft.merged_output_dir or f"{sft.output_dir}/merged"
    assert sample.model_name_or_path == merged
    assert grpo_script.model_name_or_path == merged
    if model == "tiny":  # a random model's RL set holds nothing worth training on: grpo reads the data itself
        assert grpo_script.dataset_name == sample.dataset_name == "runs/tiny/data"
    else:
        assert grpo_script.dataset_name == sample.output_dir


def test_tiny_recipes_run_on_cpu() -> None:
    for stage in ("sft", "grpo"):
        config = parse_recipe(RECIPES / "tiny" / f"{stage}.yaml")[-1]
        assert config.use_cpu and not config.bf16 and config.report_to == []
        assert 1 <= config.max_steps <= 3
        assert config.activation_checkpointing is False
    (sample,) = parse_recipe(RECIPES / "tiny" / "sample.yaml")
    assert sample.use_cpu and sample.num_generations == 2 and sample.max_new_tokens <= 16


# ---------------------------------------------------------------------------------------------------------------
# accelerate configs


ACCELERATE_EXPECTED = {  # file: (distributed_type, num_processes, num_machines, mixed_precision)
    "cpu_2proc.yaml": ("MULTI_GPU", 2, 1, "no"),
    "single_node_8gpu.yaml": ("MULTI_GPU", 8, 1, "bf16"),
    "multi_node_2x8.yaml": ("MULTI_GPU", 16, 2, "bf16"),
    "deepspeed_zero3.yaml": ("DEEPSPEED", 8, 1, "bf16"),
    "deepspeed_zero2.yaml": ("DEEPSPEED", 8, 1, "bf16"),
    "fsdp2.yaml": ("FSDP", 8, 1, "bf16"),
}


@pytest.mark.parametrize("name", sorted(ACCELERATE_EXPECTED))
def test_accelerate_config(name: str) -> None:
    path = ACCELERATE_CONFIGS / name
    config = load_config_from_file(str(path))  # accelerate's own loader: refuses unknown keys
    distributed_type, num_processes, num_machines, mixed_precision = ACCELERATE_EXPECTED[name]
    assert config.distributed_type.value == distributed_type
    assert (config.num_processes, config.num_machines, config.mixed_precision) == (
        num_processes, num_machines, mixed_precision
    )  # fmt: skip
    assert yaml.safe_load(path.read_text())["distributed_type"] == distributed_type
    if name == "cpu_2proc.yaml":
        # accelerate 1.15 starts 2 CPU processes only through its multi-GPU launcher; `use_cpu` does nothing there
        # (the recipe's use_cpu makes the group gloo), and a fixed port would clash between parallel runs
        assert config.use_cpu is False and config.main_process_port == 0
    if name == "deepspeed_zero3.yaml":
        assert config.deepspeed_config["zero_stage"] == 3


def test_every_accelerate_config_is_tested_and_every_reference_exists() -> None:
    assert {p.name for p in ACCELERATE_CONFIGS.glob("*.yaml")} == set(ACCELERATE_EXPECTED)
    documents = [*recipe_paths(), ACCELERATE_CONFIGS / "README.md", ROOT / "examples" / "two_process.sh"]
    texts = [path.read_text() for path in documents]
    referenced = {m for text in texts for m in re.findall(r"examples/accelerate_configs/([\w.-]+\.yaml)", text)}
    assert referenced and referenced <= set(ACCELERATE_EXPECTED), referenced - set(ACCELERATE_EXPECTED)


def test_two_process_script_is_valid_bash() -> None:
    script = ROOT / "examples" / "two_process.sh"
    assert "set -euo pipefail" in script.read_text()
    subprocess.run(["bash", "-n", str(script)], check=True)


# ---------------------------------------------------------------------------------------------------------------
# two CPU processes, for real


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory) -> dict:
    from trl_mig.datasets_builders import synthetic
    from trl_mig.testing import save_tiny_model

    root = tmp_path_factory.mktemp("two_process")
    model = save_tiny_model(root / "base", "qwen2_5_vl", size="tiny", seed=0)
    data = root / "data"
    synthetic.build(synthetic.BuildArguments(output_dir=str(data), num_train=8, num_test=0, seed=0))
    return {"root": root, "model": model, "data": data, "ids": list(parquet_rows(data)["id"])}


def parquet_rows(folder: Path) -> Dataset:
    """The train rows of a builder's output folder, read from its files (`load_dataset(folder)` caches by card in
    datasets 5.2, see `trl_mig.datasets_builders.reader`)."""
    return Dataset.from_parquet(sorted(str(path) for path in (folder / "data").glob("train-*.parquet")))


def launch_two_processes(*args: str) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file cpu_2proc.yaml -m trl_mig.cli ARGS` from the repository root."""
    env = {**os.environ, **OFFLINE_ENV, "TRL_MIG_DISABLE_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_2PROC)]
    command = [*launch, "-m", "trl_mig.cli", *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"exit code {result.returncode}\n{(result.stdout + result.stderr)[-6000:]}"
    return result


def test_sample_recipe_with_two_processes(tiny_inputs) -> None:
    from trl_mig.datasets_builders.rl import read_samples

    rl, samples_dir = tiny_inputs["root"] / "rl", tiny_inputs["root"] / "rl-samples"
    launch_two_processes(
        "sample", "--config", str(RECIPES / "tiny" / "sample.yaml"),
        "--model_name_or_path", str(tiny_inputs["model"]), "--dataset_name", str(tiny_inputs["data"]),
        "--output_dir", str(rl), "--samples_dir", str(samples_dir), "--chunk_size", "2",
    )  # fmt: skip

    run = json.loads((samples_dir / "last_run.json").read_text())
    assert run["world_size"] == 2
    by_process = run["chunks_by_process"]
    assert sorted(by_process) == ["0", "1"]
    first, second = set(by_process["0"]), set(by_process["1"])
    assert first and second, f"a process sampled nothing: {by_process}"
    assert not first & second, f"a chunk was sampled twice: {by_process}"
    assert first | second == set(range(4)), by_process  # 8 prompts / chunk_size 2

    samples = read_samples(samples_dir)
    assert sorted(samples) == sorted(tiny_inputs["ids"]) and len(samples) == 8
    assert all(record["num_generations"] == 2 for record in samples.values())
    # the tiny recipe keeps 0 <= pass_rate < 1 (include_min), so a random model's RL set is not empty
    kept = sum(record["pass_rate"] < 1 for record in samples.values())
    assert run["kept"] == kept > 0
    rl_rows = parquet_rows(rl)
    assert len(rl_rows) == kept and set(rl_rows["id"]) <= set(samples)


def test_grpo_recipe_with_two_processes(tiny_inputs) -> None:
    output = tiny_inputs["root"] / "grpo"
    launch_two_processes(
        "grpo", "--config", str(RECIPES / "tiny" / "grpo.yaml"),
        "--model_name_or_path", str(tiny_inputs["model"]), "--dataset_name", str(tiny_inputs["data"]),
        "--output_dir", str(output), "--max_steps", "2",
    )  # fmt: skip

    run = json.loads((output / "trl_mig_run.json").read_text())
    assert run["world_size"] == 2
    assert run["global_step"] == 2
    assert (output / "model.safetensors").is_file()


def test_eval_with_two_processes(tiny_inputs, tmp_path) -> None:
    """Each process answers half the rows into its own part file; the main one merges them once (no duplicates, none
    lost) and scores. One prompt per batch, so answers cannot depend on padding and must equal a one-process run."""
    from trl_mig.evaluation.runner import EvalArguments, evaluate_model

    common = ["--model", str(tiny_inputs["model"]), "--benchmark", "schema", "--data", str(tiny_inputs["data"]),
              "--split", "train", "--max_new_tokens", "8", "--batch_size", "1", "--gallery", "1", "--use_cpu"]  # fmt: skip
    launch_two_processes("eval", *common, "--output_dir", str(tmp_path / "two"))
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["meta"]["world_size"] == 2 and two["meta"]["generated"] == 8
    lines = [json.loads(line) for line in (tmp_path / "two" / "predictions.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == tiny_inputs["ids"]  # each once, in the set's order
    assert not list((tmp_path / "two").glob("predictions.part-*"))  # merged, then removed
    one = evaluate_model(EvalArguments(model=str(tiny_inputs["model"]), benchmark="schema", data=str(tiny_inputs["data"]),
                                       split="train", max_new_tokens=8, batch_size=1, gallery=0, use_cpu=True,
                                       output_dir=str(tmp_path / "one")))  # fmt: skip
    single = [json.loads(line) for line in (tmp_path / "one" / "predictions.jsonl").read_text().splitlines()]
    assert [line["output"] for line in lines] == [line["output"] for line in single]
    assert two["overall"] == one["overall"] and one["meta"]["world_size"] == 1


# ---------------------------------------------------------------------------------------------------------------
# sharded configs, read the way `accelerate launch` reads them (accelerate 1.15: the config file becomes launch
# arguments, then the environment the training process builds its plugin from)


def launcher_env(name: str) -> dict[str, str]:
    """The environment `accelerate launch --config_file NAME` gives the training processes (no process started)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    parsed = launch_command_parser().parse_args(["--config_file", str(ACCELERATE_CONFIGS / name), "train.py"])
    args, defaults, mixed_precision_from_config = _validate_launch_command(parsed)
    if args.use_deepspeed:  # as `launch_command` does before `deepspeed_launcher`
        fields = [*defaults.deepspeed_config, *(["mixed_precision"] if mixed_precision_from_config else [])]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


def test_deepspeed_zero2_config_launches_stage_2() -> None:
    env = launcher_env("deepspeed_zero2.yaml")
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "2"
    assert env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == "false" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert env["ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"] == "none"
    zero3 = launcher_env("deepspeed_zero3.yaml")
    assert zero3["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert zero3["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"


def test_fsdp2_config_builds_accelerates_plugin_and_wraps_qwen2_5_vl_layers(monkeypatch) -> None:
    """accelerate's own `FullyShardedDataParallelPlugin`, built from the launcher's environment as in a training
    process: FSDP2, full-model checkpoints (safetensors), and wrap classes that exist in a Qwen2.5-VL model."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp.fully_sharded_data_parallel import StateDictType

    from trl_mig.testing import build_tiny_model

    env = launcher_env("fsdp2.yaml")
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    for key, value in env.items():
        if key.startswith("FSDP_"):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT  # save_model writes one safetensors model
    assert plugin.activation_checkpointing and plugin.cpu_ram_efficient_loading
    assert type(plugin.cpu_offload).__name__ == "OffloadPolicy"  # FSDP2's no-offload policy (not CPUOffloadPolicy)
    assert plugin.transformer_cls_names_to_wrap == ["Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock"]
    model = build_tiny_model("qwen2_5_vl")
    assert sorted(plugin.transformer_cls_names_to_wrap) == sorted(model._no_split_modules)
    plugin.set_auto_wrap_policy(model)  # raises when a class name is not in the model
    wrapped = plugin.auto_wrap_policy.keywords["transformer_layer_cls"]
    assert {cls.__name__ for cls in wrapped} == {"Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock"}


def test_accelerate_readme_says_which_stage_uses_which_config() -> None:
    text = (ACCELERATE_CONFIGS / "README.md").read_text()
    for name in ACCELERATE_EXPECTED:
        assert f"`{name}`" in text, name
    for stage in ("SFT", "GRPO", "sample", "eval"):
        assert stage in text, stage
    recipes = "".join((RECIPES / "qwen2_5_vl_7b" / f"{stage}.yaml").read_text() for stage in ("sft", "grpo"))
    for name in ("deepspeed_zero2.yaml", "deepspeed_zero3.yaml", "fsdp2.yaml"):
        assert f"examples/accelerate_configs/{name}" in recipes, name


def test_grpo_recipe_takes_trls_vllm_settings_unchanged() -> None:
    """`MIGGRPOConfig` redefines no vLLM field of TRL 1.16's `GRPOConfig` and `trl-mig grpo` parses them as TRL does:
    server and colocate mode are TRL's own (docs/distributed.md)."""
    from trl import GRPOConfig

    from trl_mig.trainers import MIGGRPOConfig

    names = [n for n in GRPOConfig.__dataclass_fields__ if n == "use_vllm" or n.startswith(("vllm_", "ds3_"))]
    assert {"use_vllm", "vllm_mode", "vllm_server_host", "vllm_gpu_memory_utilization"} <= set(names)
    for name in names:
        assert MIGGRPOConfig.__dataclass_fields__[name].default == GRPOConfig.__dataclass_fields__[name].default, name
    overrides = {"use_vllm": "true", "vllm_mode": "server", "vllm_server_host": "10.0.0.2", "vllm_server_port": "8001",
                 "vllm_max_model_length": "8192", "vllm_gpu_memory_utilization": "0.25", "vllm_enable_sleep_mode": "true"}  # fmt: skip
    argv = [item for key, value in overrides.items() for item in (f"--{key}", value)]
    config = parse_recipe(RECIPES / "qwen2_5_vl_7b" / "grpo.yaml", "--use_cpu", "true", *argv)[-1]
    assert isinstance(config, MIGGRPOConfig)
    assert (config.use_vllm, config.vllm_mode, config.vllm_server_host, config.vllm_server_port) == (
        True, "server", "10.0.0.2", 8001
    )  # fmt: skip
    assert (config.vllm_max_model_length, config.vllm_gpu_memory_utilization, config.vllm_enable_sleep_mode) == (
        8192, 0.25, True
    )  # fmt: skip
    assert config.ds3_gather_for_generation and config.trust_remote_code is False
