"""The schema as Alembic migrations: applied on first start under a lock, an upgrade from
the schema that shipped before (create_all at 1686b00), a database newer than the code
refused. On SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from test_postgres import pg_url  # noqa: F401  (fixture)

from storyworld.engine.models import Base, make_engine
from storyworld.engine.schema import (
    BASELINE,
    DatabaseTooNew,
    current_revision,
    head_revision,
    upgrade_database,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).with_name("fixtures")
TABLES = {"episodes", "beats", "jobs", "artifacts", "uploads", "transitions"}

# Each process imports everything, then waits for one byte on stdin, so both start the
# upgrade at the same moment.
RACER = """
import sys
from storyworld.engine.models import make_engine
import storyworld.engine.schema
sys.stdin.read(1)
make_engine(sys.argv[1]).dispose()
print("ok")
"""


def _race(url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("x")
        p.stdin.flush()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return current_revision(c)
    finally:
        engine.dispose()


def _load_fixture(url: str, dialect: str) -> None:
    ddl = (FIXTURES / f"schema_1686b00_{dialect}.sql").read_text()
    engine = create_engine(url)
    with engine.begin() as c:
        for stmt in ddl.split(";"):
            body = "\n".join(ln for ln in stmt.splitlines() if not ln.startswith("--")).strip()
            if body:
                c.exec_driver_sql(body)
        c.exec_driver_sql(
            "INSERT INTO episodes (id, title, script, script_format, backend, width, height,"
            " fps, seed, options, state, created_at, updated_at) VALUES ('old1', 'Old',"
            " 'x', 'plain', 'animatic', 64, 48, 8, 7, '{}', 'completed', 1.0, 1.0)"
        )
    engine.dispose()


def _check_upgraded_from_1686b00(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as c:
            assert current_revision(c) == head_revision()
            assert c.execute(text("SELECT title, seed FROM episodes")).all() == [("Old", 7)]
            # The seed column takes the largest seed now (BIGINT on PostgreSQL).
            c.execute(text("UPDATE episodes SET seed = :s"), {"s": 2**63 - 1})
            assert c.execute(text("SELECT seed FROM episodes")).scalar() == 2**63 - 1
            _assert_models_match(c)
    finally:
        engine.dispose()


def _assert_models_match(conn) -> None:  # type: ignore[no-untyped-def]
    """The models and the migrations describe the same schema (a column added to a model
    without a revision fails here)."""
    ctx = MigrationContext.configure(
        conn, opts={"compare_type": conn.dialect.name != "sqlite", "target_metadata": Base.metadata}
    )
    diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], diff


# ----------------------------------------------------------------------------- SQLite
def test_two_processes_start_on_a_fresh_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    _race(url)
    assert _revision(url) == head_revision()
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_upgrade_from_the_schema_of_1686b00_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _load_fixture(url, "sqlite")
    assert _revision(url) is None
    _check_upgraded_from_1686b00(url)


def test_a_database_newer_than_the_code_is_refused_and_left_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    make_engine(url).dispose()
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(DatabaseTooNew, match="revision 9999, newer than this program's"):
        upgrade_database(engine)
    with engine.connect() as c:
        assert current_revision(c) == "9999"
    engine.dispose()


def test_an_up_to_date_database_costs_one_query(tmp_path: Path) -> None:
    from sqlalchemy import event

    url = f"sqlite:///{tmp_path / 'db.db'}"
    make_engine(url).dispose()
    engine = make_engine(url, upgrade=False)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    assert upgrade_database(engine) == head_revision()
    assert [s for s in statements if "alembic_version" in s] == statements
    assert len(statements) <= 2  # alembic may check the table, then read the revision
    engine.dispose()


def test_db_upgrade_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from storyworld.cli import main

    db = tmp_path / "cli.db"
    env = tmp_path / "env"
    env.write_text(f"DATABASE_URL=sqlite:///{db}\n")
    assert main(["--env-file", str(env), "db", "upgrade"]) == 0
    assert f"upgraded from none to {head_revision()}" in capsys.readouterr().out
    assert main(["--env-file", str(env), "db", "status"]) == 0
    assert f"revision {head_revision()}" in capsys.readouterr().out
    assert head_revision() > BASELINE


# ----------------------------------------------------------------------------- PostgreSQL
def test_two_processes_start_on_a_fresh_postgres_database(pg_url: str) -> None:  # noqa: F811
    _race(pg_url)
    assert _revision(pg_url) == head_revision()


def test_upgrade_from_the_schema_of_1686b00_on_postgres(pg_url: str) -> None:  # noqa: F811
    _load_fixture(pg_url, "postgresql")
    _check_upgraded_from_1686b00(pg_url)
