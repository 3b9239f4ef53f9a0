"""A real OpenAI-compatible server (`transformers serve`) on loopback, for tests.

`ServedModel` starts `transformers serve <model> --host 127.0.0.1 --port <free port>` in a subprocess whose Python first
imports `trl_mig.models` (which registers the tiny models' torchvision-free processor class with `AutoProcessor`), waits
until `GET /v1/models` answers, and stops it with SIGTERM. `restart()` keeps the port, so a client configured with
`base_url` reaches the server again once it is back. The server's stdout and stderr go to `log_path`.

The server is pinned to one model (`transformers serve`'s `force_model` argument): requests must name it as `model`
(exactly the string `ServedModel.model`) or leave `model` out. Generation is greedy unless the request sends
`"generation_config": json.dumps({"do_sample": True, ...})` (an extension of the OpenAI schema); `temperature` alone
does not switch sampling on. A tiny random model's greedy choices are often special tokens, which the server strips:
its greedy replies can be empty strings.

Fixtures: `served_tiny_model` (function-scoped; restarts the shared server if an earlier test left it stopped) over
`served_tiny_model_server` (session-scoped: one tiny Qwen2.5-VL checkpoint, one server). Test modules import both
(`from serving import served_tiny_model, served_tiny_model_server`), or `tests/conftest.py` does once for all.

Besides pytest, this module imports only the standard library at import time (PIL and trl-mig when used), so that
pytest's doctest collection of `tests/` stays cheap.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


SERVING_PACKAGES = ("fastapi", "uvicorn", "openai", "pydantic")
SERVING_HINT = "install the `serving` extra: pip install -e '.[serving]' (fastapi, uvicorn, openai)"

# The server's Python: register trl-mig's processor classes, then run the `transformers` CLI (its `main()` minus the
# update check, which `HF_HUB_DISABLE_UPDATE_CHECK` turns off anyway).
_LAUNCHER = (
    "import sys\n"
    "for name in sys.argv[1].split(','):\n"
    "    if name:\n"
    "        __import__(name)\n"
    "del sys.argv[1]\n"
    "from transformers.cli.transformers import app\n"
    "app(prog_name='transformers')\n"
)


def missing_serving_packages() -> list[str]:
    """The packages of the `serving` extra that are not installed (`transformers serve` needs them all)."""
    return [name for name in SERVING_PACKAGES if importlib.util.find_spec(name) is None]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def image_data_url(color: str | tuple[int, int, int] = "red", size: tuple[int, int] = (56, 56)) -> str:
    """A plain-colored PNG as a `data:image/png;base64,...` URL, for `{"type": "image_url", ...}` content parts."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class ServerError(RuntimeError):
    """The server did not start, or stopped answering; the message ends with the tail of its log."""


class ServedModel:
    """`transformers serve` on loopback, serving one local checkpoint.

    Args:
        model_path: the checkpoint directory (or a Hub id, which needs the Hub: not in tests).
        port: the port to listen on; a free one by default. It is kept across `stop()`/`start()`/`restart()`.
        log_path: where the server's stdout and stderr go (appended to, across restarts); a temporary file by default.
        preload: modules the server's Python imports before loading the model.
        startup_timeout: seconds `start()` waits for the server to answer.
        extra_args: more `transformers serve` options, e.g. `("--default-seed", "0")`.
        env: more environment variables for the server.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: str | os.PathLike | None = None,
        preload: tuple[str, ...] = ("trl_mig.models",),
        startup_timeout: float = 120.0,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ):
        self.model = str(model_path)
        self.host = host
        self.port = port if port is not None else free_port(host)
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="transformers-serve-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self.preload = tuple(preload)
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self.env = dict(env or {})
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None  # how long the last `start()` took

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (`openai.OpenAI(base_url=..., api_key="unused")`)."""
        return f"{self.root_url}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-c", _LAUNCHER, ",".join(self.preload),
            "serve", self.model,
            "--host", self.host, "--port", str(self.port),
            "--device", "cpu", "--log-level", "info",
            *self.extra_args,
        ]  # fmt: skip

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> ServedModel:
        """Start the server and wait until it answers; raise `ServerError` (with the log's tail) otherwise."""
        if self.is_running():
            return self
        missing = missing_serving_packages()
        if missing:
            raise ServerError(f"`transformers serve` needs {', '.join(missing)}: {SERVING_HINT}")
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {' '.join(self.command()[3:])}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal does not reach it: `stop()` does
            )
        try:
            self._wait_until_ready(started + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_until_ready(self, deadline: float) -> None:
        while True:
            if self.process.poll() is not None:
                raise ServerError(
                    f"`transformers serve` exited with code {self.process.returncode} before answering "
                    f"(log: {self.log_path}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServerError(
                    f"`transformers serve` did not answer on {self.base_url} within {self.startup_timeout:.0f} s "
                    f"(log: {self.log_path}):\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL after `timeout` seconds. The port is kept."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> ServedModel:
        self.stop()
        return self.start()

    def __enter__(self) -> ServedModel:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __del__(self):  # a last resort: fixtures stop it
        process = getattr(self, "process", None)
        if process is not None and process.poll() is None:
            process.kill()

    # ---- a minimal client (standard library only) ----

    def chat(self, messages: list[dict], *, max_tokens: int = 16, timeout: float = 60.0, **fields) -> dict:
        """POST `/v1/chat/completions` and return the decoded JSON; raise `ServerError` on a non-200 answer."""
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, **fields}
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise ServerError(
                f"{error.code} from /v1/chat/completions: {error.read()[:2000]!r}\n{self.log_tail()}"
            ) from None


def multi_image_messages(text: str = "Which image shows the red square?", n_images: int = 2) -> list[dict]:
    """One user turn: `n_images` data-URL images, then text."""
    colors = ["red", "blue", "green", "yellow", "purple", "orange"]
    parts = [
        {"type": "image_url", "image_url": {"url": image_data_url(colors[i % len(colors)], (56 + 28 * i, 56))}}
        for i in range(n_images)
    ]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


# ---- pytest fixtures ----

_session_server: ServedModel | None = None


@pytest.fixture(scope="session")
def served_tiny_model_server(tmp_path_factory) -> ServedModel:
    """One `transformers serve` server for the session, serving a tiny random Qwen2.5-VL (trl-mig's processor)."""
    global _session_server
    if _session_server is not None:  # the fixture is reachable from two places (conftest and a test module)
        yield _session_server
        return
    missing = missing_serving_packages()
    if missing:
        pytest.fail(f"`transformers serve` needs {', '.join(missing)}: {SERVING_HINT}", pytrace=False)
    from trl_mig.testing import save_tiny_model

    root = tmp_path_factory.mktemp("served_tiny_model")
    checkpoint = save_tiny_model(root / "checkpoint", "qwen2_5_vl", size="tiny", seed=0)
    server = ServedModel(checkpoint, log_path=root / "server.log")
    server.start()
    _session_server = server
    try:
        yield server
    finally:
        _session_server = None
        server.stop()


@pytest.fixture
def served_tiny_model(served_tiny_model_server) -> ServedModel:
    """The session's server, running (started again if an earlier test stopped it). A test may stop and restart it,
    and should leave it running."""
    if not served_tiny_model_server.is_running():
        served_tiny_model_server.start()
    return served_tiny_model_server
