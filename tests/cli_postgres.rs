//! End-to-end tests of `bankpipe` on a PostgreSQL warehouse: the same contract as on
//! SQLite, many workers, crashes, restarts, roles and TLS, against real throwaway
//! clusters (`tests/support/pg.rs`; never skipped).

#[path = "support/pg.rs"]
mod pg;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pg::PgCluster;
use serde_json::Value;

const HEADER: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)";

fn bankpipe(dir: &Path, url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
    c.current_dir(dir)
        .arg("--data-dir")
        .arg(dir)
        .env("BANKPIPE_WAREHOUSE_URL", url)
        .env_remove("BANKPIPE_LAKE_URL")
        .env_remove("BANKPIPE_INBOX")
        .env_remove("BANKPIPE_CONFIG")
        .env("BANKPIPE_LOG", "warn")
        .stdin(Stdio::null());
    c
}

fn run_json(dir: &Path, url: &str) -> (Value, i32, String) {
    run_json_with(dir, url, &[])
}

fn run_json_with(dir: &Path, url: &str, extra: &[&str]) -> (Value, i32, String) {
    let out: Output = bankpipe(dir, url)
        .args(["run", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (report, out.status.code().unwrap(), stderr)
}

fn generate(path: &Path, rows: u64, seed: u64, first_id: u64, defects: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
        .args(["generate", "--rows", &rows.to_string(), "--out"])
        .arg(path)
        .args([
            "--seed",
            &seed.to_string(),
            "--first-id",
            &first_id.to_string(),
        ])
        .args(["--defects", defects])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn workdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    (dir, inbox)
}

fn files(report: &Value) -> &Vec<Value> {
    report["files"].as_array().unwrap()
}

#[test]
fn postgres_gives_the_same_results_as_sqlite() {
    let (dir, inbox) = workdir();
    generate(&inbox.join("a.csv"), 20_000, 11, 1, "0.01");
    generate(&inbox.join("b.csv"), 20_000, 12, 15_001, "0.01"); // overlaps a.csv
    let db = PgCluster::shared().database();
    let (pg_report, code, err) = run_json_with(dir.path(), &db.url, &["--max-reject-share", "0.5"]);
    assert_eq!(code, 0, "{pg_report}\n{err}");
    let sqlite_url = format!("sqlite://{}/w.db", dir.path().display());
    std::fs::remove_dir_all(dir.path().join("lake")).unwrap();
    let (lite_report, code, err) =
        run_json_with(dir.path(), &sqlite_url, &["--max-reject-share", "0.5"]);
    assert_eq!(code, 0, "{lite_report}\n{err}");
    for (p, l) in files(&pg_report).iter().zip(files(&lite_report)) {
        for k in [
            "name",
            "sha256",
            "status",
            "rows_read",
            "rows_loaded",
            "rows_rejected",
            "rows_duplicate",
            "amount_read",
            "amount_loaded",
            "amount_rejected",
            "amount_duplicate",
            "warnings",
            "rejects",
            "formats",
        ] {
            assert_eq!(p[k], l[k], "{k} differs between backends for {}", p["name"]);
        }
    }
    let b = &files(&pg_report)[1];
    assert!(
        b["rows_duplicate"].as_u64().unwrap()
            + b["rejects"]["conflicting_duplicate"].as_u64().unwrap_or(0)
            >= 4_800
    );
    // Typed, exact storage.
    let sum = PgCluster::shared().psql(
        &db.name,
        "SELECT pg_typeof(amount)::text, pg_typeof(transaction_at)::text, pg_typeof(customer_dob)::text FROM transactions LIMIT 1",
    );
    assert_eq!(sum, "numeric|timestamp without time zone|date");
    // Rerun: duplicates only.
    let (again, code, _) = run_json(dir.path(), &db.url);
    assert_eq!(code, 0);
    assert!(
        files(&again)
            .iter()
            .all(|f| f["status"] == "duplicate_file"),
        "{again}"
    );
}

#[test]
fn four_workers_over_twenty_files_load_each_once() {
    let (dir, inbox) = workdir();
    for i in 0..20u64 {
        generate(
            &inbox.join(format!("m{i:02}.csv")),
            3_000,
            100 + i,
            1 + i * 3_000,
            "0.002",
        );
    }
    let db = PgCluster::shared().database();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            bankpipe(dir.path(), &db.url)
                .args(["run", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut loaded_by_name = std::collections::BTreeMap::<String, u32>::new();
    for w in workers {
        let out = w.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        for f in files(&report) {
            assert_ne!(f["status"], "failed", "{f}");
            if f["status"] == "loaded" {
                *loaded_by_name
                    .entry(f["name"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }
    assert_eq!(loaded_by_name.len(), 20, "{loaded_by_name:?}");
    assert!(
        loaded_by_name.values().all(|n| *n == 1),
        "{loaded_by_name:?}"
    );
    let c = PgCluster::shared();
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT COUNT(*) FROM files WHERE status = 'loaded'"
        ),
        "20"
    );
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT COUNT(*) = (SELECT SUM(rows_loaded) FROM files) FROM transactions"
        ),
        "t"
    );
}

fn wait_for(child: &mut std::process::Child, needle: &str) {
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("process ended before {needle:?}");
        }
        if line.contains(needle) {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
}

#[test]
fn kill_9_mid_load_then_rerun_loads_exactly_once() {
    let (dir, inbox) = workdir();
    generate(&inbox.join("big.csv"), 200_000, 21, 1, "0.002");
    let db = PgCluster::shared().database();
    for delay in [50u64, 400] {
        let mut child = bankpipe(dir.path(), &db.url)
            .args(["run"])
            .env("BANKPIPE_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(&mut child, "Claimed");
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let (r, code, err) = run_json(dir.path(), &db.url);
    assert_eq!(code, 0, "{r}\n{err}");
    let c = PgCluster::shared();
    assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM files"), "1");
    assert_eq!(c.psql(&db.name, "SELECT status FROM files"), "loaded");
    assert_eq!(
        c.psql(&db.name, "SELECT (SELECT COUNT(*) FROM transactions) = rows_loaded AND (SELECT COUNT(*) FROM rejected_rows) = rows_rejected AND rows_read = 200000 FROM files"),
        "t"
    );
}

#[test]
fn a_server_restart_mid_load_is_retried() {
    let cluster = PgCluster::start();
    let db = cluster.database();
    let (dir, inbox) = workdir();
    generate(&inbox.join("big.csv"), 300_000, 31, 1, "0");
    let mut child = bankpipe(dir.path(), &db.url)
        .args(["run", "--json"])
        .env("BANKPIPE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 && !line.contains("Claimed") {
        line.clear();
    }
    std::thread::sleep(Duration::from_millis(150));
    cluster.restart();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{rest}");
    assert!(rest.contains("retrying"), "a retry is logged: {rest}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(files(&report)[0]["rows_loaded"], 300_000);
    assert_eq!(
        cluster.psql(&db.name, "SELECT COUNT(*) FROM transactions"),
        "300000"
    );
}

#[test]
fn least_privilege_roles() {
    let c = PgCluster::shared();
    let db = c.database();
    let (dir, inbox) = workdir();
    let out = bankpipe(dir.path(), &db.url)
        .args(["migrate", "--create-roles"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A loader login loads; DDL is refused.
    c.psql(&db.name, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'etl') THEN CREATE ROLE etl LOGIN; END IF; END $$; GRANT bankpipe_loader TO etl");
    c.psql(&db.name, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'analyst') THEN CREATE ROLE analyst LOGIN; END IF; END $$; GRANT bankpipe_reader TO analyst");
    let mut text = format!("{HEADER}\n");
    text.push_str("R1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n");
    text.push_str("R2,C1,10/1/94,F,PUNE,1.0,31/2/16,143207,25.0\n");
    text.push_str("R3,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n");
    std::fs::write(inbox.join("r.csv"), text).unwrap();
    let etl_url = db.url.replacen("postgres@", "etl@", 1);
    let (r, code, err) = run_json_with(
        dir.path(),
        &(etl_url + "?options=-c%20role%3Dbankpipe_loader"),
        &["--max-reject-share", "0.5"],
    );
    assert_eq!(code, 0, "{r}\n{err}");
    let as_role = |role: &str, sql: &str| {
        Command::new("psql")
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
            ])
            .arg(c.port().to_string())
            .args(["-U", "postgres", "-d", &db.name, "-c"])
            .arg(format!("SET ROLE {role}; {sql}"))
            .output()
            .unwrap()
    };
    let refused = |role: &str, sql: &str| {
        let o = as_role(role, sql);
        assert!(!o.status.success(), "{role} should be refused: {sql}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("permission denied") || e.contains("must be owner"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let allowed = |role: &str, sql: &str| {
        let o = as_role(role, sql);
        assert!(
            o.status.success(),
            "{role}: {sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let out = String::from_utf8_lossy(&o.stdout);
        out.trim().trim_start_matches("SET").trim().to_owned()
    };
    refused("bankpipe_loader", "CREATE TABLE evil (x int)");
    refused("bankpipe_loader", "DROP TABLE transactions");
    refused(
        "bankpipe_loader",
        "ALTER TABLE transactions ADD COLUMN x int",
    );
    refused("bankpipe_reader", "SELECT raw FROM rejected_rows");
    refused("bankpipe_reader", "DELETE FROM transactions");
    refused("bankpipe_reader", "INSERT INTO files (sha256) VALUES ('x')");
    assert_eq!(
        allowed("bankpipe_reader", "SELECT COUNT(*) FROM transactions"),
        "2"
    );
    assert_eq!(
        allowed("bankpipe_reader", "SELECT rule FROM rejected_rows"),
        "invalid_transaction_date"
    );
    refused("analyst", "SELECT raw FROM rejected_rows");
    // The loader may withdraw a claim it could not land (Warehouse::abandon).
    let etl = format!(
        "{}?options=-c%20role%3Dbankpipe_loader",
        db.url.replacen("postgres@", "etl@", 1)
    );
    let mut w = bankpipe::warehouse::Warehouse::open(&etl).unwrap();
    let file = bankpipe::warehouse::NewFile {
        sha256: "ab".repeat(32),
        original_name: "withdrawn.csv".into(),
        bytes: 1,
        profile: None,
        format: "csv".into(),
        compression: "none".into(),
        lake_key: "raw/x".into(),
        received_at: "2026-11-26T00:00:00Z".into(),
        run_id: "r".into(),
    };
    let bankpipe::warehouse::Claim::New { file_id } = w.claim(&file).unwrap() else {
        panic!("a new claim")
    };
    w.abandon(file_id).unwrap();
    assert_eq!(
        c.psql(
            &db.name,
            &format!("SELECT COUNT(*) FROM files WHERE file_id = {file_id}")
        ),
        "0"
    );
}

#[test]
fn tls_require_and_verify_full() {
    let c = PgCluster::start_tls();
    let db = c.database();
    let ca = c.ca_cert().unwrap().display().to_string();
    let (dir, inbox) = workdir();
    generate(&inbox.join("t.csv"), 1_000, 41, 1, "0");
    let host_url = |host: &str| db.url.replacen("127.0.0.1", host, 1);
    for url in [
        format!("{}?sslmode=require", db.url),
        format!(
            "{}?sslmode=verify-full&sslrootcert={ca}",
            host_url("localhost")
        ),
        format!("{}?sslmode=verify-ca&sslrootcert={ca}", db.url),
    ] {
        let out = bankpipe(dir.path(), &url)
            .args(["status", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (r, code, err) = run_json(
        dir.path(),
        &format!(
            "{}?sslmode=verify-full&sslrootcert={ca}",
            host_url("localhost")
        ),
    );
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(
        c.psql(&db.name, "SELECT COUNT(*) FROM transactions"),
        "1000"
    );
    // verify-full against the system roots: the self-signed CA is not trusted.
    let out = bankpipe(
        dir.path(),
        &format!("{}?sslmode=verify-full", host_url("localhost")),
    )
    .args(["status"])
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server demands TLS or a password; sslmode=disable with a wrong password fails
    // without echoing it.
    let wrong = db
        .url
        .replacen(pg::TLS_SUPERUSER_PASSWORD, "Wr0ngPassw0rd", 1)
        + "?sslmode=disable";
    let out = bankpipe(dir.path(), &wrong).args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("Wr0ngPassw0rd"), "{all}");
    assert!(!all.contains(pg::TLS_SUPERUSER_PASSWORD), "{all}");
    assert!(all.contains("password authentication failed"), "{all}");
}

#[test]
fn a_quarter_is_read_without_scanning_other_quarters() {
    let (dir, inbox) = workdir();
    for (i, month) in ["2016-08", "2016-11", "2017-02"].iter().enumerate() {
        let out = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
            .args([
                "generate",
                "--rows",
                "30000",
                "--defects",
                "0",
                "--month",
                month,
            ])
            .args([
                "--first-id",
                &(1 + i * 30_000).to_string(),
                "--seed",
                &i.to_string(),
            ])
            .arg("--out")
            .arg(inbox.join(format!("{month}.csv")))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let c = PgCluster::shared();
    let db = c.database();
    let (r, code, err) = run_json(dir.path(), &db.url);
    assert_eq!(code, 0, "{r}\n{err}");
    // In production autovacuum summarises completed block ranges in the background
    // (`autosummarize = on`); the test does it now instead of waiting for a naptime.
    c.psql(
        &db.name,
        "SELECT brin_summarize_new_values('transactions_brin'); ANALYZE transactions",
    );
    let total_pages: u64 = c
        .psql(
            &db.name,
            "SELECT relpages FROM pg_class WHERE relname = 'transactions'",
        )
        .parse()
        .unwrap();
    let plan = c.psql(
        &db.name,
        "SET enable_seqscan = off; EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
         SELECT SUM(amount) FROM transactions
         WHERE transaction_at >= '2016-10-01' AND transaction_at < '2017-01-01'",
    );
    assert!(plan.contains("transactions_brin"), "{plan}");
    let lossy: u64 = plan
        .split("lossy=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no heap block count in {plan}"));
    assert!(
        lossy * 2 < total_pages,
        "the quarter read {lossy} of {total_pages} pages: {plan}"
    );
    // And the answer is right.
    assert_eq!(
        c.psql(&db.name, "SELECT COUNT(*) FROM transactions WHERE transaction_at >= '2016-10-01' AND transaction_at < '2017-01-01'"),
        "30000"
    );
    // The same index prunes by file (lineage): one file's rows without reading the others.
    let plan = c.psql(
        &db.name,
        "SET enable_seqscan = off; EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
         SELECT COUNT(*) FROM transactions WHERE file_id = 2",
    );
    assert!(plan.contains("transactions_brin"), "{plan}");
    let lossy: u64 = plan
        .split("lossy=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no heap block count in {plan}"));
    assert!(
        lossy * 2 < total_pages,
        "one file read {lossy} of {total_pages} pages: {plan}"
    );
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT COUNT(*) FROM transactions WHERE file_id = 2"
        ),
        "30000"
    );
}

#[test]
fn reprocess_replaces_a_file_atomically_on_postgres() {
    let (dir, inbox) = workdir();
    let mut text = format!("{HEADER}\n");
    for i in 0..100 {
        let date = if i % 10 == 0 { "31/2/16" } else { "2/8/16" };
        text.push_str(&format!("Q{i},C1,10/1/94,F,PUNE,1.0,{date},143207,25.0\n"));
    }
    std::fs::write(inbox.join("q.csv"), text).unwrap();
    let c = PgCluster::shared();
    let db = c.database();
    let (r, code, _) = run_json_with(dir.path(), &db.url, &["--max-reject-share", "0.2"]);
    assert_eq!(code, 0, "{r}");
    // Stricter contract now: the file fails, nothing of it stays loaded.
    let out = bankpipe(dir.path(), &db.url)
        .args(["reprocess", "1", "--json", "--max-reject-share", "0.05"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.psql(&db.name, "SELECT status, rows_loaded FROM files"),
        "failed|0"
    );
    assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM transactions"), "0");
    assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM rejected_rows"), "10");
    // And back.
    let out = bankpipe(dir.path(), &db.url)
        .args(["reprocess", "1", "--max-reject-share", "0.2"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.psql(&db.name, "SELECT status, rows_loaded FROM files"),
        "loaded|90"
    );
    assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM transactions"), "90");
    assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM rejected_rows"), "10");
}

#[test]
fn records_sharing_a_line_on_postgres() {
    let (dir, inbox) = workdir();
    // Same records as tests/cli.rs COMPACT_JSON, loaded after a first file so that the
    // staging merge path runs.
    std::fs::write(
        inbox.join("a.csv"),
        format!("{HEADER}\nZZ1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    )
    .unwrap();
    std::fs::write(
        inbox.join("b.json"),
        r#"[{"transaction_id":"J1","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"10.00","currency":"INR"},{"transaction_id":"J1","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"10.00","currency":"INR"},{"transaction_id":"J2","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"-1","currency":"INR"},{"transaction_id":"J3","customer_id":"","transaction_at":"2016-08-02T10:00:00","amount":"5","currency":"INR"},{"transaction_id":"J1","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"11.00","currency":"INR"},{"transaction_id":"J4","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"4.00","currency":"INR"}]"#,
    )
    .unwrap();
    let db = PgCluster::shared().database();
    let (r, code, err) = run_json_with(dir.path(), &db.url, &["--max-reject-share", "0.9"]);
    assert_eq!(code, 0, "{r}\n{err}");
    let f = files(&r).iter().find(|f| f["name"] == "b.json").unwrap();
    assert_eq!(f["rows_loaded"], 2, "{f}");
    assert_eq!(f["rows_duplicate"], 1, "{f}");
    assert_eq!(f["rows_rejected"], 3, "{f}");
    assert_eq!(f["amount_loaded"], "14.00");
    assert_eq!(
        PgCluster::shared().psql(&db.name, "SELECT COUNT(*) FROM transactions"),
        "3"
    );
}

#[test]
fn parallel_files_on_a_session_pool_give_the_sequential_totals() {
    let (_dir, inbox) = workdir();
    generate(&inbox.join("a.csv"), 4_000, 1, 1, "0");
    generate(&inbox.join("b.csv"), 6_000, 1, 1, "0"); // a's 4,000 rows again, then new ones
    generate(&inbox.join("c.csv"), 3_000, 2, 100_000, "0");
    generate(&inbox.join("d.csv"), 3_000, 3, 200_000, "0");
    std::fs::copy(inbox.join("c.csv"), inbox.join("e.csv")).unwrap();
    std::fs::write(inbox.join("f.csv"), format!("{HEADER}\n")).unwrap();
    generate(&inbox.join("g.csv"), 3_000, 4, 300_000, "0");

    let summary = |report: &Value| {
        let mut statuses: Vec<String> = files(report)
            .iter()
            .map(|f| f["status"].as_str().unwrap().to_owned())
            .collect();
        statuses.sort();
        let sum = |k: &str| {
            files(report)
                .iter()
                .map(|f| f[k].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        (
            statuses,
            sum("rows_loaded"),
            sum("rows_duplicate"),
            sum("rows_rejected"),
        )
    };
    let names = |report: &Value| -> Vec<String> {
        files(report)
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let c = PgCluster::shared();
    let mut results = Vec::new();
    for parallel in ["1", "3"] {
        let data = tempfile::tempdir().unwrap();
        let db = c.database();
        let out = bankpipe(data.path(), &db.url)
            .args(["run", "--json", "--parallel", parallel, "--inbox"])
            .arg(&inbox)
            .env("BANKPIPE_LOG", "bankpipe=debug")
            .output()
            .unwrap();
        // Claims were made on as many server sessions as files were processed at once.
        let log = String::from_utf8_lossy(&out.stderr);
        let mut sessions: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("Claimed."))
            .filter_map(|l| l.split("session=").nth(1))
            .filter_map(|s| s.split_whitespace().next())
            .collect();
        sessions.sort_unstable();
        sessions.dedup();
        if parallel == "1" {
            assert_eq!(sessions.len(), 1, "{log}");
        } else {
            assert!(sessions.len() >= 2, "{sessions:?}\n{log}");
        }
        assert_eq!(
            out.status.code(),
            Some(1),
            "f.csv fails: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            names(&report),
            [
                "a.csv", "b.csv", "c.csv", "d.csv", "e.csv", "f.csv", "g.csv"
            ],
            "reports keep inbox order"
        );
        assert_eq!(
            c.psql(&db.name, "SELECT COUNT(*) FROM transactions"),
            "15000"
        );
        assert_eq!(
            c.psql(
                &db.name,
                "SELECT COUNT(*) = (SELECT SUM(rows_loaded) FROM files) FROM transactions"
            ),
            "t"
        );
        // A rerun has nothing left to do, whatever the order the first one took.
        let again = bankpipe(data.path(), &db.url)
            .args(["run", "--json", "--parallel", parallel, "--inbox"])
            .arg(&inbox)
            .output()
            .unwrap();
        let again: Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(summary(&again).1, 0, "{again}");
        results.push(summary(&report));
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(
        results[0],
        (
            [
                "duplicate_file",
                "failed",
                "loaded",
                "loaded",
                "loaded",
                "loaded",
                "loaded"
            ]
            .map(String::from)
            .to_vec(),
            15_000,
            4_000,
            0
        )
    );
}

#[test]
fn a_warehouse_at_version_2_upgrades_keeping_its_rows() {
    // Migration 0004 on a warehouse created before it: the per-row loaded_at goes, the
    // two BRIN indexes become one, rows already loaded stay, and loading goes on.
    let (dir, inbox) = workdir();
    let c = PgCluster::shared();
    let db = c.database();
    c.psql(
        &db.name,
        &format!(
            "CREATE TABLE schema_migrations (
                 version BIGINT PRIMARY KEY, name TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             {}
             INSERT INTO schema_migrations (version, name) VALUES (1, 'init'), (2, 'lake_status');
             INSERT INTO transactions (transaction_id, customer_id, transaction_at, amount,
                                       currency, file_id, line_no, loaded_at)
             VALUES ('OLD1', 'C1', '2016-08-02 14:32:07', 25.00, 'INR', 999, 2, now());",
            include_str!("support/pg_schema_v2.sql")
        ),
    );
    generate(&inbox.join("a.csv"), 100, 1, 1, "0");
    let (r, code, err) = run_json(dir.path(), &db.url);
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(files(&r)[0]["rows_loaded"], 100, "{r}");
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT COUNT(*) FROM information_schema.columns
             WHERE table_name = 'transactions' AND column_name = 'loaded_at'"
        ),
        "0"
    );
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes
             WHERE tablename = 'transactions'"
        ),
        "transactions_brin,transactions_pkey"
    );
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT file_id || ' ' || line_no || ' ' || amount FROM transactions
             WHERE transaction_id = 'OLD1'"
        ),
        "999 2 25.00"
    );
    assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM transactions"), "101");
    assert_eq!(
        c.psql(&db.name, "SELECT MAX(version) FROM schema_migrations"),
        "9"
    );
}

/// Amounts at the currency's minor units (JPY 0, KWD 3) reach PostgreSQL's NUMERIC
/// exactly, the control totals hold at each file's scale, and the per-format counts
/// are stored and listed by `files --json` (issue 9).
#[test]
fn currency_scales_and_format_counts_on_postgres() {
    let (dir, inbox) = workdir();
    std::fs::write(
        dir.path().join("bankpipe.toml"),
        r#"
[[profile]]
name = "yen"
currency = "JPY"
[profile.columns]
transaction_id = "yen_id"
customer_id = "customer"
transaction_at = "at"
amount = "amount"

[[profile]]
name = "dinar"
currency = "KWD"
delimiter = ";"
[profile.columns]
transaction_id = "dinar_id"
customer_id = "customer"
transaction_at = "at"
amount = "amount"
"#,
    )
    .unwrap();
    let at = "2016-08-02T10:00:00";
    std::fs::write(
        inbox.join("yen.csv"),
        format!("yen_id,customer,at,amount\nY1,C,{at},100\nY2,C,{at},100.5\nY3,C,{at},7\n"),
    )
    .unwrap();
    std::fs::write(
        inbox.join("dinar.csv"),
        format!("dinar_id;customer;at;amount\nD1;C;{at};1.234\nD2;C;{at};2\n"),
    )
    .unwrap();
    std::fs::write(
        inbox.join("mixed.csv"),
        format!(
            "{HEADER}\nT1,C1,10/1/94,F,X,1.00,2/8/16,143207,25.0\nT2,C1,10/1/94,F,X,1.00,2/8/2016,143207,25.0\nT3,C1,10/1/94,F,X,1.00,21-10-2016,143207,25.0\n"
        ),
    )
    .unwrap();
    let c = PgCluster::shared();
    let db = c.database();
    let (r, code, err) = run_json_with(dir.path(), &db.url, &["--max-reject-share", "0.5"]);
    assert_eq!(code, 0, "{r}\n{err}");
    let by_name = |n: &str| files(&r).iter().find(|f| f["name"] == n).unwrap().clone();
    assert_eq!(by_name("yen.csv")["amount_loaded"], "107");
    assert_eq!(by_name("yen.csv")["rejects"]["invalid_amount"], 1);
    assert_eq!(by_name("dinar.csv")["amount_loaded"], "3.234");
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT string_agg(transaction_id || '=' || amount::text, ' ' ORDER BY transaction_id)
             FROM transactions WHERE currency <> 'INR'"
        ),
        "D1=1.234 D2=2.000 Y1=100 Y3=7"
    );
    let want = serde_json::json!({"d/m/yy": 1, "d/m/yyyy": 1, "d-m-yyyy": 1});
    assert_eq!(by_name("mixed.csv")["formats"]["transaction_date"], want);
    let out = bankpipe(dir.path(), &db.url)
        .args(["files", "--json"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mixed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["original_name"] == "mixed.csv")
        .unwrap();
    assert_eq!(mixed["formats"]["transaction_date"], want, "{mixed}");
}
