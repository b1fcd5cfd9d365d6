"""The sportsbook edge: the provider's signed webhook as a thin HTTP -> WalletService gRPC service.

A sportsbook provider (OPERATOR in the provider's spec) POSTs `/transaction` (bet, result) and
`/transaction-rollback` callbacks to us (its CLIENT). The edge checks the
`X-Security-Hash`, parses the body, and forwards one WalletService call per callback over real
gRPC; it keeps no money state. Modules:

| module | holds |
| --- | --- |
| config | integrations (name, tenant, secret, path prefix, currencies) and listen settings |
| signature | HMAC-SHA256 of the raw body, constant-time check |
| protocol | the provider's body -> a typed callback, and the edge's error codes |
| forward | a callback -> one WalletService call; gRPC errors -> edge codes |
| disputes | raw callbacks kept with the wallet transaction they produced (docs/sportsbook.md) |
| http | the aiohttp application: routes, size limit, the always-200 JSON contract |
| admin | the read-only dispute lookup behind a bearer token |
| app | wiring: `build_edge` starts the site on a port (0 in tests) |
| main | `croupier-edge` |
"""
