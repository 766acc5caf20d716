"""Scripts to beats.

Two formats:
- plain text: an optional `# Title` line, then one beat per paragraph (blank-line
  separated). A paragraph may start with a duration such as `[6s]` or `[2.5s]`.
- Fountain (`.fountain`, or text that looks like a screenplay): scene headings
  (`INT.`/`EXT.`/`.FORCED`) start a scene, action paragraphs become beats, dialogue
  (a CHARACTER cue followed by lines) is attached to the preceding beat as captions.

Errors name the line so a writer can fix the script before anything is queued.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from storyworld.protocol import limits

__all__ = ["PlannedBeat", "ScriptError", "ScriptPlan", "plan_file", "plan_script"]


class ScriptError(ValueError):
    """The script cannot be planned; the message names the line."""

    def __init__(self, message: str, line: int | None = None, source: str = "") -> None:
        where = (
            f"{source or 'script'}, line {line}: " if line else (f"{source}: " if source else "")
        )
        super().__init__(f"{where}{message}")
        self.line = line


@dataclass
class PlannedBeat:
    index: int
    text: str
    duration_s: float
    scene: str = ""
    captions: list[str] = field(default_factory=list)
    line: int = 0


@dataclass
class ScriptPlan:
    title: str
    format: str
    beats: list[PlannedBeat]

    @property
    def total_seconds(self) -> float:
        return sum(b.duration_s for b in self.beats)


_DURATION = re.compile(r"^\s*\[\s*(\d+(?:\.\d+)?)\s*s(?:ec(?:onds?)?)?\s*\]\s*", re.IGNORECASE)
_BAD_DURATION = re.compile(r"^\s*\[[^\]]*\]")
_SCENE = re.compile(r"^(?:(?:INT|EXT|EST|INT\./EXT|INT/EXT|I/E)[.\s])", re.IGNORECASE)
_TRANSITION = re.compile(r"^[A-Z\s]+TO:$")
_CHARACTER = re.compile(r"^(?:@\S.*|[A-Z][A-Z0-9 .'\-]*[A-Z0-9.)](?:\s*\(.*\))?\s*\^?)$")
_BONEYARD = re.compile(r"/\*.*?\*/", re.DOTALL)
_NOTE = re.compile(r"\[\[.*?\]\]", re.DOTALL)


def _paragraphs(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) for each blank-line separated paragraph."""
    out: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = 0
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not current:
                start = n
            current.append(line.rstrip())
        elif current:
            out.append((start, current))
            current = []
    if current:
        out.append((start, current))
    return out


def _check_beat(text: str, duration: float, line: int, max_s: float, source: str) -> None:
    if duration <= 0:
        raise ScriptError("a beat's duration must be more than 0 seconds", line, source)
    if duration > max_s:
        raise ScriptError(
            f"beat lasts {duration:g}s, longer than the maximum of {max_s:g}s "
            "(split it, or raise MAX_BEAT_SECONDS)",
            line,
            source,
        )
    if len(text) > limits.MAX_TEXT_CHARS:
        raise ScriptError(
            f"beat text is longer than {limits.MAX_TEXT_CHARS} characters", line, source
        )


def _plan_plain(text: str, default_s: float, max_s: float, source: str) -> ScriptPlan:
    title = ""
    beats: list[PlannedBeat] = []
    for start, lines in _paragraphs(text):
        if not beats and not title and lines[0].lstrip().startswith("# "):
            title = lines[0].lstrip()[2:].strip()
            lines = lines[1:]
            start += 1
            if not lines:
                continue
        para = " ".join(line.strip() for line in lines)
        duration = default_s
        m = _DURATION.match(para)
        if m:
            duration = float(m.group(1))
            para = para[m.end() :].strip()
        elif _BAD_DURATION.match(para):
            raise ScriptError(
                f"cannot read the duration {_BAD_DURATION.match(para).group(0)!r}; "  # type: ignore[union-attr]
                "write it like [6s]",
                start,
                source,
            )
        if not para:
            raise ScriptError("beat has a duration but no text", start, source)
        _check_beat(para, duration, start, max_s, source)
        beats.append(PlannedBeat(index=len(beats), text=para, duration_s=duration, line=start))
    return ScriptPlan(title=title, format="plain", beats=beats)


def _plan_fountain(text: str, default_s: float, max_s: float, source: str) -> ScriptPlan:
    text = _BONEYARD.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    text = _NOTE.sub("", text)
    title = ""
    lines = text.splitlines()
    # Title page: key: value lines at the very top, ended by a blank line.
    if lines and re.match(r"^\s*title\s*:", lines[0], re.IGNORECASE):
        title = lines[0].split(":", 1)[1].strip()
        for i, line in enumerate(lines):
            if not line.strip():
                lines = [""] * (i + 1) + lines[i + 1 :]
                break
    text = "\n".join(lines)
    scene = ""
    beats: list[PlannedBeat] = []
    for start, para in _paragraphs(text):
        first = para[0].strip()
        if first.startswith(("=", "#")) or first.startswith("~"):
            continue  # synopsis, section, lyric
        if _SCENE.match(first) or (first.startswith(".") and not first.startswith("..")):
            scene = first.lstrip(".").strip()
            para = para[1:]
            start += 1
            if not para:
                continue
            first = para[0].strip()
        if first.startswith(">") or _TRANSITION.match(first):
            continue
        if len(para) > 1 and _CHARACTER.match(first) and not first.startswith("!"):
            speaker = first.lstrip("@").split("(")[0].strip().rstrip("^").strip()
            spoken = " ".join(line.strip() for line in para[1:] if not line.strip().startswith("("))
            caption = f"{speaker}: {spoken}"
            if not beats:
                beats.append(
                    PlannedBeat(
                        index=0,
                        text=scene or "Dialogue",
                        duration_s=default_s,
                        scene=scene,
                        line=start,
                    )
                )
            beats[-1].captions.append(caption)
            continue
        action = " ".join(line.strip().lstrip("!") for line in para)
        duration = default_s
        m = _DURATION.match(action)
        if m:
            duration = float(m.group(1))
            action = action[m.end() :].strip()
        _check_beat(action, duration, start, max_s, source)
        beats.append(
            PlannedBeat(index=len(beats), text=action, duration_s=duration, scene=scene, line=start)
        )
    return ScriptPlan(title=title, format="fountain", beats=beats)


def _looks_like_fountain(text: str) -> bool:
    return any(_SCENE.match(line.strip()) for line in text.splitlines()[:200])


def plan_script(
    text: str,
    *,
    fmt: str | None = None,
    default_beat_s: float = 4.0,
    max_beat_s: float = 30.0,
    max_beats: int = 500,
    source: str = "",
) -> ScriptPlan:
    """Plan a script into beats. `fmt` is 'plain', 'fountain' or None (guess)."""
    if "\x00" in text:
        raise ScriptError("this is not a text file", None, source)
    if not text.strip():
        raise ScriptError("the script is empty", None, source)
    if fmt is None:
        fmt = "fountain" if _looks_like_fountain(text) else "plain"
    if fmt == "fountain":
        plan = _plan_fountain(text, default_beat_s, max_beat_s, source)
    elif fmt == "plain":
        plan = _plan_plain(text, default_beat_s, max_beat_s, source)
    else:
        raise ScriptError(f"unknown script format {fmt!r} (plain or fountain)", None, source)
    if not plan.beats:
        raise ScriptError("the script has no beats (write one paragraph per shot)", None, source)
    if len(plan.beats) > max_beats:
        raise ScriptError(
            f"the script has {len(plan.beats)} beats; the maximum is {max_beats}", None, source
        )
    return plan


def plan_file(path: str | Path, **kwargs: object) -> ScriptPlan:
    """Read and plan a script file; unreadable files raise ScriptError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ScriptError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ScriptError("the script is not UTF-8 text", None, str(path)) from None
    fmt = "fountain" if path.suffix.lower() in (".fountain", ".spmd") else kwargs.pop("fmt", None)
    plan = plan_script(text, fmt=fmt, source=str(path), **kwargs)  # type: ignore[arg-type]
    if not plan.title:
        plan.title = path.stem.replace("_", " ").replace("-", " ").strip().title()
    return plan
