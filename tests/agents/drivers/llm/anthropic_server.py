"""A scripted Anthropic Messages API server: real HTTP on a free port, ``POST /v1/messages``.

Each request is answered by the next queued fault (an HTTP status with a body and headers:
429, 500, 529, garbage), or else by ``brain(request) -> content blocks`` (``text`` and
``tool_use`` blocks, as the API returns them), wrapped into a ``message`` with ``stop_reason``
``tool_use`` or ``end_turn`` and ``usage.input_tokens/output_tokens``. The output tokens are
capped at the request's ``max_tokens`` (``stop_reason: max_tokens`` then), as the API does.
A request with ``stream: true`` is answered with the API's server-sent events. Requests are
kept (body and lower-cased headers) so tests can check what the real client sent. With a
``key``, a request must carry it (``x-api-key`` or ``authorization: Bearer``) or gets a 401
``authentication_error``.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.helpers import serving_http

Brain = Callable[[dict[str, Any]], list[dict[str, Any]]]
#: What each answer reports spending unless the test says otherwise.
INPUT_TOKENS = 120
OUTPUT_TOKENS = 30


def error_body(kind: str, message: str) -> bytes:
    """The Messages API's error body."""
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


@dataclass
class Fault:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Scripted:
    brain: Brain
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    billed: list[tuple[int, int]] = field(default_factory=list)  # (input, output) answered
    key: str | None = None
    input_tokens: int = INPUT_TOKENS
    output_tokens: int = OUTPUT_TOKENS
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def message(self, request: dict[str, Any]) -> dict[str, Any]:
        """The ``message`` answering ``request`` (the brain's blocks, usage, stop reason)."""
        content = self.brain(request)
        output = self.output_tokens
        stop = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
        if output > request["max_tokens"]:
            output, stop = request["max_tokens"], "max_tokens"
        with self.lock:
            self.billed.append((self.input_tokens, output))
        return {
            "id": f"msg_{len(self.requests):04d}",
            "type": "message",
            "role": "assistant",
            "model": request["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": output},
        }

    def answer(self, path: str, raw: bytes, headers: dict[str, str]) -> Fault:
        """The answer to one request (a stream's events when it asked for one)."""
        try:
            request = json.loads(raw)
        except ValueError:
            return Fault(400, error_body("invalid_request_error", "body is not JSON"))
        with self.lock:
            self.requests.append(request)
            self.headers.append(headers)
            self.paths.append(path)
            if self.faults:
                return self.faults.popleft()
        if self.key is not None and self.key not in (
            headers.get("x-api-key"),
            headers.get("authorization", "").removeprefix("Bearer "),
        ):
            return Fault(401, error_body("authentication_error", "invalid x-api-key"))
        if path != "/v1/messages":
            return Fault(404, error_body("not_found_error", f"no route {path}"))
        message = self.message(request)
        if request.get("stream"):
            return Fault(200, _events(message), {"content-type": "text/event-stream"})
        return Fault(200, json.dumps(message).encode())


def _events(message: dict[str, Any]) -> bytes:
    """``message`` as the API streams it: message_start, each block's start, delta and
    stop, message_delta (stop reason, output tokens), message_stop."""

    def event(kind: str, data: dict[str, Any]) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    out = [event("message_start", {"message": start})]
    for i, block in enumerate(message["content"]):
        if block["type"] == "text":
            empty = {"type": "text", "text": ""}
            out.append(event("content_block_start", {"index": i, "content_block": empty}))
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            empty = {**block, "input": {}}
            out.append(event("content_block_start", {"index": i, "content_block": empty}))
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        out.append(event("content_block_delta", {"index": i, "delta": delta}))
        out.append(event("content_block_stop", {"index": i}))
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    final = {"output_tokens": usage["output_tokens"]}
    out.append(event("message_delta", {"delta": stop, "usage": final}))
    out.append(event("message_stop", {}))
    return "".join(out).encode()


def tool_use(request: dict[str, Any], name: str, **arguments: Any) -> list[dict[str, Any]]:
    """One ``tool_use`` block calling ``name`` (its id unique within the conversation)."""
    n = len(request["messages"])
    return [{"type": "tool_use", "id": f"toolu_{n:04d}", "name": name, "input": arguments}]


def text(answer: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": answer}]


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``tool_result`` blocks of the request's last (user) message."""
    content = request["messages"][-1]["content"]
    if isinstance(content, str):
        return []
    return [b for b in content if b.get("type") == "tool_result"]


def result_text(block: dict[str, Any]) -> str:
    """A ``tool_result``'s content as text (a string, or a list of text blocks)."""
    content = block.get("content", "")
    if isinstance(content, str):
        return content
    return "".join(c.get("text", "") for c in content)


def counter_brain(request: dict[str, Any]) -> list[dict[str, Any]]:
    """Read counter.txt, write it + 1; on stale or busy read again; then say done."""
    results = tool_results(request)
    if results:
        content = result_text(results[-1])
        if content.startswith("[ok] read "):
            n = int(content.split("\n", 1)[1])
            return tool_use(request, "file_write", path="counter.txt", content=f"{n + 1}\n")
        if content.startswith("[ok]"):
            return text("The counter is bumped.")
    return tool_use(request, "file_read", path="counter.txt")


@contextmanager
def anthropic_server(brain: Brain, *, key: str | None = None) -> Iterator[Scripted]:
    """Serve ``brain`` on 127.0.0.1 (a free port) for the duration of the block;
    ``base_url`` is the API's root (the client adds ``/v1/messages``). With ``key``, a
    request without it (``x-api-key``, or ``authorization: Bearer``) gets a 401."""
    scripted = Scripted(brain, key=key)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            fault = scripted.answer(self.path, raw, headers)
            self.send_response(fault.status)
            kind = fault.headers.get("content-type", "application/json")
            self.send_header("content-type", kind)
            for name, value in fault.headers.items():
                if name != "content-type":
                    self.send_header(name, value)
            self.send_header("content-length", str(len(fault.body)))
            self.send_header("request-id", f"req_{len(scripted.requests):04d}")
            self.end_headers()
            self.wfile.write(fault.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving_http(Handler) as port:
        scripted.base_url = f"http://127.0.0.1:{port}"
        yield scripted
