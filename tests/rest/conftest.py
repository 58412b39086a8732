"""The data API's tests: the session's application, called in-process, as the seeded
tenants' members, the anonymous role and the service key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from syntera.config import Settings
from syntera.embedded import StackUrls
from syntera.tenancy import Principal
from tests.api_fixtures import AuthHeaders, served


@pytest.fixture(scope="session")
async def rest_app(settings: Settings, api_urls: StackUrls) -> AsyncIterator[httpx.AsyncClient]:
    """An application whose /rest/v1 honours ``Prefer: tx=rollback`` and caps pages at
    1,000 rows, as the conformance suite runs it."""
    from syntera.app import create_app

    configured = settings.model_copy(
        update={"rest_tx_end": "commit-allow-override", "rest_max_rows": 1000,
                "rate_limits_enabled": False}
    )  # fmt: skip
    async with served(create_app(configured, api_urls)) as client:
        yield client


class Rest:
    """GETs of /rest/v1 as someone."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def get(self, path: str, **headers: str) -> httpx.Response:
        extra = {name.replace("_", "-"): value for name, value in headers.items()}
        return await self.client.get(f"/rest/v1/{path}", headers={**self.headers, **extra})

    async def rows(self, path: str, **headers: str) -> Any:
        response = await self.get(path, **headers)
        assert response.status_code in (200, 206), response.text
        return response.json()


@pytest.fixture
def rest_as(rest_app: httpx.AsyncClient, auth: AuthHeaders) -> Any:
    """``rest_as(principal)``: a client of /rest/v1 as ``principal`` (None: no token)."""

    def make(principal: Principal | None) -> Rest:
        return Rest(rest_app, auth(principal) if principal is not None else {})

    return make


@pytest.fixture(scope="session")
def app_settings(settings: Settings) -> Settings:
    return settings


__all__ = ["FastAPI", "Rest"]
