"""Seeds up to 2^63-1 and files over 2 GiB: seed and sizes become BIGINT

(SQLite stores 64-bit integers in INTEGER already; PostgreSQL's INTEGER is 32-bit.)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = (("episodes", "seed", True), ("artifacts", "size", False), ("uploads", "size", False))


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        return  # INTEGER is already 64-bit; a batch copy of the tables would change nothing
    for table, column, nullable in _COLUMNS:
        op.alter_column(
            table,
            column,
            type_=sa.BigInteger(),
            existing_type=sa.Integer(),
            existing_nullable=nullable,
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        return
    for table, column, nullable in _COLUMNS:
        op.alter_column(
            table,
            column,
            type_=sa.Integer(),
            existing_type=sa.BigInteger(),
            existing_nullable=nullable,
        )
