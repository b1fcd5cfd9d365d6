"""`croupier admin key create|revoke`: tenant API keys, straight on the database.

    CROUPIER_DATABASE_URL=... croupier admin key create --tenant t1 --scope wallet:read \\
        --scope wallet:write --label rgs-eu
    CROUPIER_DATABASE_URL=... croupier admin key revoke KEY_ID

`create` prints the key once (`crp_<key_id>_<secret>`); only its SHA-256 is stored. Scopes:
wallet:read, wallet:write, jackpot:read, jackpot:write, jackpot:admin, events:admin, admin.

`croupier admin review list|approve|reject` (AML reviews of payouts, over gRPC) is in
client/protection_cli.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from client import protection_cli
from server.auth import SCOPES, KeyStore
from server.store.database import open_pool


def _database_url(args: argparse.Namespace) -> str:
    url = args.database_url or os.environ.get("CROUPIER_DATABASE_URL")
    if not url:
        raise SystemExit("croupier admin: set CROUPIER_DATABASE_URL or --database-url")
    return str(url)


async def _with_keys(url: str, action: Any) -> Any:
    pool = await open_pool(url, min_size=1, max_size=2)
    try:
        return await action(KeyStore(pool))
    finally:
        await pool.close()


def _create(args: argparse.Namespace) -> dict[str, Any]:
    async def act(keys: KeyStore) -> dict[str, Any]:
        key_id, key = await keys.create(args.tenant, args.scope, args.label)
        return {
            "key_id": key_id,
            "api_key": key,
            "tenant_id": args.tenant,
            "scopes": args.scope,
            "note": "shown once; only its hash is stored",
        }

    result: dict[str, Any] = asyncio.run(_with_keys(_database_url(args), act))
    return result


def _revoke(args: argparse.Namespace) -> dict[str, Any]:
    async def act(keys: KeyStore) -> dict[str, Any]:
        return {"key_id": args.key_id, "revoked": await keys.revoke(args.key_id)}

    result: dict[str, Any] = asyncio.run(_with_keys(_database_url(args), act))
    return result


def register(subparsers: Any) -> None:
    """Add the `admin` group to the `croupier` parser."""
    admin = subparsers.add_parser("admin", help="administration (API keys)")
    groups = admin.add_subparsers(dest="admin_group", required=True)
    key = groups.add_parser("key", help="tenant API keys")
    actions = key.add_subparsers(dest="key_action", required=True)
    create = actions.add_parser("create", help="create a key and print it once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scope", action="append", required=True, choices=SCOPES)
    create.add_argument("--label", default="")
    create.add_argument("--database-url", default=None)
    create.set_defaults(run=_create)
    revoke = actions.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")
    revoke.add_argument("--database-url", default=None)
    revoke.set_defaults(run=_revoke)
    protection_cli.register_admin(groups)
