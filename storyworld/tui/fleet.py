"""Fleet: every worker (full ids, so two pods never read alike), its GPU utilisation and
memory over time (sparklines from the heartbeats this console saw), current job and
progress, counters and log; drain / stop / resume a worker; pause / resume dispatch per
backend. Commands go through storyworld.engine.fleet."""

from __future__ import annotations

import collections

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Static

from storyworld.protocol import KNOWN_BACKENDS
from storyworld.tui import format as fmt
from storyworld.tui.data import Snapshot, WorkerView, effective_state
from storyworld.tui.screens import LiveScreen, bindings
from storyworld.tui.widgets import KeyedTable, LogPane, Row, set_content

__all__ = ["SAMPLES", "FleetScreen", "GpuHistory"]

SAMPLES = 40  # heartbeats kept per worker for the sparklines

WORKER_COLUMNS = [
    ("worker", "id", 22),
    ("state", "state", 11),
    ("backends", "backends", 12),
    ("GPU util", "util", 12),
    ("GPU mem", "mem", 12),
    ("job", "job", 22),
    ("progress", "progress", 15),
    ("done", "done", 5),
    ("failed", "failed", 6),
]
BACKEND_COLUMNS = [("backend", "backend", 11), ("dispatch", "dispatch", 9),
                   ("workers", "workers", 7)]  # fmt: skip


class GpuHistory:
    """GPU samples per worker, one per heartbeat seen (bounded)."""

    def __init__(self) -> None:
        self.util: dict[str, collections.deque[float]] = {}
        self.mem: dict[str, collections.deque[float]] = {}
        self._seen: dict[str, float] = {}

    def add(self, workers: tuple[WorkerView, ...]) -> None:
        for w in workers:
            if w.gpu_util is None or self._seen.get(w.id) == w.seen:
                continue
            self._seen[w.id] = w.seen
            self.util.setdefault(w.id, collections.deque(maxlen=SAMPLES)).append(w.gpu_util)
            self.mem.setdefault(w.id, collections.deque(maxlen=SAMPLES)).append(w.gpu_mem or 0.0)

    def sparks(self, worker_id: str) -> tuple[str, str]:
        return (fmt.spark(list(self.util.get(worker_id, ()))),
                fmt.spark(list(self.mem.get(worker_id, ()))))  # fmt: skip


class FleetScreen(LiveScreen):
    SCREEN_ID = "fleet"
    BINDINGS = bindings("fleet")

    def __init__(self) -> None:
        super().__init__()
        self.gpu = GpuHistory()
        self.paused: set[str] = set()
        self.fleet_workers: tuple[WorkerView, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static(Text("Fleet: loading…"), id="fleet-header")
        with Horizontal(id="fleet-top"):
            yield KeyedTable(WORKER_COLUMNS, id="fleet-workers", classes="panel")
            yield KeyedTable(BACKEND_COLUMNS, id="fleet-backends", classes="panel")
        with Horizontal(id="fleet-bottom"):
            with Vertical(id="fleet-detail-box", classes="panel"):
                yield Static(id="fleet-detail")
            yield LogPane(id="fleet-log", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#fleet-workers").border_title = "Workers"
        self.query_one("#fleet-backends").border_title = "Dispatch per backend"
        self.query_one("#fleet-detail-box").border_title = "Worker"
        self.query_one("#fleet-log").border_title = "Worker log"
        self.query_one("#fleet-workers", KeyedTable).focus()
        self.load_paused()

    def load_paused(self) -> None:
        source = self.console.source
        self.console.run_io("Read paused backends", source.paused_backends, self._paused,
                            group="fleet-paused")  # fmt: skip

    def _paused(self, paused: set[str]) -> None:
        self.paused = set(paused)
        if self.is_mounted and self.console.snapshot is not None:
            self.show(self.console.snapshot, self.console.clock())

    def show(self, snap: Snapshot, now: float) -> None:
        tones = self.console.tones
        self.fleet_workers = snap.workers
        self.gpu.add(snap.workers)
        rows = []
        for w in snap.workers:
            state = effective_state(w, now, snap.thresholds)
            label, tone = fmt.state_label(state, fmt.WORKER_STATES)
            util, mem = self.gpu.sparks(w.id)
            job = f"{w.episode[:12]} beat {int(w.beat) + 1}" if w.beat.isdigit() else w.job
            active = state in ("busy", "draining") and w.job
            progress = ""
            if active and w.progress is not None:
                progress = f"{fmt.bar(w.progress, 10)} {w.progress * 100:3.0f}%"
            rows.append(Row(w.id, (
                (w.id, "plain"), (label, tone), (w.backends, "muted"),
                (util or ("–" if w.gpu_util is None else ""), "accent"),
                (mem or ("–" if w.gpu_mem is None else ""), "accent"),
                (job if active else "", "plain"), (progress, "accent"),
                (str(w.done), "plain"), (str(w.failed), "error" if w.failed else "plain"),
            )))  # fmt: skip
        self.query_one("#fleet-workers", KeyedTable).sync(rows, tones)
        serving: dict[str, int] = {}
        for w in snap.workers:
            if effective_state(w, now, snap.thresholds) not in ("gone", "stale"):
                for b in filter(None, w.backends.split(",")):
                    serving[b] = serving.get(b, 0) + 1
        backends = sorted(set(KNOWN_BACKENDS) | set(serving) | self.paused)
        self.query_one("#fleet-backends", KeyedTable).sync(
            (Row(b, ((b, "plain"),
                     ("⏸ paused" if b in self.paused else "▶ on",
                      "warning" if b in self.paused else "success"),
                     (str(serving.get(b, 0)), "muted")))
             for b in backends), tones)  # fmt: skip
        header = Text()
        header.append(f"{len(snap.workers)} worker(s)", style="bold")
        header.append(f"  paused backends: {', '.join(sorted(self.paused)) or 'none'}"
                      "  · d drain · s stop · u resume · b pause/resume the highlighted backend",
                      style=tones.muted)  # fmt: skip
        set_content(self.query_one("#fleet-header", Static), header)
        self.query_one("#fleet-log", LogPane).set_lines(snap.worker_log)
        self._show_detail(snap, now)

    def _worker(self) -> WorkerView | None:
        key = self.query_one("#fleet-workers", KeyedTable).highlighted_key
        return next((w for w in self.fleet_workers if w.id == key), None)

    def _show_detail(self, snap: Snapshot, now: float) -> None:
        w = self._worker()
        box = self.query_one("#fleet-detail", Static)
        if w is None:
            set_content(box, Text("No worker has sent a heartbeat yet.", style="dim"))
            return
        util, mem = self.gpu.sparks(w.id)
        t = Text()
        t.append(f"{w.id}\n", style="bold")
        t.append(f"{w.host} · {w.gpu or 'CPU'} · {w.backends}\n")
        t.append(f"state {effective_state(w, now, snap.thresholds)} · heartbeat "
                 f"{fmt.age(now - w.seen) if w.seen else '–'} ago · up "
                 f"{fmt.age(now - w.started_at) if w.started_at else '–'}\n")  # fmt: skip
        t.append(f"done {w.done} · failed {w.failed}\n")
        if w.job:
            pct = f" {w.progress * 100:.0f}%" if w.progress is not None else ""
            t.append(f"job {w.job} ({w.stage or 'rendering'}){pct}\n")
        if util:
            t.append(f"GPU util {util} {w.gpu_util or 0:.0f}%\n")
            t.append(f"GPU mem  {mem} {w.gpu_mem or 0:.0f}%\n")
        set_content(box, t)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "fleet-workers" and event.row_key is not None:
            self.console.source.select_worker(event.row_key.value)
            if self.console.snapshot is not None:
                self._show_detail(self.console.snapshot, self.console.clock())

    # ------------------------------------------------------------------ actions
    def _command(self, command: str) -> None:
        w = self._worker()
        if w is None:
            self.notify("No worker is highlighted", severity="warning", timeout=3)
            return
        what = {
            "drain": "Drain (finish the job in hand, take no more)",
            "stop": "Stop (exit after the job in hand)",
            "resume": "Resume",
        }[command]
        worker_id = w.id
        self.confirm(
            f"{what}: worker {worker_id}?",
            lambda: self.console.command_worker(worker_id, command),
            yes=command.capitalize(),
        )

    def action_drain_worker(self) -> None:
        self._command("drain")

    def action_stop_worker(self) -> None:
        self._command("stop")

    def action_resume_worker(self) -> None:
        self._command("resume")

    def action_toggle_backend(self) -> None:
        key = self.query_one("#fleet-backends", KeyedTable).highlighted_key
        if key is None:
            self.notify("No backend is highlighted", severity="warning", timeout=3)
            return
        pause = key not in self.paused
        verb = "Pause" if pause else "Resume"
        self.confirm(f"{verb} dispatch to {key}? " + ("Waiting jobs stay; no new ones go out."
                     if pause else "New jobs go out again."),
                     lambda: self.console.set_backend_paused(key, pause, self.load_paused),
                     yes=verb)  # fmt: skip

    def action_toggle_pause(self) -> None:
        self.console.toggle_pause()
