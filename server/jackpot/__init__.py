"""The jackpot engine (docs/jackpot.md): pools, contributions, triggers, wins, payout saga."""
