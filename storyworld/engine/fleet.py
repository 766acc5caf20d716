"""Fleet control for the faces (console, API, CLI): drain, stop or resume a worker; pause
or resume dispatch per backend; the workers as the operator sees them. The Redis side is
storyworld.queue.control (the worker obeys it from there)."""

from __future__ import annotations

from typing import Any

from storyworld.engine.runtime import Runtime
from storyworld.engine.services import NotFound
from storyworld.queue import control

__all__ = ["COMMANDS", "command_worker", "paused_backends", "set_backend_paused"]

COMMANDS = control.COMMANDS
paused_backends = control.paused_backends


def command_worker(rt: Runtime, worker_id: str, command: str) -> dict[str, Any]:
    """Send `command` (drain, resume, stop) to a known worker."""
    known = {w.get("id") for w in rt.queue.workers()}
    if worker_id not in known:
        raise NotFound(f"no worker {worker_id!r}")
    control.send(rt.queue, worker_id, command)
    return {"worker": worker_id, "command": command}


def set_backend_paused(rt: Runtime, backend: str, paused: bool) -> dict[str, Any]:
    control.set_backend_paused(rt.queue, backend, paused)
    return {
        "backend": backend,
        "paused": paused,
        "paused_backends": sorted(paused_backends(rt.queue)),
    }
