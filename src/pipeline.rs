//! One batch run, start to end: the table of contents of `bankpipe run`.
//!
//! For each inbox file, in name order: fingerprint (SHA-256) → skip if the content was
//! already processed → detect the profile → claim it in the catalog → land the raw bytes
//! in the lake while the rows are validated and loaded in one warehouse transaction →
//! commit only once the raw copy is complete → read the warehouse back and check the
//! control totals. A bad row never stops a file, a bad file never stops the run; only an
//! unreachable warehouse or lake does (exit status 3), and what was committed stays
//! consistent: the next run resumes any file left half-way.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use crate::config::Config;
use crate::lake::{self, Lake, LakeError};
use crate::progress::Progress;
use crate::report::{FileReport, Outcome, RunReport};
use crate::scan;
use crate::source::{self, Compression, Format};
use crate::warehouse::{Claim, FileStatus, LoadPlan, NewFile, Warehouse, WarehouseError};

/// Why a run stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The inbox cannot be listed.
    #[error("inbox {path}: {reason}")]
    Inbox {
        /// Inbox path.
        path: PathBuf,
        /// Cause.
        reason: String,
    },
    /// The warehouse failed.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// Another process holds the run lock and waiting for it failed.
    #[error("cannot take the run lock {path}: {reason}")]
    Lock {
        /// Lock file.
        path: PathBuf,
        /// Cause.
        reason: String,
    },
    /// The run was asked to stop ([`run_until`]) and did, between two files.
    #[error(
        "interrupted: asked to stop (serve is shutting down); {left} files of the inbox are left \
         for the next run"
    )]
    Interrupted {
        /// Files not started.
        left: usize,
    },
}

/// A run that stopped part-way (exit status 2 or 3): why, and what it did before.
#[derive(Debug)]
pub struct Stopped {
    /// The files processed before the run stopped, with `status` `failed` and the
    /// run-level `error`; `None` when it stopped before it started (no run id yet).
    pub report: Option<Box<RunReport>>,
    /// Why it stopped.
    pub error: RunError,
}

impl From<RunError> for Stopped {
    fn from(error: RunError) -> Stopped {
        Stopped {
            report: None,
            error,
        }
    }
}

/// Everything a run needs, opened once.
#[derive(Debug)]
pub struct Context {
    /// Resolved configuration.
    pub config: Config,
    /// The warehouse.
    pub warehouse: Warehouse,
    /// The raw zone.
    pub lake: Lake,
}

/// A file of the inbox worth processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxFile {
    /// Its path (folder inbox) or key below the prefix (object-store inbox).
    pub path: PathBuf,
    /// Last modification, when known.
    pub modified: Option<SystemTime>,
}

/// Whether an inbox entry's name is a file to process: not hidden, not a partial upload
/// (`*.tmp`, `*.part`, `*.partial`, `*.crdownload`).
fn worth_processing(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.is_empty()
        && !name.starts_with('.')
        && ![".tmp", ".part", ".partial", ".crdownload"]
            .iter()
            .any(|s| lower.ends_with(s))
}

/// Files of the inbox worth processing, sorted by name: regular files directly in it
/// (sub-folders are not searched, like an object-store inbox), not hidden, not partial
/// uploads.
///
/// # Errors
/// When the folder cannot be read.
pub fn inbox_files(inbox: &Path) -> std::io::Result<Vec<InboxFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(inbox)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !worth_processing(&name) {
            continue;
        }
        if entry.file_type()?.is_file() || entry.path().is_file() {
            let path = entry.path();
            // Through a symlink: the age of what it points to.
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            files.push(InboxFile { path, modified });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Splits inbox files into those old enough to process and reports for the others
/// (`too_recent`, with the reason). A file whose time is unknown or in the future
/// (clock skew with an object store) counts as too recent only when a minimum age is
/// set.
fn old_enough(
    files: Vec<InboxFile>,
    min_age: Duration,
    now: SystemTime,
) -> (Vec<PathBuf>, Vec<FileReport>) {
    let mut ready = Vec::with_capacity(files.len());
    let mut skipped = Vec::new();
    for f in files {
        if min_age.is_zero() {
            ready.push(f.path);
            continue;
        }
        let age = f.modified.and_then(|m| now.duration_since(m).ok());
        match age {
            Some(age) if age >= min_age => ready.push(f.path),
            _ => {
                let name = display_name(&f.path);
                let age_text = age.map_or_else(
                    || "at an unknown or future time".to_owned(),
                    |a| format!("{}s ago", a.as_secs()),
                );
                info!(file = %name, "Modified too recently; left for a later run.");
                let mut r = FileReport::new(&name, Outcome::TooRecent);
                r.reason = Some(format!(
                    "modified {age_text}; min_file_age is {}s",
                    min_age.as_secs()
                ));
                skipped.push(r);
            }
        }
    }
    (ready, skipped)
}

/// Runs the pipeline over every file of the inbox.
///
/// # Errors
/// [`Stopped`] when the run cannot go on, with the report of what it did before (when it
/// had started); file-level problems are in the report.
pub fn run(ctx: &mut Context, progress: &mut dyn Progress) -> Result<RunReport, Stopped> {
    run_until(ctx, progress, &AtomicBool::new(false))
}

/// [`run`], stopping early once `stop` is set: checked before each file, so the files
/// in progress finish (or roll back on their own failure) and no other starts. What
/// the run did not start stays in the inbox for the next run; the run is recorded
/// `interrupted`. This is how `serve` stops a scheduled ingest on SIGTERM.
///
/// # Errors
/// As [`run`]; [`RunError::Interrupted`] (with the report of the files done) when
/// `stop` ended it before every file was processed.
pub fn run_until(
    ctx: &mut Context,
    progress: &mut dyn Progress,
    stop: &AtomicBool,
) -> Result<RunReport, Stopped> {
    run_as(ctx, progress, stop, new_run_id())
}

/// A new run id: a UUIDv7, so run ids sort in the order runs started.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// [`run_until`] under a run id the caller chose ([`new_run_id`]), so that it can name
/// the run before it starts (`serve`'s `POST /api/runs` answers with it).
///
/// # Errors
/// As [`run_until`].
pub fn run_as(
    ctx: &mut Context,
    progress: &mut dyn Progress,
    stop: &AtomicBool,
    run_id: String,
) -> Result<RunReport, Stopped> {
    let inbox = ctx.config.inbox.clone();
    let _lock = take_run_lock(&ctx.config)?;
    let remote = remote_inbox(ctx, &inbox)?;
    let listed = match &remote {
        Some((_, objects, _)) => objects.clone(),
        None => inbox_files(&inbox).map_err(|e| RunError::Inbox {
            path: inbox.clone(),
            reason: e.to_string(),
        })?,
    };
    let (files, too_recent) = old_enough(listed, ctx.config.min_file_age, SystemTime::now());
    let started_at = crate::clock::now_rfc3339();
    let clock = Instant::now();
    ctx.warehouse
        .start_run(&run_id, &started_at)
        .map_err(RunError::from)?;
    info!(run_id, files = files.len(), inbox = %inbox.display(), "Run started.");
    let parallel = effective_parallel(&ctx.config);
    let (mut reports, fatal) = if parallel > 1 && files.len() > 1 {
        run_parallel(
            ctx,
            &run_id,
            &files,
            remote.as_ref(),
            progress,
            parallel,
            stop,
        )
    } else {
        let mut reports = Vec::with_capacity(files.len());
        let mut fatal = None;
        let spool = remote.as_ref().map(|(lake, _, spool)| (lake, spool.path()));
        for path in &files {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let mut known = Known::default();
            match process_entry(ctx, &run_id, path, spool, progress, &mut known) {
                Ok(report) => reports.push(report),
                Err(e) => {
                    reports.push(known.unfinished(&display_name(path), &e));
                    fatal = Some(e);
                    break;
                }
            }
        }
        (reports, fatal)
    };
    // The spool folder (if any) is removed with `remote`, when the run returns.
    let left = files.len().saturating_sub(reports.len());
    let fatal = match fatal {
        None if left > 0 => {
            warn!(
                run_id,
                left, "Run stopped on request; the files left wait for the next run."
            );
            Some(RunError::Interrupted { left })
        }
        other => other,
    };
    reports.extend(too_recent);
    let mut report = RunReport {
        run_id: run_id.clone(),
        status: String::new(),
        started_at,
        finished_at: crate::clock::now_rfc3339(),
        elapsed_s: clock.elapsed().as_secs_f64(),
        files: reports,
        error: fatal.as_ref().map(ToString::to_string),
    };
    report.status = match &fatal {
        Some(RunError::Interrupted { .. }) => "interrupted".into(),
        Some(_) => "failed".into(),
        None if report.has_failures() => "failed".into(),
        None => "ok".into(),
    };
    let counts = serde_json::json!({
        "files": report.files.len(),
        "loaded": report.files.iter().filter(|f| f.status == Outcome::Loaded).count(),
        "duplicate_file": report.files.iter().filter(|f| f.status == Outcome::DuplicateFile).count(),
        "claimed_elsewhere": report.files.iter().filter(|f| f.status == Outcome::ClaimedElsewhere).count(),
        "failed": report.files.iter().filter(|f| f.status == Outcome::Failed).count(),
        "too_recent": report.files.iter().filter(|f| f.status == Outcome::TooRecent).count(),
        "rows_loaded": report.files.iter().map(|f| f.rows_loaded).sum::<u64>(),
        "rows_rejected": report.files.iter().map(|f| f.rows_rejected).sum::<u64>(),
    });
    let finish = ctx.warehouse.finish_run(
        &run_id,
        &report.finished_at,
        &report.status,
        &counts.to_string(),
    );
    if let Some(error) = fatal {
        return Err(Stopped {
            report: Some(Box::new(report)),
            error,
        });
    }
    if let Err(e) = finish {
        let error = RunError::from(e);
        report.status = "failed".into();
        report.error = Some(error.to_string());
        return Err(Stopped {
            report: Some(Box::new(report)),
            error,
        });
    }
    info!(run_id, status = %report.status, elapsed_s = report.elapsed_s, "Run finished.");
    Ok(report)
}

/// Files processed at once: the configured value on PostgreSQL, 1 on SQLite (one
/// writer: more would only queue on its lock).
fn effective_parallel(config: &Config) -> usize {
    if config.parallel > 1
        && crate::warehouse::sqlite::path_from_url(&config.warehouse_url).is_some()
    {
        warn!(
            parallel = config.parallel,
            "SQLite has a single writer: files are processed one at a time."
        );
        return 1;
    }
    config.parallel
}

/// One inbox entry: spooled first when the inbox is an object store (constant memory;
/// the object itself is never modified or deleted), then processed with retries.
fn process_entry(
    ctx: &mut Context,
    run_id: &str,
    path: &Path,
    remote: Option<(&Lake, &Path)>,
    progress: &mut dyn Progress,
    known: &mut Known,
) -> Result<FileReport, RunError> {
    let spooled = match remote {
        Some((lake, spool)) => {
            let key = path.to_string_lossy().into_owned();
            let local = spool.join(display_name(path));
            if let Err(e) = lake.download(&key, &local) {
                let mut r = FileReport::new(&key, Outcome::Failed);
                r.error = Some(format!("cannot read inbox object: {e}"));
                return Ok(r);
            }
            Some(local)
        }
        None => None,
    };
    let result = process_with_retries(
        ctx,
        run_id,
        spooled.as_deref().unwrap_or(path),
        progress,
        known,
    );
    if let Some(local) = &spooled {
        let _ = std::fs::remove_file(local);
    }
    result
}

/// Several files at once, each worker on a session checked out of a bounded pool for
/// the whole file (claim, load, read-back). Reports keep inbox order. A fatal error
/// (warehouse or lake unreachable) stops workers from starting new files.
#[allow(clippy::type_complexity)]
fn run_parallel(
    ctx: &Context,
    run_id: &str,
    files: &[PathBuf],
    remote: Option<&(Lake, Vec<InboxFile>, crate::workdir::WorkDir)>,
    progress: &dyn Progress,
    parallel: usize,
    stop: &AtomicBool,
) -> (Vec<FileReport>, Option<RunError>) {
    let pool = crate::warehouse::pool::Pool::new(&ctx.config.warehouse_url, parallel);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<FileReport>>> = Mutex::new(vec![None; files.len()]);
    let fatal: Mutex<Option<RunError>> = Mutex::new(None);
    info!(parallel, "Processing files in parallel.");
    let (config, lake) = (&ctx.config, &ctx.lake);
    std::thread::scope(|scope| {
        for worker in 0..parallel.min(files.len()) {
            let mut progress = progress.fork();
            let (pool, next, slots, fatal) = (&pool, &next, &slots, &fatal);
            scope.spawn(move || {
                // Each worker spools into its own folder: two objects may share a name.
                let spool =
                    remote.map(|(lake, _, spool)| (lake, spool.path().join(format!("w{worker}"))));
                if let Some((_, dir)) = &spool {
                    let _ = std::fs::create_dir_all(dir);
                }
                loop {
                    if fatal.lock().map(|f| f.is_some()).unwrap_or(true)
                        || stop.load(Ordering::Relaxed)
                    {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(i) else { return };
                    let mut known = Known::default();
                    let result = pool
                        .checkout()
                        .map_err(RunError::from)
                        .and_then(|warehouse| {
                            let mut wctx = Context {
                                config: config.clone(),
                                warehouse,
                                lake: lake.clone(),
                            };
                            let result = process_entry(
                                &mut wctx,
                                run_id,
                                path,
                                spool.as_ref().map(|(l, d)| (*l, d.as_path())),
                                progress.as_mut(),
                                &mut known,
                            );
                            // A session that saw an error may still hold a claim (a
                            // session lock): closing it gives every claim back.
                            pool.checkin(wctx.warehouse, result.is_err());
                            result
                        });
                    let report = match result {
                        Ok(report) => report,
                        Err(e) => {
                            let r = known.unfinished(&display_name(path), &e);
                            if let Ok(mut f) = fatal.lock() {
                                f.get_or_insert(e);
                            }
                            r
                        }
                    };
                    if let Ok(mut slots) = slots.lock() {
                        slots[i] = Some(report);
                    }
                }
            });
        }
    });
    let reports = slots
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect();
    (
        reports,
        fatal.into_inner().unwrap_or_else(|p| p.into_inner()),
    )
}

/// Prefix of an object-store inbox's spool folders, in `DATA_DIR/.spool`.
const SPOOL_PREFIX: &str = "run-";

/// For an `s3://` (or other object-store) inbox: the store, its objects worth
/// processing (same rules as a folder: directly under the prefix, same name filters;
/// folder markers ignored), and a local spool folder.
#[allow(clippy::type_complexity)]
fn remote_inbox(
    ctx: &Context,
    inbox: &Path,
) -> Result<Option<(Lake, Vec<InboxFile>, crate::workdir::WorkDir)>, RunError> {
    let url = inbox.to_string_lossy();
    if !url.contains("://") {
        return Ok(None);
    }
    let lake = Lake::open_inbox(&url, ctx.lake.runtime())?;
    let objects: Vec<InboxFile> = lake
        .list_inbox()?
        .into_iter()
        .filter(|o| worth_processing(&o.key))
        .map(|o| InboxFile {
            path: PathBuf::from(o.key),
            modified: Some(o.modified),
        })
        .collect();
    // One folder per process: runs sharing a data folder never touch each other's files.
    // Locked for the run's life, so that the next run removes it if this one is killed.
    let parent = ctx.config.data_dir.join(".spool");
    // Spools of runs that were killed first (never one a running process holds).
    crate::workdir::sweep(&parent, SPOOL_PREFIX);
    let spool =
        crate::workdir::WorkDir::create(&parent, SPOOL_PREFIX).map_err(|e| RunError::Inbox {
            path: parent.clone(),
            reason: e.to_string(),
        })?;
    Ok(Some((lake, objects, spool)))
}

/// Transient warehouse failures (connection lost, server restarting, serialization
/// failure, too many connections) are retried with exponential backoff and jitter; a
/// file's load is one transaction, so a retry starts the file over cleanly.
fn process_with_retries(
    ctx: &mut Context,
    run_id: &str,
    path: &Path,
    progress: &mut dyn Progress,
    known: &mut Known,
) -> Result<FileReport, RunError> {
    const ATTEMPTS: u32 = 6;
    let mut attempt = 0;
    loop {
        attempt += 1;
        // The file this entry claimed in an earlier attempt, if any.
        let earlier_claim = known.claimed;
        let result = process_file(ctx, run_id, path, progress, known);
        match result {
            Err(RunError::Warehouse(e)) if e.is_transient() && attempt < ATTEMPTS => {
                let delay = crate::retry::backoff(attempt);
                warn!(file = %display_name(path), attempt, error = %e, delay_ms = delay.as_millis() as u64, "Transient warehouse failure; retrying.");
                std::thread::sleep(delay);
                if let Err(e) = ctx.warehouse.reconnect() {
                    warn!(attempt, error = %e, "Reconnect failed; will retry.");
                }
            }
            Err(RunError::Warehouse(e)) if e.is_transient() => {
                return Err(unreachable_after(&ctx.config.warehouse_url, e, attempt).into());
            }
            other => {
                if let Ok(report) = &other
                    && let Some(id) = report.file_id.filter(|_| {
                        report.duplicate_of.is_none()
                            && !matches!(
                                report.status,
                                Outcome::DuplicateFile | Outcome::ClaimedElsewhere
                            )
                    })
                {
                    // Best effort: a dropped session releases its claims anyway.
                    let _ = ctx.warehouse.release(id);
                }
                if let (Some(own), Ok(report)) = (earlier_claim, &other)
                    && report.file_id == Some(own)
                    && (report.duplicate_of.is_some() || report.status == Outcome::DuplicateFile)
                {
                    let report = report.clone();
                    return Ok(match reconcile_retry(ctx, run_id, own, report.clone()) {
                        Ok(reconciled) => reconciled,
                        Err(e) => {
                            warn!(file = %report.name, error = %e, "Could not read back the outcome of an earlier attempt; reported as found.");
                            report
                        }
                    });
                }
                return other;
            }
        }
    }
}

/// The error a run stops with once a transient warehouse failure outlasted its retries:
/// it names the warehouse (password redacted) and says it is unreachable, with what was
/// being done and how many attempts were made.
fn unreachable_after(url: &str, e: WarehouseError, attempts: u32) -> WarehouseError {
    let reason = match e {
        WarehouseError::Unreachable { reason, .. } => reason,
        other => {
            let text = other.to_string();
            text.strip_prefix("warehouse ")
                .map_or_else(|| text.clone(), str::to_owned)
        }
    };
    WarehouseError::Unreachable {
        url: crate::redact::redact_url(url),
        reason: format!("{reason} (after {attempts} attempts)"),
    }
}

/// After a retry, the file this entry itself claimed in an earlier attempt may turn out
/// finished: that attempt's commit went through but its reply was lost with the
/// connection (an ambiguous commit). It is reported with the outcome the catalog
/// recorded (loaded, with counts checked against the warehouse, or failed with its
/// reason), not as a duplicate.
fn reconcile_retry(
    ctx: &mut Context,
    run_id: &str,
    own: i64,
    mut report: FileReport,
) -> Result<FileReport, RunError> {
    let Some(entry) = ctx
        .warehouse
        .files()?
        .into_iter()
        .find(|f| f.file_id == own && f.run_id.as_deref() == Some(run_id))
    else {
        return Ok(report);
    };
    let scale = entry
        .profile
        .as_deref()
        .and_then(|name| ctx.config.profiles.iter().find(|p| p.name == name))
        .map_or(2, |p| p.scale);
    let stored = ctx.warehouse.stored(own, scale)?;
    match stored.status {
        Some(FileStatus::Loaded) => {
            warn!(file = %report.name, file_id = own, "An earlier attempt's commit had gone through before the connection was lost; reported as loaded.");
            report.record_load(&stored.recorded, scale);
            if let Err(broken) =
                check_control_totals(&mut ctx.warehouse, own, scale, &stored.recorded)
            {
                report.error = Some(format!("control totals do not hold: {broken}"));
            }
        }
        Some(FileStatus::Failed) => {
            warn!(file = %report.name, file_id = own, "An earlier attempt had recorded this file as failed before the connection was lost.");
            report.set_tally(&stored.recorded, scale);
            report.status = Outcome::Failed;
            report.error = Some(entry.error.unwrap_or_else(|| "failed".into()));
        }
        _ => return Ok(report),
    }
    // Its own earlier attempt, not another file's content.
    report.duplicate_of = None;
    report.profile = entry.profile;
    report.lake_key = Some(entry.lake_key);
    Ok(report)
}

/// One writer per SQLite warehouse: a second `run` waits for the first. Also makes a
/// `landing` claim found at start certainly a leftover of a dead process.
/// Whether a run holds this SQLite warehouse's run lock now (another process, or
/// another run of this one: the lock is per open file). Always `false` on PostgreSQL,
/// where runs share the inbox through claims and need no lock, and when the lock
/// cannot be checked (the run itself then says why).
pub fn run_lock_held(config: &Config) -> bool {
    let Some(path) = run_lock_path(config) else {
        return false;
    };
    // Opened without creating: no lock file, no run ever took it.
    let Ok(file) = File::options().write(true).open(&path) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// `<database>.lock` next to a SQLite warehouse file.
fn run_lock_path(config: &Config) -> Option<PathBuf> {
    let db = crate::warehouse::sqlite::path_from_url(&config.warehouse_url)?;
    (db.as_os_str() != ":memory:").then(|| PathBuf::from(format!("{}.lock", db.display())))
}

fn take_run_lock(config: &Config) -> Result<Option<File>, RunError> {
    let Some(path) = run_lock_path(config) else {
        return Ok(None);
    };
    let fail = |e: std::io::Error| RunError::Lock {
        path: path.clone(),
        reason: e.to_string(),
    };
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(fail)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            warn!(lock = %path.display(), "Another bankpipe run is using this warehouse; waiting for it to finish.");
            file.lock().map_err(fail)?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(fail(e)),
    }
    Ok(Some(file))
}

fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The file an inbox entry stands for, as a path without symbolic links, when that file
/// is directly in the entry's own folder (the inbox, or the spool of an object-store
/// inbox); otherwise why it is not read. A symbolic link in the inbox may point at
/// another file of the inbox, but not elsewhere: whoever may drop files in the inbox
/// must not be able to make bankpipe read (and land in the lake, and quarantine as raw
/// text) any file its user can read, such as a key file or `/etc/shadow`.
///
/// # Errors
/// The reason, for the file's report.
fn resolve_in_folder(path: &Path) -> Result<PathBuf, String> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let folder = std::fs::canonicalize(if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    })
    .map_err(|e| format!("cannot read the folder of {}: {e}", path.display()))?;
    let target =
        std::fs::canonicalize(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if target.parent() == Some(folder.as_path()) {
        Ok(target)
    } else {
        Err(format!(
            "{} is a symbolic link to a file outside the inbox folder: not read (bankpipe \
             reads only files directly in the inbox, or links to them; copy the file in \
             instead)",
            display_name(path)
        ))
    }
}

/// Opens `path` for reading, refusing a symbolic link in its last component (`O_NOFOLLOW`):
/// a resolved inbox path swapped for a link after [`resolve_in_folder`] is not followed.
/// (Later opens of the same path are checked against this open's digest.)
///
/// # Errors
/// When the file cannot be opened, or is now a symbolic link.
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Reads the first bytes to tell compression and format.
///
/// # Errors
/// When the file cannot be read.
pub fn detect_kind(path: &Path) -> std::io::Result<(Format, Compression)> {
    let mut head = Vec::with_capacity(64 * 1024);
    File::open(path)?.take(64 * 1024).read_to_end(&mut head)?;
    let compression = Compression::sniff(&head);
    let name = display_name(path);
    let mut decoded = Vec::new();
    if let Ok(d) = source::decoder(std::io::Cursor::new(head.clone()), compression, u64::MAX) {
        // A prefix of a compressed file may not decode to the end; what did is enough.
        let _ = d.take(4096).read_to_end(&mut decoded);
    }
    Ok((source::sniff_format(&name, &decoded), compression))
}

/// Opens a file for scanning, counting raw bytes for progress; a compressed file stops
/// with an error past `max_decompressed_bytes` ([`source::decoder`]).
///
/// # Errors
/// When the file cannot be opened or the decoder set up.
pub fn open_decoded(
    path: &Path,
    compression: Compression,
    counter: Arc<AtomicU64>,
    max_decompressed_bytes: u64,
) -> std::io::Result<Box<dyn Read + Send>> {
    let file = File::open(path)?;
    let counted = source::Counting::new(BufReader::with_capacity(1 << 20, file), counter);
    source::decoder(counted, compression, max_decompressed_bytes)
}

/// As [`open_decoded`], also leaving the digest of the raw bytes read in `slot`.
fn open_digested(
    path: &Path,
    compression: Compression,
    counter: Arc<AtomicU64>,
    slot: source::DigestSlot,
    max_decompressed_bytes: u64,
) -> std::io::Result<Box<dyn Read + Send>> {
    if let Ok(mut s) = slot.lock() {
        *s = None;
    }
    let file = File::open(path)?;
    let counted =
        source::Counting::new(BufReader::with_capacity(1 << 20, file), counter).with_digest(slot);
    source::decoder(counted, compression, max_decompressed_bytes)
}

/// What processing an inbox entry has found out so far, kept across its retries: the
/// file this entry claimed (its own catalog id, not an earlier file's), and what an
/// entry that stops the run is reported with ([`Known::unfinished`]).
#[derive(Debug, Default)]
struct Known {
    /// Catalog id of this entry's own claim.
    claimed: Option<i64>,
    /// Content digest and size, from the fingerprint.
    sha256: Option<String>,
    bytes: u64,
    /// Detected profile and its amount scale.
    profile: Option<String>,
    scale: Option<u8>,
    /// Where its raw copy goes.
    lake_key: Option<String>,
}

impl Known {
    /// The report of the entry a run stopped on: `failed` with the run-level error, what
    /// was known of the file (digest, size, profile, catalog id, lake key), and zero
    /// counts and amounts at its scale ([`crate::report::DEFAULT_SCALE`] when its
    /// profile was not known yet).
    fn unfinished(&self, name: &str, error: &RunError) -> FileReport {
        let mut r = FileReport::new(name, Outcome::Failed);
        r.error = Some(error.to_string());
        r.sha256.clone_from(&self.sha256);
        r.bytes = self.bytes;
        r.profile.clone_from(&self.profile);
        r.file_id = self.claimed;
        r.lake_key.clone_from(&self.lake_key);
        r.zero_amounts(self.scale.unwrap_or(crate::report::DEFAULT_SCALE));
        r
    }
}

/// One inbox file through the steps of docs/ARCHITECTURE.md's "One file's journey",
/// one method of [`Journey`] each, numbered as there. A step that settles the file
/// (failed, duplicate, claimed elsewhere) ends the journey with [`Stop::Settled`] and
/// the file's report; one after which no file can go on (warehouse or lake unreachable,
/// a key rotated under the run) with [`Stop::Run`], which stops the run.
fn process_file(
    ctx: &mut Context,
    run_id: &str,
    path: &Path,
    progress: &mut dyn Progress,
    known: &mut Known,
) -> Result<FileReport, RunError> {
    let mut journey = Journey::new(path);
    match journey.go(ctx, run_id, path, progress, known) {
        Ok(()) | Err(Stop::Settled) => Ok(journey.finish(progress)),
        Err(Stop::Run(e)) => Err(e),
    }
}

/// Why a file's journey ended before its last step.
#[derive(Debug)]
enum Stop {
    /// The file's report says how it ended.
    Settled,
    /// No file can go on: the run stops with this.
    Run(RunError),
}

impl From<RunError> for Stop {
    fn from(e: RunError) -> Self {
        Self::Run(e)
    }
}

impl From<WarehouseError> for Stop {
    fn from(e: WarehouseError) -> Self {
        Self::Run(e.into())
    }
}

impl From<LakeError> for Stop {
    fn from(e: LakeError) -> Self {
        Self::Run(e.into())
    }
}

/// A step of the journey: what it found, or why the journey ends there.
type Step<T = ()> = Result<T, Stop>;

/// The content's digest and size (step 1).
struct Print {
    sha256: String,
    bytes: u64,
}

/// The file opened for its rows (step 3).
struct Opened {
    format: Format,
    compression: Compression,
    /// The scan started on it, or why its rows cannot be read (it still lands).
    scanned: Result<scan::Scanner, scan::FileError>,
    /// Raw bytes read so far, for progress.
    counter: Arc<AtomicU64>,
    /// The digest of the bytes the rows come from, left there by the reader. They must
    /// be exactly the fingerprinted file: a file rewritten or truncated under us is not
    /// loaded.
    read_digest: source::DigestSlot,
}

/// The file's claim and where its raw copy goes (step 4).
struct Claimed {
    file_id: i64,
    key: String,
    encrypt: Option<lake::Encrypt>,
}

/// The raw copy being landed on a thread of its own (step 5a).
struct Landing {
    thread: std::thread::JoinHandle<Result<lake::Landed, LakeError>>,
    name: String,
}

impl Landing {
    /// Waits for the raw copy to be complete (or to have failed).
    fn join(self) -> Result<lake::Landed, LakeError> {
        self.thread.join().unwrap_or_else(|_| {
            Err(LakeError::Source {
                path: self.name,
                source: std::io::Error::other("landing thread panicked"),
            })
        })
    }
}

/// One file's way through [`process_file`]: its name, its report so far, and when it
/// started.
struct Journey {
    clock: Instant,
    name: String,
    report: FileReport,
}

impl Journey {
    fn new(path: &Path) -> Self {
        let name = display_name(path);
        Self {
            clock: Instant::now(),
            report: FileReport::new(&name, Outcome::Failed),
            name,
        }
    }

    /// The steps, in order.
    fn go(
        &mut self,
        ctx: &mut Context,
        run_id: &str,
        path: &Path,
        progress: &mut dyn Progress,
        known: &mut Known,
    ) -> Step {
        // 0. The entry is read through its resolved path, which is in the inbox.
        let path = self.resolve(path)?;
        let path = path.as_path();
        // 1. fingerprint
        let print = self.fingerprint(path, progress, known)?;
        // 2. seen before?
        self.skip_if_seen(ctx, &print)?;
        // 3. open + detect
        let opened = self.open(ctx, path, known)?;
        // 4. claim, and record where the raw copy goes
        let claimed = self.claim(ctx, run_id, &print, &opened, known)?;
        let file_id = claimed.file_id;
        // 5a. land the raw bytes while the rows are validated and loaded
        let landing = self.land(ctx, path, &print, claimed)?;
        // 5b. scan, 6. load, 7. verify
        self.load(
            ctx, run_id, path, &print, opened, file_id, landing, progress,
        )
    }

    /// Ends the journey with the file failed for `error`.
    fn settle(&mut self, error: String) -> Stop {
        self.report.error = Some(error);
        Stop::Settled
    }

    /// Step 0: the file an inbox entry stands for, which must be in the inbox.
    fn resolve(&mut self, path: &Path) -> Step<PathBuf> {
        resolve_in_folder(path).map_err(|reason| {
            warn!(file = %self.name, reason, "Not read: the inbox entry leads outside the inbox.");
            self.settle(reason)
        })
    }

    /// Step 1: SHA-256 and size, in one streaming read.
    fn fingerprint(
        &mut self,
        path: &Path,
        progress: &mut dyn Progress,
        known: &mut Known,
    ) -> Step<Print> {
        let (sha256, bytes) = open_no_follow(path)
            .and_then(lake::fingerprint)
            .map_err(|e| self.settle(format!("cannot read {}: {e}", path.display())))?;
        self.report.sha256 = Some(sha256.clone());
        self.report.bytes = bytes;
        known.sha256 = Some(sha256.clone());
        known.bytes = bytes;
        tracing::debug!(file = %self.name, elapsed_s = self.clock.elapsed().as_secs_f64(), "Fingerprinted.");
        progress.file_started(&self.name, bytes);
        Ok(Print { sha256, bytes })
    }

    /// Step 2: content the catalog holds already (loaded or failed, under any name) is
    /// not processed again.
    fn skip_if_seen(&mut self, ctx: &mut Context, print: &Print) -> Step {
        if let Some((file_id, _, status)) = ctx.warehouse.find_file(&print.sha256)?
            && status != FileStatus::Landing
        {
            seen_before(ctx, &mut self.report, file_id)?;
            return Err(Stop::Settled);
        }
        Ok(())
    }

    /// Step 3: compression and format from the first bytes, then the scan started
    /// (delimiter, header, profile). A file whose rows cannot be read still goes on: its
    /// raw copy is kept, and it fails at step 5b.
    fn open(&mut self, ctx: &Context, path: &Path, known: &mut Known) -> Step<Opened> {
        let (format, compression) = detect_kind(path)
            .map_err(|e| self.settle(format!("cannot read {}: {e}", path.display())))?;
        let counter = Arc::new(AtomicU64::new(0));
        let read_digest: source::DigestSlot = Arc::default();
        let scanned = open_digested(
            path,
            compression,
            Arc::clone(&counter),
            Arc::clone(&read_digest),
            ctx.config.max_decompressed_bytes,
        )
        .map_err(scan::FileError::Read)
        .and_then(|input| {
            scan::start(
                input,
                format,
                &ctx.config.profiles,
                ctx.config.workers,
                true,
            )
        });
        if let Ok(s) = &scanned {
            self.report.profile = Some(s.layout.profile.name.clone());
            self.report.zero_amounts(s.layout.profile.scale);
            known.scale = Some(s.layout.profile.scale);
        }
        known.profile.clone_from(&self.report.profile);
        Ok(Opened {
            format,
            compression,
            scanned,
            counter,
            read_digest,
        })
    }

    /// Step 4: the file's row in the catalog, new or resumed, unless another worker
    /// holds it or finished the same content; then where its raw copy goes.
    fn claim(
        &mut self,
        ctx: &mut Context,
        run_id: &str,
        print: &Print,
        opened: &Opened,
        known: &mut Known,
    ) -> Step<Claimed> {
        let key = Lake::raw_key(
            self.report.profile.as_deref().unwrap_or("unknown"),
            crate::clock::year_month(),
            &print.sha256,
            &source::lake_extension(opened.format, opened.compression),
        );
        let claim = claim_waiting(
            ctx,
            &NewFile {
                sha256: print.sha256.clone(),
                original_name: self.name.clone(),
                bytes: print.bytes,
                profile: self.report.profile.clone(),
                format: opened.format.name().to_owned(),
                compression: opened.compression.name().to_owned(),
                lake_key: key.clone(),
                received_at: crate::clock::now_rfc3339(),
                run_id: run_id.to_owned(),
            },
        )?;
        let (file_id, earlier) = match claim {
            Claim::New { file_id } => (file_id, None),
            Claim::Resume { file_id, lake_key } => {
                info!(file = %self.name, file_id, "Resuming a file left unfinished by an earlier run.");
                // The earlier attempt may have been cut mid-upload, under a key of its own
                // (another data key or month): its partial upload goes. Its complete
                // object, if any, goes once the new key is recorded (`record_landing`).
                ctx.lake.remove_partial_uploads(&lake_key);
                (file_id, Some(lake_key))
            }
            Claim::Duplicate { file_id, .. } => {
                seen_before(ctx, &mut self.report, file_id)?;
                return Err(Stop::Settled);
            }
            Claim::Busy { file_id, claimant } => {
                // Not a duplicate: nothing of it is loaded yet, and if that worker dies a
                // later run loads it.
                info!(file = %self.name, file_id, claimed_by = %claimant.describe(), "Another worker holds this file's claim; skipped.");
                self.report.status = Outcome::ClaimedElsewhere;
                self.report.file_id = Some(file_id);
                self.report.reason = Some(claimant.describe());
                self.report.claimed_by = Some(claimant);
                return Err(Stop::Settled);
            }
        };
        self.report.file_id = Some(file_id);
        known.claimed = Some(file_id);
        tracing::debug!(file = %self.name, session = ?ctx.warehouse.session_id(), elapsed_s = self.clock.elapsed().as_secs_f64(), "Claimed.");
        let (key, encrypt) = self.record_landing(ctx, file_id, key, print, earlier.is_some())?;
        if let Some(earlier) = earlier {
            remove_earlier_attempt(ctx, file_id, &earlier, &key);
        }
        self.report.lake_key = Some(key.clone());
        known.lake_key = Some(key.clone());
        Ok(Claimed {
            file_id,
            key,
            encrypt,
        })
    }

    /// Step 4, second half: where the object goes and its data key's wrapping are in the
    /// catalog before the first byte is written, so whatever happens next the catalog
    /// can read back what the lake holds. Each encrypted attempt writes its own object
    /// (named after its data key): a late upload of an abandoned attempt cannot replace
    /// it.
    fn record_landing(
        &mut self,
        ctx: &mut Context,
        file_id: i64,
        key: String,
        print: &Print,
        resumed: bool,
    ) -> Step<(String, Option<lake::Encrypt>)> {
        let (recorded, encrypt) = match ctx.lake.master_key() {
            Some(master) => {
                let (data_key, sealed) =
                    master
                        .new_data_key(&print.sha256)
                        .map_err(|source| LakeError::Key {
                            key: key.clone(),
                            source,
                        })?;
                let key = format!("{key}.{}.enc", data_key.tag());
                let recorded = ctx.warehouse.record_landing(file_id, &key, Some(&sealed));
                (
                    recorded.map(|()| key),
                    Some(lake::Encrypt {
                        key: data_key,
                        len: print.bytes,
                    }),
                )
            }
            None if resumed => (
                ctx.warehouse
                    .record_landing(file_id, &key, None)
                    .map(|()| key),
                None,
            ),
            None => (Ok(key), None),
        };
        match recorded {
            Ok(key) => Ok((key, encrypt)),
            Err(WarehouseError::NotClaimed { .. }) => {
                // Another worker finished it since our claim.
                let _ = ctx.warehouse.release(file_id);
                seen_before(ctx, &mut self.report, file_id)?;
                Err(Stop::Settled)
            }
            Err(e @ WarehouseError::WrongMasterKey { .. }) => {
                // A rotation committed since this run checked its key at start: nothing
                // was recorded under the retired key. Withdraw the claim and stop the run
                // (exit 2), as a wrong key at start would.
                if let Err(w) = ctx.warehouse.abandon(file_id) {
                    warn!(file_id, error = %w, "Could not withdraw the claim of a file that was not landed; the next run resumes it.");
                }
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Step 5a: the raw bytes to the lake, on a thread of its own, digest re-checked.
    fn land(&self, ctx: &Context, path: &Path, print: &Print, claimed: Claimed) -> Step<Landing> {
        let lake = ctx.lake.clone();
        let source_path = path.to_owned();
        let name = self.name.clone();
        let sha = print.sha256.clone();
        let thread = std::thread::Builder::new()
            .name("bankpipe-land".into())
            .spawn(move || {
                let source = File::open(&source_path).map_err(|source| LakeError::Source {
                    path: source_path.display().to_string(),
                    source,
                })?;
                lake.land(
                    &claimed.key,
                    &name,
                    BufReader::with_capacity(1 << 20, source),
                    &sha,
                    claimed.encrypt,
                )
            })
            .map_err(|e| RunError::Inbox {
                path: path.to_owned(),
                reason: format!("cannot start landing thread: {e}"),
            })?;
        Ok(Landing {
            thread,
            name: self.name.clone(),
        })
    }

    /// Steps 5b to 7: the rows validated and loaded in one transaction, whose control
    /// totals are read back before it commits, and which commits only once the raw copy
    /// is complete and the rows came from exactly the fingerprinted bytes.
    #[allow(clippy::too_many_arguments)]
    fn load(
        &mut self,
        ctx: &mut Context,
        run_id: &str,
        path: &Path,
        print: &Print,
        opened: Opened,
        file_id: i64,
        landing: Landing,
        progress: &mut dyn Progress,
    ) -> Step {
        let Opened {
            format,
            compression,
            scanned,
            counter,
            read_digest,
        } = opened;
        let scanner = match scanned {
            Ok(s) => s,
            Err(e) => return self.fail_unreadable(ctx, run_id, file_id, landing, &e),
        };
        let scale = scanner.layout.profile.scale;
        let plan = LoadPlan {
            file_id,
            run_id: run_id.to_owned(),
            max_reject_share: ctx.config.max_reject_share,
            scale,
            replace: false,
            format_names: scanner.layout.profile.all_format_names(),
        };
        let profiles = &ctx.config.profiles;
        let workers = ctx.config.workers;
        let limit = ctx.config.max_decompressed_bytes;
        // A retried load reads the file again from the start.
        let mut source = scan::Reopening::new(scanner, || {
            counter.store(0, Ordering::Relaxed);
            let input = open_digested(
                path,
                compression,
                Arc::clone(&counter),
                Arc::clone(&read_digest),
                limit,
            )
            .map_err(scan::FileError::Read)?;
            scan::start(input, format, profiles, workers, true)
        });
        let mut landing = Some(landing);
        let mut lake_error = None;
        let mut changed = false;
        let (name, sha256, bytes) = (&self.name, &print.sha256, print.bytes);
        let loaded = ctx.warehouse.load(
            &plan,
            &mut source,
            &mut |t| progress.advanced(counter.load(Ordering::Relaxed), t.rows_read),
            &mut |_| {
                let read = read_digest.lock().ok().and_then(|s| s.clone());
                if read.as_ref() != Some(&(sha256.clone(), bytes)) {
                    changed = true;
                    let (got, n) = read.unwrap_or_else(|| ("(unfinished)".into(), 0));
                    return Err(format!(
                        "{name} changed while being read (fingerprint sha256 {sha256}, {bytes} \
                         bytes; rows read from sha256 {got}, {n} bytes); nothing loaded, it \
                         will be tried again by the next run"
                    ));
                }
                match landing.take().map(Landing::join) {
                    Some(Err(e)) => {
                        let msg = e.to_string();
                        lake_error = Some(e);
                        Err(msg)
                    }
                    _ => Ok(()),
                }
            },
        );
        // Stop the scan threads if the load ended early.
        drop(source);
        tracing::debug!(file = %self.name, elapsed_s = self.clock.elapsed().as_secs_f64(), "Load committed.");
        let report = &mut self.report;
        match loaded {
            // The control totals were read back and checked inside the load transaction.
            Ok(tally) => {
                report.record_load(&tally, scale);
                report.set_formats(&tally, &plan.format_names);
            }
            Err(e @ WarehouseError::ControlTotals(_)) => {
                // Rolled back: the file is recorded failed with the reason, never left
                // `loaded` under a run that says its totals do not hold.
                error!(file = %self.name, file_id, error = %e, "Control totals do not hold; rolled back.");
                if let Some(h) = landing.take() {
                    landed_or_fatal(h.join(), report, &mut ctx.warehouse, file_id)?;
                }
                if report.error.is_none() {
                    let msg = e.to_string();
                    ctx.warehouse
                        .fail_file(file_id, run_id, &msg, &crate::clock::now_rfc3339())?;
                    report.error = Some(msg);
                }
            }
            Err(WarehouseError::Source(msg)) => {
                if let Some(h) = landing.take() {
                    landed_or_fatal(h.join(), report, &mut ctx.warehouse, file_id)?;
                }
                if report.error.is_none() {
                    ctx.warehouse
                        .fail_file(file_id, run_id, &msg, &crate::clock::now_rfc3339())?;
                    report.error = Some(msg);
                }
            }
            Err(WarehouseError::Aborted(msg)) if changed => {
                // Left `landing`: the next run fingerprints the file again.
                if let Some(h) = landing.take() {
                    let _ = h.join();
                }
                stop_claim(&mut ctx.warehouse, file_id, &msg)?;
                report.error = Some(msg);
            }
            Err(WarehouseError::Aborted(msg)) => match lake_error {
                Some(e) => landed_or_fatal(Err(e), report, &mut ctx.warehouse, file_id)?,
                None => {
                    ctx.warehouse
                        .fail_file(file_id, run_id, &msg, &crate::clock::now_rfc3339())?;
                    report.error = Some(msg);
                }
            },
            Err(WarehouseError::NotClaimed { .. }) => {
                // Another worker finished this file between our claim and our load; our
                // claim lock is given back here because the report will say duplicate.
                if let Some(h) = landing.take() {
                    let _ = h.join();
                }
                let _ = ctx.warehouse.release(file_id);
                seen_before(ctx, report, file_id)?;
            }
            Err(e) => {
                if let Some(h) = landing.take() {
                    let _ = h.join();
                }
                return Err(e.into());
            }
        }
        if !changed {
            withdraw_earlier_versions(ctx, &self.name, file_id);
        }
        Ok(())
    }

    /// Step 5b for a file whose rows cannot be read at all (no profile matches its
    /// header, it is empty, ...): it fails as a whole, but its raw copy is still kept.
    fn fail_unreadable(
        &mut self,
        ctx: &mut Context,
        run_id: &str,
        file_id: i64,
        landing: Landing,
        e: &scan::FileError,
    ) -> Step {
        landed_or_fatal(
            landing.join(),
            &mut self.report,
            &mut ctx.warehouse,
            file_id,
        )?;
        if self.report.error.is_none() {
            self.report.error = Some(e.to_string());
            ctx.warehouse.fail_file(
                file_id,
                run_id,
                &e.to_string(),
                &crate::clock::now_rfc3339(),
            )?;
        }
        withdraw_earlier_versions(ctx, &self.name, file_id);
        Err(Stop::Settled)
    }

    /// The file's report, logged and shown on the progress display.
    fn finish(mut self, progress: &mut dyn Progress) -> FileReport {
        self.report.elapsed_s = self.clock.elapsed().as_secs_f64();
        log_outcome(&self.report);
        let summary = match &self.report.error {
            Some(e) => format!("{}: {e}", self.report.status.name()),
            None => format!(
                "{}: {} loaded, {} rejected, {} duplicate",
                self.report.status.name(),
                self.report.rows_loaded,
                self.report.rows_rejected,
                self.report.rows_duplicate
            ),
        };
        progress.file_finished(&summary);
        self.report
    }
}

/// How long a worker waits for the server session of a claimant that is no longer
/// running on this host to end. Every session sets `client_connection_check_interval =
/// 1s`: the server ends a killed client's session within 1-2 s.
const GONE_CLAIMANT_WAIT: Duration = Duration::from_secs(5);

/// Pause between two looks at the claim of a claimant that is gone.
const GONE_CLAIMANT_POLL: Duration = Duration::from_millis(250);

/// Removes the complete object an earlier attempt of a resumed claim left, once the
/// new attempt's key is committed to the catalog (`Journey::record_landing`), so a
/// resumed encrypted file does not leave a file's worth of disk in the lake for good
/// (`verify` listed it as "an earlier landing attempt of file N").
///
/// Nothing else can name that object: its key holds the content digest, and the same
/// content is this one file row (`files.sha256` is unique), whose claim is ours and
/// now names the new key; an encrypted attempt's key also carries the tag of a data key
/// drawn at random for that attempt, so no other catalog sharing the lake names it
/// either. A clear-text key has no such tag: another warehouse sharing the lake that
/// loaded the same bytes in the same month names the very same key, so an earlier
/// clear-text attempt (one in another month) is left, and `verify` keeps listing it.
/// Best effort: a store that refuses is logged and the object left for `verify` to
/// report. A late upload of the earlier attempt, were one still in flight, could at
/// worst put the object back: an orphan, as before, never the catalog's object.
fn remove_earlier_attempt(ctx: &Context, file_id: i64, earlier: &str, recorded: &str) {
    if earlier == recorded || !is_encrypted_attempt(earlier) {
        return;
    }
    match ctx.lake.remove(earlier) {
        Ok(()) => {
            info!(
                file_id,
                key = earlier,
                "Removed the raw object of this file's earlier landing attempt."
            );
        }
        Err(e) => {
            warn!(file_id, key = earlier, error = %e, "Could not remove the raw object of this file's earlier landing attempt; `verify` lists it as an orphan.");
        }
    }
}

/// Whether `key` is an encrypted attempt's object, named
/// `<sha256>.<ext>.<data-key tag>.enc` ([`crate::crypt::DataKey::tag`]: 8 hex digits).
fn is_encrypted_attempt(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.strip_suffix(".enc")
        .and_then(|rest| rest.rsplit_once('.'))
        .is_some_and(|(_, tag)| tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Claims `file`, waiting where the claim is held by a process that will not load it:
///
/// - another worker of this very run (two inbox files with the same content under
///   `run --parallel N`): waits for that worker to finish the content and claims again,
///   so the copy is reported as a sequential run would report it (`duplicate_file`, or
///   `failed` again), never `claimed_elsewhere`. The wait polls the claim with a growing
///   pause (20 ms doubling to 1 s), never spins: it ends when that worker releases the
///   claim, which it does when it finishes the file or when its session is closed after
///   an error (the run waits for its workers anyway, so this adds no wait the run would
///   not have).
/// - a process of this host that is no longer running (`kill -9` of a run, then an
///   immediate rerun): its server session has not noticed yet. Waits up to
///   [`GONE_CLAIMANT_WAIT`] for the claim to be freed, then takes it over (resume) and
///   the file loads normally; if it is still held then, the claim is returned
///   [`Claim::Busy`] with [`crate::warehouse::Claimant::process_gone`] set.
///
/// A claim held by another live run or process, or one on another host, is returned as
/// is ([`Claim::Busy`]).
fn claim_waiting(ctx: &mut Context, file: &NewFile) -> Result<Claim, RunError> {
    let mut pause = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    let mut gone_since: Option<Instant> = None;
    loop {
        let mut claim = ctx.warehouse.claim(file)?;
        match &mut claim {
            Claim::Busy { file_id, claimant } if claimed_by_this_run(claimant, &file.run_id) => {
                if waited.is_zero() {
                    info!(file = %file.original_name, file_id, "Another worker of this run holds the same content's claim; waiting for it to finish.");
                }
                std::thread::sleep(pause);
                waited += pause;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Claim::Busy { file_id, claimant } if claimant.gone_from_this_host() => {
                let since = *gone_since.get_or_insert_with(|| {
                    info!(file = %file.original_name, file_id, claimed_by = %claimant.describe(), "The process holding this file's claim is no longer running on this host; waiting for its server session to end.");
                    Instant::now()
                });
                if !wait_for_free_claim(ctx, *file_id, since + GONE_CLAIMANT_WAIT)? {
                    claimant.process_gone = true;
                    warn!(file = %file.original_name, file_id, waited_s = since.elapsed().as_secs_f64(), "The server session of a process that is gone still holds this file's claim; the next run loads the file.");
                    return Ok(claim);
                }
                // Freed: claim again (normally a resume of the claim it left).
            }
            _ => {
                if !waited.is_zero() {
                    tracing::debug!(file = %file.original_name, waited_s = waited.as_secs_f64(), "Waited for another worker of this run.");
                }
                if let Some(since) = gone_since {
                    info!(file = %file.original_name, waited_s = since.elapsed().as_secs_f64(), "The claim of a process that is gone was freed.");
                }
                return Ok(claim);
            }
        }
    }
}

/// Polls the claim of `file_id` until it is free (`true`) or `until` has passed
/// (`false`), every [`GONE_CLAIMANT_POLL`].
fn wait_for_free_claim(ctx: &mut Context, file_id: i64, until: Instant) -> Result<bool, RunError> {
    loop {
        if ctx.warehouse.claim_free(file_id)? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= until {
            return Ok(false);
        }
        std::thread::sleep(GONE_CLAIMANT_POLL.min(until - now));
    }
}

/// Whether a claim's holder is this process working on run `run_id` (another worker of
/// the same run), not another run or process.
fn claimed_by_this_run(claimant: &crate::warehouse::Claimant, run_id: &str) -> bool {
    let (host, pid) = crate::warehouse::Claimant::this_process();
    claimant.run_id.as_deref() == Some(run_id)
        && claimant.pid == Some(pid)
        && claimant.host.as_deref().is_none_or(|h| h == host)
}

/// Records on a claim why it stopped (issue 8 §8): without it, `files` showed a
/// `landing` file with no reason, forever.
fn stop_claim(warehouse: &mut Warehouse, file_id: i64, reason: &str) -> Result<(), RunError> {
    warn!(
        file_id,
        reason, "Claim stopped; it stays open for the same content."
    );
    warehouse.stop_claim(file_id, &format!("stopped: {reason}"))?;
    Ok(())
}

/// Once a version of the inbox file `name` is finished (as `file_id`), the claims of
/// earlier versions that stopped because the file changed while being read are
/// withdrawn with their raw objects: they were snapshots of a file being written. Best
/// effort: a claim left behind stays listed by `status` and `verify`, with its reason.
fn withdraw_earlier_versions(ctx: &mut Context, name: &str, file_id: i64) {
    // Finished means recorded loaded or failed; a claim that stopped itself is not.
    match ctx.warehouse.file(file_id) {
        Ok(Some(f)) if f.status != FileStatus::Landing.name() => {}
        _ => return,
    }
    let withdrawn = match ctx.warehouse.withdraw_stopped(name, file_id) {
        Ok(w) => w,
        Err(e) => {
            warn!(file = %name, error = %e, "Could not withdraw the stopped claims of earlier versions.");
            return;
        }
    };
    for u in withdrawn {
        info!(file = %name, withdrawn = u.file_id, superseded_by = file_id, "Withdrew the claim of an earlier version that changed while being read.");
        if let Err(e) = ctx.lake.remove(&u.lake_key) {
            warn!(key = %u.lake_key, error = %e, "Could not remove the raw object of a withdrawn claim; `verify` lists it as an orphan.");
        }
    }
}

/// Whether a recorded failure comes from the file's bytes alone (empty, a header without
/// rows, an unreadable header), so `reprocess` — the same bytes under the current
/// settings — would fail the same way. A header no profile matches is not: a
/// `[[profile]]` added since can match it.
fn content_is_the_cause(reason: &str) -> bool {
    [
        scan::FileError::Empty.to_string(),
        scan::FileError::NoRows.to_string(),
        "header unreadable".to_owned(),
        "file has no data rows".to_owned(),
    ]
    .iter()
    .any(|r| reason.starts_with(r.as_str()))
}

/// Content the catalog already holds under `earlier`: a duplicate of a loaded file, or,
/// when that file failed, a failure again with the earlier id, its reason and the way
/// out. Skipping content that failed must not read as success (issue 8 §3): it counts as
/// a failed file for the exit status, and `duplicate_of` names the earlier file either
/// way.
fn seen_before(ctx: &mut Context, report: &mut FileReport, earlier: i64) -> Result<(), RunError> {
    report.file_id = Some(earlier);
    report.status = Outcome::DuplicateFile;
    let Some(entry) = ctx.warehouse.file(earlier)? else {
        return Ok(());
    };
    if entry.status == FileStatus::Failed.name() {
        report.status = Outcome::Failed;
        let reason = entry.error.as_deref().unwrap_or("no reason recorded");
        let way_out = if content_is_the_cause(reason) {
            // The same bytes fail the same way whatever the settings: only a new file helps.
            "Fix the file and put the corrected one in the inbox (reprocessing the same \
             content cannot change this)"
                .to_owned()
        } else {
            format!(
                "Put a corrected file in the inbox, or load this content again from the lake \
                 with `bankpipe reprocess {earlier}` (with --max-reject-share if the reject \
                 share was the reason)"
            )
        };
        report.error = Some(format!(
            "same content as file {earlier} ({}), which failed: {reason}; nothing loaded. \
             {way_out}",
            entry.original_name,
        ));
        warn!(file = %report.name, duplicate_of = %entry.original_name, file_id = earlier, "Same content already failed; failed again.");
    } else {
        info!(file = %report.name, duplicate_of = %entry.original_name, file_id = earlier, "Same content already processed; skipped.");
    }
    report.duplicate_of = Some(crate::report::DuplicateOf {
        file_id: earlier,
        name: entry.original_name,
        status: entry.status,
    });
    Ok(())
}

/// A landing error is fatal for the run (lake unreachable), except a source that changed
/// under us, which fails only this file.
///
/// A file that could not be landed (after the store's own retries) has its claim
/// withdrawn, so no catalog entry points at a missing or partial object (uploads are
/// aborted, never left half-visible); the next run starts it afresh.
fn landed_or_fatal(
    landed: Result<lake::Landed, LakeError>,
    report: &mut FileReport,
    warehouse: &mut Warehouse,
    file_id: i64,
) -> Result<(), RunError> {
    match landed {
        Ok(_) => Ok(()),
        Err(e @ LakeError::Changed { .. }) => {
            // The claim stays `landing` (not `failed`): the same content arriving again
            // must still load. The next run fingerprints the file anew.
            let msg = format!("{e}; nothing loaded, it will be tried again by the next run");
            stop_claim(warehouse, file_id, &msg)?;
            report.error = Some(msg);
            Ok(())
        }
        Err(e) => {
            if let Err(w) = warehouse.abandon(file_id) {
                warn!(file_id, error = %w, "Could not withdraw the claim of a file that was not landed; the next run resumes it.");
            }
            Err(e.into())
        }
    }
}

/// Records `lake_status = corrupt` when reading the raw object failed because its bytes
/// are damaged (digest mismatch or a chunk that does not authenticate).
fn mark_if_corrupt(warehouse: &mut Warehouse, file_id: i64, error: &str) -> Result<(), RunError> {
    if error.contains("is corrupt") {
        warehouse.set_lake_status(file_id, "corrupt", &crate::clock::now_rfc3339())?;
    }
    Ok(())
}

/// Re-reads the warehouse and compares with what the load counted (see
/// [`crate::warehouse::Stored::check`]); for a commit made by an earlier attempt whose
/// reply was lost. Loads themselves check before they commit.
fn check_control_totals(
    warehouse: &mut Warehouse,
    file_id: i64,
    scale: u8,
    tally: &crate::warehouse::Tally,
) -> Result<(), String> {
    warehouse
        .stored(file_id, scale)
        .map_err(|e| e.to_string())?
        .check(tally, scale)
}

fn log_outcome(r: &FileReport) {
    match (&r.status, &r.error) {
        (Outcome::Failed, Some(e)) => {
            warn!(file = %r.name, rows_read = r.rows_read, rows_rejected = r.rows_rejected, error = %e, "File failed; nothing loaded from it.");
        }
        (_, Some(e)) => error!(file = %r.name, error = %e, "File processed with an error."),
        _ => info!(
            file = %r.name,
            status = r.status.name(),
            rows_read = r.rows_read,
            rows_loaded = r.rows_loaded,
            rows_rejected = r.rows_rejected,
            rows_duplicate = r.rows_duplicate,
            amount_loaded = %r.amount_loaded,
            elapsed_s = r.elapsed_s,
            "File done."
        ),
    }
}

/// What `bankpipe reprocess` did (or, with `--dry-run`, would do) to one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reprocessed {
    /// Catalog id.
    pub file_id: i64,
    /// File name as received.
    pub name: String,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Status and counts before.
    pub before: FileReport,
    /// Status and counts after (or that a real run would give).
    pub after: FileReport,
    /// Rows of this file that other files counted as identical duplicates and that it
    /// no longer loads: how many move (or would move) to other files.
    pub rows_moved: u64,
    /// Where they go, by receiving file.
    pub moved_to: Vec<MovedRows>,
}

/// Rows `reprocess` moves from the reprocessed file to another file that carried them
/// (see "Duplicate lineage" in `docs/ARCHITECTURE.md`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MovedRows {
    /// The receiving file.
    pub file_id: i64,
    /// Its name as received.
    pub name: String,
    /// How many rows it now holds in place of the reprocessed file.
    pub rows: u64,
    /// Their exact sum.
    pub amount: String,
}

/// The receiving files of a reprocess, named.
fn moved_rows(
    catalog: &[crate::warehouse::FileEntry],
    tally: &crate::warehouse::Tally,
    scale: u8,
) -> Vec<MovedRows> {
    tally
        .rehomed
        .iter()
        .map(|m| MovedRows {
            file_id: m.file_id,
            name: catalog
                .iter()
                .find(|f| f.file_id == m.file_id)
                .map(|f| f.original_name.clone())
                .unwrap_or_default(),
            rows: m.rows,
            amount: m.amount.to_text(scale),
        })
        .collect()
}

/// Re-reads a file that received rows from another file's reprocess: its catalog
/// counts still balance and match what `transactions` and `duplicate_rows` hold.
fn check_receiving_file(warehouse: &mut Warehouse, file_id: i64, scale: u8) -> Result<(), String> {
    let stored = warehouse
        .stored(file_id, scale)
        .map_err(|e| e.to_string())?;
    let r = &stored.recorded;
    if r.balances()
        && stored.transactions == r.rows_loaded
        && stored.transactions_amount == r.amount_loaded
        && stored.duplicates == r.rows_duplicate
    {
        Ok(())
    } else {
        Err(format!(
            "file {file_id} after receiving rows: read {} loaded {} rejected {} duplicate {}, \
             transactions holds {} / {} (loaded {}), duplicate_rows holds {}",
            r.rows_read,
            r.rows_loaded,
            r.rows_rejected,
            r.rows_duplicate,
            stored.transactions,
            stored.transactions_amount.to_text(scale),
            r.amount_loaded.to_text(scale),
            stored.duplicates
        ))
    }
}

/// Shortest sha256 prefix `reprocess` accepts (`files` shows 12 hex digits).
const MIN_SHA_PREFIX: usize = 12;

/// The catalog entry a `reprocess` selector names: a file id, a full sha256, or a
/// unique hex prefix of one of at least [`MIN_SHA_PREFIX`] digits.
fn select<'a>(
    catalog: &'a [crate::warehouse::FileEntry],
    selector: &str,
) -> Result<&'a crate::warehouse::FileEntry, String> {
    if let Some(f) = catalog
        .iter()
        .find(|f| f.file_id.to_string() == selector || f.sha256 == selector)
    {
        return Ok(f);
    }
    let prefix = selector.to_ascii_lowercase();
    if prefix.len() < MIN_SHA_PREFIX || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "no such file id or sha256 in the catalog (a sha256 prefix needs at least \
             {MIN_SHA_PREFIX} hex digits)"
        ));
    }
    let found: Vec<&crate::warehouse::FileEntry> = catalog
        .iter()
        .filter(|f| f.sha256.starts_with(&prefix))
        .collect();
    match found.as_slice() {
        [] => Err("no such file id or sha256 in the catalog".into()),
        [one] => Ok(one),
        many => Err(format!(
            "sha256 prefix {prefix} is ambiguous: it matches {}; give more digits or the file id",
            many.iter()
                .map(|f| format!("file {} ({}, {})", f.file_id, f.original_name, f.sha256))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Reloads one landed file from its raw object in the lake (not from the inbox), under
/// the current contract: its previous rows, rejects and warnings are replaced in one
/// transaction, and the control totals are checked again. With `dry_run` the load runs
/// to the end and is rolled back, so the difference can be shown first.
///
/// # Errors
/// [`RunError`] when the file is unknown or unfinished, the lake object is missing or
/// corrupt (recorded as `lake_status`), or the warehouse fails.
pub fn reprocess(
    ctx: &mut Context,
    selector: &str,
    dry_run: bool,
) -> Result<Reprocessed, RunError> {
    let unknown = |reason: String| RunError::Inbox {
        path: PathBuf::from(selector),
        reason,
    };
    let catalog = ctx.warehouse.files()?;
    let entry = select(&catalog, selector).map_err(unknown)?.clone();
    if entry.status == "landing" {
        return Err(unknown(format!(
            "file {} is still landing; run `bankpipe run` to finish it",
            entry.file_id
        )));
    }
    let mut before = FileReport::new(&entry.original_name, Outcome::Loaded);
    before.status = if entry.status == "failed" {
        Outcome::Failed
    } else {
        Outcome::Loaded
    };
    before.file_id = Some(entry.file_id);
    before.sha256 = Some(entry.sha256.clone());
    before.rows_read = entry.rows_read.unwrap_or(0);
    before.rows_loaded = entry.rows_loaded.unwrap_or(0);
    before.rows_rejected = entry.rows_rejected.unwrap_or(0);
    before.rows_duplicate = entry.rows_duplicate.unwrap_or(0);
    // The catalog row as stored: every count and exact amount, profile, key and size.
    let amount = |a: &Option<String>| a.clone().unwrap_or_else(|| "0".into());
    before.amount_read = amount(&entry.amount_read);
    before.amount_loaded = amount(&entry.amount_loaded);
    before.amount_rejected = amount(&entry.amount_rejected);
    before.amount_duplicate = amount(&entry.amount_duplicate);
    before.profile = entry.profile.clone();
    before.lake_key = Some(entry.lake_key.clone());
    before.bytes = entry.bytes;
    before.formats = entry.formats.clone();
    before.error = entry.error.clone();
    // What a reprocess that changes nothing reports as its result: the catalog row.
    let unchanged = |msg: String| {
        let mut after = before.clone();
        after.error = Some(msg);
        after
    };

    let lake = ctx.lake.clone();
    let (key, sha, sealed) = (entry.lake_key.clone(), entry.sha256.clone(), entry.sealed());
    let open = || lake.open_read(&key, &sha, sealed.as_ref());
    let first = match open() {
        Ok(reader) => reader,
        Err(LakeError::Read {
            source: object_store::Error::NotFound { .. },
            ..
        }) => {
            // Said in the file's terms: which object, of which file, in which lake.
            ctx.warehouse.set_lake_status(
                entry.file_id,
                "missing",
                &crate::clock::now_rfc3339(),
            )?;
            let msg = format!(
                "the raw object {key} of file {} ({}) is missing from the lake {}: it cannot be \
                 reprocessed; nothing changed (`bankpipe verify` checks every object)",
                entry.file_id,
                entry.original_name,
                lake.url()
            );
            error!(file_id = entry.file_id, key = %key, "Raw object missing; nothing reprocessed.");
            let after = unchanged(msg);
            return Ok(Reprocessed {
                file_id: entry.file_id,
                name: entry.original_name,
                dry_run,
                before,
                after,
                rows_moved: 0,
                moved_to: Vec::new(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let mut head = Vec::with_capacity(64 * 1024);
    first.take(64 * 1024).read_to_end(&mut head).ok();
    let compression = Compression::sniff(&head);
    let mut decoded = Vec::new();
    if let Ok(d) = source::decoder(std::io::Cursor::new(head), compression, u64::MAX) {
        let _ = d.take(4096).read_to_end(&mut decoded);
    }
    let format = source::sniff_format(&entry.original_name, &decoded);
    let profiles = &ctx.config.profiles;
    let workers = ctx.config.workers;
    let limit = ctx.config.max_decompressed_bytes;
    let start = || -> Result<scan::Scanner, scan::FileError> {
        let reader =
            open().map_err(|e| scan::FileError::Read(std::io::Error::other(e.to_string())))?;
        let input = source::decoder(reader, compression, limit).map_err(scan::FileError::Read)?;
        scan::start(input, format, profiles, workers, true)
    };
    let run_id = uuid::Uuid::now_v7().to_string();
    let mut after = FileReport::new(&entry.original_name, Outcome::Failed);
    after.file_id = Some(entry.file_id);
    after.sha256 = Some(entry.sha256.clone());
    after.lake_key = Some(entry.lake_key.clone());
    after.bytes = entry.bytes;
    let scanner = match start() {
        Ok(s) => s,
        Err(e) => {
            // Unreadable raw object, or a contract that now rejects the whole file:
            // either way the previous load stays as it is.
            let msg = e.to_string();
            mark_if_corrupt(&mut ctx.warehouse, entry.file_id, &msg)?;
            error!(file_id = entry.file_id, error = %msg, "Reprocessing failed; the previous load is untouched.");
            let after = unchanged(format!("{msg}; nothing changed"));
            return Ok(Reprocessed {
                file_id: entry.file_id,
                name: entry.original_name,
                dry_run,
                before,
                after,
                rows_moved: 0,
                moved_to: Vec::new(),
            });
        }
    };
    let scale = scanner.layout.profile.scale;
    after.profile = Some(scanner.layout.profile.name.clone());
    let plan = LoadPlan {
        file_id: entry.file_id,
        run_id: run_id.clone(),
        max_reject_share: ctx.config.max_reject_share,
        scale,
        replace: true,
        format_names: scanner.layout.profile.all_format_names(),
    };
    let mut source = scan::Reopening::new(scanner, start);
    let mut seen = None;
    let loaded = ctx
        .warehouse
        .load(&plan, &mut source, &mut |_| {}, &mut |t| {
            seen = Some(t.clone());
            if dry_run {
                Err("dry run".into())
            } else {
                Ok(())
            }
        });
    drop(source);
    let mut moved_to = Vec::new();
    match loaded {
        Ok(tally) => {
            after.record_load(&tally, scale);
            after.set_formats(&tally, &plan.format_names);
            moved_to = moved_rows(&catalog, &tally, scale);
            let mut broken: Vec<String> =
                check_control_totals(&mut ctx.warehouse, entry.file_id, scale, &tally)
                    .err()
                    .into_iter()
                    .collect();
            for m in &moved_to {
                info!(
                    file_id = entry.file_id,
                    to_file = m.file_id,
                    rows = m.rows,
                    "Rows moved to another file that carries them."
                );
                if let Err(e) = check_receiving_file(&mut ctx.warehouse, m.file_id, scale) {
                    broken.push(e);
                }
            }
            if !broken.is_empty() {
                let broken = broken.join("; ");
                error!(file_id = entry.file_id, %broken, "Control totals do not hold after reprocessing.");
                after.error = Some(format!("control totals do not hold: {broken}"));
            }
        }
        // Checked inside the transaction too: a reload whose totals do not hold is
        // rolled back and the previous load stays.
        Err(e @ WarehouseError::ControlTotals(_)) => {
            error!(file_id = entry.file_id, error = %e, "Reprocessing failed; the previous load is untouched.");
            after = unchanged(e.to_string());
        }
        Err(WarehouseError::Aborted(_)) if dry_run => {
            let tally = seen.unwrap_or_default();
            after.record_load(&tally, scale);
            moved_to = moved_rows(&catalog, &tally, scale);
            after.set_formats(&tally, &plan.format_names);
        }
        Err(WarehouseError::Source(msg)) => {
            mark_if_corrupt(&mut ctx.warehouse, entry.file_id, &msg)?;
            error!(file_id = entry.file_id, error = %msg, "Reprocessing failed; the previous load is untouched.");
            after = unchanged(msg);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Reprocessed {
        file_id: entry.file_id,
        name: entry.original_name,
        dry_run,
        before,
        after,
        rows_moved: moved_to.iter().map(|m| m.rows).sum(),
        moved_to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    #[test]
    fn the_entry_a_run_stopped_on_reports_what_was_known_at_its_scale() {
        let error = RunError::Inbox {
            path: PathBuf::from("x"),
            reason: "gone".into(),
        };
        let nothing = Known::default().unfinished("a.csv", &error);
        assert_eq!(nothing.status, Outcome::Failed);
        assert_eq!((nothing.sha256.as_deref(), nothing.bytes), (None, 0));
        assert_eq!(nothing.amount_read, "0.00", "default scale");
        assert_eq!(nothing.error.as_deref(), Some(error.to_string().as_str()));
        let known = Known {
            claimed: Some(7),
            sha256: Some("ab".repeat(32)),
            bytes: 123,
            profile: Some("yen".into()),
            scale: Some(0),
            lake_key: Some("raw/yen/k.csv".into()),
        };
        let r = known.unfinished("b.csv", &error);
        assert_eq!(r.sha256, known.sha256);
        assert_eq!((r.bytes, r.file_id), (123, Some(7)));
        assert_eq!(r.profile.as_deref(), Some("yen"));
        assert_eq!(r.lake_key.as_deref(), Some("raw/yen/k.csv"));
        assert_eq!(
            [
                &r.amount_read,
                &r.amount_loaded,
                &r.amount_rejected,
                &r.amount_duplicate
            ],
            ["0", "0", "0", "0"]
        );
        assert_eq!(r.rows_read, 0);
    }

    #[test]
    fn only_an_encrypted_attempts_key_is_taken_for_one() {
        let sha = "ab".repeat(32);
        assert!(is_encrypted_attempt(&format!(
            "raw/kaggle-bank/2026/12/{sha}.csv.gz.0a1b2c3d.enc"
        )));
        // Clear text (another warehouse sharing the lake may name the same key).
        assert!(!is_encrypted_attempt(&format!(
            "raw/kaggle-bank/2026/12/{sha}.csv"
        )));
        assert!(!is_encrypted_attempt(&format!(
            "raw/kaggle-bank/2026/12/{sha}.csv.gz"
        )));
        // Not a tag bankpipe writes.
        assert!(!is_encrypted_attempt(&format!(
            "raw/p/2026/12/{sha}.csv.enc"
        )));
        assert!(!is_encrypted_attempt(&format!(
            "raw/p/2026/12/{sha}.csv.0a1b2c3.enc"
        )));
        assert!(!is_encrypted_attempt(&format!(
            "raw/p/2026/12/{sha}.csv.0a1b2c3z.enc"
        )));
    }

    fn context(dir: &Path, rt: &tokio::runtime::Runtime) -> Context {
        let profiles = crate::profile::builtin_specs()
            .iter()
            .map(|s| crate::profile::Profile::from_spec(s).unwrap())
            .collect();
        let config = Config {
            data_dir: dir.to_owned(),
            inbox: dir.join("inbox"),
            warehouse_url: format!("sqlite://{}/w.db", dir.display()),
            lake_url: dir.join("lake").display().to_string(),
            export_url: dir.join("exports").display().to_string(),
            max_reject_share: 0.5,
            max_decompressed_bytes: crate::source::DEFAULT_MAX_DECOMPRESSED_BYTES,
            workers: 2,
            parallel: 1,
            min_file_age: std::time::Duration::ZERO,
            profiles,
            master_key: None,
            schedule: crate::schedule::Schedule::default(),
            listen: crate::config::DEFAULT_LISTEN.parse().unwrap(),
        };
        Context {
            warehouse: Warehouse::open(&config.warehouse_url).unwrap(),
            lake: Lake::open(&config.lake_url, rt.handle().clone()).unwrap(),
            config,
        }
    }

    #[test]
    fn a_stopped_run_starts_no_file_and_is_recorded_interrupted() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = context(dir.path(), &rt);
        std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
        for name in ["a.csv", "b.csv"] {
            std::fs::write(
                dir.path().join("inbox").join(name),
                "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)\n\
                 A1,C1,10/1/94,F,PUNE,1.00,2/8/16,143207,25.50\n",
            )
            .unwrap();
        }
        let stopped = run_until(&mut ctx, &mut Silent, &AtomicBool::new(true)).unwrap_err();
        assert!(matches!(stopped.error, RunError::Interrupted { left: 2 }));
        let report = stopped.report.unwrap();
        assert_eq!(report.status, "interrupted");
        assert!(report.files.is_empty());
        let runs = ctx.warehouse.summary().unwrap().recent_runs;
        assert_eq!(runs[0].status, "interrupted");
        assert_eq!(ctx.warehouse.files().unwrap().len(), 0);
        // Not asked to stop: both files.
        let report = run_until(&mut ctx, &mut Silent, &AtomicBool::new(false)).unwrap();
        assert_eq!(report.status, "ok");
        assert_eq!(report.files.len(), 2);
    }

    #[test]
    fn a_retry_that_finds_its_own_commit_reports_loaded_not_duplicate() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = context(dir.path(), &rt);
        let path = dir.path().join("a.csv");
        std::fs::write(
            &path,
            "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)\n\
             A1,C1,10/1/94,F,PUNE,1.00,2/8/16,143207,25.50\n\
             A2,C1,10/1/94,F,PUNE,1.00,2/8/16,143207,-3\n\
             A3,C2,10/1/94,M,GOA,1.00,3/8/16,101010,4.25\n",
        )
        .unwrap();
        let mut known = Known::default();
        let first = process_file(&mut ctx, "run-1", &path, &mut Silent, &mut known).unwrap();
        let own = known.claimed.unwrap();
        assert_eq!(first.status, Outcome::Loaded);
        assert_eq!((first.rows_loaded, first.rows_rejected), (2, 1));

        // The same run tries again (its first attempt's reply was lost): the file is in
        // the catalog as loaded by this run, so it is reported loaded, with its counts.
        let again =
            process_file(&mut ctx, "run-1", &path, &mut Silent, &mut Known::default()).unwrap();
        assert_eq!(again.status, Outcome::DuplicateFile);
        let reconciled = reconcile_retry(&mut ctx, "run-1", own, again).unwrap();
        assert_eq!(reconciled.status, Outcome::Loaded);
        assert_eq!(
            (
                reconciled.rows_read,
                reconciled.rows_loaded,
                reconciled.rows_rejected,
                reconciled.amount_loaded.as_str()
            ),
            (3, 2, 1, "29.75")
        );

        // A file the earlier attempt recorded as failed (too many rejects) is reported
        // failed, with its reason, not as a duplicate that would hide the failure.
        let bad = dir.path().join("bad.csv");
        std::fs::write(
            &bad,
            "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)\n\
             B1,C1,10/1/94,F,PUNE,1.00,2/8/16,143207,-1\n\
             B2,C1,10/1/94,F,PUNE,1.00,2/8/16,143207,-2\n\
             B3,C2,10/1/94,M,GOA,1.00,3/8/16,101010,4.25\n",
        )
        .unwrap();
        let mut bad_known = Known::default();
        let failed = process_file(&mut ctx, "run-1", &bad, &mut Silent, &mut bad_known).unwrap();
        let bad_claim = bad_known.claimed;
        assert_eq!(failed.status, Outcome::Failed);
        let retry =
            process_file(&mut ctx, "run-1", &bad, &mut Silent, &mut Known::default()).unwrap();
        assert_eq!(retry.status, Outcome::Failed);
        assert_eq!(retry.duplicate_of.as_ref().map(|d| d.file_id), bad_claim);
        let retry = reconcile_retry(&mut ctx, "run-1", bad_claim.unwrap(), retry).unwrap();
        assert_eq!(retry.status, Outcome::Failed);
        assert_eq!(retry.duplicate_of, None);
        assert_eq!(retry.error, failed.error);
        assert_eq!((retry.rows_read, retry.rows_rejected), (3, 2));

        // Another run meeting the same content: a duplicate file, as before.
        let other =
            process_file(&mut ctx, "run-2", &path, &mut Silent, &mut Known::default()).unwrap();
        let other = reconcile_retry(&mut ctx, "run-2", own, other).unwrap();
        assert_eq!(other.status, Outcome::DuplicateFile);
        assert_eq!(other.rows_loaded, 0);
    }
}
