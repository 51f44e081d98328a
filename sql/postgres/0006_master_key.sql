-- The catalog's current master key (issue 8 §7): the one id new objects may be
-- encrypted under. Set by the first encrypted landing when empty, and by `rotate-key`
-- in the same transaction that re-wraps the data keys. `record_landing` reads it
-- FOR SHARE and `rotate-key` locks it FOR UPDATE, so no object can be recorded under a
-- key that a committed rotation retired. One row at most (id = 1).
CREATE TABLE IF NOT EXISTS lake_master_key (
    id     SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    key_id TEXT NOT NULL,
    since  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- An existing catalog whose encrypted objects all share one key id keeps using it.
-- Objects under several ids (the state issue 8 §7 describes) leave it empty: the
-- first encrypted run then adopts its key if the catalog holds objects under it.
INSERT INTO lake_master_key (id, key_id)
SELECT 1, MIN(key_id) FROM files WHERE key_id IS NOT NULL
HAVING COUNT(DISTINCT key_id) = 1
ON CONFLICT (id) DO NOTHING;
