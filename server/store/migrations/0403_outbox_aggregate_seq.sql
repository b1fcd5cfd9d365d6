-- Per-aggregate publish order without transaction ids (docs/events.md, "Order").
--
-- Every event carries `aggregate_seq`, its aggregate's sequence number (1, 2, 3, ... with no
-- gap), set by a BEFORE INSERT trigger, so every insert path gets it. The writing transaction
-- takes it from `outbox_aggregates` with an UPSERT, which
-- row-locks the aggregate's counter until that transaction ends: the next writer of the same
-- aggregate waits there, so sequence order is commit order for each aggregate under any
-- interleaving, and a rolled-back transaction gives its number back. The relay publishes an
-- event only after its predecessor (aggregate_seq - 1) was published, so nothing depends on
-- one node's transaction ids or snapshot (the former `xid` gate is dropped).
--
-- Rows of the outbox that were published must not be deleted past the newest published row
-- of each aggregate: the relay checks that row to release the next one.
CREATE TABLE outbox_aggregates (
    aggregate text   PRIMARY KEY,
    last_seq  bigint NOT NULL CHECK (last_seq > 0)
) WITH (fillfactor = 50);  -- room for HOT updates of the counters

ALTER TABLE outbox ADD COLUMN aggregate_seq bigint;

UPDATE outbox o SET aggregate_seq = n.rn
  FROM (SELECT seq, row_number() OVER (PARTITION BY aggregate ORDER BY seq) AS rn
          FROM outbox) n
 WHERE o.seq = n.seq;

INSERT INTO outbox_aggregates (aggregate, last_seq)
SELECT aggregate, max(aggregate_seq) FROM outbox GROUP BY aggregate;

ALTER TABLE outbox ALTER COLUMN aggregate_seq SET NOT NULL;
CREATE UNIQUE INDEX outbox_aggregate_seq ON outbox (aggregate, aggregate_seq);
ALTER TABLE outbox DROP COLUMN xid;

CREATE FUNCTION outbox_aggregate_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox_aggregates SET last_seq = last_seq + 1 WHERE aggregate = NEW.aggregate
    RETURNING last_seq INTO NEW.aggregate_seq;
    IF NOT FOUND THEN  -- the aggregate's first event (or a racing first writer: ON CONFLICT)
        INSERT INTO outbox_aggregates AS a (aggregate, last_seq) VALUES (NEW.aggregate, 1)
        ON CONFLICT (aggregate) DO UPDATE SET last_seq = a.last_seq + 1
        RETURNING a.last_seq INTO NEW.aggregate_seq;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER outbox_aggregate_seq BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_aggregate_seq();
