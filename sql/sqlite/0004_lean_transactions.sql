-- No per-row loaded_at in transactions: every row of a file had the same value, which is
-- the file's files.processed_at (`JOIN files USING (file_id)`). Same change as the
-- PostgreSQL 0004, where the column cost server time on every load. Numbered 0004: 0003
-- belongs to the lake encryption work. SQLite rewrites the rows (rowids, and with them
-- files.first_rowid/last_rowid, are kept).
ALTER TABLE transactions DROP COLUMN loaded_at;
