-- Per-file figures for `bankpipe serve`'s /metrics (issue #11), so a scrape never scans
-- rejected_rows or transactions: rejected rows per rule, and loaded rows and their exact
-- amount per currency (a file with a currency column holds several). Written by every
-- (re)load in the transaction that writes the rows, like file_warnings; a file moved
-- rows by another file's reprocess gets its amounts recomputed in that transaction.
-- Numbered 0012: 0010 and 0011 belong to other work.
CREATE TABLE file_rejects (
    file_id  INTEGER NOT NULL REFERENCES files (file_id),
    rule     TEXT NOT NULL,
    rows     INTEGER NOT NULL,
    PRIMARY KEY (file_id, rule)
);
INSERT INTO file_rejects (file_id, rule, rows)
SELECT file_id, rule, COUNT(*) FROM rejected_rows GROUP BY file_id, rule;

CREATE TABLE file_amounts (
    file_id   INTEGER NOT NULL REFERENCES files (file_id),
    currency  TEXT NOT NULL,
    rows      INTEGER NOT NULL,
    amount    TEXT NOT NULL,             -- exact decimal at the file's scale
    PRIMARY KEY (file_id, currency)
);
-- Backfill: the stored rows summed as integers of minor units (a file's amounts share
-- one scale, and a loaded amount fits an i64 of minor units), then written back at
-- that scale. One scan of transactions, once.
INSERT INTO file_amounts (file_id, currency, rows, amount)
SELECT file_id, currency, n,
       CASE WHEN k = 0 THEN CAST(s AS TEXT)
            ELSE (CASE WHEN s < 0 THEN '-' ELSE '' END) || CAST(abs(s) / p AS TEXT) || '.'
                 || substr(CAST(p + abs(s) % p AS TEXT), 2)
       END
FROM (SELECT file_id, currency, n, s, k,
             CAST('1' || substr('000000000000000000', 1, k) AS INTEGER) AS p
      FROM (SELECT file_id, currency, COUNT(*) AS n,
                   SUM(CAST(REPLACE(amount, '.', '') AS INTEGER)) AS s,
                   MAX(CASE WHEN instr(amount, '.') > 0 THEN length(amount) - instr(amount, '.')
                            ELSE 0 END) AS k
            FROM transactions WHERE file_id IN (SELECT file_id FROM files)
            GROUP BY file_id, currency));
