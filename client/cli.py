"""`croupier`: the ops command line, one subcommand group per service.

    croupier wallet credit --tenant t1 --player p1 --amount 100.00 --currency EUR
    croupier wallet bet --tenant t1 --player p1 --bet-id b1 --amount 2.50 --currency EUR
    croupier wallet settle --tenant t1 --player p1 --bet-id b1 --win 5.00 --currency EUR
    croupier wallet balance --tenant t1 --player p1

Every command prints its response as JSON (google.protobuf.json_format, proto field names) on
stdout and exits 0. A failure prints one JSON object `{"code", "reason", "message", ...}` on
stderr and exits 1. The server is `--target` (env CROUPIER_TARGET, default 127.0.0.1:50051),
the tenant `--tenant` (env CROUPIER_TENANT).

A group is a module exposing `register(subparsers)`: it adds its parser to `subparsers` and
gives every leaf command a `run` default, a function of the parsed arguments returning a
protobuf message or JSON-ready data. `GROUPS` lists the modules; a missing one is skipped, so a
group can ship separately (the sportsbook group, `client.sportsbook_cli`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from client.errors import CroupierError
from client.wallet import DEFAULT_TARGET
from server.errors import DomainError, invalid

GROUPS = (
    "client.wallet_cli",
    "client.sportsbook_cli",
    "client.events_cli",
    "client.jackpot_cli",
    "client.admin_cli",
    "client.reconcile_cli",
    "client.export_cli",
)


def connection_options() -> argparse.ArgumentParser:
    """A parent parser for leaf commands: `--target`, `--tenant`, `--api-key`, `--tls-ca`,
    `--tls-cert`, `--tls-key` and `--timeout` (see `channel_credentials`)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--target",
        default=os.environ.get("CROUPIER_TARGET") or DEFAULT_TARGET,
        help="server host:port (env CROUPIER_TARGET, default %(default)s)",
    )
    tenant = os.environ.get("CROUPIER_TENANT")
    parent.add_argument(
        "--tenant",
        default=tenant,
        required=not tenant,
        help="tenant id (env CROUPIER_TENANT)",
    )
    parent.add_argument(
        "--api-key",
        default=os.environ.get("CROUPIER_API_KEY") or None,
        help="tenant API key, when the server requires one (env CROUPIER_API_KEY)",
    )
    for flag, env, what in (
        ("--tls-ca", "CROUPIER_CLIENT_TLS_CA", "PEM CA bundle to trust: use TLS"),
        ("--tls-cert", "CROUPIER_CLIENT_TLS_CERT", "PEM client certificate (mutual TLS)"),
        ("--tls-key", "CROUPIER_CLIENT_TLS_KEY", "PEM client key (mutual TLS)"),
    ):
        parent.add_argument(flag, default=os.environ.get(env) or None, help=f"{what} (env {env})")
    parent.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="deadline of each attempt in seconds (default %(default)s)",
    )
    return parent


def channel_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS credentials from `--tls-ca` (and `--tls-cert`/`--tls-key` for mutual TLS), or None
    for plain text. Raises DomainError INVALID_ARGUMENT `INVALID_TLS_FILE` naming the option
    when a file is missing or unreadable, or a certificate comes without its key."""

    def read(option: str) -> bytes | None:
        path = getattr(args, option)
        try:
            return Path(path).read_bytes() if path else None
        except OSError as exc:
            flag = "--" + option.replace("_", "-")
            raise invalid(flag, "INVALID_TLS_FILE", f"{flag} {path}: {exc.strerror}") from exc

    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_cert and not args.tls_ca):
        raise invalid(
            "--tls-cert", "INVALID_TLS_FILE", "mutual TLS needs --tls-ca, --tls-cert and --tls-key"
        )
    if not args.tls_ca:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=read("tls_ca"),
        private_key=read("tls_key"),
        certificate_chain=read("tls_cert"),
    )


def build_parser() -> argparse.ArgumentParser:
    """The `croupier` parser with every installed group registered."""
    parser = argparse.ArgumentParser(
        prog="croupier", description="Croupier ops command line (JSON out)."
    )
    groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    for name in GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the group exists but one of its imports is missing
                raise
            continue
        module.register(groups)
    return parser


def to_json(result: Message | Any) -> str:
    """A response as indented JSON: a protobuf message through json_format (proto field
    names, zero values included), anything else through json.dumps."""
    if isinstance(result, Message):
        result = json_format.MessageToDict(
            result, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    return json.dumps(result, indent=2, sort_keys=False)


def error_json(exc: CroupierError | DomainError, **extra: str) -> str:
    """One JSON object for a failure: code, reason, message, metadata (and `extra`)."""
    if isinstance(exc, CroupierError):
        body = exc.to_dict()
    else:
        body = {
            "code": exc.code.name,
            "reason": exc.reason,
            "domain": "croupier",
            "message": exc.message,
            "metadata": exc.metadata,
        }
    body.update(extra)
    return json.dumps(body)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 failed call, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except (CroupierError, DomainError) as exc:
        extra = {"idempotency_key": key} if (key := getattr(args, "idempotency_key", "")) else {}
        print(error_json(exc, **extra), file=sys.stderr)
        return 1
    print(to_json(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
