"""Subtitle cues: one per dialogue line, timed to its speech, with the speaker's name.

Written as WebVTT (`<v Speaker>` voice spans, so players can style speakers) and SRT
(`SPEAKER: text`), and read back for checks. Shared by the worker (a beat's cues, timed
within the beat) and the engine (an episode's cues, offset by where each beat starts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Cue", "parse_srt", "parse_vtt", "shift", "to_srt", "to_vtt"]


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    speaker: str
    text: str

    @property
    def caption(self) -> str:
        return f"{self.speaker}: {self.text}" if self.speaker else self.text

    def to_json(self) -> dict[str, object]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "speaker": self.speaker,
            "text": self.text,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Cue:
        return cls(
            float(data["start_s"]),  # type: ignore[arg-type]
            float(data["end_s"]),  # type: ignore[arg-type]
            str(data.get("speaker", "")),
            str(data["text"]),
        )


def shift(cues: Iterable[Cue], offset_s: float) -> list[Cue]:
    return [Cue(c.start_s + offset_s, c.end_s + offset_s, c.speaker, c.text) for c in cues]


def _stamp(t: float, sep: str) -> str:
    ms = max(0, round(t * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _clean(text: str) -> str:
    # Cue text must not hold a blank line or "-->"; angle brackets would read as tags.
    text = " ".join(text.split()).replace("-->", "->")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: Iterable[Cue]) -> str:
    out = ["WEBVTT", ""]
    for i, c in enumerate(cues, start=1):
        voice = f"<v {_clean(c.speaker)}>" if c.speaker else ""
        out += [str(i), f"{_stamp(c.start_s, '.')} --> {_stamp(c.end_s, '.')}"]
        out += [f"{voice}{_clean(c.text)}", ""]
    return "\n".join(out)


def to_srt(cues: Iterable[Cue]) -> str:
    out: list[str] = []
    for i, c in enumerate(cues, start=1):
        text = " ".join(c.caption.split()).replace("-->", "->")
        out += [str(i), f"{_stamp(c.start_s, ',')} --> {_stamp(c.end_s, ',')}", text, ""]
    return "\n".join(out)


_TIMING = re.compile(r"(\d+):(\d\d):(\d\d)[.,](\d{3})\s*-->\s*(\d+):(\d\d):(\d\d)[.,](\d{3})")


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return (int(h) * 3_600_000 + int(m) * 60_000 + int(s) * 1000 + int(ms)) / 1000


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse_vtt(text: str) -> list[Cue]:
    cues = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            m = _TIMING.search(line)
            if not m:
                continue
            body = " ".join(lines[i + 1 :])
            v = re.match(r"<v ([^>]*)>(.*)$", body)
            speaker, words = (v.group(1), v.group(2)) if v else ("", body)
            cues.append(
                Cue(
                    _seconds(*m.groups()[:4]),
                    _seconds(*m.groups()[4:]),
                    _unescape(speaker),
                    _unescape(words),
                )
            )
            break
    return cues


def parse_srt(text: str) -> list[Cue]:
    cues = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            m = _TIMING.search(line)
            if not m:
                continue
            body = " ".join(lines[i + 1 :])
            speaker, sep, words = body.partition(": ")
            if not sep:
                speaker, words = "", body
            cues.append(Cue(_seconds(*m.groups()[:4]), _seconds(*m.groups()[4:]), speaker, words))
            break
    return cues
