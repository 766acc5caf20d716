"""The cast file: a story bible beside the script (`<script stem>.cast.toml`).

```toml
[style]
look = "ink and watercolour, soft light"     # added to every beat's prompt
negative = "blurry, text"                     # negative prompt
seed = 7                                      # episode seed
continuity = "scene"                          # "none" or "scene"
candidates = 3                                # keyframes per beat
music = "music/theme.ogg"                     # a music bed (the sound stage reads it)

[characters.Mara]
description = "an old lighthouse keeper, grey braid, yellow oilskin"
references = ["refs/mara.png"]                # relative to this file
voice = "alto, weathered"

[scenes."EXT. LIGHTHOUSE - NIGHT"]
music = "music/storm.ogg"
```

Every error names the file and the line, so the writer can fix it before anything is
queued: TOML syntax, an unknown key, a value of the wrong kind, a reference image that is
missing, unreadable or not an image, two characters with the same name (names compare
case-insensitively, as they are matched in the script). A character the script never
names is a warning, not an error.

A character is *in a beat* when it speaks there (a Fountain cue; `(V.O.)`, `(CONT'D)` and
other extensions are ignored) or its name appears in the beat's action text as a whole
word, in any case.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

__all__ = [
    "CONTINUITY_MODES",
    "Cast",
    "CastError",
    "Character",
    "Reference",
    "Style",
    "cast_path_for",
    "find_cast",
    "load_cast",
    "parse_cast",
    "speaker_name",
]

CONTINUITY_MODES = ("none", "scene")
MAX_CANDIDATES = 8
MAX_REFERENCE_BYTES = 32 * 1024 * 1024

_TOP_KEYS = {"style", "characters", "scenes"}
_STYLE_KEYS = {"look", "negative", "seed", "continuity", "candidates", "music"}
_CHARACTER_KEYS = {"description", "references", "voice"}
_SCENE_KEYS = {"music", "look"}
_IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# "(at line 3, column 14)" at the end of a tomllib message.
_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_TWICE = re.compile(r"Cannot declare \((.*)\) twice")
_EXTENSION = re.compile(r"\s*\([^)]*\)")


class CastError(ValueError):
    """The cast file cannot be used; the message names the file and the line."""

    def __init__(self, message: str, path: Path | str, line: int | None = None) -> None:
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line
        self.reason = message


@dataclass(frozen=True)
class Reference:
    """One reference image of a character: where it is and its content hash (the
    store key is derived from the hash, so the same image is stored once)."""

    path: Path
    sha256: str
    content_type: str
    size: int
    line: int

    @property
    def suffix(self) -> str:
        return {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}.get(
            self.content_type, ".img"
        )


@dataclass(frozen=True)
class Character:
    name: str
    description: str = ""
    references: tuple[Reference, ...] = ()
    voice: str = ""
    line: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "references": [r.sha256 for r in self.references],
            "voice": self.voice,
        }


@dataclass(frozen=True)
class Style:
    look: str = ""
    negative: str = ""
    seed: int | None = None
    continuity: str = "none"
    candidates: int | None = None
    music: str = ""


@dataclass
class Cast:
    """A parsed, validated cast file."""

    path: Path
    style: Style = field(default_factory=Style)
    characters: dict[str, Character] = field(default_factory=dict)
    #: scene heading -> its settings (`music`, `look`), as written.
    scenes: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def character(self, name: str) -> Character | None:
        """The character called `name` (any case)."""
        want = name.casefold()
        for character in self.characters.values():
            if character.name.casefold() == want:
                return character
        return None

    def characters_in(self, text: str, speakers: Iterable[str] = ()) -> list[str]:
        """The names (as the cast file writes them, in cast order) of the characters in a
        beat: those who speak (Fountain cues) or are named in its action text."""
        spoken = {speaker_name(s).casefold() for s in speakers}
        out: list[str] = []
        for character in self.characters.values():
            if character.name.casefold() in spoken or _named_in(character.name, text):
                out.append(character.name)
        return out

    def check_script(self, beats: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
        """Warnings for characters no beat has; `beats` is (text, speakers) per beat.
        The warnings are also kept in `self.warnings`."""
        seen: set[str] = set()
        for text, speakers in beats:
            seen.update(self.characters_in(text, speakers))
        new = [
            f"{self.path}, line {c.line}: character {c.name!r} never appears in the script"
            for c in self.characters.values()
            if c.name not in seen
        ]
        self.warnings.extend(w for w in new if w not in self.warnings)
        return new

    def scene_setting(self, scene: str, key: str) -> str:
        """A [scenes."..."] value for a scene heading (matched case-insensitively)."""
        want = scene.strip().casefold()
        for heading, values in self.scenes.items():
            if heading.strip().casefold() == want:
                return values.get(key, "")
        return ""

    def references_of(self, names: Iterable[str]) -> list[Reference]:
        """The reference images of the named characters, each image once."""
        out: list[Reference] = []
        seen: set[str] = set()
        for name in names:
            character = self.character(name)
            for ref in character.references if character else ():
                if ref.sha256 not in seen:
                    seen.add(ref.sha256)
                    out.append(ref)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "style": {
                "look": self.style.look,
                "negative": self.style.negative,
                "seed": self.style.seed,
                "continuity": self.style.continuity,
                "candidates": self.style.candidates,
                "music": self.style.music,
            },
            "characters": [c.to_json() for c in self.characters.values()],
            "scenes": self.scenes,
            "warnings": list(self.warnings),
        }


def speaker_name(cue: str) -> str:
    """A Fountain cue as a name: `MARA (V.O.)` -> `MARA`, `@McCoy` -> `McCoy`."""
    name = _EXTENSION.sub("", cue.strip().lstrip("@")).rstrip("^").strip()
    return name.removesuffix(":").strip()


def _named_in(name: str, text: str) -> bool:
    pattern = r"(?<![\w])" + r"\s+".join(re.escape(part) for part in name.split()) + r"(?![\w])"
    return re.search(pattern, text, re.IGNORECASE) is not None


def cast_path_for(script: Path | str) -> Path:
    """Where a script's cast file is looked for: `pilot.fountain` -> `pilot.cast.toml`."""
    script = Path(script)
    return script.with_name(f"{script.stem}.cast.toml")


def find_cast(script: Path | str) -> Path | None:
    """The cast file beside `script`, or None."""
    path = cast_path_for(script)
    return path if path.is_file() else None


def load_cast(path: Path | str) -> Cast:
    """Read and validate a cast file; `CastError` names the file and line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CastError(f"cannot read the cast file: {e.strerror or e}", path) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CastError("the cast file is not UTF-8 text", path) from None
    return parse_cast(text, path)


def parse_cast(text: str, path: Path | str) -> Cast:
    """Validate the text of a cast file; reference paths are relative to `path`."""
    path = Path(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _syntax_error(str(e), path) from None
    lines = _KeyLines(text)
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise CastError(
            f"unknown key {key!r} (a cast file has [style], [characters.NAME] and "
            '[scenes."HEADING"])',
            path,
            lines.find((), key),
        )
    cast = Cast(path=path)
    cast.style = _parse_style(_table(raw, "style", path, lines), path, lines)
    characters = _table(raw, "characters", path, lines)
    seen: dict[str, str] = {}
    for name, body in characters.items():
        line = lines.find(("characters",), name)
        if not name.strip():
            raise CastError("a character needs a name", path, line)
        if not isinstance(body, dict):
            raise CastError(f"character {name!r} must be a table: [characters.{name}]", path, line)
        folded = name.strip().casefold()
        if folded in seen:
            raise CastError(
                f"duplicate character {name!r} (already defined as {seen[folded]!r}; "
                "names are matched case-insensitively)",
                path,
                line,
            )
        seen[folded] = name
        cast.characters[name] = _parse_character(name.strip(), body, path, lines, line)
    for heading, body in _table(raw, "scenes", path, lines).items():
        line = lines.find(("scenes",), heading)
        if not isinstance(body, dict):
            raise CastError(f'scene {heading!r} must be a table: [scenes."{heading}"]', path, line)
        _check_keys(body, _SCENE_KEYS, ("scenes", heading), path, lines)
        cast.scenes[heading] = {
            key: _string(body, key, ("scenes", heading), path, lines) for key in body
        }
    return cast


def _syntax_error(message: str, path: Path) -> CastError:
    where = _TOML_WHERE.search(message)
    line = int(where.group(1)) if where else None
    reason = _TOML_WHERE.sub("", message)
    twice = _TOML_TWICE.match(reason)
    if twice:
        parts = [p.strip().strip("'\"") for p in twice.group(1).split(",")]
        if len(parts) == 2 and parts[0] == "characters":
            return CastError(f"duplicate character {parts[1]!r}", path, line)
        reason = f"duplicate table [{'.'.join(parts)}]"
    elif reason == "Cannot overwrite a value":
        reason = "duplicate key (a value is set twice)"
    return CastError(f"TOML syntax error: {reason}", path, line)


def _table(raw: dict[str, Any], key: str, path: Path, lines: _KeyLines) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise CastError(f"{key!r} must be a table: [{key}]", path, lines.find((), key))
    return value


def _check_keys(
    body: dict[str, Any], allowed: set[str], table: tuple[str, ...], path: Path, lines: _KeyLines
) -> None:
    for key in body:
        if key not in allowed:
            raise CastError(
                f"unknown key {key!r} in [{_header(table)}] (known: {', '.join(sorted(allowed))})",
                path,
                lines.find(table, key),
            )


def _header(table: tuple[str, ...]) -> str:
    return ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else f'"{p}"' for p in table)


def _string(
    body: dict[str, Any], key: str, table: tuple[str, ...], path: Path, lines: _KeyLines
) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise CastError(
            f"{key} in [{_header(table)}] must be text in quotes", path, lines.find(table, key)
        )
    return value.strip()


def _parse_style(body: dict[str, Any], path: Path, lines: _KeyLines) -> Style:
    table = ("style",)
    _check_keys(body, _STYLE_KEYS, table, path, lines)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise CastError(
            "seed in [style] must be a whole number, 0 or more", path, lines.find(table, "seed")
        )
    candidates = body.get("candidates")
    if candidates is not None and (
        isinstance(candidates, bool)
        or not isinstance(candidates, int)
        or not 1 <= candidates <= MAX_CANDIDATES
    ):
        raise CastError(
            f"candidates in [style] must be a whole number from 1 to {MAX_CANDIDATES}",
            path,
            lines.find(table, "candidates"),
        )
    continuity = _string(body, "continuity", table, path, lines) or "none"
    if continuity not in CONTINUITY_MODES:
        raise CastError(
            f"continuity in [style] must be one of {', '.join(CONTINUITY_MODES)}, "
            f"not {continuity!r}",
            path,
            lines.find(table, "continuity"),
        )
    return Style(
        look=_string(body, "look", table, path, lines),
        negative=_string(body, "negative", table, path, lines),
        seed=seed,
        continuity=continuity,
        candidates=candidates,
        music=_string(body, "music", table, path, lines),
    )


def _parse_character(
    name: str, body: dict[str, Any], path: Path, lines: _KeyLines, line: int | None
) -> Character:
    table = ("characters", name)
    _check_keys(body, _CHARACTER_KEYS, table, path, lines)
    refs = body.get("references", [])
    if isinstance(refs, str):
        refs = [refs]
    ref_line = lines.find(table, "references")
    if not isinstance(refs, list) or not all(isinstance(r, str) and r.strip() for r in refs):
        raise CastError(f"references of {name!r} must be a list of image paths", path, ref_line)
    references = tuple(_reference(name, r, path, ref_line) for r in refs)
    return Character(
        name=name,
        description=_string(body, "description", table, path, lines),
        references=references,
        voice=_string(body, "voice", table, path, lines),
        line=line or 0,
    )


def _reference(name: str, ref: str, path: Path, line: int | None) -> Reference:
    target = Path(ref).expanduser()
    if not target.is_absolute():
        target = path.parent / target
    if not target.is_file():
        raise CastError(f"reference image {ref!r} of {name!r} does not exist", path, line)
    try:
        data = target.read_bytes()
    except OSError as e:
        raise CastError(
            f"reference image {ref!r} of {name!r} cannot be read: {e.strerror or e}", path, line
        ) from None
    if len(data) > MAX_REFERENCE_BYTES:
        raise CastError(
            f"reference image {ref!r} of {name!r} is larger than "
            f"{MAX_REFERENCE_BYTES // (1024 * 1024)} MiB",
            path,
            line,
        )
    try:
        with Image.open(target) as image:
            image.verify()
            kind = image.format or ""
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise CastError(
            f"reference image {ref!r} of {name!r} is not an image (PNG, JPEG or WebP)", path, line
        ) from None
    if kind not in _IMAGE_TYPES:
        raise CastError(
            f"reference image {ref!r} of {name!r} is a {kind or 'unknown'} image; "
            "use PNG, JPEG or WebP",
            path,
            line,
        )
    return Reference(
        path=target,
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=_IMAGE_TYPES[kind],
        size=len(data),
        line=line or 0,
    )


class _KeyLines:
    """Line numbers of table headers and keys in TOML text (tomllib gives none).

    Good enough for the cast file's shape: `[a.b]` / `[a."b c"]` headers and `key = ...`
    lines; a key that cannot be placed falls back to its table's header line.
    """

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")
    _KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")

    def __init__(self, text: str) -> None:
        self.headers: dict[tuple[str, ...], int] = {}
        self.keys: dict[tuple[tuple[str, ...], str], int] = {}
        current: tuple[str, ...] = ()
        for n, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                current = tuple(_split_dotted(header.group(1)))
                self.headers.setdefault(current, n)
                continue
            key = self._KEY.match(line)
            if key:
                self.keys.setdefault((current, _unquote(key.group(1))), n)

    def find(self, table: tuple[str, ...], key: str) -> int | None:
        """The line of `key` in `table`: a key line, else a `[table.key]` header, else
        the table's header."""
        return (
            self.keys.get((table, key))
            or self.headers.get((*table, key))
            or self.headers.get(table)
        )


def _unquote(part: str) -> str:
    part = part.strip()
    if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'":
        return part[1:-1]
    return part


def _split_dotted(header: str) -> list[str]:
    parts: list[str] = []
    current = ""
    quote = ""
    for ch in header:
        if quote:
            current += ch
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current += ch
        elif ch == ".":
            parts.append(_unquote(current))
            current = ""
        else:
            current += ch
    parts.append(_unquote(current))
    return parts
