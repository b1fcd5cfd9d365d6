"""The `croupier-webhooks` process itself: configured by environment, delivers, stops on
SIGTERM with exit code 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import aio_pika
from croupier.events.v1.subscription_service_pb2_grpc import SubscriptionServiceStub
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub

from server.events.relay import Relay
from tests.webhooks.conftest import AMQP_URL, SECRET, ReceiverFactory, eventually, subscribe
from tests.webhooks.test_deliveries import credit

ROOT = Path(__file__).resolve().parents[2]


async def test_dispatcher_process_delivers_and_stops_cleanly(
    database_url: str,
    wallet: WalletServiceStub,
    subs: SubscriptionServiceStub,
    relay: Relay,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    rx = await receivers()
    await subscribe(subs, tenant, rx.url, "wallet.credited")
    queue = f"croupier.webhooks.test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "CROUPIER_DATABASE_URL": database_url,
        "CROUPIER_AMQP_URL": AMQP_URL,
        "CROUPIER_WEBHOOK_QUEUE": queue,
        "CROUPIER_WEBHOOK_MAX_IN_FLIGHT": "4",
        "CROUPIER_WEBHOOK_BACKOFF_BASE_SECONDS": "0.05",
        "CROUPIER_WEBHOOK_BACKOFF_CAP_SECONDS": "0.5",
        "CROUPIER_WEBHOOK_POLL_SECONDS": "0.2",
        "CROUPIER_LOG_LEVEL": "INFO",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from server.webhooks.dispatcher import main; sys.exit(main())",
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        log = b""
        while b"consuming" not in log:  # the queue is bound
            line = await asyncio.wait_for(proc.stderr.readline(), 20)
            assert line, log
            log += line
        await credit(wallet, tenant, 4242)
        await eventually(lambda: len(rx.ok_events()) == 1, timeout=20)
        assert rx.ok_events()[0]["payload"]["amount"]["minor_units"] == 4242
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        err = log + err
        assert proc.returncode == 0, err
        assert b"webhook dispatcher stopped" in err
        assert SECRET.encode() not in err  # the secret is never logged
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        conn = await aio_pika.connect(AMQP_URL, timeout=10)
        async with conn:
            ch = await conn.channel()
            await ch.queue_delete(queue)
