"""Operator tooling that is not part of the serving path: local HA and Citus clusters, backups."""
