"""The async Clash of Clans API client: pacing, retries, typed errors, one fetch record per request.

Typical use, one client and one limiter per run::

    async with ClashClient.from_settings(settings) as client:
        clan = await client.get_clan("#2PR8R8V8P")
        print(clan.data["name"], clan.record.max_age)

The modules: ``client`` (the request loop), ``endpoints`` (paths and parameters), ``retry``
(back-off and cool-downs), ``responses`` (what an attempt got back), ``failures`` (the message
and hint of an error), ``records`` (what the fetch log stores), ``errors``, ``ratelimit``, ``tags``.
"""

from clash_pipeline.clash_api.client import (
    ENDPOINTS,
    ApiResponse,
    ClashClient,
    FetchRecord,
    RetryPolicy,
    parse_max_age,
    utc_now,
)
from clash_pipeline.clash_api.errors import (
    AccessDeniedError,
    BadRequestError,
    ClashApiError,
    MaintenanceError,
    MalformedResponseError,
    NotFoundError,
    PrivateWarLogError,
    ServerError,
    ThrottledError,
    TransportError,
)
from clash_pipeline.clash_api.ratelimit import AdaptivePacing, LimiterStats, RateLimiter

__all__ = [
    "ENDPOINTS",
    "AccessDeniedError",
    "AdaptivePacing",
    "ApiResponse",
    "BadRequestError",
    "ClashApiError",
    "ClashClient",
    "FetchRecord",
    "LimiterStats",
    "MaintenanceError",
    "MalformedResponseError",
    "NotFoundError",
    "PrivateWarLogError",
    "RateLimiter",
    "RetryPolicy",
    "ServerError",
    "ThrottledError",
    "TransportError",
    "parse_max_age",
    "utc_now",
]
