"""The film pipeline's state for an episode: characters per beat, keyframes first, the
approval gate, re-rolls and the shot cache.

It lives in `episode.options["film"]` (JSON) until the schema has columns for it:

    {"keyframes": "auto|on|off", "keyframe_backend": "animatic|keyframe",
     "candidates": K, "approve": bool, "cast": {...} | None,
     "revision": n, "revision_of": episode id | None, "lineage": root episode id,
     "beats": {"0": {"characters": [...], "prompt": "...", "reference_keys": [...],
                     "stage": "keyframe|approval|clip|reused", "keyframe": key | None,
                     "score": float | None, "rerolls": 0, "seed_offset": 0,
                     "approved": bool, "hash": "...", "reused_from": job id | None,
                     "flagged": bool}}}

Stages of a beat: `keyframe` (its next job draws the keyframe), `approval` (keyframe drawn,
waiting for the operator; never dispatched), `clip` (its next job renders the clip),
`reused` (its clip comes from an earlier revision; no job is sent).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storyworld.capabilities import CAPABILITIES, Need, describe_need
from storyworld.config import ConfigError
from storyworld.engine.cast import Cast
from storyworld.engine.models import (
    Artifact,
    Beat,
    BeatState,
    Episode,
    EpisodeState,
    JobRow,
    note,
    transition,
)
from storyworld.engine.planner import ScriptPlan
from storyworld.protocol import RenderSpec, Result
from storyworld.storage import ArtifactStore

__all__ = [
    "FILM",
    "KEYFRAME_MODES",
    "NEVER",
    "beat_hash",
    "clip_fields",
    "film_of",
    "keyframe_fields",
    "plan_film",
    "reference_key",
]

FILM = "film"
KEYFRAME_MODES = ("off", "auto", "on")
#: `not_before` of a beat waiting for approval: the dispatcher never picks it, and the
#: engine's wait is not shortened by it (a "due" beat would make the loop spin).
NEVER = 1e15


def reference_key(episode_id: str, sha256: str, suffix: str) -> str:
    """A reference image's store key: content-addressed, once per episode."""
    return f"episodes/{episode_id}/references/{sha256}{suffix}"


def film_of(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """The film state of an episode, or None for one created without it."""
    film = (options or {}).get(FILM)
    return film if isinstance(film, dict) else None


def _prompt(scene: str, text: str, descriptions: Sequence[str], look: str) -> str:
    parts = [scene, text, *descriptions, look]
    return ", ".join(p.strip() for p in parts if p and p.strip())


def beat_hash(inputs: dict[str, Any]) -> str:
    """The content hash of a beat's render inputs (the shot cache's key)."""
    raw = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def plan_film(
    plan: ScriptPlan,
    cast: Cast | None,
    *,
    backend: str,
    keyframes: str = "auto",
    candidates: int | None = None,
    approve: bool = False,
    render_inputs: dict[str, Any],
) -> dict[str, Any]:
    """The film state of a new episode (reference keys are filled in once the episode has
    an id). Raises ConfigError for an episode no backend can render."""
    if keyframes not in KEYFRAME_MODES:
        raise ConfigError(f"--keyframes must be off, auto or on, not {keyframes!r}")
    style = cast.style if cast else None
    k = candidates or (style.candidates if style and style.candidates else 1)
    if not 1 <= k <= 8:
        raise ConfigError(f"--candidates must be from 1 to 8, not {k}")
    clip = CAPABILITIES.get(backend)
    if clip is None:
        raise ConfigError(f"unknown backend {backend!r}")
    keyframe_backend = "animatic" if backend == "animatic" else "keyframe"
    continuity = style.continuity if style else "none"
    beats: dict[str, Any] = {}
    previous = None
    for b in plan.beats:
        speakers = [d.speaker for d in getattr(b, "dialogue", [])]
        if cast is not None:
            names = cast.characters_in(b.text, speakers)
            chars = [cast.character(n) for n in names]
            descriptions = [c.description for c in chars if c and c.description]
            refs = cast.references_of(names)
        else:
            names = list(getattr(b, "characters", []) or [])
            descriptions, refs = [], []
        wants = keyframes == "on" or (
            keyframes == "auto" and (bool(refs) or approve or k > 1 or clip.needs_image)
        )
        if clip.needs_image and keyframes == "off":
            raise ConfigError(
                f"backend {backend!r} animates a keyframe; --keyframes off leaves it none"
            )
        why = describe_need(Need(image=wants and clip.i2v), backend)
        if why:
            raise ConfigError(f"beat {b.index + 1}: {why}")
        if wants and describe_need(Need(keyframe=True), keyframe_backend):
            raise ConfigError(f"no backend draws keyframes for {backend!r}")
        prompt = _prompt(b.scene, b.text, descriptions, style.look if style else "")
        inputs = {
            **render_inputs,
            "text": b.text,
            "scene": b.scene,
            "duration_s": b.duration_s,
            "captions": list(b.captions),
            "characters": [
                {"name": n, "description": d}
                for n, d in zip(names, descriptions + [""] * len(names), strict=False)
            ],
            "references": [r.sha256 for r in refs],
            "look": style.look if style else "",
            "negative": style.negative if style else "",
            "keyframes": wants,
            "candidates": k if wants else 1,
            "index": b.index,
            # A line's voice is part of what its beat sounds like: a new voice re-renders.
            "voices": {
                sp: (cast.character(sp).voice if cast and cast.character(sp) else "")
                for sp in dict.fromkeys(speakers)
            },
        }
        beats[str(b.index)] = {
            "characters": names,
            "descriptions": descriptions,
            "prompt": prompt,
            "references": [[r.sha256, r.suffix] for r in refs],
            "reference_keys": [],
            "stage": "keyframe" if wants else "clip",
            "keyframe": None,
            "score": None,
            "rerolls": 0,
            "seed_offset": 0,
            "approved": not approve,
            "flagged": False,
            "hash": beat_hash(inputs),
            "reused_from": None,
            # continuity = "scene": the clip starts from the previous beat's last frame.
            "continuity_from": previous.index
            if continuity == "scene"
            and previous is not None
            and b.scene
            and b.scene == previous.scene
            else None,
            "last_frame": None,
        }
        previous = b
    return {
        "keyframes": keyframes,
        "keyframe_backend": keyframe_backend,
        "candidates": k,
        "approve": approve,
        "continuity": continuity,
        "cast": cast.to_json() if cast else None,
        "revision": 1,
        "revision_of": None,
        "lineage": None,
        "beats": beats,
    }


def keyframe_fields(film: dict[str, Any], info: dict[str, Any], seed: int | None) -> dict:
    """Backend, seed and options of a beat's keyframe job."""
    offset = int(info.get("seed_offset", 0))
    return {
        "backend": film["keyframe_backend"],
        "seed": None if seed is None else seed + 1000 * offset,
        "options": {
            "stage": "keyframe",
            "prompt": info["prompt"],
            "candidates": int(film.get("candidates", 1)),
            "reference_keys": list(info.get("reference_keys", [])),
        },
    }


def clip_fields(
    backend: str, info: dict[str, Any], film: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Options and conditioning of a beat's clip job: from the approved keyframe where
    the backend animates images; text-to-video backends get the keyframe's prompt. With
    `continuity = "scene"` the clip starts from the previous beat's last frame and, where
    the backend has first-and-last frame, ends on this beat's keyframe."""
    capability = CAPABILITIES.get(backend)
    keyframe = info.get("keyframe")
    i2v = capability is not None and capability.i2v
    first = keyframe if keyframe and i2v else None
    extra: dict[str, Any] = {}
    previous = _previous(film, info)
    if previous is not None and previous.get("last_frame") and i2v:
        first = previous["last_frame"]
        extra["continuity_from"] = info["continuity_from"]
        if keyframe and capability is not None and capability.first_last_frame:
            extra["last_frame_key"] = keyframe
    if film is not None and film.get("continuity") == "scene":
        extra["continuity"] = "scene"  # the worker stores this clip's last frame
    return {
        "conditioning_key": first,
        "options": {
            "stage": "clip",
            "prompt": info["prompt"],
            "reference_keys": list(info.get("reference_keys", [])),
            **({"keyframe_key": keyframe} if keyframe else {}),
            **extra,
        },
    }


def _previous(film: dict[str, Any] | None, info: dict[str, Any]) -> dict[str, Any] | None:
    index = info.get("continuity_from")
    if film is None or index is None:
        return None
    return beat_info(film, int(index))


def _waits_for_previous(film: dict[str, Any], info: dict[str, Any]) -> bool:
    previous = _previous(film, info)
    return previous is not None and not previous.get("last_frame")


def initial_hold(film: dict[str, Any] | None, index: int) -> float:
    """`not_before` of a new beat: held (NEVER) when its clip must wait for the previous
    beat's last frame and no keyframe stage comes first."""
    info = beat_info(film, index) if film else None
    if info is None or info.get("stage") != "clip":
        return 0.0
    return NEVER if _waits_for_previous(film, info) else 0.0  # type: ignore[arg-type]


def clip_done(s: Session, beat: Beat, episode: Episode, result: Result) -> None:
    """A clip arrived: keep its last frame and let the next beat of the scene go."""
    if film_of(episode.options) is None:
        return  # rendered without film state: no query, batches stay one query each
    film = _locked_film(s, episode)
    info = beat_info(film, beat.index)
    if info is None:
        return
    info["last_frame"] = next((a.key for a in result.artifacts if a.kind == "last_frame"), None)
    info["stage"] = "done"
    for other in episode.beats:
        nxt = beat_info(film, other.index)
        if (
            nxt is not None
            and nxt.get("continuity_from") == beat.index
            and nxt.get("stage") == "clip"
            and other.state == BeatState.PENDING
            and other.not_before >= NEVER
        ):
            other.not_before = 0.0
            note(s, other, f"beat {beat.index + 1}'s last frame is ready; clip next")
    save(episode, film)


# ---------------------------------------------------------------- the engine's side
def beat_info(film: dict[str, Any], index: int) -> dict[str, Any] | None:
    info = film.get("beats", {}).get(str(index))
    return info if isinstance(info, dict) else None


def stage_fields(film: dict[str, Any] | None, beat: Beat, seed: int | None) -> dict | None:
    """What a beat's next job is: its backend and what to change in its spec; None for an
    episode without film state (rendered as before)."""
    if not isinstance(film, dict):
        return None
    info = beat_info(film, beat.index)
    if info is None:
        return None
    base = info.get("seed")
    if base is None and seed is not None:
        base = seed + beat.index
    cast = film.get("cast") or {}
    negative = (cast.get("style") or {}).get("negative", "")
    text = info.get("text") or beat.text
    characters = list(info.get("characters", []))
    notes = {n: d for n, d in zip(characters, info.get("descriptions", []), strict=False) if d}
    if info.get("stage") == "keyframe":
        fields = keyframe_fields(film, info, base)
        return {
            "kind": "keyframe",
            "backend": fields["backend"],
            "spec": {
                "seed": fields["seed"],
                "text": text,
                "negative": negative,
                "characters": characters,
                "character_notes": notes,
            },
            "options": fields["options"],
        }
    fields = clip_fields(beat.backend, info, film)
    return {
        "kind": "clip",
        "backend": beat.backend,
        "spec": {
            "seed": base,
            "text": text,
            "negative": negative,
            "characters": characters,
            "character_notes": notes,
            "conditioning_key": fields["conditioning_key"],
        },
        "options": fields["options"],
    }


def staged_spec(spec: RenderSpec, staged: dict[str, Any]) -> RenderSpec:
    """`spec` with a film stage's fields (validated again)."""
    update = dict(staged["spec"])
    negative = update.pop("negative", "")
    data = json.loads(spec.model_dump_json())
    data.update({k: v for k, v in update.items() if k != "seed" or v is not None})
    if update.get("conditioning_key") is None and "conditioning_key" in update:
        data["conditioning_key"] = spec.conditioning_key
    if negative and not data.get("negative_prompt"):
        data["negative_prompt"] = negative
    data["options"] = {**data.get("options", {}), **staged["options"]}
    return RenderSpec.model_validate(data)


def is_keyframe_job(payload: str) -> bool:
    """True for a job that drew a beat's keyframe (its result moves the beat on to
    approval or to its clip, instead of finishing it)."""
    try:
        data = json.loads(payload)
        return data.get("kind") == "keyframe" or data["spec"]["options"].get("stage") == "keyframe"
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def _locked_film(s: Session, episode: Episode) -> dict[str, Any]:
    """The episode's film state, read again under a row lock (SELECT ... FOR UPDATE on
    PostgreSQL): the engine applying a keyframe and an operator approving another beat
    read-modify-write the same JSON, and neither may lose the other's change. SQLite
    ignores FOR UPDATE and its driver opens a transaction only at the first write, so a
    no-op UPDATE first takes the database's write lock (others wait, busy_timeout)."""
    if s.get_bind().dialect.name == "sqlite":
        s.execute(
            update(Episode).where(Episode.id == episode.id).values(updated_at=Episode.updated_at)
        )
    s.refresh(episode, attribute_names=["options"], with_for_update=True)
    return copy.deepcopy(film_of(episode.options) or {})


def save(episode: Episode, film: dict[str, Any]) -> None:
    """Store changed film state (a new dict, so the JSON column sees the change)."""
    episode.options = {**(episode.options or {}), FILM: copy.deepcopy(film)}


def keyframe_done(
    s: Session, job: JobRow, beat: Beat, episode: Episode, result: Result, settings: Any
) -> None:
    """A keyframe arrived: re-roll it if it scores below CONSISTENCY_MIN (up to
    MAX_REROLLS), else stop for approval or go on to the clip."""
    film = _locked_film(s, episode)
    info = beat_info(film, beat.index)
    if info is None or beat.state == BeatState.DONE or beat.attempts != job.attempt:
        return
    key = next((a.key for a in result.artifacts if a.kind == "keyframe"), None)
    score = result.model_info.get("score")
    info.update(keyframe=key, score=score, keyframe_job=job.id)
    beat.error = None
    beat.retry_offset = beat.attempts  # the clip's retries start afresh
    minimum = float(settings.consistency_min or 0.0)
    low = isinstance(score, (int, float)) and minimum > 0 and score < minimum
    if low and info.get("rerolls", 0) < settings.max_rerolls:
        info["rerolls"] = info.get("rerolls", 0) + 1
        info["seed_offset"] = info.get("seed_offset", 0) + 1
        beat.not_before = 0.0
        transition(
            s,
            beat,
            BeatState.PENDING,
            f"keyframe scored {score:.3f}, below CONSISTENCY_MIN {minimum:g}; "
            f"re-roll {info['rerolls']} of {settings.max_rerolls}",
        )
    else:
        info["flagged"] = bool(low)
        scored = f" (score {score:.3f})" if isinstance(score, (int, float)) else ""
        if info.get("approved"):
            info["stage"] = "clip"
            wait = _waits_for_previous(film, info)
            beat.not_before = NEVER if wait else 0.0
            after = f"clip after beat {info['continuity_from'] + 1}'s" if wait else "clip next"
            transition(s, beat, BeatState.PENDING, f"keyframe drawn{scored}; {after}")
        else:
            info["stage"] = "approval"
            beat.not_before = NEVER
            transition(s, beat, BeatState.PENDING, f"keyframe drawn{scored}; awaiting approval")
    save(episode, film)
    await_approval_if_ready(s, episode, film)


def await_approval_if_ready(s: Session, episode: Episode, film: dict[str, Any]) -> None:
    """Once no keyframe is left to draw and one waits for approval, the episode stops in
    `awaiting_approval`."""
    stages = [info.get("stage") for info in film.get("beats", {}).values()]
    if (
        episode.state == EpisodeState.RENDERING
        and "keyframe" not in stages
        and "approval" in stages
    ):
        transition(s, episode, EpisodeState.AWAITING_APPROVAL, "every keyframe is drawn")


def approve(s: Session, episode: Episode, index: int | None) -> list[int]:
    """Approve the keyframe of beat `index` (0-based), or of every beat. Returns the
    beats approved. The episode renders on once none waits for approval."""
    film = _locked_film(s, episode)
    approved: list[int] = []
    for beat in episode.beats:
        info = beat_info(film, beat.index)
        if info is None or (index is not None and beat.index != index):
            continue
        if not info.get("approved"):
            approved.append(beat.index)
        info["approved"] = True
        if info.get("stage") == "approval":
            info["stage"] = "clip"
            beat.not_before = NEVER if _waits_for_previous(film, info) else 0.0
            note(s, beat, "keyframe approved")
    save(episode, film)
    stages = [info.get("stage") for info in film.get("beats", {}).values()]
    if episode.state == EpisodeState.AWAITING_APPROVAL and "approval" not in stages:
        transition(s, episode, EpisodeState.RENDERING, "keyframes approved")
    return approved


def reroll(
    s: Session, episode: Episode, beat: Beat, seed: int | None, text: str | None
) -> dict[str, Any]:
    """Draw beat `beat`'s keyframe again (a new seed, or `seed`; `text` replaces the
    beat's action text for the prompt)."""
    film = _locked_film(s, episode)
    info = beat_info(film, beat.index)
    if info is None:
        raise ConfigError("this episode was created without keyframes; use episode retry")
    if beat.state in (BeatState.QUEUED, BeatState.RENDERING):
        raise ConfigError(f"beat {beat.index + 1} is rendering; re-roll it once it is done")
    if episode.state in (EpisodeState.COMPOSING, EpisodeState.CANCELLED):
        raise ConfigError(f"episode {episode.id} is {episode.state}; re-roll it afterwards")
    if seed is not None:
        info["seed"] = seed
    else:
        info["seed_offset"] = info.get("seed_offset", 0) + 1
    if text is not None:
        info["text"] = text.strip()
        cast = film.get("cast") or {}
        look = (cast.get("style") or {}).get("look", "")
        info["prompt"] = _prompt(beat.scene, text, info.get("descriptions", []), look)
    info.update(stage="keyframe", keyframe=None, score=None, rerolls=0)
    info["approved"] = not film.get("approve")
    beat.not_before = 0.0
    beat.retry_offset = beat.attempts
    if beat.state != BeatState.PENDING:
        beat.clip_key = None
        transition(s, beat, BeatState.PENDING, "keyframe re-rolled by the operator")
    else:
        note(s, beat, "keyframe re-rolled by the operator")
    if episode.state in (
        EpisodeState.AWAITING_APPROVAL,
        EpisodeState.COMPLETED,
        EpisodeState.FAILED,
    ):
        transition(s, episode, EpisodeState.RENDERING, f"beat {beat.index + 1} re-rolled")
    info["rerolled_at"] = time.time()
    save(episode, film)
    return info


# ---------------------------------------------------------------- creating an episode
_MODEL_SETTINGS = {
    "animatediff": "animatediff_base_model",
    "svd": "svd_model",
    "veo": "veo_model",
    "wan": "wan_model",
    "ltx": "ltx_model",
}


def render_inputs(
    settings: Any,
    backend: str,
    size: tuple[int, int],
    fps: int,
    steps: int | None,
    seed: int | None,
) -> dict[str, Any]:
    """The episode-wide part of every beat's render inputs (for the shot cache)."""
    model_setting = _MODEL_SETTINGS.get(backend)
    return {
        "backend": backend,
        "model": getattr(settings, model_setting) if model_setting else backend,
        "keyframe_model": settings.keyframe_model if backend != "animatic" else "animatic",
        "ip_adapter": settings.ip_adapter_model if backend != "animatic" else "",
        "size": list(size),
        "fps": fps,
        "steps": steps,
        "seed": seed,
    }


def store_references(
    store: ArtifactStore,
    session: Session,
    episode_id: str,
    cast: Cast | None,
    film: dict[str, Any],
) -> None:
    """Upload the cast's reference images once (content-addressed keys), record them as
    artifacts of kind `reference`, and give every beat the keys of its references."""
    if cast is None:
        return
    done: set[str] = set()
    for character in cast.characters.values():
        for ref in character.references:
            key = reference_key(episode_id, ref.sha256, ref.suffix)
            if key in done:
                continue
            done.add(key)
            stored = store.put_file(
                key,
                ref.path,
                content_type=ref.content_type,
                metadata={"episode": episode_id, "character": character.name[:64]},
            )
            session.add(
                Artifact(
                    episode_id=episode_id,
                    kind="reference",
                    key=key,
                    size=stored.size,
                    sha256=stored.sha256,
                    content_type=ref.content_type,
                )
            )
    for info in film.get("beats", {}).values():
        info["reference_keys"] = [
            reference_key(episode_id, sha, suffix) for sha, suffix in info.get("references", [])
        ]


#: How many recent episodes are looked through for an earlier revision or the revisions
#: of a lineage (the film state is JSON: matched here, not in SQL).
RECENT_EPISODES = 500


def reuse_from_revision(
    session: Session, title: str, film: dict[str, Any], script_path: str | None = None
) -> dict[int, dict[str, Any]]:
    """Find the last rendered revision of this episode (the same script file, or the same
    title); every new beat whose render inputs hash as one of its finished beats reuses
    that beat's clip (no job is sent). Marks the film state as the next revision.
    Returns index -> reuse."""
    previous = session.scalars(
        select(Episode)
        .where(Episode.state == EpisodeState.COMPLETED)
        .order_by(Episode.created_at.desc())
        .limit(RECENT_EPISODES)
    ).all()
    old = next(
        (
            e
            for e in previous
            if film_of(e.options) is not None
            and (
                e.title == title
                or (script_path is not None and (e.options or {}).get("script_path") == script_path)
            )
        ),
        None,
    )
    if old is None:
        return {}
    old_film = film_of(old.options) or {}
    film["revision"] = int(old_film.get("revision", 1)) + 1
    film["revision_of"] = old.id
    film["lineage"] = old_film.get("lineage") or old.id
    by_hash: dict[str, tuple[Beat, dict[str, Any]]] = {}
    for beat in old.beats:
        info = beat_info(old_film, beat.index)
        if info and beat.state == BeatState.DONE and beat.clip_key:
            by_hash[info.get("hash", "")] = (beat, info)
    reused: dict[int, dict[str, Any]] = {}
    for index, info in film.get("beats", {}).items():
        found = by_hash.get(info.get("hash", ""))
        if found is None:
            continue
        beat, old_info = found
        source = old_info.get("reused_from") or _clip_job(beat)
        info.update(
            stage="reused",
            reused_from=source,
            keyframe=old_info.get("keyframe"),
            score=old_info.get("score"),
            last_frame=old_info.get("last_frame"),
            approved=True,
        )
        # The clip's length, which may have grown to fit its dialogue.
        reused[int(index)] = {
            "clip_key": beat.clip_key,
            "job_id": source,
            "duration_s": beat.duration_s,
        }
    return reused


def _clip_job(beat: Beat) -> str | None:
    for job in reversed(beat.jobs):
        if job.state == "succeeded" and not is_keyframe_job(job.payload):
            return job.id
    return None


# ---------------------------------------------------------------- what is shown
def beat_json(options: dict[str, Any] | None, index: int) -> dict[str, Any]:
    """The film fields of a beat's JSON (`episode show --json`, the API)."""
    film = film_of(options)
    info = beat_info(film, index) if film else None
    if info is None:
        return {"characters": [], "keyframe": None, "score": None, "reused_from": None}
    return {
        "characters": list(info.get("characters", [])),
        "keyframe": info.get("keyframe"),
        "score": info.get("score"),
        "reused_from": info.get("reused_from"),
        "stage": info.get("stage"),
        "approved": bool(info.get("approved")),
        "flagged": bool(info.get("flagged")),
        "rerolls": int(info.get("rerolls", 0)),
        "reference_keys": list(info.get("reference_keys", [])),
    }


def episode_json(session: Session, episode: Episode) -> dict[str, Any]:
    """The film part of an episode's JSON: settings, cast and the list of revisions."""
    film = film_of(episode.options)
    if film is None:
        return {"film": None, "revisions": []}
    lineage = film.get("lineage") or episode.id
    revisions = []
    recent = session.scalars(
        select(Episode).order_by(Episode.created_at.desc()).limit(RECENT_EPISODES)
    ).all()
    for other in reversed(recent):
        other_film = film_of(other.options)
        if other_film is None:
            continue
        if (other_film.get("lineage") or other.id) != lineage:
            continue
        revisions.append(
            {
                "id": other.id,
                "revision": other_film.get("revision", 1),
                "state": other.state,
                "reused": sum(
                    1 for i in other_film.get("beats", {}).values() if i.get("reused_from")
                ),
                "created_at": other.created_at,
            }
        )
    cast = film.get("cast") or {}
    return {
        "film": {
            "keyframes": film.get("keyframes"),
            "keyframe_backend": film.get("keyframe_backend"),
            "candidates": film.get("candidates"),
            "approve": film.get("approve"),
            "continuity": film.get("continuity"),
            "revision": film.get("revision", 1),
            "revision_of": film.get("revision_of"),
            "cast": cast.get("path"),
            "characters": [c.get("name") for c in cast.get("characters", [])],
            "warnings": list(cast.get("warnings", [])),
        },
        "revisions": revisions,
    }
