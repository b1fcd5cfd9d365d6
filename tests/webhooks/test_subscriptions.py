"""SubscriptionService over real gRPC: idempotent create, get/list/delete, invalid input,
tenant scoping, the secret never coming back."""

from __future__ import annotations

import grpc
from croupier.events.v1 import subscription_service_pb2 as spb
from croupier.events.v1.subscription_service_pb2_grpc import SubscriptionServiceStub
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from psycopg_pool import AsyncConnectionPool

from tests.rpc import error_info, fails, key
from tests.webhooks.conftest import SECRET

SERVICE = "croupier.events.v1.SubscriptionService"


def create(tenant: str, idem: str, url: str = "https://rgs.example/journal", **kw: object):  # type: ignore[no-untyped-def]
    fields = {"secret": SECRET, "event_types": ["wallet.*", "jp.triggered"], **kw}
    return spb.CreateSubscriptionRequest(
        tenant_id=tenant,
        idempotency_key=idem,
        callback_url=url,
        **fields,  # type: ignore[arg-type]
    )


async def count_rows(pool: AsyncConnectionPool, tenant: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM webhook_subscriptions WHERE tenant_id = %s", (tenant,)
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def test_create_is_idempotent_and_never_returns_the_secret(
    subs: SubscriptionServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    idem = key()
    first = await subs.CreateSubscription(create(tenant, idem, description="journal"))
    again = await subs.CreateSubscription(create(tenant, idem, description="journal"))
    assert again.SerializeToString() == first.SerializeToString()  # the original bytes
    sub = first.subscription
    assert sub.tenant_id == tenant and list(sub.event_types) == ["wallet.*", "jp.triggered"]
    assert sub.callback_url == "https://rgs.example/journal" and sub.description == "journal"
    assert SECRET.encode() not in first.SerializeToString()
    assert await count_rows(pool, tenant) == 1
    # same key, different request
    await fails(
        subs.CreateSubscription(create(tenant, idem, url="https://rgs.example/other")),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_KEY_REUSED",
    )
    await fails(
        subs.CreateSubscription(create(tenant, idem, secret="a-different-secret-value")),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert await count_rows(pool, tenant) == 1
    got = await subs.GetSubscription(
        spb.GetSubscriptionRequest(tenant_id=tenant, subscription_id=sub.subscription_id)
    )
    assert got.subscription == sub
    assert SECRET.encode() not in got.SerializeToString()
    # the secret is stored (to sign), but not in the idempotency record
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT secret FROM webhook_subscriptions WHERE subscription_id = %s",
            (sub.subscription_id,),
        )
        assert (await cur.fetchone()) == (SECRET.encode(),)
        cur = await conn.execute(
            "SELECT count(*) FROM idempotency_records WHERE tenant_id = %s"
            " AND position(%s::bytea IN coalesce(response, ''::bytea)) > 0",
            (tenant, SECRET.encode()),
        )
        assert (await cur.fetchone()) == (0,)


async def test_invalid_input_names_the_field_and_writes_nothing(
    subs: SubscriptionServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    cases = [
        (create("", key()), "tenant_id", "MISSING_FIELD"),
        (create(tenant, ""), "idempotency_key", "MISSING_FIELD"),
        (create(tenant, key(), url=""), "callback_url", "MISSING_FIELD"),
        (create(tenant, key(), url="ftp://x.example/"), "callback_url", "INVALID_CALLBACK_URL"),
        (
            create(tenant, key(), url="https://u:p@x.example/"),
            "callback_url",
            "INVALID_CALLBACK_URL",
        ),
        (create(tenant, key(), secret="short"), "secret", "INVALID_SECRET"),
        (create(tenant, key(), secret=""), "secret", "MISSING_FIELD"),
        (create(tenant, key(), event_types=[]), "event_types", "MISSING_FIELD"),
        (
            create(tenant, key(), event_types=["wallet.*", "bogus"]),
            "event_types[1]",
            "UNKNOWN_EVENT_TYPE",
        ),
        (create(tenant, key(), description="x" * 300), "description", "INVALID_TEXT"),
    ]
    for request, field, reason in cases:
        err = await fails(
            subs.CreateSubscription(request), grpc.StatusCode.INVALID_ARGUMENT, reason
        )
        assert error_info(err).metadata["field"] == field
        assert "short" not in (err.details() or "")  # a refused secret is never echoed
    assert await count_rows(pool, tenant) == 0
    await fails(
        subs.GetSubscription(spb.GetSubscriptionRequest(tenant_id=tenant, subscription_id="nope")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ID",
    )


async def test_list_paginates_and_delete_hides(subs: SubscriptionServiceStub, tenant: str) -> None:
    made = [
        (
            await subs.CreateSubscription(create(tenant, key(), url=f"https://h{i}.example/"))
        ).subscription
        for i in range(5)
    ]
    seen: list[spb.Subscription] = []
    token = ""
    pages = 0
    while True:
        page = await subs.ListSubscriptions(
            spb.ListSubscriptionsRequest(tenant_id=tenant, page_size=2, page_token=token)
        )
        seen.extend(page.subscriptions)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert [s.subscription_id for s in seen] == [s.subscription_id for s in made]
    assert pages == 3
    await fails(
        subs.ListSubscriptions(
            spb.ListSubscriptionsRequest(
                tenant_id=f"{tenant}-x", page_size=2, page_token=page.next_page_token or "bm9wZQ=="
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    other = await subs.ListSubscriptions(spb.ListSubscriptionsRequest(tenant_id=f"{tenant}-x"))
    assert list(other.subscriptions) == []

    idem = key()
    delete = spb.DeleteSubscriptionRequest(
        tenant_id=tenant, idempotency_key=idem, subscription_id=made[0].subscription_id
    )
    gone = await subs.DeleteSubscription(delete)
    assert gone.subscription == made[0] and gone.HasField("delete_time")
    assert await subs.DeleteSubscription(delete) == gone  # replay: same answer, no new effect
    await fails(
        subs.DeleteSubscription(
            spb.DeleteSubscriptionRequest(
                tenant_id=tenant, idempotency_key=key(), subscription_id=made[0].subscription_id
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "SUBSCRIPTION_NOT_FOUND",
    )
    await fails(
        subs.GetSubscription(
            spb.GetSubscriptionRequest(tenant_id=tenant, subscription_id=made[0].subscription_id)
        ),
        grpc.StatusCode.NOT_FOUND,
        "SUBSCRIPTION_NOT_FOUND",
    )
    rest = await subs.ListSubscriptions(spb.ListSubscriptionsRequest(tenant_id=tenant))
    assert [s.subscription_id for s in rest.subscriptions] == [s.subscription_id for s in made[1:]]
    # another tenant cannot delete it
    await fails(
        subs.DeleteSubscription(
            spb.DeleteSubscriptionRequest(
                tenant_id=f"{tenant}-x",
                idempotency_key=key(),
                subscription_id=made[1].subscription_id,
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "SUBSCRIPTION_NOT_FOUND",
    )


async def test_health_and_reflection_list_the_service(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    resp = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    calls = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    async for answer in calls:
        names = {s.name for s in answer.list_services_response.service}
        assert SERVICE in names
        break
