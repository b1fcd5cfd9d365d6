"""Pool kinds, configuration, reads and tenant isolation (issue 3 sections 1-3, invariant 7)."""

from __future__ import annotations

import grpc
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from psycopg_pool import AsyncConnectionPool

from tests.jackpot.conftest import amount, contribution, create, tier
from tests.rpc import error_info, eur, fails, key

IA = grpc.StatusCode.INVALID_ARGUMENT
NF = grpc.StatusCode.NOT_FOUND


async def test_multi_tier_local_jackpot_starts_each_pool_at_its_seed(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(
        jackpot,
        tenant,
        tier("mini", seed_minor_units=500),
        tier("grand", seed_minor_units=100_000),
        region="eu",
    )
    assert [p.tier for p in j.pools] == ["mini", "grand"]
    assert [p.amount.minor_units for p in j.pools] == [500, 100_000]
    assert j.tenant_ids == [tenant] and j.scope == pb.JACKPOT_SCOPE_LOCAL
    for p in j.pools:
        assert p.cycle == 1 and len(p.seed_commitment) == 64
    r = await jackpot.GetPool(pb.GetPoolRequest(tenant_id=tenant, pool_id=j.pools[1].pool_id))
    assert r.pool.amount.minor_units == 100_000 and r.pool.region == "eu"


async def test_fixed_pool_pays_its_seed_and_takes_no_contributions(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(
        jackpot, tenant, tier("fixed", kind=pb.POOL_KIND_FIXED, contribution_rate_ppm=0)
    )
    pool_id = j.pools[0].pool_id
    r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 10_000))
    assert r.tiers[0].qualified and r.tiers[0].contribution.minor_units == 0
    t = await jackpot.Trigger(
        pb.TriggerRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            pool_id=pool_id,
            reason="random_hit",
            selector=pb.TriggerSelector(player_id="p1", round_id="r1"),
        )
    )
    assert t.win.amount.minor_units == 1000
    assert await amount(jackpot, tenant, pool_id) == 1000
    await fails(
        jackpot.CreateJackpot(
            pb.CreateJackpotRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                jackpot_id="fixed-bad",
                currency="EUR",
                scope=pb.JACKPOT_SCOPE_LOCAL,
                tiers=[tier(kind=pb.POOL_KIND_FIXED)],
            )
        ),
        IA,
        "FIXED_POOL_CONTRIBUTION",
    )


async def test_bad_configuration_names_the_field_and_writes_nothing(
    jackpot: JackpotServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    def req(**kw: object) -> pb.CreateJackpotRequest:
        base: dict[str, object] = {
            "tenant_id": tenant,
            "idempotency_key": key(),
            "jackpot_id": "bad-config",
            "currency": "EUR",
            "scope": pb.JACKPOT_SCOPE_LOCAL,
            "tiers": [tier()],
        }
        base.update(kw)
        return pb.CreateJackpotRequest(**base)  # type: ignore[arg-type]

    cases = [
        (req(currency="XXX"), "UNKNOWN_CURRENCY", "currency"),
        (req(jackpot_id="bad id"), "INVALID_ID", "jackpot_id"),
        (req(tiers=[]), "INVALID_TIERS", "tiers"),
        (req(tiers=[tier(), tier()]), "DUPLICATE_TIER", "tiers"),
        (req(tiers=[tier(contribution_rate_ppm=2_000_000)]), "INVALID_RATE", None),
        (req(tiers=[tier(cap_minor_units=10)]), "CAP_BELOW_SEED", None),
        (
            req(tiers=[tier(trigger=pb.TRIGGER_KIND_MUST_DROP, must_drop_min_minor_units=5)]),
            "INVALID_MUST_DROP_RANGE",
            None,
        ),
        (req(tiers=[tier(trigger=pb.TRIGGER_KIND_RANDOM)]), "INVALID_PROBABILITY", None),
        (req(tiers=[tier(shards=8, cap_minor_units=5000)]), "SHARDS_NEED_UNCAPPED_POOL", None),
        (req(scope=pb.JACKPOT_SCOPE_NETWORK), "MISSING_FIELD", "tenant_ids"),
        (req(tiers=[tier(trigger=0)]), "MISSING_FIELD", "tiers[0].trigger"),
    ]
    for request, reason, field in cases:
        exc = await fails(jackpot.CreateJackpot(request), IA, reason)
        if field:
            assert error_info(exc).metadata["field"] == field
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM jp_jackpots WHERE jackpot_id = 'bad-config'")
        row = await cur.fetchone()
    assert row is not None and row[0] == 0


async def test_create_is_idempotent_and_ids_are_unique(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    req = pb.CreateJackpotRequest(
        tenant_id=tenant,
        idempotency_key=key(),
        jackpot_id=f"dup-{tenant}",
        currency="EUR",
        scope=pb.JACKPOT_SCOPE_LOCAL,
        tiers=[tier()],
    )
    first_key = req.idempotency_key
    first = await jackpot.CreateJackpot(req)
    again = await jackpot.CreateJackpot(req)
    assert first.SerializeToString(deterministic=True) == again.SerializeToString(
        deterministic=True
    )
    req.idempotency_key = key()
    await fails(
        jackpot.CreateJackpot(req), grpc.StatusCode.ALREADY_EXISTS, "JACKPOT_ALREADY_EXISTS"
    )
    reused = pb.CreateJackpotRequest()
    reused.CopyFrom(req)
    reused.display_name = "changed"
    reused.idempotency_key = first_key
    await fails(
        jackpot.CreateJackpot(reused), grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED"
    )


async def test_network_pool_is_seen_only_by_listed_tenants(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    a, b, outsider = f"{tenant}-a", f"{tenant}-b", f"{tenant}-x"
    j = await create(jackpot, tenant, tier(), network=(a, b), region="eu")
    pool_id = j.pools[0].pool_id
    for t in (tenant, a, b):
        assert (await jackpot.GetPool(pb.GetPoolRequest(tenant_id=t, pool_id=pool_id))).pool
    await fails(
        jackpot.GetPool(pb.GetPoolRequest(tenant_id=outsider, pool_id=pool_id)),
        NF,
        "POOL_NOT_FOUND",
    )
    listed = await jackpot.ListPools(pb.ListPoolsRequest(tenant_id=outsider))
    assert not listed.pools
    await fails(
        jackpot.Contribute(contribution(outsider, j.jackpot_id, 100)), NF, "JACKPOT_NOT_FOUND"
    )
    await fails(
        jackpot.Contribute(contribution(tenant, j.jackpot_id, 100)),
        grpc.StatusCode.PERMISSION_DENIED,
        "TENANT_NOT_LISTED",
    )
    await jackpot.Contribute(contribution(a, j.jackpot_id, 10_000))
    await jackpot.Contribute(contribution(b, j.jackpot_id, 10_000))
    assert await amount(jackpot, a, pool_id) == 1000 + 200


async def test_list_pools_filters_and_paginates(jackpot: JackpotServiceStub, tenant: str) -> None:
    j1 = await create(jackpot, tenant, tier("a"), tier("b"), tier("c"), region="eu")
    await create(jackpot, tenant, tier("a"), region="us", game_ids=["only-this-game"])
    seen: list[str] = []
    token = ""
    while True:
        page = await jackpot.ListPools(
            pb.ListPoolsRequest(tenant_id=tenant, region="eu", page_size=2, page_token=token)
        )
        seen += [p.pool_id for p in page.pools]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(p.pool_id for p in j1.pools)
    games = await jackpot.ListPools(pb.ListPoolsRequest(tenant_id=tenant, game_id="g-other"))
    assert {p.jackpot_id for p in games.pools} == {j1.jackpot_id}
    await fails(
        jackpot.ListPools(pb.ListPoolsRequest(tenant_id=tenant, page_token="garbage")),
        IA,
        "INVALID_PAGE_TOKEN",
    )


async def test_update_pool_is_versioned_and_owner_only(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(jackpot, tenant, tier(), network=(f"{tenant}-m",))
    pool_id = j.pools[0].pool_id
    new = tier(contribution_rate_ppm=20_000, min_bet_minor_units=50)
    r = await jackpot.UpdatePool(
        pb.UpdatePoolRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            pool_id=pool_id,
            config=new,
            expected_config_version=1,
            reason="raise the rate",
        )
    )
    assert r.pool.config_version == 2 and r.pool.config.contribution_rate_ppm == 20_000
    await fails(
        jackpot.UpdatePool(
            pb.UpdatePoolRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                pool_id=pool_id,
                config=new,
                expected_config_version=1,
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONFIG_VERSION_MISMATCH",
    )
    await fails(
        jackpot.UpdatePool(
            pb.UpdatePoolRequest(
                tenant_id=f"{tenant}-m", idempotency_key=key(), pool_id=pool_id, config=new
            )
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_POOL_OWNER",
    )
    await fails(
        jackpot.UpdatePool(
            pb.UpdatePoolRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                pool_id=pool_id,
                config=tier(kind=pb.POOL_KIND_FIXED, contribution_rate_ppm=0),
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "KIND_IMMUTABLE",
    )
    await fails(
        jackpot.UpdatePool(
            pb.UpdatePoolRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                pool_id=pool_id,
                config=tier(trigger=pb.TRIGGER_KIND_RANDOM, hit_probability_ppb=5),
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "TRIGGER_IMMUTABLE",
    )
    c = await jackpot.Contribute(contribution(f"{tenant}-m", j.jackpot_id, 10_000))
    assert c.tiers[0].contribution.minor_units == 200
    # a new seed applies from the next cycle: this one keeps its committed start amount
    await jackpot.UpdatePool(
        pb.UpdatePoolRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            pool_id=pool_id,
            config=tier(seed_minor_units=5_000, contribution_rate_ppm=20_000),
        )
    )
    assert await amount(jackpot, tenant, pool_id) == 1000 + 200
    await jackpot.Trigger(
        pb.TriggerRequest(
            tenant_id=f"{tenant}-m",
            idempotency_key=key(),
            pool_id=pool_id,
            selector=pb.TriggerSelector(player_id="p"),
        )
    )
    assert await amount(jackpot, tenant, pool_id) == 5_000


async def test_eligibility_reports_min_bet_game_and_chance(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(
        jackpot,
        tenant,
        tier(
            "mini",
            trigger=pb.TRIGGER_KIND_RANDOM,
            hit_probability_ppb=1_000_000,
            reference_bet_minor_units=100,
        ),
        tier("grand", min_bet_minor_units=500),
        game_ids=["g1"],
    )

    async def check(game: str, bet: int) -> list[tuple[bool, str, int]]:
        r = await jackpot.CheckEligibility(
            pb.CheckEligibilityRequest(
                tenant_id=tenant, jackpot_id=j.jackpot_id, game_id=game, bet=eur(bet)
            )
        )
        return [(t.eligible, t.reason, t.hit_probability_ppb) for t in r.tiers]

    assert await check("g1", 200) == [(True, "", 2_000_000), (False, "BELOW_MIN_BET", 0)]
    assert await check("g2", 200) == [
        (False, "GAME_NOT_INCLUDED", 0),
        (False, "GAME_NOT_INCLUDED", 0),
    ]


async def test_contribution_in_another_currency_is_refused(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(jackpot, tenant, tier())
    req = contribution(tenant, j.jackpot_id, 100)
    req.bet.currency = "USD"
    await fails(jackpot.Contribute(req), IA, "CURRENCY_MISMATCH")


async def test_watch_pools_streams_changes_throttled(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(jackpot, tenant, tier("a"), tier("b"))
    a = j.pools[0].pool_id
    call = jackpot.WatchPools(pb.WatchPoolsRequest(tenant_id=tenant, min_interval_ms=200))
    first = [await call.read(), await call.read()]
    assert {u.pool.pool_id for u in first} == {p.pool_id for p in j.pools}  # type: ignore[union-attr]
    req = contribution(tenant, j.jackpot_id, 10_000)
    await jackpot.Contribute(req)
    updates = [await call.read(), await call.read()]
    amounts = {u.pool.pool_id: u.pool.amount.minor_units for u in updates}  # type: ignore[union-attr]
    assert amounts[a] == 1100
    call.cancel()
    bad = jackpot.WatchPools(pb.WatchPoolsRequest(tenant_id=""))
    await fails(bad.read(), IA, "MISSING_FIELD")
