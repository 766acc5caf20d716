"""Webhook deliveries: every event sent to each endpoint, its state, attempts and last
answer (the endpoint's host only: a webhook URL may carry a token)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Footer, Static

from storyworld.tui import format as fmt
from storyworld.tui.data import Snapshot
from storyworld.tui.screens import LiveScreen, bindings
from storyworld.tui.widgets import KeyedTable, Row, set_content

__all__ = ["WebhooksScreen"]

COLUMNS = [
    ("event", "event", 18),
    ("id", "id", 12),
    ("endpoint", "host", 22),
    ("state", "state", 11),
    ("attempts", "attempts", 8),
    ("last answer", "answer", 40),
    ("created", "created", 8),
]
_TONE = {"delivered": "success", "pending": "warning", "failed": "error"}
_GLYPH = {"delivered": "✓", "pending": "…", "failed": "✗"}


def _row(d: dict[str, Any]) -> Row:
    answer = f"HTTP {d['last_status']}" if d.get("last_status") else (d.get("last_error") or "")
    return Row(
        f"{d['event_id']}|{d['host']}",
        (
            (d["event"], "plain"),
            (d["event_id"], "muted"),
            (d["host"], "muted"),
            (f"{_GLYPH.get(d['state'], '?')} {d['state']}", _TONE.get(d["state"], "plain")),
            (str(d["attempts"]), "plain"),
            (answer, "error" if d["state"] != "delivered" and answer else "muted"),
            (fmt.clock_time(d["created_at"]), "muted"),
        ),
    )


class WebhooksScreen(LiveScreen):
    SCREEN_ID = "webhooks"
    BINDINGS = bindings("webhooks")

    def compose(self) -> ComposeResult:
        yield Static(Text("Webhook deliveries: loading…"), id="hooks-header")
        yield KeyedTable(COLUMNS, id="hooks", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#hooks").border_title = "Webhook deliveries"
        self.query_one("#hooks", KeyedTable).focus()
        self.load()

    def show(self, snap: Snapshot, now: float) -> None:
        if snap is not getattr(self, "_last_snap", None):
            self._last_snap = snap
            self.load()

    def load(self) -> None:
        source = self.console.source
        self.console.run_io("Read webhook deliveries", source.webhook_deliveries, self._loaded,
                            group="hooks")  # fmt: skip

    def _loaded(self, rows: list[dict[str, Any]]) -> None:
        if not self.is_mounted:
            return
        tones = self.console.tones
        counts: dict[str, int] = {}
        for d in rows:
            counts[d["state"]] = counts.get(d["state"], 0) + 1
        header = Text()
        header.append(f"{len(rows)} newest deliveries", style="bold")
        header.append("  " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
                      style=tones.muted)  # fmt: skip
        if not rows:
            header.append("  (none: set WEBHOOK_URL to send events)", style=tones.muted)
        set_content(self.query_one("#hooks-header", Static), header)
        self.query_one("#hooks", KeyedTable).sync((_row(d) for d in rows), tones)
