-- Quarterly exports (issue #10): the quarter's aggregates for SQL users, and a log of the
-- dataset versions written. Numbered 0011: 0010 belongs to other work.
-- quarter_customers and quarter_daily hold the columns of customers.parquet and
-- daily.parquet, with the raw customer_id and money as exact decimal TEXT (at the
-- export's scale); means, deviations and shares are REAL. `bankpipe export` replaces a
-- quarter's rows, and records its exports row, in one transaction.
CREATE TABLE quarter_customers (
    quarter            TEXT NOT NULL,
    customer_id        TEXT NOT NULL,
    txn_count          INTEGER NOT NULL,
    amount_sum         TEXT NOT NULL,
    amount_mean        REAL NOT NULL,
    amount_min         TEXT NOT NULL,
    amount_max         TEXT NOT NULL,
    amount_std         REAL,
    first_txn_at       TEXT NOT NULL,
    last_txn_at        TEXT NOT NULL,
    recency_days       INTEGER NOT NULL,
    active_days        INTEGER NOT NULL,
    distinct_locations INTEGER NOT NULL,
    home_location      TEXT,
    gender             TEXT,
    age_years          INTEGER,
    balance_last       TEXT,
    night_share        REAL NOT NULL,
    weekend_share      REAL NOT NULL,
    prior_txn_count    INTEGER NOT NULL,
    tenure_days        INTEGER NOT NULL
);
-- No primary key on (quarter, customer_id): rows arrive in customer_key order, random for
-- customer_id, and keeping that key cost more than the rest of an export of the demo
-- (measured: 500,000 customers). The export writes one row per customer by construction;
-- create an index on customer_id yourself to look customers up often.
CREATE INDEX quarter_customers_quarter ON quarter_customers (quarter);

CREATE TABLE quarter_daily (
    quarter          TEXT NOT NULL,
    date             TEXT NOT NULL,          -- ISO date
    txn_count        INTEGER NOT NULL,
    amount_sum       TEXT NOT NULL,
    amount_mean      REAL,
    amount_p50       REAL,
    amount_p95       REAL,
    unique_customers INTEGER NOT NULL,
    new_customers    INTEGER NOT NULL,
    PRIMARY KEY (quarter, date)
);

-- One row per version of a quarter written to a destination (a forced rewrite updates
-- it). `bankpipe status` lists them.
CREATE TABLE exports (
    quarter          TEXT NOT NULL,
    version          TEXT NOT NULL,
    destination      TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    rows             INTEGER NOT NULL,
    amount_sum       TEXT NOT NULL,
    partial          INTEGER NOT NULL CHECK (partial IN (0, 1)),
    flagged_features TEXT NOT NULL,          -- JSON array of feature names
    PRIMARY KEY (quarter, version, destination)
);
