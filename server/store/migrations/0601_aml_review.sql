-- AML review of payouts (docs/aml-review.md): per-tenant thresholds per currency, one review per
-- withheld jackpot win, and the `review` payout state of a win waiting for a decision.

ALTER TABLE jp_wins DROP CONSTRAINT jp_wins_payout_state_check;
ALTER TABLE jp_wins ADD CONSTRAINT jp_wins_payout_state_check
    CHECK (payout_state IN ('requested', 'credited', 'failed', 'review'));
ALTER TABLE jp_payout_steps DROP CONSTRAINT jp_payout_steps_step_check;
ALTER TABLE jp_payout_steps ADD CONSTRAINT jp_payout_steps_step_check
    CHECK (step IN ('requested', 'attempt_failed', 'credited', 'failed', 'review_opened',
                    'review_approved', 'review_rejected'));

CREATE TABLE aml_thresholds (
    tenant_id text   NOT NULL,
    currency  text   NOT NULL,
    threshold bigint NOT NULL CHECK (threshold > 0),
    PRIMARY KEY (tenant_id, currency)
);

CREATE TABLE aml_reviews (
    tenant_id       text        NOT NULL,
    review_id       uuid        NOT NULL,
    win_id          uuid        NOT NULL,
    player_id       text        NOT NULL,
    currency        text        NOT NULL,
    amount          bigint      NOT NULL,
    threshold       bigint      NOT NULL,
    state           text        NOT NULL CHECK (state IN ('open', 'approved', 'rejected')),
    decision_reason text        NOT NULL DEFAULT '',
    decision_key    text,
    opened_at       timestamptz NOT NULL DEFAULT now(),
    decided_at      timestamptz,
    PRIMARY KEY (tenant_id, review_id),
    UNIQUE (tenant_id, win_id)
);
CREATE INDEX aml_reviews_by_tenant ON aml_reviews (tenant_id, opened_at DESC);
