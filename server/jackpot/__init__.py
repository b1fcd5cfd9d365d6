"""The jackpot engine (issue 3, seed 000): pools, contributions, triggers, wins, payout saga."""
