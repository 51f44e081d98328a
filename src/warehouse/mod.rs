//! The warehouse seam: the catalog of files and runs, the load of one file's rows in
//! one transaction, and the read-backs that reports and control totals need.
//!
//! [`Warehouse`] is a closed set of backends selected by URL (`sqlite://` today,
//! `postgres://` next). Every backend honours the same guarantees, checked by the
//! behaviour suite in `tests/warehouse_contract.rs`:
//! - **Atomic per file:** a file's rows, rejects, warnings and catalog status commit in
//!   one transaction; a crash leaves nothing of the load.
//! - **Exactly once:** a transaction id already present with identical content is a
//!   duplicate (not loaded again); with other content it is a `conflicting_duplicate`
//!   rejection. The first occurrence in file order wins.
//! - **Resumable claims:** a file claimed but not finished (status `landing`) is handed
//!   back by the next claim of the same content.

pub mod pg_connect;
pub mod pg_copy;
pub mod pool;
pub mod postgres;
pub mod sqlite;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Total;
use crate::scan::BatchSource;
use crate::validate::{Rule, WarningCounts};

/// A warehouse failure. Row problems are never errors: they are rejections.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// The warehouse cannot be opened or reached.
    #[error("warehouse unreachable at {url}: {reason}")]
    Unreachable {
        /// URL with any password removed.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A schema migration could not be applied (nothing of it was).
    #[error(
        "warehouse migration {version:04} ({name}) failed: {reason} (nothing of it was applied; see \
         docs/UPGRADING.md)"
    )]
    Migration {
        /// Version.
        version: i64,
        /// Name.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// The warehouse was migrated by a newer bankpipe.
    #[error(
        "warehouse schema is at version {found}, newer than this bankpipe knows ({known}): \
         upgrade bankpipe on this machine (every worker sharing a warehouse runs the same version)"
    )]
    SchemaTooNew {
        /// Highest version applied.
        found: i64,
        /// Highest version this binary knows.
        known: i64,
    },
    /// The URL names no supported backend.
    #[error("unsupported warehouse URL {0} (use sqlite://PATH or postgres://...)")]
    UnsupportedUrl(String),
    /// A PostgreSQL statement failed.
    #[error("warehouse {context}: {}", postgres::describe(source))]
    Pg {
        /// What was being done.
        context: &'static str,
        /// The driver's error (never holds the password).
        #[source]
        source: ::postgres::Error,
    },
    /// A statement failed.
    #[error("warehouse {context}: {source}")]
    Sql {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not in status `landing` (already finished, or never claimed), so
    /// loading it again would break exactly-once.
    #[error("file {file_id} is {status}, not landing: it cannot be loaded again")]
    NotClaimed {
        /// Catalog id.
        file_id: i64,
        /// Its status (or `missing`).
        status: String,
    },
    /// The rows could not all be read (rolled back).
    #[error("{0}")]
    Source(String),
    /// The load was abandoned before commit (rolled back).
    #[error("load abandoned before commit: {0}")]
    Aborted(String),
}

/// Result alias for warehouse calls.
pub type Result<T, E = WarehouseError> = std::result::Result<T, E>;

/// Catalog status of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Claimed; landing or loading not finished (a crash leaves this).
    Landing,
    /// Rows committed.
    Loaded,
    /// Failed as a whole; nothing loaded.
    Failed,
}

impl FileStatus {
    /// Stored name.
    pub const fn name(self) -> &'static str {
        match self {
            FileStatus::Landing => "landing",
            FileStatus::Loaded => "loaded",
            FileStatus::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn from_name(s: &str) -> Option<FileStatus> {
        match s {
            "landing" => Some(FileStatus::Landing),
            "loaded" => Some(FileStatus::Loaded),
            "failed" => Some(FileStatus::Failed),
            _ => None,
        }
    }
}

/// A file about to be processed.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Content digest, hex.
    pub sha256: String,
    /// Name in the inbox.
    pub original_name: String,
    /// Size in bytes as received.
    pub bytes: u64,
    /// Detected profile, if any.
    pub profile: Option<String>,
    /// Detected format.
    pub format: String,
    /// Detected compression.
    pub compression: String,
    /// Where the raw copy goes in the lake.
    pub lake_key: String,
    /// When it was received (UTC, RFC 3339).
    pub received_at: String,
    /// The run claiming it.
    pub run_id: String,
}

/// The outcome of claiming a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time this content is seen.
    New {
        /// Catalog id.
        file_id: i64,
    },
    /// A previous attempt died before finishing; carry on with its id and lake key.
    Resume {
        /// Catalog id.
        file_id: i64,
        /// Lake key recorded by the first attempt.
        lake_key: String,
    },
    /// Another live worker is processing this content right now.
    Busy {
        /// Catalog id.
        file_id: i64,
    },
    /// This content was already processed.
    Duplicate {
        /// Catalog id of the earlier file.
        file_id: i64,
        /// Its name.
        original_name: String,
        /// Its status.
        status: FileStatus,
    },
}

/// Parameters of one file's load.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Catalog id.
    pub file_id: i64,
    /// Run doing the load.
    pub run_id: String,
    /// Fail the file when rejected rows / rows read exceeds this.
    pub max_reject_share: f64,
    /// When the file was loaded: written to `files.processed_at` (the rows' load time).
    pub loaded_at: String,
    /// Scale of the file's amounts.
    pub scale: u8,
    /// Reprocess: the file may already be `loaded` or `failed`; its previous rows,
    /// rejects and warnings are replaced in the same transaction.
    pub replace: bool,
    /// The profile's format names per formatted field, to record
    /// [`Tally::formats`] under ([`crate::profile::Profile::all_format_names`]).
    pub format_names: crate::profile::FormatNames,
}

/// Non-zero per-format row counts of a load as (field, format, rows) rows.
fn format_rows(plan: &LoadPlan, tally: &Tally) -> Vec<(&'static str, String, u64)> {
    let mut out = Vec::new();
    for (field, per) in tally.formats.named(&plan.format_names) {
        for (format, rows) in per {
            out.push((field, format, rows));
        }
    }
    out
}

/// Puts `(file_id, field, format, rows)` rows read from `file_formats` on their files.
fn attach_formats(files: &mut [FileEntry], counts: Vec<(i64, String, String, i64)>) {
    let mut by_file: BTreeMap<i64, BTreeMap<String, BTreeMap<String, u64>>> = BTreeMap::new();
    for (file_id, field, format, rows) in counts {
        by_file
            .entry(file_id)
            .or_default()
            .entry(field)
            .or_default()
            .insert(format, rows.max(0) as u64);
    }
    for f in files {
        if let Some(formats) = by_file.remove(&f.file_id) {
            f.formats = formats;
        }
    }
}

/// Counts and totals of one file's load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Records read.
    pub rows_read: u64,
    /// Rows inserted.
    pub rows_loaded: u64,
    /// Rows quarantined.
    pub rows_rejected: u64,
    /// Rows already present with identical content.
    pub rows_duplicate: u64,
    /// Sum of every amount that parsed.
    pub amount_read: Total,
    /// Sum over loaded rows.
    pub amount_loaded: Total,
    /// Sum over rejected rows whose amount parsed.
    pub amount_rejected: Total,
    /// Sum over duplicate rows.
    pub amount_duplicate: Total,
    /// Warnings of loaded rows, by rule.
    pub warnings: WarningCounts,
    /// Rows that passed validation, per matched date/time format.
    pub formats: crate::validate::FormatCounts,
    /// Rejections by rule.
    pub rejects: BTreeMap<Rule, u64>,
    /// Set when the file failed as a whole (too many rejects); nothing was loaded.
    pub failure: Option<String>,
}

impl Tally {
    /// Whether rows and amounts add up: read = loaded + rejected + duplicate.
    pub fn balances(&self) -> bool {
        let mut sum = self.amount_loaded;
        sum.merge(self.amount_rejected);
        sum.merge(self.amount_duplicate);
        self.rows_read == self.rows_loaded + self.rows_rejected + self.rows_duplicate
            && self.amount_read == sum
    }

    /// Decides whether the file fails as a whole: no rows at all, or a rejected-row
    /// share above `max_reject_share`. Sets [`Tally::failure`] with a reason naming the
    /// most frequent rules.
    pub fn judge(&mut self, max_reject_share: f64) {
        if self.rows_read == 0 {
            self.failure = Some("file has no data rows".into());
        } else if self.reject_share() > max_reject_share {
            let mut rules: Vec<_> = self.rejects.iter().collect();
            rules.sort_by(|a, b| b.1.cmp(a.1));
            let top: Vec<String> = rules
                .iter()
                .take(3)
                .map(|(r, n)| format!("{} {n}", r.name()))
                .collect();
            self.failure = Some(format!(
                "rejected-row share {:.2}% exceeds max_reject_share {:.2}% ({} of {} rows; {})",
                self.reject_share() * 100.0,
                max_reject_share * 100.0,
                self.rows_rejected,
                self.rows_read,
                top.join(", ")
            ));
        }
    }

    /// Share of rejected rows.
    pub fn reject_share(&self) -> f64 {
        if self.rows_read == 0 {
            0.0
        } else {
            self.rows_rejected as f64 / self.rows_read as f64
        }
    }
}

/// What the warehouse holds for one file, read back after commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Catalog status.
    pub status: Option<FileStatus>,
    /// Counts as recorded in `files`.
    pub recorded: Tally,
    /// `COUNT(*)` of the file's rows in `transactions`.
    pub transactions: u64,
    /// Sum of their amounts.
    pub transactions_amount: Total,
    /// `COUNT(*)` of the file's rows in `rejected_rows`.
    pub rejected: u64,
    /// Sum of their parsed amounts.
    pub rejected_amount: Total,
}

/// One catalog row, for `bankpipe files` and reports.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    /// Catalog id.
    pub file_id: i64,
    /// Digest.
    pub sha256: String,
    /// Name as received.
    pub original_name: String,
    /// Size.
    pub bytes: u64,
    /// Profile.
    pub profile: Option<String>,
    /// Status.
    pub status: String,
    /// Received at.
    pub received_at: String,
    /// Processed at.
    pub processed_at: Option<String>,
    /// Rows read.
    pub rows_read: Option<u64>,
    /// Rows loaded.
    pub rows_loaded: Option<u64>,
    /// Rows rejected.
    pub rows_rejected: Option<u64>,
    /// Rows duplicate.
    pub rows_duplicate: Option<u64>,
    /// Amount loaded.
    pub amount_loaded: Option<String>,
    /// Lake key.
    pub lake_key: String,
    /// Failure reason.
    pub error: Option<String>,
    /// The run that last processed it.
    pub run_id: Option<String>,
    /// Id of the master key wrapping the raw object's data key; `None`: stored in clear.
    pub key_id: Option<String>,
    /// The wrapped data key (never printed).
    #[serde(skip)]
    pub wrapped_key: Option<String>,
    /// Rows per matched date/time format: field → format → rows.
    pub formats: BTreeMap<String, BTreeMap<String, u64>>,
}

impl FileEntry {
    /// How the raw object is encrypted, if it is.
    pub fn sealed(&self) -> Option<crate::crypt::Sealed> {
        match (&self.key_id, &self.wrapped_key) {
            (Some(key_id), Some(wrapped)) => Some(crate::crypt::Sealed {
                key_id: key_id.clone(),
                wrapped: wrapped.clone(),
            }),
            _ => None,
        }
    }
}

/// One re-wrapped data key for `rotate-key`.
#[derive(Debug, Clone)]
pub struct Rewrap {
    /// File id.
    pub file_id: i64,
    /// The wrapping read from the catalog.
    pub old: crate::crypt::Sealed,
    /// The new wrapping.
    pub new: crate::crypt::Sealed,
}

/// One quarantined row, for `bankpipe rejects`.
#[derive(Debug, Clone, Serialize)]
pub struct RejectEntry {
    /// File id.
    pub file_id: i64,
    /// File name.
    pub file: String,
    /// Line in the file.
    pub line_no: u64,
    /// Rule broken.
    pub rule: String,
    /// Field at fault.
    pub field: Option<String>,
    /// Explanation.
    pub detail: Option<String>,
    /// Raw text (lossy UTF-8 for `invalid_encoding` rows).
    pub raw: String,
}

/// Filter of `bankpipe rejects`.
#[derive(Debug, Clone, Default)]
pub struct RejectFilter {
    /// Only this file.
    pub file_id: Option<i64>,
    /// Only this rule.
    pub rule: Option<String>,
    /// At most this many rows.
    pub limit: u64,
}

/// Warehouse-wide figures for `bankpipe status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Files by status.
    pub files: BTreeMap<String, u64>,
    /// Rows in `transactions`.
    pub transactions: u64,
    /// Rows in `rejected_rows`.
    pub rejected_rows: u64,
    /// Rejected rows by rule.
    pub rejects_by_rule: BTreeMap<String, u64>,
    /// Warnings by rule over all files.
    pub warnings_by_rule: BTreeMap<String, u64>,
    /// Earliest and latest transaction time.
    pub transaction_span: Option<(String, String)>,
    /// The latest runs, newest first.
    pub recent_runs: Vec<RunEntry>,
    /// Schema version.
    pub schema_version: i64,
}

/// One row of `runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    /// Id.
    pub run_id: String,
    /// Start.
    pub started_at: String,
    /// End.
    pub finished_at: Option<String>,
    /// Status.
    pub status: String,
}

impl WarehouseError {
    /// Whether retrying after a reconnect may succeed (connection lost, server
    /// restarting, serialization failure, too many connections).
    pub fn is_transient(&self) -> bool {
        match self {
            WarehouseError::Pg { source, .. } => postgres::is_transient(source),
            WarehouseError::Unreachable { reason, .. } => {
                let r = reason.to_ascii_lowercase();
                [
                    "connection refused",
                    "connection reset",
                    "too many",
                    "shutting down",
                    "starting up",
                    "timed out",
                    "error connecting",
                ]
                .iter()
                .any(|s| r.contains(s))
            }
            _ => false,
        }
    }
}

/// The warehouse backends.
#[derive(Debug)]
pub enum Warehouse {
    /// Embedded SQLite database (the default).
    Sqlite(sqlite::SqliteWarehouse),
    /// PostgreSQL (production).
    Postgres(Box<postgres::PgWarehouse>),
}

impl Warehouse {
    /// Opens the warehouse named by `url` and applies pending migrations.
    ///
    /// # Errors
    /// [`WarehouseError::Unreachable`] when it cannot be opened,
    /// [`WarehouseError::UnsupportedUrl`] for an unknown scheme.
    pub fn open(url: &str) -> Result<Warehouse> {
        if let Some(path) = sqlite::path_from_url(url) {
            return Ok(Warehouse::Sqlite(sqlite::SqliteWarehouse::open(&path)?));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Warehouse::Postgres(Box::new(postgres::PgWarehouse::open(
                url,
            )?)));
        }
        Err(WarehouseError::UnsupportedUrl(crate::config::redact_url(
            url,
        )))
    }

    /// Records the start of a run; runs left `running` by a dead process become
    /// `aborted`.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn start_run(&mut self, run_id: &str, started_at: &str) -> Result<()> {
        match self {
            Warehouse::Sqlite(w) => w.start_run(run_id, started_at),
            Warehouse::Postgres(w) => w.start_run(run_id, started_at),
        }
    }

    /// Records the end of a run.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn finish_run(
        &mut self,
        run_id: &str,
        finished_at: &str,
        status: &str,
        counts: &str,
    ) -> Result<()> {
        match self {
            Warehouse::Sqlite(w) => w.finish_run(run_id, finished_at, status, counts),
            Warehouse::Postgres(w) => w.finish_run(run_id, finished_at, status, counts),
        }
    }

    /// Looks a digest up without claiming it.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn find_file(&mut self, sha256: &str) -> Result<Option<(i64, String, FileStatus)>> {
        match self {
            Warehouse::Sqlite(w) => w.find_file(sha256),
            Warehouse::Postgres(w) => w.find_file(sha256),
        }
    }

    /// Claims a file for processing (see [`Claim`]).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn claim(&mut self, file: &NewFile) -> Result<Claim> {
        match self {
            Warehouse::Sqlite(w) => w.claim(file),
            Warehouse::Postgres(w) => w.claim(file),
        }
    }

    /// Gives up a claim taken by [`Warehouse::claim`] once the file is finished (or
    /// abandoned), so that another worker may take it over.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn release(&mut self, file_id: i64) -> Result<()> {
        match self {
            Warehouse::Sqlite(_) => Ok(()),
            Warehouse::Postgres(w) => w.release(file_id),
        }
    }

    /// Withdraws a claim whose raw object could not be landed: the `landing` row is
    /// deleted (nothing was committed under it), so the catalog never points at a
    /// missing or partial object, and the claim is released. A row in any other status
    /// is left alone.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn abandon(&mut self, file_id: i64) -> Result<()> {
        match self {
            Warehouse::Sqlite(w) => w.abandon(file_id),
            Warehouse::Postgres(w) => w.abandon(file_id),
        }
    }

    /// Connects again after a transient failure.
    ///
    /// # Errors
    /// When the warehouse is still unreachable.
    pub fn reconnect(&mut self) -> Result<()> {
        match self {
            Warehouse::Sqlite(_) => Ok(()),
            Warehouse::Postgres(w) => w.reconnect(),
        }
    }

    /// The server's id of this session (PostgreSQL backend pid), for logs.
    pub fn session_id(&self) -> Option<i32> {
        match self {
            Warehouse::Sqlite(_) => None,
            Warehouse::Postgres(w) => Some(w.backend_pid()),
        }
    }

    /// Whether the session still answers (a cheap round trip on PostgreSQL).
    pub fn is_alive(&mut self) -> bool {
        match self {
            Warehouse::Sqlite(_) => true,
            Warehouse::Postgres(w) => w.is_alive(),
        }
    }

    /// Creates the least-privilege roles (PostgreSQL only).
    ///
    /// # Errors
    /// On SQL failure, or for a backend without roles.
    pub fn create_roles(&mut self) -> Result<()> {
        match self {
            Warehouse::Sqlite(_) => Err(WarehouseError::Aborted(
                "roles exist only in PostgreSQL; SQLite access is controlled by file permissions"
                    .into(),
            )),
            Warehouse::Postgres(w) => w.create_roles(),
        }
    }

    /// Marks a claimed file failed as a whole before any row was read.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn fail_file(&mut self, file_id: i64, run_id: &str, error: &str, at: &str) -> Result<()> {
        match self {
            Warehouse::Sqlite(w) => w.fail_file(file_id, run_id, error, at),
            Warehouse::Postgres(w) => w.fail_file(file_id, run_id, error, at),
        }
    }

    /// Loads a file's batches in one transaction. After the last batch the source must
    /// confirm a clean end, then `before_commit` runs with the final tally; an error
    /// from either rolls everything back. `progress` sees the running tally after each
    /// batch.
    ///
    /// # Errors
    /// [`WarehouseError::Source`] when reading failed, [`WarehouseError::Aborted`] when
    /// `before_commit` refused, [`WarehouseError::NotClaimed`] when the file is not in
    /// status `landing`; SQL failures.
    pub fn load(
        &mut self,
        plan: &LoadPlan,
        source: &mut dyn BatchSource,
        progress: &mut dyn FnMut(&Tally),
        before_commit: &mut dyn FnMut(&Tally) -> Result<(), String>,
    ) -> Result<Tally> {
        match self {
            Warehouse::Sqlite(w) => w.load(plan, source, progress, before_commit),
            Warehouse::Postgres(w) => w.load(plan, source, progress, before_commit),
        }
    }

    /// Reads back what is stored for a file, for the control-total check.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn stored(&mut self, file_id: i64, scale: u8) -> Result<Stored> {
        match self {
            Warehouse::Sqlite(w) => w.stored(file_id, scale),
            Warehouse::Postgres(w) => w.stored(file_id, scale),
        }
    }

    /// Records what `bankpipe verify` found for a file's raw object (`intact`,
    /// `missing`, `corrupt`).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_lake_status(&mut self, file_id: i64, status: &str, at: &str) -> Result<()> {
        match self {
            Warehouse::Sqlite(w) => w.set_lake_status(file_id, status, at),
            Warehouse::Postgres(w) => w.set_lake_status(file_id, status, at),
        }
    }

    /// Records where a claimed file's raw object is about to be written and how it is
    /// encrypted (`None`: in clear), before a byte of it is written, so the catalog can
    /// always read back what the lake holds. An encrypted attempt writes its own object
    /// (the key names the data key), so a late upload of an earlier attempt can never
    /// replace the object the catalog describes.
    ///
    /// # Errors
    /// [`WarehouseError::NotClaimed`] when the file is no longer `landing` (another
    /// worker finished it): nothing must be landed then. SQL failures.
    pub fn record_landing(
        &mut self,
        file_id: i64,
        lake_key: &str,
        sealed: Option<&crate::crypt::Sealed>,
    ) -> Result<()> {
        let changed = match self {
            Warehouse::Sqlite(w) => w.record_landing(file_id, lake_key, sealed)?,
            Warehouse::Postgres(w) => w.record_landing(file_id, lake_key, sealed)?,
        };
        if changed == 1 {
            Ok(())
        } else {
            Err(WarehouseError::NotClaimed {
                file_id,
                status: "no longer landing".into(),
            })
        }
    }

    /// How many files each master key id protects (files stored in clear not counted).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn key_ids(&mut self) -> Result<BTreeMap<String, u64>> {
        // Asked at the start of every run: one aggregate, not the whole catalog.
        match self {
            Warehouse::Sqlite(w) => w.key_ids(),
            Warehouse::Postgres(w) => w.key_ids(),
        }
    }

    /// Replaces wrapped data keys in one transaction, each only if the row still holds
    /// the wrapping it was read with (`old`); returns how many rows changed.
    ///
    /// # Errors
    /// On SQL failure (nothing changed).
    pub fn rewrap(&mut self, changes: &[Rewrap]) -> Result<usize> {
        match self {
            Warehouse::Sqlite(w) => w.rewrap(changes),
            Warehouse::Postgres(w) => w.rewrap(changes),
        }
    }

    /// The catalog, in file id order (oldest first).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn files(&mut self) -> Result<Vec<FileEntry>> {
        match self {
            Warehouse::Sqlite(w) => w.files(),
            Warehouse::Postgres(w) => w.files(),
        }
    }

    /// Quarantined rows.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn rejects(&mut self, filter: &RejectFilter) -> Result<Vec<RejectEntry>> {
        match self {
            Warehouse::Sqlite(w) => w.rejects(filter),
            Warehouse::Postgres(w) => w.rejects(filter),
        }
    }

    /// Warehouse-wide figures.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn summary(&mut self) -> Result<Summary> {
        match self {
            Warehouse::Sqlite(w) => w.summary(),
            Warehouse::Postgres(w) => w.summary(),
        }
    }
}
