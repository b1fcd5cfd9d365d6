"""JackpotService over gRPC: protobuf in, jackpot domain calls out, stored replies back.

Thin by design: the rules live in server.jackpot; this module validates request shapes and
converts. Writes are idempotent through `Jackpots.execute`; a committed hit starts its payout
saga in the background (`PayoutSaga.kick`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, timedelta
from typing import Any

from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1 import jackpot_service_pb2_grpc as pb_grpc

from server.errors import DomainError, invalid
from server.idempotency import Scope, StoredReply
from server.jackpot import model
from server.jackpot.batching import ContributionBatcher
from server.jackpot.engine import Jackpots
from server.jackpot.payout import PayoutSaga
from server.jackpot.validation import check_jackpot_id, check_spec
from server.money import check_amount
from server.transport.common import (
    Ctx,
    abort_error,
    money_in,
    money_out,
    parse_uuid,
    reply,
    request_key,
    serialize,
    timestamp,
    write,
)
from server.transport.guard import guarded
from server.transport.paging import decode_int_token, decode_token, encode_token, page_size
from server.transport.review_servicer import ReviewRpcs
from server.transport.status import encode_error
from server.validation import check_id, check_text

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_DRAW_PAGE_SIZE = 5000

_KIND = {
    pb.POOL_KIND_FIXED: model.PoolKind.FIXED,
    pb.POOL_KIND_PROGRESSIVE: model.PoolKind.PROGRESSIVE,
}
_KIND_OUT = {v: k for k, v in _KIND.items()}
_SCOPE = {pb.JACKPOT_SCOPE_LOCAL: model.Scope.LOCAL, pb.JACKPOT_SCOPE_NETWORK: model.Scope.NETWORK}
_SCOPE_OUT = {v: k for k, v in _SCOPE.items()}
_TRIGGER = {
    pb.TRIGGER_KIND_RANDOM: model.TriggerKind.RANDOM,
    pb.TRIGGER_KIND_MUST_DROP: model.TriggerKind.MUST_DROP,
    pb.TRIGGER_KIND_DEADLINE: model.TriggerKind.DEADLINE,
    pb.TRIGGER_KIND_EXTERNAL: model.TriggerKind.EXTERNAL,
}
_TRIGGER_OUT = {v: k for k, v in _TRIGGER.items()}
_OVERFLOW = {
    pb.OVERFLOW_POLICY_UNSPECIFIED: model.OverflowPolicy.CARRY_TO_RESEED,
    pb.OVERFLOW_POLICY_CARRY_TO_RESEED: model.OverflowPolicy.CARRY_TO_RESEED,
    pb.OVERFLOW_POLICY_STOP_GROWING: model.OverflowPolicy.STOP_GROWING,
}
_OVERFLOW_OUT = {
    model.OverflowPolicy.CARRY_TO_RESEED: pb.OVERFLOW_POLICY_CARRY_TO_RESEED,
    model.OverflowPolicy.STOP_GROWING: pb.OVERFLOW_POLICY_STOP_GROWING,
}
_STATE = {
    pb.PAYOUT_STATE_REQUESTED: model.PayoutState.REQUESTED,
    pb.PAYOUT_STATE_CREDITED: model.PayoutState.CREDITED,
    pb.PAYOUT_STATE_FAILED: model.PayoutState.FAILED,
    pb.PAYOUT_STATE_REVIEW: model.PayoutState.REVIEW,
}
_STATE_OUT = {v: k for k, v in _STATE.items()}


def _enum(value: int, table: dict[Any, Any], field: str, what: str) -> Any:
    if value not in table:
        raise invalid(field, "MISSING_FIELD" if value == 0 else "INVALID_ENUM", f"{field}: {what}")
    return table[value]


def tier_in(c: pb.TierConfig, field: str) -> model.TierConfig:
    """Proto TierConfig -> domain (enums checked; rules in server.jackpot.validation)."""
    return model.TierConfig(
        tier=c.tier,
        kind=_enum(c.kind, _KIND, f"{field}.kind", "FIXED or PROGRESSIVE is required"),
        seed_minor=c.seed_minor_units,
        contribution_rate_ppm=c.contribution_rate_ppm,
        reseed_split_ppm=c.reseed_split_ppm,
        cap_minor=c.cap_minor_units,
        overflow_policy=_enum(c.overflow_policy, _OVERFLOW, f"{field}.overflow_policy", "unknown"),
        min_bet_minor=c.min_bet_minor_units,
        trigger=_enum(c.trigger, _TRIGGER, f"{field}.trigger", "a trigger kind is required"),
        hit_probability_ppb=c.hit_probability_ppb,
        reference_bet_minor=c.reference_bet_minor_units,
        must_drop_min_minor=c.must_drop_min_minor_units,
        must_drop_max_minor=c.must_drop_max_minor_units,
        deadline_min_seconds=c.deadline_min_seconds,
        deadline_max_seconds=c.deadline_max_seconds,
        shards=c.shards or 1,
    )


def tier_out(c: model.TierConfig) -> pb.TierConfig:
    """Domain TierConfig -> proto."""
    return pb.TierConfig(
        tier=c.tier,
        kind=_KIND_OUT[c.kind],
        seed_minor_units=c.seed_minor,
        contribution_rate_ppm=c.contribution_rate_ppm,
        reseed_split_ppm=c.reseed_split_ppm,
        cap_minor_units=c.cap_minor,
        overflow_policy=_OVERFLOW_OUT[c.overflow_policy],
        min_bet_minor_units=c.min_bet_minor,
        trigger=_TRIGGER_OUT[c.trigger],
        hit_probability_ppb=c.hit_probability_ppb,
        reference_bet_minor_units=c.reference_bet_minor,
        must_drop_min_minor_units=c.must_drop_min_minor,
        must_drop_max_minor_units=c.must_drop_max_minor,
        deadline_min_seconds=c.deadline_min_seconds,
        deadline_max_seconds=c.deadline_max_seconds,
        shards=c.shards,
    )


def pool_out(s: model.PoolState) -> pb.Pool:
    """Published pool state (no seed, no drop point, no hidden reseed)."""
    p = pb.Pool(
        pool_id=s.pool_id,
        jackpot_id=s.jackpot.jackpot_id,
        tier=s.config.tier,
        config=tier_out(s.config),
        config_version=s.config_version,
        amount=money_out(s.amount, s.jackpot.currency),
        cycle=s.cycle,
        seed_commitment=s.seed_commitment.hex(),
        cycle_start_time=timestamp(s.cycle_started_at),
        contribution_count=s.contribution_count,
        region=s.jackpot.region,
        scope=_SCOPE_OUT[s.jackpot.scope],
    )
    if s.config.trigger is model.TriggerKind.DEADLINE:
        by = s.cycle_started_at + timedelta(seconds=s.config.deadline_max_seconds)
        p.must_drop_by_time.CopyFrom(timestamp(by))
    return p


def win_out(w: model.WinRow) -> pb.Win:
    """Domain win -> proto."""
    out = pb.Win(
        win_id=str(w.win_id),
        tenant_id=w.tenant_id,
        player_id=w.player_id,
        pool_id=w.pool_id,
        jackpot_id=w.jackpot_id,
        tier=w.tier,
        cycle=w.cycle,
        round_id=w.round_id,
        game_id=w.game_id,
        reason=w.reason,
        amount=money_out(w.amount, w.currency),
        payout_state=_STATE_OUT[w.payout_state],
        failure_reason=w.failure_reason,
        attempts=w.attempts,
        wallet_transaction_id=str(w.wallet_transaction_id or ""),
        hit_time=timestamp(w.hit_at),
    )
    if w.credited_at is not None:
        out.credit_time.CopyFrom(timestamp(w.credited_at))
    return out


def _pool_id(value: str, field: str = "pool_id") -> str:
    return check_id(value, field)


class JackpotServicer(ReviewRpcs, pb_grpc.JackpotServiceServicer):
    """croupier.jackpot.v1.JackpotService (see the proto for each RPC's contract)."""

    def __init__(
        self, jackpots: Jackpots, saga: PayoutSaga, batcher: ContributionBatcher | None = None
    ) -> None:
        self.jackpots = jackpots
        self.saga = saga
        self.batcher = batcher or ContributionBatcher(jackpots, jackpots.db, max_batch=1)

    @guarded
    async def CreateJackpot(
        self, request: pb.CreateJackpotRequest, context: Ctx
    ) -> pb.CreateJackpotResponse:
        """Create a jackpot and its pools (see Jackpots.create_jackpot)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        idem = check_id(request.idempotency_key, "idempotency_key")
        scope = _enum(request.scope, _SCOPE, "scope", "LOCAL or NETWORK is required")
        tenants = tuple(request.tenant_ids) or ((tenant,) if scope is model.Scope.LOCAL else ())
        spec = check_spec(
            model.JackpotSpec(
                jackpot_id=request.jackpot_id,
                owner_tenant_id=tenant,
                display_name=request.display_name,
                currency=request.currency,
                scope=scope,
                tenant_ids=tenants,
                region=request.region,
                game_ids=tuple(request.game_ids),
                tiers=tuple(tier_in(t, f"tiers[{i}]") for i, t in enumerate(request.tiers)),
                conversion_rates=dict(request.conversion_rates_micro),
            )
        )

        def ok(r: tuple[model.JackpotRow, list[model.PoolState]]) -> pb.CreateJackpotResponse:
            j, pools = r
            return pb.CreateJackpotResponse(
                jackpot=pb.Jackpot(
                    jackpot_id=j.jackpot_id,
                    owner_tenant_id=j.owner_tenant_id,
                    display_name=j.display_name,
                    currency=j.currency,
                    scope=_SCOPE_OUT[j.scope],
                    tenant_ids=list(j.tenant_ids),
                    region=j.region,
                    game_ids=list(j.game_ids),
                    pools=[pool_out(p) for p in pools],
                    create_time=timestamp(j.created_at),
                    conversion_rates_micro=j.conversion_rates,
                )
            )

        return await write(
            context,
            self.jackpots.execute,
            request_key("CreateJackpot", tenant, idem, request, scope=Scope.JACKPOT),
            lambda conn: self.jackpots.create_jackpot(conn, spec),
            ok,
            pb.CreateJackpotResponse,
        )

    @guarded
    async def UpdatePool(
        self, request: pb.UpdatePoolRequest, context: Ctx
    ) -> pb.UpdatePoolResponse:
        """Replace a pool's configuration (see Jackpots.update_pool)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        idem = check_id(request.idempotency_key, "idempotency_key")
        pool_id = _pool_id(request.pool_id)
        if not request.HasField("config"):
            raise invalid("config", "MISSING_FIELD", "config is required")
        cfg = tier_in(request.config, "config")
        reason = check_text(request.reason, "reason")
        return await write(
            context,
            self.jackpots.execute,
            request_key("UpdatePool", tenant, idem, request, scope=Scope.JACKPOT),
            lambda conn: self.jackpots.update_pool(
                conn, tenant, pool_id, cfg, request.expected_config_version, reason
            ),
            lambda s: pb.UpdatePoolResponse(pool=pool_out(s)),
            pb.UpdatePoolResponse,
        )

    @guarded
    async def GetPool(self, request: pb.GetPoolRequest, context: Ctx) -> pb.GetPoolResponse:
        """One pool with its exact amount and seed commitment."""
        tenant = check_id(request.tenant_id, "tenant_id")
        state = await self.jackpots.get_pool(tenant, _pool_id(request.pool_id))
        return pb.GetPoolResponse(pool=pool_out(state))

    @guarded
    async def ListPools(self, request: pb.ListPoolsRequest, context: Ctx) -> pb.ListPoolsResponse:
        """Pools the tenant sees, by pool_id (AIP-158)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        size = page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        filters = f"{tenant}\0{request.region}\0{request.game_id}\0{request.jackpot_id}"
        after = decode_token(request.page_token, filters) or ""
        rows = await self.jackpots.list_pools(
            tenant,
            region=check_text(request.region, "region", 64),
            game_id=check_id(request.game_id, "game_id", required=False),
            jackpot_id=check_id(request.jackpot_id, "jackpot_id", required=False),
            after=after,
            limit=size + 1,
        )
        resp = pb.ListPoolsResponse(pools=[pool_out(s) for s in rows[:size]])
        if len(rows) > size:
            resp.next_page_token = encode_token(rows[size - 1].pool_id, filters)
        return resp

    async def WatchPools(
        self, request: pb.WatchPoolsRequest, context: Ctx
    ) -> AsyncIterator[pb.WatchPoolsResponse]:
        """Every watched pool once, then each pool whose amount or cycle changed, polled at
        most once per `min_interval_ms` (default 1000, at least 200)."""
        try:
            tenant = check_id(request.tenant_id, "tenant_id")
            ids = [_pool_id(p, f"pool_ids[{i}]") for i, p in enumerate(request.pool_ids)]
            if request.min_interval_ms < 0:
                raise invalid("min_interval_ms", "INVALID_INTERVAL", "must not be negative")
        except DomainError as err:
            await abort_error(context, err)
        interval = max(request.min_interval_ms or 1000, 200) / 1000
        seen: dict[str, tuple[int, int, int]] = {}
        while True:
            states = await self.jackpots.list_pools(tenant, pool_ids=ids or None)
            for s in states:
                mark = (s.cycle, s.amount, s.config_version)
                if seen.get(s.pool_id) != mark:
                    seen[s.pool_id] = mark
                    yield pb.WatchPoolsResponse(pool=pool_out(s))
            await asyncio.sleep(interval)

    @guarded
    async def Contribute(
        self, request: pb.ContributeRequest, context: Ctx
    ) -> pb.ContributeResponse:
        """Record a bet's contribution to each tier and draw (see Jackpots.contribute)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        idem = check_id(request.idempotency_key, "idempotency_key")
        cmd = model.Contribute(
            tenant_id=tenant,
            idempotency_key=idem,
            jackpot_id=check_jackpot_id(request.jackpot_id),
            player_id=check_id(request.player_id, "player_id"),
            game_id=check_id(request.game_id, "game_id", required=False),
            round_id=check_id(request.round_id, "round_id"),
            bet=check_amount(money_in(request.bet), "bet"),
            contribution=(
                check_amount(money_in(request.contribution), "contribution", allow_zero=True)
                if request.HasField("contribution")
                else None
            ),
            occurred_at=(
                request.occurred_time.ToDatetime(tzinfo=UTC)
                if request.HasField("occurred_time")
                else None
            ),
        )

        def ok(r: model.ContributeResult) -> pb.ContributeResponse:
            def m(v: int) -> Any:
                return money_out(v, r.currency)

            return pb.ContributeResponse(
                tiers=[
                    pb.TierContribution(
                        pool_id=t.pool_id,
                        tier=t.tier,
                        cycle=t.cycle,
                        qualified=t.qualified,
                        not_qualified_reason=t.not_qualified_reason,
                        contribution=m(t.contribution),
                        reseed=m(t.reseed),
                        overflow=m(t.overflow),
                        not_collected=m(t.not_collected),
                        pool_amount=m(t.pool_amount),
                        hit=t.hit,
                        win_id=str(t.win_id or ""),
                    )
                    for t in r.tiers
                ]
            )

        result: list[model.ContributeResult] = []

        async def run(conn: Any) -> model.ContributeResult:
            r = await self.jackpots.contribute(conn, cmd)
            result.append(r)
            return r

        key = request_key("Contribute", tenant, idem, request, scope=Scope.JACKPOT)

        # group commit when the contribution takes the fast path; else one transaction
        def alone() -> Awaitable[StoredReply]:
            return self.jackpots.execute(key, run, encode_ok, encode_error)

        def encode_ok(r: model.ContributeResult) -> bytes:
            return serialize(ok(r))

        stored = await self.batcher.submit(key, cmd, encode_ok, alone)
        if stored is None:
            stored = await alone()
        resp = await reply(context, stored, pb.ContributeResponse)
        if not stored.replayed and result:
            for win_id in result[-1].wins:
                self.saga.kick(win_id)
        return resp

    @guarded
    async def CheckEligibility(
        self, request: pb.CheckEligibilityRequest, context: Ctx
    ) -> pb.CheckEligibilityResponse:
        """Whether a bet qualifies per tier, and its chance."""
        tenant = check_id(request.tenant_id, "tenant_id")
        bet = check_amount(money_in(request.bet), "bet")
        rows = await self.jackpots.eligibility(
            tenant,
            check_jackpot_id(request.jackpot_id),
            check_id(request.game_id, "game_id", required=False),
            bet,
        )
        return pb.CheckEligibilityResponse(
            tiers=[
                pb.TierEligibility(
                    pool_id=e.pool_id,
                    tier=e.tier,
                    eligible=e.eligible,
                    reason=e.reason,
                    hit_probability_ppb=e.hit_probability_ppb,
                )
                for e in rows
            ]
        )

    @guarded
    async def Trigger(self, request: pb.TriggerRequest, context: Ctx) -> pb.TriggerResponse:
        """Record an RGS-reported hit (see Jackpots.trigger)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        idem = check_id(request.idempotency_key, "idempotency_key")
        sel = request.selector
        cmd = model.TriggerCmd(
            tenant_id=tenant,
            idempotency_key=idem,
            pool_id=_pool_id(request.pool_id),
            reason=check_text(request.reason, "reason", 64) or "external",
            player_id=check_id(sel.player_id, "selector.player_id"),
            round_id=check_id(sel.round_id, "selector.round_id", required=False),
            game_id=check_id(sel.game_id, "selector.game_id", required=False),
        )
        stored = await self.jackpots.execute(
            request_key("Trigger", tenant, idem, request, scope=Scope.JACKPOT),
            lambda conn: self.jackpots.trigger(conn, cmd),
            lambda w: serialize(pb.TriggerResponse(win=win_out(w))),
            encode_error,
        )
        resp = await reply(context, stored, pb.TriggerResponse)
        if not stored.replayed:
            self.saga.kick(uuid.UUID(resp.win.win_id))
        return resp

    @guarded
    async def Payout(self, request: pb.PayoutRequest, context: Ctx) -> pb.PayoutResponse:
        """Start or retry a win's payout; returns its status (see PayoutSaga.pay)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        win = await self.saga.pay(parse_uuid(request.win_id, "win_id"), tenant)
        return pb.PayoutResponse(win=win_out(win))

    @guarded
    async def GetWin(self, request: pb.GetWinRequest, context: Ctx) -> pb.GetWinResponse:
        """One win."""
        tenant = check_id(request.tenant_id, "tenant_id")
        win = await self.jackpots.get_win(tenant, parse_uuid(request.win_id, "win_id"))
        return pb.GetWinResponse(win=win_out(win))

    @guarded
    async def ListWins(self, request: pb.ListWinsRequest, context: Ctx) -> pb.ListWinsResponse:
        """The tenant's wins, newest first (AIP-158)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        size = page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        state = None
        if request.payout_state:
            state = _enum(request.payout_state, _STATE, "payout_state", "unknown state")
        filters = f"{tenant}\0{request.pool_id}\0{request.player_id}\0{request.payout_state}"
        before = decode_int_token(request.page_token, filters)
        rows = await self.jackpots.list_wins(
            tenant,
            check_id(request.pool_id, "pool_id", required=False),
            check_id(request.player_id, "player_id", required=False),
            state,
            before,
            size + 1,
        )
        resp = pb.ListWinsResponse(wins=[win_out(w) for w in rows[:size]])
        if len(rows) > size:
            resp.next_page_token = encode_token(str(rows[size - 1].seq), filters)
        return resp

    @guarded
    async def GetCycle(self, request: pb.GetCycleRequest, context: Ctx) -> pb.GetCycleResponse:
        """A cycle's fairness material (the seed only after the cycle ended)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        if request.cycle < 1:
            raise invalid("cycle", "INVALID_CYCLE", "cycle must be 1 or more")
        c = await self.jackpots.get_cycle(tenant, _pool_id(request.pool_id), request.cycle)
        out = pb.Cycle(
            pool_id=c.pool_id,
            cycle=c.cycle,
            seed_commitment=c.seed_commitment.hex(),
            server_seed=c.server_seed.hex() if c.server_seed else "",
            start_time=timestamp(c.started_at),
            start_amount=money_out(c.start_amount, c.currency),
            must_drop_min_minor_units=c.must_drop_min_minor,
            must_drop_max_minor_units=c.must_drop_max_minor,
            deadline_min_seconds=c.deadline_min_seconds,
            deadline_max_seconds=c.deadline_max_seconds,
            win_id=str(c.win_id or ""),
        )
        if c.ended_at is not None:
            out.end_time.CopyFrom(timestamp(c.ended_at))
        if c.must_drop_point is not None:
            out.must_drop_point.CopyFrom(money_out(c.must_drop_point, c.currency))
        if c.drop_at is not None:
            out.drop_time.CopyFrom(timestamp(c.drop_at))
        return pb.GetCycleResponse(cycle=out)

    @guarded
    async def ListContributions(
        self, request: pb.ListContributionsRequest, context: Ctx
    ) -> pb.ListContributionsResponse:
        """A cycle's draws in order (AIP-158)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        pool_id = _pool_id(request.pool_id)
        size = page_size(request.page_size, 500, MAX_DRAW_PAGE_SIZE)
        filters = f"{tenant}\0{pool_id}\0{request.cycle}"
        after = decode_int_token(request.page_token, filters) or 0
        state = await self.jackpots.get_pool(tenant, pool_id)
        cur = state.jackpot.currency
        rows = await self.jackpots.list_contributions(
            tenant, pool_id, request.cycle, after, size + 1
        )
        resp = pb.ListContributionsResponse(
            contributions=[
                pb.Contribution(
                    sequence=r.seq,
                    tenant_id=r.tenant_id,
                    pool_id=r.pool_id,
                    cycle=r.cycle,
                    round_id=r.round_id,
                    salt=r.salt,
                    bet=money_out(r.bet, r.bet_currency or cur),
                    contribution=money_out(r.to_pool, cur),
                    reseed=money_out(r.to_reseed, cur),
                    hit_probability_ppb=r.hit_probability_ppb,
                    hit=r.hit,
                    win_id=str(r.win_id or ""),
                    create_time=timestamp(r.created_at),
                )
                for r in rows[:size]
            ]
        )
        if len(rows) > size:
            resp.next_page_token = encode_token(str(rows[size - 1].seq), filters)
        return resp

    @guarded
    async def GetAuditLog(
        self, request: pb.GetAuditLogRequest, context: Ctx
    ) -> pb.GetAuditLogResponse:
        """The tenant's audit chain in order (AIP-158)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        size = page_size(request.page_size, 500, MAX_DRAW_PAGE_SIZE)
        after = decode_int_token(request.page_token, tenant) or 0
        rows = await self.jackpots.audit_log(tenant, after, size + 1)
        resp = pb.GetAuditLogResponse(
            records=[
                pb.AuditRecord(
                    sequence=r.sequence,
                    tenant_id=r.tenant_id,
                    action=r.action,
                    subject=r.subject,
                    payload_json=r.payload_json,
                    time_unix_micros=r.time_unix_micros,
                    prev_hash=r.prev_hash.hex(),
                    hash=r.hash.hex(),
                )
                for r in rows[:size]
            ]
        )
        if len(rows) > size:
            resp.next_page_token = encode_token(str(rows[size - 1].sequence), tenant)
        return resp

    @guarded
    async def Reconcile(self, request: pb.ReconcileRequest, context: Ctx) -> pb.ReconcileResponse:
        """seed + carried + contributions - wins = amount, per owned pool."""
        tenant = check_id(request.tenant_id, "tenant_id")
        rows = await self.jackpots.reconcile(
            tenant, check_id(request.pool_id, "pool_id", required=False)
        )
        return pb.ReconcileResponse(
            pools=[
                pb.PoolReconciliation(
                    pool_id=r.pool_id,
                    cycle=r.cycle,
                    seed_minor_units=r.seed_minor,
                    carried_minor_units=r.carried,
                    contributions_minor_units=r.contributions,
                    expected_minor_units=r.expected,
                    amount_minor_units=r.amount,
                    drift_minor_units=r.drift,
                    wins_drift_minor_units=r.wins_drift,
                    wins_minor_units=r.wins,
                    win_count=r.win_count,
                    hidden_minor_units=r.hidden,
                    hidden_drift_minor_units=r.hidden_drift,
                    fraction_drift=r.fraction_drift,
                    currency=r.currency,
                )
                for r in rows
            ],
            balanced=all(r.balanced for r in rows),
        )
