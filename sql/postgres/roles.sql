-- Least-privilege roles, created by `bankpipe migrate --create-roles` (idempotent).
-- bankpipe_owner owns the schema and runs migrations; bankpipe_loader loads (DML only,
-- plus temporary tables for staging; no DDL); bankpipe_reader reads transactions and
-- the catalog but not the raw text of rejected rows (it may hold personal data).
-- The roles cannot log in: grant them to login users (GRANT bankpipe_loader TO etl_svc).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bankpipe_owner') THEN
        CREATE ROLE bankpipe_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bankpipe_loader') THEN
        CREATE ROLE bankpipe_loader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bankpipe_reader') THEN
        CREATE ROLE bankpipe_reader NOLOGIN;
    END IF;
END
$$;

ALTER TABLE runs OWNER TO bankpipe_owner;
ALTER TABLE files OWNER TO bankpipe_owner;
ALTER TABLE transactions OWNER TO bankpipe_owner;
ALTER TABLE rejected_rows OWNER TO bankpipe_owner;
ALTER TABLE file_warnings OWNER TO bankpipe_owner;
ALTER TABLE duplicate_rows OWNER TO bankpipe_owner;
ALTER TABLE schema_migrations OWNER TO bankpipe_owner;
ALTER TABLE lake_master_key OWNER TO bankpipe_owner;

REVOKE ALL ON runs, files, transactions, rejected_rows, file_warnings, duplicate_rows,
    schema_migrations, lake_master_key
    FROM bankpipe_loader, bankpipe_reader;
GRANT USAGE ON SCHEMA public TO bankpipe_loader, bankpipe_reader;

GRANT SELECT, INSERT, UPDATE ON runs TO bankpipe_loader;
-- DELETE: a claim whose raw object could not be landed is withdrawn (Warehouse::abandon).
GRANT SELECT, INSERT, UPDATE, DELETE ON files TO bankpipe_loader;
GRANT SELECT, INSERT, DELETE ON transactions TO bankpipe_loader;
GRANT SELECT, INSERT, DELETE ON rejected_rows, file_warnings TO bankpipe_loader;
-- duplicate_rows: written by the merge, moved by `reprocess`, which also locks it (LOCK
-- TABLE in SHARE ROW EXCLUSIVE mode needs UPDATE, DELETE or TRUNCATE: DELETE is enough).
-- UPDATE on file_warnings: a row moved to another file adds to that file's warnings.
GRANT SELECT, INSERT, DELETE ON duplicate_rows TO bankpipe_loader;
GRANT UPDATE ON file_warnings TO bankpipe_loader;
GRANT SELECT ON schema_migrations TO bankpipe_loader;
-- INSERT: the first encrypted landing records its key id; UPDATE: rotate-key, and the
-- FOR SHARE lock a landing takes on the row (PostgreSQL requires UPDATE for it).
GRANT SELECT, INSERT, UPDATE ON lake_master_key TO bankpipe_loader;

GRANT SELECT ON transactions, files, file_warnings, duplicate_rows, runs, schema_migrations,
    lake_master_key
    TO bankpipe_reader;
GRANT SELECT (file_id, line_no, rule, field, detail, amount) ON rejected_rows TO bankpipe_reader;

-- file_formats (migration 0009): rows per matched date/time format, like file_warnings.
ALTER TABLE file_formats OWNER TO bankpipe_owner;
REVOKE ALL ON file_formats FROM bankpipe_loader, bankpipe_reader;
GRANT SELECT, INSERT, DELETE ON file_formats TO bankpipe_loader;
GRANT SELECT ON file_formats TO bankpipe_reader;

-- quarter_customers, quarter_daily, exports (migration 0011): written by `bankpipe export`
-- (replaced per quarter), read by SQL users.
ALTER TABLE quarter_customers OWNER TO bankpipe_owner;
ALTER TABLE quarter_daily OWNER TO bankpipe_owner;
ALTER TABLE exports OWNER TO bankpipe_owner;
REVOKE ALL ON quarter_customers, quarter_daily, exports FROM bankpipe_loader, bankpipe_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON quarter_customers, quarter_daily, exports TO bankpipe_loader;
GRANT SELECT ON quarter_customers, quarter_daily, exports TO bankpipe_reader;
-- file_rejects and file_amounts (migration 0012): per-file figures for /metrics, written
-- with the load like file_warnings (UPDATE: a row moved to another file changes its amounts).
ALTER TABLE file_rejects OWNER TO bankpipe_owner;
ALTER TABLE file_amounts OWNER TO bankpipe_owner;
REVOKE ALL ON file_rejects, file_amounts FROM bankpipe_loader, bankpipe_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON file_rejects, file_amounts TO bankpipe_loader;
GRANT SELECT ON file_rejects, file_amounts TO bankpipe_reader;

-- schedule_slots (migration 0013): `serve` claims slots and records their outcome (the
-- loader role is enough to run serve's scheduler); readers see the schedule's history.
ALTER TABLE schedule_slots OWNER TO bankpipe_owner;
REVOKE ALL ON schedule_slots FROM bankpipe_loader, bankpipe_reader;
GRANT SELECT, INSERT, UPDATE ON schedule_slots TO bankpipe_loader;
GRANT SELECT ON schedule_slots TO bankpipe_reader;
