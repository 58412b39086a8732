"""The middleware that counts and times every HTTP request (figures in ``syntera.metrics``)."""

from __future__ import annotations

import time

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
            method = scope["method"]
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_LATENCY.labels(method, template).observe(time.perf_counter() - started)
