//! The read API (issue #11), JSON under `/api`, described by the OpenAPI 3 document it
//! serves at `/api/openapi.json` (`api/openapi.json`, hand-written; a unit test keeps
//! its closed sets equal to the code's):
//!
//! | route | answers |
//! |---|---|
//! | `GET /api/runs?limit=&cursor=` | runs, newest first: `status --json`'s `recent_runs` fields, plus `host`, `pid`, `counts` |
//! | `POST /api/runs` | starts a run now (token): 202 `{run_id}`, 409 while one runs ([`trigger`]) |
//! | `GET /api/files?status=&limit=&cursor=` | the catalog as `files --json` prints it, oldest first |
//! | `GET /api/rejects?file=&rule=&limit=&cursor=` | rejected rows as `rejects --json` prints them; `raw` only with the token |
//! | `GET /api/quarters` | exported quarter versions with their drift flags (`exports`, schema 11) |
//!
//! Lists come in pages: `{"<list>": [...], "next_cursor": "..."|null}`, `limit` 1 to
//! 1000 (default 100), keyset cursors ([`params`]).
//!
//! # Errors
//!
//! Every error is JSON `{"error": code, "message": text}`. A bad parameter is a 400
//! naming it (an unknown or repeated parameter too); no client input leads to a 5xx. A
//! warehouse that does not answer within [`READ_TIMEOUT`] (a load holding SQLite's
//! lock), is down, or is not there yet is a 503 with `Retry-After`; any other failure
//! is a 500 whose details go to the log only.
//!
//! # The token
//!
//! [`auth`]: `Authorization: Bearer <BANKPIPE_API_TOKEN>`. Write endpoints answer 403
//! while no token is configured (saying how to set one), 401 without it or with another.
//! The raw text of rejected rows (personal data) is listed only with the token, as only
//! the roles above `bankpipe_reader` may read it; on PostgreSQL the session's role
//! must also be allowed to (`raw_text` says which applies).

mod auth;
mod params;
mod trigger;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub use auth::{ApiToken, MIN_TOKEN_LEN, TokenError};

use self::auth::Access;
use self::params::{BadParam, Params};
use super::AppState;
use crate::warehouse::listing::RejectQuery;
use crate::warehouse::{Fault, FileFilter, WarehouseError};

/// How long a request waits for the warehouse before answering 503.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The OpenAPI 3.0 description of these routes.
const OPENAPI: &str = include_str!("api/openapi.json");

/// The `/api` routes.
pub(super) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/runs", get(runs).post(start_run))
        .route("/api/files", get(files))
        .route("/api/rejects", get(rejects))
        .route("/api/quarters", get(quarters))
        .route("/api/openapi.json", get(openapi))
        .with_state(state)
}

/// An error answer: `{"error": code, "message": text}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    challenge: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: String) -> ApiError {
        ApiError {
            status,
            code,
            message,
            retry_after: None,
            challenge: None,
        }
    }

    /// 503: the warehouse (or the lake) cannot serve the request now.
    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                message.into(),
            )
        }
    }

    /// 500 without details (they are logged where the failure is).
    pub(crate) fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log says more".into(),
        )
    }

    fn warehouse(e: &WarehouseError) -> ApiError {
        match e.fault() {
            Fault::Setup | Fault::Transient => ApiError::unavailable(format!(
                "the warehouse cannot answer: {}",
                crate::redact::redact_url(&e.to_string())
            )),
            Fault::Other => {
                tracing::error!(error = %e, "Read API query failed.");
                ApiError::internal()
            }
        }
    }
}

impl From<BadParam> for ApiError {
    fn from(e: BadParam) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({ "error": self.code, "message": self.message })),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(s) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(c) = self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        response
    }
}

/// Runs `query` on a read-only session, giving up after [`READ_TIMEOUT`] (the query
/// goes on on its blocking thread; its session returns to the pool when it ends).
async fn read<T, F>(state: &AppState, query: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut crate::warehouse::Warehouse) -> Result<T, WarehouseError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::time::timeout(READ_TIMEOUT, state.with_warehouse(query)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::warehouse(&e)),
        Err(_) => Err(ApiError::unavailable(format!(
            "the warehouse did not answer within {} s (a load may be holding it); retry",
            READ_TIMEOUT.as_secs()
        ))),
    }
}

/// `{"<list>": rows, "next_cursor": ...}`.
fn page(
    list: &str,
    rows: serde_json::Value,
    next_cursor: Option<String>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut body = serde_json::Map::new();
    body.insert(list.to_owned(), rows);
    body.insert("next_cursor".to_owned(), json!(next_cursor));
    body
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|e| {
        tracing::error!(error = %e, "Cannot serialise an API answer.");
        ApiError::internal()
    })
}

async fn runs(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(query.as_deref(), &["limit", "cursor"])?;
    let limit = p.limit()?;
    let before = p.cursor("runs", params::run_position)?;
    let mut rows = read(&state, move |w| w.runs_page(before.as_deref(), limit + 1)).await?;
    let next = (rows.len() as u64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| r.run.run_id.clone())
            .unwrap_or_default()
    });
    Ok(Json(page("runs", to_json(&rows)?, next)).into_response())
}

async fn files(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(query.as_deref(), &["status", "limit", "cursor"])?;
    let filter = FileFilter {
        status: p.file_status()?,
        after: p.cursor("files", params::file_position)?,
        limit: Some(p.limit()? + 1),
        ..FileFilter::default()
    };
    let limit = p.limit()?;
    let mut rows = read(&state, move |w| w.files_matching(&filter)).await?;
    let next = (rows.len() as u64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last()
            .map(|f| f.file_id.to_string())
            .unwrap_or_default()
    });
    Ok(Json(page("files", to_json(&rows)?, next)).into_response())
}

async fn rejects(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let access = auth::access(state.api_token.as_ref(), &headers);
    if access == Access::Wrong {
        return Err(unauthorized(access));
    }
    let p = Params::parse(query.as_deref(), &["file", "rule", "limit", "cursor"])?;
    let q = RejectQuery {
        file_id: p.file_id()?,
        rule: p.reject_rule()?,
        after: p.cursor("rejects", params::reject_position)?,
        limit: p.limit()?,
        with_raw: access == Access::Granted,
    };
    let with_raw = q.with_raw;
    let page_read = read(&state, move |w| w.rejects_page(&q)).await?;
    let raw_text = if !with_raw {
        "needs_token"
    } else if page_read.rows.iter().all(|r| r.raw_read) {
        "shown"
    } else {
        "role_cannot_read"
    };
    let mut rows = Vec::with_capacity(page_read.rows.len());
    for r in &page_read.rows {
        let mut v = to_json(&r.entry)?;
        if !r.raw_read {
            v["raw"] = serde_json::Value::Null;
        }
        rows.push(v);
    }
    let mut body = page(
        "rejects",
        serde_json::Value::Array(rows),
        page_read.next.map(params::reject_cursor),
    );
    body.insert("raw_text".to_owned(), json!(raw_text));
    Ok(Json(body).into_response())
}

async fn quarters(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(query.as_deref(), &[])?;
    let rows = read(&state, |w| w.exported_quarters()).await?;
    Ok(Json(json!({ "quarters": to_json(&rows)? })).into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn start_run(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    match auth::access(state.api_token.as_ref(), &headers) {
        Access::Granted => {}
        Access::NotConfigured => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "write endpoints are disabled: no API token is configured. Set \
                     BANKPIPE_API_TOKEN (or BANKPIPE_API_TOKEN_FILE, a file holding it) to a \
                     secret of at least {MIN_TOKEN_LEN} characters, restart `bankpipe serve`, \
                     and send `Authorization: Bearer <token>`"
                ),
            ));
        }
        other => return Err(unauthorized(other)),
    }
    Params::parse(query.as_deref(), &[])?;
    Ok(trigger::start(state).await)
}

fn unauthorized(access: Access) -> ApiError {
    let (message, challenge) = if access == Access::Missing {
        (
            "this needs the API token: send `Authorization: Bearer <token>`",
            "Bearer realm=\"bankpipe\"",
        )
    } else {
        (
            "the bearer token is not the API token",
            "Bearer realm=\"bankpipe\", error=\"invalid_token\"",
        )
    };
    ApiError {
        challenge: Some(challenge),
        ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message.into())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn parameter<'a>(doc: &'a Value, path: &str, name: &str) -> &'a Value {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let found = params.iter().find_map(|p| {
            let p = match p["$ref"].as_str() {
                Some(r) => &doc["components"]["parameters"][r.rsplit('/').next().unwrap()],
                None => p,
            };
            (p["name"] == name).then_some(p)
        });
        found.unwrap_or_else(|| panic!("{path} has no parameter {name}"))
    }

    #[test]
    fn the_openapi_description_matches_the_code() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        for (path, methods) in [
            ("/api/runs", &["get", "post"][..]),
            ("/api/files", &["get"]),
            ("/api/rejects", &["get"]),
            ("/api/quarters", &["get"]),
            ("/api/openapi.json", &["get"]),
        ] {
            let item = doc["paths"][path].as_object().unwrap();
            let mut documented: Vec<&str> = item.keys().map(String::as_str).collect();
            documented.sort_unstable();
            assert_eq!(documented, methods, "{path}");
        }
        let rules: Vec<&str> = parameter(&doc, "/api/rejects", "rule")["schema"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(rules, params::reject_rules());
        let limit = &parameter(&doc, "/api/runs", "limit")["schema"];
        assert_eq!(limit["maximum"], params::MAX_LIMIT);
        assert_eq!(limit["default"], params::DEFAULT_LIMIT);
        let codes = &doc["components"]["schemas"]["Error"]["properties"]["error"]["enum"];
        for code in [
            "bad_request",
            "unauthorized",
            "forbidden",
            "unavailable",
            "internal",
            "run_not_started",
        ] {
            assert!(codes.as_array().unwrap().contains(&json!(code)), "{code}");
        }
        // Every schema-valid cursor is one the parser accepts (and the examples match).
        for (path, example) in [
            ("/api/runs", "0190a1b2-0000-7000-8000-00000000000a"),
            ("/api/files", "42"),
            ("/api/rejects", "3.17.2"),
        ] {
            let pattern = parameter(&doc, path, "cursor")["schema"]["pattern"]
                .as_str()
                .unwrap();
            assert!(pattern.starts_with('^') && pattern.ends_with('$'), "{path}");
            let parsed = match path {
                "/api/runs" => params::run_position(example).is_some(),
                "/api/files" => params::file_position(example).is_some(),
                _ => params::reject_position(example).is_some(),
            };
            assert!(parsed, "{path} {example}");
        }
    }
}
