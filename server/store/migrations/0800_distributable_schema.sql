-- One schema for one PostgreSQL and for a Citus cluster (docs/scaling.md).
--
-- tenant_id is the distribution column of every tenant-owned table of the wallet, the outbox
-- and the sportsbook edge: every primary key, unique index and foreign key includes it, so
-- every row a wallet call touches lives in one shard group and each call is one transaction
-- on one node. On plain PostgreSQL the same keys are ordinary composite keys.
--
-- The balance rule stays in the database on both engines: the postings of a transaction sum
-- to zero per currency, each player posting is added to its account's bucket in the same
-- statement, and any other change of a stored balance is refused (accounts_balances_guard).
-- Plain PostgreSQL runs it as a statement trigger; a Citus shard as a row trigger (below).
-- On Citus the trigger runs on the shard; the account it updates is in the co-located shard
-- on the same node.

-- account_balances groups by the primary key of accounts: recreated below.
DROP VIEW account_balances;

-- postings: the tenant of each posting, from its transaction
ALTER TABLE postings ADD COLUMN tenant_id text;
UPDATE postings p SET tenant_id = t.tenant_id
  FROM transactions t WHERE t.transaction_id = p.transaction_id;
ALTER TABLE postings ALTER COLUMN tenant_id SET NOT NULL;

-- every foreign key goes through the tenant
ALTER TABLE postings DROP CONSTRAINT postings_transaction_id_fkey,
                     DROP CONSTRAINT postings_account_id_fkey;
ALTER TABLE holds DROP CONSTRAINT holds_account_id_fkey,
                  DROP CONSTRAINT holds_authorize_transaction_id_fkey,
                  DROP CONSTRAINT holds_close_transaction_id_fkey;
ALTER TABLE transactions DROP CONSTRAINT transactions_target_transaction_id_fkey;

ALTER TABLE accounts DROP CONSTRAINT accounts_pkey,
                     ADD PRIMARY KEY (tenant_id, account_id);
ALTER TABLE transactions DROP CONSTRAINT transactions_pkey,
                         ADD PRIMARY KEY (tenant_id, transaction_id),
                         DROP CONSTRAINT transactions_seq_key,
                         ADD CONSTRAINT transactions_tenant_seq_key UNIQUE (tenant_id, seq);
DROP INDEX transactions_one_rollback_per_target;
-- A debit or credit is reversed at most once.
CREATE UNIQUE INDEX transactions_one_rollback_per_target
    ON transactions (tenant_id, target_transaction_id) WHERE kind = 'rollback';
ALTER TABLE postings DROP CONSTRAINT postings_pkey,
                     ADD PRIMARY KEY (tenant_id, posting_id);
DROP INDEX postings_by_transaction;
DROP INDEX postings_by_account;
CREATE INDEX postings_by_transaction ON postings (tenant_id, transaction_id);
CREATE INDEX postings_by_account ON postings (tenant_id, account_id);
ALTER TABLE holds DROP CONSTRAINT holds_pkey,
                  ADD PRIMARY KEY (tenant_id, hold_id);

ALTER TABLE transactions ADD CONSTRAINT transactions_target_fkey
    FOREIGN KEY (tenant_id, target_transaction_id) REFERENCES transactions (tenant_id, transaction_id);
ALTER TABLE postings
    ADD CONSTRAINT postings_transaction_fkey
        FOREIGN KEY (tenant_id, transaction_id) REFERENCES transactions (tenant_id, transaction_id),
    ADD CONSTRAINT postings_account_fkey
        FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, account_id);
ALTER TABLE holds
    ADD CONSTRAINT holds_account_fkey
        FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, account_id),
    ADD CONSTRAINT holds_authorize_transaction_fkey
        FOREIGN KEY (tenant_id, authorize_transaction_id)
        REFERENCES transactions (tenant_id, transaction_id),
    ADD CONSTRAINT holds_close_transaction_fkey
        FOREIGN KEY (tenant_id, close_transaction_id)
        REFERENCES transactions (tenant_id, transaction_id);

-- outbox: keys within the tenant
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey,
                   ADD PRIMARY KEY (tenant_id, seq),
                   DROP CONSTRAINT outbox_event_id_key,
                   ADD CONSTRAINT outbox_tenant_event_id_key UNIQUE (tenant_id, event_id);

-- Event order per (tenant, aggregate): each tenant's events of an aggregate are numbered 1, 2,
-- 3, ... under that tenant's counter row, which lives in the tenant's shard group, so the
-- outbox insert and its counter are written on one node. (A network pool's events are then
-- numbered per member tenant; consumers order by tenant, aggregate and aggregate_seq.) The
-- counters restart from the outbox's rows: upgrade with the outbox drained.
ALTER TABLE outbox_aggregates ADD COLUMN tenant_id text;
DELETE FROM outbox_aggregates;
INSERT INTO outbox_aggregates (tenant_id, aggregate, last_seq)
SELECT tenant_id, aggregate, max(aggregate_seq) FROM outbox GROUP BY tenant_id, aggregate;
ALTER TABLE outbox_aggregates ALTER COLUMN tenant_id SET NOT NULL,
                              DROP CONSTRAINT outbox_aggregates_pkey,
                              ADD PRIMARY KEY (tenant_id, aggregate);
DROP INDEX outbox_aggregate_seq;
CREATE UNIQUE INDEX outbox_aggregate_seq ON outbox (tenant_id, aggregate, aggregate_seq);
CREATE OR REPLACE FUNCTION outbox_aggregate_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox_aggregates SET last_seq = last_seq + 1
     WHERE tenant_id = NEW.tenant_id AND aggregate = NEW.aggregate
    RETURNING last_seq INTO NEW.aggregate_seq;
    IF NOT FOUND THEN  -- the aggregate's first event (or a racing first writer: ON CONFLICT)
        INSERT INTO outbox_aggregates AS a (tenant_id, aggregate, last_seq)
        VALUES (NEW.tenant_id, NEW.aggregate, 1)
        ON CONFLICT (tenant_id, aggregate) DO UPDATE SET last_seq = a.last_seq + 1
        RETURNING a.last_seq INTO NEW.aggregate_seq;
    END IF;
    RETURN NEW;
END $$;

-- A rollback may not target a server-owned transaction: the check reads the target within
-- the tenant (one shard).
CREATE OR REPLACE FUNCTION system_transaction_not_reversible() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM transactions t
                WHERE t.tenant_id = NEW.tenant_id
                  AND t.transaction_id = NEW.target_transaction_id
                  AND (t.idempotency_key LIKE 'jp-payout-%'
                       OR t.idempotency_key LIKE 'system-%')) THEN
        RAISE EXCEPTION 'transaction % is server-owned and cannot be rolled back',
            NEW.target_transaction_id USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

-- sportsbook callbacks: keys within the tenant
ALTER TABLE sportsbook_callbacks DROP CONSTRAINT sportsbook_callbacks_pkey,
                                 ADD PRIMARY KEY (tenant_id, callback_id);

-- The balance rule, in two forms of the same checks (see the header). Plain PostgreSQL keeps
-- the statement trigger: one pass over the statement's postings (a transition table), which
-- costs less per posting than a row trigger and stays linear when one statement posts to the
-- same account many times. A Citus shard cannot run statement triggers with transition
-- tables, so on Citus the DO block below swaps in the row trigger `apply_posting()`. A change
-- of the rule changes both functions.
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
           pending = a.pending + d.pending
      FROM (SELECT tenant_id, account_id,
                   sum(amount) FILTER (WHERE bucket = 'available') AS available_delta,
                   sum(amount) FILTER (WHERE bucket = 'held') AS held_delta,
                   sum(amount) FILTER (WHERE bucket = 'pending') AS pending_delta
              FROM new_postings GROUP BY tenant_id, account_id) s
     CROSS JOIN LATERAL (SELECT coalesce(s.available_delta, 0) AS available,
                                coalesce(s.held_delta, 0) AS held,
                                coalesce(s.pending_delta, 0) AS pending) d
     WHERE a.tenant_id = s.tenant_id AND a.account_id = s.account_id AND a.kind = 'player';
    PERFORM set_config('croupier.applying_postings', 'off', true);
    RETURN NULL;
END $$;

-- A house account never holds pending money: buckets are stored for player accounts only, so
-- a pending posting on a house account would be lost from every stored balance.
CREATE OR REPLACE FUNCTION pending_is_player_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_postings p
                 JOIN accounts a ON a.tenant_id = p.tenant_id AND a.account_id = p.account_id
                WHERE p.bucket = 'pending' AND a.kind <> 'player') THEN
        RAISE EXCEPTION 'pending postings are for player accounts only'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

-- The row form, for Citus: fired at the end of the INSERT statement (AFTER ROW triggers run
-- once all the statement's rows are in), it checks that the postings of the row's transaction
-- sum to zero in its currency and adds the row to its player account, on the shard.
CREATE FUNCTION apply_posting() RETURNS trigger LANGUAGE plpgsql AS $$
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
        UPDATE accounts SET pending = pending + NEW.amount
         WHERE tenant_id = NEW.tenant_id AND account_id = NEW.account_id AND kind = 'player';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'pending postings are for player accounts only'
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    PERFORM set_config('croupier.applying_postings', 'off', true);
    RETURN NULL;
END $$;

-- Balances of every account (house accounts derived from their postings; numeric, as a house
-- balance may pass int64).
CREATE VIEW account_balances AS
SELECT a.account_id, a.tenant_id, a.kind, a.owner, a.currency,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'available'), 0) AS available,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'held'), 0) AS held,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'pending'), 0) AS pending
  FROM accounts a
  LEFT JOIN postings p ON p.tenant_id = a.tenant_id AND p.account_id = a.account_id
 GROUP BY a.tenant_id, a.account_id;

-- On a Citus coordinator: distribute the tenant-owned tables by tenant_id in one co-location
-- group, make api_keys (looked up by key id before the tenant is known) a reference table,
-- and keep the jackpot engine's tables on the coordinator (docs/jackpot.md).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        SET LOCAL citus.enable_unsafe_triggers = on;
        SET LOCAL citus.multi_shard_modify_mode = 'sequential';
        -- A NOTIFY would run on the worker (no relay listens there) and a transaction that
        -- ran one cannot take part in a two-phase commit: relays poll instead.
        DROP TRIGGER outbox_notify ON outbox;
        DROP TRIGGER postings_apply ON postings;
        DROP TRIGGER postings_pending_player_only ON postings;
        CREATE TRIGGER postings_apply AFTER INSERT ON postings
            FOR EACH ROW EXECUTE FUNCTION apply_posting();
        PERFORM create_distributed_table('players', 'tenant_id');
        PERFORM create_distributed_table('accounts', 'tenant_id', colocate_with => 'players');
        PERFORM create_distributed_table('transactions', 'tenant_id', colocate_with => 'players');
        PERFORM create_distributed_table('postings', 'tenant_id', colocate_with => 'players');
        PERFORM create_distributed_table('holds', 'tenant_id', colocate_with => 'players');
        PERFORM create_distributed_table('idempotency_records', 'tenant_id',
                                         colocate_with => 'players');
        PERFORM create_distributed_table('outbox', 'tenant_id', colocate_with => 'players');
        PERFORM create_distributed_table('outbox_aggregates', 'tenant_id',
                                         colocate_with => 'players');
        PERFORM create_distributed_table('sportsbook_callbacks', 'tenant_id',
                                         colocate_with => 'players');
        PERFORM create_reference_table('api_keys');
        PERFORM create_distributed_table(t, 'tenant_id', colocate_with => 'players')
           FROM unnest(ARRAY['rg_tenant_settings', 'rg_limits', 'rg_limit_changes', 'rg_usage',
                             'rg_exclusions', 'rg_exclusion_changes', 'aml_thresholds',
                             'aml_reviews', 'compliance_holds', 'compliance_hold_changes',
                             'recon_runs', 'disputes', 'dispute_history', 'round_settings',
                             'rounds']) AS t;
        -- The jackpot engine's tables stay on the coordinator, known to Citus (citus local
        -- tables): a transaction that writes them and a tenant's shard commits on both nodes
        -- with a two-phase commit.
        PERFORM citus_add_local_table_to_metadata('jp_jackpots', cascade_via_foreign_keys => true);
        PERFORM citus_add_local_table_to_metadata('jp_contributions');
        PERFORM citus_add_local_table_to_metadata('jp_audit_heads');
        PERFORM citus_add_local_table_to_metadata('jp_audit_log');
    END IF;
END $$;
