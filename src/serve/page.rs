//! The status page `GET /` (issue #11): one server-rendered, self-contained HTML page
//! (inline CSS and SVG; no script, font, style sheet or image from anywhere, which a
//! `Content-Security-Policy` header also enforces) that refreshes itself every
//! [`REFRESH_SECONDS`]: warehouse and lake state, recent runs, files with their status
//! and counts, rejected rows by rule as a bar chart, exported quarters with their drift
//! flags, and the schedule. What it shows and how is in [`html`]; this module gathers it.
//!
//! # Answering within a second while a load holds the warehouse
//!
//! Two sources, each bounded in time, read concurrently:
//!
//! - the catalog figures (counts by status and rule, totals) that `/metrics` serves,
//!   refreshed in the background ([`AppState::catalog`](super::AppState::catalog)),
//!   waited for at most [`FIGURES_WAIT`];
//! - the details (recent runs, latest files, exported quarters, the schedule's last
//!   outcomes): one read-only query batch, at most one in flight for the whole server,
//!   waited for at most [`DETAILS_WAIT`]. When it does not come in time (a load
//!   holding SQLite's lock, a warehouse down), the page shows the last details read,
//!   with their age, and says why they are not fresh; the read goes on and the next
//!   request gets its result.
//!
//! The scheduler's own figures (next slot, last outcome in this process) come from
//! [`AppState::jobs`](super::AppState::jobs), in memory.

mod html;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::AppState;
use super::metrics::MAX_AGE;
use crate::schedule::JobStatus;
use crate::warehouse::listing::{ExportedQuarter, RunRecord};
use crate::warehouse::{FileEntry, FileFilter};

/// The page reloads itself this often (`<meta http-equiv="refresh">`).
pub const REFRESH_SECONDS: u32 = 30;
/// How long a request waits for fresh catalog figures.
const FIGURES_WAIT: Duration = Duration::from_millis(300);
/// How long a request waits for the details read.
const DETAILS_WAIT: Duration = Duration::from_millis(600);
/// Runs listed.
const RECENT_RUNS: u64 = 10;
/// Files listed (newest first; the counts by status cover every file).
const RECENT_FILES: u64 = 20;

/// What the page reads from the warehouse besides the catalog figures.
#[derive(Debug)]
struct Details {
    runs: Vec<RunRecord>,
    files: Vec<FileEntry>,
    quarters: Vec<ExportedQuarter>,
    schedule: Vec<JobStatus>,
    read_at: Instant,
}

type DetailsRead = Shared<BoxFuture<'static, Result<Arc<Details>, String>>>;

/// The page's state: the server's, the last details read, and the read in flight.
struct PageState {
    app: Arc<AppState>,
    last: Mutex<Option<Arc<Details>>>,
    inflight: Mutex<Option<DetailsRead>>,
}

/// The `/` route.
pub(super) fn router(state: Arc<AppState>) -> Router {
    let page = Arc::new(PageState {
        app: state,
        last: Mutex::new(None),
        inflight: Mutex::new(None),
    });
    Router::new().route("/", get(status_page)).with_state(page)
}

async fn status_page(State(page): State<Arc<PageState>>) -> Response {
    let (figures, details) = tokio::join!(
        page.app.catalog.fresh(MAX_AGE, FIGURES_WAIT),
        page.details(),
    );
    let app = &page.app;
    let view = html::View {
        now: chrono::Utc::now(),
        warehouse: crate::redact::redact_url(&app.config.warehouse_url),
        lake: crate::redact::redact_url(&app.config.lake_url),
        warehouse_up: app.catalog.warehouse_up(),
        lake_up: app.catalog.lake_up(),
        figures: figures
            .as_deref()
            .map(|r| (&r.figures, r.read_at.elapsed())),
        details: details.0.as_deref().map(|d| html::Details {
            runs: &d.runs,
            files: &d.files,
            quarters: &d.quarters,
            schedule: &d.schedule,
            age: d.read_at.elapsed(),
        }),
        details_problem: details.1,
        schedule: &app.config.schedule,
        jobs: app.jobs.snapshot(),
        run_here: app.runs.current(),
        refresh_seconds: REFRESH_SECONDS,
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                html::content_security_policy(),
            ),
        ],
        html::render(&view),
    )
        .into_response()
}

impl PageState {
    /// The freshest details within [`DETAILS_WAIT`], else the last ones read (if any)
    /// with why they are not fresh.
    async fn details(&self) -> (Option<Arc<Details>>, Option<String>) {
        let read = self.read();
        let problem = match tokio::time::timeout(DETAILS_WAIT, read).await {
            Ok(Ok(details)) => {
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&details));
                return (Some(details), None);
            }
            Ok(Err(e)) => e,
            Err(_) => format!(
                "the warehouse did not answer within {:.1} s (a load may be holding it)",
                DETAILS_WAIT.as_secs_f64()
            ),
        };
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (last, Some(problem))
    }

    /// The read in flight, or a new one when the last has ended: at most one at a time,
    /// however many requests come while the warehouse is held.
    fn read(&self) -> DetailsRead {
        let mut slot = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(read) = slot.as_ref()
            && read.peek().is_none()
        {
            return read.clone();
        }
        let app = Arc::clone(&self.app);
        let schedule = app.config.schedule.clone();
        let task = tokio::spawn(async move {
            app.with_warehouse(move |w| {
                let runs = w.runs_page(None, RECENT_RUNS)?;
                let files = w.files_matching(&FileFilter {
                    limit: Some(RECENT_FILES),
                    newest_first: true,
                    ..FileFilter::default()
                })?;
                let quarters = w.exported_quarters()?;
                let schedule = crate::schedule::overview(&schedule, w, chrono::Utc::now())?;
                Ok(Details {
                    runs,
                    files,
                    quarters,
                    schedule,
                    read_at: Instant::now(),
                })
            })
            .await
        });
        let read = async move {
            match task.await {
                Ok(Ok(details)) => Ok(Arc::new(details)),
                Ok(Err(e)) => Err(format!(
                    "the warehouse cannot answer: {}",
                    crate::redact::redact_url(&e.to_string())
                )),
                Err(e) => {
                    tracing::error!(error = %e, "Status page read failed.");
                    Err("the read failed (see the server log)".to_owned())
                }
            }
        }
        .boxed()
        .shared();
        *slot = Some(read.clone());
        read
    }
}
