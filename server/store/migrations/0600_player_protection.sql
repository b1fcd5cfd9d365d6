-- Player protection (docs/responsible-gaming.md): per-tenant settings, deposit/loss/wager
-- limits per player and currency, the per-day usage those limits are checked against, and
-- exclusions. Every table is owned by a tenant: tenant_id leads each primary key.

CREATE TABLE rg_tenant_settings (
    tenant_id                 text        NOT NULL,
    time_zone                 text        NOT NULL DEFAULT 'UTC',
    limit_cooling_off_seconds bigint      NOT NULL DEFAULT 86400
                                          CHECK (limit_cooling_off_seconds >= 0),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id)
);

-- One row per (player, currency, kind, window). `amount` is the limit in force (NULL: none);
-- a raise or a removal waits in `pending_amount` (NULL with pending_at set: a removal) until
-- `pending_at`, and readers take it as in force from then on.
CREATE TABLE rg_limits (
    tenant_id      text        NOT NULL,
    player_id      text        NOT NULL,
    currency       text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('deposit', 'loss', 'wager')),
    period         text        NOT NULL CHECK (period IN ('day', 'week', 'month')),
    amount         bigint      CHECK (amount > 0),
    pending_amount bigint      CHECK (pending_amount > 0),
    pending_at     timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, player_id, currency, kind, period),
    CHECK (pending_amount IS NULL OR pending_at IS NOT NULL)
);

-- Append-only audit of limit changes.
CREATE TABLE rg_limit_changes (
    tenant_id       text        NOT NULL,
    change_id       uuid        NOT NULL,
    player_id       text        NOT NULL,
    currency        text        NOT NULL,
    kind            text        NOT NULL,
    period          text        NOT NULL,
    previous_amount bigint,
    requested       bigint,
    removal         boolean     NOT NULL,
    applied         boolean     NOT NULL,
    effective_at    timestamptz NOT NULL,
    idempotency_key text        NOT NULL,
    reason          text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, change_id)
);
CREATE INDEX rg_limit_changes_by_player ON rg_limit_changes (tenant_id, player_id, created_at);
CREATE TRIGGER rg_limit_changes_immutable BEFORE UPDATE OR DELETE ON rg_limit_changes
    FOR EACH ROW EXECUTE FUNCTION journal_is_immutable();

-- What each local day (in the tenant's time zone when written) took: deposits, stakes (bets
-- and stake debits, less what was released), wins. numeric: a month's sum never overflows.
CREATE TABLE rg_usage (
    tenant_id text    NOT NULL,
    player_id text    NOT NULL,
    currency  text    NOT NULL,
    day       date    NOT NULL,
    deposits  numeric NOT NULL DEFAULT 0,
    stakes    numeric NOT NULL DEFAULT 0,
    wins      numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, player_id, currency, day)
);

-- A player's exclusion: self_exclusion (until a time, or permanent when until is NULL),
-- cooling_off (until a time), closed (permanent). A row whose `until` has passed is lifted.
CREATE TABLE rg_exclusions (
    tenant_id  text        NOT NULL,
    player_id  text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('self_exclusion', 'cooling_off', 'closed')),
    until      timestamptz,
    reason     text        NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, player_id),
    CHECK (kind <> 'cooling_off' OR until IS NOT NULL),
    CHECK (kind <> 'closed' OR until IS NULL)
);

-- Append-only audit of exclusion changes.
CREATE TABLE rg_exclusion_changes (
    tenant_id       text        NOT NULL,
    change_id       uuid        NOT NULL,
    player_id       text        NOT NULL,
    kind            text        NOT NULL,
    until           timestamptz,
    idempotency_key text        NOT NULL,
    reason          text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, change_id)
);
CREATE TRIGGER rg_exclusion_changes_immutable BEFORE UPDATE OR DELETE ON rg_exclusion_changes
    FOR EACH ROW EXECUTE FUNCTION journal_is_immutable();
