"""Keyframes as real images where the terminal can show them (kitty's graphics protocol or
sixel, through textual-image), half blocks everywhere else.

textual-image asks the terminal what it supports when it is imported, which is only
possible before Textual takes the terminal over: `probe()` runs once at start-up (the
console's main), and the screens ask `graphics()` afterwards."""

from __future__ import annotations

from typing import Any

__all__ = ["graphics", "probe"]

_widget: Any = None
_probed = False


def probe() -> str:
    """Find out (once) whether real images can be drawn; returns the method's name."""
    global _widget, _probed
    if _probed:
        return "graphics" if _widget is not None else "half blocks"
    _probed = True
    try:
        from textual_image import renderable
        from textual_image.renderable import sixel, tgp
        from textual_image.widget import Image
    except Exception:  # not installed, or no terminal to ask
        return "half blocks"
    if renderable.Image in (sixel.Image, tgp.Image):
        _widget = Image
        return "kitty graphics" if renderable.Image is tgp.Image else "sixel"
    return "half blocks"


def graphics() -> Any:
    """textual-image's Image widget when the terminal shows real images, else None."""
    return _widget
