"""Pool accounting: how one contribution splits, with sub-minor-unit fractions carried.

Seed 000 / issue 3: the contribution is `bet * conversion / 10^6 * contribution_rate_ppm /
10^6` minor units of the pool's currency (conversion = 10^6 for a bet in the pool's currency);
the remainder, in 10^-12 minor units, is carried to the next contribution on the same counter
row, never lost (PRODUCT.md invariant 1), so a converted bet's rounding is carried too.
`reseed_split_ppm` of it goes to the hidden reseed pool (its fraction carried the same way),
the rest to the visible pool, up to the cap; above the cap the excess is carried to the next
cycle (CARRY_TO_RESEED) or not collected (STOP_GROWING).
"""

from __future__ import annotations

from dataclasses import dataclass

from server.money import INT64_MAX

MICRO = 1_000_000
PICO = MICRO * MICRO


@dataclass(frozen=True, slots=True)
class Split:
    """Where one contribution's minor units went, and the carries after it."""

    total: int
    to_pool: int
    to_reseed: int
    to_overflow: int
    not_collected: int
    total_carry: int
    reseed_carry: int


def split_contribution(
    *,
    bet: int,
    rate_ppm: int,
    split_ppm: int,
    given: int | None,
    total_carry: int,
    reseed_carry: int,
    headroom: int | None,
    stop_growing: bool,
    conversion_micro: int = MICRO,
) -> Split:
    """Split a contribution.

    `given` is the caller's own contribution amount (no rate, no total carry); otherwise
    bet * conversion_micro * rate_ppm plus `total_carry` (10^-12 minor units) is floored to
    minor units. `headroom` is cap - current amount (None: no cap). Amounts are minor units.
    """
    if given is None:
        raw = bet * conversion_micro * rate_ppm + total_carry
        total, total_carry = divmod(raw, PICO)
    else:
        total = given
    raw_reseed = total * split_ppm + reseed_carry
    to_reseed, reseed_carry = divmod(raw_reseed, MICRO)
    visible = total - to_reseed
    excess = 0
    if headroom is not None and visible > max(headroom, 0):
        excess = visible - max(headroom, 0)
    to_pool = visible - excess
    return Split(
        total=total,
        to_pool=to_pool,
        to_reseed=to_reseed,
        to_overflow=0 if stop_growing else excess,
        not_collected=excess if stop_growing else 0,
        total_carry=total_carry,
        reseed_carry=reseed_carry,
    )


def pool_value_fits(cycle_base: int, visible: int, hidden: int) -> bool:
    """Whether a pool's whole value fits int64: its cycle's base plus the visible contributions
    (the amount a hit wins) plus the hidden reseed and carried overflow (which, with the seed,
    start the next cycle). Every contribution keeps this true; minor units."""
    return cycle_base + visible + hidden <= INT64_MAX
