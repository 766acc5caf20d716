"""The queue's own overhead: jobs that render nothing (the `bench` backend), real worker
processes, a private redis-server, and the engine's side of the protocol (enqueue in one
batch, results read in batches, ticks) driven through `JobQueue` directly.

    .venv/bin/python bench/queue_bench.py                      # 2,000 jobs, 1 and 8 workers
    .venv/bin/python bench/queue_bench.py --jobs 5000 --workers 1,4,8 --latency 300

Reports jobs/s (first enqueue to last result read), dispatch latency (an idle worker
blocked on its wake list; from the enqueue call to the worker's start of the job, both on
this machine's clock) and, from a MONITOR connection, commands per job: sent by clients,
and all commands including those run inside scripts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from redis_commands import Monitor, free_port  # noqa: E402

from storyworld.protocol import Job, RenderSpec, parse_result  # noqa: E402
from storyworld.queue import JobQueue, Keys  # noqa: E402


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    import shutil

    port = free_port()
    binary = shutil.which("redis-server") or "redis-server"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    r = redis.Redis(port=port)
    for _ in range(300):
        try:
            r.ping()
            return proc, port
        except redis.RedisError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def make_jobs(n: int, tag: str) -> list[Job]:
    spec = RenderSpec(text="x", duration_s=1, width=64, height=48, fps=8)
    return [
        Job(
            job_id=f"{tag}-b{i:05d}-a1",
            episode_id=tag,
            beat_id=f"b{i}",
            beat_index=i,
            attempt=1,
            backend="bench",
            spec=spec,
        )
        for i in range(n)
    ]


class Bench:
    def __init__(self, tmp: Path, port: int) -> None:
        self.port = port
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_"))},
            "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "STORAGE_URL": (tmp / "artifacts").as_uri(),
            "DATABASE_URL": f"sqlite:///{tmp / 'unused.db'}",
            "STORYWORLD_HOME": str(tmp / "home"),
            "PYTHONPATH": str(ROOT),
        }
        self.r = redis.Redis(port=port)
        self.rb = redis.Redis(port=port, socket_timeout=3600)
        self.q = JobQueue(self.r, self.rb, Keys())
        token = self.q.acquire_engine_lease({"engine": "bench"}, 3600)
        assert token
        self.token = token
        self.q.tick(token, recover=True)
        self.procs: list[subprocess.Popen[bytes]] = []

    def workers(self, n: int) -> None:
        for i in range(n):
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "storyworld.worker.cli",
                        "--backends",
                        "bench",
                        "--worker-id",
                        f"bench-{len(self.procs)}-{i}",
                        "--env-file",
                        "",
                    ],
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        want = len(self.procs)
        while self.r.zcard(self.q.keys.workers) < want:
            time.sleep(0.05)
        time.sleep(0.5)  # every worker is blocked on its wake list now

    def stop_workers(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(30)
        self.procs = []
        self.r.delete(self.q.keys.workers)

    def collect(self, n: int) -> list[str]:
        """The engine's side: read results in batches, acknowledged by ticks."""
        got: list[str] = []
        applied: list[str] = []
        last_tick = time.monotonic()
        while len(got) < n:
            raw = self.q.ack_and_wait(applied, 5.0)
            applied = []
            if raw is not None:
                got.append(raw)
                applied.append(raw)
            if time.monotonic() - last_tick >= 5.0:
                tick = self.q.tick(self.token)
                got += tick.results
                applied += tick.results
                last_tick = time.monotonic()
        self.q._applied(applied)
        self.q.tick(self.token)  # acknowledge the rest
        return got

    def throughput(self, n: int, tag: str) -> float:
        jobs = make_jobs(n, tag)
        t0 = time.perf_counter()
        for i in range(0, n, 1000):
            self.q.enqueue(jobs[i : i + 1000], self.token)
        self.collect(n)
        return n / (time.perf_counter() - t0)

    def latency(self, n: int) -> list[float]:
        out = []
        for i, job in enumerate(make_jobs(n, "lat")):
            t0 = time.time()
            self.q.enqueue([job], self.token)
            raw = self.collect(1)[0]
            started = parse_result(raw).started_at or 0.0
            if i >= 5:  # warm
                out.append((started - t0) * 1000)
        return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--workers", default="1,8")
    ap.add_argument("--latency", type=int, default=200, help="jobs for the latency run")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    lines = []
    with tempfile.TemporaryDirectory(prefix="sw-qbench-") as d:
        tmp = Path(d)
        proc, port = start_redis(tmp)
        try:
            b = Bench(tmp, port)
            rows = []
            for w in [int(x) for x in args.workers.split(",")]:
                b.workers(w)
                b.throughput(100, f"warm{w}")
                rate = b.throughput(args.jobs, f"tp{w}")
                rows.append((w, rate))
                b.stop_workers()
            b.workers(1)
            lat = b.latency(args.latency)
            mon = Monitor(port)
            mon.reset()
            mon.counting = True
            b.throughput(args.jobs, "count")
            time.sleep(0.5)
            mon.counting = False
            sent, inner = mon.window()
            mon.stop()
            b.stop_workers()
        finally:
            proc.terminate()
            proc.wait(10)
    n = args.jobs
    lines.append(f"### Queue overhead (`bench` backend, {n} jobs, private redis-server)\n")
    lines.append("| workers | jobs/s |")
    lines.append("| ---: | ---: |")
    for w, rate in rows:
        lines.append(f"| {w} | {rate:.0f} |")
    lines.append("")
    lines.append(
        f"Dispatch latency, 1 idle worker, {len(lat)} jobs one at a time: "
        f"p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms"
    )
    lines.append("")
    ts, ti = sum(sent.values()), sum(inner.values())
    lines.append(
        f"Commands per job ({n} jobs, 1 worker, engine side through JobQueue): "
        f"{ts / n:.2f} sent by clients, {(ts + ti) / n:.2f} counting calls inside scripts"
    )
    lines.append("")
    lines.append("Sent: " + ", ".join(f"{k} {v}" for k, v in sent.most_common()))
    lines.append("")
    lines.append("Inside scripts: " + ", ".join(f"{k} {v}" for k, v in inner.most_common()))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
