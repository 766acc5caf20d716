"""Local worker processes for `storyworld render` and the console on the local default."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from storyworld.config import Settings
from storyworld.storage import ArtifactStore, LocalStore

__all__ = ["LocalFleet"]

log = logging.getLogger(__name__)


class LocalFleet:
    """Start N `storyworld-worker` processes against a Redis URL; stop them gracefully."""

    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        store: ArtifactStore,
        backends: list[str],
        count: int,
        *,
        name: str = "local",
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.store = store
        self.backends = backends
        self.count = count
        self.name = name
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log_dir = Path(settings.home) / "logs"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["REDIS_URL"] = self.redis_url
        env["LOCAL_MODE"] = "false"
        env["JOB_QUEUE"] = self.settings.job_queue
        env["RESULT_QUEUE"] = self.settings.result_queue
        env["STORYWORLD_HOME"] = str(self.settings.home)
        env["PYTHONUNBUFFERED"] = "1"
        # Local workers stop by themselves if the program that started them dies.
        env["STORYWORLD_PARENT_PID"] = str(os.getpid())
        # A local stop should be quick: finish within 5 s or hand the job back.
        env.setdefault("SHUTDOWN_GRACE_SECONDS", "5")
        # The local Redis is not metered: show progress every second.
        env.setdefault("PROGRESS_INTERVAL_SECONDS", "1")
        if isinstance(self.store, LocalStore):
            env["STORAGE_URL"] = self.store.root.as_uri()
        return env

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self._env()
        for i in range(self.count):
            worker_id = f"{self.name}-{os.getpid()}-{i}"
            logf = open(self.log_dir / f"{worker_id}.log", "ab")  # noqa: SIM115
            cmd = [
                sys.executable,
                "-m",
                "storyworld.worker.cli",
                "--backends",
                ",".join(self.backends),
                "--worker-id",
                worker_id,
                "--env-file",
                "",
            ]
            proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            logf.close()
            self.procs.append(proc)
        log.info("started %d local worker(s) with %s", self.count, ",".join(self.backends))

    def alive(self) -> int:
        return sum(1 for p in self.procs if p.poll() is None)

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM (finish or hand back the job in hand), then SIGKILL after `grace_s`."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
