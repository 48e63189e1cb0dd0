"""Parsing response bodies: orjson, with the standard library for what orjson refuses.

Every body is parsed where it arrives (the client), at the door (the checks) and when it is
landed (its canonical form); orjson parses a 25 KB player profile several times faster than
``json``. The result is the same Python object: for what orjson refuses (``NaN``, a
byte-order mark, UTF-16) ``json.loads`` decides, so a body is accepted or refused exactly as
before; a body with a run of 19 digits or more goes to ``json.loads`` too, because orjson reads
integers beyond 64 bits as floats.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_TEXT = re.compile(r"[0-9]{19}")


def loads(body: str | bytes) -> Any:
    """``json.loads(body)``, faster."""
    long_digits = _LONG_DIGITS if isinstance(body, bytes) else _LONG_DIGITS_TEXT
    if long_digits.search(body):  # type: ignore[arg-type]
        return json.loads(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)
