-- Compliance holds on a player's payouts (docs/aml-review.md): while one is raised a jackpot
-- payout is recorded failed with the hold's reason; once none is left the win is retried.
CREATE TABLE compliance_holds (
    tenant_id  text        NOT NULL,
    player_id  text        NOT NULL,
    hold       text        NOT NULL CHECK (hold IN ('sanctions', 'geo_block', 'withdrawal_limit',
                                                     'aml')),
    reason     text        NOT NULL DEFAULT '',
    raised_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, player_id, hold)
);

-- Append-only audit of hold changes.
CREATE TABLE compliance_hold_changes (
    tenant_id       text        NOT NULL,
    change_id       uuid        NOT NULL,
    player_id       text        NOT NULL,
    hold            text        NOT NULL,
    active          boolean     NOT NULL,
    idempotency_key text        NOT NULL,
    reason          text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, change_id)
);
CREATE TRIGGER compliance_hold_changes_immutable BEFORE UPDATE OR DELETE
    ON compliance_hold_changes FOR EACH ROW EXECUTE FUNCTION journal_is_immutable();

-- The retrier looks for failed wins whose cause was lifted.
CREATE INDEX jp_wins_failed ON jp_wins (tenant_id, player_id) WHERE payout_state = 'failed';
