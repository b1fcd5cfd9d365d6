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

-- Server-owned transactions (keys of the system namespace: the jackpot payout credit
-- `jp-payout-<win_id>`, any `system-...` write) are never reversed: the database refuses a
-- rollback row that targets one, whatever path tries to write it.
CREATE FUNCTION system_transaction_not_reversible() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM transactions t
                WHERE t.transaction_id = NEW.target_transaction_id
                  AND (t.idempotency_key LIKE 'jp-payout-%'
                       OR t.idempotency_key LIKE 'system-%')) THEN
        RAISE EXCEPTION 'transaction % is server-owned and cannot be rolled back',
            NEW.target_transaction_id USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER transactions_system_not_reversible BEFORE INSERT ON transactions
    FOR EACH ROW WHEN (NEW.kind = 'rollback' AND NEW.target_transaction_id IS NOT NULL)
    EXECUTE FUNCTION system_transaction_not_reversible();
