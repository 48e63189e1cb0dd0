"""Fixtures for the simulated Clash of Clans API (clash_pipeline.simulator).

* ``sim_api``: a fresh server per test (seed 7, token "test-token", frozen clock at
  the default start, 2026-11-02T08:00Z, the default activity: each member plays in a
  given hour with probability ``SIM_ACTIVITY``); change its clock and faults freely.
* ``sim_api_session``: one server for the whole session; read from it, but do not
  change its clock or faults (use ``sim_api`` for that).
* ``sim_client``: an httpx client on ``sim_api`` with the token set.
* :func:`make_sim_client`: the same for any server (and any token).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from clash_pipeline.simulator import SimulatedClashApi
from clash_pipeline.simulator.world import DEFAULT_ACTIVITY_PER_HOUR

SIM_SEED = 7
SIM_TOKEN = "test-token"  # noqa: S105 - the simulator's token opens nothing else
SIM_ACTIVITY = DEFAULT_ACTIVITY_PER_HOUR  # the chance that a member plays in a given hour


def make_sim_client(
    api: SimulatedClashApi, *, token: str | None = SIM_TOKEN, timeout: float = 10.0, **kwargs: Any
) -> httpx.Client:
    """A sync httpx client on ``api.base_url`` sending ``Authorization: Bearer <token>``.

    ``token=None`` sends no Authorization header. Close it (or use ``with``).
    """
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.Client(base_url=api.base_url, headers=headers, timeout=timeout, **kwargs)


@pytest.fixture
def sim_api() -> Iterator[SimulatedClashApi]:
    with SimulatedClashApi(seed=SIM_SEED, token=SIM_TOKEN, activity_per_hour=SIM_ACTIVITY) as api:
        yield api


@pytest.fixture(scope="session")
def sim_api_session() -> Iterator[SimulatedClashApi]:
    with SimulatedClashApi(seed=SIM_SEED, token=SIM_TOKEN, activity_per_hour=SIM_ACTIVITY) as api:
        yield api


@pytest.fixture
def sim_client(sim_api: SimulatedClashApi) -> Iterator[httpx.Client]:
    with make_sim_client(sim_api) as client:
        yield client
