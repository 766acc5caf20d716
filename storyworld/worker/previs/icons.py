"""Pictograms for places and props named in a beat, drawn from the Noto Color Emoji font.

The font comes from the Debian package `fonts-noto-color-emoji` (CI installs it; see
.ci/run), or any file named by PREVIS_EMOJI_FONT. Without it the board still draws: each
pictogram becomes a labelled card, so a missing font never fails a render.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["Pictogram", "emoji_font_path", "find_pictograms", "pictogram_image"]

_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf",
    "/System/Library/Fonts/Apple Color Emoji.ttc",
)
#: Noto Color Emoji is a bitmap font with one strike: glyphs are 109 px tall.
_STRIKE = 109

#: word (a regular expression, matched as a whole word in upper case) -> emoji.
#: Order matters: the first words are the more specific.
_WORDS: list[tuple[str, str]] = [
    (r"LIGHTHOUSES?", "\U0001f5fc"),  # no lighthouse emoji: a red and white tower
    (r"LIGHTNING|THUNDER(?:STORM)?|STORMS?|STORMY", "\u26c8\ufe0f"),
    (r"RAIN(?:ING|S|Y)?|DOWNPOUR", "\U0001f327\ufe0f"),
    (r"SNOW(?:ING|S|Y)?|BLIZZARD", "\u2744\ufe0f"),
    (r"WIND|GUSTS?|GALE", "\U0001f4a8"),
    (r"FOG|MIST|FOGGY", "\U0001f32b\ufe0f"),
    (r"CLOUDS?|CLOUDY", "\u2601\ufe0f"),
    (r"SHIPS?|FERRY|TRAWLER", "\U0001f6a2"),
    (r"BOATS?|SAILBOAT|YACHT|DINGHY", "\u26f5"),
    (r"HARBOU?R|PIER|DOCKS?|PORT|ANCHOR", "\u2693"),
    (r"SEA|OCEAN|WAVES?|SURF|TIDE|WATER", "\U0001f30a"),
    (r"BEACH|SHORE", "\U0001f3d6\ufe0f"),
    (r"ISLAND", "\U0001f3dd\ufe0f"),
    (r"MOUNTAINS?|CLIFFS?|PEAK", "\u26f0\ufe0f"),
    (r"FOREST|WOODS|TREES?", "\U0001f332"),
    (r"FLOWERS?|GARDEN", "\U0001f337"),
    (r"POLICE CAR|SQUAD CAR|CRUISER", "\U0001f693"),
    (r"POLICE STATION|PRECINCT|POLICE", "\U0001f46e"),
    (r"HOSPITAL|WARD|CLINIC", "\U0001f3e5"),
    (r"CHURCH|CHAPEL", "\u26ea"),
    (r"SCHOOL|CLASSROOM", "\U0001f3eb"),
    (r"OFFICE|TOWER BLOCK|SKYSCRAPER", "\U0001f3e2"),
    (r"CITY|DOWNTOWN|SKYLINE", "\U0001f3d9\ufe0f"),
    (r"STREET|ROAD|HIGHWAY|ALLEY", "\U0001f6e3\ufe0f"),
    (r"BRIDGE", "\U0001f309"),
    (r"TRAIN(?: CARRIAGE)?|RAILWAY|STATION|SUBWAY|TRAM", "\U0001f686"),
    (r"CARS?|TAXI|VAN|TRUCK", "\U0001f697"),
    (r"BIKE|BICYCLE", "\U0001f6b2"),
    (r"PLANE|AIRPORT|JET", "\u2708\ufe0f"),
    (r"HOUSE|HOME|COTTAGE|CABIN", "\U0001f3e0"),
    (r"APARTMENT|FLAT|HOTEL", "\U0001f3e8"),
    (r"DINER|CAFE|CAFÉ|COFFEE|MUG|CUP", "\u2615"),
    (r"RESTAURANT|DINNER|MEAL|PLATE", "\U0001f37d\ufe0f"),
    (r"KITCHEN|STOVE|FRYING PAN", "\U0001f373"),
    (r"BAR|PUB|BEER", "\U0001f37a"),
    (r"WINE|GLASS", "\U0001f377"),
    (r"BOTTLE|CHAMPAGNE", "\U0001f37e"),
    (r"PHONE|CELLPHONE|MOBILE|SMARTPHONE|CALLS?", "\U0001f4f1"),
    (r"COMPUTER|LAPTOP|SCREEN", "\U0001f4bb"),
    (r"TV|TELEVISION", "\U0001f4fa"),
    (r"RADIO", "\U0001f4fb"),
    (r"CAMERA|PHOTO(?:GRAPH)?S?", "\U0001f4f7"),
    (r"LETTERS?|ENVELOPE|MAIL", "\u2709\ufe0f"),
    (r"BOOKS?|DIARY|NOTEBOOK", "\U0001f4d6"),
    (r"MAP", "\U0001f5fa\ufe0f"),
    (r"KEYS?|LOCK", "\U0001f511"),
    (r"DOOR(?:WAY)?|GATE", "\U0001f6aa"),
    (r"WINDOWS?", "\U0001fa9f"),
    (r"BED|BEDROOM", "\U0001f6cf\ufe0f"),
    (r"CHAIR", "\U0001fa91"),
    (r"CLOCK|WATCH", "\U0001f570\ufe0f"),
    (r"CANDLES?", "\U0001f56f\ufe0f"),
    (r"LANTERN|LAMP|TORCH|FLASHLIGHT", "\U0001f3ee"),
    (r"FIRE|FLAMES?|BURNING", "\U0001f525"),
    (r"GUN|PISTOL|REVOLVER|RIFLE", "\U0001f52b"),
    (r"KNIFE|BLADE", "\U0001f52a"),
    (r"MONEY|CASH|BANK|VAULT", "\U0001f4b0"),
    (r"BAG|SUITCASE|LUGGAGE", "\U0001f9f3"),
    (r"GIFT|PRESENT", "\U0001f381"),
    (r"DOGS?|PUPPY", "\U0001f415"),
    (r"CATS?|KITTEN", "\U0001f408"),
    (r"BIRDS?|GULLS?|SEAGULLS?|CROWS?", "\U0001f426"),
    (r"HORSES?", "\U0001f40e"),
    (r"FISH", "\U0001f41f"),
    (r"MUSIC|SONG|GUITAR|PIANO", "\U0001f3b5"),
    (r"MOON", "\U0001f319"),
    (r"SUN|SUNLIGHT", "\u2600\ufe0f"),
    (r"STARS?", "\u2b50"),
    (r"HEART|LOVE|KISS", "\u2764\ufe0f"),
    (r"BLOOD", "\U0001fa78"),
    (r"SKULL|DEAD|BODY|CORPSE", "\U0001f480"),
]
_COMPILED = [(re.compile(rf"(?<![A-Z]){w}(?![A-Z])"), e) for w, e in _WORDS]


#: Pictograms drawn in the sky, and those that float on water at the horizon.
SKY = {
    "\u26c8\ufe0f",
    "\U0001f327\ufe0f",
    "\u2744\ufe0f",
    "\U0001f4a8",
    "\U0001f32b\ufe0f",
    "\u2601\ufe0f",
    "\u2708\ufe0f",
    "\U0001f426",
    "\U0001f319",
    "\u2600\ufe0f",
    "\u2b50",
}
AFLOAT = {"\U0001f6a2", "\u26f5", "\U0001f30a"}


@dataclass(frozen=True)
class Pictogram:
    """A thing to draw: `word` as written in the script (upper case), `glyph` the emoji."""

    word: str
    glyph: str

    @property
    def where(self) -> str:
        """sky, afloat or ground: where the board puts it."""
        if self.glyph in SKY:
            return "sky"
        return "afloat" if self.glyph in AFLOAT else "ground"


def find_pictograms(text: str, limit: int = 4) -> list[Pictogram]:
    """The things `text` names, in the order the text names them, one per glyph."""
    upper = text.upper()
    hits: list[tuple[int, Pictogram]] = []
    glyphs: set[str] = set()
    for pattern, glyph in _COMPILED:
        m = pattern.search(upper)
        if m and glyph not in glyphs:
            glyphs.add(glyph)
            hits.append((m.start(), Pictogram(m.group(0), glyph)))
    hits.sort(key=lambda h: h[0])
    return [p for _, p in hits[:limit]]


def emoji_font_path() -> Path | None:
    """The colour emoji font in use, or None when none is installed."""
    configured = os.environ.get("PREVIS_EMOJI_FONT", "")
    for candidate in (configured, *_FONT_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@lru_cache(maxsize=4)
def _emoji_font(path: str) -> ImageFont.FreeTypeFont | None:
    try:
        return ImageFont.truetype(path, _STRIKE)
    except OSError:
        return None


@lru_cache(maxsize=256)
def _glyph(glyph: str) -> Image.Image | None:
    path = emoji_font_path()
    font = _emoji_font(str(path)) if path else None
    if font is None:
        return None
    img = Image.new("RGBA", (_STRIKE * 2, _STRIKE * 2), (0, 0, 0, 0))
    ImageDraw.Draw(img).text((8, 8), glyph, font=font, embedded_color=True)
    box = img.getbbox()
    return img.crop(box) if box else None


@lru_cache(maxsize=512)
def pictogram_image(glyph: str, word: str, size: int) -> Image.Image:
    """The pictogram `size` pixels tall (RGBA). Without an emoji font: a card with the
    word on it."""
    size = max(8, size)
    art = _glyph(glyph)
    if art is not None:
        w = max(1, round(art.width * size / art.height))
        return art.resize((w, size), Image.Resampling.LANCZOS)
    card = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(card)
    d.rounded_rectangle([0, 0, size - 1, size - 1], radius=size // 6, fill=(245, 240, 225, 230))
    font = ImageFont.load_default(size=max(8, size // 5))
    d.text((size // 2, size // 2), word[:10], font=font, fill=(40, 40, 40, 255), anchor="mm")
    return card
