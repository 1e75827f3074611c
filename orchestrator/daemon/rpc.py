"""JSON-RPC 2.0 messages of the control socket: one JSON value per line.

Requests and responses are pydantic models; every method has a params model (``extra`` keys
forbidden) so a wrong call gets ``-32602`` naming the bad field. Application errors use codes
from 1000 up and carry structured ``data``; expected server conditions (store down, disk
full) use -32000..-32099, mapped from exceptions in one place, :func:`rpc_error_of`.
``-32603`` is kept for bugs. ``docs/protocol.md`` documents every method and code.
"""

from __future__ import annotations

import errno
import math
import sqlite3
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from foundation.errors import CoordinatorUnavailable, OrchestratorError, first_orchestrator_error
from orchestrator.store.base import RunStatus
from orchestrator.store.errors import StoreError, StoreUnavailable

__all__ = [
    "LONG_LINE_METHODS",
    "MAX_PLAN_BYTES",
    "STREAMING_METHODS",
    "AgentsListParams",
    "ErrorCode",
    "EventsSubscribeParams",
    "LocksListParams",
    "RequestId",
    "RpcError",
    "RpcRequest",
    "RunIdParams",
    "RunsListParams",
    "SubmitParams",
    "error_response",
    "id_problem",
    "notification",
    "params_error",
    "result_response",
    "rpc_error_of",
]

RequestId = int | float | str | None

#: Methods that stream notifications before their answer: not allowed in a batch, and
#: ignored as a notification (a client that wants no answer gets no stream either).
STREAMING_METHODS = frozenset({"events.subscribe"})
#: The only methods whose request line may pass the 1 MiB first tier (up to 32 MiB).
LONG_LINE_METHODS = frozenset({"submit"})
#: A plan's text is at most this many bytes of UTF-8.
MAX_PLAN_BYTES = 16 * 1024 * 1024
_INT64 = 2**63
_FLOAT_EXACT = 2**53


class ErrorCode:
    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    PLAN_INVALID = 1001
    RUN_NOT_FOUND = 1002
    SHUTTING_DOWN = 1003
    REQUEST_TOO_LARGE = 1004
    PERMISSION_DENIED = 1005
    CONFIDENCE_TOO_LOW = 1006
    RUN_FINISHED = 1007
    # Expected server conditions (JSON-RPC's implementation-defined server-error range).
    SERVER_ERROR = -32000
    STORE_UNAVAILABLE = -32001
    STORE_FAILED = -32002
    DISK_FULL = -32003
    COORDINATOR_UNAVAILABLE = -32004


class RpcError(Exception):
    """An error to send back as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RpcRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    jsonrpc: Literal["2.0"]
    method: str = Field(min_length=1, max_length=64, strict=True)
    params: dict[str, Any] | list[Any] = Field(default_factory=dict)
    id: Any = None  # checked by id_problem before the model sees it


def id_problem(value: object) -> str | None:
    """Why ``value`` cannot be a request id (string, int64-range number or null), else None."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"id must be a string, a number or null, not {type(value).__name__}"
    if isinstance(value, float):
        # Past 2**53 a float no longer echoes the digits the client sent.
        if not math.isfinite(value) or abs(value) >= _FLOAT_EXACT:
            return "id is out of range: a number id must be an int64 integer or within +-2**53"
    elif not -_INT64 <= value < _INT64:
        return "id is out of range: an integer id must fit a signed 64-bit integer"
    return None


class SubmitParams(_Params):
    plan_text: str
    plan_path: str = Field(default="<submitted plan>", max_length=4096)
    force: bool = False
    #: Which history the min_confidence check rests on (see orchestrator.analysis).
    history: Literal["signature", "plan", "none"] = "signature"

    @field_validator("plan_text")
    @classmethod
    def _plan_size(cls, value: str) -> str:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_PLAN_BYTES:
            raise ValueError(
                f"plan is {size} bytes; at most {MAX_PLAN_BYTES} (16 MiB) of UTF-8 "
                "(fix: split the plan into phases)"
            )
        return value


class RunsListParams(_Params):
    limit: int = Field(default=50, ge=1, le=1000)
    status: list[RunStatus] | None = None
    #: Only runs of this plan id.
    plan: str | None = Field(default=None, max_length=256)
    #: Only runs created at or after this time (ISO 8601; without a zone, UTC).
    since: datetime | None = None


class RunIdParams(_Params):
    run_id: str = Field(min_length=1, max_length=128)


class AgentsListParams(_Params):
    run_id: str | None = None


class LocksListParams(_Params):
    pass


class EventsSubscribeParams(_Params):
    run_id: str = Field(min_length=1, max_length=128)
    from_: Literal["start", "now"] = Field(default="start", alias="from")


def params_error(method: str, exc: ValidationError) -> RpcError:
    """Turn a params validation failure into ``-32602`` naming each bad field."""
    problems = [
        f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
    ]
    return RpcError(
        ErrorCode.INVALID_PARAMS,
        f"invalid params for {method}: " + "; ".join(problems),
        {"problems": problems},
    )


def rpc_error_of(exc: BaseException) -> RpcError | None:
    """The error a client sees for ``exc``, or None when it is a bug (-32603).

    The one place where expected conditions get their codes. Messages come from our own
    error classes, which never carry secrets (store locations are redacted)."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            mapped = rpc_error_of(inner)
            if mapped is not None:
                return mapped
        return None
    if _is_disk_full(exc):
        return RpcError(
            ErrorCode.DISK_FULL,
            f"no space left for the daemon's state or run store ({_where_full(exc)}) "
            "(fix: free space on that disk, then retry)",
        )
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR):
            return RpcError(
                ErrorCode.STORE_UNAVAILABLE,
                f"the SQLite run store cannot answer now ({exc}); retry shortly",
            )
        return None
    found = first_orchestrator_error(exc)
    if isinstance(found, StoreUnavailable):
        return RpcError(ErrorCode.STORE_UNAVAILABLE, str(found))
    if isinstance(found, StoreError):
        return RpcError(ErrorCode.STORE_FAILED, str(found))
    if isinstance(found, CoordinatorUnavailable):
        return RpcError(ErrorCode.COORDINATOR_UNAVAILABLE, str(found))
    if isinstance(found, OrchestratorError):
        return RpcError(ErrorCode.SERVER_ERROR, str(found))
    return None


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or during (a store translates a driver's error
    ``from None``; the original stays in ``__context__``), at most 8 deep."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, SQLite's SQLITE_FULL, or PostgreSQL's disk_full (SQLSTATE 53100)."""
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if getattr(cause, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return True
        if getattr(cause, "sqlstate", None) == "53100":
            return True
    return False


def _where_full(exc: BaseException) -> str:
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.filename:
            return f"{cause.strerror}: {cause.filename}"
        if isinstance(cause, StoreError):
            return f"run store {cause.where}"
    return "disk full"


def result_response(request_id: RequestId, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_response(request_id: RequestId, error: RpcError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def notification(method: str, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}
