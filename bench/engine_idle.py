"""Redis commands of idle engines per hour: a leader alone, and a leader with a standby.

    .venv/bin/python bench/engine_idle.py                  # scale 100: 72 s ≙ 2 hours
    .venv/bin/python bench/engine_idle.py --scale 1 --seconds 3600

Counted by the server (MONITOR, as bench/redis_commands.py does): commands sent by
clients, and all commands including those inside scripts. Real `storyworld engine`
processes at default settings; with `--scale` the idle block and the idle lease are divided
by it and the counts multiplied back (the idle loops are cycle-based).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from redis_commands import Deployment, Monitor


def measure(engines: int, seconds: float, scale: float) -> tuple[float, float]:
    env = {
        "ENGINE_IDLE_BLOCK_SECONDS": str(1200 / scale),
        "ENGINE_LEASE_SECONDS": str(1800 / scale),
    }
    with tempfile.TemporaryDirectory() as tmp:
        dep = Deployment(Path(tmp), **env)
        mon = Monitor(dep.port)
        try:
            for _ in range(engines):
                dep.engine()
            time.sleep(5)  # start-up (lease, reconcile) is not idle time
            mon.counting = True
            time.sleep(seconds)
            mon.counting = False
            sent, inner = mon.window()
        finally:
            mon.stop()
            dep.close()
    hours = seconds * scale / 3600
    return sum(sent.values()) / hours, (sum(sent.values()) + sum(inner.values())) / hours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=72.0)
    args = ap.parse_args()
    print("| idle engines | client commands / h | with calls inside scripts / h |")
    print("| --- | ---: | ---: |")
    for n, label in ((1, "leader alone"), (2, "leader + standby (both)")):
        sent, total = measure(n, args.seconds, args.scale)
        print(f"| {label} | {sent:.0f} | {total:.0f} |")


if __name__ == "__main__":
    main()
