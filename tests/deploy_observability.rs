//! The monitoring half of `deploy/` (issue #12), proven with the real tools:
//!
//! - `promtool check config`, `promtool check rules` and `promtool test rules` on
//!   `deploy/prometheus/`, and every alert covered by a unit test that fires and one
//!   that stays silent;
//! - the Grafana dashboards: each datasource reference names the provisioned uid,
//!   dashboard uids and panel ids are unique;
//! - on the local stack (`deploy/local-stack.sh`: PostgreSQL, s3s-fs, `bankpipe serve`
//!   with ingest and verify scheduled every few seconds, Prometheus with the deploy
//!   rules, a Pushgateway) after a real one-shot run, export and verify: every panel's query, with Grafana's interval variables substituted,
//!   returns at least one series with a value through Prometheus' HTTP API; every
//!   alert Prometheus loaded has a summary, a description and a runbook section that
//!   exists in docs/OPERATIONS.md; none fires on the healthy stack; and the script
//!   stops everything it started.
//!
//! Grafana itself cannot be installed here: its side is checked on the JSON it reads.
//! Prometheus, promtool and the Pushgateway come from the Debian packages `prometheus`
//! and `prometheus-pushgateway`, s3s-fs from crates.io (`.ci/run` installs them);
//! without them these tests fail saying so.

#[path = "support/daemon.rs"]
mod daemon;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use daemon::{Daemon, free_port, get, poll, require};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files of `dir` whose name ends with `ext`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *{ext} in {}", dir.display());
    v
}

/// `promtool ARGS...`, which must succeed; returns what it printed.
fn promtool(args: &[&str], files: &[PathBuf]) -> String {
    let exe = require("promtool", "prometheus");
    let out = Command::new(exe)
        .args(args)
        .args(files)
        .current_dir(repo())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{said}");
    said
}

/// The alert names of a rules file (`- alert: Name` lines).
fn alert_names(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

/// The heading anchors of a Markdown file, as GitHub makes them: lowercase, spaces to
/// `-`, punctuation other than `-` and `_` dropped.
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[test]
fn promtool_accepts_the_config_and_rules_and_their_unit_tests_pass() {
    let prom = repo().join("deploy/prometheus");
    let said = promtool(&["check", "config"], &[prom.join("prometheus.yml")]);
    assert!(said.contains("SUCCESS"), "{said}");
    let rules = files(&prom.join("rules"), ".yml");
    promtool(&["check", "rules"], &rules);
    let tests = files(&prom.join("tests"), ".yml");
    let said = promtool(&["test", "rules"], &tests);
    assert!(!said.contains("FAILED"), "{said}");

    // Every alert has a unit test where it fires and one where it stays silent: the
    // `exp_alerts` that follows each `alertname:` is either `[]` or a list.
    let names: BTreeSet<String> = rules.iter().flat_map(|r| alert_names(&read(r))).collect();
    let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for t in &tests {
        let mut current: Option<String> = None;
        for line in read(t).lines() {
            let line = line.trim();
            if let Some(n) = line.strip_prefix("alertname:") {
                current = Some(n.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("exp_alerts:") {
                let name = current.take().expect("exp_alerts after an alertname");
                if rest.trim() == "[]" {
                    silent.insert(name);
                } else {
                    fires.insert(name);
                }
            }
        }
    }
    for name in &names {
        assert!(fires.contains(name), "no unit test where {name} fires");
        assert!(
            silent.contains(name),
            "no unit test where {name} stays silent"
        );
    }
    let unknown: Vec<_> = fires
        .union(&silent)
        .filter(|n| !names.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "tests of alerts that do not exist: {unknown:?}"
    );
    for required in [
        "BankpipeRunFailed",
        "BankpipeNoSuccessfulRun",
        "BankpipeFileRejectShareHigh",
        "BankpipeLakeObjectsDamaged",
        "BankpipeWarehouseDown",
        "BankpipeLakeDown",
        "BankpipeServeDown",
        "BankpipeExportOverdue",
        "BankpipeDriftFlagged",
    ] {
        assert!(
            names.contains(required),
            "{required} missing from the rules"
        );
    }
}

/// The datasource uid the Grafana provisioning file gives (its `uid:` line).
fn provisioned_uid() -> String {
    let path = repo().join("deploy/grafana/provisioning/datasources/prometheus.yml");
    let text = read(&path);
    let uids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("uid:"))
        .map(str::trim)
        .collect();
    assert_eq!(uids.len(), 1, "one datasource uid in {}", path.display());
    assert!(text.contains("type: prometheus"), "{text}");
    uids[0].to_owned()
}

/// Every dashboard: its file name and JSON.
fn dashboards() -> Vec<(String, Value)> {
    files(&repo().join("deploy/grafana/dashboards"), ".json")
        .into_iter()
        .map(|p| {
            let v: Value =
                serde_json::from_str(&read(&p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect()
}

/// Every `datasource` value anywhere under `v`.
fn datasource_refs<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "datasource" {
                    out.push(x);
                }
                datasource_refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| datasource_refs(x, out)),
        _ => {}
    }
}

/// Every panel of a dashboard, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

#[test]
fn dashboards_name_the_provisioned_datasource_and_have_unique_ids() {
    let uid = provisioned_uid();
    let provider = read(&repo().join("deploy/grafana/provisioning/dashboards/bankpipe.yml"));
    assert!(
        provider.contains("path: /etc/grafana/dashboards"),
        "the provider reads where compose mounts the dashboards:\n{provider}"
    );
    let mut dashboard_uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for (file, d) in dashboards() {
        let duid = d["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(
            dashboard_uids.insert(duid.to_owned()),
            "{file}: uid {duid} twice"
        );
        titles.insert(d["title"].as_str().expect("title").to_owned());
        assert_eq!(d["schemaVersion"], 39, "{file}");
        assert!(d["templating"]["list"].as_array().is_some(), "{file}");
        let mut refs = Vec::new();
        datasource_refs(&d, &mut refs);
        assert!(!refs.is_empty(), "{file}");
        for r in refs {
            assert_eq!(r["uid"].as_str(), Some(uid.as_str()), "{file}: {r}");
            assert_eq!(r["type"], "prometheus", "{file}: {r}");
        }
        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{file}: a panel without a title");
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{file}: {title}: no id"));
            assert!(ids.insert(id), "{file}: panel id {id} twice");
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"].as_str(),
                Some(uid.as_str()),
                "{file}: {title}"
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file}: {title}: no query");
            let mut refids = BTreeSet::new();
            for t in targets {
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                    "{file}: {title}: a target without expr"
                );
                assert!(
                    refids.insert(t["refId"].to_string()),
                    "{file}: {title}: refId twice"
                );
                assert_eq!(
                    t["datasource"]["uid"].as_str(),
                    Some(uid.as_str()),
                    "{file}: {title}"
                );
            }
        }
    }
    for t in [
        "bankpipe: Throughput",
        "bankpipe: Data quality",
        "bankpipe: System health",
        "bankpipe: Lake and exports",
    ] {
        assert!(titles.contains(t), "no dashboard {t:?}: {titles:?}");
    }
}

/// The values Grafana gives its interval variables, for a panel whose time range is
/// `range_s` seconds and whose rate interval is `rate_s` seconds, at a scrape every
/// `scrape_s` seconds. Longer names first: `$__rate_interval_ms` before
/// `$__rate_interval`.
fn substitute(expr: &str, rate_s: u64, range_s: u64, scrape_s: u64) -> String {
    let vars = [
        ("__rate_interval_ms", (rate_s * 1000).to_string()),
        ("__rate_interval", format!("{rate_s}s")),
        ("__interval_ms", (scrape_s * 1000).to_string()),
        ("__interval", format!("{scrape_s}s")),
        ("__range_ms", (range_s * 1000).to_string()),
        ("__range_s", range_s.to_string()),
        ("__range", format!("{range_s}s")),
    ];
    let mut out = expr.to_owned();
    for (name, value) in &vars {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    assert!(!out.contains('$'), "a variable left in {out}");
    out
}

/// The running local stack.
struct Stack {
    daemon: Daemon,
    dir: tempfile::TempDir,
    ports: BTreeMap<&'static str, u16>,
}

impl Stack {
    fn prometheus(&self) -> String {
        format!("127.0.0.1:{}", self.ports["prometheus-port"])
    }

    /// `GET` on Prometheus' API; the `data` of a successful answer.
    fn api(&self, path: &str) -> Value {
        let r = get(&self.prometheus(), path, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("GET {path}: no answer\n{}", self.daemon.log_text()));
        let v: Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.body));
        assert_eq!(v["status"], "success", "GET {path}: {v}");
        v["data"].clone()
    }

    /// The result of the instant query `promql` at `time` (now when `None`).
    fn query(&self, promql: &str, time: Option<f64>) -> Value {
        let q: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let at = time.map(|t| format!("&time={t:.3}")).unwrap_or_default();
        self.api(&format!("/api/v1/query?query={q}{at}"))
    }

    /// Whether `promql` returns at least one series now.
    fn has(&self, promql: &str) -> bool {
        self.query(promql, None)["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    }

    /// `deploy/local-stack.sh run` against this stack.
    fn run(&self) {
        let out = Command::new("bash")
            .arg(repo().join("deploy/local-stack.sh"))
            .args(["run", "--dir"])
            .arg(self.dir.path().join("stack"))
            .args(["--rows", "1500"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "local-stack.sh run: {:?}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn start_stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let ports: BTreeMap<&str, u16> = [
        "pg-port",
        "s3-port",
        "serve-port",
        "prometheus-port",
        "pushgateway-port",
    ]
    .into_iter()
    .map(|p| (p, free_port()))
    .collect();
    let script = repo().join("deploy/local-stack.sh");
    let state = dir.path().join("stack");
    let mut command: Vec<String> = vec![
        "bash".into(),
        script.to_string_lossy().into_owned(),
        "up".into(),
        "--dir".into(),
        state.to_string_lossy().into_owned(),
        "--scrape-interval".into(),
        "1s".into(),
        // The scheduler runs (and times) jobs during the test; export stays quarterly:
        // every few seconds it would fail on the empty current quarter.
        "--ingest-schedule".into(),
        "*/2 * * * * *".into(),
        "--verify-schedule".into(),
        "*/3 * * * * *".into(),
        "--bin".into(),
        env!("CARGO_BIN_EXE_bankpipe").into(),
    ];
    for (flag, port) in &ports {
        command.push(format!("--{flag}"));
        command.push(port.to_string());
    }
    let args: Vec<&str> = command.iter().map(String::as_str).collect();
    let daemon = Daemon::start(
        "local-stack.sh",
        &args,
        &[("BANKPIPE_LOG", "info")],
        &[
            "BANKPIPE_CONFIG",
            "BANKPIPE_WAREHOUSE_URL",
            "BANKPIPE_LAKE_URL",
            "BANKPIPE_INBOX",
            "BANKPIPE_LISTEN",
            "BANKPIPE_EXPORT_URL",
        ],
        &dir.path().join("local-stack.log"),
    );
    poll(
        "the local stack to be ready",
        Duration::from_secs(90),
        || {
            assert!(
                daemon.running(),
                "local-stack.sh ended:\n{}",
                daemon.log_text()
            );
            daemon
                .log_text()
                .contains("local stack ready")
                .then_some(())
        },
        || daemon.log_text(),
    );
    Stack { daemon, dir, ports }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn every_dashboard_panel_returns_data_on_the_local_stack_after_a_real_run() {
    require("prometheus", "prometheus");
    require("prometheus-pushgateway", "prometheus-pushgateway");
    let stack = start_stack();
    let wait = |what: &str, promql: &str| {
        poll(
            what,
            Duration::from_secs(30),
            || stack.has(promql).then_some(()),
            || stack.daemon.log_text(),
        )
    };

    // The generated configuration scrapes the same jobs as deploy/prometheus.
    let deployed = read(&repo().join("deploy/prometheus/prometheus.yml"));
    let jobs: BTreeSet<&str> = deployed
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- job_name:"))
        .map(str::trim)
        .collect();
    for job in &jobs {
        wait(
            &format!("job {job} up"),
            &format!("up{{job=\"{job}\"}} == 1"),
        );
    }
    // The alerts page the script prints is one this Prometheus serves (Debian's 2.42
    // has only the classic UI: /alerts is a 404 there, /classic/alerts is the page).
    let log = stack.daemon.log_text();
    let alerts = log
        .lines()
        .find_map(|l| l.split("alerts: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no alerts page printed:\n{log}"))
        .to_owned();
    let page = get(&stack.prometheus(), &alerts, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("GET {alerts}: no answer"));
    assert_eq!(
        page.status, 200,
        "the printed alerts page {alerts}: {}",
        page.body
    );
    assert!(
        page.body.contains("BankpipeServeDown"),
        "the printed alerts page {alerts} lists the rules: {}",
        page.body
    );

    // A few scrapes of serve before the run, so that delta() windows hold the change.
    wait(
        "three scrapes of serve",
        "count_over_time(up{job=\"bankpipe\"}[1m]) >= 3",
    );
    let before = now();

    stack.run();
    wait(
        "the run's rows in Prometheus",
        "bankpipe_rows_total{outcome=\"loaded\"} > 0",
    );
    wait(
        "the export",
        "bankpipe_export_last_success_timestamp_seconds",
    );
    wait("the verify", "bankpipe_lake_objects{state=\"intact\"} > 0");
    wait("the run's push", "bankpipe_run_success == 1");
    wait(
        "scheduled ingest and verify runs",
        "count(bankpipe_scheduler_job_duration_seconds_count{exported_job=~\"ingest|verify\"} > 0) == 2",
    );
    wait(
        "three scrapes after the run",
        "count_over_time(bankpipe_export_last_success_timestamp_seconds[1m]) >= 3",
    );

    // Every panel's query at one instant, with a rate interval and a range that
    // reach back before the run (as a dashboard showing the run would).
    let at = now();
    let window = (at - before).ceil() as u64 + 5;
    let mut empty = Vec::new();
    let mut checked = 0;
    for (file, d) in dashboards() {
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = substitute(t["expr"].as_str().unwrap(), window, window, 1);
                let data = stack.query(&expr, Some(at));
                let result = data["result"].as_array().cloned().unwrap_or_default();
                let has_value = result.iter().any(|s| {
                    s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(|v| !v.is_nan())
                });
                checked += 1;
                if !has_value {
                    empty.push(format!("{file} / {} / {expr}: {result:?}", p["title"]));
                }
            }
        }
    }
    assert!(checked >= 30, "{checked} queries");
    assert!(
        empty.is_empty(),
        "panels without data:\n{}\n--- stack log ---\n{}",
        empty.join("\n"),
        stack.daemon.log_text()
    );

    // The alerts Prometheus loaded from deploy/prometheus/rules: each documented, each
    // group evaluating without error, none firing on this healthy stack.
    let operations = anchors(&read(&repo().join("docs/OPERATIONS.md")));
    let rules = stack.api("/api/v1/rules");
    let mut loaded = BTreeSet::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["name"].as_str().unwrap_or_default();
            assert_eq!(rule["health"], "ok", "{name}: {rule}");
            if rule["type"] != "alerting" {
                continue;
            }
            loaded.insert(name.to_owned());
            let a = &rule["annotations"];
            for key in ["summary", "description", "runbook_url"] {
                assert!(
                    a[key].as_str().is_some_and(|s| !s.trim().is_empty()),
                    "{name}: no {key}"
                );
            }
            let url = a["runbook_url"].as_str().unwrap();
            let anchor = url
                .strip_prefix("docs/OPERATIONS.md#")
                .unwrap_or_else(|| panic!("{name}: runbook {url} is not in docs/OPERATIONS.md"));
            assert!(
                operations.contains(anchor),
                "{name}: docs/OPERATIONS.md has no section #{anchor}"
            );
            assert_eq!(
                rule["state"], "inactive",
                "{name} on a healthy stack: {rule}"
            );
        }
    }
    let expected: BTreeSet<String> = files(&repo().join("deploy/prometheus/rules"), ".yml")
        .iter()
        .flat_map(|r| alert_names(&read(r)))
        .collect();
    assert_eq!(loaded, expected, "the alerts Prometheus loaded");

    // Stopping the script stops everything it started.
    stack.daemon.signal("TERM");
    let code = stack.daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(143), "{}", stack.daemon.log_text());
    for (flag, port) in &stack.ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "{flag} {port} still answers after the stack stopped"
        );
    }
    assert!(
        !stack.dir.path().join("stack").exists(),
        "the stack's state is removed"
    );
}
