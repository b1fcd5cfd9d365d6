"""Validation of jackpot configuration requests: bad input is INVALID_ARGUMENT naming
the field, raised before anything is written.

Every failure is INVALID_ARGUMENT naming the request field, raised before anything is written.
"""

from __future__ import annotations

import re

from server.errors import invalid
from server.jackpot.fairness import PPB
from server.jackpot.model import JackpotSpec, PoolKind, Scope, TierConfig, TriggerKind
from server.money import INT64_MAX, check_currency
from server.validation import check_id, check_text

MAX_TIERS = 8
MAX_SHARDS = 64
MAX_DEADLINE_SECONDS = 366 * 24 * 3600
MICRO = 1_000_000
MAX_CONVERSION_MICRO = 10**15
# The largest seed, cap and must-drop amount (minor units): half of int64, so a pool starting
# there can still take as much again before its value would pass 2^63-1.
MAX_POOL_MINOR_UNITS = 2**62

_TIER = re.compile(r"^[a-z0-9_-]{1,32}$")
_JACKPOT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_jackpot_id(value: str, field: str = "jackpot_id") -> str:
    """1..64 of [A-Za-z0-9_-]: MISSING_FIELD or INVALID_ID."""
    if not value:
        raise invalid(field, "MISSING_FIELD", f"{field} is required")
    if not _JACKPOT_ID.match(value):
        raise invalid(field, "INVALID_ID", f"{field} must be 1..64 of [A-Za-z0-9_-]")
    return value


def _amount(value: int, field: str) -> int:
    if not 0 <= value <= INT64_MAX:
        raise invalid(field, "INVALID_AMOUNT", f"{field} must be zero or more")
    return value


def _pool_amount(value: int, field: str) -> int:
    """A pool amount (seed, cap, must-drop bound): zero to MAX_POOL_MINOR_UNITS, so a pool
    configured at the limit still has room to grow within int64."""
    _amount(value, field)
    if value > MAX_POOL_MINOR_UNITS:
        raise invalid(
            field,
            "AMOUNT_OVERFLOW",
            f"{field} must be at most 2^62 ({MAX_POOL_MINOR_UNITS}) minor units, so the pool's"
            " value (seed, contributions, reseed) stays within 2^63-1",
        )
    return value


def _ppm(value: int, field: str) -> int:
    if not 0 <= value <= MICRO:
        raise invalid(field, "INVALID_RATE", f"{field} must be between 0 and 1000000 ppm")
    return value


def check_tier(cfg: TierConfig, field: str) -> TierConfig:
    """One tier's rules. Every field is range-checked whatever the trigger (amounts >= 0;
    seed, cap and must-drop bounds at most 2^62 minor units, AMOUNT_OVERFLOW above;
    0 <= p <= 10^9 ppb, must-drop min <= max, deadline 0 <= min <= max <= 366 days); then
    FIXED pools take no contributions and cannot be MUST_DROP; a cap is at least the seed;
    MUST_DROP needs seed <= min <= max (and max <= cap when capped); RANDOM needs
    0 < p <= 10^9 ppb; DEADLINE needs 0 <= min <= max <= 366 days with max > 0; more than one
    shard needs no cap and a trigger other than MUST_DROP (their amount must be exact at every
    contribution, so they use one counter row).
    """
    if not _TIER.match(cfg.tier):
        raise invalid(f"{field}.tier", "INVALID_TIER", "tier must be 1..32 of [a-z0-9_-]")
    _pool_amount(cfg.seed_minor, f"{field}.seed_minor_units")
    _ppm(cfg.contribution_rate_ppm, f"{field}.contribution_rate_ppm")
    _ppm(cfg.reseed_split_ppm, f"{field}.reseed_split_ppm")
    _pool_amount(cfg.cap_minor, f"{field}.cap_minor_units")
    _amount(cfg.min_bet_minor, f"{field}.min_bet_minor_units")
    # every field is range-checked whatever the trigger: a value the trigger ignores is still
    # stored and shown, and would apply as-is if the trigger changed later
    _amount(cfg.reference_bet_minor, f"{field}.reference_bet_minor_units")
    if not 0 <= cfg.hit_probability_ppb <= PPB:
        raise invalid(
            f"{field}.hit_probability_ppb",
            "INVALID_PROBABILITY",
            "hit_probability_ppb must be between 0 and 1000000000",
        )
    _pool_amount(cfg.must_drop_min_minor, f"{field}.must_drop_min_minor_units")
    _pool_amount(cfg.must_drop_max_minor, f"{field}.must_drop_max_minor_units")
    if cfg.must_drop_min_minor > cfg.must_drop_max_minor:
        raise invalid(
            f"{field}.must_drop_min_minor_units",
            "INVALID_MUST_DROP_RANGE",
            "must_drop_min_minor_units exceeds must_drop_max_minor_units",
        )
    for name, seconds in (
        ("deadline_min_seconds", cfg.deadline_min_seconds),
        ("deadline_max_seconds", cfg.deadline_max_seconds),
    ):
        if not 0 <= seconds <= MAX_DEADLINE_SECONDS:
            raise invalid(
                f"{field}.{name}",
                "INVALID_DEADLINE_WINDOW",
                f"{name} must be between 0 and {MAX_DEADLINE_SECONDS} seconds (366 days)",
            )
    if cfg.deadline_min_seconds > cfg.deadline_max_seconds:
        raise invalid(
            f"{field}.deadline_min_seconds",
            "INVALID_DEADLINE_WINDOW",
            "deadline_min_seconds exceeds deadline_max_seconds",
        )
    if cfg.cap_minor and cfg.cap_minor < cfg.seed_minor:
        raise invalid(f"{field}.cap_minor_units", "CAP_BELOW_SEED", "the cap is below the seed")
    if cfg.kind is PoolKind.FIXED:
        if cfg.contribution_rate_ppm or cfg.reseed_split_ppm:
            raise invalid(
                f"{field}.contribution_rate_ppm",
                "FIXED_POOL_CONTRIBUTION",
                "a fixed pool takes no contributions (rate and reseed split must be 0)",
            )
        if cfg.trigger is TriggerKind.MUST_DROP:
            raise invalid(f"{field}.trigger", "FIXED_POOL_MUST_DROP", "a fixed pool cannot grow")
    if cfg.trigger is TriggerKind.RANDOM:
        if not 0 < cfg.hit_probability_ppb <= PPB:
            raise invalid(
                f"{field}.hit_probability_ppb",
                "INVALID_PROBABILITY",
                "hit_probability_ppb must be between 1 and 1000000000",
            )
    if cfg.trigger is TriggerKind.MUST_DROP:
        if (
            not cfg.seed_minor <= cfg.must_drop_min_minor <= cfg.must_drop_max_minor
            or cfg.must_drop_max_minor == 0
        ):
            raise invalid(
                f"{field}.must_drop_min_minor_units",
                "INVALID_MUST_DROP_RANGE",
                "must-drop needs seed <= min <= max and max > 0",
            )
        if cfg.cap_minor and cfg.must_drop_max_minor > cfg.cap_minor:
            raise invalid(
                f"{field}.must_drop_max_minor_units",
                "INVALID_MUST_DROP_RANGE",
                "the must-drop max exceeds the cap",
            )
    if cfg.trigger is TriggerKind.DEADLINE and (
        not 0 <= cfg.deadline_min_seconds <= cfg.deadline_max_seconds <= MAX_DEADLINE_SECONDS
        or cfg.deadline_max_seconds == 0
    ):
        raise invalid(
            f"{field}.deadline_min_seconds",
            "INVALID_DEADLINE_WINDOW",
            "deadline needs 0 <= min <= max <= 366 days and max > 0 (seconds)",
        )
    if not 1 <= cfg.shards <= MAX_SHARDS:
        raise invalid(f"{field}.shards", "INVALID_SHARDS", "shards must be between 1 and 64")
    if cfg.shards > 1 and (cfg.cap_minor or cfg.trigger is TriggerKind.MUST_DROP):
        raise invalid(
            f"{field}.shards",
            "SHARDS_NEED_UNCAPPED_POOL",
            "a sharded pool must have no cap and a trigger other than MUST_DROP",
        )
    return cfg


def check_spec(spec: JackpotSpec) -> JackpotSpec:
    """A whole CreateJackpot request: ids, currency, scope and tenants, 1..8 distinct tiers."""
    check_jackpot_id(spec.jackpot_id)
    check_currency(spec.currency, "currency")
    check_text(spec.display_name, "display_name", 200)
    check_text(spec.region, "region", 64)
    for i, t in enumerate(spec.tenant_ids):
        check_id(t, f"tenant_ids[{i}]")
    for i, g in enumerate(spec.game_ids):
        check_id(g, f"game_ids[{i}]")
    if spec.scope is Scope.NETWORK and not spec.tenant_ids:
        raise invalid("tenant_ids", "MISSING_FIELD", "a network jackpot lists its tenants")
    if spec.scope is Scope.LOCAL and set(spec.tenant_ids) - {spec.owner_tenant_id}:
        raise invalid("tenant_ids", "LOCAL_JACKPOT_TENANTS", "a local jackpot has one tenant")
    for code, rate in spec.conversion_rates.items():
        field = f"conversion_rates_micro[{code}]"
        check_currency(code, field)
        if code == spec.currency:
            raise invalid(field, "INVALID_CONVERSION", "a rate for the jackpot's own currency")
        if not 0 < rate <= MAX_CONVERSION_MICRO:
            raise invalid(field, "INVALID_CONVERSION", "a rate must be 1 to 10^15 (micro)")
    if not 1 <= len(spec.tiers) <= MAX_TIERS:
        raise invalid("tiers", "INVALID_TIERS", "a jackpot has 1 to 8 tiers")
    names = [t.tier for t in spec.tiers]
    if len(set(names)) != len(names):
        raise invalid("tiers", "DUPLICATE_TIER", "tier names must be distinct")
    for i, tier in enumerate(spec.tiers):
        check_tier(tier, f"tiers[{i}]")
    return spec
