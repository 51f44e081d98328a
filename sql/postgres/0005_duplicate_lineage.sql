-- Duplicate lineage (issue 8, section 4). A row a load counts as an identical duplicate
-- is not stored again, so nothing said which files carry it besides the one holding it:
-- `reprocess` of that one file, when it no longer loads the row, deleted a row that other
-- files still counted as in the warehouse. One row here per identical duplicate a loaded
-- file counted (its own line, and the warnings its copy would have), written by the
-- staging merge only: the optimistic COPY (a file of new ids) writes nothing here.
-- `reprocess` moves a stored row that its file no longer loads to the earliest loaded
-- file listed here for that id (see docs/ARCHITECTURE.md, "Duplicate lineage").
CREATE TABLE IF NOT EXISTS duplicate_rows (
    transaction_id  TEXT COLLATE "C" NOT NULL,
    -- No foreign key to files, as in transactions: its per-row trigger would be paid on
    -- every duplicate, and the loader writes file_id from the claim it holds.
    file_id         BIGINT NOT NULL,
    line_no         INTEGER NOT NULL,
    warnings        INTEGER NOT NULL DEFAULT 0   -- bit set of Rule::WARNINGS
);
-- Not unique: several identical records of a compact JSON array can share a line.
CREATE INDEX IF NOT EXISTS duplicate_rows_file ON duplicate_rows (file_id);
-- No index on transaction_id: it would add a third of the cost of recording a duplicate
-- (measured on SQLite: 200,000 entries 0.23 s with the file_id index alone, 0.31-0.41 s
-- with both), and the one reader that needs it, `reprocess`, scans the table once
-- anyway. Create it yourself to ask often which files carried an id.
