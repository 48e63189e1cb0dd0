"""The dashboard in headless Chromium, driven over the DevTools protocol.

Debian's ``chromium`` (installed by ``.ci/run``) loads the dashboard from a
real API server on a real warehouse. The server records every API request
(path, If-None-Match, status), which is how the test sees the browser
revalidate with ``If-None-Match`` and get a ``304``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from clash_pipeline.serving.app import create_app
from clash_pipeline.serving.server import BackgroundServer
from clash_pipeline.simulator import SimulatedClashApi
from tests.plugins.prefect_fixtures import (
    PIPELINE_CLAN,
    PIPELINE_SEED,
    PIPELINE_T0,
    PIPELINE_TOKEN,
    pipeline_options,
    run_pipeline,
)

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    explicit = os.environ.get("CLASH_TEST_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """A page target over the DevTools protocol (a websocket, JSON messages)."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self._ws = connect(ws_url, max_size=None, open_timeout=20)
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                page = self.evaluate("document.body ? document.body.innerText : ''")
                raise AssertionError(f"timed out waiting for {expression}; page: {page[:500]}")
            time.sleep(0.1)

    def close(self) -> None:
        self._ws.close()


@contextmanager
def chromium_page() -> Iterator[Page]:
    """A headless Chromium with one page, closed on exit (skips the test without one)."""
    executable = find_chromium()
    if executable is None:
        pytest.skip("chromium not found (apt-get install chromium; .ci/run installs it)")
    profile = tempfile.mkdtemp(prefix="clash-chromium-")
    process = subprocess.Popen(
        [
            executable,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    page = None
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        target = next(t for t in targets if t["type"] == "page")
        page = Page(target["webSocketDebuggerUrl"])
        page.call("Page.enable")
        page.call("Runtime.enable")
        yield page
    finally:
        if page is not None:
            page.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Page]:
    with chromium_page() as page:
        yield page


@pytest.fixture
def recorded_server(warehouse) -> Iterator[tuple[BackgroundServer, list[tuple[str, str, int]]]]:
    app = create_app(warehouse, pool_size=4)
    requests: list[tuple[str, str, int]] = []

    @app.middleware("http")
    async def record(request, call_next):
        response = await call_next(request)
        if request.url.path.startswith("/api/"):
            requests.append(
                (request.url.path, request.headers.get("if-none-match", ""), response.status_code)
            )
        return response

    with BackgroundServer(app) as server:
        yield server, requests


def _scalar(url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()[0]


def _latest_snapshot_id(url: str) -> str:
    return _scalar(
        url,
        "select snapshot_id from marts.roster_snapshots where clan_tag = %s"
        " order by snapshot_at desc limit 1",
        PIPELINE_CLAN,
    )


def test_dashboard_shows_roster_and_health_revalidates_and_follows_new_snapshots(
    warehouse, recorded_server, browser, pipeline_project
):
    server, requests = recorded_server
    members = _scalar(
        warehouse,
        "select count(*) from marts.roster where clan_tag = %s and is_current",
        PIPELINE_CLAN,
    )
    first_snapshot = _latest_snapshot_id(warehouse)
    url = f"{server.base_url}/dashboard/?poll=0#/clan/{PIPELINE_CLAN.removeprefix('#')}"
    browser.call("Page.navigate", url=url)

    rows = "document.querySelectorAll('#roster tbody tr').length"
    browser.wait_for(f"{rows} === {members}")
    assert browser.evaluate("document.getElementById('snapshot-id').textContent") == first_snapshot
    assert browser.wait_for("document.getElementById('health-last-status')?.textContent") == (
        "succeeded"
    )
    assert browser.evaluate("document.getElementById('health-stale').textContent") == "fresh"
    assert browser.evaluate("document.querySelectorAll('#health-phases tbody tr').length") >= 4
    # opens in the API's roster order (league tier, then ranked, then battle-mode trophies)
    api_roster = httpx.get(f"{server.base_url}/api/v2/roster", params={"clan": PIPELINE_CLAN})
    shown = "[...document.querySelectorAll('#roster tbody tr')].map(tr => tr.dataset.player)"
    assert browser.evaluate(shown) == [m["player_tag"] for m in api_roster.json()["members"]]
    league_header = "document.querySelector('th[data-key=league]')"
    assert browser.evaluate(f"{league_header}.getAttribute('aria-sort')") == "descending"
    # sortable: by name, ascending
    browser.evaluate("document.querySelector('th[data-key=name]').click()")
    names = browser.evaluate(
        "[...document.querySelectorAll('#roster tbody tr td:first-child')].map(td => td.innerText)"
    )
    assert names == sorted(names, key=lambda n: n) and len(names) == members

    # a reload revalidates the roster: the browser sends its ETag, the server says 304
    roster_requests = len(requests)
    browser.call("Page.reload")
    browser.wait_for(f"{rows} === {members} && !!document.getElementById('health-last-status')")
    after_reload = [r for r in requests[roster_requests:] if r[0] == "/api/v2/roster"]
    assert after_reload and after_reload[0][1] and after_reload[0][2] == 304, requests
    # the store revalidates what it holds with If-None-Match: 304 again
    browser.evaluate("document.getElementById('refresh').click()")
    browser.wait_for("window.clashStore.stats.notModified >= 1")
    revalidated = [
        r for r in requests[roster_requests:] if r[0] == "/api/v2/roster" and r[1] and r[2] == 304
    ]
    assert len(revalidated) >= 2, requests
    # no raw snapshot stored: localStorage empty, sessionStorage only the version
    assert browser.evaluate("localStorage.length") == 0
    stored = browser.evaluate("JSON.stringify(Object.entries(sessionStorage))")
    assert json.loads(stored) == [
        [f"clash.payload_version.{PIPELINE_CLAN}", after_reload[0][1].strip('"')]
    ]

    # a member page with charts
    player = browser.evaluate("document.querySelector('#roster tbody tr').dataset.player")
    browser.evaluate(f"location.hash = '#/member/{player[1:]}/{PIPELINE_CLAN[1:]}'")
    browser.wait_for("document.querySelectorAll('#member-charts svg polyline').length >= 4")

    # a new snapshot lands: the dashboard shows it on the next refresh
    with SimulatedClashApi(seed=PIPELINE_SEED, token=PIPELINE_TOKEN, start_time=PIPELINE_T0) as sim:
        sim.clock.advance(timedelta(hours=6))
        report = run_pipeline(sim, pipeline_options(pipeline_project, transform_mode="run"))
    assert not report.failed, [r.error for r in report.failed]
    new_snapshot = _latest_snapshot_id(warehouse)
    assert new_snapshot != first_snapshot
    browser.evaluate(f"location.hash = '#/clan/{PIPELINE_CLAN[1:]}'")
    browser.evaluate("document.getElementById('refresh').click()")
    browser.wait_for(
        f"document.getElementById('snapshot-id')?.textContent === {json.dumps(new_snapshot)}"
    )
    roster_statuses = [r[2] for r in requests if r[0] == "/api/v2/roster"]
    assert 200 in roster_statuses[-2:], requests  # the old ETag no longer matches
    new_version = _scalar(
        warehouse,
        "select payload_version from marts.roster_snapshots where snapshot_id = %s",
        new_snapshot,
    )
    stored = json.loads(browser.evaluate("JSON.stringify(Object.entries(sessionStorage))"))
    assert stored == [[f"clash.payload_version.{PIPELINE_CLAN}", new_version]]
    assert browser.evaluate("window.clashStore.stats.dropped") >= 1
