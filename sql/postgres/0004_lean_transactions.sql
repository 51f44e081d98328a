-- One BRIN index over (transaction_at, file_id) instead of one per column. A
-- multicolumn BRIN index serves conditions on any subset of its columns with the same
-- pruning as single-column ones (PostgreSQL docs, "Multicolumn Indexes"), while every
-- inserted row pays one BRIN insertion instead of two: on PostgreSQL 15 each insertion
-- reads the index's metapage and revmap page, which cost ~0.2 s per index per million
-- rows during the load's COPY (1,048,567 rows, server-side: 3.16 s with two indexes,
-- 2.77 s with this one, 2.75 s with none).
-- Numbered 0004: 0003 belongs to the lake encryption work.
--
-- And no per-row loaded_at: every row of a file had the same value, which is the file's
-- files.processed_at (`JOIN files USING (file_id)`), and the column cost ~0.1-0.25 s of
-- server time per million rows during COPY. 0001 no longer creates it; a warehouse
-- created before drops it here (PostgreSQL only marks a dropped column, so rows written
-- afterwards carry a null bitmap for it until the table is rewritten, e.g. VACUUM FULL).
--
-- The new index is built before the old ones are dropped: CREATE INDEX lets readers
-- through while it scans the table, DROP INDEX would not (it takes an exclusive lock held
-- to commit). On a large warehouse, run `bankpipe migrate` in a quiet window (see
-- docs/UPGRADING.md).
CREATE INDEX IF NOT EXISTS transactions_brin ON transactions USING brin (transaction_at, file_id)
    WITH (pages_per_range = 32, autosummarize = on);
DROP INDEX IF EXISTS transactions_at_brin;
DROP INDEX IF EXISTS transactions_file_brin;
ALTER TABLE transactions DROP COLUMN IF EXISTS loaded_at;
