"""The embedded stack: idempotent start, restart with data intact, recovery from crashes,
stale pid files, taken ports and over-long socket paths. Each test uses its own stack."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import psycopg
import pymongo
import pytest
import redis

from syntera.embedded import MONGODB, POSTGRES, REDIS, SERVICES, EmbeddedStack

# Every test here starts, kills or restarts real servers.
pytestmark = pytest.mark.slow


@pytest.fixture
def stack() -> Iterator[EmbeddedStack]:
    path = Path(tempfile.mkdtemp(prefix="syn-emb-", dir="/tmp"))
    embedded = EmbeddedStack(path)
    yield embedded
    embedded.stop()
    shutil.rmtree(path, ignore_errors=True)


def write_data(stack: EmbeddedStack) -> None:
    urls = stack.urls()
    with psycopg.connect(urls.database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (value text)")
        conn.execute("INSERT INTO kept VALUES ('postgres survives')")
    with pymongo.MongoClient(urls.mongodb_uri, serverSelectionTimeoutMS=5000) as client:
        client.syntera.kept.insert_one({"value": "mongodb survives"})
    with redis.Redis.from_url(urls.redis_url) as client:
        client.set("kept", "redis survives")


def read_data(stack: EmbeddedStack) -> tuple[object, ...]:
    urls = stack.urls()
    with psycopg.connect(urls.database_url) as conn:
        pg = conn.execute("SELECT value FROM kept").fetchone()
    with pymongo.MongoClient(urls.mongodb_uri, serverSelectionTimeoutMS=5000) as client:
        doc = client.syntera.kept.find_one({}, {"_id": 0})
    with redis.Redis.from_url(urls.redis_url) as client:
        value = client.get("kept")
    return pg, doc, value


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its parent's wait is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


EXPECTED = (("postgres survives",), {"value": "mongodb survives"}, b"redis survives")


def test_start_twice_stop_and_start_again_keeps_data(stack: EmbeddedStack) -> None:
    first = stack.start()
    pids = {name: stack.pid_of(name) for name in SERVICES}
    assert stack.is_running()
    write_data(stack)

    assert stack.start() == first  # already running: same URLs, same processes
    assert {name: stack.pid_of(name) for name in SERVICES} == pids

    assert sorted(stack.stop()) == sorted(SERVICES)
    assert not any(status.running for status in stack.status())
    assert not any(alive(pid) for pid in pids.values() if pid is not None)
    assert stack.stop() == []  # stopping a stopped stack does nothing

    assert stack.start() == first  # the same ports again
    assert read_data(stack) == EXPECTED


@pytest.mark.parametrize("victim", SERVICES)
def test_killed_server_is_revived_by_start(stack: EmbeddedStack, victim: str) -> None:
    stack.start()
    write_data(stack)
    # A clean restart first: SecantusDB, like mongod with its default write concern
    # (j: false), may lose the last acknowledged writes to a SIGKILL; what is on disk
    # must survive it.
    stack.stop()
    stack.start()
    pid = stack.pid_of(victim)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while stack.pid_of(victim) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    status = {s.name: s for s in stack.status()}
    assert not status[victim].running
    assert "stale pid file" in status[victim].detail

    stack.start()
    assert stack.is_running()
    assert stack.pid_of(victim) != pid
    assert read_data(stack) == EXPECTED


def test_stale_pid_file_naming_another_process_is_ignored(stack: EmbeddedStack) -> None:
    stack.start((MONGODB,))
    stack.stop()
    # A pid file that points at a live process that is not our server (this test).
    (stack.run_dir / "mongodb.pid").write_text(str(os.getpid()))
    assert stack.pid_of(MONGODB) is None
    stack.start((MONGODB,))
    assert stack.pid_of(MONGODB) not in (None, os.getpid())


def test_port_taken_by_another_process_moves_to_a_free_port(stack: EmbeddedStack) -> None:
    stack.start((REDIS,))
    old_url = stack.urls().redis_url
    stack.stop()
    port = int(old_url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        stack.start((REDIS,))
        new_url = stack.urls().redis_url
        assert new_url != old_url
        with redis.Redis.from_url(new_url) as client:
            assert client.ping()


def test_data_dir_too_long_for_a_unix_socket_still_works() -> None:
    root = Path(tempfile.mkdtemp(prefix="syn-long-", dir="/tmp"))
    deep = root / ("d" * 60) / ("e" * 60)
    stack = EmbeddedStack(deep)
    try:
        assert len(str(stack.pgdata / ".s.PGSQL.5432")) > 107
        assert len(str(stack.socket_dir() / ".s.PGSQL.5432")) <= 107
        stack.start((POSTGRES,))
        with psycopg.connect(stack.urls().database_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_cli_services_start_prints_eval_lines_and_status_reports(stack: EmbeddedStack) -> None:
    command = [sys.executable, "-m", "syntera", "services"]
    data_dir = ["--data-dir", str(stack.data_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    started = subprocess.run(
        [*command, "start", *data_dir], capture_output=True, text=True, env=env, timeout=120
    )
    assert started.returncode == 0, started.stderr
    lines = dict(line.split("=", 1) for line in started.stdout.splitlines())
    assert set(lines) == {
        "SYNTERA_DATABASE_URL",
        "SYNTERA_API_DATABASE_URL",
        "SYNTERA_SYSTEM_DATABASE_URL",
        "SYNTERA_MONGODB_URI",
        "SYNTERA_REDIS_URL",
    }
    again = subprocess.run(
        [*command, "start", *data_dir], capture_output=True, text=True, env=env, timeout=120
    )
    assert again.stdout == started.stdout
    status = subprocess.run(
        [*command, "status", *data_dir], capture_output=True, text=True, env=env, timeout=60
    )
    assert status.returncode == 0
    assert status.stdout.count("running") == 3
    stopped = subprocess.run(
        [*command, "stop", *data_dir], capture_output=True, text=True, env=env, timeout=120
    )
    assert stopped.returncode == 0
    down = subprocess.run(
        [*command, "status", *data_dir], capture_output=True, text=True, env=env, timeout=60
    )
    assert down.returncode == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until_ready(url: str, timeout_s: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200 or time.monotonic() > deadline:
                return response
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def test_syntera_up_migrates_serves_and_stops_cleanly_on_ctrl_c(stack: EmbeddedStack) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    port = free_port()
    command = ["up", "--data-dir", str(stack.data_dir), "--port", str(port), "--demo"]
    process = subprocess.Popen(
        [sys.executable, "-m", "syntera", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "syntera is up" in line or not line:
            break
    assert any("syntera is up" in line for line in lines), lines
    assert any("applied 004_row_level_security.sql" in line for line in lines), lines
    assert stack.is_running()
    ready = wait_until_ready(f"http://127.0.0.1:{port}/readyz")
    assert ready.json() == {"status": "ready"}
    signed_up = httpx.post(
        f"http://127.0.0.1:{port}/auth/v1/signup",
        json={"email": "up@example.com", "password": "a long enough password"},
    )
    assert signed_up.status_code == 200, signed_up.text
    assert any("demo: sign in as demo@syntera.local" in line for line in lines), lines
    demo = httpx.post(
        f"http://127.0.0.1:{port}/auth/v1/token", params={"grant_type": "password"},
        json={"email": "demo@syntera.local", "password": "demo-password"},
    )  # fmt: skip
    assert demo.status_code == 200, demo.text
    token = demo.json()["access_token"]
    contacts = httpx.get(
        f"http://127.0.0.1:{port}/v1/contacts", headers={"Authorization": f"Bearer {token}"}
    )
    assert len(contacts.json()["data"]) == 3
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0
    assert not any(status.running for status in stack.status())


def test_the_embedded_mongodb_url_turns_retryable_writes_off(stack: EmbeddedStack) -> None:
    # SecantusDB would keep every retryable write's reply for 30 minutes and walk them all
    # at each write (see EmbeddedStack.urls); a client of the embedded URL sends none.
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(stack.start().mongodb_uri, connect=False)
    try:
        assert client.options.retry_writes is False
        assert client.options.retry_reads is True
    finally:
        client.close()
