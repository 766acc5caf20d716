"""Dispatch and reconcile: the database decides what runs; Redis carries it.

Ready beats become job rows and then jobs on Redis (database first, so a crash between the
two is repaired by `reconcile`, which re-sends what the database records as in flight but
Redis does not know).
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storyworld.capabilities import CAPABILITIES
from storyworld.config import Settings
from storyworld.engine import film, sound
from storyworld.engine.models import (
    Beat,
    BeatState,
    Episode,
    EpisodeState,
    JobRow,
    JobState,
    note,
    transition,
)
from storyworld.engine.outcomes import OPEN_JOB_STATES
from storyworld.protocol import (
    Job,
    KeyframeJob,
    ProtocolError,
    RenderSpec,
    limits,
    parse_job,
)
from storyworld.queue import JobQueue, control

__all__ = ["ACTIVE_EPISODES", "Dispatcher", "LeaseLost", "build_job", "job_id_for"]

log = logging.getLogger("storyworld.engine")

ACTIVE_EPISODES = (EpisodeState.PLANNED, EpisodeState.RENDERING)


class LeaseLost(Exception):
    """Another engine took the lease: the jobs were not queued (the next leader re-sends
    them from the database)."""


def job_id_for(episode_id: str, beat_index: int, attempt: int) -> str:
    """Readable and unique per attempt: `{episode}-b{NNN}-a{k}`."""
    return f"{episode_id}-b{beat_index:03d}-a{attempt}"


def build_job(episode: Episode, beat: Beat, attempt: int, *, vram_routing: bool = False) -> Job:
    """The clip job for one attempt at `beat`. Raises pydantic's ValidationError or
    `ProtocolError` for a beat whose fields exceed the protocol's limits."""
    opts = dict(episode.options or {})
    spoken = sound.dialogue_fields(opts, beat, sound.speakers_of(episode))
    if (opts.pop(sound.SOUND, None) or {}).get("burn_subtitles"):
        opts["previs_subtitles"] = False  # the composer burns them in; not twice
    if beat.index in (opts.pop(sound.TITLE_CARDS, None) or []):
        opts["centered"] = True  # a title card: the previs draws the words on black
    staged = film.stage_fields(opts.pop(film.FILM, None), beat, episode.seed)
    seed = None if episode.seed is None else (episode.seed + beat.index) % (limits.MAX_SEED + 1)
    spec = RenderSpec(
        text=beat.text,
        scene=beat.scene,
        captions=list(beat.captions or []),
        title=episode.title,
        duration_s=beat.duration_s,
        width=episode.width,
        height=episode.height,
        fps=episode.fps,
        steps=episode.steps,
        seed=seed,
        guidance=opts.pop("guidance", None),
        negative_prompt=opts.pop("negative_prompt", ""),
        conditioning_key=(opts.pop("conditioning", {}) or {}).get(str(beat.index)),
        options=opts,
        **spoken,
    )
    if staged is not None:
        spec = film.staged_spec(spec, staged)
    kind = KeyframeJob if staged is not None and staged["kind"] == "keyframe" else Job
    backend = staged["backend"] if staged else beat.backend
    declared = CAPABILITIES.get(backend)
    return kind(
        # VRAM_ROUTING: the backend's declared minimum puts the job on the wake list of
        # its GPU memory class, so only a card that big takes it.
        min_vram_gb=declared.min_vram_gb if vram_routing and declared else 0.0,
        job_id=job_id_for(episode.id, beat.index, attempt),
        episode_id=episode.id,
        beat_id=beat.id,
        beat_index=beat.index,
        attempt=attempt,
        backend=backend,
        spec=spec,
    )


class Dispatcher:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], queue: JobQueue):
        self.settings = settings
        self.sessions = sessions
        self.queue = queue
        self._last_repair_check = 0.0
        self._last_unserved_check = 0.0
        self._held: set[str] = set()  # backends paused at the last dispatch

    def dispatch(self, token: str) -> int:
        """Queue every ready beat of active episodes. Returns how many were queued; raises
        `LeaseLost`."""
        now = time.time()
        jobs: list[Job] = []
        with self.sessions.begin() as s:
            rows = s.execute(
                select(Beat, Episode)
                .join(Episode, Beat.episode_id == Episode.id)
                .where(
                    Episode.state.in_(ACTIVE_EPISODES),
                    Beat.state == BeatState.PENDING,
                    Beat.not_before <= now,
                )
                .order_by(Episode.created_at, Beat.index)
            ).all()
            # Backends the operator paused (queue.control): read only when there is work.
            held = control.paused_backends(self.queue) if rows else set()
            self._held = held
            for beat, episode in rows:
                if held and (beat.backend or episode.backend) in held:
                    continue  # its backend is paused: the beat waits, pending
                if episode.state == EpisodeState.PLANNED:
                    episode.started_at = episode.started_at or now
                    transition(s, episode, EpisodeState.RENDERING, "dispatching beats")
                attempt = beat.attempts + 1
                try:
                    job = build_job(episode, beat, attempt, vram_routing=self.settings.vram_routing)
                    payload = job.to_json()
                except (ValueError, ProtocolError) as e:
                    # Refused at create time normally; a row written by hand or an older
                    # version can still hold one. Fail the beat with the reason.
                    beat.error = f"cannot be sent: {e}"
                    transition(s, beat, BeatState.FAILED, beat.error)
                    episode.fail(s, f"beat {beat.index} failed: {beat.error}")
                    continue
                if held and job.backend in held:
                    continue  # this stage's backend is paused
                s.add(
                    JobRow(
                        id=job.job_id,
                        beat_id=beat.id,
                        episode_id=episode.id,
                        attempt=attempt,
                        backend=job.backend,
                        state=JobState.QUEUED,
                        payload=payload,
                        queued_at=now,
                    )
                )
                beat.attempts = attempt
                transition(s, beat, BeatState.QUEUED, f"attempt {attempt} queued on {job.backend}")
                jobs.append(job)
        if not jobs:
            return 0
        if self.queue.enqueue(jobs, token) < 0:
            raise LeaseLost
        log.info("queued %d job(s)", len(jobs))
        return len(jobs)

    def reconcile(self, token: str) -> int:
        """Re-send jobs the database records as queued or rendering but Redis does not know
        (lost with a crash between the two, or with a Redis that lost its data)."""
        known = self.queue.known_job_ids()
        missing: list[Job] = []
        with self.sessions.begin() as s:
            for job in s.scalars(select(JobRow).where(JobRow.state.in_(OPEN_JOB_STATES))):
                if job.id in known:
                    continue
                beat = job.beat
                if not beat.is_current(job):
                    continue
                missing.append(parse_job(job.payload))
                reason = "recorded as in flight but absent from Redis; sent again"
                if not transition(s, job, JobState.QUEUED, reason):
                    note(s, job, reason)
                if beat.state == BeatState.RENDERING:
                    transition(s, beat, BeatState.QUEUED, reason)
        if missing:
            log.warning("reconcile: %d job(s) absent from Redis were sent again", len(missing))
            if self.queue.enqueue(missing, token) < 0:
                raise LeaseLost
        return len(missing)

    def dead_letter_unserved(self, engine_id: str) -> int:
        """With UNSERVED_TIMEOUT set: dead-letter jobs that have waited that long for a
        backend no live worker serves, with the reason (the next tick applies them like
        any dead letter). At most once a minute; free when nothing waits that long."""
        timeout = self.settings.unserved_timeout_s
        now = time.time()
        if timeout <= 0 or now - self._last_unserved_check < min(60.0, timeout):
            return 0
        self._last_unserved_check = now
        with self.sessions() as s:
            old = s.execute(
                select(JobRow.id, JobRow.backend, JobRow.payload)
                .where(JobRow.state == JobState.QUEUED, JobRow.queued_at < now - timeout)
                .limit(1000)
            ).all()
        if not old:
            return 0
        from storyworld.queue.fleet import fleet_stats

        served = {
            name
            for name, load in fleet_stats(self.queue.r, self.queue.keys).by_backend.items()
            if load.workers
        }
        unserved = [(j, b, p) for j, b, p in old if b not in served]
        # Withdrawn from the waiting and wake lists first, then filed as dead letters.
        self.queue.cancel_jobs([j for j, _, _ in unserved])
        n = 0
        for job_id, backend, payload in unserved:
            reason = f"no live worker served {backend} for {timeout:g} s (UNSERVED_TIMEOUT)"
            self.queue.dead_letter(payload, job_id, engine_id, reason)
            n += 1
        if n:
            log.warning("dead-lettered %d job(s) no live worker serves", n)
        return n

    def repair_due(self) -> bool:
        """A worker that dies between taking a job from a wake list and reserving it leaves
        the job waiting with no wake entry; once a minute, if jobs have waited over a
        minute, the tick rebuilds the wake lists."""
        now = time.time()
        if now - self._last_repair_check < 60:
            return False
        self._last_repair_check = now
        with self.sessions() as s:
            stale = s.scalar(
                select(JobRow.id)
                .where(JobRow.state == JobState.QUEUED, JobRow.queued_at < now - 60)
                .limit(1)
            )
        return stale is not None

    def work_open(self) -> bool:
        """Jobs in flight, or beats of active episodes waiting to be dispatched."""
        with self.sessions() as s:
            if s.scalar(select(JobRow.id).where(JobRow.state.in_(OPEN_JOB_STATES)).limit(1)):
                return True
            return (
                s.scalar(
                    select(Beat.id)
                    .join(Episode, Beat.episode_id == Episode.id)
                    .where(Episode.state.in_(ACTIVE_EPISODES), Beat.state == BeatState.PENDING)
                    .limit(1)
                )
                is not None
            )

    def jobs_in_flight(self) -> bool:
        with self.sessions() as s:
            return (
                s.scalar(select(JobRow.id).where(JobRow.state.in_(OPEN_JOB_STATES)).limit(1))
                is not None
            )

    def next_retry_at(self) -> float | None:
        """When the earliest backoff of a pending beat ends (unix time), if any."""
        query = (
            select(Beat.not_before)
            .join(Episode, Beat.episode_id == Episode.id)
            .where(Episode.state.in_(ACTIVE_EPISODES), Beat.state == BeatState.PENDING)
        )
        if self._held:  # a paused backend's beats wait for a resume (a wake), not a timer
            query = query.where(Beat.backend.not_in(self._held))
        with self.sessions() as s:
            return s.scalar(query.order_by(Beat.not_before).limit(1))
