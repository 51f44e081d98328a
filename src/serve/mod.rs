//! `bankpipe serve`: the always-running half of bankpipe (issue #11). One process that
//! answers health and readiness probes, exposes Prometheus metrics, serves the status
//! page and the read API, and runs the schedule; it stops cleanly on SIGTERM/SIGINT.
//!
//! This module is the front door: it owns [`AppState`] (what every handler and the
//! scheduler share), assembles the [`Router`] from one sub-router per concern, and runs
//! the server until the shutdown signal. It does not answer any route itself:
//!
//! | file | owns |
//! |---|---|
//! | `health.rs` | `GET /health`, `GET /ready` |
//! | `metrics.rs` | `GET /metrics` and the catalog cache behind it |
//! | `api.rs` | the read API under `/api` |
//! | `page.rs` | the status page `GET /` |
//! | `scheduler.rs` | the schedule (jobs run in-process) |
//! | `runs.rs` | the one run of this process at a time (the API's and the schedule's) |
//! | `jobs.rs` | the scheduler's figures, read by `/metrics` and the page |
//! | `headers.rs` | the security headers of every answer (`nosniff`, `no-referrer`, `no-store`, a default `Content-Security-Policy`) |
//!
//! # The warehouse from async handlers
//!
//! The warehouse API is synchronous (rusqlite, the `postgres` crate). Handlers reach it
//! through [`AppState::with_warehouse`], which runs the closure on tokio's blocking pool
//! with a session from a small read-only [`Pool`]: the runtime's worker threads never
//! wait on SQL. Sessions are opened read-only (no migration, no write lock), so a
//! reader can open one while a load holds the SQLite write lock; a query that then waits
//! for that lock waits on a blocking thread, never on the runtime. `/metrics` and `/`
//! must answer within a second even then: they read the catalog figures that
//! `metrics::Catalog` refreshes in the background, never the warehouse on the request
//! path.
//!
//! # Shutdown
//!
//! SIGTERM or SIGINT cancels [`AppState::shutdown`]. The server stops accepting and
//! finishes the requests in flight (axum's graceful shutdown), the scheduler stops
//! starting jobs and lets the current one finish or roll back; `serve` waits for both
//! at most `--shutdown-timeout`, then exits 0. A load still running at that point is cut
//! by the process exit, which rolls its transaction back: nothing partial stays, and
//! the next run resumes the file.

mod api;
mod headers;
mod health;
pub mod jobs;
pub mod metrics;
mod page;
mod process;
pub mod runs;
mod scheduler;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::lake::{Lake, LakeError};
use crate::warehouse::pool::Pool;
use crate::warehouse::{Warehouse, WarehouseError};

pub use api::{ApiToken, MIN_TOKEN_LEN, TokenError};

/// Read-only warehouse sessions `serve` keeps open for its handlers (the scheduler's
/// jobs open their own, as `run` does), and so the most warehouse reads running at once.
const READ_SESSIONS: usize = 4;

/// What every handler and the scheduler share, behind an [`Arc`].
#[derive(Debug)]
pub struct AppState {
    /// The resolved configuration (warehouse and lake URLs, profiles, master key).
    pub config: Config,
    /// Cancelled on SIGTERM/SIGINT: the scheduler stops starting jobs and long tasks
    /// wind down. Clone it; wait with `cancelled().await`.
    pub shutdown: CancellationToken,
    /// The scheduler's figures (runs by job and status, next slots), read by `/metrics`
    /// and the status page, written by the scheduler.
    pub jobs: jobs::Jobs,
    /// Catalog figures for `/metrics` and the page, refreshed in the background.
    pub catalog: metrics::Catalog,
    /// When this process started (`process_start_time_seconds`).
    pub started_at: SystemTime,
    /// The API token (`BANKPIPE_API_TOKEN`): write endpoints and the raw text of
    /// rejected rows need it; `None`: write endpoints are off.
    api_token: Option<ApiToken>,
    /// The run in progress in this process (started by `POST /api/runs` or by the
    /// scheduled `ingest`): both take this one guard, so they never run side by side.
    runs: runs::RunGuard,
    pool: Arc<Pool>,
    /// One permit per pooled session: a read waits for one before it takes a blocking
    /// thread, so a burst of requests queues here instead of parking a thread each on
    /// the pool (50 connections of `wrk` on `/api/runs` grew the process to 78 threads).
    readers: Arc<tokio::sync::Semaphore>,
    lake: std::sync::Mutex<Option<Lake>>,
}

impl AppState {
    /// State for a server of `config`; opens nothing yet (sessions and the lake are
    /// opened on first use, so `serve` starts even while the warehouse is down).
    pub fn new(config: Config) -> Arc<AppState> {
        AppState::with_api_token(config, None)
    }

    /// [`AppState::new`] with the API token that write endpoints require.
    pub fn with_api_token(config: Config, api_token: Option<ApiToken>) -> Arc<AppState> {
        Arc::new(AppState {
            pool: Arc::new(Pool::read_only(&config.warehouse_url, READ_SESSIONS)),
            readers: Arc::new(tokio::sync::Semaphore::new(READ_SESSIONS)),
            config,
            shutdown: CancellationToken::new(),
            jobs: jobs::Jobs::default(),
            catalog: metrics::Catalog::new(),
            started_at: SystemTime::now(),
            api_token,
            runs: runs::RunGuard::default(),
            lake: std::sync::Mutex::new(None),
        })
    }

    /// Runs `query` with a read-only warehouse session on tokio's blocking pool, so an
    /// async handler never blocks the runtime. At most a few sessions are open and as
    /// many queries run at once; a call that finds them all busy waits for its turn
    /// without holding a thread (dropping the future while it waits leaves nothing
    /// behind). A session whose query failed with a transient error is closed rather
    /// than reused.
    ///
    /// # Errors
    /// Opening a session ([`Warehouse::open_read_only`]: unreachable, no warehouse,
    /// schema behind) or the query's own error.
    ///
    /// # Panics
    /// Re-raises a panic of `query`.
    pub async fn with_warehouse<T, F>(&self, query: F) -> Result<T, WarehouseError>
    where
        F: FnOnce(&mut Warehouse) -> Result<T, WarehouseError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = Arc::clone(&self.pool);
        // `None` only for a closed semaphore, which this one never is.
        let permit = Arc::clone(&self.readers).acquire_owned().await.ok();
        let task = tokio::task::spawn_blocking(move || {
            // Held until the query ends, also when the caller stopped waiting for it.
            let _permit = permit;
            let mut session = pool.checkout()?;
            let result = query(&mut session);
            let broken = result.as_ref().is_err_and(WarehouseError::is_transient);
            pool.checkin(session, broken);
            result
        });
        match task.await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Runs `op` on the lake (opened on first use, with the master key) on tokio's
    /// blocking pool: the lake's API blocks on the runtime itself.
    ///
    /// # Errors
    /// Opening the lake, or `op`'s error.
    ///
    /// # Panics
    /// Re-raises a panic of `op`.
    pub async fn with_lake<T, F>(self: &Arc<Self>, op: F) -> Result<T, LakeError>
    where
        F: FnOnce(&Lake) -> Result<T, LakeError> + Send + 'static,
        T: Send + 'static,
    {
        let state = Arc::clone(self);
        let runtime = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || {
            let lake = {
                let mut slot = state.lake.lock().unwrap_or_else(|p| p.into_inner());
                match &*slot {
                    Some(lake) => lake.clone(),
                    None => {
                        // A folder lake is created by the first run, not by `serve`: a
                        // mistyped path must not look ready.
                        if let Some(folder) = crate::lake::local_folder(&state.config.lake_url)
                            && !folder.is_dir()
                        {
                            return Err(LakeError::Setup {
                                role: "lake",
                                url: crate::redact::redact_url(&state.config.lake_url),
                                reason: format!(
                                    "no folder at {}: the first `bankpipe run` creates it; \
                                     check lake_url (BANKPIPE_LAKE_URL) or --data-dir",
                                    folder.display()
                                ),
                            });
                        }
                        let lake = Lake::open(&state.config.lake_url, runtime)?
                            .with_master_key(state.config.master_key.clone());
                        *slot = Some(lake.clone());
                        lake
                    }
                }
            };
            op(&lake)
        });
        match task.await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// The whole application: every route, no socket (tests call it with
/// `tower::ServiceExt::oneshot`). Every answer, an unknown path's 404 included, carries
/// the security headers of `serve/headers.rs`.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(health::router(state.clone()))
        .merge(metrics::router(state.clone()))
        .merge(api::router(state.clone()))
        .merge(page::router(state))
        .layer(axum::middleware::map_response(headers::secure))
}

/// How `serve` runs (from the command line; the rest comes from [`Config`]).
#[derive(Debug)]
pub struct ServeOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// How long a shutdown waits for requests and jobs in progress.
    pub shutdown_timeout: Duration,
    /// The API token ([`crate::config::api_token`]).
    pub api_token: Option<ApiToken>,
}

/// `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address cannot be bound (in use, or not an address of this host).
    #[error("cannot listen on {addr}: {source}; choose another with --listen or BANKPIPE_LISTEN")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The server stopped on an I/O error.
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves until SIGTERM/SIGINT, then shuts down within `options.shutdown_timeout`.
///
/// # Errors
/// [`ServeError::Bind`] when the address cannot be bound, [`ServeError::Io`] when the
/// server fails.
pub async fn serve(config: Config, options: ServeOptions) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    let state = AppState::with_api_token(config, options.api_token);
    let shutdown = state.shutdown.clone();
    tokio::spawn(signal_cancels(shutdown.clone()));
    let refresher = metrics::spawn_refresher(state.clone());
    let scheduler = scheduler::spawn(state.clone(), shutdown.clone(), options.shutdown_timeout);
    tracing::info!(
        %addr,
        warehouse = %crate::redact::redact_url(&state.config.warehouse_url),
        lake = %crate::redact::redact_url(&state.config.lake_url),
        "Serving."
    );
    let server = axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let mut server = tokio::spawn(server);
    // The server ends by itself only after the signal (or on an I/O error).
    let served = tokio::select! {
        // Both are ready together after a signal: the shutdown path must win.
        biased;
        () = shutdown.cancelled() => None,
        r = &mut server => Some(r),
    };
    if let Some(r) = served {
        shutdown.cancel();
        let _ = scheduler.await;
        refresher.abort();
        return match r {
            Ok(r) => r.map_err(ServeError::Io),
            Err(e) => Err(std::io::Error::other(e).into()),
        };
    }
    tracing::info!(
        timeout_s = options.shutdown_timeout.as_secs_f64(),
        "Shutting down: finishing requests and the job in progress."
    );
    let finished = tokio::time::timeout(options.shutdown_timeout, async {
        let (served, _, ()) = tokio::join!(server, scheduler, state.runs.idle());
        served
    })
    .await;
    refresher.abort();
    match finished {
        Ok(Ok(Ok(()))) => {
            tracing::info!("Stopped.");
            Ok(())
        }
        Ok(Ok(Err(e))) => Err(ServeError::Io(e)),
        Ok(Err(e)) => Err(std::io::Error::other(e).into()),
        Err(_) => {
            tracing::warn!(
                timeout_s = options.shutdown_timeout.as_secs_f64(),
                "Shutdown timeout reached: exiting with work in progress (an open load \
                 rolls back; the next run resumes its file)."
            );
            Ok(())
        }
    }
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT (Ctrl-C).
async fn signal_cancels(shutdown: CancellationToken) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "Cannot listen for SIGINT.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "Signal received."),
        () = terminate => tracing::info!(signal = "SIGTERM", "Signal received."),
        () = shutdown.cancelled() => {}
    }
    shutdown.cancel();
}
