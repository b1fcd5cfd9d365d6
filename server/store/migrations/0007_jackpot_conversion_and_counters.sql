-- Jackpot engine, second step (issue 3): contributions in other currencies at configured rates,
-- the contribution fraction carried in 10^-12 minor units (so a conversion's rounding is carried
-- too), counter rows that know their pool's config_version and return their last split (one
-- statement per contribution), and no unique key on contributions (the request's idempotency
-- record, written in the same transaction, is the guard).

-- other bet currencies: code -> minor units of the jackpot's currency per 10^6 minor units of it
ALTER TABLE jp_jackpots ADD COLUMN conversion_rates jsonb NOT NULL DEFAULT '{}';

-- total_carry: millionths -> 10^-12 of a minor unit (bet x conversion x rate)
ALTER TABLE jp_pool_shards DROP CONSTRAINT jp_pool_shards_total_carry_check;
UPDATE jp_pool_shards SET total_carry = total_carry * 1000000;
ALTER TABLE jp_pool_shards
    ADD CONSTRAINT jp_pool_shards_total_carry_check
        CHECK (total_carry BETWEEN 0 AND 999999999999),
    ADD COLUMN config_version bigint NOT NULL DEFAULT 1,  -- the pool's version these rows follow
    ADD COLUMN last_total     bigint NOT NULL DEFAULT 0,  -- the last contribution's total and
    ADD COLUMN last_reseed    bigint NOT NULL DEFAULT 0;  -- reseed parts (returned by the add)
UPDATE jp_pool_shards s SET config_version = p.config_version
  FROM jp_pools p WHERE p.pool_id = s.pool_id;

-- the bet as sent ('' = the jackpot's currency, for rows written before this migration)
ALTER TABLE jp_contributions
    ADD COLUMN bet_currency     text   NOT NULL DEFAULT '',
    ADD COLUMN conversion_micro bigint NOT NULL DEFAULT 1000000,
    DROP CONSTRAINT jp_contributions_pool_id_tenant_id_idempotency_key_key;
