"""The bonus RPCs of WalletService (grant, get, list, forfeit, the tenant's settings):
protobuf in, domain commands out (server.wallet.bonus, server.wallet.ledger), stored replies
back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from croupier.wallet.v1 import wallet_service_pb2 as pb
from google.protobuf import message as _message

from server.errors import invalid
from server.idempotency import RequestKey, Scope
from server.money import INT64_MAX, Money, check_amount
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
from server.validation import check_id, check_metadata, check_text
from server.wallet import model
from server.wallet.bonus import (
    MAX_MULTIPLIER,
    PPM,
    BonusState,
    ForfeitBonus,
    GrantBonus,
    RequirementBase,
    SetBonusSettings,
    Weights,
    WithdrawalPolicy,
    check_spend_order,
)
from server.wallet.model import BonusRow, SettingsRow

if TYPE_CHECKING:
    from server.wallet.ledger import Wallet

_STATE_TO_PB = {
    BonusState.ACTIVE: pb.BONUS_STATE_ACTIVE,
    BonusState.COMPLETED: pb.BONUS_STATE_COMPLETED,
    BonusState.FORFEITED: pb.BONUS_STATE_FORFEITED,
    BonusState.EXPIRED: pb.BONUS_STATE_EXPIRED,
}
_STATE_FROM_PB = {v: k for k, v in _STATE_TO_PB.items()}
_BASE_TO_PB = {
    RequirementBase.BONUS: pb.WAGERING_BASE_BONUS,
    RequirementBase.DEPOSIT_PLUS_BONUS: pb.WAGERING_BASE_DEPOSIT_PLUS_BONUS,
}
_BASE_FROM_PB = {v: k for k, v in _BASE_TO_PB.items()}
_SOURCE_TO_PB = {
    "cash": pb.SPEND_SOURCE_CASH,
    "locked": pb.SPEND_SOURCE_LOCKED,
    "bonus": pb.SPEND_SOURCE_BONUS,
}
_SOURCE_FROM_PB = {v: k for k, v in _SOURCE_TO_PB.items()}
_POLICY_TO_PB = {
    WithdrawalPolicy.REFUSE: pb.WITHDRAWAL_POLICY_REFUSE,
    WithdrawalPolicy.FORFEIT: pb.WITHDRAWAL_POLICY_FORFEIT,
}
_POLICY_FROM_PB = {v: k for k, v in _POLICY_TO_PB.items()}
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# The furthest a bonus may expire (a bound that keeps every timestamp representable).
MAX_BONUS_DAYS = 36600


def balance_out(view: model.BalanceView) -> pb.Balance:
    """BalanceView -> proto Balance: `available` is cash + bonus + locked."""
    c = view.currency
    return pb.Balance(
        available=money_out(view.spendable, c),
        held=money_out(view.held, c),
        cash=money_out(view.available, c),
        bonus=money_out(view.bonus, c),
        locked=money_out(view.locked, c),
    )


def bonus_out(b: BonusRow) -> pb.Bonus:
    """BonusRow -> proto Bonus."""
    c = b.currency
    out = pb.Bonus(
        bonus_id=str(b.bonus_id),
        tenant_id=b.tenant_id,
        player_id=b.player_id,
        state=_STATE_TO_PB[BonusState(b.state)],
        amount=money_out(b.amount, c),
        locked_deposit=money_out(b.locked_deposit, c),
        wagering_multiplier=b.multiplier,
        wagering_base=_BASE_TO_PB[RequirementBase(b.base)],
        requirement=money_out(b.requirement, c),
        wagered=money_out(b.wagered_ppm // PPM, c),
        wagered_ppm=str(b.wagered_ppm),
        default_weight_ppm=b.default_weight_ppm,
        game_weights_ppm=b.game_weights,
        category_weights_ppm=b.category_weights,
        expire_time=timestamp(b.expires_at),
        converted=money_out(b.converted, c),
        removed=money_out(b.removed, c),
        released=money_out(b.released, c),
        reason=b.reason,
        create_time=timestamp(b.created_at),
    )
    if b.max_bet is not None:
        out.max_bet.CopyFrom(money_out(b.max_bet, c))
    if b.max_conversion is not None:
        out.max_conversion.CopyFrom(money_out(b.max_conversion, c))
    if b.closed_at is not None:
        out.close_time.CopyFrom(timestamp(b.closed_at))
    return out


def _settings_out(s: SettingsRow) -> pb.BonusSettings:
    return pb.BonusSettings(
        spend_order=[_SOURCE_TO_PB[x] for x in s.spend_order],
        withdrawal_policy=_POLICY_TO_PB[WithdrawalPolicy(s.withdrawal_policy)],
    )


def _weight(value: int, field: str) -> int:
    if not 0 <= value <= PPM:
        raise invalid(
            field, "INVALID_WEIGHT", f"{field} must be 0 to 1000000 ppm (0% to 100%), got {value}"
        )
    return value


def _weights(request: pb.GrantBonusRequest) -> Weights:
    default = (
        _weight(request.default_weight_ppm, "default_weight_ppm")
        if request.HasField("default_weight_ppm")
        else PPM
    )
    tables: list[dict[str, int]] = []
    for name, source in (
        ("game_weights_ppm", request.game_weights_ppm),
        ("category_weights_ppm", request.category_weights_ppm),
    ):
        table: dict[str, int] = {}
        for key in sorted(source):
            field = f"{name}[{key[:64]}]"
            table[check_id(key, field)] = _weight(source[key], field)
        tables.append(table)
    return Weights(default, tables[0], tables[1])


def _same_currency(m: Money, currency: str, field: str) -> Money:
    if m.currency != currency:
        raise invalid(
            f"{field}.currency",
            "CURRENCY_MISMATCH",
            f"{field}.currency must be the bonus amount's currency {currency}",
        )
    return m


def grant_command(request: pb.GrantBonusRequest) -> GrantBonus:
    """A GrantBonus request -> the domain command. Raises INVALID_ARGUMENT naming the field
    (amount, locked_deposit, wagering_multiplier, wagering_base, the weights, max_bet,
    max_conversion, expire_time, metadata)."""
    caller = model.Caller(
        check_id(request.tenant_id, "tenant_id"),
        check_id(request.player_id, "player_id"),
        check_id(request.idempotency_key, "idempotency_key"),
    )
    amount = check_amount(money_in(request.amount), "amount")
    currency = amount.currency
    locked = 0
    if request.HasField("locked_deposit"):
        m = check_amount(money_in(request.locked_deposit), "locked_deposit", allow_zero=True)
        locked = _same_currency(m, currency, "locked_deposit").minor_units
    multiplier = request.wagering_multiplier
    if not 0 <= multiplier <= MAX_MULTIPLIER:
        raise invalid(
            "wagering_multiplier",
            "INVALID_MULTIPLIER",
            f"wagering_multiplier must be 0 to {MAX_MULTIPLIER}, got {multiplier}",
        )
    base = _BASE_FROM_PB.get(request.wagering_base)
    if base is None:
        raise invalid(
            "wagering_base", "MISSING_FIELD", "wagering_base must be BONUS or DEPOSIT_PLUS_BONUS"
        )
    weights = _weights(request)
    max_bet = None
    if request.HasField("max_bet"):
        max_bet = _same_currency(
            check_amount(money_in(request.max_bet), "max_bet"), currency, "max_bet"
        ).minor_units
    max_conversion = None
    if request.HasField("max_conversion"):
        max_conversion = _same_currency(
            check_amount(money_in(request.max_conversion), "max_conversion", allow_zero=True),
            currency,
            "max_conversion",
        ).minor_units
    now = datetime.now(UTC)
    ts = request.expire_time
    if not request.HasField("expire_time"):
        raise invalid("expire_time", "MISSING_FIELD", "expire_time is required")
    if (
        ts.nanos < 0
        or ts.nanos > 999_999_999
        or not (now.timestamp() < ts.seconds <= (now + timedelta(days=MAX_BONUS_DAYS)).timestamp())
    ):
        raise invalid(
            "expire_time",
            "INVALID_EXPIRE_TIME",
            f"expire_time must be in the future and within {MAX_BONUS_DAYS} days",
        )
    cmd = GrantBonus(
        caller,
        currency,
        amount.minor_units,
        locked,
        multiplier,
        base,
        weights,
        max_bet,
        max_conversion,
        ts.ToDatetime(tzinfo=UTC),
        check_metadata(dict(request.metadata)),
    )
    if cmd.requirement_minor > INT64_MAX:
        raise invalid(
            "wagering_multiplier",
            "AMOUNT_OVERFLOW",
            "the requirement (multiplier x base) would pass 2^63-1 minor units",
        )
    return cmd


def _key(method: str, tenant: str, idem: str, request: _message.Message) -> RequestKey:
    return request_key(method, tenant, idem, request, scope=Scope.WALLET)


class BonusRpcs:
    """GrantBonus, GetBonus, ListBonuses, ForfeitBonus, Set/GetBonusSettings (mixed into
    WalletServicer; see the proto for each RPC's contract)."""

    wallet: Wallet

    @guarded
    async def GrantBonus(
        self, request: pb.GrantBonusRequest, context: Ctx
    ) -> pb.GrantBonusResponse:
        """Grant a bonus (see ledger.Wallet.grant_bonus)."""
        cmd = grant_command(request)
        c = cmd.caller

        def ok(r: model.BonusResult) -> pb.GrantBonusResponse:
            return pb.GrantBonusResponse(
                bonus=bonus_out(r.bonus),
                transaction_id=str(r.transaction_id),
                balance=balance_out(r.balance),
            )

        return await write(
            context,
            self.wallet.execute,
            _key("GrantBonus", c.tenant_id, c.idempotency_key, request),
            lambda conn: self.wallet.grant_bonus(conn, cmd),
            ok,
            pb.GrantBonusResponse,
            currency=cmd.currency,
            player_id=c.player_id,
        )

    @guarded
    async def GetBonus(self, request: pb.GetBonusRequest, context: Ctx) -> pb.GetBonusResponse:
        """One bonus. NOT_FOUND BONUS_NOT_FOUND."""
        tenant = check_id(request.tenant_id, "tenant_id")
        player = check_id(request.player_id, "player_id")
        bonus_id = parse_uuid(request.bonus_id, "bonus_id")
        return pb.GetBonusResponse(
            bonus=bonus_out(await self.wallet.bonus(tenant, player, bonus_id))
        )

    @guarded
    async def ListBonuses(
        self, request: pb.ListBonusesRequest, context: Ctx
    ) -> pb.ListBonusesResponse:
        """A page of a player's bonuses, newest first (AIP-158)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        player = check_id(request.player_id, "player_id")
        state = None
        if request.state != pb.BONUS_STATE_UNSPECIFIED:
            state = _STATE_FROM_PB.get(request.state)
            if state is None:
                raise invalid("state", "INVALID_STATE", f"state {request.state} is not known")
        size = page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        filters = f"{tenant}\0{player}\0{request.state}".encode()
        before_us = decode_int_token(request.page_token, filters)
        before = (
            None
            if before_us is None
            else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=before_us)
        )
        rows = await self.wallet.bonuses(tenant, player, state, before, size + 1)
        resp = pb.ListBonusesResponse(bonuses=[bonus_out(b) for b in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1].created_at - datetime(1970, 1, 1, tzinfo=UTC)
            resp.next_page_token = encode_token(last // timedelta(microseconds=1), filters)
        return resp

    @guarded
    async def ForfeitBonus(
        self, request: pb.ForfeitBonusRequest, context: Ctx
    ) -> pb.ForfeitBonusResponse:
        """Forfeit an active bonus (see ledger.Wallet.forfeit_bonus)."""
        caller = model.Caller(
            check_id(request.tenant_id, "tenant_id"),
            check_id(request.player_id, "player_id"),
            check_id(request.idempotency_key, "idempotency_key"),
        )
        cmd = ForfeitBonus(
            caller, parse_uuid(request.bonus_id, "bonus_id"), check_text(request.reason, "reason")
        )

        def ok(r: model.BonusResult) -> pb.ForfeitBonusResponse:
            return pb.ForfeitBonusResponse(
                bonus=bonus_out(r.bonus),
                transaction_id=str(r.transaction_id),
                balance=balance_out(r.balance),
            )

        return await write(
            context,
            self.wallet.execute,
            _key("ForfeitBonus", caller.tenant_id, caller.idempotency_key, request),
            lambda conn: self.wallet.forfeit_bonus(conn, cmd),
            ok,
            pb.ForfeitBonusResponse,
        )

    @guarded
    async def SetBonusSettings(
        self, request: pb.SetBonusSettingsRequest, context: Ctx
    ) -> pb.SetBonusSettingsResponse:
        """Replace the tenant's spend order and withdrawal policy."""
        tenant = check_id(request.tenant_id, "tenant_id")
        idem = check_id(request.idempotency_key, "idempotency_key")
        order = tuple(_SOURCE_FROM_PB.get(x, "") for x in request.settings.spend_order)
        if not check_spend_order(order):
            raise invalid(
                "settings.spend_order",
                "INVALID_SPEND_ORDER",
                "settings.spend_order must name CASH, LOCKED and BONUS once each",
            )
        policy = _POLICY_FROM_PB.get(request.settings.withdrawal_policy)
        if policy is None:
            raise invalid(
                "settings.withdrawal_policy",
                "MISSING_FIELD",
                "settings.withdrawal_policy must be REFUSE or FORFEIT",
            )
        cmd = SetBonusSettings(tenant, order, policy)

        def ok(s: SettingsRow) -> pb.SetBonusSettingsResponse:
            return pb.SetBonusSettingsResponse(settings=_settings_out(s))

        return await write(
            context,
            self.wallet.execute,
            _key("SetBonusSettings", tenant, idem, request),
            lambda conn: self.wallet.set_bonus_settings(conn, cmd),
            ok,
            pb.SetBonusSettingsResponse,
        )

    @guarded
    async def GetBonusSettings(
        self, request: pb.GetBonusSettingsRequest, context: Ctx
    ) -> pb.GetBonusSettingsResponse:
        """The tenant's bonus settings (defaults when never set)."""
        s = await self.wallet.bonus_settings(check_id(request.tenant_id, "tenant_id"))
        return pb.GetBonusSettingsResponse(settings=_settings_out(s))
