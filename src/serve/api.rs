//! The read API (issue #11): `GET /api/runs`, `/api/files?status=`,
//! `/api/rejects?file=&rule=` (paged with `limit`/`cursor`), `/api/quarters`, the
//! OpenAPI 3 description at `/api/openapi.json`, and `POST /api/runs` (bearer token
//! `BANKPIPE_API_TOKEN`). Handlers read the warehouse through
//! [`AppState::with_warehouse`](super::AppState::with_warehouse).
//!
//! The routes are added by the read-API work; until then this router answers nothing.

use std::sync::Arc;

use axum::Router;

use super::AppState;

/// The `/api` routes.
pub(super) fn router(state: Arc<AppState>) -> Router {
    Router::new().with_state(state)
}
