"""Leadership: one engine dispatches at a time, and another takes over in seconds when it
dies, at almost no cost while idle.

The lease on Redis is the fencing token every enqueue and tick checks atomically, so an
engine that lost it can never write. Its length follows the work:

- busy (jobs in flight or waiting, beats to dispatch, episodes composing): a short lease
  (ENGINE_BUSY_LEASE_SECONDS) renewed at every reclaim tick. A standby blocks on the
  handover list until that lease would have run out, then takes it if it did. A clean stop
  pushes to the handover list, so the standby takes over at once.
- idle: a long lease (ENGINE_LEASE_SECONDS) renewed once per idle block. A standby blocks
  on the result list like the leader, putting back what it takes. Whatever arrives there
  (new work, a result) makes a live idle leader tick at once, which renews its lease; a
  standby that sees the lease unrenewed a few seconds later takes it over (compare and set,
  so two standbys cannot both). An engine that dies idle is thus replaced as soon as there
  is work again, and an idle system costs a few blocking calls an hour.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from storyworld.config import Settings
from storyworld.protocol import LeaseHolder, WakeReason, parse_lease_holder
from storyworld.queue import JobQueue

__all__ = ["CHALLENGE_WINDOW_S", "Leadership"]

log = logging.getLogger("storyworld.engine")

#: How long an idle leader has to renew its lease once work arrives.
CHALLENGE_WINDOW_S = 3.0


class Leadership:
    def __init__(self, queue: JobQueue, settings: Settings, engine_id: str) -> None:
        self.queue = queue
        self.settings = settings
        self.engine_id = engine_id
        self.token: str | None = None
        self.busy = True  # a new leader reconciles first: short lease
        self.holder: LeaseHolder | None = None  # who leads, while we stand by
        self._announced: str | None = None
        #: Told the standby status as soon as it is known (before blocking).
        self.on_status: Callable[[str], None] = lambda _status: None

    @property
    def is_leader(self) -> bool:
        return self.token is not None

    def lease_ms(self, busy: bool) -> int:
        s = self.settings
        return int((s.engine_busy_lease_s if busy else s.engine_lease_s) * 1000)

    @property
    def idle_block_s(self) -> float:
        return self.settings.engine_idle_block_s

    # ------------------------------------------------------------------ leader
    def try_acquire(self) -> bool:
        """Take the lease if it is free."""
        self.token = self.queue.acquire_engine_lease(
            LeaseHolder.here(self.engine_id), self.settings.engine_busy_lease_s
        )
        if self.token is not None:
            self.busy = True
            self.holder = None
            self._announced = None
            log.info("%s now dispatches", self.engine_id)
        return self.token is not None

    def lost(self, why: str) -> None:
        log.warning("%s: %s; another engine dispatches now", self.engine_id, why)
        self.token = None

    def set_busy(self, busy: bool) -> None:
        """Record the lease the last tick set. From idle to busy, tell idle standbys (they
        block on the result list) to watch the short lease from now on."""
        was, self.busy = self.busy, busy
        if busy and not was:
            self.queue.wake_engine(WakeReason.BUSY)

    def release(self) -> None:
        if self.token is None:
            return
        token, self.token = self.token, None
        self.queue.release_engine_lease(token)
        log.info("%s stopped dispatching; the lease is free", self.engine_id)

    # ------------------------------------------------------------------ standby
    def status(self) -> str:
        who = self.holder.engine if self.holder else "another engine"
        return f"standby: {who} dispatches"

    def stand_by(self, stop: threading.Event) -> None:
        """One round of standing by; returns when the lease may be free (then the caller
        tries to take it) or after taking over from a holder that stopped answering."""
        value, left_ms = self.queue.engine_lease_state()
        if value is None:
            return
        self._announce(value)
        busy_ms = self.lease_ms(True)
        if left_ms < 0:  # set by hand without expiry: watch it as an idle lease
            left_ms = self.lease_ms(False)
        if left_ms <= busy_ms:
            # A busy leader renews every reclaim tick: wait until its lease would run out.
            self.queue.wait_for_handover(left_ms / 1000 + 0.05)
            return
        if not self.queue.standby_wait(min(left_ms / 1000 + 0.05, self.idle_block_s)):
            return
        if stop.is_set():
            return
        self.challenge(value, left_ms, stop, nudge=False)

    def challenge(
        self, value: str, left_ms: int, stop: threading.Event, *, nudge: bool = True
    ) -> bool:
        """Something arrived for an idle leader: if it does not renew its lease within
        CHALLENGE_WINDOW_S, take the lease over. True if this engine leads now."""
        if nudge:
            self.queue.wake_engine(WakeReason.CHALLENGE)
        if stop.wait(CHALLENGE_WINDOW_S):
            return False
        now_value, now_ms = self.queue.engine_lease_state()
        if now_value != value:
            return False  # renewed by a new holder, released, or taken by another standby
        renewed = now_ms > left_ms - CHALLENGE_WINDOW_S * 1000 / 2
        if renewed or now_ms <= self.lease_ms(True):
            return False  # alive: it renewed, or it is busy with a short lease now
        holder = parse_lease_holder(value)
        log.warning(
            "%s did not answer within %.0f s; %s takes over",
            holder.engine if holder else "the engine holding the lease",
            CHALLENGE_WINDOW_S,
            self.engine_id,
        )
        token = self.queue.take_over_engine_lease(
            value, LeaseHolder.here(self.engine_id), self.settings.engine_busy_lease_s
        )
        if token is None:
            return False
        self.token = token
        self.busy = True
        self.holder = None
        self._announced = None
        log.info("%s now dispatches", self.engine_id)
        return True

    def _announce(self, value: str) -> None:
        self.holder = parse_lease_holder(value)
        self.on_status(self.status())
        if value == self._announced:
            return
        self._announced = value
        h = self.holder
        if h is not None:
            log.info(
                "%s stands by: %s dispatches (host %s, pid %s)",
                self.engine_id,
                h.engine,
                h.host,
                h.pid,
            )
