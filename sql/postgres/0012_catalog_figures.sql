-- Per-file figures for `bankpipe serve`'s /metrics (issue #11), so a scrape never scans
-- rejected_rows or transactions: rejected rows per rule, and loaded rows and their exact
-- amount per currency (a file with a currency column holds several). Written by every
-- (re)load in the transaction that writes the rows, like file_warnings; a file moved
-- rows by another file's reprocess gets its amounts recomputed in that transaction.
-- Numbered 0012: 0010 and 0011 belong to other work. Roles: see roles.sql.
CREATE TABLE IF NOT EXISTS file_rejects (
    file_id  BIGINT NOT NULL REFERENCES files (file_id),
    rule     TEXT NOT NULL,
    rows     BIGINT NOT NULL,
    PRIMARY KEY (file_id, rule)
);
INSERT INTO file_rejects (file_id, rule, rows)
SELECT file_id, rule, COUNT(*) FROM rejected_rows GROUP BY file_id, rule
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS file_amounts (
    file_id   BIGINT NOT NULL REFERENCES files (file_id),
    currency  TEXT NOT NULL,
    rows      BIGINT NOT NULL,
    amount    NUMERIC NOT NULL,
    PRIMARY KEY (file_id, currency)
);
INSERT INTO file_amounts (file_id, currency, rows, amount)
SELECT file_id, currency, COUNT(*), SUM(amount) FROM transactions
WHERE file_id IN (SELECT file_id FROM files)   -- transactions has no foreign key to files
GROUP BY file_id, currency
ON CONFLICT DO NOTHING;
