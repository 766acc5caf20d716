"""Outcomes: apply what workers and the queue report, exactly once, in batches.

Everything one round trip brings (results, jobs taken, leases expired, dead letters) is
applied in one transaction: the job rows with their beats and episodes are read in one
query, the artifact keys already recorded in one more, and nothing else is read per result.
A second copy of a result (redelivery, duplicate push) changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, selectinload, sessionmaker

from storyworld.config import Settings
from storyworld.engine import film, sound
from storyworld.engine.models import (
    Artifact,
    Beat,
    BeatState,
    EpisodeState,
    JobRow,
    JobState,
    Transition,
    Upload,
    transition,
)
from storyworld.engine.retry import RetryPolicy
from storyworld.protocol import ErrorKind, ProtocolError, Result, parse_result, parse_wake

__all__ = ["OPEN_JOB_STATES", "Batch", "Outcomes"]

log = logging.getLogger("storyworld.engine")

OPEN_JOB_STATES = (JobState.QUEUED, JobState.RENDERING)
_FINAL_JOB_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass
class Batch:
    """What the engine read from Redis in one round trip."""

    results: list[str]
    in_flight: dict[str, str] | None = None  # job id -> worker
    reclaimed: list[str] | None = None
    dead: dict[str, str] | None = None  # job id -> reason


@dataclass
class Applied:
    changed: int = 0  # results, starts, reclaims and dead letters that changed something
    woken: int = 0  # wake messages
    pause_changed: bool = False  # a wake said dispatch was paused or resumed


_APPEND_ONLY = (Transition, Upload, Artifact)


def _insert_new_rows(s: Session) -> None:
    """Insert the batch's new history, upload and artifact rows with one executemany per
    table instead of the unit of work's per-object bookkeeping (most of a batch's cost)."""
    by_type: dict[type, list[dict[str, object]]] = {}
    new = [sa_inspect(o) for o in s.new if isinstance(o, _APPEND_ONLY)]
    for state in sorted(new, key=lambda st: st.insert_order):  # history keeps its order
        by_type.setdefault(state.class_, []).append(
            {k: v for k, v in state.dict.items() if not k.startswith("_")}
        )
        s.expunge(state.obj())
    for cls, rows in by_type.items():
        keys = set().union(*rows)
        s.execute(insert(cls), [{k: r.get(k) for k in keys} for r in rows])


class Outcomes:
    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], policy: RetryPolicy
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.policy = policy

    # ------------------------------------------------------------------ batches
    def apply(self, batch: Batch) -> Applied:
        """Apply a batch in one transaction."""
        out = Applied()
        results: list[Result] = []
        for raw in batch.results:
            wake = parse_wake(raw)
            if wake is not None:
                out.woken += 1
                out.pause_changed |= wake.changes_pause
                continue
            try:
                results.append(parse_result(raw))
            except ProtocolError as e:
                log.error("ignored a result that cannot be read: %s", e)
        if not (results or batch.in_flight or batch.reclaimed or batch.dead):
            return out
        ids = {r.job_id for r in results}
        ids.update(batch.in_flight or {})
        ids.update(batch.reclaimed or [])
        ids.update(batch.dead or {})
        with self.sessions.begin() as s:
            jobs = self._load(s, ids)
            if batch.in_flight:
                out.changed += self._started(s, jobs, batch.in_flight)
            if batch.reclaimed:
                out.changed += self._reclaimed(s, jobs, batch.reclaimed)
            if batch.dead:
                out.changed += self._dead(s, jobs, batch.dead)
            if results:
                known = self._known_keys(s, results)
                for r in results:
                    out.changed += self._result(s, jobs.get(r.job_id), r, known)
            _insert_new_rows(s)
        return out

    def apply_result(self, result: Result) -> bool:
        """Apply one result (tools and tests); False if it changed nothing."""
        with self.sessions.begin() as s:
            jobs = self._load(s, {result.job_id})
            known = self._known_keys(s, [result])
            return bool(self._result(s, jobs.get(result.job_id), result, known))

    @staticmethod
    def _load(s: Session, ids: Iterable[str]) -> dict[str, JobRow]:
        ids = list(ids)
        if not ids:
            return {}
        rows = s.scalars(
            select(JobRow)
            .where(JobRow.id.in_(ids))
            .options(selectinload(JobRow.beat).selectinload(Beat.episode))
        ).all()
        return {j.id: j for j in rows}

    @staticmethod
    def _known_keys(s: Session, results: list[Result]) -> set[str]:
        keys = [a.key for r in results for a in r.artifacts]
        if not keys:
            return set()
        return set(s.scalars(select(Artifact.key).where(Artifact.key.in_(keys))))

    # ------------------------------------------------------------------ results
    def _result(self, s: Session, job: JobRow | None, result: Result, known: set[str]) -> int:
        if job is None:
            log.warning("result for unknown job %s ignored", result.job_id)
            return 0
        if job.attempt != result.attempt:
            log.warning(
                "result for job %s names attempt %d, but the job is attempt %d; ignored",
                job.id,
                result.attempt,
                job.attempt,
            )
            return 0
        if job.state in _FINAL_JOB_STATES:
            log.info("duplicate result for %s ignored (already %s)", job.id, job.state)
            return 0
        beat = job.beat
        episode = beat.episode
        if not beat.is_current(job) and beat.state != BeatState.DONE:
            log.info(
                "result of stale attempt %d of beat %d of %s (the beat is %s on attempt %d): "
                "recorded for the job only",
                job.attempt,
                beat.index,
                episode.id,
                beat.state,
                beat.attempts,
            )
        job.worker_id = result.worker_id
        job.finished_at = result.finished_at
        job.started_at = job.started_at or result.started_at
        job.render_s = result.render_s
        job.model_info = dict(result.model_info)
        for u in result.uploads:
            s.add(
                Upload(
                    key=u.key,
                    size=u.size,
                    seconds=u.seconds,
                    bytes_per_s=u.bytes_per_s,
                    worker_id=u.worker_id or result.worker_id,
                    episode_id=episode.id,
                    beat_index=beat.index,
                    at=u.at,
                )
            )
        if result.status == "succeeded":
            self._success(s, job, result, known)
        else:
            self._failure(s, job, result)
        return 1

    def _success(self, s: Session, job: JobRow, result: Result, known: set[str]) -> None:
        beat, episode = job.beat, job.beat.episode
        transition(s, job, JobState.SUCCEEDED, f"rendered by {result.worker_id}")
        for a in result.artifacts:
            if a.key in known:
                continue
            known.add(a.key)
            s.add(
                Artifact(
                    episode_id=episode.id,
                    beat_id=beat.id,
                    job_id=job.id,
                    kind=a.kind,
                    key=a.key,
                    size=a.size,
                    sha256=a.sha256,
                    content_type=a.content_type,
                )
            )
        if episode.state == EpisodeState.CANCELLED:
            return
        if film.is_keyframe_job(job.payload):
            film.keyframe_done(s, job, beat, episode, result, self.settings)
            return
        if beat.state == BeatState.DONE:
            return
        beat.clip_key = next((a.key for a in result.artifacts if a.kind == "clip"), None)
        beat.error = None
        sound.record_speech(s, beat, result)
        transition(s, beat, BeatState.DONE, f"attempt {job.attempt} rendered by {result.worker_id}")
        film.clip_done(s, beat, episode, result)
        if episode.state in (EpisodeState.FAILED, EpisodeState.COMPLETED):
            transition(
                s,
                episode,
                EpisodeState.RENDERING,
                f"beat {beat.index} rendered after the episode ended",
            )

    def _failure(self, s: Session, job: JobRow, result: Result) -> None:
        beat, episode = job.beat, job.beat.episode
        job.error = result.error
        job.error_kind = (result.error_kind or ErrorKind.TRANSIENT).value
        if result.error_kind == ErrorKind.CANCELLED:
            transition(s, job, JobState.CANCELLED, result.error or "cancelled")
            return
        transition(s, job, JobState.FAILED, f"{job.error_kind}: {result.error}")
        if not beat.is_current(job) or episode.state == EpisodeState.CANCELLED:
            return
        self.policy.after_failure(
            s,
            beat,
            episode,
            job,
            result.error or "failed",
            transient=result.error_kind != ErrorKind.PERMANENT,
            fallback=result.fallback_backend,
        )

    # ------------------------------------------------------------------ queue events
    @staticmethod
    def _started(s: Session, jobs: dict[str, JobRow], in_flight: dict[str, str]) -> int:
        """Jobs a worker holds: queued -> rendering (seen at the engine's tick)."""
        n = 0
        for job_id, worker in in_flight.items():
            job = jobs.get(job_id)
            if job is None or job.state != JobState.QUEUED:
                continue
            job.worker_id = worker
            job.started_at = job.started_at or time.time()
            transition(s, job, JobState.RENDERING, f"taken by {worker}")
            beat = job.beat
            if beat.state == BeatState.QUEUED and beat.attempts == job.attempt:
                transition(s, beat, BeatState.RENDERING, f"attempt {job.attempt} on {worker}")
            n += 1
        return n

    @staticmethod
    def _reclaimed(s: Session, jobs: dict[str, JobRow], job_ids: list[str]) -> int:
        n = 0
        for job_id in job_ids:
            job = jobs.get(job_id)
            if job is None or job.state not in OPEN_JOB_STATES:
                continue
            reason = f"lease expired on {job.worker_id or 'a worker'}; handed out again"
            log.warning("job %s: %s", job_id, reason)
            transition(s, job, JobState.QUEUED, reason)
            beat = job.beat
            if beat.state == BeatState.RENDERING and beat.attempts == job.attempt:
                transition(s, beat, BeatState.QUEUED, reason)
            n += 1
        return n

    @staticmethod
    def _dead(s: Session, jobs: dict[str, JobRow], dead: dict[str, str]) -> int:
        n = 0
        for job_id, reason in dead.items():
            job = jobs.get(job_id)
            if job is None or job.state not in OPEN_JOB_STATES:
                continue
            log.error("job %s dead-lettered: %s", job_id, reason)
            job.error, job.error_kind = reason, ErrorKind.PERMANENT.value
            beat, episode = job.beat, job.beat.episode
            current = beat.is_current(job)
            transition(s, job, JobState.DEAD, reason)
            if current:
                beat.error = f"dead-lettered: {reason}"
                transition(s, beat, BeatState.FAILED, beat.error)
                if episode.is_active:
                    episode.fail(s, f"beat {beat.index} failed: {beat.error}")
            n += 1
        return n
