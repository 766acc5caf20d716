"""The worker's own heartbeat, on local disk, for a container HEALTHCHECK.

Each time a worker's heartbeat reaches Redis it also writes `<WORKER_HEALTH_DIR>/<id>.json`
(atomically: a temporary file renamed). `storyworld-worker --healthcheck` reads those files
and says healthy while the newest heartbeat is younger than `HEARTBEAT_TTL_SECONDS`, the
same age at which Redis forgets the worker and the console shows it gone. Reading a local
file costs no Redis command, so a probe every 30 s adds nothing to a metered bill.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["check_health", "remove_health", "write_health"]


def _path(folder: str | Path, worker_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in worker_id)
    return Path(folder) / f"{safe}.json"


def write_health(folder: str | Path, worker_id: str, fields: dict[str, Any]) -> None:
    """Record a heartbeat that Redis accepted just now."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    doc = {"id": worker_id, "pid": os.getpid(), "at": time.time(), **fields}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".hb-")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, _path(folder, worker_id))


def remove_health(folder: str | Path, worker_id: str) -> None:
    """A worker that stops cleanly takes its file away."""
    try:
        _path(folder, worker_id).unlink()
    except FileNotFoundError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_health(folder: str | Path, ttl_s: float, now: float | None = None) -> tuple[bool, str]:
    """(healthy, one line). Healthy: every running worker's last heartbeat reached Redis
    less than `ttl_s` ago, and there is at least one."""
    now = time.time() if now is None else now
    d = Path(folder)
    beats = []
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            doc = json.loads(f.read_text())
            beats.append(doc)
        except (OSError, ValueError):
            continue
    running = [b for b in beats if isinstance(b.get("pid"), int) and _alive(b["pid"])]
    if not running:
        return False, f"no running worker has written a heartbeat in {d}"
    stale = [b for b in running if now - float(b.get("at", 0)) >= ttl_s]
    if stale:
        ages = ", ".join(f"{b['id']} {now - float(b.get('at', 0)):.0f} s ago" for b in stale)
        return False, f"last heartbeat reached Redis too long ago: {ages} (limit {ttl_s:g} s)"
    parts = [
        f"{b['id']} {b.get('state', '?')}{' ' + b['job'] if b.get('job') else ''}, "
        f"{now - float(b['at']):.0f} s ago"
        for b in running
    ]
    return True, "healthy: " + "; ".join(parts)
