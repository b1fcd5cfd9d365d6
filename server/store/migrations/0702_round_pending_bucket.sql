-- Rounds with several steps (docs/rounds.md): a player account gains a third bucket,
-- `pending`, holding the wins of rounds not yet final. Pending money is not withdrawable: the
-- final step (or the sweeper, for a round left open past the tenant's timeout) moves it to
-- `available`. As for the other buckets, only postings change it: the statement trigger below
-- applies pending postings exactly like available and held ones, and the guard refuses any
-- other change. Every round step is one balanced transaction of kind 'round'.

ALTER TABLE accounts ADD COLUMN pending bigint NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD CONSTRAINT player_pending_not_negative CHECK (pending >= 0);

ALTER TABLE postings DROP CONSTRAINT postings_bucket_check;
ALTER TABLE postings ADD CONSTRAINT postings_bucket_check
    CHECK (bucket IN ('available', 'held', 'pending')) NOT VALID;
ALTER TABLE postings VALIDATE CONSTRAINT postings_bucket_check;

ALTER TABLE transactions DROP CONSTRAINT transactions_kind_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_kind_check
    CHECK (kind IN ('authorize', 'settle', 'cancel', 'credit', 'debit', 'rollback', 'expire',
                    'round')) NOT VALID;
ALTER TABLE transactions VALIDATE CONSTRAINT transactions_kind_check;

CREATE OR REPLACE FUNCTION apply_postings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced record;
BEGIN
    SELECT transaction_id, currency, sum(amount) AS total INTO unbalanced
      FROM new_postings GROUP BY transaction_id, currency HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unbalanced transaction % in %: postings sum to %',
            unbalanced.transaction_id, unbalanced.currency, unbalanced.total
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM set_config('croupier.applying_postings', 'on', true);
    UPDATE accounts a
       SET available = a.available + d.available, held = a.held + d.held,
           pending = a.pending + d.pending
      FROM (SELECT account_id,
                   sum(amount) FILTER (WHERE bucket = 'available') AS available_delta,
                   sum(amount) FILTER (WHERE bucket = 'held') AS held_delta,
                   sum(amount) FILTER (WHERE bucket = 'pending') AS pending_delta
              FROM new_postings GROUP BY account_id) s
     CROSS JOIN LATERAL (SELECT coalesce(s.available_delta, 0) AS available,
                                coalesce(s.held_delta, 0) AS held,
                                coalesce(s.pending_delta, 0) AS pending) d
     WHERE a.account_id = s.account_id AND a.kind = 'player';
    PERFORM set_config('croupier.applying_postings', 'off', true);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION balances_change_only_by_posting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.available IS DISTINCT FROM OLD.available OR NEW.held IS DISTINCT FROM OLD.held
        OR NEW.pending IS DISTINCT FROM OLD.pending)
       AND coalesce(current_setting('croupier.applying_postings', true), 'off') <> 'on' THEN
        RAISE EXCEPTION 'account % balance may change only through postings', OLD.account_id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

-- A house account never holds pending money: the trigger applies buckets to player accounts
-- only, so a pending posting on a house account would be lost from every stored balance.
CREATE FUNCTION pending_is_player_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_postings p JOIN accounts a ON a.account_id = p.account_id
                WHERE p.bucket = 'pending' AND a.kind <> 'player') THEN
        RAISE EXCEPTION 'pending postings are for player accounts only'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER postings_pending_player_only AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION pending_is_player_only();

-- Per-tenant round rules: may bets use the round's pending wins; how long a round may stay open.
CREATE TABLE round_settings (
    tenant_id            text    PRIMARY KEY,
    bets_use_pending     boolean NOT NULL DEFAULT false,
    open_timeout_seconds integer NOT NULL DEFAULT 86400 CHECK (open_timeout_seconds > 0)
);

-- A round: its player and currency, its totals (minor units) and what of its wins is still
-- pending. `pending` is the round's share of the account's pending bucket.
CREATE TABLE rounds (
    tenant_id      text        NOT NULL,
    round_id       text        NOT NULL,
    player_id      text        NOT NULL,
    currency       text        NOT NULL,
    game_id        text        NOT NULL DEFAULT '',
    state          text        NOT NULL CHECK (state IN ('open', 'final')),
    bets           bigint      NOT NULL DEFAULT 0 CHECK (bets >= 0),
    wins           bigint      NOT NULL DEFAULT 0 CHECK (wins >= 0),
    pending        bigint      NOT NULL DEFAULT 0 CHECK (pending >= 0),
    steps          integer     NOT NULL DEFAULT 0,
    finalised_by   text        NOT NULL DEFAULT '' CHECK (finalised_by IN ('', 'step', 'sweeper')),
    opened_at      timestamptz NOT NULL DEFAULT now(),
    closed_at      timestamptz,
    PRIMARY KEY (tenant_id, round_id)
);
CREATE INDEX rounds_open_by_age ON rounds (opened_at) WHERE state = 'open';

-- (numeric sums, as migration 0401: a house balance may pass int64)
CREATE OR REPLACE VIEW account_balances AS
SELECT a.account_id, a.tenant_id, a.kind, a.owner, a.currency,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'available'), 0) AS available,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'held'), 0) AS held,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'pending'), 0) AS pending
  FROM accounts a LEFT JOIN postings p ON p.account_id = a.account_id
 GROUP BY a.account_id;

CREATE INDEX transactions_by_round ON transactions (tenant_id, round_id) WHERE kind = 'round';
