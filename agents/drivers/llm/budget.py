"""Token budgets enforced per model request: a run's ``token_budget`` (shared by its LLM
steps) and a step attempt's ``max_tokens``.

Before each request, :class:`MeteredModel` reserves from the run's :class:`TokenBudget` an
estimate of the request's input (what the step's previous request sent and received, which
the next one sends again: a lower bound) plus an output cap, and sends the cap as the
request's ``max_tokens``; when the answer is back it settles the reservation with the usage
the provider reported. Reserving and settling are synchronous (no await between checking
and taking), so steps running at once cannot both take the same tokens.

The guarantee: let ``B`` be the budget and ``O`` the requests in flight when the last request
was granted. Each granted request fitted in ``B`` less what was spent and reserved, and its
output is at most its cap when the provider honours ``max_tokens``, so the run spends at most
``B + sum(input_j - estimate_j for j in O)``: the input tokens each in-flight request sent
beyond its estimate (its new tool results; the whole prompt for a step's first request).
Only input can overshoot, at most one request per running step, and never output.

A request waits while other steps' reservations hold what it wants (a settle wakes it); a
request gets less than it wants only when nothing else is held, so an answer is cut short by
the budget only when the budget is really running out; a request that cannot get one
output token beyond its estimate ends the step failed.
"""

from __future__ import annotations

import anyio
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings

from agents.base import Usage
from foundation.errors import ActionFailed

__all__ = ["REQUEST_OUTPUT_CAP", "MeteredModel", "TokenBudget"]

#: The largest ``max_tokens`` a request is sent with while a budget applies, so one step's
#: request cannot hold the whole run budget while the others wait.
REQUEST_OUTPUT_CAP = 8192


class TokenBudget:
    """``total`` input + output tokens for a run (None: unlimited): what was ``spent`` and
    what in-flight requests hold ``reserved``."""

    __slots__ = ("_freed", "reserved", "spent", "total")

    def __init__(self, total: int | None, *, spent: int = 0) -> None:
        self.total = total
        self.spent = spent  # before this process: a resumed run's earlier steps
        self.reserved = 0
        self._freed: anyio.Event | None = None  # made by the first waiter (needs a loop)

    def remaining(self) -> int | None:
        """Tokens not spent (None: unlimited; 0 or less: spent)."""
        return None if self.total is None else self.total - self.spent

    async def reserve(self, floor: int, want: int) -> int:
        """Reserve ``want`` tokens (``want`` > ``floor``); returns what was reserved. While
        other requests hold reservations and less than ``want`` is free, waits for them to
        settle (what they did not spend comes back); when nothing is held, takes what is
        left if that is more than ``floor``, else returns 0: the budget is spent."""
        if self.total is None:
            return want
        while True:
            available = self.total - self.spent - self.reserved
            if available >= want or (self.reserved == 0 and available > floor):
                granted = min(available, want)
                self.reserved += granted
                return granted
            if self.reserved == 0:
                return 0
            if self._freed is None:
                self._freed = anyio.Event()
            await self._freed.wait()

    def settle(self, reserved: int, spent: int) -> None:
        """Release a reservation of ``reserved`` tokens, counting ``spent`` as spent; wakes
        the requests waiting for tokens."""
        if self.total is None:
            self.spent += spent
            return
        self.reserved -= reserved
        self.spent += spent
        if self._freed is not None:
            self._freed.set()
            self._freed = None


class MeteredModel(WrapperModel):
    """Sends each request of one step attempt within the run's budget and the attempt's
    ``step_limit`` (see the module docstring); raises ActionFailed with the reason when a
    request cannot be sent, or its answer was cut short by a budget's output cap."""

    def __init__(self, wrapped: Model, budget: TokenBudget, step_limit: int | None) -> None:
        super().__init__(wrapped)
        self.budget = budget
        self.step_limit = step_limit
        self.usage = Usage()
        self._context = 0  # the previous request's input + output: the next one's lower bound

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        if self.budget.total is None and self.step_limit is None:
            response = await self.wrapped.request(
                messages, model_settings, model_request_parameters
            )
            self._count(response)
            self.budget.settle(0, self._context)
            return response
        floor = self._context
        want = floor + REQUEST_OUTPUT_CAP
        if self.step_limit is not None:
            step_left = self.step_limit - self.used
            if step_left <= floor:
                raise ActionFailed("llm", self._step_reason(step_left))
            want = min(want, step_left)
        reserved = await self.budget.reserve(floor, want)
        if reserved == 0:
            raise ActionFailed("llm", self._run_reason())
        cap = reserved - floor
        settings: ModelSettings = {**(model_settings or {}), "max_tokens": cap}
        # A request cancelled or timed out in flight may have been billed for its input
        # and any output so far, which nobody will report: it is charged its whole
        # reservation. One refused with an error answer was not billed.
        spent = reserved
        try:
            response = await self.wrapped.request(messages, settings, model_request_parameters)
            spent = response.usage.input_tokens + response.usage.output_tokens
        except Exception as exc:
            if not isinstance(exc, TimeoutError):
                spent = 0
            raise
        finally:
            self.budget.settle(reserved, spent)
        self._count(response)
        if response.finish_reason == "length" and cap < REQUEST_OUTPUT_CAP:
            cut = f"the answer was cut at its {cap}-token output cap"
            if reserved < want:
                left = max(self.budget.remaining() or 0, 0)
                raise ActionFailed(
                    "llm", f"the run's token_budget ran out ({left} tokens were left): {cut}"
                )
            raise ActionFailed("llm", f"max_tokens ({self.step_limit}) reached: {cut}")
        return response

    @property
    def used(self) -> int:
        """Input + output tokens of the attempt's answered requests so far."""
        return self.usage.input_tokens + self.usage.output_tokens

    def _count(self, response: ModelResponse) -> None:
        got = Usage(response.usage.input_tokens, response.usage.output_tokens, 1)
        self._context = got.input_tokens + got.output_tokens
        self.usage = self.usage + got

    def _step_reason(self, left: int) -> str:
        return (
            f"max_tokens ({self.step_limit}) reached: {self.used} tokens used, the next "
            f"request would send at least {self._context} with {max(left, 0)} left"
        )

    def _run_reason(self) -> str:
        if self.used == 0:
            return "the run's token_budget is spent"
        left = self.budget.remaining() or 0
        return (
            f"the run's token_budget ran out ({max(left, 0)} tokens were left): the next "
            f"request would send at least {self._context}"
        )
