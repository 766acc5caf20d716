"""The main screen: queues, Redis cost, workers, episodes, uploads and logs."""

from __future__ import annotations

import math

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Sparkline, Static

from storyworld.tui import format as fmt
from storyworld.tui.data import HealthView, Snapshot, WorkerView, effective_state
from storyworld.tui.screens import LiveScreen, bindings
from storyworld.tui.widgets import KeyedTable, LogPane, Row, Tones, set_content, set_if_changed

__all__ = ["Dashboard", "alert_text", "status_text"]

WORKER_COLUMNS = [
    ("worker", "id", 16),
    ("host", "host", 10),
    ("GPU", "gpu", 18),
    ("backends", "backends", 12),
    ("state", "state", 10),
    ("job", "job", 16),
    ("progress", "progress", 15),
    ("heartbeat", "seen", 9),
    ("done", "done", 5),
    ("failed", "failed", 6),
    ("uptime", "uptime", 7),
]
EPISODE_COLUMNS = [
    ("id", "id", 6),
    ("title", "title", 16),
    ("state", "state", 12),
    ("progress", "progress", 12),
    ("elapsed", "elapsed", 9),
    ("failed", "failed", 6),
]
UPLOAD_COLUMNS = [
    ("time", "at", 8),
    ("episode", "where", 10),
    ("key", "key", 24),
    ("size", "size", 8),
    ("speed", "speed", 10),
]


def status_text(snap: Snapshot, tones: Tones) -> Text:
    """The top line: where, who dispatches, paused, health of each dependency."""
    t = Text()  # wraps onto a second line on a narrow terminal rather than losing the end
    t.append(" StoryWorld ", style="bold")
    if snap.read_only:
        t.append(" READ-ONLY ", style=tones.warning + Style(reverse=True))
    t.append(f" {snap.deployment} ", style=tones.muted)
    t.append("· engine: ")
    tone = "success" if snap.engine.role == "leader" else "plain"
    if snap.engine.role == "off" and "nothing" in snap.engine.text:
        tone = "warning"
    t.append(snap.engine.text or "…", style=tones[tone])
    t.append(" · ")
    if snap.engine.paused:
        t.append("⏸ paused", style=tones.warning)
    else:
        t.append("▶ dispatch on", style=tones.success)
    t.append(" · ")
    h = snap.health
    for name, problem in (("Redis", h.redis), ("DB", h.db), ("Storage", h.storage)):
        if problem:
            t.append(f"{name} ✗ ", style=tones.error)
        else:
            t.append(f"{name} ✓ ", style=tones.success)
    return t


def alert_text(h: HealthView, now: float) -> str:
    """'Redis unreachable — retrying in 4 s', one line per problem."""
    lines = []
    for problem, retry_at in (
        (h.redis, h.redis_retry_at),
        (h.db, h.db_retry_at),
        (h.storage, h.storage_retry_at),
    ):
        if problem:
            wait = max(0, math.ceil((retry_at or now) - now))
            lines.append(
                f"⚠ {problem} — retrying in {wait} s" if wait else f"⚠ {problem} — retrying now"
            )
    return "\n".join(lines)


def _worker_row(w: WorkerView, now: float, snap: Snapshot) -> Row:
    state = effective_state(w, now, snap.thresholds)
    active = state in ("busy", "draining")
    job = ""
    if active and w.job:
        job = w.job
        if w.beat:
            beat = int(w.beat) + 1 if w.beat.isdigit() else w.beat
            job = f"{w.episode[:6]} beat {beat}"
        if w.stage and w.stage != "rendering":
            job += f" ({w.stage})"
    progress = ""
    if active and w.progress is not None:
        progress = f"{fmt.bar(w.progress, 10)} {w.progress * 100:3.0f}%"
    label, tone = fmt.state_label(state, fmt.WORKER_STATES)
    late = state in ("stale", "gone")
    return Row(
        w.id,
        (
            (w.id, "plain"),
            (w.host, "muted"),
            (w.gpu or "CPU", "plain" if w.gpu else "muted"),
            (w.backends, "muted"),
            (label, tone),
            (job, "plain"),
            (progress, "accent"),
            (fmt.age(now - w.seen) if w.seen else "–", "warning" if late else "plain"),
            (str(w.done), "plain"),
            (str(w.failed), "error" if w.failed else "plain"),
            (fmt.age(now - w.started_at) if w.started_at else "–", "muted"),
        ),
    )


class FilterInput(Input):
    """The log filter: `/` shows it, enter keeps the filter, escape clears it."""

    BINDINGS = [Binding("escape", "clear", "Clear filter")]

    def action_clear(self) -> None:
        self.value = ""
        self.display = False
        self.screen.query_one("#episodes").focus()


class Dashboard(LiveScreen):
    SCREEN_ID = "dashboard"
    BINDINGS = bindings("dashboard")

    def __init__(self) -> None:
        super().__init__()
        self._select_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield Static(id="alert")
        with Horizontal(id="top"):
            with Vertical(id="queues", classes="panel"):
                yield Static(id="queue-text")
                yield Sparkline([], id="depth")
            yield Static(id="cost", classes="panel")
        yield KeyedTable(WORKER_COLUMNS, id="workers", classes="panel")
        with Horizontal(id="middle"):
            yield KeyedTable(EPISODE_COLUMNS, id="episodes", classes="panel")
            yield KeyedTable(UPLOAD_COLUMNS, id="uploads", classes="panel")
        with Horizontal(id="logs"):
            yield LogPane(id="engine-log", classes="panel")
            yield LogPane(id="worker-log", classes="panel")
        yield FilterInput(placeholder="filter log lines (enter: keep, esc: clear)", id="filter")
        yield Footer()

    def on_resize(self) -> None:
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Columns for the terminal's width: below 140 columns the worker table drops its
        padding and least useful columns so heartbeat, done and failed stay on screen; the
        episode title takes whatever its pane has left (not 16 characters at 220 wide)."""
        width = self.size.width
        workers = self.query_one("#workers", KeyedTable)
        if width < 140:
            narrow = {"id": 17, "host": 0, "gpu": 11, "backends": 10, "state": 10, "job": 14,
                      "progress": 10, "seen": 10, "done": 5, "failed": 7, "uptime": 0}  # fmt: skip
            spare = width - 4 - sum(narrow.values())
            narrow["id"] += max(0, spare)
            workers.fit(narrow, padding=0)
        else:
            workers.fit({label_key: w for _l, label_key, w in WORKER_COLUMNS}, padding=1)
        episodes = self.query_one("#episodes", KeyedTable)
        fixed = sum(w for _l, k, w in EPISODE_COLUMNS if k != "title")
        pane = max(20, episodes.size.width or width // 2)
        episodes.fit({"title": max(16, pane - fixed - 2 * len(EPISODE_COLUMNS) - 3)})

    def on_mount(self) -> None:
        self.query_one("#queues").border_title = "Queues"
        self.query_one("#cost").border_title = "Redis cost"
        self.query_one("#workers").border_title = "Workers"
        self.query_one("#episodes").border_title = "Episodes"
        self.query_one("#uploads").border_title = "Uploads"
        self.query_one("#engine-log").border_title = "Engine log"
        self.query_one("#worker-log").border_title = "Worker log"
        self.query_one("#episodes", KeyedTable).focus()

    # ------------------------------------------------------------------ rendering
    def show(self, snap: Snapshot, now: float) -> None:
        tones = self.console.tones
        set_content(self.query_one("#status", Static), status_text(snap, tones), layout=True)
        alert = self.query_one("#alert", Static)
        message = alert_text(snap.health, now)
        unserved = "\n".join(f"⚠ {line}" for line in snap.queue.unserved)
        set_if_changed(alert, "display", bool(message or unserved))
        if message or unserved:
            text = Text(message, style=tones.error)
            if unserved:
                text.append(("\n" if message else "") + unserved, style=tones.warning)
            set_content(alert, text, layout=True)
        self._show_queues(snap, now, tones)
        self._show_cost(snap, tones)
        workers = self.query_one("#workers", KeyedTable)
        workers.sync((_worker_row(w, now, snap) for w in snap.workers), tones)
        set_if_changed(workers, "border_subtitle", f"{len(snap.workers)} known")
        self._show_episodes(snap, now, tones)
        self._show_uploads(snap, tones)
        self.query_one("#engine-log", LogPane).set_lines(snap.engine_log)
        wl = self.query_one("#worker-log", LogPane)
        wl.set_lines(snap.worker_log)
        title = f"Worker log: {escape(snap.worker_log_id)}" if snap.worker_log_id else "Worker log"
        set_if_changed(wl, "border_title", title)
        if not snap.engine_log and snap.engine.role == "off":
            set_if_changed(
                self.query_one("#engine-log"), "border_subtitle", "the engine runs elsewhere"
            )

    def _show_queues(self, snap: Snapshot, now: float, tones: Tones) -> None:
        q = snap.queue
        t = Text(no_wrap=True, overflow="ellipsis")
        box = self.query_one("#queue-text", Static)
        short = 0 < box.size.width < 72  # two lines must hold it: shorter words when narrow
        if not q.known:
            t.append("reading Redis…", style=tones.muted)
        else:
            t.append("waiting ")
            t.append(f"{q.waiting}", style="bold")
            t.append("  in flight " if short else "   in flight ")
            t.append(f"{q.in_flight}", style="bold")
            t.append("  results " if short else "   results pending ")
            t.append(f"{q.results_pending}", style="bold")
            t.append("  dead " if short else "   dead letters ")
            t.append(f"{q.dead}", style=tones.error if q.dead else "bold")
            if q.dead:
                t.append(" ✗", style=tones.error)
            t.append("\noldest waiting ")
            oldest = now - q.oldest_enqueued_at if q.oldest_enqueued_at else None
            if oldest is None and q.waiting:
                t.append("reading…", style=tones.muted)  # never "–" while a job waits
            else:
                t.append(fmt.age(oldest) if oldest is not None else "–", style="bold")
            t.append("  throughput " if short else "   throughput ")
            t.append(f"{q.throughput_per_min:.1f} jobs/min", style="bold")
        set_content(box, t)
        spark = self.query_one("#depth", Sparkline)
        data = [float(x) for x in q.depth_history] or [0.0]
        if list(spark.data or []) != data:
            spark.data = data

    def _show_cost(self, snap: Snapshot, tones: Tones) -> None:
        c = snap.cost
        t = Text(no_wrap=True, overflow="ellipsis")
        if c.system_per_min is None:
            t.append("whole system: measuring…", style=tones.muted)
        else:
            t.append("whole system ")
            t.append(f"{fmt.count(c.system_per_min)}/min", style="bold")
            t.append(" → ")
            t.append(f"{fmt.count(c.per_day)}/day", style="bold")
        t.append(f"\nbudget {fmt.count(c.budget_per_day)}/day")
        if c.per_day is not None and c.budget_per_day:
            share = c.per_day / c.budget_per_day
            tone = "error" if share > 1 else ("warning" if share > 0.8 else "success")
            glyph = "✗ over" if share > 1 else ("⚠" if share > 0.8 else "✓")
            t.append(f"  {share * 100:.0f}% {glyph}", style=tones[tone])
        t.append("\nthis console ")
        t.append(f"{fmt.count(c.console_commands)}", style="bold")
        t.append(" commands")
        if c.console_per_hour is not None:
            t.append(f" (≈{fmt.count(c.console_per_hour)}/h)")
        # The History screen reads the database only (measured: tests/tui/test_history).
        t.append("\nhistory panel: 0 commands (database)", style=tones.muted)
        set_content(self.query_one("#cost", Static), t)

    def _show_episodes(self, snap: Snapshot, now: float, tones: Tones) -> None:
        rows = []
        for e in snap.episodes:
            end = e.finished_at or now
            label, tone = fmt.state_label(e.state, fmt.EPISODE_STATES)
            frac = e.beats_done / e.beats_total if e.beats_total else 0.0
            rows.append(
                Row(
                    e.id,
                    (
                        (e.id[:6], "muted"),
                        (e.title, "plain"),
                        (label, tone),
                        (f"{fmt.bar(frac, 6)} {e.beats_done}/{e.beats_total}", "accent"),
                        (fmt.duration(end - e.started_at) if e.started_at else "–", "plain"),
                        (str(e.beats_failed), "error" if e.beats_failed else "plain"),
                    ),
                )
            )
        table = self.query_one("#episodes", KeyedTable)
        table.sync(rows, tones)
        set_if_changed(table, "border_subtitle", f"{len(snap.episodes)} newest")

    def _show_uploads(self, snap: Snapshot, tones: Tones) -> None:
        rows = []
        for u in snap.uploads:
            prefix = f"episodes/{u.episode_id}/"
            key = u.key[len(prefix) :] if u.episode_id and u.key.startswith(prefix) else u.key
            where = u.episode_id[:6]
            if u.beat_index is not None:
                where += f" b{u.beat_index + 1}"
            rows.append(
                Row(
                    u.key,
                    (
                        (fmt.clock_time(u.at), "muted"),
                        (where, "plain"),
                        (key.removeprefix("beats/"), "plain"),
                        (fmt.size(u.size), "plain"),
                        (fmt.speed(u.bytes_per_s), "muted"),
                    ),
                )
            )
        self.query_one("#uploads", KeyedTable).sync(rows, tones)

    # ------------------------------------------------------------------ events
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "workers" and event.row_key is not None:
            # Fetch the log of the worker the cursor rests on, not of every row it passes.
            worker = event.row_key.value
            if self._select_timer is not None:
                self._select_timer.stop()
            self._select_timer = self.set_timer(
                0.3, lambda: self.console.source.select_worker(worker)
            )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "episodes" and event.row_key.value:
            self.console.open_episode(event.row_key.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            for pane in self.query(LogPane):
                pane.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one("#episodes", KeyedTable).focus()

    # ------------------------------------------------------------------ actions
    def _episode(self) -> str | None:
        key = self.query_one("#episodes", KeyedTable).highlighted_key
        if key is None:
            self.notify("No episode is highlighted", severity="warning", timeout=3)
        return key

    def action_new_episode(self) -> None:
        self.console.new_episode(example=False)

    def action_example_episode(self) -> None:
        self.console.new_episode(example=True)

    def action_open_episode(self) -> None:
        key = self._episode()
        if key:
            self.console.open_episode(key)

    def action_retry_episode(self) -> None:
        key = self._episode()
        if key:
            self.console.retry(key, None)

    def action_cancel_episode(self) -> None:
        key = self._episode()
        if key:
            self.console.cancel(key, self)

    def action_toggle_pause(self) -> None:
        self.console.toggle_pause()

    def action_filter_logs(self) -> None:
        flt = self.query_one("#filter", Input)
        flt.display = True
        flt.focus()
