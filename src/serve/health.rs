//! Liveness and readiness probes.
//!
//! - `GET /health`: 200 while the process runs; it touches nothing, so it answers even
//!   while a load holds the warehouse.
//! - `GET /ready`: 200 `{"ready":true}` only when the warehouse answers (a read-only
//!   session opens and responds) and the lake accepts a probe object (written and
//!   deleted: the pipeline needs to write there); otherwise 503
//!   `{"ready":false,"reason":"..."}`. Each check is bounded by [`CHECK_TIMEOUT`]. The
//!   reason names what failed with URLs redacted ([`crate::redact`]); no secret in it.
//!   `serve` creates neither: before the first `run` there is no warehouse and no lake
//!   folder, and `/ready` says so.
//!
//! Each check also sets `bankpipe_warehouse_up` / `bankpipe_lake_up`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;

/// How long a readiness check may take before it counts as not answering.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// `/health` and `/ready`.
pub(super) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state)
}

async fn health() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let (warehouse, lake) = tokio::join!(check_warehouse(&state), check_lake(&state));
    let reasons: Vec<String> = [warehouse, lake]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if reasons.is_empty() {
        Json(serde_json::json!({ "ready": true })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "ready": false, "reason": reasons.join("; ") })),
        )
            .into_response()
    }
}

/// Whether the warehouse answers now; sets `bankpipe_warehouse_up`.
///
/// # Errors
/// Why not, without secrets.
pub(crate) async fn check_warehouse(state: &AppState) -> Result<(), String> {
    let check = state.with_warehouse(|w| {
        if w.is_alive() {
            Ok(())
        } else {
            Err(crate::warehouse::WarehouseError::Unreachable {
                url: w.display_url(),
                reason: "the session stopped answering".into(),
            })
        }
    });
    let result = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "warehouse: {}",
            crate::redact::redact_url(&e.to_string())
        )),
        Err(_) => Err(format!(
            "warehouse: no answer within {} s",
            CHECK_TIMEOUT.as_secs()
        )),
    };
    state.catalog.set_warehouse_up(result.is_ok());
    result
}

/// Whether the lake accepts a probe object now; sets `bankpipe_lake_up`.
///
/// # Errors
/// Why not, without secrets.
pub(crate) async fn check_lake(state: &Arc<AppState>) -> Result<(), String> {
    let check = state.with_lake(crate::lake::Lake::check);
    let result = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "lake: {}",
            crate::redact::redact_url(&e.to_string())
        )),
        Err(_) => Err(format!(
            "lake: no answer within {} s",
            CHECK_TIMEOUT.as_secs()
        )),
    };
    state.catalog.set_lake_up(result.is_ok());
    result
}
