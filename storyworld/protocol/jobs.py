"""Jobs: one attempt at one stage of one beat, sent by the engine to the workers.

Every job shares the envelope of `JobBase`; its `kind` names the stage and chooses the
`spec` type. Today's render jobs (`type: render`, no `kind`) are clip jobs, so messages
written before kinds existed still parse, and an older worker ignores the new field. A new
stage (keyframe, voice) is a subclass with its own `kind` literal and spec, registered with
`@job_kind`:

    class KeyframeSpec(Message): ...

    @job_kind
    class KeyframeJob(JobBase):
        kind: Literal["keyframe"] = "keyframe"
        spec: KeyframeSpec
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, StringConstraints, field_validator

from storyworld.protocol import limits as L
from storyworld.protocol.base import SCHEMA_VERSION, Message, ProtocolError, decode, validate

__all__ = [
    "JOB_KINDS",
    "Job",
    "JobBase",
    "KeyframeJob",
    "RenderSpec",
    "SpokenLine",
    "job_id_of",
    "job_kind",
    "parse_job",
]

Caption = Annotated[str, StringConstraints(max_length=L.MAX_CAPTION_CHARS)]


def _check_options(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, default=str))
    if size > L.MAX_OPTIONS_BYTES:
        raise ValueError(f"options are {size:,} bytes as JSON, over {L.MAX_OPTIONS_BYTES:,}")
    return value


class SpokenLine(Message):
    """One line of dialogue to voice, in script order. `voice` is resolved by the engine
    (the cast's `voice`, else a default per character), so the line and its voice are part
    of what a beat's render inputs are."""

    speaker: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=L.MAX_CAPTION_CHARS)
    extension: str = Field(default="", max_length=40)
    voice: str = Field(default="", max_length=300)


class RenderSpec(Message):
    """What to render for one beat, and how."""

    text: str = Field(max_length=L.MAX_TEXT_CHARS)
    scene: str = Field(default="", max_length=L.MAX_TITLE_CHARS)
    captions: list[Caption] = Field(default_factory=list, max_length=L.MAX_CAPTIONS)
    #: The beat's dialogue, voiced by the worker's voice stage and drawn as subtitles.
    dialogue: list[SpokenLine] = Field(default_factory=list, max_length=L.MAX_CAPTIONS)
    #: Characters in the beat (speakers and those the action names), and a short
    #: description of each where the cast file has one (the previs reads its colours).
    characters: list[Annotated[str, StringConstraints(max_length=100)]] = Field(
        default_factory=list, max_length=50
    )
    character_notes: dict[str, Annotated[str, StringConstraints(max_length=500)]] = Field(
        default_factory=dict, max_length=50
    )
    title: str = Field(default="", max_length=L.MAX_TITLE_CHARS)
    duration_s: float = Field(gt=0, le=600)
    width: int = Field(gt=0, le=4096)
    height: int = Field(gt=0, le=4096)
    fps: int = Field(gt=0, le=120)
    steps: int | None = Field(default=None, gt=0, le=500)
    seed: int | None = Field(default=None, ge=0, le=L.MAX_SEED)
    guidance: float | None = Field(default=None, ge=0, le=100)
    negative_prompt: str = Field(default="", max_length=L.MAX_PROMPT_CHARS)
    # Image-to-video backends: a stored keyframe to condition on (store key).
    conditioning_key: str | None = Field(default=None, max_length=L.MAX_KEY_CHARS)
    # Backend-specific knobs (motion_bucket_id, decode_chunk_size, aspect_ratio, ...).
    options: dict[str, Any] = Field(default_factory=dict)

    _options = field_validator("options")(_check_options)

    @property
    def frame_count(self) -> int:
        return max(1, round(self.duration_s * self.fps))


class JobBase(Message):
    """The envelope of every job. `job_id` is unique per attempt."""

    v: int = SCHEMA_VERSION
    type: Literal["render"] = "render"
    kind: str = "clip"
    job_id: str = Field(min_length=1, max_length=L.MAX_ID_CHARS, pattern=r"^[^|\s]+$")
    episode_id: str = Field(min_length=1, max_length=64)
    beat_id: str = Field(min_length=1, max_length=64)
    beat_index: int = Field(ge=0, le=100_000)
    attempt: int = Field(ge=1, le=10_000)
    backend: str = Field(min_length=1, max_length=32)
    min_vram_gb: float = Field(default=0.0, ge=0, le=4096)
    spec: Message
    storage_prefix: str = Field(default="", max_length=L.MAX_KEY_CHARS)
    enqueued_at: float = Field(default_factory=time.time)
    #: 1 for the first delivery; the queue increments it each time a lease runs out.
    delivery: int = Field(default=1, ge=1)

    def to_json(self) -> str:
        """The job as it travels; raises `ProtocolError` if it is over `MAX_JOB_BYTES`."""
        raw = self.model_dump_json()
        if len(raw.encode()) > L.MAX_JOB_BYTES:
            raise ProtocolError(
                f"job {self.job_id} is {len(raw.encode()):,} bytes, over the limit of "
                f"{L.MAX_JOB_BYTES:,}"
            )
        return raw


#: Job classes by `kind`; `parse_job` picks the class from the message.
JOB_KINDS: dict[str, type[JobBase]] = {}

J = TypeVar("J", bound=type[JobBase])


def job_kind(cls: J) -> J:
    """Register a job class under the default of its `kind` field."""
    kind = cls.model_fields["kind"].default
    if not isinstance(kind, str) or kind in JOB_KINDS:
        raise ValueError(f"job kind {kind!r} is not a new name")
    JOB_KINDS[kind] = cls
    return cls


@job_kind
class Job(JobBase):
    """Render one beat's clip (the seed's only job: `type: render`)."""

    kind: Literal["clip"] = "clip"
    spec: RenderSpec


@job_kind
class KeyframeJob(JobBase):
    """Draw one beat's keyframe (the film pipeline's first stage; `options.candidates`
    stills from consecutive seeds, the one closest to `options.reference_keys` kept).
    The worker stores the keyframe and its settings, no clip."""

    kind: Literal["keyframe"] = "keyframe"
    spec: RenderSpec


def parse_job(raw: str | bytes) -> Any:
    """Parse a job message of any registered kind; raise `ProtocolError` (with a
    dead-letter reason) if it is invalid or over a limit."""
    data = decode(raw, "job", L.MAX_JOB_BYTES)
    kind = data.get("kind", "clip")
    cls = JOB_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = ", ".join(sorted(JOB_KINDS))
        raise ProtocolError(f"job kind {kind!r} is unknown to this program (it knows {known})")
    return validate(cls, data, "job")


def job_id_of(raw: str) -> str:
    """The `job_id` of a message that may not parse as a Job (for dead-letter entries)."""
    try:
        value = json.loads(raw).get("job_id")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return value[: L.MAX_ID_CHARS] if isinstance(value, str) else ""
