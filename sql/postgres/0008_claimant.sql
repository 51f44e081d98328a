-- Who holds a file's claim (issue #8): recorded when a file is claimed or a dead
-- claim resumed, so a worker that meets a live claim can report the claimant
-- (`claimed_elsewhere` with `claimed_by` in `run --json`) instead of calling the file a
-- duplicate. The claim itself stays the session-level advisory lock; these columns only
-- describe its holder: the host and process id of the bankpipe client, the server
-- process serving its session (`pg_backend_pid()`, to find it in pg_stat_activity), and
-- when it claimed (`run_id` already names the run). Nullable, no rewrite.
ALTER TABLE files ADD COLUMN IF NOT EXISTS claim_host TEXT;
ALTER TABLE files ADD COLUMN IF NOT EXISTS claim_pid INTEGER;
ALTER TABLE files ADD COLUMN IF NOT EXISTS claim_backend_pid INTEGER;
ALTER TABLE files ADD COLUMN IF NOT EXISTS claimed_at TIMESTAMPTZ;
