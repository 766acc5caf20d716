"""What `storyworld doctor` and `storyworld smoke` cost on a metered Redis, and how long.

Counts come from the server (MONITOR, as in bench/redis_commands.py). The doctor runs
alone against a private redis-server; the smoke test runs against a deployment of real
processes (`storyworld engine`, one `storyworld-worker --backends animatic`) and only the
commands of its own connections are counted: MONITOR shows the CLIENT SETNAME / HELLO
SETNAME each connection starts with, which ties its address to its name.

    .venv/bin/python bench/deploy_commands.py [--runs 5]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from redis_commands import Deployment  # noqa: E402


class ByConnection:
    """Client-sent commands per connection name, from MONITOR."""

    def __init__(self, port: int) -> None:
        self.client = redis.Redis(port=port, socket_timeout=3600)
        self.names: dict[str, str] = {}
        self.sent: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.ready = threading.Event()
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(5)

    def _run(self) -> None:
        with self.client.monitor() as m:
            self.ready.set()
            for cmd in m.listen():
                if self._stop:
                    return
                addr = str(cmd.get("client_address", "")) + ":" + str(cmd.get("client_port", ""))
                if cmd.get("client_type") == "lua" or "lua" in addr:
                    continue
                words = cmd["command"].replace('"', "").split()
                name = words[0].upper() if words else "?"
                upper = [w.upper() for w in words]
                if "SETNAME" in upper:
                    self.names[addr] = words[upper.index("SETNAME") + 1]
                self.sent[self.names.get(addr, addr)][name] += 1

    def total(self, prefix: str) -> collections.Counter[str]:
        out: collections.Counter[str] = collections.Counter()
        for name, counts in self.sent.items():
            if name.startswith(prefix):
                out.update(counts)
        return out

    def reset(self) -> None:
        self.sent.clear()

    def stop(self) -> None:
        self._stop = True


def run_cli(env: dict[str, str], *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "storyworld.cli", "--env-file", "", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return time.perf_counter() - t0, proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sw-bench-deploy-") as tmp:
        d = Deployment(Path(tmp))
        mon = ByConnection(d.port)
        try:
            doctor_s, doctor_cmds = [], []
            for _ in range(args.runs):
                mon.reset()
                seconds, proc = run_cli(d.env, "doctor", "--role", "engine", "--json")
                assert proc.returncode == 0, proc.stdout + proc.stderr
                time.sleep(0.2)  # MONITOR lines arrive after the replies
                doctor_s.append(seconds)
                doctor_cmds.append(mon.total("storyworld-doctor"))
            d.engine()
            d.worker("bench-w1")
            d.wait_workers(1)
            smoke_s, smoke_cmds, steps = [], [], []
            for _ in range(args.runs):
                mon.reset()
                seconds, proc = run_cli(d.env, "smoke", "--json", "--timeout", "60")
                assert proc.returncode == 0, proc.stdout + proc.stderr
                time.sleep(0.2)
                smoke_s.append(seconds)
                smoke_cmds.append(mon.total("storyworld-smoke"))
                steps.append(json.loads(proc.stdout)["steps"])
        finally:
            mon.stop()
            d.close()
    print("| command | wall s (median) | client-sent commands (median) | by name (last run) |")
    print("| --- | ---: | ---: | --- |")
    for label, secs, cmds in (
        ("storyworld doctor --role engine", doctor_s, doctor_cmds),
        ("storyworld smoke", smoke_s, smoke_cmds),
    ):
        by_name = ", ".join(f"{k} {v}" for k, v in cmds[-1].most_common())
        print(
            f"| `{label}` | {statistics.median(secs):.2f} | "
            f"{statistics.median(sum(c.values()) for c in cmds):.0f} | {by_name} |"
        )
    print()
    print("smoke steps, median seconds over the runs:")
    for i, step in enumerate(steps[0]):
        med = statistics.median(run[i]["seconds"] for run in steps)
        print(f"- {step['name']}: {med:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
