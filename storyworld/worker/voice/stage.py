"""The voice stage of a clip job: the beat's dialogue as speech, before the picture.

Every line is spoken in its voice (`SpokenLine.voice`: the cast's, else a default per
character) and placed on the beat's timeline in script order: a short lead-in, the lines
with a pause between them, a tail. A beat too short for its lines grows to fit (to a whole
frame); the result reports it and the engine records it in the beat's history. The
pictures are then rendered for the grown duration, and the clip carries the speech as its
own audio track (and the cues as its own subtitle track), so a beat plays alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from storyworld.audio import SAMPLE_RATE, db_to_gain, limit_true_peak, resample
from storyworld.protocol import RenderSpec
from storyworld.subtitles import Cue
from storyworld.voices import VoiceError, VoiceSpec, parse_voice

__all__ = ["BeatSpeech", "VoiceStageError", "speak_beat", "synthesize"]

LEAD_S = 0.35
GAP_S = 0.3
TAIL_S = 0.45
#: Each line is brought to this RMS level so voices sit evenly before the mix.
LINE_RMS_DB = -20.0
#: Peaks of a line are held this far above its RMS (a gentle limiter), so the episode
#: reaches -16 LUFS without its final limiter having to squash the speech.
LINE_CREST_DB = 11.0


class VoiceStageError(RuntimeError):
    """Speech cannot be made (unknown voice, model missing): a permanent error."""


@dataclass
class BeatSpeech:
    """A beat's speech: mono samples at 48 kHz covering the whole (grown) beat."""

    samples: np.ndarray
    cues: list[Cue]
    duration_s: float
    requested_s: float
    voices: dict[str, str] = field(default_factory=dict)

    @property
    def grew(self) -> bool:
        return self.duration_s > self.requested_s + 1e-6

    def info(self) -> dict[str, Any]:
        """What the result reports (stored with the job as its model info)."""
        return {
            "duration_s": round(self.duration_s, 4),
            "requested_s": round(self.requested_s, 4),
            "cues": [c.to_json() for c in self.cues],
            "voices": dict(self.voices),
        }


def synthesize(text: str, voice: VoiceSpec) -> np.ndarray:
    """One line as mono float32 at 48 kHz."""
    if voice.engine == "vits":
        from storyworld.worker.voice.vits import synthesize_vits

        samples, rate = synthesize_vits(text, voice)
    else:
        from storyworld.worker.voice.espeak import EspeakUnavailable, synthesize_espeak

        try:
            samples, rate = synthesize_espeak(text, voice)
        except EspeakUnavailable as e:
            raise VoiceStageError(str(e)) from None
    return resample(samples, rate, SAMPLE_RATE)


def _level(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
    if rms <= 1e-6:
        return x
    y = (x * (db_to_gain(LINE_RMS_DB) / rms)).astype(np.float32)
    held = limit_true_peak(y[None, :], LINE_RMS_DB + LINE_CREST_DB)[0]
    # The limiter took a little loudness; bring the line back to its level.
    rms2 = float(np.sqrt(np.mean(held.astype(np.float64) ** 2)))
    return (held * (db_to_gain(LINE_RMS_DB) / rms2) if rms2 > 1e-6 else held).astype(np.float32)


def speak_beat(spec: RenderSpec) -> BeatSpeech | None:
    """The beat's speech, or None when it has no dialogue."""
    if not spec.dialogue:
        return None
    lines: list[np.ndarray] = []
    voices: dict[str, str] = {}
    for line in spec.dialogue:
        try:
            voice = parse_voice(line.voice, line.speaker)
        except VoiceError as e:
            raise VoiceStageError(str(e)) from None
        voices.setdefault(line.speaker, voice.key)
        lines.append(_level(synthesize(line.text, voice)))
    spoken = sum(len(x) for x in lines) / SAMPLE_RATE
    needed = LEAD_S + spoken + GAP_S * (len(lines) - 1) + TAIL_S
    duration = spec.duration_s
    if needed > duration:
        duration = math.ceil(needed * spec.fps - 1e-9) / spec.fps
    total = round(duration * SAMPLE_RATE)
    out = np.zeros(total, np.float32)
    # Spare time goes before the first line, up to a second, so a line lands in the shot.
    t = LEAD_S + min(1.0, max(0.0, (duration - needed) * 0.3))
    cues: list[Cue] = []
    for line, x in zip(spec.dialogue, lines, strict=True):
        start = round(t * SAMPLE_RATE)
        out[start : start + len(x)] = x[: max(0, total - start)]
        end = t + len(x) / SAMPLE_RATE
        cues.append(Cue(round(t, 3), round(end, 3), line.speaker, line.text))
        t = end + GAP_S
    return BeatSpeech(
        samples=out, cues=cues, duration_s=duration, requested_s=spec.duration_s, voices=voices
    )
