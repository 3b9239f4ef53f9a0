"""Publishing to the Hugging Face Hub: a built dataset (card first, then parquet) and a checkpoint folder.

`push_dataset` uploads a builder's output folder (`README.md` + `data/*.parquet`, DESIGN.md section 3) in two commits:
the card, then the data (datasets 5.x has no loading scripts; the card's `configs` tell `load_dataset` where the
parquet files are). A multi-config folder (`data/<config>/*.parquet`, e.g. MGrounding's subsets) goes up as it is,
layout and card configs kept, so `load_dataset(repo_id, "<config>")` works on the Hub as it does locally. Sets built
from benchmarks (`trl_mig.builder` in the card is `mig_bench` or `mc_bench`) hold benchmark images whose licences rarely allow re-hosting: they are refused unless `include_benchmark_images=True`.
`push_model` uploads a checkpoint folder (weights, configs, processor, chat template) with its `README.md` card, and
leaves trainer state (optimizer, RNG, `training_args.bin`, which pickles the hub token) behind.

Both read the local folder only; a failure raises `HubPushError`, which says which step failed and the call to
re-run. Authentication is `huggingface_hub`'s (the `token` argument, else `HF_TOKEN` or the saved login): no message or
log line of ours holds the token, and a file about to be uploaded that contains it is refused.

Example (not run: it needs a Hub):

```python
from trl_mig.hub import push_dataset, push_model

push_dataset("mig_synthetic", "my-org/mig-synthetic")
push_model("runs/grpo/checkpoint-final", "my-org/qwen2.5-vl-mig-grpo", private=True)
```
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterable
from pathlib import Path


logger = logging.getLogger(__name__)

#: builders whose sets hold benchmark images (the card's `trl_mig.builder`)
BENCHMARK_BUILDERS = frozenset({"mig_bench", "mc_bench"})

#: checkpoint files that are never uploaded: trainer state, not the model
MODEL_IGNORE_PATTERNS = (
    "checkpoint-*",
    "runs",
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "trainer_state.json",
    "training_args.bin",
    ".git",
    ".cache",
    "__pycache__",
    "*.lock",
)

#: files scanned for the token before upload (small text files; weights are not read)
_TEXT_SUFFIXES = (".md", ".json", ".jinja", ".txt", ".yaml", ".yml", ".py", ".model", ".tiktoken")
#: the repo id placeholder builders write into their cards (`<org>/<name>`, `<org>/mig-synthetic`, ...)
_PLACEHOLDER_REPO_ID = re.compile(r"<org>/(?:<name>|[\w.-]+)")


class HubPushError(RuntimeError):
    """A push that failed on the Hub side (or on the way); local files are untouched and the message says what to re-run."""


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _rerun_hint(function: str, path: Path, repo_id: str, **kwargs) -> str:
    args = [repr(str(path)), repr(repo_id)] + [f"{key}={value!r}" for key, value in kwargs.items() if value]
    return f'python -c "from trl_mig.hub import {function}; {function}({", ".join(args)})"'


def _fail(step: str, err: BaseException, hint: str, token: str | None) -> HubPushError:
    detail = _redact(f"{type(err).__name__}: {err}", token)
    return HubPushError(
        f"{step} failed ({detail}). Local files are untouched; fix the cause (network, token, permissions) and re-run: "
        f"{hint}"
    )


def _resolve_token(token: str | None) -> str | None:
    from huggingface_hub import get_token

    return token if token is not None else get_token()


def _refuse_secrets(files: Iterable[Path], token: str | None) -> None:
    if not token:
        return
    needle = token.encode()
    for file in files:
        if file.suffix.lower() in _TEXT_SUFFIXES and needle in file.read_bytes():
            raise ValueError(f"{file} contains your Hub token; remove it before pushing (nothing was uploaded)")


#: weight formats that unpickle on load (arbitrary code): a model folder ships safetensors only
PICKLED_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


def _refuse_pickled_weights(files: Iterable[Path]) -> None:
    pickled = [f for f in files if f.suffix.lower() in PICKLED_WEIGHT_SUFFIXES]
    if pickled:
        raise ValueError(
            f"{', '.join(map(str, pickled))}: pickled weights (loading them runs code); save the model with "
            "`save_pretrained` (safetensors) and remove these files before pushing (nothing was uploaded)"
        )


def _card_metadata(card_path: Path) -> dict:
    from huggingface_hub.repocard import metadata_load

    return metadata_load(card_path) or {}


def _is_benchmark_set(metadata: dict) -> bool:
    info = metadata.get("trl_mig") or {}
    return isinstance(info, dict) and (info.get("builder") in BENCHMARK_BUILDERS or bool(info.get("benchmark_images")))


def _dataset_card_for_hub(card_text: str, repo_id: str, config_name: str | None, data_prefix: str) -> str:
    """The card as uploaded: the repo id filled in and, with `config_name`, the data files under `data_prefix`."""
    from huggingface_hub import DatasetCard

    card = DatasetCard(_PLACEHOLDER_REPO_ID.sub(repo_id, card_text))
    if config_name is not None:
        configs = card.data.get("configs") or [{"config_name": "default", "data_files": "data/*.parquet"}]
        renamed = []
        for config in configs:
            data_files = config.get("data_files")
            if isinstance(data_files, list):
                data_files = [
                    {**entry, "path": entry["path"].replace("data/", data_prefix, 1)} for entry in data_files
                ]
            elif isinstance(data_files, str):
                data_files = data_files.replace("data/", data_prefix, 1)
            renamed.append({**config, "config_name": config_name, "data_files": data_files})
        card.data["configs"] = renamed[:1]
    return str(card)


def _local_configs(card_path: Path, data_files: list[Path]) -> list[str]:
    """Config names of a folder that already has several (card `configs`, or parquet files below `data/<config>/`)."""
    configs = [
        str(c.get("config_name")) for c in _card_metadata(card_path).get("configs") or [] if isinstance(c, dict)
    ]
    nested = any(file.parent != card_path.parent / "data" for file in data_files)
    return configs if len(configs) > 1 or nested else []


def _refuse_renaming_configs(path: Path, configs: list[str], config_name: str) -> None:
    """Why refuse: renaming one config of several would either merge the subsets under one name or invent names for
    them; both silently change what `load_dataset(repo, name)` returns."""
    raise ValueError(
        f"{path} already has several configs ({', '.join(configs)}); config_name={config_name!r} would rename them. "
        "Push it without config_name (its layout and configs are kept), or to a repo of its own (nothing was uploaded)"
    )


def _merge_remote_configs(api, repo_id: str, card_text: str, config_name: str) -> str:
    """Keep the other configs of a card already on the Hub when adding `config_name` to it."""
    from huggingface_hub import DatasetCard
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        remote_path = api.hf_hub_download(repo_id, "README.md", repo_type="dataset")
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        return card_text
    remote_configs = DatasetCard.load(remote_path).data.get("configs") or []
    card = DatasetCard(card_text)
    kept = [config for config in remote_configs if config.get("config_name") != config_name]
    card.data["configs"] = kept + list(card.data.get("configs") or [])
    return str(card)


def push_dataset(
    path: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    config_name: str | None = None,
    token: str | None = None,
    include_benchmark_images: bool = False,
) -> str:
    """Push a built dataset folder (`README.md` + `data/**/*.parquet`) to a Hub dataset repo: the card, then the data.

    Args:
        path (`str` or `Path`):
            A builder's output folder (`trl-mig build ...`).
        repo_id (`str`):
            `org/name` of the dataset repo; created when missing.
        private (`bool`, *optional*, defaults to `False`):
            Create the repo private (ignored when it exists).
        config_name (`str`, *optional*, defaults to `None`):
            Push a single-config folder as this config: the parquet files go under `<config_name>/` and the card's
            `configs` entry takes this name, keeping the other configs of a card already on the Hub. `None` pushes the
            folder as it is: `data/` with the card's configs (`default`, plus one per subset for a multi-config
            folder). A folder that already has several configs is refused with a `config_name`.
        token (`str`, *optional*, defaults to `None`):
            Hub token; `None` uses `HF_TOKEN` or the saved login. Never logged.
        include_benchmark_images (`bool`, *optional*, defaults to `False`):
            Allow pushing a set built from a benchmark (`mig_bench`, `mc_bench`), whose images are the benchmark's.

    Returns:
        `str`: the URL of the data commit.

    Raises:
        `FileNotFoundError`: the card or the parquet files are missing. `ValueError`: a benchmark set without
        `include_benchmark_images=True`, a file holding the token, or `config_name` for a multi-config folder.
        `HubPushError`: the Hub refused or could not be reached; the message says what to re-run.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    path = Path(path)
    card_path = path / "README.md"
    if not card_path.is_file():
        raise FileNotFoundError(f"{card_path} is missing: push a builder's output folder (`trl-mig build ...`)")
    data_files = sorted((path / "data").rglob("*.parquet"))
    if not data_files:
        raise FileNotFoundError(f"no parquet files in {path / 'data'}: push a builder's output folder")
    configs = _local_configs(card_path, data_files)
    if config_name is not None and configs:
        _refuse_renaming_configs(path, configs, config_name)
    metadata = _card_metadata(card_path)
    if _is_benchmark_set(metadata) and not include_benchmark_images:
        builder = (metadata.get("trl_mig") or {}).get("builder")
        raise ValueError(
            f"{path} was built by `{builder}` and holds benchmark images, whose licences rarely allow re-hosting; "
            "pass include_benchmark_images=True if you may publish them (nothing was uploaded)"
        )
    token = _resolve_token(token)
    _refuse_secrets([card_path], token)

    data_prefix = f"{config_name}/" if config_name else "data/"
    hint = _rerun_hint(
        "push_dataset",
        path,
        repo_id,
        private=private,
        config_name=config_name,
        include_benchmark_images=include_benchmark_images,
    )
    api = HfApi(token=token)
    step = f"creating dataset repo {repo_id}"
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        step = f"uploading the card of {path} to {repo_id}"
        card_text = _dataset_card_for_hub(card_path.read_text(encoding="utf-8"), repo_id, config_name, data_prefix)
        if config_name is not None:
            card_text = _merge_remote_configs(api, repo_id, card_text, config_name)
        logger.info("pushing the card of %s to dataset %s", path, repo_id)
        api.upload_file(
            path_or_fileobj=card_text.encode("utf-8"),
            path_in_repo="README.md",
            repo_id=repo_id,
            repo_type="dataset",
            commit_message="Upload dataset card",
        )
        step = f"uploading {len(data_files)} parquet file(s) of {path} to {repo_id}"
        logger.info("pushing %d parquet file(s) of %s to dataset %s", len(data_files), path, repo_id)
        operations = [
            CommitOperationAdd(f"{data_prefix}{file.relative_to(path / 'data').as_posix()}", str(file))
            for file in data_files
        ]
        info = api.create_commit(
            repo_id,
            operations,
            repo_type="dataset",
            commit_message=f"Upload data ({config_name or 'default'} config)",
        )
    except Exception as err:
        raise _fail(step, err, hint, token) from err
    logger.info("pushed %s to dataset %s (%s)", path, repo_id, info.commit_url)
    return info.commit_url


def _model_files(path: Path) -> list[Path]:
    def ignored(relative: Path) -> bool:
        return any(fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in MODEL_IGNORE_PATTERNS)

    return sorted(f for f in path.rglob("*") if f.is_file() and not ignored(f.relative_to(path)))


def push_model(path: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Push a checkpoint folder (weights, configs, processor, chat template and its `README.md` card) to a model repo.

    Trainer state (`optimizer.pt`, `scheduler.pt`, `rng_state*.pth`, `trainer_state.json`, `training_args.bin`,
    `checkpoint-*/`, `runs/`) stays behind: see `MODEL_IGNORE_PATTERNS`.

    Args:
        path (`str` or `Path`):
            A `save_pretrained` folder with a `README.md` model card.
        repo_id (`str`):
            `org/name` of the model repo; created when missing.
        private (`bool`, *optional*, defaults to `False`):
            Create the repo private (ignored when it exists).
        token (`str`, *optional*, defaults to `None`):
            Hub token; `None` uses `HF_TOKEN` or the saved login. Never logged.

    Returns:
        `str`: the URL of the commit.

    Raises:
        `FileNotFoundError`: no `README.md` or no `config.json`. `ValueError`: a text file holds the token, or a
        file holds pickled weights (`PICKLED_WEIGHT_SUFFIXES`: safetensors only).
        `HubPushError`: the Hub refused or could not be reached; the message says what to re-run.
    """
    from huggingface_hub import HfApi

    path = Path(path)
    if not (path / "README.md").is_file():
        raise FileNotFoundError(
            f"{path / 'README.md'} is missing: write a model card (what the model is, how it was trained, its licence) "
            "before pushing"
        )
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path / 'config.json'} is missing: push a `save_pretrained` folder")
    token = _resolve_token(token)
    files = _model_files(path)
    _refuse_secrets(files, token)
    _refuse_pickled_weights(files)

    hint = _rerun_hint("push_model", path, repo_id, private=private)
    api = HfApi(token=token)
    step = f"creating model repo {repo_id}"
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        step = f"uploading {len(files)} file(s) of {path} to {repo_id}"
        logger.info("pushing %d file(s) of %s to model %s", len(files), path, repo_id)
        info = api.upload_folder(
            folder_path=path,
            repo_id=repo_id,
            repo_type="model",
            commit_message="Upload checkpoint",
            ignore_patterns=[f"{p}/**" for p in MODEL_IGNORE_PATTERNS] + list(MODEL_IGNORE_PATTERNS),
        )
    except Exception as err:
        raise _fail(step, err, hint, token) from err
    logger.info("pushed %s to model %s (%s)", path, repo_id, info.commit_url)
    return info.commit_url
