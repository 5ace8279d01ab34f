"""The store's database: SQLite (the embedded default) or PostgreSQL, behind one small interface.

The store's SQL is written once, in the subset both engines share (``?`` placeholders,
``RETURNING id``, ``ON CONFLICT``). A ``Database`` runs it and keeps the schema at its latest
migration (``detector.database.schema``). Write transactions are serialised across every process
that uses the database (SQLite's ``BEGIN IMMEDIATE``, a transaction-scoped advisory lock in
PostgreSQL), so a counter such as the gallery version moves one committed change at a time and a
check-then-insert inside a transaction never races another process's.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

from detector.errors import InvalidInputError

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> tuple | None: ...

    def fetchall(self) -> list[tuple]: ...

    def __iter__(self): ...


class Connection(Protocol):
    """What a write transaction hands its body: both sqlite3's connection and the PostgreSQL adapter."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor: ...


class Database(Protocol):
    dialect: str  # "sqlite" or "postgresql"
    where: str  # for messages: a path, or a URL without its password

    def transaction(self) -> AbstractContextManager[Connection]: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...

    def close(self) -> None: ...

    def wait_for_change(self, timeout: float) -> bool:
        """Block until another process may have changed a counter (True), or ``timeout`` seconds (False)."""
        ...


def is_postgres_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def open_database(location: str | Path) -> Database:
    """A ``postgresql://`` URL, or the path of a SQLite file (created if missing); migrated to the latest schema."""
    if is_postgres_url(location):
        from detector.database.postgres import PostgresDatabase  # psycopg is loaded only where it is used

        return PostgresDatabase(str(location))
    if isinstance(location, str) and "://" in location:
        raise InvalidInputError(f"unsupported database URL {location.split('://')[0]}://...: use postgresql://, "
                                "or a SQLite file's path")
    from detector.database.sqlite import SqliteDatabase

    return SqliteDatabase(Path(location))
