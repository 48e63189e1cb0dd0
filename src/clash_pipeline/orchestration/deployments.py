"""The deployments of ``prefect.yaml`` as Prefect objects (for ``clash-pipeline serve``).

``prefect deploy --all`` reads ``prefect.yaml`` itself; ``clash-pipeline serve``
reads the same file here, so both run the same flows on the same schedules. Cron
expressions can be overridden per flow (``--ingest-cron``, ``--monitor-cron``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clash_pipeline.errors import ConfigError
from clash_pipeline.project import prefect_yaml

INGEST_FLOW = "clash-ingest"
MONITOR_FLOW = "clash-monitor"
FANOUT_FLOW = "clash-fanout"


@dataclass
class DeploymentSpec:
    """One entry of ``prefect.yaml``'s ``deployments``."""

    name: str
    entrypoint: str
    flow: Any
    schedules: list[dict[str, Any]] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    concurrency_limit: int | None = None

    @property
    def flow_name(self) -> str:
        return str(self.flow.name)

    def to_deployment(self) -> Any:
        """A RunnerDeployment for ``prefect.serve`` (or ``.apply()`` to register it).

        Its entrypoint is the module path (``clash_pipeline.orchestration.flows.ingest``), so the
        runner imports the installed package whatever its working directory.
        """
        from prefect.schedules import Cron
        from prefect.types.entrypoint import EntrypointType

        schedules = [
            Cron(s["cron"], timezone=s.get("timezone") or "UTC", active=s.get("active", True))
            for s in self.schedules
        ]
        return self.flow.to_deployment(
            name=self.name,
            schedules=schedules or None,
            parameters=self.parameters or None,
            description=self.description,
            tags=self.tags or None,
            concurrency_limit=self.concurrency_limit,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )


def load_deployment_specs(
    path: Path | None = None,
    *,
    crons: dict[str, str | None] | None = None,
) -> list[DeploymentSpec]:
    """Read ``prefect.yaml``; ``crons`` maps a flow name to a cron that replaces its schedule."""
    path = Path(path) if path is not None else prefect_yaml()
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"cannot read {path}: {exc}", hint="run from a checkout of clash-pipeline"
        ) from None
    specs = []
    for entry in config.get("deployments") or []:
        flow = _load_flow(str(entry["entrypoint"]), Path(path).parent)
        schedules = [dict(s) for s in entry.get("schedules") or []]
        override = (crons or {}).get(flow.name)
        if override and schedules:  # a deployment without a schedule (child runs) keeps none
            _check_cron(override, flow.name)
            timezone = schedules[0].get("timezone", "UTC") if schedules else "UTC"
            schedules = [{"cron": override, "timezone": timezone, "active": True}]
        for schedule in schedules:
            _check_cron(str(schedule.get("cron")), flow.name)
        specs.append(
            DeploymentSpec(
                name=str(entry["name"]),
                entrypoint=str(entry["entrypoint"]),
                flow=flow,
                schedules=schedules,
                parameters=dict(entry.get("parameters") or {}),
                description=entry.get("description"),
                tags=list(entry.get("tags") or []),
                concurrency_limit=entry.get("concurrency_limit"),
            )
        )
    return specs


def _load_flow(entrypoint: str, root: Path) -> Any:
    """``flows/ingest.py:ingest`` -> the flow object, loaded from the file under ``root``.

    The entrypoint files only name flows defined in
    :mod:`clash_pipeline.orchestration.flows`, so the object (and the module path a
    served deployment records) is the installed package's.
    """
    file_part, _, attr = entrypoint.partition(":")
    path = root / file_part
    if not attr or not path.is_file():
        raise ConfigError(
            f"prefect.yaml: entrypoint {entrypoint!r} is not path/to/file.py:flow",
            hint="fix the deployment's entrypoint in prefect.yaml",
        )
    spec = importlib.util.spec_from_file_location(f"_clash_entrypoint_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"prefect.yaml: cannot load {path}", hint="check the entrypoint file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attr)


def _check_cron(expression: str, flow_name: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=expression)
    except ValidationError:
        raise ConfigError(
            f"invalid cron expression {expression!r} for {flow_name}",
            hint="use five fields, e.g. '5 * * * *' (minute 5 of every hour)",
        ) from None
