-- bankpipe warehouse schema, PostgreSQL flavour. Same table and column names as the
-- SQLite schema (the user-facing data contract), with PostgreSQL types: exact NUMERIC
-- money, DATE/TIMESTAMP for times.

CREATE TABLE runs (
    run_id       TEXT PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    status       TEXT NOT NULL,
    host         TEXT,
    pid          INTEGER,
    counts       JSONB
);

CREATE TABLE files (
    file_id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sha256           TEXT NOT NULL UNIQUE,
    original_name    TEXT NOT NULL,
    bytes            BIGINT NOT NULL,
    profile          TEXT,
    format           TEXT,
    compression      TEXT,
    lake_key         TEXT NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    processed_at     TIMESTAMPTZ,
    run_id           TEXT,
    status           TEXT NOT NULL CHECK (status IN ('landing', 'loaded', 'failed')),
    rows_read        BIGINT,
    rows_loaded      BIGINT,
    rows_rejected    BIGINT,
    rows_duplicate   BIGINT,
    amount_read      NUMERIC,
    amount_loaded    NUMERIC,
    amount_rejected  NUMERIC,
    amount_duplicate NUMERIC,
    error            TEXT
);

-- transaction_id stays globally unique through the primary key (a partitioned table
-- could only enforce uniqueness together with the partition key). Time and lineage use
-- BRIN indexes instead: monthly files arrive in time order, so block ranges prune other
-- quarters and other files at a tiny fraction of a B-tree's cost on every load.
CREATE TABLE transactions (
    transaction_id   TEXT COLLATE "C" PRIMARY KEY,
    customer_id      TEXT NOT NULL,
    customer_dob     DATE,
    gender           TEXT,
    location         TEXT,
    account_balance  NUMERIC,
    transaction_at   TIMESTAMP NOT NULL,
    amount           NUMERIC NOT NULL,
    currency         TEXT NOT NULL,
    -- No foreign key to files: its per-row trigger would double the load time, and the
    -- loader writes file_id from the claim it holds in the same transaction.
    file_id          BIGINT NOT NULL,
    line_no          INTEGER NOT NULL    -- 4 bytes a row less than BIGINT; a file has < 2^31 lines
    -- No per-row loaded_at: it is the file's files.processed_at (see 0004).
);
CREATE INDEX transactions_at_brin ON transactions USING brin (transaction_at) WITH (pages_per_range = 32, autosummarize = on);
CREATE INDEX transactions_file_brin ON transactions USING brin (file_id) WITH (pages_per_range = 32, autosummarize = on);

CREATE TABLE rejected_rows (
    file_id   BIGINT NOT NULL REFERENCES files (file_id),
    line_no   BIGINT NOT NULL,
    rule      TEXT NOT NULL,
    field     TEXT,
    detail    TEXT,
    amount    NUMERIC,
    raw       TEXT                -- lossy UTF-8 for invalid_encoding rows (exact bytes in the lake)
);
-- Not unique: several records of a compact JSON array can share a line.
CREATE INDEX rejected_rows_file_line ON rejected_rows (file_id, line_no);
CREATE INDEX rejected_rows_rule ON rejected_rows (rule);

CREATE TABLE file_warnings (
    file_id  BIGINT NOT NULL REFERENCES files (file_id),
    rule     TEXT NOT NULL,
    rows     BIGINT NOT NULL,
    PRIMARY KEY (file_id, rule)
);
