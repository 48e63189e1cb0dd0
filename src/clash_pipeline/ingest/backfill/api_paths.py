"""API request paths: which endpoint and tag a saved request URL or path names.

An envelope or manifest may say which request a body answered
(``/clanwarleagues/wars/%238QJ2LPV0Y``); that path beats the body's shape for
the endpoint and is the only source of a CWL war's tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from clash_pipeline.clash_api.client import ENDPOINTS

_MAX_URL_CHARS = 2000

_REQUEST_PATHS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/clans/([^/]+)$"), "clan"),
    (re.compile(r"^/clans/([^/]+)/members$"), "clan_members"),
    (re.compile(r"^/clans/([^/]+)/warlog$"), "warlog"),
    (re.compile(r"^/clans/([^/]+)/currentwar$"), "currentwar"),
    (re.compile(r"^/clans/([^/]+)/currentwar/leaguegroup$"), "leaguegroup"),
    (re.compile(r"^/clans/([^/]+)/capitalraidseasons$"), "capitalraidseasons"),
    (re.compile(r"^/players/([^/]+)$"), "player"),
    (re.compile(r"^/clanwarleagues/wars/([^/]+)$"), "cwl_war"),
    (re.compile(r"^/leaguetiers(?:/[^/]+)?$"), "leaguetiers"),
    (re.compile(r"^/leagues(?:/[^/]+)?$"), "leagues"),
)


def request_path(value: object) -> str | None:
    """The API path (with query) of a request URL or path; None if it is not one."""
    if not isinstance(value, str) or len(value) > _MAX_URL_CHARS:
        return None
    parts = urlsplit(value.strip())
    path = parts.path
    if "/v1/" in path:
        path = path[path.index("/v1/") + 3 :]
    if not path.startswith("/") or endpoint_of_path(path) is None:
        return None
    return path + (f"?{parts.query}" if parts.query else "")


def endpoint_of_path(path: str) -> tuple[str, str | None] | None:
    """(endpoint, tag as written in the path) of an API path; None if it is no API path."""
    bare = path.split("?", 1)[0].rstrip("/")
    for pattern, endpoint in _REQUEST_PATHS:
        match = pattern.match(bare)
        if match:
            tag = (
                unquote(match.group(1))
                if match.groups() and "{tag}" in ENDPOINTS[endpoint]
                else None
            )
            return endpoint, tag
    return None


@dataclass(frozen=True)
class Request:
    """The request a body answered, when a manifest or envelope says (else all None)."""

    path: str | None = None
    endpoint: str | None = None
    tag: str | None = None  # as written in the path, not yet validated

    @classmethod
    def of(cls, path: str | None) -> Request:
        """The request of an API path already checked by :func:`request_path`."""
        found = endpoint_of_path(path) if path else None
        if found is None:
            return cls(path)
        return cls(path, *found)
