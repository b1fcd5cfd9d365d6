"""The sportsbook edge: seed 001's signed webhook as a thin HTTP -> WalletService gRPC service.

A sportsbook provider (the seed's OPERATOR) POSTs `/transaction` (bet, result) and
`/transaction-rollback` callbacks to us (the seed's CLIENT). The edge checks the
`X-Security-Hash`, parses the body, and forwards one WalletService call per callback over real
gRPC; it keeps no money state. Modules:

| module | holds |
| --- | --- |
| config | integrations (name, tenant, secret, path prefix, currencies) and listen settings |
| signature | HMAC-SHA256 of the raw body, constant-time check |
| protocol | the seed-001 body -> a typed callback, and the edge's error codes |
| forward | a callback -> one WalletService call; gRPC errors -> edge codes |
| disputes | raw callbacks kept with the wallet transaction they produced (seed 002) |
| http | the aiohttp application: routes, size limit, the always-200 JSON contract |
| admin | the read-only dispute lookup behind a bearer token |
| app | wiring: `build_edge` starts the site on a port (0 in tests) |
| main | `croupier-edge` |
"""
