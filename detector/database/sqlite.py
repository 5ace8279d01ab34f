"""SQLite: one file, WAL journal, ``synchronous=FULL`` (a committed transaction survives power loss
or ``kill -9``), one connection shared by the process's threads under a lock."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from detector.database.schema import migrate
from detector.fsutil import disk_full_is_typed


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.where = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        migrate(self)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, disk_full_is_typed():
            self._conn.execute("BEGIN IMMEDIATE")  # takes the write lock now: writers across processes queue here
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # a failed COMMIT (a full disk) leaves it open
                    self._conn.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def wait_for_change(self, timeout: float) -> bool:
        """SQLite tells no one: the caller polls."""
        time.sleep(timeout)
        return False

    def table_columns(self, conn: sqlite3.Connection, table: str) -> set[str]:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
