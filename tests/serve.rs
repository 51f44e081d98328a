//! `bankpipe serve` end to end (issue #11): the real binary on a loopback port, with a
//! real Prometheus scraping it and a real Pushgateway receiving `run --pushgateway`, on
//! SQLite and on PostgreSQL (`tests/support/pg.rs`). Prometheus, promtool and the
//! Pushgateway come from the Debian packages `prometheus` and `prometheus-pushgateway`
//! (`.ci/run` installs them); without them these tests fail saying so.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/pg.rs"]
mod pg;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{Daemon, free_port, get, poll, require, sample};
use serde_json::Value;

const LOADED: &str = "bankpipe_rows_total{outcome=\"loaded\"}";
/// A pseudonym key for `export` (required on PostgreSQL): base64 of 32 bytes.
const PSEUDONYM_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn bankpipe(dir: &Path, warehouse: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
    c.current_dir(dir)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("BANKPIPE_LAKE_URL")
        .env_remove("BANKPIPE_INBOX")
        .env_remove("BANKPIPE_CONFIG")
        .env_remove("BANKPIPE_LISTEN")
        .env_remove("BANKPIPE_LOG_FORMAT")
        .env("BANKPIPE_LOG", "warn")
        .stdin(Stdio::null());
    match warehouse {
        Some(url) => c.env("BANKPIPE_WAREHOUSE_URL", url),
        None => c.env_remove("BANKPIPE_WAREHOUSE_URL"),
    };
    c
}

/// `bankpipe serve` on a port of its choosing (`--listen 127.0.0.1:0`), read back from
/// its JSON log line `Serving.`.
struct Serve {
    daemon: Daemon,
    addr: String,
}

fn serve(dir: &Path, warehouse: Option<&str>, extra: &[&str]) -> Serve {
    let exe = env!("CARGO_BIN_EXE_bankpipe");
    let data = dir.to_str().unwrap();
    let mut command = vec![
        exe,
        "--data-dir",
        data,
        "--log-format",
        "json",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ];
    command.extend_from_slice(extra);
    let mut envs = vec![("BANKPIPE_LOG", "info")];
    if let Some(url) = warehouse {
        envs.push(("BANKPIPE_WAREHOUSE_URL", url));
    }
    let log = dir.join(format!("serve-{}.log", free_port()));
    let daemon = Daemon::start(
        "bankpipe serve",
        &command,
        &envs,
        &[
            "BANKPIPE_LAKE_URL",
            "BANKPIPE_INBOX",
            "BANKPIPE_CONFIG",
            "BANKPIPE_LISTEN",
        ],
        &log,
    );
    let addr = poll(
        "serve to listen",
        Duration::from_secs(20),
        || {
            daemon.log_text().lines().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["fields"]["message"] == "Serving.")
                    .then(|| v["fields"]["addr"].as_str().map(str::to_owned))?
            })
        },
        || daemon.log_text(),
    );
    Serve { daemon, addr }
}

impl Serve {
    fn get(&self, path: &str) -> daemon::Response {
        get(&self.addr, path, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("GET {path}: no answer\n{}", self.daemon.log_text()))
    }
}

fn generate(path: &Path, rows: u64, first_id: u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
        .args(["generate", "--rows", &rows.to_string(), "--out"])
        .arg(path)
        .args(["--first-id", &first_id.to_string(), "--defects", "0.02"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `bankpipe run --json` in a separate process, with `extra` flags.
fn run(dir: &Path, warehouse: Option<&str>, extra: &[&str]) -> Value {
    let out = bankpipe(dir, warehouse)
        .args(["run", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "run failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

/// The warehouse's own count of stored transactions (`status --json`: `COUNT(*)`).
fn stored_rows(dir: &Path, warehouse: Option<&str>) -> u64 {
    let out = bankpipe(dir, warehouse)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    s["transactions"].as_u64().expect("transactions")
}

/// `promtool check metrics` on `text`: must print nothing and succeed.
fn assert_promtool_clean(text: &str) {
    let promtool = require("promtool", "prometheus");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n--- exposition ---\n{text}"
    );
}

/// A Prometheus server scraping `target` every second, on loopback.
struct Prometheus {
    daemon: Daemon,
    addr: String,
    _dir: tempfile::TempDir,
}

fn prometheus(target: &str) -> Prometheus {
    let exe = require("prometheus", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: bankpipe\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let daemon = Daemon::start(
        "prometheus",
        &[
            exe.to_str().unwrap(),
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            &format!("--web.listen-address={addr}"),
        ],
        &[],
        &[],
        &dir.path().join("prometheus.log"),
    );
    poll(
        "Prometheus to be ready",
        Duration::from_secs(30),
        || get(&addr, "/-/ready", Duration::from_secs(2)).filter(|r| r.status == 200),
        || daemon.log_text(),
    );
    Prometheus {
        daemon,
        addr,
        _dir: dir,
    }
}

impl Prometheus {
    /// The value of the instant query `promql` (one series expected), if any.
    fn query(&self, promql: &str) -> Option<f64> {
        let q: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let r = get(
            &self.addr,
            &format!("/api/v1/query?query={q}"),
            Duration::from_secs(5),
        )?;
        let v: Value = serde_json::from_str(&r.body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

/// The whole path on one warehouse: readiness, a run by a separate process, `/metrics`
/// agreeing with the warehouse's row count, a clean `promtool check metrics`, and a
/// real Prometheus finding the same value.
fn scrape_after_a_run(dir: &Path, warehouse: Option<&str>) {
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    let s = serve(dir, warehouse, &[]);
    let health = s.get("/health");
    assert_eq!(health.status, 200, "{}", health.body);

    generate(&dir.join("inbox/a.csv"), 3000, 1);
    generate(&dir.join("inbox/b.csv"), 2000, 100_000);
    let report = run(dir, warehouse, &[]);
    let loaded: u64 = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rows_loaded"].as_u64().unwrap())
        .sum();
    let stored = stored_rows(dir, warehouse);
    assert_eq!(loaded, stored);
    assert!(stored > 4800, "{report}");

    let ready = poll(
        "/ready to answer 200",
        Duration::from_secs(20),
        || Some(s.get("/ready")).filter(|r| r.status == 200),
        || s.daemon.log_text(),
    );
    assert_eq!(
        serde_json::from_str::<Value>(&ready.body).unwrap(),
        serde_json::json!({"ready": true})
    );
    let text = poll(
        "/metrics to show the run",
        Duration::from_secs(20),
        || {
            let m = s.get("/metrics");
            (sample(&m.body, LOADED) == Some(stored as f64)).then_some(m.body)
        },
        || s.get("/metrics").body,
    );
    let rejected: u64 = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rows_rejected"].as_u64().unwrap())
        .sum();
    assert_eq!(
        sample(&text, "bankpipe_rows_total{outcome=\"rejected\"}"),
        Some(rejected as f64)
    );
    assert_eq!(
        sample(&text, "bankpipe_files_total{status=\"loaded\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "bankpipe_runs_total{status=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "bankpipe_runs_in_progress"), Some(0.0));
    assert_eq!(
        sample(&text, "bankpipe_file_processing_seconds_count"),
        Some(2.0)
    );
    assert_eq!(sample(&text, "bankpipe_warehouse_up"), Some(1.0));
    assert_eq!(sample(&text, "bankpipe_lake_up"), Some(1.0));
    assert!(sample(&text, "bankpipe_catalog_age_seconds").unwrap() < 5.0);
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);
    // Rejects by rule add up to the rejected rows, without the scrape reading them.
    let by_rule: f64 = text
        .lines()
        .filter(|l| l.starts_with("bankpipe_rejected_rows_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(by_rule, rejected as f64, "{text}");
    assert_promtool_clean(&text);
    assert!(
        !text.contains("bankpipe_export_"),
        "no export yet, no export figures"
    );

    // An export: its time and drift flags appear.
    let out = bankpipe(dir, warehouse)
        .env("BANKPIPE_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .args(["export", "--quarter", "2016Q3", "--allow-partial", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let export: Value = serde_json::from_slice(&out.stdout).unwrap();
    let flagged = export["quarters"][0]["flagged"].as_array().unwrap().len();
    let exported_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let text = poll(
        "/metrics to show the export",
        Duration::from_secs(20),
        || {
            let m = s.get("/metrics").body;
            sample(&m, "bankpipe_export_drift_flagged_features").map(|_| m)
        },
        || s.get("/metrics").body,
    );
    assert_eq!(
        sample(&text, "bankpipe_export_drift_flagged_features"),
        Some(flagged as f64)
    );
    let at = sample(&text, "bankpipe_export_last_success_timestamp_seconds").unwrap();
    assert!((exported_at - at).abs() < 60.0, "{at} vs {exported_at}");
    assert_promtool_clean(&text);

    let p = prometheus(&s.addr);
    let seen = poll(
        "Prometheus to scrape the loaded rows",
        Duration::from_secs(60),
        || p.query(LOADED).filter(|v| *v == stored as f64),
        || p.daemon.log_text(),
    );
    assert_eq!(seen, stored as f64);
    assert_eq!(p.query("up{job=\"bankpipe\"}"), Some(1.0));

    // With sessions open on this warehouse, SIGTERM still ends it cleanly.
    s.daemon.signal("TERM");
    assert_eq!(
        s.daemon.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        s.daemon.log_text()
    );
}

#[test]
fn prometheus_scrapes_serve_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scrape_after_a_run(dir.path(), None);
}

#[test]
fn prometheus_scrapes_serve_on_postgres() {
    let db = pg::PgCluster::shared().database();
    let dir = tempfile::tempdir().unwrap();
    scrape_after_a_run(dir.path(), Some(&db.url));
}

#[test]
fn ready_says_why_not_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let s = serve(dir.path(), None, &[]);
    // No warehouse yet: serve does not create one.
    let r = s.get("/ready");
    assert_eq!(r.status, 503, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["ready"], false);
    assert!(v["reason"].as_str().unwrap().contains("warehouse"), "{v}");
    assert!(
        !dir.path().join("warehouse.db").exists(),
        "serve created a warehouse"
    );
    assert_eq!(s.get("/health").status, 200);

    generate(&dir.path().join("inbox/a.csv"), 100, 1);
    run(dir.path(), None, &[]);
    assert_eq!(s.get("/ready").status, 200);

    // The lake made unusable: its folder replaced by a file.
    let lake = dir.path().join("lake");
    std::fs::rename(&lake, dir.path().join("lake.moved")).unwrap();
    std::fs::write(&lake, "not a folder").unwrap();
    let r = s.get("/ready");
    assert_eq!(r.status, 503, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["reason"].as_str().unwrap().starts_with("lake:"), "{v}");
    let m = poll(
        "bankpipe_lake_up 0",
        Duration::from_secs(5),
        || Some(s.get("/metrics").body).filter(|m| sample(m, "bankpipe_lake_up") == Some(0.0)),
        || s.daemon.log_text(),
    );
    assert_eq!(sample(&m, "bankpipe_warehouse_up"), Some(1.0));

    // A warehouse URL holding a password, unreachable: the reason never shows it.
    let other = tempfile::tempdir().unwrap();
    let secret = "postgres://loader:Pw0rdNeverShown@127.0.0.1:9/bank?sslmode=disable";
    let s = serve(other.path(), Some(secret), &[]);
    let r = poll(
        "/ready to fail on the warehouse",
        Duration::from_secs(60),
        || Some(s.get("/ready")).filter(|r| r.status == 503 && r.body.contains("warehouse")),
        || s.daemon.log_text(),
    );
    assert!(!r.body.contains("Pw0rdNeverShown"), "{}", r.body);
    assert!(!s.daemon.log_text().contains("Pw0rdNeverShown"));
    let m = s.get("/metrics");
    assert!(!m.body.contains("Pw0rdNeverShown"));
    assert_eq!(
        sample(&m.body, "bankpipe_catalog_age_seconds"),
        Some(f64::INFINITY)
    );
    assert_promtool_clean(&m.body);
}

/// While a writer holds the SQLite database exclusively (as a long load does once its
/// page cache spills), `/metrics` and `/health` still answer within a second, with the
/// last figures and their growing age.
#[test]
fn a_locked_sqlite_warehouse_does_not_stall_metrics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    generate(&dir.path().join("inbox/a.csv"), 500, 1);
    run(dir.path(), None, &[]);
    let s = serve(dir.path(), None, &[]);
    let before = poll(
        "first figures",
        Duration::from_secs(10),
        || sample(&s.get("/metrics").body, LOADED),
        || s.daemon.log_text(),
    );
    let mut writer = rusqlite::Connection::open(dir.path().join("warehouse.db")).unwrap();
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    tx.execute("UPDATE runs SET status = status", []).unwrap();
    let locked = Instant::now();
    let mut ages = Vec::new();
    while locked.elapsed() < Duration::from_secs(6) {
        let m = s.get("/metrics");
        assert!(
            m.elapsed < Duration::from_secs(1),
            "/metrics took {:?}",
            m.elapsed
        );
        assert_eq!(sample(&m.body, LOADED), Some(before));
        ages.push(sample(&m.body, "bankpipe_catalog_age_seconds").unwrap());
        let h = s.get("/health");
        assert!(
            h.elapsed < Duration::from_secs(1),
            "/health took {:?}",
            h.elapsed
        );
        assert_eq!(h.status, 200);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        ages.last().unwrap() > &4.0,
        "the age grows while the catalog cannot be read: {ages:?}"
    );
    tx.rollback().unwrap();
    poll(
        "fresh figures after the lock",
        Duration::from_secs(15),
        || {
            let m = s.get("/metrics").body;
            sample(&m, "bankpipe_catalog_age_seconds").filter(|a| *a < 3.0)
        },
        || s.daemon.log_text(),
    );
}

#[test]
fn sigterm_exits_0_within_the_shutdown_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Idle: stops at once.
    let s = serve(dir.path(), None, &["--shutdown-timeout", "10s"]);
    assert_eq!(s.get("/health").status, 200);
    let sent = Instant::now();
    s.daemon.signal("TERM");
    assert_eq!(s.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    assert!(
        s.daemon.log_text().contains("Stopped."),
        "{}",
        s.daemon.log_text()
    );

    // A request that never completes holds the graceful shutdown: the timeout bounds
    // the wait, and the exit is still 0.
    let s = serve(dir.path(), None, &["--shutdown-timeout", "2s"]);
    let mut stalled = std::net::TcpStream::connect(&s.addr).unwrap();
    std::io::Write::write_all(&mut stalled, b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    s.daemon.signal("INT");
    assert_eq!(s.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(!s.daemon.running());
}

/// The text of a `.prom` file or a Pushgateway page as (series, value) pairs.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn run_pushes_to_a_pushgateway_and_writes_a_textfile() {
    let gateway = require("prometheus-pushgateway", "prometheus-pushgateway");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    generate(&dir.path().join("inbox/a.csv"), 1500, 1);
    let addr = format!("127.0.0.1:{}", free_port());
    let gw = Daemon::start(
        "prometheus-pushgateway",
        &[
            gateway.to_str().unwrap(),
            &format!("--web.listen-address={addr}"),
        ],
        &[],
        &[],
        &dir.path().join("pushgateway.log"),
    );
    poll(
        "the Pushgateway to be ready",
        Duration::from_secs(20),
        || get(&addr, "/-/ready", Duration::from_secs(2)).filter(|r| r.status == 200),
        || gw.log_text(),
    );
    let prom = dir.path().join("textfile/bankpipe.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let report = run(
        dir.path(),
        None,
        &[
            "--pushgateway",
            &format!("http://{addr}"),
            "--metrics-file",
            prom.to_str().unwrap(),
        ],
    );
    let file = &report["files"][0];
    let loaded = file["rows_loaded"].as_f64().unwrap();
    let rejected = file["rows_rejected"].as_f64().unwrap();
    assert!(rejected > 0.0, "{report}");

    // The textfile, parsed back.
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_promtool_clean(&text);
    let got = samples(&text);
    let value = |series: &str| {
        got.iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
    };
    assert_eq!(value("bankpipe_run_success"), 1.0);
    assert_eq!(value("bankpipe_run_rows{outcome=\"loaded\"}"), loaded);
    assert_eq!(value("bankpipe_run_rows{outcome=\"rejected\"}"), rejected);
    assert_eq!(
        value("bankpipe_run_rows{outcome=\"read\"}"),
        file["rows_read"].as_f64().unwrap()
    );
    assert_eq!(value("bankpipe_run_files{outcome=\"loaded\"}"), 1.0);
    let by_rule: f64 = got
        .iter()
        .filter(|(s, _)| s.starts_with("bankpipe_run_rejected_rows{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(by_rule, rejected);
    assert_eq!(
        std::fs::read_dir(prom.parent().unwrap()).unwrap().count(),
        1,
        "no temporary file left beside it"
    );

    // The push, as the gateway exposes it: grouped by job and this host.
    let (host, _) = bankpipe::warehouse::Claimant::this_process();
    let page = get(&addr, "/metrics", Duration::from_secs(5)).unwrap().body;
    let series =
        format!("bankpipe_run_rows{{instance=\"{host}\",job=\"bankpipe_run\",outcome=\"loaded\"}}");
    assert_eq!(sample(&page, &series), Some(loaded), "{page}");

    // A second run replaces the group: nothing new, so 0 rows loaded.
    run(
        dir.path(),
        None,
        &["--pushgateway", &format!("http://{addr}")],
    );
    let page = get(&addr, "/metrics", Duration::from_secs(5)).unwrap().body;
    assert_eq!(sample(&page, &series), Some(0.0), "{page}");

    // A gateway that is not there: logged, the run's own exit status unchanged.
    let out = bankpipe(dir.path(), None)
        .args(["run", "--pushgateway", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not pushed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A URL that is not one: refused before the run (exit 2).
    let out = bankpipe(dir.path(), None)
        .args(["run", "--pushgateway", "gateway:9091"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A metrics target refused before the run (exit 2) is a run that cannot start: with
/// `--json` it still prints its one object (`run_id` null, no files, the error), as the
/// README promises for every run that cannot start; nothing is loaded.
#[test]
fn run_json_reports_a_refused_metrics_target_as_one_object() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    generate(&dir.path().join("inbox/a.csv"), 20, 1);
    let missing = dir.path().join("no-such-folder/bankpipe.prom");
    for (flag, value, says) in [
        (
            "--metrics-file",
            missing.to_str().unwrap(),
            "give a file in an existing folder (node_exporter reads *.prom",
        ),
        ("--pushgateway", "gateway:9091", "gateway:9091"),
    ] {
        let out = bankpipe(dir.path(), None)
            .args(["run", "--json", flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{flag}: stdout is not one JSON object ({e}): {stderr}"));
        assert_eq!(report["run_id"], Value::Null, "{report}");
        assert_eq!(report["status"], "failed", "{report}");
        assert_eq!(report["files"], serde_json::json!([]), "{report}");
        let error = report["error"].as_str().unwrap();
        assert!(error.contains(says), "{flag}: {error}");
        assert!(
            stderr.contains(error),
            "{flag}: stderr {stderr} lacks {error}"
        );
    }
    assert!(
        !dir.path().join("warehouse.db").exists(),
        "a refused run must not start"
    );
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    generate(&dir.path().join("inbox/a.csv"), 50, 1);
    for how in [&["--log-format", "json"][..], &[]] {
        let mut c = bankpipe(dir.path(), None);
        c.env("BANKPIPE_LOG", "info").args(how).arg("run");
        if how.is_empty() {
            c.env("BANKPIPE_LOG_FORMAT", "json");
        }
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.trim().is_empty());
        for line in stderr.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            assert!(
                v["level"].is_string() && v["fields"]["message"].is_string(),
                "{v}"
            );
        }
    }
    let out = bankpipe(dir.path(), None)
        .env("BANKPIPE_LOG_FORMAT", "yaml")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
