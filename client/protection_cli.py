"""Player-protection commands of the ops CLI (docs/responsible-gaming.md, docs/aml-review.md).

    croupier wallet limits set --player P --kind deposit|loss|wager --window day|week|month
                               --amount DECIMAL --currency CODE [--remove] [--reason TEXT]
    croupier wallet limits show --player P [--currency CODE]
    croupier wallet exclude --player P --kind self-exclusion|cooling-off|closure
                            [--until RFC3339 | --days N] [--reason TEXT]
    croupier admin review list [--state open|approved|rejected]
    croupier admin review approve REVIEW_ID [--reason TEXT]
    croupier admin review reject REVIEW_ID --reason TEXT

Amounts are decimal strings converted exactly to minor units (server.money.parse_decimal).
Write commands take `--idempotency-key` (a uuid4 when absent). Output and errors as every
`croupier` command (client/cli.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as pb
from google.protobuf.message import Message

from client.cli import channel_credentials, connection_options
from client.errors import from_rpc_error
from client.retry import RetryPolicy
from client.wallet import WalletClient
from client.wallet_calls import Call, new_idempotency_key
from server.errors import invalid
from server.money import parse_decimal

_KINDS = {
    "deposit": pb.LIMIT_KIND_DEPOSIT,
    "loss": pb.LIMIT_KIND_LOSS,
    "wager": pb.LIMIT_KIND_WAGER,
}
_WINDOWS = {
    "day": pb.LIMIT_WINDOW_DAY,
    "week": pb.LIMIT_WINDOW_WEEK,
    "month": pb.LIMIT_WINDOW_MONTH,
}
_EXCLUSIONS = {
    "self-exclusion": pb.EXCLUSION_KIND_SELF_EXCLUSION,
    "cooling-off": pb.EXCLUSION_KIND_COOLING_OFF,
    "closure": pb.EXCLUSION_KIND_CLOSURE,
}
_REVIEW_STATES = {
    "open": jpb.REVIEW_STATE_OPEN,
    "approved": jpb.REVIEW_STATE_APPROVED,
    "rejected": jpb.REVIEW_STATE_REJECTED,
}

WalletRun = Callable[[WalletClient, argparse.Namespace], Message]


def _wallet(run: WalletRun) -> Callable[[argparse.Namespace], Message]:
    def go(args: argparse.Namespace) -> Message:
        if hasattr(args, "idempotency_key"):
            args.idempotency_key = args.idempotency_key or new_idempotency_key()
        with WalletClient(
            args.target,
            retry=RetryPolicy(timeout=args.timeout),
            api_key=args.api_key,
            credentials=channel_credentials(args),
        ) as wallet:
            return run(wallet, args)

    return go


def _set_limit(w: WalletClient, a: argparse.Namespace) -> Message:
    if a.remove:
        money = pb.SetLimitRequest().amount
        money.currency = (a.currency or "").upper()
    else:
        if a.amount is None:
            raise invalid("--amount", "MISSING_FIELD", "--amount is required unless --remove")
        m = parse_decimal(a.amount, (a.currency or "").upper(), field="amount")
        money = pb.SetLimitRequest().amount
        money.minor_units, money.currency = m.minor_units, m.currency
    request = pb.SetLimitRequest(
        tenant_id=a.tenant,
        player_id=a.player,
        idempotency_key=a.idempotency_key,
        kind=_KINDS[a.kind],
        window=_WINDOWS[a.window],
        amount=money,
        remove=a.remove,
        reason=a.reason,
    )
    return w.invoke(Call("SetLimit", request, pb.SetLimitResponse, write=True))


def _show_limits(w: WalletClient, a: argparse.Namespace) -> Message:
    request = pb.ListLimitsRequest(
        tenant_id=a.tenant, player_id=a.player, currency=(a.currency or "").upper()
    )
    return w.invoke(Call("ListLimits", request, pb.ListLimitsResponse, write=False))


def _exclude(w: WalletClient, a: argparse.Namespace) -> Message:
    request = pb.SetExclusionRequest(
        tenant_id=a.tenant,
        player_id=a.player,
        idempotency_key=a.idempotency_key,
        kind=_EXCLUSIONS[a.kind],
        reason=a.reason,
    )
    until: datetime | None = None
    if a.until:
        try:
            until = datetime.fromisoformat(a.until)
        except ValueError:
            raise invalid("--until", "INVALID_TIME", "--until must be an RFC 3339 time") from None
        if until.tzinfo is None:
            raise invalid("--until", "INVALID_TIME", "--until needs a UTC offset")
    elif a.days is not None:
        until = datetime.now(UTC) + timedelta(days=a.days)
    if until is not None:
        request.end_time.FromDatetime(until.astimezone(UTC))
    return w.invoke(Call("SetExclusion", request, pb.SetExclusionResponse, write=True))


def _player_command(
    commands: Any, name: str, run: WalletRun, help_text: str, *, write: bool
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        name, parents=[connection_options()], help=help_text
    )
    p.add_argument("--player", required=True, help="player id")
    if write:
        p.add_argument("--idempotency-key", default=None, help="idempotency key (default uuid4)")
    p.set_defaults(run=_wallet(run))
    return p


def register_wallet(commands: Any) -> None:
    """Add `limits set|show` and `exclude` to the `croupier wallet` commands."""
    limits = commands.add_parser("limits", help="deposit, loss and wager limits")
    actions = limits.add_subparsers(dest="limits_action", metavar="ACTION", required=True)
    p = _player_command(
        actions, "set", _set_limit, "set, lower, raise or remove a limit", write=True
    )
    p.add_argument("--kind", required=True, choices=tuple(_KINDS))
    p.add_argument("--window", required=True, choices=tuple(_WINDOWS))
    p.add_argument("--amount", default=None, help="decimal, e.g. 100.00")
    p.add_argument("--currency", required=True, help="ISO 4217 code, e.g. EUR")
    p.add_argument("--remove", action="store_true", help="remove the limit (after cooling-off)")
    p.add_argument("--reason", default="", help="why (audit trail)")
    p = _player_command(actions, "show", _show_limits, "the player's limits and usage", write=False)
    p.add_argument("--currency", default=None, help="only this currency")

    p = _player_command(commands, "exclude", _exclude, "exclude the player", write=True)
    p.add_argument("--kind", required=True, choices=tuple(_EXCLUSIONS))
    end = p.add_mutually_exclusive_group()
    end.add_argument("--until", default=None, help="end time, RFC 3339 with offset")
    end.add_argument("--days", type=float, default=None, help="end in N days")
    p.add_argument("--reason", default="", help="why (audit trail)")


JackpotRun = Callable[[JackpotServiceStub, argparse.Namespace, Any], Message]


def _jackpot(run: JackpotRun) -> Callable[[argparse.Namespace], Message]:
    def go(args: argparse.Namespace) -> Message:
        if hasattr(args, "idempotency_key"):
            args.idempotency_key = args.idempotency_key or new_idempotency_key()
        credentials = channel_credentials(args)
        channel = (
            grpc.secure_channel(args.target, credentials)
            if credentials is not None
            else grpc.insecure_channel(args.target)
        )
        metadata = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else None
        with channel:
            try:
                return run(JackpotServiceStub(channel), args, metadata)
            except grpc.RpcError as exc:
                raise from_rpc_error(exc) from exc

    return go


def _list_reviews(stub: JackpotServiceStub, a: argparse.Namespace, md: Any) -> Message:
    request = jpb.ListReviewsRequest(tenant_id=a.tenant, page_size=a.page_size)
    if a.state:
        request.state = _REVIEW_STATES[a.state]
    response: Message = stub.ListReviews(request, timeout=a.timeout, metadata=md)
    return response


def _approve(stub: JackpotServiceStub, a: argparse.Namespace, md: Any) -> Message:
    request = jpb.ApproveReviewRequest(
        tenant_id=a.tenant,
        idempotency_key=a.idempotency_key,
        review_id=a.review_id,
        reason=a.reason,
    )
    response: Message = stub.ApproveReview(request, timeout=a.timeout, metadata=md)
    return response


def _reject(stub: JackpotServiceStub, a: argparse.Namespace, md: Any) -> Message:
    request = jpb.RejectReviewRequest(
        tenant_id=a.tenant,
        idempotency_key=a.idempotency_key,
        review_id=a.review_id,
        reason=a.reason,
    )
    response: Message = stub.RejectReview(request, timeout=a.timeout, metadata=md)
    return response


def register_admin(groups: Any) -> None:
    """Add `review list|approve|reject` to the `croupier admin` groups."""
    review = groups.add_parser("review", help="AML reviews of payouts")
    actions = review.add_subparsers(dest="review_action", metavar="ACTION", required=True)
    p = actions.add_parser("list", parents=[connection_options()], help="the tenant's reviews")
    p.add_argument("--state", choices=tuple(_REVIEW_STATES), default=None)
    p.add_argument("--page-size", type=int, default=0, help="default 50, at most 500")
    p.set_defaults(run=_jackpot(_list_reviews))
    for name, run, help_text, reason_required in (
        ("approve", _approve, "approve: the payout is credited once", False),
        ("reject", _reject, "reject: the payout stays owed", True),
    ):
        p = actions.add_parser(name, parents=[connection_options()], help=help_text)
        p.add_argument("review_id", help="review id (UUID)")
        p.add_argument("--reason", required=reason_required, default="", help="why (audit)")
        p.add_argument("--idempotency-key", default=None, help="idempotency key (default uuid4)")
        p.set_defaults(run=_jackpot(run))
