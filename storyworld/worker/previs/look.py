"""Colours: the light of a time of day, the ground of a location, and each character's
colour and shape, the same in every beat of an episode.

A character's colour comes from its cast description when that names a colour ("yellow
oilskin"), else from a hash of its name; the shape (coat, dress, suit, round; hat, cap,
bun or none) from the hash. Nothing here depends on the beat, so a character looks the
same in every shot.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
from dataclasses import dataclass

__all__ = ["FigureLook", "Light", "figure_look", "ground_colour", "light_for"]

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Light:
    """A time of day: sky gradient (top, bottom), interior wall, and how bright the whole
    frame is (multiplies everything drawn, figures included)."""

    sky_top: RGB
    sky_bottom: RGB
    wall: RGB
    brightness: float


_LIGHTS = {
    "DAY": Light((96, 160, 230), (200, 228, 250), (226, 214, 190), 1.0),
    "DAWN": Light((120, 132, 196), (250, 196, 170), (214, 196, 186), 0.82),
    "DUSK": Light((64, 48, 112), (238, 132, 76), (176, 128, 100), 0.68),
    "NIGHT": Light((8, 12, 34), (26, 36, 72), (52, 52, 70), 0.42),
}


def light_for(time: str) -> Light:
    return _LIGHTS.get(time, _LIGHTS["DAY"])


_GROUNDS: list[tuple[str, RGB]] = [
    (r"SEA|OCEAN|HARBOU?R|PIER|DOCK|LIGHTHOUSE|BOAT|SHIP|COAST|BAY", (46, 96, 150)),
    (r"BEACH|SHORE|DESERT|DUNE", (218, 196, 140)),
    (r"FOREST|WOOD|PARK|FIELD|GARDEN|FARM|MEADOW|ROAD", (84, 132, 70)),
    (r"STREET|CITY|ALLEY|PARKING|STATION|ROOF|BRIDGE|TOWN", (120, 120, 126)),
    (r"SNOW|ICE|MOUNTAIN", (228, 232, 240)),
]


def ground_colour(location: str, interior: bool) -> RGB:
    """The floor of an interior, or the ground (sea, sand, grass, street) outside."""
    if interior:
        return (150, 116, 84)
    for pattern, colour in _GROUNDS:
        if re.search(pattern, location.upper()):
            return colour
    return (104, 124, 78)


_NAMED_COLOURS: dict[str, RGB] = {
    "RED": (206, 52, 52),
    "CRIMSON": (176, 30, 50),
    "SCARLET": (220, 40, 40),
    "ORANGE": (236, 128, 32),
    "YELLOW": (236, 200, 40),
    "GOLD": (214, 170, 40),
    "GREEN": (56, 160, 72),
    "TEAL": (32, 150, 150),
    "BLUE": (48, 96, 210),
    "NAVY": (30, 50, 120),
    "PURPLE": (128, 64, 176),
    "VIOLET": (140, 80, 200),
    "PINK": (232, 120, 170),
    "BROWN": (128, 84, 48),
    "GREY": (128, 128, 136),
    "GRAY": (128, 128, 136),
    "BLACK": (44, 44, 50),
    "WHITE": (236, 236, 236),
}
_BODIES = ("coat", "dress", "suit", "round")
_HEADS = ("none", "hat", "cap", "bun")


@dataclass(frozen=True)
class FigureLook:
    name: str
    colour: RGB
    body: str
    head: str

    @property
    def ink(self) -> RGB:
        """A darker shade of the colour for outlines and the name tag."""
        return tuple(int(c * 0.45) for c in self.colour)  # type: ignore[return-value]


def _hash_colour(digest: bytes) -> RGB:
    # Twelve hues far apart, two strengths: distinct at a glance, stable per name.
    hue = (digest[0] % 12) / 12.0
    sat, val = (0.72, 0.86) if digest[1] % 2 else (0.58, 0.72)
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return int(r * 255), int(g * 255), int(b * 255)


def figure_look(name: str, description: str = "") -> FigureLook:
    """How a character is drawn: from its name and cast description only."""
    key = name.strip().upper()
    digest = hashlib.sha256(key.encode()).digest()
    colour = None
    for word in re.findall(r"[A-Z]+", description.upper()):
        if word in _NAMED_COLOURS:
            colour = _NAMED_COLOURS[word]
            break
    return FigureLook(
        name=key,
        colour=colour or _hash_colour(digest),
        body=_BODIES[digest[2] % len(_BODIES)],
        head=_HEADS[digest[3] % len(_HEADS)],
    )
