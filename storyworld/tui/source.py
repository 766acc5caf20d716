"""Where snapshots come from. All of the console's I/O happens here, off the UI thread.

`LiveSource` runs two long-lived threads:

- the *event thread* blocks on the queue's event stream (XREAD BLOCK). That one command is
  both the console's idle cost and its liveness: a heartbeat, a started or finished job, an
  upload wakes it at once, and it applies the event to the `LiveModel`; after a read that
  brought events it pauses `event_gap_s` so that, under load, one read takes a batch;
- the *poll thread* does everything else, one thing at a time (polls never overlap): the
  database every `db_interval_s` (SQL costs no Redis commands) and whenever an event
  arrived, a full read of Redis every `refresh_s` (a reconciling one, at most every
  `reconcile_s`, after jobs moved), the selected worker's log lines and the dead letters
  when they changed. It builds a `Snapshot` and hands it over only when it differs.

Redis, the database or the storage going away shows as a problem in the snapshot with the
time of the next try; the threads back off (1, 2, 4 ... 30 s) and recover by themselves.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import redis
from PIL import Image
from sqlalchemy.exc import SQLAlchemyError

from storyworld.config import mask_url, redact
from storyworld.engine import fleet, services, webhooks
from storyworld.engine import history as job_history
from storyworld.engine import jobs as job_browser
from storyworld.engine.jobs import JobQuery
from storyworld.engine.runtime import Runtime
from storyworld.queue import JobQueue, connect, describe_redis_error
from storyworld.storage import StorageError
from storyworld.tui.control import EngineHost, RingLog
from storyworld.tui.data import (
    CostView,
    DeadLetterView,
    EngineView,
    EpisodeView,
    HealthView,
    LiveModel,
    Snapshot,
    Thresholds,
    UploadView,
)

__all__ = ["DEFAULT_REFRESH_S", "FixedSource", "LiveSource", "Source", "describe_deployment"]

log = logging.getLogger("storyworld.tui")

#: Seconds between full reads of Redis. With two idle workers (a heartbeat each per
#: 150 s, so 48 event reads an hour) this keeps an idle console under 120 commands/hour.
DEFAULT_REFRESH_S = 900.0

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
SnapshotCallback = Callable[[Snapshot], None]


class Source(Protocol):
    """What the app needs from a data source."""

    def start(self, on_snapshot: SnapshotCallback) -> None: ...
    def stop(self) -> None: ...
    def refresh(self) -> None: ...
    def watch_episode(self, episode_id: str | None) -> None: ...
    def watch_dead_letters(self, on: bool) -> None: ...
    def select_worker(self, worker_id: str | None) -> None: ...
    def keyframe(self, key: str) -> Image.Image: ...
    def link(self, key: str) -> str: ...
    def jobs(self, query: JobQuery, offset: int, limit: int) -> dict[str, Any]: ...
    def job(self, job_id: str) -> dict[str, Any]: ...
    def count_jobs(self, query: JobQuery, action: str | None = None) -> int: ...
    def webhook_deliveries(self) -> list[dict[str, Any]]: ...
    def history(self, window_s: float) -> dict[str, Any]: ...
    def paused_backends(self) -> set[str]: ...
    def episode_costs(self, episode_id: str, workers: int) -> dict[str, Any]: ...


def describe_deployment(rt: Runtime) -> str:
    """Where the console is connected, without secrets."""
    if rt.embedded is not None:
        return f"local default ({rt.settings.home})"
    return mask_url(rt.redis_url)


class _Backoff:
    """A problem with one dependency and when to try again."""

    def __init__(self) -> None:
        self.problem: str | None = None
        self.retry_at: float | None = None
        self.delay = 1.0

    def fail(self, problem: str, now: float) -> float:
        if self.problem is None:
            self.delay = 1.0
        else:
            self.delay = min(self.delay * 2, 30.0)
        self.problem = redact(problem)
        self.retry_at = now + self.delay
        return self.delay

    def ok(self) -> bool:
        """Clears the problem; True if there was one (recovered)."""
        had = self.problem is not None
        self.problem, self.retry_at, self.delay = None, None, 1.0
        return had

    def may_try(self, now: float) -> bool:
        return self.problem is None or (self.retry_at is not None and now >= self.retry_at)


class LiveSource:
    """Snapshots of a live deployment. See the module docstring."""

    def __init__(
        self,
        rt: Runtime,
        *,
        engine: EngineHost | None = None,
        ring: RingLog | None = None,
        read_only: bool = False,
        refresh_s: float = DEFAULT_REFRESH_S,
        reconcile_s: float = 30.0,
        db_interval_s: float = 1.0,
        block_s: float = 240.0,
        event_gap_s: float = 0.5,
        cost_sample_after_s: float = 60.0,
        idle_log_refresh_s: float = 600.0,
        deployment: str | None = None,
    ) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.engine = engine
        self.ring = ring or (engine.ring if engine else None)
        self.read_only = read_only
        self.refresh_s = refresh_s
        self.reconcile_s = reconcile_s
        self.db_interval_s = db_interval_s
        self.block_ms = int(block_s * 1000)
        self.event_gap_s = event_gap_s
        self.cost_sample_after_s = cost_sample_after_s
        self.idle_log_refresh_s = idle_log_refresh_s
        self.deployment = deployment or describe_deployment(rt)
        self.thresholds = Thresholds.from_settings(rt.settings)
        # Own clients: the console's commands are counted apart from the engine's, and a
        # stop can interrupt the blocking read without touching the engine's connections.
        self.clients = connect(rt.settings, rt.redis_url, role="storyworld-tui")
        self.queue = JobQueue.from_settings(rt.settings, self.clients.fast, self.clients.blocking)
        self.model = LiveModel()
        self.commands = 0  # Redis commands this console sent
        self._started_mono = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._on_snapshot: SnapshotCallback = lambda s: None
        self._redis = _Backoff()
        self._db = _Backoff()
        self._storage = _Backoff()
        # Poll state (poll thread only, apart from the requests below).
        self._episodes: tuple[EpisodeView, ...] = ()
        self._db_uploads: tuple[UploadView, ...] = ()
        self._detail: dict[str, Any] | None = None
        self._dead: tuple[DeadLetterView, ...] | None = None
        self._worker_log: tuple[str, ...] = ()
        self._worker_log_at = 0.0
        self._last: Snapshot | None = None
        self._next_full = 0.0  # monotonic
        self._next_reconcile = 0.0
        self._next_db = 0.0
        self._next_depth = 0.0
        self._next_cost_sample: float | None = None
        self._cost_samples: list[tuple[float, int]] = []  # (monotonic, total_commands_processed)
        self._storage_checked = False
        self._events_pending = False
        self._last_db = 0.0
        self._keyframes: OrderedDict[str, Image.Image] = OrderedDict()
        # Requests from the UI thread.
        self._want_episode: str | None = None
        self._want_dead = False
        self._want_worker: str | None = None
        self._force_full = True
        self._force_db = True
        self._force_logs = False
        self._force_dead = False

    # ------------------------------------------------------------------ control
    def start(self, on_snapshot: SnapshotCallback) -> None:
        self._on_snapshot = on_snapshot
        for target, name in ((self._event_loop, "tui-events"), (self._poll_loop, "tui-poll")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self._interrupt_block()
        for t in self._threads:
            t.join(timeout=10)
        self._threads = []
        self.clients.close()

    def refresh(self) -> None:
        """Read everything again now (after an action, or on request)."""
        with self._lock:
            self._force_db = True
            self._force_logs = True
            self._force_dead = True
        self.model.mark(reconcile=True, dead=True)
        self._next_reconcile = 0.0
        self._wake.set()

    def watch_episode(self, episode_id: str | None) -> None:
        with self._lock:
            self._want_episode = episode_id
            self._force_db = True
        self._wake.set()

    def watch_dead_letters(self, on: bool) -> None:
        with self._lock:
            self._want_dead = on
            self._force_dead = on
        self._wake.set()

    def select_worker(self, worker_id: str | None) -> None:
        with self._lock:
            if worker_id == self._want_worker:
                return
            self._want_worker = worker_id
            self._force_logs = True
        self._wake.set()

    def keyframe(self, key: str) -> Image.Image:
        """Download a keyframe and open it (blocking: call it from a worker thread)."""
        cache = self._keyframes
        if key in cache:
            return cache[key]
        try:
            with tempfile.TemporaryDirectory(prefix="storyworld-tui-") as tmp:
                dest = Path(tmp) / "keyframe.png"
                self.rt.store.get_file(key, dest)
                with Image.open(dest) as im:
                    image = im.convert("RGB")
                    image.load()
        except StorageError as e:
            if e.transient:
                self._storage.fail(f"Storage unreachable ({e})", time.time())
                self._wake.set()
            raise
        self._storage.ok()
        cache[key] = image
        while len(cache) > 32:
            cache.popitem(last=False)
        return image

    # Jobs are read on demand (the Jobs screen), from the database: one page at a time.
    def jobs(self, query: JobQuery, offset: int, limit: int) -> dict[str, Any]:
        return job_browser.browse(self.rt, query, offset, limit)

    def job(self, job_id: str) -> dict[str, Any]:
        detail = job_browser.job_detail(self.rt, job_id)
        if detail.get("worker"):
            self._count(1)  # the worker's log lines
        return detail

    def count_jobs(self, query: JobQuery, action: str | None = None) -> int:
        return job_browser.count(self.rt, query, action)

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        return webhooks.deliveries(self.rt, 200)

    def history(self, window_s: float) -> dict[str, Any]:
        return job_history.history(self.rt, window_s)  # the database only: no Redis command

    def paused_backends(self) -> set[str]:
        self._count(1)
        return fleet.paused_backends(self.queue)

    def episode_costs(self, episode_id: str, workers: int) -> dict[str, Any]:
        per_hour = self.settings.gpu_cost_per_hour
        return job_history.episode_costs(
            self.rt, episode_id, workers=workers, gpu_cost_per_hour=per_hour
        )

    def link(self, key: str) -> str:
        """An artifact's link: presigned (or public) URL on S3, a file URL locally."""
        try:
            return services.artifact_url(self.rt, key)
        except StorageError as e:
            if e.transient:
                self._storage.fail(f"Storage unreachable ({e})", time.time())
            raise

    def _count(self, n: int) -> None:
        with self._lock:
            self.commands += n

    def _interrupt_block(self) -> None:
        try:
            self.clients.blocking.connection_pool.disconnect(inuse_connections=True)
        except Exception:
            pass

    # ------------------------------------------------------------------ event thread
    def _event_loop(self) -> None:
        last_id: str | None = None
        while not self._stop.is_set():
            now = time.time()
            if not self._redis.may_try(now):
                self._stop.wait(max(0.05, (self._redis.retry_at or now) - now))
                continue
            try:
                if last_id is None:
                    last_id = self._seed()
                events = self.queue.read_events(last_id, block_ms=self.block_ms, count=500)
                self._count(1)
                if events:
                    last_id = events[-1][0]
                    self.model.apply(events)
                if self._redis.ok():
                    self._recovered()
                with self._lock:
                    self._events_pending = self._events_pending or bool(events)
                self._wake.set()
                if events:
                    # Let events pile up a moment: under load (many busy workers) one read
                    # takes a batch instead of one read per event; a change still shows
                    # within a second.
                    self._stop.wait(self.event_gap_s)
            except REDIS_ERRORS as e:
                if self._stop.is_set():
                    break
                self._redis_failed(e)
            except redis.RedisError as e:  # a reply we cannot use: say so, keep going
                self._redis_failed(e)

    def _seed(self) -> str:
        """Read the last ten minutes of events (throughput, uploads, heartbeats), one
        command; later reads continue from there so no event is missed."""
        start = f"{int((time.time() - 600) * 1000)}-0"
        events = self.queue.read_events(start, None, count=max(100, self.settings.events_maxlen))
        self._count(1)
        self.model.apply(events, seeding=True)
        return events[-1][0] if events else start

    def _redis_failed(self, e: BaseException) -> None:
        delay = self._redis.fail("Redis unreachable", time.time())
        log.warning(
            "%s; retrying in %.0f s", describe_redis_error(e, self.clients.url_for_display), delay
        )
        self._wake.set()

    def _recovered(self) -> None:
        log.info("Redis reachable again")
        with self._lock:
            self._force_full = True
            self._force_dead = True
            self._force_logs = True

    # ------------------------------------------------------------------ poll thread
    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self._until_next_due())
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._poll_once()
            except Exception:  # never let the poll thread die; say what happened
                log.exception("console poll failed")
                self._stop.wait(1.0)

    def _until_next_due(self) -> float:
        mono = time.monotonic()
        due = [self._next_db, self._next_depth, self._next_full]
        if self._next_cost_sample is not None:
            due.append(self._next_cost_sample)
        if self.model.needs_reconcile:
            due.append(max(self._next_reconcile, self.model.last_change + 1.0))
        for b in (self._redis, self._db, self._storage):
            if b.retry_at is not None:
                due.append(mono + max(0.0, b.retry_at - time.time()))
        return min(30.0, max(0.05, min(due) - mono))

    def _poll_once(self) -> None:
        mono = time.monotonic()
        with self._lock:
            force_db, self._force_db = self._force_db, False
            events, self._events_pending = self._events_pending, False
        # An event (a job finished...) usually means the database changes too: read it
        # soon, but not more than four times a second.
        if force_db or mono >= self._next_db or (events and mono - self._last_db >= 0.25):
            self._poll_db(mono)
        self._poll_redis(mono)
        self._poll_storage()
        if mono >= self._next_depth:
            self.model.sample_depth()
            self._next_depth = mono + 10.0
        self._publish()

    def _poll_db(self, mono: float) -> None:
        now = time.time()
        if not self._db.may_try(now):
            return
        with self._lock:
            episode_id = self._want_episode
        try:
            self._episodes = tuple(
                EpisodeView.from_summary(d) for d in services.list_episodes(self.rt, 100)
            )
            self._db_uploads = tuple(
                UploadView.from_dict(d) for d in services.recent_uploads(self.rt, 50)
            )
            if episode_id:
                try:
                    self._detail = services.episode_detail(self.rt, episode_id)
                except services.NotFound:
                    self._detail = None
            else:
                self._detail = None
            self._db.ok()
        except SQLAlchemyError as e:
            delay = self._db.fail("Database unreachable", now)
            log.warning("database unreachable (%s); retrying in %.0f s", type(e).__name__, delay)
        self._next_db = mono + self.db_interval_s
        self._last_db = mono

    def _poll_redis(self, mono: float) -> None:
        now = time.time()
        if self._redis.problem is not None and not self._redis.may_try(now):
            return
        reconcile, dead_dirty, log_dirty, unknown = self.model.take_flags()
        with self._lock:
            full, self._force_full = self._force_full or mono >= self._next_full, False
            force_logs, self._force_logs = self._force_logs, False
            force_dead, self._force_dead = self._force_dead, False
            worker, want_dead = self._want_worker, self._want_dead
        try:
            if full or unknown or (reconcile and self._reconcile_due(mono)):
                self._read_state(with_info=full)
                self._next_reconcile = mono + self.reconcile_s
                if full:
                    self._next_full = mono + self.refresh_s
                    if self._next_cost_sample is None and len(self._cost_samples) < 2:
                        self._next_cost_sample = mono + self.cost_sample_after_s
            elif reconcile:
                self.model.mark(reconcile=True)  # not yet: keep it due
            if self._next_cost_sample is not None and mono >= self._next_cost_sample:
                self._sample_cost()
                self._next_cost_sample = None
            if worker and (force_logs or self._logs_due(worker, log_dirty, mono)):
                self._worker_log = tuple(self.queue.worker_logs(worker, 200))
                self._count(1)
                self._worker_log_at = mono
            elif not worker:
                self._worker_log = ()
            if want_dead and (dead_dirty or force_dead or self._dead is None):
                self._dead = tuple(
                    DeadLetterView(d.job_id, redact(d.reason), d.payload, d.at, d.worker, d.ref)
                    for d in self.queue.dead_letters(100)
                )
                self._count(1)
            elif not want_dead:
                self._dead = None
                if dead_dirty:
                    self.model.mark(dead=True)
            if self._redis.ok():
                self._recovered()
        except REDIS_ERRORS as e:
            self.model.mark(reconcile=reconcile, dead=dead_dirty)
            with self._lock:
                self._force_full |= full
            self._redis_failed(e)
            self._interrupt_block()  # the event thread may sit on a dead connection

    def _reconcile_due(self, mono: float) -> bool:
        """After jobs moved: once things settle (1 s without such events), at most every
        `reconcile_s`; during a long burst, every 3 x `reconcile_s` at most."""
        if mono < self._next_reconcile:
            return False
        quiet = mono - self.model.last_change >= 1.0
        return quiet or mono >= self._next_reconcile + 2 * self.reconcile_s

    def _logs_due(self, worker: str, dirty: set[str], mono: float) -> bool:
        # An event about the selected worker: a worker's heartbeat emits one only when
        # something changed or it ships log lines (an idle, unchanged heartbeat is silent),
        # so each is worth a read; reading only on the idle refresh made the pane lag
        # minutes behind a worker that had just finished a job.
        return worker in dirty

    def _read_state(self, *, with_info: bool) -> None:
        """One pipelined read of depths, pause, lease and the worker registry
        (plus INFO for the cost panel on full reads); then the heartbeats of workers that
        changed without an event."""
        k = self.queue.keys
        p = self.clients.fast.pipeline(transaction=False)
        # First the newest event: every script writes its event with its change, so all
        # changes up to this event are in what the rest of the pipeline reads.
        p.xrevrange(k.events, "+", "-", count=1)
        p.llen(k.jobs)
        p.zcard(k.inflight)
        p.hlen(k.dead)
        p.xlen(k.results)
        p.zrange(k.waiting, 0, 0, withscores=True)
        p.exists(k.paused)
        p.get(k.engine_lease)
        p.zrange(k.workers, 0, -1, withscores=True)
        if with_info:
            p.info("stats")
        replies = p.execute()
        self._count(len(replies))
        newest, waiting, inflight, dead, results, oldest, paused, lease, workers = replies[:9]
        if with_info:
            self._add_cost_sample(replies[9])
        seen = {_s(w): float(score) for w, score in workers}
        fetch = self.model.workers_to_fetch(seen)
        heartbeats: dict[str, dict[str, str] | None] = {}
        if fetch:
            p = self.clients.fast.pipeline(transaction=False)
            for wid in fetch:
                p.hgetall(k.worker(wid))
            for wid, hb in zip(fetch, p.execute(), strict=True):
                heartbeats[wid] = {_s(a): _s(b) for a, b in hb.items()} if hb else None
            self._count(len(fetch))
        self.model.apply_read(
            waiting=int(waiting),
            in_flight=int(inflight),
            dead=int(dead),
            results_pending=int(results),
            oldest_enqueued_at=_enqueued_at(oldest),
            paused=bool(paused),
            engine_holder=_holder(lease),
            worker_seen=seen,
            heartbeats=heartbeats,
            watermark=_s(newest[0][0]) if newest else None,
        )
        self._read_unserved(int(waiting))

    def _read_unserved(self, waiting: int) -> None:
        """Jobs waiting for a backend no live worker serves (from the database and the
        heartbeats already read: no Redis command)."""
        lines: tuple[str, ...] = ()
        if waiting:
            served = self.model.served_backends(time.time(), self.thresholds)
            found = services.unserved_lines(services.queued_by_backend(self.rt), served)
            lines = tuple(u["message"] for u in found)
        self.model.set_unserved(lines)

    def _sample_cost(self) -> None:
        info = self.clients.fast.info("stats")
        self._count(1)
        self._add_cost_sample(info)

    def _add_cost_sample(self, info: dict[str, Any]) -> None:
        total = info.get("total_commands_processed")
        if total is None:
            return
        self._cost_samples.append((time.monotonic(), int(total)))
        self._cost_samples = self._cost_samples[-2:]

    def _poll_storage(self) -> None:
        now = time.time()
        if self._storage_checked and (
            self._storage.problem is None or not self._storage.may_try(now)
        ):
            return
        self._storage_checked = True
        try:
            self.rt.store.check()
            self._storage.ok()
        except StorageError as e:
            delay = self._storage.fail(f"Storage unreachable ({e})", now)
            log.warning("storage check failed; retrying in %.0f s", delay)
        except Exception as e:  # boto3/network errors that the store did not wrap
            delay = self._storage.fail(f"Storage unreachable ({type(e).__name__})", now)
            log.warning("storage check failed; retrying in %.0f s", delay)

    # ------------------------------------------------------------------ snapshot
    def _engine_view(self) -> EngineView:
        holder = self.model.engine_holder
        paused = self.model.paused
        if self.engine is not None:
            role, text, engine_paused = self.engine.describe()
            return EngineView(role=role, text=text, paused=paused or engine_paused)
        if holder:
            who = holder.get("engine", "another engine")
            return EngineView(role="off", text=f"{who} dispatches", paused=paused)
        text = "no engine holds the lease: nothing dispatches" if self.model.known else "…"
        return EngineView(role="off", text=text, paused=paused)

    def _cost_view(self) -> CostView:
        per_min = None
        if len(self._cost_samples) == 2:
            (t0, c0), (t1, c1) = self._cost_samples
            if t1 > t0:
                per_min = max(0.0, (c1 - c0) / (t1 - t0) * 60.0)
        uptime_h = (time.monotonic() - self._started_mono) / 3600.0
        with self._lock:
            commands = self.commands
        return CostView(
            system_per_min=per_min,
            budget_per_day=self.settings.redis_daily_budget,
            console_commands=commands,
            console_per_hour=commands / uptime_h if uptime_h >= 0.25 else None,
        )

    def _uploads(self) -> tuple[UploadView, ...]:
        merged = {u.key: u for u in self.model.event_uploads()}
        merged.update({u.key: u for u in self._db_uploads})
        return tuple(sorted(merged.values(), key=lambda u: u.at, reverse=True)[:50])

    def build(self) -> Snapshot:
        """The current snapshot (poll thread; also used by benchmarks)."""
        now = time.time()
        with self._lock:
            worker = self._want_worker
        return Snapshot(
            deployment=self.deployment,
            read_only=self.read_only,
            queue=self.model.queue_view(now),
            workers=self.model.worker_views(),
            episodes=self._episodes,
            uploads=self._uploads(),
            engine=self._engine_view(),
            cost=self._cost_view(),
            health=HealthView(
                redis=self._redis.problem,
                redis_retry_at=self._redis.retry_at,
                db=self._db.problem,
                db_retry_at=self._db.retry_at,
                storage=self._storage.problem,
                storage_retry_at=self._storage.retry_at,
            ),
            thresholds=self.thresholds,
            engine_log=self.ring.tail() if self.ring else (),
            worker_log_id=worker,
            worker_log=self._worker_log if worker else (),
            dead_letters=self._dead,
            episode=self._detail,
            taken_at=now,
        )

    def _publish(self) -> None:
        snap = self.build()
        if snap != self._last:
            self._last = snap
            self._on_snapshot(snap)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _enqueued_at(oldest: Any) -> float | None:
    """Enqueue time (s) of the oldest waiting job: the score (ms) of the waiting set's first
    member, as ZRANGE 0 0 WITHSCORES returns it."""
    if not oldest:
        return None
    try:
        return float(oldest[0][1]) / 1000
    except (ValueError, IndexError, TypeError):
        return None


def _holder(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        d = json.loads(raw)
    except ValueError:
        return {"engine": "unknown"}
    return {k: v for k, v in d.items() if k != "nonce"} if isinstance(d, dict) else None


class FixedSource:
    """A source that shows one fixed snapshot (snapshot tests, demos)."""

    def __init__(self, snapshot: Snapshot, keyframes: dict[str, Image.Image] | None = None) -> None:
        self.snapshot = snapshot
        self.keyframes = keyframes or {}
        self.watched_episode: str | None = None
        self.watching_dead = False
        self.selected_worker: str | None = None
        self.refreshes = 0
        self.deliveries: list[dict[str, Any]] = []
        self.history_data: dict[str, Any] | None = None
        self.paused: set[str] = set()
        self.costs: dict[str, Any] = {"gpu_seconds": 83.0, "cost": 0.02, "beats_left": 3,
                                      "eta_s": 95.0}  # fmt: skip
        self._cb: SnapshotCallback = lambda s: None

    def start(self, on_snapshot: SnapshotCallback) -> None:
        self._cb = on_snapshot
        on_snapshot(self.snapshot)

    def stop(self) -> None:
        pass

    def push(self, snapshot: Snapshot) -> None:
        """Show another snapshot (tests of updates)."""
        self.snapshot = snapshot
        self._cb(snapshot)

    def refresh(self) -> None:
        self.refreshes += 1

    def watch_episode(self, episode_id: str | None) -> None:
        self.watched_episode = episode_id

    def watch_dead_letters(self, on: bool) -> None:
        self.watching_dead = on

    def select_worker(self, worker_id: str | None) -> None:
        self.selected_worker = worker_id

    def link(self, key: str) -> str:
        return f"https://artifacts.example/{key}"

    def _fixed_jobs(self, query: JobQuery, action: str | None = None) -> list[dict[str, Any]]:
        detail = self.snapshot.episode or {}
        rows = []
        for b in detail.get("beats", []):
            for j in b.get("jobs", []):
                state = job_browser.NAME_OF.get(j["state"], j["state"])
                rows.append({**j, "state": state, "episode_id": detail["id"],
                             "beat_index": b["index"], "prompt": b["text"],
                             "payload": "{}"})  # fmt: skip
        want = job_browser.STATES.get(query.state or "")
        states = job_browser.BULK_ACTIONS.get(action or "")
        return [
            r for r in rows
            if (not want or job_browser.STATES[r["state"]] == want)
            and (not query.backend or r["backend"] == query.backend)
            and (not query.worker or r["worker"] == query.worker)
            and (not query.episode or r["episode_id"].startswith(query.episode))
            and (not query.text or query.text in r["job_id"] or query.text in r["prompt"])
            and (not states or job_browser.STATES[r["state"]] in states)
        ]  # fmt: skip

    def jobs(self, query: JobQuery, offset: int, limit: int) -> dict[str, Any]:
        rows = self._fixed_jobs(query)
        return {"total": len(rows), "offset": offset, "limit": limit,
                "jobs": rows[offset : offset + limit]}  # fmt: skip

    def job(self, job_id: str) -> dict[str, Any]:
        for r in self._fixed_jobs(JobQuery()):
            if r["job_id"] == job_id:
                return {**r, "attempts": [r], "history": [], "log": []}
        raise services.NotFound(f"no job {job_id!r}")

    def count_jobs(self, query: JobQuery, action: str | None = None) -> int:
        return len(self._fixed_jobs(query, action))

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        return list(self.deliveries)

    def episode_costs(self, episode_id: str, workers: int) -> dict[str, Any]:
        return dict(self.costs)

    def paused_backends(self) -> set[str]:
        return set(self.paused)

    def history(self, window_s: float) -> dict[str, Any]:
        return self.history_data or {"window_s": window_s, "bucket_s": window_s / 30,
                                     "backends": {}, "total": None}  # fmt: skip

    def keyframe(self, key: str) -> Image.Image:
        if key not in self.keyframes:
            raise StorageError(f"no such object: {key}")
        return self.keyframes[key]
