//! The schedule inside `serve` (issue #11): `[schedule]` jobs (`ingest`, `export`,
//! `verify`, cron expressions in a `timezone`), each slot claimed in the warehouse
//! before it runs so it runs exactly once across `serve` instances, run in-process.
//! Figures go to [`AppState::jobs`](super::AppState::jobs).
//!
//! The scheduler is added by the scheduler work; until then the task only waits for
//! the shutdown signal.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::AppState;

/// Starts the scheduler. The task ends once `shutdown` is cancelled and the job in
/// progress (if any) has finished or rolled back; `serve` waits for it at most
/// `--shutdown-timeout`.
pub(super) fn spawn(state: Arc<AppState>, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _state = state;
        shutdown.cancelled().await;
    })
}
