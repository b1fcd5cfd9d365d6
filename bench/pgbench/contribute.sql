-- pgbench script: the SQL one single-tier Contribute to a sharded (hot) network pool runs
-- (server/jackpot/engine.py contribute + server/store/jackpot_sql.py add_to_shard): read the
-- pool, add to one counter row picked by the key (one statement, row lock until COMMIT),
-- append the contribution record, the outbox event and the idempotency record, COMMIT.
-- Variables: :pool (pool id), :shards (its counter rows), :tenant.
\set a random(1, 2000000000)
\set b random(1, 2000000000)
\set s random(0, :shards - 1)
\startpipeline
BEGIN;
SELECT pool_id, cycle, config_version FROM jp_pools WHERE pool_id = :pool::text;
UPDATE jp_pool_shards SET
    total_carry = ((100::numeric * 1000000 * 10000 + total_carry) % 1000000000000)::bigint,
    last_total = floor((100::numeric * 1000000 * 10000 + total_carry) / 1000000000000)::bigint,
    visible = visible + floor((100::numeric * 1000000 * 10000 + total_carry) / 1000000000000)::bigint,
    contributions = contributions + 1
WHERE pool_id = :pool::text AND shard = :s::int
RETURNING last_total, visible,
    (SELECT coalesce(sum(o.visible), 0) FROM jp_pool_shards o WHERE o.pool_id = :pool::text AND o.shard <> :s::int);
\endpipeline
\startpipeline
INSERT INTO jp_contributions (tenant_id, idempotency_key, pool_id, cycle, player_id, game_id, round_id, bet, computed, rate_ppm, split_ppm, total, to_pool, to_reseed, to_overflow, not_collected, bet_currency)
VALUES (:tenant::text, 'pgb-' || :a::text || '-' || :b::text, :pool::text, 1, 'p1', 'g', 'r', 100, true, 10000, 0, 1, 1, 0, 0, 0, 'EUR');
INSERT INTO outbox (event_id, event_type, schema_version, aggregate, partition, tenant_id, trace_id, payload)
VALUES (gen_random_uuid(), 'jp.contribution.recorded', '1.0.0', 'pool' || chr(58) || :pool::text, 3, :tenant::text, '', jsonb_build_object('bet', jsonb_build_object('minor_units', 100, 'currency', 'EUR')));
INSERT INTO idempotency_records (tenant_id, scope, idempotency_key, method, fingerprint, state, grpc_code, response)
VALUES (:tenant::text, 'jackpot', 'pgb-' || :a::text || '-' || :b::text, 'Contribute', '\x00', 'done', 0, '\x00');
COMMIT;
\endpipeline
