"""TLS for the edge: HTTPS (optionally mutual) for the provider's callbacks,
and TLS/mTLS for the edge's own gRPC channel to the wallet.

| variable | meaning |
| CROUPIER_EDGE_TLS_CERT / CROUPIER_EDGE_TLS_KEY | serve HTTPS with this certificate chain and key |
| CROUPIER_EDGE_TLS_CLIENT_CA | also require provider client certificates from this CA (mTLS) |
| CROUPIER_EDGE_WALLET_TLS_CA | the wallet's CA: connect to the wallet over TLS |
| CROUPIER_EDGE_WALLET_TLS_CERT / _KEY | the edge's client certificate for a mutual-TLS wallet |
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path

import grpc


class EdgeTLSError(ValueError):
    """Half a TLS configuration, or a file that cannot be read."""


def _read(path: str, name: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise EdgeTLSError(f"{name} {path}: {exc.strerror}") from exc


def http_ssl_context(env: Mapping[str, str]) -> ssl.SSLContext | None:
    """The HTTPS context for the callbacks, or None for plain HTTP (no cert configured)."""
    cert, key = env.get("CROUPIER_EDGE_TLS_CERT"), env.get("CROUPIER_EDGE_TLS_KEY")
    client_ca = env.get("CROUPIER_EDGE_TLS_CLIENT_CA")
    if not cert and not key:
        if client_ca:
            raise EdgeTLSError("CROUPIER_EDGE_TLS_CLIENT_CA needs CROUPIER_EDGE_TLS_CERT/_KEY")
        return None
    if not (cert and key):
        raise EdgeTLSError("set both CROUPIER_EDGE_TLS_CERT and CROUPIER_EDGE_TLS_KEY")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        if client_ca:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise EdgeTLSError(f"edge TLS files: {exc}") from exc
    return context


def wallet_channel_credentials(env: Mapping[str, str]) -> grpc.ChannelCredentials | None:
    """Credentials of the edge's channel to the wallet, or None for plain text."""
    ca = env.get("CROUPIER_EDGE_WALLET_TLS_CA")
    cert = env.get("CROUPIER_EDGE_WALLET_TLS_CERT")
    key = env.get("CROUPIER_EDGE_WALLET_TLS_KEY")
    if not ca:
        if cert or key:
            raise EdgeTLSError(
                "CROUPIER_EDGE_WALLET_TLS_CERT/_KEY need CROUPIER_EDGE_WALLET_TLS_CA"
            )
        return None
    if bool(cert) != bool(key):
        raise EdgeTLSError("set both CROUPIER_EDGE_WALLET_TLS_CERT and _KEY, or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "CROUPIER_EDGE_WALLET_TLS_CA"),
        private_key=_read(key, "CROUPIER_EDGE_WALLET_TLS_KEY") if key else None,
        certificate_chain=_read(cert, "CROUPIER_EDGE_WALLET_TLS_CERT") if cert else None,
    )
