"""Every Redis key StoryWorld uses, in one place.

The waiting list is `JOB_QUEUE` itself (default `storyworld:gpu:jobs`), so the deployment
guide's `redis-cli LLEN storyworld:gpu:jobs` is the number of jobs waiting. Everything else
lives under the queue's base name (`storyworld:gpu` for the default).
"""

from __future__ import annotations

from dataclasses import dataclass

from storyworld.protocol.routing import VRAM_CLASSES, wake_suffix

# The memory classes and the wake-list rule are part of the protocol (Lua gets them as ARGV).
__all__ = ["VRAM_CLASSES", "Keys", "wake_suffix"]


@dataclass(frozen=True)
class Keys:
    jobs: str = "storyworld:gpu:jobs"
    results: str = "storyworld:gpu:results"

    @property
    def base(self) -> str:
        head, sep, tail = self.jobs.rpartition(":")
        return head if sep and tail == "jobs" else self.jobs

    def _k(self, name: str) -> str:
        return f"{self.base}:{name}"

    # Jobs in flight: members "job_id|worker" scored by lease deadline (ms), and payloads.
    @property
    def inflight(self) -> str:
        return self._k("inflight")

    @property
    def data(self) -> str:
        return self._k("data")

    @property
    def cancelled(self) -> str:
        """Job ids a worker holding them should stop (set)."""
        return self._k("cancelled")

    @property
    def dead(self) -> str:
        return self._k("dead")

    @property
    def dead_new(self) -> str:
        """Jobs dead-lettered since the engine last looked (hash job_id -> reason)."""
        return self._k("dead:new")

    @property
    def wake_prefix(self) -> str:
        return self._k("wake:")

    def wake(self, suffix: str) -> str:
        """Waiting payloads of one backend (and memory class): what idle workers block on."""
        return f"{self.wake_prefix}{suffix}"

    def wake_lists(self, backends: list[str], vram_gb: float = 0.0) -> list[str]:
        """The wake lists a worker with `backends` and `vram_gb` of GPU memory listens on."""
        out = []
        for b in backends:
            out.append(self.wake(b))
            out += [self.wake(f"{b}@{c}") for c in VRAM_CLASSES if c <= vram_gb]
        return out

    @property
    def results_processing(self) -> str:
        return f"{self.results}:processing"

    @property
    def workers(self) -> str:
        """Known workers (zset worker_id -> last heartbeat, s)."""
        return self._k("workers")

    @property
    def worker_prefix(self) -> str:
        return self._k("worker:")

    def worker(self, worker_id: str) -> str:
        """A worker's heartbeat (hash, expires by itself)."""
        return f"{self.worker_prefix}{worker_id}"

    def worker_logs(self, worker_id: str) -> str:
        return f"{self.worker_prefix}{worker_id}:logs"

    @property
    def events(self) -> str:
        """Stream of changes for consoles: heartbeats, starts, results, uploads."""
        return self._k("events")

    @property
    def engine_lease(self) -> str:
        return self._k("engine:lease")

    @property
    def engine_handover(self) -> str:
        """A busy standby blocks here; an engine stopping cleanly pushes to it (list)."""
        return self._k("engine:handover")

    @property
    def paused(self) -> str:
        return self._k("engine:paused")

    @property
    def stats(self) -> str:
        return self._k("stats")

    @classmethod
    def from_settings(cls, settings: object) -> Keys:
        return cls(jobs=settings.job_queue, results=settings.result_queue)  # type: ignore[attr-defined]
