"""Raw bytes to a real control socket, and everything it answered before a sentinel request.

A connection's requests are answered in order, so sending ``payload`` and then a ``health``
request with id ``"sentinel"`` tells without any timing whether ``payload`` got no answer
(the sentinel's answer comes first), one, or several.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

SENTINEL = b'{"jsonrpc": "2.0", "id": "sentinel", "method": "health"}\n'


def exchange(socket_path: Path, payload: bytes, *, timeout_s: float = 60) -> list[Any]:
    """Send ``payload`` (a newline is added) and the sentinel; return the answers before the
    sentinel's. Raises ConnectionError if the daemon closed the connection first."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(socket_path))
        sock.sendall(payload + b"\n" + SENTINEL)
        answers: list[Any] = []
        buffer = b""
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"closed by the daemon after {answers!r}")
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                answer = json.loads(line)
                if isinstance(answer, dict) and answer.get("id") == "sentinel":
                    assert answer["result"]["status"] in ("ok", "draining"), answer
                    return answers
                answers.append(answer)


def shape(answer: Any) -> Any:
    """An answer reduced to what a test compares: ``("result", id)`` or ``("error", id,
    code)``; a batch answer becomes a list of those."""
    if isinstance(answer, list):
        return [shape(a) for a in answer]
    assert answer.get("jsonrpc") == "2.0", answer
    if "error" in answer:
        assert "result" not in answer, answer
        return ("error", answer["id"], answer["error"]["code"])
    return ("result", answer["id"])
