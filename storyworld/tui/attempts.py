"""Compare the attempts of one beat side by side: each attempt's keyframe (half blocks),
state, worker, render time and error, in columns."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from storyworld.tui import format as fmt
from storyworld.tui.keyframe import half_blocks

__all__ = ["AttemptsScreen", "attempt_caption"]


def attempt_caption(job: dict[str, Any]) -> Text:
    t = Text()
    t.append(f"attempt {job['attempt']}  ", style="bold")
    t.append(f"{job['state']}\n")
    t.append(f"{job.get('backend') or ''} on {job.get('worker') or '–'}\n")
    if job.get("render_s") is not None:
        t.append(f"render {fmt.duration(job['render_s'])}\n")
    if job.get("error"):
        t.append(f"{job['error'].splitlines()[0][:120]}\n", style="red")
    return t


class AttemptsScreen(ModalScreen[None]):
    """Every attempt of a beat, side by side; esc closes."""

    BINDINGS = [Binding("escape,q", "close", "Close", show=False)]

    def __init__(self, detail: dict[str, Any], beat: dict[str, Any]) -> None:
        super().__init__(classes="dialog-screen")
        self.detail = detail
        self.beat = beat

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog attempts"):
            yield Label(Text(f"Beat {self.beat['index'] + 1}: {self.beat['text'][:80]}",
                             style="bold"))  # fmt: skip
            with Horizontal(id="attempts-row"):
                for job in self.beat.get("jobs") or []:
                    yield Static(attempt_caption(job), id=f"attempt-{job['attempt']}",
                                 classes="attempt")  # fmt: skip
            yield Label(Text("esc closes", style="dim"))

    def on_mount(self) -> None:
        frames = {a["job_id"]: a["key"] for a in self.detail.get("artifacts", [])
                  if a["kind"] == "keyframe" and a["beat_id"] == self.beat["id"]}  # fmt: skip
        app: Any = self.app
        width = max(16, (self.app.size.width - 10) // max(1, len(self.beat.get("jobs") or [1])))
        for job in self.beat.get("jobs") or []:
            key = frames.get(job["job_id"])
            if key is None:
                continue

            def done(image: Any, job: dict[str, Any] = job) -> None:
                if not self.is_mounted:
                    return
                t = attempt_caption(job)
                t.append("\n")
                t.append_text(half_blocks(image, min(width - 2, 48), 12))
                self.query_one(f"#attempt-{job['attempt']}", Static).update(t)

            app.run_io("Read keyframe", lambda key=key: app.source.keyframe(key), done,
                       group=f"attempt-{job['attempt']}", quiet=True)  # fmt: skip

    def action_close(self) -> None:
        self.dismiss(None)
