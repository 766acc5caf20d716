"""What every message shares: the schema version, the error type and the parser."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["SCHEMA_VERSION", "Message", "ProtocolError", "clip_text", "decode", "validate"]

SCHEMA_VERSION = 1


class ProtocolError(ValueError):
    """A message could not be understood; `str()` is the reason for the dead-letter queue."""


class Message(BaseModel):
    """A frozen message that ignores fields it does not know (newer minor versions)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_json(self) -> str:
        """The message as compact JSON, as it travels."""
        return self.model_dump_json()


M = TypeVar("M", bound=BaseModel)


def clip_text(value: Any, limit: int) -> Any:
    """Cut a text to `limit` characters (for error texts, which are never refused)."""
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


def decode(raw: str | bytes, kind: str, max_bytes: int) -> dict[str, Any]:
    """Decode a JSON object of at most `max_bytes`, with a supported schema version."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(f"{kind} is {size:,} bytes, over the limit of {max_bytes:,}")
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
    return data


def validate(model: type[M], data: Any, kind: str) -> M:
    """`model.model_validate(data)`, with the first error as a `ProtocolError`."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ProtocolError(describe(e, kind)) from None


def describe(e: ValidationError, kind: str) -> str:
    """A one-line reason from a validation error: `job field spec.text: ...`."""
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "message"
    return f"{kind} field {where}: {first['msg']}"
