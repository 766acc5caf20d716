"""Benchmarks of the operator console (results: bench/results-tui.md).

    python bench/tui_bench.py refresh   # one dashboard refresh: 200 workers, 50 episodes x 40 beats
    python bench/tui_bench.py idle      # Redis commands per idle hour (compressed run)
    python bench/tui_bench.py all

Everything runs on the local default's own server (an embedded valkey in a temporary data
directory), so command counts are exact: CLIENT LIST `tot-cmds` of the console's named
connections ("storyworld-tui", "storyworld-tui-wait"), cross-checked with the console's own
count. "UI thread" is the time the app spends applying a snapshot to its widgets inside
`batch_update()`; "+ paint" also waits until the app has drawn the frame (headless).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import select

from storyworld.config import load_settings
from storyworld.engine import services
from storyworld.engine.models import Beat, BeatState, Episode, EpisodeState, Upload
from storyworld.engine.planner import plan_script
from storyworld.engine.runtime import Runtime, open_runtime
from storyworld.queue import JobQueue, connect
from storyworld.tui.app import ConsoleApp
from storyworld.tui.control import EngineHost
from storyworld.tui.data import Snapshot
from storyworld.tui.source import DEFAULT_REFRESH_S, FixedSource, LiveSource

GPU = json.dumps({"name": "NVIDIA A100 80GB", "util": 97, "mem_used_mb": 30000,
                  "mem_total_mb": 81920})  # fmt: skip


def local_runtime(home: Path, role: str = "bench", **overrides: Any) -> Runtime:
    settings = load_settings(env={"STORYWORLD_HOME": str(home)}, env_file=None)
    if overrides:
        settings = settings.with_overrides(**overrides)
    return open_runtime(settings, role=role)


_counters: dict[str, redis.Redis] = {}


def commands_by(rt: Runtime, prefix: str) -> int:
    """Commands sent so far by the connections named `prefix*`. CLIENT LIST goes over a
    connection of its own, so the measuring is not counted against the measured."""
    counter = _counters.get(rt.redis_url)
    if counter is None:
        counter = _counters[rt.redis_url] = redis.Redis.from_url(rt.redis_url)
    return sum(
        int(c.get("tot-cmds", 0))
        for c in counter.client_list()
        if str(c.get("name", "")).startswith(prefix)
    )


def wait(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.005)


# --------------------------------------------------------------------------- refresh
def populate(rt: Runtime, workers: JobQueue, n_workers: int, n_episodes: int, beats: int) -> None:
    rng = random.Random(7)
    script = "# Bench\n\n" + "\n\n".join(f"[1s] Shot {i} of the storm." for i in range(beats))
    plan = plan_script(script)
    for i in range(n_episodes):
        services.create_episode(rt, plan, script=script, title=f"Episode {i}", wake=False)
    with rt.sessions.begin() as s:
        for ep in s.scalars(select(Episode)):
            ep.state = rng.choice([EpisodeState.RENDERING, EpisodeState.COMPLETED,
                                   EpisodeState.FAILED])  # fmt: skip
            ep.started_at = time.time() - rng.uniform(60, 3600)
            done = rng.randint(0, beats)
            for b in s.scalars(select(Beat).where(Beat.episode_id == ep.id)):
                b.state = BeatState.DONE if b.index < done else BeatState.PENDING
            for k in range(2):
                s.add(Upload(key=f"episodes/{ep.id}/beats/{k:03d}/attempt-1/clip.mp4",
                             size=1_800_000, seconds=0.8, bytes_per_s=2_250_000,
                             worker_id="w", episode_id=ep.id, beat_index=k))  # fmt: skip
    for i in range(n_workers):
        wid = f"gpu-{i:03d}"
        workers.heartbeat(wid, worker_fields(wid, 0.1), [], emit_event=False)


def worker_fields(wid: str, progress: float) -> dict[str, str]:
    return {"id": wid, "host": f"pod-{wid}", "gpu": GPU, "backends": "animatediff,svd",
            "state": "busy", "job": f"e-b001-a1-{wid}", "episode": "e", "beat": "1",
            "stage": "rendering", "progress": f"{progress:.3f}", "done": "12", "failed": "0",
            "started_at": f"{time.time() - 3600:.3f}"}  # fmt: skip


def bench_refresh(n_workers: int = 200, n_episodes: int = 50, beats: int = 40) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sw-bench-") as tmp:
        rt = local_runtime(Path(tmp) / "home")
        fake = connect(rt.settings, rt.redis_url, role="fake-workers")
        workers = JobQueue.from_settings(rt.settings, fake.fast, fake.blocking)
        populate(rt, workers, n_workers, n_episodes, beats)
        source = LiveSource(rt)

        def count(fn: Any) -> tuple[int, int, float]:
            s0, c0 = commands_by(rt, "storyworld-tui"), source.commands
            t = time.perf_counter()
            fn()
            dt = time.perf_counter() - t
            return commands_by(rt, "storyworld-tui") - s0, source.commands - c0, dt

        source.clients.fast.ping()  # connect (and name) the client before counting
        out["full_first"] = count(lambda: source._read_state(with_info=True))
        out["full_periodic"] = count(lambda: source._read_state(with_info=True))
        out["reconcile"] = count(lambda: source._read_state(with_info=False))
        out["naive"] = count(lambda: (source.queue.stats(), source.queue.workers()))
        out["db_poll_s"] = statistics.median(
            count(lambda: source._poll_db(time.monotonic()))[2] for _ in range(10)
        )
        out["build_s"] = statistics.median(count(source.build)[2] for _ in range(10))

        # Events: every worker heartbeats once (new progress); the event thread applies them.
        source.start(lambda snap: None)
        wait(lambda: source.model.known)
        time.sleep(0.5)
        s0, c0 = commands_by(rt, "storyworld-tui"), source.commands
        t = time.perf_counter()
        for i in range(n_workers):
            wid = f"gpu-{i:03d}"
            workers.heartbeat(wid, worker_fields(wid, 0.5), [])
        wait(lambda: all(w.progress == 0.5 for w in source.model.workers.values()))
        out["events"] = (
            commands_by(rt, "storyworld-tui") - s0,
            source.commands - c0,
            time.perf_counter() - t,
        )
        time.sleep(0.3)
        snap = source.build()
        source.stop()
        fake.close()
        rt.close()
    out["ui"] = bench_ui(snap)
    return out


def bench_ui(snap: Snapshot, rounds: int = 20) -> dict[str, float]:
    """Apply snapshots with every worker and episode changed, on the UI thread."""
    clock = [time.time()]
    source = FixedSource(snap)
    app = ConsoleApp(source, None, clock=lambda: clock[0], steady=True, tick_s=3600)
    res: dict[str, list[float]] = {"first": [], "apply": [], "paint": [], "tick": []}

    async def run() -> None:
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause(0.2)
            res["first"].append(app.last_render_s)
            current = snap
            for r in range(rounds):
                workers = tuple(
                    dataclasses.replace(w, progress=(r + 1) / (rounds + 1), seen=clock[0])
                    for w in current.workers
                )
                episodes = tuple(
                    dataclasses.replace(e, beats_done=min(e.beats_total, e.beats_done + 1))
                    for e in current.episodes
                )
                current = dataclasses.replace(current, workers=workers, episodes=episodes)
                n = app.render_count
                t = time.perf_counter()
                source.push(current)
                while app.render_count == n:
                    await asyncio.sleep(0)
                res["apply"].append(app.last_render_s)
                await pilot.pause()
                res["paint"].append(time.perf_counter() - t)
                # The once-a-second tick: ages change, nothing else.
                clock[0] += 1.0
                app.render_snapshot()
                res["tick"].append(app.last_render_s)

    asyncio.run(run())
    return {
        "first_ms": res["first"][0] * 1000,
        "apply_ms": statistics.median(res["apply"]) * 1000,
        "apply_p95_ms": sorted(res["apply"])[int(len(res["apply"]) * 0.95) - 1] * 1000,
        "paint_ms": statistics.median(res["paint"]) * 1000,
        "tick_ms": statistics.median(res["tick"]) * 1000,
    }


# --------------------------------------------------------------------------- idle
def idle_hour(
    scale: float, n_workers: int, engine: str | None, run_s: float | None = None
) -> dict[str, float]:
    """Commands per idle hour, compressed by `scale` (the console's, the engine's and the
    workers' intervals scaled alike), running `run_s` real seconds (default: one scaled
    hour) and extrapolating to an hour."""
    run_s = run_s or 3600 * scale
    with tempfile.TemporaryDirectory(prefix="sw-bench-") as tmp:
        s = load_settings(env={"STORYWORLD_HOME": str(Path(tmp) / "home")}, env_file=None)
        scaled = s.with_overrides(
            engine_idle_block_s=s.engine_idle_block_s * scale,
            engine_lease_s=s.engine_lease_s * scale,
            worker_idle_block_s=s.worker_idle_block_s * scale,
        )
        rt = open_runtime(scaled, role="bench-engine")
        fake = connect(s, rt.redis_url, role="fake-workers")
        workers = JobQueue.from_settings(s, fake.fast, fake.blocking)
        stop = threading.Event()
        hosts: list[EngineHost] = []
        other: Runtime | None = None
        if engine in ("leader", "standby"):
            hosts.append(EngineHost(rt, engine_id="engine-a"))
        if engine == "standby":
            other = open_runtime(scaled, role="bench-standby")
            hosts.append(EngineHost(other, engine_id="engine-b"))
        for h in hosts:
            h.start()
            time.sleep(0.2)

        def beat() -> None:
            period = s.worker_idle_block_s * scale
            k = 0
            while n_workers and not stop.wait(period / n_workers):
                wid = f"idle-{k % n_workers}"
                workers.heartbeat(wid, {"id": wid, "state": "idle", "host": "pod"}, [])
                k += 1

        source = LiveSource(
            rt,
            refresh_s=DEFAULT_REFRESH_S * scale,
            block_s=240 * scale,
            cost_sample_after_s=60 * scale,
            idle_log_refresh_s=600 * scale,
        )
        threading.Thread(target=beat, daemon=True).start()
        source.start(lambda snap: None)
        if n_workers:
            source.select_worker("idle-0")
        wait(lambda: len(source._cost_samples) >= 2, timeout=60 * scale + 30)
        time.sleep(0.5)
        names = {"console": "storyworld-tui", "engine": "bench-engine", "standby": "bench-standby"}
        before = {k: commands_by(rt, v) for k, v in names.items()}
        c0 = source.commands
        time.sleep(run_s)
        after = {k: commands_by(rt, v) for k, v in names.items()}
        factor = 3600 * scale / run_s
        result: dict[str, float] = {k: (after[k] - before[k]) * factor for k in names}
        result["console_own_count"] = (source.commands - c0) * factor
        stop.set()
        source.stop()
        for h in hosts:
            h.stop(grace_s=1)
        fake.close()
        if other is not None:
            other.close()
        rt.close()
        return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["refresh", "idle", "all"])
    p.add_argument("--scale", type=float, default=1 / 60, help="idle hour compression")
    p.add_argument(
        "--engine-seconds",
        type=float,
        default=600,
        help="real seconds to measure the hosted engine (not compressed: not every one of "
        "its intervals is a setting)",
    )
    args = p.parse_args(argv)
    if args.what in ("refresh", "all"):
        r = bench_refresh()
        print("## One dashboard refresh: 200 workers, 50 episodes x 40 beats\n")
        print("| refresh | Redis commands (server) | (console's count) | time |")
        print("| --- | ---: | ---: | ---: |")
        for key, label in (
            ("full_first", "first full read (every heartbeat fetched once)"),
            ("full_periodic", f"periodic full read (every {DEFAULT_REFRESH_S:.0f} s)"),
            ("reconcile", "reconciling read after jobs moved (at most every 30 s while jobs move)"),
            ("events", "200 heartbeat events (time: until applied, incl. the 0.5 s batching)"),
            ("naive", "for comparison: queue.stats() + queue.workers()"),
        ):
            server, own, dt = r[key]
            print(f"| {label} | {server} | {own if key != 'naive' else '–'} | {dt * 1000:.1f} ms |")
        db_ms = r["db_poll_s"] * 1000
        print(f"\nDatabase poll (episodes, uploads; off the UI thread): {db_ms:.1f} ms")
        print(f"Snapshot build (poll thread): {r['build_s'] * 1000:.2f} ms\n")
        ui = r["ui"]
        print("| UI thread | ms |\n| --- | ---: |")
        print(f"| first snapshot (all rows added) | {ui['first_ms']:.1f} |")
        print(f"| refresh, every worker and episode changed (median) | {ui['apply_ms']:.1f} |")
        print(f"| same, p95 | {ui['apply_p95_ms']:.1f} |")
        print(f"| same, + paint until idle (median) | {ui['paint_ms']:.1f} |")
        print(f"| once-a-second tick (ages only) | {ui['tick_ms']:.1f} |\n")
    if args.what in ("idle", "all"):
        print(f"## Redis commands per idle hour (compressed x{1 / args.scale:.0f})\n")
        print("| setup | console (monitoring) | console's own count | engine it hosts |")
        print("| --- | ---: | ---: | ---: |")
        for label, n, engine in (
            ("2 idle workers, no engine here (--read-only)", 2, None),
            ("0 workers, no engine here", 0, None),
        ):
            r2 = idle_hour(args.scale, n, engine)
            print(f"| {label} | {r2['console']:.0f} | {r2['console_own_count']:.0f} | – |")
            sys.stdout.flush()
        print(f"\nThe engine the console hosts, idle, measured {args.engine_seconds:.0f} s in real")
        print("time (extrapolated to an hour); the console's monitoring is the same as above.\n")
        print("| engine | commands per idle hour |\n| --- | ---: |")
        r3 = idle_hour(1.0, 2, "standby", run_s=args.engine_seconds)
        print(f"| this console's engine dispatches (leader) | {r3['engine']:.0f} |")
        print(f"| this console's engine in standby | {r3['standby']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
