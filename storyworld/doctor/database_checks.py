"""Database: reachable, and its schema at the version this StoryWorld expects.

Nothing is created or changed: the doctor looks only. With Alembic migrations in the
package (`storyworld/engine/migrations`), "current" means the database's revision is the
scripts' head; before them, every table and column of the models must exist.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from storyworld.config import Settings, mask_url
from storyworld.doctor.report import Check, Status
from storyworld.engine.runtime import database_url

__all__ = ["check_database"]


def _migrations_dir() -> Path | None:
    import storyworld.engine as engine_pkg

    d = Path(engine_pkg.__file__).parent / "migrations"
    return d if (d / "env.py").is_file() else None


def check_database(settings: Settings) -> list[Check]:
    url = database_url(settings)
    where = mask_url(url)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            folder = path.parent if str(path.parent) else Path(".")
            if not folder.exists():
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


def _schema(conn) -> Check:  # type: ignore[no-untyped-def]
    migrations = _migrations_dir()
    if migrations is not None:
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(migrations))
        heads = set(ScriptDirectory.from_config(cfg).get_heads())
        current = set(MigrationContext.configure(conn).get_current_heads())
        data = {"current": sorted(current), "head": sorted(heads)}
        if current == heads:
            return Check(
                "database.schema",
                Status.OK,
                f"schema at the current revision {', '.join(sorted(heads))}",
                data=data,
            )
        if not current:
            return Check(
                "database.schema",
                Status.WARN,
                "no schema yet",
                fix="start the engine once (it creates the schema)",
                data=data,
            )
        return Check(
            "database.schema",
            Status.FAIL,
            f"schema at {', '.join(sorted(current)) or 'nothing'}, this StoryWorld expects "
            f"{', '.join(sorted(heads))}",
            fix="run the engine of this version once (it upgrades the schema) or restore a "
            "database made by this version",
            data=data,
        )
    from storyworld.engine.models import Base

    insp = inspect(conn)
    tables = set(insp.get_table_names())
    missing_tables = [t for t in Base.metadata.tables if t not in tables]
    if len(missing_tables) == len(Base.metadata.tables):
        return Check(
            "database.schema", Status.OK, "empty database; the engine creates the schema at start"
        )
    missing_cols = [
        f"{t.name}.{c.name}"
        for t in Base.metadata.tables.values()
        if t.name in tables
        for c in t.columns
        if c.name not in {col["name"] for col in insp.get_columns(t.name)}
    ]
    if missing_tables or missing_cols:
        return Check(
            "database.schema",
            Status.FAIL,
            f"schema is older than this StoryWorld: missing "
            f"{', '.join(missing_tables + missing_cols)}",
            fix="upgrade the schema (start this version's engine) or use a fresh DATABASE_URL",
        )
    return Check("database.schema", Status.OK, "every table and column this version uses exists")
