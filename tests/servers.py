"""Real servers for tests, each on a free port, that tests can stop, kill and restart.

:class:`RedisServer` runs ``redis-server`` with a password, no persistence (``--save ""``,
``--appendonly no``) and its own directory. The fixtures:

- ``redis_server`` (session): one shared server; tests isolate by namespace.
- ``redis_url``: its URL (with the password).
- ``fresh_redis``: a server of the test's own, for tests that stop, kill or restart it.
- ``tls_redis``: a server of the test's own that speaks only TLS (``rediss://``).
- ``redis_coordinator``: a connected ``RedisCoordinator`` on ``redis_server`` with a fresh
  namespace and a 2 s lease, for the coordination contract tests.
- ``open_coordinator``: :func:`open_redis_coordinator` bound to ``redis_server``, for tests
  that need several coordinators (as several processes would have) or other options.

``tests/conftest.py`` imports the fixtures by name, so every test module finds them.

If ``redis-server`` is not installed, the fixtures install it with apt-get.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from orchestrator.coordination.redis import RedisCoordinator
from tests.ports import free_port

__all__ = [
    "OpenCoordinator",
    "RedisServer",
    "free_port",
    "fresh_redis",
    "make_tls_files",
    "open_coordinator",
    "open_redis_coordinator",
    "redis_binary",
    "redis_coordinator",
    "redis_server",
    "redis_url",
    "tls_redis",
]

#: Lease of the ``redis_coordinator`` fixture: short, so tests of expiry stay quick.
CONTRACT_LEASE_S = 2.0

#: The type of the ``open_coordinator`` fixture.
OpenCoordinator = Callable[..., contextlib.AbstractAsyncContextManager[RedisCoordinator]]


def redis_binary() -> str:
    """Path of redis-server, installing the Debian package if it is missing."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        raise RuntimeError("apt-get installed redis-server but no binary was found")
    return found


def make_tls_files(directory: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 (openssl CLI); returns ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(command: str) -> None:
        args = ["openssl", *command.split()]  # no argument here contains a space
        subprocess.run(args, cwd=directory, check=True, capture_output=True)

    openssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=orchestrator-test-CA "
            "-keyout ca.key -out ca.crt")  # fmt: skip
    openssl("req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
            "-extfile san.ext -out server.crt")  # fmt: skip
    return directory


class RedisServer:
    """One redis-server process with ``requirepass``, restartable on the same port.

    With ``tls_dir`` (see :func:`make_tls_files`) it speaks TLS only, and :attr:`url` is a
    ``rediss://`` URL that trusts the test CA.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        password: str | None = None,
        port: int | None = None,
        tls_dir: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.password = password or secrets.token_urlsafe(12)
        self.port = port or free_port()
        self.tls_dir = tls_dir
        self.binary = redis_binary()
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def url(self) -> str:
        return self.url_with(self.password)

    def url_with(self, password: str | None, *, tls: bool | None = None) -> str:
        """The URL with another password (or none), and with or without TLS."""
        auth = f":{password}@" if password is not None else ""
        if tls if tls is not None else self.tls_dir is not None:
            ca = self.tls_dir / "ca.crt" if self.tls_dir else "none"
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--requirepass", self.password,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.workdir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.tls_dir is not None:
            args += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls_dir / "server.crt"),
                "--tls-key-file", str(self.tls_dir / "server.key"),
                "--tls-ca-cert-file", str(self.tls_dir / "ca.crt"),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        try:
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"redis-server did not start:\n{log}") from None
                    time.sleep(0.02)
        finally:
            client.close()
        self.started_at = time.monotonic()

    def _end(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """Shut down cleanly (nothing is saved: there is no persistence)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-whatever."""
        self._end(signal.SIGKILL)

    def restart(self, *, down_s: float = 0.0) -> None:
        """Kill, stay down ``down_s``, start again on the same port with empty memory."""
        self.kill()
        time.sleep(down_s)
        self.start()

    def quiet_left_s(self, lease_s: float) -> float:
        """How long until the server has been up for ``lease_s`` (plus a second).

        Right after a start, the Redis backend makes no grant for one lease (it cannot tell
        a fresh server from one that restarted and lost live grants); uptime is whole
        seconds, hence the extra second.
        """
        return max(0.0, self.started_at + lease_s + 1.0 - time.monotonic())

    @contextlib.contextmanager
    def running(self) -> Iterator[RedisServer]:
        self.start()
        try:
            yield self
        finally:
            self.kill()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")).running() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def fresh_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis").running() as server:
        yield server


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of the test's own that speaks only TLS, with a test CA."""
    tls_dir = make_tls_files(tmp_path / "tls")
    with RedisServer(tmp_path / "redis", tls_dir=tls_dir).running() as server:
        yield server


@contextlib.asynccontextmanager
async def open_redis_coordinator(
    server: RedisServer,
    *,
    namespace: str | None = None,
    lease_s: float = CONTRACT_LEASE_S,
    **options: Any,
) -> AsyncIterator[RedisCoordinator]:
    """A RedisCoordinator on ``server``, once grants can be made; in a namespace of its
    own unless ``namespace`` names one (to share it, as another process would)."""
    await anyio.sleep(server.quiet_left_s(lease_s))
    async with RedisCoordinator(
        server.url,
        namespace=namespace or "test-" + secrets.token_hex(4),
        lease_s=lease_s,
        **options,
    ) as coordinator:
        yield coordinator


@pytest.fixture
def open_coordinator(redis_server: RedisServer) -> OpenCoordinator:
    """``open_redis_coordinator`` on the shared server: ``async with open_coordinator(...)``."""
    return functools.partial(open_redis_coordinator, redis_server)


@pytest.fixture
async def redis_coordinator(redis_server: RedisServer) -> AsyncIterator[RedisCoordinator]:
    async with open_redis_coordinator(redis_server) as coordinator:
        yield coordinator
