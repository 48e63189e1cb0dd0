"""What a pipeline run is given: where the API is, and how hard to try.

Both are pydantic models so that Prefect can validate them as flow parameters
and show them in its UI. Neither holds a database URL (it carries a password):
flows read it from the environment through :class:`~clash_pipeline.settings.Settings`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

Trigger = Literal["cli", "schedule", "demo", "test", "api"]


class ApiSpec(BaseModel):
    """Where requests go. ``None`` as a flow parameter means: the API of the settings."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    #: The first key; ``tokens`` may hold the whole pool (``token`` is then one of them).
    token: SecretStr
    tokens: tuple[SecretStr, ...] = ()
    #: raw.fetch_runs.source of what is landed.
    source: Literal["api", "simulator"] = "api"
    #: ``simulator``: fetch times come from the simulator's clock (GET /_sim/state),
    #: so simulated days land as such.
    clock: Literal["system", "simulator"] = "system"

    def pool_tokens(self) -> list[str]:
        """Every key's token in clear, ``token`` first unless ``tokens`` orders them."""
        tokens = [t.get_secret_value() for t in self.tokens] or [self.token.get_secret_value()]
        if self.token.get_secret_value() not in tokens:
            tokens.insert(0, self.token.get_secret_value())
        return tokens


class PipelineOptions(BaseModel):
    """Retries, timeouts, locking and dbt settings of one pipeline run."""

    model_config = ConfigDict(frozen=True)

    trigger: Trigger = "schedule"

    # -- one run per clan at a time ---------------------------------------------------------
    #: When another run holds a clan: ``wait`` for it (up to ``lock_timeout_seconds``),
    #: or ``skip`` the clan at once. A clan still busy after the wait is skipped.
    on_busy: Literal["wait", "skip"] = "wait"
    lock_timeout_seconds: float = Field(default=600.0, ge=0)
    #: dbt builds are serialised per warehouse; how long a run waits for another's build.
    warehouse_lock_timeout_seconds: float = Field(default=3600.0, ge=0)

    # -- retries (per phase, with exponential backoff) and timeouts ----------------------------
    fetch_retries: int = Field(default=2, ge=0, le=10)
    land_retries: int = Field(default=2, ge=0, le=10)
    transform_retries: int = Field(default=1, ge=0, le=10)
    monitor_retries: int = Field(default=1, ge=0, le=10)
    #: First retry delay; each further retry waits twice as long (with jitter).
    retry_delay_seconds: float = Field(default=10.0, ge=0)
    fetch_timeout_seconds: float = Field(default=900.0, gt=0)
    land_timeout_seconds: float = Field(default=300.0, gt=0)
    transform_timeout_seconds: float = Field(default=3600.0, gt=0)
    monitor_timeout_seconds: float = Field(default=300.0, gt=0)

    # -- the API --------------------------------------------------------------------------------
    #: Override COC_REQUESTS_PER_SECOND / COC_MAX_CONCURRENCY for this run.
    requests_per_second: float | None = Field(default=None, gt=0, le=1000)
    max_concurrency: int | None = Field(default=None, ge=1, le=256)
    #: Fetch everything (every profile, every war endpoint), not only what changed since the
    #: clan's last run (clash_pipeline.ingest.plan; README "Change-driven polling").
    full: bool = False

    # -- dbt ------------------------------------------------------------------------------------
    #: False: land only, and leave building the marts to a later run (which catches up on
    #: every snapshot landed since its last build), e.g. fetch hourly, build every 4 hours.
    build_marts: bool = True
    #: Run the anomaly monitor (the GX checkpoint, ops.alerts) in the monitor phase.
    anomaly_checks: bool = True
    #: ``run``: models (with their contracts), seeds and snapshots; ``build``: also the
    #: data tests of what was built. Per-run data checks are the monitor phase's job;
    #: dbt's data tests run in CI, in ``clash-pipeline build`` and with ``build`` here.
    transform_mode: Literal["run", "build"] = "run"
    dbt_vars: dict[str, Any] = Field(default_factory=dict)
    #: Another dbt project (tests use a copy); default: the repository's.
    dbt_project_dir: str | None = None
    #: Print dbt's own log lines (default: errors only).
    dbt_verbose: bool = False

    def retry_delays(self, retries: int) -> list[float]:
        return [self.retry_delay_seconds * 2**attempt for attempt in range(max(retries, 1))]
