"""Request counters of one simulated server, for tests and benchmarks to assert on."""

from __future__ import annotations

import threading
from typing import Any


class ServerStats:
    """Thread-safe request counters of one server (admin requests are not counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._by_status: dict[int, int] = {}
            self._by_kind: dict[str, int] = {}
            self._faults: dict[str, int] = {}
            self._by_key: dict[str, dict[str, int]] = {}

    def record(self, kind: str, status: int) -> None:
        with self._lock:
            self._total += 1
            self._by_status[status] = self._by_status.get(status, 0) + 1
            self._by_kind[kind] = self._by_kind.get(kind, 0) + 1

    def record_key(self, fingerprint: str, status: int, *, rejected: bool = False) -> None:
        """One answer to a request with this token (by fingerprint): requests, 429s, and
        whether the token itself was refused."""
        with self._lock:
            counts = self._by_key.setdefault(
                fingerprint, {"requests": 0, "throttled": 0, "rejected": 0}
            )
            counts["requests"] += 1
            counts["throttled"] += status == 429
            counts["rejected"] += rejected

    @property
    def by_key(self) -> dict[str, dict[str, int]]:
        """Token fingerprint -> {requests, throttled (429), rejected (403)}."""
        with self._lock:
            return {fp: dict(counts) for fp, counts in self._by_key.items()}

    def record_fault(self, name: str) -> None:
        with self._lock:
            self._faults[name] = self._faults.get(name, 0) + 1

    @property
    def requests_total(self) -> int:
        with self._lock:
            return self._total

    @property
    def by_status(self) -> dict[int, int]:
        with self._lock:
            return dict(self._by_status)

    @property
    def by_kind(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_kind)

    @property
    def throttled(self) -> int:
        """429 answers served (rate limiter and scripted)."""
        with self._lock:
            return self._by_status.get(429, 0)

    @property
    def faults_injected(self) -> dict[str, int]:
        with self._lock:
            return dict(self._faults)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests_total": self._total,
                "by_status": {str(k): v for k, v in sorted(self._by_status.items())},
                "throttled": self._by_status.get(429, 0),
                "by_kind": dict(sorted(self._by_kind.items())),
                "faults_injected": dict(sorted(self._faults.items())),
                "by_key": {fp: dict(c) for fp, c in sorted(self._by_key.items())},
            }
