"""Start and stop worker pods from the queue's numbers, through commands the operator gives.

The plain alternative to KEDA (deploy/keda/) for RunPod, where pods are started by its API
or `runpodctl`: this reads the same numbers as `storyworld queue stats --json` (jobs on a
backend's wake lists, live workers from their heartbeats) and runs

- `--start-cmd` when more workers are wanted than run (environment: STORYWORLD_BACKEND,
  STORYWORLD_VRAM_CLASS, STORYWORLD_START_COUNT, STORYWORLD_WAITING), and
- `--stop-cmd` once per idle worker beyond the wanted number when nothing waits
  (environment: STORYWORLD_WORKER_ID, STORYWORLD_WORKER_HOST — the RunPod pod id when the
  worker runs on a pod — and STORYWORLD_BACKEND). Without it, workers started with
  `--idle-exit` stop by themselves.

No RunPod client is needed here; the commands are the operator's (examples in
deploy/README.md). Run it from cron with `--once` (give `--state-file` so that pods still
booting are not started twice), or as a loop with `--interval`.

    python -m storyworld.autoscale --backend svd --per-worker 2 --max 4 \\
        --start-cmd 'deploy/scripts/runpod-start.sh' --interval 120

Cost: one evaluation is one script (every wake list's length) plus one command per known
worker; at `--interval 120` with 3 workers about 3,600 commands a day.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from storyworld.config import ConfigError, Settings, load_settings, redact
from storyworld.queue import JobQueue, connect
from storyworld.queue.fleet import vram_class_of, wake_lengths
from storyworld.queue.keys import VRAM_CLASSES

__all__ = ["Plan", "Pool", "decide", "main", "read_pool"]

log = logging.getLogger("storyworld.autoscale")

_LLEN_MANY = (
    "local out = {} for i, k in ipairs(KEYS) do out[i] = redis.call('LLEN', k) end return out"
)


@dataclass
class Pool:
    """The numbers for one pool of pods: a backend on cards of one memory class."""

    waiting: int
    workers: int
    busy: int
    idle: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Plan:
    start: int
    stop: list[dict[str, str]]
    wanted: int


def decide(pool: Pool, *, per_worker: int, minimum: int, maximum: int, booting: int) -> Plan:
    """How many to start, which idle ones to stop. Busy workers keep working; one worker
    is wanted per `per_worker` waiting jobs, on top of them, between `minimum` and
    `maximum`. Pods started but not yet heard from (`booting`) count as running."""
    wanted = pool.busy + math.ceil(pool.waiting / max(per_worker, 1))
    wanted = max(minimum, min(maximum, wanted))
    start = max(0, wanted - pool.workers - booting)
    stop: list[dict[str, str]] = []
    if pool.waiting == 0:
        extra = pool.workers - wanted
        stop = pool.idle[: max(0, extra)]
    return Plan(start=start, stop=stop, wanted=wanted)


def read_pool(queue: JobQueue, backend: str, vram_class: int = 0) -> Pool:
    """Waiting jobs a pod of this pool can run (the backend's wake lists up to the class)
    and the live workers offering the backend on a card of at least that class."""
    keys = queue.keys
    lists = [backend, *(f"{backend}@{c}" for c in VRAM_CLASSES if c <= vram_class)]
    waiting = sum(wake_lengths(queue.r, keys, lists))
    workers, busy, idle = 0, 0, []
    for hb in queue.workers():
        if hb.get("state") == "gone" or backend not in hb.get("backends", "").split(","):
            continue
        try:
            gpu = json.loads(hb.get("gpu") or "null")
            gb = float(gpu["mem_total_mb"]) / 1024 if gpu else 0.0
        except (ValueError, KeyError, TypeError):
            gb = 0.0
        if vram_class_of(gb) < vram_class:
            continue
        workers += 1
        if hb.get("job"):
            busy += 1
        elif hb.get("state") == "idle":
            idle.append(hb)
    return Pool(waiting=waiting, workers=workers, busy=busy, idle=idle)


def _run(cmd: str, env: dict[str, str]) -> bool:
    proc = subprocess.run(cmd, shell=True, env={**os.environ, **env}, check=False)
    if proc.returncode:
        log.error("command failed (exit %d): %s", proc.returncode, redact(cmd))
    return proc.returncode == 0


class Booting:
    """Pods started and not yet heard from, remembered (in a file, for cron) until they
    send a heartbeat or `grace_s` passes."""

    def __init__(self, path: str | None, grace_s: float) -> None:
        self.path = Path(path) if path else None
        self.grace_s = grace_s
        self.started: list[float] = []
        self.workers = 0  # live workers at the last decision
        if self.path and self.path.is_file():
            try:
                doc = json.loads(self.path.read_text())
                self.started = [float(t) for t in doc["started"]]
                self.workers = int(doc.get("workers", 0))
            except (ValueError, KeyError, TypeError):
                self.started = []

    def count(self, now: float, workers_seen: int) -> int:
        """Pods still booting: each worker that appeared since the last decision is one
        that finished booting."""
        self.started = [t for t in self.started if now - t < self.grace_s]
        self.started = self.started[max(0, workers_seen - self.workers) :]
        return len(self.started)

    def add(self, now: float, n: int) -> None:
        self.started += [now] * n

    def save(self, workers: int) -> None:
        self.workers = workers
        if self.path:
            self.path.write_text(json.dumps({"started": self.started, "workers": workers}))


def evaluate(queue: JobQueue, args: argparse.Namespace, booting: Booting) -> Plan:
    pool = read_pool(queue, args.backend, args.vram_class)
    now = time.time()
    pending = booting.count(now, pool.workers)
    plan = decide(pool, per_worker=args.per_worker, minimum=args.min, maximum=args.max,
                  booting=pending)  # fmt: skip
    log.info(
        "%s@%d: %d waiting, %d workers (%d busy), %d booting: want %d, start %d, stop %d",
        args.backend, args.vram_class, pool.waiting, pool.workers, pool.busy, pending,
        plan.wanted, plan.start, len(plan.stop),
    )  # fmt: skip
    base = {"STORYWORLD_BACKEND": args.backend, "STORYWORLD_VRAM_CLASS": str(args.vram_class)}
    if plan.start and _run(
        args.start_cmd,
        {
            **base,
            "STORYWORLD_START_COUNT": str(plan.start),
            "STORYWORLD_WAITING": str(pool.waiting),
        },
    ):
        booting.add(now, plan.start)
    if args.stop_cmd:
        for hb in plan.stop:
            _run(args.stop_cmd, {**base, "STORYWORLD_WORKER_ID": hb.get("id", ""),
                                 "STORYWORLD_WORKER_HOST": hb.get("host", "")})  # fmt: skip
    booting.save(pool.workers)
    return plan


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m storyworld.autoscale", description=__doc__.split("\n")[0]
    )
    p.add_argument("--backend", required=True, help="the pool's backend (e.g. svd)")
    p.add_argument(
        "--vram-class",
        type=int,
        default=0,
        choices=(0, *VRAM_CLASSES),
        help="GB of the pool's cards, as a memory class (default 0: any)",
    )
    p.add_argument("--per-worker", type=int, default=2, help="waiting jobs per extra worker")
    p.add_argument("--min", type=int, default=0, help="workers to keep (default 0)")
    p.add_argument("--max", type=int, default=4, help="workers at most (default 4)")
    p.add_argument("--start-cmd", required=True, help="shell command that starts pods")
    p.add_argument("--stop-cmd", help="shell command that stops one idle worker's pod")
    p.add_argument(
        "--boot-grace",
        type=float,
        default=900.0,
        help="seconds a started pod has to send its first heartbeat (default 900)",
    )
    p.add_argument("--state-file", help="remember pods still booting between --once runs")
    p.add_argument("--once", action="store_true", help="decide once and exit (cron)")
    p.add_argument("--interval", type=float, default=120.0, help="seconds between decisions")
    p.add_argument("--env-file", default=".env")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings: Settings = load_settings(env_file=args.env_file)
    except ConfigError as e:
        print(f"autoscale: {e}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        print("autoscale: REDIS_URL is not set", file=sys.stderr)
        return 2
    clients = connect(settings, role="storyworld-autoscale")
    queue = JobQueue.from_settings(settings, clients.fast, clients.blocking)
    booting = Booting(args.state_file, args.boot_grace)
    try:
        while True:
            evaluate(queue, args, booting)
            if args.once:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        clients.close()


if __name__ == "__main__":
    sys.exit(main())
