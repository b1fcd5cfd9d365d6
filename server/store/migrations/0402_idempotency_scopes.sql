-- Idempotency key spaces: a key is unique per (tenant, scope, key). Each service has its own
-- scope ('wallet', 'jackpot', 'webhook') and the server's own writes (the jackpot payout credit
-- `jp-payout-<win_id>`) have 'system', so the same client id may name a Debit and a
-- Contribute, and a wallet rollback can only name (or tombstone) wallet keys. Existing
-- records keep their meaning: each is put in the scope of the method that stored it
-- (tombstones, method '', are wallet rollbacks).
ALTER TABLE idempotency_records ADD COLUMN scope text NOT NULL DEFAULT 'wallet'
    CHECK (scope IN ('wallet', 'jackpot', 'webhook', 'system'));

UPDATE idempotency_records SET scope = CASE
    WHEN method IN ('CreateJackpot', 'UpdatePool', 'Contribute', 'Trigger') THEN 'jackpot'
    WHEN method IN ('CreateSubscription', 'DeleteSubscription', 'RedeliverDeadLetter')
        THEN 'webhook'
    WHEN method = 'JackpotPayout' THEN 'system'
    ELSE 'wallet'
END
WHERE method <> '';

ALTER TABLE idempotency_records ALTER COLUMN scope DROP DEFAULT;
ALTER TABLE idempotency_records DROP CONSTRAINT idempotency_records_pkey;
ALTER TABLE idempotency_records
    ADD CONSTRAINT idempotency_records_pkey PRIMARY KEY (tenant_id, scope, idempotency_key);
