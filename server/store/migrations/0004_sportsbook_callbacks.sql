-- Sportsbook edge dispute storage (issue 4, seed 002 "store raw payloads for at least 12
-- months", "stores attempts"): every authenticated callback delivery, byte for byte, with the
-- headers it came with, what the edge answered and the wallet transaction it produced. One row
-- per delivery (a result sent three times is three rows with the same wallet transaction).
-- Append-mostly: a row is inserted before the wallet call and completed once with the answer.
-- Holds no money state: balances live in the ledger only.

CREATE TABLE sportsbook_callbacks (
    callback_id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id                text        NOT NULL,
    integration              text        NOT NULL,
    endpoint                 text        NOT NULL
                                         CHECK (endpoint IN ('transaction', 'transaction-rollback')),
    -- the provider's transaction_id (NULL when the body was too malformed to read one)
    provider_transaction_id  text,
    -- for rollbacks: the provider transaction being rolled back
    rollback_transaction_id  text,
    received_at              timestamptz NOT NULL DEFAULT now(),
    remote_addr              text        NOT NULL DEFAULT '',
    headers                  jsonb       NOT NULL,
    raw_body                 bytea       NOT NULL,
    -- the JSON the edge answered, when it answered
    response                 jsonb,
    wallet_transaction_id    uuid,
    -- the wallet's ErrorInfo reason (or gRPC code) of a refusal, and a note (e.g. "tombstoned")
    wallet_reason            text        NOT NULL DEFAULT '',
    note                     text        NOT NULL DEFAULT '',
    answered_at              timestamptz
);

CREATE INDEX sportsbook_callbacks_by_transaction
    ON sportsbook_callbacks (tenant_id, integration, provider_transaction_id, callback_id);
CREATE INDEX sportsbook_callbacks_by_rollback_target
    ON sportsbook_callbacks (tenant_id, integration, rollback_transaction_id, callback_id)
    WHERE rollback_transaction_id IS NOT NULL;
