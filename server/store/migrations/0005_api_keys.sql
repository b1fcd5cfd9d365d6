-- Tenant API keys (issue 7): each key is bound to one tenant and a set of scopes. Only the
-- SHA-256 of the secret is stored; a revoked key stays for the audit trail.
CREATE TABLE api_keys (
    key_id      text        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    scopes      text[]      NOT NULL,
    secret_hash bytea       NOT NULL,
    label       text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);
