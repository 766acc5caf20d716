"""SQL models: the database is the source of truth; Redis holds work in flight.

States are few and explicit, and every change goes through `transition()`, which records
who moved what from where to where and why.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

__all__ = [
    "Artifact",
    "Base",
    "Beat",
    "BeatState",
    "Episode",
    "EpisodeState",
    "IllegalTransition",
    "JobRow",
    "JobState",
    "Transition",
    "Upload",
    "make_engine",
    "new_id",
    "note",
    "transition",
]


def new_id() -> str:
    return uuid.uuid4().hex[:12]


class EpisodeState(StrEnum):
    PLANNED = "planned"
    RENDERING = "rendering"
    AWAITING_APPROVAL = "awaiting_approval"  # every keyframe drawn; the operator decides
    COMPOSING = "composing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BeatState(StrEnum):
    PENDING = "pending"  # waiting to be dispatched (new, or a retry after backoff)
    QUEUED = "queued"  # a job is on Redis
    RENDERING = "rendering"  # a worker took the job
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobState(StrEnum):
    QUEUED = "queued"
    RENDERING = "rendering"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"  # dead-lettered on Redis
    CANCELLED = "cancelled"


_EPISODE_MOVES = {
    EpisodeState.PLANNED: {EpisodeState.RENDERING, EpisodeState.CANCELLED, EpisodeState.FAILED},
    EpisodeState.RENDERING: {
        EpisodeState.COMPOSING,
        EpisodeState.FAILED,
        EpisodeState.CANCELLED,
        EpisodeState.AWAITING_APPROVAL,
    },
    EpisodeState.AWAITING_APPROVAL: {
        EpisodeState.RENDERING,
        EpisodeState.CANCELLED,
        EpisodeState.FAILED,
    },
    EpisodeState.COMPOSING: {
        EpisodeState.COMPLETED,
        EpisodeState.FAILED,
        EpisodeState.RENDERING,
        EpisodeState.CANCELLED,
    },
    EpisodeState.COMPLETED: {EpisodeState.RENDERING},  # a beat re-rendered on request
    EpisodeState.FAILED: {EpisodeState.RENDERING, EpisodeState.CANCELLED},  # retry
    EpisodeState.CANCELLED: {EpisodeState.RENDERING},  # retry after cancel
}
_BEAT_MOVES = {
    BeatState.PENDING: {BeatState.QUEUED, BeatState.CANCELLED, BeatState.FAILED, BeatState.DONE},
    BeatState.QUEUED: {
        BeatState.RENDERING,
        BeatState.DONE,
        BeatState.PENDING,
        BeatState.FAILED,
        BeatState.CANCELLED,
    },
    BeatState.RENDERING: {
        BeatState.DONE,
        BeatState.PENDING,
        BeatState.FAILED,
        BeatState.CANCELLED,
        BeatState.QUEUED,
    },
    BeatState.DONE: {BeatState.PENDING},
    BeatState.FAILED: {BeatState.PENDING, BeatState.DONE, BeatState.CANCELLED},
    BeatState.CANCELLED: {BeatState.PENDING},
}


class IllegalTransition(RuntimeError):
    pass


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class Episode(Base):
    __tablename__ = "episodes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(300))
    script: Mapped[str] = mapped_column(Text)
    script_format: Mapped[str] = mapped_column(String(16), default="plain")
    backend: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    fps: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=EpisodeState.PLANNED, index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    beats: Mapped[list[Beat]] = relationship(
        back_populates="episode", order_by="Beat.index", cascade="all, delete-orphan"
    )

    @property
    def is_active(self) -> bool:
        """Planned or rendering: its beats are dispatched."""
        return self.state in (EpisodeState.PLANNED, EpisodeState.RENDERING)

    def fail(self, session: Session, reason: str) -> bool:
        """Fail the episode with `reason` unless it already ended (completed, failed or
        cancelled). Returns whether it changed."""
        if self.state not in (
            EpisodeState.PLANNED,
            EpisodeState.RENDERING,
            EpisodeState.COMPOSING,
        ):
            return False
        self.error = reason
        self.finished_at = time.time()
        return transition(session, self, EpisodeState.FAILED, reason)


class Beat(Base):
    __tablename__ = "beats"
    __table_args__ = (UniqueConstraint("episode_id", "index"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    scene: Mapped[str] = mapped_column(String(300), default="")
    captions: Mapped[list[str]] = mapped_column(JSON, default=list)
    duration_s: Mapped[float] = mapped_column(Float)
    backend: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=BeatState.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts made before the operator's last retry; the retry limit counts from here.
    retry_offset: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    clip_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time)

    episode: Mapped[Episode] = relationship(back_populates="beats")
    jobs: Mapped[list[JobRow]] = relationship(back_populates="beat", order_by="JobRow.attempt")

    def is_current(self, job: JobRow) -> bool:
        """`job` is the attempt this beat waits for (not a stale, earlier one)."""
        return self.attempts == job.attempt and self.state in (
            BeatState.QUEUED,
            BeatState.RENDERING,
        )


class JobRow(Base):
    """One attempt at rendering a beat."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("beat_id", "attempt"),
        Index("ix_jobs_state", "state"),
        Index("ix_jobs_queued_at", "queued_at"),  # the Jobs screen's order (0004)
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    beat_id: Mapped[str] = mapped_column(ForeignKey("beats.id"), index=True)
    episode_id: Mapped[str] = mapped_column(String(32), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    backend: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED)
    payload: Mapped[str] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    queued_at: Mapped[float] = mapped_column(Float, default=time.time)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    render_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    beat: Mapped[Beat] = relationship(back_populates="jobs")


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(String(32), index=True)
    beat_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(500))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class Upload(Base):
    """Every upload, for the console's upload feed."""

    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(500))
    size: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float] = mapped_column(Float)
    bytes_per_s: Mapped[float] = mapped_column(Float)
    worker_id: Mapped[str] = mapped_column(String(128), default="")
    episode_id: Mapped[str] = mapped_column(String(32), default="", index=True)
    beat_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    at: Mapped[float] = mapped_column(Float, default=time.time, index=True)


class IdempotencyKey(Base):
    """`Idempotency-Key` of `POST /v1/episodes`: the same key and body give the same
    episode; the body's hash tells a replay from a different request (409)."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    episode_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class WebhookDelivery(Base):
    """The webhook outbox: one row per event and endpoint, written in the engine's
    transaction, delivered (at least once, with backoff) by storyworld.engine.webhooks."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (
        UniqueConstraint("event_id", "url"),
        Index("ix_webhook_outbox_due", "state", "next_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(String(2000))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[float] = mapped_column(Float, default=time.time)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Transition(Base):
    __tablename__ = "transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64), index=True)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float, default=time.time)


def transition(session: Session, obj: Episode | Beat | JobRow, to: str, reason: str) -> bool:
    """Move `obj` to state `to`, recording why. Returns False if it was already there;
    raises IllegalTransition for a move the state machine does not allow."""
    current = obj.state
    if current == to:
        return False
    if isinstance(obj, Episode):
        allowed = _EPISODE_MOVES.get(EpisodeState(current), set())
        entity = "episode"
    elif isinstance(obj, Beat):
        allowed = _BEAT_MOVES.get(BeatState(current), set())
        entity = "beat"
    else:
        allowed = None  # job rows record history but any move is allowed
        entity = "job"
    if allowed is not None and to not in allowed:
        raise IllegalTransition(f"{entity} {obj.id}: {current} -> {to} is not allowed ({reason})")
    now = time.time()
    obj.state = to
    if hasattr(obj, "updated_at"):
        obj.updated_at = now  # type: ignore[union-attr]
    session.add(
        Transition(
            entity=entity, entity_id=obj.id, from_state=current, to_state=to, reason=reason, at=now
        )
    )
    return True


def note(session: Session, obj: Episode | Beat | JobRow, reason: str) -> None:
    """Record an event that did not change the state (e.g. a job sent again)."""
    entity = {Episode: "episode", Beat: "beat"}.get(type(obj), "job")
    session.add(
        Transition(
            entity=entity,
            entity_id=obj.id,
            from_state=obj.state,
            to_state=obj.state,
            reason=reason,
            at=time.time(),
        )
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=15000")
    # Switching a fresh file to WAL takes an exclusive lock and SQLite may answer "database
    # is locked" at once, without waiting out the busy timeout, while another process opens
    # the same new file: try again for a while (once the file is in WAL, this is a read).
    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 99:
                raise
            time.sleep(0.05 + 0.01 * attempt)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str, *, upgrade: bool = True) -> Engine:
    """A SQLAlchemy engine for `url`, with the schema brought to the code's revision
    (`storyworld.engine.schema`; `upgrade=False` leaves it alone). SQLite gets WAL and a
    busy timeout so the console, CLI and engine can share one file."""
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 15, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    if upgrade:
        from storyworld.engine.schema import upgrade_database  # Alembic: only when needed

        upgrade_database(engine)
    return engine
