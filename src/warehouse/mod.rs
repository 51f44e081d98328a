//! The warehouse seam: the catalog of files and runs, the load of one file's rows in
//! one transaction, and the read-backs that reports and control totals need.
//!
//! [`Warehouse`] is a closed set of backends selected by URL: `sqlite://` (the embedded
//! default, [`sqlite`]) and `postgres://` (production, [`postgres`]). Every backend
//! honours the same guarantees, checked by the behaviour suite in `tests/common/mod.rs`,
//! which `tests/warehouse_sqlite.rs` and `tests/warehouse_postgres.rs` run on each:
//! - **Atomic per file:** a file's rows, rejects, warnings and catalog status commit in
//!   one transaction; a crash leaves nothing of the load.
//! - **Exactly once:** a transaction id already present with identical content is a
//!   duplicate (not loaded again); with other content it is a `conflicting_duplicate`
//!   rejection. The first occurrence in file order wins.
//! - **Resumable claims:** a file claimed but not finished (status `landing`) is handed
//!   back by the next claim of the same content.
//! - **Duplicate lineage:** every identical duplicate a loaded file counted is listed in
//!   `duplicate_rows` (written only when ids collide); a reprocess that no longer loads
//!   such a row moves it to one of those files instead of deleting it ([`Rehomed`]).

pub mod figures;
pub mod listing;
pub mod pg_connect;
pub mod pg_copy;
pub mod pool;
pub mod postgres;
pub mod quarters;
mod slots;
pub mod sqlite;

use std::collections::BTreeMap;

use serde::Serialize;

pub use quarters::{
    ExportEntry, ExportRow, QuarterCustomer, QuarterDay, QuarterInputs, ScaleTotal, SourceFile,
};
pub use slots::{BusyHere, SlotClaim, SlotRecord, SlotStatus};

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
    /// The warehouse refused for a reason retrying cannot fix: a wrong setting,
    /// credential or privilege. The reason names the setting to change.
    #[error("warehouse {url}: {reason}")]
    Setup {
        /// URL with any password removed.
        url: String,
        /// What is wrong and what to change.
        reason: String,
    },
    /// The URL points at nothing bankpipe made: no database file, no database, or a
    /// database without the bankpipe schema. Read-only commands stop here instead of
    /// creating one.
    #[error("no warehouse at {url}: {reason}")]
    NoWarehouse {
        /// URL with any password removed.
        url: String,
        /// What was found instead, and the command that creates it.
        reason: String,
    },
    /// The schema misses migrations this binary knows; only `migrate`, `run`, `demo`,
    /// `reprocess` and `rotate-key` apply them.
    #[error(
        "warehouse schema is at version {found}, this bankpipe needs {known}: run `bankpipe migrate` \
         (pending: {pending})"
    )]
    SchemaBehind {
        /// Highest version applied.
        found: i64,
        /// Highest version this binary knows.
        known: i64,
        /// The pending migrations, `NNNN name` joined by commas.
        pending: String,
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
    /// An encrypted object was about to be recorded (or a rotation started) under a
    /// master key that is not the catalog's current one: nothing changed. Names key
    /// ids only, never keys.
    #[error(
        "wrong master key: the configured master key has id {configured}, but the catalog's \
         current master key id is {current} (set by the first encrypted run or by rotate-key): \
         configure the key with id {current}"
    )]
    WrongMasterKey {
        /// Id of the key this process holds.
        configured: String,
        /// The catalog's current key id.
        current: String,
    },
    /// A data key could not be re-wrapped during `rotate-key` (nothing changed).
    #[error("file {file_id}: {source}; nothing changed")]
    Rewrap {
        /// Catalog id of the file.
        file_id: i64,
        /// Why its wrapping did not open.
        #[source]
        source: crate::crypt::KeyError,
    },
    /// The rows could not all be read (rolled back).
    #[error("{0}")]
    Source(String),
    /// The load was abandoned before commit (rolled back).
    #[error("load abandoned before commit: {0}")]
    Aborted(String),
    /// What the load transaction wrote does not add up to what it counted; found by
    /// reading it back before commit, so nothing was committed.
    #[error("control totals do not hold: {0}; nothing loaded")]
    ControlTotals(String),
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
    /// Another live session holds the claim: a worker is processing this content right
    /// now.
    Busy {
        /// Catalog id.
        file_id: i64,
        /// Who holds it, as recorded when it claimed.
        claimant: Claimant,
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

/// Who holds a claim, recorded by the claim itself (`files.claim_*`, migration 0008), so
/// a worker that meets a live claim can say whose it is (`claimed_by` in `run --json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Claimant {
    /// Host name of the claiming bankpipe process.
    pub host: Option<String>,
    /// Its process id on that host.
    pub pid: Option<u32>,
    /// Its run.
    pub run_id: Option<String>,
    /// When it claimed (UTC, RFC 3339).
    pub since: Option<String>,
    /// The server process serving its session (PostgreSQL `pg_backend_pid()`), to find
    /// it in `pg_stat_activity`.
    pub backend_pid: Option<i32>,
    /// How long the claim had been held when it was read (the server's
    /// `clock_timestamp() - claimed_at`, free of clock skew between hosts): a process
    /// younger than this is not the claimant, whatever its id.
    #[serde(skip)]
    pub held_for: Option<std::time::Duration>,
    /// Set by the worker that met the claim: the claimant's process is on this host and
    /// no longer running, but its server session has not ended yet (the server notices
    /// within seconds), so the next run loads the file.
    #[serde(skip)]
    pub process_gone: bool,
}

impl Claimant {
    /// This process: its host name and process id.
    pub fn this_process() -> (String, u32) {
        (host_name(), std::process::id())
    }

    /// Whether the claimant is a process of this host (same host name) that is no
    /// longer running: gone, a zombie, or its id now held by a younger process. `false`
    /// for another host, or when it cannot be told.
    pub fn gone_from_this_host(&self) -> bool {
        let (host, _) = Claimant::this_process();
        self.host.as_deref() == Some(host.as_str())
            && self.pid.is_some_and(|pid| {
                crate::process::state(pid, self.held_for) == crate::process::State::Gone
            })
    }
}

/// The host name: `HOSTNAME` when set, else the kernel's (`/proc/sys/kernel/hostname`),
/// else `/etc/hostname`; `unknown` when none can be read.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
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
    /// Loaded rows and their sum per currency (SQLite: counted as rows are inserted;
    /// PostgreSQL reads them back instead, see [`Stored::loaded_by_currency`]).
    pub loaded_by_currency: CurrencyTotals,
    /// Set when the file failed as a whole (too many rejects); nothing was loaded.
    pub failure: Option<String>,
    /// Reprocess only: rows this file held before that it no longer loads, and that
    /// other loaded files had counted as identical duplicates, moved to one of those
    /// files (see [`Rehomed`]). Empty for a first load.
    pub rehomed: Vec<Rehomed>,
}

/// Rows moved to one file by the reprocess of another (the duplicate lineage of
/// `docs/ARCHITECTURE.md`).
///
/// The receiving file counted these rows as identical duplicates of the rows the
/// reprocessed file held; once that file no longer loads them, they are stored again
/// with the receiving file's `file_id` and `line_no`, and its catalog counts move them
/// from duplicate to loaded (`rows_read` unchanged, so its totals still balance).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rehomed {
    /// The file that now holds the rows.
    pub file_id: i64,
    /// How many rows.
    pub rows: u64,
    /// Their exact sum (at the reprocessed file's scale: identical rows share the
    /// currency).
    #[serde(skip)]
    pub amount: Total,
}

/// Rows and their exact sum per currency, for `file_amounts` (migration 0012). A file
/// holds one currency, or a handful with a currency column: a short list searched
/// linearly costs less per row than hashing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrencyTotals(Vec<(crate::model::Currency, u64, Total)>);

impl CurrencyTotals {
    /// Counts one row of `amount` in `currency`.
    #[inline]
    pub fn add(&mut self, currency: crate::model::Currency, amount: crate::model::Amount) {
        if let Some((_, rows, total)) = self.0.iter_mut().find(|(c, _, _)| *c == currency) {
            *rows += 1;
            total.add(amount);
        } else {
            let mut total = Total::default();
            total.add(amount);
            self.0.push((currency, 1, total));
        }
    }

    /// `(currency, rows, sum)` in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64, &Total)> {
        self.0.iter().map(|(c, n, t)| (c.as_str(), *n, t))
    }
}

impl Tally {
    /// Whether rows and amounts add up: read = loaded + rejected + duplicate.
    pub fn balances(&self) -> bool {
        let mut sum = self.amount_loaded.clone();
        sum.merge(&self.amount_rejected);
        sum.merge(&self.amount_duplicate);
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
            // Every rule up to SHOWN; past that, the rest is counted so the listed
            // numbers never seem to be the whole of the rejected rows.
            const SHOWN: usize = 5;
            let mut listed: Vec<String> = rules
                .iter()
                .take(SHOWN)
                .map(|(r, n)| format!("{} {n}", r.name()))
                .collect();
            if rules.len() > SHOWN {
                let rest = &rules[SHOWN..];
                let rows: u64 = rest.iter().map(|(_, n)| **n).sum();
                listed.push(format!(
                    "and {rows} more in {} rule{}",
                    rest.len(),
                    if rest.len() == 1 { "" } else { "s" }
                ));
            }
            self.failure = Some(format!(
                "rejected-row share {:.2}% exceeds max_reject_share {:.2}% ({} of {} rows; {})",
                self.reject_share() * 100.0,
                max_reject_share * 100.0,
                self.rows_rejected,
                self.rows_read,
                listed.join(", ")
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
    /// `COUNT(*)` of the file's rows in `duplicate_rows` (its identical duplicates).
    pub duplicates: u64,
    /// The file's rows in `transactions` and their sum, per currency, when the backend
    /// reads them back at no extra cost: PostgreSQL (a hash aggregate in the same scan).
    /// `None` on SQLite, whose `GROUP BY` would sort every row (+60% on the read-back,
    /// measured); its load counts them instead ([`Tally::loaded_by_currency`]).
    pub loaded_by_currency: Option<BTreeMap<String, (u64, Total)>>,
}

impl Stored {
    /// Compares what the warehouse holds for a file with what its load counted: rows
    /// and exact sums in `transactions` and `rejected_rows`, the `files` row, and the
    /// balance read = loaded + rejected + duplicate. Backends call it inside the load
    /// transaction, before commit, so a file is never left `loaded` by a run that says
    /// its totals do not hold (issue 8 §6).
    ///
    /// # Errors
    /// Every difference found, as one message.
    pub fn check(&self, tally: &Tally, scale: u8) -> Result<(), String> {
        let mut broken = Vec::new();
        if !tally.balances() {
            broken.push(format!(
                "rows read {} != loaded {} + rejected {} + duplicate {} (or amounts differ)",
                tally.rows_read, tally.rows_loaded, tally.rows_rejected, tally.rows_duplicate
            ));
        }
        let failed = tally.failure.is_some();
        let expect_rows = if failed { 0 } else { tally.rows_loaded };
        let expect_amount = if failed {
            Total::default()
        } else {
            tally.amount_loaded.clone()
        };
        if self.transactions != expect_rows || self.transactions_amount != expect_amount {
            broken.push(format!(
                "transactions holds {} rows / {} for the file, expected {} / {}",
                self.transactions,
                self.transactions_amount.to_text(scale),
                expect_rows,
                expect_amount.to_text(scale)
            ));
        }
        let expect_duplicates = if failed { 0 } else { tally.rows_duplicate };
        if self.duplicates != expect_duplicates {
            broken.push(format!(
                "duplicate_rows holds {} rows for the file, expected {expect_duplicates}",
                self.duplicates
            ));
        }
        if self.rejected != tally.rows_rejected || self.rejected_amount != tally.amount_rejected {
            broken.push(format!(
                "rejected_rows holds {} rows / {}, expected {} / {}",
                self.rejected,
                self.rejected_amount.to_text(scale),
                tally.rows_rejected,
                tally.amount_rejected.to_text(scale)
            ));
        }
        let r = &self.recorded;
        if r.rows_read != tally.rows_read
            || r.rows_loaded != expect_rows
            || r.rows_rejected != tally.rows_rejected
            || r.rows_duplicate != tally.rows_duplicate
            || r.amount_read != tally.amount_read
            || r.amount_loaded != expect_amount
            || r.amount_rejected != tally.amount_rejected
            || r.amount_duplicate != tally.amount_duplicate
        {
            broken.push("the files catalog row disagrees with the load".into());
        }
        let want_status = if failed {
            FileStatus::Failed
        } else {
            FileStatus::Loaded
        };
        if self.status != Some(want_status) {
            broken.push(format!("catalog status is {:?}", self.status));
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(broken.join("; "))
        }
    }
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
    /// Sum of every amount that parsed (exact decimal).
    pub amount_read: Option<String>,
    /// Amount loaded (exact decimal).
    pub amount_loaded: Option<String>,
    /// Sum over rejected rows (exact decimal).
    pub amount_rejected: Option<String>,
    /// Sum over identical duplicate rows (exact decimal).
    pub amount_duplicate: Option<String>,
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

/// Re-wraps one data key during [`Warehouse::rotate_master_key`]: given the file's
/// content digest and its wrapping under the old key, the wrapping under the new one.
pub type RewrapFn<'a> = dyn FnMut(&str, &crate::crypt::Sealed) -> Result<crate::crypt::Sealed, crate::crypt::KeyError>
    + 'a;

/// A file claimed but not finished (status `landing`).
#[derive(Debug, Clone, Serialize)]
pub struct Unfinished {
    /// Catalog id.
    pub file_id: i64,
    /// Name as received.
    pub name: String,
    /// Where its raw object goes (it may not be there).
    pub lake_key: String,
    /// Why its claim stopped, when recorded (a source that changed while being read);
    /// `None`: being processed now, or left by a run that died.
    pub reason: Option<String>,
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
    /// Raw text (lossy UTF-8 for `invalid_encoding` rows); empty when the role may not
    /// read it (see [`Warehouse::can_read_raw`]).
    pub raw: String,
}

/// Which catalog rows [`Warehouse::files_matching`] reads (every field optional; the
/// default selects every file).
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    /// Only this file.
    pub only: Option<i64>,
    /// Only files in this status (`landing`, `loaded`, `failed`).
    pub status: Option<String>,
    /// Only files after this id in the listing's order (keyset paging).
    pub after: Option<i64>,
    /// At most this many files (`None`: all).
    pub limit: Option<u64>,
    /// Newest (highest id) first instead of oldest first.
    pub newest_first: bool,
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
    /// Files claimed but not finished, with why their claim stopped.
    pub unfinished: Vec<Unfinished>,
    /// Quarter versions written by `bankpipe export`, by quarter then time.
    pub exports: Vec<ExportEntry>,
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

/// What kind of failure a warehouse error is: decides whether it is retried and which
/// exit status it gives (issue #9: a wrong password retried as if transient can lock
/// the account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A setting, credential or privilege is wrong: never retried (exit status 2).
    Setup,
    /// The network or the server is unavailable for now: retried with backoff (exit
    /// status 3 once the retries run out).
    Transient,
    /// Anything else the warehouse failed at: not retried (exit status 3).
    Other,
}

impl WarehouseError {
    /// The kind of failure (see [`Fault`]).
    pub fn fault(&self) -> Fault {
        match self {
            WarehouseError::Setup { .. }
            | WarehouseError::NoWarehouse { .. }
            | WarehouseError::SchemaBehind { .. }
            | WarehouseError::SchemaTooNew { .. }
            | WarehouseError::Migration { .. }
            | WarehouseError::WrongMasterKey { .. }
            | WarehouseError::UnsupportedUrl(_) => Fault::Setup,
            WarehouseError::Pg { source, .. } => postgres::fault(source),
            WarehouseError::Sql { source, .. } => sqlite::fault(source),
            WarehouseError::Unreachable { reason, .. } => {
                let r = reason.to_ascii_lowercase();
                let transient = [
                    "connection refused",
                    "connection reset",
                    "too many",
                    "shutting down",
                    "starting up",
                    "timed out",
                    "error connecting",
                    "error communicating",
                    "database is locked",
                ]
                .iter()
                .any(|s| r.contains(s));
                if transient {
                    Fault::Transient
                } else {
                    Fault::Other
                }
            }
            WarehouseError::NotClaimed { .. }
            | WarehouseError::Rewrap { .. }
            | WarehouseError::ControlTotals(_)
            | WarehouseError::Source(_)
            | WarehouseError::Aborted(_) => Fault::Other,
        }
    }

    /// Whether the warehouse answered but another transaction holds the lock it needs
    /// (SQLite busy or locked): it is up, only busy.
    pub fn is_busy(&self) -> bool {
        matches!(self, WarehouseError::Sql { source, .. }
        if matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ))
    }

    /// Whether retrying after a reconnect may succeed (connection lost, server
    /// restarting, serialization failure, too many connections).
    pub fn is_transient(&self) -> bool {
        self.fault() == Fault::Transient
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

/// How a command opens the warehouse. Only the commands that write create one (issue
/// #9): `status` against a mistyped URL must say so, not leave an empty warehouse there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Create the warehouse when the URL points at nothing (SQLite: the file and its
    /// folder; PostgreSQL: the schema, in an existing database).
    Create,
    /// The warehouse must exist: [`WarehouseError::NoWarehouse`] otherwise.
    Existing,
}

/// One schema migration, as `migrate` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MigrationInfo {
    /// Version (the `NNNN` of `sql/<backend>/NNNN_name.sql`).
    pub version: i64,
    /// Name.
    pub name: &'static str,
}

impl std::fmt::Display for MigrationInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04} {}", self.version, self.name)
    }
}

/// The migrations of `known` not in `done`, after refusing a schema newer than them.
fn pending_of(known: &[(i64, &'static str, &str)], done: &[i64]) -> Result<Vec<MigrationInfo>> {
    let newest = known.last().map_or(0, |m| m.0);
    if let Some(&found) = done.iter().max().filter(|f| **f > newest) {
        return Err(WarehouseError::SchemaTooNew {
            found,
            known: newest,
        });
    }
    Ok(known
        .iter()
        .filter(|m| !done.contains(&m.0))
        .map(|&(version, name, _)| MigrationInfo { version, name })
        .collect())
}

impl Warehouse {
    /// Opens the warehouse named by `url`, creating it when missing, and applies
    /// pending migrations: what `run` and `demo` do.
    ///
    /// # Errors
    /// [`WarehouseError::Unreachable`] when it cannot be reached,
    /// [`WarehouseError::Setup`] when it refuses (credentials, privileges),
    /// [`WarehouseError::UnsupportedUrl`] for an unknown scheme, migration failures.
    pub fn open(url: &str) -> Result<Warehouse> {
        let mut w = Warehouse::connect(url, Access::Create)?;
        w.migrate()?;
        Ok(w)
    }

    /// Opens an existing warehouse without changing its schema, and checks that the
    /// schema is the one this binary knows: what the read-only commands do.
    ///
    /// # Errors
    /// [`WarehouseError::NoWarehouse`] when the URL points at nothing bankpipe made,
    /// [`WarehouseError::SchemaBehind`] / [`WarehouseError::SchemaTooNew`], and the
    /// errors of [`Warehouse::open`].
    pub fn open_read_only(url: &str) -> Result<Warehouse> {
        let mut w = Warehouse::connect(url, Access::Existing)?;
        w.require_current()?;
        Ok(w)
    }

    /// Opens the warehouse named by `url` without applying migrations.
    ///
    /// # Errors
    /// As [`Warehouse::open`]; with [`Access::Existing`],
    /// [`WarehouseError::NoWarehouse`] when there is none.
    pub fn connect(url: &str, access: Access) -> Result<Warehouse> {
        if let Some(path) = sqlite::path_from_url(url) {
            return Ok(Warehouse::Sqlite(sqlite::SqliteWarehouse::connect(
                &path, access,
            )?));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Warehouse::Postgres(Box::new(
                postgres::PgWarehouse::connect(url)?,
            )));
        }
        Err(WarehouseError::UnsupportedUrl(crate::redact::redact_url(
            url,
        )))
    }

    /// The URL of this warehouse, without secrets.
    pub fn display_url(&self) -> String {
        match self {
            Warehouse::Sqlite(w) => w.display_url(),
            Warehouse::Postgres(w) => w.display_url().to_owned(),
        }
    }

    /// Applies pending migrations (each once, all-or-nothing; safe when several
    /// processes start at once) and returns those applied, oldest first.
    ///
    /// # Errors
    /// [`WarehouseError::Migration`], [`WarehouseError::SchemaTooNew`], SQL failures.
    pub fn migrate(&mut self) -> Result<Vec<MigrationInfo>> {
        match self {
            Warehouse::Sqlite(w) => w.migrate(),
            Warehouse::Postgres(w) => w.migrate(),
        }
    }

    /// The migrations [`Warehouse::migrate`] would apply, without applying them.
    ///
    /// # Errors
    /// [`WarehouseError::SchemaTooNew`], SQL failures.
    pub fn pending(&mut self) -> Result<Vec<MigrationInfo>> {
        let done = self.applied()?.unwrap_or_default();
        pending_of(self.known(), &done)
    }

    /// The migrations this binary knows for this backend.
    fn known(&self) -> &'static [(i64, &'static str, &'static str)] {
        match self {
            Warehouse::Sqlite(_) => sqlite::MIGRATIONS,
            Warehouse::Postgres(_) => postgres::MIGRATIONS,
        }
    }

    /// Refuses a warehouse without the bankpipe schema, or whose schema is behind or
    /// ahead of this binary.
    ///
    /// # Errors
    /// [`WarehouseError::NoWarehouse`], [`WarehouseError::SchemaBehind`],
    /// [`WarehouseError::SchemaTooNew`], SQL failures.
    pub fn require_current(&mut self) -> Result<()> {
        let Some(done) = self.applied()? else {
            return Err(WarehouseError::NoWarehouse {
                url: self.display_url(),
                reason: "it holds no bankpipe schema; `bankpipe migrate` (or `bankpipe run`) \
                         creates it"
                    .into(),
            });
        };
        let pending = pending_of(self.known(), &done)?;
        if pending.is_empty() {
            return Ok(());
        }
        Err(WarehouseError::SchemaBehind {
            found: done.iter().copied().max().unwrap_or(0),
            known: self.known().last().map_or(0, |m| m.0),
            pending: pending
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The highest migration applied (0 for none).
    ///
    /// # Errors
    /// SQL failures.
    pub fn schema_version(&mut self) -> Result<i64> {
        Ok(self
            .applied()?
            .unwrap_or_default()
            .into_iter()
            .max()
            .unwrap_or(0))
    }

    /// Versions recorded in `schema_migrations`; `None` when that table does not exist.
    fn applied(&mut self) -> Result<Option<Vec<i64>>> {
        match self {
            Warehouse::Sqlite(w) => w.applied(),
            Warehouse::Postgres(w) => w.applied(),
        }
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

    /// Whether nobody holds the claim of `file_id` any more (its session ended), without
    /// taking it: [`Warehouse::claim`] then takes it over. Always `true` on SQLite, where
    /// one run at a time holds claims.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn claim_free(&mut self, file_id: i64) -> Result<bool> {
        match self {
            Warehouse::Sqlite(_) => Ok(true),
            Warehouse::Postgres(w) => w.claim_free(file_id),
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
            Warehouse::Sqlite(w) => Err(WarehouseError::Setup {
                url: w.display_url(),
                reason: "roles exist only in PostgreSQL; SQLite access is controlled by file \
                         permissions"
                    .into(),
            }),
            Warehouse::Postgres(w) => w.create_roles(),
        }
    }

    /// Records why a claim stopped without finishing (its source changed while being
    /// read): it stays `landing`, so the same content arriving again still loads, and
    /// `files`, `status` and `verify` show the reason. Resuming the claim clears it.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn stop_claim(&mut self, file_id: i64, reason: &str) -> Result<()> {
        match self {
            Warehouse::Sqlite(w) => w.stop_claim(file_id, reason),
            Warehouse::Postgres(w) => w.stop_claim(file_id, reason),
        }
    }

    /// Files claimed but not finished (`landing`), with the reason a claim stopped when
    /// one was recorded.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn unfinished(&mut self) -> Result<Vec<Unfinished>> {
        match self {
            Warehouse::Sqlite(w) => w.unfinished(),
            Warehouse::Postgres(w) => w.unfinished(),
        }
    }

    /// Withdraws the stopped claims (see [`Warehouse::stop_claim`]) of earlier versions
    /// of the inbox file `name`, once a version of it was finished as file `keep`: their
    /// content was a snapshot of a file being written, which will not come again. Only
    /// claims nobody holds are deleted (nothing was ever committed under them); returns
    /// them, so their raw objects can be removed.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn withdraw_stopped(&mut self, name: &str, keep: i64) -> Result<Vec<Unfinished>> {
        match self {
            Warehouse::Sqlite(w) => w.withdraw_stopped(name, keep),
            Warehouse::Postgres(w) => w.withdraw_stopped(name, keep),
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
    /// An encrypted landing is recorded only under the catalog's current master key
    /// ([`Warehouse::master_key_id`]; the first one sets it when empty), checked in the
    /// same transaction with the key row locked against a concurrent rotation: a worker
    /// that started before a rotation committed cannot land a file under the retired key.
    ///
    /// # Errors
    /// [`WarehouseError::NotClaimed`] when the file is no longer `landing` (another
    /// worker finished it): nothing must be landed then.
    /// [`WarehouseError::WrongMasterKey`] when `sealed` names another key id than the
    /// current one (nothing recorded). SQL failures.
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

    /// The catalog's current master key id: the only one new objects may be encrypted
    /// under (`None`: no encrypted landing or rotation yet).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn master_key_id(&mut self) -> Result<Option<String>> {
        match self {
            Warehouse::Sqlite(w) => w.master_key_id(),
            Warehouse::Postgres(w) => w.master_key_id(),
        }
    }

    /// `rotate-key` in one transaction: with the current-key row locked (so no landing
    /// can be recorded meanwhile), every data key wrapped by `from` is re-wrapped by
    /// `rewrap`, and `to` becomes the current key id. Returns how many were re-wrapped.
    /// Allowed when the current id is `from`, `to` (a rerun) or not set yet.
    ///
    /// # Errors
    /// [`WarehouseError::WrongMasterKey`] when the current id is another key;
    /// [`WarehouseError::Rewrap`] when a wrapping does not open. Nothing changes then,
    /// nor on SQL failure.
    pub fn rotate_master_key(
        &mut self,
        from: &str,
        to: &str,
        rewrap: &mut RewrapFn<'_>,
    ) -> Result<usize> {
        match self {
            Warehouse::Sqlite(w) => w.rotate_master_key(from, to, rewrap),
            Warehouse::Postgres(w) => w.rotate_master_key(from, to, rewrap),
        }
    }

    /// The catalog, in file id order (oldest first).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn files(&mut self) -> Result<Vec<FileEntry>> {
        self.files_matching(&FileFilter::default())
    }

    /// The catalog rows `filter` selects, in file id order (descending with
    /// [`FileFilter::newest_first`]).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn files_matching(&mut self, filter: &FileFilter) -> Result<Vec<FileEntry>> {
        match self {
            Warehouse::Sqlite(w) => w.files(filter),
            Warehouse::Postgres(w) => w.files(filter),
        }
    }

    /// One catalog row, by id.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn file(&mut self, file_id: i64) -> Result<Option<FileEntry>> {
        let rows = self.files_matching(&FileFilter {
            only: Some(file_id),
            ..FileFilter::default()
        })?;
        Ok(rows.into_iter().next())
    }

    /// Quarantined rows; with an empty raw text when the role may not read it
    /// ([`Warehouse::can_read_raw`]).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn rejects(&mut self, filter: &RejectFilter) -> Result<Vec<RejectEntry>> {
        match self {
            Warehouse::Sqlite(w) => w.rejects(filter),
            Warehouse::Postgres(w) => w.rejects(filter),
        }
    }

    /// Whether this session may read the raw text of rejected rows: not as PostgreSQL
    /// `bankpipe_reader`, since it may hold personal data.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn can_read_raw(&mut self) -> Result<bool> {
        match self {
            Warehouse::Sqlite(_) => Ok(true),
            Warehouse::Postgres(w) => w.can_read_raw(),
        }
    }

    /// Totals over the whole catalog for monitoring (`serve`'s `/metrics`), read in one
    /// snapshot from per-file and per-run rows only: never from `rejected_rows` or
    /// `transactions` (see [`figures`]).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn catalog_figures(&mut self) -> Result<figures::CatalogFigures> {
        match self {
            Warehouse::Sqlite(w) => w.catalog_figures(),
            Warehouse::Postgres(w) => w.catalog_figures(),
        }
    }

    /// Warehouse summary for `status`.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn summary(&mut self) -> Result<Summary> {
        let mut s = match self {
            Warehouse::Sqlite(w) => w.summary()?,
            Warehouse::Postgres(w) => w.summary()?,
        };
        s.unfinished = self.unfinished()?;
        s.exports = self.exports()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Rule;

    fn tally(rejects: &[(Rule, u64)]) -> Tally {
        let rejected: u64 = rejects.iter().map(|(_, n)| n).sum();
        Tally {
            rows_read: rejected + 2,
            rows_rejected: rejected,
            rows_loaded: 2,
            rejects: rejects.iter().cloned().collect(),
            ..Tally::default()
        }
    }

    #[test]
    fn judge_names_every_rule_of_four() {
        let mut t = tally(&[
            (Rule::MissingCustomerId, 1),
            (Rule::InvalidTransactionDate, 1),
            (Rule::InvalidTransactionTime, 1),
            (Rule::AmountAboveMax, 1),
        ]);
        t.judge(0.1);
        let msg = t.failure.unwrap();
        assert!(msg.contains("(4 of 6 rows; "), "{msg}");
        for r in [
            "missing_customer_id 1",
            "invalid_transaction_date 1",
            "invalid_transaction_time 1",
            "amount_above_max 1",
        ] {
            assert!(msg.contains(r), "{r} missing from {msg}");
        }
    }

    #[test]
    fn judge_counts_the_rules_it_does_not_list() {
        let mut t = tally(&[
            (Rule::MalformedRow, 7),
            (Rule::MissingCustomerId, 6),
            (Rule::InvalidTransactionDate, 5),
            (Rule::InvalidTransactionTime, 4),
            (Rule::AmountAboveMax, 3),
            (Rule::InvalidCurrency, 2),
            (Rule::NegativeAmount, 1),
        ]);
        t.judge(0.1);
        let msg = t.failure.unwrap();
        assert!(msg.contains("malformed_row 7, "), "{msg}");
        assert!(
            msg.ends_with("amount_above_max 3, and 3 more in 2 rules)"),
            "{msg}"
        );
    }
}
