"""`croupier sportsbook ...`: the provider client, the dispute lookup and the replay kit.

    start-session  --user-id ID --currency CODE [--lang en]     the provider's iframe URL
                   (provider from --api-url/--api-version/--username and the password in the
                   variable named by --password-env; env CROUPIER_SB_API_URL, _API_VERSION,
                   _USERNAME, CROUPIER_SB_PASSWORD)
    show TX_ID     [--edge URL] [--integration NAME]            stored raw callbacks of TX_ID
                   and the wallet transactions they produced (admin token from
                   CROUPIER_EDGE_ADMIN_TOKEN)
    replay FILE    [--edge URL] [--prefix /sportsbook/dev] [--duplicate N] [--shuffle |
                   --window W] [--delay-ms MS] [--jitter-ms MS] [--concurrency C] [--seed S]
                   [--run-id ID] [--target HOST:PORT --tenant T]    send a recorded stream of
                   callbacks, signed with the secret in CROUPIER_SB_SECRET (or --secret-env),
                   then print the players' balances and check the file's expectations

Replay files are JSON lines (tests/edge/conformance/*.jsonl; docs/sportsbook.md):

    {"fund": {"user_id": "u1", "currency": "EUR", "amount": "100.00"}}     wallet Credit first
    {"endpoint": "transaction", "body": {...}, "expect": {"error": null}}  a callback (or "raw":
                                                                           "exact body text")
    {"expect_balance": {"user_id": "u1", "currency": "EUR", "amount": "97.50"}}

`--run-id` (default: random) prefixes every user_id, transaction_id and rollback_transaction_id
so a file can be replayed many times against one wallet (`--run-id ""` sends ids verbatim).
Per-message `expect`s are checked only when the order is kept (no --shuffle/--window); the
balances are checked always: duplicates must never change them (a provider
resends callbacks and replays event streams with duplicates). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from croupier.common.v1 import money_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1 import wallet_service_pb2_grpc as pb_grpc

from client.sportsbook import SportsbookClient, SportsbookError
from server.edge.signature import HEADER, sign
from server.money import Money, format_decimal, parse_decimal

DEFAULT_EDGE = "http://127.0.0.1:8080"
DEFAULT_TARGET = "127.0.0.1:50051"
_ID_FIELDS = ("user_id", "transaction_id", "rollback_transaction_id")


class ScenarioError(ValueError):
    """A replay file line is not one of the documented shapes."""


@dataclass
class Message:
    """One callback of a replay file."""

    line: int
    endpoint: str
    body: bytes
    expect: dict[str, Any] | None


@dataclass
class Scenario:
    """A parsed replay file."""

    funds: list[tuple[str, Money]] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    expected: list[tuple[str, Money]] = field(default_factory=list)

    def users(self) -> list[tuple[str, str]]:
        """(user_id, currency) pairs named by funds, expectations and bodies, in order."""
        seen: dict[tuple[str, str], None] = {}
        for user, m in (*self.funds, *self.expected):
            seen[(user, m.currency)] = None
        for msg in self.messages:
            try:
                doc = json.loads(msg.body)
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("user_id"), str):
                seen[(doc["user_id"], str(doc.get("currency", "")))] = None
        return [k for k in seen if k[1]]


def _prefixed(doc: dict[str, Any], run_id: str) -> dict[str, Any]:
    if not run_id:
        return doc
    return {
        k: f"{run_id}-{v}" if k in _ID_FIELDS and isinstance(v, str) else v for k, v in doc.items()
    }


def _money(spec: Any, line: int) -> tuple[str, Money]:
    if not isinstance(spec, dict):
        raise ScenarioError(f"line {line}: expected an object")
    try:
        return str(spec["user_id"]), parse_decimal(str(spec["amount"]), str(spec["currency"]))
    except (KeyError, ValueError) as exc:
        raise ScenarioError(f"line {line}: needs user_id, currency, amount ({exc})") from exc
    except Exception as exc:  # DomainError for a bad amount or currency
        raise ScenarioError(f"line {line}: {exc}") from exc


def load_scenario(path: Path, run_id: str = "") -> Scenario:
    """Parse a replay file, prefixing ids with `run_id`; raises ScenarioError."""
    sc = Scenario()
    for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"line {n}: not JSON ({exc.msg})") from exc
        if not isinstance(doc, dict):
            raise ScenarioError(f"line {n}: expected a JSON object")
        if "fund" in doc:
            user, money = _money(doc["fund"], n)
            sc.funds.append((f"{run_id}-{user}" if run_id else user, money))
        elif "expect_balance" in doc:
            user, money = _money(doc["expect_balance"], n)
            sc.expected.append((f"{run_id}-{user}" if run_id else user, money))
        elif "endpoint" in doc:
            endpoint = doc["endpoint"]
            if endpoint not in ("transaction", "transaction-rollback"):
                raise ScenarioError(f"line {n}: endpoint must be transaction[-rollback]")
            if "raw" in doc:
                body = str(doc["raw"]).encode()
            elif isinstance(doc.get("body"), dict):
                body = json.dumps(_prefixed(doc["body"], run_id)).encode()
            else:
                raise ScenarioError(f"line {n}: a callback needs body (object) or raw (text)")
            sc.messages.append(Message(n, endpoint, body, doc.get("expect")))
        else:
            raise ScenarioError(f"line {n}: expected fund, endpoint or expect_balance")
    return sc


def plan(
    messages: list[Message],
    *,
    duplicate: int = 0,
    shuffle: bool = False,
    window: int = 0,
    rng: random.Random,
) -> list[Message]:
    """The send order: each message `duplicate` extra times (right after it), then shuffled
    entirely (`shuffle`) or within consecutive windows of `window` messages."""
    out = [m for m in messages for _ in range(duplicate + 1)]
    if shuffle:
        rng.shuffle(out)
    elif window > 1:
        for start in range(0, len(out), window):
            part = out[start : start + window]
            rng.shuffle(part)
            out[start : start + window] = part
    return out


async def send_all(
    http: aiohttp.ClientSession,
    base: str,
    secret: bytes,
    order: list[Message],
    *,
    concurrency: int = 1,
    delay_ms: float = 0,
    jitter_ms: float = 0,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """POST each message signed (`X-Security-Hash`), `concurrency` at a time; the replies in
    send order."""
    sem = asyncio.Semaphore(max(1, concurrency))
    delays = [(delay_ms + rng.uniform(0, jitter_ms)) / 1000 for _ in order]

    async def one(i: int, msg: Message) -> dict[str, Any]:
        async with sem:
            if delays[i]:
                await asyncio.sleep(delays[i])
            headers = {"Content-Type": "application/json", HEADER: sign(msg.body, secret)}
            async with http.post(f"{base}/{msg.endpoint}", data=msg.body, headers=headers) as r:
                reply: dict[str, Any] = await r.json(content_type=None)
                return {"line": msg.line, "status": r.status, "reply": reply}

    if concurrency <= 1:
        return [await one(i, m) for i, m in enumerate(order)]
    return list(await asyncio.gather(*(one(i, m) for i, m in enumerate(order))))


def _credit(stub: Any, tenant: str, user: str, money: Money, key: str, timeout: float) -> None:
    stub.Credit(
        pb.CreditRequest(
            tenant_id=tenant,
            player_id=user,
            idempotency_key=key,
            amount=money_pb2.Money(minor_units=money.minor_units, currency=money.currency),
        ),
        timeout=timeout,
    )


def _balance(stub: Any, tenant: str, user: str, currency: str, timeout: float) -> Money | None:
    try:
        r = stub.GetBalance(
            pb.GetBalanceRequest(tenant_id=tenant, player_id=user, currency=currency),
            timeout=timeout,
        )
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    if not r.balances:
        return None
    return Money(r.balances[0].available.minor_units, currency)


def run_replay(args: argparse.Namespace) -> dict[str, Any]:
    """`croupier sportsbook replay` (module doc)."""
    secret = os.environ.get(args.secret_env, "")
    if not secret:
        raise SystemExit(f"croupier sportsbook replay: set {args.secret_env} to the secret")
    run_id = uuid.uuid4().hex[:8] if args.run_id is None else args.run_id
    try:
        sc = load_scenario(Path(args.file), run_id)
    except (OSError, ScenarioError) as exc:
        raise SystemExit(f"croupier sportsbook replay: {args.file}: {exc}") from exc
    rng = random.Random(args.seed)
    order = plan(
        sc.messages, duplicate=args.duplicate, shuffle=args.shuffle, window=args.window, rng=rng
    )
    tenant = args.tenant
    needs_wallet = bool(sc.funds or sc.expected)
    if needs_wallet and not tenant:
        raise SystemExit("croupier sportsbook replay: --tenant is needed to fund and check")
    with grpc.insecure_channel(args.target) as channel:
        stub = pb_grpc.WalletServiceStub(channel)
        for i, (user, money) in enumerate(sc.funds):
            _credit(stub, tenant, user, money, f"replay:{run_id}:fund:{i}", args.timeout)

        async def go() -> list[dict[str, Any]]:
            async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=args.timeout * 3)
            ) as http:
                base = args.edge.rstrip("/") + args.prefix
                return await send_all(
                    http,
                    base,
                    secret.encode(),
                    order,
                    concurrency=args.concurrency,
                    delay_ms=args.delay_ms,
                    jitter_ms=args.jitter_ms,
                    rng=rng,
                )

        replies = asyncio.run(go())
        failures: list[str] = []
        if not args.shuffle and args.window <= 1:
            by_line = {m.line: m.expect for m in sc.messages}
            for r in replies:
                want = by_line.get(r["line"])
                if want is not None and any(r["reply"].get(k) != v for k, v in want.items()):
                    failures.append(f"line {r['line']}: expected {want}, got {r['reply']}")
        balances: dict[str, dict[str, str | None]] = {}
        if tenant:
            for user, currency in sc.users():
                got = _balance(stub, tenant, user, currency, args.timeout)
                balances.setdefault(user, {})[currency] = format_decimal(got) if got else None
        for user, money in sc.expected:
            have = balances.get(user, {}).get(money.currency)
            if have != format_decimal(money):
                failures.append(
                    f"balance of {user}: expected {format_decimal(money)} {money.currency}, "
                    f"got {have}"
                )
    result = {
        "run_id": run_id,
        "sent": len(order),
        "replies": replies if args.verbose else None,
        "errors": _count_errors(replies),
        "balances": balances,
        "ok": not failures,
        "failures": failures,
    }
    if failures:
        print(json.dumps(result, indent=2))
        raise SystemExit(1)
    return result


def _count_errors(replies: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in replies:
        code = str(r["reply"].get("error"))
        counts[code] = counts.get(code, 0) + 1
    return counts


def run_show(args: argparse.Namespace) -> dict[str, Any]:
    """`croupier sportsbook show TX_ID`: the edge's dispute record of a provider transaction."""
    token = os.environ.get(args.admin_token_env, "")
    if not token:
        raise SystemExit(f"croupier sportsbook show: set {args.admin_token_env}")
    url = f"{args.edge.rstrip('/')}/admin/sportsbook/{args.integration}/transactions/"

    async def go() -> dict[str, Any]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=args.timeout)) as http,
            http.get(
                url + _quote(args.transaction_id), headers={"Authorization": f"Bearer {token}"}
            ) as resp,
        ):
            body: dict[str, Any] = await resp.json(content_type=None)
            if resp.status != 200:
                raise SystemExit(f"croupier sportsbook show: HTTP {resp.status} {body}")
            return body

    try:
        return asyncio.run(go())
    except aiohttp.ClientError as exc:
        raise SystemExit(f"croupier sportsbook show: {exc}") from exc


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def run_start_session(args: argparse.Namespace) -> dict[str, Any]:
    """`croupier sportsbook start-session`: the provider's iframe URL for a player."""
    password = os.environ.get(args.password_env, "")
    if not (args.api_url and args.username and password):
        raise SystemExit(
            "croupier sportsbook start-session: needs --api-url, --username and the password in "
            f"{args.password_env}"
        )

    async def go() -> str:
        async with SportsbookClient(
            args.api_url, args.api_version, args.username, password, timeout=args.timeout
        ) as sb:
            return await sb.start_session(args.user_id, args.currency, args.lang)

    try:
        return {"url": asyncio.run(go())}
    except SportsbookError as exc:
        raise SystemExit(f"croupier sportsbook start-session: {type(exc).__name__}: {exc}") from exc


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def register(subparsers: Any) -> None:
    """Add the `sportsbook` group to the `croupier` parser (client.cli convention)."""
    group = subparsers.add_parser("sportsbook", help="sportsbook provider, disputes, replay")
    cmds = group.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = cmds.add_parser("start-session", help="get the provider's iframe URL for a player")
    s.add_argument("--api-url", default=_env("CROUPIER_SB_API_URL"))
    s.add_argument("--api-version", default=_env("CROUPIER_SB_API_VERSION", "v1"))
    s.add_argument("--username", default=_env("CROUPIER_SB_USERNAME"))
    s.add_argument("--password-env", default="CROUPIER_SB_PASSWORD")
    s.add_argument("--user-id", required=True)
    s.add_argument("--currency", required=True)
    s.add_argument("--lang", default=None)
    s.add_argument("--timeout", type=float, default=10.0)
    s.set_defaults(run=run_start_session)

    w = cmds.add_parser("show", help="stored raw callbacks of a provider transaction_id")
    w.add_argument("transaction_id")
    w.add_argument("--edge", default=_env("CROUPIER_EDGE_URL", DEFAULT_EDGE))
    w.add_argument("--integration", default=_env("CROUPIER_SB_INTEGRATION", "dev"))
    w.add_argument("--admin-token-env", default="CROUPIER_EDGE_ADMIN_TOKEN")
    w.add_argument("--timeout", type=float, default=10.0)
    w.set_defaults(run=run_show)

    r = cmds.add_parser("replay", help="send a recorded callback stream to an edge")
    r.add_argument("file")
    r.add_argument("--edge", default=_env("CROUPIER_EDGE_URL", DEFAULT_EDGE))
    r.add_argument("--prefix", default=_env("CROUPIER_SB_PREFIX", "/sportsbook/dev"))
    r.add_argument("--secret-env", default="CROUPIER_SB_SECRET")
    r.add_argument("--duplicate", type=int, default=0, help="send each message N extra times")
    r.add_argument("--shuffle", action="store_true", help="send in a random order")
    r.add_argument("--window", type=int, default=0, help="shuffle within windows of W messages")
    r.add_argument("--delay-ms", type=float, default=0.0)
    r.add_argument("--jitter-ms", type=float, default=0.0)
    r.add_argument("--concurrency", type=int, default=1)
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--run-id", default=None, help='id prefix (default random; "" for none)')
    r.add_argument("--target", default=_env("CROUPIER_TARGET", DEFAULT_TARGET))
    r.add_argument("--tenant", default=_env("CROUPIER_TENANT"))
    r.add_argument("--timeout", type=float, default=10.0)
    r.add_argument("--verbose", action="store_true", help="include every reply")
    r.set_defaults(run=run_replay)
