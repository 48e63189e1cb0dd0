"""One typed settings object, read from the environment and an optional ``.env``.

Every setting has an environment variable (the names users type); a missing or
invalid value raises :class:`~clash_pipeline.errors.ConfigError` with one line naming the
variable and what to do. No module-level settings object exists: callers pass
``Settings`` (or values taken from it) explicitly, so tests never patch globals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.errors import ClashPipelineError, ConfigError

DEFAULT_API_BASE_URL = "https://api.clashofclans.com/v1"

# Field name -> environment variable, for error messages.
_ENV_NAMES = {
    "coc_api_token": "COC_API_TOKEN",
    "coc_api_tokens": "COC_API_TOKENS",
    "coc_api_base_url": "COC_API_BASE_URL",
    "coc_clan_tags": "COC_CLAN_TAGS",
    "coc_requests_per_second": "COC_REQUESTS_PER_SECOND",
    "coc_max_concurrency": "COC_MAX_CONCURRENCY",
    "coc_timeout_seconds": "COC_TIMEOUT_SECONDS",
    "coc_max_retries": "COC_MAX_RETRIES",
    "coc_throttle_backoff": "COC_THROTTLE_BACKOFF",
    "coc_rate_recovery": "COC_RATE_RECOVERY",
    "coc_min_requests_per_second": "COC_MIN_REQUESTS_PER_SECOND",
    "coc_shared_pacing": "COC_SHARED_PACING",
    "coc_fetch_plan": "COC_FETCH_PLAN",
    "coc_clans_in_flight": "COC_CLANS_IN_FLIGHT",
    "coc_profile_max_age_hours": "COC_PROFILE_MAX_AGE_HOURS",
    "coc_war_check_hours": "COC_WAR_CHECK_HOURS",
    "database_url": "DATABASE_URL",
    "ingest_database_url": "INGEST_DATABASE_URL",
    "transform_database_url": "TRANSFORM_DATABASE_URL",
    "api_database_url": "API_DATABASE_URL",
    "clash_pipeline_home": "CLASH_PIPELINE_HOME",
    "clash_gx_dir": "CLASH_GX_DIR",
    "clash_monitor_roster_drop_share": "CLASH_MONITOR_ROSTER_DROP_SHARE",
    "clash_monitor_roster_drop_members": "CLASH_MONITOR_ROSTER_DROP_MEMBERS",
    "clash_monitor_zero_delta_runs": "CLASH_MONITOR_ZERO_DELTA_RUNS",
    "clash_monitor_duration_factor": "CLASH_MONITOR_DURATION_FACTOR",
    "clash_monitor_duration_floor_seconds": "CLASH_MONITOR_DURATION_FLOOR_SECONDS",
    "clash_monitor_failed_player_share": "CLASH_MONITOR_FAILED_PLAYER_SHARE",
    "clash_monitor_dropped_players": "CLASH_MONITOR_DROPPED_PLAYERS",
    "clash_monitor_freshness_hours": "CLASH_MONITOR_FRESHNESS_HOURS",
    "clash_alert_webhook_url": "CLASH_ALERT_WEBHOOK_URL",
}


class Settings(BaseSettings):
    """Settings of one process. Construct with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    coc_api_token: SecretStr | None = Field(
        default=None, description="Clash of Clans API token (developer.clashofclans.com)."
    )
    # A pool of keys (clash_api.keys.KeyPool; README "Configuration"), each paced on its own.
    coc_api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Several API tokens, comma-separated (a key pool)."
    )
    coc_api_base_url: str = Field(
        default=DEFAULT_API_BASE_URL, description="API base URL; point it at a proxy if needed."
    )
    coc_clan_tags: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Clan tags to ingest, comma-separated."
    )
    coc_requests_per_second: float = Field(default=10.0, gt=0, le=1000)
    coc_max_concurrency: int = Field(default=8, ge=1, le=256)
    coc_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    coc_max_retries: int = Field(default=4, ge=0, le=20)
    # Adaptive pacing (clash_api.ratelimit.AdaptivePacing; README "Configuration"): after a 429
    # the rate is multiplied by the backoff (1 = fixed pacing), then climbs back by the
    # recovery (req/s per second without a 429) up to COC_REQUESTS_PER_SECOND.
    coc_throttle_backoff: float = Field(default=0.5, gt=0, le=1)
    coc_rate_recovery: float = Field(default=0.2, gt=0, le=1000)
    coc_min_requests_per_second: float = Field(default=0.5, gt=0, le=1000)
    # Pacing shared by every process through PostgreSQL (clash_api.shared_pacing; README
    # "Deploy"): on, the requests of all processes using a key start on one grid at its rate.
    coc_shared_pacing: Literal["on", "off"] = Field(default="on")
    # Change-driven polling (clash_pipeline.ingest.plan; README "Change-driven polling"): an
    # unchanged member's profile is fetched again once it is this old; a clan not at war has
    # its current war checked this often (below a regular war's 23 h preparation day).
    # Clans fetched at once by one process (the others wait their turn): enough to keep
    # the keys busy, few enough that a run of thousands of clans holds little in memory.
    coc_clans_in_flight: int = Field(default=32, ge=1, le=1000)
    # ``full`` turns the planner off for every run (as ``--full`` does for one).
    coc_fetch_plan: Literal["changes", "full"] = Field(default="changes")
    coc_profile_max_age_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    coc_war_check_hours: float = Field(default=6.0, gt=0, lt=23)
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset means the embedded PostgreSQL."
    )
    # Least privilege with DATABASE_URL (README "Least privilege"): the jobs' own logins;
    # unset, the job switches to its role from DATABASE_URL's user.
    ingest_database_url: str | None = Field(
        default=None, description="Login of the ingest job (fetch, land, monitor)."
    )
    transform_database_url: str | None = Field(
        default=None, description="Login of the transform job (dbt)."
    )
    api_database_url: str | None = Field(
        default=None, description="Read-only login of the API and dashboard."
    )
    clash_pipeline_home: Path = Field(
        default=Path(".clash-pipeline"), description="Local state: embedded database, logs."
    )
    # The anomaly monitor (clash_pipeline.monitor; README "Monitor and alerts").
    clash_gx_dir: Path | None = Field(
        default=None, description="Great Expectations project folder; unset: the repo's gx/."
    )
    clash_monitor_roster_drop_share: float = Field(default=0.2, gt=0, le=1)
    clash_monitor_roster_drop_members: int = Field(default=5, ge=1, le=50)
    clash_monitor_zero_delta_runs: int = Field(default=6, ge=1, le=1000)
    clash_monitor_duration_factor: float = Field(default=3.0, gt=0, le=100)
    clash_monitor_duration_floor_seconds: float = Field(default=60.0, ge=0, le=86400)
    clash_monitor_failed_player_share: float = Field(default=0.1, ge=0, le=1)
    #: Profiles given up after the last retry (a partial run) that are tolerated: none.
    clash_monitor_dropped_players: int = Field(default=0, ge=0, le=50)
    clash_monitor_freshness_hours: float = Field(default=25.0, gt=0, le=24 * 365)
    clash_alert_webhook_url: SecretStr | None = Field(
        default=None, description="Slack-compatible webhook for alerts opening and resolving."
    )

    @field_validator("clash_alert_webhook_url", mode="before")
    @classmethod
    def _check_webhook_url(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str):
            parts = urlsplit(value.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be an http(s) URL such as https://hooks.slack.com/...")
            return value.strip()
        return value

    @field_validator("coc_api_token", mode="before")
    @classmethod
    def _check_token(cls, value: object) -> object:
        """Blank is unset; else one word of printable ASCII (what a JWT is).

        The message never contains the token, not even a piece of it.
        """
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            return value
        token = value.strip()
        if not token:
            return None
        problem = token_problem(token)
        if problem:
            raise ValueError(
                f"it contains {problem}; an API token is one word of printable ASCII "
                "(copy it again from developer.clashofclans.com, without quotes or spaces)"
            )
        return token

    @field_validator("coc_shared_pacing", mode="before")
    @classmethod
    def _lower_switch(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("coc_api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        """Comma-separated (or a list); blanks skipped, duplicates dropped, order kept.

        A bad token is named by its position in the list, never by its value.
        """
        if value is None:
            return []
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, (list, tuple)):
            raise ValueError("must be API tokens separated by commas")
        tokens: list[str] = []
        for position, item in enumerate(value, start=1):
            token = (item.get_secret_value() if isinstance(item, SecretStr) else str(item)).strip()
            problem = token_problem(token)
            if problem:
                raise ValueError(
                    f"key {position} contains {problem}; an API token is one word of printable "
                    "ASCII (copy it again from developer.clashofclans.com; separate keys with "
                    "commas)"
                )
            if token and token not in tokens:
                tokens.append(token)
        return tokens

    @field_validator("coc_api_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://api.clashofclans.com/v1")
        return value.strip().rstrip("/")

    @field_validator("coc_clan_tags", mode="before")
    @classmethod
    def _split_tags(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            tags: list[str] = []
            for item in value:
                tag = normalize_tag(item, kind="clan tag")
                if tag not in tags:
                    tags.append(tag)
            return tags
        raise ValueError("must be comma-separated clan tags such as #2PR8R8V8P,#9QL0C0YR")

    @field_validator(
        "database_url",
        "ingest_database_url",
        "transform_database_url",
        "api_database_url",
        mode="before",
    )
    @classmethod
    def _check_database_url(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str):
            scheme = urlsplit(value.strip()).scheme
            if scheme not in ("postgresql", "postgres"):
                raise ValueError("must be a postgresql:// URL")
            return value.strip()
        return value

    @property
    def home(self) -> Path:
        return self.clash_pipeline_home.expanduser().resolve()

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    def api_token(self) -> str | None:
        """The first token of the pool in clear, for an Authorization header only."""
        tokens = self.api_tokens()
        return tokens[0] if tokens else None

    def api_tokens(self) -> list[str]:
        """Every token in clear: COC_API_TOKENS, then COC_API_TOKEN (deduplicated, in order)."""
        tokens = [t.get_secret_value() for t in self.coc_api_tokens]
        if self.coc_api_token:
            tokens.append(self.coc_api_token.get_secret_value())
        return list(dict.fromkeys(tokens))


def token_problem(token: str) -> str | None:
    """What makes ``token`` unusable in an Authorization header, in words (never the token)."""
    for char in token:
        if char.isspace():
            return "a space or line break"
        if not char.isascii():
            return "a non-ASCII character"
        if not char.isprintable():
            return "a control character"
    return None


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (and ``.env``), or raise ConfigError in one line."""
    try:
        # pydantic validates the overrides at run time; their static types are the fields'.
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "settings"
        env = _ENV_NAMES.get(field, field.upper())
        reason = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        raise ConfigError(
            f"{env} is invalid: {reason}",
            hint=f"fix {env} in the environment or in .env",
        ) from None
    except ClashPipelineError as exc:  # InvalidTagError raised inside a validator
        raise ConfigError(
            f"COC_CLAN_TAGS is invalid: {exc.message}",
            hint="fix COC_CLAN_TAGS in the environment or in .env",
        ) from None
