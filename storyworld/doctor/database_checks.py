"""Database: reachable, and its schema at the version this StoryWorld expects.

Nothing is created or changed: the doctor looks only. "Current" means the database's
Alembic revision is the head of this version's migrations (`storyworld.engine.schema`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from storyworld.config import Settings, mask_url
from storyworld.doctor.report import Check, Status
from storyworld.engine.runtime import database_url

__all__ = ["check_database"]


def check_database(settings: Settings) -> list[Check]:
    url = database_url(settings)
    where = mask_url(url)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            folder = path.parent if str(path.parent) else Path(".")
            # The data directory of the local default is made at the first start.
            if not folder.exists() and folder.resolve() != Path(settings.home).resolve():
                return [
                    Check(
                        "database.reachable",
                        Status.FAIL,
                        f"the folder of {where} does not exist",
                        fix="create the folder or fix DATABASE_URL",
                    )
                ]
            return [
                Check(
                    "database.reachable",
                    Status.OK,
                    f"{where} does not exist yet; the engine creates it at start",
                    data={"exists": False},
                )
            ]
    try:
        engine = create_engine(url, future=True)
    except (SQLAlchemyError, ImportError, ValueError) as e:
        return [
            Check(
                "database.reachable",
                Status.FAIL,
                f"DATABASE_URL {where}: {e}",
                fix="write DATABASE_URL as sqlite:///path/local.db or "
                "postgresql+psycopg://user:password@host/db (pip install 'storyworld[postgres]')",
            )
        ]
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            out = [Check("database.reachable", Status.OK, f"{where} answers")]
            out.append(_schema(conn))
        return out
    except SQLAlchemyError as e:
        first = str(e).split("\n")[0]
        return [
            Check(
                "database.reachable",
                Status.FAIL,
                f"cannot connect to {where}: {first}",
                fix="check the host, port, database name and password in DATABASE_URL, "
                "and that the server runs",
            )
        ]
    finally:
        engine.dispose()


def _schema(conn: Connection) -> Check:
    from storyworld.engine.schema import current_revision, head_revision

    head = head_revision()
    current = current_revision(conn)
    tables = set(inspect(conn).get_table_names())
    data = {"current": current, "head": head}
    if current == head:
        return Check(
            "database.schema", Status.OK, f"schema at the current revision {head}", data=data
        )
    if current is None:
        if not tables:
            return Check(
                "database.schema",
                Status.OK,
                "empty database; the engine creates the schema at start",
                data=data,
            )
        return Check(
            "database.schema",
            Status.WARN,
            f"schema made by a version before migrations; this version expects {head}",
            fix="start this version's engine once: it stamps and upgrades the schema",
            data=data,
        )
    from storyworld.engine.schema import _script

    try:
        known = _script().get_revision(current) is not None
    except Exception:
        known = False
    if not known:
        return Check(
            "database.schema",
            Status.FAIL,
            f"schema at revision {current}, written by a newer StoryWorld (this one knows up "
            f"to {head})",
            fix="install the StoryWorld version the engine runs on this machine too",
            data=data,
        )
    return Check(
        "database.schema",
        Status.WARN,
        f"schema at revision {current}, this version expects {head}",
        fix="start this version's engine once: it upgrades the schema",
        data=data,
    )
