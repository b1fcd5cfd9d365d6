"""The wallet's SQL: every statement the ledger runs, in one place (docs/architecture.md, "Layers").

Functions take an open connection inside the caller's transaction and return plain tuples or
small dataclasses; they hold no business rules. Postings for one ledger transaction are always
inserted by one statement (`insert_postings`), which the database checks for balance.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg.pq import TransactionStatus

from server.store import statements
from server.store.rows import fetch_all, fetch_one, fetch_scalar, send_one
from server.store.statements import Write
from server.types import Conn


@dataclass(frozen=True, slots=True)
class AccountRow:
    """A locked player account."""

    account_id: int
    currency: str
    available: int
    held: int
    player_status: str
    bonus: int = 0
    locked: int = 0
    bonus_id: uuid.UUID | None = None  # the player's active bonus in this currency
    bonus_max_bet: int | None = None  # its cap on one bet (None: no cap)

    @property
    def spendable(self) -> int:
        """What a bet may take: cash (available) + locked + bonus."""
        return self.available + self.locked + self.bonus

    @property
    def total(self) -> int:
        """Every bucket a bet or credit may touch: available + held + bonus + locked."""
        return self.available + self.held + self.bonus + self.locked


@dataclass(frozen=True, slots=True)
class HoldRow:
    """A hold (or a cancel tombstone when state == 'tombstone')."""

    hold_id: uuid.UUID
    player_id: str
    account_id: int | None
    currency: str
    amount: int
    state: str
    expired: bool
    expires_at: datetime | None
    authorize_transaction_id: uuid.UUID | None
    bonus_part: int = 0
    locked_part: int = 0
    bonus_id: uuid.UUID | None = None
    game_id: str = ""
    game_category: str = ""


@dataclass(frozen=True, slots=True)
class Leg:
    """One posting to insert: signed minor units on an account's bucket.

    `account_id` names a player account; for a tenant house account pass `house` (its kind,
    e.g. "house_game") instead and the statement resolves it (the account must exist).
    """

    account_id: int | None
    bucket: str
    amount: int
    house: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionRow:
    """A journal row with its postings, for reads."""

    transaction_id: uuid.UUID
    seq: int
    tenant_id: str
    player_id: str
    kind: str
    currency: str
    amount: int
    idempotency_key: str | None
    round_id: str
    bet_id: str
    game_id: str
    target_transaction_id: uuid.UUID | None
    metadata: dict[str, str]
    created_at: datetime
    postings: list[tuple[str, str, str, int]]  # (account kind, bucket, currency, amount)


# The bonus columns of a locked account: its bonus and locked buckets and its active bonus
# (id, max bet), joined with `_ACTIVE_BONUS_JOIN` (accounts a).
_BONUS_COLUMNS = "a.bonus, a.locked, ab.bonus_id AS active_bonus_id, ab.max_bet AS active_max_bet"
_ACTIVE_BONUS_JOIN = (
    "LEFT JOIN bonuses ab ON ab.tenant_id = a.tenant_id AND ab.player_id = a.owner"
    " AND ab.currency = a.currency AND ab.state = 'active'"
)


def _account(account_id: int, currency: str, c: dict[str, Any]) -> AccountRow:
    """An AccountRow from the columns available, held, player_status and `_BONUS_COLUMNS`."""
    return AccountRow(
        account_id,
        currency,
        int(c["available"]),
        int(c["held"]),
        str(c["player_status"]),
        int(c["bonus"]),
        int(c["locked"]),
        c["active_bonus_id"],
        None if c["active_max_bet"] is None else int(c["active_max_bet"]),
    )


def _account_row(**c: Any) -> AccountRow:
    return _account(int(c["account_id"]), str(c["currency"]), c)


async def player_status(
    conn: Conn, tenant_id: str, player_id: str, *, share: bool = False
) -> str | None:
    """The player's status, or None if the player is unknown; with `share` the players row
    is locked FOR SHARE (a concurrent status change waits for this transaction)."""
    status = await fetch_scalar(
        conn,
        "SELECT status FROM players WHERE tenant_id = %s AND player_id = %s"
        + (" FOR SHARE" if share else ""),
        (tenant_id, player_id),
    )
    return None if status is None else str(status)


async def lock_account(
    conn: Conn, tenant_id: str, player_id: str, currency: str
) -> AccountRow | None:
    """Lock (FOR UPDATE) and return the player's account in `currency`, or None."""

    def make(**c: Any) -> AccountRow:
        return _account(int(c["account_id"]), currency, c)

    return await fetch_one(
        conn,
        make,
        f"SELECT a.account_id, a.available, a.held, p.status AS player_status, {_BONUS_COLUMNS}"
        "  FROM accounts a JOIN players p"
        "    ON p.tenant_id = a.tenant_id AND p.player_id = a.owner"
        f" {_ACTIVE_BONUS_JOIN}"
        " WHERE a.tenant_id = %s AND a.kind = 'player' AND a.owner = %s AND a.currency = %s"
        "   FOR UPDATE OF a",
        (tenant_id, player_id, currency),
    )


async def lock_account_for_bet(
    conn: Conn, tenant_id: str, player_id: str, currency: str, bet_id: str
) -> tuple[AccountRow | None, str | None, datetime]:
    """Lock the player's account in `currency` and read the state of any hold already
    recorded for `bet_id` and the database's transaction time `now()` (one statement, one
    round trip). Hold expiry is measured on that clock only: the sweeper and SettleBet
    compare `expires_at` with the database's `now()`."""
    read = await send_lock_account_for_bet(conn, tenant_id, player_id, currency, bet_id)
    return await read()


async def send_lock_account_for_bet(
    conn: Conn, tenant_id: str, player_id: str, currency: str, bet_id: str
) -> Callable[[], Awaitable[tuple[AccountRow | None, str | None, datetime]]]:
    """`lock_account_for_bet`, sent now and read later (server.store.rows.send_one): reads sent
    after it share its round trip and run under its lock."""

    def make(**c: Any) -> tuple[AccountRow, str | None, datetime]:
        account = _account(int(c["account_id"]), currency, c)
        hold_state = c["hold_state"]
        return account, None if hold_state is None else str(hold_state), c["db_now"]

    row = await send_one(
        conn,
        make,
        "SELECT a.account_id, a.available, a.held, p.status AS player_status,"
        "       (SELECT h.state FROM holds h WHERE h.tenant_id = %s AND h.bet_id = %s)"
        "         AS hold_state,"
        f"       now() AS db_now, {_BONUS_COLUMNS}"
        "  FROM accounts a JOIN players p"
        "    ON p.tenant_id = a.tenant_id AND p.player_id = a.owner"
        f" {_ACTIVE_BONUS_JOIN}"
        " WHERE a.tenant_id = %s AND a.kind = 'player' AND a.owner = %s AND a.currency = %s"
        "   FOR UPDATE OF a",
        (tenant_id, bet_id, tenant_id, player_id, currency),
    )

    async def read() -> tuple[AccountRow | None, str | None, datetime]:
        found = await row()
        return (None, None, datetime.now(UTC)) if found is None else found

    return read


async def lock_hold_and_account(
    conn: Conn, tenant_id: str, bet_id: str
) -> tuple[HoldRow, AccountRow] | None:
    """Lock the hold for `bet_id` and its player account in one statement; None when there is
    no such hold with an account (none at all, or a tombstone: see `find_hold`)."""

    def make(**c: Any) -> tuple[HoldRow, AccountRow]:
        hold = _hold(c)
        assert hold.account_id is not None
        return hold, _account(hold.account_id, hold.currency, c)

    return await fetch_one(
        conn,
        make,
        f"SELECT {_HOLD_COLUMNS_H}, a.available, a.held, p.status AS player_status,"
        f" {_BONUS_COLUMNS}"
        "  FROM holds h JOIN accounts a"
        "    ON a.tenant_id = h.tenant_id AND a.account_id = h.account_id"
        "  JOIN players p ON p.tenant_id = a.tenant_id AND p.player_id = a.owner"
        f" {_ACTIVE_BONUS_JOIN}"
        " WHERE h.tenant_id = %s AND h.bet_id = %s FOR UPDATE OF h, a",
        (tenant_id, bet_id),
    )


async def lock_account_by_id(conn: Conn, tenant_id: str, account_id: int) -> AccountRow:
    """Lock (FOR UPDATE) and return a player account of the tenant by id."""
    row = await fetch_one(
        conn,
        _account_row,
        "SELECT a.account_id, a.currency, a.available, a.held, p.status AS player_status,"
        f" {_BONUS_COLUMNS}"
        "  FROM accounts a JOIN players p"
        "    ON p.tenant_id = a.tenant_id AND p.player_id = a.owner"
        f" {_ACTIVE_BONUS_JOIN}"
        " WHERE a.tenant_id = %s AND a.account_id = %s FOR UPDATE OF a",
        (tenant_id, account_id),
    )
    assert row is not None, f"account {account_id} vanished"
    return row


async def open_account(conn: Conn, tenant_id: str, player_id: str, currency: str) -> None:
    """Create the player (status active) and their account in `currency` if missing."""
    await conn.execute(
        "WITH p AS (INSERT INTO players (tenant_id, player_id) VALUES (%(t)s, %(p)s)"
        "           ON CONFLICT DO NOTHING)"
        " INSERT INTO accounts (tenant_id, kind, owner, currency, available, held)"
        " VALUES (%(t)s, 'player', %(p)s, %(c)s, 0, 0) ON CONFLICT DO NOTHING",
        {"t": tenant_id, "p": player_id, "c": currency},
    )


# House account ids by (server, database, tenant, kind, currency): a house account, once
# created, keeps its id, so the postings statement can name it directly (one router-planned
# INSERT ... VALUES on a distributed database, no lookup in the statement).
_house_ids: dict[tuple[str, str, str, str, str], int] = {}


def _house_key(
    conn: Conn, tenant_id: str, kind: str, currency: str
) -> tuple[str, str, str, str, str]:
    info = conn.info
    return (f"{info.host}:{info.port}", info.dbname, tenant_id, kind, currency)


async def house_account(conn: Conn, tenant_id: str, kind: str, currency: str) -> int:
    """The id of the tenant's house account of `kind` in `currency`, created if missing.

    Remembered once read outside a transaction (committed); inside one it may roll back."""
    cache_key = _house_key(conn, tenant_id, kind, currency)
    if (known := _house_ids.get(cache_key)) is not None:
        return known
    idle = conn.info.transaction_status == TransactionStatus.IDLE
    params = {"t": tenant_id, "k": kind, "c": currency}
    found = await fetch_scalar(
        conn,
        "WITH ins AS (INSERT INTO accounts (tenant_id, kind, owner, currency)"
        "             VALUES (%(t)s, %(k)s, '', %(c)s) ON CONFLICT DO NOTHING"
        "             RETURNING account_id)"
        " SELECT account_id FROM ins UNION ALL"
        " SELECT account_id FROM accounts"
        "  WHERE tenant_id = %(t)s AND kind = %(k)s AND owner = '' AND currency = %(c)s",
        params,
    )
    if found is None:
        # A concurrent transaction created it after this statement's snapshot was taken: a new
        # statement sees it (READ COMMITTED).
        found = await fetch_scalar(
            conn,
            "SELECT account_id FROM accounts"
            " WHERE tenant_id = %(t)s AND kind = %(k)s AND owner = '' AND currency = %(c)s",
            params,
        )
    assert found is not None
    if idle:
        _house_ids[cache_key] = int(found)
    return int(found)


def transaction_write(
    *,
    transaction_id: uuid.UUID,
    tenant_id: str,
    player_id: str,
    kind: str,
    currency: str,
    amount: int,
    idempotency_key: str | None,
    round_id: str = "",
    bet_id: str = "",
    game_id: str = "",
    target_transaction_id: uuid.UUID | None = None,
    metadata: dict[str, str] | None = None,
) -> Write:
    """The INSERT of a journal transaction (amount in minor units of `currency`)."""
    return Write(
        "transactions",
        "INSERT INTO transactions (transaction_id, tenant_id, player_id, kind, currency, amount,"
        " idempotency_key, round_id, bet_id, game_id, target_transaction_id, metadata)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            transaction_id,
            tenant_id,
            player_id,
            kind,
            currency,
            amount,
            idempotency_key,
            round_id,
            bet_id,
            game_id,
            target_transaction_id,
            json.dumps(metadata or {}, sort_keys=True),
        ),
    )


async def insert_postings(
    conn: Conn, transaction_id: uuid.UUID, tenant_id: str, currency: str, legs: Sequence[Leg]
) -> None:
    """Insert all legs of one transaction in one statement (the database checks the balance).

    One INSERT ... VALUES of the tenant's rows: on a distributed database the router planner
    sends it to the tenant's shard as is. A leg naming another tenant's account is refused by
    the foreign key (tenant_id, account_id). House legs name their account by kind: its id is
    read once per process (`house_account`)."""
    write = await postings_write(conn, transaction_id, tenant_id, currency, legs)
    if write is not None:
        await statements.execute(conn, write)


async def postings_write(
    conn: Conn, transaction_id: uuid.UUID, tenant_id: str, currency: str, legs: Sequence[Leg]
) -> Write | None:
    """The INSERT of `insert_postings` (None when every leg is 0); `conn` only reads house
    account ids not yet known to the process."""
    legs = [leg for leg in legs if leg.amount != 0]
    if not legs:
        return None
    values: list[Any] = []
    for leg in legs:
        account_id = leg.account_id
        if account_id is None:
            assert leg.house is not None, "a leg names an account id or a house kind"
            account_id = await house_account(conn, tenant_id, leg.house, currency)
        values += [tenant_id, transaction_id, account_id, leg.bucket, currency, leg.amount]
    return Write(
        "postings",
        "INSERT INTO postings (tenant_id, transaction_id, account_id, bucket, currency, amount)"
        " VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(legs)),
        tuple(values),
    )


async def balances(
    conn: Conn, tenant_id: str, player_id: str, currency: str | None
) -> list[tuple[str, int, int, int, int]]:
    """[(currency, available (cash), held, bonus, locked)] of the player's accounts, by
    currency."""

    def make(**c: Any) -> tuple[str, int, int, int, int]:
        return (
            str(c["currency"]),
            int(c["available"]),
            int(c["held"]),
            int(c["bonus"]),
            int(c["locked"]),
        )

    return await fetch_all(
        conn,
        make,
        "SELECT currency, available, held, bonus, locked FROM accounts"
        " WHERE tenant_id = %s AND kind = 'player' AND owner = %s"
        "   AND (%s::text IS NULL OR currency = %s::text) ORDER BY currency",
        (tenant_id, player_id, currency, currency),
    )


_HOLD_COLUMNS = (
    "hold_id, player_id, account_id, currency, amount, state,"
    " state = 'open' AND expires_at <= now() AS expired, expires_at, authorize_transaction_id,"
    " bonus_part, locked_part, bonus_id, game_id, game_category"
)
_HOLD_COLUMNS_H = (
    "h.hold_id, h.player_id, h.account_id, h.currency, h.amount, h.state,"
    " h.state = 'open' AND h.expires_at <= now() AS expired, h.expires_at,"
    " h.authorize_transaction_id,"
    " h.bonus_part, h.locked_part, h.bonus_id, h.game_id, h.game_category"
)


def _hold(c: dict[str, Any]) -> HoldRow:
    """A HoldRow from the `_HOLD_COLUMNS` values by name."""
    return HoldRow(
        c["hold_id"],
        str(c["player_id"]),
        None if c["account_id"] is None else int(c["account_id"]),
        str(c["currency"]),
        int(c["amount"]),
        str(c["state"]),
        bool(c["expired"]),
        c["expires_at"],
        c["authorize_transaction_id"],
        int(c["bonus_part"]),
        int(c["locked_part"]),
        c["bonus_id"],
        str(c["game_id"]),
        str(c["game_category"]),
    )


def _hold_row(**c: Any) -> HoldRow:
    return _hold(c)


def hold_write(
    *,
    hold_id: uuid.UUID,
    tenant_id: str,
    player_id: str,
    bet_id: str,
    round_id: str,
    game_id: str,
    account_id: int | None,
    currency: str,
    amount: int,
    state: str,
    expires_at: datetime | None,
    transaction_id: uuid.UUID,
    bonus_part: int = 0,
    locked_part: int = 0,
    bonus_id: uuid.UUID | None = None,
    game_category: str = "",
    created_at: datetime | None = None,
) -> Write:
    """Insert a hold (or tombstone); a second one for `bet_id` raises UniqueViolation.
    `bonus_part` and `locked_part` are the parts of `amount` taken from those buckets (the rest
    is cash), belonging to the bonus `bonus_id`. `created_at` is the database time `expires_at`
    was computed from (default: `now()` where the row is written; on Citus that is the
    worker's clock, not the coordinator's)."""
    open_ = state == "open"
    return Write(
        "holds",
        "INSERT INTO holds (hold_id, tenant_id, player_id, bet_id, round_id, game_id, account_id,"
        " currency, amount, state, expires_at, authorize_transaction_id, close_transaction_id,"
        " closed_at, bonus_part, locked_part, bonus_id, game_category, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        + ("DEFAULT)" if created_at is None else "%s)"),
        (
            hold_id,
            tenant_id,
            player_id,
            bet_id,
            round_id,
            game_id,
            account_id,
            currency,
            amount,
            state,
            expires_at,
            transaction_id if open_ else None,
            None if open_ else transaction_id,
            None if open_ else datetime.now(UTC),
            bonus_part,
            locked_part,
            bonus_id,
            game_category,
            *(() if created_at is None else (created_at,)),
        ),
    )


async def find_hold(conn: Conn, tenant_id: str, bet_id: str, *, lock: bool) -> HoldRow | None:
    """The hold for `bet_id`, locked FOR UPDATE when `lock`."""
    return await fetch_one(
        conn,
        _hold_row,
        f"SELECT {_HOLD_COLUMNS} FROM holds WHERE tenant_id = %s AND bet_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (tenant_id, bet_id),
    )


async def close_hold(
    conn: Conn, tenant_id: str, hold_id: uuid.UUID, state: str, tx_id: uuid.UUID
) -> None:
    """Mark an open hold settled, cancelled or expired by transaction `tx_id`.

    The guard is written `state || '' = 'open'` on purpose: `state = 'open'` matches the
    partial index holds_open_by_expiry's predicate, and with stale statistics the planner
    chose that index (a scan of every open hold: 17 ms with 73,000 open) over the primary key."""
    await statements.execute(conn, close_hold_write(tenant_id, hold_id, state, tx_id))


def close_hold_write(tenant_id: str, hold_id: uuid.UUID, state: str, tx_id: uuid.UUID) -> Write:
    """`close_hold`'s UPDATE, for a caller that sends it with its other writes."""
    return Write(
        "holds",
        "UPDATE holds SET state = %s, close_transaction_id = %s, closed_at = now()"
        " WHERE tenant_id = %s AND hold_id = %s AND state || '' = 'open'",
        (state, tx_id, tenant_id, hold_id),
    )


async def expired_holds(
    conn: Conn, limit: int, exclude: Sequence[uuid.UUID] = ()
) -> list[tuple[str, uuid.UUID]]:
    """Up to `limit` open holds past expiry but the `exclude`d hold ids (rows set aside),
    oldest expiry first, unlocked: [(tenant_id, hold_id)] (each is then locked and voided on
    its own, see `lock_expired_hold`)."""

    def make(**c: Any) -> tuple[str, uuid.UUID]:
        return str(c["tenant_id"]), c["hold_id"]

    return await fetch_all(
        conn,
        make,
        "SELECT tenant_id, hold_id FROM holds WHERE state = 'open' AND expires_at <= now()"
        " AND hold_id <> ALL(%s::uuid[]) ORDER BY expires_at LIMIT %s",
        (list(exclude), limit),
    )


async def lock_expired_hold(
    conn: Conn, tenant_id: str, hold_id: uuid.UUID
) -> tuple[HoldRow, tuple[str, str, str]] | None:
    """Lock the tenant's hold if it is still open and past expiry and no one else holds it
    (SKIP LOCKED): (hold, (bet_id, round_id, game_id)), else None."""

    def make(**c: Any) -> tuple[HoldRow, tuple[str, str, str]]:
        return _hold(c), (str(c["bet_id"]), str(c["round_id"]), str(c["bet_game_id"]))

    return await fetch_one(
        conn,
        make,
        f"SELECT {_HOLD_COLUMNS}, bet_id, round_id, game_id AS bet_game_id FROM holds"
        " WHERE tenant_id = %s AND hold_id = %s AND state = 'open' AND expires_at <= now()"
        " FOR UPDATE SKIP LOCKED",
        (tenant_id, hold_id),
    )


async def set_player_status(conn: Conn, tenant_id: str, player_id: str, status: str) -> str | None:
    """Set the status (creating the player if unknown); return the previous status or None."""
    previous = await fetch_scalar(
        conn,
        "WITH old AS (SELECT status FROM players WHERE tenant_id = %(t)s AND player_id = %(p)s"
        "             FOR UPDATE),"
        " up AS (INSERT INTO players (tenant_id, player_id, status) VALUES (%(t)s, %(p)s, %(s)s)"
        "        ON CONFLICT (tenant_id, player_id)"
        "        DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at)"
        " SELECT status FROM old",
        {"t": tenant_id, "p": player_id, "s": status},
    )
    return None if previous is None else str(previous)


# The postings subquery names the tenant as a constant (two parameters before the query's
# own), so a distributed database routes the whole statement to the tenant's shard.
_TX_COLUMNS = (
    "t.transaction_id, t.seq, t.tenant_id, t.player_id, t.kind, t.currency, t.amount,"
    " t.idempotency_key, t.round_id, t.bet_id, t.game_id, t.target_transaction_id, t.metadata,"
    " t.created_at,"
    " coalesce((SELECT array_agg(ARRAY[a.kind, p.bucket, p.currency, p.amount::text]"
    "                            ORDER BY p.posting_id)"
    "             FROM postings p JOIN accounts a"
    "               ON a.tenant_id = p.tenant_id AND a.account_id = p.account_id"
    "            WHERE p.tenant_id = %s AND a.tenant_id = %s"
    "              AND p.transaction_id = t.transaction_id), '{}') AS postings"
)


def _tx(**c: Any) -> TransactionRow:
    postings = [(str(k), str(b), str(cur), int(m)) for k, b, cur, m in c["postings"]]
    return TransactionRow(
        c["transaction_id"],
        int(c["seq"]),
        str(c["tenant_id"]),
        str(c["player_id"]),
        str(c["kind"]),
        str(c["currency"]),
        int(c["amount"]),
        c["idempotency_key"],
        str(c["round_id"]),
        str(c["bet_id"]),
        str(c["game_id"]),
        c["target_transaction_id"],
        {str(k): str(v) for k, v in dict(c["metadata"]).items()},
        c["created_at"],
        postings,
    )


async def get_transaction(
    conn: Conn, tenant_id: str, transaction_id: uuid.UUID
) -> TransactionRow | None:
    """One journal transaction of the tenant with its postings, or None."""
    return await fetch_one(
        conn,
        _tx,
        f"SELECT {_TX_COLUMNS} FROM transactions t"
        " WHERE t.tenant_id = %s AND t.transaction_id = %s",
        (tenant_id, tenant_id, tenant_id, transaction_id),
    )


async def transaction_by_key(
    conn: Conn, tenant_id: str, idempotency_key: str
) -> TransactionRow | None:
    """The journal transaction a request with `idempotency_key` produced, or None."""
    return await fetch_one(
        conn,
        _tx,
        f"SELECT {_TX_COLUMNS} FROM transactions t"
        " WHERE t.tenant_id = %s AND t.idempotency_key = %s",
        (tenant_id, tenant_id, tenant_id, idempotency_key),
    )


async def rollback_of(conn: Conn, tenant_id: str, target: uuid.UUID) -> uuid.UUID | None:
    """The tenant's rollback transaction that reversed `target`, if any."""
    tx_id = await fetch_scalar(
        conn,
        "SELECT transaction_id FROM transactions WHERE tenant_id = %s"
        " AND target_transaction_id = %s AND kind = 'rollback'",
        (tenant_id, target),
    )
    if tx_id is None:
        return None
    assert isinstance(tx_id, uuid.UUID)
    return tx_id


async def list_transactions(
    conn: Conn,
    tenant_id: str,
    player_id: str,
    currency: str | None,
    before_seq: int | None,
    limit: int,
) -> list[TransactionRow]:
    """The player's transactions with seq < `before_seq`, newest first, at most `limit`."""
    return await fetch_all(
        conn,
        _tx,
        f"SELECT {_TX_COLUMNS} FROM transactions t"
        " WHERE t.tenant_id = %s AND t.player_id = %s"
        "   AND (%s::text IS NULL OR t.currency = %s::text)"
        "   AND (%s::bigint IS NULL OR t.seq < %s::bigint)"
        " ORDER BY t.seq DESC LIMIT %s",
        (
            tenant_id,
            tenant_id,
            tenant_id,
            player_id,
            currency,
            currency,
            before_seq,
            before_seq,
            limit,
        ),
    )
