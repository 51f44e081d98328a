-- The catalog's current master key (issue 8 §7): the one id new objects may be
-- encrypted under. Set by the first encrypted landing when empty, and by `rotate-key`
-- in the same (IMMEDIATE) transaction that re-wraps the data keys, so no object can be
-- recorded under a key that a committed rotation retired. One row at most (id = 1).
CREATE TABLE lake_master_key (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    key_id TEXT NOT NULL,
    since  TEXT NOT NULL
);
-- An existing catalog whose encrypted objects all share one key id keeps using it.
-- Objects under several ids leave it empty: the first encrypted run then adopts its
-- key if the catalog holds objects under it.
INSERT INTO lake_master_key (id, key_id, since)
SELECT 1, MIN(key_id), strftime('%Y-%m-%dT%H:%M:%SZ', 'now') FROM files
WHERE key_id IS NOT NULL
HAVING COUNT(DISTINCT key_id) = 1;
