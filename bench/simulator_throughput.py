"""Benchmark: what the simulated API costs per request when it serves 1,000 clans.

``bench/scale.py`` polls 1,000 clans an hour through one simulator at 8 keys x 10 req/s
(about 80 req/s, 8 requests in flight). This measures whether the simulator keeps up,
on its own, in a process of its own (``clash-pipeline simulate-api``, frozen clock,
default activity), driven over HTTP by 8 client threads:

* cycle 0 (a fresh world): every clan's ``/clans/{tag}`` (the first request of a clan
  draws its statics and war history), ``/members``, ``/currentwar``, then every member's
  ``/players/{tag}`` (their first profile);
* cycle 1 (one simulated hour later): the same kinds one after another, players only
  where a planner would ask (a new member, or a member-list field changed: trophies,
  donations given or received, XP level, town hall, builder base trophies, league or
  tier, role);
* cycle 2 (one more hour): each clan's whole poll as one task (clan, members, current
  war, then its changed members' profiles), 8 at a time: the mixed load.

Per kind it prints the server's CPU milliseconds per request (``psutil``, the server
process only, so a busy machine does not inflate them) and the mean body size; for the
mixed cycle the requests per wall second, the server's cores in use (CPU / wall) and its
capacity on one core (requests / CPU second); and the server's RSS at the end. The last
line is one JSON object. Goal: a capacity of at least 200 req/s on one core and a
bounded RSS (its memos have fixed sizes).

Run: ``uv run python bench/simulator_throughput.py`` (about 3-6 minutes for 1,000 clans
on a 2-core machine; ``--clans 100`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psutil  # noqa: E402

from clash_pipeline.simulator.codec import random_tag  # noqa: E402

START = "2026-11-02T08:00:00Z"
#: The member-list fields whose change makes a planner fetch the profile.
PLANNER_FIELDS = (
    "trophies",
    "donations",
    "donationsReceived",
    "expLevel",
    "townHallLevel",
    "builderBaseTrophies",
    "role",
)


def entry_key(member: dict[str, Any]) -> tuple[Any, ...]:
    league = (member.get("leagueTier") or member.get("league") or {}).get("id")
    return (*(member.get(name) for name in PLANNER_FIELDS), league)


@dataclass
class Phase:
    name: str
    requests: int = 0
    bytes: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        n = max(1, self.requests)
        return {
            "requests": self.requests,
            "cpu_ms_per_request": round(1000 * self.cpu_s / n, 3),
            "kb_per_body": round(self.bytes / n / 1000, 1),
            "wall_s": round(self.wall_s, 2),
            "req_per_s": round(self.requests / self.wall_s, 1) if self.wall_s else None,
            "server_cores": round(self.cpu_s / self.wall_s, 2) if self.wall_s else None,
            "capacity_req_per_cpu_s": round(self.requests / self.cpu_s, 1) if self.cpu_s else None,
        }


@dataclass
class Bench:
    base_url: str
    token: str
    server: psutil.Process
    workers: int
    phases: list[Phase] = field(default_factory=list)
    _local: threading.local = field(default_factory=threading.local)

    @property
    def admin(self) -> str:
        return self.base_url.removesuffix("/v1")

    def client(self) -> httpx.Client:
        """One keep-alive client per thread (each thread is one request in flight)."""
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            headers = {"Authorization": f"Bearer {self.token}"}
            client = httpx.Client(base_url=self.base_url, headers=headers, timeout=60)
            self._local.client = client
        return client

    def get(self, path: str) -> Any:
        response = self.client().get(path)
        response.raise_for_status()
        return len(response.content), response.json()

    def cpu(self) -> float:
        times = self.server.cpu_times()
        return float(times.user + times.system)

    def phase(self, name: str, tasks: Iterable[Callable[[], int]]) -> Phase:
        """Run the tasks (each returns how many requests it made and their bytes)."""
        phase = Phase(name)
        cpu0, t0 = self.cpu(), time.perf_counter()
        with ThreadPoolExecutor(self.workers) as pool:
            for requests, size in pool.map(lambda task: task(), tasks):
                phase.requests += requests
                phase.bytes += size
        phase.wall_s, phase.cpu_s = time.perf_counter() - t0, self.cpu() - cpu0
        self.phases.append(phase)
        print(f"{name:>18}: {json.dumps(phase.as_dict())}", flush=True)
        return phase

    def advance_hour(self) -> None:
        httpx.post(f"{self.admin}/_sim/clock", json={"advance_seconds": 3600}).raise_for_status()


def one(bench: Bench, path: str, keep: dict[str, Any] | None = None) -> Callable[[], Any]:
    def task() -> tuple[int, int]:
        size, body = bench.get(path)
        if keep is not None:
            keep[path] = body
        return 1, size

    return task


def clan_path(tag: str, tail: str = "") -> str:
    return f"/clans/{quote(tag, safe='')}{tail}"


def changed_members(before: list[dict[str, Any]] | None, now: list[dict[str, Any]]) -> list[str]:
    old = {m["tag"]: entry_key(m) for m in before or []}
    return [m["tag"] for m in now if old.get(m["tag"]) != entry_key(m)]


def poll_clan(bench: Bench, tag: str, lists: dict[str, Any]) -> Callable[[], tuple[int, int]]:
    """One clan's whole poll: clan, members, current war, then the changed profiles."""

    def task() -> tuple[int, int]:
        sizes = [bench.get(clan_path(tag))[0], bench.get(clan_path(tag, "/currentwar"))[0]]
        size, members = bench.get(clan_path(tag, "/members"))
        sizes.append(size)
        for player in changed_members(lists.get(tag), members["items"]):
            sizes.append(bench.get(f"/players/{quote(player, safe='')}")[0])
        lists[tag] = members["items"]
        return len(sizes), sum(sizes)

    return task


def start_server(token: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "SIM_API_TOKEN": token}
    env.pop("SIM_ACTIVITY_PER_HOUR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "clash_pipeline.cli", "simulate-api", "--port", "0", "--frozen"]
        + ["--seed", "7", "--start-time", START],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if " at http" not in line:
        proc.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return proc, line.split(" at ", 1)[1].split(" ", 1)[0]


def run(bench: Bench, clans: list[str]) -> dict[str, Any]:
    lists: dict[str, Any] = {}
    bench.phase("clan (first)", [one(bench, clan_path(t)) for t in clans])
    bench.phase("members", [one(bench, clan_path(t, "/members"), lists) for t in clans])
    bench.phase("currentwar", [one(bench, clan_path(t, "/currentwar")) for t in clans])
    members = {t: lists[clan_path(t, "/members")]["items"] for t in clans}
    tags = [m["tag"] for t in clans for m in members[t]]
    bench.phase("player (first)", [one(bench, f"/players/{quote(p, safe='')}") for p in tags])

    bench.advance_hour()
    lists.clear()
    bench.phase("clan", [one(bench, clan_path(t)) for t in clans])
    bench.phase("members (+1 h)", [one(bench, clan_path(t, "/members"), lists) for t in clans])
    bench.phase("currentwar (+1 h)", [one(bench, clan_path(t, "/currentwar")) for t in clans])
    now = {t: lists[clan_path(t, "/members")]["items"] for t in clans}
    changed = [p for t in clans for p in changed_members(members[t], now[t])]
    player = bench.phase("player", [one(bench, f"/players/{quote(p, safe='')}") for p in changed])

    bench.advance_hour()
    mixed = bench.phase("mixed (+2 h)", [poll_clan(bench, t, now) for t in clans])
    rss_mb = bench.server.memory_info().rss / 2**20
    by_name = {p.name: p.as_dict() for p in bench.phases}
    return {
        "clans": len(clans),
        "members": len(tags),
        "workers": bench.workers,
        "changed_share_per_hour": round(len(changed) / max(1, len(tags)), 3),
        "cpu_ms": {name: d["cpu_ms_per_request"] for name, d in by_name.items()},
        "kb_per_body": {name: d["kb_per_body"] for name, d in by_name.items()},
        "player_cpu_ms": round(1000 * player.cpu_s / max(1, player.requests), 3),
        "mixed_requests": mixed.requests,
        "mixed_req_per_s": round(mixed.requests / mixed.wall_s, 1),
        "mixed_server_cores": round(mixed.cpu_s / mixed.wall_s, 2),
        "mixed_capacity_req_per_cpu_s": round(mixed.requests / mixed.cpu_s, 1),
        "server_rss_mb": round(rss_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clans", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8, help="requests in flight")
    args = parser.parse_args()
    token = secrets.token_urlsafe(16)
    proc, base_url = start_server(token)
    try:
        bench = Bench(base_url, token, psutil.Process(proc.pid), args.workers)
        clans = [random_tag(7, "bench-clan", i) for i in range(args.clans)]
        result = run(bench, clans)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
