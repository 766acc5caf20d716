"""Every Redis key StoryWorld uses, in one place.

The waiting list is `JOB_QUEUE` itself (default `storyworld:gpu:jobs`), so the deployment
guide's `redis-cli LLEN storyworld:gpu:jobs` is the number of jobs waiting. Everything else
lives under the queue's base name (`storyworld:gpu` for the default).
"""

from __future__ import annotations

from dataclasses import dataclass


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

    # Jobs in flight: lease deadlines (zset, ms), payloads, holders, delivery counts.
    @property
    def inflight(self) -> str:
        return self._k("inflight")

    @property
    def payloads(self) -> str:
        return self._k("payloads")

    @property
    def holders(self) -> str:
        return self._k("holders")

    @property
    def deliveries(self) -> str:
        return self._k("deliveries")

    @property
    def started(self) -> str:
        """Jobs taken since the engine last looked (hash job_id -> worker|ms)."""
        return self._k("started")

    @property
    def cancelled(self) -> str:
        """Job ids a worker holding them should stop (set)."""
        return self._k("cancelled")

    @property
    def dead(self) -> str:
        return self._k("dead")

    @property
    def wake_prefix(self) -> str:
        return self._k("wake:")

    def wake(self, backend: str) -> str:
        """One token per waiting job of `backend`: what idle workers block on."""
        return f"{self.wake_prefix}{backend}"

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
    def paused(self) -> str:
        return self._k("engine:paused")

    @property
    def stats(self) -> str:
        return self._k("stats")

    @classmethod
    def from_settings(cls, settings: object) -> Keys:
        return cls(jobs=settings.job_queue, results=settings.result_queue)  # type: ignore[attr-defined]
