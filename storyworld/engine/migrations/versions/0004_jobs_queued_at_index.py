"""Index jobs by queued_at: the Jobs screen pages newest first (100,000 jobs: a page is an
index walk, not a sort of the table)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_queued_at", "jobs", ["queued_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_queued_at", table_name="jobs")
