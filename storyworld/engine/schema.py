"""The database schema, managed by Alembic (migrations/ inside this package).

`upgrade_database` runs on every start: when the database is at the code's head it costs one
query; otherwise one process at a time (a file lock beside a SQLite file, an advisory lock on
PostgreSQL) brings it to the head, and the others find it done. A database created by the
`create_all` of earlier versions (tables, no `alembic_version`) is stamped at the baseline
first. A database at a revision this program does not know was written by a newer version:
it is refused with a message saying so, never changed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

__all__ = [
    "BASELINE",
    "DatabaseTooNew",
    "current_revision",
    "head_revision",
    "upgrade_database",
]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
#: The revision of the schema the versions before Alembic created.
BASELINE = "0001"
#: Any number: the PostgreSQL advisory lock id of schema upgrades ("sw" "db").
_PG_LOCK_ID = 0x7377_6462
_local = threading.Lock()


class DatabaseTooNew(RuntimeError):
    """The database's schema was written by a newer StoryWorld."""


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The schema revision this program is written for."""
    head = _script().get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    """The database's revision (None: not managed by Alembic yet, or empty)."""
    return MigrationContext.configure(conn).get_current_revision()


def _check_known(rev: str | None, url: str) -> None:
    if rev is None:
        return
    try:
        known = _script().get_revision(rev) is not None
    except Exception:  # alembic raises several types for an unknown id
        known = False
    if not known:
        raise DatabaseTooNew(
            f"the database {url} has schema revision {rev}, newer than this program's "
            f"(it knows up to {head_revision()}): upgrade StoryWorld, or point DATABASE_URL "
            "at another database"
        )


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    db = engine.url.database
    if engine.dialect.name != "sqlite" or not db or db == ":memory:":
        with _local:
            yield
        return
    from filelock import FileLock

    with _local, FileLock(str(Path(db).resolve()) + ".migrate.lock", timeout=300):
        yield


def upgrade_database(engine: Engine) -> str:
    """Bring the database to the head revision (see the module docstring). Returns the
    revision it is at. Raises `DatabaseTooNew`."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines say nothing new
    head = head_revision()
    url = engine.url.render_as_string(hide_password=True)
    with engine.connect() as conn:
        rev = current_revision(conn)
    if rev == head:
        return head
    _check_known(rev, url)
    with _file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
        rev = current_revision(conn)  # another process may have upgraded meanwhile
        _check_known(rev, url)
        if rev == head:
            return head
        cfg = _config()
        cfg.attributes["connection"] = conn
        if rev is None and inspect(conn).has_table("episodes"):
            log.info("database %s predates migrations: stamped at %s", url, BASELINE)
            command.stamp(cfg, BASELINE)
        log.info("upgrading database %s from %s to %s", url, rev or "empty", head)
        command.upgrade(cfg, "head")
    return head
