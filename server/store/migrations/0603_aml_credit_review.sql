-- AML review of a single Credit (reason payout) above the tenant's threshold: a review row
-- without a win, carrying what the credit needs once approved (docs/aml-review.md).
ALTER TABLE aml_reviews ALTER COLUMN win_id DROP NOT NULL;
ALTER TABLE aml_reviews ADD COLUMN credit_request jsonb;
ALTER TABLE aml_reviews ADD CONSTRAINT aml_reviews_one_subject
    CHECK ((win_id IS NULL) <> (credit_request IS NULL));
