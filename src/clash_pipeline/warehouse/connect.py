"""Which PostgreSQL to use, and connecting to it with errors a user can act on.

``DATABASE_URL`` wins; without it the embedded PostgreSQL in
``CLASH_PIPELINE_HOME`` is started (or reused) and its URL returned. Passwords
never appear in messages: use :func:`redact_url` whenever a URL is shown.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from clash_pipeline.errors import DatabaseError
from clash_pipeline.warehouse.embedded import EmbeddedPostgres

if TYPE_CHECKING:
    from clash_pipeline.settings import Settings

CONNECT_TIMEOUT_SECONDS = 5
CONNECT_HINT = "check DATABASE_URL, or unset it to use the embedded database"

#: The databases this process resolved, by ``host:port/dbname`` (see :func:`connect_hint`):
#: the embedded servers (with their home) and the DATABASE_URL ones.
_EMBEDDED: dict[str, Path] = {}
_FROM_DATABASE_URL: set[str] = set()

_URI_SCHEMES = ("postgresql", "postgres")
_URI_IN_TEXT = re.compile(r"postgres(?:ql)?://[^\s\"']+")
_PASSWORD_PARAM = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)
_USERINFO_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_ONE_SERVER = re.compile(r'^connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed: ')

Row = TypeVar("Row")


def resolve_database_url(settings: Settings, *, start: bool = True) -> str:
    """The owner's URL: ``settings.database_url``, or the embedded server's ``clash_owner``
    login (started if ``start``). The jobs' URLs: ``warehouse.access.resolve_access``.

    With ``start=False`` the embedded URL is returned without starting the server;
    it raises DatabaseError if the embedded database was never initialised.
    """
    if settings.database_url:
        _FROM_DATABASE_URL.add(describe_target(settings.database_url))
        return settings.database_url
    url = EmbeddedPostgres(settings.home).login_urls(start=start)["owner"]
    remember_embedded(url, settings.home)
    return url


def remember_embedded(url: str, home: Path) -> None:
    """Note that ``url`` is the embedded server of ``home`` (for :func:`connect_hint`)."""
    _EMBEDDED[describe_target(url)] = home


def remember_database_url(url: str) -> None:
    """Note that ``url`` came from DATABASE_URL (for :func:`connect_hint`)."""
    _FROM_DATABASE_URL.add(describe_target(url))


def connect_hint(url: str) -> str:
    """What to check when ``url`` cannot be reached, naming what the user actually uses.

    The embedded server: its status and how to start it; DATABASE_URL only when
    the URL came from it (or, for a URL this process did not resolve, when it is set).
    """
    target = describe_target(url)
    if target in _EMBEDDED:
        return (
            f"the embedded PostgreSQL ({_EMBEDDED[target]}) stopped or does not answer: "
            "`clash-pipeline db status` shows it, `clash-pipeline db start` starts it again"
        )
    if target in _FROM_DATABASE_URL or os.environ.get("DATABASE_URL"):
        return CONNECT_HINT
    return f"check that the PostgreSQL server at {target} is running and reachable"


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """``psycopg.connect`` with a 5 s connect timeout and a one-line DatabaseError."""
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.Error as exc:
        reason = _reason(str(exc), url)
        hint = connect_hint(url)
        if "permission denied to set role" in reason:
            hint = (
                "grant the job roles to DATABASE_URL's user (grant clash_ingest, "
                "clash_transform, clash_readonly to <user>), or set the job's own URL; "
                "see README 'Least privilege'"
            )
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {describe_target(url)}: {reason}",
            hint=hint,
        ) from None


def url_with_setting(db_url: str, name: str, value: str) -> str:
    """``db_url`` whose sessions start with the setting ``name = value`` (libpq ``options``)."""
    option = f"-c {name}={value}"
    parts = urlsplit(db_url)
    if parts.scheme in ("postgresql", "postgres") and "://" in db_url:
        query = parse_qsl(parts.query, keep_blank_values=True)
        existing = [v for k, v in query if k == "options"]
        query = [(k, v) for k, v in query if k != "options"]
        query.append(("options", " ".join([*existing, option])))
        # libpq decodes %20, not "+", as a space
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
    params = conninfo_to_dict(db_url)
    existing_options = params.get("options")
    params["options"] = f"{existing_options} {option}" if existing_options else option
    return make_conninfo("", **params)


def one_row(cursor: psycopg.Cursor[Row]) -> Row:
    """The row of a query that always returns one (an aggregate, ``insert ... returning``).

    psycopg types ``fetchone`` as optional; this says "exactly one" once, and fails loudly if
    the query broke that promise.
    """
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("a query that returns one row returned none")
    return row


def redact_url(url: str) -> str:
    """The URL (or key=value DSN) with its password replaced by ``***``."""
    if not url.lower().startswith(tuple(f"{scheme}://" for scheme in _URI_SCHEMES)):
        return _PASSWORD_PARAM.sub(r"\1***", url)
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a broken IPv6 host: redact by pattern
        return _PASSWORD_PARAM.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1***@", url))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key == "password" for key, _ in pairs):
            pairs = [(key, "***" if key == "password" else value) for key, value in pairs]
            query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def describe_target(url: str) -> str:
    """``host:port/dbname`` of a URL or DSN, for messages (no user, no password)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "(unparseable DATABASE_URL)"
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = str(params.get("port") or "5432")
    dbname = str(params.get("dbname") or params.get("user") or "")
    hosts, ports = host.split(","), port.split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    target = ",".join(
        f"{h}:{p}" if not h.startswith("/") else h for h, p in zip(hosts, ports, strict=False)
    )
    return f"{target}/{dbname}"


def _reason(message: str, url: str) -> str:
    """libpq's message in one line, minus what the prefix already says, minus secrets."""
    lines = [line.strip() for line in message.strip().splitlines()]
    lines = [line for line in lines if line and not line.startswith("Is the server running")]
    text = "; ".join(lines) or "unknown error"
    text = text.removeprefix("connection failed: ").removeprefix("connection is bad: ")
    if len(_ONE_SERVER.findall(text)) == 1 and text.count("connection to server at") == 1:
        text = _ONE_SERVER.sub("", text)
    return scrub(text, url)


def scrub(text: str, url: str) -> str:
    """Remove the password of ``url`` (and any URL's password) from ``text``."""
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        password = None
    text = _URI_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)
    text = _PASSWORD_PARAM.sub(r"\1***", text)
    if password:
        text = text.replace(str(password), "***")
    return text
