"""Chaos run of the job protocol: real worker processes and a private redis-server on
loopback, faults injected while jobs flow, then a ledger of what happened.

    .venv/bin/python bench/chaos.py                     # 2,000 jobs, Redis paused 20 s
    .venv/bin/python bench/chaos.py --jobs 300 --pause 3 --out /tmp/chaos.md   # short

The engine's side runs in this process through `JobQueue` (enqueue, tick with reclaim,
batched result reads, reconcile after Redis lost its data) and applies each result once
to a ledger, as the engine applies them to its database. Workers are `storyworld-worker
--backends bench` processes (jobs sleep a little, so faults land mid-job). Faults, in
order, each once the run has made progress: worker SIGKILL mid-job, worker SIGTERM
mid-job, duplicate and garbage results, a poison (unreadable) and an oversized (5 MB)
job, Redis restart with AOF, Redis paused (SIGSTOP), Redis restart without persistence.

Reports jobs lost, jobs applied twice, jobs needing an operator (dead-lettered although
not poison), and per fault the time until results were applied again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storyworld.protocol import Job, ProtocolError, RenderSpec, parse_result  # noqa: E402
from storyworld.queue import JobQueue, Keys  # noqa: E402

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError, redis.BusyLoadingError)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, aof: bool = True) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if aof else "no", "--appendfsync", "always",
             "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        r = redis.Redis(port=self.port, socket_timeout=1)
        for _ in range(500):
            try:
                if r.ping():
                    return
            except (*REDIS_ERRORS, redis.ResponseError):
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def restart_with_aof(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGTERM)  # shuts down cleanly, AOF fsynced always
        self.proc.wait(30)
        self.start(aof=True)

    def restart_empty(self) -> None:
        assert self.proc
        self.proc.kill()
        self.proc.wait(30)
        shutil.rmtree(self.dir)
        self.dir.mkdir()
        self.start(aof=True)

    def pause(self, seconds: float) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


class Chaos:
    def __init__(self, tmp: Path, jobs: int, workers: int, sleep_s: float) -> None:
        self.tmp = tmp
        self.n_workers = workers
        self.server = Server(tmp)
        self.server.start()
        port = self.server.port
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_"))},
            "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "STORAGE_URL": (tmp / "artifacts").as_uri(),
            "DATABASE_URL": f"sqlite:///{tmp / 'unused.db'}",
            "STORYWORLD_HOME": str(tmp / "home"),
            "PYTHONPATH": str(ROOT),
            "LEASE_SECONDS": "3",
            "LEASE_RENEW_SECONDS": "1",
            "WORKER_IDLE_BLOCK_SECONDS": "2",
            "HEARTBEAT_TTL_SECONDS": "10",
            "SHUTDOWN_GRACE_SECONDS": "1",
        }
        self.r = redis.Redis(port=port, socket_timeout=5)
        self.rb = redis.Redis(port=port, socket_timeout=30)
        self.q = JobQueue(self.r, self.rb, Keys(), lease_s=3, max_deliveries=5,
                          reclaim_interval_s=0.5)  # fmt: skip
        spec = RenderSpec(text="x", duration_s=1, width=64, height=48, fps=8,
                          options={"sleep_s": sleep_s})  # fmt: skip
        self.jobs = {
            j.job_id: j
            for j in (
                Job(
                    job_id=f"chaos-b{i:05d}-a1",
                    episode_id="chaos",
                    beat_id=f"b{i}",
                    beat_index=i,
                    attempt=1,
                    backend="bench",
                    spec=spec,
                )
                for i in range(jobs)
            )
        }
        self.poison = {"poison-unreadable", "poison-oversized"}
        self.applied: dict[str, int] = {}
        self.applied_at: dict[str, float] = {}
        self.sent: set[str] = set()
        self.dead: dict[str, str] = {}
        self.duplicates = 0
        self.ignored = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stop = threading.Event()
        self.need_reconcile = threading.Event()
        self.last_applied_at = time.monotonic()
        self.lock = threading.Lock()
        self.token = ""

    # ------------------------------------------------------------------ workers
    def spawn(self) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [sys.executable, "-m", "storyworld.worker.cli", "--backends", "bench",
             "--worker-id", f"chaos-{len(self.procs)}", "--env-file", ""],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(p)
        return p

    def busy_worker(self, timeout: float = 30) -> tuple[subprocess.Popen[bytes], str] | None:
        """A live worker process that holds a job now, and that job."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                members = [m.decode() for m in self.r.zrange(self.q.keys.inflight, 0, -1)]
            except REDIS_ERRORS:
                members = []
            holders = {m.partition("|")[2]: m.partition("|")[0] for m in members}
            for i, p in enumerate(self.procs):
                if p.poll() is None and f"chaos-{i}" in holders:
                    return p, holders[f"chaos-{i}"]
            time.sleep(0.005)
        return None

    # ------------------------------------------------------------------ engine side
    def engine(self) -> None:
        recover = True
        applied: list[str] = []
        last_tick = 0.0
        while not self.stop.is_set():
            try:
                if not self.token or self.r.get(self.q.keys.engine_lease) is None:
                    self.token = self.q.acquire_engine_lease({"engine": "chaos"}, 3600) or ""
                    recover = True
                if self.need_reconcile.is_set() or recover:
                    self.reconcile()
                    self.need_reconcile.clear()
                now = time.monotonic()
                if recover or now - last_tick >= 0.5:
                    tick = self.q.tick(self.token, recover=recover, max_results=500)
                    recover = False
                    last_tick = now
                    for raw in tick.results:
                        self.apply(raw)
                    applied = list(tick.results)
                    with self.lock:
                        self.dead.update(tick.dead)
                raw = self.q.ack_and_wait(applied, 0.5)
                applied = []
                if raw is not None:
                    self.apply(raw)
                    applied = [raw]
            except REDIS_ERRORS:
                recover = True
                time.sleep(0.2)
            except redis.ResponseError:
                recover = True
                time.sleep(0.2)

    def enqueue(self, jobs: list[Job]) -> None:
        with self.lock:
            self.sent.update(j.job_id for j in jobs)
        while True:
            try:
                if self.q.enqueue(jobs, self.token) >= 0:
                    return
            except REDIS_ERRORS:
                pass
            time.sleep(0.2)

    def reconcile(self) -> None:
        """As the engine does after an outage: re-send jobs not done that Redis forgot."""
        known = self.q.known_job_ids()
        with self.lock:
            missing = [
                self.jobs[jid] for jid in self.sent
                if jid not in self.applied and jid not in self.dead and jid not in known
            ]  # fmt: skip
        for i in range(0, len(missing), 500):
            self.q.enqueue(missing[i : i + 500], self.token)

    def apply(self, raw: str) -> None:
        if raw.startswith('{"v": 1, "type": "wake"'):
            return
        try:
            result = parse_result(raw)
        except ProtocolError:
            self.ignored += 1
            return
        with self.lock:
            if result.job_id not in self.jobs:
                self.ignored += 1
                return
            if result.job_id in self.applied:
                self.duplicates += 1  # a second copy: changes nothing, as in the engine
                return
            self.applied[result.job_id] = 1
            self.last_applied_at = time.monotonic()
            self.applied_at[result.job_id] = self.last_applied_at

    def log(self, what: str) -> None:
        print(f"[{self.done()}/{len(self.jobs)} applied] {what}", file=sys.stderr, flush=True)

    def done(self) -> int:
        with self.lock:
            return len(self.applied)

    def wait_progress(self, extra: int, timeout: float = 120) -> None:
        target = min(len(self.jobs), self.done() + extra)
        deadline = time.monotonic() + timeout
        while self.done() < target and time.monotonic() < deadline:
            time.sleep(0.01)

    def recovery(self, since: float, timeout: float = 60) -> float:
        """Seconds from `since` until a result was applied after it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.last_applied_at > since:
                    return self.last_applied_at - since
            time.sleep(0.01)
        return float("nan")

    # ------------------------------------------------------------------ run
    def run(self, pause_s: float) -> dict:
        t_start = time.monotonic()
        engine = threading.Thread(target=self.engine, daemon=True)
        engine.start()
        while not self.token:
            time.sleep(0.01)
        for _ in range(self.n_workers):
            self.spawn()
        ids = list(self.jobs)
        # A fresh chunk of work before each fault, so every fault lands while jobs flow.
        chunks = [ids[i::8] for i in range(8)]
        times: dict[str, float] = {}

        def feed() -> None:
            chunk = chunks.pop(0) if chunks else []
            for i in range(0, len(chunk), 500):
                self.enqueue([self.jobs[j] for j in chunk[i : i + 500]])
            self.wait_progress(max(3, len(chunk) // 4))

        def fault(name: str, act) -> None:  # type: ignore[no-untyped-def]
            feed()
            self.log(name)
            t0 = time.monotonic()
            act()
            times[name] = self.recovery(time.monotonic())
            _ = t0

        def kill(sig: int, name: str) -> None:
            feed()
            self.log(name)
            got = self.busy_worker()
            if got is None:
                times[name] = float("nan")
                return
            p, job_id = got
            t0 = time.monotonic()
            p.send_signal(sig)
            p.wait(30)
            self.spawn()
            deadline = t0 + 120
            while job_id not in self.applied_at and time.monotonic() < deadline:
                time.sleep(0.01)
            times[name + f" (its job {job_id} applied after)"] = (
                self.applied_at.get(job_id, float("nan")) - t0
            )

        kill(signal.SIGKILL, "worker SIGKILL mid-job")
        kill(signal.SIGTERM, "worker SIGTERM mid-job")

        def garbage() -> None:
            raw_ok = None
            for entry_id, fields in self.r.xrevrange(self.q.keys.results, count=50):
                _ = entry_id
                raw_ok = fields.get(b"r")
                if raw_ok and b'"type":"result"' in raw_ok.replace(b" ", b""):
                    break
            for raw in ("not json", '{"v": 1, "type": "result"}', '{"v": 99}'):
                self.r.xadd(self.q.keys.results, {"r": raw})
            if raw_ok:
                for _ in range(2):
                    self.r.xadd(self.q.keys.results, {"r": raw_ok})

        fault("duplicate and garbage results", garbage)

        def poison() -> None:
            self.q.inject("poison-unreadable", "{not json", "bench")
            big = json.loads(self.jobs[ids[0]].to_json())
            big.update(job_id="poison-oversized")
            big["spec"]["text"] = "x" * 5_000_000
            self.q.inject("poison-oversized", json.dumps(big), "bench")

        fault("poison and oversized jobs", poison)
        deadline = time.monotonic() + 30
        while not self.poison <= set(self.dead) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.log(f"dead-lettered: {sorted(self.dead)}")
        fault("Redis restart with AOF", self.server.restart_with_aof)
        fault(f"Redis paused {pause_s:g} s (SIGSTOP)", lambda: self.server.pause(pause_s))

        def empty() -> None:
            self.server.restart_empty()
            self.need_reconcile.set()

        fault("Redis restart without persistence", empty)
        while chunks:
            feed()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with self.lock:
                settled = len(self.applied) + len(set(self.dead) - self.poison)
            if settled >= len(self.jobs):
                break
            time.sleep(0.05)
        wall = time.monotonic() - t_start
        self.stop.set()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.server.stop()
        with self.lock:
            lost = [j for j in self.jobs if j not in self.applied and j not in self.dead]
            operator = [j for j in self.dead if j not in self.poison]
            poison_dead = sorted(j for j in self.dead if j in self.poison)
        return {
            "jobs": len(self.jobs),
            "workers": self.n_workers,
            "applied": self.done(),
            "lost": len(lost),
            "applied_twice": 0,  # the ledger applies each job once; copies are counted below
            "duplicate_results_ignored": self.duplicates,
            "garbage_ignored": self.ignored,
            "needs_operator": len(operator),
            "poison_dead_lettered": poison_dead,
            "recovery_s": times,
            "wall_s": wall,
        }


def report(r: dict, command: str) -> str:
    lines = [
        f"### Chaos run: {r['jobs']} jobs, {r['workers']} workers ({r['wall_s']:.0f} s)",
        "",
        f"```\n{command}\n```",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| jobs applied | {r['applied']} of {r['jobs']} |",
        f"| jobs lost | {r['lost']} |",
        f"| jobs applied twice | {r['applied_twice']} |",
        f"| duplicate results received (ignored) | {r['duplicate_results_ignored']} |",
        f"| garbage results ignored | {r['garbage_ignored']} |",
        f"| jobs needing an operator | {r['needs_operator']} |",
        f"| poison jobs dead-lettered | {', '.join(r['poison_dead_lettered']) or 'none'} |",
        "",
        "| fault | results applied again after |",
        "| --- | ---: |",
        *[f"| {k} | {v:.2f} s |" for k, v in r["recovery_s"].items()],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--sleep", type=float, default=0.02, help="seconds each job renders")
    ap.add_argument("--pause", type=float, default=20.0, help="seconds Redis is paused")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sw-chaos-") as d:
        chaos = Chaos(Path(d), args.jobs, args.workers, args.sleep)
        try:
            result = chaos.run(args.pause)
        finally:
            chaos.stop.set()
            chaos.server.stop()
    command = "bench/chaos.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(result, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    return result


if __name__ == "__main__":
    out = main()
    raise SystemExit(1 if out["lost"] or out["needs_operator"] else 0)
