"""Jobs: every job by state, filtered and searched on the database side, one page at a time;
a detail pane (payload, attempts, errors, timings, log lines); bulk retry / requeue / drop
of what the filter selects, behind a confirmation that says how many jobs it touches."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Input, Static

from storyworld.config import ConfigError
from storyworld.engine.jobs import BULK_ACTIONS, JobQuery, parse_query
from storyworld.tui import format as fmt
from storyworld.tui.data import Snapshot
from storyworld.tui.screens import LiveScreen, bindings
from storyworld.tui.widgets import KeyedTable, Row, set_content

__all__ = ["PAGE", "JobsScreen"]

PAGE = 50

JOB_COLUMNS = [
    ("job", "job", 24),
    ("state", "state", 10),
    ("backend", "backend", 11),
    ("worker", "worker", 16),
    ("queued", "queued", 8),
    ("render", "render", 7),
    ("prompt / error", "what", 60),
]

_TONE = {
    "waiting": "accent",
    "in_flight": "accent",
    "dead": "error",
    "done": "success",
    "failed": "error",
    "cancelled": "muted",
}


def _job_row(j: dict[str, Any]) -> Row:
    what = j.get("error") or j.get("prompt") or ""
    render = f"{j['render_s']:.1f}s" if j.get("render_s") is not None else "–"
    return Row(
        j["job_id"],
        (
            (j["job_id"], "plain"),
            (j["state"].replace("_", " "), _TONE.get(j["state"], "plain")),
            (j.get("backend") or "", "muted"),
            (j.get("worker") or "–", "muted"),
            (fmt.clock_time(j["queued_at"]) if j.get("queued_at") else "–", "muted"),
            (render, "plain"),
            (what.splitlines()[0][:200] if what else "", "error" if j.get("error") else "plain"),
        ),
    )


def detail_text(d: dict[str, Any]) -> Text:
    """The detail pane: timings, attempts, error, history, log lines, payload."""
    t = Text()
    t.append(f"{d['job_id']}\n", style="bold")
    beat = d.get("beat_index")
    t.append(
        f"{d['state'].replace('_', ' ')} · {d.get('backend')} · episode {d['episode_id']}"
        f"{f' beat {beat + 1}' if beat is not None else ''} · attempt {d['attempt']}\n"
    )
    for label, key in (("queued", "queued_at"), ("started", "started_at"),
                       ("finished", "finished_at")):  # fmt: skip
        if d.get(key):
            t.append(f"{label} {fmt.clock_time(d[key])}  ")
    if d.get("render_s") is not None:
        t.append(f"render {d['render_s']:.1f} s")
    t.append("\n")
    if d.get("worker"):
        t.append(f"worker {d['worker']}\n")
    if d.get("error"):
        t.append("error: ", style="bold")
        t.append(f"{d['error']} ({d.get('error_kind') or '?'})\n")
    if len(d.get("attempts") or ()) > 1:
        t.append("\nattempts\n", style="bold")
        for a in d["attempts"]:
            t.append(
                f"  {a['attempt']}: {a['state'].replace('_', ' ')} on {a.get('worker') or '–'}"
                f"{'  ' + a['error'].splitlines()[0][:80] if a.get('error') else ''}\n"
            )
    if d.get("history"):
        t.append("\nhistory\n", style="bold")
        for h in d["history"]:
            t.append(f"  {fmt.clock_time(h['at'])} {h['from'] or '·'} → {h['to']}: {h['reason']}\n")
    if d.get("log"):
        t.append("\nlog\n", style="bold")
        for line in d["log"][-30:]:
            t.append(f"  {line}\n")
    t.append("\npayload\n", style="bold")
    try:
        t.append(json.dumps(json.loads(d.get("payload") or ""), indent=2, sort_keys=True))
    except ValueError:
        t.append(d.get("payload") or "")
    return t


class JobsScreen(LiveScreen):
    SCREEN_ID = "jobs"
    BINDINGS = bindings("jobs")

    def __init__(self, query: str = "") -> None:
        super().__init__()
        self.query_text = query
        self.jobs_query = JobQuery()
        self.page_offset = 0
        self.total: int | None = None
        self.page: list[dict[str, Any]] = []
        self._detail_for: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("Jobs: loading…"), id="jobs-header")
        yield Input(
            value=self.query_text,
            placeholder="filter: state:waiting|in_flight|dead|done|failed backend: worker: "
            "episode: and words to search ids and prompts (enter applies)",
            id="jobs-filter",
        )
        with Horizontal(id="jobs-body"):
            yield KeyedTable(JOB_COLUMNS, id="jobs", classes="panel")
            with VerticalScroll(id="job-detail-box", classes="panel"):
                yield Static(id="job-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#jobs").border_title = "Jobs"
        self.query_one("#job-detail-box").border_title = "Job"
        if self.console.steady:
            self.query_one("#jobs-filter", Input).cursor_blink = False
        self.query_one("#jobs", KeyedTable).focus()
        self._apply(self.query_text)

    def show(self, snap: Snapshot, now: float) -> None:
        # Pages are read on demand, not from snapshots: a snapshot means something moved,
        # so read the page shown again (one query, on the database only).
        if snap is not getattr(self, "_last_snap", None):
            self._last_snap = snap
            if self.total is not None:
                self.load()

    # ------------------------------------------------------------------ loading
    def _apply(self, text: str) -> None:
        try:
            self.jobs_query = parse_query(text)
        except ConfigError as e:
            self.notify(str(e), severity="error", timeout=5)
            return
        self.query_text = text
        self.page_offset = 0
        self.load()

    def load(self) -> None:
        q, offset = self.jobs_query, self.page_offset
        source = self.console.source
        self.console.run_io(
            "Read jobs",
            lambda: source.jobs(q, offset, PAGE),
            self._loaded,
            group="jobs-page",
        )

    def _loaded(self, page: dict[str, Any]) -> None:
        if not self.is_mounted:
            return
        self.total = page["total"]
        self.page = page["jobs"]
        tones = self.console.tones
        header = Text()
        first = page["offset"] + 1 if self.page else 0
        header.append(f"{page['total']} job(s)", style="bold")
        header.append(f"  {self.jobs_query.describe()}", style=tones.muted)
        header.append(f"  showing {first}–{page['offset'] + len(self.page)}", style=tones.muted)
        set_content(self.query_one("#jobs-header", Static), header)
        self.query_one("#jobs", KeyedTable).sync((_job_row(j) for j in self.page), tones)
        self._show_detail()

    def _show_detail(self) -> None:
        key = self.query_one("#jobs", KeyedTable).highlighted_key
        box = self.query_one("#job-detail", Static)
        if key is None:
            set_content(box, Text("No job matches the filter." if self.total == 0 else ""))
            self._detail_for = None
            return
        if key == self._detail_for:
            return
        self._detail_for = key
        source = self.console.source

        def done(d: dict[str, Any]) -> None:
            if self.is_mounted and self._detail_for == d["job_id"]:
                set_content(self.query_one("#job-detail", Static), detail_text(d), layout=True)

        self.console.run_io("Read job", lambda: source.job(key), done, group="job-detail")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "jobs-filter":
            self._apply(event.value)
            self.query_one("#jobs", KeyedTable).focus()

    # ------------------------------------------------------------------ actions
    def action_filter_jobs(self) -> None:
        self.query_one("#jobs-filter", Input).focus()

    def action_next_page(self) -> None:
        if self.total is not None and self.page_offset + PAGE < self.total:
            self.page_offset += PAGE
            self.load()

    def action_previous_page(self) -> None:
        if self.page_offset > 0:
            self.page_offset = max(0, self.page_offset - PAGE)
            self.load()

    def _bulk(self, action: str) -> None:
        q = self.jobs_query
        if q.is_empty():
            self.notify(
                "Set a filter first: an empty filter never selects every job",
                severity="warning",
                timeout=5,
            )
            return
        source = self.console.source
        states = ", ".join(BULK_ACTIONS[action])

        def counted(n: int) -> None:
            if n == 0:
                self.notify(f"The filter selects no job to {action} ({states})", timeout=4)
                return
            self.confirm(
                f"{action.capitalize()} {n} job(s) selected by {q.describe()} (jobs {states})?",
                lambda: self.console.bulk_jobs(q, action, n),
                yes=f"{action.capitalize()} {n}",
            )

        self.console.run_io("Count jobs", lambda: source.count_jobs(q, action), counted)

    def action_bulk_retry(self) -> None:
        self._bulk("retry")

    def action_bulk_requeue(self) -> None:
        self._bulk("requeue")

    def action_bulk_drop(self) -> None:
        self._bulk("drop")

    def action_toggle_pause(self) -> None:
        self.console.toggle_pause()
