"""clash_pipeline.project: the project files in a checkout, under CLASH_PROJECT_DIR, and in a wheel.

The wheel is simulated, not built: a temporary folder laid out like
``clash_pipeline/_project`` from the ``force-include`` table of pyproject.toml
(so a file the wheel would miss fails here too), with the checkout hidden from
the module.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from clash_pipeline import project
from clash_pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BUNDLE_PREFIX = "clash_pipeline/_project/"


@pytest.fixture(autouse=True)
def fresh_lookup(monkeypatch):
    """Each test resolves the project folder itself (project_dir() is cached per process)."""
    monkeypatch.delenv(project.PROJECT_DIR_VARIABLE, raising=False)
    project.project_dir.cache_clear()
    yield
    project.project_dir.cache_clear()


def _wheel_files() -> dict[str, str]:
    """Checkout path -> path inside the bundled project, from pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert all(target.startswith(BUNDLE_PREFIX) for target in include.values())
    return {source: target.removeprefix(BUNDLE_PREFIX) for source, target in include.items()}


@pytest.fixture
def wheel(tmp_path, monkeypatch) -> Path:
    """An installed wheel's ``clash_pipeline/_project``, and no checkout to be found."""
    bundled = tmp_path / "site-packages" / "clash_pipeline" / "_project"
    for source, target in _wheel_files().items():
        destination = bundled / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, destination)
        else:
            shutil.copyfile(ROOT / source, destination)
    monkeypatch.setattr(project, "_checkout_root", lambda: None)
    monkeypatch.setattr(project, "BUNDLED_DIR", bundled)
    return bundled


def _every_path() -> dict[str, Path]:
    return {
        "dbt_project_file": project.dbt_project_file(),
        "profile_template": project.profile_template(),
        "migrations_dir": project.migrations_dir(),
        "metric_catalogue_csv": project.metric_catalogue_csv(),
        "prefect_yaml": project.prefect_yaml(),
        "flows_dir": project.flows_dir(),
    }


def test_a_checkout_uses_the_repository_files(tmp_path):
    assert project.project_dir() == ROOT
    assert project.is_checkout()
    for name, path in _every_path().items():
        assert path.is_relative_to(ROOT), name
        assert path.exists(), name
    assert (project.flows_dir() / "ingest.py").is_file()
    assert (project.static_dir() / "index.html").is_file()
    # The committed GX context is run in place: nothing is copied to the home.
    assert project.gx_context_dir(None, tmp_path / "home") == ROOT / "gx"
    assert not (tmp_path / "home").exists()


def test_clash_project_dir_wins(tmp_path, monkeypatch):
    fork = tmp_path / "fork"
    fork.mkdir()
    (fork / "dbt_project.yml").write_text("name: fork\n", encoding="utf-8")
    monkeypatch.setenv(project.PROJECT_DIR_VARIABLE, str(fork))
    assert project.project_dir() == fork.resolve()
    assert project.dbt_project_file() == fork.resolve() / "dbt_project.yml"
    assert project.migrations_dir() == fork.resolve() / "supabase" / "migrations"


def test_a_wrong_clash_project_dir_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(project.PROJECT_DIR_VARIABLE, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError) as info:
        project.project_dir()
    assert "CLASH_PROJECT_DIR" in info.value.message
    assert "CLASH_PROJECT_DIR" in (info.value.hint or "")


def test_a_wheel_resolves_every_path_in_its_bundled_copy(wheel):
    assert project.project_dir() == wheel
    assert not project.is_checkout()
    for name, path in _every_path().items():
        assert path.is_relative_to(wheel), name
        assert path.exists(), name
    for entrypoint in ("ingest.py", "monitor.py"):
        assert (project.flows_dir() / entrypoint).is_file()
    assert (wheel / "models").is_dir() and (wheel / "macros").is_dir()


def test_a_wheel_without_its_project_files_says_so(wheel):
    shutil.rmtree(wheel)
    with pytest.raises(ConfigError) as info:
        project.project_dir()
    assert "reinstall" in (info.value.hint or "")


def test_a_wheel_copies_the_gx_context_to_the_home(wheel, tmp_path):
    home = tmp_path / "home"
    target = project.gx_context_dir(None, home)
    assert target == home.resolve() / "gx"
    source_files = sorted(
        p.relative_to(wheel / "gx") for p in (wheel / "gx").rglob("*") if p.is_file()
    )
    assert source_files
    for relative in source_files:
        assert (target / relative).read_bytes() == (wheel / "gx" / relative).read_bytes()

    # GX's own results and Data Docs survive a refresh.
    kept = target / "uncommitted" / "validations" / "result.json"
    kept.parent.mkdir(parents=True)
    kept.write_text("{}", encoding="utf-8")
    # A new wheel changes a file; a file edited in the home is put back.
    checkpoint = wheel / "gx" / "checkpoints" / "clash_monitor.json"
    checkpoint.write_text('{"name": "clash_monitor", "changed": true}\n', encoding="utf-8")
    config = target / "great_expectations.yml"
    config.write_text("edited in the home\n", encoding="utf-8")

    assert project.gx_context_dir(None, home) == target
    assert (target / "checkpoints" / "clash_monitor.json").read_text(encoding="utf-8") == (
        checkpoint.read_text(encoding="utf-8")
    )
    assert config.read_bytes() == (wheel / "gx" / "great_expectations.yml").read_bytes()
    assert kept.read_text(encoding="utf-8") == "{}"


def test_clash_gx_dir_wins_over_the_bundled_context(wheel, tmp_path):
    configured = tmp_path / "my-gx"
    assert project.gx_context_dir(configured, tmp_path / "home") == configured.resolve()
    assert not (tmp_path / "home").exists()
