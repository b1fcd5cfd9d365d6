"""TLS configuration: `server_credentials` errors, CROUPIER_TLS_* settings, `make certs`
(`python -m tests.certs`), and `croupier-server` serving mutual TLS from its environment."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.config import Settings
from server.tls import TLSConfigError, server_credentials
from tests.certs import FILES, DevCerts
from tests.tls.conftest import channel_credentials

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_no_files_means_plain_text() -> None:
    assert server_credentials(None, None, None) is None


def test_incomplete_or_unreadable_tls_settings_are_errors(certs: DevCerts, tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError, match="set both"):
        server_credentials(certs.server_cert, None)
    with pytest.raises(TLSConfigError, match="set both"):
        server_credentials(None, certs.server_key)
    with pytest.raises(TLSConfigError, match="client CA needs"):
        server_credentials(None, None, certs.ca)
    with pytest.raises(TLSConfigError, match="cannot read the certificate"):
        server_credentials(tmp_path / "missing.pem", certs.server_key)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(TLSConfigError, match=r"client CA .* is not PEM"):
        server_credentials(certs.server_cert, certs.server_key, junk)


def test_settings_read_tls_files_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "CROUPIER_TLS_CERT": "/c/server.pem",
            "CROUPIER_TLS_KEY": "/c/server.key",
            "CROUPIER_TLS_CLIENT_CA": "/c/ca.pem",
        }
    )
    assert (s.tls_cert, s.tls_key, s.tls_client_ca) == (
        Path("/c/server.pem"),
        Path("/c/server.key"),
        Path("/c/ca.pem"),
    )
    plain = Settings.from_env({"CROUPIER_TLS_CLIENT_CA": ""})
    assert (plain.tls_cert, plain.tls_key, plain.tls_client_ca) == (None, None, None)


def test_make_certs_writes_a_ca_and_certificates_it_issued(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    cmd = [sys.executable, "-m", "tests.certs", str(out), "--host", "croupier.internal"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "wrote" in first.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    for name in ("ca.key", "server.key", "client.key"):
        assert (out / name).stat().st_mode & 0o077 == 0, f"{name} is readable by others"
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    client = x509.load_pem_x509_certificate((out / "client.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "croupier.internal"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    before = (out / "ca.pem").read_bytes()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "kept existing" in again.stdout
    assert (out / "ca.pem").read_bytes() == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _health(port: int, creds: grpc.ChannelCredentials | None) -> int:
    target = f"127.0.0.1:{port}"
    ch = grpc.aio.secure_channel(target, creds) if creds else grpc.aio.insecure_channel(target)
    async with ch:
        r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
        return int(r.status)


async def test_croupier_server_serves_mutual_tls_from_its_environment(
    database_url: str, certs: DevCerts
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "CROUPIER_DATABASE_URL": database_url,
        "CROUPIER_GRPC_ADDR": f"127.0.0.1:{port}",
        "CROUPIER_GRACE_SECONDS": "1",
        "CROUPIER_METRICS_ADDR": f"127.0.0.1:{_free_port()}",
        "CROUPIER_TLS_CERT": str(certs.server_cert),
        "CROUPIER_TLS_KEY": str(certs.server_key),
        "CROUPIER_TLS_CLIENT_CA": str(certs.ca),
    }
    proc = subprocess.Popen(
        [str(BIN / "croupier-server"), "--workers", "1"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            assert proc.poll() is None, "server exited early"
            try:
                status = await _health(port, channel_credentials(certs, certs))
                break
            except grpc.aio.AioRpcError:
                assert loop.time() < deadline, "server did not start"
                await asyncio.sleep(0.2)
        assert status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _health(port, None)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError):
            await _health(port, channel_credentials(certs))  # no client certificate
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert f"serving on 127.0.0.1:{port} (mutual TLS)" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_croupier_server_refuses_to_start_with_half_a_tls_configuration(
    certs: DevCerts,
) -> None:
    env = {**os.environ, "CROUPIER_TLS_CERT": str(certs.server_cert)}
    env.pop("CROUPIER_TLS_KEY", None)
    proc = subprocess.run(
        [str(BIN / "croupier-server")], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "set both" in proc.stderr
