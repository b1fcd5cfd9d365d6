"""Certificate rotation without a restart: the server re-reads its TLS files when they change
and uses them for new connections; a broken or mismatched set is ignored and the previous
certificates keep serving."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg_pool import AsyncConnectionPool

from server.app import App, build_server
from server.tls import TLSConfigError, server_credentials
from tests.certs import DevCerts, make_dev_certs
from tests.tls.conftest import channel_credentials


def install(source: DevCerts, live: Path) -> None:
    """Copy `source`'s server files into the server's live directory (a renewal agent's job)."""
    for name in ("server.pem", "server.key", "ca.pem"):
        shutil.copyfile(source.directory / name, live / f"{name}.new")
        (live / f"{name}.new").replace(live / name)


async def status(port: int, client: DevCerts) -> grpc.StatusCode:
    """OK when `client` (trusting its own CA, presenting its certificate) gets a health answer."""
    creds = channel_credentials(client, client)
    async with grpc.aio.secure_channel(f"localhost:{port}", creds) as ch:
        try:
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture
async def rotating(
    pool: AsyncConnectionPool, tmp_path: Path
) -> AsyncIterator[tuple[App, Path, DevCerts, DevCerts]]:
    """A mutual-TLS server reading its files from `live`, first from CA one, then two."""
    one = make_dev_certs(tmp_path / "one", ca_name="CA one")
    two = make_dev_certs(tmp_path / "two", ca_name="CA two")
    live = tmp_path / "live"
    live.mkdir()
    install(one, live)
    creds = server_credentials(live / "server.pem", live / "server.key", live / "ca.pem")
    app = await build_server(pool, "127.0.0.1:0", credentials=creds)
    try:
        yield app, live, one, two
    finally:
        await app.health.enter_graceful_shutdown()
        await app.server.stop(1)
        for t in app.tasks:
            t.cancel()


async def test_new_certificates_are_used_without_a_restart(
    rotating: tuple[App, Path, DevCerts, DevCerts],
) -> None:
    app, live, one, two = rotating
    assert await status(app.port, one) == grpc.StatusCode.OK
    assert await status(app.port, two) == grpc.StatusCode.UNAVAILABLE
    install(two, live)
    assert await status(app.port, two) == grpc.StatusCode.OK
    assert await status(app.port, one) == grpc.StatusCode.UNAVAILABLE


async def test_a_mismatched_set_is_ignored_and_the_old_one_keeps_serving(
    rotating: tuple[App, Path, DevCerts, DevCerts],
) -> None:
    app, live, one, two = rotating
    # half a rotation: the new certificate is in place, its key is not yet
    shutil.copyfile(two.server_cert, live / "server.pem.new")
    (live / "server.pem.new").replace(live / "server.pem")
    assert await status(app.port, one) == grpc.StatusCode.OK
    assert await status(app.port, two) == grpc.StatusCode.UNAVAILABLE
    install(two, live)  # the rest arrives
    assert await status(app.port, two) == grpc.StatusCode.OK


def test_a_key_that_does_not_match_the_certificate_is_refused_at_start(
    certs: DevCerts, foreign_certs: DevCerts
) -> None:
    with pytest.raises(TLSConfigError, match="does not match"):
        server_credentials(certs.server_cert, foreign_certs.server_key)
