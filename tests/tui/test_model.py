"""The console's data layer and widgets without Redis: the event model, worker states,
formatting, half-block keyframes, keyed table updates, log panes, NO_COLOR."""

from __future__ import annotations

import dataclasses
import json

import pytest
from rich.text import Text

from storyworld.tui import format as fmt
from storyworld.tui.data import LiveModel, Thresholds, WorkerView, effective_state
from storyworld.tui.keyframe import half_blocks
from storyworld.tui.widgets import KeyedTable, LogPane, _overlap, tones_for

from .conftest import rows_of, run, until
from .sample import NOW, keyframe_image, sample_app, snapshot


def _ev(ms: int, kind: str, **data: object) -> tuple[str, str, dict]:
    return (f"{ms}-0", kind, json.loads(json.dumps(data)))


def test_events_keep_queue_workers_and_uploads_current() -> None:
    t0 = 1_700_000_000
    ms = t0 * 1000
    m = LiveModel()
    m.apply_read(waiting=0, in_flight=0, dead=0, results_pending=0, oldest_enqueued_at=None,
                 paused=False, engine_holder=None,
                 worker_seen={"w1": float(t0)}, heartbeats={"w1": {"id": "w1", "state": "idle",
                                                                  "seen": str(ms)}})  # fmt: skip
    assert m.workers["w1"].seen == t0  # ms in the hash, seconds in the model
    m.apply([_ev(ms + 1000, "enqueued", count=3)])
    q = m.queue_view(t0 + 2)
    assert (q.waiting, q.in_flight, q.oldest_enqueued_at) == (3, 0, t0 + 1)
    m.apply([_ev(ms + 2000, "started", job_id="e-b000-a1", worker="w1", episode_id="e",
                 beat_index=0)])  # fmt: skip
    assert (m.waiting, m.in_flight) == (2, 1)
    assert m.workers["w1"].state == "busy" and m.workers["w1"].beat == "0"
    m.apply([_ev(ms + 3000, "heartbeat", id="w1", state="busy", progress="0.500",
                 job="e-b000-a1", done="0")])  # fmt: skip
    assert m.workers["w1"].progress == 0.5 and m.workers["w1"].seen == t0 + 3
    up = {"key": "episodes/e/beats/000/attempt-1/clip.mp4", "size": 1000, "seconds": 0.5,
          "bytes_per_s": 2000.0, "at": t0 + 4}  # fmt: skip
    m.apply([_ev(ms + 4000, "done", job_id="e-b000-a1", worker="w1", episode_id="e",
                 uploads=[up])])  # fmt: skip
    assert (m.waiting, m.in_flight) == (2, 0)
    assert m.workers["w1"].state == "idle" and m.workers["w1"].done == 1
    (u,) = m.event_uploads()
    assert u.episode_id == "e" and u.size == 1000
    assert m.queue_view(t0 + 5).throughput_per_min == pytest.approx(0.2)  # 1 in 5 min
    m.apply([_ev(ms + 5000, "dead", job_id="x", reason="r")])
    assert m.dead == 1 and m.dead_dirty
    m.apply([_ev(ms + 6000, "dead_changed", requeued=1, dropped=0)])
    assert (m.dead, m.waiting) == (0, 3)
    m.apply([_ev(ms + 7000, "worker_gone", id="w1")])
    assert m.workers["w1"].state == "gone"
    reconcile, dead_dirty, logs, unknown = m.take_flags()
    assert reconcile and dead_dirty and "w1" in logs and not unknown


def test_seeding_history_counts_throughput_but_not_depths() -> None:
    m = LiveModel()
    m.apply([_ev(1_000, "enqueued", count=5), _ev(2_000, "done", job_id="j", worker="w")],
            seeding=True)  # fmt: skip
    assert m.waiting == 0 and len(m.finished) == 1 and not m.needs_reconcile


def test_a_silent_heartbeat_or_an_unknown_worker_is_fetched() -> None:
    m = LiveModel()
    t0 = 1_700_000_000
    m.apply([_ev(t0 * 1000, "heartbeat", id="w1", state="idle")])
    assert m.workers_to_fetch({"w1": float(t0)}) == []
    assert m.workers_to_fetch({"w1": t0 + 10.0, "w2": float(t0)}) == ["w1", "w2"]
    m.apply([_ev(t0 * 1000 + 1000, "started", job_id="j", worker="w9")])
    assert "w9" in m.take_flags()[3]


def test_stale_and_gone_by_heartbeat_age() -> None:
    t = Thresholds(busy_stale_s=30, idle_stale_s=190, gone_s=330)
    busy = WorkerView("w", state="busy", seen=1000.0)
    idle = dataclasses.replace(busy, state="idle")
    assert effective_state(busy, 1020, t) == "busy"
    assert effective_state(busy, 1031, t) == "stale"
    assert effective_state(idle, 1150, t) == "idle"
    assert effective_state(idle, 1191, t) == "stale"
    assert effective_state(idle, 1331, t) == "gone"
    assert effective_state(dataclasses.replace(idle, state="gone"), 1000, t) == "gone"


def test_format_helpers() -> None:
    assert fmt.age(4) == "4 s" and fmt.age(600) == "10 min" and fmt.age(7200) == "2 h"
    assert fmt.duration(75) == "1 m 15 s" and fmt.duration(None) == "–"
    assert fmt.size(1_834_000) == "1.8 MB" and fmt.speed(2_300_000) == "2.3 MB/s"
    assert fmt.bar(0.6, 10) == "██████░░░░" and fmt.bar(None, 3) == "   "
    assert fmt.state_label("failed", fmt.BEAT_STATES) == ("✗ failed", "error")
    # Every state has a glyph as well as a colour.
    for table in (fmt.WORKER_STATES, fmt.EPISODE_STATES, fmt.BEAT_STATES):
        assert all(glyph.strip() for glyph, _ in table.values())


def test_half_blocks_draw_two_pixels_per_cell() -> None:
    text = half_blocks(keyframe_image(96, 54), max_cells_w=48, max_cells_h=14)
    lines = text.plain.split("\n")
    assert len(lines) <= 14 and all(len(line) <= 48 for line in lines)
    assert set(text.plain) <= {"▀", "\n"}
    span_style = text.spans[0].style
    assert span_style.color is not None and span_style.bgcolor is not None  # type: ignore[union-attr]


def test_log_overlap() -> None:
    assert _overlap([], ["a"]) == 0
    assert _overlap(["a", "b"], ["a", "b", "c"]) == 2
    assert _overlap(["a", "b", "c"], ["b", "c", "d"]) == 2  # the oldest line was trimmed
    assert _overlap(["x"], ["a", "b"]) is None


def test_tables_update_by_key_and_keep_the_cursor() -> None:
    app = sample_app()

    async def scenario() -> None:
        async with app.run_test(size=(160, 48)) as pilot:
            table = app.screen.query_one("#workers", KeyedTable)
            await until(pilot, lambda: rows_of(table))
            table.focus()
            table.move_cursor(row=2)
            await pilot.pause()
            assert table.highlighted_key == "runpod-l4-1"
            snap = snapshot()
            workers = list(snap.workers)
            # A new worker sorts first, one leaves, one makes progress.
            workers.insert(0, WorkerView("aaa-new", state="idle", seen=NOW - 1))
            workers = [w for w in workers if w.id != "runpod-a100-2"]
            workers[1] = dataclasses.replace(workers[1], progress=0.9, seen=NOW)
            app.source.push(dataclasses.replace(snap, workers=tuple(workers)))  # type: ignore[attr-defined]
            await until(pilot, lambda: "aaa-new" in rows_of(table))
            assert list(rows_of(table))[:2] == ["aaa-new", "runpod-a100-1"]
            assert "runpod-a100-2" not in rows_of(table)
            assert "90%" in rows_of(table)["runpod-a100-1"][6]
            assert table.highlighted_key == "runpod-l4-1"  # the operator's row, not index

    run(scenario())


def test_log_filter_and_help(monkeypatch: pytest.MonkeyPatch) -> None:
    app = sample_app()

    async def scenario() -> None:
        async with app.run_test(size=(160, 48)) as pilot:
            pane = app.screen.query_one("#engine-log", LogPane)
            await until(pilot, lambda: len(pane.shown_lines) == 4)
            await pilot.press("slash")
            await pilot.press(*"dead")
            await until(pilot, lambda: len(pane.shown_lines) == 1)
            assert "dead-lettered" in pane.shown_lines[0]
            assert all("dead-lettered" in line for line in pane.lines)
            await pilot.press("escape")
            await until(pilot, lambda: len(pane.shown_lines) == 4)
            await pilot.press("question_mark")
            await pilot.pause()
            text = str(app.screen.query_one("#help-text").content)
            for word in ("New episode", "Retry failed beats", "Cancel episode", "Dead letters",
                         "Filter logs", "Quit", "ctrl+p"):  # fmt: skip
                assert word in text

    run(scenario())


def test_no_color_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = sample_app()

    async def scenario() -> None:
        async with app.run_test(size=(160, 48)) as pilot:
            await until(pilot, lambda: rows_of(app.screen.query_one("#workers")))
            assert app.no_color
            tones = tones_for(app)
            assert tones.error.color is None and tones.success.color is None
            # Status still reads without colour: words and glyphs.
            row = rows_of(app.screen.query_one("#workers"))["runpod-l4-1"]
            assert row[4] == "⚠ stale"

    run(scenario())


def test_tones_come_from_the_theme() -> None:
    app = sample_app()

    async def scenario() -> None:
        async with app.run_test(size=(160, 48)):
            before = tones_for(app).error.color
            app.theme = "textual-light"
            after = tones_for(app).error.color
            assert before != after
            assert isinstance(app.tones.text("x", "error"), Text)

    run(scenario())


def test_events_already_in_a_read_are_not_counted_twice() -> None:
    t0 = 1_700_000_000_000
    m = LiveModel()
    # The read saw the job started by event t0-0 (watermark), not the one after.
    m.apply_read(waiting=1, in_flight=1, dead=0, results_pending=0, oldest_enqueued_at=None,
                 paused=False, engine_holder=None, worker_seen={}, heartbeats={},
                 watermark=f"{t0}-0")  # fmt: skip
    m.apply([_ev(t0, "started", job_id="a", worker="w"),
             _ev(t0 + 1, "started", job_id="b", worker="w")])  # fmt: skip
    assert (m.waiting, m.in_flight) == (0, 2)
    assert m.needs_reconcile  # jobs moved: a reconciling read will follow


def test_the_data_layer_never_imports_textual() -> None:
    """Like harlequin's contract: sources, model and actions work without the UI."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import storyworld.tui.source, storyworld.tui.data, storyworld.tui.control\n"
        "import storyworld.tui.format, storyworld.tui.keyframe\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'textual'], 'textual imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_done_event_the_full_read_covered_is_not_counted_twice() -> None:
    """Two consoles, one reading Redis before a job finished and one after, agree on the
    worker's done count."""
    t0 = 1_700_000_000
    ms = t0 * 1000
    hb = {"w1": {"id": "w1", "state": "idle", "seen": str(ms), "done": "5"}}
    early, late = LiveModel(), LiveModel()
    for m in (early, late):
        m.apply_read(waiting=0, in_flight=1, dead=0, results_pending=0, oldest_enqueued_at=None,
                     paused=False, engine_holder=None, worker_seen={"w1": float(t0)},
                     heartbeats=hb, watermark=f"{ms}-0")  # fmt: skip
    done = _ev(ms + 1000, "done", job_id="e-b000-a1", worker="w1", episode_id="e")
    early.apply([done])  # a new event for the early console
    hb_after = {"w1": {**hb["w1"], "done": "6"}}
    late.apply_read(waiting=0, in_flight=0, dead=0, results_pending=0, oldest_enqueued_at=None,
                    paused=False, engine_holder=None, worker_seen={"w1": float(t0)},
                    heartbeats=hb_after, watermark=f"{ms + 1000}-0")  # fmt: skip
    late.apply([done])  # replayed: the read already counted it
    assert early.workers["w1"].done == late.workers["w1"].done == 6
