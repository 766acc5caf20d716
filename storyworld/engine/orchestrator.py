"""The decision loop. Each concern lives in a room of its own:

- `leadership`: who dispatches (the lease, fencing, standing by, taking over)
- `outcomes`: results and queue events applied exactly once, in batches
- `retry`: what a failure leads to (backoff, fallback, classification)
- `dispatch`: ready beats to jobs, and reconciling the database with Redis
- `composer`: finished episodes concatenated and stored

Per loop a leader sends at most two commands: one `tick` script (renew the lease, reclaim
expired leases, collect results, started and dead jobs) when one is due, and one blocking
BLMOVE on the result list (acknowledging what was applied) for as long as nothing is due.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable

import redis
from sqlalchemy.orm import Session, sessionmaker

from storyworld.config import Settings
from storyworld.engine.composer import Composer
from storyworld.engine.dispatch import Dispatcher, LeaseLost, job_id_for
from storyworld.engine.leadership import Leadership
from storyworld.engine.outcomes import Batch, Outcomes
from storyworld.engine.retry import RetryPolicy, backoff_delay
from storyworld.protocol import Result, WakeReason
from storyworld.queue import JobQueue, ProblemLog
from storyworld.storage import ArtifactStore

__all__ = ["Orchestrator", "backoff_delay", "job_id_for"]

log = logging.getLogger("storyworld.engine")


class Orchestrator:
    """Runs the decision loop. `run()` blocks until `stop` is set."""

    MAX_RESULTS = 100

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        queue: JobQueue,
        store: ArtifactStore,
        *,
        engine_id: str | None = None,
        rng: random.Random | None = None,
        on_change: Callable[[], None] | None = None,
        redis_display: str = "the configured REDIS_URL",
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.queue = queue
        self.store = store
        self.engine_id = engine_id or f"engine-{socket.gethostname()}-{os.getpid()}"
        self.on_change = on_change or (lambda: None)
        self.policy = RetryPolicy(settings, rng)
        self.outcomes = Outcomes(settings, sessions, self.policy)
        self.dispatcher = Dispatcher(settings, sessions, queue)
        self.leadership = Leadership(queue, settings, self.engine_id)
        self.leadership.on_status = self._set_status
        self.composer = Composer(
            sessions, store, self.policy, engine_id=self.engine_id, on_done=self._composed
        )
        self.problems = ProblemLog(log, redis_display)
        self.paused = False
        self.status = "starting"
        self._applied: list[str] = []
        self._need_reconcile = True
        self._recover = True  # results left unacknowledged by a crash are applied first
        self._next_tick = 0.0
        self._stop = threading.Event()

    @property
    def token(self) -> str | None:
        return self.leadership.token

    @property
    def is_leader(self) -> bool:
        return self.leadership.is_leader

    # ------------------------------------------------------------------ loop
    def run(self, stop: threading.Event | None = None) -> None:
        """Loop until `stop` is set. Redis outages and database errors are waited out with
        backoff; results not yet applied stay on Redis and are applied after recovery."""
        self._stop = stop = stop or self._stop
        delay = 1.0
        try:
            while not stop.is_set():
                try:
                    if self.is_leader or self._acquire():
                        self._lead()
                    else:
                        self.leadership.stand_by(stop)
                        self.status = self.leadership.status()
                    self.problems.recovered()
                    delay = 1.0
                except redis.RedisError as e:
                    if stop.is_set():
                        break  # a blocked call interrupted to stop
                    self.status = self.problems.report(e, delay) + f" — retrying in {delay:.0f} s"
                    self._need_reconcile = self._recover = True
                    stop.wait(delay)
                    delay = min(delay * 2, 30.0)
                except Exception:
                    log.exception("engine step failed; retrying in %.0f s", delay)
                    self.status = f"error — retrying in {delay:.0f} s"
                    self._applied = []
                    self._recover = True
                    stop.wait(delay)
                    delay = min(delay * 2, 30.0)
        finally:
            self.shutdown()

    def _lead(self) -> None:
        """One leader's round: a step, then block for the next arrival."""
        timeout = self.step()
        if timeout is None or not self.is_leader or self._stop.is_set():
            return  # (a tick may have taken the wake-up that says stop)
        applied, self._applied = self._applied, []
        raw = self.queue.ack_and_wait(applied, timeout)
        if raw is not None:
            # One read brings every result waiting; more than one is a backlog, which the
            # tick takes in one batch.
            self._arrived(raw, backlog=self.queue.buffered() > 0)

    def stop(self) -> None:
        self._stop.set()

    def _set_status(self, status: str) -> None:
        self.status = status
        self.paused = False

    def shutdown(self) -> None:
        self.composer.shutdown()
        try:
            self.leadership.release()
        except redis.RedisError:
            pass

    def _acquire(self) -> bool:
        if not self.leadership.try_acquire():
            return False
        self._need_reconcile = self._recover = True
        self._next_tick = 0.0
        return True

    def step(self) -> float | None:
        """One pass: become leader if possible, tick, apply, dispatch, compose. Returns how
        long to block for the next result (None: loop again at once)."""
        if not self.is_leader and not self._acquire():
            holder = self.queue.engine_holder() or {}
            self.status = f"standby: {holder.get('engine', 'another engine')} dispatches"
            return self.settings.engine_busy_lease_s / 2
        token = self.leadership.token or ""
        now = time.monotonic()
        changed = False
        if self._recover or now >= self._next_tick:
            busy = self._busy()
            tick = self.queue.tick(
                token,
                max_results=self.MAX_RESULTS,
                repair=self.dispatcher.repair_due(),
                recover=self._recover,
                lease_ms=self.leadership.lease_ms(busy),
            )
            self._recover = False
            if not tick.leader:
                self.leadership.lost("lost the engine lease")
                return None
            self.leadership.set_busy(busy)
            self.paused = tick.paused
            if self._need_reconcile:
                self.dispatcher.reconcile(token)
                self._need_reconcile = False
            applied = self.outcomes.apply(
                Batch(tick.results, tick.in_flight, tick.reclaimed, tick.dead)
            )
            changed |= applied.changed > 0
            self._applied.extend(tick.results)
            if tick.repaired:
                log.warning("rebuilt wake lists for %d waiting job(s)", tick.repaired)
            # Dead-lettered now, they come back with the next tick like any dead letter.
            filed = busy and self.dispatcher.dead_letter_unserved(self.engine_id) > 0
            interval = self.settings.reclaim_interval_s if busy else self._idle_block_s()
            full = len(tick.results) >= self.MAX_RESULTS
            self._next_tick = now if full or filed else now + interval
        self.status = "paused" if self.paused else "dispatching"
        try:
            if not self.paused:
                changed |= self.dispatcher.dispatch(token) > 0
        except LeaseLost:
            self.leadership.lost("lost the engine lease while dispatching")
            return None
        changed |= self.composer.start()
        if changed:
            self.on_change()
            if not self.leadership.busy:
                self._next_tick = now  # renew with the short lease at once
            else:
                self._next_tick = min(self._next_tick, now + self.settings.reclaim_interval_s)
        if self._next_tick <= now:
            return None
        return self._next_timeout(self._next_tick - now)

    def _arrived(self, raw: str, *, backlog: bool) -> None:
        """Something came through the blocking wait: a result or a wake nudge."""
        applied = self.outcomes.apply(Batch([raw]))
        self._applied.append(raw)
        if applied.pause_changed or not self.leadership.busy or backlog:
            # An idle leader answers at once (its tick renews the lease, which tells a
            # standby it is alive); a backlog is drained by the tick, a batch at a time.
            self._next_tick = 0.0
        if applied.changed:
            self.on_change()

    def apply_result(self, result: Result) -> bool:
        """Apply a result once: a second copy (redelivery, duplicate push) changes nothing."""
        return self.outcomes.apply_result(result)

    def reconcile(self) -> int:
        return self.dispatcher.reconcile(self.leadership.token or "")

    def compose(self, episode_id: str) -> str:
        return self.composer.compose(episode_id)

    # ------------------------------------------------------------------ timing
    def _busy(self) -> bool:
        return self.composer.busy or self.dispatcher.work_open()

    def _idle_block_s(self) -> float:
        return self.settings.engine_idle_block_s

    def _next_timeout(self, until_tick: float) -> float:
        """Block until the next tick is due, or a retry's backoff ends, whichever first."""
        timeout = until_tick
        due = [self.composer.next_retry_at()]
        if not self.paused:
            due.append(self.dispatcher.next_retry_at())
        for at in due:
            if at is not None:
                timeout = min(timeout, at - time.time())
        return max(0.05, timeout)

    def _composed(self) -> None:
        self.on_change()
        if not self._stop.is_set():
            try:
                self.queue.wake_engine(WakeReason.COMPOSED)
            except redis.RedisError:
                pass
