//! The status page `GET /` in a real browser (issue #11): headless Chromium (Debian
//! package `chromium`; `.ci/run` installs it) renders the page `bankpipe serve` answers
//! over a warehouse loaded by the real binary, and the test reads the rendered DOM:
//! every section, figures equal to the warehouse's own (`bankpipe status --json`), one
//! SVG bar per rule with its count, exported quarters with their drift flags, the
//! schedule with an outcome, text from data escaped, and nothing loaded from anywhere
//! else. Without Chromium the test fails saying what to install.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;
#[path = "support/pg.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use daemon::{poll, require};
use http::{Serve, generate, json, serve};

/// The file whose name needs escaping.
const ODD_NAME: &str = "x<i>y&z'.csv";

fn chromium() -> PathBuf {
    require("chromium", "chromium")
}

/// Chromium as root, headless, touching no network but the page's.
fn browser(profile: &Path) -> Command {
    let mut c = Command::new("timeout");
    c.arg("90").arg(chromium()).args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ]);
    c.arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// The DOM Chromium rendered from `url`. Chromium's console goes to its stderr, where a
/// resource or inline style the page's `Content-Security-Policy` blocked is reported
/// ("… violates the following Content Security Policy directive …"): there must be
/// none, so the policy allows everything the page uses.
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = browser(profile.path())
        .args(["--enable-logging=stderr", "--v=0", "--dump-dom"])
        .arg(url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let console = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium --dump-dom {url} failed ({}):\n{console}",
        out.status,
    );
    assert!(
        !console.contains("Content Security Policy"),
        "the page's Content-Security-Policy blocked something it uses:\n{console}"
    );
    dom
}

/// A PNG of `url` at 1280×1600 written to `to`.
fn screenshot(url: &str, to: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let out = browser(profile.path())
        .arg(format!("--screenshot={}", to.display()))
        .arg("--window-size=1280,1600")
        .arg(url)
        .output()
        .unwrap();
    let png = std::fs::read(to).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "chromium --screenshot wrote no PNG ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `data-value` of the element whose `data-figure` is `figure`.
fn figure(dom: &str, figure: &str) -> Option<String> {
    let at = dom.find(&format!("data-figure=\"{figure}\" data-value=\""))?;
    let rest = &dom[at..];
    let value = rest.split("data-value=\"").nth(1)?;
    Some(value[..value.find('"')?].to_owned())
}

/// `(rule, count)` of every bar of the rejects chart.
fn bars(dom: &str) -> Vec<(String, u64)> {
    dom.split("<rect class=\"bar\" data-rule=\"")
        .skip(1)
        .map(|s| {
            let rule = &s[..s.find('"').unwrap()];
            let count = s.split("data-count=\"").nth(1).unwrap();
            (
                rule.to_owned(),
                count[..count.find('"').unwrap()].parse().unwrap(),
            )
        })
        .collect()
}

/// A loaded warehouse, two exported quarters (one with drift flags) and a schedule whose
/// `verify` job runs every other second; `bankpipe serve` on it.
fn setup(dir: &Path, warehouse: Option<&str>, cluster: Option<(&pg::PgCluster, &str)>) -> Serve {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    generate(&inbox.join("a.csv"), 2000, 1, &[]);
    generate(&inbox.join(ODD_NAME), 400, 7000, &["--seed", "3"]);
    json(dir, warehouse, &["run", "--json"]);
    // The export work's table (schema 11) with what `bankpipe export` records.
    // Money as TEXT on SQLite, NUMERIC on PostgreSQL; the flags a JSON array or TEXT[].
    let exports =
        "CREATE TABLE IF NOT EXISTS exports (quarter TEXT NOT NULL, version TEXT NOT NULL,
        destination TEXT NOT NULL, created_at TEXT NOT NULL, rows BIGINT NOT NULL,
        amount_sum %MONEY% NOT NULL, partial BOOLEAN NOT NULL, flagged_features %ARRAY% NOT NULL,
        PRIMARY KEY (quarter, version, destination))";
    match cluster {
        None => {
            let db = rusqlite::Connection::open(dir.join("warehouse.db")).unwrap();
            db.execute_batch(&format!(
                "{};
                 INSERT INTO exports VALUES ('2016Q3', 'v1', 'lake/exports', '2026-12-01T10:00:00.000Z', 1500, '123.45', 0, '[\"amount_mean\",\"night<share>\"]');
                 INSERT INTO exports VALUES ('2016Q4', 'v1', 'lake/exports', '2026-12-01T10:00:01.000Z', 900, '67.00', 1, '[]');",
                exports.replace("%ARRAY%", "TEXT").replace("%MONEY%", "TEXT")
            ))
            .unwrap();
        }
        Some((c, name)) => {
            c.psql(
                name,
                &format!(
                    "{};
                     INSERT INTO exports VALUES ('2016Q3', 'v1', 'lake/exports', '2026-12-01T10:00:00.000Z', 1500, 123.45, false, ARRAY['amount_mean','night<share>']);
                     INSERT INTO exports VALUES ('2016Q4', 'v1', 'lake/exports', '2026-12-01T10:00:01.000Z', 900, 67.00, true, ARRAY[]::text[]);",
                    exports.replace("%ARRAY%", "TEXT[]").replace("%MONEY%", "NUMERIC")
                ),
            );
        }
    }
    let config = dir.join("bankpipe.toml");
    std::fs::write(&config, "[schedule]\nverify = \"*/2 * * * * *\"\n").unwrap();
    let s = serve(dir, warehouse, &[], &["--config", config.to_str().unwrap()]);
    poll(
        "the scheduled verify to record an outcome",
        Duration::from_secs(60),
        || {
            s.get("/")
                .body
                .contains("data-outcome=\"ok\"")
                .then_some(())
        },
        || s.daemon.log_text(),
    );
    s
}

/// The rendered page against the warehouse's figures.
fn check_page(dir: &Path, warehouse: Option<&str>, s: &Serve) {
    let status = json(dir, warehouse, &["status", "--json"]);
    let dom = dump_dom(&s.url("/"));
    for section in ["state", "runs", "files", "rejects", "quarters", "schedule"] {
        assert!(
            dom.contains(&format!("<section id=\"{section}\">")),
            "no {section} section:\n{dom}"
        );
    }
    assert!(dom.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
    assert!(dom.contains("data-state=\"warehouse\">up<"), "{dom}");
    assert_eq!(
        figure(&dom, "rows_loaded"),
        Some(status["transactions"].to_string())
    );
    assert_eq!(
        figure(&dom, "rows_rejected"),
        Some(status["rejected_rows"].to_string())
    );
    assert_eq!(
        figure(&dom, "files_loaded"),
        Some(status["files"]["loaded"].to_string())
    );
    assert_eq!(figure(&dom, "files_failed"), Some("0".to_owned()));
    // One bar per rule, with the warehouse's count.
    let mut expected: Vec<(String, u64)> = status["rejects_by_rule"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    let mut shown = bars(&dom);
    assert!(expected.len() >= 3, "too few rules to chart: {expected:?}");
    expected.sort();
    shown.sort();
    assert_eq!(shown, expected);
    // Runs and files, one row each.
    let runs = status["recent_runs"].as_array().unwrap().len();
    assert_eq!(dom.matches("<tr data-run-id=").count(), runs, "{dom}");
    assert_eq!(dom.matches("<tr data-file-id=").count(), 2);
    // Escaped: shown as text, never markup.
    assert!(dom.contains("x&lt;i&gt;y&amp;z'.csv"), "{dom}");
    assert!(!dom.contains("<i>y"), "{dom}");
    // Quarters with their drift flags.
    assert!(
        dom.contains("data-quarter=\"2016Q3\" data-flagged=\"2\""),
        "{dom}"
    );
    assert!(
        dom.contains("<span class=\"flag\">night&lt;share&gt;</span>"),
        "{dom}"
    );
    assert!(
        dom.contains("data-quarter=\"2016Q4\" data-flagged=\"0\""),
        "{dom}"
    );
    // The schedule: the job, its next slot, its last outcome.
    assert!(dom.contains("<tr data-job=\"verify\">"), "{dom}");
    // (`skipped` when a slot came while the previous one still ran.)
    assert!(
        dom.contains("data-outcome=\"ok\"") || dom.contains("data-outcome=\"skipped\""),
        "{dom}"
    );
    // Self-contained: nothing fetched from anywhere.
    for external in [
        "<script",
        "<link",
        "<img",
        "<iframe",
        "src=",
        "url(",
        "@import",
        "href=\"http",
        "href=\"//",
    ] {
        assert!(!dom.contains(external), "{external} in the page:\n{dom}");
    }
    let r = s.get("/");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
}

#[test]
fn status_page_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), None, None);
    check_page(dir.path(), None, &s);
    let png = dir.path().join("status-page.png");
    screenshot(&s.url("/"), &png);

    // A load holding the warehouse: the page still answers within a second, with the
    // figures and details read before, saying how old they are.
    let before = figure(&s.get("/").body, "rows_loaded").unwrap();
    let mut writer = rusqlite::Connection::open(dir.path().join("warehouse.db")).unwrap();
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    tx.execute("UPDATE runs SET status = status", []).unwrap();
    let locked = Instant::now();
    let mut stale_seen = false;
    while locked.elapsed() < Duration::from_secs(5) {
        let r = s.get("/");
        assert_eq!(r.status, 200);
        assert!(
            r.elapsed < Duration::from_secs(1),
            "GET / took {:?}",
            r.elapsed
        );
        assert_eq!(
            figure(&r.body, "rows_loaded").as_deref(),
            Some(before.as_str())
        );
        assert!(
            r.body.contains("<tr data-file-id="),
            "details from before the lock"
        );
        stale_seen |= r.body.contains("id=\"stale\"");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(stale_seen, "the page never said its details were old");
    tx.rollback().unwrap();
}

#[test]
fn status_page_on_postgres() {
    let cluster = pg::PgCluster::shared();
    let db = cluster.database();
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), Some(&db.url), Some((cluster, &db.name)));
    check_page(dir.path(), Some(&db.url), &s);
}

/// Nothing loaded yet, no warehouse: the page still renders, saying so.
#[test]
fn status_page_without_a_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let s = serve(dir.path(), None, &[], &[]);
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert!(r.elapsed < Duration::from_secs(1), "{:?}", r.elapsed);
    let dom = dump_dom(&s.url("/"));
    assert!(dom.contains("id=\"stale\""), "{dom}");
    assert!(dom.contains("No <code>[schedule]</code>"), "{dom}");
}
