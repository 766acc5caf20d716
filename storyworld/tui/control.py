"""What the console changes, and the engine it hosts. No Textual here.

- `Actions`: the operator's actions, through `storyworld.engine.services`. Blocking; the UI
  calls them from worker threads.
- `EngineHost`: the engine's decision loop in a background thread (it dispatches if no other
  engine holds the lease, else it stands by) and, on the local default, local workers.
- `RingLog`: the newest log lines of the engine and the console, for the log pane.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

from storyworld.config import redact
from storyworld.engine import fleet, jobs, services
from storyworld.engine.host import EngineHost as _Host
from storyworld.engine.planner import ScriptPlan
from storyworld.engine.runtime import Runtime

__all__ = ["Actions", "EngineHost", "RingLog"]

log = logging.getLogger("storyworld.tui")

#: Loggers whose lines the engine log pane shows.
ENGINE_LOGGERS = ("storyworld.engine", "storyworld.tui", "storyworld.localfleet")


class RingLog(logging.Handler):
    """Keeps the newest formatted (and redacted) lines, numbered so readers can tell new
    lines from old ones."""

    def __init__(self, maxlen: int = 1000) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=maxlen)
        self.total = 0
        self._guard = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = redact(self.format(record))
        except Exception:
            return
        with self._guard:
            for part in line.splitlines() or [""]:
                self.lines.append(part[:500])
                self.total += 1

    def tail(self) -> tuple[str, ...]:
        with self._guard:
            return tuple(self.lines)

    def attach(self, names: tuple[str, ...] = ENGINE_LOGGERS) -> Callable[[], None]:
        """Listen to `names` (at INFO); returns the function that undoes it."""
        saved = []
        for name in names:
            lg = logging.getLogger(name)
            saved.append((lg, lg.level))
            if lg.getEffectiveLevel() > logging.INFO:
                lg.setLevel(logging.INFO)
            lg.addHandler(self)

        def detach() -> None:
            for lg, level in saved:
                lg.removeHandler(self)
                lg.setLevel(level)

        return detach


class EngineHost:
    """Runs an `Orchestrator` in a thread, plus `workers` local worker processes."""

    def __init__(
        self,
        rt: Runtime,
        *,
        workers: int = 0,
        backends: list[str] | None = None,
        ring: RingLog | None = None,
        engine_id: str | None = None,
    ) -> None:
        self.rt = rt
        self.ring = ring or RingLog()
        self.host = _Host(rt, engine_id=engine_id)
        self.orchestrator = self.host.engine
        self.workers = workers
        self.backends = backends or [rt.settings.default_backend]
        self.fleet: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._detach: Callable[[], None] | None = None

    @property
    def engine_id(self) -> str:
        return self.orchestrator.engine_id

    def start(self) -> None:
        self._detach = self.ring.attach()
        self.host.start()
        if self.workers:
            self.fleet = services.local_fleet(self.rt, self.backends, self.workers, name="console")
            self.fleet.start()

    def describe(self) -> tuple[str, str, bool]:
        """(role, words, paused) for the status line."""
        o = self.orchestrator
        if o.is_leader:
            return "leader", f"this console dispatches ({o.engine_id})", o.paused
        status = o.status or "starting"
        if status.startswith("standby"):
            return "standby", status, False
        return "starting", status, False

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the workers (they finish or hand back their job), then the engine."""
        self._stop.set()
        if self.fleet is not None:
            self.fleet.stop(grace_s=grace_s)
            self.fleet = None
        self.host.stop()
        if self._detach is not None:
            self._detach()
            self._detach = None


class Actions:
    """The operator's actions. Each is blocking and raises on failure (ConfigError,
    NotFound, ScriptError, RedisError...) with a message a user can act on."""

    def __init__(self, rt: Runtime, on_change: Callable[[], None] | None = None) -> None:
        self.rt = rt
        self.on_change = on_change or (lambda: None)

    def _done(self, what: str) -> None:
        log.info("operator: %s", what)
        self.on_change()

    def plan(self, text: str, fmt: str | None = None) -> ScriptPlan:
        return services.plan_text(self.rt, text, fmt)

    def create_episode(
        self, *, script: str, title: str = "", backend: str | None = None, fmt: str | None = None
    ) -> dict[str, Any]:
        plan = services.plan_text(self.rt, script, fmt)
        detail = services.create_episode(
            self.rt, plan, script=script, title=title.strip() or None, backend=backend
        )
        self._done(f"created episode {detail['id']} ({detail['beats_total']} beats)")
        return detail

    def retry(self, episode_id: str, beat: int | None = None) -> dict[str, Any]:
        detail = services.retry_episode(self.rt, episode_id, beat)
        which = f"beat {beat + 1}" if beat is not None else "failed beats"
        self._done(f"retry {which} of episode {detail['id']}")
        return detail

    def approve(self, episode_id: str, beat: int | None = None) -> dict[str, Any]:
        """Approve beat `beat`'s keyframe (1-based), or every beat's."""
        detail = services.approve_episode(self.rt, episode_id, beat)
        which = f"beat {beat}" if beat is not None else "every beat"
        self._done(f"approved the keyframe of {which} of episode {detail['id']}")
        return detail

    def reroll(self, episode_id: str, beat: int, seed: int | None = None) -> dict[str, Any]:
        """Draw beat `beat`'s keyframe (1-based) again."""
        detail = services.reroll_beat(self.rt, episode_id, beat, seed=seed)
        self._done(f"re-rolled the keyframe of beat {beat} of episode {detail['id']}")
        return detail

    def cancel(self, episode_id: str) -> dict[str, Any]:
        detail = services.cancel_episode(self.rt, episode_id)
        self._done(f"cancelled episode {detail['id']}")
        return detail

    def requeue_dead(self, job_ids: list[str] | None) -> dict[str, Any]:
        out = services.requeue_dead(self.rt, job_ids)
        self._done(f"requeued {out['requeued']} dead letter(s)")
        return out

    def drop_dead(self, job_ids: list[str] | None) -> dict[str, Any]:
        out = services.drop_dead(self.rt, job_ids)
        self._done(f"dropped {out['dropped']} dead letter(s)")
        return out

    def bulk_jobs(self, query: jobs.JobQuery, action: str, expect: int) -> dict[str, Any]:
        out = jobs.bulk(self.rt, query, action, expect=expect)
        self._done(f"{action} {out['done']} of {out['selected']} job(s) ({query.describe()})")
        return out

    def command_worker(self, worker_id: str, command: str) -> dict[str, Any]:
        out = fleet.command_worker(self.rt, worker_id, command)
        self._done(f"{command} worker {worker_id}")
        return out

    def set_backend_paused(self, backend: str, paused: bool) -> dict[str, Any]:
        out = fleet.set_backend_paused(self.rt, backend, paused)
        self._done(f"{'paused' if paused else 'resumed'} dispatch to {backend}")
        return out

    def set_paused(self, paused: bool) -> None:
        services.set_paused(self.rt, paused)
        self._done("paused dispatch" if paused else "resumed dispatch")
