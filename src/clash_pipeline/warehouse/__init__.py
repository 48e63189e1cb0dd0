"""The database layer: the embedded PostgreSQL, connecting, and migrations.

``resolve_database_url(settings)`` gives the URL to use (``DATABASE_URL`` or the
embedded server, started on demand); ``connect(url)`` opens a psycopg
connection with a one-line error; ``migrate(url)`` applies
``supabase/migrations``.
"""

from clash_pipeline.warehouse.connect import connect, redact_url, resolve_database_url
from clash_pipeline.warehouse.embedded import EmbeddedPostgres, EmbeddedStatus
from clash_pipeline.warehouse.migrations import (
    Migration,
    MigrationResult,
    applied_migrations,
    discover,
    migrate,
    schema_version,
)

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedStatus",
    "Migration",
    "MigrationResult",
    "applied_migrations",
    "connect",
    "discover",
    "migrate",
    "redact_url",
    "resolve_database_url",
    "schema_version",
]
