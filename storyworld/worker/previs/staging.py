"""What a beat's words say about its shot: place, light, framing, camera move, subject.

Pure text rules, no drawing: the scene heading gives interior/exterior, the location and
the time of day; shot directions in the action text (CLOSE ON, ANGLE ON, WIDE, INSERT,
PUSH IN, PULL BACK, PAN, TRACKING) give framing and camera move. Without a direction a
beat gets a sensible default: wide when nobody is in it, a medium shot of its characters
otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Place", "Shot", "read_place", "read_shot"]

TIMES = ("NIGHT", "DUSK", "DAWN", "DAY", "MORNING", "EVENING", "AFTERNOON", "SUNSET", "SUNRISE")
_TIME_ALIASES = {
    "MORNING": "DAWN",
    "SUNRISE": "DAWN",
    "EVENING": "DUSK",
    "SUNSET": "DUSK",
    "AFTERNOON": "DAY",
    "NOON": "DAY",
    "MIDNIGHT": "NIGHT",
    "LATER": "",
    "CONTINUOUS": "",
    "MOMENTS LATER": "",
}


@dataclass(frozen=True)
class Place:
    """Where and when: `interior` (INT.), `location` ("LIGHTHOUSE"), `time` (DAY, NIGHT,
    DUSK or DAWN)."""

    interior: bool
    location: str
    time: str


def read_place(scene: str, text: str = "") -> Place:
    """A scene heading (`INT. DINER - NIGHT`) to a Place. A heading without a time of day
    borrows one from the action text ("at night"), else DAY."""
    head = scene.strip().upper()
    interior = head.startswith(("INT", "I/E")) and not head.startswith("INT./EXT")
    body = re.sub(r"^(?:INT\./EXT|INT/EXT|I/E|INT|EXT|EST)[.\s]+", "", head)
    parts = [p.strip() for p in re.split(r"\s+[-–—]\s+|\s*[-–—]{2}\s*", body) if p.strip()]
    time = ""
    if len(parts) > 1:
        for word in reversed(parts[1:]):
            key = _TIME_ALIASES.get(word, word)
            if key in ("NIGHT", "DUSK", "DAWN", "DAY"):
                time = key
                break
    if not time:
        words = f"{head} {text.upper()}"
        for t in TIMES:
            if re.search(rf"\b{t}\b", words):
                time = _TIME_ALIASES.get(t, t)
                break
    location = parts[0] if parts else ""
    return Place(interior=interior, location=location, time=time or "DAY")


@dataclass(frozen=True)
class Shot:
    """`framing`: wide, medium, close or insert. `move`: static, push_in, pull_back,
    pan_left, pan_right or tracking. `subject`: the character or prop the direction
    points at (upper case), if any. `label` is how the board writes it."""

    framing: str
    move: str
    subject: str = ""
    directions: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        move = {"static": "", "push_in": "PUSH IN", "pull_back": "PULL BACK"}.get(
            self.move, self.move.replace("_", " ").upper()
        )
        return " · ".join(x for x in (self.framing.upper(), move) if x)


_FRAMINGS = [
    (r"\bEXTREME CLOSE[- ]UP\b|\bECU\b", "close"),
    (r"\bCLOSE ON\b|\bCLOSE[- ]UP\b|\bCLOSE\b|\bC\.?U\.?\b", "close"),
    (r"\bINSERT\b", "insert"),
    (r"\bANGLE ON\b|\bMEDIUM\b|\bTWO[- ]SHOT\b|\bOVER THE SHOULDER\b|\bOTS\b", "medium"),
    (r"\bWIDE\b|\bESTABLISHING\b|\bLONG SHOT\b|\bAERIAL\b", "wide"),
]
_MOVES = [
    (r"\bPUSH(?:ES|ING)? IN\b|\bDOLLY IN\b|\bZOOM IN\b|\bMOVE IN\b", "push_in"),
    (r"\bPULL(?:S|ING)? BACK\b|\bPULL OUT\b|\bDOLLY OUT\b|\bZOOM OUT\b", "pull_back"),
    (r"\bPAN(?:S|NING)? (?:LEFT|TO THE LEFT)\b", "pan_left"),
    (r"\bPAN(?:S|NING)?\b|\bWHIP PAN\b", "pan_right"),
    (r"\bTRACKING\b|\bTRACK(?:S)? WITH\b|\bDOLLY\b|\bFOLLOW(?:S|ING)?\b", "tracking"),
]


def read_shot(text: str, characters: list[str], *, props: list[str] | None = None) -> Shot:
    """The shot a beat's action text asks for (directions are matched in upper case, as
    screenplays write them, and in any case at the start of the text)."""
    upper = text.upper()
    # Directions are written in capitals; "a close friend" in lower case is not one.
    caps = " ".join(re.findall(r"\b[A-Z][A-Z0-9 .'\-]*[A-Z0-9]\b", text))
    framing, move, found = "", "static", []
    for pattern, name in _FRAMINGS:
        m = re.search(pattern, caps) or re.match(pattern, upper)
        if m:
            framing = name
            found.append(m.group(0))
            break
    for pattern, name in _MOVES:
        m = re.search(pattern, caps) or re.match(pattern, upper)
        if m:
            move = name
            found.append(m.group(0))
            break
    subject = ""
    if found:
        after = upper[upper.find(found[0]) + len(found[0]) :]
        for name in sorted(characters, key=len, reverse=True):
            if re.search(rf"\b{re.escape(name.upper())}\b", after[:60]):
                subject = name.upper()
                break
        if not subject and props:
            for p in props:
                if p.upper() in after[:60]:
                    subject = p.upper()
                    break
    if not framing:
        framing = "medium" if characters else "wide"
        if move == "pull_back":
            framing = "wide"
    return Shot(framing=framing, move=move, subject=subject, directions=tuple(found))
