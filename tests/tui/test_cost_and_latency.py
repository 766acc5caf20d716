"""The console is cheap on a metered Redis and still live: an idle console costs at most
120 commands an hour, yet a heartbeat shows on screen within a second.

Counts are exact: the local default's own server, CLIENT LIST `tot-cmds` of the console's
named connections. The idle hour runs compressed (every interval scaled by the same
factor), so it takes seconds."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from storyworld.config import load_settings
from storyworld.engine.runtime import open_runtime
from storyworld.queue import JobQueue, connect
from storyworld.tui.source import DEFAULT_REFRESH_S, LiveSource

from .conftest import rows_of, run, until


def _local_runtime(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = load_settings(env={"STORYWORLD_HOME": str(tmp_path / "home")}, env_file=None)
    return open_runtime(settings, role="test")


def _server_commands(rt, name: str) -> int:  # type: ignore[no-untyped-def]
    total = 0
    for c in rt.clients.fast.client_list():
        if str(c.get("name", "")).startswith(name):
            total += int(c.get("tot-cmds", 0))
    return total


def test_an_idle_console_costs_at_most_120_commands_an_hour(tmp_path: Path) -> None:
    scale = 1 / 600  # one idle hour in 6 s
    rt = _local_runtime(tmp_path)
    s = rt.settings
    clients = connect(s, rt.redis_url, role="fake-workers")
    workers = JobQueue.from_settings(s, clients.fast, clients.blocking)
    stop = threading.Event()

    def idle_workers() -> None:
        # Two idle workers heartbeat every WORKER_IDLE_BLOCK_SECONDS (150 s), staggered.
        period = s.worker_idle_block_s * scale
        n = 0
        while not stop.wait(period / 2):
            wid = f"idle-{n % 2}"
            workers.heartbeat(wid, {"id": wid, "host": "pod", "state": "idle",
                                    "backends": "animatic"}, [])  # fmt: skip
            n += 1

    source = LiveSource(
        rt,
        refresh_s=DEFAULT_REFRESH_S * scale,
        block_s=240 * scale,
        cost_sample_after_s=60 * scale,
        idle_log_refresh_s=600 * scale,
    )
    t = threading.Thread(target=idle_workers, daemon=True)
    try:
        t.start()
        source.start(lambda snap: None)
        source.select_worker("idle-0")  # the operator looks at a worker's log
        # Start-up reads (event history, first full read, cost sample) are not idle cost.
        deadline = time.monotonic() + 10
        while len(source._cost_samples) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        before_client = source.commands
        before_server = _server_commands(rt, "storyworld-tui")
        time.sleep(3600 * scale)
        per_hour_client = source.commands - before_client
        per_hour_server = _server_commands(rt, "storyworld-tui") - before_server
    finally:
        stop.set()
        source.stop()
        clients.close()
        rt.close()
    # The server's count is the truth; the console's own count agrees with it (within one
    # full read of 9 commands that may straddle the edges of the window).
    assert per_hour_server <= 120, per_hour_server
    assert abs(per_hour_server - per_hour_client) <= 9, (per_hour_server, per_hour_client)
    # 48 heartbeats an hour each wake the blocking read: the console does see them.
    assert per_hour_server >= 40


def test_a_heartbeat_shows_on_screen_within_a_second(runtime, make_console) -> None:
    c = make_console(engine=False, read_only=True)
    q = runtime.queue

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=(160, 48)) as pilot:
            await until(pilot, lambda: c.source.model.known, what="first read")
            table = app.screen.query_one("#workers")
            started = time.monotonic()
            q.heartbeat("gpu-7", {"id": "gpu-7", "host": "pod-7", "state": "busy",
                                  "job": "e-b001-a1", "episode": "e", "beat": "1",
                                  "progress": "0.250"}, [])  # fmt: skip
            row = await until(pilot, lambda: rows_of(table).get("gpu-7"), timeout=5)
            assert time.monotonic() - started < 1.0
            assert "25%" in row[6]
            started = time.monotonic()
            q.heartbeat("gpu-7", {"id": "gpu-7", "host": "pod-7", "state": "busy",
                                  "job": "e-b001-a1", "episode": "e", "beat": "1",
                                  "progress": "0.750"}, [])  # fmt: skip
            await until(pilot, lambda: "75%" in rows_of(table)["gpu-7"][6], timeout=5)
            assert time.monotonic() - started < 1.0

    run(scenario())
