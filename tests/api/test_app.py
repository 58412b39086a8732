"""The application shell: health and readiness against the real stores."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi import FastAPI

from syntera.app import create_app
from syntera.config import Settings
from syntera.embedded import StackUrls
from tests.conftest import StackDatabase
from tests.test_embedded import free_port, wait_until_ready


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def get(app: FastAPI, path: str) -> httpx.Response:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)


@pytest.fixture
def urls(stack: StackUrls, database: StackDatabase) -> StackUrls:
    return dataclasses.replace(stack, api_database_url=database.api_url)


async def test_healthz_answers_without_asking_the_stores(settings: Settings) -> None:
    dead = StackUrls(
        database_url="postgresql://x@127.0.0.1:1/x",
        api_database_url="postgresql://x@127.0.0.1:1/x",
        mongodb_uri=f"mongodb://127.0.0.1:{closed_port()}/?directConnection=true",
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
    )
    response = await get(create_app(settings, dead), "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_200_when_every_store_answers(settings: Settings, urls: StackUrls) -> None:
    response = await get(create_app(settings, urls), "/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_readyz_names_the_store_that_is_down(settings: Settings, urls: StackUrls) -> None:
    broken = dataclasses.replace(urls, redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    response = await get(create_app(settings, broken), "/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failing": ["redis"]}


@pytest.mark.slow
def test_syntera_serve_runs_several_workers_on_the_configured_stores(
    urls: StackUrls, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(urls.as_env())
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "syntera", "serve", "--workers", "2", "--port", str(port),
         "--data-dir", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        ready = wait_until_ready(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200, ready.text
        assert (tmp_path / "jwt_secret").exists()  # generated once, shared by the workers
        # One model process, shared by both API processes (syntera.kb.model_process).
        models = [
            child for child in psutil.Process(process.pid).children()
            if "syntera.kb.model_process" in " ".join(child.cmdline())
        ]  # fmt: skip
        assert len(models) == 1
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output
    assert output.count("Started server process") == 2, output
    assert not models[0].is_running()
