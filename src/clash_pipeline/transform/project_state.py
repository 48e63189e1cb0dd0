"""The dbt project as a restore point sees it: which builds must be full, which tables are models.

A build of the intermediate and mart models only is enough after a routine
ingestion; a change to staging models, seeds, macros, snapshots or the project
settings needs a full build, which :func:`project_fingerprint` detects. The
manifest of the last parse says which tables are models and how dbt writes them
(:func:`dbt_models`), which decides how each table is put back after a failure.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelInfo", "dbt_models", "project_fingerprint"]

# Changes to these parts of the project need a full build (staging views, seeds,
# macros, settings); intermediate and marts are rebuilt by every build anyway.
_INCREMENTAL_PATHS = ("models/intermediate/", "models/marts/")
_FULL_BUILD_PATHS = ("models/", "macros/", "seeds/", "snapshots/")
_FULL_BUILD_FILES = ("dbt_project.yml", "packages.yml", "dependencies.yml")
#: Materializations that leave no table behind to protect.
_NO_TABLE = ("ephemeral", "view", "materialized_view")


@dataclass(frozen=True)
class ModelInfo:
    """A table dbt builds: where, how (``table``, ``incremental``, ``snapshot``) and its key."""

    schema: str
    name: str
    materialized: str
    unique_key: list[str] | None


def project_fingerprint(project_dir: Path) -> str:
    """A hash of the parts of the dbt project that only a full build deploys.

    Staging models, seeds, macros, snapshots and the project settings change
    with releases; when their hash differs from the last published full build,
    the next build is a full one.
    """
    import dbt.version

    digest = hashlib.sha256(f"dbt {dbt.version.__version__}\n".encode())
    project_dir = Path(project_dir)
    for path in _full_build_files(project_dir):
        rel = path.relative_to(project_dir).as_posix()
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _full_build_files(project_dir: Path) -> list[Path]:
    """The files :func:`project_fingerprint` hashes, in a stable order."""
    paths: list[Path] = [project_dir / name for name in _FULL_BUILD_FILES]
    for top in {p.split("/")[0] for p in _FULL_BUILD_PATHS}:
        root = project_dir / top
        if root.is_dir():
            paths.extend(p for p in root.rglob("*") if p.is_file())
    return [
        path
        for path in sorted(set(paths))
        if path.is_file()
        and not path.relative_to(project_dir).as_posix().startswith(_INCREMENTAL_PATHS)
    ]


def dbt_models(manifest_path: Path) -> dict[tuple[str, str], ModelInfo] | None:
    """The project's models and snapshots by (schema, relation name), from a manifest."""
    try:
        manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    project = (manifest.get("metadata") or {}).get("project_name")
    models: dict[tuple[str, str], ModelInfo] = {}
    for node in (manifest.get("nodes") or {}).values():
        info = _model_info(node, project)
        if info is not None:
            models[(info.schema, info.name)] = info
    return models


def _model_info(node: dict[str, Any], project: str | None) -> ModelInfo | None:
    """A manifest node as a table to protect; None for what leaves no table of ours."""
    if node.get("resource_type") not in ("model", "snapshot"):
        return None
    if project and node.get("package_name") != project:
        return None
    config = node.get("config") or {}
    materialized = str(config.get("materialized") or "")
    if materialized in _NO_TABLE:
        return None
    key = config.get("unique_key")
    if node.get("resource_type") == "snapshot":
        key, materialized = "dbt_scd_id", "snapshot"
    keys = [key] if isinstance(key, str) else list(key) if key else None
    name = node.get("alias") or node["name"]
    return ModelInfo(node["schema"], name, materialized, keys)
