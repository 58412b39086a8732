"""Delivery under stress: a reader that stops reading, Redis dying mid-stream, two API
processes, and fifty companies streaming at once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from syntera.app import create_app
from syntera.config import Settings
from syntera.embedded import StackUrls, _valkey_binary
from tests.api_fixtures import AuthHeaders, MakeTenant, serving
from tests.conftest import TEST_JWT_SECRET, TEST_SERVICE_KEY, THROUGH_CLUSTER, THROUGH_PGBOUNCER
from tests.events.test_access import another_chat, chat_of, conversation_of
from tests.events.test_member_streams import start
from tests.events.test_resume_and_commit import post
from tests.events_helpers import EventStream, refused, subscribe
from tests.factories import SeededCompany
from tests.test_embedded import free_port, wait_until_ready
from tests.widget.helpers import WidgetChat


@pytest.fixture(scope="module")
def small_buffer_url(stream_settings: Settings, api_urls: StackUrls) -> Iterator[str]:
    """Streams that hold at most 20 undelivered events."""
    settings = stream_settings.model_copy(update={"events_buffer": 20})
    with serving(create_app(settings, api_urls)) as url:
        yield url


def open_raw_stream(url: str, token: str) -> socket.socket:
    """A stream whose client reads its answer's head, then nothing more."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def read_until_closed(sock: socket.socket, within: float) -> int:
    """How many bytes the server still sends before it closes the connection."""
    sock.settimeout(within)
    total = 0
    while chunk := sock.recv(65536):
        total += len(chunk)
    return total


async def test_a_reader_that_stops_reading_is_cut_off_and_delays_nobody(
    small_buffer_url: str, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    member = auth(tenant.member)
    slow = open_raw_stream(small_buffer_url, member["Authorization"].removeprefix("Bearer "))
    async with httpx.AsyncClient(base_url=small_buffer_url, timeout=30) as http:
        conversation = await start(http, member, tenant.rows["agent_configs"])
        # Batches of 10, half the buffer: a reader that reads keeps up even on a loaded
        # machine (batches of 30 could outrun the 20-event buffer of a reader that reads).
        big = [{"sender_type": "user", "content": "x" * 30_000} for _ in range(10)]
        async with subscribe(http, "/v1/events", headers=auth(tenant.admin)) as fast:
            for _ in range(30):  # 300 events of 30 KB: more than any socket buffers
                imported = await http.post(
                    f"/v1/conversations/{conversation['id']}/messages/import",
                    headers=member,
                    json={"messages": big},
                )
                assert imported.status_code == 201
            received = await fast.events(300, within=10)
        assert len({event.id for event in received}) == 300
        dropped = (await http.get("/metrics")).text
    sent_to_slow = await asyncio.to_thread(read_until_closed, slow, 15)
    slow.close()
    assert sent_to_slow < 300 * 30_000  # cut off, not delivered in full
    assert 'syntera_events_dropped_total{reason="slow_subscriber"}' in dropped


@dataclasses.dataclass
class PrivateRedis:
    """A Valkey of the test's own (with its append-only file), to kill and restart."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(_valkey_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise AssertionError("Valkey did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


async def test_redis_killed_mid_stream_then_back(
    stream_settings: Settings,
    api_urls: StackUrls,
    auth: AuthHeaders,
    tenant: SeededCompany,
    tmp_path: Path,
) -> None:
    redis = PrivateRedis(tmp_path, free_port())
    redis.start()
    member = auth(tenant.member)
    app = create_app(stream_settings, dataclasses.replace(api_urls, redis_url=redis.url))
    try:
        with serving(app) as url:
            async with httpx.AsyncClient(base_url=url, timeout=15) as http:
                conversation = await start(http, member, tenant.rows["agent_configs"])
                async with subscribe(http, "/v1/events", headers=member) as stream:
                    await post(http, member, conversation["id"], "before")
                    before = await stream.next()
                    redis.kill()
                    await stream.until_end(within=10)  # the stream ends with Redis
                written = await post(http, member, conversation["id"], "while Redis is down")
                assert written["content"] == "while Redis is down"  # the write stands
                down = await refused(http, "/v1/events", headers=member)
                assert down.status_code == 503
                redis.start()
                assert before.id is not None
                resumed = await reconnect(http, {**member, "Last-Event-ID": before.id})
                async with resumed as stream:
                    # The event of the write made while Redis was down is lost: reset.
                    assert (await stream.next()).event == "reset"
                    await post(http, member, conversation["id"], "after")
                    assert (await stream.next()).data["data"]["content"] == "after"
    finally:
        redis.kill()


async def reconnect(
    http: httpx.AsyncClient, headers: dict[str, str], within: float = 20
) -> contextlib.AbstractAsyncContextManager[EventStream]:
    """A stream opened as EventSource would: retrying while the answer is 503."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        async with http.stream("GET", "/v1/events", headers=headers) as probe:
            status = probe.status_code
        if status == 200:
            return subscribe(http, "/v1/events", headers=headers)
        assert status == 503
        assert asyncio.get_running_loop().time() < deadline, "the events never came back"
        await asyncio.sleep(0.3)


@pytest.fixture(scope="module")
def second_process(api_urls: StackUrls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API in another operating-system process (`syntera serve`), on the same stores."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(api_urls.as_env())
    env.update({
        "SYNTERA_JWT_SECRET": TEST_JWT_SECRET,
        "SYNTERA_SERVICE_KEY": TEST_SERVICE_KEY,
        "SYNTERA_KB_PRELOAD_MODEL": "false",
        "SYNTERA_REDIS_CLUSTER": str(THROUGH_CLUSTER).lower(),
        "SYNTERA_PG_TRANSACTION_POOLER": str(THROUGH_PGBOUNCER).lower(),
    })  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "syntera", "serve", "--no-worker", "--port", str(port),
         "--data-dir", str(tmp_path_factory.mktemp("second-api"))],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ready = wait_until_ready(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200, ready.text
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


async def test_events_fan_out_between_two_api_processes(
    events_url: str, second_process: str, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    member = auth(tenant.member)
    async with (
        httpx.AsyncClient(base_url=events_url, timeout=15) as first,
        httpx.AsyncClient(base_url=second_process, timeout=15) as second,
    ):
        conversation = await start(first, member, tenant.rows["agent_configs"])
        async with (
            subscribe(first, "/v1/events", headers=member) as on_first,
            subscribe(second, "/v1/events", headers=member) as on_second,
        ):
            to_second = await post(second, member, conversation["id"], "posted to process 2")
            to_first = await post(first, member, conversation["id"], "posted to process 1")
            for stream in (on_first, on_second):
                got = [event.data["data"]["id"] for event in await stream.events(2)]
                assert got == [to_second["id"], to_first["id"]]


@pytest.mark.slow
async def test_fifty_companies_streaming_at_once_never_see_each_other(
    events_url: str, auth: AuthHeaders, make_tenant: MakeTenant
) -> None:
    tenants = [await make_tenant() for _ in range(50)]
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=events_url, timeout=30, limits=limits) as http:
        chats = []
        for tenant in tenants:
            watched = await chat_of(http, auth, tenant)
            chats.append((watched, await another_chat(http, watched)))
        async with contextlib.AsyncExitStack() as streams:
            members = [
                await streams.enter_async_context(
                    subscribe(http, "/v1/events", headers=auth(tenant.member))
                )
                for tenant in tenants
            ]
            visitors = [
                await streams.enter_async_context(
                    subscribe(http, f"{watched.url}/events", headers=watched.session)
                )
                for watched, _ in chats
            ]

            async def write(
                tenant: SeededCompany, watched: WidgetChat, unwatched: WidgetChat
            ) -> None:
                sent = await http.post(
                    f"{watched.url}/messages", headers=watched.session, json={"content": "mine"}
                )
                assert sent.status_code == 201
                await post(http, auth(tenant.member), conversation_of(unwatched), "other chat")

            await asyncio.gather(*(
                write(tenant, watched, unwatched)
                for tenant, (watched, unwatched) in zip(tenants, chats, strict=True)
            ))  # fmt: skip
            for tenant, stream, visitor, (watched, unwatched) in zip(
                tenants, members, visitors, chats, strict=True
            ):
                seen = await stream.events(2, within=15)
                assert {event.data["company_id"] for event in seen} == {str(tenant.company_id)}
                assert {event.data["conversation_id"] for event in seen} == {
                    conversation_of(watched),
                    conversation_of(unwatched),
                }
                only = await visitor.next(within=15)
                assert only.data["conversation_id"] == conversation_of(watched)
                assert only.data["data"]["content"] == "mine"
            for stream in (*members, *visitors):
                await stream.nothing_within(0.05)
