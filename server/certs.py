"""Development certificates: a local CA, a server certificate and a client certificate.

`make certs` runs `python -m server.certs .data/certs`, which writes (PEM, keys mode 0600):

| file | what |
| ca.pem / ca.key | a self-signed CA ("Croupier development CA"), 10 years |
| server.pem / server.key | the server, SAN DNS:localhost and IP:127.0.0.1 (plus --host ...) |
| client.pem / client.key | a client (CN croupier-dev-client, clientAuth) for mutual TLS |

Keys are ECDSA P-256. Existing files are kept unless `--force`. For development and tests
only: production certificates come from the operator's own CA. Needs the `cryptography`
package (a dev dependency).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
FILES = ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")


@dataclass(frozen=True)
class DevCerts:
    """Paths of the files `make_dev_certs` wrote (all PEM)."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Croupier development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    days: int,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
    hosts: tuple[str, ...] = (),
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = _name(subject)
    issuer_name, issuer_key = issuer if issuer is not None else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=not ca,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes, private: bool) -> None:
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_dev_certs(
    directory: Path,
    *,
    hosts: tuple[str, ...] = DEFAULT_HOSTS,
    ca_name: str = "Croupier development CA",
    client_name: str = "croupier-dev-client",
    days: int = 825,
    force: bool = False,
) -> DevCerts:
    """Write a CA, a server certificate for `hosts` (DNS names or IP addresses) and a client
    certificate, valid for `days` days (the CA for ten years), into `directory` (created).
    When all six files exist and not `force`, nothing is written. Returns their paths."""
    certs = DevCerts(directory)
    if not force and all((directory / f).exists() for f in FILES):
        return certs
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue(ca_name, ca_key, None, days=3650, ca=True)
    issuer = (ca_cert.subject, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue(
        hosts[0],
        server_key,
        issuer,
        days=days,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        hosts=hosts,
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _issue(
        client_name, client_key, issuer, days=days, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    pem = serialization.Encoding.PEM
    _write(certs.ca, ca_cert.public_bytes(pem), private=False)
    _write(directory / "ca.key", _key_pem(ca_key), private=True)
    _write(certs.server_cert, server_cert.public_bytes(pem), private=False)
    _write(certs.server_key, _key_pem(server_key), private=True)
    _write(certs.client_cert, client_cert.public_bytes(pem), private=False)
    _write(certs.client_key, _key_pem(client_key), private=True)
    return certs


def main(argv: list[str] | None = None) -> int:
    """`python -m server.certs [DIR] [--host H ...] [--force]` (DIR default .data/certs)."""
    parser = argparse.ArgumentParser(prog="python -m server.certs", description=__doc__)
    parser.add_argument("directory", nargs="?", default=".data/certs", type=Path)
    parser.add_argument(
        "--host", action="append", default=[], help="extra server name or IP (repeatable)"
    )
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    hosts = tuple(dict.fromkeys([*DEFAULT_HOSTS, *args.host]))
    existed = all((args.directory / f).exists() for f in FILES)
    certs = make_dev_certs(args.directory, hosts=hosts, force=args.force)
    verb = "kept existing" if existed and not args.force else "wrote"
    print(f"{verb} development CA and certificates in {certs.directory}/ ({', '.join(FILES)})")
    print(
        "serve with mutual TLS:\n"
        f"  CROUPIER_TLS_CERT={certs.server_cert} CROUPIER_TLS_KEY={certs.server_key} "
        f"CROUPIER_TLS_CLIENT_CA={certs.ca} make run"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
