//! The read API of `bankpipe serve` end to end (issue #11): the real binary on a
//! loopback port, over a warehouse loaded by `bankpipe generate` + `bankpipe run`, on
//! SQLite and on PostgreSQL (`tests/support/pg.rs`). Answers are compared with what the
//! CLI prints (`files --json`, `rejects --json`, `status --json`): the same rows, the
//! same field names.
//!
//! schemathesis (PyPI) checks the server against its own OpenAPI description; without
//! it the test fails saying how to install it (`.ci/run` does).

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;
#[path = "support/pg.rs"]
mod pg;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use daemon::poll;
use http::{Serve, cli_rejects, generate, json, serve};
use serde_json::{Value, json};

const TOKEN: &str = "api-test-token-0123456789";

fn bearer(token: &str) -> [(&'static str, String); 1] {
    [("Authorization", format!("Bearer {token}"))]
}

/// Two CSV files and a JSON array written on one line (so that several rejected
/// records share a line), loaded by one run.
fn load(dir: &Path, warehouse: Option<&str>) {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    generate(&inbox.join("a.csv"), 1500, 1, &[]);
    generate(&inbox.join("b.csv"), 1200, 5000, &["--seed", "7"]);
    let staged = dir.join("c.json");
    generate(&staged, 600, 9000, &["--format", "json", "--seed", "9"]);
    let one_line = std::fs::read_to_string(&staged).unwrap().replace('\n', "");
    std::fs::write(inbox.join("c.json"), one_line).unwrap();
    let report = json(dir, warehouse, &["run", "--json"]);
    assert_eq!(report["files"].as_array().unwrap().len(), 3, "{report}");
}

/// The kernel's host name, which runs record.
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// Every row of `list` through its pages of `limit`, following `next_cursor`.
fn every_page(
    s: &Serve,
    path: &str,
    list: &str,
    limit: u64,
    headers: &[(&str, &str)],
) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    let sep = if path.contains('?') { '&' } else { '?' };
    for _ in 0..100_000 {
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = s.call("GET", &url, headers);
        assert_eq!(r.status, 200, "GET {url}: {}", r.body);
        let v = r.json();
        let page = v[list].as_array().unwrap();
        assert!(page.len() as u64 <= limit, "{url}: {} rows", page.len());
        rows.extend(page.iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => {
                assert!(!page.is_empty(), "{url}: an empty page with a next cursor");
                cursor = Some(c.to_owned());
            }
            None => return rows,
        }
    }
    panic!("{path}: the cursors never ended");
}

/// Rows as a multiset of their JSON texts (field order is fixed by serde_json).
fn multiset(rows: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.to_string()).or_default() += 1;
    }
    m
}

/// The read API over `load`'s warehouse: paging, filters, the raw text and the token,
/// bad parameters, against the CLI's own output.
fn read_api(dir: &Path, warehouse: Option<&str>) {
    load(dir, warehouse);
    let s = serve(dir, warehouse, &[("BANKPIPE_API_TOKEN", TOKEN)], &[]);
    let auth = bearer(TOKEN);
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Rejects: every row exactly once, whatever the page size, with the CLI's fields.
    let cli = cli_rejects(dir, warehouse);
    assert!(
        cli.len() > 30,
        "too few rejects to page through: {}",
        cli.len()
    );
    let shared_line = cli
        .iter()
        .filter(|r| r["file"] == "c.json" && r["line_no"] == 1)
        .count();
    assert!(
        shared_line >= 3,
        "the one-line JSON file has {shared_line} rejects"
    );
    for limit in [1, 3, 7, 1000] {
        let with_raw = every_page(&s, "/api/rejects", "rejects", limit, &auth);
        assert_eq!(multiset(&with_raw), multiset(&cli), "limit {limit}");
    }
    // The order is the listing's: by file, then line.
    let listed = every_page(&s, "/api/rejects", "rejects", 5, &auth);
    let keys: Vec<(i64, i64)> = listed
        .iter()
        .map(|r| {
            (
                r["file_id"].as_i64().unwrap(),
                r["line_no"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");

    // Without the token: the same rows, the raw text null.
    let hidden = every_page(&s, "/api/rejects", "rejects", 50, &[]);
    let blanked: Vec<Value> = cli
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["raw"] = Value::Null;
            r
        })
        .collect();
    assert_eq!(multiset(&hidden), multiset(&blanked));
    let page = s.get("/api/rejects?limit=2").json();
    assert_eq!(page["raw_text"], "needs_token");
    assert!(page["rejects"][0]["raw"].is_null());
    let page = s.call("GET", "/api/rejects?limit=2", &auth).json();
    assert_eq!(page["raw_text"], "shown");
    assert!(!page["rejects"][0]["raw"].as_str().unwrap().is_empty());
    let wrong = s.call(
        "GET",
        "/api/rejects?limit=2",
        &[("Authorization", "Bearer not-the-token-at-all")],
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);

    // Filters, paged.
    let c_json_id = cli.iter().find(|r| r["file"] == "c.json").unwrap()["file_id"].clone();
    let of_file: Vec<Value> = cli
        .iter()
        .filter(|r| r["file_id"] == c_json_id)
        .cloned()
        .collect();
    let path = format!("/api/rejects?file={c_json_id}");
    assert_eq!(
        multiset(&every_page(&s, &path, "rejects", 2, &auth)),
        multiset(&of_file)
    );
    let rule = cli[0]["rule"].as_str().unwrap().to_owned();
    let of_rule: Vec<Value> = cli
        .iter()
        .filter(|r| r["rule"] == rule.as_str())
        .cloned()
        .collect();
    let path = format!("/api/rejects?rule={rule}");
    assert_eq!(
        multiset(&every_page(&s, &path, "rejects", 2, &auth)),
        multiset(&of_rule)
    );
    let none = s.get("/api/rejects?file=999999").json();
    assert_eq!(none["rejects"], json!([]));
    assert_eq!(none["next_cursor"], Value::Null);

    // Files: `files --json`, paged, and by status.
    let files = json(dir, warehouse, &["files", "--json"]);
    assert_eq!(
        Value::Array(every_page(&s, "/api/files", "files", 1, &[])),
        files
    );
    let loaded: Vec<Value> = files
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "loaded")
        .cloned()
        .collect();
    assert_eq!(
        every_page(&s, "/api/files?status=loaded", "files", 2, &[]),
        loaded
    );
    assert_eq!(
        s.get("/api/files?status=landing").json()["files"],
        json!([])
    );

    // Runs: newest first, the fields of `status --json`'s recent_runs.
    json(dir, warehouse, &["run", "--json"]);
    let status = json(dir, warehouse, &["status", "--json"]);
    let runs = every_page(&s, "/api/runs", "runs", 1, &[]);
    assert_eq!(runs.len(), 2);
    for (api, cli) in runs.iter().zip(status["recent_runs"].as_array().unwrap()) {
        for field in ["run_id", "started_at", "finished_at", "status"] {
            assert_eq!(api[field], cli[field], "{field}");
        }
        assert!(api["counts"]["files"].is_u64(), "{api}");
        // Where it ran: this host's name, also when `HOSTNAME` is not exported (the
        // runs here are started without it).
        assert_eq!(api["host"], this_host(), "{api}");
        assert!(api["pid"].is_u64(), "{api}");
    }
    assert!(runs[0]["run_id"].as_str() > runs[1]["run_id"].as_str());

    // Quarters: none until the export work's table exists.
    assert_eq!(s.get("/api/quarters").json(), json!({ "quarters": [] }));

    // Bad parameters: 400 with a JSON message naming the parameter.
    for (path, names) in [
        ("/api/rejects?limit=0", "limit"),
        ("/api/rejects?limit=1001", "limit"),
        ("/api/rejects?limit=ten", "limit"),
        ("/api/rejects?limit=", "limit"),
        ("/api/rejects?file=0", "file"),
        ("/api/rejects?file=abc", "file"),
        ("/api/rejects?rule=not_a_rule", "rule"),
        ("/api/rejects?rule=missing_dob", "rule"),
        ("/api/rejects?cursor=abc", "cursor"),
        ("/api/rejects?cursor=1.2.0", "cursor"),
        ("/api/rejects?cursor=12", "cursor"),
        ("/api/rejects?fiel=1", "fiel"),
        ("/api/rejects?limit=1&limit=2", "limit"),
        ("/api/files?status=done", "status"),
        ("/api/files?cursor=01a2", "cursor"),
        ("/api/runs?cursor=1.2.3", "cursor"),
        ("/api/runs?status=ok", "status"),
        ("/api/quarters?limit=1", "limit"),
        ("/api/rejects?%ff=1", "\u{fffd}"),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        let v = r.json();
        assert_eq!(v["error"], "bad_request", "{path}");
        let message = v["message"].as_str().unwrap();
        assert!(message.contains(names), "{path}: {message}");
    }
    assert!(
        !s.daemon.log_text().contains(TOKEN),
        "the token reached the log"
    );
}

#[test]
fn read_api_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    read_api(dir.path(), None);
}

#[test]
fn read_api_on_postgres() {
    let db = pg::PgCluster::shared().database();
    let dir = tempfile::tempdir().unwrap();
    read_api(dir.path(), Some(&db.url));
}

/// The `bankpipe_reader` role may not read the raw text: with the token, the rows come
/// without it and `raw_text` says why.
#[test]
fn a_reader_role_gets_no_raw_text_even_with_the_token() {
    let cluster = pg::PgCluster::shared();
    let db = cluster.database();
    let dir = tempfile::tempdir().unwrap();
    load(dir.path(), Some(&db.url));
    let out = http::bankpipe(dir.path(), Some(&db.url))
        .args(["migrate", "--create-roles"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let role = format!("api_reader_{}", std::process::id());
    cluster.psql(
        &db.name,
        &format!("CREATE ROLE {role} LOGIN; GRANT bankpipe_reader TO {role}"),
    );
    let url = db
        .url
        .replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    let s = serve(
        dir.path(),
        Some(&url),
        &[("BANKPIPE_API_TOKEN", TOKEN)],
        &[],
    );
    let auth = bearer(TOKEN);
    let r = s.call(
        "GET",
        "/api/rejects?limit=5",
        &[("Authorization", &auth[0].1)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["raw_text"], "role_cannot_read");
    assert_eq!(v["rejects"].as_array().unwrap().len(), 5);
    assert!(
        v["rejects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["raw"].is_null())
    );
    let all = every_page(&s, "/api/rejects", "rejects", 1000, &[]);
    assert_eq!(all.len(), cli_rejects(dir.path(), Some(&db.url)).len());
}

/// Every answer, of every route and of the errors (400, 401, 403, 404, 405), carries
/// `nosniff` and `no-referrer`; the API's answers (which carry warehouse data) and the
/// rest are never stored by a cache; every answer but the status page has the
/// nothing-allowed `Content-Security-Policy`, and the page its own.
#[test]
fn every_answer_carries_the_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    load(dir.path(), None);
    let s = serve(dir.path(), None, &[("BANKPIPE_API_TOKEN", TOKEN)], &[]);
    let token = bearer(TOKEN);
    let with_token: Vec<(&str, &str)> = token.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let wrong = [("Authorization", "Bearer not-the-token-0123456789")];
    // Method, path, request headers, status.
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);
    let cases: Vec<Case> = vec![
        ("GET", "/api/runs", &[], 200),
        ("GET", "/api/files?limit=2", &[], 200),
        ("GET", "/api/rejects?limit=2", &[], 200),
        ("GET", "/api/rejects?limit=2", &with_token, 200),
        ("GET", "/api/quarters", &[], 200),
        ("GET", "/api/openapi.json", &[], 200),
        ("GET", "/api/files?limit=0", &[], 400),
        ("GET", "/api/rejects", &wrong, 401),
        ("POST", "/api/runs", &wrong, 401),
        ("DELETE", "/api/runs", &[], 405),
        ("GET", "/api/nothing", &[], 404),
        ("GET", "/health", &[], 200),
        ("GET", "/ready", &[], 200),
        ("GET", "/metrics", &[], 200),
        ("GET", "/", &[], 200),
    ];
    for (method, path, headers, status) in cases {
        let r = s.call(method, path, headers);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        let what = format!("{method} {path} ({status})");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        if path == "/" {
            assert!(
                csp.starts_with("default-src 'none'; style-src 'sha256-")
                    && csp.contains("frame-ancestors 'none'")
                    && !csp.contains("unsafe"),
                "{what}: {csp}"
            );
        } else {
            assert_eq!(csp, "default-src 'none'; frame-ancestors 'none'", "{what}");
        }
    }
}

#[test]
fn write_endpoints_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    // No token configured: 403 saying how to enable them, whatever is sent.
    let s = serve(dir.path(), None, &[], &[]);
    for headers in [
        vec![],
        vec![("Authorization", "Bearer whatever-token-1234")],
    ] {
        let r = s.call("POST", "/api/runs", &headers);
        assert_eq!(r.status, 403, "{}", r.body);
        let v = r.json();
        assert_eq!(v["error"], "forbidden");
        let m = v["message"].as_str().unwrap();
        assert!(
            m.contains("BANKPIPE_API_TOKEN") && m.contains("BANKPIPE_API_TOKEN_FILE"),
            "{m}"
        );
    }
    drop(s);

    // A token from a file: missing or wrong → 401 with a bearer challenge.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let s = serve(
        dir.path(),
        None,
        &[("BANKPIPE_API_TOKEN_FILE", token_file.to_str().unwrap())],
        &[],
    );
    let wrong = format!("Bearer {TOKEN}x");
    let basic = format!("Basic {TOKEN}");
    for headers in [
        vec![],
        vec![("Authorization", wrong.as_str())],
        vec![("Authorization", basic.as_str())],
        vec![("Authorization", "Bearer")],
    ] {
        let r = s.call("POST", "/api/runs", &headers);
        assert_eq!(r.status, 401, "{headers:?}: {}", r.body);
        assert_eq!(r.json()["error"], "unauthorized");
        assert!(
            r.header("www-authenticate").unwrap().starts_with("Bearer"),
            "{headers:?}"
        );
        assert!(!r.body.contains(TOKEN));
    }
    assert!(
        !s.daemon.log_text().contains(TOKEN),
        "the token reached the log"
    );
}

#[test]
fn a_bad_token_setting_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    for (envs, expected) in [
        (vec![("BANKPIPE_API_TOKEN", "short")], "at least 16"),
        (
            vec![
                ("BANKPIPE_API_TOKEN", TOKEN),
                ("BANKPIPE_API_TOKEN_FILE", "/nonexistent"),
            ],
            "not both",
        ),
        (
            vec![("BANKPIPE_API_TOKEN_FILE", "/nonexistent/token")],
            "cannot be read",
        ),
    ] {
        let mut c = http::bankpipe(dir.path(), None);
        c.args(["serve", "--listen", "127.0.0.1:0"]);
        for (k, v) in &envs {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{envs:?}: {stderr}");
        assert!(stderr.contains(expected), "{envs:?}: {stderr}");
        assert!(
            !stderr.contains(TOKEN) && !stderr.contains("short\""),
            "{stderr}"
        );
    }
}

/// `POST /api/runs` starts a run in the server (202 with its id), refuses a second one
/// while it runs (409 naming it), and the run is then listed like any other.
#[test]
fn a_run_starts_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    json(dir.path(), None, &["run", "--json"]);
    generate(&inbox.join("big.csv"), 60_000, 1, &[]);
    let s = serve(dir.path(), None, &[("BANKPIPE_API_TOKEN", TOKEN)], &[]);
    let auth = bearer(TOKEN);
    let auth = [("Authorization", auth[0].1.as_str())];
    let started = s.call("POST", "/api/runs", &auth);
    assert_eq!(started.status, 202, "{}", started.body);
    let run_id = started.json()["run_id"].as_str().unwrap().to_owned();
    assert_eq!(started.json()["status"], "started");
    let again = s.call("POST", "/api/runs", &auth);
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.json()["error"], "run_in_progress");
    assert_eq!(again.json()["run_id"], run_id.as_str());
    let finished = poll(
        "the API's run to finish",
        Duration::from_secs(180),
        || {
            let runs = s.get("/api/runs?limit=5").json();
            runs["runs"]
                .as_array()?
                .iter()
                .find(|r| r["run_id"] == run_id.as_str() && r["status"] != "running")
                .cloned()
        },
        || s.daemon.log_text(),
    );
    assert_eq!(finished["status"], "ok", "{finished}");
    assert_eq!(finished["counts"]["loaded"], 1, "{finished}");
    let files = s.get("/api/files").json();
    assert_eq!(files["files"][0]["run_id"], run_id.as_str());
    // Done: the next one starts (nothing left to load).
    poll(
        "the guard to be released",
        Duration::from_secs(10),
        || (s.call("POST", "/api/runs", &auth).status == 202).then_some(()),
        || s.daemon.log_text(),
    );
}

/// While a `bankpipe run` of another process holds the SQLite run lock, 409 too.
#[test]
fn a_run_elsewhere_is_a_conflict_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    json(dir.path(), None, &["run", "--json"]);
    let s = serve(dir.path(), None, &[("BANKPIPE_API_TOKEN", TOKEN)], &[]);
    let lock = std::fs::File::options()
        .write(true)
        .open(dir.path().join("warehouse.db.lock"))
        .unwrap();
    lock.lock().unwrap();
    let auth = bearer(TOKEN);
    let r = s.call("POST", "/api/runs", &[("Authorization", &auth[0].1)]);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["run_id"], Value::Null);
    assert!(r.json()["message"].as_str().unwrap().contains("run lock"));
    drop(lock);
    let r = s.call("POST", "/api/runs", &[("Authorization", &auth[0].1)]);
    assert_eq!(r.status, 202, "{}", r.body);
}

/// No warehouse, or one held by a load: 503 JSON with Retry-After, never a hang.
#[test]
fn an_unavailable_warehouse_is_503() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let s = serve(dir.path(), None, &[], &[]);
    for path in ["/api/runs", "/api/files", "/api/rejects", "/api/quarters"] {
        let r = s.get(path);
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert_eq!(r.json()["error"], "unavailable");
        assert_eq!(r.header("retry-after"), Some("5"));
    }
    drop(s);
    json(dir.path(), None, &["run", "--json"]);
    let s = serve(dir.path(), None, &[], &[]);
    assert_eq!(s.get("/api/runs").status, 200);
    let mut writer = rusqlite::Connection::open(dir.path().join("warehouse.db")).unwrap();
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    tx.execute("UPDATE runs SET status = status", []).unwrap();
    let started = Instant::now();
    let r = s.get("/api/files");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    tx.rollback().unwrap();
    poll(
        "the API to answer again",
        Duration::from_secs(30),
        || (s.get("/api/files").status == 200).then_some(()),
        || s.daemon.log_text(),
    );
}

/// schemathesis, every check, against the live server: with and without the token.
#[test]
fn schemathesis_finds_nothing() {
    let st = require_schemathesis();
    let dir = tempfile::tempdir().unwrap();
    load(dir.path(), None);
    let s = serve(dir.path(), None, &[("BANKPIPE_API_TOKEN", TOKEN)], &[]);
    let auth = format!("Authorization: Bearer {TOKEN}");
    for extra in [vec![], vec!["-H", auth.as_str()]] {
        let report = dir.path().join("schemathesis");
        let out = Command::new(&st)
            .args(["run", &s.url("/api/openapi.json"), "--checks", "all"])
            .args(["--max-examples", "40", "--seed", "1", "--no-color"])
            .args(["--request-timeout", "20", "--report-dir"])
            .arg(&report)
            .args(&extra)
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis {extra:?} found problems:\n{stdout}\n{}\n--- serve log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.daemon.log_text()
        );
        assert!(stdout.contains("5 selected / 5 total"), "{stdout}");
    }
}

/// The `schemathesis` program; panics saying how to install it.
fn require_schemathesis() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("schemathesis"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`schemathesis` is not installed: this test needs it. Install it with \
                 `pip install schemathesis` (PyPI); `.ci/run` does."
            )
        })
}
