"""Bonus money on the bus (real RabbitMQ): the CRM casino feed splits each bet and win into
wager_amount + bonus_wager_amount + locked_wager_amount from the wallet's recorded split, and
the wallet.bonus.* events arrive with valid schemas."""

from __future__ import annotations

from decimal import Decimal

import aio_pika
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub

from server.events.relay import CRM_EXCHANGE, EVENTS_EXCHANGE, Relay
from tests.events.conftest import consume
from tests.events.test_relay import validate
from tests.rpc import eur
from tests.wallet.test_bonus import bet, deposit, grant_request


def _d(value: object) -> Decimal:
    return Decimal(str(value))


async def test_crm_feed_carries_the_three_wager_parts(
    wallet: WalletServiceStub,
    tenant: str,
    broker: aio_pika.abc.AbstractRobustConnection,
    relay: Relay,
) -> None:
    crm = await consume(broker, CRM_EXCHANGE)
    events = await consume(broker, EVENTS_EXCHANGE, "wallet.bonus.#")
    await deposit(wallet, tenant, "p", 5_000)  # cash 50.00
    await wallet.GrantBonus(
        grant_request(
            tenant,
            "p",
            amount=eur(3_000),
            locked_deposit=eur(2_000),
            wagering_multiplier=1,
            wagering_base=pb.WAGERING_BASE_BONUS,
            max_bet=eur(10_000),
            max_conversion=eur(1_000),
        )
    )
    # cash 30.00, locked 20.00, bonus 30.00; a bet of 70.00 takes 30.00 + 20.00 + 20.00
    await bet(wallet, tenant, "p", "b1", 7_000, 3_500, game="starburst", category="slots")
    # the requirement (1 x 30.00) is reached: completed (10.00 converted)
    await got_all(crm, tenant, 2)
    bet_body, win_body = crm.bodies(tenant)[:2]
    for body in (bet_body, win_body):
        validate(body, "crm.casino")
        assert _d(body["amount"]) == (
            _d(body["wager_amount"])
            + _d(body["bonus_wager_amount"])
            + _d(body["locked_wager_amount"])
        )
    assert (bet_body["type"], _d(bet_body["amount"])) == ("Bet", Decimal("70"))
    assert (
        _d(bet_body["wager_amount"]),
        _d(bet_body["bonus_wager_amount"]),
        _d(bet_body["locked_wager_amount"]),
    ) == (
        Decimal("30"),
        Decimal("20"),
        Decimal("20"),
    )
    # the win of 35.00 in the stake's proportions 3:2:2 -> 15.00 cash, 10.00 bonus, 10.00 locked
    assert (win_body["type"], _d(win_body["amount"])) == ("Win", Decimal("35"))
    assert (
        _d(win_body["wager_amount"]),
        _d(win_body["bonus_wager_amount"]),
        _d(win_body["locked_wager_amount"]),
    ) == (
        Decimal("15"),
        Decimal("10"),
        Decimal("10"),
    )
    await events.wait_for(lambda r: len(r.bodies(tenant)) >= 2)
    got = {b["event_type"]: b for b in events.bodies(tenant)}
    assert set(got) == {"wallet.bonus.granted", "wallet.bonus.completed"}
    for name, body in got.items():
        validate(body, name)
    done = got["wallet.bonus.completed"]["payload"]
    # bonus 30.00 - 20.00 staked + 10.00 won = 20.00: 10.00 converted (the cap), 10.00
    # removed; locked 20.00 - 20.00 + 10.00 = 10.00 released to cash
    assert (
        done["converted"]["minor_units"],
        done["removed"]["minor_units"],
        done["released"]["minor_units"],
    ) == (1_000, 1_000, 1_000)


async def got_all(received: object, tenant: str, n: int) -> None:
    await received.wait_for(lambda r: len(r.bodies(tenant)) >= n)  # type: ignore[attr-defined]


async def test_plain_players_feed_is_unchanged(
    wallet: WalletServiceStub,
    tenant: str,
    broker: aio_pika.abc.AbstractRobustConnection,
    relay: Relay,
) -> None:
    crm = await consume(broker, CRM_EXCHANGE)
    await deposit(wallet, tenant, "q", 1_000)
    await bet(wallet, tenant, "q", "b1", 250, 100)
    await got_all(crm, tenant, 2)
    for body in crm.bodies(tenant):
        assert body["amount"] == body["wager_amount"]
        assert body["bonus_wager_amount"] == 0 and body["locked_wager_amount"] == 0
