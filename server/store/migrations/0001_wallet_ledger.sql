-- Croupier wallet ledger: players, accounts, an immutable double-entry journal, holds and
-- idempotency records. Balances on player accounts change only through postings: a statement
-- trigger applies each INSERT INTO postings to the accounts, and any other UPDATE of a balance
-- column is refused (docs/architecture.md, invariant 2).

CREATE TABLE players (
    tenant_id   text        NOT NULL,
    player_id   text        NOT NULL,
    status      text        NOT NULL DEFAULT 'active'
                            CHECK (status IN ('active', 'blocked', 'self_excluded')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, player_id)
);

-- One row per ledger account. Player accounts (kind 'player', owner = player_id) carry stored
-- available/held balances maintained by the postings trigger. House accounts (the other side of
-- every posting) have NULL stored balances: their balance is the sum of their postings
-- (view account_balances), so no hot house row serializes the bets of a tenant.
CREATE TABLE accounts (
    account_id  bigserial   PRIMARY KEY,
    tenant_id   text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('player', 'house_game', 'house_cashier')),
    owner       text        NOT NULL,
    currency    text        NOT NULL,
    available   bigint,
    held        bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, kind, owner, currency),
    CONSTRAINT player_balances_not_negative
        CHECK (kind <> 'player' OR (available IS NOT NULL AND held IS NOT NULL
                                    AND available >= 0 AND held >= 0)),
    CONSTRAINT house_balances_derived
        CHECK (kind = 'player' OR (available IS NULL AND held IS NULL))
);

CREATE TABLE transactions (
    transaction_id        uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    seq                   bigserial   NOT NULL UNIQUE,
    tenant_id             text        NOT NULL,
    player_id             text        NOT NULL,
    kind                  text        NOT NULL CHECK (kind IN ('authorize', 'settle', 'cancel',
                                          'credit', 'debit', 'rollback', 'expire')),
    currency              text        NOT NULL,
    amount                bigint      NOT NULL,
    idempotency_key       text,
    round_id              text        NOT NULL DEFAULT '',
    bet_id                text        NOT NULL DEFAULT '',
    game_id               text        NOT NULL DEFAULT '',
    target_transaction_id uuid        REFERENCES transactions,
    metadata              jsonb       NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX transactions_by_player ON transactions (tenant_id, player_id, seq DESC);
CREATE UNIQUE INDEX transactions_by_idempotency_key
    ON transactions (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- A debit or credit is reversed at most once.
CREATE UNIQUE INDEX transactions_one_rollback_per_target
    ON transactions (target_transaction_id) WHERE kind = 'rollback';

CREATE TABLE postings (
    posting_id     bigserial PRIMARY KEY,
    transaction_id uuid      NOT NULL REFERENCES transactions,
    account_id     bigint    NOT NULL REFERENCES accounts,
    bucket         text      NOT NULL CHECK (bucket IN ('available', 'held')),
    currency       text      NOT NULL,
    amount         bigint    NOT NULL CHECK (amount <> 0)
);
CREATE INDEX postings_by_transaction ON postings (transaction_id);
CREATE INDEX postings_by_account ON postings (account_id);

-- Holds: an authorized, not yet captured stake bound to a bet and round. A row with state
-- 'tombstone' records a CancelBet that arrived before its bet (the bet is then refused).
CREATE TABLE holds (
    hold_id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id                text        NOT NULL,
    player_id                text        NOT NULL,
    bet_id                   text        NOT NULL,
    round_id                 text        NOT NULL DEFAULT '',
    game_id                  text        NOT NULL DEFAULT '',
    account_id               bigint      REFERENCES accounts,
    currency                 text        NOT NULL DEFAULT '',
    amount                   bigint      NOT NULL CHECK (amount >= 0),
    state                    text        NOT NULL CHECK (state IN ('open', 'settled', 'cancelled',
                                             'expired', 'tombstone')),
    expires_at               timestamptz,
    authorize_transaction_id uuid        REFERENCES transactions,
    close_transaction_id     uuid        REFERENCES transactions,
    created_at               timestamptz NOT NULL DEFAULT now(),
    closed_at                timestamptz,
    UNIQUE (tenant_id, bet_id)
);
CREATE INDEX holds_open_by_expiry ON holds (expires_at) WHERE state = 'open';

-- Idempotency records: the fingerprint (SHA-256 of the method and the deterministic request
-- bytes) and the exact response (a serialized response message, or a serialized
-- google.rpc.Status for a business error). Kept as long as the ledger (invariant 3).
-- state 'tombstone': a RollbackTransaction named this key before any request used it.
CREATE TABLE idempotency_records (
    tenant_id       text        NOT NULL,
    idempotency_key text        NOT NULL,
    method          text        NOT NULL,
    fingerprint     bytea,
    state           text        NOT NULL CHECK (state IN ('pending', 'done', 'tombstone')),
    grpc_code       integer,
    response        bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, idempotency_key)
);

-- The journal is append-only.
CREATE FUNCTION journal_is_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger journal is append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER transactions_immutable BEFORE UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION journal_is_immutable();
CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION journal_is_immutable();

-- Postings are inserted one whole transaction per statement: each statement must balance to
-- zero per transaction and currency, and its sums are then applied to the player accounts.
CREATE FUNCTION apply_postings() RETURNS trigger LANGUAGE plpgsql AS $$
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
       SET available = a.available + d.available, held = a.held + d.held
      FROM (SELECT account_id,
                   sum(amount) FILTER (WHERE bucket = 'available') AS available_delta,
                   sum(amount) FILTER (WHERE bucket = 'held') AS held_delta
              FROM new_postings GROUP BY account_id) s
     CROSS JOIN LATERAL (SELECT coalesce(s.available_delta, 0) AS available,
                                coalesce(s.held_delta, 0) AS held) d
     WHERE a.account_id = s.account_id AND a.kind = 'player';
    PERFORM set_config('croupier.applying_postings', 'off', true);
    RETURN NULL;
END $$;
CREATE TRIGGER postings_apply AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION apply_postings();

CREATE FUNCTION balances_change_only_by_posting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.available IS DISTINCT FROM OLD.available OR NEW.held IS DISTINCT FROM OLD.held)
       AND coalesce(current_setting('croupier.applying_postings', true), 'off') <> 'on' THEN
        RAISE EXCEPTION 'account % balance may change only through postings', OLD.account_id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_balances_guard BEFORE UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION balances_change_only_by_posting();

-- Balances of every account (house accounts derived from their postings).
CREATE VIEW account_balances AS
SELECT a.account_id, a.tenant_id, a.kind, a.owner, a.currency,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'available'), 0)::bigint AS available,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'held'), 0)::bigint AS held
  FROM accounts a LEFT JOIN postings p ON p.account_id = a.account_id
 GROUP BY a.account_id;
