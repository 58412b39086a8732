"""An API served over TCP (event streams need a real connection), with the stream timers
short enough for tests: heartbeats and access re-checks every second."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from syntera.api.app import create_app
from syntera.config import Settings
from syntera.embedded import StackUrls
from tests.api_fixtures import serving

STREAM_SETTINGS = {
    "events_heartbeat_s": 1.0,
    "events_recheck_s": 1.0,
    "events_send_timeout_s": 3.0,
    "events_streams_per_user": 3,
    "events_streams_per_widget_session": 2,
    "rate_limit_typing_per_minute": 5,
}


@pytest.fixture(scope="session")
def stream_settings(settings: Settings) -> Settings:
    return settings.model_copy(update=STREAM_SETTINGS)


@pytest.fixture(scope="session")
def events_url(stream_settings: Settings, api_urls: StackUrls) -> Iterator[str]:
    """The API with short stream timers, served by uvicorn in a thread."""
    with serving(create_app(stream_settings, api_urls)) as url:
        yield url


@pytest.fixture
async def http(events_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=events_url, timeout=15) as client:
        yield client
