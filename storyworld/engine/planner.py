"""Scripts to beats.

Two formats:
- plain text: an optional `# Title` line, then one beat per paragraph (blank-line
  separated). A paragraph may start with a duration such as `[6s]` or `[2.5s]`.
- Fountain (`.fountain`, or text that looks like a screenplay), with the details real
  screenplays use: a title page (`Title:`, `Credit:`, `Author:` ... kept in
  `ScriptPlan.title_page`), scene headings (`INT.`/`EXT.`/`.FORCED`, scene numbers
  `#12#` dropped), action paragraphs as beats, sections (`#`) and synopses (`=`) kept as
  metadata on the beats that follow, transitions (`CUT TO:`, `> FADE OUT.`) as cuts,
  centered text (`> THE END <`) as a title-card beat, emphasis (`**bold**`, `*italic*`,
  `_underline_`) stripped, notes `[[...]]`, boneyard `/* */`, page breaks `===` and
  lyrics ignored.
- Dialogue (a CHARACTER cue, with an optional extension such as `(V.O.)` or `(O.S.)` and
  `^` for dual dialogue, then lines and `(parentheticals)`) becomes structured
  `DialogueLine`s of the beat it follows, in script order: a beat holds at most
  `max_lines_per_beat` lines (further lines start a dialogue beat of their own) and never
  takes lines from another scene. `captions` ("NAME (V.O.): text") stay for older readers
  and are what the database stores; `parse_caption` turns one back into a line.

Errors name the line so a writer can fix the script before anything is queued.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from storyworld.protocol import limits

__all__ = [
    "DialogueLine",
    "PlannedBeat",
    "ScriptError",
    "ScriptPlan",
    "characters_named",
    "parse_caption",
    "plan_file",
    "plan_script",
    "strip_emphasis",
]

#: The default for the MAX_BEATS setting: a 120-page feature plans to about 900 beats.
DEFAULT_MAX_BEATS = 5000


class ScriptError(ValueError):
    """The script cannot be planned; the message names the line."""

    def __init__(self, message: str, line: int | None = None, source: str = "") -> None:
        where = (
            f"{source or 'script'}, line {line}: " if line else (f"{source}: " if source else "")
        )
        super().__init__(f"{where}{message}")
        self.line = line


@dataclass(frozen=True)
class DialogueLine:
    """One spoken line. `parenthetical` is direction for the actor, never spoken;
    `extension` is the cue's extension (V.O., O.S., CONT'D) without parentheses."""

    speaker: str
    text: str
    parenthetical: str = ""
    extension: str = ""
    dual: bool = False

    @property
    def caption(self) -> str:
        """`NAME (EXT): text`, the form stored in a beat's captions."""
        ext = f" ({self.extension})" if self.extension else ""
        return f"{self.speaker}{ext}: {self.text}"


@dataclass
class PlannedBeat:
    index: int
    text: str
    duration_s: float
    scene: str = ""
    captions: list[str] = field(default_factory=list)
    line: int = 0
    dialogue: list[DialogueLine] = field(default_factory=list)
    #: Characters in the beat: those who speak and those the action names.
    characters: list[str] = field(default_factory=list)
    section: str = ""
    synopsis: str = ""
    #: The transition written before this beat (`CUT TO:`); rendered as a cut.
    transition: str = ""
    #: Centered text (`> THE END <`): a title card.
    centered: bool = False

    def add_line(self, line: DialogueLine) -> None:
        self.dialogue.append(line)
        self.captions.append(line.caption)


@dataclass
class ScriptPlan:
    title: str
    format: str
    beats: list[PlannedBeat]
    title_page: dict[str, str] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(b.duration_s for b in self.beats)

    @property
    def characters(self) -> list[str]:
        """Every speaking character, in order of first appearance."""
        seen: dict[str, None] = {}
        for b in self.beats:
            for d in b.dialogue:
                seen.setdefault(d.speaker, None)
        return list(seen)


_DURATION = re.compile(r"^\s*\[\s*(\d+(?:\.\d+)?)\s*s(?:ec(?:onds?)?)?\s*\]\s*", re.IGNORECASE)
_BAD_DURATION = re.compile(r"^\s*\[[^\]]*\]")
_SCENE = re.compile(r"^(?:(?:INT|EXT|EST|INT\./EXT|INT/EXT|I/E)[.\s])", re.IGNORECASE)
_SCENE_NUMBER = re.compile(r"\s*#[\w.\-]+#\s*$")
_TRANSITION = re.compile(r"^[A-Z0-9\s.'\-]+(?:TO:|OUT\.|IN:)$")
_CHARACTER = re.compile(r"^(?:@\S.*|[^a-z()]*[A-Z][^a-z()]*(?:\s*\([^)]*\))*\s*\^?)$")
_BONEYARD = re.compile(r"/\*.*?\*/", re.DOTALL)
_NOTE = re.compile(r"[ \t]*\[\[.*?\]\]", re.DOTALL)
_TITLE_KEY = re.compile(r"^([A-Za-z][A-Za-z ]*):(.*)$")
_EMPHASIS = [
    re.compile(r"(?<!\\)\*\*\*(?=\S)(.+?)(?<=\S)(?<!\\)\*\*\*"),
    re.compile(r"(?<!\\)\*\*(?=\S)(.+?)(?<=\S)(?<!\\)\*\*"),
    re.compile(r"(?<!\\)\*(?=\S)(.+?)(?<=\S)(?<!\\)\*"),
    re.compile(r"(?<![\\\w])_(?=\S)(.+?)(?<=\S)(?<!\\)_(?!\w)"),
]


def strip_emphasis(text: str) -> str:
    """`**bold**`, `*italic*`, `***both***` and `_underline_` to plain text; `\\*` and
    `\\_` stay as literal characters."""
    for pattern in _EMPHASIS:
        text = pattern.sub(r"\1", text)
    return text.replace("\\*", "*").replace("\\_", "_")


def parse_caption(caption: str) -> DialogueLine | None:
    """A stored caption (`NAME (V.O.): text`) back to a `DialogueLine`; None when the
    caption is not a line of dialogue."""
    name, sep, text = caption.partition(": ")
    if not sep or not name or not text.strip() or name != name.upper():
        return None
    m = re.match(r"^(.*?)\s*\(([^)]*)\)$", name)
    speaker, ext = (m.group(1), m.group(2)) if m else (name, "")
    if not speaker.strip():
        return None
    return DialogueLine(speaker=speaker.strip(), text=text.strip(), extension=ext.strip())


def characters_named(text: str, names: list[str]) -> list[str]:
    """The names (from `names`) that `text` mentions as whole words, in `names` order."""
    upper = text.upper()
    return [n for n in names if re.search(rf"(?<!\w){re.escape(n.upper())}(?!\w)", upper)]


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


def _title_page(lines: list[str]) -> tuple[dict[str, str], int]:
    """Title-page keys (lower-cased) and the number of lines it takes, or ({}, 0)."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None or not _TITLE_KEY.match(lines[first].strip()):
        return {}, 0
    if _SCENE.match(lines[first].strip()):
        return {}, 0
    keys: dict[str, str] = {}
    key = ""
    i = first
    for i in range(first, len(lines)):
        raw = lines[i]
        if not raw.strip():
            return keys, i + 1
        m = _TITLE_KEY.match(raw.strip())
        if m and not raw[:1].isspace():
            key = m.group(1).strip().lower()
            keys[key] = strip_emphasis(m.group(2).strip())
        elif key:  # an indented continuation of the previous key
            value = strip_emphasis(raw.strip())
            keys[key] = f"{keys[key]}\n{value}".strip()
        else:
            return {}, 0
    return keys, len(lines)


def _speaker(cue: str) -> tuple[str, str, bool]:
    """A cue to (name, extension, dual)."""
    cue = cue.strip()
    dual = cue.endswith("^")
    cue = cue.rstrip("^").strip().lstrip("@").strip()
    exts = re.findall(r"\(([^)]*)\)", cue)
    name = re.sub(r"\s*\([^)]*\)", "", cue).strip()
    ext = next((e.strip().upper() for e in exts if e.strip().upper() not in ("CONT'D", "CONT")), "")
    return strip_emphasis(name), ext, dual


def _dialogue(para: list[str], speaker: str, ext: str, dual: bool) -> list[DialogueLine]:
    """The lines under a cue; a parenthetical directs the words that follow it."""
    out: list[DialogueLine] = []
    paren, words = "", []

    def flush() -> None:
        nonlocal words
        text = strip_emphasis(" ".join(words)).strip()
        if text:
            out.append(DialogueLine(speaker, text, paren, ext, dual))
        words = []

    for raw in para:
        line = raw.strip()
        if line.startswith("(") and line.endswith(")"):
            flush()
            paren = line[1:-1].strip()
        else:
            words.append(line)
    flush()
    return out


class _FountainPlanner:
    def __init__(self, default_s: float, max_s: float, per_beat: int, source: str) -> None:
        self.default_s, self.max_s, self.per_beat, self.source = (
            default_s,
            max_s,
            per_beat,
            source,
        )
        self.beats: list[PlannedBeat] = []
        self.scene = ""
        self.sections: list[str] = []
        self.section_path: list[str] = []
        self.synopsis = ""
        self.transition = ""
        self.scene_open = False  # no beat yet in the current scene

    def _new_beat(self, text: str, line: int, duration: float | None = None) -> PlannedBeat:
        beat = PlannedBeat(
            index=len(self.beats),
            text=text,
            duration_s=self.default_s if duration is None else duration,
            scene=self.scene,
            line=line,
            section=" / ".join(self.section_path),
            synopsis=self.synopsis,
            transition=self.transition,
        )
        self.synopsis, self.transition = "", ""
        self.beats.append(beat)
        self.scene_open = False
        return beat

    def paragraph(self, start: int, para: list[str]) -> None:
        first = para[0].strip()
        if re.fullmatch(r"={3,}", first):
            return  # page break
        if first.startswith("#"):
            depth = len(first) - len(first.lstrip("#"))
            name = strip_emphasis(first.lstrip("#").strip())
            self.section_path = [*self.section_path[: depth - 1], name]
            self.sections.append(name)
            return
        if first.startswith("=") and not first.startswith("=="):
            self.synopsis = strip_emphasis(" ".join(p.strip().lstrip("=").strip() for p in para))
            return
        if first.startswith("~"):
            return  # lyrics
        if _SCENE.match(first) or (first.startswith(".") and not first.startswith("..")):
            heading = _SCENE_NUMBER.sub("", first.lstrip(".").strip()) if first else ""
            self.scene = strip_emphasis(heading).strip()
            self.scene_open = True
            para, start = para[1:], start + 1
            if not para:
                return
            first = para[0].strip()
        if first.startswith(">") and first.endswith("<") and len(first) > 2:
            text = strip_emphasis(" ".join(p.strip().strip("<>").strip() for p in para))
            if text:
                self._new_beat(text, start).centered = True
            return
        if first.startswith(">") or (_TRANSITION.match(first) and len(para) == 1):
            self.transition = strip_emphasis(first.lstrip(">").strip())
            return
        if len(para) > 1 and not first.startswith("!") and _CHARACTER.match(first):
            self._cue(start, para)
            return
        self._action(start, para)

    def _cue(self, start: int, para: list[str]) -> None:
        speaker, ext, dual = _speaker(para[0])
        if not speaker:
            raise ScriptError("a dialogue cue has no character name", start, self.source)
        for line in _dialogue(para[1:], speaker, ext, dual):
            beat = self.beats[-1] if self.beats and not self.scene_open else None
            if beat is None or beat.scene != self.scene or len(beat.dialogue) >= self.per_beat:
                beat = self._new_beat(self.scene or "Dialogue", start)
                beat.text = ""  # named from its speakers once the beat is complete
            beat.add_line(line)

    def _action(self, start: int, para: list[str]) -> None:
        action = strip_emphasis(" ".join(p.strip().removeprefix("!") for p in para))
        duration = self.default_s
        m = _DURATION.match(action)
        if m:
            duration = float(m.group(1))
            action = action[m.end() :].strip()
        if not action:
            return
        _check_beat(action, duration, start, self.max_s, self.source)
        self._new_beat(action, start, duration)

    def finish(self) -> list[PlannedBeat]:
        names = list(dict.fromkeys(d.speaker for b in self.beats for d in b.dialogue))
        for beat in self.beats:
            speakers = list(dict.fromkeys(d.speaker for d in beat.dialogue))
            if not beat.text:
                beat.text = " and ".join(s.title() for s in speakers) + " talk."
            named = characters_named(beat.text, names)
            beat.characters = list(dict.fromkeys([*speakers, *named]))
        return self.beats


def _plan_fountain(
    text: str, default_s: float, max_s: float, source: str, per_beat: int
) -> ScriptPlan:
    text = _BONEYARD.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    text = _NOTE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    lines = text.splitlines()
    title_page, skip = _title_page(lines)
    lines = [""] * skip + lines[skip:]
    planner = _FountainPlanner(default_s, max_s, per_beat, source)
    for start, para in _paragraphs("\n".join(lines)):
        planner.paragraph(start, para)
    beats = planner.finish()
    title = title_page.get("title", "").replace("\n", " ").strip()
    return ScriptPlan(
        title=title,
        format="fountain",
        beats=beats,
        title_page=title_page,
        sections=planner.sections,
    )


def _looks_like_fountain(text: str) -> bool:
    return any(_SCENE.match(line.strip()) for line in text.splitlines()[:200])


def plan_script(
    text: str,
    *,
    fmt: str | None = None,
    default_beat_s: float = 4.0,
    max_beat_s: float = 30.0,
    max_beats: int = DEFAULT_MAX_BEATS,
    max_lines_per_beat: int = 3,
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
        plan = _plan_fountain(text, default_beat_s, max_beat_s, source, max(1, max_lines_per_beat))
    elif fmt == "plain":
        plan = _plan_plain(text, default_beat_s, max_beat_s, source)
    else:
        raise ScriptError(f"unknown script format {fmt!r} (plain or fountain)", None, source)
    if not plan.beats:
        raise ScriptError("the script has no beats (write one paragraph per shot)", None, source)
    if len(plan.beats) > max_beats:
        raise ScriptError(
            f"the script has {len(plan.beats)} beats; the maximum is {max_beats} (raise MAX_BEATS)",
            None,
            source,
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
