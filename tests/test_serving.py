"""`transformers serve` serves trl-mig's tiny multimodal model on loopback: multi-image requests, restarts on the same
port, concurrent requests. These run a real server process (see `tests/serving.py`)."""

import json
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from serving import ServedModel, missing_serving_packages, multi_image_messages


def _text_only_prompt_tokens(server: ServedModel, text: str) -> int:
    reply = server.chat([{"role": "user", "content": [{"type": "text", "text": text}]}], max_tokens=1)
    return reply["usage"]["prompt_tokens"]


def test_two_image_chat_completion(served_tiny_model):
    server = served_tiny_model
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert server.startup_seconds is not None and server.startup_seconds < 120

    with urllib.request.urlopen(f"{server.base_url}/models", timeout=10) as response:
        models = json.loads(response.read())
    assert [entry["id"] for entry in models["data"]] == [server.model]

    text = "Which image shows the red square?"
    started = time.monotonic()
    reply = server.chat(multi_image_messages(text, n_images=2), max_tokens=16)
    elapsed = time.monotonic() - started
    assert elapsed < 30, elapsed
    assert reply["object"] == "chat.completion"
    assert reply["model"] == server.model
    assert isinstance(reply["choices"][0]["message"]["content"], str)
    assert reply["usage"]["completion_tokens"] <= 16
    # Both images reached the processor: their vision tokens make the prompt longer than the text alone.
    with_one = server.chat(multi_image_messages(text, n_images=1), max_tokens=1)["usage"]["prompt_tokens"]
    assert reply["usage"]["prompt_tokens"] > with_one > _text_only_prompt_tokens(server, text)

    # The official OpenAI client works against it too; sampling (an extension field) gives non-empty garbage text.
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)
    completion = client.chat.completions.create(
        model=server.model,
        messages=multi_image_messages(text, n_images=2),
        max_tokens=16,
        seed=0,
        extra_body={"generation_config": json.dumps({"do_sample": True, "max_new_tokens": 16})},
    )
    assert completion.choices[0].message.content
    client.close()


def test_restart_on_same_port(served_tiny_model):
    server = served_tiny_model
    port, base_url = server.port, server.base_url
    server.stop()
    assert not server.is_running()
    with pytest.raises(OSError):  # nothing listens on the port any more
        socket.create_connection((server.host, server.port), timeout=2).close()
    server.restart()  # on a stopped server: a start, on the same port
    assert server.is_running()
    assert (server.port, server.base_url) == (port, base_url)
    reply = server.chat(multi_image_messages(), max_tokens=4)
    assert isinstance(reply["choices"][0]["message"]["content"], str)


def test_four_concurrent_requests(served_tiny_model):
    server = served_tiny_model
    barrier = threading.Barrier(4)

    def ask(index: int) -> dict:
        messages = multi_image_messages(f"Question {index}: which image is red?", n_images=2)
        barrier.wait(timeout=30)
        return server.chat(messages, max_tokens=16, timeout=120)

    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(ask, range(4)))
    assert len({reply["id"] for reply in replies}) == 4
    assert all(isinstance(reply["choices"][0]["message"]["content"], str) for reply in replies)


def test_serving_extra_is_installed():
    assert not missing_serving_packages(), f"install the `serving` extra: {missing_serving_packages()}"
