"""The pydantic-ai model of an agent's ``driver: {llm: ...}``, with bounded retries.

:func:`build_model` makes the provider's model (``openai``: Chat Completions against
``base_url``; ``anthropic``: the Messages API under ``base_url``'s root, see
:func:`anthropic_root`) with the API key read from the variable named
by ``api_key_env``. The key goes to the provider's client and nowhere else: every message
that leaves :class:`RetryingModel` is scrubbed of it.

:class:`RetryingModel` retries a failed request (connection refused, timeout, 429, 5xx, a
response that is not what the API promises) ``retries`` times with exponential backoff from
``retry_backoff`` (or the provider's ``retry-after``), then raises
:class:`~foundation.errors.ActionFailed` with the provider's message. The SDKs' own retries
are turned off (``ModelSettings(max_retries=0)``, which pydantic-ai forwards to the openai and
anthropic clients; pydantic-ai retries no request itself), so the budget is this one for both
providers. Refusals that waiting cannot fix (401, 400, 404) are not retried.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import anyio
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelHTTPError,
    ModelQuotaExceededError,
    ModelRequestRejectedError,
    UnexpectedModelBehavior,
)
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings

from foundation.errors import ActionFailed
from foundation.secrets import scrub
from streams.model import LlmSpec

__all__ = [
    "RetryingModel",
    "anthropic_root",
    "api_key",
    "build_model",
    "describe",
    "model_failed",
]

_RETRY_AFTER_MAX_S = 60.0
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def model_failed(reason: str) -> ActionFailed:
    """The model's requests failed past the retries (the provider's message, key scrubbed)."""
    return ActionFailed("llm", reason)


def api_key(spec: LlmSpec, env: Mapping[str, str]) -> str | None:
    """The API key from the variable ``spec.api_key_env`` names (the step's environment
    first, then the daemon's); None when no name is given. Raises ActionFailed when
    the named variable is unset (naming the variable, never a value)."""
    if spec.api_key_env is None:
        return None
    key = env.get(spec.api_key_env) or os.environ.get(spec.api_key_env)
    if not key:
        raise model_failed(f"the API key variable {spec.api_key_env} is not set")
    return key


def build_model(spec: LlmSpec, key: str | None) -> Model:
    """The provider's pydantic-ai model for ``spec`` (its SDK retries off: see the module)."""
    settings = ModelSettings(max_retries=0, timeout=spec.request_timeout)
    if spec.provider == "openai":
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        # Local servers (Ollama, llama.cpp) need no key, but the client insists on one.
        provider = OpenAIProvider(base_url=spec.base_url, api_key=key or "no-key")
        return OpenAIChatModel(spec.model, provider=provider, settings=settings)
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    aprovider = AnthropicProvider(api_key=key or "no-key", base_url=anthropic_root(spec.base_url))
    return AnthropicModel(spec.model, provider=aprovider, settings=settings)


def anthropic_root(base_url: str | None) -> str | None:
    """The Messages API's root for ``base_url``: the anthropic client adds ``/v1/messages``
    itself, so a URL written the OpenAI way (``.../v1``) loses its ``/v1``."""
    if base_url is None:
        return None
    root = base_url.rstrip("/")
    return root.removesuffix("/v1") if root.endswith("/v1") else root


def _retryable(exc: Exception) -> bool:
    """Whether waiting may help: a retryable HTTP status, a connection failure, or an answer
    that broke the API (not JSON, not the schema); not a refusal or an exhausted quota."""
    if isinstance(exc, ModelHTTPError):
        return exc.status_code in _RETRYABLE_STATUS
    return not isinstance(exc, ModelRequestRejectedError | ModelQuotaExceededError)


def describe(exc: BaseException) -> str:
    """The provider's message for ``exc`` (with its HTTP status when it had one)."""
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if not isinstance(exc, ModelAPIError | UnexpectedModelBehavior):
        message = f"a malformed answer ({type(exc).__name__}: {message})"
    return f"HTTP {status}: {message}" if status else str(message)


class RetryingModel(WrapperModel):
    """Retries failed requests of the wrapped model (see the module docstring); counts the
    failed attempts in :attr:`failed_attempts`."""

    def __init__(
        self, wrapped: Model, *, retries: int, backoff_s: float, secret: str | None
    ) -> None:
        super().__init__(wrapped)
        self.retries = retries
        self.backoff_s = backoff_s
        self.failed_attempts = 0
        self._secrets = [secret] if secret else []

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        attempt = 0
        while True:
            try:
                return await self.wrapped.request(
                    messages, model_settings, model_request_parameters
                )
            # The last four: a response shaped unlike the API's (e.g. `"choices": 7`) can
            # break the client's parsing with a plain TypeError; that is garbage too.
            except (
                ModelAPIError,
                UnexpectedModelBehavior,
                TypeError,
                KeyError,
                ValueError,
                AttributeError,
            ) as exc:
                self.failed_attempts += 1
                reason = scrub(describe(exc), self._secrets)
                if not _retryable(exc):
                    raise model_failed(f"the model refused the request: {reason}") from None
                if attempt >= self.retries:
                    raise model_failed(
                        f"the model failed {attempt + 1} time(s); last: {reason}"
                    ) from None
                after = getattr(exc, "retry_after", None)
                delay = self.backoff_s * 2**attempt
                if isinstance(after, int | float) and after > 0:
                    delay = min(float(after), _RETRY_AFTER_MAX_S)
                attempt += 1
                await anyio.sleep(delay)
