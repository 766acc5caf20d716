"""A keyframe drawn in the terminal with half blocks: each cell shows two pixels, the upper
one as the foreground of "▀" and the lower one as its background."""

from __future__ import annotations

from PIL import Image
from rich.color import Color
from rich.style import Style
from rich.text import Text

__all__ = ["fit", "half_blocks"]


def fit(image: Image.Image, max_cells_w: int, max_cells_h: int) -> tuple[int, int]:
    """Pixel size (w, h) that fits `max_cells_w` x `max_cells_h` cells, keeping the aspect
    (a cell is about twice as tall as wide, and holds two pixels vertically)."""
    w, h = image.size
    if w <= 0 or h <= 0:
        return 1, 2
    scale = min(max_cells_w / w, (max_cells_h * 2) / h)
    pw = max(1, round(w * scale))
    ph = max(2, round(h * scale))
    return pw, ph + (ph % 2)


def half_blocks(image: Image.Image, max_cells_w: int = 48, max_cells_h: int = 14) -> Text:
    """The image as lines of "▀" with true colours."""
    pw, ph = fit(image, max_cells_w, max_cells_h)
    img = image.convert("RGB").resize((pw, ph), Image.Resampling.BILINEAR)
    px = img.load()
    assert px is not None
    text = Text(no_wrap=True, overflow="crop")
    cache: dict[tuple[tuple[int, int, int], tuple[int, int, int]], Style] = {}
    for y in range(0, ph, 2):
        for x in range(pw):
            top, bottom = px[x, y], px[x, y + 1]
            key = (top, bottom)  # type: ignore[assignment]
            style = cache.get(key)  # type: ignore[arg-type]
            if style is None:
                style = Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom))  # type: ignore[misc]
                cache[key] = style  # type: ignore[index]
            text.append("▀", style)
        if y + 2 < ph:
            text.append("\n")
    return text
