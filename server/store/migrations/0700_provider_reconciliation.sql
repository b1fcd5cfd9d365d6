-- Provider reconciliation (docs/reconciliation.md): runs, disputes and their append-only
-- history, plus the indexes that find a provider's ledger transactions by event id and by time,
-- and the edge's stored payloads by wallet transaction and by age (round export, retention).
-- Every table is tenant-owned: tenant_id leads each primary key, unique index and foreign key.

-- A ledger transaction's provider and event id, as reconciliation and export read them:
--   provider = metadata "provider", else the sportsbook edge's "sportsbook.integration";
--   event id = metadata "provider.event_id", else "sportsbook.transaction_id", else the
--              idempotency key.
CREATE INDEX transactions_by_provider_event ON transactions (
    tenant_id,
    (coalesce(metadata->>'provider', metadata->>'sportsbook.integration')),
    (coalesce(metadata->>'provider.event_id', metadata->>'sportsbook.transaction_id',
              idempotency_key)));
CREATE INDEX transactions_by_provider_time ON transactions (
    tenant_id, (coalesce(metadata->>'provider', metadata->>'sportsbook.integration')), created_at);
CREATE INDEX transactions_by_time ON transactions (tenant_id, created_at);

CREATE INDEX sportsbook_callbacks_by_wallet_transaction
    ON sportsbook_callbacks (tenant_id, wallet_transaction_id) WHERE wallet_transaction_id IS NOT NULL;
CREATE INDEX sportsbook_callbacks_by_age ON sportsbook_callbacks (received_at);

-- One reconciliation run: its idempotency key, the fingerprint of the uploaded file and the
-- exact response bytes (a repeated upload with the same key gets them back).
CREATE TABLE recon_runs (
    tenant_id        text        NOT NULL,
    run_id           uuid        NOT NULL,
    provider         text        NOT NULL,
    idempotency_key  text        NOT NULL,
    fingerprint      bytea       NOT NULL,
    mismatch_ppm     bigint      NOT NULL,
    response         bytea       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, run_id),
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX recon_runs_by_age ON recon_runs (created_at);

-- A difference under review. `state` is the latest entry of dispute_history (the history is
-- the record; the column is what queries filter on). At most one unresolved dispute per
-- provider event and kind: a later run finding the same difference points at the same one.
CREATE TABLE disputes (
    tenant_id          text        NOT NULL,
    dispute_id         uuid        NOT NULL,
    provider           text        NOT NULL,
    event_id           text        NOT NULL,
    kind               text        NOT NULL CHECK (kind IN ('missing_in_ledger',
                           'missing_at_provider', 'amount_mismatch', 'currency_mismatch',
                           'type_mismatch')),
    state              text        NOT NULL CHECK (state IN ('auto_failed', 'in_review',
                           'escalated', 'resolved')),
    run_id             uuid        NOT NULL,
    player_id          text        NOT NULL DEFAULT '',
    provider_minor     bigint,
    provider_currency  text,
    ledger_minor       bigint,
    ledger_currency    text,
    transaction_id     uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, dispute_id)
);
CREATE UNIQUE INDEX disputes_one_open_per_event
    ON disputes (tenant_id, provider, event_id, kind) WHERE state <> 'resolved';
CREATE INDEX disputes_by_time ON disputes (tenant_id, created_at DESC, dispute_id);

-- Who moved a dispute, from where to where, why; append-only (UPDATE and DELETE refused).
-- A move made by MoveDispute keeps its idempotency key, fingerprint and response bytes.
CREATE TABLE dispute_history (
    tenant_id                  text        NOT NULL,
    dispute_id                 uuid        NOT NULL,
    seq                        bigint      GENERATED ALWAYS AS IDENTITY,
    from_state                 text,
    to_state                   text        NOT NULL,
    actor                      text        NOT NULL,
    reason                     text        NOT NULL,
    adjustment_transaction_id  uuid,
    idempotency_key            text,
    fingerprint                bytea,
    response                   bytea,
    created_at                 timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, dispute_id, seq),
    FOREIGN KEY (tenant_id, dispute_id) REFERENCES disputes
);
CREATE UNIQUE INDEX dispute_history_by_key
    ON dispute_history (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE TRIGGER dispute_history_immutable BEFORE UPDATE OR DELETE ON dispute_history
    FOR EACH ROW EXECUTE FUNCTION journal_is_immutable();
