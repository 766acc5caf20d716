"""Fleet control on Redis: drain, stop or resume one worker; pause or resume dispatch per
backend. Shared by the engine (which sends and honours them, storyworld.engine.fleet) and
the worker (which obeys), so it lives with the other key layouts.

- **A worker's control list** is `<wake prefix>control:<worker id>`, beside the wake lists
  an idle worker already blocks on: it blocks on its control list in the same BLMPOP, so
  an idle worker hears a command at once and it costs nothing while nobody sends one. A
  busy worker looks at it once per heartbeat (LPOP). Commands: `drain` (finish the job in
  hand, take no more, stay up), `resume` (take jobs again), `stop` (exit after the job in
  hand, or hand it back after the grace period).
- **Paused backends** are a set, `<base>:paused:backends`: the engine dispatches no new job
  to a paused backend (jobs already waiting stay waiting; in-flight ones finish). The
  engine reads it only when it has beats to dispatch.
"""

from __future__ import annotations

from typing import Any

from storyworld.config import ConfigError
from storyworld.protocol import KNOWN_BACKENDS
from storyworld.protocol.wake import WakeReason

__all__ = [
    "COMMANDS",
    "CONTROL_PREFIX",
    "control_key",
    "paused_backends",
    "paused_key",
    "send",
    "set_backend_paused",
    "take_command",
]

COMMANDS = ("drain", "resume", "stop")
#: The wake-list suffix of a worker's control list (`control:<worker id>`).
CONTROL_PREFIX = "control:"
CONTROL_TTL_S = 86_400  # a command for a worker that never comes back expires


def control_key(queue: Any, worker_id: str) -> str:
    return queue.keys.wake(f"{CONTROL_PREFIX}{worker_id}")


def paused_key(queue: Any) -> str:
    return f"{queue.keys.base}:paused:backends"


def send(queue: Any, worker_id: str, command: str) -> None:
    """Queue `command` for `worker_id` (one round trip)."""
    if command not in COMMANDS:
        choices = ", ".join(COMMANDS)
        raise ConfigError(f"unknown worker command {command!r} (choose from {choices})")
    key = control_key(queue, worker_id)
    with queue.r.pipeline(transaction=True) as p:
        p.rpush(key, command)
        p.expire(key, CONTROL_TTL_S)
        p.execute()


def take_command(queue: Any, worker_id: str) -> str | None:
    """The oldest command for `worker_id`, if any (a busy worker, once per heartbeat)."""
    raw = queue.r.lpop(control_key(queue, worker_id))
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def paused_backends(queue: Any) -> set[str]:
    return {
        x.decode() if isinstance(x, bytes) else str(x) for x in queue.r.smembers(paused_key(queue))
    }


def set_backend_paused(queue: Any, backend: str, paused: bool) -> None:
    """Pause (or resume) dispatch of new jobs to `backend`, and nudge the engine."""
    if backend not in KNOWN_BACKENDS:
        choices = ", ".join(KNOWN_BACKENDS)
        raise ConfigError(f"unknown backend {backend!r} (choose from {choices})")
    if paused:
        queue.r.sadd(paused_key(queue), backend)
    else:
        queue.r.srem(paused_key(queue), backend)
    queue.wake_engine(WakeReason.PAUSED if paused else WakeReason.RESUMED)
