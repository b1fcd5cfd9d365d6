"""TLS and mutual TLS for the gRPC server, from PEM files named in the configuration.

| CROUPIER_TLS_CERT | PEM certificate chain the server presents (leaf first) |
| CROUPIER_TLS_KEY | PEM private key of that certificate |
| CROUPIER_TLS_CLIENT_CA | PEM bundle of CAs whose client certificates are accepted; when set, |
|   | every client must present a certificate signed by one of them (mutual TLS) |

Neither set: the server listens in plain text (development, `make run`). `make certs` writes a
development CA, a server certificate and a client certificate under `.data/certs/`
(`tests/certs.py`).

Rotation: the files are watched. When one changes (size, mtime or inode, checked at each new
TLS handshake), the set is re-read and, if the key matches the certificate, used for every new
connection; open connections keep their session. A half-written or mismatched set is ignored
(with a warning) and the previous certificates stay in use, so replacing the files in any order
is safe. Short-lived certificates renewed by an agent (cert-manager, Vault) need no restart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger("croupier.tls")


class TLSConfigError(ValueError):
    """The TLS settings are incomplete, a file cannot be read, or the key does not match."""


@dataclass(frozen=True)
class TLSFiles:
    """The PEM files of a TLS server: certificate chain, key, optional client CA bundle."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def paths(self) -> tuple[Path, ...]:
        """The files that are set, certificate first."""
        return tuple(p for p in (self.cert, self.key, self.client_ca) if p is not None)


def _read(path: Path, what: str) -> bytes:
    """The bytes of a PEM file; raises TLSConfigError naming `what` when unreadable or not PEM."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"cannot read the {what} {path}: {exc.strerror}") from exc
    if b"-----BEGIN " not in data:
        raise TLSConfigError(f"the {what} {path} is not PEM")
    return data


def _validate(files: TLSFiles) -> None:
    """Check with the standard library's TLS that the key belongs to the certificate and the
    client CA bundle parses; raises TLSConfigError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(files.cert, files.key)
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(
            f"the key {files.key} does not match the certificate {files.cert} ({exc})"
        ) from exc
    if files.client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=files.client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(f"the client CA {files.client_ca} is unusable ({exc})") from exc


def _load(files: TLSFiles) -> tuple[bytes, bytes, bytes | None]:
    """(key, certificate chain, client CA or None) as PEM bytes, checked; raises TLSConfigError."""
    key = _read(files.key, "private key")
    cert = _read(files.cert, "certificate")
    ca = _read(files.client_ca, "client CA") if files.client_ca is not None else None
    _validate(files)
    return key, cert, ca


def tls_files(
    cert: Path | None, key: Path | None, client_ca: Path | None = None
) -> TLSFiles | None:
    """The checked TLS files, or None for plain text; creates no gRPC object, so the server's
    entry point can fail fast before it forks workers. Raises TLSConfigError when only one of
    cert/key is given, when `client_ca` is given without them, when a file is missing or not
    PEM, or when the key does not match the certificate."""
    if cert is None and key is None:
        if client_ca is not None:
            raise TLSConfigError("a client CA needs the server certificate and key as well")
        return None
    if cert is None or key is None:
        raise TLSConfigError("the server certificate and its key go together: set both")
    files = TLSFiles(cert, key, client_ca)
    _load(files)
    return files


def certificate_configuration(files: TLSFiles) -> grpc.ServerCertificateConfiguration:
    """Read and check `files` into one gRPC certificate configuration; raises TLSConfigError."""
    key, cert, ca = _load(files)
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


class _Reloader:
    """The certificate fetcher gRPC calls at each new handshake (from its own threads): None
    while the files are unchanged, else their new configuration once it checks out."""

    def __init__(self, files: TLSFiles) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._loaded: tuple[tuple[int, int, int], ...] | None = None
        with contextlib.suppress(OSError):  # a missing file is reported by the first read
            self._loaded = self._signature()
        self._rejected: tuple[tuple[int, int, int], ...] | None = None

    def _signature(self) -> tuple[tuple[int, int, int], ...]:
        stats = [os.stat(p) for p in self._files.paths()]
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            signature = self._signature()
        except OSError:  # a file is being replaced right now: keep what we serve
            return None
        with self._lock:
            if signature in (self._loaded, self._rejected):
                return None
            try:
                config = certificate_configuration(self._files)
            except TLSConfigError as exc:
                self._rejected = signature
                log.warning("TLS files changed but are unusable; keeping the previous: %s", exc)
                return None
            self._loaded = signature
            log.info("TLS certificates reloaded from %s", self._files.cert)
            return config


def server_credentials(
    cert: Path | None, key: Path | None, client_ca: Path | None = None
) -> grpc.ServerCredentials | None:
    """Server credentials for `grpc.aio.Server.add_secure_port`, or None for plain text.

    `cert` and `key` are PEM files (both or neither). With `client_ca` (a PEM CA bundle) the
    server requires and verifies a client certificate chaining to one of those CAs (mutual TLS);
    a client without one, or with one from another CA, fails the handshake (the client sees
    UNAVAILABLE). The files are reloaded when they change (module docstring). Raises
    TLSConfigError as `tls_files` does.
    """
    files = tls_files(cert, key, client_ca)
    if files is None:
        return None
    reloader = _Reloader(files)  # notes the files' state before reading: a change in between counts
    initial = certificate_configuration(files)
    # grpcio: a fetcher returning None means "unchanged" (grpc-stubs types it without None)
    return grpc.dynamic_ssl_server_credentials(
        initial,
        reloader,  # type: ignore[arg-type]
        require_client_authentication=client_ca is not None,
    )
