"""The keyframe grid of an episode: every beat's keyframe drawn in the terminal with its
characters, consistency score and approval; approve one or all, re-roll one.

Keys come from the command registry (`commands.py`): ←/→ move, `a` approves the selected
beat, `A` approves every beat, `r` draws the selected beat's keyframe again.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Footer, Static

from storyworld.tui.data import Snapshot
from storyworld.tui.episode import header_text
from storyworld.tui.keyframe import half_blocks
from storyworld.tui.screens import LiveScreen, bindings
from storyworld.tui.widgets import set_content

__all__ = ["KeyframesScreen", "cell_caption"]

COLUMNS = 3


def cell_caption(beat: dict[str, Any]) -> Text:
    """The words under a keyframe: beat, approval (a word and a glyph, never colour
    alone), score and characters."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"Beat {beat['index'] + 1}  ", style="bold")
    stage = beat.get("stage")
    if beat.get("reused_from"):
        t.append("↺ reused")
    elif stage == "approval":
        t.append("⏸ awaiting approval")
    elif stage == "keyframe":
        t.append("… drawing")
    elif beat.get("approved"):
        t.append("✓ approved")
    score = beat.get("score")
    t.append(f"\nscore {score:.3f}" if isinstance(score, float) else "\nscore –")
    if beat.get("flagged"):
        t.append("  ⚑ below CONSISTENCY_MIN")
    chars = ", ".join(beat.get("characters") or []) or "no characters"
    t.append(f"\n{chars}")
    return t


class KeyframesScreen(LiveScreen):
    SCREEN_ID = "keyframes"
    BINDINGS = bindings("keyframes")
    DEFAULT_CSS = """
    KeyframesScreen #keyframe-grid { grid-size: 3; grid-gutter: 0 1; height: 1fr; }
    KeyframesScreen .keyframe-cell { border: round $panel; height: 18; padding: 0 1; }
    KeyframesScreen .keyframe-cell.-selected { border: double $accent; }
    """

    def __init__(self, episode_id: str) -> None:
        super().__init__()
        self.episode_id = episode_id
        self.detail: dict[str, Any] | None = None
        self.selected = 0
        self._images: dict[str, Text] = {}
        self._cells: list[Static] = []

    def compose(self) -> ComposeResult:
        yield Static(Text(f"Keyframes of {self.episode_id}: loading…"), id="keyframes-header")
        yield Grid(id="keyframe-grid")
        yield Footer()

    def on_mount(self) -> None:
        self.console.source.watch_episode(self.episode_id)

    def on_unmount(self) -> None:
        self.console.source.watch_episode(None)

    # ------------------------------------------------------------------ rendering
    def show(self, snap: Snapshot, now: float) -> None:
        d = snap.episode
        if not d or not (d["id"] == self.episode_id or d["id"].startswith(self.episode_id)):
            return
        self.episode_id = d["id"]
        self.detail = d
        set_content(
            self.query_one("#keyframes-header", Static),
            header_text(d, now, self.console.tones),
            layout=True,
        )
        grid = self.query_one("#keyframe-grid", Grid)
        beats = d["beats"]
        while len(self._cells) < len(beats):
            cell = Static(classes="keyframe-cell", id=f"keyframe-{len(self._cells)}")
            self._cells.append(cell)
            grid.mount(cell)
        self.selected = min(self.selected, max(0, len(beats) - 1))
        for i, beat in enumerate(beats):
            self._draw(i, beat)

    def _draw(self, i: int, beat: dict[str, Any]) -> None:
        cell = self._cells[i]
        cell.set_class(i == self.selected, "-selected")
        key = beat.get("keyframe")
        body = Text()
        if key and key in self._images:
            body.append_text(self._images[key])
        elif key:
            body.append("loading keyframe…\n" * 1, style="dim")
            self._fetch(key)
        else:
            body.append("no keyframe yet\n", style="dim")
        body.append("\n")
        body.append_text(cell_caption(beat))
        set_content(cell, body)

    def _fetch(self, key: str) -> None:
        def fetch() -> Text:
            return half_blocks(self.console.source.keyframe(key), max_cells_w=40, max_cells_h=10)

        def done(image: Text) -> None:
            self._images[key] = image
            self.console.render_snapshot()

        self.console.run_io("Keyframe", fetch, done, group=f"keyframe-{key}", quiet=True)

    def _beat(self) -> dict[str, Any] | None:
        if not self.detail or not self.detail["beats"]:
            return None
        return self.detail["beats"][self.selected]

    # ------------------------------------------------------------------ actions
    def _move(self, step: int) -> None:
        if not self.detail:
            return
        self.selected = (self.selected + step) % max(1, len(self.detail["beats"]))
        self.console.render_snapshot()

    def action_next_keyframe(self) -> None:
        self._move(1)

    def action_previous_keyframe(self) -> None:
        self._move(-1)

    def action_next_keyframe_row(self) -> None:
        self._move(COLUMNS)

    def action_previous_keyframe_row(self) -> None:
        self._move(-COLUMNS)

    def _do(self, what: str, fn: Any, said: str) -> None:
        actions = self.console.actions
        if actions is None:
            self.notify("Read-only: no actions", severity="warning", timeout=3)
            return

        def done(_detail: dict[str, Any]) -> None:
            self.console.source.refresh()
            self.notify(said, timeout=4)

        self.console.run_io(what, lambda: fn(actions), done)

    def action_approve_keyframe(self) -> None:
        beat = self._beat()
        if beat is None:
            return
        n = beat["index"] + 1
        self._do(
            "Approve", lambda a: a.approve(self.episode_id, n), f"Beat {n}'s keyframe approved"
        )

    def action_approve_all_keyframes(self) -> None:
        self._do("Approve", lambda a: a.approve(self.episode_id, None), "Every keyframe approved")

    def action_reroll_keyframe(self) -> None:
        beat = self._beat()
        if beat is None:
            return
        n = beat["index"] + 1
        self._do(
            "Re-roll", lambda a: a.reroll(self.episode_id, n), f"Beat {n}'s keyframe re-rolled"
        )
