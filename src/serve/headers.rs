//! The security headers every answer of `bankpipe serve` carries, set in one place (an
//! axum middleware over the whole router, the 404 and 405 answers included) so that no
//! route can forget them:
//!
//! | header | value | why |
//! |---|---|---|
//! | `X-Content-Type-Options` | `nosniff` | a browser never takes a JSON answer or the metrics text for HTML or script, whatever text from data they hold |
//! | `Referrer-Policy` | `no-referrer` | following a link of the page sends no URL of this server elsewhere |
//! | `Cache-Control` | `no-store` unless the route set its own | answers carry warehouse data (file names, rejected rows, with the token their raw text) and live state: no browser or proxy keeps a copy |
//! | `Content-Security-Policy` | `default-src 'none'; frame-ancestors 'none'` unless the route set its own | a JSON answer opened in a browser can load or run nothing, and no answer can be framed; the status page sets a policy of its own that allows exactly its inline style sheet (`page.rs`) |
//!
//! No `Strict-Transport-Security`: `serve` speaks plain HTTP on an internal network (TLS,
//! if any, ends in front of it, which is where that header belongs).

use axum::http::{HeaderValue, header};
use axum::response::Response;

/// The policy of every answer that does not set its own: nothing may be loaded, run or
/// framed.
pub(super) const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Adds the headers of the table above to `response`.
pub(super) async fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(DEFAULT_CSP));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[tokio::test]
    async fn defaults_are_added_and_a_routes_own_policy_is_kept() {
        let r = secure("{}".into_response()).await;
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["content-security-policy"], DEFAULT_CSP);

        let own = (
            [
                (header::CONTENT_SECURITY_POLICY, "default-src 'self'"),
                (header::CACHE_CONTROL, "max-age=60"),
            ],
            "x",
        )
            .into_response();
        let r = secure(own).await;
        assert_eq!(r.headers()["content-security-policy"], "default-src 'self'");
        assert_eq!(r.headers()["cache-control"], "max-age=60");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
}
