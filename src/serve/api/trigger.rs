//! `POST /api/runs`: start a run now, in this process, through the front door of
//! `bankpipe run` ([`crate::commands::ingest_as`]), on a thread of its own (the
//! pipeline blocks).
//!
//! - **One at a time:** [`RunGuard`] (in [`AppState`]) holds the run this process
//!   started; another request meanwhile gets 409 naming it. On SQLite a run of any
//!   process holds the warehouse's run lock ([`crate::pipeline::run_lock_held`]): 409
//!   too (that covers a scheduled `ingest` of this `serve` and a `bankpipe run` from
//!   cron). On PostgreSQL runs of other processes are not refused: they share the inbox
//!   through claims, each file is loaded once whoever claims it.
//! - **Answered once the run can start:** the warehouse and the lake are open and the
//!   master key checked (202 with the run id the run records), or they are not (503
//!   for an unreachable warehouse or lake, 500 for a setting to fix, with the run's own
//!   message, which holds no secret). The run then waits for the SQLite run lock if a
//!   run of another process took it in between.
//! - **Shutdown:** SIGTERM asks the run to stop between files (as the scheduler's
//!   `ingest`); `serve` waits for it within `--shutdown-timeout`
//!   ([`RunGuard::idle`]).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::{oneshot, watch};

use super::ApiError;
use crate::commands::Failure;
use crate::serve::AppState;

/// How long `POST /api/runs` waits for the run to open the warehouse and the lake
/// before answering 202 anyway (the run goes on; PostgreSQL retries a refused
/// connection for a few seconds).
const OPEN_WAIT: Duration = Duration::from_secs(10);

/// The run this process started through the API, if one is running.
#[derive(Debug)]
pub struct RunGuard {
    current: watch::Sender<Option<String>>,
}

impl Default for RunGuard {
    fn default() -> RunGuard {
        RunGuard {
            current: watch::Sender::new(None),
        }
    }
}

impl RunGuard {
    /// The id of the run in progress, if any.
    pub fn current(&self) -> Option<String> {
        self.current.borrow().clone()
    }

    /// Marks `run_id` running unless another run is: then its id.
    fn try_start(&self, run_id: &str) -> Result<(), String> {
        let mut running = None;
        self.current.send_if_modified(|current| match current {
            Some(other) => {
                running = Some(other.clone());
                false
            }
            None => {
                *current = Some(run_id.to_owned());
                true
            }
        });
        running.map_or(Ok(()), Err)
    }

    fn finish(&self) {
        self.current.send_replace(None);
    }

    /// Resolves once no run started by the API is in progress.
    pub async fn idle(&self) {
        let mut rx = self.current.subscribe();
        // The sender lives in AppState, which outlives every waiter.
        let _ = rx.wait_for(Option::is_none).await;
    }
}

/// Releases the guard when the run's thread ends, however it ends.
struct Ticket(Arc<AppState>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.runs.finish();
    }
}

/// Starts a run; the caller has checked the token.
pub(super) async fn start(state: Arc<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return ApiError::unavailable("serve is shutting down: no new run is started")
            .into_response();
    }
    let run_id = crate::pipeline::new_run_id();
    if let Err(running) = state.runs.try_start(&run_id) {
        return conflict(
            format!("run {running} started by this server is still running; retry when it ends"),
            Some(running),
        );
    }
    let ticket = Ticket(Arc::clone(&state));
    if crate::pipeline::run_lock_held(&state.config) {
        drop(ticket);
        return conflict(
            "another run is using this warehouse (it holds the run lock: a scheduled ingest, or \
             `bankpipe run` elsewhere); retry when it ends"
                .into(),
            None,
        );
    }
    let (opened_tx, opened_rx) = oneshot::channel::<Result<(), Failure>>();
    let stop = Arc::new(AtomicBool::new(false));
    let config = state.config.clone();
    let thread_stop = Arc::clone(&stop);
    let thread_run_id = run_id.clone();
    let spawned = std::thread::Builder::new()
        .name("bankpipe-api-run".into())
        .spawn(move || {
            let _ticket = ticket;
            let mut opened_tx = Some(opened_tx);
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                crate::commands::ingest_as(&config, &thread_stop, thread_run_id.clone(), || {
                    if let Some(tx) = opened_tx.take() {
                        // The request may have given up waiting: the run goes on.
                        let _ = tx.send(Ok(()));
                    }
                })
            }));
            let run_id = thread_run_id;
            match result {
                Ok(Ok(Ok(report))) => {
                    tracing::info!(run_id, status = %report.status, "Run started by the API finished.");
                }
                Ok(Ok(Err(stopped))) => {
                    tracing::error!(run_id, error = %stopped.error, "Run started by the API stopped.");
                }
                Ok(Err(failure)) => {
                    tracing::error!(run_id, error = %failure.message, "Run started by the API could not start.");
                    if let Some(tx) = opened_tx.take() {
                        let _ = tx.send(Err(failure));
                    }
                }
                Err(_) => tracing::error!(run_id, "Run started by the API panicked (a bug)."),
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "Cannot start a thread for the run.");
        return ApiError::internal().into_response();
    }
    // SIGTERM asks the run to stop between files.
    let watcher = Arc::clone(&state);
    tokio::spawn(async move {
        tokio::select! {
            () = watcher.shutdown.cancelled() => stop.store(true, Ordering::Relaxed),
            () = watcher.runs.idle() => {}
        }
    });
    match tokio::time::timeout(OPEN_WAIT, opened_rx).await {
        Ok(Ok(Err(failure))) => failed_to_start(&failure),
        // The thread ended without a word: it panicked (logged there).
        Ok(Err(_)) => ApiError::internal().into_response(),
        // Opened, or still opening past OPEN_WAIT (PostgreSQL retrying a refusal).
        Ok(Ok(Ok(()))) | Err(_) => {
            tracing::info!(run_id, "Run started by the API.");
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({ "run_id": run_id, "status": "started" })),
            )
                .into_response()
        }
    }
}

fn conflict(message: String, run_id: Option<String>) -> Response {
    (
        StatusCode::CONFLICT,
        axum::Json(serde_json::json!({
            "error": "run_in_progress",
            "message": message,
            "run_id": run_id,
        })),
    )
        .into_response()
}

/// A run that could not start: exit status 3 (unreachable) is the service being
/// unavailable; anything else a setting to fix on the server.
fn failed_to_start(failure: &Failure) -> Response {
    let message = format!("the run could not start: {}", failure.message);
    if failure.code == 3 {
        ApiError::unavailable(message).into_response()
    } else {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "run_not_started",
            message,
        )
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_run_at_a_time_and_idle_when_it_ends() {
        let g = RunGuard::default();
        assert_eq!(g.current(), None);
        g.try_start("a").unwrap();
        assert_eq!(g.try_start("b"), Err("a".to_owned()));
        assert_eq!(g.current().as_deref(), Some("a"));
        let idle = tokio::time::timeout(Duration::from_millis(50), g.idle()).await;
        assert!(idle.is_err(), "not idle while a run is in progress");
        g.finish();
        tokio::time::timeout(Duration::from_secs(1), g.idle())
            .await
            .unwrap();
        g.try_start("b").unwrap();
    }
}
