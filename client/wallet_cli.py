"""`croupier wallet ...`: the WalletService commands of the ops CLI.

    balance   GetBalance (one currency with --currency)
    credit    Credit --amount DECIMAL --currency CODE
    debit     Debit --amount DECIMAL --currency CODE
    bet       AuthorizeBet --bet-id ID --amount DECIMAL --currency CODE [--hold-ttl SECONDS]
    settle    SettleBet --bet-id ID [--capture DECIMAL] [--win DECIMAL] [--currency CODE]
    cancel    CancelBet --bet-id ID [--reason TEXT]
    rollback  RollbackTransaction (--target-key KEY | --target-tx UUID)
    history   ListTransactions [--currency] [--page-size N] [--page-token T | --all]
    status    the player's status, or SetPlayerStatus with --set active|blocked|self_excluded
    tx        GetTransaction --id UUID
    limits    set | show: deposit, loss and wager limits (client/protection_cli.py)
    exclude   SetExclusion: self-exclusion, cooling-off, closure

Amounts are decimal strings converted exactly to minor units of `--currency` with
`server.money.parse_decimal`: "10.005" EUR is refused (TOO_MANY_DECIMALS), never rounded.
Write commands take `--idempotency-key` (a uuid4 when absent; a failure's JSON names the key
used, so the same command can be retried with it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from croupier.wallet.v1 import wallet_service_pb2 as pb
from google.protobuf.message import Message

from client import bonus_cli, protection_cli
from client.cli import channel_credentials, connection_options
from client.retry import RetryPolicy
from client.wallet import WalletClient
from client.wallet_calls import new_idempotency_key
from server.money import parse_decimal

Run = Callable[[WalletClient, argparse.Namespace], Message | dict[str, Any]]


def _minor(args: argparse.Namespace, name: str) -> tuple[int, str] | None:
    """The decimal option `name` as (minor_units, currency), or None when not given."""
    text: str | None = getattr(args, name)
    if text is None:
        return None
    money = parse_decimal(text, (args.currency or "").upper(), field=name)
    return money.minor_units, money.currency


def _amount(args: argparse.Namespace) -> tuple[int, str]:
    money = _minor(args, "amount")
    assert money is not None  # --amount is required where this is used
    return money


def _meta_pair(text: str) -> tuple[str, str]:
    """argparse type of `--meta KEY=VALUE`."""
    k, sep, v = text.partition("=")
    if not sep or not k:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return k, v


def _who(args: argparse.Namespace) -> dict[str, Any]:
    return {"tenant_id": args.tenant, "player_id": args.player}


def _write(args: argparse.Namespace) -> dict[str, Any]:
    """Who, the idempotency key, and the round reference of a write command."""
    fields = {**_who(args), "idempotency_key": args.idempotency_key}
    for name in ("bet_id", "round_id", "game_id"):
        if getattr(args, name, None):
            fields[name] = getattr(args, name)
    if hasattr(args, "meta"):
        fields["metadata"] = dict(args.meta)
    return fields


def _balance(w: WalletClient, a: argparse.Namespace) -> Message:
    return w.get_balance(**_who(a), currency=a.currency or "")


def _credit(w: WalletClient, a: argparse.Namespace) -> Message:
    return w.credit(**_write(a), amount=_amount(a))


def _debit(w: WalletClient, a: argparse.Namespace) -> Message:
    return w.debit(**_write(a), amount=_amount(a))


def _bet(w: WalletClient, a: argparse.Namespace) -> Message:
    return w.authorize_bet(**_write(a), amount=_amount(a), hold_ttl=a.hold_ttl)


def _settle(w: WalletClient, a: argparse.Namespace) -> Message:
    return w.settle_bet(**_write(a), capture=_minor(a, "capture"), win=_minor(a, "win"))


def _cancel(w: WalletClient, a: argparse.Namespace) -> Message:
    return w.cancel_bet(**_write(a), reason=a.reason)


def _rollback(w: WalletClient, a: argparse.Namespace) -> Message:
    return w.rollback_transaction(
        **_write(a), target_idempotency_key=a.target_key, target_transaction_id=a.target_tx
    )


def _history(w: WalletClient, a: argparse.Namespace) -> Message:
    out, token = pb.ListTransactionsResponse(), a.page_token
    while True:
        page = w.list_transactions(
            **_who(a), currency=a.currency or "", page_size=a.page_size, page_token=token
        )
        out.transactions.extend(page.transactions)
        token = page.next_page_token
        if not (a.all and token):
            out.next_page_token = token
            return out


def _status(w: WalletClient, a: argparse.Namespace) -> Message:
    if a.set is None:
        balance = w.get_balance(**_who(a))
        return pb.SetPlayerStatusResponse(status=balance.player_status)
    return w.set_player_status(**_write(a), status=a.set, reason=a.reason)


def _tx(w: WalletClient, a: argparse.Namespace) -> Message:
    return w.get_transaction(tenant_id=a.tenant, transaction_id=a.id)


def _runner(run: Run) -> Callable[[argparse.Namespace], Message | dict[str, Any]]:
    """Open a client to `--target`, generate the idempotency key if needed, run, close."""

    def go(args: argparse.Namespace) -> Message | dict[str, Any]:
        if hasattr(args, "idempotency_key"):
            args.idempotency_key = args.idempotency_key or new_idempotency_key()
        policy, credentials = RetryPolicy(timeout=args.timeout), channel_credentials(args)
        with WalletClient(
            args.target, retry=policy, api_key=args.api_key, credentials=credentials
        ) as wallet:
            return run(wallet, args)

    return go


def _command(
    commands: Any, name: str, run: Run, help_text: str, *, write: bool = False
) -> argparse.ArgumentParser:
    parents = [connection_options()]
    p: argparse.ArgumentParser = commands.add_parser(name, parents=parents, help=help_text)
    p.add_argument("--player", required=True, help="player id")
    if write:
        p.add_argument("--idempotency-key", default=None, help="idempotency key (default uuid4)")
    p.set_defaults(run=_runner(run))
    return p


def _meta_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--meta", action="append", default=[], type=_meta_pair, metavar="KEY=VALUE", help="metadata"
    )


def _round_options(p: argparse.ArgumentParser, *, bet_required: bool) -> None:
    p.add_argument("--bet-id", required=bet_required, default="", help="bet id")
    p.add_argument("--round-id", default="", help="game round id")
    p.add_argument("--game-id", default="", help="game id")
    _meta_option(p)


def _money_options(p: argparse.ArgumentParser, *names: str, required: bool) -> None:
    for name in names:
        p.add_argument(f"--{name}", required=required and name == "amount", help="decimal")
    p.add_argument("--currency", required=required, help="ISO 4217 code, e.g. EUR")


def register(groups: Any) -> None:
    """Add the `wallet` group and its commands to the `croupier` subparsers."""
    wallet = groups.add_parser("wallet", help="WalletService: balances, bets, transfers")
    commands = wallet.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _command(commands, "balance", _balance, "balances and status of a player")
    p.add_argument("--currency", default=None, help="only this currency")

    for name, run, help_text in (
        ("credit", _credit, "credit a player's available balance"),
        ("debit", _debit, "debit a player's available balance"),
    ):
        p = _command(commands, name, run, help_text, write=True)
        _money_options(p, "amount", required=True)
        _round_options(p, bet_required=False)

    p = _command(commands, "bet", _bet, "authorize a bet (place a hold)", write=True)
    _money_options(p, "amount", required=True)
    _round_options(p, bet_required=True)
    p.add_argument("--hold-ttl", type=float, default=None, help="hold lifetime in seconds")

    p = _command(commands, "settle", _settle, "settle a hold: capture and win", write=True)
    _money_options(p, "capture", "win", required=False)
    _round_options(p, bet_required=True)

    p = _command(commands, "cancel", _cancel, "cancel a bet (void its hold)", write=True)
    _round_options(p, bet_required=True)
    p.add_argument("--reason", default="", help="why (audit trail)")

    p = _command(commands, "rollback", _rollback, "roll back a debit or credit", write=True)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-key", default=None, help="idempotency key of the target")
    target.add_argument("--target-tx", default=None, help="transaction id of the target")
    _meta_option(p)

    p = _command(commands, "history", _history, "a player's transactions, newest first")
    p.add_argument("--currency", default=None, help="only this currency")
    p.add_argument("--page-size", type=int, default=0, help="default 50, at most 500")
    p.add_argument("--page-token", default="", help="next_page_token of the previous page")
    p.add_argument("--all", action="store_true", help="follow next_page_token to the end")

    p = _command(commands, "status", _status, "show or set a player's status", write=True)
    p.add_argument("--set", choices=("active", "blocked", "self_excluded"), default=None)
    p.add_argument("--reason", default="", help="why (audit trail)")

    p = commands.add_parser(
        "tx", parents=[connection_options()], help="one transaction with its postings"
    )
    p.add_argument("--id", required=True, help="transaction id (UUID)")
    p.set_defaults(run=_runner(_tx))
    protection_cli.register_wallet(commands)
    bonus_cli.register_wallet(commands)
