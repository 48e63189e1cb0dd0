"""The embedded PostgreSQL: start, reuse, status, stop, persistence, concurrency, ports.

Starting a server costs about a second, so the tests share one module-scoped
home where they can (in order: start, reuse, status, stop/start, port change).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from clash_pipeline.errors import DatabaseError
from clash_pipeline.settings import load_settings
from clash_pipeline.warehouse.connect import connect, redact_url, resolve_database_url
from clash_pipeline.warehouse.embedded import EmbeddedPostgres
from clash_pipeline.warehouse.postgres_programs import bin_dir

ROOT = Path(__file__).resolve().parents[1]


def _postmasters(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] == "postgres" and str(data_dir) in cmdline:
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> EmbeddedPostgres:
    # Longer than the 107-byte unix socket limit, and with a space: neither may matter.
    home = (
        tmp_path_factory.mktemp("embedded-home") / ("a-rather-long-folder-name-" * 5) / "clash home"
    )
    assert len(str(home / "pgdata" / ".s.PGSQL.54321")) > 107
    server = EmbeddedPostgres(home)
    yield server
    server.stop()


def test_status_before_first_start(tmp_path):
    server = EmbeddedPostgres(tmp_path / "never")
    status = server.status()
    assert status.initialized is False
    assert status.running is False
    assert status.url is None and status.pid is None and status.port is None
    assert status.data_dir == tmp_path / "never" / "pgdata"
    assert status.server_version is not None and status.server_version.startswith("18")
    assert server.stop() is False
    with pytest.raises(DatabaseError, match="not initialised"):
        server.url()


def test_first_start_initialises_and_serves(embedded):
    url = embedded.start()

    assert url.startswith("postgresql://clash:") and url.endswith("/clash")
    assert "@127.0.0.1:" in url
    with connect(url) as conn:
        version = conn.execute("select version()").fetchone()[0]
        settings = dict(
            conn.execute(
                "select name, setting from pg_settings where name in"
                " ('listen_addresses', 'unix_socket_directories', 'server_encoding', 'TimeZone')"
            ).fetchall()
        )
        is_superuser = conn.execute("select rolsuper from pg_roles where rolname = 'clash'")
        assert is_superuser.fetchone() == (True,)
    assert version.startswith("PostgreSQL 18")
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "server_encoding": "UTF8",
        "TimeZone": "UTC",
    }
    state = json.loads(embedded.state_file.read_text())
    assert {"port", "user", "password", "database"} <= state.keys()
    assert stat.S_IMODE(embedded.state_file.stat().st_mode) == 0o600
    assert state["password"] in url
    assert embedded.log_file.exists()
    assert state["password"] not in embedded.log_file.read_text()
    # usable by other tools too
    psql = subprocess.run(
        [str(bin_dir() / "psql"), url, "-Atc", "select current_database()"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert psql.stdout.strip() == "clash", psql.stderr


def test_second_start_reuses_the_running_server(embedded):
    url = embedded.start()
    pid = embedded.status().pid

    started = time.perf_counter()
    again = embedded.start()
    elapsed = time.perf_counter() - started

    assert again == url
    assert elapsed < 0.5
    assert embedded.status().pid == pid
    assert len(_postmasters(embedded.data_dir)) == 1


def test_status_of_a_running_server(embedded):
    url = embedded.start()
    status = embedded.status()
    assert status.initialized and status.running
    assert status.url == url == embedded.url()
    assert status.port == int(url.rsplit(":", 1)[1].split("/")[0])
    assert status.pid is not None and psutil.pid_exists(status.pid)
    assert status.data_dir == embedded.data_dir
    assert status.server_version.startswith("18.")


def test_resolve_database_url(embedded):
    embedded.start()
    # the owner's login, not the bootstrap superuser's
    url = embedded.login_urls()["owner"]
    assert url.startswith("postgresql://clash_owner:")
    assert resolve_database_url(load_settings(clash_pipeline_home=embedded.home)) == url
    assert (
        resolve_database_url(load_settings(clash_pipeline_home=embedded.home), start=False) == url
    )
    external = "postgresql://u:p@db.example:5432/x"
    assert resolve_database_url(load_settings(database_url=external)) == external


def test_stop_then_start_keeps_the_data(embedded):
    url = embedded.start()
    with connect(url) as conn:
        conn.execute("create table kept (note text)")
        conn.execute("insert into kept values ('still here')")
        conn.commit()
    pid = embedded.status().pid

    assert embedded.stop() is True
    status = embedded.status()
    assert status.running is False and status.pid is None and status.initialized
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert embedded.stop() is False

    assert embedded.start() == url
    with connect(url) as conn:
        assert conn.execute("select note from kept").fetchall() == [("still here",)]


def test_taken_port_moves_the_server_and_updates_the_state(embedded):
    old_url = embedded.start()
    old_port = embedded.status().port
    embedded.stop()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR: the old server's connections may linger in TIME_WAIT.
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", old_port))
        blocker.listen(1)

        new_url = embedded.start()
    finally:
        blocker.close()

    new_port = embedded.status().port
    assert new_port != old_port
    assert json.loads(embedded.state_file.read_text())["port"] == new_port
    assert new_url == old_url.replace(f":{old_port}/", f":{new_port}/")
    with connect(new_url) as conn:
        assert conn.execute("select count(*) from kept").fetchone() == (1,)


def test_failed_start_reports_the_log_tail(embedded):
    embedded.stop()
    broken = EmbeddedPostgres(embedded.home, server_settings={"shared_buffers": "lots"})

    with pytest.raises(DatabaseError) as excinfo:
        broken.start()

    message = excinfo.value.message
    assert "did not start" in message
    assert 'invalid value for parameter "shared_buffers"' in message
    assert str(embedded.log_file) in (excinfo.value.hint or "")
    assert json.loads(embedded.state_file.read_text())["password"] not in str(excinfo.value)
    assert embedded.status().running is False
    embedded.start()  # the normal settings work again
    assert embedded.status().running is True


def test_concurrent_starts_make_one_server(tmp_path):
    home = tmp_path / "race"
    script = (
        "import sys; from pathlib import Path; "
        "from clash_pipeline.warehouse.embedded import EmbeddedPostgres; "
        "print(EmbeddedPostgres(Path(sys.argv[1])).start())"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(home)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    urls: list[str] = []
    errors: list[BaseException] = []

    def start_in_thread() -> None:
        try:
            urls.append(EmbeddedPostgres(home).start())
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=start_in_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join(timeout=120)
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            urls.append(out.strip().splitlines()[-1])

        assert errors == []
        assert len(urls) == 5 and len(set(urls)) == 1
        assert len(_postmasters(home / "pgdata")) == 1
        with connect(urls[0]) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        EmbeddedPostgres(home).stop()


def test_connect_to_a_closed_port_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://clash:TopSecret123@127.0.0.1:{port}/clash"

    with pytest.raises(DatabaseError) as excinfo:
        connect(url)

    error = excinfo.value
    assert error.message.startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{port}/clash: ")
    assert "refused" in error.message.lower()
    # a URL this process did not resolve, DATABASE_URL unset: the hint names the server
    assert error.hint == (
        f"check that the PostgreSQL server at 127.0.0.1:{port}/clash is running and reachable"
    )
    assert "TopSecret123" not in str(error)
    assert error.__cause__ is None and error.__suppress_context__

    monkeypatch.setenv("DATABASE_URL", url)  # the URL is DATABASE_URL's: the hint names it
    with pytest.raises(DatabaseError) as excinfo:
        connect(url)
    assert excinfo.value.hint == "check DATABASE_URL, or unset it to use the embedded database"


def test_connect_error_with_a_broken_url_hides_the_password():
    with pytest.raises(DatabaseError) as excinfo:
        connect("postgresql://clash:TopSecret123@[::1:5432/clash")
    assert "TopSecret123" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://clash:s3cret@127.0.0.1:5432/clash",
            "postgresql://clash:***@127.0.0.1:5432/clash",
        ),
        (
            "postgres://u:p%40ss@h1:1,h2:2/db?sslmode=require",
            "postgres://u:***@h1:1,h2:2/db?sslmode=require",
        ),
        ("postgresql://u@h/db?password=s3cret", "postgresql://u@h/db?password=***"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("host=h password=s3cret dbname=x", "host=h password=*** dbname=x"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_unreadable_state_file_is_a_clear_error(tmp_path):
    home = tmp_path / "corrupt"
    home.mkdir()
    (home / "embedded.json").write_text("{not json")
    with pytest.raises(DatabaseError, match="unreadable"):
        EmbeddedPostgres(home).start()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another account")
def test_as_root_the_server_runs_as_an_unprivileged_account(embedded):
    embedded.start()
    owner = psutil.Process(embedded.status().pid).username()
    assert owner == "embedded_postgres"
    assert embedded.data_dir.stat().st_uid != 0
    assert embedded.state_file.stat().st_uid == 0  # the password stays root's
