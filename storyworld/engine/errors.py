"""One vocabulary of failures for the faces (CLI, HTTP API, console), mapped once.

Services raise these; the CLI turns them into exit codes and the API into HTTP statuses
with `exit_code` and `http_status`, nowhere else. Each message is written for the person
who caused it and carries no secret.
"""

from __future__ import annotations

import redis

from storyworld.config import ConfigError
from storyworld.queue import describe_redis_error
from storyworld.queue.embedded import EmbeddedRedisError
from storyworld.storage import StorageError

__all__ = [
    "DEPENDENCY_ERRORS",
    "Conflict",
    "EngineError",
    "InvalidRequest",
    "NotFound",
    "Unavailable",
    "exit_code",
    "http_status",
    "translate",
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
    raised by a change, nothing was saved (see `services.create_episode`). `permanent`:
    it answered, but no retry will help (wrong credentials, a missing bucket)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


#: Exceptions of the parts below the engine that a face may meet; `translate` maps each to
#: the vocabulary, so the faces catch these without importing Redis or storage.
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    redis.RedisError,
    StorageError,
    EmbeddedRedisError,
)


def translate(exc: BaseException) -> EngineError | None:
    """The vocabulary's word for `exc` (None: not a failure the caller can act on)."""
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, redis.RedisError):
        return Unavailable(describe_redis_error(exc, "the configured REDIS_URL"))
    if isinstance(exc, StorageError):
        return Unavailable(f"storage: {exc}", permanent=not exc.transient)
    if isinstance(exc, EmbeddedRedisError):
        return Unavailable(str(exc), permanent=True)
    if isinstance(exc, ConfigError):
        return InvalidRequest(str(exc))
    return None


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
    """The HTTP status for a failure (4xx: the request, 503: a dependency, 502: one that
    answered but will not help on a retry, 500: other)."""
    if isinstance(exc, Unavailable) and exc.permanent:
        return 502
    return _lookup(exc, _HTTP, 500)
