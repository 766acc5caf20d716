"""Words, numbers and glyphs for the console. Plain strings; colours come from the theme.

Every state has a glyph and a word, so nothing is told by colour alone (NO_COLOR works).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

__all__ = [
    "BEAT_STATES",
    "EPISODE_STATES",
    "WORKER_STATES",
    "age",
    "bar",
    "clock_time",
    "count",
    "duration",
    "size",
    "speed",
    "state_label",
]

# state -> (glyph, tone); tone names a theme variable: success, warning, error, accent, muted.
WORKER_STATES = {
    "idle": ("○", "muted"),
    "busy": ("●", "success"),
    "draining": ("◐", "accent"),
    "stale": ("⚠", "warning"),
    "gone": ("✗", "error"),
}
EPISODE_STATES = {
    "planned": ("◇", "muted"),
    "rendering": ("▶", "accent"),
    "awaiting_approval": ("⏸", "warning"),
    "composing": ("◆", "accent"),
    "completed": ("✓", "success"),
    "failed": ("✗", "error"),
    "cancelled": ("⊘", "warning"),
}
BEAT_STATES = {
    "pending": ("·", "muted"),
    "queued": ("◇", "muted"),
    "rendering": ("▶", "accent"),
    "done": ("✓", "success"),
    "failed": ("✗", "error"),
    "cancelled": ("⊘", "warning"),
}


def state_label(state: str, table: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """('✓ done', 'success') for a state of `table`."""
    glyph, tone = table.get(state, ("?", "muted"))
    return f"{glyph} {state}", tone


def age(seconds: float | None) -> str:
    """4 s, 12 min, 3 h, 2 d."""
    if seconds is None:
        return "–"
    s = max(0.0, seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 36 * 3600:
        return f"{s / 3600:.0f} h"
    return f"{s / 86400:.0f} d"


def duration(seconds: float | None) -> str:
    """1.4 s, 2 m 05 s, 1 h 02 m."""
    if seconds is None:
        return "–"
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} m {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} m"


def size(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"


def speed(bytes_per_s: float | None) -> str:
    if not bytes_per_s:
        return "–"
    return f"{size(bytes_per_s)}/s"


def count(n: float | None) -> str:
    """12,345 (or – for unknown)."""
    if n is None:
        return "–"
    return f"{n:,.0f}"


def bar(fraction: float | None, width: int = 10) -> str:
    """██████░░░░ for 0.6; blank when unknown."""
    if fraction is None:
        return " " * width
    f = min(1.0, max(0.0, fraction))
    full = math.floor(f * width + 1e-9)
    return "█" * full + "░" * (width - full)


def clock_time(epoch: float | None) -> str:
    """HH:MM:SS in local time."""
    if not epoch:
        return "–"
    return time.strftime("%H:%M:%S", time.localtime(epoch))


_SPARKS = "▁▂▃▄▅▆▇█"


def spark(values: Sequence[float]) -> str:
    """Values as one line of block characters (0 is the lowest block, the max the highest)."""
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return _SPARKS[0] * len(values)
    return "".join(_SPARKS[min(7, int(v / top * 7.999))] for v in values)
