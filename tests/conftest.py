"""Shared pytest configuration.

Fixtures live in ``tests/plugins/`` (one module per area) so that each area can
grow without touching the others.
"""

pytest_plugins = [
    "tests.plugins.db_fixtures",
    "tests.plugins.sim_fixtures",
    "tests.plugins.dbt_fixtures",
    "tests.plugins.prefect_fixtures",
]
