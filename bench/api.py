"""Benchmark: the roster API's 200s against its 304s, side by side.

A 50-member simulated clan gets one pipeline run (the real Prefect flow and a
full dbt build) into a fresh embedded PostgreSQL in a temporary folder (never
the configured warehouse; stopped at the end, also on Ctrl-C); then
``clash-pipeline api`` serves it in its own process and a client sends
``GET /api/v2/roster?clan=TAG`` from 8 concurrent connections on loopback:
2,000 plain requests (200, the body from the server's version-keyed cache) and
2,000 with ``If-None-Match: "<payload_version>"`` (304), interleaved in rounds
of 250 so both see the same machine. Printed: p50/p99 latency and requests/s
of each, the body size, the first 200 (body built from the marts) and the
ratio of the p50s (target: a 304 at least 5x cheaper than a 200).

Run: ``uv run python bench/api.py`` (about 2 minutes, most of it the build).
With ``DATABASE_URL`` set, that database is used as it is (``--clan`` or its
first clan) and nothing is built.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench._common import temporary_warehouse  # noqa: E402
from bench.pipeline import full_clans, run  # noqa: E402
from clash_pipeline.project import project_dir  # noqa: E402

ROUND = 250


def build_warehouse(seed: int) -> str:
    """One pipeline run of a 50-member simulated clan into the warehouse of
    ``CLASH_PIPELINE_HOME`` (see :func:`bench._common.temporary_warehouse`); its tag."""
    from clash_pipeline.orchestration.options import PipelineOptions
    from clash_pipeline.simulator.server import SimulatedClashApi

    options = PipelineOptions(trigger="cli", requests_per_second=200, transform_mode="run")
    with SimulatedClashApi(seed=seed, token=secrets.token_urlsafe(16)) as sim:
        [clan] = full_clans(sim, 1)
        run(sim, [clan], options)
    return clan


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_api(port: int, log: Path, *, body_cache: bool = True) -> subprocess.Popen[bytes]:
    """``clash-pipeline api`` on the warehouse of this process's environment (``DATABASE_URL``,
    or the embedded PostgreSQL of ``CLASH_PIPELINE_HOME`` as its read-only login)."""
    command = [
        sys.executable,
        "-m",
        "clash_pipeline.cli",
        "api",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if not body_cache:
        command.append("--no-body-cache")
    process = subprocess.Popen(
        command,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
        cwd=project_dir(),
    )
    try:
        _wait_until_serving(process, port, log)
    except BaseException:  # Ctrl-C while it starts too: no API left behind
        process.terminate()
        process.wait(timeout=15)
        raise
    return process


def _wait_until_serving(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v2/clans", timeout=2)
            return
        except httpx.HTTPError:
            if process.poll() is not None:
                raise SystemExit(f"the API did not start:\n{log.read_text()}") from None
            time.sleep(0.2)
    raise SystemExit("the API did not start within 60 s")


class Connection:
    """A keep-alive HTTP/1.1 connection with next to no client overhead.

    httpx costs about as much per request as the server's whole 304 path, which
    would hide the difference being measured; this client writes the request
    line and reads the status, the headers and Content-Length bytes of body.
    """

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def get(self, target: str, headers: dict[str, str]) -> tuple[int, int]:
        lines = [f"GET {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding":
                raise SystemExit("chunked responses are not expected here")
        if length and status not in (204, 304):
            await self.reader.readexactly(length)
        return status, length

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def measure(
    connections: list[Connection], target: str, headers: dict[str, str], count: int, status: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = count

    async def worker(connection: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            got, _ = await connection.get(target, headers)
            latencies.append(time.perf_counter() - t0)
            if got != status:
                raise SystemExit(f"expected {status}, got {got}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(connection) for connection in connections))
    return latencies, time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000


#: What is measured: (connection pool, request headers, expected status) by kind.
Kinds = dict[str, tuple[list[Connection], dict[str, str], int]]
#: Latencies (s) and the seconds they took, by kind.
Results = dict[str, tuple[list[float], float]]


async def bench(urls: dict[str, str], clan: str, requests: int, concurrency: int) -> None:
    """``urls``: "cached" (the API as deployed) and "uncached" (no body cache)."""
    target = "/api/v2/roster?" + urlencode({"clan": clan})
    pools = {
        name: [await Connection(url).open() for _ in range(concurrency)]
        for name, url in urls.items()
    }
    try:
        etag = first_response(urls["cached"] + target, clan)
        kinds: Kinds = {
            "304": (pools["cached"], {"If-None-Match": etag}, 304),
            "200": (pools["cached"], {}, 200),
            "200 built": (pools["uncached"], {}, 200),
        }
        results = await interleaved_rounds(kinds, target, requests)
    finally:
        for connections in pools.values():
            for connection in connections:
                await connection.close()
    print(f"{requests:,} requests of each kind, {concurrency} concurrent, loopback, interleaved")
    report(results)


def first_response(url: str, clan: str) -> str:
    """Time the first 200 (its body built from the marts) and return its ETag."""
    t0 = time.perf_counter()
    first = httpx.get(url, timeout=60)
    first_ms = (time.perf_counter() - t0) * 1000
    first.raise_for_status()
    body = first.json()
    print(
        f"clan {clan}: {len(body['members'])} members, body {len(first.content):,} bytes,"
        f" payload_version {body['payload_version']}"
    )
    print(f"first 200 (body built from the marts): {first_ms:.1f} ms")
    return first.headers["etag"]


async def interleaved_rounds(kinds: Kinds, target: str, requests: int) -> Results:
    """Warm up, then rounds of ROUND requests of each kind in turn (same machine state)."""
    for connections, headers, status in kinds.values():  # warm-up
        await measure(connections, target, headers, 100, status)
    results: Results = {kind: ([], 0.0) for kind in kinds}
    for _ in range(max(1, requests // ROUND)):
        for kind, (connections, headers, status) in kinds.items():
            latencies, seconds = await measure(connections, target, headers, ROUND, status)
            total, elapsed = results[kind]
            results[kind] = (total + latencies, elapsed + seconds)
    return results


def report(results: Results) -> None:
    print(f"{'kind':<11}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'req/s':>9}")
    p50 = {}
    for kind, (latencies, elapsed) in results.items():
        p50[kind] = pct(latencies, 0.50)
        print(
            f"{kind:<11}{p50[kind]:>9.2f}{pct(latencies, 0.99):>9.2f}"
            f"{statistics.mean(latencies) * 1000:>9.2f}{len(latencies) / elapsed:>9.0f}"
        )
    print("  304: If-None-Match with the current version; 200: the body from the server's")
    print("  version-keyed cache; 200 built: the same API without that cache (every body")
    print("  read from the marts and encoded, what a new version or a cache miss costs)")
    built = p50["200 built"] / p50["304"]
    cached = p50["200"] / p50["304"]
    print(
        f"p50(200 built) / p50(304) = {built:.2f}  (target >= 5)"
        f"  {'ok' if built >= 5 else 'MISSED'}"
    )
    print(
        f"p50(200 cached) / p50(304) = {cached:.2f}  (the cached 200 still looks the version up"
        " and sends the body)"
    )


def main() -> None:
    args = _arguments()
    if os.environ.get("DATABASE_URL"):  # an existing warehouse, used as it is
        with tempfile.TemporaryDirectory(prefix="bench-api-") as logs:
            serve_and_measure(args, Path(logs), args.clan)
        return
    home = Path(args.home).resolve() if args.home else None
    with temporary_warehouse("bench-api-", home=home, prefect=True, keep=home is not None) as wh:
        print("building a warehouse: one pipeline run of a 50-member simulated clan ...")
        clan = build_warehouse(args.seed)
        if home is not None:
            print(
                f"kept: CLASH_PIPELINE_HOME={home} (clan {clan}); its URL: "
                f"CLASH_PIPELINE_HOME={home} uv run clash-pipeline db url (db stop to stop it)"
            )
        serve_and_measure(args, wh.home, clan)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests of each kind")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--clan", help="with DATABASE_URL: the clan (default: its first)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--home", help="keep the embedded database in this folder (default: a temporary one)"
    )
    return parser.parse_args()


def serve_and_measure(args: argparse.Namespace, logs: Path, clan: str | None) -> None:
    """Two API processes (with and without the body cache), the client, then stop them."""
    ports = {"cached": free_port(), "uncached": free_port()}
    apis = [start_api(ports["cached"], logs / "api.log")]
    try:
        apis.append(start_api(ports["uncached"], logs / "api-uncached.log", body_cache=False))
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        if clan is None:
            clans = httpx.get(f"{urls['cached']}/api/v2/clans").json()["clans"]
            if not clans:
                raise SystemExit("the database has no clan: run clash-pipeline demo first")
            clan = clans[0]["clan_tag"]
        asyncio.run(bench(urls, clan, args.requests, args.concurrency))
    finally:
        for api in apis:
            api.terminate()
            api.wait(timeout=15)


if __name__ == "__main__":
    main()
