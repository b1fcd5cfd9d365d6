"""Server configuration from environment variables (documented in README.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _path(value: str | None) -> Path | None:
    """A file path from an environment value; unset or empty is None."""
    return Path(value) if value else None


@dataclass(frozen=True)
class Settings:
    """Everything the server reads from its environment.

    | variable | default | meaning |
    | CROUPIER_DATABASE_URL | (unset: embedded cluster under .data/) | libpq URL |
    | CROUPIER_GRPC_ADDR | 127.0.0.1:50051 | host:port the gRPC server binds |
    | CROUPIER_DATA_DIR | .data | where the embedded cluster lives |
    | CROUPIER_DB_POOL_MIN / _MAX | 2 / 4 | connection pool bounds per worker (measured) |
    | CROUPIER_DB_POOL_TIMEOUT | 5 | seconds a call waits for a connection, then UNAVAILABLE |
    | CROUPIER_READ_DATABASE_URL | (unset: reads on the primary) | a standby for stale-tolerant |
    |   | | reads (history, pools, reports; server.store.replica) |
    | CROUPIER_READ_MAX_LAG_SECONDS | 5 | a standby further behind is bypassed (seconds) |
    | CROUPIER_MAX_CONCURRENT_RPCS | 1024 | in-flight RPC bound (then RESOURCE_EXHAUSTED) |
    | CROUPIER_GRACE_SECONDS | 10 | shutdown grace period (seconds) |
    | CROUPIER_HOLD_SWEEP_SECONDS | 5 | how often expired holds are voided (seconds) |
    | CROUPIER_JP_PAYOUT_RETRY_SECONDS | 1 | how often due jackpot payouts are retried (seconds) |
    | CROUPIER_JP_PAYOUT_DELAY_SECONDS | 0 | delay before a win's first payout attempt (seconds; |
    |   | | chaos tests, or a short hold before crediting) |
    | CROUPIER_EXTRA_CURRENCIES | "" | extra currency codes, e.g. BTC:8,USDT:6 |
    | CROUPIER_LOG_LEVEL | INFO | Python logging level |
    | CROUPIER_TLS_CERT / _KEY | (unset: plain text) | PEM server certificate chain and key |
    | CROUPIER_TLS_CLIENT_CA | (unset: no client certificates) | PEM CA bundle; when set, |
    |   | | clients must present a certificate from it (mutual TLS; server/tls.py) |
    | CROUPIER_AUTH | off | `required`: every call needs a tenant API key (server.auth) |
    | CROUPIER_METRICS_ADDR | 127.0.0.1:9464 | Prometheus /metrics (worker i: port + i) |
    | CROUPIER_CONTRIBUTION_BATCH | 64 | most contributions per group commit; 1 = off |
    | CROUPIER_WALLET_BATCH | 32 | most wallet writes per group commit; 1 = off |
    | CROUPIER_WALLET_INFLIGHT | pool max - 1 | wallet group-commit transactions in flight per |
    |   | | worker before requests queue for a batch (server.group_commit) |
    | CROUPIER_EVENT_LOOP | uvloop | `asyncio`: the standard event loop instead of uvloop |
    """

    database_url: str | None
    grpc_addr: str
    data_dir: Path
    pool_min: int
    pool_max: int
    max_concurrent_rpcs: int
    grace_seconds: float
    hold_sweep_seconds: float
    log_level: str
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    payout_retry_seconds: float = 1.0
    payout_start_delay_seconds: float = 0.0
    auth_required: bool = False
    metrics_addr: str = ""
    contribution_batch: int = 64
    wallet_batch: int = 32
    wallet_inflight: int = 0  # 0: server.group_commit.default_inflight (pool max - 1)
    event_loop: str = "uvloop"
    pool_timeout: float = 5.0
    read_database_url: str | None = None
    read_max_lag_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings from `env` (default: os.environ)."""
        e = dict(os.environ if env is None else env)
        return cls(
            database_url=e.get("CROUPIER_DATABASE_URL") or None,
            grpc_addr=e.get("CROUPIER_GRPC_ADDR", "127.0.0.1:50051"),
            data_dir=Path(e.get("CROUPIER_DATA_DIR", ".data")),
            pool_min=int(e.get("CROUPIER_DB_POOL_MIN", "2")),
            pool_max=int(e.get("CROUPIER_DB_POOL_MAX", "4")),
            max_concurrent_rpcs=int(e.get("CROUPIER_MAX_CONCURRENT_RPCS", "1024")),
            grace_seconds=float(e.get("CROUPIER_GRACE_SECONDS", "10")),
            hold_sweep_seconds=float(e.get("CROUPIER_HOLD_SWEEP_SECONDS", "5")),
            log_level=e.get("CROUPIER_LOG_LEVEL", "INFO"),
            tls_cert=_path(e.get("CROUPIER_TLS_CERT")),
            tls_key=_path(e.get("CROUPIER_TLS_KEY")),
            tls_client_ca=_path(e.get("CROUPIER_TLS_CLIENT_CA")),
            payout_retry_seconds=float(e.get("CROUPIER_JP_PAYOUT_RETRY_SECONDS", "1")),
            payout_start_delay_seconds=float(e.get("CROUPIER_JP_PAYOUT_DELAY_SECONDS", "0")),
            auth_required=e.get("CROUPIER_AUTH", "off").lower() == "required",
            contribution_batch=max(1, int(e.get("CROUPIER_CONTRIBUTION_BATCH", "64"))),
            wallet_batch=max(1, int(e.get("CROUPIER_WALLET_BATCH", "32"))),
            wallet_inflight=max(0, int(e.get("CROUPIER_WALLET_INFLIGHT", "0"))),
            event_loop=e.get("CROUPIER_EVENT_LOOP", "uvloop").lower(),
            metrics_addr=e.get("CROUPIER_METRICS_ADDR", "127.0.0.1:9464"),
            pool_timeout=float(e.get("CROUPIER_DB_POOL_TIMEOUT", "5")),
            read_database_url=e.get("CROUPIER_READ_DATABASE_URL") or None,
            read_max_lag_seconds=float(e.get("CROUPIER_READ_MAX_LAG_SECONDS", "5")),
        )
