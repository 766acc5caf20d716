"""Voice names: what a cast file's `voice` may say, checked before anything is queued.

A voice is one of:
- empty: a default voice per character, chosen by a stable hash of its name from a set of
  distinct eSpeak NG voices (the same character sounds the same in every beat);
- a description, comma or space separated words from `DESCRIPTORS` ("alto, weathered",
  "deep male british", "young woman, fast");
- `espeak:<voice>` with an eSpeak NG voice and variant (`espeak:en-gb+m3`);
- `vits:<directory>` (or `mms:<directory>`): a transformers VITS/MMS model saved with
  `save_pretrained`, or `vits:<model id>` (`vits:facebook/mms-tts-eng`) already in the
  Hugging Face cache; loaded offline on the worker (needs the `gpu` extra's transformers).

Shared by the engine (which refuses unknown names with the fix) and the worker's voice
stage (which turns a `VoiceSpec` into speech).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DESCRIPTORS", "VoiceError", "VoiceSpec", "default_voice", "parse_voice"]


class VoiceError(ValueError):
    """A voice name that cannot be used; the message says which and how to fix it."""


@dataclass(frozen=True)
class VoiceSpec:
    """A resolved voice. `engine` is "espeak" or "vits"; for eSpeak, `name` is the
    language and variant (`en-us+f3`), `pitch` 0-99, `rate` words per minute; for VITS,
    `model` is the model directory."""

    engine: str
    name: str = "en-us"
    pitch: int = 50
    rate: int = 165
    model: str = ""

    @property
    def key(self) -> str:
        """A stable text form, part of what a beat's render inputs hash to."""
        if self.engine == "vits":
            return f"vits:{self.model}"
        return f"espeak:{self.name}:p{self.pitch}:r{self.rate}"


# word -> (field, value); applied in order, later words win.
DESCRIPTORS: dict[str, tuple[str, object]] = {
    "female": ("sex", "f"),
    "woman": ("sex", "f"),
    "girl": ("sex", "f"),
    "alto": ("sex", "f"),
    "soprano": ("sex", "f"),
    "mezzo": ("sex", "f"),
    "male": ("sex", "m"),
    "man": ("sex", "m"),
    "boy": ("sex", "m"),
    "tenor": ("sex", "m"),
    "baritone": ("sex", "m"),
    "bass": ("sex", "m"),
    "high": ("pitch", 72),
    "low": ("pitch", 30),
    "deep": ("pitch", 22),
    "young": ("pitch", 68),
    "child": ("pitch", 85),
    "old": ("rate", 135),
    "elderly": ("rate", 130),
    "weathered": ("variant", "croak"),
    "gravelly": ("variant", "croak"),
    "hoarse": ("variant", "croak"),
    "whisper": ("variant", "whisper"),
    "whispering": ("variant", "whisper"),
    "slow": ("rate", 130),
    "fast": ("rate", 200),
    "calm": ("rate", 150),
    "warm": ("pitch", 45),
    "british": ("lang", "en"),
    "english": ("lang", "en"),
    "american": ("lang", "en-us"),
    "scottish": ("lang", "en-gb-scotland"),
    "caribbean": ("lang", "en-029"),
    "narrator": ("variant", "m3"),
}
_PITCH_FOR_RANGE = {"alto": 40, "soprano": 70, "mezzo": 55, "tenor": 55, "baritone": 38, "bass": 25}
_DEFAULTS = ["m1", "f2", "m3", "f3", "m7", "f4", "m2", "f1", "m4", "f5"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ESPEAK_NAME = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{2,9})*(?:\+[A-Za-z0-9_]+)?$")


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    # The cache directory is read now, not when huggingface_hub was imported.
    cache = os.environ.get("HF_HUB_CACHE") or None
    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache)
    return isinstance(found, str)


def default_voice(character: str) -> VoiceSpec:
    """The voice of a character with none in the cast: stable for its name."""
    d = hashlib.sha256(character.strip().upper().encode()).digest()
    variant = _DEFAULTS[d[0] % len(_DEFAULTS)]
    return VoiceSpec("espeak", f"en-us+{variant}", pitch=38 + d[1] % 30, rate=155 + d[2] % 25)


def _describe(text: str, character: str) -> VoiceSpec:
    words = [w for w in re.split(r"[\s,;/]+", text.lower()) if w]
    base = default_voice(character)
    sex = ""
    lang, variant, pitch, rate = "en-us", "", base.pitch, base.rate
    unknown = [w for w in words if w not in DESCRIPTORS]
    if unknown:
        known = ", ".join(sorted(DESCRIPTORS))
        raise VoiceError(
            f"voice {text!r} of {character or 'a character'}: unknown word(s) "
            f"{', '.join(repr(w) for w in unknown)}; describe it with {known}, or name an "
            "eSpeak voice (espeak:en-gb+m3) or a VITS model directory (vits:/path)"
        )
    for w in words:
        field, value = DESCRIPTORS[w]
        if field == "sex":
            sex = str(value)
            pitch = _PITCH_FOR_RANGE.get(w, pitch)
        elif field == "pitch":
            pitch = int(value)  # type: ignore[call-overload]
        elif field == "rate":
            rate = int(value)  # type: ignore[call-overload]
        elif field == "variant":
            variant = str(value)
        elif field == "lang":
            lang = str(value)
    if not variant:
        base_variant = base.name.split("+")[1]
        variant = base_variant if not sex or base_variant[0] == sex else f"{sex}{1 + pitch % 4}"
    return VoiceSpec("espeak", f"{lang}+{variant}", pitch=pitch, rate=rate)


def parse_voice(text: str, character: str = "", *, check_files: bool = True) -> VoiceSpec:
    """A cast `voice` value to a VoiceSpec; raises VoiceError with the fix. With
    `check_files`, a VITS model directory must exist and hold a config.json."""
    text = text.strip()
    if not text:
        return default_voice(character)
    engine, sep, rest = text.partition(":")
    if sep and engine.lower() == "espeak":
        name = rest.strip()
        if not _ESPEAK_NAME.match(name):
            raise VoiceError(
                f"voice {text!r} of {character or 'a character'}: {name!r} is not an eSpeak "
                "voice name (write it like espeak:en-us or espeak:en-gb+f3)"
            )
        return VoiceSpec("espeak", name.lower().split("+")[0] + name[len(name.split("+")[0]) :])
    if sep and engine.lower() in ("vits", "mms"):
        where = rest.strip()
        path = Path(where).expanduser()
        if _HUB_ID.match(where) and not path.exists():
            # A model id (facebook/mms-tts-eng): read from the Hugging Face cache, offline.
            if check_files and not _in_hub_cache(where):
                raise VoiceError(
                    f"voice {text!r} of {character or 'a character'}: {where} is not in the "
                    "Hugging Face cache (download it where there is network: "
                    f"`huggingface-cli download {where}`, or give a local directory)"
                )
            return VoiceSpec("vits", model=where)
        if check_files and not (path / "config.json").is_file():
            raise VoiceError(
                f"voice {text!r} of {character or 'a character'}: no VITS model at {path} "
                "(save one there with VitsModel.save_pretrained and its tokenizer, or use an "
                "eSpeak voice such as espeak:en-us)"
            )
        return VoiceSpec("vits", model=str(path))
    if sep and re.fullmatch(r"[a-z]+", engine.lower()):
        raise VoiceError(
            f"voice {text!r} of {character or 'a character'}: unknown voice engine "
            f"{engine!r} (espeak: or vits:)"
        )
    return _describe(text, character)
