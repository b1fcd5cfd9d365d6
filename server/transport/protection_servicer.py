"""The player-protection RPCs of WalletService (limits, the tenant's settings): protobuf in,
domain commands out (server.wallet.protection), stored replies back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from croupier.wallet.v1 import wallet_service_pb2 as pb
from google.protobuf import duration_pb2

from server.errors import invalid
from server.idempotency import Scope
from server.jackpot import review
from server.money import Money as DomainMoney
from server.money import check_amount, check_currency
from server.transport.common import Ctx, money_out, request_key, timestamp, write
from server.transport.guard import guarded
from server.validation import check_id, check_text
from server.wallet import model
from server.wallet.protection import (
    MAX_COOLING_OFF_SECONDS,
    Exclusion,
    LimitKind,
    LimitView,
    SetExclusion,
    SetLimit,
    SetLimitResult,
    Settings,
    Window,
    check_time_zone,
)

if TYPE_CHECKING:
    from server.wallet.ledger import Wallet

_CREDIT_REASONS: dict[int, str] = {
    pb.CREDIT_REASON_UNSPECIFIED: "",
    pb.CREDIT_REASON_DEPOSIT: "deposit",
    pb.CREDIT_REASON_WIN: "win",
    pb.CREDIT_REASON_REFUND: "refund",
    pb.CREDIT_REASON_BONUS: "bonus",
    pb.CREDIT_REASON_PAYOUT: "payout",
}
_DEBIT_REASONS: dict[int, str] = {
    pb.DEBIT_REASON_UNSPECIFIED: "",
    pb.DEBIT_REASON_STAKE: "stake",
    pb.DEBIT_REASON_WITHDRAWAL: "withdrawal",
}
KIND_FROM_PB = {
    pb.LIMIT_KIND_DEPOSIT: LimitKind.DEPOSIT,
    pb.LIMIT_KIND_LOSS: LimitKind.LOSS,
    pb.LIMIT_KIND_WAGER: LimitKind.WAGER,
}
KIND_TO_PB = {v: k for k, v in KIND_FROM_PB.items()}
WINDOW_FROM_PB = {
    pb.LIMIT_WINDOW_DAY: Window.DAY,
    pb.LIMIT_WINDOW_WEEK: Window.WEEK,
    pb.LIMIT_WINDOW_MONTH: Window.MONTH,
}
WINDOW_TO_PB = {v: k for k, v in WINDOW_FROM_PB.items()}


def transfer_reason(request: pb.CreditRequest | pb.DebitRequest) -> str:
    """The domain reason of a Credit or Debit; INVALID_ARGUMENT `INVALID_REASON` (field reason)
    for a value outside the enum."""
    table: dict[int, str] = (
        _CREDIT_REASONS if isinstance(request, pb.CreditRequest) else _DEBIT_REASONS
    )
    value = int(request.reason)
    if value not in table:
        raise invalid("reason", "INVALID_REASON", f"reason {value} is not a known value")
    return table[value]


def limit_out(v: LimitView) -> pb.Limit:
    """LimitView -> proto Limit."""
    out = pb.Limit(
        kind=KIND_TO_PB[v.kind],
        window=WINDOW_TO_PB[v.window],
        currency=v.currency,
        pending_removal=v.pending_removal,
        used=money_out(v.used, v.currency),
        window_start_time=timestamp(v.window_start),
        window_end_time=timestamp(v.window_end),
    )
    if v.amount is not None:
        out.amount.CopyFrom(money_out(v.amount, v.currency))
    if v.remaining is not None:
        out.remaining.CopyFrom(money_out(v.remaining, v.currency))
    if v.pending_amount is not None:
        out.pending_amount.CopyFrom(money_out(v.pending_amount, v.currency))
    if v.pending_time is not None:
        out.pending_time.CopyFrom(timestamp(v.pending_time))
    return out


def _kind(value: int, field: str = "kind") -> LimitKind:
    if value not in KIND_FROM_PB:
        raise invalid(field, "INVALID_LIMIT_KIND", f"{field} must be deposit, loss or wager")
    return KIND_FROM_PB[value]  # type: ignore[index]


def _window(value: int, field: str = "window") -> Window:
    if value not in WINDOW_FROM_PB:
        raise invalid(field, "INVALID_LIMIT_WINDOW", f"{field} must be day, week or month")
    return WINDOW_FROM_PB[value]  # type: ignore[index]


_EXCLUSION_FROM_PB = {
    pb.EXCLUSION_KIND_SELF_EXCLUSION: "self_exclusion",
    pb.EXCLUSION_KIND_COOLING_OFF: "cooling_off",
    pb.EXCLUSION_KIND_CLOSURE: "closed",
}
_EXCLUSION_TO_PB = {v: k for k, v in _EXCLUSION_FROM_PB.items()}


def exclusion_out(e: Exclusion) -> pb.Exclusion:
    """Exclusion row -> proto Exclusion."""
    out = pb.Exclusion(kind=_EXCLUSION_TO_PB[e.kind], active=e.active, reason=e.reason)
    if e.until is not None:
        out.end_time.CopyFrom(timestamp(e.until))
    return out


_HOLD_FROM_PB = {
    pb.COMPLIANCE_HOLD_SANCTIONS: "sanctions",
    pb.COMPLIANCE_HOLD_GEO_BLOCK: "geo_block",
    pb.COMPLIANCE_HOLD_WITHDRAWAL_LIMIT: "withdrawal_limit",
    pb.COMPLIANCE_HOLD_AML: "aml",
}
_HOLD_TO_PB = {v: k for k, v in _HOLD_FROM_PB.items()}


def _settings_out(s: Settings) -> pb.ProtectionSettings:
    return pb.ProtectionSettings(
        time_zone=s.time_zone,
        limit_cooling_off=duration_pb2.Duration(seconds=s.limit_cooling_off_seconds),
        aml_review_thresholds=s.aml_review_thresholds,
    )


class ProtectionRpcs:
    """SetLimit, GetLimit, ListLimits, Set/GetProtectionSettings (see the proto)."""

    wallet: Wallet

    @guarded
    async def SetLimit(self, request: pb.SetLimitRequest, context: Ctx) -> pb.SetLimitResponse:
        """Set or remove a limit (see protection.Protection.set_limit)."""
        caller = model.Caller(
            check_id(request.tenant_id, "tenant_id"),
            check_id(request.player_id, "player_id"),
            check_id(request.idempotency_key, "idempotency_key"),
        )
        kind, window = _kind(request.kind), _window(request.window)
        amount: int | None
        if request.remove:
            currency = check_currency(request.amount.currency, "amount.currency")
            if request.amount.minor_units != 0:
                raise invalid(
                    "amount.minor_units",
                    "INVALID_AMOUNT",
                    "amount.minor_units must be 0 when remove is set",
                )
            amount = None
        else:
            m = check_amount(
                DomainMoney(request.amount.minor_units, request.amount.currency), "amount"
            )
            currency, amount = m.currency, m.minor_units
        cmd = SetLimit(caller, kind, window, currency, amount, check_text(request.reason, "reason"))

        def ok(r: SetLimitResult) -> pb.SetLimitResponse:
            return pb.SetLimitResponse(limit=limit_out(r.limit), applied=r.applied)

        return await write(
            context,
            self.wallet.execute,
            request_key(
                "SetLimit", caller.tenant_id, caller.idempotency_key, request, scope=Scope.WALLET
            ),
            lambda conn: self.wallet.protection.set_limit(conn, cmd),
            ok,
            pb.SetLimitResponse,
        )

    @guarded
    async def GetLimit(self, request: pb.GetLimitRequest, context: Ctx) -> pb.GetLimitResponse:
        """One limit with usage. NOT_FOUND PLAYER_NOT_FOUND, LIMIT_NOT_FOUND."""
        view = await self.wallet.protection.limit(
            check_id(request.tenant_id, "tenant_id"),
            check_id(request.player_id, "player_id"),
            check_currency(request.currency, "currency"),
            _kind(request.kind),
            _window(request.window),
        )
        return pb.GetLimitResponse(limit=limit_out(view))

    @guarded
    async def ListLimits(
        self, request: pb.ListLimitsRequest, context: Ctx
    ) -> pb.ListLimitsResponse:
        """The player's limits with usage. NOT_FOUND PLAYER_NOT_FOUND."""
        views = await self.wallet.protection.limits(
            check_id(request.tenant_id, "tenant_id"),
            check_id(request.player_id, "player_id"),
            check_currency(request.currency, "currency") if request.currency else None,
        )
        return pb.ListLimitsResponse(limits=[limit_out(v) for v in views])

    @guarded
    async def SetProtectionSettings(
        self, request: pb.SetProtectionSettingsRequest, context: Ctx
    ) -> pb.SetProtectionSettingsResponse:
        """Replace the tenant's time zone and cooling-off period."""
        tenant = check_id(request.tenant_id, "tenant_id")
        idem = check_id(request.idempotency_key, "idempotency_key")
        tz = check_time_zone(request.settings.time_zone, "settings.time_zone")
        cooling = request.settings.limit_cooling_off
        if (
            not request.settings.HasField("limit_cooling_off")
            or cooling.nanos != 0
            or not 0 <= cooling.seconds <= MAX_COOLING_OFF_SECONDS
        ):
            raise invalid(
                "settings.limit_cooling_off",
                "INVALID_DURATION",
                "settings.limit_cooling_off must be whole seconds from 0 to 366 days",
            )
        thresholds: dict[str, int] = {}
        for currency, threshold in sorted(request.settings.aml_review_thresholds.items()):
            field = f"settings.aml_review_thresholds[{currency[:16]}]"
            check_currency(currency, field)
            if threshold <= 0:
                raise invalid(field, "INVALID_AMOUNT", f"{field} must be more than zero")
            thresholds[currency] = threshold
        settings = Settings(tz, cooling.seconds, thresholds)

        def ok(s: Settings) -> pb.SetProtectionSettingsResponse:
            return pb.SetProtectionSettingsResponse(settings=_settings_out(s))

        return await write(
            context,
            self.wallet.execute,
            request_key("SetProtectionSettings", tenant, idem, request, scope=Scope.WALLET),
            lambda conn: self.wallet.protection.set_settings(conn, tenant, settings),
            ok,
            pb.SetProtectionSettingsResponse,
        )

    @guarded
    async def GetProtectionSettings(
        self, request: pb.GetProtectionSettingsRequest, context: Ctx
    ) -> pb.GetProtectionSettingsResponse:
        """The tenant's settings (defaults when never set)."""
        s = await self.wallet.protection.settings(check_id(request.tenant_id, "tenant_id"))
        return pb.GetProtectionSettingsResponse(settings=_settings_out(s))

    @guarded
    async def SetExclusion(
        self, request: pb.SetExclusionRequest, context: Ctx
    ) -> pb.SetExclusionResponse:
        """Exclude the player (see protection.Protection.set_exclusion)."""
        caller = model.Caller(
            check_id(request.tenant_id, "tenant_id"),
            check_id(request.player_id, "player_id"),
            check_id(request.idempotency_key, "idempotency_key"),
        )
        if request.kind not in _EXCLUSION_FROM_PB:
            raise invalid(
                "kind",
                "INVALID_EXCLUSION_KIND",
                "kind must be self-exclusion, cooling-off or closure",
            )
        kind = _EXCLUSION_FROM_PB[request.kind]
        until = request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None
        if kind == "cooling_off" and until is None:
            raise invalid("end_time", "MISSING_FIELD", "a cooling-off needs end_time")
        if kind == "closed" and until is not None:
            raise invalid("end_time", "END_TIME_NOT_ALLOWED", "a closure has no end_time")
        if until is not None and until <= datetime.now(UTC):
            raise invalid("end_time", "END_TIME_IN_PAST", "end_time must be in the future")
        cmd = SetExclusion(caller, kind, until, check_text(request.reason, "reason"))

        def ok(e: Exclusion) -> pb.SetExclusionResponse:
            return pb.SetExclusionResponse(exclusion=exclusion_out(e))

        return await write(
            context,
            self.wallet.execute,
            request_key(
                "SetExclusion",
                caller.tenant_id,
                caller.idempotency_key,
                request,
                scope=Scope.WALLET,
            ),
            lambda conn: self.wallet.protection.set_exclusion(conn, cmd),
            ok,
            pb.SetExclusionResponse,
        )

    @guarded
    async def GetExclusion(
        self, request: pb.GetExclusionRequest, context: Ctx
    ) -> pb.GetExclusionResponse:
        """The player's exclusion. NOT_FOUND PLAYER_NOT_FOUND, EXCLUSION_NOT_FOUND."""
        e = await self.wallet.protection.exclusion(
            check_id(request.tenant_id, "tenant_id"), check_id(request.player_id, "player_id")
        )
        return pb.GetExclusionResponse(exclusion=exclusion_out(e))

    @guarded
    async def SetComplianceHold(
        self, request: pb.SetComplianceHoldRequest, context: Ctx
    ) -> pb.SetComplianceHoldResponse:
        """Raise or lift a payout hold (see server.jackpot.review.set_hold)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        player = check_id(request.player_id, "player_id")
        idem = check_id(request.idempotency_key, "idempotency_key")
        if request.hold not in _HOLD_FROM_PB:
            raise invalid("hold", "INVALID_HOLD", "hold must be sanctions, geo-block, ...")
        hold = _HOLD_FROM_PB[request.hold]
        reason = check_text(request.reason, "reason")
        active = request.active

        def ok(holds: list[str]) -> pb.SetComplianceHoldResponse:
            return pb.SetComplianceHoldResponse(holds=[_HOLD_TO_PB[h] for h in holds])

        return await write(
            context,
            self.wallet.execute,
            request_key("SetComplianceHold", tenant, idem, request, scope=Scope.WALLET),
            lambda conn: review.set_hold(conn, tenant, player, hold, active, reason, idem),
            ok,
            pb.SetComplianceHoldResponse,
        )
