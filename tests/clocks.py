"""A clock the tests move by hand, injected as ``clock=`` / ``wall_clock=`` so TTLs, breaker
resets and warm intervals pass without sleeping."""


class FakeClock:
    """Seconds that move only when told to (monotonic or wall time, as injected)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
