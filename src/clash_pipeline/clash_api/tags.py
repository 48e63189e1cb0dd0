"""Clash of Clans tags: normalisation and validation.

A tag is ``#`` followed by characters from ``0289PYLQGRJCUV``. User input is
normalised (spaces stripped, upper-cased, ``O`` read as ``0``, ``#`` added) and
anything else is rejected before a request is made, so nothing a user types can
reach a URL path unescaped.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from clash_pipeline.errors import InvalidTagError

TAG_ALPHABET = "0289PYLQGRJCUV"
TAG_MIN_LENGTH = 3
TAG_MAX_LENGTH = 14
_TAG_RE = re.compile(rf"^#[{TAG_ALPHABET}]{{{TAG_MIN_LENGTH},{TAG_MAX_LENGTH}}}$")


def normalize_tag(raw: object, *, kind: str = "tag") -> str:
    """Return the canonical form of a tag (``#2PP``) or raise :class:`InvalidTagError`.

    ``kind`` ("clan tag", "player tag") only flavours the error message.
    """
    if not isinstance(raw, str):
        raise InvalidTagError(
            f"invalid {kind}: expected text, got {type(raw).__name__}",
            hint="a tag looks like #2PR8R8V8P",
        )
    candidate = "".join(raw.split()).upper().replace("O", "0")
    if candidate.startswith("%23"):
        candidate = "#" + candidate[3:]
    if not candidate.startswith("#"):
        candidate = "#" + candidate
    if not _TAG_RE.fullmatch(candidate):
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise InvalidTagError(
            f"invalid {kind} {shown!r}: a tag is '#' followed by {TAG_MIN_LENGTH}-"
            f"{TAG_MAX_LENGTH} characters from {TAG_ALPHABET}",
            hint="copy the tag from the clan or player profile in the game, e.g. #2PR8R8V8P",
        )
    return candidate


def is_valid_tag(raw: object) -> bool:
    try:
        normalize_tag(raw)
    except InvalidTagError:
        return False
    return True


def tag_path(tag: str) -> str:
    """The URL path segment of a normalised tag (``#`` escaped as ``%23``)."""
    return quote(normalize_tag(tag), safe="")
