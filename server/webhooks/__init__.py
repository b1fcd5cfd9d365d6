"""Webhook subscriptions and the croupier-webhooks dispatcher (docs/webhooks.md)."""
