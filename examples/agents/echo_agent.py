#!/usr/bin/env python3
"""A small, well-behaved external agent for the orchestrator (stdlib only).

It speaks the protocol of docs/agent-protocol.md: it reads one JSON request on stdin and
prints one JSON answer on stdout. For an instruction step it "does" the work by writing a
note (the instruction, the step and the package it was briefed with) to
``agent-notes/<stream>.<step>.md`` in its working directory, measures the note and the
package, and answers with a summary, one piece of claimed evidence and some metrics.
Action steps are not its job: it answers ``failed`` for those, saying so.

Logs go to stderr (stdout carries the answer and nothing else). It exits 0 whenever it
could answer, also when the answer is ``failed``; a crash exits non-zero and the daemon
reports the last stderr line.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any


def log(message: str) -> None:
    print(f"echo-agent: {message}", file=sys.stderr, flush=True)


def answer(
    status: str,
    summary: str,
    evidence: list[dict[str, Any]] | None = None,
    metrics: dict[str, float | str] | None = None,
) -> None:
    document = {
        "protocol": 1,
        "status": status,
        "summary": summary,
        "evidence": evidence or [],
        "metrics": metrics or {},
    }
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def note_for(request: dict[str, Any]) -> str:
    package = request["package"]
    fences = ", ".join(f"{lock}={token}" for lock, token in request["fences"].items())
    return "\n".join(
        [
            f"# {request['stream']} / {request['step']} (attempt {request['attempt']})",
            "",
            f"Instruction: {request['instruction']}",
            f"Agent: {request['agent']} in run {request['run_id']} of plan {request['plan']}",
            f"Fences: {fences or 'none'}",
            f"Deadline: {request['deadline'] or 'none'}",
            f"Package: {package['tokens']}/{package['token_limit']} tokens, "
            f"sha256 {package['sha256']}",
            "",
        ]
    )


def main() -> int:
    started = time.monotonic()
    request = json.load(sys.stdin)
    if request.get("protocol") != 1:
        answer("failed", f"unsupported protocol version {request.get('protocol')!r}")
        return 0
    log(f"step {request['stream']}/{request['step']}, attempt {request['attempt']}")
    if request["instruction"] is None:
        answer("failed", f"echo agent follows instructions only, not action {request['action']}")
        return 0

    package = request["package"]
    digest = hashlib.sha256(package["markdown"].encode()).hexdigest()
    if digest != package["sha256"]:
        answer("failed", "context package arrived damaged (sha256 mismatch)")
        return 0

    note = note_for(request)
    path = Path("agent-notes") / f"{request['stream']}.{request['step']}.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text(note, encoding="utf-8")
    log(f"wrote {path}")

    words = len(request["instruction"].split())
    answer(
        "succeeded",
        f"noted {request['instruction']!r} in {path}",
        evidence=[
            {
                "check": f"note written to {path}",
                "excerpt": note.splitlines()[0],
                "metrics": {"note_bytes": len(note.encode())},
            }
        ],
        metrics={
            "echo.instruction_words": words,
            "echo.package_tokens": package["tokens"],
            "echo.elapsed_ms": round((time.monotonic() - started) * 1000, 3),
            "echo.note": str(path),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
