"""Events on the capped stream that consoles block on: kinds and payloads.

An entry has two fields, `type` (an `EventKind`) and `data` (the payload's JSON). Most are
written inside the Lua scripts, which receive the kinds they write as ARGV; the payload
classes below are the contract both sides keep, and Python builds events only here.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from storyworld.protocol.base import Message
from storyworld.protocol.results import UploadEvent

__all__ = [
    "DeadChangedEvent",
    "DeadEvent",
    "EnqueuedEvent",
    "EventKind",
    "FinishedEvent",
    "RequeuedEvent",
    "StartedEvent",
    "WorkerGoneEvent",
    "event_fields",
    "parse_event_data",
]


class EventKind(StrEnum):
    HEARTBEAT = "heartbeat"  # data: Heartbeat fields
    ENQUEUED = "enqueued"  # EnqueuedEvent
    STARTED = "started"  # StartedEvent
    DONE = "done"  # FinishedEvent
    FAILED = "failed"  # FinishedEvent
    REQUEUED = "requeued"  # RequeuedEvent
    DEAD = "dead"  # DeadEvent
    DEAD_CHANGED = "dead_changed"  # DeadChangedEvent
    WORKER_GONE = "worker_gone"  # WorkerGoneEvent


class EnqueuedEvent(Message):
    count: int = 1


class StartedEvent(Message):
    job_id: str
    worker: str
    episode_id: str = ""
    beat_index: int | None = None
    backend: str = ""
    delivery: int = 1


class FinishedEvent(Message):
    """A job's result was pushed (`done` or `failed`)."""

    job_id: str
    episode_id: str = ""
    worker: str = ""
    status: str = ""
    backend: str = ""
    error: str | None = None
    render_s: float | None = None
    uploads: list[UploadEvent] = Field(default_factory=list)


class RequeuedEvent(Message):
    job_id: str
    worker: str = ""
    reason: str = ""


class DeadEvent(Message):
    job_id: str = ""
    reason: str = ""
    worker: str = ""


class DeadChangedEvent(Message):
    requeued: int = 0
    dropped: int = 0


class WorkerGoneEvent(Message):
    id: str


_PAYLOADS: dict[EventKind, type[BaseModel]] = {
    EventKind.ENQUEUED: EnqueuedEvent,
    EventKind.STARTED: StartedEvent,
    EventKind.DONE: FinishedEvent,
    EventKind.FAILED: FinishedEvent,
    EventKind.REQUEUED: RequeuedEvent,
    EventKind.DEAD: DeadEvent,
    EventKind.DEAD_CHANGED: DeadChangedEvent,
    EventKind.WORKER_GONE: WorkerGoneEvent,
}


def event_fields(kind: EventKind, payload: BaseModel) -> dict[str, str]:
    """The stream entry's fields for an event (what XADD receives)."""
    expected = _PAYLOADS.get(kind)
    if expected is not None and not isinstance(payload, expected):
        raise TypeError(f"a {kind} event carries {expected.__name__}")
    return {"type": str(kind), "data": payload.model_dump_json()}


def parse_event_data(kind: str, data: str) -> dict[str, Any]:
    """An event's payload as a dict; {} if unreadable (readers skip what they don't know)."""
    try:
        value = json.loads(data or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
