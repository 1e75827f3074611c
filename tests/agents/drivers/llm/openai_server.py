"""A scripted OpenAI-compatible Chat Completions server: real HTTP on a free port.

Each request is answered by the next queued fault (an HTTP status with a body: 429, 500,
garbage), or else by ``brain(request) -> assistant message``. Requests are kept (body and
headers) so tests can check what the real client sent.
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

Brain = Callable[[dict[str, Any]], dict[str, Any]]
USAGE = {"prompt_tokens": 100, "completion_tokens": 20}


@dataclass
class Scripted:
    brain: Brain
    faults: deque[tuple[int, bytes]] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def answer(self, request: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
        with self.lock:
            self.requests.append(request)
            self.headers.append(headers)
            if self.faults:
                return self.faults.popleft()
        message = {"role": "assistant", "content": None, **self.brain(request)}
        body = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": request.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                }
            ],
            "usage": {**USAGE, "total_tokens": sum(USAGE.values())},
        }
        return 200, json.dumps(body).encode()


def tool_call(messages: list[dict[str, Any]], name: str, **arguments: Any) -> dict[str, Any]:
    return {
        "tool_calls": [
            {
                "id": f"call_{len(messages)}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ]
    }


def counter_brain(request: dict[str, Any]) -> dict[str, Any]:
    """Read counter.txt, write it + 1; on stale or busy read again; then say done."""
    messages = request["messages"]
    last = messages[-1]
    if last["role"] == "tool":
        content = str(last["content"])
        if content.startswith("[ok] read "):
            n = int(content.split("\n", 1)[1])
            return tool_call(messages, "file_write", path="counter.txt", content=f"{n + 1}\n")
        if content.startswith("[ok]"):
            return {"content": "The counter is bumped."}
    return tool_call(messages, "file_read", path="counter.txt")


@contextmanager
def openai_server(brain: Brain) -> Iterator[Scripted]:
    """Serve ``brain`` on 127.0.0.1 (a free port) for the duration of the block."""
    scripted = Scripted(brain)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            request = json.loads(self.rfile.read(length))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body = scripted.answer(request, headers)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving_http(Handler) as port:
        scripted.base_url = f"http://127.0.0.1:{port}/v1"
        yield scripted
