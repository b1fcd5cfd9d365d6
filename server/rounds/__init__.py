"""Multi-step rounds with a pending bucket (docs/rounds.md)."""
