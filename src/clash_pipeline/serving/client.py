"""A small client of the roster API for notebooks and scripts.

Responses are cached on disk by URL and payload version. Every call revalidates
with ``If-None-Match``: a ``304`` is answered from the disk cache, a ``200``
with a new version replaces the URL's cached entry (older versions are
deleted). Only the API's JSON is stored, never a token.

>>> client = RosterClient("http://127.0.0.1:8080", cache_dir="~/.cache/clash-roster")
>>> roster = client.roster("#2PR8R8V8P")
>>> client.last_status  # 200 the first time, 304 until a new snapshot lands
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx

from clash_pipeline.clash_api.tags import normalize_tag


class RosterApiError(Exception):
    """The API answered with an error body ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class RosterClient:
    """GET the roster API with an on-disk cache keyed by URL + payload version."""

    def __init__(
        self,
        base_url: str,
        cache_dir: str | Path = ".clash-pipeline/api-cache",
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.cache_dir = Path(cache_dir).expanduser()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self.last_status: int | None = None
        self.last_version: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RosterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ endpoints

    def clans(self) -> list[dict[str, Any]]:
        clans: list[dict[str, Any]] = self.get("/api/v2/clans")["clans"]
        return clans

    def roster(self, clan: str) -> dict[str, Any]:
        return self.get("/api/v2/roster", {"clan": normalize_tag(clan, kind="clan tag")})

    def member(self, player: str, clan: str | None = None) -> dict[str, Any]:
        params = {"clan": normalize_tag(clan, kind="clan tag")} if clan else {}
        tag = normalize_tag(player, kind="player tag").removeprefix("#")
        return self.get(f"/api/v2/members/{tag}", params)

    def metric(self, clan: str, metric: str, window: str) -> dict[str, Any]:
        params = {"clan": normalize_tag(clan, kind="clan tag"), "metric": metric, "window": window}
        return self.get("/api/v2/metrics", params)

    def ingestion_health(self, clan: str) -> dict[str, Any]:
        return self.get("/api/v2/ingestion/health", {"clan": normalize_tag(clan, kind="clan tag")})

    # ------------------------------------------------------------ cache

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET ``path``: revalidate the cached version, or fetch and cache."""
        request = self._http.build_request("GET", path, params=params or {})
        key = hashlib.sha256(str(request.url).encode()).hexdigest()[:32]
        cached = self._cached(key)
        if cached is not None:
            request.headers["If-None-Match"] = f'"{cached[0]}"'
        response = self._http.send(request)
        self.last_status = response.status_code
        if response.status_code == 304 and cached is not None:
            self.last_version = cached[0]
            body: dict[str, Any] = json.loads(cached[1].read_bytes())
            return body
        if response.status_code != 200:
            raise self._error(response)
        version = response.headers.get("etag", "").removeprefix("W/").strip('"') or None
        self.last_version = version
        self._drop(key)
        if version:
            self._path(key, version).write_bytes(response.content)
        fresh: dict[str, Any] = response.json()  # every answer of the API is an object
        return fresh

    def _path(self, key: str, version: str) -> Path:
        safe = "".join(ch for ch in version if ch.isalnum() or ch in "-_")[:200]
        return self.cache_dir / f"{key}.{safe}.json"

    def _cached(self, key: str) -> tuple[str, Path] | None:
        for path in self.cache_dir.glob(f"{key}.*.json"):
            return path.name[len(key) + 1 : -len(".json")], path
        return None

    def _drop(self, key: str) -> None:
        for path in self.cache_dir.glob(f"{key}.*.json"):
            path.unlink(missing_ok=True)

    @staticmethod
    def _error(response: httpx.Response) -> RosterApiError:
        try:
            error = response.json()["error"]
            return RosterApiError(response.status_code, error["code"], error["message"])
        except (ValueError, KeyError, TypeError):
            return RosterApiError(response.status_code, "http_error", response.text[:200])
