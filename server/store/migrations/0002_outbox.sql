-- Transactional outbox (docs/architecture.md, invariant 8): events are inserted in the same database
-- transaction as the state change they describe, and published by croupier-relay afterwards.
--
-- Ordering: `xid` is the writing transaction's id. The relay publishes only rows whose
-- transaction is older than every transaction still in progress (pg_snapshot_xmin), so a row
-- with a lower seq can never appear after a higher one was published; within one aggregate
-- (a player account, a pool) writers serialize on the aggregate's row lock, so seq order is
-- commit order. `partition` (0..15, from the aggregate) lets several relays share the work:
-- a relay publishes a partition only while holding its advisory lock.
CREATE TABLE outbox (
    seq            bigserial   PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    event_type     text        NOT NULL,
    schema_version text        NOT NULL,
    aggregate      text        NOT NULL,
    partition      smallint    NOT NULL,
    tenant_id      text        NOT NULL,
    trace_id       text        NOT NULL DEFAULT '',
    occurred_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    payload        jsonb       NOT NULL,
    xid            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    published_at   timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (partition, seq) WHERE published_at IS NULL;

-- Wake relays at commit (NOTIFY is delivered only when the transaction commits).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('croupier_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
