//! `GET /metrics`: the Prometheus text exposition of the warehouse catalog and of this
//! process. Every family name `serve` exposes is written here, and nowhere else.
//!
//! # Catalog figures: cached, refreshed in the background
//!
//! The catalog is the source of truth (it counts the work of every worker on every
//! machine and survives restarts), read by [`Warehouse::catalog_figures`]: one row per
//! file and per run, never `rejected_rows` or `transactions`. A task
//! (`spawn_refresher`) reads it on a blocking thread and publishes each reading; a
//! scrape never waits on the warehouse for longer than [`SCRAPE_WAIT`]:
//!
//! - while scrapes (or page views) keep coming, the task reads every [`WARM_REFRESH`],
//!   so a scrape finds a reading younger than [`MAX_AGE`] and answers from memory (the
//!   read's cost is off the request path: its latency does not grow with the catalog);
//! - otherwise (the first scrape after [`WARM_FOR`] without any) the scrape asks for a
//!   new reading and waits up to [`SCRAPE_WAIT`] for it, then serves whatever is newest;
//! - a read still running after [`READ_TIMEOUT`] (a load holding the SQLite write lock
//!   once its page cache spilled: readers wait for the commit) is left running, and
//!   no second one is started; scrapes keep getting the last reading, with its age in
//!   `bankpipe_catalog_age_seconds`.
//!
//! So `/metrics` answers within a second while a long load holds the warehouse, and
//! the warehouse sees at most one catalog read in flight per `serve` process. (The
//! alternative, SQLite's WAL journal, lets readers in during a write but slows the one
//! large transaction of a load; see the README.)
//!
//! # Counters whose value can fall
//!
//! The catalog-derived `_total` families are the catalog's totals, typed `counter`
//! (their contract names end in `_total`, which the exposition format reserves for
//! counters). A `reprocess` can lower one (a file that loads fewer rows, or fails, the
//! second time); PromQL's `rate()`/`increase()` take such a drop for a reset. The README
//! says how to read them.
//!
//! # Money
//!
//! `bankpipe_amount_loaded_total{currency}` is summed exactly (decimal) in the catalog
//! and converted to a float only here, at the edge: Prometheus values are 64-bit
//! floats, exact to 15-16 significant digits (to the cent up to about 10^13 units).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::AppState;
use super::process::ProcessFigures;
use crate::metrics::{Exposition, Kind};
use crate::warehouse::figures::CatalogFigures;
use crate::warehouse::{Warehouse, WarehouseError};

/// A reading at most this old is served without asking for a new one.
pub const MAX_AGE: Duration = Duration::from_secs(2);
/// How long a scrape waits for a new reading before serving the last one.
pub const SCRAPE_WAIT: Duration = Duration::from_millis(800);
/// How long a catalog read may run before scrapes stop waiting for it (it keeps
/// running; its result is published when it comes).
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// While readers come (a scrape or a page view in the last [`WARM_FOR`]), the catalog
/// is read this often, so that each of them finds a reading younger than [`MAX_AGE`]
/// and answers from memory.
pub const WARM_REFRESH: Duration = Duration::from_millis(1500);
/// How long after the last reader the catalog keeps being read every [`WARM_REFRESH`].
pub const WARM_FOR: Duration = Duration::from_secs(300);
/// Without readers, the catalog is still read this often (for `bankpipe_warehouse_up`).
const IDLE_REFRESH: Duration = Duration::from_secs(30);
/// How often the lake is probed for `bankpipe_lake_up`.
const LAKE_CHECK_EVERY: Duration = Duration::from_secs(15);

/// One reading of the catalog.
#[derive(Debug)]
pub struct Reading {
    /// The figures.
    pub figures: CatalogFigures,
    /// When they were read.
    pub read_at: Instant,
}

/// The catalog figures as last read, and whether the warehouse and the lake answered
/// their last checks. Shared through [`AppState::catalog`].
#[derive(Debug)]
pub struct Catalog {
    /// 0 down, 1 up, 2 not checked yet.
    warehouse_up: AtomicU8,
    lake_up: AtomicU8,
    latest: watch::Sender<Option<Arc<Reading>>>,
    wanted: Notify,
    /// When a reader last asked ([`Catalog::fresh`]).
    last_reader: std::sync::Mutex<Option<Instant>>,
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog::new()
    }
}

const UNKNOWN: u8 = 2;

impl Catalog {
    /// Nothing read yet.
    pub fn new() -> Catalog {
        Catalog {
            warehouse_up: AtomicU8::new(UNKNOWN),
            lake_up: AtomicU8::new(UNKNOWN),
            latest: watch::Sender::new(None),
            wanted: Notify::new(),
            last_reader: std::sync::Mutex::new(None),
        }
    }

    /// Records whether the warehouse answered its last check.
    pub fn set_warehouse_up(&self, up: bool) {
        self.warehouse_up.store(u8::from(up), Ordering::Relaxed);
    }

    /// Records whether the lake answered its last check.
    pub fn set_lake_up(&self, up: bool) {
        self.lake_up.store(u8::from(up), Ordering::Relaxed);
    }

    /// Whether the warehouse answered its last check (`None`: not checked yet).
    pub fn warehouse_up(&self) -> Option<bool> {
        up(&self.warehouse_up)
    }

    /// Whether the lake answered its last check (`None`: not checked yet).
    pub fn lake_up(&self) -> Option<bool> {
        up(&self.lake_up)
    }

    /// The last reading, however old (`None` before the first one succeeded).
    pub fn latest(&self) -> Option<Arc<Reading>> {
        self.latest.borrow().clone()
    }

    /// A reading at most `max_age` old if one comes within `wait`, else the last one:
    /// what a request handler calls. Never waits longer than `wait`.
    pub async fn fresh(&self, max_age: Duration, wait: Duration) -> Option<Arc<Reading>> {
        *self.last_reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let mut rx = self.latest.subscribe();
        let current = rx.borrow_and_update().clone();
        if current
            .as_ref()
            .is_some_and(|r| r.read_at.elapsed() <= max_age)
        {
            return current;
        }
        self.wanted.notify_one();
        let _ = tokio::time::timeout(wait, rx.changed()).await;
        self.latest()
    }

    /// How long the refresher waits for the next read: [`WARM_REFRESH`] while readers
    /// come, [`IDLE_REFRESH`] otherwise.
    fn next_read_in(&self) -> Duration {
        let last = *self.last_reader.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < WARM_FOR) {
            WARM_REFRESH
        } else {
            IDLE_REFRESH
        }
    }

    fn publish(&self, figures: CatalogFigures) {
        self.latest.send_replace(Some(Arc::new(Reading {
            figures,
            read_at: Instant::now(),
        })));
    }
}

fn up(flag: &AtomicU8) -> Option<bool> {
    match flag.load(Ordering::Relaxed) {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// Starts the tasks that keep [`Catalog`] current: catalog reads (at most one in
/// flight) and lake probes. Both end at shutdown.
pub(super) fn spawn_refresher(state: Arc<AppState>) -> JoinHandle<()> {
    let lake = tokio::spawn(probe_lake(state.clone()));
    tokio::spawn(async move {
        let mut inflight: Option<JoinHandle<Result<CatalogFigures, WarehouseError>>> = None;
        let mut failing = false;
        loop {
            let read = inflight.get_or_insert_with(|| {
                let state = state.clone();
                tokio::spawn(async move { state.with_warehouse(Warehouse::catalog_figures).await })
            });
            match tokio::time::timeout(READ_TIMEOUT, read).await {
                Err(_) => tracing::debug!(
                    "Catalog read still waiting (a load may hold the warehouse); serving the last figures."
                ),
                Ok(joined) => {
                    inflight = None;
                    match joined {
                        Ok(Ok(figures)) => {
                            state.catalog.publish(figures);
                            state.catalog.set_warehouse_up(true);
                            if failing {
                                tracing::info!("Catalog readable again.");
                            }
                            failing = false;
                        }
                        Ok(Err(e)) if e.is_busy() => {
                            // Answered, but a load holds the lock past the busy timeout.
                            tracing::debug!(error = %e, "Catalog busy; serving the last figures.");
                        }
                        Ok(Err(e)) => {
                            state.catalog.set_warehouse_up(false);
                            if !failing {
                                tracing::warn!(error = %e, "Cannot read the catalog for /metrics; serving the last figures.");
                            }
                            failing = true;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "Catalog read panicked.");
                        }
                    }
                }
            }
            tokio::select! {
                () = state.catalog.wanted.notified() => {}
                () = tokio::time::sleep(state.catalog.next_read_in()) => {}
                () = state.shutdown.cancelled() => {
                    lake.abort();
                    return;
                }
            }
        }
    })
}

async fn probe_lake(state: Arc<AppState>) {
    loop {
        let _ = super::health::check_lake(&state).await;
        tokio::select! {
            () = tokio::time::sleep(LAKE_CHECK_EVERY) => {}
            () = state.shutdown.cancelled() => return,
        }
    }
}

/// The `/metrics` route.
pub(super) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let reading = state.catalog.fresh(MAX_AGE, SCRAPE_WAIT).await;
    let mut e = Exposition::new();
    if let Some(r) = &reading {
        write_catalog(&mut e, &r.figures);
    }
    e.single(
        "bankpipe_catalog_age_seconds",
        Kind::Gauge,
        "Age of the catalog figures served (they are read in the background); +Inf before \
         the first successful read.",
        reading
            .as_ref()
            .map_or(f64::INFINITY, |r| r.read_at.elapsed().as_secs_f64()),
    );
    write_process(&mut e, &state);
    ProcessFigures::read().write(&mut e);
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        e.finish(),
    )
}

/// The catalog-derived families.
fn write_catalog(e: &mut Exposition, f: &CatalogFigures) {
    let mut files = e.family(
        "bankpipe_files_total",
        Kind::Counter,
        "Files in the catalog by status (landing, loaded, failed); a reprocess can move a \
         file between statuses.",
    );
    for (status, n) in &f.files {
        files.sample(&[("status", status)], *n as f64);
    }
    e.family(
        "bankpipe_rows_total",
        Kind::Counter,
        "Rows of every file by outcome: loaded (stored), rejected (quarantined), duplicate \
         (identical to a stored row).",
    )
    .sample(&[("outcome", "loaded")], f.rows_loaded as f64)
    .sample(&[("outcome", "rejected")], f.rows_rejected as f64)
    .sample(&[("outcome", "duplicate")], f.rows_duplicate as f64);
    let mut rejected = e.family(
        "bankpipe_rejected_rows_total",
        Kind::Counter,
        "Rejected rows by rule.",
    );
    for (rule, n) in &f.rejected_by_rule {
        rejected.sample(&[("rule", rule)], *n as f64);
    }
    let mut warnings = e.family(
        "bankpipe_warnings_total",
        Kind::Counter,
        "Loaded rows with a field set to NULL, by warning rule.",
    );
    for (rule, n) in &f.warnings_by_rule {
        warnings.sample(&[("rule", rule)], *n as f64);
    }
    let mut amounts = e.family(
        "bankpipe_amount_loaded_total",
        Kind::Counter,
        "Sum of the loaded amounts by currency, in units of the currency (exact in the \
         catalog; a float here).",
    );
    for (currency, text) in &f.amount_loaded {
        if let Ok(v) = text.parse::<f64>() {
            amounts.sample(&[("currency", currency)], v);
        }
    }
    e.single(
        "bankpipe_bytes_landed_total",
        Kind::Counter,
        "Bytes of the raw files landed in the lake (loaded and failed files).",
        f.bytes_landed as f64,
    );
    let mut runs = e.family(
        "bankpipe_runs_total",
        Kind::Counter,
        "Finished runs by status (ok, failed, aborted, interrupted).",
    );
    for (status, n) in &f.runs {
        runs.sample(&[("status", status)], *n as f64);
    }
    if let Some(t) = f.last_successful_run {
        e.single(
            "bankpipe_last_successful_run_timestamp_seconds",
            Kind::Gauge,
            "End of the last run with status ok, in seconds since the Unix epoch.",
            t,
        );
    }
    e.single(
        "bankpipe_runs_in_progress",
        Kind::Gauge,
        "Runs recorded as running (one left by a dead process counts until the next run \
         marks it aborted).",
        f.runs_in_progress as f64,
    );
    e.family(
        "bankpipe_file_processing_seconds",
        Kind::Histogram,
        "Seconds from a file's claim to its load's record, per file processed.",
    )
    .histogram(&[], &f.processing);
    e.family(
        "bankpipe_file_reject_ratio",
        Kind::Histogram,
        "Rejected share (rows_rejected / rows_read) per processed file with rows, loaded or \
         failed; the share max_reject_share is compared with.",
    )
    .histogram(&[], &f.reject_share);
    let mut lake = e.family(
        "bankpipe_lake_objects",
        Kind::Gauge,
        "Raw objects of processed files by what bankpipe verify last found (unchecked: \
         never verified).",
    );
    for (state, n) in &f.lake_objects {
        lake.sample(&[("state", state)], *n as f64);
    }
    if let Some(x) = &f.exports {
        e.single(
            "bankpipe_export_last_success_timestamp_seconds",
            Kind::Gauge,
            "When the latest export version was written, in seconds since the Unix epoch.",
            x.last_success,
        );
        e.single(
            "bankpipe_export_drift_flagged_features",
            Kind::Gauge,
            "Features flagged by the drift check in the latest export.",
            x.drift_flagged_features as f64,
        );
    }
}

/// This process's own families (besides `process_*`).
fn write_process(e: &mut Exposition, state: &AppState) {
    let flag = |up: Option<bool>| f64::from(u8::from(up == Some(true)));
    e.single(
        "bankpipe_warehouse_up",
        Kind::Gauge,
        "1 when the warehouse answered this process's last check, else 0.",
        flag(state.catalog.warehouse_up()),
    );
    e.single(
        "bankpipe_lake_up",
        Kind::Gauge,
        "1 when the lake accepted this process's last probe object, else 0.",
        flag(state.catalog.lake_up()),
    );
    let jobs = state.jobs.snapshot();
    let mut runs = e.family(
        "bankpipe_scheduler_job_runs_total",
        Kind::Counter,
        "Scheduled job runs finished by this process since it started, by job and outcome.",
    );
    for (job, figures) in &jobs {
        for (status, n) in &figures.runs {
            runs.sample(&[("job", job), ("status", status)], *n as f64);
        }
    }
    let mut durations = e.family(
        "bankpipe_scheduler_job_duration_seconds",
        Kind::Histogram,
        "Seconds from the start of each scheduled job run (ok, failed, interrupted) to its \
         outcome, by job, since this process started.",
    );
    for (job, figures) in &jobs {
        durations.histogram(&[("job", job)], &figures.durations);
    }
    let mut next = e.family(
        "bankpipe_scheduler_next_run_timestamp_seconds",
        Kind::Gauge,
        "Next slot of each scheduled job, in seconds since the Unix epoch.",
    );
    for (job, figures) in &jobs {
        if let Some(at) = figures.next_run {
            next.sample(&[("job", job)], epoch_seconds(at));
        }
    }
    e.family(
        "bankpipe_build_info",
        Kind::Gauge,
        "Always 1; the version label is this binary's.",
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
}

fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_family_is_written_with_help_and_type() {
        let mut f = CatalogFigures::zeroed();
        f.rejected_by_rule.insert("invalid_amount".into(), 3);
        f.warnings_by_rule.insert("missing_location".into(), 2);
        f.amount_loaded.insert("INR".into(), "1234.50".into());
        f.last_successful_run = Some(1.7e9);
        f.exports = Some(crate::warehouse::figures::ExportFigures {
            last_success: 1.7e9,
            drift_flagged_features: 2,
        });
        let mut e = Exposition::new();
        write_catalog(&mut e, &f);
        let text = e.finish();
        for family in [
            "bankpipe_files_total",
            "bankpipe_rows_total",
            "bankpipe_rejected_rows_total",
            "bankpipe_warnings_total",
            "bankpipe_amount_loaded_total",
            "bankpipe_bytes_landed_total",
            "bankpipe_runs_total",
            "bankpipe_last_successful_run_timestamp_seconds",
            "bankpipe_runs_in_progress",
            "bankpipe_file_processing_seconds",
            "bankpipe_file_reject_ratio",
            "bankpipe_lake_objects",
            "bankpipe_export_last_success_timestamp_seconds",
            "bankpipe_export_drift_flagged_features",
        ] {
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
        assert!(text.contains("bankpipe_amount_loaded_total{currency=\"INR\"} 1234.5\n"));
        assert!(text.contains("bankpipe_lake_objects{state=\"unchecked\"} 0\n"));
        assert!(text.contains("bankpipe_file_processing_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("bankpipe_file_reject_ratio_bucket{le=\"0.05\"} 0\n"));
    }

    #[tokio::test]
    async fn a_stale_reading_is_served_when_no_new_one_comes() {
        let c = Catalog::new();
        assert!(c.fresh(MAX_AGE, Duration::from_millis(10)).await.is_none());
        c.publish(CatalogFigures::zeroed());
        let r = c.fresh(Duration::ZERO, Duration::from_millis(10)).await;
        assert!(r.is_some(), "the last reading, though older than asked");
    }
}
