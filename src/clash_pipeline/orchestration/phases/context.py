"""The batch's context: settings from the environment, the database, the API."""

from __future__ import annotations

import json
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
#: Name of the Prefect Secret block holding a pool of API tokens (a list).
TOKENS_SECRET_BLOCK = "coc-api-tokens"  # noqa: S105 - a block name, not a secret


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
        shared_pacing=settings.coc_shared_pacing == "on",
        clans_in_flight=settings.coc_clans_in_flight,
        plan_policy=PlanPolicy.from_settings(settings),
    )
    return ctx, tags


def api_from_settings(settings: Settings) -> ApiSpec:
    """The real API: the keys of COC_API_TOKENS / COC_API_TOKEN, else of the Prefect Secret
    blocks ``coc-api-tokens`` (a list) and ``coc-api-token`` (one token)."""
    tokens = settings.api_tokens() or _tokens_from_secret_blocks()
    if not tokens:
        raise ConfigError(
            "COC_API_TOKEN is not set",
            hint="set COC_API_TOKEN or COC_API_TOKENS (environment or .env), or store the keys "
            f"in a Prefect Secret block named {TOKENS_SECRET_BLOCK!r} (a list) or "
            f"{TOKEN_SECRET_BLOCK!r}, or use --simulate",
        )
    return ApiSpec(
        base_url=settings.coc_api_base_url,
        token=SecretStr(tokens[0]),
        tokens=tuple(SecretStr(t) for t in tokens),
        source="api",
    )


def _tokens_from_secret_blocks() -> list[str]:
    """The pool of ``coc-api-tokens`` then the token of ``coc-api-token``, deduplicated."""
    tokens = [*_secret_block_tokens(TOKENS_SECRET_BLOCK), *_secret_block_tokens(TOKEN_SECRET_BLOCK)]
    return list(dict.fromkeys(tokens))


def _secret_block_tokens(name: str) -> list[str]:
    """A Secret block's tokens: a JSON list, or a string (comma-separated); [] if none."""
    try:
        from prefect.blocks.system import Secret

        block = Secret.load(name)  # sync: resolve_context runs in a thread
        if not isinstance(block, Secret):
            return []
        value = block.get()
    except Exception:  # noqa: BLE001 - no server, no block, or no access: no token
        return []
    return parse_secret_tokens(value, name)


def parse_secret_tokens(value: object, name: str) -> list[str]:
    """The tokens of a Secret block's value (a list, or a comma-separated string), checked;
    a bad one is named by its position in the block, never by its value."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except ValueError:
                raise _bad_block(name, "it is not a JSON list of tokens") from None
        else:
            value = stripped.split(",")
    if not value:
        return []
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise _bad_block(name, "it must hold a token, or a list of tokens")
    tokens: list[str] = []
    for position, raw in enumerate(value, start=1):
        token = raw.strip()
        problem = token_problem(token)
        if problem:
            raise _bad_block(name, f"key {position} contains {problem}")
        if token and token not in tokens:
            tokens.append(token)
    return tokens


def _bad_block(name: str, problem: str) -> ConfigError:
    return ConfigError(
        f"the Prefect Secret block {name!r} is invalid: {problem}",
        hint="save the keys again as a JSON list of tokens (each one word of printable ASCII), "
        "or set COC_API_TOKENS",
    )
