"""A worker's heartbeat: a Redis hash of text fields that expires by itself, and the same
fields in the `heartbeat` stream event."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from storyworld.protocol import limits as L
from storyworld.protocol.base import Message, clip_text

__all__ = ["HEARTBEAT_FIELDS", "Heartbeat", "WorkerState"]


class WorkerState:
    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"
    GONE = "gone"  # the heartbeat expired (never sent by a worker)


def _text(limit: int) -> Any:
    return Annotated[str, BeforeValidator(lambda v: clip_text("" if v is None else str(v), limit))]


Short = _text(L.MAX_ID_CHARS)
Long = _text(2000)


class Heartbeat(Message):
    """What a worker tells about itself. Every field is text on Redis."""

    id: Short
    host: Short = ""
    pid: Short = ""
    backends: Long = ""  # comma-separated
    version: Short = ""
    started_at: Short = ""  # unix seconds, 3 decimals
    done: Short = "0"
    failed: Short = "0"
    gpu: Long = ""  # JSON of storyworld.worker.gpu.gpu_status(), or ""
    state: Short = WorkerState.IDLE
    job: Short = ""
    episode: Short = ""
    beat: Short = ""
    stage: Short = ""
    progress: Short = ""  # 0..1, 3 decimals, or ""
    seen: Short = Field(default="", description="set by the heartbeat script (server ms)")

    def to_fields(self) -> dict[str, str]:
        """The hash fields a worker sends (`seen` is set by the script)."""
        return {k: v for k, v in self.model_dump().items() if k != "seen"}

    @classmethod
    def from_fields(cls, fields: dict[str, Any], fallback_id: str = "") -> Heartbeat:
        """Read a hash or a heartbeat event leniently (unknown fields ignored)."""
        data = {k: v for k, v in fields.items() if k in HEARTBEAT_FIELDS}
        data.setdefault("id", fallback_id)
        return cls.model_validate(data)

    @staticmethod
    def gpu_json(gpu: dict[str, Any] | None) -> str:
        return json.dumps(gpu) if gpu else ""


HEARTBEAT_FIELDS = tuple(Heartbeat.model_fields)
