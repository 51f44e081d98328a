-- bankpipe warehouse schema, SQLite flavour. The names are the user-facing data
-- contract and are the same in every backend. Money is exact: amounts are stored as
-- canonical decimal TEXT at the currency's scale ('25.00'), never REAL.

CREATE TABLE runs (
    run_id       TEXT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    status       TEXT NOT NULL,          -- running | ok | failed | aborted
    host         TEXT,
    pid          INTEGER,
    counts       TEXT                    -- JSON summary of the run
);

CREATE TABLE files (
    file_id          INTEGER PRIMARY KEY,
    sha256           TEXT NOT NULL UNIQUE,
    original_name    TEXT NOT NULL,
    bytes            INTEGER NOT NULL,
    profile          TEXT,
    format           TEXT,
    compression      TEXT,
    lake_key         TEXT NOT NULL,
    received_at      TEXT NOT NULL,
    processed_at     TEXT,
    run_id           TEXT,
    status           TEXT NOT NULL CHECK (status IN ('landing', 'loaded', 'failed')),
    rows_read        INTEGER,
    rows_loaded      INTEGER,
    rows_rejected    INTEGER,
    rows_duplicate   INTEGER,
    amount_read      TEXT,
    amount_loaded    TEXT,
    amount_rejected  TEXT,
    amount_duplicate TEXT,
    error            TEXT,
    -- SQLite only: the file's rows occupy this rowid range of transactions (one
    -- writer loads a file in one transaction, so its rowids are contiguous). Lineage
    -- and control-total queries use it instead of an index on file_id, which would
    -- cost a fifth of the load time.
    first_rowid      INTEGER,
    last_rowid       INTEGER
);

CREATE TABLE transactions (
    transaction_id   TEXT PRIMARY KEY,
    customer_id      TEXT NOT NULL,
    customer_dob     TEXT,               -- ISO date
    gender           TEXT,               -- M | F | T
    location         TEXT,
    account_balance  TEXT,               -- exact decimal
    transaction_at   TEXT NOT NULL,      -- 'YYYY-MM-DD HH:MM:SS'
    amount           TEXT NOT NULL,      -- exact decimal
    currency         TEXT NOT NULL,
    file_id          INTEGER NOT NULL REFERENCES files (file_id),
    line_no          INTEGER NOT NULL,
    loaded_at        TEXT NOT NULL
);

CREATE TABLE rejected_rows (
    file_id   INTEGER NOT NULL REFERENCES files (file_id),
    line_no   INTEGER NOT NULL,
    rule      TEXT NOT NULL,
    field     TEXT,
    detail    TEXT,
    amount    TEXT,                      -- the amount when it parsed (control totals)
    raw       BLOB                       -- the raw record: TEXT when valid UTF-8
);
-- Not unique: several records of a compact JSON array can share a line.
CREATE INDEX rejected_rows_file_line ON rejected_rows (file_id, line_no);
CREATE INDEX rejected_rows_rule ON rejected_rows (rule);

CREATE TABLE file_warnings (
    file_id  INTEGER NOT NULL REFERENCES files (file_id),
    rule     TEXT NOT NULL,
    rows     INTEGER NOT NULL,
    PRIMARY KEY (file_id, rule)
);
