"""The circuit breaker that keeps a failing or slow reranker out of the query path."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive failures -> half-open after
    ``cooldown_s`` (one trial call) -> closed on its success, open again on failure.

    Args:
        threshold: consecutive failures (budget breaches or errors) that open it.
        cooldown_s: how long it stays open before admitting a trial call.
        clock: monotonic clock in seconds (injectable for tests).
        on_change: called with the new state name on every transition.
    """

    def __init__(self, threshold: int, cooldown_s: float, *, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str], None] = lambda state: None) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._opened_total = 0
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        with self._lock:
            return self._state

    def _set(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._on_change(state)

    def allow(self) -> bool:
        """May a call use the cross-encoder now? Admits one trial after the cooldown."""
        with self._lock:
            if self._state == "open" and self._clock() - self._opened_at >= self.cooldown_s:
                self._set("half_open")
            if self._state == "closed":
                return True
            if self._state == "half_open" and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        """A call finished within budget. Closes a half-open breaker."""
        with self._lock:
            if self._state == "open":
                return  # a straggler admitted before opening; the cooldown still runs
            self._failures = 0
            self._trial_in_flight = False
            self._set("closed")

    def record_failure(self) -> None:
        """A call breached its budget or failed. May open the breaker."""
        with self._lock:
            self._failures += 1
            if self._state == "half_open" or (self._state == "closed" and self._failures >= self.threshold):
                self._opened_at = self._clock()
                self._opened_total += 1
                self._trial_in_flight = False
                self._set("open")

    def snapshot(self) -> dict:
        """State, consecutive failures, times opened, threshold and cooldown."""
        with self._lock:
            return {"state": self._state, "consecutive_failures": self._failures,
                    "opened_total": self._opened_total, "threshold": self.threshold,
                    "cooldown_s": self.cooldown_s}
