"""Operations tooling: the local HA cluster (ha.py) and backups (pitr.py)."""
