"""One vocabulary of failures for the faces (CLI, HTTP API, console), mapped once.

Services raise these; the CLI turns them into exit codes and the API into HTTP statuses
with `exit_code` and `http_status`, nowhere else. Each message is written for the person
who caused it and carries no secret.
"""

from __future__ import annotations

from storyworld.config import ConfigError

__all__ = [
    "Conflict",
    "EngineError",
    "InvalidRequest",
    "NotFound",
    "Unavailable",
    "exit_code",
    "http_status",
]


class EngineError(Exception):
    """A failure a caller can act on."""


class InvalidRequest(EngineError, ConfigError):
    """The request itself is wrong (a bad size, an unknown backend, a seed out of range).
    A `ConfigError` too, so older callers that catch it keep working."""


class Conflict(EngineError, ConfigError):
    """The request is fine but the current state does not allow it (cancel a completed
    episode, retry a beat that is rendering)."""


class NotFound(EngineError, LookupError):
    """No such episode, beat or job."""


class Unavailable(EngineError):
    """A dependency (Redis, storage, the database) cannot be reached or refuses us. When
    raised by a change, nothing was saved (see `services.create_episode`)."""


_EXIT = {InvalidRequest: 2, Conflict: 2, NotFound: 2, Unavailable: 3}
_HTTP = {InvalidRequest: 422, Conflict: 409, NotFound: 404, Unavailable: 503}


def _lookup(exc: BaseException, table: dict[type[EngineError], int], default: int) -> int:
    for cls, value in table.items():
        if isinstance(exc, cls):
            return value
    if isinstance(exc, ConfigError):
        return table[InvalidRequest]
    return default


def exit_code(exc: BaseException) -> int:
    """The CLI's exit status for a failure (2: the request, 3: a dependency, 1: other)."""
    return _lookup(exc, _EXIT, 1)


def http_status(exc: BaseException) -> int:
    """The HTTP status for a failure (4xx: the request, 503: a dependency, 500: other)."""
    return _lookup(exc, _HTTP, 500)
