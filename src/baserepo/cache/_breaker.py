"""A circuit breaker and a rate-limited logger for cache backend trouble."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker", "RateLimitedLog"]


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
