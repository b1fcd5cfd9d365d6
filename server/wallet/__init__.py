"""The wallet domain: holds, settlements, credits, debits and rollbacks over the ledger."""
