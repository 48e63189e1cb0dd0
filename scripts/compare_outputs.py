"""Prove that a change left the outputs alone: the marts and the API bodies of two checkouts.

A restructure (issue 11 moved ``flows/`` to ``src/clash_pipeline/``) must not change any
table, column, mart or API response. This script runs the same small simulated history
through two versions of the pipeline and compares what each left behind. It drives only
the command line that every version has (``clash-pipeline demo``, ``db url``, ``api``,
``db stop``), each checkout with its own ``.venv``, so it works for any two revisions::

    uv run python scripts/compare_outputs.py --before 2bcd9ed [--after DIR_OR_REV]
    uv run python scripts/compare_outputs.py --dump CHECKOUT --out dump.json
    uv run python scripts/compare_outputs.py --diff before.json after.json

``--before``/``--after`` make a ``git worktree`` of each revision in a temporary folder
(``--after`` may instead name a checkout directory; the default is this checkout),
``uv sync --frozen`` in each, dump both, print ``equal`` or a short diff per relation and
per endpoint, and exit 1 on any difference. The worktrees are removed at the end.

A dump runs ``demo`` into a fresh ``CLASH_PIPELINE_HOME`` (embedded PostgreSQL, simulated
API, seed 42, every simulated member active every hour (``SIM_ACTIVITY_PER_HOUR=1``), every
request every run (``COC_FETCH_PLAN=full``), its two demo clans; ``DEMO_HISTORY``: one
simulated day of two runs that both build the marts, so the second build is incremental; the
simulated clock starts on 2026-11-02, inside a CWL week, so league wars, raid seasons and
the war log all land), then reads every relation of the schemas ``marts`` and ``reference``
(column names and types, rows sorted) and the API's JSON bodies (``/api/v2/clans``; per clan
the roster, the ingestion health and ``METRICS``; ``/api/v2/members/{tag}`` for the first
``MEMBERS_PER_CLAN`` members of each roster). It stops the API and the embedded database
whatever happens (also on SIGINT/SIGTERM) and leaves no process behind.

What legitimately differs between two runs of the SAME code is normalised before comparing,
and nothing else (found by dumping the same code more than once and diffing the dumps with ``--diff
--raw``: everything else, ``payload_version`` and ``ingestion_version`` (the package version)
included, came out identical, row order aside: rows are sorted):

* ``RUN_IDS``: ``run_id`` (a uuid4 per run) and ``snapshot_id`` (a hash of clan and run id),
  in the marts and in the API bodies (roster, member history), are replaced by a label
  naming the clan and simulated time of their snapshot, so rows sharing an id still do.
* ``FETCH_ID_KEYS``: ``fetch_id`` (wars, war members and attacks, raid seasons and
  members) and ``profile_fetch_id`` (member_snapshot_stats) number ``raw.fetch_log``
  rows in the order in which the two clans' concurrent fetches land, which varies; each
  is replaced by its request path and run (read from ``raw.fetch_log`` into the dump's
  ``fetch_ids``).
* ``WALL_CLOCK_COLUMNS``: ``marts.ingest_run_health``'s wall-clock start and finish times
  and its durations (``*_ms``).
* ``WALL_CLOCK_KEYS``: the same in ``/api/v2/ingestion/health`` (``started_at``,
  ``finished_at``, ``duration_ms``, ``phase_ms`` of the runs and phases), and its
  ``checked_at`` and ``hours_since_last_success``, which follow the wall clock.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
from psycopg import sql

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ("marts", "reference")
SEED = 42
METRICS = (("ace", "season"), ("donations_given", "7d"), ("hero_rush_pct", "latest"))
MEMBERS_PER_CLAN = 3
PLACEHOLDER = "<varies>"
NONE: frozenset[str] = frozenset()

#: Ids that are new in every run (``run_id`` is a uuid4, ``snapshot_id`` a hash of the clan
#: and the run id): each value is replaced by what it identifies, the clan and simulated time
#: of its snapshot, wherever it appears, so rows that share an id still share a label.
RUN_IDS: dict[str, dict[str, str]] = {
    "marts.roster_snapshots": {"snapshot_id": "snapshot", "run_id": "run"},
    "marts.ingest_run_health": {"run_id": "run"},
}
#: Columns and keys holding a ``raw.fetch_log`` id: an identity column, numbered in the order
#: in which the clans' concurrent fetches happen to land. Each is replaced by what it
#: identifies, the request path and the run's clans and simulated time (``fetch_labels``).
FETCH_ID_KEYS = frozenset({"fetch_id", "profile_fetch_id"})
#: Wall-clock times and durations of the runs, per relation: masked.
WALL_CLOCK_COLUMNS: dict[str, frozenset[str]] = {
    "marts.ingest_run_health": frozenset(
        {
            "started_at",
            "finished_at",
            "duration_ms",
            "run_duration_ms",
            "fetch_ms",
            "land_ms",
            "transform_ms",
            "monitor_ms",
        }
    ),
}
#: The same in API bodies, per endpoint: keys masked at any depth of the body.
WALL_CLOCK_KEYS: dict[str, frozenset[str]] = {
    "/api/v2/ingestion/health": frozenset(
        {
            "checked_at",
            "hours_since_last_success",
            "started_at",
            "finished_at",
            "duration_ms",
            "phase_ms",
        }
    ),
}

DEMO_TIMEOUT_SECONDS = 1200
API_START_TIMEOUT_SECONDS = 90
STOP_GRACE_SECONDS = 30


@dataclass(frozen=True)
class History:
    """The simulated history both versions run: small, but every mart gets rows."""

    days: int = 1
    runs_per_day: int = 2
    build_every: int = 1

    def demo_args(self) -> list[str]:
        return [
            "demo",
            f"--days={self.days}",
            f"--runs-per-day={self.runs_per_day}",
            f"--build-every={self.build_every}",
            f"--seed={SEED}",
        ]


DEMO_HISTORY = History()


class Interrupted(Exception):
    """SIGINT or SIGTERM: raised so that every ``finally`` stops the children it started."""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    # one signal is enough: a second one must not cut the clean-up short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


# -- one checkout's command line ---------------------------------------------------------------


def _clean_env(home: Path) -> dict[str, str]:
    """This process's environment minus everything that could point a run elsewhere."""
    dropped_prefixes = ("COC_", "CLASH_", "PREFECT_", "DBT_", "UV_PROJECT")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(dropped_prefixes)
        and key not in ("DATABASE_URL", "VIRTUAL_ENV", "PYTHONPATH")
    }
    env["CLASH_PIPELINE_HOME"] = str(home)
    # Issue 14 made simulated members play now and then (``SIM_ACTIVITY_PER_HOUR``,
    # default 0.12 an hour); at 1 every member moves every hour, which gives the bytes of the
    # simulator before it (a version without the option ignores the variable).
    env["SIM_ACTIVITY_PER_HOUR"] = "1"
    # ... and fetches only what changed since a clan's last run (``COC_FETCH_PLAN``, default
    # ``changes``); ``full`` fetches every endpoint and profile every run, as before.
    env["COC_FETCH_PLAN"] = "full"
    return env


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Stop a child and everything it started: SIGINT (lets it clean up), SIGTERM, SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_GRACE_SECONDS)
    # grandchildren left in the group (a Prefect server, say) once the leader is gone
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class Cli:
    """``clash-pipeline`` of one checkout, run with a private ``CLASH_PIPELINE_HOME``.

    Each command runs in its own session so that it can be stopped with everything it
    started; the working directory is the home, so no ``.env`` of a checkout applies.
    """

    def __init__(self, checkout: Path, home: Path) -> None:
        self.binary = checkout / ".venv" / "bin" / "clash-pipeline"
        if not self.binary.exists():
            raise SystemExit(f"error: {self.binary} is missing; run `uv sync --frozen` there")
        self.home = home
        self.env = _clean_env(home)

    def start(self, *args: str, log: Path | None = None) -> subprocess.Popen[str]:
        """Start a command; its output goes to ``log`` (a file: nothing to drain) or a pipe."""
        with contextlib.ExitStack() as stack:
            stdout = stack.enter_context(log.open("w", encoding="utf-8")) if log else None
            return subprocess.Popen(
                [str(self.binary), *args],
                cwd=self.home,
                env=self.env,
                stdout=stdout or subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    def run(self, *args: str, timeout: float, log: Path | None = None) -> str:
        """Run a command to its end; its output, or SystemExit naming the command."""
        proc = self.start(*args, log=log)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except BaseException:
            stop_process(proc)
            raise
        output = output or (log.read_text(encoding="utf-8") if log else "")
        if proc.returncode != 0:
            tail = "\n".join(output.splitlines()[-30:])
            raise SystemExit(f"error: clash-pipeline {' '.join(args)} failed:\n{tail}")
        return output


# -- reading the warehouse ---------------------------------------------------------------------


def _database_url(cli: Cli) -> str:
    output = cli.run("db", "url", timeout=120)
    urls = [line.strip() for line in output.splitlines() if line.startswith("postgres")]
    if not urls:
        raise SystemExit(f"error: `clash-pipeline db url` printed no URL:\n{output}")
    return urls[-1]


def _masked(value: Any, keys: frozenset[str]) -> Any:
    """``value`` with every key in ``keys`` (at any depth) replaced by the placeholder."""
    if isinstance(value, dict):
        return {
            key: PLACEHOLDER if key in keys else _masked(item, keys) for key, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item, keys) for item in value]
    return value


def _fetches_relabelled(value: Any, labels: dict[str, str]) -> Any:
    """``value`` with every fetch id under a key of ``FETCH_ID_KEYS`` replaced by its label."""
    if isinstance(value, dict):
        return {
            key: labels.get(str(item), item)
            if key in FETCH_ID_KEYS
            else _fetches_relabelled(item, labels)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_fetches_relabelled(item, labels) for item in value]
    return value


def _relabelled(value: Any, labels: dict[str, str]) -> Any:
    """``value`` with every string that is a key of ``labels`` (at any depth) replaced."""
    if isinstance(value, dict):
        return {key: _relabelled(item, labels) for key, item in value.items()}
    if isinstance(value, list):
        return [_relabelled(item, labels) for item in value]
    if isinstance(value, str):
        return labels.get(value, value)
    return value


def _sort_key(row: Any) -> str:
    return json.dumps(row, sort_keys=True)


def dump_relations(url: str) -> dict[str, Any]:
    """Every table and view of ``SCHEMAS``: columns with their types, rows in a fixed order.

    Rows come as PostgreSQL's own JSON (timestamps in UTC, numerics as exact text), so
    the reader adds no conversion of its own.
    """
    relations: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        names = conn.execute(
            "select n.nspname, c.relname, c.relkind from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = any(%s) and c.relkind in ('r', 'v', 'm', 'p')"
            " order by 1, 2",
            (list(SCHEMAS),),
        ).fetchall()
        for schema, name, kind in names:
            columns = conn.execute(
                "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a"
                " where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped"
                " order by a.attnum",
                (f'"{schema}"."{name}"',),
            ).fetchall()
            texts = conn.execute(
                sql.SQL("select row_to_json(t)::text from {}.{} t").format(
                    sql.Identifier(schema), sql.Identifier(name)
                )
            ).fetchall()
            rows = [json.loads(text, parse_float=str) for (text,) in texts]
            relations[f"{schema}.{name}"] = {
                "kind": kind,
                "columns": [f"{column} {type_}" for column, type_ in columns],
                "rows": sorted(rows, key=_sort_key),
            }
    return relations


def fetch_labels(url: str) -> dict[str, str]:
    """Each ``raw.fetch_log`` id -> the request and run it stands for (what the marts mean)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        rows = conn.execute(
            "select l.fetch_id, l.request_path, r.clan_tags, r.snapshot_at"
            " from raw.fetch_log l join raw.fetch_runs r using (run_id)"
        ).fetchall()
    return {
        str(fetch_id): f"<fetch {path} in the run of {','.join(clans)} at {at.isoformat()}>"
        for fetch_id, path, clans, at in rows
    }


# -- reading the API ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_api(cli: Cli) -> Iterator[httpx.Client]:
    """The checkout's ``clash-pipeline api`` on a free loopback port, stopped on exit."""
    port = _free_port()
    proc = cli.start("api", "--host", "127.0.0.1", "--port", str(port), log=cli.home / "api.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + API_START_TIMEOUT_SECONDS
            while True:
                if proc.poll() is not None:
                    log = (cli.home / "api.log").read_text(encoding="utf-8")
                    raise SystemExit(f"error: clash-pipeline api exited:\n{log[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/api/v2/clans").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("error: clash-pipeline api did not answer in time")
                time.sleep(0.5)
            yield client
    finally:
        stop_process(proc)


def _api_paths(clans: list[str]) -> list[str]:
    paths = []
    for clan in clans:
        tag = quote(clan, safe="")
        paths.append(f"/api/v2/roster?clan={tag}")
        paths.append(f"/api/v2/ingestion/health?clan={tag}")
        paths.extend(
            f"/api/v2/metrics?clan={tag}&metric={metric}&window={window}"
            for metric, window in METRICS
        )
    return paths


def _member_paths(roster: Any) -> list[str]:
    if not isinstance(roster, dict):
        return []
    tags = sorted(member["player_tag"] for member in roster.get("members", []))
    return [f"/api/v2/members/{quote(tag, safe='')}" for tag in tags[:MEMBERS_PER_CLAN]]


def dump_api(client: httpx.Client) -> dict[str, Any]:
    """Status and JSON body of every endpoint the comparison covers, keyed by path."""
    bodies: dict[str, Any] = {}

    def get(path: str) -> Any:
        response = client.get(path)
        body = response.json()
        bodies[path] = {"status": response.status_code, "body": body}
        return body

    clans = get("/api/v2/clans")
    tags = [clan["clan_tag"] for clan in clans.get("clans", [])]
    for path in _api_paths(tags):
        body = get(path)
        if path.startswith("/api/v2/roster"):
            for member_path in _member_paths(body):
                get(member_path)
    return bodies


# -- one dump ----------------------------------------------------------------------------------


def dump_checkout(checkout: Path, history: History = DEMO_HISTORY) -> dict[str, Any]:
    """Run the demo of ``checkout`` in a fresh home and read back its marts and API bodies."""
    with tempfile.TemporaryDirectory(prefix="clash-equiv-", ignore_cleanup_errors=True) as tmp:
        home = Path(tmp)
        cli = Cli(checkout, home)
        try:
            print(f"{checkout}: clash-pipeline {' '.join(history.demo_args())}", flush=True)
            cli.run(*history.demo_args(), timeout=DEMO_TIMEOUT_SECONDS, log=home / "demo.log")
            url = _database_url(cli)
            relations, fetches = dump_relations(url), fetch_labels(url)
            with running_api(cli) as client:
                api = dump_api(client)
        finally:
            with contextlib.suppress(SystemExit, subprocess.TimeoutExpired):
                cli.run("db", "stop", timeout=120)
    return {
        "checkout": str(checkout),
        "history": vars(history),
        "relations": relations,
        "api": api,
        "fetch_ids": fetches,
    }


def write_dump(dump: dict[str, Any], out: Path) -> None:
    out.write_text(json.dumps(dump, indent=1, sort_keys=True) + "\n", encoding="utf-8")


# -- comparing two dumps -----------------------------------------------------------------------


def _short(value: Any, limit: int = 240) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_diff(before: Any, after: Any, path: str = "$") -> Iterator[str]:
    """The paths where two JSON values differ, each with both values."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            if key not in after:
                yield f"{path}.{key}: only before"
            elif key not in before:
                yield f"{path}.{key}: only after"
            else:
                yield from _json_diff(before[key], after[key], f"{path}.{key}")
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (left, right) in enumerate(zip(before, after, strict=True)):
            yield from _json_diff(left, right, f"{path}[{index}]")
    elif before != after:
        yield f"{path}: {_short(before, 100)} -> {_short(after, 100)}"


def diff_relation(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """A short description of how two dumps of one relation differ (empty: equal)."""
    lines = []
    if before["columns"] != after["columns"]:
        lines.append(f"columns: {before['columns']} -> {after['columns']}")
    if before["kind"] != after["kind"]:
        lines.append(f"kind: {before['kind']} -> {after['kind']}")
    keys_after = {_sort_key(row) for row in after["rows"]}
    keys_before = {_sort_key(row) for row in before["rows"]}
    only_before = [row for row in before["rows"] if _sort_key(row) not in keys_after]
    only_after = [row for row in after["rows"] if _sort_key(row) not in keys_before]
    if only_before or only_after or len(before["rows"]) != len(after["rows"]):
        lines.append(f"rows: {len(before['rows'])} -> {len(after['rows'])}")
        lines.extend(_row_changes(only_before, only_after))
    return lines


def _row_changes(only_before: list[Any], only_after: list[Any]) -> list[str]:
    """The first rows that changed: the changed columns when both sides lost and gained as
    many rows (pairs in sort order), else the rows themselves."""
    if len(only_before) == len(only_after):
        pairs = zip(only_before[:3], only_after[:3], strict=True)
        return [f"  ~ {'; '.join(_json_diff(left, right, 'row'))}" for left, right in pairs]
    return [f"  - {_short(row)}" for row in only_before[:3]] + [
        f"  + {_short(row)}" for row in only_after[:3]
    ]


def diff_endpoint(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    lines = []
    if before["status"] != after["status"]:
        lines.append(f"status: {before['status']} -> {after['status']}")
    lines.extend(list(_json_diff(before["body"], after["body"]))[:5])
    return lines


def _report(kind: str, before: dict[str, Any], after: dict[str, Any], differ: Any) -> int:
    """Print one line (or a short diff) per name; the number of names that differ."""
    differences = 0
    for name in sorted(set(before) | set(after)):
        if name not in after or name not in before:
            lines = ["only before" if name not in after else "only after"]
        else:
            lines = differ(before[name], after[name])
        differences += bool(lines)
        print(f"{kind} {name}: {'equal' if not lines else 'DIFFERENT'}")
        for line in lines:
            print(f"    {line}")
    return differences


def run_id_labels(relations: dict[str, Any]) -> dict[str, str]:
    """Each per-run id of ``RUN_IDS`` -> a label naming its clan and simulated time."""
    labels: dict[str, str] = {}
    for relation, columns in RUN_IDS.items():
        for row in relations.get(relation, {}).get("rows", []):
            for column, kind in columns.items():
                if row.get(column) is not None:
                    label = f"<{kind} of {row.get('clan_tag')} at {row.get('snapshot_at')}>"
                    labels.setdefault(row[column], label)
    return labels


def normalised(
    dump: dict[str, Any], ignored: dict[str, frozenset[str]] | None = None
) -> dict[str, Any]:
    """``dump`` with what differs between two runs of the same code replaced.

    A dump keeps what the version wrote; only the comparison normalises. ``ignored``
    (relation -> columns, from ``--ignore``) masks columns a change altered on purpose;
    for an endpoint, ``KEY[]`` puts the list under KEY in a canonical order instead (a
    change of its order on purpose).
    """
    labels = run_id_labels(dump["relations"])
    fetches = dump.get("fetch_ids", {})

    def stable(value: Any, wall_clock: frozenset[str]) -> Any:
        return _masked(_fetches_relabelled(_relabelled(value, labels), fetches), wall_clock)

    relations = {}
    for name, relation in dump["relations"].items():
        dropped = (ignored or {}).get(name, NONE)
        rows = _dropped(stable(relation["rows"], WALL_CLOCK_COLUMNS.get(name, NONE)), dropped)
        relations[name] = {**relation, "rows": sorted(rows, key=_sort_key)}
        if dropped and isinstance(relation.get("columns"), list):
            relations[name]["columns"] = [
                c for c in relation["columns"] if str(c).split(" ")[0] not in dropped
            ]
    api = {}
    for path, answer in dump["api"].items():
        endpoint = _endpoint(path)
        body = stable(answer["body"], WALL_CLOCK_KEYS.get(endpoint, NONE))
        keys = (ignored or {}).get(endpoint, NONE)
        api[path] = {**answer, "body": _unordered(_dropped(body, keys), keys)}
    return {**dump, "relations": relations, "api": api}


def _endpoint(path: str) -> str:
    """The endpoint ``--ignore`` names for a dumped path: no query, a member path's tag as
    ``{tag}`` (``/api/v2/members/%23ABC`` -> ``/api/v2/members/{tag}``)."""
    endpoint = path.split("?")[0]
    return "/api/v2/members/{tag}" if endpoint.startswith("/api/v2/members/") else endpoint


def _unordered(value: Any, keys: frozenset[str]) -> Any:
    """``value`` with the lists under the keys named ``KEY[]`` in ``keys`` (at any depth) in a
    canonical order: their order changed on purpose, their items are still compared."""
    names = frozenset(key[:-2] for key in keys if key.endswith("[]"))
    return _in_canonical_order(value, names) if names else value


def _in_canonical_order(value: Any, names: frozenset[str]) -> Any:
    if isinstance(value, list):
        return [_in_canonical_order(item, names) for item in value]
    if not isinstance(value, dict):
        return value
    ordered = {}
    for key, item in value.items():
        inner = _in_canonical_order(item, names)
        if key in names and isinstance(inner, list):
            inner = sorted(inner, key=lambda entry: json.dumps(entry, sort_keys=True))
        ordered[key] = inner
    return ordered


def _dropped(value: Any, keys: frozenset[str]) -> Any:
    """``value`` without the keys in ``keys`` (at any depth): changed on purpose, or added."""
    if not keys:
        return value
    if isinstance(value, dict):
        return {key: _dropped(item, keys) for key, item in value.items() if key not in keys}
    if isinstance(value, list):
        return [_dropped(item, keys) for item in value]
    return value


def compare_dumps(
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    normalise: bool = True,
    ignored: dict[str, frozenset[str]] | None = None,
) -> int:
    """Print the comparison per relation and per endpoint; the number of differences."""
    if normalise:
        before, after = normalised(before, ignored), normalised(after, ignored)
    for relation, columns in sorted((ignored or {}).items()):
        print(f"ignored on purpose: {relation}.{', '.join(sorted(columns))}")
    differences = _report("relation", before["relations"], after["relations"], diff_relation)
    differences += _report("endpoint", before["api"], after["api"], diff_endpoint)
    total = len(before["relations"]) + len(before["api"])
    print(f"{differences} difference(s) in {total} relations and endpoints")
    return differences


# -- checkouts ---------------------------------------------------------------------------------


def _git(*args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@contextlib.contextmanager
def checkout_of(spec: str, folder: Path, name: str) -> Iterator[Path]:
    """A synced checkout: ``spec`` if it is a directory, else a git worktree of that revision."""
    given = Path(spec)
    if given.is_dir():
        path = given.resolve()
    else:
        path = folder / name
        _git("worktree", "add", "--detach", "--quiet", str(path), f"{spec}^{{commit}}")
    try:
        subprocess.run(
            ["uv", "sync", "--frozen", "--quiet"],
            cwd=path,
            env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
            check=True,
        )
        yield path
    finally:
        if not given.is_dir():
            _git("worktree", "remove", "--force", str(path))


def ignored_columns(specs: Sequence[str]) -> dict[str, frozenset[str]]:
    """``["reference.metric_catalogue.inputs", ...]`` -> relation -> columns."""
    ignored: dict[str, set[str]] = {}
    for spec in specs:
        relation, _, column = spec.rpartition(".")
        if not column or ("." not in relation and not relation.startswith("/")):
            raise SystemExit(
                f"error: --ignore {spec!r} is not SCHEMA.RELATION.COLUMN or /ENDPOINT.KEY"
            )
        ignored.setdefault(relation, set()).add(column)
    return {relation: frozenset(columns) for relation, columns in ignored.items()}


def compare_revisions(
    before: str,
    after: str,
    keep: Path | None,
    ignored: dict[str, frozenset[str]] | None = None,
) -> int:
    """Dump both versions and compare them: 0 when every output is the same, else 1."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clash-equiv-trees-") as tmp:
        folder = Path(tmp)
        dumps = []
        for spec, name in ((before, "before"), (after, "after")):
            with checkout_of(spec, folder, name) as path:
                dumps.append(dump_checkout(path))
            if keep:
                keep.mkdir(parents=True, exist_ok=True)
                write_dump(dumps[-1], keep / f"{name}.json")
    print(f"before: {before}  after: {after}  ({time.monotonic() - started:.0f} s)")
    return 1 if compare_dumps(dumps[0], dumps[1], ignored=ignored) else 0


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--before", help="revision (or checkout directory) before the change")
    mode.add_argument("--dump", type=Path, metavar="CHECKOUT", help="dump one checkout")
    mode.add_argument("--diff", type=Path, nargs=2, metavar="DUMP", help="compare two dumps")
    parser.add_argument(
        "--after", default=str(REPO_ROOT), help="revision or directory (default: this checkout)"
    )
    parser.add_argument("--out", type=Path, help="--dump: the JSON file to write")
    parser.add_argument(
        "--raw",
        action="store_true",
        help="--diff: do not normalise (finds what varies)",
    )
    parser.add_argument("--keep", type=Path, help="--before: keep both dumps in this folder")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="SCHEMA.RELATION.COLUMN",
        help="a column (or /ENDPOINT.KEY of an API body) the change altered or added on "
        "purpose: left out on both sides; /ENDPOINT.KEY[] compares the list under KEY in any "
        "order (repeatable)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    if args.diff:
        before, after = (json.loads(p.read_text(encoding="utf-8")) for p in args.diff)
        ignored = ignored_columns(args.ignore)
        return 1 if compare_dumps(before, after, normalise=not args.raw, ignored=ignored) else 0
    if args.dump:
        if not args.out:
            raise SystemExit("error: --dump needs --out FILE")
        write_dump(dump_checkout(args.dump.resolve()), args.out)
        return 0
    if shutil.which("git") is None or shutil.which("uv") is None:
        raise SystemExit("error: --before needs git and uv on PATH")
    return compare_revisions(args.before, args.after, args.keep, ignored_columns(args.ignore))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Interrupted as interrupted:
        print(f"{interrupted}: stopped the demo, the API and the database", file=sys.stderr)
        sys.exit(130)
