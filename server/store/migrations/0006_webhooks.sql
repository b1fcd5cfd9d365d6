-- Webhook subscriptions and deliveries (issue 5 item 5; seed 004 sections 3.3, 6, 8).
--
-- A subscription belongs to one tenant and only ever receives that tenant's events. `secret`
-- is kept so croupier-webhooks can sign deliveries (HMAC-SHA256); the API never returns it.
-- Deleting a subscription is a soft delete (`deleted_at`): its delivery history stays readable
-- and its pending deliveries are cancelled in the same transaction.
CREATE TABLE webhook_subscriptions (
    seq             bigserial   UNIQUE,
    subscription_id uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    callback_url    text        NOT NULL,
    secret          bytea       NOT NULL,
    event_types     text[]      NOT NULL,
    description     text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at      timestamptz
);
CREATE INDEX webhook_subscriptions_active ON webhook_subscriptions (tenant_id, seq)
    WHERE deleted_at IS NULL;

-- One row per event that at least one subscription wanted: the exact bytes published on
-- croupier.events, which are the bytes POSTed and signed.
CREATE TABLE webhook_events (
    event_id    uuid        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    event_type  text        NOT NULL,
    trace_id    text        NOT NULL DEFAULT '',
    body        bytea       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One delivery per (subscription, event): a redelivered broker message inserts nothing new.
-- state: pending -> delivered | dead (after max attempts) | cancelled (subscription deleted);
-- dead -> pending again through RedeliverDeadLetter. `attempts` counts attempts started: a
-- dispatcher claims a due delivery by bumping `attempts` and pushing `next_attempt_at` past its
-- request timeout (a lease), so a dispatcher that dies mid-request leaves it due again later.
CREATE TABLE webhook_deliveries (
    seq              bigserial   UNIQUE,
    delivery_id      uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    subscription_id  uuid        NOT NULL REFERENCES webhook_subscriptions,
    event_id         uuid        NOT NULL REFERENCES webhook_events,
    tenant_id        text        NOT NULL,
    event_type       text        NOT NULL,
    state            text        NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'dead', 'cancelled')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_status      integer     NOT NULL DEFAULT 0,
    last_error       text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at      timestamptz,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id, seq);
