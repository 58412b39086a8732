"""PgBouncer in transaction mode in front of the session's PostgreSQL (Debian's
``pgbouncer`` package; the tests that need it skip, saying so, where it is missing).

``SYNTERA_TEST_THROUGH_PGBOUNCER=1`` makes the API of the whole test session connect
through it, as a production deployment behind PgBouncer or Supavisor would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

THROUGH_PGBOUNCER = os.environ.get("SYNTERA_TEST_THROUGH_PGBOUNCER") == "1"
MISSING = "needs Debian's pgbouncer package (apt-get install pgbouncer)"
RUN_AS = "embedded_postgres"  # PgBouncer refuses to run as root


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_pgbouncer(api_url: str, directory: Path, pool_size: int = 4) -> Iterator[str]:
    """Run PgBouncer (transaction pooling, ``pool_size`` server connections) in front of
    the server of ``api_url``; yield the URL that reaches the same database through it."""
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip(MISSING)
    target = conninfo_to_dict(api_url)
    port = _free_port()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "users.txt").write_text('"authenticator" ""\n"syntera_system" ""\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"{target['dbname']} = host={target['host']} port={target.get('port', 5432)}"
        f" dbname={target['dbname']}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {directory / 'users.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmin_pool_size = 0\nmax_client_conn = 500\n"
        f"logfile = {directory / 'pgbouncer.log'}\npidfile = {directory / 'pgbouncer.pid'}\n"
    )
    command = [binary, str(config)]
    if os.geteuid() == 0:
        # The unprivileged user must reach the folder: let it through the parents that
        # a temporary directory made private (traverse only, no listing).
        for parent in directory.parents:
            if parent == Path(tempfile.gettempdir()) or parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o111)
        shutil.chown(directory, RUN_AS)
        for path in directory.iterdir():
            shutil.chown(path, RUN_AS)
        command = [binary, "-u", RUN_AS, str(config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {process.stdout.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.05)
        yield make_conninfo(
            host="127.0.0.1", port=port, dbname=target["dbname"], user="authenticator"
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
