"""A real PostgreSQL for tests, on a free port, that tests can stop, kill and restart.

:class:`PostgresServer` runs the Debian ``postgres`` binary on a data directory of its own,
listening on 127.0.0.1 only (no Unix socket). The superuser ``postgres`` logs in by
``trust``; the role ``orch`` (owner of the database ``orch``) needs its password
(``scram-sha-256``), so DSN tests see real password checks. As root, the server runs as
the ``postgres`` user (initdb refuses root) in a temporary directory that user owns.

``initdb`` runs once per session into a template directory; each server is a copy of it
(a fraction of a second), so a test can have a server of its own.

The fixtures:

- ``postgres_server`` (session): one shared server (``fsync=off``); tests isolate by schema.
- ``fresh_postgres``: a server of the test's own, for tests that stop, kill or restart it.

If the binaries are missing, they are installed with apt-get (package ``postgresql``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port

__all__ = [
    "PostgresServer",
    "PostgresTemplate",
    "fresh_postgres",
    "postgres_bindir",
    "postgres_server",
    "postgres_template",
]

ROLE = "orch"
DATABASE = "orch"

_HBA = """\
# TYPE  DATABASE  USER      ADDRESS        METHOD
host    all       postgres  127.0.0.1/32   trust
host    all       all       127.0.0.1/32   scram-sha-256
"""


def postgres_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin``, installing the Debian package if missing."""
    found = _bindirs()
    if not found:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(install, env=env, check=True)
        found = _bindirs()
        if not found:
            raise RuntimeError("apt-get installed postgresql but no initdb was found")
    return found[-1]


def _bindirs() -> list[Path]:
    dirs = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    return sorted(dirs, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)


def _server_user() -> str | None:
    """Who runs the server: ``postgres`` when we are root (initdb refuses root), else us."""
    return "postgres" if os.geteuid() == 0 else None


def _private_dir(prefix: str) -> Path:
    """A new directory the server's user owns, in a place that user can reach."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


class PostgresTemplate:
    """A data directory made by ``initdb`` once, with the ``orch`` role and database."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.root = _private_dir("orch-pg-template-")
        self.data = self.root / "data"
        self.password = "pw-" + secrets.token_urlsafe(12)
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D", str(self.data),
                "-U", "postgres",
                "-A", "trust",
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            user=_server_user(),
            group=_server_user(),
        )  # fmt: skip
        (self.data / "pg_hba.conf").write_text(_HBA)
        server = PostgresServer(self, fsync=False, in_place=True)
        try:
            server.start()
            server.psql(
                f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'",
                f"CREATE DATABASE {DATABASE} OWNER {ROLE}",
            )
        finally:
            server.stop()  # a clean shutdown: copies start without recovery

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class PostgresServer:
    """One postgres process on a copy of the template, restartable on the same port."""

    def __init__(
        self,
        template: PostgresTemplate,
        *,
        fsync: bool = False,
        port: int | None = None,
        in_place: bool = False,
    ) -> None:
        self.template = template
        self.bindir = template.bindir
        self.password = template.password
        self.fsync = fsync
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        if in_place:  # the template's own data (only while making it)
            self.root, self.data = template.root, template.data
        else:
            self.root = _private_dir("orch-pg-")
            self.data = self.root / "data"
            # cp -a keeps the owner (postgres) and the 0700 mode the server insists on.
            subprocess.run(["cp", "-a", str(template.data), str(self.data)], check=True)
        self.log = self.root / "postgres.log"

    @property
    def dsn(self) -> str:
        """The password-protected role's DSN (its own database)."""
        return self.dsn_with(self.password)

    def dsn_with(self, password: str | None, *, user: str = ROLE) -> str:
        """A DSN for ``user`` with another password, or none."""
        auth = f"{user}:{password}@" if password is not None else f"{user}@"
        return f"postgresql://{auth}127.0.0.1:{self.port}/{DATABASE}"

    @property
    def superuser_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def start(self, timeout_s: float = 30.0) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": "40",
            "shared_buffers": "32MB",
            # fsync=off survives a killed server (the OS keeps the writes), not a power cut;
            # synchronous_commit stays on, or a kill would lose commits already confirmed.
            "fsync": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "logging_collector": "off",
        }
        args = [str(self.bindir / "postgres"), "-D", str(self.data)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group: kill() takes the backends too
                user=_server_user(),
                group=_server_user(),
            )
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                self.kill()
                raise RuntimeError(f"postgres did not start on port {self.port}:\n{tail}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        check = [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(check, check=False, timeout=10).returncode == 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected, everything is written, the server exits."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def kill(self) -> None:
        """SIGKILL to the server and its backends: it vanishes mid-whatever (WAL replay on
        the next start)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def restart(self, *, down_s: float = 0.0, kill: bool = False) -> None:
        """Stop (or kill), stay down ``down_s``, start again on the same port."""
        if kill:
            self.kill()
        else:
            self.stop()
        time.sleep(down_s)
        self.start()

    def psql(self, *statements: str, database: str = "postgres") -> str:
        """Run statements as the superuser; return psql's output (unaligned, tuples only)."""
        args = [
            str(self.bindir / "psql"),
            "-X", "-q", "-A", "-t",
            "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port),
            "-U", "postgres", "-d", database,
        ]  # fmt: skip
        for statement in statements:
            args += ["-c", statement]
        done = subprocess.run(args, check=True, capture_output=True, text=True, timeout=30)
        return done.stdout

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.contextmanager
    def running_server(self) -> Iterator[PostgresServer]:
        self.start()
        try:
            yield self
        finally:
            self.remove()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate]:
    template = PostgresTemplate()
    try:
        yield template
    finally:
        template.remove()


@pytest.fixture(scope="session")
def postgres_server(postgres_template: PostgresTemplate) -> Iterator[PostgresServer]:
    with PostgresServer(postgres_template).running_server() as server:
        yield server


@pytest.fixture
def fresh_postgres(postgres_template: PostgresTemplate) -> Iterator[PostgresServer]:
    with PostgresServer(postgres_template).running_server() as server:
        yield server
