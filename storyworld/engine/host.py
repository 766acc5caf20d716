"""`EngineHost`: run an engine inside a CLI, API or console process.

One place knows how: a thread runs the loop, and `stop()` both sets the stop event and
cuts the loop's blocking call short (a leader waits on the result list, a standby on the
result or handover list) by closing the connection it waits on, which belongs to the host
alone, so stopping never waits out an idle block.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import redis

from storyworld.engine.orchestrator import Orchestrator
from storyworld.engine.runtime import Runtime
from storyworld.engine.webhooks import WebhookDispatcher
from storyworld.queue import JobQueue

__all__ = ["EngineHost"]


class EngineHost:
    def __init__(
        self,
        rt: Runtime,
        *,
        engine_id: str | None = None,
        on_change: Callable[[], None] | None = None,
        rng: random.Random | None = None,
        **_: Any,
    ) -> None:
        self.rt = rt
        # Blocking calls on a connection pool of the engine's own, so that stopping can cut
        # a wait short without touching the other users of the runtime's clients.
        pool = rt.clients.blocking.connection_pool
        self._blocking = redis.Redis(
            connection_pool=type(pool)(
                connection_class=pool.connection_class,
                max_connections=pool.max_connections,
                **pool.connection_kwargs,
            )
        )
        queue = JobQueue.from_settings(rt.settings, rt.clients.fast, self._blocking)
        self.engine = Orchestrator(
            rt.settings,
            rt.sessions,
            queue,
            rt.store,
            engine_id=engine_id,
            rng=rng,
            on_change=on_change,
            redis_display=rt.clients.url_for_display,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Webhooks ride along with every engine (their outbox makes that safe): a thread of
        # their own, so a slow endpoint never slows the decision loop.
        self.webhooks = WebhookDispatcher(rt)

    @property
    def engine_id(self) -> str:
        return self.engine.engine_id

    @property
    def is_leader(self) -> bool:
        return self.engine.is_leader

    @property
    def status(self) -> str:
        return self.engine.status

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> EngineHost:
        self._thread = threading.Thread(
            target=self.engine.run, args=(self._stop,), name="engine", daemon=True
        )
        self._thread.start()
        self.webhooks.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the loop; a leader hands the lease over at once."""
        self._stop.set()
        self.webhooks.stop()
        try:
            if self.engine.is_leader:
                self.rt.queue.wake_engine("stopping")
            else:
                self.rt.queue.wake_standbys()
        except (redis.RedisError, OSError):
            pass  # the server is gone; the loop sees `stop` after its wait
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    def __enter__(self) -> EngineHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
