"""RoundService over gRPC: validation here, rules in server.rounds.engine."""

from __future__ import annotations

from croupier.wallet.v1 import round_service_pb2 as pb
from croupier.wallet.v1 import round_service_pb2_grpc as pb_grpc

from server.errors import invalid
from server.idempotency import Scope, check_client_key
from server.money import Money, check_amount
from server.rounds import engine
from server.rounds.engine import RoundRow, StepRow
from server.transport.common import Ctx, money_out, request_key, timestamp, write
from server.transport.guard import guarded
from server.validation import check_id, check_metadata
from server.wallet.ledger import Wallet


def round_out(r: RoundRow, steps: list[StepRow] | None = None) -> pb.Round:
    """RoundRow (and its steps) -> Round."""
    out = pb.Round(
        round_id=r.round_id,
        player_id=r.player_id,
        game_id=r.game_id,
        state=pb.ROUND_STATE_FINAL if r.state == "final" else pb.ROUND_STATE_OPEN,
        bets=money_out(r.bets, r.currency),
        wins=money_out(r.wins, r.currency),
        pending=money_out(r.pending, r.currency),
        net=money_out(r.wins - r.bets, r.currency),
        finalised_by_sweeper=r.finalised_by == "sweeper",
        open_time=timestamp(r.opened_at),
    )
    if r.closed_at is not None:
        out.close_time.CopyFrom(timestamp(r.closed_at))
    for s in steps or ():
        out.steps.add(
            transaction_id=str(s.transaction_id),
            bet=money_out(s.bet, r.currency),
            win=money_out(s.win, r.currency),
            create_time=timestamp(s.created_at),
            final=s.final,
        )
    return out


class RoundServicer(pb_grpc.RoundServiceServicer):
    """croupier.wallet.v1.RoundService (see the proto)."""

    def __init__(self, wallet: Wallet) -> None:
        self.wallet = wallet

    @guarded
    async def PlayRoundStep(
        self, request: pb.PlayRoundStepRequest, context: Ctx
    ) -> pb.PlayRoundStepResponse:
        """One step of a round (server.rounds.engine.play_step)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        player = check_id(request.player_id, "player_id")
        key = check_client_key(check_id(request.idempotency_key, "idempotency_key"))
        round_id = check_id(request.round_id, "round_id")
        game = check_id(request.game_id, "game_id", required=False)
        currency = ""
        amounts = {}
        for name in ("bet", "win"):
            if request.HasField(name):
                m = getattr(request, name)
                zero_ok = name == "win" and request.final  # a bare final step: win of 0
                check_amount(Money(m.minor_units, m.currency), name, allow_zero=zero_ok)
                if currency and m.currency != currency:
                    raise invalid(
                        f"{name}.currency", "CURRENCY_MISMATCH", "bet and win share a currency"
                    )
                currency = m.currency
                amounts[name] = m.minor_units
        if not currency:
            raise invalid("win", "EMPTY_STEP", "a step has a bet or a win (zero on a final step)")
        step = engine.Step(
            tenant,
            player,
            key,
            round_id,
            game,
            currency,
            amounts.get("bet", 0),
            amounts.get("win", 0),
            request.final,
            check_metadata(dict(request.metadata)),
        )
        engine.check_step(step)

        def ok(r: engine.StepResult) -> pb.PlayRoundStepResponse:
            return pb.PlayRoundStepResponse(
                transaction_id=str(r.transaction_id),
                round=round_out(r.round),
                available=money_out(r.available, currency),
                pending=money_out(r.pending, currency),
            )

        return await write(
            context,
            self.wallet.execute,
            request_key("PlayRoundStep", tenant, key, request, scope=Scope.WALLET),
            lambda conn: engine.play_step(conn, step),
            ok,
            pb.PlayRoundStepResponse,
            currency=currency,
        )

    @guarded
    async def GetRound(self, request: pb.GetRoundRequest, context: Ctx) -> pb.GetRoundResponse:
        """A round with its steps."""
        tenant = check_id(request.tenant_id, "tenant_id")
        round_id = check_id(request.round_id, "round_id")
        view = await engine.get_round(self.wallet.pool, tenant, round_id)
        return pb.GetRoundResponse(round=round_out(view.round, view.steps))
