"""The engine lease: who dispatches. Its value is the fencing token every enqueue and tick
checks atomically, so an engine that lost the lease can never write."""

from __future__ import annotations

import json
import os
import socket
import time

from pydantic import Field

from storyworld.protocol import limits as L
from storyworld.protocol.base import Message

__all__ = ["LeaseHolder", "parse_lease_holder"]


class LeaseHolder(Message):
    engine: str = Field(max_length=L.MAX_ID_CHARS)
    host: str = Field(default="", max_length=L.MAX_ID_CHARS)
    pid: int = 0
    since: float = Field(default_factory=time.time)
    nonce: int = Field(default_factory=time.time_ns)

    @classmethod
    def here(cls, engine_id: str) -> LeaseHolder:
        """A holder for an engine in this process."""
        return cls(engine=engine_id, host=socket.gethostname(), pid=os.getpid())

    def to_token(self) -> str:
        """The lease value (sorted keys: the same holder always gives the same text)."""
        return json.dumps(self.model_dump(), sort_keys=True)

    def public(self) -> dict[str, object]:
        """What consoles and `queue stats` show (no nonce)."""
        return self.model_dump(exclude={"nonce"})


def parse_lease_holder(raw: str | bytes | None) -> LeaseHolder | None:
    """The holder in a lease value; None if there is no lease. An unreadable value (an
    older program's) reads as engine 'unknown'."""
    if not raw:
        return None
    try:
        return LeaseHolder.model_validate_json(raw)
    except ValueError:
        return LeaseHolder(engine="unknown", since=0.0, nonce=0)
