"""Issue 14, point 1: a pool of API keys, each paced on its own, against the simulator over HTTP.

Every test talks real HTTP on loopback to :class:`SimulatedClashApi`, which limits each token
with its own bucket, accepts a configurable set of tokens and answers others 403 as the real API
does. The tokens are random per test so the "never written anywhere" checks grep for them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import subprocess
import sys

import httpx
import psycopg
import pytest

from clash_pipeline.clash_api.keys import ApiKey, KeyPool, key_fingerprint
from clash_pipeline.clash_api.ratelimit import AdaptivePacing, RateLimiter
from clash_pipeline.errors import ConfigError
from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
from clash_pipeline.orchestration.phases.context import (
    TOKENS_SECRET_BLOCK,
    api_from_settings,
    parse_secret_tokens,
)
from clash_pipeline.settings import Settings, load_settings
from clash_pipeline.simulator import SimulatedClashApi
from clash_pipeline.simulator.faults import FaultConfig

SEED = 7
MEMBERS = 30
INVALID_IP_BODY = {
    "reason": "accessDenied.invalidIp",
    "message": "Invalid authorization: API key does not allow access from IP 127.0.0.1",
}


def _tokens(n: int) -> list[str]:
    return [f"k{i}.{secrets.token_urlsafe(18)}" for i in range(1, n + 1)]


def _fp(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def _settings(tmp_path, **overrides) -> Settings:
    values = {"clash_pipeline_home": tmp_path, "coc_max_retries": 4, "coc_timeout_seconds": 5}
    return load_settings(**(values | overrides))


def _fetch(tmp_path, db_url, sim, tokens, keys: KeyPool):
    """One clan of MEMBERS members, fetched and landed through ``keys``."""
    tag = sim.world.find_clan(MEMBERS, sim.clock.now())
    target = ApiTarget(sim.base_url, tokens[0], "simulator", sim.clock.now, tokens=tuple(tokens))
    [outcome] = asyncio.run(fetch_clans(_settings(tmp_path), db_url, [tag], target, keys=keys))
    return outcome


def _fetch_details(db_url, run_id) -> dict:
    with psycopg.connect(db_url) as conn:
        [details] = conn.execute(
            "select details from ops.ingest_logs where run_id = %s and phase = 'fetch'", (run_id,)
        ).fetchone()
    return details


def _everything_stored(db_url) -> str:
    """Every row of the ops and raw tables a run writes, as text (to grep for tokens)."""
    tables = ["ops.ingest_runs", "ops.ingest_logs", "raw.fetch_runs", "raw.fetch_log"]
    with psycopg.connect(db_url) as conn:
        return "\n".join(
            str(row[0])
            for table in tables
            for row in conn.execute(f"select row_to_json(t)::text from {table} as t").fetchall()
        )


def _sim(tokens, **faults) -> SimulatedClashApi:
    """A simulator accepting tokens[0] (its own) and the others unless ``faults`` say so."""
    faults.setdefault("accepted_tokens", set(tokens[1:]))
    return SimulatedClashApi(seed=SEED, token=tokens[0], faults=FaultConfig(**faults))


# -- settings and Secret blocks -------------------------------------------------------------


def test_coc_api_tokens_are_split_deduplicated_and_joined_with_coc_api_token(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("COC_API_TOKENS", " tokA, tokB ,tokA,, tokC ")
    monkeypatch.setenv("COC_API_TOKEN", "tokD")
    assert load_settings().api_tokens() == ["tokA", "tokB", "tokC", "tokD"]
    monkeypatch.setenv("COC_API_TOKEN", "tokB")  # both set: the union, order kept
    assert load_settings().api_tokens() == ["tokA", "tokB", "tokC"]
    monkeypatch.delenv("COC_API_TOKENS")
    assert load_settings().api_tokens() == ["tokB"]  # COC_API_TOKEN alone: a pool of one
    assert "tokB" not in repr(load_settings())


def test_a_bad_token_in_coc_api_tokens_is_named_by_position_never_by_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COC_API_TOKENS", "Tok3nSecretA,Tok3nSecretB Tok3nSecretC")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = f"{info.value.message} {info.value.hint}"
    assert info.value.message.startswith(
        "COC_API_TOKENS is invalid: key 2 contains a space or line break"
    )
    assert "Tok3nSecret" not in text


def test_secret_block_values_list_json_or_commas():
    assert parse_secret_tokens(["a1", " b2 ", "a1"], "x") == ["a1", "b2"]
    assert parse_secret_tokens('["a1", "b2"]', "x") == ["a1", "b2"]
    assert parse_secret_tokens("a1, b2", "x") == ["a1", "b2"]
    assert parse_secret_tokens("", "x") == []
    with pytest.raises(ConfigError, match=r"'x' is invalid: key 2 contains a control") as info:
        parse_secret_tokens(["a1", "Tok3nSecret\x07"], "x")
    assert "Tok3nSecret" not in str(info.value)
    with pytest.raises(ConfigError, match="not a JSON list"):
        parse_secret_tokens("[nope", "x")


def test_the_secret_block_coc_api_tokens_holds_the_pool(prefect_harness, tmp_path, monkeypatch):
    from prefect.blocks.system import Secret

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COC_API_TOKEN", raising=False)
    monkeypatch.delenv("COC_API_TOKENS", raising=False)
    tokens = _tokens(3)
    Secret(value=tokens).save(TOKENS_SECRET_BLOCK, overwrite=True)
    try:
        spec = api_from_settings(load_settings())
        assert spec.pool_tokens() == tokens
        assert all(t not in repr(spec) for t in tokens)
        monkeypatch.setenv("COC_API_TOKENS", "envA,envB")  # the environment comes first
        assert api_from_settings(load_settings()).pool_tokens() == ["envA", "envB"]
    finally:
        Secret(value=[]).save(TOKENS_SECRET_BLOCK, overwrite=True)


def test_a_key_is_named_by_position_and_fingerprint_only():
    token = _tokens(1)[0]
    key = ApiKey(2, token)
    assert key.fingerprint == _fp(token) == key_fingerprint(token)
    assert token not in repr(key) and key.label(3) == f"API key 2 of 3 (fingerprint {_fp(token)})"
    pool = KeyPool([token, token, f"Bearer {token}x"])  # duplicates dropped, prefix stripped
    assert [k.position for k in pool.keys] == [1, 2] and pool.keys[1].token == token + "x"
    assert token not in repr(pool)
    with pytest.raises(ConfigError, match="key 2 contains a space"):
        KeyPool(["ok", "not ok"])


# -- the simulator's keys ------------------------------------------------------------------------


def test_simulator_answers_each_token_as_the_real_api_and_counts_per_fingerprint():
    own, other, wrong_ip = _tokens(3)
    with _sim([own, other], invalid_ip_tokens={wrong_ip}) as sim:
        clan = sim.world.find_clan(MEMBERS, sim.clock.now()).replace("#", "%23")
        answers = {}
        for token in (own, other, wrong_ip, "unknown-token"):
            headers = {"Authorization": f"Bearer {token}"}
            response = httpx.get(f"{sim.base_url}/clans/{clan}", headers=headers, timeout=10)
            body = response.json() if response.status_code == 403 else None
            answers[token] = (response.status_code, body)
        state = httpx.get(f"{sim.origin}/_sim/state", timeout=10).text
    assert answers[own] == (200, None) and answers[other] == (200, None)
    assert answers[wrong_ip] == (403, INVALID_IP_BODY)
    assert answers["unknown-token"] == (
        403,
        {"reason": "accessDenied", "message": "Invalid authorization"},
    )
    by_key = json.loads(state)["stats"]["by_key"]
    assert by_key[_fp(own)] == {"requests": 1, "throttled": 0, "rejected": 0}
    assert by_key[_fp(wrong_ip)] == {"requests": 1, "throttled": 0, "rejected": 1}
    assert json.loads(state)["faults"]["invalid_ip_tokens"] == [_fp(wrong_ip)]
    assert all(t not in state for t in (own, other, wrong_ip))


def test_the_simulators_rate_limit_is_per_token():
    a, b = _tokens(2)
    with _sim([a, b], rate_limit_per_second=2) as sim:  # bucket of 2 per token
        with httpx.Client(base_url=sim.base_url, timeout=10) as http:
            statuses = [
                http.get("/leagues", headers={"Authorization": f"Bearer {token}"}).status_code
                for token in (a, a, b, b, a, b)
            ]
    assert statuses == [200, 200, 200, 200, 429, 429]


# -- spreading the requests ----------------------------------------------------------------------


def test_three_keys_share_the_requests_and_none_exceeds_its_rate(tmp_path, migrated_db_url):
    """3 keys at 4 req/s each against a bucket of 4 req/s per token: each key sends about a
    third, and the server throttles none; the same requests on one key at 12 req/s do get 429s
    (the control: the per-token limit is real)."""
    tokens = _tokens(3)
    rate = 4.0
    with _sim(tokens, rate_limit_per_second=rate, retry_after_seconds=0.5) as sim:
        keys = KeyPool(tokens, requests_per_second=rate, max_concurrency=4)
        outcome = _fetch(tmp_path, migrated_db_url, sim, tokens, keys)
        by_key = sim.stats.by_key
        total, throttled = sim.stats.requests_total, sim.stats.throttled
    assert outcome.status == "succeeded", outcome.error
    assert throttled == 0
    counts = [by_key[_fp(t)]["requests"] for t in tokens]
    assert sum(counts) == total >= MEMBERS + 6
    assert max(counts) - min(counts) <= 2, counts  # a third each, give or take one
    details = _fetch_details(migrated_db_url, outcome.run_id)
    assert details["keys"] == [
        {"position": i, "fingerprint": _fp(t), "requests": n, "throttled": 0, "rejected": 0}
        for i, (t, n) in enumerate(zip(tokens, counts, strict=True), start=1)
    ]
    assert keys.usage() == details["keys"]

    # the control: one key at the three keys' combined rate is throttled by the same server
    with _sim(tokens[:1], rate_limit_per_second=rate, retry_after_seconds=0.5) as sim:
        single = KeyPool(tokens[:1], requests_per_second=3 * rate, max_concurrency=4)
        _fetch(tmp_path, migrated_db_url, sim, tokens[:1], single)
        assert sim.stats.throttled > 0


# -- a rejected key ------------------------------------------------------------------------------


def test_a_rejected_key_is_left_out_with_one_warning_and_the_run_succeeds(
    tmp_path, migrated_db_url, caplog
):
    caplog.set_level(logging.DEBUG)
    tokens = _tokens(3)
    good, rejected = [tokens[0], tokens[2]], tokens[1]
    with _sim(tokens, accepted_tokens={tokens[2]}, invalid_ip_tokens={rejected}) as sim:
        # key 2 at 1 req/s: its 403 is back long before its next slot (one request meets it)
        keys = KeyPool(
            tokens,
            limiter_factory=lambda key: RateLimiter(1 if key.position == 2 else 20, 4),
        )
        outcome = _fetch(tmp_path, migrated_db_url, sim, tokens, keys)
        by_key = sim.stats.by_key
    assert outcome.status == "succeeded", outcome.error
    warnings = [r.getMessage() for r in caplog.records if "was rejected" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"API key 2 of 3 (fingerprint {_fp(rejected)}) was rejected: accessDenied.invalidIp — "
        "it is left out of this run (2 of 3 keys left); create a key for this machine's IP"
    )
    # one request met the rejected key; it went again on another key, not as a failure
    assert by_key[_fp(rejected)] == {"requests": 1, "throttled": 0, "rejected": 1}
    assert sum(by_key[_fp(t)]["requests"] for t in good) >= MEMBERS + 6
    assert keys.rejected == {2: "accessDenied.invalidIp"}
    details = _fetch_details(migrated_db_url, outcome.run_id)
    assert details["keys"][1] == {
        "position": 2,
        "fingerprint": _fp(rejected),
        "requests": 1,
        "throttled": 0,
        "rejected": 1,
    }
    with psycopg.connect(migrated_db_url) as conn:
        statuses = conn.execute(
            "select http_status, count(*) from raw.fetch_log where run_id = %s group by 1",
            (outcome.run_id,),
        ).fetchall()
    assert [s for s, _ in statuses] == [200]
    stored = _everything_stored(migrated_db_url)
    for token in tokens:
        assert token not in stored and token not in caplog.text
        assert token not in repr(outcome)


def test_no_key_left_fails_the_run_in_one_line(tmp_path, migrated_db_url, caplog):
    tokens = _tokens(2)
    # key 1 was made for another IP, key 2 is unknown to the server
    with _sim(["the-simulators-own"], invalid_ip_tokens={tokens[0]}) as sim:
        # 2 req/s: the first 403s are back long before either key's next slot
        keys = KeyPool(tokens, requests_per_second=2, max_concurrency=4)
        outcome = _fetch(tmp_path, migrated_db_url, sim, tokens, keys)
        by_key = sim.stats.by_key
    assert outcome.status == "failed"
    message = outcome.error["message"]
    assert "\n" not in message
    assert message.endswith(
        "no API key left: the API rejected all 2 keys "
        f"(key 1 (fingerprint {_fp(tokens[0])}): accessDenied.invalidIp; "
        f"key 2 (fingerprint {_fp(tokens[1])}): accessDenied)"
    )
    assert "COC_API_TOKENS" in outcome.error["hint"]
    # each key was tried once: nothing more was sent once no key was left
    assert {fp: c["requests"] for fp, c in by_key.items()} == {_fp(t): 1 for t in tokens}
    stored = _everything_stored(migrated_db_url)
    for token in tokens:
        assert token not in stored and token not in caplog.text


def test_no_key_left_on_the_command_line(migrated_db_url, tmp_path):
    tokens = _tokens(2)
    with _sim(["the-simulators-own"], accepted_tokens=set(), invalid_ip_tokens=set(tokens)) as sim:
        tag = sim.world.find_clan(MEMBERS, sim.clock.now())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COC_", "DATABASE_URL"))}
        env |= {
            "DATABASE_URL": migrated_db_url,
            "CLASH_PIPELINE_HOME": str(tmp_path / "home"),
            "COC_API_BASE_URL": sim.base_url,
            "COC_API_TOKENS": ",".join(tokens),
        }
        result = subprocess.run(
            [sys.executable, "-m", "clash_pipeline.cli", "fetch", "--clan", tag],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
    assert result.returncode == 1, result.stderr
    said = " ".join(result.stderr.split())
    # the run's error (the phase's log line says it too, as for any failed fetch)
    assert said.count(f"error {tag}: clan {tag} could not be fetched: ") == 1, said
    expected = (
        f"error {tag}: clan {tag} could not be fetched: GET /clans/{{clanTag}} {tag} failed: "
        "no API key left: the API rejected all 2 keys (key 1 (fingerprint "
    )
    assert expected in said
    assert said.count("was rejected: accessDenied.invalidIp") == 2  # one warning per key
    assert "hint: create keys for this machine's public IP" in said
    assert "Traceback" not in result.stderr
    assert all(t not in result.stdout + result.stderr for t in tokens)


# -- a 429 slows only its key ---------------------------------------------------------------


def test_a_429_slows_only_its_key(tmp_path, migrated_db_url):
    """Key 1 is paced at 20 req/s, key 2 at 2 req/s; the server allows 5 per token: key 1 is
    throttled and its limiter slows down, key 2 keeps its rate and gets no 429."""
    tokens = _tokens(2)
    pacing = AdaptivePacing(backoff=0.5, recovery=0.2, min_rate=0.5)
    limiters = {1: RateLimiter(20, 4, pacing=pacing), 2: RateLimiter(2, 4, pacing=pacing)}
    with _sim(tokens, rate_limit_per_second=5, retry_after_seconds=0.5) as sim:
        keys = KeyPool(tokens, limiter_factory=lambda key: limiters[key.position])
        outcome = _fetch(tmp_path, migrated_db_url, sim, tokens, keys)
        by_key = sim.stats.by_key
    assert outcome.status == "succeeded", outcome.error
    assert by_key[_fp(tokens[0])]["throttled"] >= 1
    assert by_key[_fp(tokens[1])]["throttled"] == 0
    assert limiters[1].decreases >= 1 and limiters[1].min_rate is not None
    assert limiters[1].min_rate <= 10
    assert (limiters[2].decreases, limiters[2].pauses, limiters[2].min_rate) == (0, 0, None)
    assert limiters[2].rate == 2
    usage = {u["position"]: u for u in keys.usage()}
    assert usage[1]["throttled"] == by_key[_fp(tokens[0])]["throttled"]
    assert usage[2]["throttled"] == 0


def test_no_key_left_is_not_worth_another_fetch_attempt():
    from clash_pipeline.clash_api.keys import NoApiKeyLeftError
    from clash_pipeline.ingest.run import fetch_retriable

    pool = KeyPool(["a1"])
    pool.reject(pool.keys[0], "accessDenied")
    with pytest.raises(NoApiKeyLeftError) as info:
        pool.choose()
    assert info.value.status is None  # nothing was sent: no 4xx status to go by
    assert not fetch_retriable(info.value)
