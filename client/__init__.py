"""Croupier's Python client library and the `croupier` ops CLI.

    from client import WalletClient, AsyncWalletClient, RetryPolicy
    from client.errors import InsufficientFunds, IdempotencyKeyReused

See `client.wallet` (the clients), `client.wallet_calls` (the keyword arguments of every
RPC), `client.retry` (what is retried and how), `client.errors` (one class per reason) and
`client.cli` (the command line).
"""

from client.retry import RetryPolicy
from client.wallet import AsyncWalletClient, WalletClient

__all__ = ["AsyncWalletClient", "RetryPolicy", "WalletClient"]
