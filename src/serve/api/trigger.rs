//! `POST /api/runs`: start a run now, in this process, through the front door of
//! `bankpipe run` ([`crate::commands::ingest_as`]), on a thread of its own (the
//! pipeline blocks).
//!
//! - **One at a time:** the process's [`RunGuard`](crate::serve::runs::RunGuard) (in
//!   [`AppState`]) holds the run in progress, whether this API or the scheduler's
//!   `ingest` started it; a request meanwhile gets 409 naming it. On SQLite a run of
//!   any process holds the warehouse's run lock ([`crate::pipeline::run_lock_held`]):
//!   409 too (a `bankpipe run` from cron). On PostgreSQL runs of other processes are
//!   not refused: they share the inbox through claims, each file is loaded once
//!   whoever claims it.
//! - **Answered once the run can start:** the warehouse and the lake are open and the
//!   master key checked (202 with the run id the run records), or they are not (503
//!   for an unreachable warehouse or lake, 500 for a setting to fix, with the run's own
//!   message, which holds no secret). The run then waits for the SQLite run lock if a
//!   run of another process took it in between.
//! - **Shutdown:** SIGTERM asks the run to stop between files (as the scheduler's
//!   `ingest`); `serve` waits for it within `--shutdown-timeout`
//!   ([`RunGuard::idle`](crate::serve::runs::RunGuard::idle)).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use super::ApiError;
use crate::commands::Failure;
use crate::serve::AppState;
use crate::serve::runs::{ActiveRun, RunOrigin};

/// How long `POST /api/runs` waits for the run to open the warehouse and the lake
/// before answering 202 anyway (the run goes on; PostgreSQL retries a refused
/// connection for a few seconds).
const OPEN_WAIT: Duration = Duration::from_secs(10);

/// Starts a run; the caller has checked the token.
pub(super) async fn start(state: Arc<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return ApiError::unavailable("serve is shutting down: no new run is started")
            .into_response();
    }
    let run_id = crate::pipeline::new_run_id();
    // Released when the run's thread ends, however it ends.
    let ticket = match state.runs.try_take(ActiveRun {
        run_id: run_id.clone(),
        origin: RunOrigin::Api,
    }) {
        Ok(ticket) => ticket,
        Err(running) => {
            return conflict(
                format!(
                    "{} is still running in this server; retry when it ends",
                    running.describe()
                ),
                Some(running.run_id),
            );
        }
    };
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
    let watched = run_id.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = watcher.shutdown.cancelled() => stop.store(true, Ordering::Relaxed),
            () = watcher.runs.released(&watched) => {}
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
