"""SQL for idempotency records (migrations/0001_wallet_ledger.sql; a key is unique per
(tenant_id, scope, idempotency_key) since migrations/0402_idempotency_scopes.sql)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from server.store.rows import fetch_one, fetch_scalar
from server.types import Conn


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A stored outcome: state 'done' (code, response) or 'tombstone'."""

    method: str
    fingerprint: bytes | None
    state: str
    grpc_code: int | None
    response: bytes | None


async def fetch(
    conn: Conn, tenant_id: str, scope: str, key: str, *, lock: bool = False
) -> IdempotencyRecord | None:
    """The record for the key in `scope`, locked FOR UPDATE when `lock`."""
    return await fetch_one(
        conn,
        IdempotencyRecord,
        "SELECT method, fingerprint, state, grpc_code, response FROM idempotency_records"
        " WHERE tenant_id = %s AND scope = %s AND idempotency_key = %s"
        + (" FOR UPDATE" if lock else ""),
        (tenant_id, scope, key),
    )


PRIMARY_KEY = "idempotency_records_pkey"


def constraint_name(exc: psycopg.Error) -> str | None:
    """The table-level name of the constraint an error violated. On a distributed database
    the error comes from a shard: its diagnostics carry no constraint name, and the message
    names the shard's copy (`<name>_<shard id>`), which is mapped back to `<name>`."""
    name = exc.diag.constraint_name
    if name is None:
        found = re.search(r'constraint "([^"]+)"', exc.diag.message_primary or "")
        if found is None:
            return None
        name = found.group(1)
        base, _, suffix = name.rpartition("_")
        if base and suffix.isdigit():
            return base
    return name


async def record(
    conn: Conn,
    tenant_id: str,
    scope: str,
    key: str,
    method: str,
    fingerprint: bytes,
    code: int,
    response: bytes,
) -> None:
    """Store a request's outcome. A key already used raises UniqueViolation on PRIMARY_KEY
    (after waiting for a concurrent holder of the key to finish), which rolls back the
    transaction: the caller then replays the stored outcome instead."""
    await conn.execute(
        "INSERT INTO idempotency_records (tenant_id, scope, idempotency_key, method,"
        " fingerprint, state, grpc_code, response) VALUES (%s, %s, %s, %s, %s, 'done', %s, %s)",
        (tenant_id, scope, key, method, fingerprint, code, response),
    )


async def tombstone(conn: Conn, tenant_id: str, scope: str, key: str) -> bool:
    """Claim an unused key of `scope` as a rollback tombstone; False if already used."""
    cur = await conn.execute(
        "INSERT INTO idempotency_records (tenant_id, scope, idempotency_key, method, state)"
        " VALUES (%s, %s, %s, '', 'tombstone') ON CONFLICT DO NOTHING RETURNING 1",
        (tenant_id, scope, key),
    )
    return await cur.fetchone() is not None


Slot = tuple[str, str, str]  # (tenant_id, scope, idempotency_key)


def key_rows(keys: Sequence[Slot]) -> str:
    """The JSON parameter of USED_KEYS_JSON: (tenant_id, scope, idempotency_key) triples."""
    return json.dumps([{"tenant_id": t, "scope": s, "idempotency_key": k} for t, s, k in keys])


# A JSON array of the [tenant_id, scope, idempotency_key] triples of one JSON parameter
# (`key_rows`) that already have a record; {keys} names the parameter.
USED_KEYS_JSON = (
    "SELECT coalesce(json_agg(json_build_array(r.tenant_id, r.scope, r.idempotency_key)),"
    " '[]'::json) FROM idempotency_records r"
    " JOIN json_to_recordset({keys}::json) AS k(tenant_id text, scope text, idempotency_key text)"
    " USING (tenant_id, scope, idempotency_key)"
)


def used_of(rows: Sequence[Sequence[object]]) -> set[Slot]:
    """The decoded result of USED_KEYS_JSON."""
    return {(str(t), str(s), str(k)) for t, s, k in rows}


async def used_keys(conn: Conn, keys: Sequence[Slot]) -> set[Slot]:
    """Which of the (tenant_id, scope, idempotency_key) triples already have a record (one
    statement; keys of one tenant read only that tenant's shard on a distributed database)."""
    tenants = {t for t, _, _ in keys}
    if len(tenants) == 1:
        used = await fetch_scalar(
            conn,
            "SELECT coalesce(json_agg(json_build_array(r.tenant_id, r.scope,"
            " r.idempotency_key)), '[]'::json) FROM idempotency_records r"
            " JOIN unnest(%s::text[], %s::text[]) AS k(scope, idempotency_key)"
            " ON r.scope = k.scope AND r.idempotency_key = k.idempotency_key"
            " WHERE r.tenant_id = %s",
            ([s for _, s, _ in keys], [k for _, _, k in keys], next(iter(tenants))),
        )
    else:
        used = await fetch_scalar(conn, USED_KEYS_JSON.format(keys="%s"), (key_rows(keys),))
    return used_of(used or [])


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request's stored outcome, for `record_many`."""

    tenant_id: str
    idempotency_key: str
    method: str
    fingerprint: bytes
    grpc_code: int
    response: bytes
    scope: str


def outcome_rows(outcomes: Sequence[Outcome]) -> str:
    """The JSON parameter of INSERT_OUTCOMES_JSON (bytes as bytea hex text)."""
    return json.dumps(
        [
            {
                "tenant_id": o.tenant_id,
                "scope": o.scope,
                "idempotency_key": o.idempotency_key,
                "method": o.method,
                "fingerprint": "\\x" + o.fingerprint.hex(),
                "state": "done",
                "grpc_code": o.grpc_code,
                "response": "\\x" + o.response.hex(),
            }
            for o in outcomes
        ]
    )


# Store the outcomes of one JSON parameter (`outcome_rows`); {rows} names the parameter. A key
# already used raises UniqueViolation on PRIMARY_KEY and fails the whole statement.
INSERT_OUTCOMES_JSON = (
    "INSERT INTO idempotency_records (tenant_id, scope, idempotency_key, method, fingerprint,"
    " state, grpc_code, response)"
    " SELECT tenant_id, scope, idempotency_key, method, fingerprint, state, grpc_code, response"
    " FROM json_populate_recordset(NULL::idempotency_records, {rows}::json)"
)


async def record_many(conn: Conn, outcomes: Sequence[Outcome]) -> None:
    """Store several requests' outcomes in one statement (a batch; see `record`): a key already
    used raises UniqueViolation on PRIMARY_KEY and rolls the whole batch back. One
    INSERT ... VALUES, which a distributed database routes to one shard when the outcomes are
    of one tenant (an INSERT ... SELECT would be planned through the coordinator and
    committed in two phases)."""
    if not outcomes:
        return
    values: list[object] = []
    for o in outcomes:
        values += [
            o.tenant_id,
            o.scope,
            o.idempotency_key,
            o.method,
            o.fingerprint,
            o.grpc_code,
            o.response,
        ]
    await conn.execute(
        "INSERT INTO idempotency_records (tenant_id, scope, idempotency_key, method,"
        " fingerprint, state, grpc_code, response) VALUES "
        + ", ".join(["(%s, %s, %s, %s, %s, 'done', %s, %s)"] * len(outcomes)),
        values,
    )
