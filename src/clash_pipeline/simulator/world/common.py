"""What every part of the world shares: time units, deterministic draws and a memo.

Everything the world says is a pure function of ``(seed, tag, simulated time)``; the
helpers here turn those inputs into times, picks and icons the same way every time.
"""

from __future__ import annotations

import math
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.errors import InvalidTagError
from clash_pipeline.simulator import tables as T
from clash_pipeline.simulator import timeline as tl
from clash_pipeline.simulator.codec import h64

Json = dict[str, Any]

DAY_S = 86400.0
HOUR_S = 3600.0
WEEK_S = 7 * DAY_S

EPOCH = tl.utc(2015, 1, 1).timestamp()
#: The reference instant of the town hall draws (a player's town hall "now").
TH_REF = tl.utc(2024, 1, 1).timestamp()
SPLIT = tl.SPLIT_INSTANT.timestamp()
FIRST_TOURNAMENT = tl.FIRST_TOURNAMENT_START.timestamp()
CAPITAL_FROM = tl.CLAN_CAPITAL_FROM.timestamp()

#: The badge of a clan the API does not name (no war, a league season's opponent).
DEFAULT_BADGE = "H39b_-WLZGtZVWQ0hqTkE-Tn2AaQnQWy_Iz4yBlvL0M"

K = TypeVar("K")
V = TypeVar("V")


def to_ts(t: datetime) -> float:
    return t.timestamp()


def to_dt(ts: float) -> datetime:
    return tl.from_epoch(ts)


def api_time(ts: float) -> str:
    return tl.api_time(to_dt(ts))


def badge(code: str) -> Json:
    return {
        "small": f"{T.ASSETS}/badges/70/{code}.png",
        "large": f"{T.ASSETS}/badges/512/{code}.png",
        "medium": f"{T.ASSETS}/badges/200/{code}.png",
    }


def icon_code(seed: int, *parts: int | str) -> str:
    """A 43-character icon hash, like the ones in the real asset URLs."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    out = []
    for i in range(4):
        h = h64(seed, "icon", *parts, i)
        for _ in range(11):
            h, digit = divmod(h, 64)
            out.append(alphabet[digit])
    return "".join(out[:43])


def weighted(rng: random.Random, weights: Mapping[K, float]) -> K:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def counter(rate: float, since: float, ts: float) -> int:
    """A lifetime counter: ``rate`` a day since ``since``, so it never goes down."""
    return max(0, math.floor(rate * (ts - since) / DAY_S))


def is_tag(tag: str) -> bool:
    try:
        return normalize_tag(tag) == tag
    except InvalidTagError:
        return False


#: Wars, raids and CWL wars memoised per world: a war log, a raid-season list or a league group
#: is rebuilt from its wars on every request, so the memos hold every clan's recent ones (4,096
#: made a world of 1,000 clans rebuild them on every request: bench/scale.py's simulator CPU).
WAR_MEMO_SIZE = 65536


class Memo(Generic[K, V]):
    """A small thread-safe LRU memo: computing twice on a race is harmless (deterministic)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, key: K) -> V | None:
        """The memoised value of ``key``, or None (computes nothing)."""
        with self._lock:
            return self._data.get(key)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()
        with self._lock:
            self._data[key] = value
            if len(self._data) > self._size:
                self._data.popitem(last=False)
        return value
