"""WalletService over gRPC: protobuf in, domain commands out, stored replies back.

Thin by design: validation and rules live in server.wallet; this module only converts.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from croupier.common.v1 import account_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1 import wallet_service_pb2_grpc as pb_grpc
from google.protobuf import message as _message

from server.errors import invalid
from server.idempotency import RequestKey, Scope
from server.money import check_amount, check_currency
from server.transport.bonus_servicer import BonusRpcs
from server.transport.bonus_servicer import balance_out as balance_out
from server.transport.common import (
    Ctx,
    money_in,
    money_out,
    parse_uuid,
    request_key,
    timestamp,
    write,
)
from server.transport.guard import guarded
from server.transport.paging import decode_int_token, encode_token, page_size
from server.transport.protection_servicer import ProtectionRpcs, transfer_reason
from server.validation import check_id, check_metadata, check_text
from server.wallet import model
from server.wallet.ledger import Wallet
from server.wallet.validation import check_hold_ttl

_STATUS_TO_PB = {
    model.PlayerStatus.ACTIVE: account_pb2.PLAYER_STATUS_ACTIVE,
    model.PlayerStatus.BLOCKED: account_pb2.PLAYER_STATUS_BLOCKED,
    model.PlayerStatus.SELF_EXCLUDED: account_pb2.PLAYER_STATUS_SELF_EXCLUDED,
}
_STATUS_FROM_PB = {v: k for k, v in _STATUS_TO_PB.items()}
_KIND_TO_PB = {
    "authorize": pb.TRANSACTION_KIND_AUTHORIZE,
    "settle": pb.TRANSACTION_KIND_SETTLE,
    "cancel": pb.TRANSACTION_KIND_CANCEL,
    "credit": pb.TRANSACTION_KIND_CREDIT,
    "debit": pb.TRANSACTION_KIND_DEBIT,
    "rollback": pb.TRANSACTION_KIND_ROLLBACK,
    "expire": pb.TRANSACTION_KIND_EXPIRE,
    "round": pb.TRANSACTION_KIND_ROUND,
    "bonus": pb.TRANSACTION_KIND_BONUS,
}
_ACCOUNT_NAMES = {
    ("player", "available"): "player/available",
    ("player", "held"): "player/held",
    ("player", "bonus"): "player/bonus",
    ("player", "locked"): "player/locked",
    ("house_bonus", "available"): "house/bonus",
    ("house_game", "available"): "house/game",
    ("house_cashier", "available"): "house/cashier",
}
TransferResponse = TypeVar("TransferResponse", pb.CreditResponse, pb.DebitResponse)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def _caller(request: Any) -> model.Caller:
    return model.Caller(
        check_id(request.tenant_id, "tenant_id"),
        check_id(request.player_id, "player_id"),
        check_id(request.idempotency_key, "idempotency_key"),
    )


def wallet_key(method: str, caller: model.Caller, request: _message.Message) -> RequestKey:
    """The idempotency identity of a WalletService write `method` (key space WALLET): what
    the same request over gRPC is replayed by."""
    return request_key(
        method, caller.tenant_id, caller.idempotency_key, request, scope=Scope.WALLET
    )


def transfer_command(request: pb.CreditRequest | pb.DebitRequest) -> model.Transfer:
    """A Credit or Debit request -> the domain Transfer (minor units). Raises INVALID_ARGUMENT
    naming the field (tenant_id, player_id, idempotency_key, bet_id, round_id, game_id,
    metadata, amount, reason)."""
    return model.Transfer(
        _caller(request),
        model.RoundRef(
            check_id(request.bet_id, "bet_id", required=False),
            check_id(request.round_id, "round_id", required=False),
            check_id(request.game_id, "game_id", required=False),
            check_metadata(dict(request.metadata)),
        ),
        check_amount(money_in(request.amount), "amount"),
        transfer_reason(request),
    )


def transaction_out(row: model.TransactionRow) -> pb.Transaction:
    """TransactionRow -> proto Transaction."""
    tx = pb.Transaction(
        transaction_id=str(row.transaction_id),
        tenant_id=row.tenant_id,
        player_id=row.player_id,
        kind=_KIND_TO_PB[row.kind],
        idempotency_key=row.idempotency_key or "",
        round_id=row.round_id,
        bet_id=row.bet_id,
        game_id=row.game_id,
        target_transaction_id=str(row.target_transaction_id or ""),
        create_time=timestamp(row.created_at),
        metadata=row.metadata,
        postings=[
            pb.Posting(account=_ACCOUNT_NAMES[(kind, bucket)], amount=money_out(amount, cur))
            for kind, bucket, cur, amount in row.postings
        ],
    )
    if row.currency:
        tx.amount.CopyFrom(money_out(row.amount, row.currency))
    return tx


class WalletServicer(ProtectionRpcs, BonusRpcs, pb_grpc.WalletServiceServicer):
    """croupier.wallet.v1.WalletService (see the proto for each RPC's contract)."""

    def __init__(self, wallet: Wallet) -> None:
        self.wallet = wallet

    @guarded
    async def GetBalance(
        self, request: pb.GetBalanceRequest, context: Ctx
    ) -> pb.GetBalanceResponse:
        """Balances per currency. NOT_FOUND PLAYER_NOT_FOUND."""
        tenant = check_id(request.tenant_id, "tenant_id")
        player = check_id(request.player_id, "player_id")
        currency = check_currency(request.currency, "currency") if request.currency else None
        status, views = await self.wallet.balances(tenant, player, currency)
        return pb.GetBalanceResponse(
            player_status=_STATUS_TO_PB[status], balances=[balance_out(v) for v in views]
        )

    @guarded
    async def AuthorizeBet(
        self, request: pb.AuthorizeBetRequest, context: Ctx
    ) -> pb.AuthorizeBetResponse:
        """Place a hold (see ledger.Wallet.authorize_bet)."""
        caller = _caller(request)
        cmd = model.AuthorizeBet(
            caller,
            model.RoundRef(
                check_id(request.bet_id, "bet_id"),
                check_id(request.round_id, "round_id", required=False),
                check_id(request.game_id, "game_id", required=False),
                check_metadata(dict(request.metadata)),
            ),
            check_amount(money_in(request.amount), "amount"),
            check_hold_ttl(request.hold_ttl.seconds, request.hold_ttl.nanos),
        )

        def ok(r: model.AuthorizeResult) -> pb.AuthorizeBetResponse:
            return pb.AuthorizeBetResponse(
                transaction_id=str(r.transaction_id),
                hold_id=str(r.hold_id),
                expire_time=timestamp(r.expire_time),
                balance=balance_out(r.balance),
            )

        return await write(
            context,
            self.wallet.execute,
            wallet_key("AuthorizeBet", caller, request),
            lambda conn: self.wallet.authorize_bet(conn, cmd),
            ok,
            pb.AuthorizeBetResponse,
            currency=cmd.amount.currency,
            player_id=caller.player_id,
        )

    @guarded
    async def SettleBet(self, request: pb.SettleBetRequest, context: Ctx) -> pb.SettleBetResponse:
        """Capture and credit the win (see ledger.Wallet.settle_bet)."""
        caller = _caller(request)
        capture = (
            check_amount(money_in(request.capture), "capture", allow_zero=True)
            if request.HasField("capture")
            else None
        )
        win = (
            check_amount(money_in(request.win), "win", allow_zero=True)
            if request.HasField("win")
            else None
        )
        cmd = model.SettleBet(
            caller,
            model.RoundRef(
                check_id(request.bet_id, "bet_id"),
                check_id(request.round_id, "round_id", required=False),
                check_id(request.game_id, "game_id", required=False),
                check_metadata(dict(request.metadata)),
            ),
            capture,
            win,
        )

        def ok(r: model.SettleResult) -> pb.SettleBetResponse:
            return pb.SettleBetResponse(
                transaction_id=str(r.transaction_id),
                captured=money_out(r.captured, r.currency),
                released=money_out(r.released, r.currency),
                win=money_out(r.win, r.currency),
                balance=balance_out(r.balance),
            )

        return await write(
            context,
            self.wallet.execute,
            wallet_key("SettleBet", caller, request),
            lambda conn: self.wallet.settle_bet(conn, cmd),
            ok,
            pb.SettleBetResponse,
            player_id=caller.player_id,
            currency=capture.currency if capture else (win.currency if win else None),
        )

    @guarded
    async def CancelBet(self, request: pb.CancelBetRequest, context: Ctx) -> pb.CancelBetResponse:
        """Void a hold, or record a tombstone (see ledger.Wallet.cancel_bet)."""
        caller = _caller(request)
        cmd = model.CancelBet(
            caller,
            model.RoundRef(
                check_id(request.bet_id, "bet_id"),
                check_id(request.round_id, "round_id", required=False),
                check_id(request.game_id, "game_id", required=False),
                check_metadata(dict(request.metadata)),
            ),
            check_text(request.reason, "reason"),
        )

        def ok(r: model.CancelResult) -> pb.CancelBetResponse:
            resp = pb.CancelBetResponse(transaction_id=str(r.transaction_id))
            if r.balance is not None:
                resp.released.CopyFrom(money_out(r.released, r.currency))
                resp.balance.CopyFrom(balance_out(r.balance))
            return resp

        return await write(
            context,
            self.wallet.execute,
            wallet_key("CancelBet", caller, request),
            lambda conn: self.wallet.cancel_bet(conn, cmd),
            ok,
            pb.CancelBetResponse,
        )

    async def _run_transfer(
        self,
        method: str,
        request: pb.CreditRequest | pb.DebitRequest,
        context: Ctx,
        response: type[TransferResponse],
    ) -> TransferResponse:
        """Credit and Debit share everything but the ledger operation and the response type."""
        cmd = transfer_command(request)
        operation = self.wallet.credit if method == "Credit" else self.wallet.debit

        def ok(r: model.TransferResult) -> TransferResponse:
            return response(transaction_id=str(r.transaction_id), balance=balance_out(r.balance))

        return await write(
            context,
            self.wallet.execute,
            wallet_key(method, cmd.caller, request),
            lambda conn: operation(conn, cmd),
            ok,
            response,
            currency=cmd.amount.currency,
            player_id=cmd.caller.player_id,
        )

    @guarded
    async def Credit(self, request: pb.CreditRequest, context: Ctx) -> pb.CreditResponse:
        """Credit a player (see ledger.Wallet.credit)."""
        return await self._run_transfer("Credit", request, context, pb.CreditResponse)

    @guarded
    async def Debit(self, request: pb.DebitRequest, context: Ctx) -> pb.DebitResponse:
        """Debit a player (see ledger.Wallet.debit)."""
        return await self._run_transfer("Debit", request, context, pb.DebitResponse)

    @guarded
    async def RollbackTransaction(
        self, request: pb.RollbackTransactionRequest, context: Ctx
    ) -> pb.RollbackTransactionResponse:
        """Reverse a debit or credit, or tombstone an unknown key (the rollback arrived first)."""
        caller = _caller(request)
        which = request.WhichOneof("target")
        target_key: str | None = None
        target_id: uuid.UUID | None = None
        if which == "target_idempotency_key":
            target_key = check_id(request.target_idempotency_key, "target_idempotency_key")
            if target_key == caller.idempotency_key:
                raise invalid(
                    "target_idempotency_key",
                    "TARGET_IS_SELF",
                    "target_idempotency_key must name another request, not this rollback",
                )
        elif which == "target_transaction_id":
            target_id = parse_uuid(request.target_transaction_id, "target_transaction_id")
        else:
            raise invalid(
                "target",
                "MISSING_FIELD",
                "one of target_idempotency_key or target_transaction_id is required",
            )
        cmd = model.Rollback(caller, target_key, target_id, check_metadata(dict(request.metadata)))

        def ok(r: model.RollbackResult) -> pb.RollbackTransactionResponse:
            resp = pb.RollbackTransactionResponse(
                transaction_id=str(r.transaction_id),
                outcome=r.outcome.value,  # type: ignore[arg-type]
                target_transaction_id=str(r.target_transaction_id or ""),
            )
            if r.balance is not None:
                resp.reversed.CopyFrom(money_out(r.reversed_amount, r.currency))
                resp.balance.CopyFrom(balance_out(r.balance))
            return resp

        return await write(
            context,
            self.wallet.execute,
            wallet_key("RollbackTransaction", caller, request),
            lambda conn: self.wallet.rollback(conn, cmd),
            ok,
            pb.RollbackTransactionResponse,
        )

    @guarded
    async def SetPlayerStatus(
        self, request: pb.SetPlayerStatusRequest, context: Ctx
    ) -> pb.SetPlayerStatusResponse:
        """Set active / blocked / self-excluded."""
        caller = _caller(request)
        status = _STATUS_FROM_PB.get(request.status)
        if status is None:
            raise invalid(
                "status", "INVALID_STATUS", "status must be ACTIVE, BLOCKED or SELF_EXCLUDED"
            )
        check_text(request.reason, "reason")

        def ok(r: model.StatusResult) -> pb.SetPlayerStatusResponse:
            return pb.SetPlayerStatusResponse(
                previous_status=_STATUS_TO_PB[r.previous] if r.previous else 0,  # type: ignore[arg-type]
                status=_STATUS_TO_PB[r.status],
            )

        return await write(
            context,
            self.wallet.execute,
            wallet_key("SetPlayerStatus", caller, request),
            lambda conn: self.wallet.set_player_status(conn, caller, status),
            ok,
            pb.SetPlayerStatusResponse,
        )

    @guarded
    async def GetTransaction(
        self, request: pb.GetTransactionRequest, context: Ctx
    ) -> pb.GetTransactionResponse:
        """One transaction with its postings. NOT_FOUND TRANSACTION_NOT_FOUND."""
        tenant = check_id(request.tenant_id, "tenant_id")
        tx_id = parse_uuid(request.transaction_id, "transaction_id")
        row = await self.wallet.transaction(tenant, tx_id)
        return pb.GetTransactionResponse(transaction=transaction_out(row))

    @guarded
    async def ListTransactions(
        self, request: pb.ListTransactionsRequest, context: Ctx
    ) -> pb.ListTransactionsResponse:
        """A page of a player's transactions, newest first (AIP-158)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        player = check_id(request.player_id, "player_id")
        currency = check_currency(request.currency, "currency") if request.currency else None
        size = page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        filters = f"{tenant}\0{player}\0{currency or ''}".encode()
        before = decode_int_token(request.page_token, filters)
        rows = await self.wallet.transactions(tenant, player, currency, before, size + 1)
        resp = pb.ListTransactionsResponse(transactions=[transaction_out(r) for r in rows[:size]])
        if len(rows) > size:
            resp.next_page_token = encode_token(rows[size - 1].seq, filters)
        return resp
