"""Speech for the beats: the voice stage of a clip job (see `stage`), eSpeak NG (`espeak`)
and VITS (`vits`) voices."""

from __future__ import annotations

from storyworld.protocol import Job
from storyworld.worker.backends.base import PermanentRenderError
from storyworld.worker.voice.stage import BeatSpeech, VoiceStageError, speak_beat

__all__ = ["BeatSpeech", "voice_stage"]


def voice_stage(job: Job) -> tuple[Job, BeatSpeech | None]:
    """Speak a clip job's dialogue. A beat too short for its lines comes back with a job
    whose spec lasts long enough (the picture is rendered for that)."""
    if getattr(job, "kind", "clip") != "clip" or not job.spec.dialogue:
        return job, None
    if job.spec.options.get("stage") == "keyframe":  # a still: nothing to hear
        return job, None
    try:
        speech = speak_beat(job.spec)
    except VoiceStageError as e:
        raise PermanentRenderError(str(e)) from None
    if speech is not None and speech.grew:
        spec = job.spec.model_copy(update={"duration_s": speech.duration_s})
        job = job.model_copy(update={"spec": spec})
    return job, speech
