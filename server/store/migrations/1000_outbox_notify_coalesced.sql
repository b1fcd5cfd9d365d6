-- Relays are woken by NOTIFY at most once per 100 ms per database connection, not at every
-- commit that writes an event (plain PostgreSQL; on Citus relays poll, migration 0800).
--
-- Every transaction that sends a NOTIFY takes PostgreSQL's cluster-wide notify lock at COMMIT
-- and holds it through its WAL flush, so commits that notify run one at a time: pgbench
-- running AuthorizeBet's SQL one call per transaction lost about a quarter of its rate to it
-- (docs/scaling.md). A connection that notified less than 100 ms ago skips the NOTIFY; the
-- relay wakes for the next one or polls every 100 ms (server/events/relay.py), so an event
-- waits at most about 100 ms longer for its relay (the product bound is p99 < 1 s).
-- The time of the last NOTIFY is a session setting: a rolled-back transaction restores it.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_ms bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    last_ms text := current_setting('croupier.outbox_notified_ms', true);
BEGIN
    IF last_ms IS NULL OR last_ms = '' OR now_ms - last_ms::bigint >= 100
       OR now_ms < last_ms::bigint THEN
        PERFORM pg_notify('croupier_outbox', '');
        PERFORM set_config('croupier.outbox_notified_ms', now_ms::text, false);
    END IF;
    RETURN NULL;
END $$;
