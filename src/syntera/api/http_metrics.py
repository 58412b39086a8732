"""The middleware that counts and times every HTTP request (figures in ``syntera.metrics``)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import Message, Receive, Scope, Send

from syntera.api.middleware import HttpMiddleware
from syntera.metrics import HTTP_LATENCY, HTTP_REQUESTS


class HttpMetrics(HttpMiddleware):
    """Count and time every request by its route template (never the raw path, so ids do
    not explode the label set)."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            counter, latency = _series(scope["method"], template, status)
            counter.inc()
            latency.observe(time.perf_counter() - started)


# Each series of a label set, found once: ``labels()`` takes a lock and checks its
# arguments every time, a percent of a fast read's CPU (py-spy). Methods, templates and
# statuses are few (templates are routes', never raw paths).
_SERIES: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def _series(method: str, template: str, status: int) -> tuple[Counter, Histogram]:
    key = (method, template, status)
    found = _SERIES.get(key)
    if found is None:
        found = (
            HTTP_REQUESTS.labels(method, template, str(status)),
            HTTP_LATENCY.labels(method, template),
        )
        _SERIES[key] = found
    return found
