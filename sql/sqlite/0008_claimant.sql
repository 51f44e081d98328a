-- Who holds a file's claim (issue #8), as on PostgreSQL: the client's host and process
-- id and when it claimed (`run_id` already names the run). On SQLite one run at a time
-- holds the warehouse lock, so a claim is never held elsewhere; the columns keep the
-- catalogs alike and tell which process left a `landing` row behind.
ALTER TABLE files ADD COLUMN claim_host TEXT;
ALTER TABLE files ADD COLUMN claim_pid INTEGER;
ALTER TABLE files ADD COLUMN claim_backend_pid INTEGER;
ALTER TABLE files ADD COLUMN claimed_at TEXT;
