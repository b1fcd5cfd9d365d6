"""The mutual-TLS server and certificates of tests/tls, reused by the Node client test."""

from tests.tls.conftest import certs, mtls_app

__all__ = ["certs", "mtls_app"]
