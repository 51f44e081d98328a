//! The status page `GET /` (issue #11): server-rendered, self-contained HTML (no
//! external scripts, fonts or styles) refreshing itself: warehouse and lake state,
//! recent runs, files, rejects by rule as inline SVG, exported quarters with drift
//! flags, the schedule. It reads the cached catalog figures
//! ([`AppState::catalog`](super::AppState::catalog)) and the scheduler's
//! ([`AppState::jobs`](super::AppState::jobs)), so it answers within a second even
//! while a load holds the warehouse.
//!
//! The page is added by the status-page work; until then this router answers nothing.

use std::sync::Arc;

use axum::Router;

use super::AppState;

/// The `/` route.
pub(super) fn router(state: Arc<AppState>) -> Router {
    Router::new().with_state(state)
}
