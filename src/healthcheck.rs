//! `bankpipe healthcheck`: asks a running `bankpipe serve` whether it is ready, for a
//! container's `HEALTHCHECK` (the image carries no curl or wget) or any supervisor that
//! judges a service by an exit status.
//!
//! It sends `GET /ready` and reads the answer: 200 is ready; 503 carries the server's
//! own reason (`{"ready":false,"reason":"warehouse: …"}`), which becomes the one-line
//! message. Nothing answering, or an answer that is not bankpipe's, is not ready either,
//! said as such. The whole request is bounded by [`TIMEOUT`].
//!
//! The address is the `listen` setting `serve` itself resolves (flag, then
//! `BANKPIPE_LISTEN`, then `bankpipe.toml`), so the probe needs no setting of its own
//! inside the server's container; an unspecified address (`0.0.0.0`, `::`) is reached
//! on loopback. `--url` points it at another server.
//!
//! The HTTP client is the `reqwest` bankpipe already uses for the Pushgateway: one
//! client for every outgoing request, with timeouts, redirects and TLS (an `https://`
//! `--url` behind a proxy) handled, rather than a hand-written HTTP/1.1 exchange to keep
//! correct. It ignores `HTTP_PROXY`: a probe of this host's server must not take a
//! detour through a proxy.
//!
//! Not here: deciding what "ready" means (that is `serve`'s `/ready`, `serve::health`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long the whole probe may take. `/ready` bounds each of its own checks at 3 s
/// (`serve::health`), so this leaves it time to answer with its reason ("warehouse: no
/// answer within 3 s") rather than cutting it off; still well inside the 10 s a
/// container health check is given in `deploy/Dockerfile`.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why the server is not (known to be) ready. Every message is one line and holds no
/// password (URLs go through [`crate::redact::redact_url`]).
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// `--url` is not an `http(s)://host…` URL, or the `listen` address cannot be
    /// probed (port 0): a setting to fix (exit 2).
    #[error("{what}: {why}")]
    Setting {
        /// The setting and its value (redacted).
        what: String,
        /// What it must be.
        why: String,
    },
    /// The server answered 503: its own reason.
    #[error("not ready: {reason} ({url} answered 503)")]
    NotReady {
        /// The `/ready` URL (redacted).
        url: String,
        /// The server's reason, on one line.
        reason: String,
    },
    /// Nothing answered: connection refused, no route, a name that does not resolve.
    #[error("no answer from {url}: {reason} (is `bankpipe serve` running and listening there?)")]
    Unreachable {
        /// The `/ready` URL (redacted).
        url: String,
        /// The cause, on one line.
        reason: String,
    },
    /// Connected, but no whole answer within [`TIMEOUT`].
    #[error("no answer from {url} within {} s", .timeout.as_secs())]
    Timeout {
        /// The `/ready` URL (redacted).
        url: String,
        /// The bound that passed.
        timeout: Duration,
    },
    /// An answer other than 200 or 503: something else listens there, or a proxy in
    /// between refused.
    #[error("{url} answered {status}: {body} (not bankpipe serve's /ready?)")]
    Unexpected {
        /// The `/ready` URL (redacted).
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body, on one line.
        body: String,
    },
}

impl HealthcheckError {
    /// The exit status: 2 for a setting to fix (as every bankpipe command), 1 for a
    /// server that is not ready or not answering (a container health check counts any
    /// status but 0 as unhealthy; 1 is the one it documents).
    pub fn exit_code(&self) -> u8 {
        match self {
            HealthcheckError::Setting { .. } => 2,
            _ => 1,
        }
    }
}

/// The `/ready` URL of a server listening on `listen`: an unspecified address
/// (`0.0.0.0`, `::`, every interface) is reached on loopback of the same family.
///
/// # Errors
/// [`HealthcheckError::Setting`] for port 0 (the server chose its port: only `--url`
/// can name it).
pub fn url_for_listen(listen: SocketAddr) -> Result<url::Url, HealthcheckError> {
    if listen.port() == 0 {
        return Err(HealthcheckError::Setting {
            what: format!("listen address {listen}"),
            why: "port 0 lets serve choose its port, which the probe cannot know; \
                  give the server's URL with --url"
                .into(),
        });
    }
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let base = format!("http://{}/", SocketAddr::new(ip, listen.port()));
    ready_url(&base)
}

/// The `/ready` URL under the server URL `base` (`http://bankpipe:8000`, or a prefix a
/// proxy serves it under: `https://ops.example/bankpipe/` gives
/// `https://ops.example/bankpipe/ready`).
///
/// # Errors
/// [`HealthcheckError::Setting`] when `base` is not an `http(s)://host…` URL, or holds
/// a query or fragment (the path is where `/ready` goes).
pub fn ready_url(base: &str) -> Result<url::Url, HealthcheckError> {
    let invalid = |why: &str| HealthcheckError::Setting {
        what: format!("invalid --url {}", crate::redact::redact_url(base)),
        why: why.to_owned(),
    };
    let mut url = url::Url::parse(base.trim()).map_err(|e| {
        invalid(&format!(
            "{e}; give the server's URL, e.g. http://127.0.0.1:8000"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            "give the server's http(s) URL, e.g. http://127.0.0.1:8000",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "give the server's URL without a query or fragment: /ready is added to its path",
        ));
    }
    url.path_segments_mut()
        .map_err(|()| invalid("not a base URL"))?
        .pop_if_empty()
        .push("ready");
    Ok(url)
}

/// Asks `url` (from [`ready_url`] or [`url_for_listen`]) whether the server is ready,
/// within `timeout`.
///
/// # Errors
/// A [`HealthcheckError`] saying why not.
pub async fn check(url: &url::Url, timeout: Duration) -> Result<(), HealthcheckError> {
    let shown = crate::redact::redact_url(url.as_str());
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| HealthcheckError::Unreachable {
            url: shown.clone(),
            reason: one_line(&e),
        })?;
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            HealthcheckError::Timeout {
                url: shown.clone(),
                timeout,
            }
        } else {
            // reqwest's own text repeats the URL ("error sending request for url
            // (…)"): the causes alone say what happened.
            let reason = match std::error::Error::source(&e) {
                Some(cause) => one_line(cause),
                None => one_line(&e),
            };
            HealthcheckError::Unreachable {
                url: shown.clone(),
                reason: crate::redact::redact_url(&reason),
            }
        }
    };
    let response = client.get(url.clone()).send().await.map_err(failed)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(failed)?;
    judge(&shown, status, &body)
}

/// What an answer means: 200 ready, 503 not ready with the server's reason, anything
/// else not bankpipe's answer.
fn judge(url: &str, status: u16, body: &str) -> Result<(), HealthcheckError> {
    match status {
        200 => Ok(()),
        503 => {
            let reason = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_owned))
                .unwrap_or_else(|| body.to_owned());
            Err(HealthcheckError::NotReady {
                url: url.to_owned(),
                reason: flatten(&reason, 500),
            })
        }
        _ => Err(HealthcheckError::Unexpected {
            url: url.to_owned(),
            status,
            body: flatten(body, 200),
        }),
    }
}

/// `text` on one line (line breaks and runs of white space become one space), cut to
/// `max` characters: the message must stay one line in a container's health log.
fn flatten(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > max {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}…")
    } else if line.is_empty() {
        "(empty body)".to_owned()
    } else {
        line
    }
}

/// An error and its causes on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        // Some causes repeat their own cause's text: say it once.
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    flatten(&text, 500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback() {
        let url = |s: &str| url_for_listen(s.parse().unwrap()).unwrap().to_string();
        assert_eq!(url("0.0.0.0:8000"), "http://127.0.0.1:8000/ready");
        assert_eq!(url("[::]:8000"), "http://[::1]:8000/ready");
        assert_eq!(url("127.0.0.1:9100"), "http://127.0.0.1:9100/ready");
        assert_eq!(url("10.1.2.3:80"), "http://10.1.2.3/ready");
        assert_eq!(url("[fd00::5]:8000"), "http://[fd00::5]:8000/ready");
        let e = url_for_listen("127.0.0.1:0".parse().unwrap()).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--url"), "{e}");
    }

    #[test]
    fn ready_is_added_to_the_server_url() {
        let url = |s: &str| ready_url(s).map(|u| u.to_string());
        assert_eq!(
            url("http://bankpipe:8000").unwrap(),
            "http://bankpipe:8000/ready"
        );
        assert_eq!(
            url("http://bankpipe:8000/").unwrap(),
            "http://bankpipe:8000/ready"
        );
        assert_eq!(
            url("https://ops.example/bankpipe/").unwrap(),
            "https://ops.example/bankpipe/ready"
        );
        for bad in [
            "bankpipe:8000",
            "ftp://h/",
            "http://h/?x=1",
            "127.0.0.1:8000",
            "",
        ] {
            let e = ready_url(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
            assert!(e.to_string().starts_with("invalid --url"), "{bad}: {e}");
        }
        // A password in the URL is never echoed.
        let e = ready_url("ftp://u:Secr3t@h/").unwrap_err();
        assert!(!e.to_string().contains("Secr3t"), "{e}");
    }

    #[test]
    fn answers_are_judged_by_status_and_reason() {
        assert!(judge("u", 200, "{\"ready\":true}").is_ok());
        let e = judge(
            "http://127.0.0.1:8000/ready",
            503,
            "{\"ready\":false,\"reason\":\"warehouse: no warehouse at sqlite:///d/w.db\\n(run migrate)\"}",
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "not ready: warehouse: no warehouse at sqlite:///d/w.db (run migrate) \
             (http://127.0.0.1:8000/ready answered 503)"
        );
        let e = judge("u", 404, "<html>\n<h1>Not Found</h1>\n</html>").unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "u answered 404: <html> <h1>Not Found</h1> </html> (not bankpipe serve's /ready?)"
        );
        let long = "x".repeat(1000);
        let e = judge("u", 500, &long).unwrap_err().to_string();
        assert!(e.len() < 300 && !e.contains('\n'), "{e}");
        assert!(
            judge("u", 503, "")
                .unwrap_err()
                .to_string()
                .contains("(empty body)")
        );
    }
}
