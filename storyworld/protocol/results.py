"""Results: what a worker reports for one delivery of a job, and its uploads."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from storyworld.protocol import limits as L
from storyworld.protocol.base import SCHEMA_VERSION, Message, clip_text, decode, validate

__all__ = [
    "ArtifactRef",
    "ErrorKind",
    "Result",
    "ResultStatus",
    "UploadEvent",
    "parse_result",
]


class ErrorKind(StrEnum):
    TRANSIENT = "transient"  # out of memory, timeout, 429, network: retry with backoff
    PERMANENT = "permanent"  # bad input, model gone: fail (or fall back) at once
    CANCELLED = "cancelled"  # the worker was told to stop (shutdown); not the job's fault


class ResultStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


ErrorText = Annotated[str | None, BeforeValidator(lambda v: clip_text(v, L.MAX_ERROR_CHARS))]
Key = Annotated[str, Field(max_length=L.MAX_KEY_CHARS)]


class ArtifactRef(Message):
    """An object a worker stored: where it is and what it is."""

    kind: Literal[
        "clip", "keyframe", "episode", "settings", "audio", "subtitles", "last_frame", "reference"
    ]
    key: Key
    size: int = Field(ge=0)
    sha256: str = Field(max_length=64)
    content_type: str = Field(max_length=64)
    url: str | None = Field(default=None, max_length=4096)


class UploadEvent(Message):
    """One upload, for the console's upload feed and the uploads table."""

    key: Key
    size: int
    seconds: float
    bytes_per_s: float
    worker_id: str = Field(default="", max_length=L.MAX_ID_CHARS)
    episode_id: str = Field(default="", max_length=64)
    beat_index: int | None = None
    at: float = Field(default_factory=time.time)


class Result(Message):
    """What a worker reports for one delivery of a job."""

    v: int = SCHEMA_VERSION
    type: Literal["result"] = "result"
    kind: str = Field(default="clip", max_length=32)
    job_id: str = Field(max_length=L.MAX_ID_CHARS)
    episode_id: str = Field(max_length=64)
    beat_id: str = Field(max_length=64)
    attempt: int
    status: ResultStatus
    worker_id: str = Field(max_length=L.MAX_ID_CHARS)
    backend: str = Field(max_length=32)
    artifacts: list[ArtifactRef] = Field(default_factory=list, max_length=L.MAX_ARTIFACTS)
    uploads: list[UploadEvent] = Field(default_factory=list, max_length=L.MAX_UPLOADS)
    error: ErrorText = None
    error_kind: ErrorKind | None = None
    # A backend that asks the engine to try another backend for this beat.
    fallback_backend: str | None = Field(default=None, max_length=32)
    started_at: float | None = None
    finished_at: float = Field(default_factory=time.time)
    render_s: float | None = None
    frames: int | None = None
    model_info: dict[str, Any] = Field(default_factory=dict)

    @field_validator("model_info")
    @classmethod
    def _bounded_info(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, default=str))
        if size > L.MAX_OPTIONS_BYTES:
            raise ValueError(f"model_info is {size:,} bytes as JSON, over {L.MAX_OPTIONS_BYTES:,}")
        return value


def parse_result(raw: str | bytes) -> Result:
    """Parse a result message; raise `ProtocolError` if invalid or over a limit."""
    return validate(Result, decode(raw, "result", L.MAX_RESULT_BYTES), "result")
