"""Turn a backend's output into the stored files of one attempt: clip.mp4 (exactly the
beat's frame count at the job's size and fps, with the beat's speech as its own AAC track
and its cues as a mov_text track), keyframe.png, settings.json and, for a beat with
dialogue, speech.m4a."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from storyworld.media import conform_frames, encode_frames, probe_fps, read_frames
from storyworld.protocol import Job
from storyworld.worker.backends.base import RenderOutput
from storyworld.worker.voice.stage import BeatSpeech

__all__ = ["EncodedClip", "encode_output"]


@dataclass
class EncodedClip:
    clip: Path
    keyframe: Path
    settings: Path
    frames: int
    #: The beat's speech alone (AAC), when it has dialogue.
    audio: Path | None = None
    #: The clip's last frame, for a job that asks for it (`options.continuity`).
    last_frame: Path | None = None


def encode_output(
    job: Job, out: RenderOutput, workdir: Path, speech: BeatSpeech | None = None
) -> EncodedClip:
    from storyworld.soundtrack import add_clip_sound, extract_sound

    spec = job.spec
    if job.kind == "keyframe":
        return _keyframe_only(job, out, workdir)
    n = spec.frame_count
    clip = workdir / "clip.mp4"
    silent = workdir / "picture.mp4"
    if out.frames is not None:
        frames = conform_frames(iter(out.frames), out.fps, spec.fps, n)
    elif out.video_path is not None:
        frames = conform_frames(read_frames(out.video_path), probe_fps(out.video_path), spec.fps, n)
    else:
        raise ValueError("the backend returned neither frames nor a video")
    written = encode_frames(frames, silent, fps=spec.fps, width=spec.width, height=spec.height)
    cues = list(speech.cues) if speech is not None else []
    add_clip_sound(silent, clip, speech.samples if speech else None, cues, written, spec.fps)
    silent.unlink()
    audio = None
    if speech is not None:
        audio = workdir / "speech.m4a"
        extract_sound(clip, audio)  # the clip's own track: the same sound, encoded once
    keyframe = workdir / "keyframe.png"
    key_img = out.keyframe
    if key_img is None:
        key_img = _middle_frame(clip, written)
    key_img.convert("RGB").save(keyframe, format="PNG")
    settings = workdir / "settings.json"
    settings.write_text(
        json.dumps(
            {
                "job_id": job.job_id,
                "backend": job.backend,
                "attempt": job.attempt,
                "spec": json.loads(spec.model_dump_json()),
                "model": out.model_info,
                "speech": speech.info() if speech is not None else None,
            },
            indent=2,
            sort_keys=True,
        )
    )
    last_frame = None
    if spec.options.get("continuity") == "scene":
        last_frame = workdir / "last-frame.png"
        _last_frame(clip).save(last_frame, format="PNG")
    return EncodedClip(
        clip=clip,
        keyframe=keyframe,
        settings=settings,
        frames=written,
        audio=audio,
        last_frame=last_frame,
    )


def _middle_frame(clip: Path, count: int):  # type: ignore[no-untyped-def]
    from PIL import Image

    for i, arr in enumerate(read_frames(clip)):
        if i >= count // 2:
            return Image.fromarray(arr)
    raise ValueError("empty clip")


def _keyframe_only(job: Job, out: RenderOutput, workdir: Path) -> EncodedClip:
    """A keyframe job's files: keyframe.png and settings.json (its `clip` is never
    uploaded)."""
    image = out.keyframe or (out.frames[0] if out.frames else None)
    if image is None:
        raise ValueError("the backend returned no keyframe")
    keyframe = workdir / "keyframe.png"
    image.convert("RGB").save(keyframe, format="PNG")
    settings = workdir / "settings.json"
    settings.write_text(
        json.dumps(
            {
                "job_id": job.job_id,
                "kind": job.kind,
                "backend": job.backend,
                "attempt": job.attempt,
                "spec": json.loads(job.spec.model_dump_json()),
                "model": out.model_info,
            },
            indent=2,
            sort_keys=True,
        )
    )
    return EncodedClip(clip=workdir / "clip.mp4", keyframe=keyframe, settings=settings, frames=1)


def _last_frame(clip: Path):  # type: ignore[no-untyped-def]
    from PIL import Image

    last = None
    for arr in read_frames(clip):
        last = arr
    if last is None:
        raise ValueError("empty clip")
    return Image.fromarray(last).convert("RGB")
