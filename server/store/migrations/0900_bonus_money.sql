-- Bonus money (docs/bonus.md): a player account gains two buckets beside `available` (cash),
-- `held` and `pending`:
--   bonus   bonus money granted by the operator, funded by the tenant's `house_bonus` account;
--   locked  the player's real money tied to an active bonus (a locked deposit and the wins of
--           bets paid with it) until the bonus is completed, forfeited or expired.
-- As for the other buckets, only postings change them: the balance rule's triggers (the
-- statement form `apply_postings` on one PostgreSQL, the row form `apply_posting` on Citus)
-- apply them to player accounts and the guard refuses any other change. A player with no
-- bonus keeps both at zero.

ALTER TABLE accounts ADD COLUMN bonus bigint NOT NULL DEFAULT 0,
                     ADD COLUMN locked bigint NOT NULL DEFAULT 0;
-- (one constraint per statement: Citus propagates no ADD CONSTRAINT with other subcommands)
ALTER TABLE accounts ADD CONSTRAINT player_bonus_not_negative CHECK (bonus >= 0);
ALTER TABLE accounts ADD CONSTRAINT player_locked_not_negative CHECK (locked >= 0);

ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check
    CHECK (kind IN ('player', 'house_game', 'house_cashier', 'house_bonus')) NOT VALID;
ALTER TABLE accounts VALIDATE CONSTRAINT accounts_kind_check;

ALTER TABLE postings DROP CONSTRAINT postings_bucket_check;
ALTER TABLE postings ADD CONSTRAINT postings_bucket_check
    CHECK (bucket IN ('available', 'held', 'pending', 'bonus', 'locked')) NOT VALID;
ALTER TABLE postings VALIDATE CONSTRAINT postings_bucket_check;

ALTER TABLE transactions DROP CONSTRAINT transactions_kind_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_kind_check
    CHECK (kind IN ('authorize', 'settle', 'cancel', 'credit', 'debit', 'rollback', 'expire',
                    'round', 'bonus')) NOT VALID;
ALTER TABLE transactions VALIDATE CONSTRAINT transactions_kind_check;

-- The split of a hold's amount: `amount` = cash part + bonus_part + locked_part, taken in the
-- tenant's spend order; `bonus_id` names the bonus the non-cash parts belong to;
-- `game_category` (the bet's metadata `game_category`) picks the bet's wagering weight.
ALTER TABLE holds ADD COLUMN bonus_part bigint NOT NULL DEFAULT 0,
                  ADD COLUMN locked_part bigint NOT NULL DEFAULT 0,
                  ADD COLUMN bonus_id uuid,
                  ADD COLUMN game_category text NOT NULL DEFAULT '';
ALTER TABLE holds ADD CONSTRAINT holds_bonus_part_check CHECK (bonus_part >= 0);
ALTER TABLE holds ADD CONSTRAINT holds_locked_part_check CHECK (locked_part >= 0);
ALTER TABLE holds ADD CONSTRAINT holds_parts_within_amount
    CHECK (bonus_part + locked_part <= amount);

CREATE OR REPLACE FUNCTION apply_posting() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
BEGIN
    SELECT sum(amount) INTO total FROM postings
     WHERE tenant_id = NEW.tenant_id AND transaction_id = NEW.transaction_id
       AND currency = NEW.currency;
    IF total <> 0 THEN
        RAISE EXCEPTION 'unbalanced transaction % in %: postings sum to %',
            NEW.transaction_id, NEW.currency, total
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM set_config('croupier.applying_postings', 'on', true);
    IF NEW.bucket = 'available' THEN
        UPDATE accounts SET available = available + NEW.amount
         WHERE tenant_id = NEW.tenant_id AND account_id = NEW.account_id AND kind = 'player';
    ELSIF NEW.bucket = 'held' THEN
        UPDATE accounts SET held = held + NEW.amount
         WHERE tenant_id = NEW.tenant_id AND account_id = NEW.account_id AND kind = 'player';
    ELSE
        -- pending, bonus and locked money is stored on player accounts only: such a posting
        -- on a house account would be lost from every stored balance.
        IF NEW.bucket = 'pending' THEN
            UPDATE accounts SET pending = pending + NEW.amount
             WHERE tenant_id = NEW.tenant_id AND account_id = NEW.account_id AND kind = 'player';
        ELSIF NEW.bucket = 'bonus' THEN
            UPDATE accounts SET bonus = bonus + NEW.amount
             WHERE tenant_id = NEW.tenant_id AND account_id = NEW.account_id AND kind = 'player';
        ELSE
            UPDATE accounts SET locked = locked + NEW.amount
             WHERE tenant_id = NEW.tenant_id AND account_id = NEW.account_id AND kind = 'player';
        END IF;
        IF NOT FOUND THEN
            RAISE EXCEPTION '% postings are for player accounts only', NEW.bucket
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    PERFORM set_config('croupier.applying_postings', 'off', true);
    RETURN NULL;
END $$;

-- The statement form of the same rule (plain PostgreSQL; see 0800_distributable_schema.sql):
-- both functions change together.
CREATE OR REPLACE FUNCTION apply_postings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced record;
BEGIN
    SELECT tenant_id, transaction_id, currency, sum(amount) AS total INTO unbalanced
      FROM new_postings GROUP BY tenant_id, transaction_id, currency
    HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unbalanced transaction % in %: postings sum to %',
            unbalanced.transaction_id, unbalanced.currency, unbalanced.total
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM set_config('croupier.applying_postings', 'on', true);
    UPDATE accounts a
       SET available = a.available + d.available, held = a.held + d.held,
           pending = a.pending + d.pending, bonus = a.bonus + d.bonus,
           locked = a.locked + d.locked
      FROM (SELECT tenant_id, account_id,
                   sum(amount) FILTER (WHERE bucket = 'available') AS available_delta,
                   sum(amount) FILTER (WHERE bucket = 'held') AS held_delta,
                   sum(amount) FILTER (WHERE bucket = 'pending') AS pending_delta,
                   sum(amount) FILTER (WHERE bucket = 'bonus') AS bonus_delta,
                   sum(amount) FILTER (WHERE bucket = 'locked') AS locked_delta
              FROM new_postings GROUP BY tenant_id, account_id) s
     CROSS JOIN LATERAL (SELECT coalesce(s.available_delta, 0) AS available,
                                coalesce(s.held_delta, 0) AS held,
                                coalesce(s.pending_delta, 0) AS pending,
                                coalesce(s.bonus_delta, 0) AS bonus,
                                coalesce(s.locked_delta, 0) AS locked) d
     WHERE a.tenant_id = s.tenant_id AND a.account_id = s.account_id AND a.kind = 'player';
    PERFORM set_config('croupier.applying_postings', 'off', true);
    RETURN NULL;
END $$;

-- Pending, bonus and locked money is stored on player accounts only.
CREATE OR REPLACE FUNCTION pending_is_player_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad text;
BEGIN
    SELECT p.bucket INTO bad FROM new_postings p
      JOIN accounts a ON a.tenant_id = p.tenant_id AND a.account_id = p.account_id
     WHERE p.bucket IN ('pending', 'bonus', 'locked') AND a.kind <> 'player' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '% postings are for player accounts only', bad
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION balances_change_only_by_posting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.available IS DISTINCT FROM OLD.available OR NEW.held IS DISTINCT FROM OLD.held
        OR NEW.pending IS DISTINCT FROM OLD.pending OR NEW.bonus IS DISTINCT FROM OLD.bonus
        OR NEW.locked IS DISTINCT FROM OLD.locked)
       AND coalesce(current_setting('croupier.applying_postings', true), 'off') <> 'on' THEN
        RAISE EXCEPTION 'account % balance may change only through postings', OLD.account_id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

DROP VIEW account_balances;
CREATE VIEW account_balances AS
SELECT a.account_id, a.tenant_id, a.kind, a.owner, a.currency,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'available'), 0) AS available,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'held'), 0) AS held,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'pending'), 0) AS pending,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'bonus'), 0) AS bonus,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'locked'), 0) AS locked
  FROM accounts a
  LEFT JOIN postings p ON p.tenant_id = a.tenant_id AND p.account_id = a.account_id
 GROUP BY a.tenant_id, a.account_id;

-- Per-tenant bonus rules: the order a bet takes money from the buckets, and what a withdrawal
-- does to an active bonus ('refuse' the withdrawal, or 'forfeit' the bonus first).
CREATE TABLE bonus_settings (
    tenant_id         text   NOT NULL PRIMARY KEY,
    spend_order       text[] NOT NULL DEFAULT ARRAY['cash', 'locked', 'bonus']
                      CHECK (spend_order IN (ARRAY['cash', 'locked', 'bonus'],
                                             ARRAY['cash', 'bonus', 'locked'],
                                             ARRAY['locked', 'cash', 'bonus'],
                                             ARRAY['locked', 'bonus', 'cash'],
                                             ARRAY['bonus', 'cash', 'locked'],
                                             ARRAY['bonus', 'locked', 'cash'])),
    withdrawal_policy text   NOT NULL DEFAULT 'refuse'
                      CHECK (withdrawal_policy IN ('refuse', 'forfeit')),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- A bonus: at most one active per player and currency. Money in minor units of `currency`;
-- `requirement` is the weighted turnover to reach (multiplier x base), `wagered_ppm` the
-- weighted turnover so far in millionths of a minor unit (stake x weight in ppm), so no
-- fraction is dropped. Weights are ppm (0 to 1,000,000 = 0% to 100%).
CREATE TABLE bonuses (
    tenant_id           text        NOT NULL,
    bonus_id            uuid        NOT NULL,
    player_id           text        NOT NULL,
    currency            text        NOT NULL,
    account_id          bigint      NOT NULL,
    state               text        NOT NULL
                        CHECK (state IN ('active', 'completed', 'forfeited', 'expired')),
    amount              bigint      NOT NULL CHECK (amount >= 0),
    locked_deposit      bigint      NOT NULL DEFAULT 0 CHECK (locked_deposit >= 0),
    multiplier          integer     NOT NULL CHECK (multiplier BETWEEN 0 AND 1000),
    base                text        NOT NULL CHECK (base IN ('bonus', 'deposit_plus_bonus')),
    requirement         bigint      NOT NULL CHECK (requirement >= 0),
    wagered_ppm         numeric(40, 0) NOT NULL DEFAULT 0 CHECK (wagered_ppm >= 0),
    default_weight_ppm  integer     NOT NULL CHECK (default_weight_ppm BETWEEN 0 AND 1000000),
    game_weights        jsonb       NOT NULL DEFAULT '{}',
    category_weights    jsonb       NOT NULL DEFAULT '{}',
    max_bet             bigint      CHECK (max_bet > 0),
    max_conversion      bigint      CHECK (max_conversion >= 0),
    expires_at          timestamptz NOT NULL,
    converted           bigint      NOT NULL DEFAULT 0,
    removed             bigint      NOT NULL DEFAULT 0,
    released            bigint      NOT NULL DEFAULT 0,
    grant_transaction_id uuid       NOT NULL,
    close_transaction_id uuid,
    reason              text        NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    closed_at           timestamptz,
    PRIMARY KEY (tenant_id, bonus_id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, account_id)
);
CREATE UNIQUE INDEX bonuses_one_active ON bonuses (tenant_id, player_id, currency)
    WHERE state = 'active';
CREATE INDEX bonuses_by_player ON bonuses (tenant_id, player_id, created_at DESC);
CREATE INDEX bonuses_active_by_expiry ON bonuses (expires_at) WHERE state = 'active';

DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
    PERFORM create_distributed_table('bonus_settings', 'tenant_id', colocate_with => 'players');
    PERFORM create_distributed_table('bonuses', 'tenant_id', colocate_with => 'players');
END IF; END $$;
