-- AuditService writes (MoveDispute) have their own idempotency key space, 'audit', beside the
-- wallet's, the jackpot's, the webhooks' and the server's own.
ALTER TABLE idempotency_records DROP CONSTRAINT idempotency_records_scope_check;
ALTER TABLE idempotency_records ADD CONSTRAINT idempotency_records_scope_check
    CHECK (scope IN ('wallet', 'jackpot', 'webhook', 'audit', 'system'));
