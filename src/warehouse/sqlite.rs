//! The embedded SQLite warehouse: one database file, no server.
//!
//! Loads use one `BEGIN IMMEDIATE` transaction per file with a rollback journal, so a
//! `kill -9` at any moment leaves either nothing or everything of a file (SQLite rolls a
//! hot journal back on the next open). Inserts use `ON CONFLICT DO NOTHING` on the
//! primary key and only look at the existing row when a key collides, so the common
//! case (new ids) costs one insert per row.

mod quarters;

mod listing;
mod slots;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Access, Claim, Fault, FileEntry, FileFilter, FileStatus, LoadPlan, MigrationInfo, NewFile,
    RejectEntry, RejectFilter, Result, RunEntry, Stored, Summary, Tally, Unfinished,
    WarehouseError,
};
use crate::crypt::Sealed;
use crate::model::Total;
use crate::scan::{Batch, BatchSource, ValidRow};
use crate::validate::{Rule, WarningCounts};

/// Versioned migrations, applied in order.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../sql/sqlite/0001_init.sql")),
    (
        2,
        "lake_status",
        include_str!("../../sql/sqlite/0002_lake_status.sql"),
    ),
    (
        3,
        "encryption",
        include_str!("../../sql/sqlite/0003_encryption.sql"),
    ),
    (
        4,
        "lean_transactions",
        include_str!("../../sql/sqlite/0004_lean_transactions.sql"),
    ),
    (
        5,
        "duplicate_lineage",
        include_str!("../../sql/sqlite/0005_duplicate_lineage.sql"),
    ),
    (
        6,
        "master_key",
        include_str!("../../sql/sqlite/0006_master_key.sql"),
    ),
    (
        8,
        "claimant",
        include_str!("../../sql/sqlite/0008_claimant.sql"),
    ),
    (
        9,
        "file_formats",
        include_str!("../../sql/sqlite/0009_file_formats.sql"),
    ),
    (
        11,
        "exports",
        include_str!("../../sql/sqlite/0011_exports.sql"),
    ),
    (
        12,
        "catalog_figures",
        include_str!("../../sql/sqlite/0012_catalog_figures.sql"),
    ),
    (
        13,
        "schedule_slots",
        include_str!("../../sql/sqlite/0013_schedule_slots.sql"),
    ),
    (
        14,
        "rejects_by_rule",
        include_str!("../../sql/sqlite/0014_rejects_by_rule.sql"),
    ),
];

/// Every migration this binary knows, for `migrate --dry-run` where no warehouse exists
/// yet.
pub fn known_migrations() -> Vec<MigrationInfo> {
    MIGRATIONS
        .iter()
        .map(|&(version, name, _)| MigrationInfo { version, name })
        .collect()
}

/// Refuses a warehouse migrated by a newer bankpipe: its schema may lack what this
/// binary writes (a column a newer migration dropped).
fn check_not_newer(done: &[i64]) -> Result<()> {
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    match done.iter().max() {
        Some(&found) if found > known => Err(WarehouseError::SchemaTooNew { found, known }),
        _ => Ok(()),
    }
}

/// A `sqlite://` URL's path: `sqlite:///abs/path.db`, `sqlite://relative.db`, or
/// `sqlite::memory:` for tests.
pub fn path_from_url(url: &str) -> Option<PathBuf> {
    if url == "sqlite::memory:" {
        return Some(PathBuf::from(":memory:"));
    }
    let rest = url.strip_prefix("sqlite://")?;
    (!rest.is_empty()).then(|| PathBuf::from(rest))
}

fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> WarehouseError {
    move |source| WarehouseError::Sql { context, source }
}

/// What kind of failure a SQLite error is: a file that is not a database, cannot be
/// opened or written for lack of permission is a setting to fix; a locked database is
/// worth waiting for.
pub fn fault(e: &rusqlite::Error) -> Fault {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => Fault::Transient,
        Some(
            C::NotADatabase
            | C::CannotOpen
            | C::ReadOnly
            | C::PermissionDenied
            | C::AuthorizationForStatementDenied,
        ) => Fault::Setup,
        _ => Fault::Other,
    }
}

/// The SQLite backend.
#[derive(Debug)]
pub struct SqliteWarehouse {
    conn: Connection,
    path: PathBuf,
    /// Guards of the scheduled jobs this session runs (`slots`): job → its lock file
    /// (`None` for `:memory:`, which one process alone can open).
    job_locks: std::collections::HashMap<String, Option<std::fs::File>>,
}

impl SqliteWarehouse {
    /// Opens the database; with [`Access::Create`] its folder and file are created when
    /// missing. Applies no migration.
    ///
    /// # Errors
    /// [`WarehouseError::NoWarehouse`] when it must exist and does not,
    /// [`WarehouseError::Setup`] when the file is not a database or may not be opened,
    /// [`WarehouseError::Unreachable`] for other failures.
    pub fn connect(path: &Path, access: Access) -> Result<SqliteWarehouse> {
        let url = format!("sqlite://{}", path.display());
        let failed = |e: rusqlite::Error| {
            if fault(&e) == Fault::Setup {
                WarehouseError::Setup {
                    url: url.clone(),
                    reason: format!(
                        "{e}: check the path and permissions of the database file (warehouse_url)"
                    ),
                }
            } else {
                WarehouseError::Unreachable {
                    url: url.clone(),
                    reason: e.to_string(),
                }
            }
        };
        let memory = path.as_os_str() == ":memory:";
        let mut flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        match access {
            Access::Create => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
                    && !memory
                {
                    std::fs::create_dir_all(parent).map_err(|e| WarehouseError::Setup {
                        url: url.clone(),
                        reason: format!("cannot create its folder {}: {e}", parent.display()),
                    })?;
                }
                flags |= rusqlite::OpenFlags::SQLITE_OPEN_CREATE;
            }
            Access::Existing if memory || !path.is_file() => {
                return Err(WarehouseError::NoWarehouse {
                    url,
                    reason: "no such database file; check warehouse_url (or --data-dir), or \
                             create it with `bankpipe migrate`"
                        .into(),
                });
            }
            Access::Existing => {}
        }
        let conn = Connection::open_with_flags(path, flags).map_err(failed)?;
        // Durable commits with a rollback journal: WAL is slower for one large
        // transaction per file, and process crashes are covered either way.
        conn.execute_batch(
            "PRAGMA busy_timeout = 10000;
             PRAGMA page_size = 16384;
             PRAGMA journal_mode = DELETE;
             PRAGMA synchronous = FULL;
             PRAGMA cache_size = -65536;
             PRAGMA temp_store = MEMORY;",
        )
        .map_err(failed)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteWarehouse {
            conn,
            path: path.to_owned(),
            job_locks: std::collections::HashMap::new(),
        })
    }

    /// `sqlite://PATH`.
    pub fn display_url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    /// Versions recorded in `schema_migrations`; `None` when there is no such table.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn applied(&mut self) -> Result<Option<Vec<i64>>> {
        let exists: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
                [],
                |r| r.get(0),
            )
            .map_err(sql("reading schema version"))?;
        if !exists {
            return Ok(None);
        }
        self.conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map(Some)
            .map_err(sql("reading schema version"))
    }

    /// Applies pending migrations; returns those applied.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn migrate(&mut self) -> Result<Vec<MigrationInfo>> {
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
            )
            .map_err(sql("creating schema_migrations"))?;
        let mut applied = Vec::new();
        for (version, name, text) in MIGRATIONS {
            // The versions are read inside the write transaction: two processes opening a
            // new warehouse at once apply each migration once. Every missing version is
            // applied, not only those above the highest (a gap is never skipped).
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql("starting migration"))?;
            let done: Vec<i64> = tx
                .prepare("SELECT version FROM schema_migrations")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(sql("reading schema version"))?;
            check_not_newer(&done)?;
            if done.contains(version) {
                continue;
            }
            tx.execute_batch(text)
                .map_err(|e| WarehouseError::Migration {
                    version: *version,
                    name,
                    reason: e.to_string(),
                })?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, crate::clock::now_rfc3339()],
            )
            .map_err(sql("recording migration"))?;
            tx.commit().map_err(sql("committing migration"))?;
            applied.push(MigrationInfo {
                version: *version,
                name,
            });
        }
        Ok(applied)
    }

    pub(super) fn start_run(&mut self, run_id: &str, started_at: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET status = 'aborted' WHERE status = 'running'",
                [],
            )
            .map_err(sql("closing dead runs"))?;
        let host = super::host_name();
        self.conn
            .execute(
                "INSERT INTO runs (run_id, started_at, status, host, pid) VALUES (?1, ?2, 'running', ?3, ?4)",
                params![run_id, started_at, host, std::process::id()],
            )
            .map_err(sql("recording run start"))?;
        Ok(())
    }

    pub(super) fn finish_run(
        &mut self,
        run_id: &str,
        finished_at: &str,
        status: &str,
        counts: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2, status = ?3, counts = ?4 WHERE run_id = ?1",
                params![run_id, finished_at, status, counts],
            )
            .map_err(sql("recording run end"))?;
        Ok(())
    }

    pub(super) fn find_file(&mut self, sha256: &str) -> Result<Option<(i64, String, FileStatus)>> {
        self.conn
            .query_row(
                "SELECT file_id, original_name, status FROM files WHERE sha256 = ?1",
                [sha256],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)),
            )
            .optional()
            .map_err(sql("looking up a file"))
            .map(|o| {
                o.map(|(id, name, status)| {
                    (
                        id,
                        name,
                        FileStatus::from_name(&status).unwrap_or(FileStatus::Landing),
                    )
                })
            })
    }

    pub(super) fn claim(&mut self, f: &NewFile) -> Result<Claim> {
        let (host, pid) = super::Claimant::this_process();
        let now = crate::clock::now_rfc3339();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("starting claim"))?;
        let existing: Option<(i64, String, String, String)> = tx
            .query_row(
                "SELECT file_id, original_name, status, lake_key FROM files WHERE sha256 = ?1",
                [&f.sha256],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(sql("looking up a file"))?;
        let claim = match existing {
            Some((file_id, _, status, lake_key)) if status == "landing" => {
                tx.execute(
                    "UPDATE files SET original_name = ?2, run_id = ?3, profile = ?4, error = NULL,
                            claim_host = ?5, claim_pid = ?6, claimed_at = ?7
                     WHERE file_id = ?1",
                    params![
                        file_id,
                        f.original_name,
                        f.run_id,
                        f.profile,
                        host,
                        pid,
                        now
                    ],
                )
                .map_err(sql("resuming a claim"))?;
                Claim::Resume { file_id, lake_key }
            }
            Some((file_id, original_name, status, _)) => Claim::Duplicate {
                file_id,
                original_name,
                status: FileStatus::from_name(&status).unwrap_or(FileStatus::Failed),
            },
            None => {
                tx.execute(
                    "INSERT INTO files (sha256, original_name, bytes, profile, format, compression,
                                        lake_key, received_at, run_id, status,
                                        claim_host, claim_pid, claimed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'landing', ?10, ?11, ?12)",
                    params![
                        f.sha256,
                        f.original_name,
                        f.bytes,
                        f.profile,
                        f.format,
                        f.compression,
                        f.lake_key,
                        f.received_at,
                        f.run_id,
                        host,
                        pid,
                        now
                    ],
                )
                .map_err(sql("claiming a file"))?;
                Claim::New {
                    file_id: tx.last_insert_rowid(),
                }
            }
        };
        tx.commit().map_err(sql("committing claim"))?;
        Ok(claim)
    }

    pub(super) fn abandon(&mut self, file_id: i64) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM files WHERE file_id = ?1 AND status = 'landing'
                   AND NOT EXISTS (SELECT 1 FROM rejected_rows WHERE file_id = ?1)
                   AND NOT EXISTS (SELECT 1 FROM file_rejects WHERE file_id = ?1)
                   AND NOT EXISTS (SELECT 1 FROM file_warnings WHERE file_id = ?1)
                   AND NOT EXISTS (SELECT 1 FROM file_formats WHERE file_id = ?1)",
                params![file_id],
            )
            .map_err(sql("withdrawing a claim"))?;
        Ok(())
    }

    pub(super) fn stop_claim(&mut self, file_id: i64, reason: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE files SET error = ?2 WHERE file_id = ?1 AND status = 'landing'",
                params![file_id, reason],
            )
            .map_err(sql("recording why a claim stopped"))?;
        Ok(())
    }

    pub(super) fn unfinished(&mut self) -> Result<Vec<Unfinished>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT file_id, original_name, lake_key, error FROM files
                 WHERE status = 'landing' ORDER BY file_id",
            )
            .map_err(sql("listing unfinished files"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Unfinished {
                    file_id: r.get(0)?,
                    name: r.get(1)?,
                    lake_key: r.get(2)?,
                    reason: r.get(3)?,
                })
            })
            .map_err(sql("listing unfinished files"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(sql("listing unfinished files"))
    }

    pub(super) fn withdraw_stopped(&mut self, name: &str, keep: i64) -> Result<Vec<Unfinished>> {
        // One writer per SQLite warehouse (the run lock): no one else holds these claims.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("withdrawing stopped claims"))?;
        let stopped: Vec<Unfinished> = {
            let mut stmt = tx
                .prepare(
                    "SELECT file_id, original_name, lake_key, error FROM files
                     WHERE status = 'landing' AND error IS NOT NULL AND original_name = ?1
                       AND file_id <> ?2",
                )
                .map_err(sql("withdrawing stopped claims"))?;
            stmt.query_map(params![name, keep], |r| {
                Ok(Unfinished {
                    file_id: r.get(0)?,
                    name: r.get(1)?,
                    lake_key: r.get(2)?,
                    reason: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
            .map_err(sql("withdrawing stopped claims"))?
        };
        for u in &stopped {
            tx.execute(
                "DELETE FROM files WHERE file_id = ?1 AND status = 'landing'",
                [u.file_id],
            )
            .map_err(sql("withdrawing stopped claims"))?;
        }
        tx.commit().map_err(sql("withdrawing stopped claims"))?;
        Ok(stopped)
    }

    pub(super) fn fail_file(
        &mut self,
        file_id: i64,
        run_id: &str,
        error: &str,
        at: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE files SET status = 'failed', error = ?2, processed_at = ?3, run_id = ?4,
                        rows_read = 0, rows_loaded = 0, rows_rejected = 0, rows_duplicate = 0,
                        amount_read = NULL, amount_loaded = NULL, amount_rejected = NULL,
                        amount_duplicate = NULL
                 WHERE file_id = ?1 AND status = 'landing'",
                params![file_id, error, at, run_id],
            )
            .map_err(sql("marking a file failed"))?;
        Ok(())
    }

    pub(super) fn load(
        &mut self,
        plan: &LoadPlan,
        source: &mut dyn BatchSource,
        progress: &mut dyn FnMut(&Tally),
        before_commit: &mut dyn FnMut(&Tally) -> std::result::Result<(), String>,
    ) -> Result<Tally> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("starting load"))?;
        let status: Option<String> = tx
            .query_row(
                "SELECT status FROM files WHERE file_id = ?1",
                [plan.file_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("checking the claim"))?;
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
            snapshot_rehome(&tx, plan.file_id)?;
            tx.execute(
                "DELETE FROM transactions WHERE file_id = ?1
                   AND rowid BETWEEN (SELECT COALESCE(first_rowid, 0) FROM files WHERE file_id = ?1)
                                 AND (SELECT COALESCE(last_rowid, 9223372036854775807) FROM files WHERE file_id = ?1)",
                [plan.file_id],
            )
            .map_err(sql("removing the previous rows"))?;
            tx.execute_batch(&format!(
                "DELETE FROM transactions WHERE file_id = {id}
                   AND transaction_id IN (SELECT transaction_id FROM rehomed_rows WHERE file_id = {id});
                 DELETE FROM rehomed_rows WHERE file_id = {id};
                 DELETE FROM duplicate_rows WHERE file_id = {id};",
                id = plan.file_id
            ))
            .map_err(sql("removing the previous rows moved in and duplicates"))?;
            tx.execute(
                "DELETE FROM rejected_rows WHERE file_id = ?1",
                [plan.file_id],
            )
            .map_err(sql("removing the previous rejects"))?;
        }
        let mut tally = Tally::default();
        let first_rowid: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(rowid), 0) + 1 FROM transactions",
                [],
                |r| r.get(0),
            )
            .map_err(sql("reading the next rowid"))?;
        {
            let mut existing = tx
                .prepare_cached(
                    "SELECT file_id, line_no, customer_id, customer_dob, gender, location,
                            account_balance, transaction_at, amount, currency, rowid
                     FROM transactions WHERE transaction_id = ?1",
                )
                .map_err(sql("preparing lookup"))?;
            let mut quarantine = tx
                .prepare_cached(
                    "INSERT INTO rejected_rows (file_id, line_no, rule, field, detail, amount, raw)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sql("preparing quarantine"))?;
            // Prepared here, executed only when an id collides: the clean path never
            // touches duplicate_rows.
            let mut duplicate = tx
                .prepare_cached(
                    "INSERT INTO duplicate_rows (transaction_id, file_id, line_no, warnings)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql("preparing duplicate lineage"))?;
            let mut full_group = tx
                .prepare_cached(&insert_sql(INSERT_GROUP))
                .map_err(sql("preparing insert"))?;
            bind_constants(&mut full_group, INSERT_GROUP, plan)?;
            // Freeing a batch's millions of small strings is real work; do it off the
            // loader thread, which is the bottleneck of a bulk load.
            let (drop_tx, drop_rx) = std::sync::mpsc::sync_channel::<Batch>(4);
            let dropper = std::thread::Builder::new()
                .name("bankpipe-free".into())
                .spawn(move || drop_rx.into_iter().for_each(drop))
                .ok();
            let mut waited = std::time::Duration::ZERO;
            // Highest rowid before the current insert statement: a colliding id whose
            // row is above it was inserted by this very statement (for its first
            // occurrence in the group), whatever the line numbers say (several JSON
            // records can share a line).
            let mut max_rowid = first_rowid - 1;
            loop {
                let wait_start = std::time::Instant::now();
                let Some(batch) = source.next_batch() else {
                    break;
                };
                waited += wait_start.elapsed();
                tally.rows_read += batch.rows_read;
                tally.amount_read.merge(&batch.amount_read);
                tally.formats.merge(&batch.formats);
                for group in batch.rows.chunks(INSERT_GROUP) {
                    let mut tail;
                    let insert = if group.len() == INSERT_GROUP {
                        &mut full_group
                    } else {
                        tail = tx
                            .prepare_cached(&insert_sql(group.len()))
                            .map_err(sql("preparing insert"))?;
                        bind_constants(&mut tail, group.len(), plan)?;
                        &mut tail
                    };
                    for (k, row) in group.iter().enumerate() {
                        bind_row(insert, k * INSERT_FIELDS, row)?;
                    }
                    let inserted = insert
                        .raw_execute()
                        .map_err(sql("inserting transactions"))?;
                    let prev_max = max_rowid;
                    if inserted > 0 {
                        max_rowid = tx.last_insert_rowid();
                    }
                    if inserted == group.len() {
                        for row in group {
                            tally.rows_loaded += 1;
                            tally.amount_loaded.add(row.txn.amount);
                            tally
                                .loaded_by_currency
                                .add(row.txn.currency, row.txn.amount);
                            tally.warnings.add(row.warnings);
                        }
                        continue;
                    }
                    // Some ids collided: tell ours (just inserted) from earlier ones.
                    let mut attributed: Vec<&str> = Vec::with_capacity(group.len());
                    for row in group {
                        let id = row.txn.transaction_id.as_str();
                        let old = existing
                            .query_row([id], StoredRow::from_row)
                            .map_err(sql("reading a colliding row"))?;
                        if old.rowid > prev_max && !attributed.contains(&id) {
                            attributed.push(id);
                            tally.rows_loaded += 1;
                            tally.amount_loaded.add(row.txn.amount);
                            tally
                                .loaded_by_currency
                                .add(row.txn.currency, row.txn.amount);
                            tally.warnings.add(row.warnings);
                            continue;
                        }
                        let differs = old.differences(&row.txn);
                        if differs.is_empty() {
                            tally.rows_duplicate += 1;
                            tally.amount_duplicate.add(row.txn.amount);
                            duplicate
                                .execute(params![
                                    id,
                                    plan.file_id,
                                    row.line as i64,
                                    i64::from(row.warnings.0)
                                ])
                                .map_err(sql("recording duplicate lineage"))?;
                            continue;
                        }
                        tally.rows_rejected += 1;
                        tally.amount_rejected.add(row.txn.amount);
                        *tally.rejects.entry(Rule::ConflictingDuplicate).or_default() += 1;
                        let detail = format!(
                            "already loaded from file {} line {} with a different {}",
                            old.file_id,
                            old.line_no,
                            differs.join(", ")
                        );
                        insert_reject(
                            &mut quarantine,
                            plan.file_id,
                            row.line,
                            Rule::ConflictingDuplicate,
                            Some("transaction_id"),
                            &detail,
                            Some(row.txn.amount.to_text()),
                            batch.raw(row.span),
                        )?;
                    }
                }
                for r in &batch.rejects {
                    let rej = &r.rejection;
                    tally.rows_rejected += 1;
                    if let Some(a) = &rej.amount {
                        tally.amount_rejected.add_parsed(a);
                    }
                    *tally.rejects.entry(rej.rule).or_default() += 1;
                    insert_reject(
                        &mut quarantine,
                        plan.file_id,
                        r.line,
                        rej.rule,
                        rej.field.map(crate::profile::Field::name),
                        &rej.detail,
                        rej.amount.as_ref().map(crate::model::ParsedAmount::to_text),
                        batch.raw(r.span),
                    )?;
                }
                progress(&tally);
                if dropper.is_some() {
                    let _ = drop_tx.send(batch);
                }
            }
            tracing::debug!(
                waited_s = waited.as_secs_f64(),
                "Loader waited for batches."
            );
            drop(drop_tx);
            if let Some(d) = dropper {
                let _ = d.join();
            }
        }
        tally.judge(plan.max_reject_share);
        if tally.failure.is_some() {
            // Nothing of a failed file is loaded; its rejects stay for diagnosis.
            tx.execute(
                "DELETE FROM transactions WHERE rowid >= ?2 AND file_id = ?1",
                params![plan.file_id, first_rowid],
            )
            .map_err(sql("removing rows of a failed file"))?;
            // A failed file holds nothing, so it vouches for nothing either.
            tx.execute(
                "DELETE FROM duplicate_rows WHERE file_id = ?1",
                [plan.file_id],
            )
            .map_err(sql("removing duplicates of a failed file"))?;
        }
        let last_rowid: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(rowid), 0) FROM transactions",
                [],
                |r| r.get(0),
            )
            .map_err(sql("reading the last rowid"))?;
        if replaceable {
            // After last_rowid: moved rows belong to other files, not to this range.
            tally.rehomed = rehome(&tx, plan.scale)?;
        }
        let (status, loaded, amount_loaded) = match &tally.failure {
            None => ("loaded", tally.rows_loaded, tally.amount_loaded.clone()),
            Some(_) => ("failed", 0, Total::default()),
        };
        tx.execute(
            "UPDATE files SET status = ?2, rows_read = ?3, rows_loaded = ?4, rows_rejected = ?5,
                    rows_duplicate = ?6, amount_read = ?7, amount_loaded = ?8,
                    amount_rejected = ?9, amount_duplicate = ?10, error = ?11,
                    processed_at = ?12, run_id = ?13, first_rowid = ?14, last_rowid = ?15
             WHERE file_id = ?1",
            params![
                plan.file_id,
                status,
                tally.rows_read,
                loaded,
                tally.rows_rejected,
                tally.rows_duplicate,
                tally.amount_read.to_text(plan.scale),
                amount_loaded.to_text(plan.scale),
                tally.amount_rejected.to_text(plan.scale),
                tally.amount_duplicate.to_text(plan.scale),
                tally.failure,
                crate::clock::now_rfc3339(),
                plan.run_id,
                first_rowid,
                last_rowid
            ],
        )
        .map_err(sql("recording file status"))?;
        tx.execute(
            "DELETE FROM file_warnings WHERE file_id = ?1",
            [plan.file_id],
        )
        .map_err(sql("clearing warnings"))?;
        for (rule, rows) in tally.warnings.iter() {
            tx.execute(
                "INSERT INTO file_warnings (file_id, rule, rows) VALUES (?1, ?2, ?3)",
                params![plan.file_id, rule.name(), rows],
            )
            .map_err(sql("recording warnings"))?;
        }
        tx.execute(
            "DELETE FROM file_formats WHERE file_id = ?1",
            [plan.file_id],
        )
        .map_err(sql("clearing format counts"))?;
        for (field, format, rows) in super::format_rows(plan, &tally) {
            tx.execute(
                "INSERT INTO file_formats (file_id, field, format, rows) VALUES (?1, ?2, ?3, ?4)",
                params![plan.file_id, field, format, rows],
            )
            .map_err(sql("recording format counts"))?;
        }
        record_figures(&tx, plan, &tally)?;
        tracing::debug!(rows = tally.rows_read, "All batches inserted.");
        source.finish().map_err(WarehouseError::Source)?;
        // Read back inside the transaction: totals that do not hold roll everything back.
        stored_in(&tx, plan.file_id, plan.scale)?
            .check(&tally, plan.scale)
            .map_err(WarehouseError::ControlTotals)?;
        before_commit(&tally).map_err(WarehouseError::Aborted)?;
        tracing::debug!("Landing and reading confirmed; committing.");
        tx.commit().map_err(sql("committing load"))?;
        Ok(tally)
    }

    pub(super) fn stored(&mut self, file_id: i64, scale: u8) -> Result<Stored> {
        stored_in(&self.conn, file_id, scale)
    }

    pub(super) fn set_lake_status(&mut self, file_id: i64, status: &str, at: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE files SET lake_status = ?2, lake_checked_at = ?3 WHERE file_id = ?1",
                params![file_id, status, at],
            )
            .map_err(sql("recording the lake status"))?;
        Ok(())
    }

    pub(super) fn record_landing(
        &mut self,
        file_id: i64,
        lake_key: &str,
        sealed: Option<&Sealed>,
    ) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("recording the landing"))?;
        if let Some(s) = sealed {
            let current = adopt_master_key(&tx, &s.key_id)?;
            if current != s.key_id {
                return Err(WarehouseError::WrongMasterKey {
                    configured: s.key_id.clone(),
                    current,
                });
            }
        }
        let n = tx
            .execute(
                "UPDATE files SET lake_key = ?2, key_id = ?3, wrapped_key = ?4
                 WHERE file_id = ?1 AND status = 'landing'",
                params![
                    file_id,
                    lake_key,
                    sealed.map(|s| &s.key_id),
                    sealed.map(|s| &s.wrapped)
                ],
            )
            .map_err(sql("recording the landing"))?;
        if n == 1 {
            tx.commit().map_err(sql("recording the landing"))?;
        }
        Ok(n)
    }

    pub(super) fn master_key_id(&mut self) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT key_id FROM lake_master_key WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql("reading the master key id"))
    }

    pub(super) fn rotate_master_key(
        &mut self,
        from: &str,
        to: &str,
        rewrap: &mut super::RewrapFn<'_>,
    ) -> Result<usize> {
        // IMMEDIATE: the write lock is taken first, so no landing is recorded between
        // reading the wrappings and making `to` current.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("rotating the master key"))?;
        let current = adopt_master_key(&tx, from)?;
        if current != from && current != to {
            return Err(WarehouseError::WrongMasterKey {
                configured: from.to_owned(),
                current,
            });
        }
        let wrapped: Vec<(i64, String, String)> = tx
            .prepare("SELECT file_id, sha256, wrapped_key FROM files WHERE key_id = ?1")
            .and_then(|mut st| {
                st.query_map([from], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(sql("reading wrapped data keys"))?;
        {
            let mut update = tx
                .prepare("UPDATE files SET key_id = ?2, wrapped_key = ?3 WHERE file_id = ?1")
                .map_err(sql("re-wrapping data keys"))?;
            for (file_id, sha256, old) in &wrapped {
                let old = Sealed {
                    key_id: from.to_owned(),
                    wrapped: old.clone(),
                };
                let new = rewrap(sha256, &old).map_err(|source| WarehouseError::Rewrap {
                    file_id: *file_id,
                    source,
                })?;
                update
                    .execute(params![file_id, new.key_id, new.wrapped])
                    .map_err(sql("re-wrapping data keys"))?;
            }
        }
        tx.execute(
            "UPDATE lake_master_key SET key_id = ?1, since = ?2 WHERE id = 1 AND key_id <> ?1",
            params![to, crate::clock::now_rfc3339()],
        )
        .map_err(sql("recording the current master key"))?;
        tx.commit().map_err(sql("rotating the master key"))?;
        Ok(wrapped.len())
    }

    pub(super) fn key_ids(&mut self) -> Result<std::collections::BTreeMap<String, u64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT key_id, COUNT(*) FROM files WHERE key_id IS NOT NULL GROUP BY key_id")
            .map_err(sql("counting key ids"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(sql("counting key ids"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(sql("counting key ids"))
    }

    pub(super) fn files(&mut self, filter: &FileFilter) -> Result<Vec<FileEntry>> {
        let (after, order) = if filter.newest_first {
            ("file_id < ?3", "DESC")
        } else {
            ("file_id > ?3", "ASC")
        };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT file_id, sha256, original_name, bytes, profile, status, received_at,
                        processed_at, rows_read, rows_loaded, rows_rejected, rows_duplicate,
                        amount_loaded, lake_key, error, key_id, wrapped_key, run_id,
                        amount_read, amount_rejected, amount_duplicate
                 FROM files
                 WHERE (?1 IS NULL OR file_id = ?1) AND (?2 IS NULL OR status = ?2)
                   AND {after}
                 ORDER BY file_id {order} LIMIT ?4"
            ))
            .map_err(sql("listing files"))?;
        let limit = filter
            .limit
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let after = filter.after.unwrap_or(if filter.newest_first {
            i64::MAX
        } else {
            i64::MIN
        });
        let rows = stmt
            .query_map(params![filter.only, filter.status, after, limit], |r| {
                Ok(FileEntry {
                    file_id: r.get(0)?,
                    sha256: r.get(1)?,
                    original_name: r.get(2)?,
                    bytes: r.get(3)?,
                    profile: r.get(4)?,
                    status: r.get(5)?,
                    received_at: r.get(6)?,
                    processed_at: r.get(7)?,
                    rows_read: r.get(8)?,
                    rows_loaded: r.get(9)?,
                    rows_rejected: r.get(10)?,
                    rows_duplicate: r.get(11)?,
                    amount_read: r.get(18)?,
                    amount_loaded: r.get(12)?,
                    amount_rejected: r.get(19)?,
                    amount_duplicate: r.get(20)?,
                    lake_key: r.get(13)?,
                    error: r.get(14)?,
                    key_id: r.get(15)?,
                    wrapped_key: r.get(16)?,
                    run_id: r.get(17)?,
                    formats: std::collections::BTreeMap::new(),
                })
            })
            .map_err(sql("listing files"))?;
        let mut files: Vec<FileEntry> = rows
            .collect::<std::result::Result<_, _>>()
            .map_err(sql("listing files"))?;
        let span = files
            .iter()
            .map(|f| f.file_id)
            .min()
            .zip(files.iter().map(|f| f.file_id).max());
        let Some((first, last)) = span else {
            return Ok(files);
        };
        let range = [first, last];
        let mut stmt = self
            .conn
            .prepare(
                "SELECT file_id, field, format, rows FROM file_formats
                 WHERE file_id BETWEEN ?1 AND ?2",
            )
            .map_err(sql("listing format counts"))?;
        let counts = stmt
            .query_map(range, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(sql("listing format counts"))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(sql("listing format counts"))?;
        super::attach_formats(&mut files, counts);
        Ok(files)
    }

    pub(super) fn rejects(&mut self, filter: &RejectFilter) -> Result<Vec<RejectEntry>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.file_id, f.original_name, r.line_no, r.rule, r.field, r.detail, r.raw
                 FROM rejected_rows r JOIN files f ON f.file_id = r.file_id
                 WHERE (?1 IS NULL OR r.file_id = ?1) AND (?2 IS NULL OR r.rule = ?2)
                 ORDER BY r.file_id, r.line_no LIMIT ?3",
            )
            .map_err(sql("listing rejects"))?;
        let rows = stmt
            .query_map(
                params![filter.file_id, filter.rule, filter.limit as i64],
                |r| {
                    let raw = match r.get_ref(6)? {
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        _ => String::new(),
                    };
                    Ok(RejectEntry {
                        file_id: r.get(0)?,
                        file: r.get(1)?,
                        line_no: r.get::<_, i64>(2)? as u64,
                        rule: r.get(3)?,
                        field: r.get(4)?,
                        detail: r.get(5)?,
                        raw,
                    })
                },
            )
            .map_err(sql("listing rejects"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(sql("listing rejects"))
    }

    pub(super) fn catalog_figures(&mut self) -> Result<super::figures::CatalogFigures> {
        use super::figures::CatalogFigures;
        let mut f = CatalogFigures::zeroed();
        // One read transaction: every figure from the same moment.
        let tx = self
            .conn
            .transaction()
            .map_err(sql("reading catalog figures"))?;
        let pairs = |q: &str| -> Result<Vec<(String, i64)>> {
            let mut stmt = tx
                .prepare_cached(q)
                .map_err(sql("reading catalog figures"))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
                .map_err(sql("reading catalog figures"))
        };
        for (rule, n) in pairs("SELECT rule, SUM(rows) FROM file_rejects GROUP BY rule")? {
            f.rejected_by_rule.insert(rule, n as u64);
        }
        for (rule, n) in pairs(
            "SELECT w.rule, SUM(w.rows) FROM file_warnings w JOIN files f USING (file_id)
             WHERE f.status = 'loaded' GROUP BY w.rule",
        )? {
            f.warnings_by_rule.insert(rule, n as u64);
        }
        for (status, n) in pairs("SELECT status, COUNT(*) FROM runs GROUP BY status")? {
            if status == "running" {
                f.runs_in_progress = n as u64;
            } else {
                f.runs.insert(status, n as u64);
            }
        }
        let q = super::figures::files_query(
            "MAX(0.0, (julianday(processed_at) - julianday(claimed_at)) * 86400.0)",
        );
        tx.prepare_cached(&q)
            .and_then(|mut files| {
                files.query_row([], |r| {
                    let mut ints = Vec::with_capacity(super::figures::FILES_COLUMNS);
                    for i in 0..super::figures::FILES_COLUMNS {
                        if i != 12 {
                            ints.push(r.get::<_, i64>(i)?);
                        }
                    }
                    Ok(super::figures::FilesRow {
                        ints,
                        seconds: r.get(12)?,
                    })
                })
            })
            .map_err(sql("reading catalog figures"))?
            .read(&mut f);
        // The per-file rejected share, in a scan of its own (see `reject_share_query`).
        let bounds = super::figures::REJECT_SHARE_BUCKETS;
        let q = super::figures::reject_share_query(|c| format!("CAST({c} AS REAL)"));
        f.reject_share = tx
            .prepare_cached(&q)
            .and_then(|mut stmt| {
                stmt.query_row([], |r| {
                    let buckets = (0..bounds.len())
                        .map(|i| r.get::<_, i64>(2 + i))
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    Ok(super::figures::histogram_from_row(
                        bounds,
                        r.get(0)?,
                        r.get(1)?,
                        &buckets,
                    ))
                })
            })
            .map_err(sql("reading catalog figures"))?;
        f.amount_loaded = amounts_by_currency(&tx)?;
        let last_ok: Option<String> = tx
            .query_row(
                "SELECT MAX(finished_at) FROM runs WHERE status = 'ok'",
                [],
                |r| r.get(0),
            )
            .map_err(sql("reading catalog figures"))?;
        f.last_successful_run = last_ok.as_deref().and_then(super::figures::epoch_seconds);
        let has_exports: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'exports')",
                [],
                |r| r.get(0),
            )
            .map_err(sql("reading catalog figures"))?;
        if has_exports {
            let latest: Option<(String, i64)> = tx
                .query_row(
                    "SELECT created_at, json_array_length(flagged_features) FROM exports
                     ORDER BY created_at DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql("reading catalog figures"))?;
            f.exports = latest.and_then(|(at, flagged)| {
                Some(super::figures::ExportFigures {
                    last_success: super::figures::epoch_seconds(&at)?,
                    drift_flagged_features: flagged.max(0) as u64,
                })
            });
        }
        tx.commit().map_err(sql("reading catalog figures"))?;
        Ok(f)
    }

    pub(super) fn summary(&mut self) -> Result<Summary> {
        let mut s = Summary::default();
        let pairs = |conn: &Connection, q: &str| -> Result<Vec<(String, u64)>> {
            let mut stmt = conn.prepare(q).map_err(sql("summarising"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .map_err(sql("summarising"))?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(sql("summarising"))
        };
        s.files = pairs(
            &self.conn,
            "SELECT status, COUNT(*) FROM files GROUP BY status",
        )?
        .into_iter()
        .collect();
        s.rejects_by_rule = pairs(
            &self.conn,
            "SELECT rule, COUNT(*) FROM rejected_rows GROUP BY rule",
        )?
        .into_iter()
        .collect();
        s.warnings_by_rule = pairs(
            &self.conn,
            "SELECT w.rule, SUM(w.rows) FROM file_warnings w JOIN files f ON f.file_id = w.file_id
             WHERE f.status = 'loaded' GROUP BY w.rule",
        )?
        .into_iter()
        .collect();
        s.rejected_rows = s.rejects_by_rule.values().sum();
        s.transactions = self
            .conn
            .query_row("SELECT COUNT(*) FROM transactions", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(sql("counting transactions"))? as u64;
        s.transaction_span = self
            .conn
            .query_row(
                "SELECT MIN(transaction_at), MAX(transaction_at) FROM transactions",
                [],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                    ))
                },
            )
            .map_err(sql("reading the time span"))
            .map(|(a, b)| a.zip(b))?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT run_id, started_at, finished_at, status FROM runs
                 ORDER BY started_at DESC LIMIT 5",
            )
            .map_err(sql("listing runs"))?;
        s.recent_runs = stmt
            .query_map([], |r| {
                Ok(RunEntry {
                    run_id: r.get(0)?,
                    started_at: r.get(1)?,
                    finished_at: r.get(2)?,
                    status: r.get(3)?,
                })
            })
            .map_err(sql("listing runs"))?
            .collect::<std::result::Result<_, _>>()
            .map_err(sql("listing runs"))?;
        s.schema_version = self
            .conn
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .map_err(sql("reading schema version"))?;
        Ok(s)
    }
}

/// Keeps aside, before a reprocess deletes a file's rows, each of its rows that another
/// loaded file counted as an identical duplicate, with the copy that would take it over:
/// the earliest such file, at its first line carrying the id. Scans `duplicate_rows`
/// (only duplicates, never the clean rows) and probes `transactions` by key.
fn snapshot_rehome(tx: &rusqlite::Transaction<'_>, file_id: i64) -> Result<()> {
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS bankpipe_rehome (
            transaction_id TEXT PRIMARY KEY, customer_id TEXT, customer_dob TEXT, gender TEXT,
            location TEXT, account_balance TEXT, transaction_at TEXT, amount TEXT,
            currency TEXT, file_id INTEGER, line_no INTEGER, warnings INTEGER, dup INTEGER);
         DELETE FROM temp.bankpipe_rehome;",
    )
    .map_err(sql("creating the rehome table"))?;
    tx.execute(
        "INSERT INTO temp.bankpipe_rehome
         SELECT t.transaction_id, t.customer_id, t.customer_dob, t.gender, t.location,
                t.account_balance, t.transaction_at, t.amount, t.currency,
                h.file_id, h.line_no, h.warnings, h.dup
         FROM (SELECT d.transaction_id, d.file_id, d.line_no, d.warnings, d.rowid AS dup,
                      ROW_NUMBER() OVER (PARTITION BY d.transaction_id
                                         ORDER BY d.file_id, d.line_no, d.rowid) AS k
               FROM duplicate_rows d JOIN files f ON f.file_id = d.file_id
               WHERE d.file_id <> ?1 AND f.status = 'loaded') h
         JOIN transactions t ON t.transaction_id = h.transaction_id
         WHERE h.k = 1 AND t.file_id = ?1",
        [file_id],
    )
    .map_err(sql("keeping aside rows other files carry"))?;
    Ok(())
}

/// After a reprocess loaded (or failed) its file: stores again, under the copy chosen by
/// [`snapshot_rehome`], every kept-aside row whose id is no longer in `transactions`,
/// and moves those rows from duplicate to loaded in the receiving files' counts,
/// amounts and warnings. Rows the file loaded again keep its lineage.
fn rehome(tx: &rusqlite::Transaction<'_>, scale: u8) -> Result<Vec<super::Rehomed>> {
    tx.execute(
        "DELETE FROM temp.bankpipe_rehome WHERE EXISTS
            (SELECT 1 FROM transactions t WHERE t.transaction_id = bankpipe_rehome.transaction_id)",
        [],
    )
    .map_err(sql("keeping rows loaded again"))?;
    let mut moved: std::collections::BTreeMap<i64, (super::Rehomed, WarningCounts)> =
        std::collections::BTreeMap::new();
    let mut moved_currencies: std::collections::BTreeMap<(i64, String), (u64, Total)> =
        std::collections::BTreeMap::new();
    {
        let mut stmt = tx
            .prepare("SELECT file_id, amount, warnings, currency FROM temp.bankpipe_rehome")
            .map_err(sql("reading rows to move"))?;
        let mut rows = stmt.query([]).map_err(sql("reading rows to move"))?;
        while let Some(r) = rows.next().map_err(sql("reading rows to move"))? {
            let file_id: i64 = r.get(0).map_err(sql("reading rows to move"))?;
            let amount: String = r.get(1).map_err(sql("reading rows to move"))?;
            let warnings: i64 = r.get(2).map_err(sql("reading rows to move"))?;
            let currency: String = r.get(3).map_err(sql("reading rows to move"))?;
            let amount = Total::parse(&amount, scale).ok_or_else(|| {
                WarehouseError::Aborted(format!(
                    "a row to move to file {file_id} has amount {amount}, not at scale {scale}"
                ))
            })?;
            let (n, sum) = moved_currencies.entry((file_id, currency)).or_default();
            *n += 1;
            sum.merge(&amount);
            let (m, w) = moved.entry(file_id).or_insert_with(|| {
                (
                    super::Rehomed {
                        file_id,
                        ..Default::default()
                    },
                    WarningCounts::default(),
                )
            });
            m.rows += 1;
            m.amount.merge(&amount);
            let bits = u16::try_from(warnings).map_err(|_| {
                WarehouseError::Aborted(format!("duplicate_rows holds warning bits {warnings}"))
            })?;
            w.add(crate::validate::Warnings(bits));
        }
    }
    if moved.is_empty() {
        return Ok(Vec::new());
    }
    tx.execute_batch(
        "INSERT INTO transactions (transaction_id, customer_id, customer_dob, gender, location,
                                   account_balance, transaction_at, amount, currency, file_id, line_no)
         SELECT transaction_id, customer_id, customer_dob, gender, location, account_balance,
                transaction_at, amount, currency, file_id, line_no
         FROM temp.bankpipe_rehome;
         INSERT INTO rehomed_rows (transaction_id, file_id)
         SELECT transaction_id, file_id FROM temp.bankpipe_rehome;
         DELETE FROM duplicate_rows WHERE rowid IN (SELECT dup FROM temp.bankpipe_rehome);",
    )
    .map_err(sql("storing moved rows under their new file"))?;
    for (m, warnings) in moved.values() {
        let (loaded, duplicate): (Option<String>, Option<String>) = tx
            .query_row(
                "SELECT amount_loaded, amount_duplicate FROM files WHERE file_id = ?1",
                [m.file_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql("reading the receiving file's totals"))?;
        let parse = |t: Option<String>| {
            t.as_deref()
                .and_then(|t| Total::parse(t, scale))
                .ok_or_else(|| {
                    WarehouseError::Aborted(format!(
                        "file {} has no exact totals at scale {scale}; cannot move rows to it",
                        m.file_id
                    ))
                })
        };
        let (mut loaded, mut duplicate) = (parse(loaded)?, parse(duplicate)?);
        // Moved rows were loaded rows: their sum fits 128 bits.
        let moved_minor = m.amount.minor().ok_or_else(|| {
            WarehouseError::Aborted(format!(
                "rows moved to file {} sum beyond 128 bits",
                m.file_id
            ))
        })?;
        loaded.merge(&m.amount);
        duplicate.merge(&Total::from_minor(-moved_minor));
        tx.execute(
            "UPDATE files SET rows_loaded = rows_loaded + ?2, rows_duplicate = rows_duplicate - ?2,
                    amount_loaded = ?3, amount_duplicate = ?4
             WHERE file_id = ?1",
            params![
                m.file_id,
                m.rows as i64,
                loaded.to_text(scale),
                duplicate.to_text(scale)
            ],
        )
        .map_err(sql("moving counts of the receiving file"))?;
        for (rule, rows) in warnings.iter() {
            tx.execute(
                "INSERT INTO file_warnings (file_id, rule, rows) VALUES (?1, ?2, ?3)
                 ON CONFLICT (file_id, rule) DO UPDATE SET rows = rows + excluded.rows",
                params![m.file_id, rule.name(), rows as i64],
            )
            .map_err(sql("moving warnings of the receiving file"))?;
        }
    }
    for ((file_id, currency), (rows, amount)) in &moved_currencies {
        let before: Option<(i64, String)> = tx
            .query_row(
                "SELECT rows, amount FROM file_amounts WHERE file_id = ?1 AND currency = ?2",
                params![file_id, currency],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql("reading the receiving file's amounts"))?;
        let (mut n, mut sum) = (*rows as i64, amount.clone());
        if let Some((rows_before, text)) = before {
            n += rows_before;
            sum.merge(&Total::parse(&text, scale).ok_or_else(|| {
                WarehouseError::Aborted(format!(
                    "file {file_id} has amount {text} in {currency}, not at scale {scale}"
                ))
            })?);
        }
        tx.execute(
            "INSERT INTO file_amounts (file_id, currency, rows, amount) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (file_id, currency) DO UPDATE SET rows = excluded.rows, amount = excluded.amount",
            params![file_id, currency, n, sum.to_text(scale)],
        )
        .map_err(sql("moving amounts of the receiving file"))?;
    }
    Ok(moved.into_values().map(|(m, _)| m).collect())
}

/// The exact sum of `file_amounts` per currency. Amounts are decimal text at each
/// file's scale: SQL sums them as integers of minor units per (currency, scale), one row
/// per file and currency read; only if such a sum overflows 64 bits (SQLite errors, it
/// never wraps) are the texts read and added here.
fn amounts_by_currency(tx: &rusqlite::Transaction<'_>) -> Result<BTreeMap<String, String>> {
    use super::figures::DecimalSum;
    let context = "reading catalog figures";
    let mut sums: BTreeMap<String, DecimalSum> = BTreeMap::new();
    let grouped = tx
        .prepare_cached(
            "SELECT currency, k, SUM(CAST(REPLACE(amount, '.', '') AS INTEGER))
             FROM (SELECT currency, amount,
                          CASE WHEN instr(amount, '.') > 0
                               THEN length(amount) - instr(amount, '.') ELSE 0 END AS k
                   FROM file_amounts)
             GROUP BY currency, k",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        });
    match grouped {
        Ok(rows) => {
            for (currency, scale, minor) in rows {
                sums.entry(currency)
                    .or_default()
                    .add_minor(i128::from(minor), scale.clamp(0, 38) as u32);
            }
        }
        Err(e) if e.to_string().contains("integer overflow") => {
            let mut stmt = tx
                .prepare_cached("SELECT currency, amount FROM file_amounts")
                .map_err(sql(context))?;
            let mut rows = stmt.query([]).map_err(sql(context))?;
            while let Some(r) = rows.next().map_err(sql(context))? {
                let currency: String = r.get(0).map_err(sql(context))?;
                let amount: String = r.get(1).map_err(sql(context))?;
                sums.entry(currency).or_default().add(&amount);
            }
        }
        Err(e) => return Err(sql(context)(e)),
    }
    Ok(sums
        .into_iter()
        .filter_map(|(currency, sum)| Some((currency, sum.text()?)))
        .collect())
}

/// Writes a (re)loaded file's per-rule rejects and per-currency loaded amounts
/// (migration 0012), replacing what an earlier load wrote: the figures `/metrics` reads
/// without scanning `rejected_rows` or `transactions`. A failed file keeps its rejects
/// (they stay quarantined) and holds no amounts.
fn record_figures(tx: &rusqlite::Transaction<'_>, plan: &LoadPlan, tally: &Tally) -> Result<()> {
    tx.execute(
        "DELETE FROM file_rejects WHERE file_id = ?1",
        [plan.file_id],
    )
    .map_err(sql("clearing reject counts"))?;
    for (rule, rows) in &tally.rejects {
        tx.execute(
            "INSERT INTO file_rejects (file_id, rule, rows) VALUES (?1, ?2, ?3)",
            params![plan.file_id, rule.name(), *rows as i64],
        )
        .map_err(sql("recording reject counts"))?;
    }
    tx.execute(
        "DELETE FROM file_amounts WHERE file_id = ?1",
        [plan.file_id],
    )
    .map_err(sql("clearing amounts by currency"))?;
    if tally.failure.is_none() {
        for (currency, rows, amount) in tally.loaded_by_currency.iter() {
            tx.execute(
                "INSERT INTO file_amounts (file_id, currency, rows, amount) VALUES (?1, ?2, ?3, ?4)",
                params![plan.file_id, currency, rows as i64, amount.to_text(plan.scale)],
            )
            .map_err(sql("recording amounts by currency"))?;
        }
    }
    Ok(())
}

/// Rows per multi-row `INSERT`: fewer statement executions per row, which is where
/// SQLite spends much of a bulk load.
const INSERT_GROUP: usize = 16;

/// Values per row in [`insert_sql`] (no per-row `loaded_at`: it is the file's
/// `processed_at`, see migration 0004).
const INSERT_FIELDS: usize = 11;

fn insert_sql(rows: usize) -> String {
    let mut q = String::from(
        "INSERT INTO transactions (transaction_id, customer_id, customer_dob, gender, location,
             account_balance, transaction_at, amount, currency, file_id, line_no)
         VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            q.push(',');
        }
        let b = r * INSERT_FIELDS;
        q.push('(');
        for c in 1..=INSERT_FIELDS {
            if c > 1 {
                q.push(',');
            }
            q.push('?');
            q.push_str(&(b + c).to_string());
        }
        q.push(')');
    }
    q.push_str(" ON CONFLICT (transaction_id) DO NOTHING");
    q
}

/// Binds one row's values at parameter offset `base` (the per-file constants are bound
/// once by [`bind_constants`]).
fn bind_row(stmt: &mut rusqlite::CachedStatement<'_>, base: usize, row: &ValidRow) -> Result<()> {
    let t = &row.txn;
    let bind = |stmt: &mut rusqlite::CachedStatement<'_>, i: usize, v: &dyn rusqlite::ToSql| {
        stmt.raw_bind_parameter(base + i, v)
            .map_err(sql("binding a value"))
    };
    bind(stmt, 1, &t.transaction_id.as_str())?;
    bind(stmt, 2, &t.customer_id.as_str())?;
    bind(stmt, 4, &t.gender.map(crate::model::Gender::code))?;
    bind(stmt, 5, &t.location.as_deref())?;
    bind(stmt, 9, &t.currency.as_str())?;
    let text = &row.text;
    bind(stmt, 3, &text.dob())?;
    bind(stmt, 6, &text.balance())?;
    bind(stmt, 7, &text.at())?;
    bind(stmt, 8, &text.amount())?;
    bind(stmt, 11, &(row.line as i64))
}

/// Binds the value that is the same for every row of a file (`file_id`) once: SQLite
/// keeps bindings across executions of a statement.
fn bind_constants(
    stmt: &mut rusqlite::CachedStatement<'_>,
    rows: usize,
    plan: &LoadPlan,
) -> Result<()> {
    for k in 0..rows {
        stmt.raw_bind_parameter(k * INSERT_FIELDS + 10, plan.file_id)
            .map_err(sql("binding a value"))?;
    }
    Ok(())
}

/// A row already in `transactions`, read back when an id collides.
struct StoredRow {
    file_id: i64,
    line_no: i64,
    rowid: i64,
    values: [Option<String>; 8],
}

impl StoredRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
        Ok(StoredRow {
            file_id: r.get(0)?,
            line_no: r.get(1)?,
            rowid: r.get(10)?,
            values: [
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ],
        })
    }

    /// Names of the columns whose stored value differs from `t`'s canonical text.
    fn differences(&self, t: &crate::model::Transaction) -> Vec<&'static str> {
        let new = [
            Some(t.customer_id.to_string()),
            t.customer_dob.map(|d| d.to_string()),
            t.gender.map(|g| g.code().to_owned()),
            t.location.as_ref().map(ToString::to_string),
            t.account_balance.map(crate::model::Amount::to_text),
            Some(t.transaction_at.to_string()),
            Some(t.amount.to_text()),
            Some(t.currency.as_str().to_owned()),
        ];
        const NAMES: [&str; 8] = [
            "customer_id",
            "customer_dob",
            "gender",
            "location",
            "account_balance",
            "transaction_at",
            "amount",
            "currency",
        ];
        NAMES
            .iter()
            .zip(self.values.iter().zip(new.iter()))
            .filter(|(_, (old, new))| old != new)
            .map(|(name, _)| *name)
            .collect()
    }
}

#[allow(clippy::too_many_arguments)]
fn insert_reject(
    stmt: &mut rusqlite::CachedStatement<'_>,
    file_id: i64,
    line: u64,
    rule: Rule,
    field: Option<&str>,
    detail: &str,
    amount: Option<String>,
    raw: &[u8],
) -> Result<()> {
    // Keep the raw record readable as TEXT; bytes that are not UTF-8 are kept exactly,
    // as a BLOB.
    let raw_value = match std::str::from_utf8(raw) {
        Ok(text) => {
            rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(text.as_bytes()))
        }
        Err(_) => rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Blob(raw)),
    };
    stmt.execute(params![
        file_id,
        line,
        rule.name(),
        field,
        detail,
        amount,
        raw_value
    ])
    .map_err(sql("quarantining a row"))?;
    Ok(())
}

/// The catalog's current master key id, first set to `key_id` when there is none yet.
/// Called inside a write transaction.
fn adopt_master_key(tx: &rusqlite::Transaction<'_>, key_id: &str) -> Result<String> {
    tx.execute(
        "INSERT OR IGNORE INTO lake_master_key (id, key_id, since) VALUES (1, ?1, ?2)",
        params![key_id, crate::clock::now_rfc3339()],
    )
    .map_err(sql("recording the current master key"))?;
    tx.query_row("SELECT key_id FROM lake_master_key WHERE id = 1", [], |r| {
        r.get(0)
    })
    .map_err(sql("reading the master key id"))
}

/// What the warehouse holds for a file (see [`Stored`]), read on `conn`: the load's own
/// transaction before it commits, or the connection afterwards.
fn stored_in(conn: &Connection, file_id: i64, scale: u8) -> Result<Stored> {
    let (first, last): (Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT first_rowid, last_rowid FROM files WHERE file_id = ?1",
            [file_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql("reading the file's rowid range"))?;
    // Rows of the file outside its recorded range would be a bug; count them too
    // when the range is unknown.
    let (transactions, t_amount) = exact_sum(
        conn,
        scale,
        "transactions WHERE rowid BETWEEN ?2 AND ?3 AND file_id = ?1",
        params![file_id, first.unwrap_or(0), last.unwrap_or(i64::MAX)],
        "counting loaded rows",
    )?;
    // Rows moved into the file by another file's reprocess lie outside its range.
    let (moved, m_amount) = exact_sum(
        conn,
        scale,
        "transactions WHERE transaction_id IN (SELECT transaction_id FROM rehomed_rows WHERE file_id = ?1)
           AND file_id = ?1 AND rowid NOT BETWEEN ?2 AND ?3",
        params![file_id, first.unwrap_or(0), last.unwrap_or(i64::MAX)],
        "counting rows moved in",
    )?;
    let duplicates: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM duplicate_rows WHERE file_id = ?1",
            [file_id],
            |r| r.get(0),
        )
        .map_err(sql("counting duplicate lineage"))?;
    let (rejected, r_amount) = exact_sum(
        conn,
        scale,
        "rejected_rows WHERE file_id = ?1",
        params![file_id],
        "counting rejected rows",
    )?;
    type Row = (
        String,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let row: Row = conn
        .query_row(
            "SELECT status, rows_read, rows_loaded, rows_rejected, rows_duplicate,
                    amount_read, amount_loaded, amount_rejected, amount_duplicate
             FROM files WHERE file_id = ?1",
            [file_id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            },
        )
        .map_err(sql("reading the file's catalog row"))?;
    let total = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| Total::parse(t, scale))
            .unwrap_or(Total::from_minor(-1))
    };
    let count = |n: Option<i64>| n.unwrap_or(-1) as u64;
    Ok(Stored {
        status: FileStatus::from_name(&row.0),
        recorded: Tally {
            rows_read: count(row.1),
            rows_loaded: count(row.2),
            rows_rejected: count(row.3),
            rows_duplicate: count(row.4),
            amount_read: total(&row.5),
            amount_loaded: total(&row.6),
            amount_rejected: total(&row.7),
            amount_duplicate: total(&row.8),
            ..Tally::default()
        },
        transactions: transactions + moved,
        transactions_amount: {
            let mut t = t_amount;
            t.merge(&m_amount);
            t
        },
        rejected,
        rejected_amount: r_amount,
        duplicates: duplicates as u64,
        loaded_by_currency: None,
    })
}

/// `COUNT(*)` and the exact sum of the canonical-decimal TEXT `amount` over `from_where`
/// (a table and its `WHERE`), whatever the row count and the amounts' size (issue 8 §6).
///
/// Removing the point gives minor units. A `CAST` clamps a number too long for 64 bits,
/// so SQL only sums texts of at most 18 characters; SQLite's integer `SUM` then errors
/// (never wraps) if the sum overflows, and only then are they summed again in two halves
/// of at most 9 digits each (no overflow below 9·10^9 rows). The rare longer texts
/// (amounts rejected `amount_above_max`) are read and added exactly here. The common case
/// costs one scan with one `SUM`.
fn exact_sum(
    conn: &Connection,
    scale: u8,
    from_where: &str,
    params: &[&dyn rusqlite::ToSql],
    context: &'static str,
) -> Result<(u64, Total)> {
    const SHORT: &str = "length(amount) <= 18";
    let minor = "CAST(REPLACE(amount, '.', '') AS INTEGER)";
    let fast = conn.query_row(
        &format!(
            "SELECT COUNT(*), COALESCE(SUM({minor}) FILTER (WHERE {SHORT}), 0),
                    COUNT(amount) FILTER (WHERE NOT ({SHORT}))
             FROM {from_where}"
        ),
        params,
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    );
    let (count, mut total, longer) = match fast {
        Ok((count, sum, longer)) => (count, Total::from_minor(i128::from(sum)), longer),
        Err(e) if e.to_string().contains("integer overflow") => {
            let (count, high, low, longer): (i64, i64, i64, i64) = conn
                .query_row(
                    &format!(
                        "SELECT COUNT(*),
                                COALESCE(SUM({minor} / 1000000000) FILTER (WHERE {SHORT}), 0),
                                COALESCE(SUM({minor} % 1000000000) FILTER (WHERE {SHORT}), 0),
                                COUNT(amount) FILTER (WHERE NOT ({SHORT}))
                         FROM {from_where}"
                    ),
                    params,
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .map_err(sql(context))?;
            let sum = i128::from(high) * 1_000_000_000 + i128::from(low);
            (count, Total::from_minor(sum), longer)
        }
        Err(e) => return Err(sql(context)(e)),
    };
    if longer == 0 {
        return Ok((count as u64, total));
    }
    let mut long = conn
        .prepare(&format!(
            "SELECT amount FROM {from_where} AND amount IS NOT NULL AND NOT ({SHORT})"
        ))
        .map_err(sql(context))?;
    let texts = long
        .query_map(params, |r| r.get::<_, String>(0))
        .map_err(sql(context))?;
    for text in texts {
        let text = text.map_err(sql(context))?;
        // Not canonical text would be a bug; it makes the totals differ, loudly.
        total.merge(&Total::parse(&text, scale).unwrap_or(Total::from_minor(-1)));
    }
    Ok((count as u64, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sums_never_overflow_and_count_long_amounts() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER, amount TEXT)")
            .unwrap();
        let put = |k: i64, a: Option<&str>| {
            conn.execute("INSERT INTO t VALUES (?1, ?2)", params![k, a])
                .unwrap();
        };
        // k = 1: the fast path.
        for a in ["25.00", "-0.50", "1.05"] {
            put(1, Some(a));
        }
        put(1, None);
        // k = 2: 100 amounts of 18 characters overflow a 64-bit SUM.
        for _ in 0..100 {
            put(2, Some("999999999999999.99"));
        }
        put(2, Some("-0.01"));
        // k = 3: longer amounts too, and an overflowing short sum.
        put(3, Some("1234567890123456789012345678901234567890.00"));
        put(3, Some("92233720368547758070.00"));
        put(3, Some("999999999999999.99"));
        put(3, Some("999999999999999.99"));
        put(3, Some("9999999999999999.99"));
        let sum = |k: i64| {
            let (n, t) = exact_sum(&conn, 2, "t WHERE k = ?1", params![k], "test").unwrap();
            (n, t.to_text(2))
        };
        assert_eq!(sum(1), (4, "25.55".into()));
        assert_eq!(sum(2), (101, "99999999999999998.99".into()));
        assert_eq!(
            sum(3),
            (5, "1234567890123456789104591399269782325959.97".into())
        );
        assert_eq!(sum(4), (0, "0.00".into()));
    }
}
