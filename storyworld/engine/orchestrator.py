"""The decision loop: dispatch ready beats, apply results exactly once, retry with backoff,
reclaim lost jobs, reconcile the database with Redis, compose finished episodes.

One engine dispatches at a time: it holds a lease on Redis whose value is the fencing
token that every enqueue and tick checks atomically. Others wait in standby.

Per loop the engine sends two commands: one `tick` script (renew lease, acknowledge applied
results, reclaim expired leases, collect results, started and dead jobs) and one blocking
BLMOVE on the result list whose timeout is as long as nothing is due: the reclaim interval
while jobs are in flight, else the idle block (150 s by default).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storyworld.config import Settings
from storyworld.engine import film
from storyworld.engine.models import (
    Artifact,
    Beat,
    BeatState,
    Episode,
    EpisodeState,
    JobRow,
    JobState,
    Upload,
    note,
    transition,
)
from storyworld.protocol import (
    ErrorKind,
    Job,
    LeaseHolder,
    ProtocolError,
    RenderSpec,
    Result,
    WakeReason,
    limits,
    parse_job,
    parse_result,
    parse_wake,
)
from storyworld.queue import JobQueue
from storyworld.storage import ArtifactStore, StorageError, episode_key

__all__ = ["Orchestrator", "backoff_delay", "job_id_for"]

log = logging.getLogger("storyworld.engine")

ACTIVE_EPISODES = (EpisodeState.PLANNED, EpisodeState.RENDERING)
OPEN_JOB_STATES = (JobState.QUEUED, JobState.RENDERING)


def job_id_for(episode_id: str, beat_index: int, attempt: int) -> str:
    """Readable and unique per attempt: `{episode}-b{NNN}-a{k}`."""
    return f"{episode_id}-b{beat_index:03d}-a{attempt}"


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with full-range jitter (0.5x to 1.5x)."""
    raw = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return raw * (0.5 + rng.random())


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
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.queue = queue
        self.store = store
        self.engine_id = engine_id or f"engine-{socket.gethostname()}-{os.getpid()}"
        self.rng = rng or random.Random()
        self.on_change = on_change or (lambda: None)
        self.token: str | None = None
        self.paused = False
        self.is_leader = False
        self.status = "starting"
        self._applied: list[str] = []
        self._need_reconcile = True
        self._composer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compose")
        self._composing: dict[str, Future[None]] = {}
        self._last_repair_check = 0.0
        self._next_tick = 0.0
        self._recover = True  # at start, results left unacknowledged by a crash are applied
        self._stop = threading.Event()

    # ------------------------------------------------------------------ loop
    def run(self, stop: threading.Event | None = None) -> None:
        """Loop until `stop` is set. Redis outages and database errors are waited out with
        backoff; results not yet applied stay on Redis and are applied after recovery."""
        stop = stop or self._stop
        self._stop = stop
        delay = 1.0
        try:
            while not stop.is_set():
                try:
                    timeout = self.step()
                    delay = 1.0
                    if timeout is None:
                        continue
                    if not self.is_leader:
                        stop.wait(timeout)
                        continue
                    applied, self._applied = self._applied, []
                    raw = self.queue.ack_and_wait(applied, timeout)
                    if raw is not None:
                        self._apply_raw(raw)
                        self._applied.append(raw)
                except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                    self.status = f"Redis unreachable — retrying in {delay:.0f} s"
                    log.warning(
                        "Redis unreachable (%s); retrying in %.0f s", type(e).__name__, delay
                    )
                    self._need_reconcile = True
                    self._recover = True
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

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        self._composer.shutdown(wait=True, cancel_futures=False)
        if self.token:
            try:
                self.queue.release_engine_lease(self.token)
            except redis.RedisError:
                pass
            self.token = None
            self.is_leader = False

    def step(self) -> float | None:
        """One pass: become leader if possible, tick, apply, dispatch, compose. Returns how
        long to block for the next result (None: loop again at once)."""
        if self.token is None:
            self.token = self.queue.acquire_engine_lease(
                LeaseHolder.here(self.engine_id), self.settings.engine_lease_s
            )
            if self.token is None:
                self.is_leader = False
                holder = self.queue.engine_holder() or {}
                self.status = f"standby: {holder.get('engine', 'another engine')} dispatches"
                return self.settings.engine_lease_s / 2
            log.info("%s now dispatches", self.engine_id)
            self._need_reconcile = True
            self._recover = True  # results the previous engine left unacknowledged
        changed = False
        now = time.monotonic()
        if self._recover or now >= self._next_tick:
            tick = self.queue.tick(self.token, repair=self._repair_due(), recover=self._recover)
            self._recover = False
            if not tick.leader:
                log.warning("lost the engine lease; another engine dispatches now")
                self.token = None
                self.is_leader = False
                return None
            self.is_leader = True
            self.paused = tick.paused
            if self._need_reconcile:
                self.reconcile()
                self._need_reconcile = False
            if tick.in_flight:
                changed |= self._apply_started(tick.in_flight)
            if tick.reclaimed:
                changed |= self._apply_reclaimed(tick.reclaimed)
            if tick.dead:
                changed |= self._apply_dead(tick.dead)
            for raw in tick.results:
                changed |= self._apply_raw(raw)
            self._applied.extend(tick.results)
            if tick.repaired:
                log.warning("rebuilt wake lists for %d waiting job(s)", tick.repaired)
            interval = (
                self.settings.reclaim_interval_s
                if self._in_flight()
                else self.settings.engine_idle_block_s
            )
            self._next_tick = now + interval
            if len(tick.results) >= self.MAX_RESULTS:
                self._next_tick = now
        self.status = "paused" if self.paused else "dispatching"
        if not self.paused:
            changed |= self.dispatch()
        changed |= self._start_composing()
        if changed:
            self.on_change()
            if self._in_flight():
                self._next_tick = min(self._next_tick, now + self.settings.reclaim_interval_s)
        if self._next_tick <= now:
            return None
        return self._next_timeout(self._next_tick - now)

    # ------------------------------------------------------------------ results
    def _apply_raw(self, raw: str) -> bool:
        wake = parse_wake(raw)
        if wake is not None:
            # A nudge from a CLI, console or the composer: look at the database now, and
            # at Redis too if dispatch was paused or resumed.
            if wake.changes_pause:
                self._next_tick = 0.0
            return False
        try:
            result = parse_result(raw)
        except ProtocolError as e:
            log.error("ignored a result that cannot be read: %s", e)
            return False
        return self.apply_result(result)

    def apply_result(self, result: Result) -> bool:
        """Apply a result once: a second copy (redelivery, duplicate push) changes nothing."""
        with self.sessions.begin() as s:
            job = s.get(JobRow, result.job_id)
            if job is None or job.attempt != result.attempt:
                log.warning("result for unknown job %s ignored", result.job_id)
                return False
            if job.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
                log.info("duplicate result for %s ignored (already %s)", job.id, job.state)
                return False
            beat = job.beat
            episode = beat.episode
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
                self._record_success(s, job, beat, episode, result)
            else:
                self._record_failure(s, job, beat, episode, result)
        return True

    def _record_success(
        self, s: Session, job: JobRow, beat: Beat, episode: Episode, result: Result
    ) -> None:
        transition(s, job, JobState.SUCCEEDED, f"rendered by {result.worker_id}")
        for a in result.artifacts:
            if s.scalar(select(Artifact.id).where(Artifact.key == a.key)) is None:
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
        if beat.state != BeatState.DONE:
            clip = next((a.key for a in result.artifacts if a.kind == "clip"), None)
            beat.clip_key = clip
            beat.error = None
            transition(
                s, beat, BeatState.DONE, f"attempt {job.attempt} rendered by {result.worker_id}"
            )
            if episode.state in (EpisodeState.FAILED, EpisodeState.COMPLETED):
                transition(
                    s,
                    episode,
                    EpisodeState.RENDERING,
                    f"beat {beat.index} rendered after the episode ended",
                )

    def _record_failure(
        self, s: Session, job: JobRow, beat: Beat, episode: Episode, result: Result
    ) -> None:
        job.error = result.error
        job.error_kind = (result.error_kind or ErrorKind.TRANSIENT).value
        if result.error_kind == ErrorKind.CANCELLED:
            transition(s, job, JobState.CANCELLED, result.error or "cancelled")
            return
        transition(s, job, JobState.FAILED, f"{job.error_kind}: {result.error}")
        current = beat.attempts == job.attempt and beat.state in (
            BeatState.QUEUED,
            BeatState.RENDERING,
        )
        if not current or episode.state == EpisodeState.CANCELLED:
            return
        self._retry_or_fail(
            s,
            beat,
            episode,
            job,
            result.error or "failed",
            transient=result.error_kind != ErrorKind.PERMANENT,
            fallback=result.fallback_backend,
        )

    def _retry_or_fail(
        self,
        s: Session,
        beat: Beat,
        episode: Episode,
        job: JobRow,
        error: str,
        *,
        transient: bool,
        fallback: str | None,
    ) -> None:
        fallback = fallback or self._configured_fallback(beat.backend)
        beat.error = error
        used = beat.attempts - beat.retry_offset
        if fallback and fallback != beat.backend and not transient:
            reason = (
                f"attempt {job.attempt} failed permanently on {beat.backend} ({error}); "
                f"falling back to {fallback}"
            )
            beat.backend = fallback
            beat.not_before = 0.0
            transition(s, beat, BeatState.PENDING, reason)
            return
        if transient and used < self.settings.max_attempts:
            if fallback and fallback != beat.backend:
                beat.backend = fallback
            delay = backoff_delay(
                used, self.settings.retry_base_s, self.settings.retry_max_s, self.rng
            )
            beat.not_before = time.time() + delay
            transition(
                s,
                beat,
                BeatState.PENDING,
                f"attempt {job.attempt} failed ({error}); retry in {delay:.1f} s",
            )
            return
        why = "permanent error" if not transient else f"{used} attempts failed"
        transition(s, beat, BeatState.FAILED, f"{why}: {error}")
        if episode.state in (EpisodeState.RENDERING, EpisodeState.PLANNED):
            episode.error = f"beat {beat.index} failed: {error}"
            episode.finished_at = time.time()
            transition(s, episode, EpisodeState.FAILED, episode.error)

    def _configured_fallback(self, backend: str) -> str | None:
        for pair in self.settings.fallback_backends.split(","):
            src, _, dst = pair.partition("=")
            if src.strip() == backend and dst.strip():
                return dst.strip()
        if backend == "veo" and self.settings.veo_fallback_backend:
            return self.settings.veo_fallback_backend
        return None

    def _apply_started(self, in_flight: dict[str, str]) -> bool:
        """Jobs a worker holds: queued -> rendering (seen at the engine's tick)."""
        changed = False
        with self.sessions.begin() as s:
            rows = s.scalars(
                select(JobRow).where(
                    JobRow.id.in_(list(in_flight)), JobRow.state == JobState.QUEUED
                )
            ).all()
            for job in rows:
                worker = in_flight[job.id]
                job.worker_id = worker
                job.started_at = job.started_at or time.time()
                transition(s, job, JobState.RENDERING, f"taken by {worker}")
                beat = job.beat
                if beat.state == BeatState.QUEUED and beat.attempts == job.attempt:
                    transition(s, beat, BeatState.RENDERING, f"attempt {job.attempt} on {worker}")
                changed = True
        return changed

    def _apply_reclaimed(self, job_ids: list[str]) -> bool:
        with self.sessions.begin() as s:
            for job_id in job_ids:
                job = s.get(JobRow, job_id)
                if job is None or job.state not in OPEN_JOB_STATES:
                    continue
                reason = f"lease expired on {job.worker_id or 'a worker'}; handed out again"
                log.warning("job %s: %s", job_id, reason)
                transition(s, job, JobState.QUEUED, reason)
                beat = job.beat
                if beat.state == BeatState.RENDERING and beat.attempts == job.attempt:
                    transition(s, beat, BeatState.QUEUED, reason)
        return True

    def _apply_dead(self, dead: dict[str, str]) -> bool:
        with self.sessions.begin() as s:
            for job_id, reason in dead.items():
                job = s.get(JobRow, job_id)
                if job is None or job.state not in OPEN_JOB_STATES:
                    continue
                log.error("job %s dead-lettered: %s", job_id, reason)
                job.error, job.error_kind = reason, ErrorKind.PERMANENT.value
                transition(s, job, JobState.DEAD, reason)
                beat, episode = job.beat, job.beat.episode
                if beat.attempts == job.attempt and beat.state in (
                    BeatState.QUEUED,
                    BeatState.RENDERING,
                ):
                    beat.error = f"dead-lettered: {reason}"
                    transition(s, beat, BeatState.FAILED, beat.error)
                    if episode.state in ACTIVE_EPISODES:
                        episode.error = f"beat {beat.index} failed: {beat.error}"
                        transition(s, episode, EpisodeState.FAILED, episode.error)
        return True

    # ------------------------------------------------------------------ dispatch
    def dispatch(self) -> bool:
        """Queue every ready beat of active episodes: database first, then Redis."""
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
            for beat, episode in rows:
                if episode.state == EpisodeState.PLANNED:
                    episode.started_at = episode.started_at or now
                    transition(s, episode, EpisodeState.RENDERING, "dispatching beats")
                attempt = beat.attempts + 1
                job = self._build_job(episode, beat, attempt)
                s.add(
                    JobRow(
                        id=job.job_id,
                        beat_id=beat.id,
                        episode_id=episode.id,
                        attempt=attempt,
                        backend=job.backend,
                        state=JobState.QUEUED,
                        payload=job.to_json(),
                        queued_at=now,
                    )
                )
                beat.attempts = attempt
                transition(s, beat, BeatState.QUEUED, f"attempt {attempt} queued on {job.backend}")
                jobs.append(job)
        if not jobs:
            return False
        sent = self.queue.enqueue(jobs, self.token or "")
        if sent < 0:
            log.warning("lost the engine lease while dispatching; the next engine re-sends")
            self.token = None
        else:
            log.info("queued %d job(s)", sent)
        return True

    def _build_job(self, episode: Episode, beat: Beat, attempt: int) -> Job:
        opts = dict(episode.options or {})
        staged = film.stage_fields(opts.pop(film.FILM, None), beat, episode.seed)
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
            seed=(episode.seed + beat.index) % (limits.MAX_SEED + 1)
            if episode.seed is not None
            else None,
            guidance=opts.pop("guidance", None),
            negative_prompt=opts.pop("negative_prompt", ""),
            conditioning_key=(opts.pop("conditioning", {}) or {}).get(str(beat.index)),
            options=opts,
        )
        if staged is not None:
            spec = film.staged_spec(spec, staged)
        return Job(
            job_id=job_id_for(episode.id, beat.index, attempt),
            episode_id=episode.id,
            beat_id=beat.id,
            beat_index=beat.index,
            attempt=attempt,
            backend=staged["backend"] if staged else beat.backend,
            spec=spec,
        )

    def reconcile(self) -> int:
        """Re-send jobs the database records as queued or rendering but Redis does not know
        (lost with a crash between the two, or with a Redis that lost its data)."""
        known = self.queue.known_job_ids()
        missing: list[Job] = []
        with self.sessions.begin() as s:
            for job in s.scalars(select(JobRow).where(JobRow.state.in_(OPEN_JOB_STATES))):
                if job.id in known:
                    continue
                beat = job.beat
                if beat.attempts != job.attempt or beat.state not in (
                    BeatState.QUEUED,
                    BeatState.RENDERING,
                ):
                    continue
                missing.append(parse_job(job.payload))
                reason = "recorded as in flight but absent from Redis; sent again"
                if not transition(s, job, JobState.QUEUED, reason):
                    note(s, job, reason)
                if beat.state == BeatState.RENDERING:
                    transition(s, beat, BeatState.QUEUED, reason)
        if missing:
            log.warning("reconcile: %d job(s) absent from Redis were sent again", len(missing))
            if self.queue.enqueue(missing, self.token or "") < 0:
                self.token = None
        return len(missing)

    def _repair_due(self) -> bool:
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

    def _in_flight(self) -> bool:
        with self.sessions() as s:
            return s.scalar(
                select(JobRow.id).where(JobRow.state.in_(OPEN_JOB_STATES)).limit(1)
            ) is not None or bool(self._composing)

    # ------------------------------------------------------------------ compose
    def _start_composing(self) -> bool:
        changed = False
        with self.sessions.begin() as s:
            for episode in s.scalars(
                select(Episode).where(
                    Episode.state.in_((EpisodeState.RENDERING, EpisodeState.COMPOSING))
                )
            ):
                if episode.id in self._composing:
                    continue
                states = [b.state for b in episode.beats]
                if episode.state == EpisodeState.RENDERING:
                    if not states or any(st != BeatState.DONE for st in states):
                        continue
                    transition(s, episode, EpisodeState.COMPOSING, "every beat is rendered")
                changed = True
                self._composing[episode.id] = self._composer.submit(self._compose, episode.id)
        return changed

    def _compose(self, episode_id: str) -> None:
        try:
            self.compose(episode_id)
        except Exception as e:
            log.exception("composing episode %s failed", episode_id)
            with self.sessions.begin() as s:
                ep = s.get(Episode, episode_id)
                if ep is not None and ep.state == EpisodeState.COMPOSING:
                    ep.error = f"compose failed: {e}"
                    ep.finished_at = time.time()
                    transition(s, ep, EpisodeState.FAILED, ep.error)
        finally:
            self._composing.pop(episode_id, None)
            self.on_change()
            if not self._stop.is_set():
                try:
                    self.queue.wake_engine(WakeReason.COMPOSED)
                except redis.RedisError:
                    pass

    def compose(self, episode_id: str) -> str:
        """Concatenate the beats' clips into the episode and store it. Returns its key."""
        with self.sessions() as s:
            ep = s.get(Episode, episode_id)
            if ep is None:
                raise ValueError(f"no episode {episode_id}")
            clips = [(b.clip_key, b.duration_s) for b in ep.beats]
            fps, width, height = ep.fps, ep.width, ep.height
        if any(k is None for k, _ in clips):
            raise StorageError("a beat has no stored clip")
        with tempfile.TemporaryDirectory(prefix="storyworld-compose-") as tmp:
            paths = []
            for i, (key, _) in enumerate(clips):
                dest = Path(tmp) / f"{i:03d}.mp4"
                self.store.get_file(key, dest)  # type: ignore[arg-type]
                paths.append(dest)
            from storyworld.media import concat_videos  # video libraries: only when composing

            out = Path(tmp) / "episode.mp4"
            expected = [max(1, round(d * fps)) for _, d in clips]
            concat_videos(paths, out, fps=fps, width=width, height=height, expected_frames=expected)
            key = episode_key(episode_id)
            stored = self.store.put_file(
                key, out, content_type="video/mp4", metadata={"episode": episode_id}
            )
        with self.sessions.begin() as s:
            ep = s.get(Episode, episode_id)
            assert ep is not None
            existing = s.scalar(select(Artifact).where(Artifact.key == key))
            if existing is None:
                s.add(
                    Artifact(
                        episode_id=episode_id,
                        kind="episode",
                        key=key,
                        size=stored.size,
                        sha256=stored.sha256,
                        content_type=stored.content_type,
                    )
                )
            else:
                existing.size, existing.sha256 = stored.size, stored.sha256
            s.add(
                Upload(
                    key=key,
                    size=stored.size,
                    seconds=stored.seconds,
                    bytes_per_s=stored.bytes_per_s,
                    worker_id=self.engine_id,
                    episode_id=episode_id,
                    beat_index=None,
                )
            )
            ep.output_key = key
            ep.error = None
            ep.finished_at = time.time()
            if ep.state == EpisodeState.COMPOSING:
                transition(s, ep, EpisodeState.COMPLETED, f"composed {len(clips)} beats")
        log.info("episode %s composed: %s", episode_id, key)
        return key

    # ------------------------------------------------------------------ timing
    def _next_timeout(self, until_tick: float) -> float:
        """Block until the next tick is due, or a retry's backoff ends, whichever first."""
        timeout = until_tick
        if not self.paused:
            with self.sessions() as s:
                next_retry = s.scalar(
                    select(Beat.not_before)
                    .join(Episode, Beat.episode_id == Episode.id)
                    .where(Episode.state.in_(ACTIVE_EPISODES), Beat.state == BeatState.PENDING)
                    .order_by(Beat.not_before)
                    .limit(1)
                )
            if next_retry is not None:
                timeout = min(timeout, next_retry - time.time())
        return max(0.05, timeout)
