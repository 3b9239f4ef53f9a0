"""Publishing round trips against `HubServer`, a Hub-compatible server on loopback (`tests/hub_server.py`).

The client side runs in a subprocess. huggingface_hub reads `HF_ENDPOINT`, `HF_HUB_OFFLINE` and `HF_HUB_DISABLE_XET`
once, at import, into `huggingface_hub.constants` (and `datasets` / `transformers` copy some of them at their own
import); by the time this module runs, `tests/conftest.py` has set the hubs offline and other tests have imported all
three. Patching every copied constant in-process is fragile, so each round trip is a fresh Python with the server's
environment set before any import, exactly as a user's shell would be. The server runs in this process, so the tests
can read what it stored and every request it received.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hub_server import HubServer


TOKEN = "hf_dummy_secret_123"


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _run_client(server: HubServer, script: str, tmp_path: Path, token: str = TOKEN, **args) -> dict:
    """Run `script` in a fresh Python pointed at `server`; it reads `ARGS` and prints one JSON line last."""
    env = {**os.environ, **server.environ(token=token), "HF_HOME": str(tmp_path / "hf_home")}
    env.pop("HF_HUB_DISABLE_IMPLICIT_TOKEN", None)
    prelude = (
        "import json, logging, sys\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)\n"  # everything our code logs, to check it
        f"ARGS = json.loads({json.dumps(json.dumps(args))})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert TOKEN not in output, "the token leaked into the client's output or logs"
    assert proc.returncode == 0, output[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_no_token_stored(server: HubServer) -> None:
    assert all(TOKEN.encode() not in blob for blob in server.stored_bytes())
    for request in server.requests:
        assert TOKEN.encode() not in request.body, f"token in the body of {request.method} {request.path}"
        assert all(TOKEN not in value for key, value in request.headers.items() if key.lower() != "authorization")
    # the token did travel, in the Authorization header only (the server refuses writes without it)
    assert any(
        {k.lower(): v for k, v in r.headers.items()}.get("authorization") == f"Bearer {TOKEN}" for r in server.requests
    )


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory) -> Path:
    from trl_mig.datasets_builders import synthetic

    path = tmp_path_factory.mktemp("hub") / "synthetic"
    synthetic.build(synthetic.BuildArguments(output_dir=str(path), num_train=6, num_test=2))
    return path


def _as_benchmark_set(source: Path, destination: Path, builder: str = "mig_bench") -> Path:
    """A copy of `source` whose card says it was built by a benchmark builder."""
    import shutil

    shutil.copytree(source, destination)
    card = destination / "README.md"
    text = card.read_text()
    assert "builder: synthetic" in text
    card.write_text(text.replace("builder: synthetic", f"builder: {builder}", 1))
    return destination


_DATASET_CLIENT = """
    import datasets
    from trl_mig.hub import push_dataset

    url = push_dataset(ARGS["path"], "org/mig-synthetic", private=True)
    hub = datasets.load_dataset("org/mig-synthetic", cache_dir=ARGS["cache"])
    local = datasets.load_dataset(ARGS["path"], cache_dir=ARGS["cache"] + "-local")
    bench_url = push_dataset(ARGS["bench"], "org/mig-bench-copy", include_benchmark_images=True)
    # a second config beside `default`: its files go under `extra/`, the card keeps both configs
    push_dataset(ARGS["path"], "org/mig-synthetic", config_name="extra")
    extra = datasets.load_dataset("org/mig-synthetic", "extra", split="test", cache_dir=ARGS["cache"] + "-extra")
    configs = datasets.get_dataset_config_names("org/mig-synthetic")
    result = {"url": url, "bench_url": bench_url, "splits": {}, "extra_rows": extra.num_rows, "configs": configs}
    for split in local:
        result["splits"][split] = {
            "rows": hub[split].num_rows,
            # the Arrow tables hold the image bytes: equal tables mean equal rows and images
            "equal": hub[split].data.table.equals(local[split].data.table),
            "features_equal": hub[split].features == local[split].features,
            "first_image_size": list(hub[split][0]["images"][0].size),
            "local_first_image_size": list(local[split][0]["images"][0].size),
        }
    print(json.dumps(result))
"""


def test_push_dataset_round_trip(synthetic_set, tmp_path):
    before = _digest(synthetic_set)
    bench = _as_benchmark_set(synthetic_set, tmp_path / "bench")
    with HubServer(token=TOKEN) as server:
        result = _run_client(
            server, _DATASET_CLIENT, tmp_path, path=str(synthetic_set), cache=str(tmp_path / "cache"), bench=str(bench)
        )
        assert not server.unhandled
        endpoint = server.endpoint
        files = server.files("org/mig-synthetic", repo_type="dataset")
        commits = server.commits("org/mig-synthetic", repo_type="dataset")
        assert server.repos[("dataset", "org/mig-synthetic")].private
        _assert_no_token_stored(server)

    assert result["url"].endswith(f"/datasets/org/mig-synthetic/commit/{commits[2].oid}")
    assert result["bench_url"].startswith(f"{endpoint}/datasets/org/mig-bench-copy/commit/")
    assert sorted(result["configs"]) == ["default", "extra"] and result["extra_rows"] == 2
    assert any(p.startswith("extra/") and p.endswith(".parquet") for p in files)
    assert result["splits"].keys() == {"train", "test"}
    assert result["splits"]["train"]["rows"] == 6 and result["splits"]["test"]["rows"] == 2
    for split in result["splits"].values():
        assert split["equal"] and split["features_equal"]
        assert split["first_image_size"] == split["local_first_image_size"]
    # card first, then data: the card commit carries no parquet file
    assert [c.title for c in commits][:3] == ["initial commit", "Upload dataset card", "Upload data (default config)"]
    assert [c.title for c in commits][3:] == ["Upload dataset card", "Upload data (extra config)"]
    assert "README.md" in commits[1].files and not any(p.endswith(".parquet") for p in commits[1].files)
    local_data = {f"data/{p.name}" for p in (synthetic_set / "data").glob("*.parquet")}
    assert local_data <= files.keys()
    assert "<org>/" not in files["README.md"].decode() and "org/mig-synthetic" in files["README.md"].decode()
    assert _digest(synthetic_set) == before  # local files untouched


@pytest.fixture(scope="module")
def mgrounding_set(tmp_path_factory) -> Path:
    """A small MGrounding build with two subsets (configs `gg_train`, `ot_train`) beside `default`."""
    from test_mgrounding_builder import _images, _two_subsets, _write

    from trl_mig.datasets_builders import mgrounding

    root = tmp_path_factory.mktemp("mgrounding")
    _images(root)
    annotations = _write(root / "MGrounding-630k.json", _two_subsets(3))
    out = root / "out"
    mgrounding.build(mgrounding.BuildArguments(annotations=str(annotations), image_root=str(root), output_dir=str(out),
                                               shard_rows=2))  # fmt: skip
    return out


_MULTI_CONFIG_CLIENT = """
    import datasets
    from trl_mig.hub import push_dataset

    push_dataset(ARGS["path"], "org/mgrounding")
    result = {"configs": datasets.get_dataset_config_names("org/mgrounding"), "loaded": {}}
    for config in ARGS["configs"]:
        cache = ARGS["cache"] + "-" + config
        hub = datasets.load_dataset("org/mgrounding", config, split="train", cache_dir=cache + "-hub")
        local = datasets.load_dataset(ARGS["path"], config, split="train", cache_dir=cache + "-local")
        result["loaded"][config] = {
            "ids": list(hub["id"]),
            "local_ids": list(local["id"]),
            "equal": hub.data.table.equals(local.data.table),  # rows and image bytes
            "features_equal": hub.features == local.features,
        }
    print(json.dumps(result))
"""


def test_push_multi_config_dataset_round_trip(mgrounding_set, tmp_path):
    before = _digest(mgrounding_set)
    configs = ["default", "gg_train", "ot_train"]
    with HubServer(token=TOKEN) as server:
        result = _run_client(server, _MULTI_CONFIG_CLIENT, tmp_path, path=str(mgrounding_set), configs=configs,
                             cache=str(tmp_path / "cache"))  # fmt: skip
        assert not server.unhandled
        files = server.files("org/mgrounding", repo_type="dataset")
        commits = server.commits("org/mgrounding", repo_type="dataset")
        _assert_no_token_stored(server)

    assert sorted(result["configs"]) == configs
    local = {str(p.relative_to(mgrounding_set)) for p in (mgrounding_set / "data").rglob("*.parquet")}
    assert {p for p in files if p.endswith(".parquet")} == local  # the layout, as built
    assert {p.split("/")[1] for p in local} == {"gg_train", "ot_train"}
    assert [c.title for c in commits] == ["initial commit", "Upload dataset card", "Upload data (default config)"]
    loaded = result["loaded"]
    assert loaded["gg_train"]["ids"] == [f"gg-{i}:0" for i in range(3)]
    assert loaded["ot_train"]["ids"] == [f"ot-{i}:0" for i in range(3)]
    assert sorted(loaded["default"]["ids"]) == sorted(loaded["gg_train"]["ids"] + loaded["ot_train"]["ids"])
    for config in configs:
        assert loaded[config]["ids"] == loaded[config]["local_ids"]
        assert loaded[config]["equal"] and loaded[config]["features_equal"], config
    assert _digest(mgrounding_set) == before


def test_push_multi_config_dataset_refuses_a_config_name(mgrounding_set):
    from trl_mig.hub import push_dataset

    with pytest.raises(ValueError, match=r"already has several configs \(default, gg_train, ot_train\).*nothing was"):
        push_dataset(mgrounding_set, "org/mgrounding", config_name="extra", token=TOKEN)  # refused before any request


@pytest.mark.parametrize("builder", ["mig_bench", "mc_bench"])
def test_push_dataset_refuses_benchmark_images(synthetic_set, tmp_path, builder):
    from trl_mig.hub import push_dataset

    bench = _as_benchmark_set(synthetic_set, tmp_path / "bench", builder)
    with pytest.raises(ValueError, match=f"built by `{builder}`.*include_benchmark_images=True"):
        push_dataset(bench, "org/bench", token=TOKEN)  # refused before any request: no server needed


def test_push_dataset_needs_a_built_folder(tmp_path):
    from trl_mig.hub import push_dataset

    with pytest.raises(FileNotFoundError, match="README.md is missing"):
        push_dataset(tmp_path, "org/empty", token=TOKEN)
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n")
    with pytest.raises(FileNotFoundError, match="no parquet files"):
        push_dataset(tmp_path, "org/empty", token=TOKEN)


_FAILING_CLIENT = """
    from trl_mig.hub import HubPushError, push_dataset

    try:
        push_dataset(ARGS["path"], "org/refused")  # token from HF_TOKEN
    except HubPushError as err:
        print(json.dumps({"message": str(err)}))
    else:
        raise SystemExit("the push should have failed")
"""


def test_push_dataset_failure_names_the_rerun_and_hides_the_token(synthetic_set, tmp_path):
    before = _digest(synthetic_set)
    with HubServer(token="hf_the_server_wants_another_token") as server:
        result = _run_client(server, _FAILING_CLIENT, tmp_path, path=str(synthetic_set), token=TOKEN)
        assert ("dataset", "org/refused") not in server.repos
    message = result["message"]
    assert "creating dataset repo org/refused failed" in message and "401" in message
    assert "Local files are untouched" in message
    assert f"push_dataset('{synthetic_set}', 'org/refused')" in message
    assert TOKEN not in message
    assert _digest(synthetic_set) == before


_MODEL_CLIENT = """
    import torch
    import trl_mig.models  # registers the tiny models' processor class
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl_mig.hub import push_model

    url = push_model(ARGS["path"], "org/tiny-qwen2.5-vl")
    hub = AutoModelForImageTextToText.from_pretrained("org/tiny-qwen2.5-vl")
    processor = AutoProcessor.from_pretrained("org/tiny-qwen2.5-vl")
    local = AutoModelForImageTextToText.from_pretrained(ARGS["path"])
    hub_state, local_state = hub.state_dict(), local.state_dict()
    same = hub_state.keys() == local_state.keys() and all(torch.equal(hub_state[k], local_state[k]) for k in hub_state)
    print(json.dumps({"url": url, "same_weights": same, "n_tensors": len(hub_state),
                      "processor": type(processor).__name__, "chat_template": bool(processor.chat_template)}))
"""


def test_push_model_round_trip(tmp_path):
    from trl_mig.testing import save_tiny_model

    checkpoint = save_tiny_model(tmp_path / "tiny", "qwen2_5_vl", size="tiny")
    (checkpoint / "training_args.bin").write_bytes(b"pickled args that may hold a hub token")
    (checkpoint / "checkpoint-1").mkdir()
    (checkpoint / "checkpoint-1" / "optimizer.pt").write_bytes(b"\0" * 16)
    before = _digest(checkpoint)
    with HubServer(token=TOKEN) as server:
        result = _run_client(server, _MODEL_CLIENT, tmp_path, path=str(checkpoint))
        assert not server.unhandled
        files = server.files("org/tiny-qwen2.5-vl")
        _assert_no_token_stored(server)

    assert result["same_weights"] and result["n_tensors"] > 0
    assert result["chat_template"]
    assert {"README.md", "config.json", "model.safetensors"} <= files.keys()
    assert "training_args.bin" not in files and not any(p.startswith("checkpoint-") for p in files)
    assert _digest(checkpoint) == before


def test_push_model_refuses_without_card(tmp_path):
    from trl_mig.hub import push_model

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="README.md is missing"):
        push_model(tmp_path, "org/no-card", token=TOKEN)


def test_push_model_refuses_a_file_holding_the_token(tmp_path):
    from trl_mig.hub import push_model

    (tmp_path / "README.md").write_text("# card\n")
    (tmp_path / "config.json").write_text(json.dumps({"hub_token": TOKEN}))
    with pytest.raises(ValueError, match="contains your Hub token") as info:
        push_model(tmp_path, "org/leaky", token=TOKEN)
    assert TOKEN not in str(info.value)


def test_server_tree_paths_info_and_ranges():
    """The read endpoints directly: tree (flat and recursive), paths-info, ranged resolve, private repos."""
    import base64
    import urllib.error
    import urllib.request

    def call(method, url, body=None, headers=None):
        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), response.read()

    auth = {"Authorization": f"Bearer {TOKEN}"}
    with HubServer(token=TOKEN) as server:
        api = f"{server.endpoint}/api/models/org/m"
        create = json.dumps({"name": "m", "organization": "org", "visibility": "private"}).encode()
        call("POST", f"{server.endpoint}/api/repos/create", create, auth)
        lines = [
            {"key": "header", "value": {"summary": "add", "description": ""}},
            {
                "key": "file",
                "value": {
                    "path": "a/b/c.txt",
                    "content": base64.b64encode(b"0123456789").decode(),
                    "encoding": "base64",
                },
            },
        ]
        call("POST", f"{api}/commit/main", b"\n".join(json.dumps(x).encode() for x in lines), auth)
        _, _, flat = call("GET", f"{api}/tree/main", headers=auth)
        _, _, deep = call("GET", f"{api}/tree/main?recursive=1", headers=auth)
        _, _, info = call(
            "POST",
            f"{api}/paths-info/main",
            json.dumps({"paths": ["a/b", "a/b/c.txt"]}).encode(),
            {**auth, "Content-Type": "application/json"},
        )
        status, headers, part = call(
            "GET", f"{server.endpoint}/org/m/resolve/main/a/b/c.txt", None, {**auth, "Range": "bytes=2-4"}
        )
        with pytest.raises(urllib.error.HTTPError) as denied:
            call("GET", api)  # private: no token, no info
    assert {(e["type"], e["path"]) for e in json.loads(flat)} == {("file", ".gitattributes"), ("directory", "a")}
    assert {e["path"] for e in json.loads(deep)} == {".gitattributes", "a", "a/b", "a/b/c.txt"}
    assert [(e["type"], e["path"]) for e in json.loads(info)] == [("directory", "a/b"), ("file", "a/b/c.txt")]
    assert (status, part, headers["Content-Range"]) == (206, b"234", "bytes 2-4/10")
    assert headers["X-Repo-Commit"] == server.commits("org/m")[-1].oid
    assert denied.value.code == 401


def test_cli_push_dataset_and_model(synthetic_set, tmp_path):
    from trl_mig.testing import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny", "qwen2_5_vl", size="tiny")
    script = """
    import json
    from trl_mig.cli import main
    assert main(["push", ARGS["data"], "--repo_id", "org/cli-set"]) == 0
    assert main(["push", ARGS["model"], "--repo-id", "org/cli-model", "--private"]) == 0
    print(json.dumps({"ok": True}))
    """
    with HubServer(token=TOKEN) as server:
        _run_client(server, script, tmp_path, data=str(synthetic_set), model=str(model))
        assert not server.unhandled
        assert any(p.endswith(".parquet") for p in server.files("org/cli-set", repo_type="dataset"))
        assert "model.safetensors" in server.files("org/cli-model")
        assert server.repos[("model", "org/cli-model")].private
        _assert_no_token_stored(server)
