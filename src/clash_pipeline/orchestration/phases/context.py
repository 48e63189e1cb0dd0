"""The batch's context: settings from the environment, the database, the API."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

from pydantic import SecretStr

from clash_pipeline.clash_api.client import pacing_from_settings
from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.errors import ConfigError
from clash_pipeline.ingest.plan import PlanPolicy
from clash_pipeline.orchestration.model import RunContext
from clash_pipeline.orchestration.options import ApiSpec, PipelineOptions
from clash_pipeline.settings import Settings, load_settings, token_problem
from clash_pipeline.versions import schema_version

#: Name of the Prefect Secret block holding the API token when COC_API_TOKEN is unset.
TOKEN_SECRET_BLOCK = "coc-api-token"  # noqa: S105 - a block name, not a secret


def resolve_context(
    clan_tags: Iterable[str] | None,
    api: ApiSpec | None,
    options: PipelineOptions,
    *,
    flow_run_id: uuid.UUID | None = None,
    settings: Settings | None = None,
) -> tuple[RunContext, list[str]]:
    """Settings from the environment, the database (started and migrated), the API."""
    from clash_pipeline.project import project_dir
    from clash_pipeline.warehouse.access import resolve_access
    from clash_pipeline.warehouse.migrations import migrate

    settings = settings or load_settings()
    tags = [normalize_tag(t, kind="clan tag") for t in clan_tags] if clan_tags else []
    tags = list(dict.fromkeys(tags or settings.coc_clan_tags))
    if not tags:
        raise ConfigError(
            "no clan to ingest: COC_CLAN_TAGS is empty and no clan tag was given",
            hint="pass --clan '#TAG' (or the clan_tags parameter) or set COC_CLAN_TAGS",
        )
    access = resolve_access(settings)
    migrate(access.owner)
    ctx = RunContext(
        db_url=access.ingest,
        transform_url=access.transform,
        ops_url=access.ingest,
        home=settings.home,
        api=api or api_from_settings(settings),
        options=options,
        schema_version=schema_version(),
        project_dir=Path(options.dbt_project_dir) if options.dbt_project_dir else project_dir(),
        batch_id=uuid.uuid4(),
        flow_run_id=flow_run_id,
        requests_per_second=options.requests_per_second or settings.coc_requests_per_second,
        max_concurrency=options.max_concurrency or settings.coc_max_concurrency,
        request_timeout=settings.coc_timeout_seconds,
        request_retries=settings.coc_max_retries,
        pacing=pacing_from_settings(settings),
        plan_policy=PlanPolicy.from_settings(settings),
    )
    return ctx, tags


def api_from_settings(settings: Settings) -> ApiSpec:
    """The real API: the token from COC_API_TOKEN, else from the Prefect Secret block."""
    token = settings.api_token() or _token_from_secret_block()
    if not token:
        raise ConfigError(
            "COC_API_TOKEN is not set",
            hint="set COC_API_TOKEN (environment or .env), or store the token in a Prefect "
            f"Secret block named {TOKEN_SECRET_BLOCK!r}, or use --simulate",
        )
    return ApiSpec(base_url=settings.coc_api_base_url, token=SecretStr(token), source="api")


def _token_from_secret_block() -> str | None:
    try:
        from prefect.blocks.system import Secret

        block = Secret.load(TOKEN_SECRET_BLOCK)  # sync: resolve_context runs in a thread
        if not isinstance(block, Secret):
            return None
        value = block.get()
    except Exception:  # noqa: BLE001 - no server, no block, or no access: no token
        return None
    if not value:
        return None
    token = str(value).strip()
    problem = token_problem(token)
    if problem:
        raise ConfigError(
            f"the token in the Prefect Secret block {TOKEN_SECRET_BLOCK!r} is invalid: "
            f"it contains {problem}",
            hint="save the token again as one word of printable ASCII, or set COC_API_TOKEN",
        )
    return token
