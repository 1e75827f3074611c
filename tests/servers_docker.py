"""A Docker engine for tests, and a Redis image built without any registry.

The engine: if one answers at ``$DOCKER_HOST`` (or ``/var/run/docker.sock``), the tests use it.
Otherwise they start a private ``dockerd`` (Debian's ``docker.io``, installed with apt-get when
``dockerd`` is missing) for the session, with everything of its own in a short temporary
directory: ``--data-root``, ``--exec-root`` (its own containerd), ``--pidfile`` and a
``--host`` Unix socket. It runs with ``--bridge=none --iptables=false --ip6tables=false``:
no bridge, no NAT rules on this machine, so containers use the host's network
(``network_mode="host"``) and each Redis listens on 127.0.0.1 on a free port of its own.
If overlay2 does not work where the directory lives, it starts again with ``vfs``. At the
end of the session dockerd gets SIGTERM (it stops what still runs) and its directory goes.

The image: ``docker import`` of a root filesystem assembled here: ``/usr/bin/redis-server``
and ``redis-cli`` (Debian's ``redis-server`` package, installed when missing) with the shared
libraries ``ldd`` names. Tagged by the binaries' digest, so an engine that outlives the
session builds it once.

The fixtures:

- ``docker_compose`` (session): the path of Debian's docker-compose (no engine needed).
- ``docker_engine`` (session): the :class:`DockerEngine` (``url``, ``private``).
- ``docker_client`` (session): a ``docker.DockerClient`` on it.
- ``redis_image`` (session): the image's name.
- ``redis_containers``: ``redis_containers(...)`` runs a :class:`RedisContainer`
  (see :func:`run_redis_container`); every container the test made (labelled with the
  test's token, also those re-created from them) is removed after the test.

Registered for the whole suite by tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import redis

from tests.servers import free_port, redis_binary

__all__ = [
    "DockerEngine",
    "RedisContainer",
    "build_redis_image",
    "compose_binary",
    "docker_client",
    "docker_compose",
    "docker_engine",
    "redis_containers",
    "redis_image",
    "run_redis_container",
    "start_private_dockerd",
]

DEFAULT_URL = "unix:///var/run/docker.sock"
#: Label on every container a test makes; its value is the test's token.
TEST_LABEL = "orch-test"
#: Private dockerds live in /tmp/<ROOT_PREFIX>XXXX (short: socket paths have a limit).
ROOT_PREFIX = "orch-dockerd-"
#: Health checks every half second, so "healthy" comes quickly.
HEALTH_INTERVAL_NS = 500_000_000


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, check=False, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)


def compose_binary() -> str:
    """Path of Debian's docker-compose (v1), installing it if it is missing."""
    found = shutil.which("docker-compose")
    if found is None:
        _apt_install("docker-compose")
        found = shutil.which("docker-compose")
    if found is None:
        raise RuntimeError("apt-get installed docker-compose but no binary was found")
    return found


def _answers(url: str, timeout_s: float = 3.0) -> bool:
    if url.startswith("unix://"):
        # The SDK leaks its socket when connecting to a Unix socket fails: try it first.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(url.removeprefix("unix://"))
            except OSError:
                return False
    # An explicit version: "auto" would ask in the constructor and leak the socket on failure.
    client = docker.DockerClient(base_url=url, version="1.24", timeout=int(timeout_s))
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, OSError):
        return False
    finally:
        client.close()


@dataclass
class DockerEngine:
    """An engine the tests may use: ``url``; ``process`` and ``root`` if we started it."""

    url: str
    process: subprocess.Popen[bytes] | None = None
    root: Path | None = None

    @property
    def private(self) -> bool:
        return self.process is not None

    def log_tail(self, chars: int = 3000) -> str:
        if self.root is None:
            return ""
        return (self.root / "dockerd.log").read_text(errors="replace")[-chars:]

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM dockerd (it stops its containers), SIGKILL after ``grace_s``, then
        unmount and delete what it left in its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.root is not None:
            _unmount_below(self.root)
            shutil.rmtree(self.root, ignore_errors=True)


def _unmount_below(root: Path) -> None:
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    points = [p for p in points if p == str(root) or p.startswith(f"{root}/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _remove_stale_roots() -> None:
    """Directories of private dockerds whose process is gone (a session that was killed)."""
    for root in Path("/tmp").glob(f"{ROOT_PREFIX}*"):
        try:
            pid = int((root / "docker.pid").read_text())
            os.kill(pid, 0)
            continue  # still running: another session's
        except (OSError, ValueError):
            pass
        if time.time() - root.stat().st_mtime > 60:  # not one that is just starting
            _unmount_below(root)
            shutil.rmtree(root, ignore_errors=True)


def _dockerd_binary() -> str:
    found = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
    if found is None:
        if os.geteuid() != 0:
            raise RuntimeError(
                "no Docker engine answers and dockerd is not installed: install docker.io"
            )
        _apt_install("docker.io")
        found = shutil.which("dockerd") or "/usr/sbin/dockerd"
    return found


def start_private_dockerd(timeout_s: float = 60.0) -> DockerEngine:
    """Start a dockerd of our own (see the module docstring) and wait until it answers.

    Raises RuntimeError with dockerd's own last log lines when it does not come up.
    """
    if os.geteuid() != 0:
        raise RuntimeError("no Docker engine answers, and starting one needs root")
    binary = _dockerd_binary()
    # Unix socket paths are limited to 108 bytes: keep the directory short.
    _remove_stale_roots()
    root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir="/tmp"))
    url = f"unix://{root}/docker.sock"
    failure = ""
    for driver in ("overlay2", "vfs"):
        # setpriv --pdeathsig: dockerd gets SIGTERM when the test process dies, even by
        # SIGKILL, so an interrupted session leaves no engine behind.
        args = [
            *(["setpriv", "--pdeathsig", "TERM"] if shutil.which("setpriv") else []),
            binary,
            "--data-root", str(root / "data"),
            "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "docker.pid"),
            "--host", url,
            "--bridge=none", "--iptables=false", "--ip6tables=false",
            "--storage-driver", driver,
            "--log-level", "warn",
            "--shutdown-timeout", "5",
        ]  # fmt: skip
        log = (root / "dockerd.log").open("ab")
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        engine = DockerEngine(url, process, root)
        deadline = time.monotonic() + timeout_s
        while process.poll() is None and time.monotonic() < deadline:
            if _answers(url, timeout_s=2.0):
                return engine
            time.sleep(0.1)
        failure = engine.log_tail()
        engine.process = None
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        _unmount_below(root)
        shutil.rmtree(root / "data", ignore_errors=True)
    engine = DockerEngine(url, None, root)
    engine.stop()
    raise RuntimeError(f"dockerd did not start ({' '.join(args)}):\n{failure}")


def _libraries(binary: str) -> list[str]:
    listing = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    return re.findall(r"(/\S+) \(0x", listing)


def build_redis_image(client: Any) -> str:
    """Import an image holding redis-server and redis-cli with their libraries; its name."""
    server = redis_binary()
    cli = str(Path(server).with_name("redis-cli"))
    if not Path(cli).exists():
        _apt_install("redis-tools")
    files = sorted({server, cli, *_libraries(server), *_libraries(cli)})
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + Path(name).read_bytes())
    image = f"orch-test/redis:{digest.hexdigest()[:12]}"
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(image)
        return image
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("tmp", "data"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(info)
        for name in files:
            # The files themselves, not the links to them (/lib64/ld-linux...: a link).
            tar.add(str(Path(name).resolve()), arcname=name.lstrip("/"))
    repository, tag = image.split(":")
    client.api.import_image_from_data(
        buffer.getvalue(),
        repository=repository,
        tag=tag,
        changes=['CMD ["/usr/bin/redis-server"]', "WORKDIR /data"],
    )
    return image


@dataclass
class RedisContainer:
    """A Redis server in a container on the host's network, on 127.0.0.1:``port``."""

    container: Any  # docker.models.containers.Container
    name: str
    port: int
    password: str | None

    def client(self, password: str | None = None, **options: Any) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=password, socket_timeout=2.0, **options
        )

    def wait_healthy(self, timeout_s: float = 15.0) -> None:
        """Block until the engine reports the health check passing."""
        deadline = time.monotonic() + timeout_s
        while self.reload()["State"].get("Health", {}).get("Status") != "healthy":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not healthy within {timeout_s:g}s")
            time.sleep(0.1)

    def reload(self) -> dict[str, Any]:
        """The container's inspection now (by name: re-created containers keep it)."""
        info: dict[str, Any] = self.container.client.api.inspect_container(self.name)
        return info


def redis_command(port: int, password: str | None = None, *extra: str) -> list[str]:
    command = ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--loglevel", "verbose"]  # fmt: skip
    if password is not None:
        command += ["--requirepass", password]
    return [*command, *extra]


def run_redis_container(
    client: Any,
    image: str,
    *,
    label: str,
    name: str | None = None,
    password: str | None = None,
    healthcheck: bool = True,
    env: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
    wait_s: float = 20.0,
) -> RedisContainer:
    """Run ``redis-server`` (verbose log, no persistence) on a free port of 127.0.0.1 and
    wait until it answers PING (with the password, if any). Its health check is
    ``redis-cli -e ping`` (authenticating with ``$REDISCLI_AUTH`` when the env sets it)."""
    port = free_port()
    name = name or f"orch-redis-{secrets.token_hex(4)}"
    check = None
    if healthcheck:
        check = {
            "test": ["CMD", "/usr/bin/redis-cli", "-e", "-p", str(port), "ping"],
            "interval": HEALTH_INTERVAL_NS,
            "timeout": 2_000_000_000,
            "retries": 3,
        }
    container = client.containers.run(
        image,
        redis_command(port, password, *extra_args),
        name=name,
        detach=True,
        network_mode="host",
        environment=env or {},
        labels={TEST_LABEL: label},
        healthcheck=check,
    )
    server = RedisContainer(container, name, port, password)
    deadline = time.monotonic() + wait_s
    connection = server.client(password)
    try:
        while True:
            try:
                connection.ping()
                return server
            except redis.ConnectionError:
                container.reload()
                if container.status == "exited" or time.monotonic() > deadline:
                    logs = container.logs().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"redis container {name} did not start:\n{logs}") from None
                time.sleep(0.05)
    finally:
        connection.close()


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """Path of docker-compose (installed with apt-get if missing); needs no engine."""
    return compose_binary()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    url = os.environ.get("DOCKER_HOST") or DEFAULT_URL
    if _answers(url):
        yield DockerEngine(url)
        return
    engine = start_private_dockerd()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def docker_client(docker_engine: DockerEngine) -> Iterator[Any]:
    client = docker.DockerClient(base_url=docker_engine.url, version="auto", timeout=60)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_image(docker_client: Any) -> str:
    return build_redis_image(docker_client)


@pytest.fixture
def redis_containers(
    docker_client: Any, redis_image: str
) -> Iterator[Callable[..., RedisContainer]]:
    """``redis_containers(**options)`` runs one (see :func:`run_redis_container`)."""
    label = secrets.token_hex(6)

    def run(**options: Any) -> RedisContainer:
        return run_redis_container(docker_client, redis_image, label=label, **options)

    try:
        yield run
    finally:
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{TEST_LABEL}={label}"}
        ):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
