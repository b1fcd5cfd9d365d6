-- Croupier jackpot engine (issue 3, seed 000): jackpots, pools (tiers), sharded contribution
-- counters, cycles with committed server seeds, append-only contributions, wins with their payout
-- saga, and a per-tenant hash-chained audit log the database refuses to change.
--
-- A pool's exact amount is   cycle_base + sum(jp_pool_shards.visible)   where cycle_base = seed +
-- carried_in. Contributions update one shard row each (no single hot row); a hit locks the pool
-- row and then every shard row, so the amount it pays is exact (PRODUCT.md invariant 5).

CREATE TABLE jp_jackpots (
    jackpot_id      text        PRIMARY KEY,
    owner_tenant_id text        NOT NULL,
    display_name    text        NOT NULL DEFAULT '',
    currency        text        NOT NULL,
    scope           text        NOT NULL CHECK (scope IN ('local', 'network')),
    tenant_ids      text[]      NOT NULL,
    region          text        NOT NULL DEFAULT '',
    game_ids        text[]      NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jp_jackpots_by_owner ON jp_jackpots (owner_tenant_id);
CREATE INDEX jp_jackpots_by_member ON jp_jackpots USING gin (tenant_ids);

CREATE TABLE jp_pools (
    pool_id                   text    PRIMARY KEY,
    jackpot_id                text    NOT NULL REFERENCES jp_jackpots,
    tier                      text    NOT NULL,
    tier_order                integer NOT NULL,
    kind                      text    NOT NULL CHECK (kind IN ('fixed', 'progressive')),
    seed                      bigint  NOT NULL CHECK (seed >= 0),
    contribution_rate_ppm     bigint  NOT NULL CHECK (contribution_rate_ppm BETWEEN 0 AND 1000000),
    reseed_split_ppm          bigint  NOT NULL CHECK (reseed_split_ppm BETWEEN 0 AND 1000000),
    cap                       bigint  NOT NULL CHECK (cap >= 0),
    overflow_policy           text    NOT NULL CHECK (overflow_policy IN ('carry_to_reseed',
                                                                          'stop_growing')),
    min_bet                   bigint  NOT NULL CHECK (min_bet >= 0),
    trigger_kind              text    NOT NULL CHECK (trigger_kind IN ('random', 'must_drop',
                                                                       'deadline', 'external')),
    hit_probability_ppb       bigint  NOT NULL DEFAULT 0,
    reference_bet             bigint  NOT NULL DEFAULT 0,
    must_drop_min             bigint  NOT NULL DEFAULT 0,
    must_drop_max             bigint  NOT NULL DEFAULT 0,
    deadline_min_seconds      bigint  NOT NULL DEFAULT 0,
    deadline_max_seconds      bigint  NOT NULL DEFAULT 0,
    shards                    integer NOT NULL CHECK (shards BETWEEN 1 AND 64),
    config_version            bigint  NOT NULL DEFAULT 1,
    cycle                     bigint  NOT NULL DEFAULT 1,
    cycle_base                bigint  NOT NULL,   -- seed + carried_in of the current cycle
    carried_in                bigint  NOT NULL DEFAULT 0,
    UNIQUE (jackpot_id, tier)
);

-- Sharded counters of the current cycle. `*_carry` are the sub-minor-unit remainders in
-- millionths of a minor unit, carried from one contribution to the next (invariant 1).
CREATE TABLE jp_pool_shards (
    pool_id       text    NOT NULL REFERENCES jp_pools,
    shard         integer NOT NULL,
    cycle         bigint  NOT NULL,
    visible       bigint  NOT NULL DEFAULT 0 CHECK (visible >= 0),
    reseed        bigint  NOT NULL DEFAULT 0 CHECK (reseed >= 0),
    overflow      bigint  NOT NULL DEFAULT 0 CHECK (overflow >= 0),
    contributions bigint  NOT NULL DEFAULT 0,
    total_carry   bigint  NOT NULL DEFAULT 0 CHECK (total_carry BETWEEN 0 AND 999999),
    reseed_carry  bigint  NOT NULL DEFAULT 0 CHECK (reseed_carry BETWEEN 0 AND 999999),
    PRIMARY KEY (pool_id, shard)
) WITH (fillfactor = 50);

-- One row per pool cycle: the server seed (secret until the cycle ends) and its commitment.
CREATE TABLE jp_cycles (
    pool_id          text        NOT NULL REFERENCES jp_pools,
    cycle            bigint      NOT NULL,
    server_seed      bytea       NOT NULL,
    seed_commitment  bytea       NOT NULL,
    start_amount     bigint      NOT NULL,
    carried_in       bigint      NOT NULL,
    must_drop_min    bigint      NOT NULL DEFAULT 0,
    must_drop_max    bigint      NOT NULL DEFAULT 0,
    must_drop_point  bigint,
    deadline_min_seconds bigint  NOT NULL DEFAULT 0,
    deadline_max_seconds bigint  NOT NULL DEFAULT 0,
    drop_at          timestamptz,
    started_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    win_id           uuid,
    PRIMARY KEY (pool_id, cycle)
);

-- Append-only record of every contribution and its draw.
CREATE TABLE jp_contributions (
    seq                 bigserial   PRIMARY KEY,
    tenant_id           text        NOT NULL,
    idempotency_key     text        NOT NULL,
    pool_id             text        NOT NULL,
    cycle               bigint      NOT NULL,
    player_id           text        NOT NULL,
    game_id             text        NOT NULL DEFAULT '',
    round_id            text        NOT NULL DEFAULT '',
    bet                 bigint      NOT NULL,
    computed            boolean     NOT NULL,  -- from the rate (true) or given by the caller
    rate_ppm            bigint      NOT NULL,
    split_ppm           bigint      NOT NULL,
    total               bigint      NOT NULL,  -- to_pool + to_reseed + to_overflow + not_collected
    to_pool             bigint      NOT NULL,
    to_reseed           bigint      NOT NULL,
    to_overflow         bigint      NOT NULL,
    not_collected       bigint      NOT NULL,
    hit_probability_ppb bigint      NOT NULL DEFAULT 0,
    hit                 boolean     NOT NULL DEFAULT false,
    win_id              uuid,
    occurred_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (pool_id, tenant_id, idempotency_key)
);
CREATE INDEX jp_contributions_by_cycle ON jp_contributions (pool_id, cycle, seq);

-- Wins: obligations, one per ended cycle, and the state of their payout saga.
CREATE TABLE jp_wins (
    win_id                uuid        PRIMARY KEY,
    seq                   bigserial   NOT NULL UNIQUE,
    tenant_id             text        NOT NULL,
    player_id             text        NOT NULL,
    pool_id               text        NOT NULL REFERENCES jp_pools,
    cycle                 bigint      NOT NULL,
    round_id              text        NOT NULL DEFAULT '',
    game_id               text        NOT NULL DEFAULT '',
    reason                text        NOT NULL,
    trigger_key           text        NOT NULL,
    amount                bigint      NOT NULL CHECK (amount >= 0),
    currency              text        NOT NULL,
    payout_state          text        NOT NULL CHECK (payout_state IN ('requested', 'credited',
                                                                       'failed')),
    failure_reason        text        NOT NULL DEFAULT '',
    attempts              integer     NOT NULL DEFAULT 0,
    next_attempt_at       timestamptz,
    last_error            text        NOT NULL DEFAULT '',
    wallet_transaction_id uuid,
    hit_at                timestamptz NOT NULL DEFAULT clock_timestamp(),
    credited_at           timestamptz,
    UNIQUE (pool_id, cycle)
);
CREATE INDEX jp_wins_by_tenant ON jp_wins (tenant_id, seq DESC);
CREATE INDEX jp_wins_due ON jp_wins (next_attempt_at) WHERE payout_state = 'requested';

-- The saga's history: requested, attempt_failed, credited, failed (append-only).
CREATE TABLE jp_payout_steps (
    step_id  bigserial   PRIMARY KEY,
    win_id   uuid        NOT NULL REFERENCES jp_wins,
    step     text        NOT NULL CHECK (step IN ('requested', 'attempt_failed', 'credited',
                                                  'failed')),
    detail   text        NOT NULL DEFAULT '',
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX jp_payout_steps_by_win ON jp_payout_steps (win_id, step_id);

-- The audit chain (seed 000 section 8, WORM): one chain per tenant; the head row serializes
-- appends. hash = SHA-256(prev_hash || canonical line), see server/jackpot/audit.py.
CREATE TABLE jp_audit_heads (
    tenant_id text   PRIMARY KEY,
    seq       bigint NOT NULL,
    hash      bytea  NOT NULL
);
CREATE TABLE jp_audit_log (
    tenant_id   text   NOT NULL,
    seq         bigint NOT NULL,
    action      text   NOT NULL,
    subject     text   NOT NULL,
    payload     text   NOT NULL,
    time_micros bigint NOT NULL,
    prev_hash   bytea  NOT NULL,
    hash        bytea  NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

CREATE FUNCTION jp_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER jp_audit_log_immutable BEFORE UPDATE OR DELETE ON jp_audit_log
    FOR EACH ROW EXECUTE FUNCTION jp_append_only();
CREATE TRIGGER jp_audit_log_no_truncate BEFORE TRUNCATE ON jp_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION jp_append_only();
CREATE TRIGGER jp_contributions_immutable BEFORE UPDATE OR DELETE ON jp_contributions
    FOR EACH ROW EXECUTE FUNCTION jp_append_only();
CREATE TRIGGER jp_payout_steps_immutable BEFORE UPDATE OR DELETE ON jp_payout_steps
    FOR EACH ROW EXECUTE FUNCTION jp_append_only();
