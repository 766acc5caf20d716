"""Every message that crosses a process boundary, defined once, with its limits.

- `jobs`: jobs of every kind (engine -> worker) and `parse_job`
- `results`: results and uploads (worker -> engine) and `parse_result`
- `wake`: the nudge that makes a blocked engine look at the database now
- `events`: the kinds and payloads of the console's event stream
- `heartbeat`: a worker's heartbeat fields
- `dead_letter`: entries of the dead-letter list
- `lease`: the engine lease holder (the fencing token)
- `routing`: backends and GPU memory classes (constants Lua receives as ARGV)
- `limits`: the bound of every field

Messages are JSON with a schema version `v`. A reader accepts any message of its major
version and ignores fields it does not know, so engines and workers can be upgraded one at
a time. Parsers raise `ProtocolError` with a reason fit for a dead-letter entry.
"""

from storyworld.protocol import limits
from storyworld.protocol.base import SCHEMA_VERSION, Message, ProtocolError
from storyworld.protocol.dead_letter import DeadLetterEntry, parse_dead_letter
from storyworld.protocol.events import (
    DeadChangedEvent,
    DeadEvent,
    EnqueuedEvent,
    EventKind,
    FinishedEvent,
    RequeuedEvent,
    StartedEvent,
    WorkerGoneEvent,
    event_fields,
    parse_event_data,
)
from storyworld.protocol.heartbeat import HEARTBEAT_FIELDS, Heartbeat, WorkerState
from storyworld.protocol.jobs import (
    JOB_KINDS,
    Job,
    JobBase,
    KeyframeJob,
    RenderSpec,
    SpokenLine,
    job_id_of,
    job_kind,
    parse_job,
)
from storyworld.protocol.lease import LeaseHolder, parse_lease_holder
from storyworld.protocol.results import (
    ArtifactRef,
    ErrorKind,
    Result,
    ResultStatus,
    UploadEvent,
    parse_result,
)
from storyworld.protocol.routing import KNOWN_BACKENDS, VRAM_CLASSES, vram_classes_arg, wake_suffix
from storyworld.protocol.wake import WAKE_PREFIX, Wake, WakeReason, parse_wake, wake_message

__all__ = [
    "HEARTBEAT_FIELDS",
    "JOB_KINDS",
    "KNOWN_BACKENDS",
    "SCHEMA_VERSION",
    "VRAM_CLASSES",
    "WAKE_PREFIX",
    "ArtifactRef",
    "DeadChangedEvent",
    "DeadEvent",
    "DeadLetterEntry",
    "EnqueuedEvent",
    "ErrorKind",
    "EventKind",
    "FinishedEvent",
    "Heartbeat",
    "Job",
    "JobBase",
    "KeyframeJob",
    "LeaseHolder",
    "Message",
    "ProtocolError",
    "RenderSpec",
    "RequeuedEvent",
    "Result",
    "ResultStatus",
    "SpokenLine",
    "StartedEvent",
    "UploadEvent",
    "Wake",
    "WakeReason",
    "WorkerGoneEvent",
    "WorkerState",
    "event_fields",
    "job_id_of",
    "job_kind",
    "limits",
    "parse_dead_letter",
    "parse_event_data",
    "parse_job",
    "parse_lease_holder",
    "parse_result",
    "parse_wake",
    "vram_classes_arg",
    "wake_message",
    "wake_suffix",
]
