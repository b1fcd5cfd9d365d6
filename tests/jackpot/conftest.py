"""Fixtures and helpers for the jackpot tests: the JackpotService stub over the real server."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub

from tests.rpc import eur, key


@pytest.fixture(scope="session")
def jackpot(channel: grpc.aio.Channel) -> JackpotServiceStub:
    """The generated JackpotService stub over the real channel."""
    return JackpotServiceStub(channel)


def tier(name: str = "grand", **kw: Any) -> pb.TierConfig:
    """A progressive EXTERNAL tier, seed 1000, 1% contribution, no reseed, unless overridden."""
    base: dict[str, Any] = {
        "tier": name,
        "kind": pb.POOL_KIND_PROGRESSIVE,
        "seed_minor_units": 1000,
        "contribution_rate_ppm": 10_000,
        "trigger": pb.TRIGGER_KIND_EXTERNAL,
    }
    base.update(kw)
    return pb.TierConfig(**base)


async def create(
    stub: JackpotServiceStub,
    tenant: str,
    *tiers: pb.TierConfig,
    network: tuple[str, ...] = (),
    currency: str = "EUR",
    **kw: Any,
) -> pb.Jackpot:
    """Create a jackpot (local unless `network` lists tenants) with fresh ids."""
    r = await stub.CreateJackpot(
        pb.CreateJackpotRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            jackpot_id=f"jp-{uuid.uuid4().hex[:10]}",
            currency=currency,
            scope=pb.JACKPOT_SCOPE_NETWORK if network else pb.JACKPOT_SCOPE_LOCAL,
            tenant_ids=list(network),
            tiers=list(tiers) or [tier()],
            **kw,
        )
    )
    return r.jackpot


def contribution(
    tenant: str,
    jackpot_id: str,
    bet: int,
    *,
    player: str = "p1",
    round_id: str | None = None,
    idem: str | None = None,
    currency: str = "EUR",
    **kw: Any,
) -> pb.ContributeRequest:
    """A Contribute request for a bet of `bet` minor units of `currency`."""
    return pb.ContributeRequest(
        tenant_id=tenant,
        idempotency_key=idem or key(),
        jackpot_id=jackpot_id,
        player_id=player,
        game_id="g1",
        round_id=round_id or f"r-{uuid.uuid4().hex[:12]}",
        bet=eur(bet, currency),
        **kw,
    )


async def amount(stub: JackpotServiceStub, tenant: str, pool_id: str) -> int:
    """The pool's current amount in minor units."""
    r = await stub.GetPool(pb.GetPoolRequest(tenant_id=tenant, pool_id=pool_id))
    return r.pool.amount.minor_units


async def reconciled(stub: JackpotServiceStub, tenant: str) -> pb.ReconcileResponse:
    """Reconcile the tenant's pools and assert every drift is zero."""
    r = await stub.Reconcile(pb.ReconcileRequest(tenant_id=tenant))
    assert r.balanced, r
    return r
