"""PostgreSQL through psycopg 3 and a connection pool.

Queries run in autocommit; a write transaction takes a transaction-scoped advisory lock first,
so writes from every replica are serialised as SQLite's are (see ``detector.database``), and a
commit that returned is durable under the server's own settings (``synchronous_commit`` on, the
default). A lost or unreachable server is ``StoreUnavailableError`` (503); a full disk on the
server is ``InsufficientStorageError`` (507).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from detector.database.schema import CHANGES_CHANNEL, migrate
from detector.errors import InsufficientStorageError, InvalidInputError, StoreUnavailableError

WRITE_LOCK = 0x43464457  # the advisory-lock key every write transaction takes ("CFDW")
CONNECT_TIMEOUT_S = 10.0  # opening the pool at start
WAIT_FOR_CONNECTION_S = 5.0  # a request waiting for a connection (a busy pool, or a server away) before its 503


@functools.lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """The store's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Connection:
    """A psycopg connection that speaks the store's SQL (``?`` placeholders, ``executemany``)."""

    def __init__(self, conn: psycopg.Connection):
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self._conn.execute(_placeholders(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor:
        cursor = self._conn.cursor()
        rows = [tuple(r) for r in rows]
        if rows:
            cursor.executemany(_placeholders(sql), rows)
        return cursor


def redacted(url: str) -> str:
    """A URL fit for messages and logs: host, port and database, never the password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    host = parts.get("host", "")
    return f"postgresql://{parts.get('user', '') + '@' if parts.get('user') else ''}{host}" \
           f"{':' + str(parts['port']) if parts.get('port') else ''}/{parts.get('dbname', '')}"


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(self, url: str, *, max_connections: int = 8):
        self.where = redacted(url)
        self._url = url
        self._listener: psycopg.Connection | None = None  # LISTENs for changes (wait_for_change); not pooled
        try:
            conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise InvalidInputError(f"invalid PostgreSQL URL: {exc}") from None
        # check: a connection is tried before it is lent, so one broken by a server restart is replaced
        # rather than failing the request that drew it
        self._pool = ConnectionPool(url, min_size=1, max_size=max_connections, open=False, timeout=WAIT_FOR_CONNECTION_S,
                                    kwargs={"autocommit": True, "connect_timeout": int(CONNECT_TIMEOUT_S)},
                                    check=ConnectionPool.check_connection, name="cfd-store")
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout:
            self._pool.close()
            raise StoreUnavailableError(f"cannot connect to PostgreSQL at {self.where} within {CONNECT_TIMEOUT_S:.0f} s") from None
        try:
            migrate(self)
        except BaseException:
            self._pool.close()
            raise

    def close(self) -> None:
        self._pool.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def wait_for_change(self, timeout: float) -> bool:
        """Wait for a committed counter change on any replica (a ``NOTIFY`` from the ``meta`` trigger)."""
        with self._typed_errors():
            if self._listener is None or self._listener.closed:
                self._listener = psycopg.connect(self._url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_S))
                self._listener.execute(f"LISTEN {CHANGES_CHANNEL}")
                return True  # changes made before it listened were never notified to it
            try:
                # consumed to the end: the generator yields a whole batch before it stops, and closing it
                # early would drop the rest of the batch
                return sum(1 for _ in self._listener.notifies(timeout=timeout, stop_after=1)) > 0
            except psycopg.OperationalError:
                self._listener.close()
                raise

    @contextmanager
    def _typed_errors(self) -> Iterator[None]:
        try:
            yield
        except pg_errors.DiskFull as exc:
            raise InsufficientStorageError(f"the PostgreSQL server is out of room ({exc.sqlstate}); nothing was stored") from None
        except PoolTimeout:
            raise StoreUnavailableError(f"no connection to PostgreSQL at {self.where} within {WAIT_FOR_CONNECTION_S:.0f} s") from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(f"PostgreSQL at {self.where} is unavailable ({str(exc).strip()[:200]})") from None

    @contextmanager
    def transaction(self) -> Iterator[_Connection]:
        with self._typed_errors(), self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield _Connection(conn)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._typed_errors(), self._pool.connection() as conn:
            cursor = conn.execute(_placeholders(sql), tuple(params))
            return cursor.fetchall() if cursor.description is not None else []  # a statement without rows, as in SQLite

