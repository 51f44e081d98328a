-- What `bankpipe verify` last found for the file's raw object in the lake.
ALTER TABLE files ADD COLUMN IF NOT EXISTS lake_status TEXT CHECK (lake_status IN ('intact', 'missing', 'corrupt'));
ALTER TABLE files ADD COLUMN IF NOT EXISTS lake_checked_at TIMESTAMPTZ;
