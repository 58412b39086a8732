"""When the embedding model loads: by default before a process accepts its first request
(loading it beside the requests slowed them for its whole length: bench/startup.py), or in
the background when asked. Each case in a new process, where nothing is loaded yet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from syntera.embedded import StackUrls

PROBE = """
import asyncio
from syntera.app import create_app
from syntera.config import Settings
from syntera.embedded import StackUrls
from syntera.kb.embeddings import _load_minilm

async def main():
    urls = StackUrls(**{name: value for name, value in zip(
        ("database_url", "api_database_url", "mongodb_uri", "redis_url"),
        __import__("sys").argv[1:5])})
    app = create_app(Settings(), urls)
    async with app.router.lifespan_context(app):
        print("loaded when serving starts:", _load_minilm.cache_info().currsize == 1)

asyncio.run(main())
"""


@pytest.mark.parametrize(("mode", "loaded"), [("before_serving", True), ("background", False)])
def test_the_model_is_loaded_before_serving_unless_asked_otherwise(
    api_urls: StackUrls, mode: str, loaded: bool, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(
        SYNTERA_JWT_SECRET="x" * 40, SYNTERA_KB_PRELOAD_MODEL="true",
        SYNTERA_KB_MODEL_LOADING=mode, SYNTERA_KB_WORKER_ENABLED="false",
        SYNTERA_WORKFLOW_WORKER_ENABLED="false", SYNTERA_PURGE_WORKER_ENABLED="false",
        SYNTERA_MAIL_WORKER_ENABLED="false", SYNTERA_DATA_DIR=str(tmp_path),
    )  # fmt: skip
    urls = (api_urls.database_url, api_urls.api_database_url, api_urls.mongodb_uri,
            api_urls.redis_url)  # fmt: skip
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, *urls], env=env, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert f"loaded when serving starts: {loaded}" in probe.stdout
