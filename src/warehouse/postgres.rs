//! The production warehouse: PostgreSQL, loaded with binary `COPY`.
//!
//! Load path: rows are encoded on the loader thread into large binary-COPY buffers while
//! the scan's workers parse and validate on the other core. The common case (a file of
//! new ids, maybe repeating a few of its own) is one optimistic `COPY` straight into
//! `transactions` of each id's first occurrence, the repeats set aside and merged
//! afterwards (`merge_set_aside`). When an id already exists the server aborts that
//! `COPY`; the load rolls back to a savepoint and sends the file again in segments,
//! each under its own savepoint, setting aside the segments the server refuses
//! (`copy_segmented`). Set-aside rows go through a small staging table: first
//! occurrences not stored yet are inserted, identical rows count as duplicates,
//! different ones are quarantined as `conflicting_duplicate`. Only a digest collision
//! falls back to staging the whole file (`copy_staged`). Either way everything of a file
//! commits in one transaction.
//!
//! Many workers: a claim takes a session-level advisory lock on the file, so another
//! worker skips it while it is being processed, and takes it over (resume) when the
//! claimer's session died. The load itself locks the `files` row and refuses a file
//! that is no longer `landing`, so no race can load a file twice.

mod listing;
mod quarters;
mod slots;

use std::collections::BTreeMap;
use std::io::Write;

use postgres::error::SqlState;
use postgres::{Client, Transaction};

use super::pg_connect::{ConnectError, Target};
use super::pg_copy as enc;
use super::{
    Claim, Claimant, Fault, FileEntry, FileFilter, FileStatus, LoadPlan, MigrationInfo, NewFile,
    RejectEntry, RejectFilter, Result, RunEntry, Stored, Summary, Tally, Unfinished,
    WarehouseError,
};
use crate::crypt::Sealed;
use crate::model::Total;
use crate::scan::{Batch, BatchSource, ValidRow};
use crate::validate::Rule;

/// Versioned migrations, applied in order.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
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
        5,
        "duplicate_lineage",
        include_str!("../../sql/postgres/0005_duplicate_lineage.sql"),
    ),
    (
        6,
        "master_key",
        include_str!("../../sql/postgres/0006_master_key.sql"),
    ),
    (
        8,
        "claimant",
        include_str!("../../sql/postgres/0008_claimant.sql"),
    ),
    (
        9,
        "file_formats",
        include_str!("../../sql/postgres/0009_file_formats.sql"),
    ),
    (
        11,
        "exports",
        include_str!("../../sql/postgres/0011_exports.sql"),
    ),
    (
        12,
        "catalog_figures",
        include_str!("../../sql/postgres/0012_catalog_figures.sql"),
    ),
    (
        13,
        "schedule_slots",
        include_str!("../../sql/postgres/0013_schedule_slots.sql"),
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
/// `Display` says only "db error"), or the client-side cause; then, for a failure an
/// operator must fix, what to change ([`remedy`]).
pub fn describe(e: &postgres::Error) -> String {
    let mut s = match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            s
        }
        None => describe_chain(e),
    };
    if let Some(fix) = remedy(e) {
        s.push_str("; ");
        s.push_str(fix);
    }
    s
}

/// Whether a driver error is worth retrying: connection loss, server shutdown,
/// serialization failures, deadlocks, too many connections.
pub fn is_transient(e: &postgres::Error) -> bool {
    fault(e) == Fault::Transient
}

/// What kind of failure a driver error is. Authentication, a missing database, a
/// privilege the role lacks, a read-only server, TLS the server or its certificate
/// cannot provide, and a client-side configuration error are [`Fault::Setup`]: the
/// same attempt would fail the same way, and retrying a wrong password can lock the
/// account.
pub fn fault(e: &postgres::Error) -> Fault {
    if e.is_closed() {
        return Fault::Transient;
    }
    if let Some(code) = e.code() {
        let c = code.code();
        return if c.starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code)
        {
            Fault::Transient
        } else if c.starts_with("28")
            || [
                SqlState::INVALID_CATALOG_NAME,
                SqlState::INSUFFICIENT_PRIVILEGE,
                SqlState::INVALID_SCHEMA_NAME,
                SqlState::READ_ONLY_SQL_TRANSACTION,
            ]
            .contains(code)
        {
            Fault::Setup
        } else {
            Fault::Other
        };
    }
    // No SQLSTATE: the driver's own error; its kind is private, but its `Display` is
    // exactly the kind's phrase (the cause is only in `source()`).
    match e.to_string().as_str() {
        "error communicating with the server"
        | "error connecting to server"
        | "timeout waiting for server" => Fault::Transient,
        "error performing TLS handshake" => {
            // A certificate rustls refuses, or a server without TLS, is a setting; a
            // connection cut during the handshake is not.
            if tls_refusal(e) {
                Fault::Setup
            } else {
                Fault::Transient
            }
        }
        "authentication error" | "invalid configuration" | "invalid connection string" => {
            Fault::Setup
        }
        _ => Fault::Other,
    }
}

/// Whether a TLS handshake failed on a setting: rustls refused the server (its
/// certificate), or the server offers no TLS.
fn tls_refusal(e: &postgres::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>() || c.to_string().contains("does not support TLS") {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// What to change for a failure an operator must fix, naming the setting.
pub fn remedy(e: &postgres::Error) -> Option<&'static str> {
    if let Some(code) = e.code() {
        let c = code.code();
        return Some(match c {
            "28P01" => {
                "check the password in the warehouse URL (BANKPIPE_WAREHOUSE_URL or warehouse_url); \
                 bankpipe does not retry it, so a wrong one cannot lock the account"
            }
            _ if c.starts_with("28") => {
                "check the user name in the warehouse URL (BANKPIPE_WAREHOUSE_URL or warehouse_url) \
                 and the server's pg_hba.conf"
            }
            "3D000" => {
                "create the database (createdb), or fix the database name in the warehouse URL \
                 (BANKPIPE_WAREHOUSE_URL or warehouse_url)"
            }
            "42501" => {
                "this login lacks a privilege: `run` and `reprocess` need a role granted \
                 bankpipe_loader, `migrate` needs bankpipe_owner, reading needs bankpipe_reader \
                 (docs/POSTGRES.md); or fix the user in the warehouse URL"
            }
            "3F000" => {
                "the schema is missing: check `options=-c search_path=...` in the warehouse URL"
            }
            "25006" => {
                "the server is read-only (a standby?): point the warehouse URL at the primary"
            }
            _ => return None,
        });
    }
    let text = describe_chain(e);
    Some(if text.contains("password missing") {
        "the server asks for a password: put it in the warehouse URL \
         (postgres://user:PASSWORD@host/db, BANKPIPE_WAREHOUSE_URL or warehouse_url)"
    } else if text.contains("does not support TLS") {
        "the server offers no TLS: set sslmode=disable in the warehouse URL, or turn ssl on \
         at the server"
    } else if fault(e) == Fault::Setup && text.contains("TLS") {
        "the server's certificate is not trusted: set sslrootcert=/path/to/ca.pem in the \
         warehouse URL (and, for verify-full, use the host name the certificate names)"
    } else if text.contains("unknown option") {
        "remove or correct that parameter in the warehouse URL (BANKPIPE_WAREHOUSE_URL or \
         warehouse_url)"
    } else if fault(e) == Fault::Setup {
        "check the warehouse URL (BANKPIPE_WAREHOUSE_URL or warehouse_url)"
    } else {
        return None;
    })
}

/// The error and its causes, for matching the driver's client-side messages.
fn describe_chain(e: &postgres::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
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
    /// Connects; applies no migration. The database must exist whatever the
    /// [`super::Access`]: bankpipe never creates databases, only its schema inside one (by
    /// migrating), so the difference lies in who calls [`PgWarehouse::migrate`].
    ///
    /// # Errors
    /// [`WarehouseError::Unreachable`] when the server cannot be reached (after
    /// retries), [`WarehouseError::Setup`] when the URL is invalid or the server refuses
    /// the login (never retried), [`WarehouseError::NoWarehouse`] when the database
    /// does not exist; the message never holds the password.
    pub fn connect(url: &str) -> Result<PgWarehouse> {
        let target = Target::parse(url).map_err(|e| WarehouseError::Setup {
            url: e.url.clone(),
            reason: e.reason,
        })?;
        let mut client = connect(&target)?;
        let pid = backend_pid(&mut client)?;
        Ok(PgWarehouse {
            target,
            client,
            pid,
        })
    }

    /// The URL without secrets.
    pub fn display_url(&self) -> &str {
        &self.target.display
    }

    /// Versions recorded in `schema_migrations`; `None` when there is no such table.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn applied(&mut self) -> Result<Option<Vec<i64>>> {
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .map_err(pg("reading schema version"))?
            .get(0);
        if !exists {
            return Ok(None);
        }
        Ok(Some(
            self.client
                .query(
                    "SELECT version FROM schema_migrations ORDER BY version",
                    &[],
                )
                .map_err(pg("reading schema version"))?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        ))
    }

    /// Drops the session and connects again (after a transient failure). Claims held
    /// by the old session are released by the server.
    ///
    /// # Errors
    /// As [`PgWarehouse::connect`].
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
    /// once); returns those applied.
    ///
    /// # Errors
    /// SQL failures (for example a role without DDL rights facing a pending migration).
    pub fn migrate(&mut self) -> Result<Vec<MigrationInfo>> {
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
        let mut applied = Vec::new();
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
            applied.push(MigrationInfo {
                version: *version,
                name,
            });
        }
        tx.commit().map_err(pg("committing migration"))?;
        Ok(applied)
    }

    /// Creates the least-privilege roles and grants (idempotent).
    ///
    /// # Errors
    /// SQL failures (it needs a role allowed to create roles).
    pub fn create_roles(&mut self) -> Result<()> {
        self.client.batch_execute(ROLES).map_err(|e| {
            if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                WarehouseError::Setup {
                    url: self.target.display.clone(),
                    reason: format!(
                        "{}: `bankpipe migrate --create-roles` may be run only by a superuser, \
                             or by the role that owns the bankpipe tables if it also has \
                             CREATEROLE; user {:?} is neither",
                        e.as_db_error().map_or("permission denied", |d| d.message()),
                        self.target.config.get_user().unwrap_or("?")
                    ),
                }
            } else {
                pg("creating roles")(e)
            }
        })
    }

    pub(super) fn start_run(&mut self, run_id: &str, started_at: &str) -> Result<()> {
        // Each run holds a session lock on its id while alive; a `running` run whose
        // lock is free belongs to a dead worker.
        let run_lock = "SELECT pg_advisory_lock($1, hashtext($2))";
        self.client
            .execute(run_lock, &[&(LOCK_SPACE + 1), &run_id])
            .map_err(pg("locking the run"))?;
        self.close_dead_runs(run_id)?;
        let host = super::host_name();
        self.client
            .execute(
                "INSERT INTO runs (run_id, started_at, status, host, pid)
                 VALUES ($1, $2::text::timestamptz, 'running', $3, $4)",
                &[&run_id, &started_at, &host, &(std::process::id() as i32)],
            )
            .map_err(pg("recording run start"))?;
        Ok(())
    }

    /// Records `aborted` every `running` run but `own` whose run lock is free (its
    /// session is gone, so its process is). Called when a run starts and again when it
    /// ends: a run killed just before this one started may still have had its server
    /// session then (a backend busy in a statement notices a dead client only at its
    /// next check, up to a second later), and would otherwise stay `running`, counted in
    /// `bankpipe_runs_in_progress`, until some later run.
    fn close_dead_runs(&mut self, own: &str) -> Result<()> {
        let running = self
            .client
            .query(
                "SELECT run_id FROM runs WHERE status = 'running' AND run_id <> $1",
                &[&own],
            )
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
        // Best effort: this run's own outcome is recorded whatever happens here.
        if let Err(e) = self.close_dead_runs(run_id) {
            tracing::warn!(error = %e, "Could not record dead runs as aborted; the next run does.");
        }
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
        let (host, pid) = Claimant::this_process();
        let pid = i32::try_from(pid).unwrap_or(i32::MAX);
        let mut tx = self.client.transaction().map_err(pg("starting claim"))?;
        let inserted = tx
            .query_opt(
                "INSERT INTO files (sha256, original_name, bytes, profile, format, compression,
                                    lake_key, received_at, run_id, status,
                                    claim_host, claim_pid, claim_backend_pid, claimed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::timestamptz, $9, 'landing',
                         $10, $11, pg_backend_pid(), now())
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
                    &host,
                    &pid,
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
                        &format!(
                            "SELECT file_id, original_name, status, lake_key,
                                    claim_host, claim_pid, run_id, {}, claim_backend_pid,
                                    EXTRACT(EPOCH FROM clock_timestamp() - claimed_at)::float8
                             FROM files WHERE sha256 = $1",
                            ts("claimed_at")
                        ),
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
                            "UPDATE files SET original_name = $2, run_id = $3, profile = $4, error = NULL,
                                    claim_host = $5, claim_pid = $6,
                                    claim_backend_pid = pg_backend_pid(), claimed_at = now()
                             WHERE file_id = $1",
                            &[
                                &file_id,
                                &f.original_name,
                                &f.run_id,
                                &f.profile,
                                &host,
                                &pid,
                            ],
                        )
                        .map_err(pg("resuming a claim"))?;
                        Claim::Resume {
                            file_id,
                            lake_key: row.get(3),
                        }
                    } else {
                        Claim::Busy {
                            file_id,
                            claimant: Claimant {
                                host: row.get(4),
                                pid: row.get::<_, Option<i32>>(5).map(|p| p as u32),
                                run_id: row.get(6),
                                since: row.get(7),
                                backend_pid: row.get(8),
                                held_for: row
                                    .get::<_, Option<f64>>(9)
                                    .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok()),
                                process_gone: false,
                            },
                        }
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

    pub(super) fn claim_free(&mut self, file_id: i64) -> Result<bool> {
        // Taken and given back at once: the claim itself is taken by `claim`, which
        // finds the row `landing` with its lock free and resumes it.
        let free: bool = self
            .client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2::bigint::int)",
                &[&LOCK_SPACE, &file_id],
            )
            .map_err(pg("probing a claim"))?
            .get(0);
        if free {
            self.release(file_id)?;
        }
        Ok(free)
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
                   AND NOT EXISTS (SELECT 1 FROM file_rejects WHERE file_id = $1)
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

    pub(super) fn stop_claim(&mut self, file_id: i64, reason: &str) -> Result<()> {
        self.client
            .execute(
                "UPDATE files SET error = $2 WHERE file_id = $1 AND status = 'landing'",
                &[&file_id, &enc::no_nul(reason).as_ref()],
            )
            .map_err(pg("recording why a claim stopped"))?;
        Ok(())
    }

    pub(super) fn unfinished(&mut self) -> Result<Vec<Unfinished>> {
        Ok(self
            .client
            .query(
                "SELECT file_id, original_name, lake_key, error FROM files
                 WHERE status = 'landing' ORDER BY file_id",
                &[],
            )
            .map_err(pg("listing unfinished files"))?
            .iter()
            .map(|r| Unfinished {
                file_id: r.get(0),
                name: r.get(1),
                lake_key: r.get(2),
                reason: r.get(3),
            })
            .collect())
    }

    pub(super) fn withdraw_stopped(&mut self, name: &str, keep: i64) -> Result<Vec<Unfinished>> {
        let candidates = self
            .client
            .query(
                "SELECT file_id, original_name, lake_key, error FROM files
                 WHERE status = 'landing' AND error IS NOT NULL AND original_name = $1
                   AND file_id <> $2",
                &[&name, &keep],
            )
            .map_err(pg("withdrawing stopped claims"))?;
        let mut withdrawn = Vec::new();
        for r in &candidates {
            let file_id: i64 = r.get(0);
            // Only a claim nobody holds: a worker may have resumed this content since.
            let free: bool = self
                .client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2::bigint::int)",
                    &[&LOCK_SPACE, &file_id],
                )
                .map_err(pg("withdrawing stopped claims"))?
                .get(0);
            if !free {
                continue;
            }
            let deleted = self
                .client
                .execute(
                    "DELETE FROM files WHERE file_id = $1 AND status = 'landing' AND error IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM rejected_rows WHERE file_id = $1)",
                    &[&file_id],
                )
                .map_err(pg("withdrawing stopped claims"));
            let released = self.release(file_id);
            if deleted? == 1 {
                withdrawn.push(Unfinished {
                    file_id,
                    name: r.get(1),
                    lake_key: r.get(2),
                    reason: r.get(3),
                });
            }
            released?;
        }
        Ok(withdrawn)
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
                &[&file_id, &enc::no_nul(error).as_ref(), &at, &run_id],
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
            // Reprocessing: the previous outcome goes, atomically with the new one. Rows
            // that other files counted as identical duplicates are kept aside first, to
            // be stored again under one of those files if this load no longer has them.
            snapshot_rehome(&mut tx, plan.file_id)?;
            tx.execute(
                "DELETE FROM transactions WHERE file_id = $1",
                &[&plan.file_id],
            )
            .map_err(pg("removing the previous rows"))?;
            tx.execute(
                "DELETE FROM duplicate_rows WHERE file_id = $1",
                &[&plan.file_id],
            )
            .map_err(pg("removing the previous duplicates"))?;
            tx.execute(
                "DELETE FROM rejected_rows WHERE file_id = $1",
                &[&plan.file_id],
            )
            .map_err(pg("removing the previous rejects"))?;
        }

        tx.batch_execute("SAVEPOINT optimistic")
            .map_err(pg("setting a savepoint"))?;
        let mut rejects = RejectBuffer::default();
        let mut repeats = RepeatBuffer::default();
        let optimistic = copy_direct(&mut tx, plan, source, progress, &mut rejects, &mut repeats)
            .and_then(|mut t| {
                let merged = repeats.rows == 0 || merge_set_aside(&mut tx, plan, repeats, &mut t)?;
                Ok(merged.then_some(t))
            });
        // Staging is the way when an id is stored already (the server refused the
        // COPY), or when a row set aside as a repeat turned out to be new.
        let restage = match &optimistic {
            Ok(None) => true,
            Err(WarehouseError::Pg { source: e, .. }) => {
                e.code() == Some(&SqlState::UNIQUE_VIOLATION)
            }
            _ => false,
        };
        let mut tally = match optimistic {
            Ok(Some(t)) => {
                tx.batch_execute("RELEASE SAVEPOINT optimistic")
                    .map_err(pg("releasing a savepoint"))?;
                t
            }
            _ if restage => {
                tracing::debug!(
                    file_id = plan.file_id,
                    "An id is already loaded (or set aside as a repeat but new); merging through staging."
                );
                tx.batch_execute("ROLLBACK TO SAVEPOINT optimistic")
                    .map_err(pg("rolling back to the savepoint"))?;
                source.restart().map_err(WarehouseError::Source)?;
                rejects = RejectBuffer::default();
                let mut staged = RepeatBuffer::default();
                let segmented = if optimistic.is_err() {
                    copy_segmented(&mut tx, plan, source, progress, &mut rejects, &mut staged)
                        .and_then(|mut t| {
                            let merged =
                                staged.rows == 0 || merge_set_aside(&mut tx, plan, staged, &mut t)?;
                            Ok(merged.then_some(t))
                        })?
                } else {
                    None
                };
                match segmented {
                    Some(t) => {
                        tx.batch_execute("RELEASE SAVEPOINT optimistic")
                            .map_err(pg("releasing a savepoint"))?;
                        t
                    }
                    None => {
                        // A digest collision: the whole file through staging (exact).
                        tx.batch_execute("ROLLBACK TO SAVEPOINT optimistic")
                            .map_err(pg("rolling back to the savepoint"))?;
                        source.restart().map_err(WarehouseError::Source)?;
                        rejects = RejectBuffer::default();
                        copy_staged(&mut tx, plan, source, progress, &mut rejects)?
                    }
                }
            }
            Err(e) => return Err(e),
            Ok(None) => unreachable!("restage holds for Ok(None)"),
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
            // A failed file holds nothing, so it vouches for nothing either.
            tx.execute(
                "DELETE FROM duplicate_rows WHERE file_id = $1",
                &[&plan.file_id],
            )
            .map_err(pg("removing duplicates of a failed file"))?;
        }
        if replaceable {
            tally.rehomed = rehome(&mut tx, plan.scale)?;
        }
        let (status, loaded, amount_loaded) = match &tally.failure {
            None => ("loaded", tally.rows_loaded, tally.amount_loaded.clone()),
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
                &crate::clock::now_rfc3339(),
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
        // Read back inside the transaction: totals that do not hold roll everything back.
        let stored = stored_in(&mut tx, plan.file_id, plan.scale)?;
        stored
            .check(&tally, plan.scale)
            .map_err(WarehouseError::ControlTotals)?;
        record_figures(&mut tx, plan, &tally, &stored)?;
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
        stored_in(&mut self.client, file_id, scale)
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
        let mut tx = self
            .client
            .transaction()
            .map_err(pg("recording the landing"))?;
        if let Some(s) = sealed {
            // FOR SHARE: a rotation (FOR UPDATE) waits for this landing to commit and
            // re-wraps it, or commits first and this landing sees the new key id.
            let current = adopt_master_key(&mut tx, &s.key_id, "FOR SHARE")?;
            if current != s.key_id {
                return Err(WarehouseError::WrongMasterKey {
                    configured: s.key_id.clone(),
                    current,
                });
            }
        }
        let n = tx
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
        if n == 1 {
            tx.commit().map_err(pg("recording the landing"))?;
        }
        Ok(n as usize)
    }

    pub(super) fn master_key_id(&mut self) -> Result<Option<String>> {
        Ok(self
            .client
            .query_opt("SELECT key_id FROM lake_master_key WHERE id = 1", &[])
            .map_err(pg("reading the master key id"))?
            .map(|r| r.get(0)))
    }

    pub(super) fn rotate_master_key(
        &mut self,
        from: &str,
        to: &str,
        rewrap: &mut super::RewrapFn<'_>,
    ) -> Result<usize> {
        let mut tx = self
            .client
            .transaction()
            .map_err(pg("rotating the master key"))?;
        // FOR UPDATE: waits for landings being recorded under `from` (they hold the row
        // FOR SHARE) and keeps new ones out until `to` is current.
        let current = adopt_master_key(&mut tx, from, "FOR UPDATE")?;
        if current != from && current != to {
            return Err(WarehouseError::WrongMasterKey {
                configured: from.to_owned(),
                current,
            });
        }
        let wrapped = tx
            .query(
                "SELECT file_id, sha256, wrapped_key FROM files WHERE key_id = $1",
                &[&from],
            )
            .map_err(pg("reading wrapped data keys"))?;
        let update = tx
            .prepare("UPDATE files SET key_id = $2, wrapped_key = $3 WHERE file_id = $1")
            .map_err(pg("re-wrapping data keys"))?;
        for row in &wrapped {
            let file_id: i64 = row.get(0);
            let old = Sealed {
                key_id: from.to_owned(),
                wrapped: row.get(2),
            };
            let new = rewrap(row.get(1), &old)
                .map_err(|source| WarehouseError::Rewrap { file_id, source })?;
            tx.execute(&update, &[&file_id, &new.key_id, &new.wrapped])
                .map_err(pg("re-wrapping data keys"))?;
        }
        tx.execute(
            "UPDATE lake_master_key SET key_id = $1, since = now() WHERE id = 1 AND key_id <> $1",
            &[&to],
        )
        .map_err(pg("recording the current master key"))?;
        tx.commit().map_err(pg("rotating the master key"))?;
        Ok(wrapped.len())
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

    pub(super) fn files(&mut self, filter: &FileFilter) -> Result<Vec<FileEntry>> {
        let limit = filter.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let (after, order) = match (filter.after, filter.newest_first) {
            (after, true) => (
                after.unwrap_or(i64::MAX),
                "file_id < $3 ORDER BY file_id DESC",
            ),
            (after, false) => (after.unwrap_or(i64::MIN), "file_id > $3 ORDER BY file_id"),
        };
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT file_id, sha256, original_name, bytes, profile, status, {}, {},
                            rows_read, rows_loaded, rows_rejected, rows_duplicate,
                            amount_loaded::text, lake_key, error, key_id, wrapped_key, run_id,
                            amount_read::text, amount_rejected::text, amount_duplicate::text
                     FROM files
                     WHERE ($1::bigint IS NULL OR file_id = $1) AND ($2::text IS NULL OR status = $2)
                       AND {order} LIMIT $4",
                    ts("received_at"),
                    ts("processed_at")
                ),
                &[&filter.only, &filter.status, &after, &limit],
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
                amount_read: r.get(18),
                amount_loaded: r.get(12),
                amount_rejected: r.get(19),
                amount_duplicate: r.get(20),
                lake_key: r.get(13),
                error: r.get(14),
                key_id: r.get(15),
                wrapped_key: r.get(16),
                run_id: r.get(17),
                formats: std::collections::BTreeMap::new(),
            })
            .collect::<Vec<_>>();
        let span = files
            .iter()
            .map(|f| f.file_id)
            .min()
            .zip(files.iter().map(|f| f.file_id).max());
        let Some((first, last)) = span else {
            return Ok(files);
        };
        let counts = self
            .client
            .query(
                "SELECT file_id, field, format, rows FROM file_formats
                 WHERE file_id BETWEEN $1 AND $2",
                &[&first, &last],
            )
            .map_err(pg("listing format counts"))?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        super::attach_formats(&mut files, counts);
        Ok(files)
    }

    pub(super) fn can_read_raw(&mut self) -> Result<bool> {
        Ok(self
            .client
            .query_one(
                "SELECT has_column_privilege('rejected_rows', 'raw', 'SELECT')",
                &[],
            )
            .map_err(pg("checking privileges"))?
            .get(0))
    }

    pub(super) fn rejects(&mut self, filter: &RejectFilter) -> Result<Vec<RejectEntry>> {
        // bankpipe_reader may read every column of rejected_rows but `raw` (it may hold
        // personal data): ask first rather than fail on the column grant.
        let raw = if self.can_read_raw()? {
            "r.raw"
        } else {
            "NULL::text"
        };
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT r.file_id, f.original_name, r.line_no, r.rule, r.field, r.detail, {raw}
                     FROM rejected_rows r JOIN files f ON f.file_id = r.file_id
                     WHERE ($1::bigint IS NULL OR r.file_id = $1) AND ($2::text IS NULL OR r.rule = $2)
                     ORDER BY r.file_id, r.line_no LIMIT $3"
                ),
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
/// ~3-5 s in all). A refusal retrying cannot fix (wrong password, missing database or
/// password, TLS the server or its certificate cannot provide) fails at once as
/// [`WarehouseError::Setup`] (or [`WarehouseError::NoWarehouse`] for a missing
/// database).
fn connect(target: &Target) -> Result<Client> {
    let mut attempt = 1;
    loop {
        let err = match target.connect() {
            Ok(client) => return Ok(client),
            Err(e) => e,
        };
        let (fault, reason) = match &err {
            ConnectError::Driver(d) => (fault(d), describe(d)),
            ConnectError::Tls(t) => (
                Fault::Setup,
                format!("{t}; fix sslrootcert in the warehouse URL"),
            ),
        };
        let url = target.display.clone();
        let error = match (&err, fault) {
            (ConnectError::Driver(d), _) if d.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {
                WarehouseError::NoWarehouse { url, reason }
            }
            (_, Fault::Setup) => WarehouseError::Setup { url, reason },
            _ => WarehouseError::Unreachable { url, reason },
        };
        if fault != Fault::Transient || attempt >= 5 {
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

/// Distinct ids the optimistic path remembers per file (a 64-bit digest each, ~18 bytes
/// with the table's overhead; ~75 MB at the cap). Past it, further new ids are not
/// remembered: a later repeat of one of them aborts the optimistic `COPY` (unique
/// violation) and the file takes the staging path, which is exact at any size.
const SEEN_IDS_MAX: usize = 1 << 22;

/// A 64-bit digest of a transaction id, to notice ids repeated inside a file: FNV-1a,
/// then the splitmix64 finaliser so that every bit depends on every byte (the set
/// below uses the digest as its own hash). Collisions only cost speed (see
/// [`merge_set_aside`]).
fn id_digest(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Hashes a digest to itself (it is already well mixed).
#[derive(Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The digests of the ids a load has seen in its file.
type SeenIds = std::collections::HashSet<u64, std::hash::BuildHasherDefault<DigestHasher>>;

/// Encodes one valid row for `bankpipe_staging`: the `transactions` fields, then
/// warnings, the raw text and the record's order in the file.
fn encode_staged(buf: &mut Vec<u8>, batch: &Batch, row: &ValidRow, file_id: i64, ord: i64) {
    let start = buf.len();
    encode_row(buf, row, file_id);
    // Three more fields: warnings, raw, ord.
    buf[start..start + 2].copy_from_slice(&(TXN_FIELDS + 3).to_be_bytes());
    enc::int4(buf, i32::from(row.warnings.0));
    enc::text(buf, &String::from_utf8_lossy(batch.raw(row.span)));
    enc::int8(buf, ord);
}

/// Rows the optimistic path set aside because their id already occurred earlier in the
/// file, encoded for `bankpipe_staging`; spilled to a temporary file past 16 MiB, so
/// memory stays bounded whatever the share of repeats.
#[derive(Default)]
struct RepeatBuffer {
    buf: Vec<u8>,
    spill: Option<std::fs::File>,
    rows: u64,
    /// Rows that are their id's first occurrence in the file.
    firsts: u64,
}

impl RepeatBuffer {
    /// Adds a row; `first`: its id's digest had not been seen earlier in the file (so it
    /// is certainly the id's first occurrence).
    fn add(
        &mut self,
        batch: &Batch,
        row: &ValidRow,
        file_id: i64,
        ord: i64,
        first: bool,
    ) -> Result<()> {
        let start = self.buf.len();
        encode_staged(&mut self.buf, batch, row, file_id, ord);
        self.buf[start..start + 2].copy_from_slice(&(TXN_FIELDS + 4).to_be_bytes());
        self.buf.extend_from_slice(&1i32.to_be_bytes());
        self.buf.push(u8::from(first));
        self.rows += 1;
        self.firsts += u64::from(first);
        self.spill_if_large()
    }

    /// Takes over the rows of `other`.
    fn absorb(&mut self, other: RepeatBuffer) -> Result<()> {
        let io = |e: std::io::Error| WarehouseError::Source(format!("repeats buffer: {e}"));
        if let Some(mut f) = other.spill {
            use std::io::{Read, Seek};
            f.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut chunk).map_err(io)?;
                if n == 0 {
                    break;
                }
                self.buf.extend_from_slice(&chunk[..n]);
                self.spill_if_large()?;
            }
        }
        self.buf.extend_from_slice(&other.buf);
        self.rows += other.rows;
        self.firsts += other.firsts;
        self.spill_if_large()
    }

    fn spill_if_large(&mut self) -> Result<()> {
        if self.buf.len() > 16 << 20 {
            let io = |e: std::io::Error| WarehouseError::Source(format!("repeats buffer: {e}"));
            if self.spill.is_none() {
                self.spill = Some(tempfile::tempfile().map_err(io)?);
            }
            if let Some(f) = self.spill.as_mut() {
                f.write_all(&self.buf).map_err(io)?;
            }
            self.buf.clear();
        }
        Ok(())
    }

    /// Streams the rows into `bankpipe_staging` (which must exist).
    fn copy(self, tx: &mut Transaction<'_>) -> Result<()> {
        let mut writer = tx
            .copy_in(&format!(
                "COPY bankpipe_staging ({TXN_COLUMNS}, warnings, raw, ord, first) FROM STDIN (FORMAT binary)"
            ))
            .map_err(pg("starting staging COPY"))?;
        let io = |e: std::io::Error| WarehouseError::Source(format!("repeats buffer: {e}"));
        let mut head = Vec::new();
        enc::header(&mut head);
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
        writer
            .finish()
            .map_err(pg("staging repeated ids with COPY"))?;
        Ok(())
    }
}

/// The optimistic path: the first occurrence of every id in the file straight into
/// `transactions`; a row whose id occurred earlier in the file goes to `repeats`
/// instead, for [`merge_set_aside`] (so in-file repeats, common in real files, do not
/// abort the `COPY`). `tally` counts only the rows sent to `transactions` as loaded.
fn copy_direct(
    tx: &mut Transaction<'_>,
    plan: &LoadPlan,
    source: &mut dyn BatchSource,
    progress: &mut dyn FnMut(&Tally),
    rejects: &mut RejectBuffer,
    repeats: &mut RepeatBuffer,
) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut seen = SeenIds::default();
    let mut ord = 0i64;
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
        tally.amount_read.merge(&batch.amount_read);
        tally.formats.merge(&batch.formats);
        // File order decides which occurrence of an id is the first. A digest seen
        // before sets the row aside (a digest collision only sets aside a first
        // occurrence, which `merge_set_aside` notices).
        let mut order: Vec<&ValidRow> = Vec::with_capacity(batch.rows.len());
        for row in &batch.rows {
            ord += 1;
            let digest = id_digest(&row.txn.transaction_id);
            if seen.contains(&digest) {
                repeats.add(&batch, row, plan.file_id, ord, false)?;
            } else {
                if seen.len() < SEEN_IDS_MAX {
                    seen.insert(digest);
                }
                order.push(row);
            }
        }
        // Key order within a batch keeps the primary-key inserts on neighbouring index
        // pages.
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

/// The statements of the merge path, public so a test can `EXPLAIN` exactly what a load
/// runs (`tests/cli_postgres.rs`). Parameters: [`MergeSql::classify`] takes the amount
/// scale (`$1`, `int`) and the file id (`$2`, `bigint`), [`MergeSql::quarantine`] the
/// file id (`$1`), the others none.
///
/// Every statement is a sort, a hash join or a merge join: none compares each staged row
/// with every other (issue #8: an `IN (SELECT ...)` subplan, unhashed at the default
/// `work_mem`, made this path quadratic). A staged row is *ours* (the one loaded) when it
/// is the first occurrence of its id in the file and the stored row carries this file's
/// id: no other load can have stored a row under this file id (the file is `landing`,
/// and a reprocess deletes its previous rows first in the same transaction).
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct MergeSql {
    /// Creates (or empties) the session's staging table.
    pub staging: String,
    /// Inserts the first occurrence of every id not yet stored.
    pub insert: String,
    /// Counts and sums loaded, duplicate and conflicting rows, and warnings of loaded rows.
    pub classify: String,
    /// Quarantines the conflicting rows, naming the columns that differ.
    pub quarantine: String,
    /// Records the identical duplicates in `duplicate_rows` (duplicate lineage).
    pub duplicates: String,
    /// After an optimistic `COPY`, for a staging table holding only the rows it set
    /// aside (see `merge_set_aside`): inserts those that are their id's first
    /// occurrence (`first`), unless stored.
    pub set_aside_insert: String,
    /// Counts the set-aside rows whose id is not stored, then count and sum of the
    /// loaded, of the identical and of the conflicting ones, then warnings of the
    /// loaded. `$1`: the amount scale, `$2`: the file id.
    pub repeats_classify: String,
    /// Quarantines the conflicting set-aside rows (`$1`: the file id).
    pub repeats_quarantine: String,
    /// Records the identical set-aside rows in `duplicate_rows` (`$1`: the file id).
    pub repeats_duplicates: String,
}

impl MergeSql {
    /// The statements for this build's warning rules.
    pub fn new() -> MergeSql {
        let staging = "CREATE TEMP TABLE IF NOT EXISTS bankpipe_staging (
                transaction_id TEXT COLLATE \"C\", customer_id TEXT, customer_dob DATE, gender TEXT,
                location TEXT, account_balance NUMERIC, transaction_at TIMESTAMP, amount NUMERIC,
                currency TEXT, file_id BIGINT, line_no INTEGER,
                warnings INTEGER, raw TEXT, ord BIGINT, first BOOLEAN) ON COMMIT DROP;
             TRUNCATE bankpipe_staging;"
            .to_owned();
        let insert = format!(
            "INSERT INTO transactions ({TXN_COLUMNS})
             SELECT DISTINCT ON (transaction_id) {TXN_COLUMNS} FROM bankpipe_staging
             ORDER BY transaction_id, ord
             ON CONFLICT (transaction_id) DO NOTHING"
        );
        // Each staged row with the stored row of its id (there always is one after
        // `insert`), and whether it is the file's first occurrence of that id.
        let joined = "(SELECT *, ord = min(ord) OVER (PARTITION BY transaction_id) AS first_ord
                       FROM bankpipe_staging) s
                      JOIN transactions t USING (transaction_id)";
        let same = "(t.customer_id, t.customer_dob, t.gender, t.location, t.account_balance,
                     t.transaction_at, t.amount, t.currency)
                    IS NOT DISTINCT FROM
                    (s.customer_id, s.customer_dob, s.gender, s.location, s.account_balance,
                     s.transaction_at, s.amount, s.currency)";
        let ours_at = |n: u8| format!("(s.first_ord AND t.file_id = ${n}::bigint)");
        let ours = ours_at(2);
        let warning_counts: String = (0..Rule::WARNINGS.len())
            .map(|i| {
                format!(
                    ", COUNT(*) FILTER (WHERE {ours} AND s.warnings & {} <> 0)",
                    1 << i
                )
            })
            .collect();
        let classify = format!(
            "SELECT COUNT(*) FILTER (WHERE {ours}),
                    round(COALESCE(SUM(s.amount) FILTER (WHERE {ours}), 0), $1::int)::text,
                    COUNT(*) FILTER (WHERE NOT {ours} AND {same}),
                    round(COALESCE(SUM(s.amount) FILTER (WHERE NOT {ours} AND {same}), 0), $1::int)::text,
                    COUNT(*) FILTER (WHERE NOT {ours} AND NOT ({same})),
                    round(COALESCE(SUM(s.amount) FILTER (WHERE NOT {ours} AND NOT ({same})), 0), $1::int)::text
                    {warning_counts}
             FROM {joined}"
        );
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
        let quarantine = format!(
            "INSERT INTO rejected_rows (file_id, line_no, rule, field, detail, amount, raw)
             SELECT s.file_id, s.line_no, 'conflicting_duplicate', 'transaction_id',
                    'already loaded from file ' || t.file_id || ' line ' || t.line_no ||
                    ' with a different ' || concat_ws(', ', {differs}), s.amount, s.raw
             FROM {joined}
             WHERE NOT {ours} AND NOT ({same})",
            ours = ours_at(1)
        );
        // Without the raw text: the window's sort stays small.
        let duplicates = format!(
            "INSERT INTO duplicate_rows (transaction_id, file_id, line_no, warnings)
             SELECT s.transaction_id, s.file_id, s.line_no, s.warnings
             FROM (SELECT {TXN_COLUMNS}, warnings,
                          ord = min(ord) OVER (PARTITION BY transaction_id) AS first_ord
                   FROM bankpipe_staging) s
             JOIN transactions t USING (transaction_id)
             WHERE NOT {ours} AND {same}",
            ours = ours_at(1)
        );
        // Set-aside rows (see `merge_set_aside`): a staged row is ours when it is its
        // id's first occurrence (`first`, decided by the client) and the stored row
        // carries this file's id; the optimistic COPY only stored other ids.
        let mine = |n: u8| format!("(s.first AND t.file_id = ${n}::bigint)");
        let set_aside_insert = format!(
            "INSERT INTO transactions ({TXN_COLUMNS})
             SELECT {TXN_COLUMNS} FROM bankpipe_staging WHERE first
             ORDER BY transaction_id
             ON CONFLICT (transaction_id) DO NOTHING"
        );
        let ours2 = mine(2);
        let set_aside_warnings: String = (0..Rule::WARNINGS.len())
            .map(|i| {
                format!(
                    ", COUNT(*) FILTER (WHERE {ours2} AND s.warnings & {} <> 0)",
                    1 << i
                )
            })
            .collect();
        let found = "t.transaction_id IS NOT NULL";
        let repeats_classify = format!(
            "SELECT COUNT(*) FILTER (WHERE t.transaction_id IS NULL),
                    COUNT(*) FILTER (WHERE {ours2}),
                    round(COALESCE(SUM(s.amount) FILTER (WHERE {ours2}), 0), $1::int)::text,
                    COUNT(*) FILTER (WHERE {found} AND NOT {ours2} AND {same}),
                    round(COALESCE(SUM(s.amount) FILTER (WHERE {found} AND NOT {ours2} AND {same}), 0), $1::int)::text,
                    COUNT(*) FILTER (WHERE {found} AND NOT {ours2} AND NOT ({same})),
                    round(COALESCE(SUM(s.amount) FILTER (WHERE {found} AND NOT {ours2} AND NOT ({same})), 0), $1::int)::text
                    {set_aside_warnings}
             FROM bankpipe_staging s LEFT JOIN transactions t USING (transaction_id)"
        );
        let repeats_quarantine = format!(
            "INSERT INTO rejected_rows (file_id, line_no, rule, field, detail, amount, raw)
             SELECT s.file_id, s.line_no, 'conflicting_duplicate', 'transaction_id',
                    'already loaded from file ' || t.file_id || ' line ' || t.line_no ||
                    ' with a different ' || concat_ws(', ', {differs}), s.amount, s.raw
             FROM bankpipe_staging s JOIN transactions t USING (transaction_id)
             WHERE NOT {ours1} AND NOT ({same})",
            ours1 = mine(1)
        );
        let repeats_duplicates = format!(
            "INSERT INTO duplicate_rows (transaction_id, file_id, line_no, warnings)
             SELECT s.transaction_id, s.file_id, s.line_no, s.warnings
             FROM bankpipe_staging s JOIN transactions t USING (transaction_id)
             WHERE NOT {ours1} AND {same}",
            ours1 = mine(1)
        );
        MergeSql {
            staging,
            insert,
            classify,
            quarantine,
            duplicates,
            set_aside_insert,
            repeats_classify,
            repeats_quarantine,
            repeats_duplicates,
        }
    }
}

impl Default for MergeSql {
    fn default() -> MergeSql {
        MergeSql::new()
    }
}

/// After an optimistic `COPY` that succeeded (whole or by segments): merges the rows it
/// set aside. Those are repeats (an earlier occurrence of the id exists in the file:
/// stored by the `COPY`, or itself set aside) and, after segments the server refused,
/// those segments' first occurrences (`first`). First occurrences not stored yet are
/// inserted; every other set-aside row is compared with the stored row of its id:
/// identical is a duplicate, different is quarantined. The `COPY` only stored ids new to
/// the warehouse and to the file, so the stored row of a set-aside id carries this
/// file's id only when one of its set-aside first occurrences was just inserted. A
/// set-aside row whose id ends up not stored at all (a digest collision set aside a
/// first occurrence as a repeat) makes this return `false`; the caller then rolls back
/// and merges the whole file through staging.
fn merge_set_aside(
    tx: &mut Transaction<'_>,
    plan: &LoadPlan,
    staged: RepeatBuffer,
    tally: &mut Tally,
) -> Result<bool> {
    let started = std::time::Instant::now();
    let sql = MergeSql::new();
    let (rows, firsts) = (staged.rows, staged.firsts);
    tx.batch_execute(&sql.staging)
        .map_err(pg("creating the staging table"))?;
    staged.copy(tx)?;
    // As in `copy_staged`: before reading which ids exist.
    tx.batch_execute("LOCK TABLE duplicate_rows IN ROW EXCLUSIVE MODE; ANALYZE bankpipe_staging")
        .map_err(pg("locking duplicate lineage"))?;
    if firsts > 0 {
        tx.execute(&sql.set_aside_insert, &[])
            .map_err(pg("merging new rows"))?;
    }
    let scale = i32::from(plan.scale);
    let row = tx
        .query_one(&sql.repeats_classify, &[&scale, &plan.file_id])
        .map_err(pg("classifying set-aside rows"))?;
    if row.get::<_, i64>(0) > 0 {
        return Ok(false);
    }
    let total = |i: usize| Total::parse(&row.get::<_, String>(i), plan.scale).unwrap_or_default();
    tally.rows_loaded += row.get::<_, i64>(1) as u64;
    tally.amount_loaded.merge(&total(2));
    let duplicates = row.get::<_, i64>(3) as u64;
    tally.rows_duplicate += duplicates;
    tally.amount_duplicate.merge(&total(4));
    let conflicts = row.get::<_, i64>(5) as u64;
    tally.rows_rejected += conflicts;
    tally.amount_rejected.merge(&total(6));
    for (i, c) in tally.warnings.0.iter_mut().enumerate() {
        *c += row.get::<_, i64>(7 + i) as u64;
    }
    if conflicts > 0 {
        *tally.rejects.entry(Rule::ConflictingDuplicate).or_default() += conflicts;
        tx.execute(&sql.repeats_quarantine, &[&plan.file_id])
            .map_err(pg("quarantining conflicting rows"))?;
    }
    if duplicates > 0 {
        tx.execute(&sql.repeats_duplicates, &[&plan.file_id])
            .map_err(pg("recording duplicate lineage"))?;
    }
    tracing::debug!(
        file_id = plan.file_id,
        rows,
        firsts,
        elapsed_s = started.elapsed().as_secs_f64(),
        "Merged the rows set aside by the optimistic COPY."
    );
    Ok(true)
}

/// Rows of the first segment of [`copy_segmented`]; each successful segment doubles
/// it, up to [`SEGMENT_MAX_ROWS`], and a refused one starts again from here.
const SEGMENT_MIN_ROWS: usize = 32 * 1024;
const SEGMENT_MAX_ROWS: usize = 1024 * 1024;
/// Savepoints [`copy_segmented`] may take: PostgreSQL caches 64 subtransactions per
/// session before every snapshot elsewhere must look them up; past this, the rest of
/// the file is set aside whole.
const SEGMENTS_MAX: usize = 40;

/// After the whole-file optimistic `COPY` was refused (an id is already stored): the
/// file again, in segments of growing size, each its own `COPY` under its own
/// savepoint. A segment the server refuses is rolled back and its rows set aside (kept
/// encoded meanwhile, spilling to disk past 16 MiB), so the rows already in the
/// warehouse cost one segment each, not the whole file; repeats are set aside as in
/// [`copy_direct`]. `staged` then goes to [`merge_set_aside`].
fn copy_segmented(
    tx: &mut Transaction<'_>,
    plan: &LoadPlan,
    source: &mut dyn BatchSource,
    progress: &mut dyn FnMut(&Tally),
    rejects: &mut RejectBuffer,
    staged: &mut RepeatBuffer,
) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut seen = SeenIds::default();
    let mut ord = 0i64;
    let mut target = SEGMENT_MIN_ROWS;
    let (mut segments, mut refused) = (0usize, 0usize);
    let mut done = false;
    while !done {
        if segments >= SEGMENTS_MAX || seen.len() >= SEEN_IDS_MAX {
            // Everything left is set aside; `first` stays exact while ids are remembered,
            // and a first occurrence marked as a repeat is caught by `merge_set_aside`.
            let remember = seen.len() < SEEN_IDS_MAX;
            while let Some(batch) = source.next_batch() {
                tally.rows_read += batch.rows_read;
                tally.amount_read.merge(&batch.amount_read);
                tally.formats.merge(&batch.formats);
                for row in &batch.rows {
                    ord += 1;
                    let digest = id_digest(&row.txn.transaction_id);
                    let first = remember && seen.insert(digest);
                    staged.add(&batch, row, plan.file_id, ord, first)?;
                }
                rejects.add_batch(&batch, &mut tally);
                progress(&tally);
            }
            break;
        }
        tx.batch_execute("SAVEPOINT segment")
            .map_err(pg("setting a savepoint"))?;
        segments += 1;
        let mut held = RepeatBuffer::default();
        let mut seg = Tally::default();
        let finished = {
            let mut writer = tx
                .copy_in(&format!(
                    "COPY transactions ({TXN_COLUMNS}) FROM STDIN (FORMAT binary)"
                ))
                .map_err(pg("starting COPY"))?;
            let mut buf = Vec::with_capacity(COPY_CHUNK + 64 * 1024);
            enc::header(&mut buf);
            let mut rows_in_segment = 0usize;
            let mut broken = false;
            loop {
                let Some(batch) = source.next_batch() else {
                    done = true;
                    break;
                };
                tally.rows_read += batch.rows_read;
                tally.amount_read.merge(&batch.amount_read);
                tally.formats.merge(&batch.formats);
                let mut order: Vec<&ValidRow> = Vec::with_capacity(batch.rows.len());
                for row in &batch.rows {
                    ord += 1;
                    let digest = id_digest(&row.txn.transaction_id);
                    if seen.contains(&digest) {
                        staged.add(&batch, row, plan.file_id, ord, false)?;
                    } else {
                        seen.insert(digest);
                        held.add(&batch, row, plan.file_id, ord, true)?;
                        order.push(row);
                    }
                }
                order.sort_unstable_by(|a, b| a.txn.transaction_id.cmp(&b.txn.transaction_id));
                for row in order {
                    encode_row(&mut buf, row, plan.file_id);
                    seg.rows_loaded += 1;
                    seg.amount_loaded.add(row.txn.amount);
                    seg.warnings.add(row.warnings);
                }
                rejects.add_batch(&batch, &mut tally);
                rows_in_segment += batch.rows.len();
                if buf.len() >= COPY_CHUNK {
                    // A refused stream (an id already stored): `finish` reports it.
                    broken = writer.write_all(&buf).is_err();
                    buf.clear();
                }
                progress(&tally);
                if broken || rows_in_segment >= target {
                    break;
                }
            }
            if !broken {
                enc::trailer(&mut buf);
                let _ = writer.write_all(&buf);
            }
            writer.finish()
        };
        match finished {
            Ok(_) => {
                tx.batch_execute("RELEASE SAVEPOINT segment")
                    .map_err(pg("releasing a savepoint"))?;
                tally.rows_loaded += seg.rows_loaded;
                tally.amount_loaded.merge(&seg.amount_loaded);
                tally.warnings.merge(&seg.warnings);
                target = (target * 2).min(SEGMENT_MAX_ROWS);
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT segment; RELEASE SAVEPOINT segment")
                    .map_err(pg("rolling back to the savepoint"))?;
                staged.absorb(held)?;
                refused += 1;
                target = SEGMENT_MIN_ROWS;
            }
            Err(e) => return Err(pg("loading rows with COPY")(e)),
        }
    }
    tracing::debug!(
        file_id = plan.file_id,
        segments,
        refused,
        set_aside = staged.rows,
        "COPY by segments after an id was found stored."
    );
    Ok(tally)
}

/// The merge path: the file into a temporary staging table, then set operations decide
/// what is new, duplicate or conflicting ([`MergeSql`]).
fn copy_staged(
    tx: &mut Transaction<'_>,
    plan: &LoadPlan,
    source: &mut dyn BatchSource,
    progress: &mut dyn FnMut(&Tally),
    rejects: &mut RejectBuffer,
) -> Result<Tally> {
    let sql = MergeSql::new();
    tx.batch_execute(&sql.staging)
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
            tally.amount_read.merge(&batch.amount_read);
            tally.formats.merge(&batch.formats);
            for row in &batch.rows {
                // Record order: several records can share a line (compact JSON).
                ord += 1;
                encode_staged(&mut buf, &batch, row, plan.file_id, ord);
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
    // Taken before the merge reads which ids exist: a reprocess moving rows between files
    // (SHARE ROW EXCLUSIVE on duplicate_rows) either finishes before this merge looks,
    // or waits until this file's duplicates are recorded and committed.
    tx.batch_execute("LOCK TABLE duplicate_rows IN ROW EXCLUSIVE MODE")
        .map_err(pg("locking duplicate lineage"))?;
    // Temporary tables are never analyzed by autovacuum: without statistics the planner
    // guesses the number of distinct ids and the join sizes.
    tx.batch_execute("ANALYZE bankpipe_staging")
        .map_err(pg("analyzing the staging table"))?;
    tx.execute(&sql.insert, &[])
        .map_err(pg("merging new rows"))?;
    let scale = i32::from(plan.scale);
    let row = tx
        .query_one(&sql.classify, &[&scale, &plan.file_id])
        .map_err(pg("classifying staged rows"))?;
    let total = |i: usize| Total::parse(&row.get::<_, String>(i), plan.scale).unwrap_or_default();
    tally.rows_loaded = row.get::<_, i64>(0) as u64;
    tally.amount_loaded = total(1);
    tally.rows_duplicate = row.get::<_, i64>(2) as u64;
    tally.amount_duplicate = total(3);
    let conflicts = row.get::<_, i64>(4) as u64;
    tally.rows_rejected += conflicts;
    tally.amount_rejected.merge(&total(5));
    for (i, c) in tally.warnings.0.iter_mut().enumerate() {
        *c = row.get::<_, i64>(6 + i) as u64;
    }
    if conflicts > 0 {
        *tally.rejects.entry(Rule::ConflictingDuplicate).or_default() += conflicts;
        // Only then: a second join of the whole file is not worth it for duplicates alone.
        tx.execute(&sql.quarantine, &[&plan.file_id])
            .map_err(pg("quarantining conflicting rows"))?;
    }
    if tally.rows_duplicate > 0 {
        // Duplicate lineage (`duplicate_rows`), so a reprocess can move a row another
        // file carries instead of deleting it.
        tx.execute(&sql.duplicates, &[&plan.file_id])
            .map_err(pg("recording duplicate lineage"))?;
    }
    Ok(tally)
}

/// Keeps aside, before a reprocess deletes a file's rows, each of its rows that another
/// loaded file counted as an identical duplicate, with the copy that would take it over:
/// the earliest such file, at its first line carrying the id. Locks `duplicate_rows`
/// against other reprocesses and against merges (see [`copy_staged`]) until commit, so
/// no duplicate of these rows can be counted unseen meanwhile.
fn snapshot_rehome(tx: &mut Transaction<'_>, file_id: i64) -> Result<()> {
    tx.batch_execute(
        "LOCK TABLE duplicate_rows IN SHARE ROW EXCLUSIVE MODE;
         CREATE TEMP TABLE IF NOT EXISTS bankpipe_rehome (
            transaction_id TEXT COLLATE \"C\", customer_id TEXT, customer_dob DATE, gender TEXT,
            location TEXT, account_balance NUMERIC, transaction_at TIMESTAMP, amount NUMERIC,
            currency TEXT, file_id BIGINT, line_no INTEGER, warnings INTEGER, dup TID)
            ON COMMIT DROP;
         TRUNCATE bankpipe_rehome;",
    )
    .map_err(pg("creating the rehome table"))?;
    tx.execute(
        "INSERT INTO bankpipe_rehome
         SELECT DISTINCT ON (d.transaction_id)
                t.transaction_id, t.customer_id, t.customer_dob, t.gender, t.location,
                t.account_balance, t.transaction_at, t.amount, t.currency,
                d.file_id, d.line_no, d.warnings, d.ctid
         FROM duplicate_rows d
         JOIN files f ON f.file_id = d.file_id AND f.status = 'loaded'
         JOIN transactions t ON t.transaction_id = d.transaction_id AND t.file_id = $1
         WHERE d.file_id <> $1
         ORDER BY d.transaction_id, d.file_id, d.line_no, d.ctid",
        &[&file_id],
    )
    .map_err(pg("keeping aside rows other files carry"))?;
    Ok(())
}

/// After a reprocess loaded (or failed) its file: stores again, under the copy chosen by
/// [`snapshot_rehome`], every kept-aside row whose id is no longer in `transactions`,
/// and moves those rows from duplicate to loaded in the receiving files' counts,
/// amounts and warnings (exact NUMERIC arithmetic). Rows the file loaded again keep its
/// lineage.
fn rehome(tx: &mut Transaction<'_>, scale: u8) -> Result<Vec<super::Rehomed>> {
    let moved = tx
        .query(
            "WITH gone AS (
                 DELETE FROM bankpipe_rehome r WHERE NOT EXISTS
                     (SELECT 1 FROM transactions t WHERE t.transaction_id = r.transaction_id)
                 RETURNING *),
             stored AS (
                 INSERT INTO transactions (transaction_id, customer_id, customer_dob, gender,
                         location, account_balance, transaction_at, amount, currency, file_id, line_no)
                 SELECT transaction_id, customer_id, customer_dob, gender, location,
                        account_balance, transaction_at, amount, currency, file_id, line_no
                 FROM gone),
             undup AS (
                 DELETE FROM duplicate_rows d USING gone g WHERE d.ctid = g.dup)
             SELECT file_id, COUNT(*), round(SUM(amount), $1::int)::text,
                    array_agg(warnings) FILTER (WHERE warnings <> 0)
             FROM gone GROUP BY file_id ORDER BY file_id",
            &[&i32::from(scale)],
        )
        .map_err(pg("storing moved rows under their new file"))?;
    let mut out = Vec::with_capacity(moved.len());
    for row in moved {
        let file_id: i64 = row.get(0);
        let rows: i64 = row.get(1);
        let amount: String = row.get(2);
        let bits: Option<Vec<i32>> = row.get(3);
        tx.execute(
            "UPDATE files SET rows_loaded = rows_loaded + $2, rows_duplicate = rows_duplicate - $2,
                    amount_loaded = amount_loaded + $3::text::numeric,
                    amount_duplicate = amount_duplicate - $3::text::numeric
             WHERE file_id = $1",
            &[&file_id, &rows, &amount],
        )
        .map_err(pg("moving counts of the receiving file"))?;
        let mut warnings = crate::validate::WarningCounts::default();
        for b in bits.unwrap_or_default() {
            let bits = u16::try_from(b).map_err(|_| {
                WarehouseError::Aborted(format!("duplicate_rows holds warning bits {b}"))
            })?;
            warnings.add(crate::validate::Warnings(bits));
        }
        for (rule, n) in warnings.iter() {
            tx.execute(
                "INSERT INTO file_warnings (file_id, rule, rows) VALUES ($1, $2, $3)
                 ON CONFLICT (file_id, rule) DO UPDATE SET rows = file_warnings.rows + EXCLUDED.rows",
                &[&file_id, &rule.name(), &(n as i64)],
            )
            .map_err(pg("moving warnings of the receiving file"))?;
        }
        let amount = Total::parse(&amount, scale).ok_or_else(|| {
            WarehouseError::Aborted(format!(
                "rows moved to file {file_id} sum to {amount}, not at scale {scale}"
            ))
        })?;
        out.push(super::Rehomed {
            file_id,
            rows: rows as u64,
            amount,
        });
    }
    // The receivers' amounts by currency, recomputed from their rows (a reprocess that
    // moves rows is rare; the scan is of those files only).
    let receivers: Vec<i64> = out.iter().map(|m| m.file_id).collect();
    if !receivers.is_empty() {
        tx.execute(
            "DELETE FROM file_amounts WHERE file_id = ANY($1)",
            &[&receivers],
        )
        .map_err(pg("moving amounts of the receiving files"))?;
        tx.execute(
            "INSERT INTO file_amounts (file_id, currency, rows, amount)
             SELECT file_id, currency, COUNT(*), SUM(amount) FROM transactions
             WHERE file_id = ANY($1) GROUP BY file_id, currency",
            &[&receivers],
        )
        .map_err(pg("moving amounts of the receiving files"))?;
    }
    Ok(out)
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
            if let Some(a) = &rej.amount {
                tally.amount_rejected.add_parsed(a);
            }
            *tally.rejects.entry(rej.rule).or_default() += 1;
            enc::row(&mut self.buf, 7);
            enc::int8(&mut self.buf, 0); // file_id, patched at COPY time (constant)
            enc::int8(&mut self.buf, r.line as i64);
            enc::text(&mut self.buf, rej.rule.name());
            enc::opt_text(&mut self.buf, rej.field.map(crate::profile::Field::name));
            enc::text(&mut self.buf, &rej.detail);
            enc::opt_parsed_numeric(&mut self.buf, rej.amount.as_ref());
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

/// The catalog's current master key id, first set to `key_id` when there is none yet,
/// with its row locked (`lock`: `FOR SHARE` or `FOR UPDATE`) until `tx` ends. The insert
/// comes first so that the row exists to be locked: a concurrent first insert makes it
/// wait, not slip past the lock.
fn adopt_master_key(tx: &mut Transaction<'_>, key_id: &str, lock: &str) -> Result<String> {
    tx.execute(
        "INSERT INTO lake_master_key (id, key_id) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        &[&key_id],
    )
    .map_err(pg("recording the current master key"))?;
    Ok(tx
        .query_one(
            &format!("SELECT key_id FROM lake_master_key WHERE id = 1 {lock}"),
            &[],
        )
        .map_err(pg("reading the master key id"))?
        .get(0))
}

/// What the warehouse holds for a file (see [`Stored`]), read on `client`: the load's own
/// transaction before it commits, or the session afterwards. `NUMERIC` sums are exact at
/// any size.
fn stored_in(client: &mut impl postgres::GenericClient, file_id: i64, scale: u8) -> Result<Stored> {
    let total = |t: Option<String>| {
        t.and_then(|t| Total::parse(&t, scale))
            .unwrap_or(Total::from_minor(-1))
    };
    let started = std::time::Instant::now();
    // Grouped by currency for file_amounts: a hash aggregate in the same scan.
    let mut by_currency = BTreeMap::new();
    let (mut transactions, mut transactions_amount) = (0u64, Total::default());
    for row in client
        .query(
            "SELECT currency, COUNT(*), round(SUM(amount), $2::int)::text
             FROM transactions WHERE file_id = $1 GROUP BY currency",
            &[&file_id, &i32::from(scale)],
        )
        .map_err(pg("counting loaded rows"))?
    {
        let (n, sum) = (row.get::<_, i64>(1) as u64, total(row.get(2)));
        transactions += n;
        transactions_amount.merge(&sum);
        by_currency.insert(row.get::<_, String>(0), (n, sum));
    }
    let r = client
        .query_one(
            "SELECT COUNT(*), round(COALESCE(SUM(amount), 0), $2::int)::text
             FROM rejected_rows WHERE file_id = $1",
            &[&file_id, &i32::from(scale)],
        )
        .map_err(pg("counting rejected rows"))?;
    let d = client
        .query_one(
            "SELECT COUNT(*) FROM duplicate_rows WHERE file_id = $1",
            &[&file_id],
        )
        .map_err(pg("counting duplicate lineage"))?;
    let f = client
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
        transactions,
        transactions_amount,
        rejected: r.get::<_, i64>(0) as u64,
        rejected_amount: total(r.get(1)),
        duplicates: d.get::<_, i64>(0) as u64,
        loaded_by_currency: Some(by_currency),
    })
}

impl PgWarehouse {
    /// See [`Warehouse::catalog_figures`](super::Warehouse::catalog_figures).
    pub(super) fn catalog_figures(&mut self) -> Result<super::figures::CatalogFigures> {
        use super::figures::CatalogFigures;
        let mut f = CatalogFigures::zeroed();
        // One snapshot: every figure from the same moment.
        let mut tx = self
            .client
            .build_transaction()
            .read_only(true)
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .start()
            .map_err(pg("reading catalog figures"))?;
        let pairs = |tx: &mut Transaction<'_>, q: &str| -> Result<Vec<(String, i64)>> {
            Ok(tx
                .query(q, &[])
                .map_err(pg("reading catalog figures"))?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        };
        for (rule, n) in pairs(
            &mut tx,
            "SELECT rule, SUM(rows)::bigint FROM file_rejects GROUP BY rule",
        )? {
            f.rejected_by_rule.insert(rule, n as u64);
        }
        for (rule, n) in pairs(
            &mut tx,
            "SELECT w.rule, SUM(w.rows)::bigint FROM file_warnings w JOIN files f USING (file_id)
             WHERE f.status = 'loaded' GROUP BY w.rule",
        )? {
            f.warnings_by_rule.insert(rule, n as u64);
        }
        for (status, n) in pairs(&mut tx, "SELECT status, COUNT(*) FROM runs GROUP BY status")? {
            if status == "running" {
                f.runs_in_progress = n as u64;
            } else {
                f.runs.insert(status, n as u64);
            }
        }
        // The claim time is the server's clock, the load's record the worker's: a
        // negative difference (clock skew) counts as 0.
        let q = super::figures::files_query(
            "GREATEST(0, EXTRACT(EPOCH FROM processed_at - claimed_at))::float8",
        );
        let r = tx
            .query_one(&q, &[])
            .map_err(pg("reading catalog figures"))?;
        super::figures::FilesRow {
            ints: (0..super::figures::FILES_COLUMNS)
                .filter(|&i| i != 12)
                .map(|i| r.get::<_, i64>(i))
                .collect(),
            seconds: r.get(12),
        }
        .read(&mut f);
        // The per-file rejected share, in a scan of its own (see `reject_share_query`).
        let bounds = super::figures::REJECT_SHARE_BUCKETS;
        let r = tx
            .query_one(
                &super::figures::reject_share_query(|c| format!("{c}::float8")),
                &[],
            )
            .map_err(pg("reading catalog figures"))?;
        let buckets: Vec<i64> = (0..bounds.len()).map(|i| r.get(2 + i)).collect();
        f.reject_share = super::figures::histogram_from_row(bounds, r.get(0), r.get(1), &buckets);
        f.last_successful_run = tx
            .query_one(
                "SELECT EXTRACT(EPOCH FROM MAX(finished_at))::float8 FROM runs WHERE status = 'ok'",
                &[],
            )
            .map_err(pg("reading catalog figures"))?
            .get(0);
        for r in tx
            .query(
                "SELECT currency, SUM(amount)::text FROM file_amounts GROUP BY currency",
                &[],
            )
            .map_err(pg("reading catalog figures"))?
        {
            f.amount_loaded.insert(r.get(0), r.get(1));
        }
        // Quarterly exports (schema 11): read only where the table exists.
        let has_exports: bool = tx
            .query_one("SELECT to_regclass('exports') IS NOT NULL", &[])
            .map_err(pg("reading catalog figures"))?
            .get(0);
        if has_exports {
            let latest = tx
                .query_opt(
                    "SELECT created_at, COALESCE(cardinality(flagged_features), 0)::bigint
                     FROM exports ORDER BY created_at DESC LIMIT 1",
                    &[],
                )
                .map_err(pg("reading catalog figures"))?;
            f.exports = latest.and_then(|r| {
                Some(super::figures::ExportFigures {
                    last_success: super::figures::epoch_seconds(r.get(0))?,
                    drift_flagged_features: r.get::<_, i64>(1).max(0) as u64,
                })
            });
        }
        tx.commit().map_err(pg("reading catalog figures"))?;
        Ok(f)
    }
}

/// Writes a (re)loaded file's per-rule rejects and per-currency loaded amounts
/// (migration 0012), replacing what an earlier load wrote: the figures `/metrics` reads
/// without scanning `rejected_rows` or `transactions`. The amounts come from the
/// read-back (`stored`), so they are what the warehouse holds; a failed file holds none
/// and keeps its rejects (they stay quarantined).
fn record_figures(
    tx: &mut Transaction<'_>,
    plan: &LoadPlan,
    tally: &Tally,
    stored: &Stored,
) -> Result<()> {
    tx.execute(
        "DELETE FROM file_rejects WHERE file_id = $1",
        &[&plan.file_id],
    )
    .map_err(pg("clearing reject counts"))?;
    if !tally.rejects.is_empty() {
        let rules: Vec<&str> = tally.rejects.keys().map(|r| r.name()).collect();
        let rows: Vec<i64> = tally.rejects.values().map(|&n| n as i64).collect();
        tx.execute(
            "INSERT INTO file_rejects (file_id, rule, rows)
             SELECT $1, rule, rows FROM unnest($2::text[], $3::bigint[]) AS r (rule, rows)",
            &[&plan.file_id, &rules, &rows],
        )
        .map_err(pg("recording reject counts"))?;
    }
    tx.execute(
        "DELETE FROM file_amounts WHERE file_id = $1",
        &[&plan.file_id],
    )
    .map_err(pg("clearing amounts by currency"))?;
    for (currency, (rows, amount)) in stored.loaded_by_currency.iter().flatten() {
        tx.execute(
            "INSERT INTO file_amounts (file_id, currency, rows, amount)
             VALUES ($1, $2, $3, $4::text::numeric)",
            &[
                &plan.file_id,
                currency,
                &(*rows as i64),
                &amount.to_text(plan.scale),
            ],
        )
        .map_err(pg("recording amounts by currency"))?;
    }
    Ok(())
}
