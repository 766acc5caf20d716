"""What the console shows, as plain data, and the event model that keeps it current.

The UI renders a `Snapshot` (immutable, comparable: an unchanged snapshot is never sent).
`LiveModel` holds the Redis side of it between the rare full reads: it applies the events
the queue's scripts write to the event stream (heartbeats carry every worker field, done
and failed events carry the uploads), so a change shows within a second without polling
Redis. Nothing here does I/O or imports Textual.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "CostView",
    "DeadLetterView",
    "EngineView",
    "EpisodeView",
    "HealthView",
    "LiveModel",
    "QueueView",
    "Snapshot",
    "Thresholds",
    "UploadView",
    "WorkerView",
    "effective_state",
    "empty_snapshot",
    "worker_from_fields",
]


@dataclass(frozen=True)
class WorkerView:
    id: str
    host: str = ""
    gpu: str = ""
    backends: str = ""
    state: str = "idle"  # as the worker reported it: idle, busy, draining (or gone)
    job: str = ""
    episode: str = ""
    beat: str = ""
    stage: str = ""
    progress: float | None = None
    seen: float = 0.0  # server time of the last heartbeat, epoch seconds
    done: int = 0
    failed: int = 0
    started_at: float | None = None
    gpu_util: float | None = None  # % (NVML), for the fleet's sparklines
    gpu_mem: float | None = None  # % of the GPU's memory in use


def _gpu_numbers(raw: str) -> tuple[float | None, float | None]:
    try:
        g = json.loads(raw) if raw else None
    except ValueError:
        return None, None
    if not isinstance(g, dict):
        return None, None
    util = _num(g["util"]) if "util" in g else None
    total = _num(g.get("mem_total_mb"))
    mem = 100.0 * _num(g.get("mem_used_mb")) / total if total else None
    return util, mem


@dataclass(frozen=True)
class Thresholds:
    """When a heartbeat is overdue (stale) and when the worker is gone."""

    busy_stale_s: float = 30.0
    idle_stale_s: float = 190.0
    gone_s: float = 1260.0

    @classmethod
    def from_settings(cls, settings: Any) -> Thresholds:
        # A busy worker renews its lease every LEASE_RENEW_SECONDS: past the lease it is
        # overdue. An idle one heartbeats every WORKER_IDLE_BLOCK_SECONDS.
        return cls(
            busy_stale_s=max(settings.lease_s, settings.progress_interval_s * 2),
            idle_stale_s=settings.worker_idle_block_s * 1.2 + 10.0,
            gone_s=settings.heartbeat_ttl_s,
        )


def effective_state(w: WorkerView, now: float, t: Thresholds) -> str:
    """idle, busy, draining, stale (heartbeat overdue) or gone."""
    if w.state == "gone":
        return "gone"
    age = now - w.seen
    if age > t.gone_s:
        return "gone"
    limit = t.busy_stale_s if w.state in ("busy", "draining") else t.idle_stale_s
    if age > limit:
        return "stale"
    return w.state or "idle"


def _num(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _gpu_text(raw: str) -> str:
    if not raw:
        return ""
    try:
        g = json.loads(raw)
    except ValueError:
        return raw[:40]
    if not isinstance(g, dict):
        return ""
    name = str(g.get("name", "GPU")).replace("NVIDIA ", "")
    parts = [name]
    if "util" in g:
        parts.append(f"{int(_num(g['util']))}%")
    if g.get("mem_total_mb"):
        used = _num(g.get("mem_used_mb")) / 1024
        total = _num(g.get("mem_total_mb")) / 1024
        parts.append(f"{used:.0f}/{total:.0f} GB")
    return " ".join(parts)


def _seconds(value: Any) -> float:
    """Heartbeat times come as ms (hash) or s (event); normalise to seconds."""
    v = _num(value)
    return v / 1000.0 if v > 1e11 else v


def worker_from_fields(f: dict[str, Any], fallback_id: str = "") -> WorkerView:
    """A worker row from heartbeat fields (hash or heartbeat event)."""
    progress = f.get("progress")
    started = f.get("started_at")
    util, mem = _gpu_numbers(str(f.get("gpu") or ""))
    return WorkerView(
        id=str(f.get("id") or fallback_id),
        host=str(f.get("host") or ""),
        gpu=_gpu_text(str(f.get("gpu") or "")),
        backends=str(f.get("backends") or ""),
        state=str(f.get("state") or "idle"),
        job=str(f.get("job") or ""),
        episode=str(f.get("episode") or ""),
        beat=str(f.get("beat") or ""),
        stage=str(f.get("stage") or ""),
        progress=_num(progress) if progress not in (None, "") else None,
        seen=_seconds(f.get("seen")),
        done=int(_num(f.get("done"))),
        failed=int(_num(f.get("failed"))),
        started_at=_num(started) if started not in (None, "") else None,
        gpu_util=util,
        gpu_mem=mem,
    )


@dataclass(frozen=True)
class EpisodeView:
    id: str
    title: str
    state: str
    beats_done: int
    beats_total: int
    beats_failed: int
    backend: str = ""
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None

    @classmethod
    def from_summary(cls, d: dict[str, Any]) -> EpisodeView:
        return cls(
            id=d["id"],
            title=d["title"],
            state=d["state"],
            beats_done=d["beats_done"],
            beats_total=d["beats_total"],
            beats_failed=d["beats_failed"],
            backend=d.get("backend") or "",
            created_at=d.get("created_at") or 0.0,
            started_at=d.get("started_at"),
            finished_at=d.get("finished_at"),
            error=d.get("error"),
        )


@dataclass(frozen=True)
class UploadView:
    key: str
    size: int
    bytes_per_s: float
    at: float
    episode_id: str = ""
    beat_index: int | None = None
    worker: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UploadView:
        return cls(
            key=str(d.get("key", "")),
            size=int(_num(d.get("size"))),
            bytes_per_s=_num(d.get("bytes_per_s")),
            at=_num(d.get("at")),
            episode_id=str(d.get("episode_id") or ""),
            beat_index=d.get("beat_index"),
            worker=str(d.get("worker") or d.get("worker_id") or ""),
        )


@dataclass(frozen=True)
class DeadLetterView:
    job_id: str
    reason: str
    payload: str
    at: float
    worker: str
    #: How actions name it: the job id, else `entry:<hash>` for an unreadable entry.
    ref: str = ""

    @property
    def key(self) -> str:
        return self.ref or self.job_id


@dataclass(frozen=True)
class QueueView:
    waiting: int = 0
    in_flight: int = 0
    results_pending: int = 0
    dead: int = 0
    oldest_enqueued_at: float | None = None
    throughput_per_min: float = 0.0
    depth_history: tuple[int, ...] = ()
    known: bool = False  # False until the first read of Redis
    #: "3 jobs wait for svd; no live worker serves svd", one per backend nobody serves.
    unserved: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngineView:
    role: str = "off"  # leader, standby, off (no engine here), starting
    text: str = ""
    paused: bool = False


@dataclass(frozen=True)
class CostView:
    system_per_min: float | None = None
    budget_per_day: int = 10_000
    console_commands: int = 0
    console_per_hour: float | None = None

    @property
    def per_day(self) -> float | None:
        return None if self.system_per_min is None else self.system_per_min * 1440


@dataclass(frozen=True)
class HealthView:
    """A problem per dependency (None: fine) and when the next try is."""

    redis: str | None = None
    redis_retry_at: float | None = None
    db: str | None = None
    db_retry_at: float | None = None
    storage: str | None = None
    storage_retry_at: float | None = None

    @property
    def ok(self) -> bool:
        return not (self.redis or self.db or self.storage)


@dataclass(frozen=True)
class Snapshot:
    deployment: str = ""
    read_only: bool = False
    queue: QueueView = field(default_factory=QueueView)
    workers: tuple[WorkerView, ...] = ()
    episodes: tuple[EpisodeView, ...] = ()
    uploads: tuple[UploadView, ...] = ()
    engine: EngineView = field(default_factory=EngineView)
    cost: CostView = field(default_factory=CostView)
    health: HealthView = field(default_factory=HealthView)
    thresholds: Thresholds = field(default_factory=Thresholds)
    engine_log: tuple[str, ...] = ()
    worker_log_id: str | None = None
    worker_log: tuple[str, ...] = ()
    dead_letters: tuple[DeadLetterView, ...] | None = None
    episode: dict[str, Any] | None = None  # services.episode_detail of the watched episode
    taken_at: float = field(default=0.0, compare=False)


def empty_snapshot(deployment: str = "", read_only: bool = False) -> Snapshot:
    return Snapshot(deployment=deployment, read_only=read_only)


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (0, 0)


def _event_time(entry_id: str) -> float:
    """Stream ids are `{server ms}-{seq}`."""
    try:
        return int(entry_id.split("-", 1)[0]) / 1000.0
    except ValueError:
        return 0.0


class LiveModel:
    """The Redis half of the snapshot, kept current by events and corrected by reads.

    Thread-safe: the event thread applies events, the poll thread applies reads and builds
    snapshots.
    """

    def __init__(
        self, *, history_len: int = 60, throughput_window_s: float = 300.0, uploads: int = 50
    ) -> None:
        self._lock = threading.Lock()
        self.workers: dict[str, WorkerView] = {}
        self.waiting = self.in_flight = self.results_pending = self.dead = 0
        self.oldest_enqueued_at: float | None = None
        self.paused = False
        self.engine_holder: dict[str, Any] | None = None
        self.known = False
        self.unserved: tuple[str, ...] = ()
        self.finished: deque[float] = deque(maxlen=5000)
        self.throughput_window_s = throughput_window_s
        self.depth: deque[int] = deque(maxlen=history_len)
        self.uploads: dict[str, UploadView] = {}
        self.max_uploads = uploads
        # What the poll thread should read next.
        self.needs_reconcile = False
        self.dead_dirty = True
        self.log_dirty: set[str] = set()
        self.unknown_workers: set[str] = set()
        # The newest event id the last read of Redis already reflects.
        self.watermark: tuple[int, int] = (0, 0)
        self._seeding = False
        self.last_change = 0.0  # monotonic time of the last event that moved a job

    # ------------------------------------------------------------------ events
    def apply(
        self, events: Iterable[tuple[str, str, dict[str, Any]]], *, seeding: bool = False
    ) -> int:
        """Apply stream events. Queue depths are left alone for events already reflected in
        the last read of Redis (`seeding`: the history read at start-up, or an id up to the
        read's watermark), so nothing is counted twice. Returns how many were applied."""
        n = 0
        with self._lock:
            for entry_id, kind, data in events:
                n += 1
                at = _event_time(entry_id)
                if not isinstance(data, dict):
                    continue
                counted = seeding or _stream_id(entry_id) <= self.watermark
                self._seeding = seeding
                handler = getattr(self, f"_on_{kind}", None)
                if handler is not None:
                    handler(data, at, counted)
                if kind != "heartbeat" and not seeding:
                    self.needs_reconcile = True
                    self.last_change = time.monotonic()
        return n

    def _on_heartbeat(self, d: dict[str, Any], at: float, counted: bool) -> None:
        fields = dict(d)
        fields.setdefault("seen", at)
        w = worker_from_fields(fields)
        if not w.id:
            return
        self.workers[w.id] = w
        # A heartbeat event means a change or new log lines (an unchanged heartbeat sends
        # none): the worker's log may have grown.
        self.log_dirty.add(w.id)

    def _touch_worker(self, worker_id: str, at: float, **changes: Any) -> None:
        if not worker_id:
            return
        old = self.workers.get(worker_id)
        if old is None:
            self.unknown_workers.add(worker_id)
            return
        self.workers[worker_id] = replace(old, seen=max(old.seen, at), **changes)
        self.log_dirty.add(worker_id)

    def _on_started(self, d: dict[str, Any], at: float, counted: bool) -> None:
        if not counted:
            self.waiting = max(0, self.waiting - 1)
            self.in_flight += 1
            if self.waiting == 0:
                self.oldest_enqueued_at = None
        if self._seeding:
            return
        self._touch_worker(
            str(d.get("worker") or ""),
            at,
            state="busy",
            job=str(d.get("job_id") or ""),
            episode=str(d.get("episode_id") or ""),
            beat=str(d.get("beat_index", "")),
            stage="rendering",
            progress=0.0,
        )

    def _on_done(self, d: dict[str, Any], at: float, counted: bool, failed: bool = False) -> None:
        self.finished.append(at)
        if not counted:
            self.in_flight = max(0, self.in_flight - 1)
        worker = str(d.get("worker") or "")
        old = self.workers.get(worker)
        if old is not None and not self._seeding:
            # An event the last full read already covered (`counted`) is in the counters
            # that read gave; adding it again made two consoles disagree on "done".
            counts: dict[str, int] = {}
            if not counted:
                counts = {"failed": old.failed + 1} if failed else {"done": old.done + 1}
            self._touch_worker(
                worker,
                at,
                state="idle",
                job="",
                episode="",
                beat="",
                stage="",
                progress=None,
                **counts,
            )
        for u in d.get("uploads") or []:
            if isinstance(u, dict) and u.get("key"):
                up = UploadView.from_dict(
                    {**u, "episode_id": u.get("episode_id") or d.get("episode_id")}
                )
                self.uploads[up.key] = up
        if len(self.uploads) > self.max_uploads:
            newest = sorted(self.uploads.values(), key=lambda u: u.at, reverse=True)
            self.uploads = {u.key: u for u in newest[: self.max_uploads]}

    def _on_failed(self, d: dict[str, Any], at: float, counted: bool) -> None:
        self._on_done(d, at, counted, failed=True)

    def _waiting_since(self, at: float) -> None:
        """A job waits again (handed back, requeued): the oldest waiting one is at least
        this old. (Every path that makes a job wait sets it, so a waiting job never shows
        "oldest waiting –".)"""
        if self.oldest_enqueued_at is None:
            self.oldest_enqueued_at = at

    def _on_enqueued(self, d: dict[str, Any], at: float, counted: bool) -> None:
        if counted:
            return
        self.waiting += int(_num(d.get("count"), 1))
        if self.oldest_enqueued_at is None:
            self.oldest_enqueued_at = at

    def _on_requeued(self, d: dict[str, Any], at: float, counted: bool) -> None:
        if counted:
            return
        self.in_flight = max(0, self.in_flight - 1)
        self.waiting += 1
        self._waiting_since(at)

    def _on_dead(self, d: dict[str, Any], at: float, counted: bool) -> None:
        self.dead_dirty = True
        if not counted:
            self.dead += 1
            self.in_flight = max(0, self.in_flight - 1)

    def _on_dead_changed(self, d: dict[str, Any], at: float, counted: bool) -> None:
        self.dead_dirty = True
        if counted:
            return
        moved, dropped = int(_num(d.get("requeued"))), int(_num(d.get("dropped")))
        self.dead = max(0, self.dead - moved - dropped)
        self.waiting += moved
        if moved:
            self._waiting_since(at)

    def _on_worker_gone(self, d: dict[str, Any], at: float, counted: bool) -> None:
        worker = str(d.get("id") or "")
        old = self.workers.get(worker)
        if old is not None:
            self.workers[worker] = replace(old, state="gone", job="", progress=None)

    # ------------------------------------------------------------------ reads
    def apply_read(
        self,
        *,
        waiting: int,
        in_flight: int,
        dead: int,
        results_pending: int,
        oldest_enqueued_at: float | None,
        paused: bool,
        engine_holder: dict[str, Any] | None,
        worker_seen: dict[str, float],
        heartbeats: dict[str, dict[str, str] | None],
        watermark: str | None = None,
    ) -> None:
        """A full (or reconciling) read of Redis replaces what events derived. `watermark`:
        the newest event id when the read began (every change up to it is in the read)."""
        with self._lock:
            if watermark:
                self.watermark = max(self.watermark, _stream_id(watermark))
            self.waiting, self.in_flight, self.dead = waiting, in_flight, dead
            self.results_pending = results_pending
            self.oldest_enqueued_at = oldest_enqueued_at
            self.paused = paused
            self.engine_holder = engine_holder
            self.known = True
            self.needs_reconcile = False
            for gone in set(self.workers) - set(worker_seen):
                del self.workers[gone]  # pruned from the registry
            # Whatever is still unknown is not in the registry: not a worker to show.
            self.unknown_workers.clear()
            for wid, hb in heartbeats.items():
                if hb:
                    self.workers[wid] = worker_from_fields(hb, wid)
                else:
                    old = self.workers.get(wid) or WorkerView(id=wid)
                    self.workers[wid] = replace(
                        old, state="gone", seen=worker_seen.get(wid, old.seen)
                    )

    def workers_to_fetch(self, worker_seen: dict[str, float]) -> list[str]:
        """Workers whose heartbeat changed without an event (a silent reserve) or new ones."""
        with self._lock:
            out = []
            for wid, seen in worker_seen.items():
                w = self.workers.get(wid)
                if w is None or seen > w.seen + 1.0 or wid in self.unknown_workers:
                    out.append(wid)
            return out

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self.paused = paused

    # ------------------------------------------------------------------ views
    def sample_depth(self) -> None:
        with self._lock:
            self.depth.append(self.waiting)

    def take_flags(self) -> tuple[bool, bool, set[str], set[str]]:
        """(needs_reconcile, dead_dirty, workers with new logs, unknown workers), cleared."""
        with self._lock:
            out = (
                self.needs_reconcile,
                self.dead_dirty,
                set(self.log_dirty),
                set(self.unknown_workers),
            )
            self.dead_dirty = False
            self.log_dirty.clear()
            return out

    def mark(self, *, reconcile: bool = False, dead: bool = False) -> None:
        with self._lock:
            self.needs_reconcile |= reconcile
            self.dead_dirty |= dead

    def queue_view(self, now: float) -> QueueView:
        with self._lock:
            cutoff = now - self.throughput_window_s
            recent = sum(1 for t in self.finished if t >= cutoff)
            return QueueView(
                waiting=self.waiting,
                in_flight=self.in_flight,
                results_pending=self.results_pending,
                dead=self.dead,
                oldest_enqueued_at=self.oldest_enqueued_at if self.waiting else None,
                throughput_per_min=round(recent / (self.throughput_window_s / 60.0), 2),
                depth_history=tuple(self.depth),
                known=self.known,
                unserved=self.unserved if self.waiting else (),
            )

    def served_backends(self, now: float, thresholds: Thresholds) -> set[str]:
        """Backends some worker whose heartbeat has not expired serves."""
        with self._lock:
            workers = list(self.workers.values())
        return {
            b
            for w in workers
            if effective_state(w, now, thresholds) != "gone"
            for b in w.backends.split(",")
            if b
        }

    def set_unserved(self, lines: tuple[str, ...]) -> None:
        with self._lock:
            self.unserved = lines

    def worker_views(self) -> tuple[WorkerView, ...]:
        with self._lock:
            return tuple(sorted(self.workers.values(), key=lambda w: w.id))

    def event_uploads(self) -> list[UploadView]:
        with self._lock:
            return list(self.uploads.values())
