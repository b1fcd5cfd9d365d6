"""Seed 001 callbacks through the real edge over HTTP and the real wallet over gRPC (issue 4)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from tests.edge.provider import Provider, available, err, fund, ok, set_status, uid

if TYPE_CHECKING:
    from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceAsyncStub


async def test_bet_debits_once_and_repeats_answer_the_same_id(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user, tid = uid("u"), uid("bet")
    await fund(wallet, provider.tenant, user, 10_000)
    first = ok(await provider.bet(tid, user, "12.50"))
    assert await available(wallet, provider.tenant, user) == 8_750
    # seed 001: the same transaction_id -> same answer, same CLIENT id, no balance change
    for _ in range(3):
        assert ok(await provider.bet(tid, user, "12.50")) == first
    assert await available(wallet, provider.tenant, user) == 8_750


async def test_result_credits_and_repeats_are_replayed(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user, tid = uid("u"), uid("res")
    await fund(wallet, provider.tenant, user, 1_000)
    first = ok(await provider.result(tid, user, "25.00"))
    again = ok(await provider.result(tid, user, "25"))  # same amount, other spelling
    assert first == again
    assert await available(wallet, provider.tenant, user) == 3_500


async def test_result_for_blocked_or_self_excluded_player_succeeds(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    for status in ("blocked", "self_excluded"):
        user = uid("u")
        await fund(wallet, provider.tenant, user, 1_000)
        await set_status(wallet, provider.tenant, user, status)
        err(await provider.bet(uid("bet"), user, "1.00"), "PLAYER_" + status.upper())
        ok(await provider.result(uid("res"), user, "5.00"))
        assert await available(wallet, provider.tenant, user) == 1_500


async def test_blocked_bet_codes(provider: Provider, wallet: WalletServiceAsyncStub) -> None:
    user = uid("u")
    await fund(wallet, provider.tenant, user, 1_000)
    await set_status(wallet, provider.tenant, user, "blocked")
    err(await provider.bet(uid("bet"), user, "1.00"), "PLAYER_BLOCKED")
    await set_status(wallet, provider.tenant, user, "self_excluded")
    err(await provider.bet(uid("bet"), user, "1.00"), "PLAYER_SELF_EXCLUDED")
    assert await available(wallet, provider.tenant, user) == 1_000


async def test_insufficient_funds_is_refused_and_replayed_as_refused(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user, tid = uid("u"), uid("bet")
    await fund(wallet, provider.tenant, user, 500)
    err(await provider.bet(tid, user, "5.01"), "INSUFFICIENT_FUNDS")
    await fund(wallet, provider.tenant, user, 10_000)
    # the wallet replays the original refusal: the bet is never taken later
    err(await provider.bet(tid, user, "5.01"), "INSUFFICIENT_FUNDS")
    assert await available(wallet, provider.tenant, user) == 10_500


async def test_unknown_player_and_currency_mismatch(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    err(await provider.bet(uid("bet"), uid("nobody"), "1.00"), "PLAYER_NOT_FOUND")
    user = uid("u")
    await fund(wallet, provider.tenant, user, 1_000)
    err(await provider.bet(uid("bet"), user, "1.00", "USD"), "CURRENCY_MISMATCH")
    # an unknown player's result is credited: results always succeed (invariant 6)
    newcomer = uid("u")
    ok(await provider.result(uid("res"), newcomer, "2.00"))
    assert await available(wallet, provider.tenant, newcomer) == 200


async def test_same_transaction_id_with_other_content_is_a_duplicate(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user, tid = uid("u"), uid("bet")
    await fund(wallet, provider.tenant, user, 1_000)
    ok(await provider.bet(tid, user, "1.00"))
    err(await provider.bet(tid, user, "2.00"), "DUPLICATE_TRANSACTION")
    err(await provider.result(tid, user, "1.00"), "DUPLICATE_TRANSACTION")
    assert await available(wallet, provider.tenant, user) == 900


async def test_rollback_reverses_a_bet_once(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user, bet, rb = uid("u"), uid("bet"), uid("rb")
    await fund(wallet, provider.tenant, user, 1_000)
    bet_id = ok(await provider.bet(bet, user, "4.00"))
    assert await available(wallet, provider.tenant, user) == 600
    first = ok(await provider.rollback(rb, bet, user, "4.00"))
    assert first != bet_id
    # rollbacks "can be sent multiple times": same answer, one reversal
    for _ in range(3):
        assert ok(await provider.rollback(rb, bet, user, "4.00")) == first
    assert await available(wallet, provider.tenant, user) == 1_000
    # a second rollback (another transaction_id) of the same target changes nothing
    err(await provider.rollback(uid("rb"), bet, user, "4.00"), "ALREADY_ROLLED_BACK")
    assert await available(wallet, provider.tenant, user) == 1_000


async def test_rollback_of_a_result_takes_the_credit_back(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user, res = uid("u"), uid("res")
    await fund(wallet, provider.tenant, user, 100)
    ok(await provider.result(res, user, "3.00"))
    ok(await provider.rollback(uid("rb"), res, user, "3.00"))
    assert await available(wallet, provider.tenant, user) == 100


async def test_rollback_before_bet_is_recorded_and_the_bet_is_refused(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user, bet, rb = uid("u"), uid("bet"), uid("rb")
    await fund(wallet, provider.tenant, user, 1_000)
    # seed 001: unknown rollback target -> inserted without changing the balance, success
    first = ok(await provider.rollback(rb, bet, user, "3.00"))
    assert ok(await provider.rollback(rb, bet, user, "3.00")) == first
    assert await available(wallet, provider.tenant, user) == 1_000
    err(await provider.bet(bet, user, "3.00"), "TRANSACTION_ROLLED_BACK")
    err(await provider.bet(bet, user, "3.00"), "TRANSACTION_ROLLED_BACK")
    assert await available(wallet, provider.tenant, user) == 1_000
    err(await provider.rollback(uid("rb"), bet, user, "3.00"), "ALREADY_ROLLED_BACK")


async def test_rollback_of_a_refused_bet_succeeds_without_effect(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user, bet = uid("u"), uid("bet")
    await fund(wallet, provider.tenant, user, 100)
    err(await provider.bet(bet, user, "3.00"), "INSUFFICIENT_FUNDS")
    ok(await provider.rollback(uid("rb"), bet, user, "3.00"))
    assert await available(wallet, provider.tenant, user) == 100


async def test_rollback_of_another_players_bet_is_refused(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    alice, bob, bet = uid("alice"), uid("bob"), uid("bet")
    await fund(wallet, provider.tenant, alice, 1_000)
    await fund(wallet, provider.tenant, bob, 1_000)
    ok(await provider.bet(bet, alice, "1.00"))
    err(await provider.rollback(uid("rb"), bet, bob, "1.00"), "TRANSACTION_NOT_FOUND")
    assert await available(wallet, provider.tenant, alice) == 900
    assert await available(wallet, provider.tenant, bob) == 1_000


async def test_same_bet_sent_50_times_at_once_debits_once(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user, tid = uid("u"), uid("bet")
    await fund(wallet, provider.tenant, user, 10_000)
    replies = await asyncio.gather(*(provider.bet(tid, user, "1.25") for _ in range(50)))
    assert len({ok(r) for r in replies}) == 1
    assert await available(wallet, provider.tenant, user) == 9_875


async def test_bet_and_its_rollback_racing_never_lose_money(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    # whichever wins, the player ends where they started (reversed, or tombstoned + refused)
    user = uid("u")
    await fund(wallet, provider.tenant, user, 10_000)
    pairs = [(uid("bet"), uid("rb")) for _ in range(20)]
    await asyncio.gather(
        *(provider.bet(b, user, "1.00") for b, _ in pairs),
        *(provider.rollback(r, b, user, "1.00") for b, r in pairs),
    )
    assert await available(wallet, provider.tenant, user) == 10_000


async def test_amounts_are_exact_or_refused(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user = uid("u")
    await fund(wallet, provider.tenant, user, 100_000)
    await fund(wallet, provider.tenant, user, 100_000, "JPY")
    await fund(wallet, provider.tenant, user, 100_000, "KWD")
    err(await provider.bet(uid("b"), user, "10.005"), "TOO_MANY_DECIMALS")
    err(await provider.bet(uid("b"), user, "100.5", "JPY"), "TOO_MANY_DECIMALS")
    for bad in ("-1.00", "1e3", "", " ", "1,00", "0x10", "NaN", "0", "0.00"):
        err(await provider.bet(uid("b"), user, bad), "INVALID_AMOUNT")
    ok(await provider.bet(uid("b"), user, "0.01"))
    ok(await provider.bet(uid("b"), user, "100", "JPY"))
    ok(await provider.bet(uid("b"), user, "1.234", "KWD"))
    assert await available(wallet, provider.tenant, user) == 99_999
    assert await available(wallet, provider.tenant, user, "JPY") == 99_900
    assert await available(wallet, provider.tenant, user, "KWD") == 98_766
    # JSON numbers are read by their literal text, never through a float
    doc = {"transaction_id": uid("b"), "action": "bet", "user_id": user, "currency": "EUR"}
    body = json.dumps(doc)[:-1] + ', "amount": 0.10}'
    ok(await provider.post_raw("transaction", body.encode()))
    assert await available(wallet, provider.tenant, user) == 99_989


async def test_zero_result_succeeds_with_a_stable_id(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user, tid = uid("u"), uid("res")
    await fund(wallet, provider.tenant, user, 100)
    first = ok(await provider.result(tid, user, "0.00"))
    assert ok(await provider.result(tid, user, "0")) == first
    assert await available(wallet, provider.tenant, user) == 100


async def test_currencies_outside_the_integration_are_refused(
    provider: Provider, other_provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user = uid("u")
    err(await provider.result(uid("r"), user, "1.00", "GBP"), "UNSUPPORTED_CURRENCY")
    err(await provider.result(uid("r"), user, "1.00", "XXX"), "UNSUPPORTED_CURRENCY")
    err(await provider.result(uid("r"), user, "1.00", "eur"), "UNSUPPORTED_CURRENCY")
    # `other` has no list: any currency the wallet knows
    ok(await other_provider.result(uid("r"), user, "1.00", "GBP"))


async def test_long_and_unicode_transaction_ids(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user = uid("u")
    await fund(wallet, provider.tenant, user, 1_000)
    for tid in ("x" * 256, "pari-é-€-" + uid("t"), "~" + uid("t"), "with space " + uid("t")):
        first = ok(await provider.bet(tid, user, "1.00"))
        assert ok(await provider.bet(tid, user, "1.00")) == first
        ok(await provider.rollback(uid("rb"), tid, user, "1.00"))
    assert await available(wallet, provider.tenant, user) == 1_000
    err(await provider.bet("x" * 257, user, "1.00"), "INVALID_TRANSACTION_ID")
    err(await provider.bet("tab\there", user, "1.00"), "INVALID_TRANSACTION_ID")


async def test_integrations_are_isolated(
    provider: Provider, other_provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user, tid = uid("u"), uid("bet")
    await fund(wallet, provider.tenant, user, 1_000)
    await fund(wallet, other_provider.tenant, user, 1_000)
    a = ok(await provider.bet(tid, user, "1.00"))
    b = ok(await other_provider.bet(tid, user, "1.00"))
    assert a != b
    assert await available(wallet, provider.tenant, user) == 900
    assert await available(wallet, other_provider.tenant, user) == 900


NON_CANONICAL = [
    " 5.00",
    "5.00 ",
    "\t5.00",
    "5.00\n",
    "\n5.00",
    "5.00\r",
    "\u00a05.00",
    "+5.00",
    "05.00",
    "00.50",
    "5.",
    ".50",
    "5e0",
    "5E0",
    "5.00e0",
    "\uff15.00",
    "5_00",
]


async def test_non_canonical_amounts_are_refused_and_move_nothing(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    """Only the canonical exact decimal moves money: padding, signs, leading zeros, exponents
    and digits outside ASCII are INVALID_AMOUNT, more decimals than the currency has (even
    zeros) TOO_MANY_DECIMALS, for bets and results alike."""
    user = uid("u")
    await fund(wallet, provider.tenant, user, 10_000)
    for bad in NON_CANONICAL:
        for action in ("bet", "result"):
            err(await provider.transaction(uid("c"), action, user, bad), "INVALID_AMOUNT")
    for action in ("bet", "result"):
        err(await provider.transaction(uid("c"), action, user, "5.000"), "TOO_MANY_DECIMALS")
        err(await provider.transaction(uid("c"), action, user, "5.0", "JPY"), "TOO_MANY_DECIMALS")
    assert await available(wallet, provider.tenant, user) == 10_000
    for good in ("5", "5.0", "5.00", "0.50"):
        ok(await provider.bet(uid("b"), user, good))
    assert await available(wallet, provider.tenant, user) == 10_000 - 500 * 3 - 50


async def test_control_characters_in_transaction_ids_are_invalid_input(
    provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    """A NUL, another control character or a lone surrogate in `transaction_id` (or in a
    rollback's) is INVALID_TRANSACTION_ID, never the transient INTERNAL_ERROR."""
    user = uid("u")
    await fund(wallet, provider.tenant, user, 10_000)
    for bad in ("a\x00b", "\x00", "a\x01", "a\x7f", "a\nb"):
        for action in ("bet", "result"):
            err(await provider.transaction(bad, action, user, "1.00"), "INVALID_TRANSACTION_ID")
        err(await provider.rollback(bad, uid("t"), user, "1.00"), "INVALID_TRANSACTION_ID")
        err(await provider.rollback(uid("r"), bad, user, "1.00"), "INVALID_TRANSACTION_ID")
        # refused before the rest is read: a bad amount does not change the answer's kind
        err(await provider.transaction(bad, "bet", user, "x"), "INVALID_TRANSACTION_ID")
    body = (
        '{"transaction_id": "a\\ud800", "action": "bet", "user_id": "' + user + '",'
        ' "currency": "EUR", "amount": "1.00"}'
    )
    err(await provider.post_raw("transaction", body.encode()), "INVALID_TRANSACTION_ID")
    assert await available(wallet, provider.tenant, user) == 10_000
