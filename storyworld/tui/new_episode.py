"""New episode: title, script (plain text or Fountain), backend, a preview of the planned
beats, submit."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.widgets import Button, Footer, Input, Label, Select, Static, TextArea

from storyworld.engine.planner import ScriptError, ScriptPlan
from storyworld.tui.data import Snapshot
from storyworld.tui.screens import LiveScreen, bindings
from storyworld.tui.widgets import KeyedTable, Row

__all__ = ["NewEpisodeScreen"]

PLAN_COLUMNS = [
    ("#", "index", 3),
    ("secs", "secs", 5),
    ("scene", "scene", 12),
    ("beat", "text", 28),
    ("captions", "captions", 14),
]
FORMATS = [("guess from the text", "auto"), ("plain text", "plain"), ("Fountain", "fountain")]


class NewEpisodeScreen(LiveScreen):
    SCREEN_ID = "new"
    BINDINGS = bindings("new")

    def __init__(self, *, example: bool = False) -> None:
        super().__init__()
        self.start_with_example = example
        self.plan: ScriptPlan | None = None
        self.plan_error: str | None = None

    def compose(self) -> ComposeResult:
        c = self.console
        with Horizontal(id="new-form"):
            with Vertical(id="new-left"):
                with Horizontal(classes="field-row"):
                    yield Label("Title", classes="field-label")
                    yield Input(placeholder="from the script's “# Title” line", id="title")
                with Horizontal(classes="field-row"):
                    yield Label("Format", classes="field-label")
                    yield Select(FORMATS, value="auto", allow_blank=False, id="format")
                    yield Label("Backend", classes="field-label")
                    yield Select(
                        [(b, b) for b in c.backends],
                        value=c.default_backend,
                        allow_blank=False,
                        id="backend",
                    )
                yield TextArea(
                    "", id="script", soft_wrap=True, show_line_numbers=True, tab_behavior="focus"
                )
                with Horizontal(classes="buttons"):
                    yield Button("Load example (ctrl+l)", id="example")
                    yield Button("Submit (ctrl+s)", id="submit", variant="primary")
                    yield Button("Cancel (esc)", id="cancel")
            with Vertical(id="new-right", classes="panel"):
                yield Static(id="plan-summary")
                yield KeyedTable(PLAN_COLUMNS, id="plan")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#new-right").border_title = "Planned beats"
        area = self.query_one("#script", TextArea)
        area.border_title = escape("Script: one paragraph per beat, [4s] sets a duration")
        if self.console.steady:
            area.cursor_blink = False
            self.query_one("#title", Input).cursor_blink = False
        if self.start_with_example:
            self.action_load_example()
        area.focus()
        self._replan()

    def show(self, snap: Snapshot, now: float) -> None:
        pass  # nothing live here

    # ------------------------------------------------------------------ planning
    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self._replan()

    def on_select_changed(self, event: Select.Changed) -> None:
        self._replan()

    def _format(self) -> str | None:
        value = self.query_one("#format", Select).value
        return None if value in ("auto", Select.BLANK) else str(value)

    def _replan(self) -> None:
        text = self.query_one("#script", TextArea).text
        summary = self.query_one("#plan-summary", Static)
        tones = self.console.tones
        self.plan, self.plan_error = None, None
        if not text.strip():
            summary.update(Text("Write a script, or press ctrl+l for the example.", style="dim"))
            self.query_one("#plan", KeyedTable).sync([], tones)
            return
        try:
            self.plan = self.console.plan(text, self._format())
        except ScriptError as e:
            self.plan_error = str(e)
            summary.update(Text(f"✗ {e}", style=tones.error))
            self.query_one("#plan", KeyedTable).sync([], tones)
            return
        p = self.plan
        t = Text()
        t.append(f"✓ {len(p.beats)} beats, {p.total_seconds:g} s", style=tones.success)
        t.append(f"  ({p.format})")
        if p.title:
            t.append(f"\n{p.title}", style="bold")
        summary.update(t)
        rows = [
            Row(
                str(b.index),
                (
                    (str(b.index + 1), "plain"),
                    (f"{b.duration_s:g}", "plain"),
                    (b.scene, "muted"),
                    (b.text, "plain"),
                    (" / ".join(b.captions), "muted"),
                ),
            )
            for b in p.beats
        ]
        self.query_one("#plan", KeyedTable).sync(rows, tones)

    # ------------------------------------------------------------------ actions
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "example":
            self.action_load_example()
        elif event.button.id == "submit":
            self.action_submit()
        elif event.button.id == "cancel":
            self.action_back()

    def action_load_example(self) -> None:
        self.query_one("#script", TextArea).load_text(self.console.example_script)
        self.query_one("#title", Input).value = ""
        self._replan()

    def action_submit(self) -> None:
        self._replan()
        if self.plan is None:
            self.notify(self.plan_error or "The script is empty", severity="error", timeout=6)
            return
        backend = str(self.query_one("#backend", Select).value)
        self.console.create_episode(
            script=self.query_one("#script", TextArea).text,
            title=self.query_one("#title", Input).value,
            backend=backend,
            fmt=self._format(),
        )
