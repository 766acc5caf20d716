"""Dead letters: reason and payload of each; requeue or drop, with confirmation."""

from __future__ import annotations

import json

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from storyworld.tui import format as fmt
from storyworld.tui.data import DeadLetterView, Snapshot
from storyworld.tui.screens import LiveScreen, bindings
from storyworld.tui.widgets import KeyedTable, Row, set_content

__all__ = ["DeadLettersScreen", "pretty_payload"]

DEAD_COLUMNS = [
    ("job", "job", 22),
    ("when", "at", 8),
    ("worker", "worker", 14),
    ("reason", "reason", 80),
]


def pretty_payload(payload: str) -> str:
    try:
        return json.dumps(json.loads(payload), indent=2, sort_keys=True)
    except (ValueError, TypeError):
        return payload


class DeadLettersScreen(LiveScreen):
    SCREEN_ID = "dead"
    BINDINGS = bindings("dead")

    def __init__(self) -> None:
        super().__init__()
        self.letters: tuple[DeadLetterView, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("Dead letters: loading…"), id="dead-header")
        yield KeyedTable(DEAD_COLUMNS, id="dead", classes="panel")
        with VerticalScroll(id="payload-box", classes="panel"):
            yield Static(id="payload")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#dead").border_title = "Dead letters"
        self.query_one("#payload-box").border_title = "Reason and payload"
        self.query_one("#dead", KeyedTable).focus()
        self.console.source.watch_dead_letters(True)

    def on_unmount(self) -> None:
        self.console.source.watch_dead_letters(False)

    def show(self, snap: Snapshot, now: float) -> None:
        if snap.dead_letters is None:
            return
        self.letters = snap.dead_letters
        tones = self.console.tones
        header = Text()
        header.append(f"{len(self.letters)} dead letter(s)", style="bold")
        header.append(
            "  jobs that failed on every delivery or could not be read; "
            "requeue sends one again, drop discards it",
            style=tones.muted,
        )
        set_content(self.query_one("#dead-header", Static), header)
        rows = [
            Row(
                d.key or f"corrupt-{i}",
                (
                    (d.job_id or f"(unreadable) {d.ref}", "plain" if d.job_id else "warning"),
                    (fmt.clock_time(d.at), "muted"),
                    (d.worker or "–", "muted"),
                    (d.reason.splitlines()[0][:200] if d.reason else "", "error"),
                ),
            )
            for i, d in enumerate(self.letters)
        ]
        self.query_one("#dead", KeyedTable).sync(rows, tones)
        self._show_payload()

    def _letter(self) -> DeadLetterView | None:
        key = self.query_one("#dead", KeyedTable).highlighted_key
        if key is None or not self.letters:
            return None
        return next((d for d in self.letters if d.key == key), None)

    def _show_payload(self) -> None:
        d = self._letter()
        box = self.query_one("#payload", Static)
        if d is None:
            set_content(box, Text("No dead letters." if not self.letters else "", style="dim"))
            return
        t = Text()
        t.append("reason: ", style="bold")
        t.append(f"{d.reason}\n\n")
        t.append("payload:\n", style="bold")
        t.append(pretty_payload(d.payload))
        set_content(box, t, layout=True)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_payload()

    # ------------------------------------------------------------------ actions
    def _with_letter(self, verb: str, then: object) -> None:
        d = self._letter()
        if d is None:
            self.notify(f"No dead letter to {verb}", severity="warning", timeout=3)
            return
        name = d.job_id or f"{d.ref} (unreadable: no job id)"
        self.confirm(
            f"{verb.capitalize()} dead letter {name}?",
            lambda: then(d.key),
            yes=verb.capitalize(),
        )  # type: ignore[operator]

    def action_requeue(self) -> None:
        self._with_letter("requeue", lambda job: self.console.requeue([job]))

    def action_drop(self) -> None:
        self._with_letter("drop", lambda job: self.console.drop([job]))

    def action_requeue_all(self) -> None:
        n = len(self.letters or ())
        self.confirm(
            f"Requeue all {n} dead letters?", lambda: self.console.requeue(None), yes="Requeue all"
        )

    def action_drop_all(self) -> None:
        n = len(self.letters or ())
        self.confirm(f"Drop all {n} dead letters?", lambda: self.console.drop(None), yes="Drop all")

    def action_toggle_pause(self) -> None:
        self.console.toggle_pause()
