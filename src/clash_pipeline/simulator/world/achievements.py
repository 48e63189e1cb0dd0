"""A player's achievements: each one's ``metric`` (see :data:`tables.ACHIEVEMENTS`) names
the quantity that drives its value."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from clash_pipeline.simulator import tables as T
from clash_pipeline.simulator.world.common import Json, counter
from clash_pipeline.simulator.world.players import PlayerDraws, Players, PlayerStatic


@dataclass(frozen=True, slots=True)
class _Context:
    ps: PlayerStatic
    draws: PlayerDraws
    players: Players
    ts: float
    metrics: dict[str, int]  # quantities the player body already computed, by metric name
    released: float  # when the achievement came out (counters start there)


def _counter_value(ctx: _Context, name: str) -> int:
    rate = T.COUNTER_RATES[name] * ctx.ps.activity * ctx.draws.counter_rates[name]
    return counter(rate, max(ctx.ps.created, ctx.released), ctx.ts)


#: "<prefix>:<argument>" metrics.
_PREFIXED: dict[str, Callable[[_Context, str], int]] = {
    "c": _counter_value,
    "flag": lambda ctx, hall: int(ctx.metrics["town_hall"] >= int(hall)),
    "bh_flag": lambda ctx, hall: int(ctx.metrics["builder_hall"] >= int(hall)),
}
#: Metrics derived from the others (or from the player's activity).
_DERIVED: dict[str, Callable[[_Context], int]] = {
    "storage": lambda ctx: max(1, min(18, round(ctx.metrics["town_hall"] * 1.1))),
    "clan_castle": lambda ctx: max(1, min(12, ctx.metrics["town_hall"] - 4)),
    "campaign": lambda ctx: min(300, 10 + counter(0.12 * ctx.ps.activity, ctx.ps.created, ctx.ts)),
    "best_league": lambda ctx: T.legacy_league_index(ctx.metrics["best_trophies"]),
    "gear_up": lambda ctx: max(0, min(3, ctx.metrics["builder_hall"] - 6)),
    "best_tier": lambda ctx: ctx.players.best_tier(ctx.ps, ctx.ts),
}


def _value(ctx: _Context, metric: str) -> int:
    if metric in ctx.metrics:
        return ctx.metrics[metric]
    prefix, _, argument = metric.partition(":")
    if argument and prefix in _PREFIXED:
        return _PREFIXED[prefix](ctx, argument)
    derive = _DERIVED.get(metric)
    return derive(ctx) if derive is not None else 0


#: (achievement, release time) in the API's order.
_RELEASED = tuple(
    (ach, ach.released.timestamp() if ach.released else -math.inf) for ach in T.ACHIEVEMENTS
)


@lru_cache(maxsize=1024)
def _info(template: str, target: int) -> str:
    return template.format(target=target)


def achievements(
    players: Players,
    ps: PlayerStatic,
    ts: float,
    metrics: dict[str, int],
    *,
    progress_ts: float | None = None,
) -> list[Json]:
    """The ``achievements`` of a player body: those released by ``ts``, in the API's order,
    with their values as of ``progress_ts`` (the player's last session; default ``ts``)."""
    draws = players.draws(ps.tag)
    at = ts if progress_ts is None else progress_ts
    out = []
    for ach, released in _RELEASED:
        if ts < released:
            continue
        metric = ach.metric
        if metric in metrics:
            value = metrics[metric]
        else:
            value = _value(_Context(ps, draws, players, at, metrics, released), metric)
        targets = ach.targets
        stars = (value >= targets[0]) + (value >= targets[1]) + (value >= targets[2])
        target = targets[min(stars, 2)]
        out.append(
            {
                "name": ach.name,
                "stars": stars,
                "value": value,
                "target": target,
                "info": _info(ach.info, target),
                "completionInfo": ach.completion.format(value=value) if ach.completion else None,
                "village": ach.village,
            }
        )
    return out
