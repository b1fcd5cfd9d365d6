"""croupier-webhooks configuration from environment variables (durations in seconds)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from server.events.relay import DEFAULT_AMQP_URL


@dataclass(frozen=True)
class DispatcherSettings:
    """Configuration; every duration is in seconds.

    | variable | default | meaning |
    | CROUPIER_DATABASE_URL | (required) | libpq URL |
    | CROUPIER_AMQP_URL | amqp://guest:guest@127.0.0.1:5672/ | RabbitMQ |
    | CROUPIER_WEBHOOK_QUEUE | croupier.webhooks | durable queue bound to croupier.events |
    | CROUPIER_WEBHOOK_MAX_IN_FLIGHT | 32 | concurrent HTTP deliveries per process |
    | CROUPIER_WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION | 4 | of those, to one subscription |
    | CROUPIER_WEBHOOK_TIMEOUT_SECONDS | 10 | total timeout of one request |
    | CROUPIER_WEBHOOK_MAX_ATTEMPTS | 10 | attempts before a delivery is dead-lettered |
    | CROUPIER_WEBHOOK_BACKOFF_BASE_SECONDS | 1 | first retry ceiling |
    | CROUPIER_WEBHOOK_BACKOFF_CAP_SECONDS | 300 | largest retry ceiling |
    | CROUPIER_WEBHOOK_POLL_SECONDS | 1 | longest sleep between looks for due deliveries |
    | CROUPIER_WEBHOOK_PREFETCH | 100 | unacked broker messages at once |
    """

    database_url: str
    amqp_url: str = DEFAULT_AMQP_URL
    queue: str = "croupier.webhooks"
    max_in_flight: int = 32
    max_in_flight_per_subscription: int = 4
    request_timeout: float = 10.0
    max_attempts: int = 10
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    poll_interval: float = 1.0
    prefetch: int = 100

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DispatcherSettings:
        """Read the settings from `env` (default os.environ); KeyError without a database."""
        e = dict(os.environ if env is None else env)
        return cls(
            database_url=e["CROUPIER_DATABASE_URL"],
            amqp_url=e.get("CROUPIER_AMQP_URL", DEFAULT_AMQP_URL),
            queue=e.get("CROUPIER_WEBHOOK_QUEUE", "croupier.webhooks"),
            max_in_flight=int(e.get("CROUPIER_WEBHOOK_MAX_IN_FLIGHT", "32")),
            max_in_flight_per_subscription=int(
                e.get("CROUPIER_WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "4")
            ),
            request_timeout=float(e.get("CROUPIER_WEBHOOK_TIMEOUT_SECONDS", "10")),
            max_attempts=int(e.get("CROUPIER_WEBHOOK_MAX_ATTEMPTS", "10")),
            backoff_base=float(e.get("CROUPIER_WEBHOOK_BACKOFF_BASE_SECONDS", "1")),
            backoff_cap=float(e.get("CROUPIER_WEBHOOK_BACKOFF_CAP_SECONDS", "300")),
            poll_interval=float(e.get("CROUPIER_WEBHOOK_POLL_SECONDS", "1")),
            prefetch=int(e.get("CROUPIER_WEBHOOK_PREFETCH", "100")),
        )
