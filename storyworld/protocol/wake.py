"""Wake nudges: pushed on the result list so a blocked engine looks at the database now.

They share the result list with results, so the engine tells them apart by a fixed prefix
without parsing JSON (`parse_wake`).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Literal

from pydantic import Field

from storyworld.protocol import limits as L
from storyworld.protocol.base import Message

__all__ = ["WAKE_PREFIX", "Wake", "WakeReason", "parse_wake", "wake_message"]


class WakeReason(StrEnum):
    CREATED = "episode created"
    RETRY = "retry"
    PAUSED = "paused"
    RESUMED = "resumed"
    COMPOSED = "composed"
    REQUEUED = "dead letters requeued"
    STOPPING = "stopping"
    HANDOVER = "handover"  # the leader stopped cleanly: a standby takes over now
    BUSY = "busy"  # the leader has work now (its lease is short): standbys watch it
    CHALLENGE = "challenge"  # a standby asks an idle leader to renew its lease


class Wake(Message):
    v: int = 1
    type: Literal["wake"] = "wake"
    reason: str = Field(default="", max_length=200)

    @property
    def changes_pause(self) -> bool:
        """Pausing or resuming: the engine re-reads Redis too, not only the database."""
        return self.reason in (WakeReason.PAUSED, WakeReason.RESUMED)


#: Every wake message starts with this (json.dumps with its default separators).
WAKE_PREFIX = '{"v": 1, "type": "wake"'


def wake_message(reason: str) -> str:
    """The wake message for `reason`, as it travels."""
    return json.dumps({"v": 1, "type": "wake", "reason": str(reason)[:200]})


def parse_wake(raw: str) -> Wake | None:
    """The wake message in `raw`, or None if `raw` is not one (e.g. a result)."""
    if not raw.startswith(WAKE_PREFIX) or len(raw) > L.MAX_WAKE_BYTES:
        return None
    try:
        return Wake.model_validate_json(raw)
    except ValueError:
        return Wake()
