"""The Job and Result messages: the only contract between engine and worker.

Messages are JSON with a schema version `v`. A reader accepts any message of its major
version and ignores fields it does not know, so engines and workers can be upgraded one at
a time. `parse_job` / `parse_result` raise `ProtocolError` with a reason that is fit for a
dead-letter entry.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "KNOWN_BACKENDS",
    "SCHEMA_VERSION",
    "ArtifactRef",
    "ErrorKind",
    "Job",
    "ProtocolError",
    "RenderSpec",
    "Result",
    "ResultStatus",
    "SpokenLine",
    "UploadEvent",
    "job_id_of",
    "parse_job",
    "parse_result",
]

SCHEMA_VERSION = 1

#: Every backend a job may name. Workers advertise the subset they can run.
KNOWN_BACKENDS = ("animatic", "animatediff", "svd", "veo")


class ProtocolError(ValueError):
    """A message could not be understood; `str()` is the reason for the dead-letter queue."""


class ErrorKind(StrEnum):
    TRANSIENT = "transient"  # out of memory, timeout, 429, network: retry with backoff
    PERMANENT = "permanent"  # bad input, model gone: fail (or fall back) at once
    CANCELLED = "cancelled"  # the worker was told to stop (shutdown); not the job's fault


class ResultStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SpokenLine(_Message):
    """One line of dialogue to voice, in script order. `voice` is resolved by the engine
    (the cast's `voice`, else a default per character) so the line and its voice are part
    of what a beat's render inputs are."""

    speaker: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=2000)
    extension: str = Field(default="", max_length=40)
    voice: str = Field(default="", max_length=300)


class RenderSpec(_Message):
    """What to render for one beat, and how."""

    text: str
    scene: str = ""
    captions: list[str] = Field(default_factory=list)
    #: The beat's dialogue, voiced by the worker's voice stage and drawn as subtitles.
    dialogue: list[SpokenLine] = Field(default_factory=list, max_length=200)
    #: Characters in the beat (speakers and those the action names), and a short
    #: description of each where the cast file has one (the previs reads its colours).
    characters: list[str] = Field(default_factory=list, max_length=50)
    character_notes: dict[str, str] = Field(default_factory=dict)
    title: str = ""
    duration_s: float = Field(gt=0, le=600)
    width: int = Field(gt=0, le=4096)
    height: int = Field(gt=0, le=4096)
    fps: int = Field(gt=0, le=120)
    steps: int | None = Field(default=None, gt=0, le=500)
    seed: int | None = None
    guidance: float | None = None
    negative_prompt: str = ""
    # Image-to-video backends: a stored keyframe to condition on (store key).
    conditioning_key: str | None = None
    # Backend-specific knobs (motion_bucket_id, decode_chunk_size, aspect_ratio, ...).
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return max(1, round(self.duration_s * self.fps))


class Job(_Message):
    """One render of one beat, one attempt. `job_id` is unique per attempt."""

    v: int = SCHEMA_VERSION
    type: Literal["render"] = "render"
    job_id: str = Field(min_length=1, max_length=128, pattern=r"^[^|\s]+$")
    episode_id: str = Field(min_length=1, max_length=64)
    beat_id: str = Field(min_length=1, max_length=64)
    beat_index: int = Field(ge=0)
    attempt: int = Field(ge=1)
    backend: str = Field(min_length=1, max_length=32)
    min_vram_gb: float = 0.0
    spec: RenderSpec
    storage_prefix: str = ""
    enqueued_at: float = Field(default_factory=time.time)
    #: 1 for the first delivery; the queue increments it each time a lease runs out.
    delivery: int = Field(default=1, ge=1)

    def to_json(self) -> str:
        return self.model_dump_json()


class ArtifactRef(_Message):
    """An object a worker stored: where it is and what it is."""

    kind: Literal["clip", "keyframe", "episode", "settings", "audio", "subtitles"]
    key: str
    size: int = Field(ge=0)
    sha256: str
    content_type: str
    url: str | None = None


class UploadEvent(_Message):
    """One upload, for the console's upload feed and the uploads table."""

    key: str
    size: int
    seconds: float
    bytes_per_s: float
    worker_id: str = ""
    episode_id: str = ""
    beat_index: int | None = None
    at: float = Field(default_factory=time.time)


class Result(_Message):
    """What a worker reports for one delivery of a job."""

    v: int = SCHEMA_VERSION
    type: Literal["result"] = "result"
    job_id: str
    episode_id: str
    beat_id: str
    attempt: int
    status: ResultStatus
    worker_id: str
    backend: str
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    uploads: list[UploadEvent] = Field(default_factory=list)
    error: str | None = None
    error_kind: ErrorKind | None = None
    # A backend that asks the engine to try another backend for this beat.
    fallback_backend: str | None = None
    started_at: float | None = None
    finished_at: float = Field(default_factory=time.time)
    render_s: float | None = None
    frames: int | None = None
    model_info: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> str:
        return self.model_dump_json()


def _parse(raw: str | bytes, model: type[_Message], kind: str) -> Any:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{kind} is not UTF-8 text") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"{kind} is not JSON: {e.msg} at position {e.pos}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{kind} is not a JSON object")
    v = data.get("v")
    if not isinstance(v, int) or v < 1:
        raise ProtocolError(f"{kind} has no schema version 'v'")
    if v > SCHEMA_VERSION:
        raise ProtocolError(
            f"{kind} schema version {v} is newer than this program's ({SCHEMA_VERSION})"
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise ProtocolError(f"{kind} field {where}: {first['msg']}") from None


def job_id_of(raw: str) -> str:
    """The `job_id` of a message that may not parse as a Job (for dead-letter entries)."""
    try:
        value = json.loads(raw).get("job_id")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def parse_job(raw: str | bytes) -> Job:
    """Parse a job message; raise `ProtocolError` (with a dead-letter reason) if invalid."""
    return _parse(raw, Job, "job")


def parse_result(raw: str | bytes) -> Result:
    """Parse a result message; raise `ProtocolError` if invalid."""
    return _parse(raw, Result, "result")
