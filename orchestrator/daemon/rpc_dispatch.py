"""One request line in, at most one answer line out: JSON-RPC 2.0 decoding and dispatch.

:func:`answer_line` never raises for anything a client can send: invalid UTF-8 or JSON,
nesting past :data:`MAX_DEPTH`, ids that could not be echoed, wrong types, batches, a
handler's failure, an answer that cannot be encoded. Each becomes the JSON-RPC error for it
(or, for a notification, nothing at all). Only cancellation passes through.

- A request without an ``id`` member is a notification: it is carried out, and never
  answered, not even with an error. A request that is not valid (not an object, no
  ``jsonrpc: "2.0"``, a bad ``id``) is answered with ``-32600`` and ``id: null``.
- A batch (a JSON array) gets an array of the answers to its non-notification entries, in
  order; none at all if every entry is a notification; ``[]`` gets one ``-32600``. Entries
  run one after the other; at most :data:`MAX_BATCH` per batch; streaming methods
  (:data:`~orchestrator.daemon.rpc.STREAMING_METHODS`) are refused inside a batch.
- Params are named (an object); positional params (an array) get ``-32602``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import orjson
import structlog
from pydantic import ValidationError

from orchestrator.daemon.rpc import (
    LONG_LINE_METHODS,
    STREAMING_METHODS,
    ErrorCode,
    RequestId,
    RpcError,
    RpcRequest,
    error_response,
    id_problem,
    result_response,
    rpc_error_of,
)

__all__ = ["MAX_BATCH", "MAX_DEPTH", "Call", "answer_line", "encode"]

_log = structlog.get_logger("orchestrator.control")

#: Deepest nesting of arrays and objects a request line may have.
MAX_DEPTH = 64
#: Most entries in one batch.
MAX_BATCH = 1000
#: Longer lines are decoded in a worker thread, so the event loop keeps serving others.
_DECODE_IN_THREAD_BYTES = 256 * 1024

#: Carries out one request: ``(method, params) -> result``; raises for errors.
Call = Callable[[str, dict[str, Any]], Awaitable[Any]]


def _error(request_id: RequestId, code: int, message: str) -> dict[str, Any]:
    return error_response(request_id, RpcError(code, message))


def _depth_exceeds(value: object, limit: int) -> bool:
    """Whether arrays/objects in ``value`` nest deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def encode(message: dict[str, Any]) -> bytes:
    """``message`` as JSON; an answer that cannot be encoded becomes ``-32603`` (a bug)."""
    try:
        return orjson.dumps(message, default=str)
    except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
        _log.error("rpc_answer_encoding_failed", error=str(exc), id=repr(message.get("id"))[:80])
        safe_id = message.get("id") if id_problem(message.get("id")) is None else None
        return orjson.dumps(
            _error(
                safe_id, ErrorCode.INTERNAL_ERROR, "internal error: the answer could not be encoded"
            )
        )


def _decode(line: bytes) -> tuple[Any, bool]:
    """The line's JSON value (orjson.JSONDecodeError if none) and whether it nests too deep."""
    raw = orjson.loads(line)
    return raw, _depth_exceeds(raw, MAX_DEPTH)


async def answer_line(line: bytes, call: Call, *, passed_limit: int = 0) -> bytes | None:
    """The answer to one request line (without the newline), or None when none is due.
    ``passed_limit``: the line is longer than this first-tier limit (bytes), which only
    :data:`~orchestrator.daemon.rpc.LONG_LINE_METHODS` may pass (one request, not a batch)."""
    try:
        if len(line) > _DECODE_IN_THREAD_BYTES:  # a 16 MiB plan decodes for ~0.1 s
            raw, too_deep = await anyio.to_thread.run_sync(_decode, line)
        else:
            raw, too_deep = _decode(line)
    except orjson.JSONDecodeError as exc:
        return encode(_error(None, ErrorCode.PARSE_ERROR, f"invalid JSON: {exc}"))
    if too_deep:
        rid = raw.get("id") if isinstance(raw, dict) else None
        return encode(
            _error(
                rid if id_problem(rid) is None else None,
                ErrorCode.INVALID_REQUEST,
                f"request nests arrays/objects deeper than {MAX_DEPTH} levels",
            )
        )
    if passed_limit and not (isinstance(raw, dict) and raw.get("method") in LONG_LINE_METHODS):
        rid = raw.get("id") if isinstance(raw, dict) else None
        return encode(
            error_response(
                rid if id_problem(rid) is None else None,
                RpcError(
                    ErrorCode.REQUEST_TOO_LARGE,
                    f"request line longer than {passed_limit} bytes; only "
                    f"{', '.join(sorted(LONG_LINE_METHODS))} may be longer (fix: split a batch)",
                    {"max_line_bytes": passed_limit},
                ),
            )
        )
    if not isinstance(raw, list):
        reply = await _answer_one(raw, call, in_batch=False)
        return None if reply is None else encode(reply)
    if not raw:
        return encode(
            _error(None, ErrorCode.INVALID_REQUEST, "empty batch: send at least one request")
        )
    if len(raw) > MAX_BATCH:
        return encode(
            _error(
                None,
                ErrorCode.INVALID_REQUEST,
                f"batch of {len(raw)} requests; at most {MAX_BATCH} (fix: split it)",
            )
        )
    parts = [encode(r) for entry in raw if (r := await _answer_one(entry, call, in_batch=True))]
    return b"[" + b",".join(parts) + b"]" if parts else None


async def _answer_one(entry: object, call: Call, *, in_batch: bool) -> dict[str, Any] | None:
    if not isinstance(entry, dict):
        return _error(
            None,
            ErrorCode.INVALID_REQUEST,
            f"a request must be a JSON object, not {type(entry).__name__}",
        )
    rid = entry.get("id")
    problem = id_problem(rid)
    if problem is not None:
        return _error(None, ErrorCode.INVALID_REQUEST, f"not a JSON-RPC 2.0 request: {problem}")
    if not isinstance(entry.get("params", {}), dict | list):
        return _error(
            rid,
            ErrorCode.INVALID_REQUEST,
            "not a JSON-RPC 2.0 request: params must be an object (or an array)",
        )
    try:
        request = RpcRequest.model_validate(entry)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()
        )
        return _error(rid, ErrorCode.INVALID_REQUEST, f"not a JSON-RPC 2.0 request: {problems}")
    is_notification = "id" not in entry
    method = request.method
    if is_notification and method in STREAMING_METHODS:
        _log.debug("rpc_notification_ignored", method=method, reason="streams need an id")
        return None
    try:
        if in_batch and method in STREAMING_METHODS:
            raise RpcError(
                ErrorCode.INVALID_REQUEST,
                f"{method} streams notifications and cannot be part of a batch; send it alone",
            )
        if isinstance(request.params, list):
            raise RpcError(
                ErrorCode.INVALID_PARAMS,
                f"invalid params for {method}: params must be an object of named params; "
                "positional params (an array) are not supported",
            )
        result = await call(method, request.params)
    except Exception as exc:  # the boundary: whatever a handler raises becomes an answer
        error = rpc_error_of(exc)
        if error is None:
            _log.exception("rpc_handler_crashed", method=method)
            error = RpcError(
                ErrorCode.INTERNAL_ERROR,
                f"internal error in {method} (a bug; the daemon logged it as rpc_handler_crashed)",
            )
        return None if is_notification else error_response(rid, error)
    return None if is_notification else result_response(rid, result)
