"""What every phase shares: the run's logger and the default retry rule."""

from __future__ import annotations

import logging

from clash_pipeline.errors import ConfigError

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

_fallback_log = logging.getLogger("clash_pipeline.orchestration")


def log() -> Logger:
    """Prefect's run logger inside a flow or task run, else a module logger."""
    try:
        from prefect import get_run_logger
        from prefect.exceptions import MissingContextError

        try:
            return get_run_logger()
        except MissingContextError:
            return _fallback_log
    except ImportError:  # pragma: no cover - prefect is a dependency
        return _fallback_log


def always_retriable(exc: BaseException) -> bool:
    """Another attempt may help, unless the configuration is wrong."""
    return not isinstance(exc, ConfigError)
