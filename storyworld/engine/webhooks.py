"""Webhooks: `episode.completed`, `episode.failed`, `beat.failed` and `keyframes.ready`
POSTed to every `WEBHOOK_URL` (comma-separated), signed with `WEBHOOK_SECRET`.

- **Events come from the transitions table**, where the engine records every state change
  with its reason: no hook in the decision loop, so delivering can never slow it. A
  transition to an episode's `completed` / `failed` / `awaiting_approval` or a beat's
  `failed` becomes one event; its id (`evt_<transition id>`) is stable, so whoever turns it
  into outbox rows (any process running an engine) writes each once: (event id, URL) is
  unique in the `webhook_outbox` table.
- **Delivered at least once, with backoff**, by a thread (`WebhookDispatcher`): a row is
  claimed by an atomic UPDATE (so two processes never send one row at once), POSTed, and
  marked delivered on a 2xx; otherwise it is due again after 2^attempts seconds (jittered,
  at most an hour), and abandoned (`failed`) after `MAX_ATTEMPTS`.
- **Signed**: `X-StoryWorld-Signature: sha256=<hex HMAC-SHA256 of the raw body>` with
  `X-StoryWorld-Timestamp` (the send time, Unix seconds) and `X-StoryWorld-Event`. The body
  carries the event's id, type and timestamp. The secret is never logged or shown.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from storyworld.config import redact
from storyworld.engine.models import (
    Beat,
    BeatState,
    Episode,
    EpisodeState,
    Transition,
    WebhookDelivery,
)
from storyworld.engine.runtime import Runtime

__all__ = [
    "EVENTS",
    "MAX_ATTEMPTS",
    "WebhookDispatcher",
    "deliveries",
    "sign",
    "urls_of",
    "verify",
]

log = logging.getLogger("storyworld.engine.webhooks")

#: (entity, state it moved to) -> event type.
EVENTS: dict[tuple[str, str], str] = {
    ("episode", EpisodeState.COMPLETED): "episode.completed",
    ("episode", EpisodeState.FAILED): "episode.failed",
    ("beat", BeatState.FAILED): "beat.failed",
    ("episode", EpisodeState.AWAITING_APPROVAL): "keyframes.ready",
}
MAX_ATTEMPTS = 12  # 2 s ... 1 h apart: about a day of trying
SEND_TIMEOUT_S = 10.0
CLAIM_S = 60.0  # a claimed row is due again after this if its sender died mid-POST


def urls_of(setting: str) -> list[str]:
    """`WEBHOOK_URL`: one or more URLs, comma-separated."""
    return [u.strip() for u in setting.split(",") if u.strip()]


def sign(secret: str, body: bytes) -> str:
    """The `X-StoryWorld-Signature` value of `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does: compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


def _event_body(rt: Runtime, s: Any, t: Transition, kind: str) -> dict[str, Any]:
    data: dict[str, Any] = {"reason": redact(t.reason or "")}
    if t.entity == "beat":
        beat = s.get(Beat, t.entity_id)
        if beat is not None:
            data.update(episode_id=beat.episode_id, beat_index=beat.index, beat_id=beat.id,
                        error=redact(beat.error or "") or None)  # fmt: skip
    else:
        ep = s.get(Episode, t.entity_id)
        data["episode_id"] = t.entity_id
        if ep is not None:
            data.update(title=ep.title, state=ep.state, output_key=ep.output_key,
                        error=redact(ep.error or "") or None)  # fmt: skip
    return {"id": f"evt_{t.id}", "type": kind, "timestamp": t.at, "data": data}


class WebhookDispatcher:
    """Turns new transitions into outbox rows and delivers due rows, in its own thread."""

    def __init__(
        self,
        rt: Runtime,
        *,
        urls: list[str] | None = None,
        secret: str | None = None,
        poll_s: float = 1.0,
        client: httpx.Client | None = None,
        rng: random.Random | None = None,
        backoff_base_s: float = 1.0,
    ) -> None:
        self.rt = rt
        self.urls = urls if urls is not None else urls_of(rt.settings.webhook_url.get())
        self.secret = secret if secret is not None else rt.settings.webhook_secret.get()
        self.poll_s = poll_s
        self.client = client or httpx.Client(timeout=SEND_TIMEOUT_S, follow_redirects=False)
        self.rng = rng or random.Random()
        self.backoff_base_s = backoff_base_s
        self._cursor: int | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> WebhookDispatcher:
        if not self.urls:
            return self
        self._thread = threading.Thread(target=self.run, name="webhooks", daemon=True)
        self._thread.start()
        log.info("webhooks: delivering to %d endpoint(s)", len(self.urls))
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.collect()
                self.deliver_due()
            except SQLAlchemyError as e:
                log.warning("webhooks: database unavailable (%s); trying again", type(e).__name__)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    # ------------------------------------------------------------------ outbox
    def _start_cursor(self, s: Any) -> int:
        """Where to start reading transitions: after the newest event already in the
        outbox; with an empty outbox, after the newest transition (enabling webhooks does
        not replay history)."""
        last = s.scalar(select(WebhookDelivery.event_id).order_by(WebhookDelivery.id.desc()))
        if last and last.startswith("evt_") and last[4:].isdigit():
            return int(last[4:])
        return int(s.scalar(select(func.max(Transition.id))) or 0)

    def collect(self) -> int:
        """Write outbox rows for transitions since the last look. Returns rows written."""
        if not self.urls:
            return 0
        written = 0
        with self.rt.sessions() as s:
            if self._cursor is None:
                self._cursor = self._start_cursor(s)
            wanted = [e for e, _ in EVENTS]
            news = s.scalars(
                select(Transition)
                .where(Transition.id > self._cursor, Transition.entity.in_(set(wanted)))
                .order_by(Transition.id)
                .limit(500)
            ).all()
            events = []
            for t in news:
                self._cursor = max(self._cursor, t.id)
                kind = EVENTS.get((t.entity, t.to_state))
                if kind is not None and t.from_state != t.to_state:
                    events.append(_event_body(self.rt, s, t, kind))
        for event in events:
            body = json.dumps(event, separators=(",", ":"), sort_keys=True)
            for url in self.urls:
                try:
                    with self.rt.sessions.begin() as s:
                        s.add(WebhookDelivery(event_id=event["id"], event=event["type"],
                                              url=url, body=body, state="pending",
                                              attempts=0, next_at=time.time(),
                                              created_at=time.time()))  # fmt: skip
                    written += 1
                except IntegrityError:
                    pass  # another process wrote it first
        return written

    def _claim(self, row_id: int, now: float) -> bool:
        with self.rt.sessions.begin() as s:
            claimed = s.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == row_id,
                    WebhookDelivery.state == "pending",
                    WebhookDelivery.next_at <= now,
                )
                .values(next_at=now + CLAIM_S)
            )
            return bool(claimed.rowcount)

    def deliver_due(self, now: float | None = None) -> int:
        """POST every due row once. Returns how many were delivered."""
        now = time.time() if now is None else now
        with self.rt.sessions() as s:
            due = s.execute(
                select(WebhookDelivery.id, WebhookDelivery.url, WebhookDelivery.body,
                       WebhookDelivery.event, WebhookDelivery.event_id,
                       WebhookDelivery.attempts)
                .where(WebhookDelivery.state == "pending", WebhookDelivery.next_at <= now)
                .order_by(WebhookDelivery.id)
                .limit(50)
            ).all()  # fmt: skip
        delivered = 0
        for row in due:
            if self._stop.is_set() or not self._claim(row.id, now):
                continue
            status, error = self._post(row.url, row.body.encode(), row.event, row.event_id)
            delivered += self._record(row.id, row.attempts + 1, status, error)
        return delivered

    def _post(self, url: str, body: bytes, event: str, event_id: str) -> tuple[int | None, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "StoryWorld-Webhooks",
            "X-StoryWorld-Event": event,
            "X-StoryWorld-Delivery": event_id,
            "X-StoryWorld-Timestamp": str(int(time.time())),
        }
        if self.secret:
            headers["X-StoryWorld-Signature"] = sign(self.secret, body)
        try:
            r = self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            return None, redact(f"{type(e).__name__}: {e}")[:500]
        return r.status_code, "" if r.is_success else f"HTTP {r.status_code}"

    def _record(self, row_id: int, attempts: int, status: int | None, error: str) -> int:
        ok = status is not None and 200 <= status < 300
        with self.rt.sessions.begin() as s:
            row = s.get(WebhookDelivery, row_id)
            if row is None:
                return 0
            row.attempts = attempts
            row.last_status = status
            row.last_error = None if ok else error
            if ok:
                row.state = "delivered"
                row.delivered_at = time.time()
            elif attempts >= MAX_ATTEMPTS:
                row.state = "failed"
                log.warning("webhook %s to %s abandoned after %d attempts: %s",
                            row.event_id, _host(row.url), attempts, error)  # fmt: skip
            else:
                delay = min(self.backoff_base_s * 2.0**attempts, 3600.0)
                delay *= 0.5 + self.rng.random()
                row.next_at = time.time() + delay
        return int(ok)


def _host(url: str) -> str:
    return httpx.URL(url).host or "?"


def deliveries(rt: Runtime, limit: int = 100) -> list[dict[str, Any]]:
    """The newest outbox rows, for the console and the API (the URL's host, never its path
    or query, which may hold a token)."""
    with rt.sessions() as s:
        rows: Iterable[WebhookDelivery] = s.scalars(
            select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
        )
        return [
            {
                "event_id": r.event_id,
                "event": r.event,
                "host": _host(r.url),
                "state": r.state,
                "attempts": r.attempts,
                "last_status": r.last_status,
                "last_error": r.last_error,
                "next_at": r.next_at,
                "created_at": r.created_at,
                "delivered_at": r.delivered_at,
            }
            for r in rows
        ]
