"""Provable fairness: committed server seeds and HMAC-derived draws (docs/jackpot.md).

Pure functions, no I/O, so `croupier jackpot verify` recomputes exactly what the server did.

* Each pool cycle has a 32-byte server seed; its SHA-256 (the commitment) is published by
  GetPool before any contribution to the cycle, the seed itself only after the cycle ends.
* A round's draw is the first 8 bytes (big-endian) of
  HMAC-SHA256(seed, "draw" US pool_id US cycle US round_id US salt), US = "\\x1f", uniform in
  [0, 2^64). The salt is the request's idempotency key: chosen by the
  caller, never by the server, and the player is never an input (a hit must not depend on who
  the player is).
* A RANDOM round hits when draw * 10^9 < p_ppb * 2^64 (exact integers).
* A MUST_DROP point is min + H(seed, "must_drop", pool, cycle) mod (max - min + 1) over the
  whole 256-bit HMAC (bias below 2^-190); a DEADLINE offset likewise in seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

PPB = 1_000_000_000
_SEP = "\x1f"


def new_server_seed() -> bytes:
    """32 bytes from the OS CSPRNG."""
    return secrets.token_bytes(32)


def commitment(server_seed: bytes) -> bytes:
    """SHA-256 of the seed (published before the cycle's first contribution)."""
    return hashlib.sha256(server_seed).digest()


def _mac(server_seed: bytes, *parts: str) -> bytes:
    return hmac.new(server_seed, _SEP.join(parts).encode(), hashlib.sha256).digest()


def draw(server_seed: bytes, pool_id: str, cycle: int, round_id: str, salt: str) -> int:
    """The round's uniform draw in [0, 2^64)."""
    mac = _mac(server_seed, "draw", pool_id, str(cycle), round_id, salt)
    return int.from_bytes(mac[:8], "big")


def effective_probability_ppb(base_ppb: int, reference_bet: int, bet: int) -> int:
    """Hit probability in ppb for `bet`: the base, or base * bet / reference_bet (floored, at
    most 10^9) when a reference bet (minor units) is configured."""
    if reference_bet <= 0:
        return min(base_ppb, PPB)
    return min(base_ppb * bet // reference_bet, PPB)


def is_hit(draw_value: int, probability_ppb: int) -> bool:
    """True when the draw falls under the probability: draw * 10^9 < p * 2^64."""
    return draw_value * PPB < probability_ppb * (1 << 64)


def must_drop_point(server_seed: bytes, pool_id: str, cycle: int, low: int, high: int) -> int:
    """The cycle's drop point, uniform in [low, high] (minor units)."""
    if high < low:
        raise ValueError("must-drop range is empty")
    value = int.from_bytes(_mac(server_seed, "must_drop", pool_id, str(cycle)), "big")
    return low + value % (high - low + 1)


def deadline_offset(server_seed: bytes, pool_id: str, cycle: int, low: int, high: int) -> int:
    """Seconds after the cycle's start at which a DEADLINE pool drops, uniform in [low, high]."""
    if high < low:
        raise ValueError("deadline window is empty")
    value = int.from_bytes(_mac(server_seed, "deadline", pool_id, str(cycle)), "big")
    return low + value % (high - low + 1)


@dataclass(frozen=True, slots=True)
class DrawRecord:
    """One recorded round of a cycle: its inputs and whether it hit."""

    round_id: str
    salt: str
    probability_ppb: int
    hit: bool


@dataclass(frozen=True, slots=True)
class CycleProof:
    """What `croupier jackpot verify` gets for an ended cycle (GetCycle + ListContributions)."""

    pool_id: str
    cycle: int
    seed_commitment: bytes
    server_seed: bytes
    must_drop_range: tuple[int, int] | None = None
    must_drop_point: int | None = None
    deadline_window: tuple[int, int] | None = None
    drop_offset_micros: int | None = None
    draws: list[DrawRecord] = field(default_factory=list)


def verify_cycle(proof: CycleProof) -> list[str]:
    """Recompute an ended cycle from its revealed seed; return the problems (empty = fair).

    Checks: SHA-256(seed) is the published commitment; every RANDOM draw's hit flag equals
    is_hit(draw, p); the must-drop point and the deadline offset are the ones the seed gives.
    """
    problems: list[str] = []
    if commitment(proof.server_seed) != proof.seed_commitment:
        problems.append("the revealed seed does not match the commitment")
    for d in proof.draws:
        if d.probability_ppb <= 0:
            continue  # not a RANDOM draw (must-drop / deadline hits are checked below)
        value = draw(proof.server_seed, proof.pool_id, proof.cycle, d.round_id, d.salt)
        if is_hit(value, d.probability_ppb) != d.hit:
            problems.append(f"round {d.round_id!r} (salt {d.salt!r}): recorded hit={d.hit}")
    if proof.must_drop_range is not None and proof.must_drop_point is not None:
        low, high = proof.must_drop_range
        expected = must_drop_point(proof.server_seed, proof.pool_id, proof.cycle, low, high)
        if expected != proof.must_drop_point:
            problems.append(f"must-drop point {proof.must_drop_point} != {expected}")
    if proof.deadline_window is not None and proof.drop_offset_micros is not None:
        low, high = proof.deadline_window
        offset = deadline_offset(proof.server_seed, proof.pool_id, proof.cycle, low, high)
        if offset * 1_000_000 != proof.drop_offset_micros:
            problems.append(f"drop time offset {proof.drop_offset_micros} us != {offset} s")
    return problems
