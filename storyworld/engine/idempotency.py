"""Idempotent creation: a client's `Idempotency-Key` makes a retried request return the
episode the first one created, never a second episode.

The key is claimed first (an insert, unique in the database) and bound to the episode once
it exists, so two requests racing with one key cannot both create: the second finds the
claim and is told to retry (or, with a different body, that the key is taken).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from storyworld.engine.models import IdempotencyKey
from storyworld.engine.runtime import Runtime

__all__ = ["MAX_KEY_CHARS", "KeyConflict", "body_hash", "create_once"]

MAX_KEY_CHARS = 200


class KeyConflict(Exception):
    """The key was used with another body, or its first request is still running."""


def body_hash(body: dict[str, Any]) -> str:
    """A hash of the request's content (key order does not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_once(
    rt: Runtime,
    key: str,
    digest: str,
    create: Callable[[], dict[str, Any]],
    show: Callable[[str], dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """(detail, replayed): the episode `create()` makes, once per `key`; a later call with
    the same key and `digest` returns `show(episode_id)` of that episode."""
    claim = IdempotencyKey(key=key, body_sha256=digest, episode_id="", created_at=time.time())
    try:
        with rt.sessions.begin() as s:
            s.add(claim)
    except IntegrityError:
        return show(_claimed(rt, key, digest)), True
    try:
        detail = create()
    except BaseException:
        with rt.sessions.begin() as s:  # nothing was created: the key is free again
            s.execute(delete(IdempotencyKey).where(IdempotencyKey.key == key))
        raise
    with rt.sessions.begin() as s:
        row = s.get(IdempotencyKey, key)
        if row is not None:
            row.episode_id = detail["id"]
    return detail, False


def _claimed(rt: Runtime, key: str, digest: str) -> str:
    """The episode an earlier request with `key` created, or KeyConflict."""
    with rt.sessions() as s:
        row = s.get(IdempotencyKey, key)
        if row is None:  # released by a failed first request in the meantime
            raise KeyConflict("the first request with this Idempotency-Key failed; retry")
        if row.body_sha256 != digest:
            raise KeyConflict("this Idempotency-Key was used with a different request body")
        if not row.episode_id:
            raise KeyConflict("the first request with this Idempotency-Key is still running")
        return row.episode_id
