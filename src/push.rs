//! A one-shot run's own figures for Prometheus (issue #11), for runs started by cron or
//! a Kubernetes Job, where nothing stays up to be scraped:
//!
//! - `run --pushgateway URL`: `PUT URL/metrics/job/bankpipe_run/instance/<host>` to a
//!   Prometheus Pushgateway. PUT replaces every metric of that group, so the gateway
//!   always holds the last run of each host, never a mix of two.
//! - `run --metrics-file PATH`: the same text in a file for node_exporter's textfile
//!   collector (`--collector.textfile.directory`; the name must end in `.prom`),
//!   written to a temporary file in the same folder and renamed over `PATH`, so the
//!   collector never reads half a file.
//!
//! These are the figures of this run only, as gauges named `bankpipe_run_*` (a pushed
//! value is replaced by the next run's, it does not accumulate): the totals of every
//! run and worker come from `serve`'s `/metrics`, which reads the catalog. The distinct
//! prefix keeps the two from adding up in a query. Metric names are written here and
//! nowhere else.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::metrics::{Exposition, Kind};
use crate::report::RunReport;

/// The Pushgateway job every run pushes under.
pub const JOB: &str = "bankpipe_run";

/// How long a push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A push or a metrics file that failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The Pushgateway URL is not an `http(s)://` URL.
    #[error("invalid --pushgateway {url}: {why}")]
    Url {
        /// The URL as given (no secrets: redacted).
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The Pushgateway could not be reached or refused the push.
    #[error("pushing the run's metrics to {url}: {reason}")]
    Push {
        /// Where (redacted).
        url: String,
        /// Cause, or the gateway's status and answer.
        reason: String,
    },
    /// The metrics file could not be written.
    #[error("writing the metrics file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// The exposition of one run: `report` is `None` for a run that could not start (only
/// `bankpipe_run_success 0` and the time are known then).
pub fn exposition(report: Option<&RunReport>, finished: SystemTime) -> String {
    let mut e = Exposition::new();
    let ok = report.is_some_and(|r| r.status == "ok");
    e.single(
        "bankpipe_run_success",
        Kind::Gauge,
        "1 when the last run processed every file (status ok), else 0.",
        f64::from(u8::from(ok)),
    );
    e.single(
        "bankpipe_run_finished_timestamp_seconds",
        Kind::Gauge,
        "When the last run ended, in seconds since the Unix epoch.",
        finished
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    );
    if let Some(r) = report {
        e.single(
            "bankpipe_run_duration_seconds",
            Kind::Gauge,
            "Wall-clock seconds of the last run.",
            r.elapsed_s,
        );
        let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
        let (mut read, mut loaded, mut rejected, mut duplicate, mut bytes) = (0, 0, 0, 0, 0);
        let mut rules: BTreeMap<&str, u64> = BTreeMap::new();
        let mut warnings: BTreeMap<&str, u64> = BTreeMap::new();
        for f in &r.files {
            *outcomes.entry(f.status.name()).or_default() += 1;
            read += f.rows_read;
            loaded += f.rows_loaded;
            rejected += f.rows_rejected;
            duplicate += f.rows_duplicate;
            bytes += f.bytes;
            for (rule, n) in &f.rejects {
                *rules.entry(rule).or_default() += n;
            }
            for (rule, n) in &f.warnings {
                *warnings.entry(rule).or_default() += n;
            }
        }
        let mut files = e.family(
            "bankpipe_run_files",
            Kind::Gauge,
            "Files of the last run by outcome (loaded, duplicate_file, failed, ...).",
        );
        for (outcome, n) in &outcomes {
            files.sample(&[("outcome", outcome)], *n as f64);
        }
        e.family(
            "bankpipe_run_rows",
            Kind::Gauge,
            "Rows of the last run by outcome (read = loaded + rejected + duplicate).",
        )
        .sample(&[("outcome", "read")], read as f64)
        .sample(&[("outcome", "loaded")], loaded as f64)
        .sample(&[("outcome", "rejected")], rejected as f64)
        .sample(&[("outcome", "duplicate")], duplicate as f64);
        let mut by_rule = e.family(
            "bankpipe_run_rejected_rows",
            Kind::Gauge,
            "Rejected rows of the last run by rule.",
        );
        for (rule, n) in &rules {
            by_rule.sample(&[("rule", rule)], *n as f64);
        }
        let mut by_warning = e.family(
            "bankpipe_run_warnings",
            Kind::Gauge,
            "Loaded rows of the last run with a field set to NULL, by warning rule.",
        );
        for (rule, n) in &warnings {
            by_warning.sample(&[("rule", rule)], *n as f64);
        }
        e.single(
            "bankpipe_run_file_bytes",
            Kind::Gauge,
            "Bytes of the files the last run processed.",
            bytes as f64,
        );
    }
    e.family(
        "bankpipe_build_info",
        Kind::Gauge,
        "Always 1; the version label is this binary's.",
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    e.finish()
}

/// The push URL of this host's group: `BASE/metrics/job/bankpipe_run/instance/<host>`.
/// A host name holding `/` is sent base64url-encoded (`instance@base64/...`), as the
/// Pushgateway requires.
///
/// # Errors
/// [`PushError::Url`] when `base` is not an `http://` or `https://` URL.
pub fn push_url(base: &str, instance: &str) -> Result<url::Url, PushError> {
    let invalid = |why: String| PushError::Url {
        url: crate::redact::redact_url(base),
        why,
    };
    let mut url = url::Url::parse(base).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            "give the Pushgateway's base URL, e.g. http://pushgateway:9091".into(),
        ));
    }
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| invalid("not a base URL".into()))?;
        path.pop_if_empty().extend(["metrics", "job", JOB]);
        if instance.contains('/') || instance.is_empty() {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::URL_SAFE.encode(instance);
            path.extend(["instance@base64", &encoded]);
        } else {
            path.extend(["instance", instance]);
        }
    }
    Ok(url)
}

/// PUTs `text` to `url` (from [`push_url`]).
///
/// # Errors
/// [`PushError::Push`] when the gateway cannot be reached within 10 s or answers
/// other than 2xx.
pub async fn push(url: &url::Url, text: String) -> Result<(), PushError> {
    let shown = crate::redact::redact_url(url.as_str());
    let failed = |reason: String| PushError::Push {
        url: shown.clone(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(PUSH_TIMEOUT)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let response = client
        .put(url.clone())
        .header("content-type", crate::metrics::CONTENT_TYPE)
        .body(text)
        .send()
        .await
        .map_err(|e| failed(one_line(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(failed(format!(
        "the gateway answered {status}: {}",
        body.trim().chars().take(300).collect::<String>()
    )))
}

/// An error and its causes on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Writes `text` to `path` atomically: a temporary file in the same folder, flushed to
/// disk, then renamed over `path` (readable by the node_exporter user: mode 0644).
///
/// # Errors
/// [`PushError::File`] when the folder cannot be written.
pub fn write_textfile(path: &Path, text: &str) -> Result<(), PushError> {
    let wrap = |source| PushError::File {
        path: path.to_owned(),
        source,
    };
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".bankpipe-metrics-")
        .suffix(".tmp")
        .tempfile_in(folder)
        .map_err(wrap)?;
    tmp.write_all(text.as_bytes()).map_err(wrap)?;
    tmp.as_file().sync_all().map_err(wrap)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(wrap)?;
    }
    tmp.persist(path).map_err(|e| wrap(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_urls_group_by_instance() {
        assert_eq!(
            push_url("http://gw:9091", "host-1").unwrap().as_str(),
            "http://gw:9091/metrics/job/bankpipe_run/instance/host-1"
        );
        assert_eq!(
            push_url("http://gw:9091/", "a/b").unwrap().as_str(),
            "http://gw:9091/metrics/job/bankpipe_run/instance@base64/YS9i"
        );
        assert!(push_url("gw:9091", "h").is_err());
        assert!(push_url("ftp://gw", "h").is_err());
    }

    #[test]
    fn a_run_that_could_not_start_says_so() {
        let text = exposition(None, SystemTime::UNIX_EPOCH + Duration::from_secs(5));
        assert!(text.contains("bankpipe_run_success 0\n"), "{text}");
        assert!(
            text.contains("bankpipe_run_finished_timestamp_seconds 5\n"),
            "{text}"
        );
        assert!(!text.contains("bankpipe_run_rows"), "{text}");
    }

    #[test]
    fn textfiles_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bankpipe.prom");
        write_textfile(&path, "a 1\n").unwrap();
        write_textfile(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
}
