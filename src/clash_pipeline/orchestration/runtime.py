"""Prefect's environment for the command line: local state, offline, quiet.

Call :func:`configure_prefect` before Prefect is imported (Prefect reads its
settings and sets up logging at import time):

* ``PREFECT_HOME`` defaults to ``<CLASH_PIPELINE_HOME>/prefect``, so a fresh
  machine keeps Prefect's local state (its SQLite database, used by the
  temporary server that runs flows when no ``PREFECT_API_URL`` is set) beside the
  embedded PostgreSQL instead of in ``~/.prefect``;
* nothing is sent anywhere: Prefect's anonymous telemetry is off
  (``DO_NOT_TRACK``, ``PREFECT_SERVER_ANALYTICS_ENABLED``), so the temporary
  server works offline;
* the temporary server gets enough time to start on a small machine;
* ``quiet``: Prefect logs warnings and errors only (the command prints its own
  progress and summary).

Values already in the environment always win.

With no ``PREFECT_API_URL``, :func:`start_local_server` starts that temporary
server itself instead of leaving it to Prefect, so that it cannot outlive the
command: it dies with its parent (``PR_SET_PDEATHSIG``, even on ``kill -9``),
it is stopped when the command ends or is stopped by a signal, and a pid file
under ``PREFECT_HOME/local-servers`` lets the next command stop one that a
crash left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "LocalServer",
    "child_preexec",
    "configure_prefect",
    "quiet_console_tracebacks",
    "start_local_server",
]

_EPHEMERAL_STARTUP_SECONDS = "120"


def configure_prefect(home: Path, *, quiet: bool = True) -> dict[str, str]:
    """Set Prefect's environment defaults; return what was set."""
    defaults = {
        "PREFECT_HOME": str(Path(home) / "prefect"),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": _EPHEMERAL_STARTUP_SECONDS,
        # The run summary is the pipeline's own artifact; flow results need no storage.
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    }
    if quiet:
        defaults |= {
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        }
    applied: dict[str, str] = {}
    for name, value in defaults.items():
        if not os.environ.get(name):
            os.environ[name] = value
            applied[name] = value
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    return applied


class _ExpectedErrorsWithoutTraceback(logging.Filter):
    """Drop the stack trace of expected failures from console lines (the UI keeps it).

    After SIGTERM/SIGINT, Prefect's own lines (crashed tasks, a cancelled flow
    run) are dropped too: the command prints one line for the stop.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from clash_pipeline import shutdown

        if shutdown.requested() is not None and record.name.startswith("prefect"):
            return False  # a stop: Prefect's crash lines say nothing the command's line does not
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and _expected(exc):
            record.exc_info = None
            record.exc_text = None
        return True


def _expected(exc: BaseException) -> bool:
    import psycopg

    from clash_pipeline.errors import ClashPipelineError
    from clash_pipeline.shutdown import Cancelled

    return isinstance(exc, ClashPipelineError | psycopg.Error | Cancelled)


def quiet_console_tracebacks() -> None:
    """Console log lines of expected failures (bad tag, dbt failed, DB down) without traces.

    Call after Prefect is imported (it installs its console handler on the root logger).
    """
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _ExpectedErrorsWithoutTraceback) for f in handler.filters):
            handler.addFilter(_ExpectedErrorsWithoutTraceback())


# ------------------------------------------------------------------ the local Prefect server

_PR_SET_PDEATHSIG = 1
_SERVER_APP = "prefect.server.api.server:create_app"
_SERVER_DIR = "local-servers"


def child_preexec() -> None:
    """In a child before exec: die with the parent (Linux), even when it is killed with -9."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


@dataclass
class LocalServer:
    """Prefect's API server for the commands of this process (see :func:`start_local_server`)."""

    process: subprocess.Popen[bytes]
    api_url: str
    pid_file: Path
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """At once (a second signal): no waiting."""
        with contextlib.suppress(OSError):
            self.process.kill()
        self.pid_file.unlink(missing_ok=True)


_server: LocalServer | None = None


def start_local_server(prefect_home: Path, *, timeout: float | None = None) -> LocalServer:
    """Start Prefect's server on a free loopback port; set ``PREFECT_API_URL`` to it.

    One per process (later calls return the same). Servers left by a crashed
    command (their owner is gone) are stopped first.
    """
    global _server  # noqa: PLW0603 - one server per process
    if _server is not None and _server.process.poll() is None:
        return _server
    from clash_pipeline import shutdown

    folder = Path(prefect_home) / _SERVER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stop_orphaned_servers(prefect_home)
    port = _free_port()
    log_path = Path(prefect_home) / "local-server.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
            _server_command(port),
            env=os.environ | {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=child_preexec,  # noqa: PLW1509 - prctl only, before exec
            start_new_session=True,  # Ctrl-C reaches the command, which stops the server
        )
    pid_file = folder / f"{process.pid}.json"
    owner = {"owner": os.getpid(), "owner_started": _start_time(os.getpid())}
    pid_file.write_text(json.dumps({"pid": process.pid, "port": port} | owner))
    server = LocalServer(process, f"http://127.0.0.1:{port}/api", pid_file, log_path)
    unregister = shutdown.register_child(process.pid, server.kill)
    atexit.register(server.stop)
    atexit.register(unregister)
    try:
        _wait_until_healthy(server, timeout or _startup_seconds())
    except BaseException:
        server.stop()
        raise
    os.environ["PREFECT_API_URL"] = server.api_url
    _server = server
    return server


def _server_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        _SERVER_APP,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


def _startup_seconds() -> float:
    value = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
    try:
        return float(value) if value else float(_EPHEMERAL_STARTUP_SECONDS)
    except ValueError:
        return float(_EPHEMERAL_STARTUP_SECONDS)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_healthy(server: LocalServer, timeout: float) -> None:
    import httpx

    from clash_pipeline.errors import ClashPipelineError

    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise ClashPipelineError(
                f"Prefect's local server stopped at start (exit {server.process.returncode})",
                hint=f"see {server.log_path}, or set PREFECT_API_URL to a Prefect server",
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.api_url}/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise ClashPipelineError(
                f"Prefect's local server did not start within {timeout:.0f} s",
                hint=f"see {server.log_path}; a slow machine may need a higher "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
            )
        time.sleep(0.2)


def stop_orphaned_servers(prefect_home: Path) -> list[int]:
    """Stop local servers whose command is gone (a crash, ``kill -9``); their pids."""
    stopped = []
    for pid_file in sorted((Path(prefect_home) / _SERVER_DIR).glob("*.json")):
        try:
            info = json.loads(pid_file.read_text())
            pid, owner = int(info["pid"]), int(info["owner"])
        except (OSError, ValueError, KeyError, TypeError):
            pid_file.unlink(missing_ok=True)
            continue
        if owner != os.getpid() and _start_time(owner) == info.get("owner_started"):
            continue  # another command's server, still in use
        if _alive(pid) and _SERVER_APP in _cmdline(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                stopped.append(pid)
        pid_file.unlink(missing_ok=True)
    return stopped


def _start_time(pid: int) -> int | None:
    """When a process started (clock ticks since boot); ``None`` if it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _alive(pid: int) -> bool:
    return _start_time(pid) is not None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
