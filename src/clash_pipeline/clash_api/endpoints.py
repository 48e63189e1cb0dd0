"""The endpoints the pipeline reads and how their paths are built.

A path is only ever built from a validated tag
(:func:`~clash_pipeline.clash_api.tags.normalize_tag`) and checked query parameters, so nothing a
user types reaches a URL unescaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import httpx

from clash_pipeline.clash_api.tags import normalize_tag, tag_path
from clash_pipeline.errors import InvalidTagError

__all__ = ["ENDPOINTS", "build_path", "display_template", "limit_params", "tag_kind"]

ENDPOINTS: dict[str, str] = {
    "clan": "/clans/{tag}",
    "clan_members": "/clans/{tag}/members",
    "player": "/players/{tag}",
    "warlog": "/clans/{tag}/warlog",
    "currentwar": "/clans/{tag}/currentwar",
    "leaguegroup": "/clans/{tag}/currentwar/leaguegroup",
    "cwl_war": "/clanwarleagues/wars/{tag}",
    "capitalraidseasons": "/clans/{tag}/capitalraidseasons",
    "leaguetiers": "/leaguetiers",
    "leagues": "/leagues",
}

# What kind of tag each endpoint takes (for error messages and the displayed path template).
_TAG_KINDS: dict[str, str] = {"player": "player", "cwl_war": "war"}
# The API sends war tag "#0" for CWL wars that are not scheduled yet.
_PLACEHOLDER_WAR_TAGS = frozenset({"#0", "0", "%230"})
_PARAM_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


def tag_kind(endpoint: str) -> str:
    """``clan``, ``player`` or ``war``: what the endpoint's ``{tag}`` names."""
    return _TAG_KINDS.get(endpoint, "clan")


def display_template(endpoint: str) -> str:
    """The path as the API documents it (``/players/{playerTag}``), for error messages."""
    return ENDPOINTS[endpoint].replace("{tag}", "{" + tag_kind(endpoint) + "Tag}")


def build_path(
    endpoint: str, tag: str | None, params: Mapping[str, str | int | None] | None
) -> tuple[str | None, str]:
    """(normalised resource tag, path with query) of one request; raises before anything is sent."""
    try:
        template = ENDPOINTS[endpoint]
    except KeyError:
        raise ValueError(f"unknown endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}") from None
    resource_tag: str | None = None
    if "{tag}" in template:
        resource_tag = _resource_tag(endpoint, tag)
        path = template.format(tag=tag_path(resource_tag))
    else:
        if tag is not None:
            raise ValueError(f"endpoint {endpoint!r} takes no tag")
        path = template
    query = _encode_params(params)
    return resource_tag, f"{path}?{query}" if query else path


def _resource_tag(endpoint: str, tag: str | None) -> str:
    kind = f"{tag_kind(endpoint)} tag"
    if tag is None:
        raise InvalidTagError(f"{endpoint} needs a {kind}", hint="e.g. #2PR8R8V8P")
    if (
        endpoint == "cwl_war"
        and isinstance(tag, str)
        and "".join(tag.split()).upper() in _PLACEHOLDER_WAR_TAGS
    ):
        raise InvalidTagError(
            "war tag #0 is the placeholder for a CWL war that is not scheduled yet",
            hint="skip wars tagged #0 in the league group; fetch them once they get a tag",
        )
    return normalize_tag(tag, kind=kind)


def limit_params(limit: int | None) -> dict[str, str | int] | None:
    """The ``limit`` query parameter of the paged endpoints, checked."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    return {"limit": limit}


def _encode_params(params: Mapping[str, str | int | None] | None) -> str:
    if not params:
        return ""
    clean: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if not isinstance(name, str) or not _PARAM_NAME_RE.fullmatch(name):
            raise ValueError(f"invalid query parameter name {name!r}")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"query parameter {name} must be text or an integer")
        clean[name] = str(value)
    return str(httpx.QueryParams(clean))
