"""A simulated Clash of Clans API: a real HTTP server on loopback with fault injection.

Used by the demo (``clash-pipeline demo``), the tests and the benchmarks::

    from clash_pipeline.simulator import SimulatedClashApi

    with SimulatedClashApi(seed=7, token="t") as api:
        httpx.get(f"{api.base_url}/clans/%232PR8R8V8P", headers={"Authorization": "Bearer t"})
        api.clock.advance(timedelta(days=1))
        api.faults.push("/members", 503, count=2)
"""

from clash_pipeline.simulator.clock import DEFAULT_START, SimClock
from clash_pipeline.simulator.faults import FaultConfig, ScriptedFault, TokenBucket
from clash_pipeline.simulator.server import SimulatedClashApi, serve_forever
from clash_pipeline.simulator.stats import ServerStats
from clash_pipeline.simulator.timeline import SPLIT_INSTANT
from clash_pipeline.simulator.world import World

__all__ = [
    "DEFAULT_START",
    "SPLIT_INSTANT",
    "FaultConfig",
    "ScriptedFault",
    "ServerStats",
    "SimClock",
    "SimulatedClashApi",
    "TokenBucket",
    "World",
    "serve_forever",
]
