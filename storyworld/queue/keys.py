"""Every Redis key StoryWorld uses, in one place, all derived from the job queue's name.

`JOB_QUEUE` (default `storyworld:gpu:jobs`) names the waiting set itself; everything else
lives under its base name (`storyworld:gpu` for the default). With a hash tag in the name
(`{storyworld}:gpu:jobs`) every key lands in one Redis Cluster slot, so each script's keys
are on one node. Every key a script touches is passed to it in KEYS: no script builds a key
name (Redis Cluster, Upstash and Dragonfly require it).

Types: `jobs` zset (waiting job ids, scored by enqueue time in ms), `data` hash (payloads of
waiting and in-flight jobs), `wake:{backend}[@{GB}]` lists of job ids (what workers pop),
`inflight` zset (`job_id|worker` by lease deadline), `results` stream (consumer group
`engine`), `dead` hash (job id -> dead letter).
"""

from __future__ import annotations

from dataclasses import dataclass

# The memory classes and the wake-list rule are part of the protocol (Lua gets them as ARGV).
from storyworld.protocol.routing import KNOWN_BACKENDS, VRAM_CLASSES, vram_classes_arg, wake_suffix

__all__ = [
    "DEFAULT_BACKENDS",
    "RESULTS_GROUP",
    "VRAM_CLASSES",
    "Keys",
    "suffixes_of",
    "vram_classes_arg",
    "wake_suffix",
]

#: Backends the engine may route to; their wake lists are passed to its tick (it learns
#: others from what it enqueues and from the tick's reply).
DEFAULT_BACKENDS = (*KNOWN_BACKENDS, "bench")

DEFAULT_JOBS = "storyworld:gpu:jobs"
DEFAULT_RESULTS = "storyworld:gpu:results"

#: Consumer group (and consumer) on the results stream: whichever engine leads reads as it.
RESULTS_GROUP = "engine"


def suffixes_of(backends: tuple[str, ...] | list[str]) -> list[str]:
    """Every wake suffix of these backends: plain, then each memory class."""
    out: list[str] = []
    for b in backends:
        out.append(b)
        out += [f"{b}@{c}" for c in VRAM_CLASSES]
    return out


@dataclass(frozen=True)
class Keys:
    jobs: str = DEFAULT_JOBS
    #: Empty: derived from the base (`{base}:results`, the seed's default for the default base).
    results_name: str = ""

    def __init__(self, jobs: str = DEFAULT_JOBS, results: str = "") -> None:
        object.__setattr__(self, "jobs", jobs)
        object.__setattr__(self, "results_name", results)

    @property
    def base(self) -> str:
        head, sep, tail = self.jobs.rpartition(":")
        return head if sep and tail == "jobs" else self.jobs

    def _k(self, name: str) -> str:
        return f"{self.base}:{name}"

    @property
    def waiting(self) -> str:
        """Waiting job ids (zset scored by enqueue time, ms): what scripts claim and withdraw
        in O(log n). `jobs` (JOB_QUEUE itself) is a list with one entry per waiting job, so
        `LLEN JOB_QUEUE` is the number waiting, as the deployment guide has operators read it."""
        return self._k("waiting")

    @property
    def results(self) -> str:
        """Results and wake nudges for the engine (stream, consumer group `engine`)."""
        return self.results_name or self._k("results")

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
        """Ids of waiting jobs of one backend (and memory class): what workers pop."""
        return f"{self.wake_prefix}{suffix}"

    def wake_of(self, backend: str, min_vram_gb: float = 0.0) -> str:
        """The wake list of a job (the same key for enqueue, reclaim, repair and requeue)."""
        return self.wake(wake_suffix(backend, min_vram_gb))

    def wake_lists(self, backends: list[str], vram_gb: float = 0.0) -> list[str]:
        """The wake lists a worker with `backends` and `vram_gb` of GPU memory listens on,
        the most demanding first (a big card serves the jobs only it can run)."""
        out = []
        for b in backends:
            out += [self.wake(f"{b}@{c}") for c in reversed(VRAM_CLASSES) if c <= vram_gb]
            out.append(self.wake(b))
        return out

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
        results = settings.result_queue  # type: ignore[attr-defined]
        # The default result name follows the job queue's base (one slot with a hash tag).
        return cls(
            jobs=settings.job_queue,  # type: ignore[attr-defined]
            results="" if results == DEFAULT_RESULTS else results,
        )
