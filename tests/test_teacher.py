"""`OpenAITeacher` against a real OpenAI-compatible server on loopback: a scripted `ThreadingHTTPServer` that answers
each request with the next scripted response (a status, headers and body, or a delay past the client's timeout) and
records what it received. Nothing of the HTTP layer is mocked; only the sleep between retries is replaced, so that the
tests check the waits without taking them."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import threading
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from trl_mig.synthesis.teacher import OpenAITeacher, TeacherError, encode_image, to_openai_messages


SECRET = "sk-test-3f9a1c7e-do-not-leak"


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops connections under 16 clients: 1 s SYN retransmits


@dataclass
class Scripted:
    """One scripted response; `delay` seconds are slept before answering (longer than the client timeout = a timeout)."""

    status: int = 200
    body: bytes | dict | None = None  # None: an OpenAI reply echoing the request's last text part
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


def chat_reply(text: str | None, finish_reason: str = "stop") -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


def last_text(payload: dict) -> str:
    content = payload["messages"][-1]["content"]
    return content if isinstance(content, str) else [p["text"] for p in content if p["type"] == "text"][-1]


class ScriptedServer:
    """A small OpenAI-compatible server: `script` is popped once per request; when empty, the reply echoes."""

    def __init__(self):
        self.script: deque[Scripted] = deque()
        self.requests: list[dict] = []  # {"path", "headers", "json"} in arrival order
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": self.headers, "json": json.loads(raw)})
                    step = server.script.popleft() if server.script else Scripted()
                if step.delay:
                    threading.Event().wait(step.delay)
                body = step.body
                if body is None:
                    body = chat_reply(f"echo:{last_text(json.loads(raw))}")
                if isinstance(body, dict):
                    body = json.dumps(body).encode()
                try:
                    self.send_response(step.status)
                    for name, value in {"Content-Type": "application/json", **step.headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout) and closed the connection
                    pass

            def log_message(self, format, *args):  # keep pytest output clean
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """urllib honours *_proxy variables; a proxy set on a developer machine must not intercept loopback requests."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


def make_teacher(base_url: str, sleeps: list | None = None, **kwargs) -> OpenAITeacher:
    teacher = OpenAITeacher(base_url, "teacher-model", **{"timeout": 5.0, **kwargs})
    teacher.sleep = sleeps.append if sleeps is not None else (lambda seconds: None)
    return teacher


USER = [{"role": "user", "content": "Where is the cat?"}]


def test_normal_reply_is_parsed_and_request_is_well_formed(server):
    server.script.append(Scripted(body=chat_reply("<think>a</think><answer>x</answer>", "length")))
    teacher = make_teacher(server.base_url + "/", temperature=0.3, max_tokens=77, extra_body={"top_p": 0.9})
    reply = teacher.complete(USER, row_id="r1", seed=5)
    assert reply.text == "<think>a</think><answer>x</answer>"
    assert (reply.finish_reason, reply.attempts) == ("length", 1)
    assert reply.usage == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    assert reply.seconds > 0
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["json"] == {
        "model": "teacher-model",
        "messages": USER,
        "temperature": 0.3,
        "max_tokens": 77,
        "seed": 5,
        "top_p": 0.9,
    }
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"].get("Authorization") is None  # no key in the environment: no header


def test_null_and_list_content(server):
    null = chat_reply(None)
    parts = chat_reply(None)
    parts["choices"][0]["message"]["content"] = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    server.script.extend([Scripted(body=null), Scripted(body=parts)])
    teacher = make_teacher(server.base_url)
    assert teacher.complete(USER).text == ""
    assert teacher.complete(USER).text == "ab"
    assert "seed" not in server.requests[0]["json"]


def test_images_arrive_as_data_urls_with_the_same_pixels(server):
    first = Image.frombytes("RGB", (7, 5), bytes(range(105)))
    second = Image.frombytes("RGBA", (3, 4), bytes(range(200, 248)))
    prompt = [
        {"role": "system", "content": "You ground objects."},
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Which one?"}]},
    ]
    messages = to_openai_messages(prompt, [first, second])
    assert prompt[1]["content"][0] == {"type": "image"}  # the prompt is not modified
    make_teacher(server.base_url).complete(messages)
    sent = server.requests[0]["json"]["messages"]
    assert sent[0] == {"role": "system", "content": "You ground objects."}
    assert [part["type"] for part in sent[1]["content"]] == ["image_url", "image_url", "text"]
    for part, original in zip(sent[1]["content"][:2], [first, second]):
        header, payload = part["image_url"]["url"].split(",", 1)
        assert header == "data:image/png;base64"
        decoded = Image.open(io.BytesIO(base64.b64decode(payload)))
        assert (decoded.mode, decoded.size, decoded.tobytes()) == (original.mode, original.size, original.tobytes())


def test_encode_image_modes_and_jpeg():
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 0, 0))
    decoded = Image.open(io.BytesIO(base64.b64decode(encode_image(cmyk).split(",", 1)[1])))
    assert decoded.mode == "RGB"
    transparent = Image.new("RGBA", (6, 6), (255, 0, 0, 0))
    url = encode_image(transparent, format="jpg")
    assert url.startswith("data:image/jpeg;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.mode == "RGB" and min(decoded.getpixel((3, 3))) > 240  # alpha composited onto white
    with pytest.raises(ValueError, match="GIF"):
        encode_image(transparent, format="GIF")


def test_placeholder_count_must_match_images():
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}]
    image = Image.new("RGB", (2, 2))
    with pytest.raises(ValueError, match="1 image placeholder"):
        to_openai_messages(prompt, [image, image])
    with pytest.raises(ValueError, match="0 image"):
        to_openai_messages(prompt, [])
    with pytest.raises(ValueError, match="video"):
        to_openai_messages([{"role": "user", "content": [{"type": "video"}]}], [])


def test_api_key_is_sent_but_never_shown(server, monkeypatch, caplog):
    monkeypatch.setenv("TEACHER_TEST_KEY", SECRET)
    echo_key = json.dumps({"error": {"message": f"bad header Bearer {SECRET}"}}).encode()
    server.script.extend([Scripted(500, echo_key), Scripted(), Scripted(400, echo_key)])
    teacher = make_teacher(server.base_url, api_key_env="TEACHER_TEST_KEY")
    with caplog.at_level(logging.WARNING, logger="trl_mig.synthesis.teacher"):
        assert teacher.complete(USER, row_id="row-7").attempts == 2
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert "row-7" in caplog.text and "HTTP 500" in caplog.text
    with pytest.raises(TeacherError) as info:
        teacher.complete(USER, row_id="row-8")
    shown = [repr(teacher), str(teacher), json.dumps(teacher.describe()), str(vars(teacher)), caplog.text]
    shown += [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))]
    assert all(SECRET not in text for text in shown)
    assert "***" in str(info.value)  # the echoed key was redacted, not dropped silently
    assert teacher.describe()["api_key_env"] == "TEACHER_TEST_KEY"


def test_describe_records_the_settings():
    teacher = OpenAITeacher("http://127.0.0.1:1/v1/", "m", temperature=1.0, max_tokens=64, timeout=9.0, max_retries=2)
    assert teacher.describe() == {
        "base_url": "http://127.0.0.1:1/v1",
        "model": "m",
        "temperature": 1.0,
        "max_tokens": 64,
        "timeout": 9.0,
        "max_retries": 2,
        "api_key_env": "OPENAI_API_KEY",
        "extra_body": {},
    }


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"base_url": "127.0.0.1:8000/v1"}, "not an http"),
        ({"base_url": "http://user:pw@127.0.0.1/v1"}, "credentials"),
        ({"timeout": 0}, "timeout > 0"),
        ({"extra_body": {"stream": True}}, "stream"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OpenAITeacher(**{"base_url": "http://127.0.0.1:8000/v1", "model": "m", **kwargs})


@pytest.mark.parametrize("retry_after, expected", [("2", 2.0), ("999", 7.0), ("0.5", 0.5)])
def test_429_honours_retry_after(server, retry_after, expected):
    server.script.append(Scripted(429, b'{"error": "slow down"}', {"Retry-After": retry_after}))
    sleeps = []
    reply = make_teacher(server.base_url, sleeps, max_backoff=7.0).complete(USER, row_id="r")
    assert reply.attempts == 2 and reply.text == "echo:Where is the cat?"
    assert sleeps == [expected]  # capped at max_backoff
    assert len(server.requests) == 2


def test_server_errors_are_retried_with_capped_jittered_backoff(server):
    server.script.extend([Scripted(503), Scripted(500, b"oops"), Scripted(502), Scripted(504)])
    sleeps = []
    reply = make_teacher(server.base_url, sleeps, backoff=1.0, max_backoff=3.0).complete(USER)
    assert reply.attempts == 5
    assert len(sleeps) == 4
    assert all(0.0 <= s <= cap for s, cap in zip(sleeps, [1.0, 2.0, 3.0, 3.0]))


def test_timeout_then_success(server):
    server.script.extend([Scripted(delay=1.0)])
    sleeps = []
    reply = make_teacher(server.base_url, sleeps, timeout=0.3).complete(USER, row_id="slow")
    assert reply.attempts == 2 and reply.text == "echo:Where is the cat?"
    assert len(sleeps) == 1 and len(server.requests) == 2


def test_connection_refused_fails_after_all_retries():
    with socket.socket() as probe:  # a port that was free a moment ago and now has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = []
    teacher = make_teacher(f"http://127.0.0.1:{port}/v1", sleeps, max_retries=3)
    with pytest.raises(TeacherError) as info:
        teacher.complete(USER, row_id="row-42")
    assert info.value.attempts == 4 and info.value.status is None and info.value.row_id == "row-42"
    assert "row-42" in str(info.value) and "4 attempt" in str(info.value) and "Connection" in str(info.value)
    assert len(sleeps) == 3


@pytest.mark.parametrize("status", [400, 401, 404, 422, 301])
def test_client_errors_fail_at_once(server, status):
    server.script.append(Scripted(status, b'{"error": {"message": "image too large"}}', {"Location": "/elsewhere"}))
    sleeps = []
    with pytest.raises(TeacherError) as info:
        make_teacher(server.base_url, sleeps).complete(USER, row_id="bad")
    assert (info.value.status, info.value.attempts) == (status, 1)
    assert f"HTTP {status}" in str(info.value) and "'bad'" in str(info.value)
    assert sleeps == [] and len(server.requests) == 1


def test_malformed_200_is_retried_twice_then_fails(server):
    server.script.extend([Scripted(body=b"<html>proxy</html>"), Scripted(body={"choices": []})])
    reply = make_teacher(server.base_url).complete(USER)
    assert reply.attempts == 3 and reply.text.startswith("echo:")
    server.script.extend([Scripted(body=b"not json")] * 3 + [Scripted()])
    with pytest.raises(TeacherError, match="not JSON") as info:
        make_teacher(server.base_url, max_retries=5).complete(USER, row_id="m")
    assert (info.value.attempts, info.value.status) == (3, 200)  # gave up before max_retries: it will not heal


def test_concurrent_calls_pair_requests_with_replies(server):
    server.script.extend([Scripted(503), Scripted(429, headers={"Retry-After": "0"})])
    teacher = make_teacher(server.base_url)

    def ask(index: int) -> tuple[int, str]:
        return index, teacher.complete([{"role": "user", "content": f"marker-{index}"}], row_id=str(index)).text

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(ask, range(64)))
    assert all(text == f"echo:marker-{index}" for index, text in results)
    assert len(server.requests) == 66  # two requests were retried
