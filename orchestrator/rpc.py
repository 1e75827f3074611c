"""JSON-RPC 2.0 messages of the control socket: one JSON object per line.

Requests and responses are pydantic models; every method has a params model (``extra`` keys
forbidden) so a wrong call gets ``-32602`` naming the bad field. Application errors use codes
from 1000 up and carry structured ``data``. ``docs/protocol.md`` documents every method.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "AgentsListParams",
    "ErrorCode",
    "EventsSubscribeParams",
    "LocksListParams",
    "RpcError",
    "RpcRequest",
    "RunIdParams",
    "RunsListParams",
    "SubmitParams",
    "error_response",
    "notification",
    "params_error",
    "result_response",
]

RequestId = int | str | None


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
    method: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    id: RequestId = None


class SubmitParams(_Params):
    plan_text: str = Field(max_length=16 * 1024 * 1024)
    plan_path: str = Field(default="<submitted plan>", max_length=4096)
    force: bool = False
    #: Which history the min_confidence check rests on (see orchestrator.analysis).
    history: Literal["signature", "plan", "none"] = "signature"


class RunsListParams(_Params):
    limit: int = Field(default=50, ge=1, le=1000)
    status: list[str] | None = None


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


def result_response(request_id: RequestId, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_response(request_id: RequestId, error: RpcError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def notification(method: str, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}
