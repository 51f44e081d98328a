//! `GET /metrics`: Prometheus text exposition of this process and of the warehouse
//! catalog.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;

use super::AppState;
use crate::metrics::{Exposition, Kind};

/// How often the background task checks the warehouse and the lake.
const REFRESH_EVERY: Duration = Duration::from_secs(15);

/// The catalog figures and the up/down state of the warehouse and lake, as last read
/// in the background.
#[derive(Debug, Default)]
pub struct Catalog {
    warehouse_up: AtomicU8,
    lake_up: AtomicU8,
}

impl Catalog {
    /// Nothing read yet.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Records whether the warehouse answered its last check.
    pub fn set_warehouse_up(&self, up: bool) {
        self.warehouse_up.store(u8::from(up), Ordering::Relaxed);
    }

    /// Records whether the lake answered its last check.
    pub fn set_lake_up(&self, up: bool) {
        self.lake_up.store(u8::from(up), Ordering::Relaxed);
    }
}

/// Starts the task that keeps [`Catalog`] current.
pub(super) fn spawn_refresher(state: Arc<AppState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let _ = tokio::join!(
                super::health::check_warehouse(&state),
                super::health::check_lake(&state)
            );
            tokio::select! {
                () = tokio::time::sleep(REFRESH_EVERY) => {}
                () = state.shutdown.cancelled() => return,
            }
        }
    })
}

/// The `/metrics` route.
pub(super) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut e = Exposition::new();
    e.single(
        "bankpipe_warehouse_up",
        Kind::Gauge,
        "1 when the warehouse answered this process's last check, else 0.",
        f64::from(state.catalog.warehouse_up.load(Ordering::Relaxed)),
    );
    e.single(
        "bankpipe_lake_up",
        Kind::Gauge,
        "1 when the lake accepted this process's last probe object, else 0.",
        f64::from(state.catalog.lake_up.load(Ordering::Relaxed)),
    );
    e.family(
        "bankpipe_build_info",
        Kind::Gauge,
        "Always 1; the version label is this binary's.",
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        e.finish(),
    )
}
