"""The base of the console's screens, and its modals: confirmation, help, stopping."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Label, Static

from storyworld.tui.commands import bindings_for, commands_for, mutating_actions
from storyworld.tui.data import Snapshot

if TYPE_CHECKING:
    from storyworld.tui.app import ConsoleApp

__all__ = ["ConfirmScreen", "HelpScreen", "LiveScreen", "StoppingScreen"]

_MUTATING = mutating_actions()


class LiveScreen(Screen[None]):
    """A screen that shows snapshots. The app calls `show()` (inside batch_update) when a
    snapshot arrives and once a second for clock-dependent cells; a screen under a modal
    is not redrawn until it is back on top."""

    SCREEN_ID = ""
    #: True once composed and mounted: only then does the app show snapshots here.
    ready = False

    def on_mount(self) -> None:
        # Textual calls this and the subclass's on_mount (handlers run along the MRO).
        self.ready = True

    @property
    def console(self) -> ConsoleApp:
        return self.app  # type: ignore[return-value]

    def show(self, snap: Snapshot, now: float) -> None:  # pragma: no cover - abstract
        pass

    def on_screen_resume(self) -> None:
        self.console.render_snapshot()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in _MUTATING and self.console.read_only)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.SCREEN_ID, read_only=self.console.read_only))

    def action_back(self) -> None:
        self.dismiss(None)

    def action_dead_letters(self) -> None:
        self.console.open_dead_letters()

    def action_open_jobs(self) -> None:
        self.console.open_jobs()

    def action_open_webhooks(self) -> None:
        self.console.open_webhooks()

    def action_open_history(self) -> None:
        self.console.open_history()

    def action_open_fleet(self) -> None:
        self.console.open_fleet()

    def action_quit(self) -> None:
        self.console.request_quit()

    def action_refresh(self) -> None:
        self.console.source.refresh()
        self.notify("Reading Redis and the database now", timeout=2)

    def confirm(self, question: str, then: Any, *, yes: str = "Yes") -> None:
        """Ask `question`; call `then()` only on yes."""

        def answered(ok: bool | None) -> None:
            if ok:
                then()

        self.app.push_screen(ConfirmScreen(question, yes=yes), answered)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question for destructive actions."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", show=False),
        Binding("n,escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str, *, yes: str = "Yes") -> None:
        super().__init__(classes="dialog-screen")
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.question), id="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, ok: bool) -> None:
        self.dismiss(ok)


class HelpScreen(ModalScreen[None]):
    """Keys and actions of the screen it was opened from."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", show=False)]

    def __init__(self, screen_id: str, *, read_only: bool = False) -> None:
        super().__init__(classes="dialog-screen")
        self.screen_id = screen_id
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        lines = Text()
        lines.append("Keys\n\n", style="bold")
        for c in commands_for(self.screen_id, read_only=self.read_only):
            key = c.key_display or c.key
            lines.append(f"{key:>8}  ", style="bold")
            lines.append(f"{c.title}", style="bold")
            lines.append(f"  {c.help}\n")
        lines.append(f"{'ctrl+p':>8}  ", style="bold")
        lines.append("Command palette", style="bold")
        lines.append("  every action, searchable\n")
        if self.read_only:
            lines.append("\nRead-only: this console shows everything and changes nothing.\n")
        with VerticalScroll(classes="dialog help"):
            yield Static(lines, id="help-text")
            yield Label(Text("esc closes", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)


class StoppingScreen(ModalScreen[None]):
    """Shown while the console stops the engine and the local workers."""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Stopping the engine and local workers…")

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")


def bindings(screen_id: str) -> list[Binding]:
    return bindings_for(screen_id)
