"""Errors that end a command with one clear line instead of a stack trace.

Every expected failure (bad tag, missing token, unreachable database, malformed
file) raises a subclass of :class:`ClashPipelineError`. The CLI prints
``error: <message>`` and, when present, ``hint: <what to do>``, and exits non-zero.
Messages never contain the API token.
"""

from __future__ import annotations


class ClashPipelineError(Exception):
    """An expected failure with a message for the user and a hint on what to do."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(ClashPipelineError):
    """A missing or invalid setting."""

    exit_code = 2


class InvalidTagError(ClashPipelineError, ValueError):
    """A clan or player tag that is not a valid Clash of Clans tag."""

    exit_code = 2


class DatabaseError(ClashPipelineError):
    """The database cannot be reached or is not in the expected state."""


class MigrationError(DatabaseError):
    """A migration could not be applied, or an applied migration was edited."""
