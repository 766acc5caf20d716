"""Everything a program needs to talk to a deployment: settings, database, Redis, store.

On the local default (no REDIS_URL) it starts or joins the embedded server of the data
directory and uses the data directory's database and artifact folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from storyworld.config import Settings
from storyworld.engine.models import make_engine
from storyworld.queue import JobQueue, RedisClients, connect
from storyworld.queue.embedded import EmbeddedRedis
from storyworld.storage import ArtifactStore, open_store

__all__ = ["Runtime", "database_url", "open_runtime"]

log = logging.getLogger(__name__)


def database_url(settings: Settings) -> str:
    """DATABASE_URL, else `local.db` in the data directory (local default) or `./local.db`."""
    if settings.database_url:
        return settings.database_url
    if settings.local_mode:
        return f"sqlite:///{Path(settings.home) / 'local.db'}"
    return "sqlite:///./local.db"


@dataclass
class Runtime:
    settings: Settings
    redis_url: str
    clients: RedisClients
    queue: JobQueue
    db: Engine
    sessions: sessionmaker[Session]
    store: ArtifactStore
    embedded: EmbeddedRedis | None = None
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.clients.close()
        self.db.dispose()
        if self.embedded is not None:
            self.embedded.release()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_runtime(settings: Settings, *, role: str = "storyworld") -> Runtime:
    """Connect to the deployment the settings describe (nothing is sent to Redis yet,
    except on the local default, where the embedded server is started or joined)."""
    embedded = None
    url = settings.redis_url.get()
    if settings.local_mode and not url:
        Path(settings.home).mkdir(parents=True, exist_ok=True)
        embedded = EmbeddedRedis(settings.home)
        url = embedded.acquire()
    try:
        clients = connect(settings, url, role=role)
        queue = JobQueue.from_settings(settings, clients.fast, clients.blocking)
        db = make_engine(database_url(settings))
        sessions = sessionmaker(db, expire_on_commit=False)
        store = open_store(settings)
    except BaseException:
        if embedded is not None:
            embedded.release()
        raise
    return Runtime(
        settings=settings,
        redis_url=url,
        clients=clients,
        queue=queue,
        db=db,
        sessions=sessions,
        store=store,
        embedded=embedded,
    )
