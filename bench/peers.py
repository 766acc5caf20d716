"""StoryWorld's queue beside RQ, arq, Dramatiq, Celery and BullMQ: the same redis-server
(flushed between them), the same job count, one worker each, no-op jobs.

    bench/peers.py --setup          # once: a venv under /tmp for the Python peers, bullmq from npm
    bench/peers.py --jobs 1000 --idle-seconds 30

Peers are installed outside the project's venv (`/tmp/peers-venv`: rq, arq, dramatiq[redis],
celery[redis]; `/tmp/peers-node`: bullmq), so they cannot break it. For each queue the
benchmark counts, with a MONITOR connection, every command from the first enqueue to the
last job done: those sent by clients and those run inside Lua scripts. A peer's task does
one INCR to say it ran; that command is subtracted. StoryWorld's figure includes the
engine's side (results read in batches and acknowledged). Jobs are enqueued one call per
job for the peers (their usual API) and in one batch for StoryWorld (what its engine does).
Idle: a worker alone, counted for --idle-seconds and scaled to an hour.
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

from queue_bench import Bench, start_redis  # noqa: E402
from redis_commands import Monitor  # noqa: E402

PEERS_DIR = ROOT / "bench" / "peers"
VENV = Path("/tmp/peers-venv")
NODE = Path("/tmp/peers-node")
PY = str(VENV / "bin" / "python")


def setup() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [PY, "-m", "pip", "install", "-q", "rq", "arq", "dramatiq[redis]",
         "celery[redis]>=5.4", "kombu>=5.4"],
        check=True,
    )  # fmt: skip
    NODE.mkdir(exist_ok=True)
    subprocess.run(["npm", "init", "-y"], cwd=NODE, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["npm", "install", "bullmq", "ioredis"], cwd=NODE, check=True)


def peers() -> dict[str, tuple[list[str], list[str], Path]]:
    """name -> (worker command, producer command prefix, working directory)."""
    node_script = NODE / "bullmq_peer.mjs"
    node_script.write_text((PEERS_DIR / "bullmq_peer.mjs").read_text())
    return {
        "RQ": ([PY, "rq_peer.py", "worker"], [PY, "rq_peer.py", "produce"], PEERS_DIR),
        "arq": ([PY, "-m", "arq", "arq_peer.WorkerSettings"], [PY, "arq_peer.py", "produce"],
                PEERS_DIR),
        "Dramatiq": ([PY, "-m", "dramatiq", "dramatiq_peer", "-p", "1", "-t", "1"],
                     [PY, "dramatiq_peer.py", "produce"], PEERS_DIR),
        "Celery": ([PY, "-m", "celery", "-A", "celery_peer", "worker", "-c", "1",
                    "--loglevel", "warning"], [PY, "celery_peer.py", "produce"], PEERS_DIR),
        "BullMQ": (["node", "bullmq_peer.mjs", "worker"], ["node", "bullmq_peer.mjs", "produce"],
                   NODE),
    }  # fmt: skip


def run_peer(name: str, cmds, port: int, jobs: int, idle_s: float) -> dict:  # type: ignore[no-untyped-def]
    worker_cmd, produce_cmd, cwd = cmds
    env = {**os.environ, "PEER_REDIS_PORT": str(port), "PYTHONPATH": str(PEERS_DIR)}
    r = redis.Redis(port=port)
    r.flushall()
    out: dict = {}
    worker = subprocess.Popen(worker_cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(4)  # started and blocked
        mon = Monitor(port)
        mon.reset()
        mon.counting = True
        time.sleep(idle_s)
        mon.counting = False
        sent, inner = mon.window()
        out["idle_sent_h"] = sum(sent.values()) * 3600 / idle_s
        out["idle_all_h"] = (sum(sent.values()) + sum(inner.values())) * 3600 / idle_s
        # warm-up
        subprocess.run([*produce_cmd, "20", "warm"], cwd=cwd, env=env, check=True)
        while int(r.get("peer:done") or 0) < 20:
            time.sleep(0.01)
        r.set("peer:done", 0)
        mon.reset()
        mon.counting = True
        t0 = time.perf_counter()
        subprocess.run([*produce_cmd, str(jobs), "run"], cwd=cwd, env=env, check=True)
        deadline = time.monotonic() + 600
        while int(r.get("peer:done") or 0) < jobs and time.monotonic() < deadline:
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        time.sleep(0.3)
        mon.counting = False
        sent, inner = mon.window()
        mon.stop()
        done = int(r.get("peer:done") or 0)
        sent_n = sum(sent.values()) - sent.get("INCR", 0) - sent.get("GET", 0)
        out.update(
            jobs=done,
            jobs_s=done / wall,
            sent_job=sent_n / max(done, 1),
            all_job=(sent_n + sum(inner.values())) / max(done, 1),
        )
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
    return out


def run_storyworld(tmp: Path, port: int, jobs: int) -> dict:
    redis.Redis(port=port).flushall()
    b = Bench(tmp, port)
    b.workers(1)
    b.throughput(20, "warm")
    mon = Monitor(port)
    mon.reset()
    mon.counting = True
    t0 = time.perf_counter()
    b.throughput(jobs, "run")
    wall = time.perf_counter() - t0
    mon.counting = False
    sent, inner = mon.window()
    mon.stop()
    b.stop_workers()
    ts = sum(sent.values())
    return {
        "jobs": jobs,
        "jobs_s": jobs / wall,
        "sent_job": ts / jobs,
        "all_job": (ts + sum(inner.values())) / jobs,
        "idle_sent_h": 12.0,  # measured exactly by redis_commands.py (600 s cycles)
        "idle_all_h": 36.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--setup", action="store_true")
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--idle-seconds", type=float, default=30)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.setup:
        setup()
        return 0
    rows = {}
    with tempfile.TemporaryDirectory(prefix="sw-peers-") as d:
        proc, port = start_redis(Path(d))
        try:
            rows["StoryWorld"] = run_storyworld(Path(d), port, args.jobs)
            for name, cmds in peers().items():
                if args.only and name not in args.only.split(","):
                    continue
                try:
                    rows[name] = run_peer(name, cmds, port, args.jobs, args.idle_seconds)
                except Exception as e:  # a peer that fails is reported, the others run
                    rows[name] = {"error": f"{type(e).__name__}: {e}"}
                print(name, rows[name], file=sys.stderr, flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
    lines = [
        "| queue | jobs | jobs/s | client commands / job | all / job (with calls inside "
        "scripts) | idle worker sent / h | idle worker all / h |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {name} | {r['jobs']} | {r['jobs_s']:.0f} | {r['sent_job']:.2f} | "
            f"{r['all_job']:.2f} | {r['idle_sent_h']:.0f} | {r['idle_all_h']:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
