"""The engine's side of the sound: what a clip job says about its dialogue, what a result
says about its speech, and what composing needs (music beds, the beats' cues).

- `dialogue_fields`: a beat's dialogue lines (from its stored captions, `NAME (V.O.):
  text`), each with its voice (the cast's `voice`, else empty: a default per character),
  the characters in the beat and their cast descriptions. They go into the clip job's spec,
  so a line and its voice are part of the beat's render inputs.
- `check_sound`: every voice and music file is checked before anything is queued.
- `record_speech`: a beat that grew to fit its lines gets its new duration and a note.
- `episode_beds` / `beat_cues`: the music per beat and the cues per clip for the mix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storyworld.engine.errors import InvalidRequest
from storyworld.engine.models import Artifact, Beat, Episode, JobRow, note
from storyworld.engine.planner import ScriptPlan, characters_named, parse_caption
from storyworld.protocol import Result, SpokenLine
from storyworld.subtitles import Cue
from storyworld.voices import VoiceError, parse_voice

__all__ = [
    "SOUND",
    "beat_cues",
    "beat_marks",
    "check_sound",
    "dialogue_fields",
    "episode_beds",
    "record_speech",
    "sound_options",
    "speakers_of",
]

#: episode.options key: {"music": path, "ambience": path, "scenes": {heading: path},
#: "burn_subtitles": bool}. Paths are absolute (resolved when the episode is created).
SOUND = "sound"


#: episode.options key: indices of the beats that are title cards (Fountain centered text).
TITLE_CARDS = "title_cards"


def beat_marks(plan: ScriptPlan) -> dict[str, Any]:
    """What the beats table has no column for, kept in the episode's options."""
    cards = [b.index for b in plan.beats if getattr(b, "centered", False)]
    return {TITLE_CARDS: cards} if cards else {}


def _cast(options: dict[str, Any]) -> dict[str, Any]:
    film = options.get("film")
    cast = film.get("cast") if isinstance(film, dict) else None
    return cast if isinstance(cast, dict) else {}


def _characters(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        str(c.get("name", "")).upper(): c
        for c in _cast(options).get("characters", []) or []
        if isinstance(c, dict)
    }


def dialogue_fields(options: dict[str, Any], beat: Beat, speakers: list[str]) -> dict[str, Any]:
    """`dialogue`, `characters` and `character_notes` of a beat's clip spec. `speakers`
    are every speaking character of the episode (a name in the action text puts its
    character in the beat)."""
    cast = _characters(options)
    lines = [line for c in beat.captions or [] if (line := parse_caption(c)) is not None]
    dialogue = [
        SpokenLine(
            speaker=line.speaker[:100],
            text=line.text,
            extension=line.extension[:40],
            voice=str((cast.get(line.speaker.upper()) or {}).get("voice", ""))[:300],
        )
        for line in lines
    ]
    names = list(dict.fromkeys([*(d.speaker for d in dialogue)]))
    pool = list(dict.fromkeys([*speakers, *(c.get("name", "") for c in cast.values())]))
    for name in characters_named(beat.text, [n for n in pool if n]):
        if name.upper() not in {n.upper() for n in names}:
            names.append(name.upper())
    notes = {
        n: str(cast[n.upper()].get("description", ""))[:500]
        for n in names
        if n.upper() in cast and cast[n.upper()].get("description")
    }
    return {"dialogue": dialogue, "characters": names[:50], "character_notes": notes}


_SPEAKERS: dict[tuple[str, int], list[str]] = {}


def speakers_of(episode: Episode) -> list[str]:
    """Every speaking character of an episode, in order of first line (kept per episode:
    dispatching a feature's 900 beats reads its captions once, not 900 times)."""
    key = (episode.id, len(episode.beats))
    if key not in _SPEAKERS:
        if len(_SPEAKERS) > 64:
            _SPEAKERS.clear()
        _SPEAKERS[key] = episode_speakers(episode)
    return _SPEAKERS[key]


def episode_speakers(episode: Episode) -> list[str]:
    """Every speaking character of an episode, in order of first line."""
    seen: dict[str, None] = {}
    for b in episode.beats:
        for c in b.captions or []:
            line = parse_caption(c)
            if line is not None:
                seen.setdefault(line.speaker, None)
    return list(seen)


def sound_options(
    *,
    cast_path: str | None,
    cast_json: dict[str, Any] | None,
    music: str | None = None,
    ambience: str | None = None,
    burn_subtitles: bool = False,
) -> dict[str, Any]:
    """The episode's sound options, paths resolved (cast paths relative to the cast
    file, command-line paths to the current directory)."""
    base = Path(cast_path).parent if cast_path else Path.cwd()
    style = (cast_json or {}).get("style") or {}
    scenes = (cast_json or {}).get("scenes") or {}

    def resolve(p: str, root: Path) -> str:
        path = Path(p).expanduser()
        return str(path if path.is_absolute() else (root / path).resolve())

    out: dict[str, Any] = {}
    if music or style.get("music"):
        out["music"] = resolve(music, Path.cwd()) if music else resolve(style["music"], base)
    if ambience:
        out["ambience"] = resolve(ambience, Path.cwd())
    scene_music = {h: resolve(v["music"], base) for h, v in scenes.items() if v.get("music")}
    if scene_music:
        out["scenes"] = scene_music
    if burn_subtitles:
        out["burn_subtitles"] = True
    return out


def check_sound(plan: ScriptPlan, options: dict[str, Any], *, local_models: bool = True) -> None:
    """Refuse, before anything is queued, a voice that cannot be resolved (an unknown
    word, a missing VITS model) and a music or ambience file that cannot be decoded."""
    from storyworld.audio import AudioError, check_decodable

    for name, c in _characters(options).items():
        try:
            parse_voice(str(c.get("voice", "")), name, check_files=local_models)
        except VoiceError as e:
            raise InvalidRequest(f"cast: {e}") from None
    sound = options.get(SOUND) or {}
    files = [("music bed", sound.get("music")), ("ambience", sound.get("ambience"))]
    files += [(f"music of scene {h!r}", p) for h, p in (sound.get("scenes") or {}).items()]
    for what, path in files:
        if path:
            try:
                check_decodable(path, what)
            except AudioError as e:
                raise InvalidRequest(str(e)) from None
    del plan  # every speaker without a cast voice gets a default one: nothing to check


def record_speech(s: Session, beat: Beat, result: Result) -> None:
    """A beat whose lines needed more time than it had takes the duration its clip has,
    and says so in its history."""
    speech = (result.model_info or {}).get("speech")
    if not isinstance(speech, dict):
        return
    grown = float(speech.get("duration_s") or 0)
    if grown > beat.duration_s + 1e-6:
        note(
            s,
            beat,
            f"grew from {beat.duration_s:g} s to {grown:.2f} s to fit its dialogue "
            f"({len(speech.get('cues') or [])} line(s))",
        )
        beat.duration_s = grown


def beat_cues(s: Session, beat: Beat) -> list[Cue]:
    """The cues of the job that made the beat's clip (its speech timing), in beat time."""
    if beat.clip_key is None:
        return []
    job_id = s.scalar(select(Artifact.job_id).where(Artifact.key == beat.clip_key))
    job = s.get(JobRow, job_id) if job_id else None
    speech = ((job.model_info or {}) if job else {}).get("speech") or {}
    return [Cue.from_json(c) for c in speech.get("cues") or []]


def episode_beds(episode: Episode) -> tuple[dict[int, Path], Path | None, bool]:
    """(music per beat index, ambience, burn subtitles) of an episode."""
    sound = (episode.options or {}).get(SOUND) or {}
    music = sound.get("music")
    scenes = {h.strip().upper(): p for h, p in (sound.get("scenes") or {}).items()}
    per_beat: dict[int, Path] = {}
    for b in episode.beats:
        chosen = scenes.get((b.scene or "").strip().upper()) or music
        if chosen:
            per_beat[b.index] = Path(chosen)
    ambience = sound.get("ambience")
    return per_beat, (Path(ambience) if ambience else None), bool(sound.get("burn_subtitles"))
