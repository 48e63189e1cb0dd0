"""Where the project's files are, in a checkout and in an installed wheel.

The pipeline needs files that are not Python modules: the dbt project
(``dbt_project.yml``, ``models/``, ``macros/``, ``seeds/``, ``snapshots/``,
``tests/dbt/``, ``profiles.yml.example``), the migrations
(``supabase/migrations/``), the committed Great Expectations context (``gx/``),
``prefect.yaml`` with the ``flows/`` entrypoints, and the dashboard's static
files. This module is the only one that knows where they are:

* in a **checkout** (``src/clash_pipeline`` two levels below a folder holding
  ``dbt_project.yml`` and ``pyproject.toml``) they are the repository's own
  files, so an analyst's edit of ``models/`` is what the next run builds;
* in an **installed wheel** they are the copy the wheel carries in
  ``clash_pipeline/_project`` (see ``[tool.hatch.build.targets.wheel.force-include]``
  in ``pyproject.toml``), read-only. What must be writable goes to the
  pipeline's home instead: dbt's target and logs (``<home>/dbt``, see
  :mod:`clash_pipeline.transform.dbt`) and the GX context, which is copied to
  ``<home>/gx`` (:func:`gx_context_dir`).

``CLASH_PROJECT_DIR`` points at another project folder (a fork of the dbt
project, say) and wins over both.
"""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path

from clash_pipeline.errors import ConfigError

__all__ = [
    "PACKAGE_DIR",
    "dbt_project_file",
    "flows_dir",
    "gx_context_dir",
    "is_checkout",
    "metric_catalogue_csv",
    "migrations_dir",
    "prefect_yaml",
    "profile_template",
    "project_dir",
    "static_dir",
]

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DIR = PACKAGE_DIR / "_project"
PROJECT_DIR_VARIABLE = "CLASH_PROJECT_DIR"


def _checkout_root() -> Path | None:
    root = PACKAGE_DIR.parents[1]
    if (root / "dbt_project.yml").is_file() and (root / "pyproject.toml").is_file():
        return root
    return None


@cache
def project_dir() -> Path:
    """The folder that holds ``dbt_project.yml`` and the other project files."""
    override = os.environ.get(PROJECT_DIR_VARIABLE)
    if override:
        root = Path(override).expanduser().resolve()
        if not (root / "dbt_project.yml").is_file():
            raise ConfigError(
                f"{PROJECT_DIR_VARIABLE}={override} has no dbt_project.yml",
                hint=f"point {PROJECT_DIR_VARIABLE} at a clash-pipeline project, or unset it",
            )
        return root
    checkout = _checkout_root()
    if checkout is not None:
        return checkout
    if (BUNDLED_DIR / "dbt_project.yml").is_file():
        return BUNDLED_DIR
    raise ConfigError(
        f"the project files (dbt_project.yml, models/, ...) are missing from {BUNDLED_DIR}",
        hint="reinstall clash-pipeline from its wheel, or run it from a checkout",
    )


def is_checkout() -> bool:
    """True when the project files are a checkout's own (editable), not the wheel's copy."""
    return project_dir() != BUNDLED_DIR


def dbt_project_file() -> Path:
    return project_dir() / "dbt_project.yml"


def profile_template() -> Path:
    return project_dir() / "profiles.yml.example"


def migrations_dir() -> Path:
    return project_dir() / "supabase" / "migrations"


def metric_catalogue_csv() -> Path:
    return project_dir() / "seeds" / "metric_catalogue.csv"


def prefect_yaml() -> Path:
    return project_dir() / "prefect.yaml"


def flows_dir() -> Path:
    return project_dir() / "flows"


def static_dir() -> Path:
    """The dashboard's HTML, JS and CSS (package data of :mod:`clash_pipeline.serving`)."""
    return PACKAGE_DIR / "serving" / "static"


def gx_context_dir(configured: Path | None, home: Path) -> Path:
    """The Great Expectations file context the monitor runs.

    ``configured`` (``CLASH_GX_DIR``) wins. In a checkout it is the committed
    ``gx/``. An installed wheel's copy is read-only, so it is copied to
    ``<home>/gx`` (refreshed when the wheel's files change; ``uncommitted/``,
    GX's results and Data Docs, is kept).
    """
    if configured is not None:
        return Path(configured).expanduser().resolve()
    source = project_dir() / "gx"
    if is_checkout():
        return source
    target = Path(home).expanduser().resolve() / "gx"
    _sync_tree(source, target)
    return target


def _sync_tree(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target`` where a file differs; never delete ``uncommitted/``."""
    for path in source.rglob("*"):
        if path.is_dir() or "uncommitted" in path.relative_to(source).parts:
            continue
        destination = target / path.relative_to(source)
        if destination.is_file() and destination.read_bytes() == path.read_bytes():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
