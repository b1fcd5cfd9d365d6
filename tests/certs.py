"""Development certificates: a local CA, a server certificate and a client certificate.

Made with `trustme` (a certificate authority built for tests and development). The tests call
`make_dev_certs`; `make certs` runs `python -m tests.certs .data/certs`, which writes (PEM,
keys mode 0600):

| file | what |
| ca.pem / ca.key | a development CA |
| server.pem / server.key | the server, SAN DNS:localhost and IP:127.0.0.1 (plus --host ...) |
| client.pem / client.key | a client (CN croupier-dev-client) for mutual TLS |

Keys are ECDSA P-256. Existing files are kept unless `--force`. For development and tests
only: production certificates come from the operator's own CA.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import trustme

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


def _write(path: Path, data: bytes, private: bool) -> None:
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)


def make_dev_certs(
    directory: Path,
    *,
    hosts: tuple[str, ...] = DEFAULT_HOSTS,
    ca_name: str = "Croupier development CA",
    client_name: str = "croupier-dev-client",
    days: int = 825,
    force: bool = False,
) -> DevCerts:
    """Write a CA (organization `ca_name`), a server certificate for `hosts` (DNS names or IP
    addresses) and a client certificate (common name `client_name`), valid for `days` days,
    into `directory` (created). When all six files exist and not `force`, nothing is written.
    Returns their paths."""
    certs = DevCerts(directory)
    if not force and all((directory / f).exists() for f in FILES):
        return certs
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name=ca_name)
    now = dt.datetime.now(dt.UTC)
    validity = {
        "not_before": now - dt.timedelta(minutes=5),
        "not_after": now + dt.timedelta(days=days),
    }
    server = ca.issue_cert(*hosts, common_name=hosts[0], **validity)
    client = ca.issue_cert(common_name=client_name, **validity)
    _write(certs.ca, ca.cert_pem.bytes(), private=False)
    _write(directory / "ca.key", ca.private_key_pem.bytes(), private=True)
    _write(certs.server_cert, server.cert_chain_pems[0].bytes(), private=False)
    _write(certs.server_key, server.private_key_pem.bytes(), private=True)
    _write(certs.client_cert, client.cert_chain_pems[0].bytes(), private=False)
    _write(certs.client_key, client.private_key_pem.bytes(), private=True)
    return certs


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.certs [DIR] [--host H ...] [--force]` (DIR default .data/certs)."""
    parser = argparse.ArgumentParser(prog="python -m tests.certs", description=__doc__)
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
