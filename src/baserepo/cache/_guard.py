"""The cache never fails a repository call: every backend call goes through ``Guard.call``.

Invariant: ``Guard.call`` returns the operation's result or ``FAILED``, never raises (bar
cancellation): each call has a time budget, errors and timeouts are logged (rate-limited),
counted, and fed to the circuit breaker, and an open breaker skips the backend altogether.
Callers treat ``FAILED`` as a miss, a refused fill or a failed invalidation. This is the one
module that catches backend errors.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["FAILED", "BreakerState", "CircuitBreaker", "Guard", "RateLimitedLog"]

logger = logging.getLogger("baserepo.cache")


class _Failed:
    __slots__ = ()

    def __repr__(self) -> str:
        return "FAILED"


FAILED: Final[Any] = _Failed()
"""What ``Guard.call`` returns when the backend could not answer."""


class Guard:
    """Runs backend operations so that none of them can fail the caller.

    Args:
        timeout_seconds: the time budget of one backend call.
        breaker: skips the backend after repeated failures.
        clock: monotonic seconds, for the rate-limited log.
        on_error: told the table of every failed call (statistics).
        backend_name: names the backend in log lines.
    """

    def __init__(
        self,
        timeout_seconds: float,
        breaker: CircuitBreaker,
        clock: Callable[[], float],
        on_error: Callable[[str], None],
        backend_name: Callable[[], str],
    ) -> None:
        self.breaker = breaker
        self._timeout_seconds = timeout_seconds
        self._on_error = on_error
        self._backend_name = backend_name
        self._problems = RateLimitedLog(logger, 30.0, clock)

    async def call(
        self, table: str, operation: Callable[[], Awaitable[Any]], *, force: bool = False
    ) -> Any:
        """``await operation()`` within the time budget; ``FAILED`` on any trouble.
        ``force``: even while the breaker is open (a bump retried before a write returns)."""
        if not self.breaker.allow() and not force:
            return FAILED
        try:
            async with asyncio.timeout(self._timeout_seconds):
                result = await operation()
        except Exception as error:  # the cache must never fail a repository call
            self.breaker.failed()
            self._on_error(table)
            self._problems.warning(
                "cache backend %s failed (%s: %s); treating it as a miss",
                self._backend_name(),
                type(error).__name__,
                error,
            )
            return FAILED
        self.breaker.succeeded()
        return result


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    """Calls go through."""
    OPEN = "open"
    """Calls are skipped (treated as misses) until the reset time has passed."""
    HALF_OPEN = "half_open"
    """One trial call is let through; its outcome closes or re-opens the breaker."""


class CircuitBreaker:
    """Stops calling a backend after ``threshold`` consecutive failures, for ``reset_seconds``.

    A dead Redis would otherwise cost every repository call a full timeout.
    """

    def __init__(self, threshold: int, reset_seconds: float, clock: Callable[[], float]) -> None:
        self._threshold = threshold
        self._reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        # When the one trial call of the half-open state was let through. A trial whose
        # caller was cancelled never reports back; it is given up after reset_seconds, or
        # no call would ever be allowed again.
        self._trial_started_at: float | None = None

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._reset_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN:
            now = self._clock()
            started = self._trial_started_at
            if started is None or now - started >= self._reset_seconds:
                self._trial_started_at = now
                return True
        return False

    def succeeded(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_started_at = None

    def failed(self) -> None:
        self._trial_started_at = None
        self._failures += 1
        if self._opened_at is not None or self._failures >= self._threshold:
            self._opened_at = self._clock()


class RateLimitedLog:
    """Logs the first problem, then at most one line per ``every_seconds`` with a count."""

    def __init__(
        self, logger: logging.Logger, every_seconds: float, clock: Callable[[], float]
    ) -> None:
        self._logger = logger
        self._every = every_seconds
        self._clock = clock
        self._last: float | None = None
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self._every:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} similar messages suppressed)"
        self._suppressed = 0
        self._last = now
        self._logger.warning(message, *args)
