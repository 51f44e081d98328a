//! The production warehouse: PostgreSQL, loaded with binary `COPY`.
//!
//! Load path: rows are encoded on the loader thread into large binary-COPY buffers while
//! the scan's workers parse and validate on the other core. The common case (a file of
//! new ids) is one optimistic `COPY` straight into `transactions`. When an id already
//! exists the server aborts that `COPY`; the load rolls back to a savepoint, reads the
//! file again into a temporary staging table and merges: the first occurrence of each
//! new id is inserted, identical rows count as duplicates, different ones are
//! quarantined as `conflicting_duplicate`. Either way everything of a file commits in
//! one transaction.
//!
//! Many workers: a claim takes a session-level advisory lock on the file, so another
//! worker skips it while it is being processed, and takes it over (resume) when the
//! claimer's session died. The load itself locks the `files` row and refuses a file
//! that is no longer `landing`, so no race can load a file twice.

use std::collections::BTreeMap;
use std::io::Write;

use postgres::error::SqlState;
use postgres::{Client, Transaction};

use super::pg_connect::{ConnectError, Target};
use super::pg_copy as enc;
use super::{
    Claim, FileEntry, FileStatus, LoadPlan, NewFile, RejectEntry, RejectFilter, Result, Rewrap,
    RunEntry, Stored, Summary, Tally, WarehouseError,
};
use crate::crypt::Sealed;
use crate::model::Total;
use crate::scan::{Batch, BatchSource, ValidRow};
use crate::validate::Rule;

/// Versioned migrations, applied in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../sql/postgres/0001_init.sql")),
    (
        2,
        "lake_status",
        include_str!("../../sql/postgres/0002_lake_status.sql"),
    ),
    (
        3,
        "encryption",
        include_str!("../../sql/postgres/0003_encryption.sql"),
    ),
    (
        4,
        "lean_transactions",
        include_str!("../../sql/postgres/0004_lean_transactions.sql"),
    ),
    (
        9,
        "file_formats",
        include_str!("../../sql/postgres/0009_file_formats.sql"),
    ),
];

/// Role set-up for `migrate --create-roles`.
const ROLES: &str = include_str!("../../sql/postgres/roles.sql");

/// Advisory-lock namespace of file claims (`'bank'`).
const LOCK_SPACE: i32 = 0x6261_6e6b;

/// Bytes buffered before a write to the COPY stream.
const COPY_CHUNK: usize = 1 << 20;

const TXN_COLUMNS: &str = "transaction_id, customer_id, customer_dob, gender, location, \
     account_balance, transaction_at, amount, currency, file_id, line_no";

/// Fields of a `transactions` row in [`TXN_COLUMNS`]. There is no per-row `loaded_at`:
/// it equals the file's `files.processed_at` (migration 0004 dropped the column; it
/// cost ~0.1-0.25 s per million rows of server time during COPY).
const TXN_FIELDS: i16 = 11;

fn pg(context: &'static str) -> impl FnOnce(postgres::Error) -> WarehouseError {
    move |source| WarehouseError::Pg { context, source }
}

/// A driver error as one line: the server's severity, SQLSTATE and message (the bare
/// `Display` says only "db error"), or the client-side cause.
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                s.push_str(&format!(": {c}"));
                cause = c.source();
            }
            s
        }
    }
}

/// Whether a driver error is worth retrying: connection loss, server shutdown,
/// serialization failures, deadlocks, too many connections.
pub fn is_transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::TOO_MANY_CONNECTIONS,
                ]
                .contains(code)
        }
        // No SQLSTATE: an I/O error (refused, reset) or a timeout.
        None => e.as_db_error().is_none(),
    }
}

fn backend_pid(client: &mut Client) -> Result<i32> {
    Ok(client
        .query_one("SELECT pg_backend_pid()", &[])
        .map_err(pg("reading the session id"))?
        .get(0))
}

/// The PostgreSQL backend.
pub struct PgWarehouse {
    target: Target,
    client: Client,
    /// The server process of this session (`pg_backend_pid()`), for logs.
    pid: i32,
}

impl std::fmt::Debug for PgWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWarehouse")
            .field("url", &self.target.display)
            .finish_non_exhaustive()
    }
}

impl PgWarehouse {
    /// Connects and applies pending migrations.
    ///
    /// # Errors
    /// [`WarehouseError::Unreachable`] when the server cannot be reached or refuses the
    /// login; the message never holds the password.
    pub fn open(url: &str) -> Result<PgWarehouse> {
        let target = Target::parse(url).map_err(|e| WarehouseError::Unreachable {
            url: e.url.clone(),
            reason: e.reason,
        })?;
        let mut client = connect(&target)?;
        let pid = backend_pid(&mut client)?;
        let mut w = PgWarehouse {
            target,
            client,
            pid,
        };
        w.migrate()?;
        Ok(w)
    }

    /// Drops the session and connects again (after a transient failure). Claims held
    /// by the old session are released by the server.
    ///
    /// # Errors
    /// As [`PgWarehouse::open`].
    pub fn reconnect(&mut self) -> Result<()> {
        let mut client = connect(&self.target)?;
        self.pid = backend_pid(&mut client)?;
        self.client = client;
        Ok(())
    }

    /// The server process serving this session.
    pub fn backend_pid(&self) -> i32 {
        self.pid
    }

    /// Whether the session still answers.
    pub fn is_alive(&mut self) -> bool {
        !self.client.is_closed() && self.client.simple_query("").is_ok()
    }

    /// Applies pending migrations under an advisory lock (several workers may start at
    /// once); returns how many ran.
    ///
    /// # Errors
    /// SQL failures (for example a role without DDL rights facing a pending migration).
    pub fn migrate(&mut self) -> Result<usize> {
        let mut tx = self
            .client
            .transaction()
            .map_err(pg("starting migration"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_SPACE])
            .map_err(pg("locking migrations"))?;
        let exists: bool = tx
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .map_err(pg("reading schema version"))?
            .get(0);
        if !exists {
            tx.batch_execute(
                "CREATE TABLE schema_migrations (
                    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .map_err(pg("creating schema_migrations"))?;
        }
        let done: Vec<i64> = tx
            .query("SELECT version FROM schema_migrations", &[])
            .map_err(pg("reading schema version"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if let Some(&found) = done.iter().max().filter(|f| **f > known) {
            return Err(WarehouseError::SchemaTooNew { found, known });
        }
        let mut applied = 0;
        // Every missing version is applied, not only those above the highest.
        for (version, name, text) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            tx.batch_execute(text).map_err(|e| {
                if is_transient(&e) {
                    WarehouseError::Pg {
                        context: "applying migration",
                        source: e,
                    }
                } else {
                    WarehouseError::Migration {
                        version: *version,
                        name,
                        reason: describe(&e),
                    }
                }
            })?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .map_err(pg("recording migration"))?;
            applied += 1;
        }
        tx.commit().map_err(pg("committing migration"))?;
        Ok(applied)
    }

    /// Creates the least-privilege roles and grants (idempotent).
    ///
    /// # Errors
    /// SQL failures (it needs a role allowed to create roles).
    pub fn create_roles(&mut self) -> Result<()> {
        self.client
            .batch_execute(ROLES)
            .map_err(pg("creating roles"))
    }

    pub(super) fn start_run(&mut self, run_id: &str, started_at: &str) -> Result<()> {
        // Each run holds a session lock on its id while alive; a `running` run whose
        // lock is free belongs to a dead worker.
        let run_lock = "SELECT pg_advisory_lock($1, hashtext($2))";
        self.client
            .execute(run_lock, &[&(LOCK_SPACE + 1), &run_id])
            .map_err(pg("locking the run"))?;
        let running = self
            .client
            .query("SELECT run_id FROM runs WHERE status = 'running'", &[])
            .map_err(pg("listing running runs"))?;
        for row in running {
            let other: String = row.get(0);
            let dead: bool = self
                .client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))",
                    &[&(LOCK_SPACE + 1), &other],
                )
                .map_err(pg("probing a run"))?
                .get(0);
            if dead {
                self.client
                    .execute(
                        "UPDATE runs SET status = 'aborted' WHERE run_id = $1 AND status = 'running'",
                        &[&other],
                    )
                    .map_err(pg("closing dead runs"))?;
                self.client
                    .execute(
                        "SELECT pg_advisory_unlock($1, hashtext($2))",
                        &[&(LOCK_SPACE + 1), &other],
                    )
                    .map_err(pg("probing a run"))?;
            }
        }
        let host = std::env::var("HOSTNAME").ok();
        self.client
            .execute(
                "INSERT INTO runs (run_id, started_at, status, host, pid)
                 VALUES ($1, $2::text::timestamptz, 'running', $3, $4)",
                &[&run_id, &started_at, &host, &(std::process::id() as i32)],
            )
            .map_err(pg("recording run start"))?;
        Ok(())
    }

    pub(super) fn finish_run(
        &mut self,
        run_id: &str,
        finished_at: &str,
        status: &str,
        counts: &str,
    ) -> Result<()> {
        self.client
            .execute(
                "UPDATE runs SET finished_at = $2::text::timestamptz, status = $3, counts = $4::text::jsonb
                 WHERE run_id = $1",
                &[&run_id, &finished_at, &status, &counts],
            )
            .map_err(pg("recording run end"))?;
        self.client
            .execute(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&(LOCK_SPACE + 1), &run_id],
            )
            .map_err(pg("unlocking the run"))?;
        Ok(())
    }

    pub(super) fn find_file(&mut self, sha256: &str) -> Result<Option<(i64, String, FileStatus)>> {
        let row = self
            .client
            .query_opt(
                "SELECT file_id, original_name, status FROM files WHERE sha256 = $1",
                &[&sha256],
            )
            .map_err(pg("looking up a file"))?;
        Ok(row.map(|r| {
            let status: String = r.get(2);
            (
                r.get(0),
                r.get(1),
                FileStatus::from_name(&status).unwrap_or(FileStatus::Landing),
            )
        }))
    }

    pub(super) fn claim(&mut self, f: &NewFile) -> Result<Claim> {
        let mut tx = self.client.transaction().map_err(pg("starting claim"))?;
        let inserted = tx
            .query_opt(
                "INSERT INTO files (sha256, original_name, bytes, profile, format, compression,
                                    lake_key, received_at, run_id, status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::timestamptz, $9, 'landing')
                 ON CONFLICT (sha256) DO NOTHING
                 RETURNING file_id",
                &[
                    &f.sha256,
                    &f.original_name,
                    &(f.bytes as i64),
                    &f.profile,
                    &f.format,
                    &f.compression,
                    &f.lake_key,
                    &f.received_at,
                    &f.run_id,
                ],
            )
            .map_err(pg("claiming a file"))?;
        let claim = match inserted {
            Some(row) => {
                let file_id: i64 = row.get(0);
                // Taken before commit: nobody can see the row unlocked.
                tx.execute(
                    "SELECT pg_advisory_lock($1, $2::bigint::int)",
                    &[&LOCK_SPACE, &file_id],
                )
                .map_err(pg("locking a claim"))?;
                Claim::New { file_id }
            }
            None => {
                let row = tx
                    .query_one(
                        "SELECT file_id, original_name, status, lake_key FROM files WHERE sha256 = $1",
                        &[&f.sha256],
                    )
                    .map_err(pg("looking up a file"))?;
                let file_id: i64 = row.get(0);
                let status: String = row.get(2);
                if status == "landing" {
                    let free: bool = tx
                        .query_one(
                            "SELECT pg_try_advisory_lock($1, $2::bigint::int)",
                            &[&LOCK_SPACE, &file_id],
                        )
                        .map_err(pg("locking a claim"))?
                        .get(0);
                    if free {
                        tx.execute(
                            "UPDATE files SET original_name = $2, run_id = $3, profile = $4 WHERE file_id = $1",
                            &[&file_id, &f.original_name, &f.run_id, &f.profile],
                        )
                        .map_err(pg("resuming a claim"))?;
                        Claim::Resume {
                            file_id,
                            lake_key: row.get(3),
                        }
                    } else {
                        Claim::Busy { file_id }
                    }
                } else {
                    Claim::Duplicate {
                        file_id,
                        original_name: row.get(1),
                        status: FileStatus::from_name(&status).unwrap_or(FileStatus::Failed),
                    }
                }
            }
        };
        tx.commit().map_err(pg("committing claim"))?;
        Ok(claim)
    }

    pub(super) fn release(&mut self, file_id: i64) -> Result<()> {
        self.client
            .execute(
                "SELECT pg_advisory_unlock($1, $2::bigint::int)",
                &[&LOCK_SPACE, &file_id],
            )
            .map_err(pg("releasing a claim"))?;
        Ok(())
    }

    pub(super) fn abandon(&mut self, file_id: i64) -> Result<()> {
        let deleted = self
            .client
            .execute(
                "DELETE FROM files WHERE file_id = $1 AND status = 'landing'
                   AND NOT EXISTS (SELECT 1 FROM rejected_rows WHERE file_id = $1)
                   AND NOT EXISTS (SELECT 1 FROM file_warnings WHERE file_id = $1)
                   AND NOT EXISTS (SELECT 1 FROM file_formats WHERE file_id = $1)",
                &[&file_id],
            )
            .map_err(pg("withdrawing a claim"));
        // The claim is given back even if the row could not be deleted.
        let released = self.release(file_id);
        deleted?;
        released
    }

    pub(super) fn fail_file(
        &mut self,
        file_id: i64,
        run_id: &str,
        error: &str,
        at: &str,
    ) -> Result<()> {
        self.client
            .execute(
                "UPDATE files SET status = 'failed', error = $2, processed_at = $3::text::timestamptz,
                        run_id = $4, rows_read = 0, rows_loaded = 0, rows_rejected = 0, rows_duplicate = 0,
                        amount_read = NULL, amount_loaded = NULL, amount_rejected = NULL,
                        amount_duplicate = NULL
                 WHERE file_id = $1 AND status = 'landing'",
                &[&file_id, &error, &at, &run_id],
            )
            .map_err(pg("marking a file failed"))?;
        Ok(())
    }

    pub(super) fn load(
        &mut self,
        plan: &LoadPlan,
        source: &mut dyn BatchSource,
        progress: &mut dyn FnMut(&Tally),
        before_commit: &mut dyn FnMut(&Tally) -> std::result::Result<(), String>,
    ) -> Result<Tally> {
        let started = std::time::Instant::now();
        let mut tx = self.client.transaction().map_err(pg("starting load"))?;
        let status: Option<String> = match tx.query_opt(
            "SELECT status FROM files WHERE file_id = $1 FOR UPDATE NOWAIT",
            &[&plan.file_id],
        ) {
            Ok(row) => row.map(|r| r.get(0)),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                Some("being loaded by another worker".into())
            }
            Err(e) => return Err(pg("checking the claim")(e)),
        };
        let replaceable = plan.replace && matches!(status.as_deref(), Some("loaded" | "failed"));
        if status.as_deref() != Some("landing") && !replaceable {
            return Err(WarehouseError::NotClaimed {
                file_id: plan.file_id,
                status: status.unwrap_or_else(|| "missing".into()),
            });
        }
        if replaceable {
            // Reprocessing: the previous outcome goes, atomically with the new one.
            tx.execute(
                "DELETE FROM transactions WHERE file_id = $1",
                &[&plan.file_id],
            )
            .map_err(pg("removing the previous rows"))?;
            tx.execute(
                "DELETE FROM rejected_rows WHERE file_id = $1",
                &[&plan.file_id],
            )
            .map_err(pg("removing the previous rejects"))?;
        }

        tx.batch_execute("SAVEPOINT optimistic")
            .map_err(pg("setting a savepoint"))?;
        let mut rejects = RejectBuffer::default();
        let optimistic = copy_direct(&mut tx, plan, source, progress, &mut rejects);
        let mut tally = match optimistic {
            Ok(t) => {
                tx.batch_execute("RELEASE SAVEPOINT optimistic")
                    .map_err(pg("releasing a savepoint"))?;
                t
            }
            Err(WarehouseError::Pg { source: e, .. })
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
            {
                tracing::debug!(
                    file_id = plan.file_id,
                    "An id is already loaded; merging through staging."
                );
                tx.batch_execute("ROLLBACK TO SAVEPOINT optimistic")
                    .map_err(pg("rolling back to the savepoint"))?;
                source.restart().map_err(WarehouseError::Source)?;
                rejects = RejectBuffer::default();
                copy_staged(&mut tx, plan, source, progress, &mut rejects)?
            }
            Err(e) => return Err(e),
        };
        let copied = started.elapsed();
        source.finish().map_err(WarehouseError::Source)?;
        rejects.copy(&mut tx, plan.file_id)?;

        tally.judge(plan.max_reject_share);
        if tally.failure.is_some() {
            // Nothing of a failed file is loaded; its rejects stay for diagnosis.
            tx.execute(
                "DELETE FROM transactions WHERE file_id = $1",
                &[&plan.file_id],
            )
            .map_err(pg("removing rows of a failed file"))?;
        }
        let (status, loaded, amount_loaded) = match &tally.failure {
            None => ("loaded", tally.rows_loaded, tally.amount_loaded),
            Some(_) => ("failed", 0, Total::default()),
        };
        let s = plan.scale;
        tx.execute(
            "UPDATE files SET status = $2, rows_read = $3, rows_loaded = $4, rows_rejected = $5,
                    rows_duplicate = $6, amount_read = $7::text::numeric, amount_loaded = $8::text::numeric,
                    amount_rejected = $9::text::numeric, amount_duplicate = $10::text::numeric,
                    error = $11, processed_at = $12::text::timestamptz, run_id = $13
             WHERE file_id = $1",
            &[
                &plan.file_id,
                &status,
                &(tally.rows_read as i64),
                &(loaded as i64),
                &(tally.rows_rejected as i64),
                &(tally.rows_duplicate as i64),
                &tally.amount_read.to_text(s),
                &amount_loaded.to_text(s),
                &tally.amount_rejected.to_text(s),
                &tally.amount_duplicate.to_text(s),
                &tally.failure,
                &plan.loaded_at,
                &plan.run_id,
            ],
        )
        .map_err(pg("recording file status"))?;
        tx.execute(
            "DELETE FROM file_warnings WHERE file_id = $1",
            &[&plan.file_id],
        )
        .map_err(pg("clearing warnings"))?;
        for (rule, rows) in tally.warnings.iter() {
            tx.execute(
                "INSERT INTO file_warnings (file_id, rule, rows) VALUES ($1, $2, $3)",
                &[&plan.file_id, &rule.name(), &(rows as i64)],
            )
            .map_err(pg("recording warnings"))?;
        }
        tx.execute(
            "DELETE FROM file_formats WHERE file_id = $1",
            &[&plan.file_id],
        )
        .map_err(pg("clearing format counts"))?;
        for (field, format, rows) in super::format_rows(plan, &tally) {
            tx.execute(
                "INSERT INTO file_formats (file_id, field, format, rows) VALUES ($1, $2, $3, $4)",
                &[&plan.file_id, &field, &format, &(rows as i64)],
            )
            .map_err(pg("recording format counts"))?;
        }
        let recorded = started.elapsed();
        before_commit(&tally).map_err(WarehouseError::Aborted)?;
        let checked = started.elapsed();
        tx.commit().map_err(pg("committing load"))?;
        tracing::debug!(
            file_id = plan.file_id,
            rows_s = copied.as_secs_f64(),
            catalog_s = recorded.saturating_sub(copied).as_secs_f64(),
            before_commit_s = checked.saturating_sub(recorded).as_secs_f64(),
            commit_s = started.elapsed().saturating_sub(checked).as_secs_f64(),
            "Load timings: rows (claim check + COPY), rejects and catalog, waiting for the raw copy and the read digest, commit."
        );
        Ok(tally)
    }

    pub(super) fn stored(&mut self, file_id: i64, scale: u8) -> Result<Stored> {
        let total = |t: Option<String>| {
            t.and_then(|t| Total::parse(&t, scale))
                .unwrap_or(Total { minor: -1 })
        };
        let started = std::time::Instant::now();
        let t = self
            .client
            .query_one(
                "SELECT COUNT(*), round(COALESCE(SUM(amount), 0), $2::int)::text
                 FROM transactions WHERE file_id = $1",
                &[&file_id, &i32::from(scale)],
            )
            .map_err(pg("counting loaded rows"))?;
        let r = self
            .client
            .query_one(
                "SELECT COUNT(*), round(COALESCE(SUM(amount), 0), $2::int)::text
                 FROM rejected_rows WHERE file_id = $1",
                &[&file_id, &i32::from(scale)],
            )
            .map_err(pg("counting rejected rows"))?;
        let f = self
            .client
            .query_one(
                "SELECT status, rows_read, rows_loaded, rows_rejected, rows_duplicate,
                        round(amount_read, $2::int)::text, round(amount_loaded, $2::int)::text,
                        round(amount_rejected, $2::int)::text, round(amount_duplicate, $2::int)::text
                 FROM files WHERE file_id = $1",
                &[&file_id, &i32::from(scale)],
            )
            .map_err(pg("reading the file's catalog row"))?;
        tracing::debug!(
            file_id,
            elapsed_s = started.elapsed().as_secs_f64(),
            "Read back what the warehouse stored."
        );
        let count = |n: Option<i64>| n.unwrap_or(-1) as u64;
        let status: String = f.get(0);
        Ok(Stored {
            status: FileStatus::from_name(&status),
            recorded: Tally {
                rows_read: count(f.get(1)),
                rows_loaded: count(f.get(2)),
                rows_rejected: count(f.get(3)),
                rows_duplicate: count(f.get(4)),
                amount_read: total(f.get(5)),
                amount_loaded: total(f.get(6)),
                amount_rejected: total(f.get(7)),
                amount_duplicate: total(f.get(8)),
                ..Tally::default()
            },
            transactions: t.get::<_, i64>(0) as u64,
            transactions_amount: total(t.get(1)),
            rejected: r.get::<_, i64>(0) as u64,
            rejected_amount: total(r.get(1)),
        })
    }

    pub(super) fn set_lake_status(&mut self, file_id: i64, status: &str, at: &str) -> Result<()> {
        self.client
            .execute(
                "UPDATE files SET lake_status = $2, lake_checked_at = $3::text::timestamptz WHERE file_id = $1",
                &[&file_id, &status, &at],
            )
            .map_err(pg("recording the lake status"))?;
        Ok(())
    }

    pub(super) fn record_landing(
        &mut self,
        file_id: i64,
        lake_key: &str,
        sealed: Option<&Sealed>,
    ) -> Result<usize> {
        let n = self
            .client
            .execute(
                "UPDATE files SET lake_key = $2, key_id = $3, wrapped_key = $4
                 WHERE file_id = $1 AND status = 'landing'",
                &[
                    &file_id,
                    &lake_key,
                    &sealed.map(|s| &s.key_id),
                    &sealed.map(|s| &s.wrapped),
                ],
            )
            .map_err(pg("recording the landing"))?;
        Ok(n as usize)
    }

    pub(super) fn key_ids(&mut self) -> Result<std::collections::BTreeMap<String, u64>> {
        Ok(self
            .client
            .query(
                "SELECT key_id, COUNT(*) FROM files WHERE key_id IS NOT NULL GROUP BY key_id",
                &[],
            )
            .map_err(pg("counting key ids"))?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    pub(super) fn rewrap(&mut self, changes: &[Rewrap]) -> Result<usize> {
        let mut tx = self
            .client
            .transaction()
            .map_err(pg("re-wrapping data keys"))?;
        let stmt = tx
            .prepare(
                "UPDATE files SET key_id = $2, wrapped_key = $3
                 WHERE file_id = $1 AND key_id = $4 AND wrapped_key = $5",
            )
            .map_err(pg("re-wrapping data keys"))?;
        let mut changed = 0;
        for c in changes {
            changed += tx
                .execute(
                    &stmt,
                    &[
                        &c.file_id,
                        &c.new.key_id,
                        &c.new.wrapped,
                        &c.old.key_id,
                        &c.old.wrapped,
                    ],
                )
                .map_err(pg("re-wrapping data keys"))?;
        }
        tx.commit().map_err(pg("re-wrapping data keys"))?;
        Ok(changed as usize)
    }

    pub(super) fn files(&mut self) -> Result<Vec<FileEntry>> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT file_id, sha256, original_name, bytes, profile, status, {}, {},
                            rows_read, rows_loaded, rows_rejected, rows_duplicate,
                            amount_loaded::text, lake_key, error, key_id, wrapped_key, run_id
                     FROM files ORDER BY file_id",
                    ts("received_at"),
                    ts("processed_at")
                ),
                &[],
            )
            .map_err(pg("listing files"))?;
        let mut files = rows
            .iter()
            .map(|r| FileEntry {
                file_id: r.get(0),
                sha256: r.get(1),
                original_name: r.get(2),
                bytes: r.get::<_, i64>(3) as u64,
                profile: r.get(4),
                status: r.get(5),
                received_at: r.get(6),
                processed_at: r.get(7),
                rows_read: r.get::<_, Option<i64>>(8).map(|n| n as u64),
                rows_loaded: r.get::<_, Option<i64>>(9).map(|n| n as u64),
                rows_rejected: r.get::<_, Option<i64>>(10).map(|n| n as u64),
                rows_duplicate: r.get::<_, Option<i64>>(11).map(|n| n as u64),
                amount_loaded: r.get(12),
                lake_key: r.get(13),
                error: r.get(14),
                key_id: r.get(15),
                wrapped_key: r.get(16),
                run_id: r.get(17),
                formats: std::collections::BTreeMap::new(),
            })
            .collect::<Vec<_>>();
        let counts = self
            .client
            .query("SELECT file_id, field, format, rows FROM file_formats", &[])
            .map_err(pg("listing format counts"))?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        super::attach_formats(&mut files, counts);
        Ok(files)
    }

    pub(super) fn rejects(&mut self, filter: &RejectFilter) -> Result<Vec<RejectEntry>> {
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "SELECT r.file_id, f.original_name, r.line_no, r.rule, r.field, r.detail, r.raw
                 FROM rejected_rows r JOIN files f ON f.file_id = r.file_id
                 WHERE ($1::bigint IS NULL OR r.file_id = $1) AND ($2::text IS NULL OR r.rule = $2)
                 ORDER BY r.file_id, r.line_no LIMIT $3",
                &[&filter.file_id, &filter.rule, &limit],
            )
            .map_err(pg("listing rejects"))?;
        Ok(rows
            .iter()
            .map(|r| RejectEntry {
                file_id: r.get(0),
                file: r.get(1),
                line_no: r.get::<_, i64>(2) as u64,
                rule: r.get(3),
                field: r.get(4),
                detail: r.get(5),
                raw: r.get::<_, Option<String>>(6).unwrap_or_default(),
            })
            .collect())
    }

    pub(super) fn summary(&mut self) -> Result<Summary> {
        let mut s = Summary::default();
        let pairs = |client: &mut Client, q: &str| -> Result<BTreeMap<String, u64>> {
            Ok(client
                .query(q, &[])
                .map_err(pg("summarising"))?
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
                .collect())
        };
        s.files = pairs(
            &mut self.client,
            "SELECT status, COUNT(*) FROM files GROUP BY status",
        )?;
        s.rejects_by_rule = pairs(
            &mut self.client,
            "SELECT rule, COUNT(*) FROM rejected_rows GROUP BY rule",
        )?;
        s.warnings_by_rule = pairs(
            &mut self.client,
            "SELECT w.rule, SUM(w.rows)::bigint FROM file_warnings w JOIN files f ON f.file_id = w.file_id
             WHERE f.status = 'loaded' GROUP BY w.rule",
        )?;
        s.rejected_rows = s.rejects_by_rule.values().sum();
        let t = self
            .client
            .query_one(
                "SELECT COUNT(*), MIN(transaction_at)::text, MAX(transaction_at)::text FROM transactions",
                &[],
            )
            .map_err(pg("counting transactions"))?;
        s.transactions = t.get::<_, i64>(0) as u64;
        s.transaction_span = t
            .get::<_, Option<String>>(1)
            .zip(t.get::<_, Option<String>>(2));
        s.recent_runs = self
            .client
            .query(
                &format!(
                    "SELECT run_id, {}, {}, status FROM runs ORDER BY started_at DESC LIMIT 5",
                    ts("started_at"),
                    ts("finished_at")
                ),
                &[],
            )
            .map_err(pg("listing runs"))?
            .iter()
            .map(|r| RunEntry {
                run_id: r.get(0),
                started_at: r.get(1),
                finished_at: r.get(2),
                status: r.get(3),
            })
            .collect();
        s.schema_version = self
            .client
            .query_one("SELECT MAX(version) FROM schema_migrations", &[])
            .map_err(pg("reading schema version"))?
            .get(0);
        Ok(s)
    }
}

/// Connects, retrying transient refusals (server restarting, connection refused or
/// reset, too many connections) with the shared backoff (`retry::backoff`, 4 retries,
/// ~3-5 s in all); a wrong
/// password or a missing database fails at once.
fn connect(target: &Target) -> Result<Client> {
    let mut attempt = 1;
    loop {
        let err = match target.connect() {
            Ok(client) => return Ok(client),
            Err(e) => e,
        };
        let transient = matches!(&err, ConnectError::Driver(d) if is_transient(d));
        let error = WarehouseError::Unreachable {
            url: target.display.clone(),
            reason: match err {
                ConnectError::Driver(d) => describe(&d),
                ConnectError::Tls(t) => t,
            },
        };
        if !transient || attempt >= 5 {
            return Err(error);
        }
        let delay = crate::retry::backoff(attempt);
        tracing::warn!(attempt, error = %error, delay_ms = delay.as_millis() as u64, "Cannot reach the warehouse yet; retrying.");
        std::thread::sleep(delay);
        attempt += 1;
    }
}

/// A `timestamptz` column as the RFC 3339 text the SQLite backend stores.
fn ts(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
}

/// Encodes one valid row for `transactions`.
fn encode_row(out: &mut Vec<u8>, row: &ValidRow, file_id: i64) {
    let t = &row.txn;
    enc::row(out, TXN_FIELDS);
    enc::text(out, &t.transaction_id);
    enc::text(out, &t.customer_id);
    enc::opt_date(out, t.customer_dob);
    enc::opt_text(out, t.gender.map(crate::model::Gender::code));
    enc::opt_text(out, t.location.as_deref());
    enc::opt_numeric(out, t.account_balance);
    enc::timestamp(out, t.transaction_at);
    enc::numeric(out, t.amount);
    enc::text(out, t.currency.as_str());
    enc::int8(out, file_id);
    enc::int4(out, i32::try_from(row.line).unwrap_or(i32::MAX));
}

/// Where the optimistic COPY's wall time went (logged at debug level).
#[derive(Default)]
struct CopyTiming {
    /// Waiting for the scan's next batch.
    source: std::time::Duration,
    /// Encoding rows and tallying.
    encode: std::time::Duration,
    /// Writing buffers to the COPY stream (blocks while the server is behind).
    send: std::time::Duration,
    /// From the trailer to the server's answer (the server finishing the rows it has).
    finish: std::time::Duration,
}

/// The optimistic path: every valid row straight into `transactions`.
fn copy_direct(
    tx: &mut Transaction<'_>,
    plan: &LoadPlan,
    source: &mut dyn BatchSource,
    progress: &mut dyn FnMut(&Tally),
    rejects: &mut RejectBuffer,
) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut writer = tx
        .copy_in(&format!(
            "COPY transactions ({TXN_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .map_err(pg("starting COPY"))?;
    let mut buf = Vec::with_capacity(COPY_CHUNK + 64 * 1024);
    enc::header(&mut buf);
    let mut broken = None;
    let mut timing = CopyTiming::default();
    loop {
        let waited = std::time::Instant::now();
        let Some(batch) = source.next_batch() else {
            timing.source += waited.elapsed();
            break;
        };
        timing.source += waited.elapsed();
        let encoding = std::time::Instant::now();
        tally.rows_read += batch.rows_read;
        tally.amount_read.merge(batch.amount_read);
        tally.formats.merge(&batch.formats);
        // Key order within a batch keeps the primary-key inserts on neighbouring index
        // pages. Order does not matter here: any repeated id aborts this COPY.
        let mut order: Vec<&ValidRow> = batch.rows.iter().collect();
        order.sort_unstable_by(|a, b| a.txn.transaction_id.cmp(&b.txn.transaction_id));
        for row in order {
            encode_row(&mut buf, row, plan.file_id);
            tally.rows_loaded += 1;
            tally.amount_loaded.add(row.txn.amount);
            tally.warnings.add(row.warnings);
        }
        rejects.add_batch(&batch, &mut tally);
        timing.encode += encoding.elapsed();
        if buf.len() >= COPY_CHUNK && broken.is_none() {
            let sending = std::time::Instant::now();
            let sent = writer.write_all(&buf);
            timing.send += sending.elapsed();
            if let Err(e) = sent {
                // The server refused the stream (typically an existing id); `finish`
                // reports its error.
                broken = Some(e);
            }
            buf.clear();
        }
        progress(&tally);
        if broken.is_some() {
            break;
        }
    }
    let finishing = std::time::Instant::now();
    if broken.is_none() {
        enc::trailer(&mut buf);
        let _ = writer.write_all(&buf);
    }
    let finished = writer.finish();
    timing.finish = finishing.elapsed();
    tracing::debug!(
        file_id = plan.file_id,
        source_s = timing.source.as_secs_f64(),
        encode_s = timing.encode.as_secs_f64(),
        send_s = timing.send.as_secs_f64(),
        finish_s = timing.finish.as_secs_f64(),
        "COPY into transactions: waiting for batches, encoding, sending (server backpressure), server finishing."
    );
    finished.map_err(pg("loading rows with COPY"))?;
    Ok(tally)
}

/// The merge path: the file into a staging table, then set operations decide what is
/// new, duplicate or conflicting.
fn copy_staged(
    tx: &mut Transaction<'_>,
    plan: &LoadPlan,
    source: &mut dyn BatchSource,
    progress: &mut dyn FnMut(&Tally),
    rejects: &mut RejectBuffer,
) -> Result<Tally> {
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS bankpipe_staging (
            transaction_id TEXT COLLATE \"C\", customer_id TEXT, customer_dob DATE, gender TEXT,
            location TEXT, account_balance NUMERIC, transaction_at TIMESTAMP, amount NUMERIC,
            currency TEXT, file_id BIGINT, line_no INTEGER,
            warnings INTEGER, raw TEXT, ord BIGINT) ON COMMIT DROP;
         TRUNCATE bankpipe_staging;
         CREATE TEMP TABLE IF NOT EXISTS bankpipe_inserted (transaction_id TEXT COLLATE \"C\")
            ON COMMIT DROP;
         TRUNCATE bankpipe_inserted;",
    )
    .map_err(pg("creating the staging table"))?;
    let mut tally = Tally::default();
    {
        let mut writer = tx
            .copy_in(&format!(
                "COPY bankpipe_staging ({TXN_COLUMNS}, warnings, raw, ord) FROM STDIN (FORMAT binary)"
            ))
            .map_err(pg("starting staging COPY"))?;
        let mut buf = Vec::with_capacity(COPY_CHUNK + 64 * 1024);
        enc::header(&mut buf);
        let mut ord = 0i64;
        while let Some(batch) = source.next_batch() {
            tally.rows_read += batch.rows_read;
            tally.amount_read.merge(batch.amount_read);
            tally.formats.merge(&batch.formats);
            for row in &batch.rows {
                let start = buf.len();
                encode_row(&mut buf, row, plan.file_id);
                // Three more fields: warnings, raw, ord.
                buf[start..start + 2].copy_from_slice(&(TXN_FIELDS + 3).to_be_bytes());
                enc::int4(&mut buf, i32::from(row.warnings.0));
                enc::text(&mut buf, &String::from_utf8_lossy(batch.raw(row.span)));
                // Record order: several records can share a line (compact JSON).
                ord += 1;
                enc::int8(&mut buf, ord);
            }
            rejects.add_batch(&batch, &mut tally);
            if buf.len() >= COPY_CHUNK {
                writer
                    .write_all(&buf)
                    .map_err(|e| WarehouseError::Source(e.to_string()))?;
                buf.clear();
            }
            progress(&tally);
        }
        enc::trailer(&mut buf);
        writer
            .write_all(&buf)
            .map_err(|e| WarehouseError::Source(e.to_string()))?;
        writer.finish().map_err(pg("staging rows with COPY"))?;
    }
    tx.execute(
        &format!(
            "WITH ins AS (
                 INSERT INTO transactions ({TXN_COLUMNS})
                 SELECT DISTINCT ON (transaction_id) {TXN_COLUMNS} FROM bankpipe_staging
                 ORDER BY transaction_id, ord
                 ON CONFLICT (transaction_id) DO NOTHING
                 RETURNING transaction_id)
             INSERT INTO bankpipe_inserted SELECT transaction_id FROM ins"
        ),
        &[],
    )
    .map_err(pg("merging new rows"))?;
    let same = "(t.customer_id, t.customer_dob, t.gender, t.location, t.account_balance,
                 t.transaction_at, t.amount, t.currency)
                IS NOT DISTINCT FROM
                (s.customer_id, s.customer_dob, s.gender, s.location, s.account_balance,
                 s.transaction_at, s.amount, s.currency)";
    // A staged row is the one loaded when its id was inserted now and it is the first
    // occurrence of that id in the file.
    let ours =
        "(s.first_ord AND s.transaction_id IN (SELECT transaction_id FROM bankpipe_inserted))";
    let warning_counts: String = (0..Rule::WARNINGS.len())
        .map(|i| {
            format!(
                ", COUNT(*) FILTER (WHERE {ours} AND s.warnings & {} <> 0)",
                1 << i
            )
        })
        .collect();
    let scale = i32::from(plan.scale);
    let row = tx
        .query_one(
            &format!(
                "SELECT COUNT(*) FILTER (WHERE {ours}),
                        round(COALESCE(SUM(s.amount) FILTER (WHERE {ours}), 0), $1::int)::text,
                        COUNT(*) FILTER (WHERE NOT ({ours}) AND {same}),
                        round(COALESCE(SUM(s.amount) FILTER (WHERE NOT ({ours}) AND {same}), 0), $1::int)::text,
                        COUNT(*) FILTER (WHERE NOT ({ours}) AND NOT ({same})),
                        round(COALESCE(SUM(s.amount) FILTER (WHERE NOT ({ours}) AND NOT ({same})), 0), $1::int)::text
                        {warning_counts}
                 FROM (SELECT *, ord = min(ord) OVER (PARTITION BY transaction_id) AS first_ord
                       FROM bankpipe_staging) s
                 JOIN transactions t USING (transaction_id)"
            ),
            &[&scale],
        )
        .map_err(pg("classifying staged rows"))?;
    let total = |i: usize| Total::parse(&row.get::<_, String>(i), plan.scale).unwrap_or_default();
    tally.rows_loaded = row.get::<_, i64>(0) as u64;
    tally.amount_loaded = total(1);
    tally.rows_duplicate = row.get::<_, i64>(2) as u64;
    tally.amount_duplicate = total(3);
    let conflicts = row.get::<_, i64>(4) as u64;
    tally.rows_rejected += conflicts;
    tally.amount_rejected.merge(total(5));
    if conflicts > 0 {
        *tally.rejects.entry(Rule::ConflictingDuplicate).or_default() += conflicts;
    }
    for (i, c) in tally.warnings.0.iter_mut().enumerate() {
        *c = row.get::<_, i64>(6 + i) as u64;
    }
    let differs: String = [
        "customer_id",
        "customer_dob",
        "gender",
        "location",
        "account_balance",
        "transaction_at",
        "amount",
        "currency",
    ]
    .iter()
    .map(|c| format!("CASE WHEN t.{c} IS DISTINCT FROM s.{c} THEN '{c}' END"))
    .collect::<Vec<_>>()
    .join(", ");
    tx.execute(
        &format!(
            "INSERT INTO rejected_rows (file_id, line_no, rule, field, detail, amount, raw)
             SELECT s.file_id, s.line_no, 'conflicting_duplicate', 'transaction_id',
                    'already loaded from file ' || t.file_id || ' line ' || t.line_no ||
                    ' with a different ' || concat_ws(', ', {differs}), s.amount, s.raw
             FROM (SELECT *, ord = min(ord) OVER (PARTITION BY transaction_id) AS first_ord
                   FROM bankpipe_staging) s
             JOIN transactions t USING (transaction_id)
             WHERE NOT ({ours}) AND NOT ({same})"
        ),
        &[],
    )
    .map_err(pg("quarantining conflicting rows"))?;
    Ok(tally)
}

/// Rejected rows of a file, encoded for one `COPY` into `rejected_rows` after the rows
/// (one connection cannot run two COPYs at once). Spills to a temporary file past 16 MiB
/// so a file full of rejects does not grow memory.
#[derive(Default)]
struct RejectBuffer {
    buf: Vec<u8>,
    spill: Option<std::fs::File>,
    rows: u64,
}

impl RejectBuffer {
    fn add_batch(&mut self, batch: &Batch, tally: &mut Tally) {
        for r in &batch.rejects {
            let rej = &r.rejection;
            tally.rows_rejected += 1;
            if let Some(a) = rej.amount {
                tally.amount_rejected.add(a);
            }
            *tally.rejects.entry(rej.rule).or_default() += 1;
            enc::row(&mut self.buf, 7);
            enc::int8(&mut self.buf, 0); // file_id, patched at COPY time (constant)
            enc::int8(&mut self.buf, r.line as i64);
            enc::text(&mut self.buf, rej.rule.name());
            enc::opt_text(&mut self.buf, rej.field.map(crate::profile::Field::name));
            enc::text(&mut self.buf, &rej.detail);
            enc::opt_numeric(&mut self.buf, rej.amount);
            enc::text(&mut self.buf, &String::from_utf8_lossy(batch.raw(r.span)));
            self.rows += 1;
        }
        if self.buf.len() > 16 << 20 {
            let spilled = self
                .spill
                .get_or_insert_with(|| tempfile::tempfile().expect("temporary file for rejects"));
            if spilled.write_all(&self.buf).is_ok() {
                self.buf.clear();
            }
        }
    }

    fn copy(self, tx: &mut Transaction<'_>, file_id: i64) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        // Rows were encoded with file_id 0: load them into a staging table, then move.
        tx.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS bankpipe_rejects
                (LIKE rejected_rows) ON COMMIT DROP; TRUNCATE bankpipe_rejects;",
        )
        .map_err(pg("creating the rejects staging table"))?;
        {
            let mut writer = tx
                .copy_in(
                    "COPY bankpipe_rejects (file_id, line_no, rule, field, detail, amount, raw)
                     FROM STDIN (FORMAT binary)",
                )
                .map_err(pg("starting rejects COPY"))?;
            let mut head = Vec::new();
            enc::header(&mut head);
            let io = |e: std::io::Error| WarehouseError::Source(format!("quarantine buffer: {e}"));
            writer.write_all(&head).map_err(io)?;
            if let Some(mut f) = self.spill {
                use std::io::Seek;
                f.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
                std::io::copy(&mut f, &mut writer).map_err(io)?;
            }
            writer.write_all(&self.buf).map_err(io)?;
            let mut tail = Vec::new();
            enc::trailer(&mut tail);
            writer.write_all(&tail).map_err(io)?;
            writer.finish().map_err(pg("quarantining rows with COPY"))?;
        }
        tx.execute(
            "INSERT INTO rejected_rows (file_id, line_no, rule, field, detail, amount, raw)
             SELECT $1, line_no, rule, field, detail, amount, raw FROM bankpipe_rejects",
            &[&file_id],
        )
        .map_err(pg("quarantining rows"))?;
        Ok(())
    }
}
