"""The dbt project's conventions, checked on dbt's manifest (no database).

What dbt-project-evaluator would check, as plain pytest over
``target/manifest.json`` (``dbt parse`` through :func:`run_dbt`), so that every
model added later is held to the same rules (STYLE.md, "dbt"):

- names by layer: ``staging/<source>/stg_<source>__<entity>`` (and
  ``base_<source>__<entity>`` under ``base/``), ``intermediate/int_<entity>_<verb>``
  whose last word is a past participle, marts without a layer prefix;
- ``source()`` only in the staging layer; a ``stg_`` model reads one source
  table (or base models of its own source), a base model the tables of its own
  source only;
- a primary-key test on every model: ``unique`` + ``not_null`` on one column,
  or ``unique_combination_of_columns`` (macros/coc_generic_tests.sql);
- freshness on every source table (or a reason here why not);
- a description on every model;
- a description on every column a source table or a model has in the database
  (the sources' columns against a freshly migrated database here; the models'
  against a built warehouse in tests/test_data_test_windows.py);
- no data test whose window is the wall clock (``now()``): windows end at the
  newest data (``__recent_window__``, macros/recent_window.sql).

Each rule is a function returning the offending nodes, so the same function is
checked against a small fabricated manifest that breaks it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from clash_pipeline.transform.dbt import run_dbt

Manifest = dict[str, Any]
Node = dict[str, Any]

PROJECT = "clash_pipeline"
LAYERS = ("staging", "intermediate", "marts")
# Past participles that do not end in -ed, allowed as an intermediate model's verb.
IRREGULAR_VERBS = frozenset({"built", "split", "kept", "chosen", "drawn", "run", "set"})
# Words that must not start a mart's name: marts are named in plain English.
LAYER_PREFIXES = ("stg_", "base_", "int_", "fct_", "dim_", "mart_")
PRIMARY_KEY_TESTS = frozenset({"unique_combination_of_columns"})
# Source tables without freshness, each with the reason.
FRESHNESS_EXEMPT = {
    "source.clash_pipeline.coc.payloads": (
        "content-addressed bodies: an unchanged clan adds none, so a quiet table is "
        "not a stale one (fetch_runs and fetch_log carry freshness)"
    ),
    "source.clash_pipeline.ops.held_runs": (
        "runs held back after a failing data test: empty while nothing is held"
    ),
}
# Sources a staging model of another folder may read, each with the reason.
CROSS_SOURCE_READS = {
    ("base_coc__fetch_runs", "source.clash_pipeline.ops.held_runs"): (
        "the runs held back from the marts (per-clan isolation of data tests): one filter "
        "where every model reads raw, so that all of them leave the same runs out"
    ),
}


# --------------------------------------------------------------------------- manifest


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """dbt's manifest of the project (``dbt parse`` needs no database connection)."""
    home = tmp_path_factory.mktemp("dbt-conventions")
    result = run_dbt(["parse"], db_url="postgresql://parse@127.0.0.1:9/parse", home=home)
    assert result.success, result.error_summary
    path: Path = home / "dbt" / "target" / "manifest.json"
    loaded: Manifest = json.loads(path.read_text())
    return loaded


def models(manifest: Manifest) -> list[Node]:
    return [
        node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["package_name"] == PROJECT
    ]


def layer(node: Node) -> str:
    """The model's layer: the folder under models/ (fqn: project, layer, ...)."""
    return str(node["fqn"][1]) if len(node["fqn"]) > 2 else ""


def parents(node: Node, prefix: str) -> list[str]:
    return [p for p in node["depends_on"]["nodes"] if p.startswith(prefix)]


# --------------------------------------------------------------------------- rules


def misnamed_models(manifest: Manifest) -> list[str]:
    """Models whose name does not follow their layer's pattern (or that have no layer)."""
    bad = []
    for node in models(manifest):
        name, fqn = node["name"], node["fqn"]
        if layer(node) == "staging":
            source = fqn[2]
            prefix = "base" if "base" in fqn[3:-1] else "stg"
            ok = re.fullmatch(rf"{prefix}_{re.escape(source)}__[a-z0-9]+(_[a-z0-9]+)*", name)
        elif layer(node) == "intermediate":
            words = name.split("_")
            ok = re.fullmatch(r"int(_[a-z0-9]+){2,}", name) is not None and (
                words[-1].endswith("ed") or words[-1] in IRREGULAR_VERBS
            )
        elif layer(node) == "marts":
            ok = re.fullmatch(r"[a-z][a-z0-9_]*", name) is not None and not name.startswith(
                LAYER_PREFIXES
            )
        else:
            ok = False
        if not ok:
            bad.append(name)
    return bad


def sources_outside_staging(manifest: Manifest) -> list[str]:
    """Models outside the staging layer that call source()."""
    return [
        node["name"]
        for node in models(manifest)
        if layer(node) != "staging" and parents(node, "source.")
    ]


def source_name(unique_id: str) -> str:
    """``source.<project>.<source name>.<table>`` -> the source name."""
    return unique_id.split(".")[2]


def staging_models_reading_several_sources(manifest: Manifest) -> list[str]:
    """Staging models that read more than their one source.

    A ``stg_`` model reads exactly one source table, or base models (and no
    source); a ``base_`` model may join tables, all of the source its folder
    names. No staging model reads an intermediate model or a mart.
    """
    nodes = manifest["nodes"]
    bad = []
    for node in models(manifest):
        if layer(node) != "staging":
            continue
        folder = node["fqn"][2]
        sources = parents(node, "source.")
        upstream = [nodes[p] for p in parents(node, "model.")]
        if any(layer(up) != "staging" or up["fqn"][2] != folder for up in upstream):
            bad.append(node["name"])
        elif node["name"].startswith("stg_") and len(sources) + bool(upstream) != 1:
            bad.append(node["name"])
        elif not sources and not upstream:
            bad.append(node["name"])
        elif any(
            source_name(s) != folder and (node["name"], s) not in CROSS_SOURCE_READS
            for s in sources
        ):
            bad.append(node["name"])
    return bad


def _key_tests(manifest: Manifest) -> dict[str, set[tuple[str, str]]]:
    """Per model, the (test, column) pairs of its unique/not_null/key tests."""
    found: dict[str, set[tuple[str, str]]] = {}
    for node in manifest["nodes"].values():
        meta = node.get("test_metadata")
        if node["resource_type"] != "test" or not meta:
            continue
        model = node.get("attached_node") or next(iter(parents(node, "model.")), None)
        if model is None:
            continue
        name = meta["name"]
        if name in ("unique", "not_null"):
            column = node.get("column_name") or meta["kwargs"].get("column_name") or ""
            found.setdefault(model, set()).add((name, column))
        elif name in PRIMARY_KEY_TESTS:
            found.setdefault(model, set()).add(("key", ""))
    return found


def models_without_primary_key_test(manifest: Manifest) -> list[str]:
    """Models with neither unique + not_null on one column nor a composite-key test."""
    tests = _key_tests(manifest)
    bad = []
    for node in models(manifest):
        pairs = tests.get(node["unique_id"], set())
        unique = {column for test, column in pairs if test == "unique"}
        not_null = {column for test, column in pairs if test == "not_null"}
        if ("key", "") not in pairs and not (unique & not_null):
            bad.append(node["name"])
    return bad


def sources_without_freshness(manifest: Manifest) -> list[str]:
    """Source tables with no freshness rule (and no reason in FRESHNESS_EXEMPT)."""
    bad = []
    for unique_id, source in manifest["sources"].items():
        if source["package_name"] != PROJECT or unique_id in FRESHNESS_EXEMPT:
            continue
        freshness = source.get("freshness") or {}
        if not (freshness.get("warn_after") or {}).get("count") and not (
            freshness.get("error_after") or {}
        ).get("count"):
            bad.append(unique_id)
    return bad


def models_without_description(manifest: Manifest) -> list[str]:
    return [node["name"] for node in models(manifest) if not node["description"].strip()]


# Words of a `where` that tie a data test's window to the wall clock.
WALL_CLOCK = re.compile(r"\b(now\(\)|current_timestamp|current_date|localtimestamp)", re.I)


def data_tests_windowed_on_the_wall_clock(manifest: Manifest) -> list[str]:
    """Data tests whose ``where`` compares with now(): they test nothing on past data."""
    return [
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        and WALL_CLOCK.search(str((node.get("config") or {}).get("where") or ""))
    ]


RULES = [
    misnamed_models,
    sources_outside_staging,
    staging_models_reading_several_sources,
    models_without_primary_key_test,
    sources_without_freshness,
    models_without_description,
    data_tests_windowed_on_the_wall_clock,
]

# relation (schema, name) -> its columns in the database
DbColumns = dict[tuple[str, str], list[str]]


def relation_of(node: Node) -> tuple[str, str]:
    """Where a source table, model or seed lives: (schema, name)."""
    name = node.get("identifier") or node.get("alias") or node["name"]
    return str(node["schema"]), str(name)


def undocumented_columns(manifest: Manifest, db_columns: DbColumns) -> list[str]:
    """``<unique_id>.<column>`` of every database column without a description.

    Only the nodes whose relation is in ``db_columns`` are checked (an
    ephemeral model, or one not built, has none).
    """
    nodes = [*manifest["nodes"].values(), *manifest["sources"].values()]
    bad = []
    for node in nodes:
        if node["resource_type"] not in ("source", "model", "seed", "snapshot"):
            continue
        if node["package_name"] != PROJECT or relation_of(node) not in db_columns:
            continue
        documented = {
            name
            for name, column in (node.get("columns") or {}).items()
            if str(column.get("description") or "").strip()
        }
        bad += [
            f"{node['unique_id']}.{column}"
            for column in db_columns[relation_of(node)]
            if column not in documented
        ]
    return bad


def database_columns(db_url: str, schemas: Iterable[str]) -> DbColumns:
    """The columns of every table and view of ``schemas``, in order."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "select table_schema, table_name, column_name from information_schema.columns"
            " where table_schema = any(%s) order by table_schema, table_name, ordinal_position",
            (list(schemas),),
        ).fetchall()
    found: DbColumns = {}
    for schema, table, column in rows:
        found.setdefault((schema, table), []).append(column)
    return found


# --------------------------------------------------------------------------- the project


def test_the_manifest_has_models_in_every_layer_and_sources(manifest: Manifest) -> None:
    per_layer = {name: [n for n in models(manifest) if layer(n) == name] for name in LAYERS}
    assert all(per_layer.values()), {name: len(nodes) for name, nodes in per_layer.items()}
    assert [n for n in models(manifest) if layer(n) not in LAYERS] == []
    assert manifest["sources"]


@pytest.mark.parametrize("rule", RULES, ids=[rule.__name__ for rule in RULES])
def test_the_project_follows_the_rule(manifest: Manifest, rule: Any) -> None:
    assert rule(manifest) == []


def test_freshness_exemptions_name_real_sources(manifest: Manifest) -> None:
    assert set(FRESHNESS_EXEMPT) <= set(manifest["sources"])


def test_every_column_of_every_source_table_is_described(
    manifest: Manifest, migrated_db_url: str
) -> None:
    sources = list(manifest["sources"].values())
    db_columns = database_columns(migrated_db_url, {source["schema"] for source in sources})
    # every source table exists, with the columns the migrations gave it
    assert {relation_of(source) for source in sources} <= set(db_columns)
    assert len(db_columns[("ops", "ingest_runs")]) == 23
    assert len(db_columns[("ops", "ingest_logs")]) == 19
    assert undocumented_columns(manifest, db_columns) == []


# --------------------------------------------------------------------------- the rules can fail


def _model(
    name: str,
    path: Iterable[str],
    *,
    depends_on: Iterable[str] = (),
    description: str = "A model.",
) -> Node:
    return {
        "unique_id": f"model.{PROJECT}.{name}",
        "resource_type": "model",
        "package_name": PROJECT,
        "name": name,
        "fqn": [PROJECT, *path, name],
        "depends_on": {"nodes": list(depends_on)},
        "description": description,
    }


def _test(name: str, model: str, column: str | None = None) -> Node:
    return {
        "unique_id": f"test.{PROJECT}.{name}_{model}_{column}",
        "resource_type": "test",
        "package_name": PROJECT,
        "name": f"{name}_{model}_{column}",
        "fqn": [PROJECT, name],
        "attached_node": f"model.{PROJECT}.{model}",
        "column_name": column,
        "depends_on": {"nodes": [f"model.{PROJECT}.{model}"]},
        "test_metadata": {"name": name, "kwargs": {}},
    }


def _source(source: str, table: str, *, fresh: bool = True) -> Node:
    freshness = {"warn_after": {"count": 6, "period": "hour"}} if fresh else None
    return {
        "unique_id": f"source.{PROJECT}.{source}.{table}",
        "resource_type": "source",
        "package_name": PROJECT,
        "freshness": freshness,
    }


def _manifest(*nodes: Node) -> Manifest:
    return {
        "nodes": {n["unique_id"]: n for n in nodes if n["resource_type"] != "source"},
        "sources": {n["unique_id"]: n for n in nodes if n["resource_type"] == "source"},
    }


GOOD = [
    _source("coc", "fetch_log"),
    _model(
        "stg_coc__fetches", ["staging", "coc"], depends_on=["source.clash_pipeline.coc.fetch_log"]
    ),
    _test("unique", "stg_coc__fetches", "fetch_id"),
    _test("not_null", "stg_coc__fetches", "fetch_id"),
    _model(
        "int_fetches_counted",
        ["intermediate"],
        depends_on=["model.clash_pipeline.stg_coc__fetches"],
    ),
    _test("unique_combination_of_columns", "int_fetches_counted"),
    _model("fetches", ["marts", "core"], depends_on=["model.clash_pipeline.int_fetches_counted"]),
    _test("unique", "fetches", "fetch_id"),
    _test("not_null", "fetches", "fetch_id"),
]


def test_a_fabricated_good_manifest_passes_every_rule() -> None:
    assert {rule.__name__: rule(_manifest(*GOOD)) for rule in RULES} == {
        rule.__name__: [] for rule in RULES
    }


@pytest.mark.parametrize(
    ("rule", "extra", "offender"),
    [
        (misnamed_models, _model("int_fetch_counts", ["intermediate"]), "int_fetch_counts"),
        (misnamed_models, _model("stg_raw__fetches", ["staging", "coc"]), "stg_raw__fetches"),
        (misnamed_models, _model("fct_fetches", ["marts", "core"]), "fct_fetches"),
        (misnamed_models, _model("loose", []), "loose"),
        (
            sources_outside_staging,
            _model("raw_fetches", ["marts"], depends_on=["source.clash_pipeline.coc.fetch_log"]),
            "raw_fetches",
        ),
        (
            staging_models_reading_several_sources,
            _model(
                "stg_coc__both",
                ["staging", "coc"],
                depends_on=[
                    "source.clash_pipeline.coc.fetch_log",
                    "source.clash_pipeline.coc.payloads",
                ],
            ),
            "stg_coc__both",
        ),
        (
            staging_models_reading_several_sources,
            _model(
                "stg_coc__mixed",
                ["staging", "coc"],
                depends_on=["model.clash_pipeline.int_fetches_counted"],
            ),
            "stg_coc__mixed",
        ),
        (models_without_primary_key_test, _model("untested", ["marts"]), "untested"),
        (
            sources_without_freshness,
            _source("coc", "stale", fresh=False),
            "source.clash_pipeline.coc.stale",
        ),
        (
            models_without_description,
            _model("quiet", ["marts"], description=" "),
            "quiet",
        ),
        (
            data_tests_windowed_on_the_wall_clock,
            _test("not_null", "fetches", "fetch_id")
            | {
                "name": "not_null_recent",
                "config": {"where": "fetched_at >= NOW() - interval '3 days'"},
            },
            "not_null_recent",
        ),
    ],
)
def test_each_rule_finds_its_offender(rule: Any, extra: Node, offender: str) -> None:
    assert offender in rule(_manifest(*GOOD, extra))


def test_a_unique_column_without_not_null_is_no_primary_key() -> None:
    half = [
        _model("half", ["marts"]),
        _test("unique", "half", "id"),
        _test("not_null", "half", "other_id"),
    ]
    assert models_without_primary_key_test(_manifest(*GOOD, *half)) == ["half"]


def test_a_column_without_description_is_found_where_the_database_has_it() -> None:
    source = _source("coc", "fetch_log") | {
        "schema": "raw",
        "identifier": "fetch_log",
        "columns": {
            "fetch_id": {"description": "Identity primary key."},
            "run_id": {"description": "  "},
        },
    }
    model = _model("fetches", ["marts", "core"]) | {
        "schema": "marts_build",
        "alias": "fetches",
        "columns": {"fetch_id": {"description": "The fetch."}},
    }
    db_columns = {
        ("raw", "fetch_log"): ["fetch_id", "run_id", "landed_at"],
        ("marts_build", "fetches"): ["fetch_id"],
    }
    assert undocumented_columns(_manifest(source, model), db_columns) == [
        "source.clash_pipeline.coc.fetch_log.run_id",
        "source.clash_pipeline.coc.fetch_log.landed_at",
    ]
    # a relation the database does not have (ephemeral, not built) is not checked
    assert undocumented_columns(_manifest(source, model), {}) == []
