"""Browsing jobs, for the console's Jobs screen and the API: filter, search, paginate on the
database side, and act in bulk on what a filter selects.

The database's `jobs` table is the record of every attempt (waiting = `queued` on Redis, in
flight = `rendering`, dead-lettered, done, failed, cancelled). Pages are read with LIMIT and
OFFSET over the `(state)` index ordered by `queued_at`, so a page costs the same with 100,000
jobs as with 100. A bulk action needs a non-empty filter: an empty one never selects every
job by accident.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, or_, select

from storyworld.config import ConfigError, redact
from storyworld.engine import services
from storyworld.engine.models import Beat, BeatState, JobRow, JobState, Transition, transition
from storyworld.engine.runtime import Runtime

__all__ = [
    "BULK_ACTIONS",
    "STATES",
    "JobQuery",
    "browse",
    "bulk",
    "count",
    "job_detail",
    "parse_query",
]

#: The operator's names for job states, and the database's.
STATES: dict[str, str] = {
    "waiting": JobState.QUEUED,
    "in_flight": JobState.RENDERING,
    "dead": JobState.DEAD,
    "done": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
}
NAME_OF = {v: k for k, v in STATES.items()}

#: Bulk actions and the job states each applies to.
BULK_ACTIONS: dict[str, tuple[str, ...]] = {
    "retry": (JobState.FAILED, JobState.DEAD, JobState.CANCELLED),
    "requeue": (JobState.DEAD,),
    "drop": (JobState.DEAD,),
}


@dataclass(frozen=True)
class JobQuery:
    """A filter over jobs; every field narrows it (None: no condition)."""

    state: str | None = None  # one of STATES' keys
    backend: str | None = None
    worker: str | None = None
    episode: str | None = None  # an id or its prefix
    text: str | None = None  # in the job id or its payload (the prompt)
    words: tuple[str, ...] = field(default=(), compare=False)

    def is_empty(self) -> bool:
        return not any((self.state, self.backend, self.worker, self.episode, self.text))

    def describe(self) -> str:
        parts = [
            f"{k}:{v}"
            for k, v in (
                ("state", self.state),
                ("backend", self.backend),
                ("worker", self.worker),
                ("episode", self.episode),
            )
            if v
        ]
        if self.text:
            parts.append(repr(self.text))
        return " ".join(parts) or "(no filter)"


def parse_query(text: str) -> JobQuery:
    """`state:waiting backend:svd worker:pod-1 episode:3f9a beam` -> JobQuery. Words that
    are not `key:value` are searched for in ids and prompts."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    fields: dict[str, str] = {}
    free: list[str] = []
    for w in words:
        key, sep, value = w.partition(":")
        if sep and key in ("state", "backend", "worker", "episode") and value:
            fields[key] = value
        else:
            free.append(w)
    state = fields.get("state")
    if state is not None:
        state = state.replace("-", "_")
        if state == "inflight":
            state = "in_flight"
        if state not in STATES:
            raise ConfigError(f"unknown state {state!r} (choose from {', '.join(STATES)})")
    return JobQuery(
        state=state,
        backend=fields.get("backend"),
        worker=fields.get("worker"),
        episode=fields.get("episode"),
        text=" ".join(free) or None,
    )


def _where(q: JobQuery, stmt: Select[Any]) -> Select[Any]:
    if q.state:
        stmt = stmt.where(JobRow.state == STATES[q.state])
    if q.backend:
        stmt = stmt.where(JobRow.backend == q.backend)
    if q.worker:
        stmt = stmt.where(JobRow.worker_id == q.worker)
    if q.episode:
        stmt = stmt.where(JobRow.episode_id.startswith(q.episode, autoescape=True))
    if q.text:
        stmt = stmt.where(
            or_(
                JobRow.id.contains(q.text, autoescape=True),
                JobRow.payload.contains(q.text, autoescape=True),
            )
        )
    return stmt


def _row(j: JobRow) -> dict[str, Any]:
    prompt = ""
    try:
        spec = json.loads(j.payload).get("spec", {})
        prompt = str(spec.get("prompt") or spec.get("text") or "")
    except (ValueError, AttributeError, TypeError):
        pass
    return {
        "job_id": j.id,
        "state": NAME_OF.get(j.state, j.state),
        "episode_id": j.episode_id,
        "beat_id": j.beat_id,
        "attempt": j.attempt,
        "backend": j.backend,
        "worker": j.worker_id,
        "error": redact(j.error) if j.error else None,
        "error_kind": j.error_kind,
        "queued_at": j.queued_at,
        "started_at": j.started_at,
        "finished_at": j.finished_at,
        "render_s": j.render_s,
        "prompt": prompt,
    }


def count(rt: Runtime, q: JobQuery, action: str | None = None) -> int:
    """How many jobs `q` selects (with `action`: in a state that action applies to)."""
    stmt = _where(q, select(func.count()).select_from(JobRow))
    if action is not None:
        stmt = stmt.where(JobRow.state.in_(BULK_ACTIONS[action]))
    with rt.sessions() as s:
        return int(s.scalar(stmt) or 0)


def browse(rt: Runtime, q: JobQuery, offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """One page of jobs, newest first: {"total", "offset", "limit", "jobs": [...]}."""
    limit = max(1, min(limit, 1000))
    offset = max(0, offset)
    with rt.sessions() as s:
        total = int(s.scalar(_where(q, select(func.count()).select_from(JobRow))) or 0)
        rows = s.scalars(
            _where(q, select(JobRow))
            .order_by(JobRow.queued_at.desc(), JobRow.id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        return {"total": total, "offset": offset, "limit": limit, "jobs": [_row(j) for j in rows]}


def job_detail(rt: Runtime, job_id: str, *, log_lines: int = 200) -> dict[str, Any]:
    """A job with its payload, the other attempts at its beat, its recorded transitions and
    the lines of its worker's log that name it."""
    with rt.sessions() as s:
        j = s.get(JobRow, job_id)
        if j is None:
            raise services.NotFound(f"no job {job_id!r}")
        out = _row(j)
        out["payload"] = j.payload
        out["model_info"] = j.model_info or {}
        beat = s.get(Beat, j.beat_id)
        out["beat_index"] = beat.index if beat else None
        out["attempts"] = [
            _row(a)
            for a in s.scalars(
                select(JobRow).where(JobRow.beat_id == j.beat_id).order_by(JobRow.attempt)
            )
        ]
        out["history"] = [
            {"from": t.from_state, "to": t.to_state, "reason": redact(t.reason), "at": t.at}
            for t in s.scalars(
                select(Transition).where(Transition.entity_id == job_id).order_by(Transition.id)
            )
        ]
    lines: list[str] = []
    if out["worker"]:
        lines = [redact(x) for x in rt.queue.worker_logs(out["worker"], log_lines) if job_id in x]
    out["log"] = lines
    return out


def bulk(rt: Runtime, q: JobQuery, action: str, *, expect: int | None = None) -> dict[str, Any]:
    """Apply `action` (retry, requeue, drop) to every job `q` selects in a state the action
    applies to. Refuses an empty filter; with `expect`, refuses when the selection changed
    size since the operator confirmed it."""
    if action not in BULK_ACTIONS:
        raise ConfigError(f"unknown action {action!r} (choose from {', '.join(BULK_ACTIONS)})")
    if q.is_empty():
        raise ConfigError("set a filter first: an empty filter never selects every job")
    states = BULK_ACTIONS[action]
    with rt.sessions() as s:
        rows = s.execute(
            _where(q, select(JobRow.id, JobRow.episode_id, JobRow.beat_id, JobRow.attempt))
            .where(JobRow.state.in_(states))
            .order_by(JobRow.queued_at)
        ).all()
    if expect is not None and len(rows) != expect:
        raise ConfigError(
            f"the filter now selects {len(rows)} job(s), not {expect}; look again and confirm"
        )
    ids = [r.id for r in rows]
    if not ids:
        return {"action": action, "selected": 0, "done": 0, "skipped": []}
    if action == "requeue":
        out = services.requeue_dead(rt, ids)
        return {"action": action, "selected": len(ids), "done": out["requeued"],
                "skipped": out["refused"]}  # fmt: skip
    if action == "drop":
        out = services.drop_dead(rt, ids)
        with rt.sessions.begin() as s:
            for j in s.scalars(select(JobRow).where(JobRow.id.in_(ids))):
                if j.state == JobState.DEAD:
                    transition(s, j, JobState.FAILED, "dead letter dropped by the operator")
        return {"action": action, "selected": len(ids), "done": out["dropped"], "skipped": []}
    return _retry_beats(rt, rows)


def _retry_beats(rt: Runtime, rows: list[Any]) -> dict[str, Any]:
    """Retry the beats of the selected jobs: once per beat, only where the job is the beat's
    latest attempt and the beat is not already on its way again."""
    latest: dict[str, tuple[str, int, int]] = {}
    with rt.sessions() as s:
        beat_ids = list({r.beat_id for r in rows})
        beats = {b.id: b for b in s.scalars(select(Beat).where(Beat.id.in_(beat_ids)))}
        for r in rows:
            b = beats.get(r.beat_id)
            if b is None or b.state in (BeatState.QUEUED, BeatState.RENDERING, BeatState.DONE):
                continue
            if r.attempt >= max(b.attempts, 1) and r.beat_id not in latest:
                latest[r.beat_id] = (r.episode_id, b.index, r.attempt)
    done, skipped = 0, []
    for episode_id, index, _attempt in latest.values():
        try:
            services.retry_episode(rt, episode_id, index)
            done += 1
        except (ConfigError, services.NotFound) as e:
            skipped.append(redact(str(e)))
    return {"action": "retry", "selected": len(rows), "done": done, "skipped": skipped}
