"""Reading rows by column name: every store function builds its row types through these.

`make` is a row type (a dataclass whose fields are the selected column names) or a function
taking the columns as keyword arguments; psycopg's `kwargs_row` calls it once per row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from psycopg.abc import Params, QueryNoTemplate
from psycopg.rows import kwargs_row, scalar_row

from server.types import Conn

T = TypeVar("T")


async def fetch_one(
    conn: Conn, make: Callable[..., T], query: QueryNoTemplate, params: Params | None = None
) -> T | None:
    """The first row of `query` as `make(**columns)`, or None when there is none."""
    cur = conn.cursor(row_factory=kwargs_row(make))
    await cur.execute(query, params)
    return await cur.fetchone()


async def send_one(
    conn: Conn, make: Callable[..., T], query: QueryNoTemplate, params: Params | None = None
) -> Callable[[], Awaitable[T | None]]:
    """Send `query` now and return the reader of its first row (`make(**columns)` or None).
    In pipeline mode statements sent before the first read share one round trip, and run in
    the order sent (so a read sent after a locking read runs under that lock)."""
    cur = conn.cursor(row_factory=kwargs_row(make))
    await cur.execute(query, params)
    return cur.fetchone


async def fetch_all(
    conn: Conn, make: Callable[..., T], query: QueryNoTemplate, params: Params | None = None
) -> list[T]:
    """Every row of `query` as `make(**columns)`."""
    cur = conn.cursor(row_factory=kwargs_row(make))
    await cur.execute(query, params)
    return await cur.fetchall()


async def fetch_scalar(conn: Conn, query: QueryNoTemplate, params: Params | None = None) -> Any:
    """The first column of the first row of `query`, or None when there is no row."""
    cur = conn.cursor(row_factory=scalar_row)
    await cur.execute(query, params)
    return await cur.fetchone()


async def fetch_scalars(
    conn: Conn, query: QueryNoTemplate, params: Params | None = None
) -> list[Any]:
    """The first column of every row of `query`."""
    cur = conn.cursor(row_factory=scalar_row)
    await cur.execute(query, params)
    return await cur.fetchall()
