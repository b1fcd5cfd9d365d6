"""Webhook subscriptions and the croupier-webhooks dispatcher (issue 5 item 5, seed 004)."""
