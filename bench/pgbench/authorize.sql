-- pgbench script: the SQL one AuthorizeBet runs, in the same two pipelined round trips as the
-- server (server/wallet/ledger.py authorize_bet + server/idempotency.py):
--   1) BEGIN; lock the player's account and look for a hold with this bet id;
--   2) journal row, balanced postings (trigger applies them), hold, outbox event, idempotency
--      record, COMMIT.
-- Variables: :players (accounts 'p1'..'pN' of tenant :tenant::text in EUR, funded by the bench).
\set p random(1, :players)
\set a random(1, 2000000000)
\set b random(1, 2000000000)
\startpipeline
BEGIN;
SELECT a.account_id, a.available, a.held, p.status,
       (SELECT h.state FROM holds h WHERE h.tenant_id = a.tenant_id AND h.bet_id = 'pgb-' || :a::text || '-' || :b::text)
  FROM accounts a JOIN players p ON p.tenant_id = a.tenant_id AND p.player_id = a.owner
 WHERE a.tenant_id = :tenant::text AND a.kind = 'player' AND a.owner = 'p' || :p::text AND a.currency = 'EUR'
   FOR UPDATE OF a;
\endpipeline
\startpipeline
INSERT INTO transactions (transaction_id, tenant_id, player_id, kind, currency, amount, idempotency_key, round_id, bet_id, game_id, target_transaction_id, metadata)
VALUES ((lpad(to_hex(:a::bigint), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(:b::bigint), 12, '0'))::uuid, :tenant::text, 'p' || :p::text, 'authorize', 'EUR', 100, 'pgb-' || :a::text || '-' || :b::text, 'r', 'pgb-' || :a::text || '-' || :b::text, 'g', NULL, '{}');
INSERT INTO postings (transaction_id, account_id, bucket, currency, amount)
SELECT (lpad(to_hex(:a::bigint), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(:b::bigint), 12, '0'))::uuid, coalesce(l.a, h.account_id), l.b, 'EUR', l.m
  FROM unnest(ARRAY[(SELECT account_id FROM accounts WHERE tenant_id = :tenant::text AND kind = 'player' AND owner = 'p' || :p::text AND currency = 'EUR'), (SELECT account_id FROM accounts WHERE tenant_id = :tenant::text AND kind = 'player' AND owner = 'p' || :p::text AND currency = 'EUR')]::bigint[],
              ARRAY[NULL, NULL]::text[], ARRAY['available', 'held']::text[], ARRAY[-100, 100]::bigint[]) AS l(a, k, b, m)
  LEFT JOIN accounts h ON l.a IS NULL AND h.tenant_id = :tenant::text AND h.kind = l.k AND h.owner = '' AND h.currency = 'EUR';
INSERT INTO holds (hold_id, tenant_id, player_id, bet_id, round_id, game_id, account_id, currency, amount, state, expires_at, authorize_transaction_id, close_transaction_id, closed_at)
VALUES ((lpad(to_hex(:b::bigint), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(:a::bigint), 12, '0'))::uuid, :tenant::text, 'p' || :p::text, 'pgb-' || :a::text || '-' || :b::text, 'r', 'g',
        (SELECT account_id FROM accounts WHERE tenant_id = :tenant::text AND kind = 'player' AND owner = 'p' || :p::text AND currency = 'EUR'),
        'EUR', 100, 'open', now() + interval '1 hour', (lpad(to_hex(:a::bigint), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(:b::bigint), 12, '0'))::uuid, NULL, NULL);
INSERT INTO outbox (event_id, event_type, schema_version, aggregate, partition, tenant_id, trace_id, payload)
VALUES (gen_random_uuid(), 'wallet.bet.authorized', '1.0.0', concat_ws(chr(58), 'account', :tenant::text, 'p' || :p::text, 'EUR'), mod(:p::int, 16), :tenant::text, '', jsonb_build_object('amount', jsonb_build_object('minor_units', 100, 'currency', 'EUR')));
INSERT INTO idempotency_records (tenant_id, scope, idempotency_key, method, fingerprint, state, grpc_code, response)
VALUES (:tenant::text, 'wallet', 'pgb-' || :a::text || '-' || :b::text, 'AuthorizeBet', '\x00', 'done', 0, '\x00');
COMMIT;
\endpipeline
