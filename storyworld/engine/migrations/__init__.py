"""Alembic migrations of the engine's database (package data: an installed wheel has them).

Add a revision with `alembic -c storyworld/engine/migrations/alembic.ini revision -m "..."`
(down_revision = the current head; there is always a single head).
"""
