"""The simulator's clock: simulated UTC time that tests move by hand."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


class SimClock:
    """Simulated UTC time. Frozen: moves only by ``advance``/``set``; else follows wall time."""

    def __init__(self, start: datetime | None = None, *, frozen: bool = True) -> None:
        start = start or DEFAULT_START
        if start.tzinfo is None:
            raise ValueError("start_time must be timezone-aware (UTC)")
        self._lock = threading.Lock()
        self._frozen = frozen
        self._base = start.astimezone(UTC)
        self._mono = time.monotonic()

    @property
    def frozen(self) -> bool:
        return self._frozen

    def now(self) -> datetime:
        with self._lock:
            if self._frozen:
                return self._base
            return self._base + timedelta(seconds=time.monotonic() - self._mono)

    def advance(self, delta: timedelta | float) -> datetime:
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=float(delta))
        with self._lock:
            self._base += delta
            return (
                self._base
                if self._frozen
                else self._base + timedelta(seconds=time.monotonic() - self._mono)
            )

    def set(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            raise ValueError("the clock needs a timezone-aware time (UTC)")
        with self._lock:
            self._base = when.astimezone(UTC)
            self._mono = time.monotonic()
            return self._base
