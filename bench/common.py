"""Pieces the benchmark scripts share."""

from __future__ import annotations


def prepare_database(url: str) -> None:
    """Drop and recreate a PostgreSQL scratch database (only one whose name starts with
    `bench`); SQLite URLs need nothing."""
    if not url.startswith("postgres"):
        return
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.startswith("bench"):
        raise SystemExit(f"refusing to recreate database {name!r}: its name must start with 'bench'")
    admin = parts._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
