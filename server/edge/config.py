"""Edge configuration: integrations from a TOML file or JSON in the environment, and settings.

An integration is one sportsbook provider account (the provider's spec: "After filling this
form, OPERATOR will provide ... <SECURITY_HASH>"): its `name` scopes the wallet idempotency keys
(`sb:<name>:<transaction_id>`), `tenant` is the Croupier tenant its players live in, `secret` is
the shared HMAC key, `path_prefix` is where its callbacks arrive (`<prefix>/transaction`,
`<prefix>/transaction-rollback`), and `currencies` optionally restricts the accepted codes
(the provider's spec: "Currency or currencies USD, EUR, GBP"; empty = any currency the
wallet accepts).

File form (`CROUPIER_EDGE_CONFIG=path/to/edge.toml`):

    [[integration]]
    name = "acme"
    tenant = "casino-1"
    secret_env = "ACME_SB_SECRET"      # or: secret = "..." (inline, for dev only)
    path_prefix = "/sportsbook/acme"
    currencies = ["USD", "EUR", "GBP"]
    api_key_env = "ACME_WALLET_KEY"    # optional: the tenant API key (wallet:read, wallet:write)
                                       # when the server runs with CROUPIER_AUTH=required

Environment form (`CROUPIER_EDGE_INTEGRATIONS`): a JSON list of the same tables. Both may be
given; names and prefixes must be unique. Secrets are kept out of every repr and log line.

| variable | default | meaning |
| --- | --- | --- |
| CROUPIER_EDGE_ADDR | 127.0.0.1:8080 | host:port the HTTP edge binds |
| CROUPIER_EDGE_WALLET_ADDR | $CROUPIER_GRPC_ADDR or 127.0.0.1:50051 | WalletService gRPC target |
| CROUPIER_EDGE_CONFIG | (unset) | TOML file with `[[integration]]` tables |
| CROUPIER_EDGE_INTEGRATIONS | (unset) | JSON list of integration tables |
| CROUPIER_EDGE_MAX_BODY_BYTES | 65536 | larger callbacks are refused `BODY_TOO_LARGE` |
| CROUPIER_EDGE_WALLET_TIMEOUT | 5 | seconds per wallet call attempt (gRPC deadline) |
| CROUPIER_EDGE_ADMIN_TOKEN | (unset: admin API off) | bearer token of the dispute lookup API |
| CROUPIER_DATABASE_URL | (unset: the running server's embedded cluster) | dispute storage |
| CROUPIER_DATA_DIR | .data | where `croupier-server` keeps its embedded cluster |
| CROUPIER_LOG_LEVEL | INFO | Python logging level |
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from server.money import exponent_of

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")
_TENANT = re.compile(r"^[\x21-\x7e]{1,128}$")
MIN_SECRET_BYTES = 16
DEFAULT_MAX_BODY_BYTES = 64 * 1024
# The documented development secret of `server/edge/dev.toml` (docs/sportsbook.md): never for
# production; the edge logs a warning when an integration uses it.
DEV_SECRET = "croupier-dev-secret-do-not-use-in-production"


class ConfigError(ValueError):
    """The edge configuration is invalid (the message names the integration and the key)."""


@dataclass(frozen=True)
class Integration:
    """One provider integration. `secret` is never shown by repr (nor logged)."""

    name: str
    tenant_id: str
    secret: bytes = field(repr=False)
    path_prefix: str
    currencies: frozenset[str] = frozenset()
    api_key: str | None = field(default=None, repr=False)

    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata of this integration's wallet calls: its tenant API key, if any
        (`authorization: Bearer <key>`, for a server run with CROUPIER_AUTH=required)."""
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    @property
    def uses_dev_secret(self) -> bool:
        """Whether the secret is the documented development one."""
        return self.secret == DEV_SECRET.encode()

    def accepts_currency(self, currency: str) -> bool:
        """Whether callbacks in `currency` are accepted (configured list, else any)."""
        return not self.currencies or currency in self.currencies


def integration_from(table: Mapping[str, Any], env: Mapping[str, str]) -> Integration:
    """Build and validate one integration from its table; raises ConfigError."""
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"integration name {name!r}: expected 1-32 of [a-z0-9_-]")
    where = f"integration {name!r}"
    tenant = table.get("tenant")
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise ConfigError(f"{where}: tenant must be 1-128 printable ASCII characters")
    if "secret" in table and "secret_env" in table:
        raise ConfigError(f"{where}: give secret or secret_env, not both")
    if "secret_env" in table:
        var = table["secret_env"]
        if not isinstance(var, str) or not env.get(var):
            raise ConfigError(f"{where}: secret_env names an unset variable {var!r}")
        secret = env[var]
    else:
        secret = table.get("secret", "")
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"{where}: secret or secret_env is required")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"{where}: the secret must be at least {MIN_SECRET_BYTES} bytes")
    prefix = table.get("path_prefix", f"/sportsbook/{name}")
    if not isinstance(prefix, str) or not _PREFIX.match(prefix) or prefix.startswith("/admin"):
        raise ConfigError(f"{where}: path_prefix must look like /sportsbook/{name} (or be empty)")
    currencies = table.get("currencies", [])
    if not isinstance(currencies, list) or not all(isinstance(c, str) for c in currencies):
        raise ConfigError(f"{where}: currencies must be a list of codes")
    for code in currencies:
        if exponent_of(code) is None:
            raise ConfigError(f"{where}: unknown currency {code!r}")
    api_key = table.get("api_key")
    if "api_key_env" in table:
        api_key = env.get(str(table["api_key_env"])) or None
        if api_key is None:
            raise ConfigError(f"{where}: api_key_env names an unset variable")
    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        raise ConfigError(f"{where}: api_key must be a non-empty string")
    return Integration(name, tenant, secret.encode(), prefix, frozenset(currencies), api_key)


def load_integrations(env: Mapping[str, str]) -> tuple[Integration, ...]:
    """Integrations from CROUPIER_EDGE_CONFIG (TOML) and CROUPIER_EDGE_INTEGRATIONS (JSON).

    Raises ConfigError on a malformed source, a bad table, or a duplicate name or prefix.
    """
    tables: list[Any] = []
    if path := env.get("CROUPIER_EDGE_CONFIG"):
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"CROUPIER_EDGE_CONFIG {path}: {exc}") from exc
        tables.extend(_as_list(doc.get("integration", []), f"{path}: [[integration]]"))
    if text := env.get("CROUPIER_EDGE_INTEGRATIONS"):
        try:
            doc_list = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"CROUPIER_EDGE_INTEGRATIONS is not JSON: {exc.msg}") from exc
        tables.extend(_as_list(doc_list, "CROUPIER_EDGE_INTEGRATIONS"))
    out: list[Integration] = []
    for table in tables:
        if not isinstance(table, dict):
            raise ConfigError("each integration must be a table / JSON object")
        out.append(integration_from(table, env))
    check_unique(out)
    return tuple(out)


def dev_integrations() -> tuple[Integration, ...]:
    """The packaged development integration (`server/edge/dev.toml`, public secret)."""
    text = resources.files("server.edge").joinpath("dev.toml").read_text(encoding="utf-8")
    tables = _as_list(tomllib.loads(text).get("integration", []), "dev.toml")
    return tuple(integration_from(t, {}) for t in tables)


def _as_list(value: Any, where: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list")
    return value


def check_unique(integrations: Sequence[Integration]) -> None:
    """Raise ConfigError if two integrations share a name or a path prefix."""
    names = [i.name for i in integrations]
    prefixes = [i.path_prefix for i in integrations]
    for label, values in (("name", names), ("path_prefix", prefixes)):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ConfigError(f"duplicate integration {label}: {', '.join(dupes)}")


@dataclass(frozen=True)
class EdgeSettings:
    """Everything `croupier-edge` reads from its environment (table in the module doc)."""

    addr: str
    wallet_addr: str
    integrations: tuple[Integration, ...]
    database_url: str | None
    data_dir: Path
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    wallet_timeout: float = 5.0
    admin_token: str | None = field(default=None, repr=False)
    log_level: str = "INFO"

    @property
    def host(self) -> str:
        """The host part of `addr`."""
        return self.addr.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        """The port part of `addr` (0 = any free port)."""
        return int(self.addr.rsplit(":", 1)[1])

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EdgeSettings:
        """Read the settings from `env` (default: os.environ); raises ConfigError."""
        e = dict(os.environ if env is None else env)
        try:
            max_body = int(e.get("CROUPIER_EDGE_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES)))
            timeout = float(e.get("CROUPIER_EDGE_WALLET_TIMEOUT", "5"))
        except ValueError as exc:
            raise ConfigError(f"bad number in the edge settings: {exc}") from exc
        if not 256 <= max_body <= 16 * 1024 * 1024:
            raise ConfigError("CROUPIER_EDGE_MAX_BODY_BYTES must be 256 bytes to 16 MiB")
        addr = e.get("CROUPIER_EDGE_ADDR", "127.0.0.1:8080")
        if ":" not in addr or not addr.rsplit(":", 1)[1].isdigit():
            raise ConfigError(f"CROUPIER_EDGE_ADDR {addr!r}: expected host:port")
        return cls(
            addr=addr,
            wallet_addr=e.get("CROUPIER_EDGE_WALLET_ADDR")
            or e.get("CROUPIER_GRPC_ADDR", "127.0.0.1:50051"),
            integrations=load_integrations(e),
            database_url=e.get("CROUPIER_DATABASE_URL") or None,
            data_dir=Path(e.get("CROUPIER_DATA_DIR", ".data")),
            max_body_bytes=max_body,
            wallet_timeout=timeout,
            admin_token=e.get("CROUPIER_EDGE_ADMIN_TOKEN") or None,
            log_level=e.get("CROUPIER_LOG_LEVEL", "INFO"),
        )
