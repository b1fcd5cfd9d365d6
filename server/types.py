"""Types shared by every layer: the database connection every store and domain function takes.

A function that takes a `Conn` runs inside the caller's transaction; it never commits or rolls
back itself (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

Conn = AsyncConnection[Any]
