"""Operations on episodes and the queue, for the CLI, the console and the HTTP API.

Every function takes a `Runtime` and returns plain data (dicts and lists of JSON types), the
documented `--json` shapes of the CLI (see docs/json.md).
"""

from __future__ import annotations

import time
from typing import Any

import redis
from sqlalchemy import func, select

from storyworld.engine import errors, film, sound
from storyworld.engine.cast import Cast
from storyworld.engine.errors import Conflict, InvalidRequest, Unavailable
from storyworld.engine.models import (
    Artifact,
    Beat,
    BeatState,
    Episode,
    EpisodeState,
    JobRow,
    JobState,
    Transition,
    Upload,
    transition,
)
from storyworld.engine.planner import ScriptPlan, plan_script
from storyworld.engine.runtime import Runtime
from storyworld.protocol import KNOWN_BACKENDS, WakeReason, limits
from storyworld.queue import describe_redis_error
from storyworld.queue.fleet import fleet_stats
from storyworld.storage import LocalStore, StorageError

__all__ = [
    "NotFound",
    "approve_episode",
    "cancel_episode",
    "create_episode",
    "dead_letters",
    "drop_dead",
    "episode_detail",
    "episode_progress",
    "list_episodes",
    "parse_size",
    "plan_text",
    "queue_stats",
    "recent_uploads",
    "requeue_dead",
    "reroll_beat",
    "retry_episode",
    "set_paused",
]


# The one vocabulary of failures (engine.errors); NotFound stays importable from here.
NotFound = errors.NotFound


def parse_size(text: str) -> tuple[int, int]:
    """'512x288' -> (512, 288)."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise InvalidRequest(f"size must look like 512x288, not {text!r}") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise InvalidRequest(f"size {text} is out of range (16 to 4096 pixels a side)")
    return w, h


def check_backend(name: str) -> str:
    if name not in KNOWN_BACKENDS:
        raise InvalidRequest(f"unknown backend {name!r} (choose from {', '.join(KNOWN_BACKENDS)})")
    return name


def plan_text(rt: Runtime, text: str, fmt: str | None = None, source: str = "") -> ScriptPlan:
    s = rt.settings
    return plan_script(
        text,
        fmt=fmt,
        default_beat_s=s.default_beat_seconds,
        max_beat_s=s.max_beat_seconds,
        max_beats=s.max_beats,
        source=source,
    )


def create_episode(
    rt: Runtime,
    plan: ScriptPlan,
    *,
    script: str,
    title: str | None = None,
    backend: str | None = None,
    size: tuple[int, int] | None = None,
    fps: int | None = None,
    steps: int | None = None,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    wake: bool = True,
    cast: Cast | None = None,
    keyframes: str | None = None,
    candidates: int | None = None,
    approve: bool = False,
    reuse: bool = False,
) -> dict[str, Any]:
    """Record a planned episode (state `planned`); the engine dispatches it.

    With a cast, `keyframes` (off/auto/on), `candidates` or `approve`, the episode is
    rendered keyframes first (see `engine.film`); an episode no backend can render is
    refused here, before anything is stored. With `reuse`, beats whose render inputs are
    unchanged since the last rendered revision of the same script keep their clips."""
    s = rt.settings
    backend = check_backend(backend or s.default_backend)
    if cast is not None and seed is None:
        seed = cast.style.seed
    width, height = size or (s.default_width, s.default_height)
    fps = fps or s.default_fps
    if not 1 <= fps <= 120:
        raise InvalidRequest(f"fps must be between 1 and 120, not {fps}")
    if steps is not None and not 1 <= steps <= 500:
        raise InvalidRequest(f"steps must be between 1 and 500, not {steps}")
    if seed is not None and not 0 <= seed <= limits.MAX_SEED:
        raise InvalidRequest(f"seed must be between 0 and 2^63-1, not {seed}")
    film_state = None
    if cast is not None or keyframes is not None or approve or (candidates or 1) > 1 or reuse:
        film_state = film.plan_film(
            plan,
            cast,
            backend=backend,
            keyframes=keyframes or "auto",
            candidates=candidates,
            approve=approve,
            render_inputs=film.render_inputs(s, backend, (width, height), fps, steps, seed),
        )
    # Voices and sound files are refused here too (the console and the API create
    # episodes without the CLI), before anything is stored.
    sound.check_sound(
        plan,
        {"film": {"cast": cast.to_json() if cast else None}, **(options or {})},
        local_models=s.local_mode,
    )
    title = (title or plan.title or "Untitled episode")[:300]
    with rt.sessions.begin() as session:
        reused: dict[int, dict[str, Any]] = {}
        if film_state is not None and reuse:
            reused = film.reuse_from_revision(
                session, title, film_state, (options or {}).get("script_path")
            )
        ep = Episode(
            title=title,
            script=script,
            script_format=plan.format,
            backend=backend,
            width=width,
            height=height,
            fps=fps,
            steps=steps,
            seed=seed,
            options={**(options or {}), **sound.beat_marks(plan)},
            state=EpisodeState.PLANNED,
        )
        session.add(ep)
        session.flush()
        if film_state is not None:
            film.store_references(rt.store, session, ep.id, cast, film_state)
            film.save(ep, film_state)
        for b in plan.beats:
            old = reused.get(b.index)
            session.add(
                Beat(
                    episode_id=ep.id,
                    index=b.index,
                    text=b.text,
                    scene=b.scene,
                    captions=list(b.captions),
                    duration_s=old.get("duration_s", b.duration_s) if old else b.duration_s,
                    backend=backend,
                    state=BeatState.DONE if old else BeatState.PENDING,
                    clip_key=old["clip_key"] if old else None,
                    not_before=film.initial_hold(film_state, b.index),
                )
            )
        session.add(
            Transition(
                entity="episode",
                entity_id=ep.id,
                from_state="",
                to_state=EpisodeState.PLANNED,
                reason=f"created with {len(plan.beats)} beats",
            )
        )
        episode_id = ep.id
        session.flush()
        _check_jobs_fit(ep)
        if wake:
            # Last, inside the transaction: if Redis is down or refuses us, nothing is
            # saved and the caller is told so (a retry then makes no duplicate).
            _wake_or_refuse(rt, WakeReason.CREATED, "nothing was saved")
    return episode_detail(rt, episode_id)


def _check_jobs_fit(ep: Episode) -> None:
    """Every beat's first job must fit the protocol's limits, or nothing is saved."""
    from storyworld.engine.dispatch import build_job

    for beat in ep.beats:
        if beat.state != BeatState.PENDING:
            continue
        try:
            build_job(ep, beat, 1).to_json()
        except ValueError as e:
            first = str(e).splitlines()
            raise InvalidRequest(f"beat {beat.index + 1} cannot be sent: {first[0]}") from None


def _wake_or_refuse(rt: Runtime, reason: str, consequence: str) -> None:
    try:
        rt.queue.wake_engine(reason)
    except redis.RedisError as e:
        raise Unavailable(
            f"{describe_redis_error(e, rt.clients.url_for_display)}; {consequence}"
        ) from None


def _summary(ep: Episode, done: int, total: int, failed: int) -> dict[str, Any]:
    end = ep.finished_at or time.time()
    return {
        "id": ep.id,
        "title": ep.title,
        "state": ep.state,
        "backend": ep.backend,
        "beats_done": done,
        "beats_total": total,
        "beats_failed": failed,
        "created_at": ep.created_at,
        "started_at": ep.started_at,
        "finished_at": ep.finished_at,
        "elapsed_s": round(end - ep.started_at, 3) if ep.started_at else None,
        "error": ep.error,
        "output_key": ep.output_key,
        "size": f"{ep.width}x{ep.height}",
        "fps": ep.fps,
        "steps": ep.steps,
        "seed": ep.seed,
    }


def list_episodes(rt: Runtime, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first, with progress."""
    with rt.sessions() as s:
        eps = s.scalars(select(Episode).order_by(Episode.created_at.desc()).limit(limit)).all()
        counts: dict[str, dict[str, int]] = {}
        if eps:
            rows = s.execute(
                select(Beat.episode_id, Beat.state, func.count())
                .where(Beat.episode_id.in_([e.id for e in eps]))
                .group_by(Beat.episode_id, Beat.state)
            )
            for ep_id, state, n in rows:
                counts.setdefault(ep_id, {})[state] = n
        out = []
        for ep in eps:
            c = counts.get(ep.id, {})
            out.append(
                _summary(ep, c.get(BeatState.DONE, 0), sum(c.values()), c.get(BeatState.FAILED, 0))
            )
        return out


def episode_progress(rt: Runtime, episode_id: str) -> dict[str, Any]:
    """An episode's summary and the index and state of its beats (of those not yet done,
    past 50 beats): what a progress view polls (a 900-beat episode's full detail, with
    every job and transition, is too heavy to poll)."""
    with rt.sessions() as s:
        ep = _get_episode(s, episode_id)
        rows = s.execute(
            select(Beat.index, Beat.state, Beat.duration_s, Beat.error)
            .where(Beat.episode_id == ep.id)
            .order_by(Beat.index)
        ).all()
        done = sum(1 for r in rows if r.state == BeatState.DONE)
        failed = sum(1 for r in rows if r.state == BeatState.FAILED)
        out = _summary(ep, done, len(rows), failed)
        out["beats"] = [
            {"index": r.index, "state": r.state, "duration_s": r.duration_s, "error": r.error}
            for r in rows
            if r.state != BeatState.DONE or len(rows) <= 50
        ]
        return out


def _get_episode(s: Any, episode_id: str) -> Episode:
    ep = s.get(Episode, episode_id)
    if ep is None:
        matches = s.scalars(select(Episode).where(Episode.id.startswith(episode_id))).all()
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"no episode {episode_id!r}")
    return ep


def episode_detail(rt: Runtime, episode_id: str) -> dict[str, Any]:
    """An episode with its beats, every attempt, artifacts and history."""
    with rt.sessions() as s:
        ep = _get_episode(s, episode_id)
        beats = []
        for b in ep.beats:
            jobs = [
                {
                    "job_id": j.id,
                    "attempt": j.attempt,
                    "backend": j.backend,
                    "state": j.state,
                    "worker": j.worker_id,
                    "error": j.error,
                    "error_kind": j.error_kind,
                    "queued_at": j.queued_at,
                    "started_at": j.started_at,
                    "finished_at": j.finished_at,
                    "render_s": j.render_s,
                    "model_info": j.model_info or {},
                }
                for j in b.jobs
            ]
            last = b.jobs[-1] if b.jobs else None
            beats.append(
                {
                    "index": b.index,
                    "id": b.id,
                    "state": b.state,
                    "text": b.text,
                    "scene": b.scene,
                    "captions": list(b.captions or []),
                    "duration_s": b.duration_s,
                    "backend": b.backend,
                    "attempts": b.attempts,
                    "error": b.error,
                    "clip_key": b.clip_key,
                    "worker": last.worker_id if last else None,
                    "render_s": last.render_s if last else None,
                    "jobs": jobs,
                    **film.beat_json(ep.options, b.index),
                }
            )
        artifacts = [
            {
                "kind": a.kind,
                "key": a.key,
                "size": a.size,
                "sha256": a.sha256,
                "content_type": a.content_type,
                "beat_id": a.beat_id,
                "job_id": a.job_id,
            }
            for a in s.scalars(
                select(Artifact).where(Artifact.episode_id == ep.id).order_by(Artifact.id)
            )
        ]
        ids = [ep.id, *[b["id"] for b in beats], *[j["job_id"] for b in beats for j in b["jobs"]]]
        history = [
            {
                "entity": t.entity,
                "id": t.entity_id,
                "from": t.from_state,
                "to": t.to_state,
                "reason": t.reason,
                "at": t.at,
            }
            for t in s.scalars(
                select(Transition).where(Transition.entity_id.in_(ids)).order_by(Transition.id)
            )
        ]
        done = sum(1 for b in beats if b["state"] == BeatState.DONE)
        failed = sum(1 for b in beats if b["state"] == BeatState.FAILED)
        out = _summary(ep, done, len(beats), failed)
        out.update(
            {
                "beats": beats,
                "artifacts": artifacts,
                "history": history,
                "script_format": ep.script_format,
                "options": {k: v for k, v in (ep.options or {}).items() if k != film.FILM},
                **film.episode_json(s, ep),
            }
        )
        return out


def retry_episode(rt: Runtime, episode_id: str, beat: int | None = None) -> dict[str, Any]:
    """Render failed or cancelled beats again (or beat `beat`, whatever its state). The
    retry limit starts afresh."""
    with rt.sessions.begin() as s:
        ep = _get_episode(s, episode_id)
        targets = [
            b
            for b in ep.beats
            if (beat is None and b.state in (BeatState.FAILED, BeatState.CANCELLED))
            or b.index == beat
        ]
        if beat is not None and not targets:
            raise NotFound(f"episode {ep.id} has no beat {beat}")
        if (
            beat is None
            and not targets
            and ep.state not in (EpisodeState.FAILED, EpisodeState.CANCELLED)
        ):
            raise Conflict(f"episode {ep.id} has no failed or cancelled beats to retry")
        for b in targets:
            if b.state in (BeatState.QUEUED, BeatState.RENDERING):
                raise Conflict(f"beat {b.index} is {b.state}; wait for it or cancel first")
            b.retry_offset = b.attempts
            b.not_before = 0.0
            b.error = None
            transition(s, b, BeatState.PENDING, "retry requested by the operator")
        if ep.state != EpisodeState.RENDERING and ep.state != EpisodeState.PLANNED:
            ep.error = None
            ep.finished_at = None
            transition(s, ep, EpisodeState.RENDERING, "retry requested by the operator")
        episode_id = ep.id
    rt.queue.wake_engine(WakeReason.RETRY)
    return episode_detail(rt, episode_id)


def cancel_episode(rt: Runtime, episode_id: str) -> dict[str, Any]:
    """Stop an episode: waiting jobs are withdrawn, workers holding its jobs stop."""
    job_ids: list[str] = []
    with rt.sessions.begin() as s:
        ep = _get_episode(s, episode_id)
        if ep.state in (EpisodeState.COMPLETED, EpisodeState.CANCELLED):
            raise Conflict(f"episode {ep.id} is already {ep.state}")
        for b in ep.beats:
            for j in b.jobs:
                if j.state in (JobState.QUEUED, JobState.RENDERING):
                    job_ids.append(j.id)
                    transition(s, j, JobState.CANCELLED, "episode cancelled by the operator")
            if b.state != BeatState.DONE and b.state != BeatState.CANCELLED:
                transition(s, b, BeatState.CANCELLED, "episode cancelled by the operator")
        ep.finished_at = time.time()
        transition(s, ep, EpisodeState.CANCELLED, "cancelled by the operator")
        episode_id = ep.id
    rt.queue.cancel_jobs(job_ids)
    return episode_detail(rt, episode_id)


def queue_stats(rt: Runtime) -> dict[str, Any]:
    st = rt.queue.stats().as_dict()
    st["queue"] = rt.settings.job_queue
    st["fleet"] = fleet_stats(rt.queue.r, rt.queue.keys).as_dict()
    st["unserved"] = unserved(st["fleet"])
    return st


def unserved(fleet: dict[str, Any]) -> list[dict[str, Any]]:
    """Backends with jobs waiting and no live worker that serves them, each with a line
    for people: `3 jobs wait for svd; no live worker serves svd`."""
    loads = fleet.get("by_backend", {})
    waiting = {name: int(load.get("waiting") or 0) for name, load in loads.items()}
    served = {name for name, load in loads.items() if load.get("workers")}
    return unserved_lines(waiting, served)


def queued_by_backend(rt: Runtime) -> dict[str, int]:
    """Jobs the database records as queued (sent, not yet taken), per backend: what the
    console compares with the backends its live workers serve, at no Redis cost."""
    with rt.sessions() as s:
        rows = s.execute(
            select(JobRow.backend, func.count())
            .where(JobRow.state == JobState.QUEUED)
            .group_by(JobRow.backend)
        ).all()
    return {backend: int(n) for backend, n in rows}


def unserved_lines(waiting: dict[str, int], served: set[str]) -> list[dict[str, Any]]:
    """`waiting` jobs per backend against the backends live workers `served`."""
    out = []
    for name, n in sorted(waiting.items()):
        if n and name not in served:
            out.append(
                {
                    "backend": name,
                    "waiting": n,
                    "message": f"{n} job{'s' if n != 1 else ''} wait{'' if n != 1 else 's'} "
                    f"for {name}; no live worker serves {name}",
                }
            )
    return out


def dead_letters(rt: Runtime, limit: int = 100) -> list[dict[str, Any]]:
    return [
        {
            "job_id": d.job_id,
            "ref": d.ref,
            "reason": d.reason,
            "payload": d.payload,
            "at": d.at,
            "worker": d.worker,
        }
        for d in rt.queue.dead_letters(limit)
    ]


def _unmatched(rt: Runtime, refs: list[str] | None) -> list[str]:
    """The refs (job ids or `entry:` refs) that name no dead letter."""
    if not refs:
        return []
    known: set[str] = set()
    for d in rt.queue.dead_letters(1_000_000):
        known.update((d.ref, d.job_id))
    return [r for r in refs if r not in known]


def requeue_dead(rt: Runtime, job_ids: list[str] | None = None) -> dict[str, Any]:
    """Send dead letters again (named by job id, or by `ref` for an unreadable one). The
    engine accepts their results even if it had failed the beat, and the episode resumes.
    `unmatched` lists the names that matched no dead letter."""
    unmatched = _unmatched(rt, job_ids)
    if job_ids and len(unmatched) == len(job_ids):
        return {"requeued": 0, "refused": [], "unmatched": unmatched}
    count, moved, refused = rt.queue.requeue_dead_letters(job_ids or None)
    if count:
        # Only the rows of letters Redis moved: a letter already dropped stays dead here.
        with rt.sessions.begin() as s:
            for job in s.scalars(
                select(JobRow).where(JobRow.id.in_(moved), JobRow.state == JobState.DEAD)
            ):
                transition(s, job, JobState.QUEUED, "dead letter requeued by the operator")
        rt.queue.wake_engine(WakeReason.REQUEUED)
    return {"requeued": count, "refused": refused, "unmatched": unmatched}


def drop_dead(rt: Runtime, job_ids: list[str] | None = None) -> dict[str, Any]:
    """Discard dead letters (by job id or `ref`); `unmatched` as for `requeue_dead`."""
    unmatched = _unmatched(rt, job_ids)
    if job_ids and len(unmatched) == len(job_ids):
        return {"dropped": 0, "unmatched": unmatched}
    return {"dropped": rt.queue.drop_dead(job_ids or None), "unmatched": unmatched}


def set_paused(rt: Runtime, paused: bool) -> None:
    rt.queue.set_paused(paused)


def recent_uploads(rt: Runtime, limit: int = 50) -> list[dict[str, Any]]:
    with rt.sessions() as s:
        return [
            {
                "key": u.key,
                "size": u.size,
                "seconds": u.seconds,
                "bytes_per_s": u.bytes_per_s,
                "worker": u.worker_id,
                "episode_id": u.episode_id,
                "beat_index": u.beat_index,
                "at": u.at,
            }
            for u in s.scalars(select(Upload).order_by(Upload.at.desc()).limit(limit))
        ]


def artifact_url(rt: Runtime, key: str, expires_s: int | None = None) -> str:
    return rt.store.url_for(key, expires_s or rt.settings.s3_presign_expiry_s)


def approve_episode(rt: Runtime, episode_id: str, beat: int | None = None) -> dict[str, Any]:
    """Approve the keyframes of an episode (or of beat `beat`, 1-based): their clips
    render; the episode goes on once no keyframe waits for approval."""
    with rt.sessions.begin() as s:
        ep = _get_episode(s, episode_id)
        if film.film_of(ep.options) is None:
            raise Conflict(f"episode {ep.id} was created without keyframes to approve")
        index = _beat_index(ep, beat)
        film.approve(s, ep, index)
        episode_id = ep.id
    rt.queue.wake_engine(WakeReason.RETRY)
    return episode_detail(rt, episode_id)


def reroll_beat(
    rt: Runtime,
    episode_id: str,
    beat: int,
    *,
    seed: int | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """Draw beat `beat`'s (1-based) keyframe again, with a new seed (or `seed`) and
    optionally new action text; nothing else of the episode is rendered again."""
    if seed is not None and not 0 <= seed <= limits.MAX_SEED:
        raise InvalidRequest(f"seed must be between 0 and 2^63-1, not {seed}")
    if text is not None and not text.strip():
        raise InvalidRequest("--text must not be empty")
    with rt.sessions.begin() as s:
        ep = _get_episode(s, episode_id)
        index = _beat_index(ep, beat)
        target = next(b for b in ep.beats if b.index == index)
        film.reroll(s, ep, target, seed, text)
        episode_id = ep.id
    rt.queue.wake_engine(WakeReason.RETRY)
    return episode_detail(rt, episode_id)


def _beat_index(ep: Episode, beat: int | None) -> int | None:
    if beat is None:
        return None
    if not 1 <= beat <= len(ep.beats):
        raise InvalidRequest(f"episode {ep.id} has beats 1 to {len(ep.beats)}, not {beat}")
    return beat - 1


# --------------------------------------------------------------------------- for the faces
# The CLI, the API and the console reach Redis and storage only through these.
def check_storage(rt: Runtime) -> None:
    """Raise `Unavailable` if the artifact store cannot be written."""
    try:
        rt.store.check()
    except StorageError as e:
        raise Unavailable(f"storage: {e}", permanent=not e.transient) from None


def check_redis(rt: Runtime) -> None:
    """Raise `Unavailable` (saying what is wrong) if Redis does not answer."""
    try:
        rt.clients.fast.ping()
    except redis.RedisError as e:
        raise Unavailable(describe_redis_error(e, rt.clients.url_for_display)) from None


def check_database(rt: Runtime) -> None:
    """Raise `Unavailable` if the database does not answer."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with rt.db.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        first = (str(getattr(e, "orig", None) or "").splitlines() or [type(e).__name__])[0]
        raise Unavailable(f"database unavailable: {first}") from None


def workers(rt: Runtime) -> list[dict[str, str]]:
    """Heartbeats of known workers (state `gone` for expired ones)."""
    return rt.queue.workers()


def beat_progress(rt: Runtime, episode_id: str) -> dict[int, float]:
    """Render progress (0..1) of the beats of `episode_id` that workers hold now; empty
    while Redis is unreachable (progress is a nicety, never a failure)."""
    out: dict[int, float] = {}
    try:
        rows = rt.queue.workers()
    except redis.RedisError:
        return out
    for w in rows:
        if w.get("episode") == episode_id and w.get("beat") and w.get("progress"):
            try:
                out[int(w["beat"])] = float(w["progress"])
            except ValueError:
                continue
    return out


def artifact_file(rt: Runtime, key: str) -> tuple[str, str] | None:
    """(local path, content type) of an artifact in the local folder; None on S3 (use
    `artifact_url`). Raises `NotFound` if the local file is missing."""
    if not isinstance(rt.store, LocalStore):
        return None
    stored = rt.store.head(key)
    if stored is None:
        raise NotFound(f"{key} is missing from the artifact folder")
    return str(rt.store.local_path(key)), stored.content_type


def artifact_location(rt: Runtime, key: str) -> str:
    """Where a person finds an artifact: its path in the local folder, else a URL."""
    if isinstance(rt.store, LocalStore):
        return str(rt.store.local_path(key))
    return artifact_url(rt, key)


def local_fleet(rt: Runtime, backends: list[str], count: int, **kw: Any) -> Any:
    """Local worker processes for this deployment (not started)."""
    from storyworld.localfleet import LocalFleet

    return LocalFleet(rt.settings, rt.redis_url, rt.store, backends, count, **kw)
