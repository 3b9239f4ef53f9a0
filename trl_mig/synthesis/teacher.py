"""Client for a *teacher* model behind an OpenAI-compatible chat-completions endpoint (vLLM, `transformers serve`, a
hosted API). The CoT synthesizer (DESIGN.md section 5) sends it multi-image grounding questions and keeps the chains
of thought whose answers are right.

HTTP goes through the standard library (`urllib.request`) so that synthesis needs no `openai` package, and the retry
policy is ours: a run of many hours meets every transient failure a server has (restarts, rate limits, overloaded
proxies) and must neither die on one nor hammer the server. Retry policy of [`OpenAITeacher.complete`]:

- retried, with exponential backoff and full jitter (`uniform(0, min(max_backoff, backoff * 2**retry))`): timeouts,
  refused or reset connections (the server may be restarting), DNS failures, and HTTP 408, 429, 500, 502, 503, 504.
  A `Retry-After` header (seconds or an HTTP date) replaces the jittered wait, capped at `max_backoff`;
- not retried: any other status (400, 401, 404, 422, redirects...), a TLS certificate failure, a malformed URL. The
  request itself is wrong and sending it again only costs time;
- a 200 whose body is not JSON or holds no `choices[0].message` is retried at most `max_malformed_retries` (2) times:
  a proxy that truncates a body during a restart recovers, a URL that points at something other than a
  chat-completions endpoint does not.
"""

from __future__ import annotations

import base64
import copy
import email.utils
import io
import json
import logging
import math
import os
import random
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from http.client import HTTPException
from typing import Any

from PIL import Image


logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Modes every PNG decoder reads as 8-bit images; others (CMYK, YCbCr, I;16, F...) are converted first.
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg"}


def encode_image(image: Image.Image, format: str = "PNG") -> str:
    """Encodes `image` as a `data:` URL, the one way to send pixels that every OpenAI-compatible server accepts.

    PNG (the default) is lossless, so the teacher sees exactly the pixels the student is trained on. Modes PNG cannot
    hold as 8-bit images are converted to RGB (RGBA when they carry alpha). JPEG (`format="JPEG"`, quality 95) makes
    requests several times smaller for photographs; alpha is composited onto white because JPEG has none.

    Args:
        image (`PIL.Image.Image`):
            The image.
        format (`str`, *optional*, defaults to `"PNG"`):
            `"PNG"` or `"JPEG"` (`"JPG"` accepted), case-insensitive.

    Returns:
        `str`: `data:image/png;base64,...` (or `data:image/jpeg;...`).

    Example:
    ```python
    >>> from PIL import Image
    >>> encode_image(Image.new("RGB", (4, 3)))[:22]
    'data:image/png;base64,'

    ```
    """
    fmt = {"JPG": "JPEG"}.get(format.upper(), format.upper())
    if fmt not in _MIME:
        raise ValueError(f"format={format!r} is not supported; use 'PNG' (lossless) or 'JPEG'.")
    has_alpha = "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)
    if fmt == "PNG" and image.mode not in _PNG_MODES:
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif fmt == "JPEG" and has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    elif fmt == "JPEG" and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return f"data:{_MIME[fmt]};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def to_openai_messages(prompt: list[dict], images: Sequence[Image.Image]) -> list[dict]:
    """Converts a trl-mig conversational prompt into OpenAI chat messages, filling image placeholders with `images`.

    trl-mig prompts (DESIGN.md section 3) carry `{"type": "image"}` placeholders and keep the pixels in the `images`
    column; the OpenAI API wants each image inline as an `image_url` part, in the same position.

    Args:
        prompt (`list[dict]`):
            Messages with a `role` and a `content` that is a string or a list of `{"type": "image"}` /
            `{"type": "text", "text": ...}` parts.
        images (`Sequence[PIL.Image.Image]`):
            One image per placeholder, in order of appearance.

    Returns:
        `list[dict]`: new messages (the prompt is not modified); string contents are kept as strings.

    Example:
    ```python
    >>> from PIL import Image
    >>> prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is the cat?"}]}]
    >>> message = to_openai_messages(prompt, [Image.new("RGB", (4, 3))])[0]
    >>> [part["type"] for part in message["content"]]
    ['image_url', 'text']

    ```
    """
    placeholders = 0
    for index, message in enumerate(prompt):
        content = message.get("content")
        if not isinstance(content, (str, list)):
            raise ValueError(
                f"prompt message {index} has content of type {type(content).__name__}; expected a string "
                "or a list of parts."
            )
        if isinstance(content, list):
            placeholders += sum(1 for part in content if part.get("type") == "image")
    if placeholders != len(images):
        raise ValueError(
            f"The prompt has {placeholders} image placeholder(s) but {len(images)} image(s) were given; "
            "pass one image per {'type': 'image'} part, in order."
        )
    remaining = iter(images)
    converted = []
    for index, message in enumerate(prompt):
        content = message["content"]
        if isinstance(content, str):
            converted.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            kind = part.get("type")
            if kind == "image":
                parts.append({"type": "image_url", "image_url": {"url": encode_image(next(remaining))}})
            elif kind == "text":
                parts.append({"type": "text", "text": part["text"]})
            else:
                raise ValueError(
                    f"prompt message {index} has a part of type {kind!r}; only 'image' and 'text' parts "
                    "are understood."
                )
        converted.append({"role": message["role"], "content": parts})
    return converted


@dataclass
class TeacherReply:
    """What the teacher answered, and what it cost: the synthesizer's card reports time and retries per run."""

    text: str  # the first choice's message content, "" when the server sent null
    finish_reason: str | None  # "stop", "length" (cut at max_tokens: the trace is likely incomplete)...
    seconds: float  # wall-clock seconds of the whole call, retries and waits included
    attempts: int  # HTTP requests sent, 1 when nothing failed
    usage: dict | None  # the server's token counts, when it reports them


class TeacherError(RuntimeError):
    """A teacher request that failed for good: a non-retryable status, or retries exhausted.

    The message names the row, the status or exception and the attempts, never the API key. `row_id`, `status` (the
    last HTTP status, or `None`) and `attempts` are attributes, so a synthesizer can count failures per cause.
    """

    def __init__(self, message: str, *, row_id: str, status: int | None, attempts: int):
        super().__init__(message)
        self.row_id, self.status, self.attempts = row_id, status, attempts


class _Secret:
    """Holds the API key so that `repr`, `vars()` and debuggers that print attributes show `***`, never the key."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret ***>"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib turns a redirected POST into a GET without a body; an error that names the status is more useful."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class OpenAITeacher:
    """A teacher model behind an OpenAI-compatible `/chat/completions` endpoint. Thread-safe: `complete` shares no
    mutable state between requests, so a synthesizer may call it from a thread pool (the pool bounds concurrency).

    Args:
        base_url (`str`):
            The API root, up to and including `/v1` (e.g. `http://127.0.0.1:8000/v1`); `/chat/completions` is appended.
            A trailing slash is ignored. Credentials in the URL are refused: use `api_key_env`.
        model (`str`):
            The model name the server expects.
        api_key_env (`str` or `None`, *optional*, defaults to `"OPENAI_API_KEY"`):
            Name of the environment variable read (once, here) for the key, sent as `Authorization: Bearer ...`. Unset,
            empty or `None`: no Authorization header, which local servers accept. The key never appears in `repr`,
            logs, errors or [`describe`].
        timeout (`float`, *optional*, defaults to `120.0`):
            Seconds per blocking socket operation (connect, each read), not for the whole reply.
        max_retries (`int`, *optional*, defaults to `5`):
            Retries after the first attempt (see the module docstring for what is retried).
        backoff (`float`, *optional*, defaults to `1.0`), max_backoff (`float`, *optional*, defaults to `30.0`):
            Base and cap, in seconds, of the jittered exponential wait; `max_backoff` also caps `Retry-After`.
        temperature (`float`, *optional*, defaults to `0.7`), max_tokens (`int`, *optional*, defaults to `1024`):
            Sampling settings sent with every request.
        extra_body (`dict` or `None`, *optional*):
            More JSON fields, merged last (e.g. `{"top_p": 0.95}` or vLLM's `{"top_k": 20}`). Recorded by
            [`describe`], so it must hold no secret; `messages` and `stream` are refused.

    The sleep between retries is the instance attribute `sleep` (default `time.sleep`), replaceable in tests.
    """

    max_malformed_retries: int = 2

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        extra_body: dict | None = None,
    ):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url={base_url!r} is not an http(s) URL; pass e.g. 'http://127.0.0.1:8000/v1'.")
        if parts.username or parts.password:
            raise ValueError(
                "base_url must not carry credentials; put the key in the environment variable named by api_key_env."
            )
        if timeout <= 0 or max_retries < 0 or backoff < 0 or max_backoff < 0 or max_tokens < 1:
            raise ValueError(
                f"Need timeout > 0, max_retries >= 0, backoff >= 0, max_backoff >= 0 and max_tokens >= 1; "
                f"got timeout={timeout}, max_retries={max_retries}, backoff={backoff}, "
                f"max_backoff={max_backoff}, max_tokens={max_tokens}."
            )
        extra_body = copy.deepcopy(extra_body or {})
        if "messages" in extra_body or extra_body.get("stream"):
            raise ValueError("extra_body may not set 'messages' or 'stream' (replies are read whole); remove them.")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model, self.api_key_env, self.extra_body = model, api_key_env, extra_body
        self.timeout, self.max_retries, self.backoff, self.max_backoff = timeout, max_retries, backoff, max_backoff
        self.temperature, self.max_tokens = temperature, max_tokens
        key = os.environ.get(api_key_env, "").strip() if api_key_env else ""
        self._api_key = _Secret(key) if key else None
        self.sleep: Callable[[float], Any] = time.sleep
        self._rng = random.Random()
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __repr__(self) -> str:
        key = "set" if self._api_key is not None else "unset"
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}, "
            f"api_key_env={self.api_key_env!r} ({key}))"
        )

    def describe(self) -> dict:
        """What a dataset card may record about the teacher: where, which model, how sampled; never the key."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "api_key_env": self.api_key_env,
            "extra_body": copy.deepcopy(self.extra_body),
        }

    def ask(
        self, prompt: list[dict], images: Sequence[Image.Image], *, row_id: str = "?", seed: int | None = None
    ) -> TeacherReply:
        """The teacher interface the synthesizer calls: a trl-mig prompt and its images, as one chat request."""
        return self.complete(to_openai_messages(prompt, images), row_id=row_id, seed=seed)

    def complete(self, messages: list[dict], *, row_id: str = "?", seed: int | None = None) -> TeacherReply:
        """Sends one chat-completions request, retrying transient failures (module docstring), and returns the reply.

        Args:
            messages (`list[dict]`):
                OpenAI chat messages, e.g. from [`to_openai_messages`].
            row_id (`str`, *optional*, defaults to `"?"`):
                Named in retry warnings and errors, so that a failure in a long run can be traced to its row.
            seed (`int` or `None`, *optional*):
                Sent as `seed` when given (servers that honour it make tries reproducible).

        Raises:
            `TeacherError`: a non-retryable failure, or the retries ran out.
        """
        payload = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if seed is not None:
            payload["seed"] = seed
        payload.update(self.extra_body)
        data = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        start, malformed, status = time.monotonic(), 0, None
        for attempt in range(1, self.max_retries + 2):
            retry_after = cause = None
            try:
                request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with self._opener.open(request, timeout=self.timeout) as response:
                    status, body = response.status, response.read()
            except urllib.error.HTTPError as exc:  # before URLError, its parent
                status, cause = exc.code, exc
                failure = f"HTTP {exc.code}: {_snippet(_read_quietly(exc))}"
                if exc.code not in RETRYABLE_STATUSES:
                    raise self._error(row_id, failure, status, attempt) from exc
                retry_after = _parse_retry_after(exc.headers.get("Retry-After"))
            except (urllib.error.URLError, OSError, HTTPException) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                status, cause, failure = None, exc, f"{type(reason).__name__}: {reason}"
                if not _transient(reason):
                    raise self._error(row_id, failure, status, attempt) from exc
            else:
                parsed = _parse_reply(body)
                if not isinstance(parsed, str):
                    text, finish_reason, usage = parsed
                    return TeacherReply(text, finish_reason, time.monotonic() - start, attempt, usage)
                malformed += 1
                failure = f"malformed HTTP {status} reply: {parsed}"
                if malformed > self.max_malformed_retries:
                    raise self._error(row_id, failure, status, attempt)
            if attempt > self.max_retries:
                raise self._error(row_id, failure, status, attempt) from cause
            delay = self._delay(attempt, retry_after)
            logger.warning(
                "teacher: row %r attempt %d/%d failed (%s); retrying in %.2f s",
                row_id,
                attempt,
                self.max_retries + 1,
                self._redact(failure),
                delay,
            )
            self.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds before retry number `retry` (1-based): the server's `Retry-After`, else full jitter (AWS style),
        which spreads the retries of a whole thread pool instead of sending them back in one burst."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        return self._rng.uniform(0.0, min(self.max_backoff, self.backoff * 2.0 ** min(retry - 1, 60)))

    def _redact(self, text: str) -> str:
        """Removes the key from text that came from outside (an error body may echo request headers)."""
        return text.replace(self._api_key.reveal(), "***") if self._api_key is not None else text

    def _error(self, row_id: str, failure: str, status: int | None, attempts: int) -> TeacherError:
        message = f"Teacher request for row {row_id!r} to {self.url} failed after {attempts} attempt(s): {failure}"
        return TeacherError(self._redact(message), row_id=row_id, status=status, attempts=attempts)


def _transient(reason: object) -> bool:
    """Network failures worth retrying: refused/reset connections, timeouts, DNS; not a bad certificate or URL."""
    return isinstance(reason, (OSError, HTTPException)) and not isinstance(reason, ssl.SSLCertVerificationError)


def _read_quietly(exc: urllib.error.HTTPError) -> bytes:
    """The body of an error response, or b"" when even that fails (the connection may be gone)."""
    try:
        return exc.read()
    except (OSError, HTTPException):
        return b""
    finally:
        exc.close()


def _snippet(body: bytes, limit: int = 300) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (RFC 9110 allows a number of seconds or an HTTP date); `None` when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (email.utils.parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _parse_reply(body: bytes) -> tuple[str, str | None, dict | None] | str:
    """`(text, finish_reason, usage)` from a chat-completions body, or a string saying what is wrong with it."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"body is not JSON: {_snippet(body, 120)!r}"
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return f"no choices in {_snippet(body, 120)!r}"
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return "choices[0] has no message"
    content = message.get("content")
    if isinstance(content, list):  # some servers answer with content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    elif content is not None and not isinstance(content, str):
        return f"choices[0].message.content is a {type(content).__name__}"
    usage = data.get("usage")
    return content or "", choices[0].get("finish_reason"), usage if isinstance(usage, dict) else None
