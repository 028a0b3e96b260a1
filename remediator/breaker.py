"""A small per-host circuit breaker for the http actions (closed -> open -> half-open)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BreakerOpen", "Breakers", "CircuitBreaker"]


class BreakerOpen(RuntimeError):
    """The breaker for this host is open: the call was not made."""


@dataclass
class CircuitBreaker:
    name: str
    failure_threshold: int = 5
    reset_timeout: float = 30.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    on_change: Callable[[str, int], None] | None = field(default=None, repr=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.reset_timeout:
            return "half_open"
        return "open"

    def before_call(self) -> None:
        if self.state == "open":
            raise BreakerOpen(f"circuit breaker for {self.name} is open")

    def record(self, ok: bool) -> None:
        if ok:
            self.failures = 0
            self.opened_at = None
        else:
            self.failures += 1
            if self.failures >= self.failure_threshold or self.opened_at is not None:
                self.opened_at = self.clock()
        if self.on_change:
            self.on_change(self.name, {"closed": 0, "open": 1, "half_open": 2}[self.state])


class Breakers:
    def __init__(self, on_change: Callable[[str, int], None] | None = None,
                 failure_threshold: int = 5, reset_timeout: float = 30.0) -> None:
        self._by_host: dict[str, CircuitBreaker] = {}
        self._on_change = on_change
        self._threshold = failure_threshold
        self._reset = reset_timeout

    def get(self, host: str) -> CircuitBreaker:
        if host not in self._by_host:
            self._by_host[host] = CircuitBreaker(host, self._threshold, self._reset,
                                                 on_change=self._on_change)
            if self._on_change:
                self._on_change(host, 0)
        return self._by_host[host]
