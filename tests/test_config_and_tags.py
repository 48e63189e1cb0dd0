"""Settings from the environment and tag normalisation."""

from __future__ import annotations

from pathlib import Path

import pytest

from clash_pipeline.clash_api.tags import normalize_tag, tag_path
from clash_pipeline.errors import ConfigError, InvalidTagError
from clash_pipeline.settings import DEFAULT_API_BASE_URL, load_settings

ENV_VARS = (
    "COC_API_TOKEN",
    "COC_API_BASE_URL",
    "COC_CLAN_TAGS",
    "COC_REQUESTS_PER_SECOND",
    "COC_MAX_CONCURRENCY",
    "COC_TIMEOUT_SECONDS",
    "COC_MAX_RETRIES",
    "DATABASE_URL",
    "CLASH_PIPELINE_HOME",
)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the working directory
    return monkeypatch


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("#2PR8R8V8P", "#2PR8R8V8P"),
        ("2pr8r8v8p", "#2PR8R8V8P"),
        ("  #2pr8 r8v8p ", "#2PR8R8V8P"),
        ("#oo2", "#002"),  # O is read as zero
        ("%232PP", "#2PP"),
    ],
)
def test_tags_are_normalised(raw, expected):
    assert normalize_tag(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "#",
        "#2P",
        "#ABC",
        "#2PP/../x",
        "#2PP?x=1",
        "%2e%2e",
        "2PP'; drop table x;--",
        "#2PP%00",
        "#" + "2" * 15,
        None,
        42,
    ],
)
def test_bad_tags_are_rejected(raw):
    with pytest.raises(InvalidTagError) as info:
        normalize_tag(raw)
    assert "tag" in info.value.message


def test_tag_path_escapes_hash():
    assert tag_path("2pp") == "%232PP"


def test_defaults(clean_env):
    settings = load_settings()
    assert settings.coc_api_base_url == DEFAULT_API_BASE_URL
    assert settings.coc_requests_per_second == 10
    assert settings.coc_clan_tags == []
    assert settings.uses_embedded_database
    assert settings.home == (Path.cwd() / ".clash-pipeline").resolve()
    assert settings.api_token() is None


def test_environment_and_dotenv(clean_env, tmp_path):
    (tmp_path / ".env").write_text("COC_API_TOKEN=from-dotenv\nCOC_REQUESTS_PER_SECOND=4\n")
    clean_env.setenv("COC_CLAN_TAGS", "2pr8r8v8p, #9RCRVL8V,#2PR8R8V8P")
    clean_env.setenv("COC_API_BASE_URL", "https://cocproxy.example/v1/")
    clean_env.setenv("CLASH_PIPELINE_HOME", str(tmp_path / "home"))
    settings = load_settings()
    assert settings.api_token() == "from-dotenv"
    assert settings.coc_requests_per_second == 4
    assert settings.coc_clan_tags == ["#2PR8R8V8P", "#9RCRVL8V"]  # normalised, deduplicated
    assert settings.coc_api_base_url == "https://cocproxy.example/v1"
    assert settings.home == (tmp_path / "home").resolve()
    assert "from-dotenv" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COC_REQUESTS_PER_SECOND", "abc"),
        ("COC_REQUESTS_PER_SECOND", "0"),
        ("COC_MAX_CONCURRENCY", "-1"),
        ("COC_API_BASE_URL", "ftp://x"),
        ("COC_CLAN_TAGS", "#2PR8R8V8P,#BAD!"),
        ("DATABASE_URL", "mysql://x"),
    ],
)
def test_invalid_value_names_the_variable(clean_env, name, value):
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{name} is invalid")
    assert "\n" not in message
