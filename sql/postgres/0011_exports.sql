-- Quarterly exports (issue #10): the quarter's aggregates for SQL users, and a log of the
-- dataset versions written. Numbered 0011: 0010 belongs to other work. Same tables as
-- the SQLite 0011, money as NUMERIC. Roles: see roles.sql.
CREATE TABLE IF NOT EXISTS quarter_customers (
    quarter            TEXT NOT NULL,
    customer_id        TEXT NOT NULL,
    txn_count          BIGINT NOT NULL,
    amount_sum         NUMERIC NOT NULL,
    amount_mean        DOUBLE PRECISION NOT NULL,
    amount_min         NUMERIC NOT NULL,
    amount_max         NUMERIC NOT NULL,
    amount_std         DOUBLE PRECISION,
    first_txn_at       TIMESTAMP NOT NULL,
    last_txn_at        TIMESTAMP NOT NULL,
    recency_days       INTEGER NOT NULL,
    active_days        INTEGER NOT NULL,
    distinct_locations INTEGER NOT NULL,
    home_location      TEXT,
    gender             TEXT,
    age_years          INTEGER,
    balance_last       NUMERIC,
    night_share        DOUBLE PRECISION NOT NULL,
    weekend_share      DOUBLE PRECISION NOT NULL,
    prior_txn_count    BIGINT NOT NULL,
    tenure_days        INTEGER NOT NULL,
    PRIMARY KEY (quarter, customer_id)
);

CREATE TABLE IF NOT EXISTS quarter_daily (
    quarter          TEXT NOT NULL,
    date             DATE NOT NULL,
    txn_count        BIGINT NOT NULL,
    amount_sum       NUMERIC NOT NULL,
    amount_mean      DOUBLE PRECISION,
    amount_p50       DOUBLE PRECISION,
    amount_p95       DOUBLE PRECISION,
    unique_customers BIGINT NOT NULL,
    new_customers    BIGINT NOT NULL,
    PRIMARY KEY (quarter, date)
);

CREATE TABLE IF NOT EXISTS exports (
    quarter          TEXT NOT NULL,
    version          TEXT NOT NULL,
    destination      TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    rows             BIGINT NOT NULL,
    amount_sum       NUMERIC NOT NULL,
    partial          BOOLEAN NOT NULL,
    flagged_features TEXT[] NOT NULL,
    PRIMARY KEY (quarter, version, destination)
);
