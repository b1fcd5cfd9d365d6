-- Balances of every account. A house account's balance is derived from its postings and is the
-- sum over all of a tenant's players, so it can pass int64 even though every player balance and
-- every posting is an int64: it is numeric here (exact, unbounded), never cast to bigint, so a
-- read of the view can never fail with "bigint out of range".
DROP VIEW account_balances;
CREATE VIEW account_balances AS
SELECT a.account_id, a.tenant_id, a.kind, a.owner, a.currency,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'available'), 0) AS available,
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'held'), 0) AS held
  FROM accounts a LEFT JOIN postings p ON p.account_id = a.account_id
 GROUP BY a.account_id;
