"""Server configuration from environment variables (documented in README.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Everything the server reads from its environment.

    | variable | default | meaning |
    | CROUPIER_DATABASE_URL | (unset: embedded cluster under .data/) | libpq URL |
    | CROUPIER_GRPC_ADDR | 127.0.0.1:50051 | host:port the gRPC server binds |
    | CROUPIER_DATA_DIR | .data | where the embedded cluster lives |
    | CROUPIER_DB_POOL_MIN / _MAX | 4 / 16 | connection pool bounds |
    | CROUPIER_MAX_CONCURRENT_RPCS | 1024 | in-flight RPC bound (then RESOURCE_EXHAUSTED) |
    | CROUPIER_GRACE_SECONDS | 10 | shutdown grace period (seconds) |
    | CROUPIER_HOLD_SWEEP_SECONDS | 5 | how often expired holds are voided (seconds) |
    | CROUPIER_EXTRA_CURRENCIES | "" | extra currency codes, e.g. BTC:8,USDT:6 |
    | CROUPIER_LOG_LEVEL | INFO | Python logging level |
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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings from `env` (default: os.environ)."""
        e = dict(os.environ if env is None else env)
        return cls(
            database_url=e.get("CROUPIER_DATABASE_URL") or None,
            grpc_addr=e.get("CROUPIER_GRPC_ADDR", "127.0.0.1:50051"),
            data_dir=Path(e.get("CROUPIER_DATA_DIR", ".data")),
            pool_min=int(e.get("CROUPIER_DB_POOL_MIN", "4")),
            pool_max=int(e.get("CROUPIER_DB_POOL_MAX", "16")),
            max_concurrent_rpcs=int(e.get("CROUPIER_MAX_CONCURRENT_RPCS", "1024")),
            grace_seconds=float(e.get("CROUPIER_GRACE_SECONDS", "10")),
            hold_sweep_seconds=float(e.get("CROUPIER_HOLD_SWEEP_SECONDS", "5")),
            log_level=e.get("CROUPIER_LOG_LEVEL", "INFO"),
        )
