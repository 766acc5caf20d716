"""History: queue depth, throughput, failure rate and render time p50/p95 per backend over
the last hour or day. Read from the database only (storyworld.engine.history): it costs no
Redis command, so it stays on without touching the metered budget."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Footer, Static

from storyworld.engine.history import WINDOWS, BackendHistory
from storyworld.tui import format as fmt
from storyworld.tui.data import Snapshot
from storyworld.tui.screens import LiveScreen, bindings
from storyworld.tui.widgets import KeyedTable, Row, set_content

__all__ = ["HistoryScreen", "history_row"]

COLUMNS = [
    ("backend", "backend", 12),
    ("waiting (over the window)", "depth", 32),
    ("now", "now", 5),
    ("done", "done", 7),
    ("failed", "failed", 7),
    ("failure rate", "rate", 12),
    ("render p50", "p50", 10),
    ("render p95", "p95", 10),
    ("throughput", "tput", 30),
]


def history_row(h: BackendHistory) -> Row:
    rate = h.failure_rate
    return Row(
        h.backend,
        (
            (h.backend, "plain"),
            (fmt.spark(h.depth), "accent"),
            (str(h.depth[-1] if h.depth else 0), "plain"),
            (str(sum(h.done)), "success" if sum(h.done) else "muted"),
            (str(sum(h.failed)), "error" if sum(h.failed) else "muted"),
            ("–" if rate is None else f"{rate * 100:.1f}%", "error" if rate else "muted"),
            (fmt.duration(h.render_p50_s) if h.render_p50_s is not None else "–", "plain"),
            (fmt.duration(h.render_p95_s) if h.render_p95_s is not None else "–", "plain"),
            (fmt.spark(h.done), "success"),
        ),
    )


class HistoryScreen(LiveScreen):
    SCREEN_ID = "history"
    BINDINGS = bindings("history")

    def __init__(self) -> None:
        super().__init__()
        self.window = "hour"

    def compose(self) -> ComposeResult:
        yield Static(Text("History: loading…"), id="history-header")
        yield KeyedTable(COLUMNS, id="history", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#history").border_title = "Per backend"
        self.query_one("#history", KeyedTable).focus()
        self.load()

    def show(self, snap: Snapshot, now: float) -> None:
        if snap is not getattr(self, "_last_snap", None):
            self._last_snap = snap
            self.load()

    def load(self) -> None:
        source, window = self.console.source, self.window
        self.console.run_io("Read history", lambda: source.history(WINDOWS[window]),
                            self._loaded, group="history")  # fmt: skip

    def _loaded(self, h: dict[str, Any]) -> None:
        if not self.is_mounted:
            return
        tones = self.console.tones
        header = Text()
        header.append(f"Last {self.window}", style="bold")
        header.append(
            f"  {len(h['backends'])} backend(s) · buckets of {fmt.duration(h['bucket_s'])}"
            " · from the database: 0 Redis commands · t: hour/day",
            style=tones.muted,
        )
        set_content(self.query_one("#history-header", Static), header)
        rows = [history_row(b) for b in h["backends"].values()]
        if len(rows) > 1:
            rows.append(history_row(h["total"]))
        self.query_one("#history", KeyedTable).sync(rows, tones)

    def action_toggle_window(self) -> None:
        self.window = "day" if self.window == "hour" else "hour"
        self.load()
