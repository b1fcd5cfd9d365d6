"""Provider reconciliation, disputes, round export and retention (docs/reconciliation.md)."""
