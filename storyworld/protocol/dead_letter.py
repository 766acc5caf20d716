"""Dead-letter entries: a job that can never run, with the reason (JSON on the dead list).

The Lua scripts that file letters write the same five fields.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

from pydantic import BeforeValidator, Field

from storyworld.protocol import limits as L
from storyworld.protocol.base import Message, clip_text

__all__ = ["DeadLetterEntry", "parse_dead_letter"]


class DeadLetterEntry(Message):
    job_id: str = Field(default="", max_length=L.MAX_ID_CHARS)
    reason: Annotated[str, BeforeValidator(lambda v: clip_text(str(v or ""), L.MAX_ERROR_CHARS))]
    #: The job message as it was; cut to the job size limit (an oversized job's head).
    payload: Annotated[str, BeforeValidator(lambda v: clip_text(str(v or ""), L.MAX_JOB_BYTES))]
    at: float = Field(default_factory=time.time)
    worker: str = Field(default="", max_length=L.MAX_ID_CHARS)


def parse_dead_letter(raw: str | bytes) -> DeadLetterEntry:
    """An entry of the dead list; a corrupt one becomes an entry saying so."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError
        return DeadLetterEntry(
            job_id=d.get("job_id") or "",
            reason=d.get("reason", ""),
            payload=d.get("payload", ""),
            at=float(d.get("at", 0) or 0),
            worker=d.get("worker") or "",
        )
    except (ValueError, TypeError):
        return DeadLetterEntry(reason="corrupt dead-letter entry", payload=text, at=0.0)
