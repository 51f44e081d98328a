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
            .args(["migrate"])
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
    // verify-full against the system roots: the self-signed CA is not trusted (a
    // setting to fix: exit 2).
    let out = bankpipe(
        dir.path(),
        &format!("{}?sslmode=verify-full", host_url("localhost")),
    )
    .args(["status"])
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
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
    assert_eq!(out.status.code(), Some(2));
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

/// Issue 8 section 4 on PostgreSQL, run as the least-privilege loader: a row another
/// file counted as an identical duplicate survives a reprocess that fails the file
/// holding it (moved to the other file's line, shown first by a dry run), and
/// reprocessing back counts it once.
#[test]
fn reprocess_moves_rows_other_files_carry_on_postgres() {
    let (dir, inbox) = workdir();
    let c = PgCluster::shared();
    let db = c.database();
    let out = bankpipe(dir.path(), &db.url)
        .args(["migrate", "--create-roles"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.psql(&db.name, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'etl') THEN CREATE ROLE etl LOGIN; END IF; END $$; GRANT bankpipe_loader TO etl");
    let url = format!(
        "{}?options=-c%20role%3Dbankpipe_loader",
        db.url.replacen("postgres@", "etl@", 1)
    );
    let t1 = "T1,C1,10/1/94,F,,1.0,2/8/16,143207,25.0";
    let mut a = format!("{HEADER}\n{t1}\nT0,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,abc\n");
    for i in 1..=8 {
        a.push_str(&format!("A{i},C1,10/1/94,F,PUNE,1.0,2/8/16,143207,1.0\n"));
    }
    std::fs::write(inbox.join("a.csv"), a).unwrap();
    let (r, code, err) = run_json_with(dir.path(), &url, &["--max-reject-share", "0.2"]);
    assert_eq!(code, 0, "{r}\n{err}");
    std::fs::write(
        inbox.join("b.csv"),
        format!(
            "{HEADER}\nB1,C2,10/1/94,F,PUNE,1.0,2/8/16,143207,3.0\n{t1}\nB2,C2,10/1/94,F,PUNE,1.0,2/8/16,143207,4.0\n"
        ),
    )
    .unwrap();
    let (r, code, err) = run_json(dir.path(), &url);
    assert_eq!(code, 0, "{r}\n{err}");
    let lineage = "SELECT file_id || ':' || line_no || ' ' || amount FROM transactions WHERE transaction_id = 'T1'";
    assert_eq!(c.psql(&db.name, lineage), "1:2 25.00");
    assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM duplicate_rows"), "1");
    let catalog =
        "SELECT string_agg(file_id || ' ' || status || ' ' || rows_read || '=' || rows_loaded
                       || '+' || rows_rejected || '+' || rows_duplicate || ' ' || amount_loaded
                       || ' ' || amount_duplicate, ', ' ORDER BY file_id) FROM files";
    // Warnings of loaded files (a failed file keeps its own, uncounted).
    let warnings = "SELECT string_agg(file_id || ' ' || rule || ' ' || rows, ', ' ORDER BY file_id)
                    FROM file_warnings JOIN files USING (file_id) WHERE status = 'loaded'";
    let reprocess = |args: &[&str]| -> (Value, i32) {
        let out = bankpipe(dir.path(), &url)
            .args(["reprocess", "1", "--json"])
            .args(args)
            .output()
            .unwrap();
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (v, out.status.code().unwrap())
    };

    let before = c.psql(&db.name, catalog);
    let (d, code) = reprocess(&["--dry-run", "--max-reject-share", "0"]);
    assert_eq!(code, 1, "{d}");
    assert_eq!(d["rows_moved"], 1, "{d}");
    assert_eq!(d["moved_to"][0]["file_id"], 2, "{d}");
    assert_eq!(d["moved_to"][0]["name"], "b.csv", "{d}");
    assert_eq!(
        c.psql(&db.name, catalog),
        before,
        "a dry run changes nothing"
    );
    assert_eq!(c.psql(&db.name, lineage), "1:2 25.00");

    let (o, code) = reprocess(&["--max-reject-share", "0"]);
    assert_eq!(code, 1, "{o}");
    assert_eq!(o["after"]["status"], "failed", "{o}");
    assert_eq!(o["rows_moved"], 1, "{o}");
    assert_eq!(
        c.psql(&db.name, lineage),
        "2:3 25.00",
        "T1 now from b.csv line 3"
    );
    assert_eq!(
        c.psql(&db.name, catalog),
        "1 failed 10=0+1+0 0.00 0.00, 2 loaded 3=3+0+0 32.00 0.00"
    );
    assert_eq!(
        c.psql(&db.name, warnings),
        "2 missing_location 1",
        "T1's warning moved with it"
    );
    assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM transactions"), "3");
    assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM duplicate_rows"), "0");

    for _ in 0..2 {
        let (o, code) = reprocess(&["--max-reject-share", "0.2"]);
        assert_eq!(code, 0, "{o}");
        assert_eq!(o["rows_moved"], 0, "{o}");
        assert_eq!(c.psql(&db.name, lineage), "2:3 25.00");
        assert_eq!(
            c.psql(&db.name, catalog),
            "1 loaded 10=8+1+1 8.00 25.00, 2 loaded 3=3+0+0 32.00 0.00",
            "T1 counted once: B loads it, A counts it a duplicate"
        );
        assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM transactions"), "11");
        assert_eq!(c.psql(&db.name, warnings), "2 missing_location 1");
        assert_eq!(
            c.psql(
                &db.name,
                "SELECT file_id || ':' || line_no FROM duplicate_rows"
            ),
            "1:2"
        );
    }
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
    // Every migration shipped in sql/postgres/ was applied.
    let newest = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/postgres"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.get(..4)?.parse::<u32>().ok())
        .max()
        .unwrap();
    assert_eq!(
        c.psql(&db.name, "SELECT MAX(version) FROM schema_migrations"),
        newest.to_string()
    );
}

/// Every plan node of an `EXPLAIN (FORMAT JSON)` document, depth first.
fn plan_nodes(node: &Value, out: &mut Vec<Value>) {
    out.push(node.clone());
    for child in node["Plans"].as_array().into_iter().flatten() {
        plan_nodes(child, out);
    }
}

/// Why a plan costs more than about n log n in its inputs, if it does: a subplan run per
/// row (issue #8: `IN (SELECT ...)` unhashed at the default `work_mem` was rows²), or a
/// nested loop whose inner side is not an index probe (a rescan per outer row).
fn quadratic_shape(plan: &Value) -> Option<String> {
    let mut nodes = Vec::new();
    plan_nodes(&plan[0]["Plan"], &mut nodes);
    for n in &nodes {
        if n["Parent Relationship"] == "SubPlan" || n.get("Subplan Name").is_some() {
            return Some(format!("a SubPlan: {}", n["Subplan Name"]));
        }
        if n["Node Type"] == "Nested Loop" {
            let inner = n["Plans"]
                .as_array()
                .and_then(|p| p.iter().find(|c| c["Parent Relationship"] == "Inner"));
            let probe = inner.is_some_and(|i| {
                let t = i["Node Type"].as_str().unwrap_or("");
                t == "Index Scan" || t == "Index Only Scan" || t == "Memoize"
            });
            if !probe {
                return Some(format!(
                    "a nested loop rescanning {}",
                    inner.map_or(Value::Null, |i| i["Node Type"].clone())
                ));
            }
        }
    }
    None
}

#[test]
fn the_merge_path_plans_are_never_quadratic_at_any_work_mem() {
    // A realistic size: 400,000 rows stored, a file of 200,000 staged rows of which
    // 20,000 ids are stored already (half identical, half different) and 2,000 repeat
    // an earlier id of the same file.
    let c = PgCluster::shared();
    let db = c.database();
    drop(bankpipe::warehouse::Warehouse::open(&db.url).unwrap()); // the schema
    let mut client = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    client
        .batch_execute(
            "INSERT INTO transactions (transaction_id, customer_id, customer_dob, gender, location,
                 account_balance, transaction_at, amount, currency, file_id, line_no)
             SELECT 'T' || g, 'C' || (g % 5000), DATE '1990-01-01' + g % 9000, 'F', 'PUNE',
                    g % 1000, TIMESTAMP '2016-08-01' + g * INTERVAL '1 second', (g % 997) + 0.5,
                    'INR', 1, g + 1
             FROM generate_series(1, 400000) g;
             ANALYZE transactions;",
        )
        .unwrap();
    let sql = bankpipe::warehouse::postgres::MergeSql::new();
    let mut tx = client.transaction().unwrap();
    tx.batch_execute(&sql.staging).unwrap();
    tx.batch_execute(
        "INSERT INTO bankpipe_staging
         SELECT 'T' || id, 'C' || (id % 5000), DATE '1990-01-01' + id % 9000, 'F', 'PUNE',
                id % 1000, TIMESTAMP '2016-08-01' + id * INTERVAL '1 second',
                (id % 997) + CASE WHEN id % 2 = 0 THEN 0.5 ELSE 0.25 END,
                'INR', 2, g + 1, 0, 'raw line', g
         FROM (SELECT g, CASE WHEN g % 100 = 0 THEN 380000 + g - 50 ELSE 380000 + g END AS id
               FROM generate_series(1, 200000) g) s;
         ANALYZE bankpipe_staging;",
    )
    .unwrap();
    tx.batch_execute(&format!(
        "PREPARE merge_insert AS {}; PREPARE merge_classify(int, bigint) AS {};
         PREPARE merge_quarantine(bigint) AS {};
         PREPARE set_aside_insert AS {}; PREPARE repeats_classify(int, bigint) AS {};
         PREPARE repeats_quarantine(bigint) AS {}; PREPARE repeats_duplicates(bigint) AS {};",
        sql.insert,
        sql.classify,
        sql.quarantine,
        sql.set_aside_insert,
        sql.repeats_classify,
        sql.repeats_quarantine,
        sql.repeats_duplicates
    ))
    .unwrap();
    for work_mem in ["4MB", "64kB"] {
        tx.batch_execute(&format!("SET LOCAL work_mem = '{work_mem}'"))
            .unwrap();
        for statement in [
            "merge_insert",
            "merge_classify(2, 2)",
            "merge_quarantine(2)",
            "set_aside_insert",
            "repeats_classify(2, 2)",
            "repeats_quarantine(2)",
            "repeats_duplicates(2)",
        ] {
            let explained = tx
                .simple_query(&format!("EXPLAIN (FORMAT JSON) EXECUTE {statement}"))
                .unwrap();
            let text = explained
                .iter()
                .find_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .unwrap();
            let plan: Value = serde_json::from_str(&text).unwrap();
            if let Some(why) = quadratic_shape(&plan) {
                panic!("{statement} at work_mem {work_mem} plans {why}:\n{text}");
            }
        }
    }
    // The statements also give the right answer here: 180,000 new ids (less the 1,800
    // repeats among them) loaded.
    tx.execute("EXECUTE merge_insert", &[]).unwrap();
    let row = tx
        .simple_query("EXECUTE merge_classify(2, 2)")
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(
                (0..6)
                    .map(|i| r.get(i).unwrap_or("").to_owned())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .unwrap();
    let count = |i: usize| row[i].parse::<u64>().unwrap();
    assert_eq!(count(0) + count(2) + count(4), 200_000, "{row:?}");
    assert_eq!(count(0), 178_200, "{row:?}");
}

/// The `amount` column of a generated Kaggle-layout line, in paise.
fn paise(line: &str) -> i128 {
    let amount = line.rsplit(',').next().unwrap().trim();
    let (units, frac) = amount.split_once('.').unwrap_or((amount, ""));
    let frac = format!("{frac:0<2}");
    units.parse::<i128>().unwrap() * 100 + frac[..2].parse::<i128>().unwrap()
}

fn decimal(paise: i128) -> String {
    format!("{}.{:02}", paise / 100, paise % 100)
}

#[test]
fn an_overlapping_file_loads_through_the_merge_with_exact_totals() {
    let (dir, inbox) = workdir();
    let db = PgCluster::shared().database();
    let c = PgCluster::shared();
    // a.csv: 20,000 rows, loaded first (no defects: every row valid).
    let a_path = dir.path().join("a.csv");
    generate(&a_path, 20_000, 51, 1, "0");
    let a = std::fs::read_to_string(&a_path).unwrap();
    let a_rows: Vec<&str> = a.lines().skip(1).collect();
    std::fs::copy(&a_path, inbox.join("a.csv")).unwrap();
    let (r, code, err) = run_json(dir.path(), &db.url);
    assert_eq!(code, 0, "{r}\n{err}");
    // b.csv: the last 2,000 rows of a.csv again (identical), 100 rows of a.csv with
    // another amount (conflicting), 18,000 new rows, then 300 repeats of its own rows
    // (identical) and 50 of its own ids with another amount (conflicting).
    let b_path = dir.path().join("b-new.csv");
    generate(&b_path, 18_000, 52, 20_001, "0");
    let b_new_text = std::fs::read_to_string(&b_path).unwrap();
    let b_new: Vec<&str> = b_new_text.lines().skip(1).collect();
    let other_amount = |line: &str| {
        let (head, _) = line.rsplit_once(',').unwrap();
        format!("{head},77.77")
    };
    let mut b = vec![HEADER.to_owned()];
    b.extend(a_rows[18_000..].iter().map(|l| l.to_string()));
    b.extend(a_rows[..100].iter().map(|l| other_amount(l)));
    b.extend(b_new.iter().map(|l| l.to_string()));
    b.extend(b_new[..300].iter().map(|l| l.to_string()));
    b.extend(b_new[1_000..1_050].iter().map(|l| other_amount(l)));
    std::fs::write(inbox.join("b.csv"), b.join("\n") + "\n").unwrap();
    let (r, code, err) = run_json_with(dir.path(), &db.url, &["--max-reject-share", "0.05"]);
    assert_eq!(code, 0, "{r}\n{err}");
    let fb = files(&r)
        .iter()
        .find(|f| f["name"] == "b.csv")
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(fb["status"], "loaded", "{fb}");
    assert_eq!(fb["rows_read"], 20_450, "{fb}");
    assert_eq!(fb["rows_loaded"], 18_000, "{fb}");
    assert_eq!(fb["rows_duplicate"], 2_300, "{fb}");
    assert_eq!(fb["rows_rejected"], 150, "{fb}");
    assert_eq!(fb["rejects"]["conflicting_duplicate"], 150, "{fb}");
    let sum = |lines: &[&str]| lines.iter().map(|l| paise(l)).sum::<i128>();
    let loaded = sum(&b_new);
    let duplicate = sum(&a_rows[18_000..]) + sum(&b_new[..300]);
    let rejected = 150 * 7_777;
    assert_eq!(fb["amount_loaded"], decimal(loaded), "{fb}");
    assert_eq!(fb["amount_duplicate"], decimal(duplicate), "{fb}");
    assert_eq!(fb["amount_rejected"], decimal(rejected), "{fb}");
    assert_eq!(
        fb["amount_read"],
        decimal(loaded + duplicate + rejected),
        "{fb}"
    );
    let file_id = fb["file_id"].as_i64().unwrap();
    // What the warehouse holds agrees, row for row and to the paisa.
    assert_eq!(
        c.psql(
            &db.name,
            &format!("SELECT COUNT(*), SUM(amount) FROM transactions WHERE file_id = {file_id}")
        ),
        format!("18000|{}", decimal(loaded))
    );
    assert_eq!(
        c.psql(&db.name, "SELECT COUNT(*) FROM transactions"),
        "38000"
    );
    // First occurrence wins: the repeated ids keep the line of their first occurrence,
    // and each conflict names the differing column and where the stored row came from.
    let first = b_new[1_000].split(',').next().unwrap();
    assert_eq!(
        c.psql(
            &db.name,
            &format!(
                "SELECT line_no, amount <> 77.77 FROM transactions WHERE transaction_id = '{first}'"
            )
        ),
        format!("{}|t", 2 + 2_000 + 100 + 1_000)
    );
    assert_eq!(
        c.psql(
            &db.name,
            &format!(
                "SELECT COUNT(*) FILTER (WHERE detail LIKE 'already loaded from file % line % with a different amount'),
                        COUNT(*) FILTER (WHERE detail LIKE 'already loaded from file 1 %'), SUM(amount)
                 FROM rejected_rows WHERE file_id = {file_id}"
            )
        ),
        format!("150|100|{}", decimal(rejected))
    );
}

#[test]
fn repeats_inside_a_file_stay_on_the_optimistic_path_with_exact_totals() {
    // Issue #8: real files repeat some of their own ids. Those rows are set aside during
    // the optimistic COPY and classified against the stored first occurrence, so the
    // file is neither staged whole nor read twice; a file that also carries an id stored
    // by another file, late in the file, still takes the staging path and agrees.
    let (dir, inbox) = workdir();
    let db = PgCluster::shared().database();
    let c = PgCluster::shared();
    let new_path = dir.path().join("c-new.csv");
    generate(&new_path, 10_000, 61, 1, "0");
    let text = std::fs::read_to_string(&new_path).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    let other_amount = |line: &str| {
        let (head, _) = line.rsplit_once(',').unwrap();
        format!("{head},77.77")
    };
    // c.csv: rows 0..6000, then 200 identical repeats of rows 0..200 and 30 repeats of
    // rows 1000..1030 with another amount, then rows 6000..10000, then 100 identical
    // repeats of rows 9000..9100 (a repeat whose first occurrence is in the same batch).
    let mut c_lines = vec![HEADER.to_owned()];
    c_lines.extend(rows[..6_000].iter().map(|l| l.to_string()));
    c_lines.extend(rows[..200].iter().map(|l| l.to_string()));
    c_lines.extend(rows[1_000..1_030].iter().map(|l| other_amount(l)));
    c_lines.extend(rows[6_000..].iter().map(|l| l.to_string()));
    c_lines.extend(rows[9_000..9_100].iter().map(|l| l.to_string()));
    std::fs::write(inbox.join("c.csv"), c_lines.join("\n") + "\n").unwrap();
    let out = bankpipe(dir.path(), &db.url)
        .env("BANKPIPE_LOG", "debug")
        .args(["run", "--json", "--max-reject-share", "0.05"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(out.status.code(), Some(0), "{r}\n{log}");
    assert!(
        log.contains("Merged the rows set aside by the optimistic COPY.")
            && !log.contains("merging through staging"),
        "the file should have stayed on the optimistic path:\n{log}"
    );
    let fc = files(&r)
        .iter()
        .find(|f| f["name"] == "c.csv")
        .unwrap_or_else(|| panic!("{r}"));
    let sum = |lines: &[&str]| lines.iter().map(|l| paise(l)).sum::<i128>();
    let loaded = sum(&rows);
    let duplicate = sum(&rows[..200]) + sum(&rows[9_000..9_100]);
    let rejected = 30 * 7_777;
    assert_eq!(fc["status"], "loaded", "{fc}");
    assert_eq!(fc["rows_read"], 10_330, "{fc}");
    assert_eq!(fc["rows_loaded"], 10_000, "{fc}");
    assert_eq!(fc["rows_duplicate"], 300, "{fc}");
    assert_eq!(fc["rows_rejected"], 30, "{fc}");
    assert_eq!(fc["rejects"]["conflicting_duplicate"], 30, "{fc}");
    assert_eq!(fc["amount_loaded"], decimal(loaded), "{fc}");
    assert_eq!(fc["amount_duplicate"], decimal(duplicate), "{fc}");
    assert_eq!(fc["amount_rejected"], decimal(rejected), "{fc}");
    let file_id = fc["file_id"].as_i64().unwrap();
    // First occurrence wins: the stored row keeps its first line and amount.
    let id = rows[1_000].split(',').next().unwrap();
    assert_eq!(
        c.psql(
            &db.name,
            &format!(
                "SELECT line_no, amount <> 77.77 FROM transactions WHERE transaction_id = '{id}'"
            )
        ),
        "1002|t"
    );
    assert_eq!(
        c.psql(
            &db.name,
            &format!("SELECT COUNT(*), SUM(amount) FROM transactions WHERE file_id = {file_id}")
        ),
        format!("10000|{}", decimal(loaded))
    );
    // Conflicts name the column and the stored row's file and line; identical repeats
    // are recorded as duplicate lineage at their own lines.
    assert_eq!(
        c.psql(
            &db.name,
            &format!(
                "SELECT COUNT(*), SUM(amount), MIN(line_no), MAX(line_no)
                 FROM rejected_rows WHERE file_id = {file_id}"
            )
        ),
        format!("30|{}|6202|6231", decimal(rejected))
    );
    assert_eq!(
        c.psql(
            &db.name,
            &format!(
                "SELECT COUNT(*) FILTER (WHERE detail = 'already loaded from file {file_id} line ' || (line_no - 6202 + 1002) || ' with a different amount')
                 FROM rejected_rows WHERE file_id = {file_id}"
            )
        ),
        "30"
    );
    assert_eq!(
        c.psql(
            &db.name,
            &format!(
                "SELECT COUNT(*), MIN(line_no), MAX(line_no) FROM duplicate_rows WHERE file_id = {file_id}"
            )
        ),
        format!("300|6002|{}", 2 + 6_000 + 230 + 4_000 + 99)
    );

    // d.csv: 3,000 new rows repeating some of their own ids, then, late in the file, an
    // id c.csv stored (identical): the optimistic COPY is refused near its end and the
    // whole file goes through staging, with the same kind of exact answer.
    let d_path = dir.path().join("d-new.csv");
    generate(&d_path, 3_000, 62, 20_001, "0");
    let d_text = std::fs::read_to_string(&d_path).unwrap();
    let d_rows: Vec<&str> = d_text.lines().skip(1).collect();
    let mut d_lines = vec![HEADER.to_owned()];
    d_lines.extend(d_rows.iter().map(|l| l.to_string()));
    d_lines.extend(d_rows[..50].iter().map(|l| l.to_string()));
    d_lines.push(rows[5_000].to_string());
    std::fs::write(inbox.join("d.csv"), d_lines.join("\n") + "\n").unwrap();
    let (r, code, err) = run_json(dir.path(), &db.url);
    assert_eq!(code, 0, "{r}\n{err}");
    let fd = files(&r)
        .iter()
        .find(|f| f["name"] == "d.csv")
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(fd["rows_read"], 3_051, "{fd}");
    assert_eq!(fd["rows_loaded"], 3_000, "{fd}");
    assert_eq!(fd["rows_duplicate"], 51, "{fd}");
    assert_eq!(fd["amount_loaded"], decimal(sum(&d_rows)), "{fd}");
    assert_eq!(
        fd["amount_duplicate"],
        decimal(sum(&d_rows[..50]) + paise(rows[5_000])),
        "{fd}"
    );
}

#[test]
fn a_stored_id_late_in_a_file_costs_one_segment_with_exact_totals() {
    // Issue #8: after the optimistic COPY is refused, the file is sent again in
    // segments, each under its own savepoint; only the refused segment is set aside.
    // Here the stored ids sit near line 75,000 of 150,000, so the first segment loads
    // straight away, and repeats cross the segment boundaries both ways.
    let (dir, inbox) = workdir();
    let db = PgCluster::shared().database();
    let c = PgCluster::shared();
    let a_path = dir.path().join("a.csv");
    generate(&a_path, 1_000, 71, 1, "0");
    let a_text = std::fs::read_to_string(&a_path).unwrap();
    let a_rows: Vec<&str> = a_text.lines().skip(1).collect();
    std::fs::copy(&a_path, inbox.join("a.csv")).unwrap();
    let (r, code, err) = run_json(dir.path(), &db.url);
    assert_eq!(code, 0, "{r}\n{err}");
    let new_path = dir.path().join("b-new.csv");
    generate(&new_path, 150_000, 72, 10_001, "0");
    let text = std::fs::read_to_string(&new_path).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    let other_amount = |line: &str| {
        let (head, _) = line.rsplit_once(',').unwrap();
        format!("{head},77.77")
    };
    // b.csv: rows 0..75,000; 10 rows of a.csv (identical); 5 rows of a.csv with another
    // amount; rows 75,000..150,000; then repeats: 20 identical of rows 0..20 (first
    // occurrences in the first segment), 7 conflicting of rows 75,000..75,007 (first
    // occurrences in the refused segment), 3 identical of rows 149,990..149,993.
    let mut b = vec![HEADER.to_owned()];
    b.extend(rows[..75_000].iter().map(|l| l.to_string()));
    b.extend(a_rows[..10].iter().map(|l| l.to_string()));
    b.extend(a_rows[100..105].iter().map(|l| other_amount(l)));
    b.extend(rows[75_000..].iter().map(|l| l.to_string()));
    b.extend(rows[..20].iter().map(|l| l.to_string()));
    b.extend(rows[75_000..75_007].iter().map(|l| other_amount(l)));
    b.extend(rows[149_990..149_993].iter().map(|l| l.to_string()));
    std::fs::write(inbox.join("b.csv"), b.join("\n") + "\n").unwrap();
    let out = bankpipe(dir.path(), &db.url)
        .env("BANKPIPE_LOG", "debug")
        .args(["run", "--json", "--max-reject-share", "0.05"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(out.status.code(), Some(0), "{r}\n{log}");
    // Segments: at least one loaded before the refused one, and only the refused one
    // (with the repeats) set aside, not the whole file.
    let line = log
        .lines()
        .find(|l| l.contains("COPY by segments after an id was found stored."))
        .unwrap_or_else(|| panic!("no segmented COPY:\n{log}"));
    let field = |name: &str| -> u64 {
        line.split(&format!(" {name}="))
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line}"))
    };
    assert_eq!(field("refused"), 1, "{line}");
    assert!(field("segments") >= 3, "{line}");
    assert!(field("set_aside") < 90_000, "{line}");
    let fb = files(&r)
        .iter()
        .find(|f| f["name"] == "b.csv")
        .unwrap_or_else(|| panic!("{r}"));
    let sum = |lines: &[&str]| lines.iter().map(|l| paise(l)).sum::<i128>();
    let loaded = sum(&rows);
    let duplicate = sum(&a_rows[..10]) + sum(&rows[..20]) + sum(&rows[149_990..149_993]);
    let rejected = 12 * 7_777;
    assert_eq!(fb["status"], "loaded", "{fb}");
    assert_eq!(fb["rows_read"], 150_045, "{fb}");
    assert_eq!(fb["rows_loaded"], 150_000, "{fb}");
    assert_eq!(fb["rows_duplicate"], 33, "{fb}");
    assert_eq!(fb["rows_rejected"], 12, "{fb}");
    assert_eq!(fb["rejects"]["conflicting_duplicate"], 12, "{fb}");
    assert_eq!(fb["amount_loaded"], decimal(loaded), "{fb}");
    assert_eq!(fb["amount_duplicate"], decimal(duplicate), "{fb}");
    assert_eq!(fb["amount_rejected"], decimal(rejected), "{fb}");
    let file_id = fb["file_id"].as_i64().unwrap();
    assert_eq!(
        c.psql(
            &db.name,
            &format!("SELECT COUNT(*), SUM(amount) FROM transactions WHERE file_id = {file_id}")
        ),
        format!("150000|{}", decimal(loaded))
    );
    // First occurrence wins across the boundary: row 75,000's id keeps its first line
    // (in the refused segment) and amount; row 0's its line in the first segment.
    for (i, line_no) in [(75_000usize, 2 + 75_000 + 15), (0, 2)] {
        let id = rows[i].split(',').next().unwrap();
        assert_eq!(
            c.psql(
                &db.name,
                &format!(
                    "SELECT file_id, line_no, amount <> 77.77 FROM transactions WHERE transaction_id = '{id}'"
                )
            ),
            format!("{file_id}|{line_no}|t")
        );
    }
    // Conflicts name where the stored row came from; duplicates are recorded.
    assert_eq!(
        c.psql(
            &db.name,
            &format!(
                "SELECT COUNT(*) FILTER (WHERE detail LIKE 'already loaded from file 1 line % with a different amount'),
                        COUNT(*) FILTER (WHERE detail LIKE 'already loaded from file {file_id} line % with a different amount')
                 FROM rejected_rows WHERE file_id = {file_id}"
            )
        ),
        "5|7"
    );
    assert_eq!(
        c.psql(
            &db.name,
            &format!("SELECT COUNT(*) FROM duplicate_rows WHERE file_id = {file_id}")
        ),
        "33"
    );
}

/// Holds an uncommitted row with `transaction_id` in its own session, so that a load of
/// a file carrying that id waits on it (a lock wait inside the `COPY`) while holding
/// the file's claim: a worker that is alive and busy, for as long as the test wants.
fn hold_id(url: &str, transaction_id: &str) -> postgres::Client {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "BEGIN; INSERT INTO transactions (transaction_id, customer_id, transaction_at, amount,
                 currency, file_id, line_no)
             VALUES ('{transaction_id}', 'C0', '2016-08-01', 1, 'INR', 0, 0)"
        ))
        .unwrap();
    client
}

/// The server process of the session loading the (only) claimed file, once it waits on
/// a lock.
fn blocked_loader(c: &PgCluster, db: &str) -> i32 {
    for _ in 0..1_200 {
        let pid = c.psql(
            db,
            "SELECT a.pid FROM files f JOIN pg_stat_activity a ON a.pid = f.claim_backend_pid
             WHERE f.status = 'landing' AND a.wait_event_type = 'Lock'",
        );
        if let Ok(pid) = pid.parse() {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the load never started waiting on the held id");
}

fn first_id(csv: &Path) -> String {
    let text = std::fs::read_to_string(csv).unwrap();
    let line = text.lines().nth(1).unwrap();
    line.split(',').next().unwrap().to_owned()
}

#[test]
fn a_file_claimed_by_a_live_worker_is_claimed_elsewhere_with_its_claimant() {
    let (dir, inbox) = workdir();
    let csv = inbox.join("held.csv");
    generate(&csv, 5_000, 61, 1, "0");
    let c = PgCluster::shared();
    let db = c.database();
    drop(bankpipe::warehouse::Warehouse::open(&db.url).unwrap());
    let mut blocker = hold_id(&db.url, &first_id(&csv));
    let loader = bankpipe(dir.path(), &db.url)
        .args(["run", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let backend = blocked_loader(c, &db.name);

    // Another worker meets the live claim: not loaded, not a duplicate, exit 0, and it
    // says whose claim it is.
    let (r, code, err) = run_json(dir.path(), &db.url);
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(r["status"], "ok", "{r}");
    let f = &files(&r)[0];
    assert_eq!(f["status"], "claimed_elsewhere", "{f}");
    assert_eq!(f["rows_loaded"], 0, "{f}");
    let by = &f["claimed_by"];
    assert_eq!(by["pid"], loader.id(), "{f}");
    assert_eq!(by["backend_pid"], backend, "{f}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = std::env::var("HOSTNAME").unwrap_or(host.trim().to_owned());
    assert_eq!(by["host"], host.as_str(), "{f}");
    assert!(
        by["since"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{f}"
    );
    // The table says it too, in the file's row, the claimant line and the summary.
    let out = bankpipe(dir.path(), &db.url)
        .args(["run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("held.csv  claimed_elsewhere")
            && table.contains(&format!(
                "held.csv: claimed by host {host} pid {}",
                loader.id()
            ))
            && table.contains(
                "0 loaded, 0 duplicate_file, 1 claimed_elsewhere, 0 too_recent, 0 failed"
            ),
        "{table}"
    );

    // The claimant finishes once the held id goes; it is the run named in claimed_by.
    blocker.batch_execute("ROLLBACK").unwrap();
    let out = loader.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by["run_id"], done["run_id"], "{done}");
    assert_eq!(files(&done)[0]["status"], "loaded", "{done}");
    assert_eq!(files(&done)[0]["rows_loaded"], 5_000, "{done}");
}

#[test]
fn kill_9_of_a_busy_loader_frees_its_claim_and_a_rerun_loads_the_file_once() {
    let (dir, inbox) = workdir();
    let csv = inbox.join("busy.csv");
    generate(&csv, 5_000, 62, 1, "0");
    let c = PgCluster::shared();
    let db = c.database();
    drop(bankpipe::warehouse::Warehouse::open(&db.url).unwrap());
    let mut blocker = hold_id(&db.url, &first_id(&csv));
    let mut loader = bankpipe(dir.path(), &db.url)
        .args(["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The loader's backend is inside its COPY, waiting on a lock, holding the claim.
    let backend = blocked_loader(c, &db.name);
    loader.kill().unwrap(); // SIGKILL
    loader.wait().unwrap();
    // Its backend notices the dead client by itself, mid-statement
    // (client_connection_check_interval), and gives the claim back. Without it the
    // backend would wait on the lock as long as the lock is held.
    let mut gone = false;
    for _ in 0..600 {
        if c.psql(
            &db.name,
            &format!("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = {backend}"),
        ) == "0"
        {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        gone,
        "the killed client's backend {backend} still runs (and holds the claim) after 60 s"
    );
    blocker.batch_execute("ROLLBACK").unwrap();
    let (r, code, err) = run_json(dir.path(), &db.url);
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(files(&r)[0]["status"], "loaded", "{r}");
    assert_eq!(files(&r)[0]["rows_loaded"], 5_000, "{r}");
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT COUNT(*), (SELECT COUNT(*) FROM transactions) FROM files WHERE status = 'loaded'"
        ),
        "1|5000"
    );
}

/// The advisory lock space of claims (`LOCK_SPACE` in `src/warehouse/postgres.rs`).
const CLAIM_LOCK_SPACE: i32 = 0x6261_6e6b;

/// A claim of `csv`'s content as a run of host `host`, process `pid` records it, held
/// by a session of its own (as a killed run's backend holds it until the server
/// notices): the `files` row, `landing`, and its advisory lock. Returns the session and
/// the file id.
fn hold_claim(url: &str, csv: &Path, host: &str, pid: u32) -> (postgres::Client, i64) {
    let (sha, bytes) = bankpipe::lake::fingerprint(std::fs::File::open(csv).unwrap()).unwrap();
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let file_id: i64 = client
        .query_one(
            "INSERT INTO files (sha256, original_name, bytes, profile, format, compression,
                                lake_key, received_at, run_id, status,
                                claim_host, claim_pid, claim_backend_pid, claimed_at)
             VALUES ($1, 'x.csv', $2, 'kaggle-bank', 'csv', 'none', 'raw/x.csv', now(),
                     'killed-run', 'landing', $3, $4, pg_backend_pid(), now())
             RETURNING file_id",
            &[&sha, &(bytes as i64), &host, &(pid as i32)],
        )
        .unwrap()
        .get(0);
    client
        .execute(
            "SELECT pg_advisory_lock($1, $2::bigint::int)",
            &[&CLAIM_LOCK_SPACE, &file_id],
        )
        .unwrap();
    (client, file_id)
}

/// The id of a process of this host that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// `kill -9` of a run, then a rerun at once on the same host: the claim's server
/// session has not noticed the dead client yet. The rerun sees that the claimant's
/// process is gone from this host, waits for the session to end (here: after 1.5 s)
/// and loads the file, instead of skipping it as `claimed_elsewhere`.
#[test]
fn a_rerun_on_the_host_of_a_killed_claimant_waits_for_its_session_and_loads() {
    let (dir, inbox) = workdir();
    let csv = inbox.join("killed.csv");
    generate(&csv, 300, 63, 1, "0");
    let db = PgCluster::shared().database();
    drop(bankpipe::warehouse::Warehouse::open(&db.url).unwrap());
    let host = "bankpipe-test-host-a";
    let (holder, file_id) = hold_claim(&db.url, &csv, host, dead_pid());
    let ends = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1_500));
        drop(holder); // the server ends the dead client's session
    });
    let out = bankpipe(dir.path(), &db.url)
        .env("HOSTNAME", host)
        .args(["run", "--json"])
        .output()
        .unwrap();
    ends.join().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{r}\n{err}");
    let f = &files(&r)[0];
    assert_eq!(f["status"], "loaded", "{f}\n{err}");
    assert_eq!(f["rows_loaded"], 300, "{f}");
    assert_eq!(f["file_id"], file_id, "the claim it left is resumed: {f}");
    assert!(f["claimed_by"].is_null(), "{f}");
}

/// As above, but the claimant's session outlives the wait: the file is
/// `claimed_elsewhere`, and the message says that the claiming process is no longer
/// running on this host and the next run loads it. A claimant on another host is
/// never judged by this host's processes.
#[test]
fn a_killed_claimant_whose_session_outlives_the_wait_is_reported_as_gone() {
    let (dir, inbox) = workdir();
    let csv = inbox.join("killed.csv");
    generate(&csv, 300, 64, 1, "0");
    let db = PgCluster::shared().database();
    drop(bankpipe::warehouse::Warehouse::open(&db.url).unwrap());
    let host = "bankpipe-test-host-b";
    let pid = dead_pid();
    let (holder, file_id) = hold_claim(&db.url, &csv, host, pid);
    let run = |hostname: &str| {
        let started = std::time::Instant::now();
        let out = bankpipe(dir.path(), &db.url)
            .env("HOSTNAME", hostname)
            .args(["run", "--json"])
            .output()
            .unwrap();
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{r}\n{err}");
        (files(&r)[0].clone(), started.elapsed())
    };

    let (f, took) = run(host);
    assert_eq!(f["status"], "claimed_elsewhere", "{f}");
    assert_eq!(f["file_id"], file_id, "{f}");
    assert_eq!(f["claimed_by"]["pid"], pid, "{f}");
    let reason = f["reason"].as_str().unwrap_or_else(|| panic!("{f}"));
    assert!(
        reason.contains("no longer running on this host")
            && reason.contains("server session has not ended")
            && reason.contains("the next run loads the file"),
        "{reason}"
    );
    assert!(took >= Duration::from_secs(5), "it waited: {took:?}");

    // From another host the pid means nothing: the usual message.
    let (f, _) = run("bankpipe-test-host-elsewhere");
    assert_eq!(f["status"], "claimed_elsewhere", "{f}");
    let reason = f["reason"].as_str().unwrap_or_else(|| panic!("{f}"));
    assert!(reason.contains("that worker is loading it"), "{reason}");

    // Once the session ends, the next run loads it.
    drop(holder);
    let (f, _) = run(host);
    assert_eq!(f["status"], "loaded", "{f}");
    assert_eq!(f["rows_loaded"], 300, "{f}");
}

/// stdout and stderr of a finished command, for messages.
fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `args` against `url` and checks: exit status 2, not one retry, the message
/// holds every `needle`, and the `secret` (a password) does not appear.
fn refused_at_once(dir: &Path, url: &str, args: &[&str], needles: &[&str], secret: Option<&str>) {
    let out = bankpipe(dir, url)
        .args(args)
        .env("BANKPIPE_LOG", "warn")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{url} {args:?}: {text}");
    assert!(
        !text.contains("retrying"),
        "not retried: {url} {args:?}: {text}"
    );
    for n in needles {
        assert!(text.contains(n), "{url} {args:?}: no {n:?} in {text}");
    }
    if let Some(secret) = secret {
        assert!(!text.contains(secret), "{text}");
    }
}

#[test]
fn configuration_and_authentication_errors_exit_2_at_once() {
    let (dir, inbox) = workdir();
    generate(&inbox.join("a.csv"), 10, 1, 1, "0");
    // Password authentication on a TLS cluster.
    let tls = PgCluster::start_tls();
    let db = tls.database();
    let password = pg::TLS_SUPERUSER_PASSWORD;
    let wrong = db.url.replacen(password, "Wr0ngPassw0rd", 1) + "?sslmode=require";
    refused_at_once(
        dir.path(),
        &wrong,
        &["run"],
        &["28P01", "password", "BANKPIPE_WAREHOUSE_URL"],
        Some("Wr0ngPassw0rd"),
    );
    let no_password = db.url.replacen(&format!(":{password}"), "", 1) + "?sslmode=require";
    refused_at_once(
        dir.path(),
        &no_password,
        &["status"],
        &["password missing", "postgres://user:PASSWORD@"],
        Some(password),
    );
    // A certificate the system roots do not trust: a setting (sslrootcert), not an outage.
    let untrusted = db.url.replacen("127.0.0.1", "localhost", 1) + "?sslmode=verify-full";
    refused_at_once(
        dir.path(),
        &untrusted,
        &["status"],
        &["sslrootcert"],
        Some(password),
    );
    // A trust cluster without TLS.
    let c = PgCluster::shared();
    let db = c.database();
    let missing_db = db.url.replacen(&db.name, "no_such_database", 1);
    refused_at_once(
        dir.path(),
        &missing_db,
        &["run"],
        &["no warehouse at", "3D000", "create the database"],
        Some(password),
    );
    refused_at_once(
        dir.path(),
        &format!("{}?sslmode=require", db.url),
        &["run"],
        &["does not support TLS", "sslmode=disable"],
        Some(password),
    );
    refused_at_once(
        dir.path(),
        &format!("{}?sslmode=bogus", db.url),
        &["run"],
        &["unknown sslmode", "verify-full"],
        Some(password),
    );
    refused_at_once(
        dir.path(),
        &format!("{}?applicaton_name=x", db.url),
        &["status"],
        &["unknown option", "applicaton_name", "warehouse URL"],
        Some(password),
    );
    // Nothing was created by any of them.
    assert_eq!(c.psql(&db.name, "SELECT to_regclass('files') IS NULL"), "t");
}

#[test]
fn permission_errors_exit_2_and_the_reader_sees_rejects_without_raw_text() {
    // Roles are cluster-wide: a dedicated cluster keeps this test apart from others.
    let c = PgCluster::start();
    let db = c.database();
    let (dir, inbox) = workdir();
    let mut text = format!("{HEADER}\n");
    text.push_str("Q1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n");
    text.push_str("Q2,C1,10/1/94,F,PUNE,1.0,31/2/16,143207,25.0\n");
    std::fs::write(inbox.join("q.csv"), text).unwrap();
    let (r, code, err) = run_json_with(dir.path(), &db.url, &["--max-reject-share", "0.6"]);
    assert_eq!(code, 0, "{r}\n{err}");
    let out = bankpipe(dir.path(), &db.url)
        .args(["migrate", "--create-roles"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    c.psql(
        "postgres",
        "CREATE ROLE ops_analyst LOGIN; GRANT bankpipe_reader TO ops_analyst;
         CREATE ROLE ops_etl LOGIN; GRANT bankpipe_loader TO ops_etl;",
    );
    let analyst = db.url.replacen("postgres@", "ops_analyst@", 1);
    let etl = db.url.replacen("postgres@", "ops_etl@", 1) + "?options=-c%20role%3Dbankpipe_loader";
    // `run` as the reader: refused at once, saying which role it needs.
    std::fs::write(
        inbox.join("r.csv"),
        format!("{HEADER}\nQ3,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    )
    .unwrap();
    refused_at_once(
        dir.path(),
        &analyst,
        &["run"],
        &["permission denied", "42501", "bankpipe_loader"],
        None,
    );
    // Roles by a non-owner: refused, saying who may.
    refused_at_once(
        dir.path(),
        &etl,
        &["migrate", "--create-roles"],
        &["superuser", "owns the bankpipe tables", "ops_etl"],
        None,
    );
    // The reader lists rejects without the raw text, and is told so.
    let out = bankpipe(dir.path(), &analyst)
        .args(["rejects"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("q.csv:3") && stdout.contains("invalid_transaction_date"),
        "{stdout}"
    );
    assert!(!stdout.contains("Q2,C1"), "raw text hidden: {stdout}");
    assert!(
        stderr.contains("raw text of rejected rows is hidden for this role"),
        "{stderr}"
    );
    let out = bankpipe(dir.path(), &analyst)
        .args(["rejects", "--json"])
        .output()
        .unwrap();
    let row: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["raw"], Value::Null, "{row}");
    assert_eq!(row["line_no"], 3, "{row}");
    // The owner still sees it.
    let out = bankpipe(dir.path(), &db.url)
        .args(["rejects"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Q2,C1,10/1/94"));
    // Read-only commands work for the reader; verify reports without recording.
    for args in [&["status"][..], &["files"], &["verify"]] {
        let out = bankpipe(dir.path(), &analyst).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", output_text(&out));
    }
    let out = bankpipe(dir.path(), &analyst)
        .args(["verify"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(text.contains("1 objects checked, 0 missing"), "{text}");
    assert!(text.contains("catalog is not updated"), "{text}");
}

#[test]
fn read_only_commands_never_create_a_schema_on_postgres() {
    let c = PgCluster::shared();
    let db = c.database();
    let (dir, _) = workdir();
    for args in [&["status"][..], &["files"], &["rejects"], &["verify"]] {
        let out = bankpipe(dir.path(), &db.url).args(args).output().unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains("no warehouse at postgres://"), "{text}");
        assert!(text.contains("bankpipe migrate"), "{text}");
    }
    assert_eq!(
        c.psql(&db.name, "SELECT to_regclass('schema_migrations') IS NULL"),
        "t",
        "nothing created"
    );
    let out = bankpipe(dir.path(), &db.url)
        .args(["migrate", "--dry-run"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("would apply") && text.contains("0001 init"),
        "{text}"
    );
    let out = bankpipe(dir.path(), &db.url)
        .args(["migrate"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(
        text.contains("applied") && text.contains("0001 init"),
        "{text}"
    );
    let out = bankpipe(dir.path(), &db.url)
        .args(["status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

/// Issue 8 §3 on PostgreSQL: content that already failed fails again, naming the
/// earlier file, its reason and the way out; a true duplicate names the loaded file.
#[test]
fn content_that_already_failed_fails_again_on_postgres() {
    let (dir, inbox) = workdir();
    let mut bad = format!("{HEADER}\n");
    for i in 0..10 {
        let date = if i % 2 == 0 { "31/2/16" } else { "2/8/16" };
        bad.push_str(&format!("B{i},C1,10/1/94,F,PUNE,1.0,{date},143207,25.0\n"));
    }
    std::fs::write(inbox.join("bad.csv"), &bad).unwrap();
    std::fs::write(inbox.join("header-only.csv"), format!("{HEADER}\n")).unwrap();
    let good = format!("{HEADER}\nG1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n");
    std::fs::write(inbox.join("good.csv"), &good).unwrap();
    let c = PgCluster::shared();
    let db = c.database();
    let (r1, code, err) = run_json(dir.path(), &db.url);
    assert_eq!(code, 1, "{r1}\n{err}");
    let entry = |r: &Value, name: &str| -> Value {
        files(r)
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {r}"))
    };
    let bad_id = entry(&r1, "bad.csv")["file_id"].as_i64().unwrap();
    let header_id = entry(&r1, "header-only.csv")["file_id"].as_i64().unwrap();
    let good_id = entry(&r1, "good.csv")["file_id"].as_i64().unwrap();

    std::fs::write(inbox.join("bad-again.csv"), &bad).unwrap();
    std::fs::write(inbox.join("header-only-2.csv"), format!("{HEADER}\n")).unwrap();
    std::fs::write(inbox.join("good-copy.csv"), &good).unwrap();
    let (r2, code, err) = run_json_with(dir.path(), &db.url, &["--max-reject-share", "0.6"]);
    assert_eq!(code, 1, "{r2}\n{err}");
    assert_eq!(r2["status"], "failed");
    for (name, earlier, earlier_id) in [
        ("bad.csv", "bad.csv", bad_id),
        ("bad-again.csv", "bad.csv", bad_id),
        ("header-only-2.csv", "header-only.csv", header_id),
    ] {
        let f = entry(&r2, name);
        assert_eq!(f["status"], "failed", "{f}");
        assert_eq!(
            f["duplicate_of"],
            serde_json::json!({"file_id": earlier_id, "name": earlier, "status": "failed"})
        );
        let e = f["error"].as_str().unwrap();
        let reason = entry(&r1, earlier)["error"].as_str().unwrap().to_owned();
        assert!(e.contains(&reason), "{e}");
        if earlier == "header-only.csv" {
            // The bytes alone are the cause: reprocessing cannot help.
            assert!(e.contains("Fix the file"), "{e}");
            assert!(!e.contains("bankpipe reprocess"), "{e}");
        } else {
            assert!(
                e.contains(&format!("bankpipe reprocess {earlier_id}")),
                "{e}"
            );
        }
    }
    for name in ["good.csv", "good-copy.csv"] {
        let f = entry(&r2, name);
        assert_eq!(f["status"], "duplicate_file", "{f}");
        assert_eq!(
            f["duplicate_of"],
            serde_json::json!({"file_id": good_id, "name": "good.csv", "status": "loaded"})
        );
    }
    assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM transactions"), "1");
}

/// Issue 8 §6 on PostgreSQL: two 20-digit amounts and a 40-digit one are
/// `amount_above_max`, in the totals exactly (NUMERIC from binary COPY), and the file
/// loads once with control totals that hold.
#[test]
fn huge_amounts_are_above_max_and_counted_exactly_on_postgres() {
    let (dir, inbox) = workdir();
    let huge = [
        "92233720368547758070",
        "98765432109876543210",
        "1234567890123456789012345678901234567890",
    ];
    let mut text = format!("{HEADER}\n");
    for i in 0..100 {
        text.push_str(&format!("H{i},C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"));
    }
    for (i, amount) in huge.iter().enumerate() {
        text.push_str(&format!(
            "BIG{i},C1,10/1/94,F,PUNE,1.0,2/8/16,143207,{amount}\n"
        ));
    }
    std::fs::write(inbox.join("huge.csv"), &text).unwrap();
    let c = PgCluster::shared();
    let db = c.database();
    let (r, code, err) = run_json(dir.path(), &db.url);
    assert_eq!(code, 0, "{r}\n{err}");
    let f = &files(&r)[0];
    assert_eq!(f["status"], "loaded", "{f}");
    assert_eq!(f["error"], Value::Null);
    assert_eq!(f["rejects"], serde_json::json!({"amount_above_max": 3}));
    let rejected = "1234567890123456789203344831379658869170.00";
    let read = "1234567890123456789203344831379658871670.00";
    assert_eq!(f["amount_rejected"], rejected);
    assert_eq!(f["amount_read"], read);
    assert_eq!(f["amount_loaded"], "2500.00");
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT status, amount_read::text, amount_rejected::text FROM files"
        ),
        format!("loaded|{read}|{rejected}")
    );
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT string_agg(amount::text, ',' ORDER BY line_no) FROM rejected_rows"
        ),
        huge.map(|a| format!("{a}.00")).join(",")
    );
    let (again, code, _) = run_json(dir.path(), &db.url);
    assert_eq!(code, 0, "{again}");
    assert_eq!(files(&again)[0]["duplicate_of"]["status"], "loaded");
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

/// Bug nu1 §1: under `--parallel 3`, copies of one content in one inbox are reported as
/// a sequential run reports them: one `loaded` and the others `duplicate_file` naming
/// it; for content that fails, every copy `failed` (the others "failed again" naming
/// the first). Never `claimed_elsewhere` by this very run.
#[test]
fn identical_files_in_one_parallel_run_are_duplicates_not_claimed_elsewhere() {
    let c = PgCluster::shared();
    for (content, max_reject_share) in [("good", "0.5"), ("bad", "0.01")] {
        let (dir, inbox) = workdir();
        let source = dir.path().join("source.csv");
        // Large enough that the three workers meet while the first is still loading.
        let defects = if content == "good" { "0.001" } else { "0.05" };
        generate(&source, 60_000, 77, 1, defects);
        for name in ["x1.csv", "x2.csv", "x3.csv"] {
            std::fs::copy(&source, inbox.join(name)).unwrap();
        }
        let db = c.database();
        let (r, code, err) = run_json_with(
            dir.path(),
            &db.url,
            &["--parallel", "3", "--max-reject-share", max_reject_share],
        );
        let all = files(&r);
        assert_eq!(all.len(), 3, "{r}");
        for f in all {
            assert_ne!(f["status"], "claimed_elsewhere", "{f}\n{err}");
            assert!(f["claimed_by"].is_null(), "{f}");
        }
        let first: Vec<&Value> = all.iter().filter(|f| f["duplicate_of"].is_null()).collect();
        assert_eq!(first.len(), 1, "exactly one copy is processed: {r}");
        let first = first[0];
        let first_id = first["file_id"].as_i64().unwrap();
        let others = all.iter().filter(|f| !f["duplicate_of"].is_null());
        if content == "good" {
            assert_eq!(code, 0, "{r}\n{err}");
            assert_eq!(first["status"], "loaded", "{first}");
            for f in others {
                assert_eq!(f["status"], "duplicate_file", "{f}");
                assert_eq!(
                    f["duplicate_of"],
                    serde_json::json!({"file_id": first_id, "name": first["name"], "status": "loaded"})
                );
            }
            assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM files"), "1");
        } else {
            assert_eq!(code, 1, "{r}\n{err}");
            assert_eq!(r["status"], "failed");
            assert_eq!(first["status"], "failed", "{first}");
            let reason = first["error"].as_str().unwrap().to_owned();
            for f in others {
                assert_eq!(f["status"], "failed", "{f}");
                assert_eq!(
                    f["duplicate_of"],
                    serde_json::json!({"file_id": first_id, "name": first["name"], "status": "failed"})
                );
                let e = f["error"].as_str().unwrap();
                assert!(e.contains(&reason), "{e}");
                assert!(e.contains(first["name"].as_str().unwrap()), "{e}");
            }
            assert_eq!(c.psql(&db.name, "SELECT COUNT(*) FROM transactions"), "0");
        }
    }
}

/// Bug nu1 §3: a warehouse that goes away mid-run and stays away ends the run with
/// exit 3 and a last line naming the warehouse (password redacted) as unreachable;
/// `--json` still prints one object with the run-level error (§2).
#[test]
fn a_server_gone_for_good_ends_the_run_naming_the_unreachable_warehouse() {
    let cluster = PgCluster::start();
    let db = cluster.database();
    let secret = "s3cr3t-pw";
    let url = db
        .url
        .replacen("postgres@", &format!("postgres:{secret}@"), 1);
    let (dir, inbox) = workdir();
    generate(&inbox.join("big.csv"), 300_000, 41, 1, "0");
    let mut child = bankpipe(dir.path(), &url)
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
    cluster.stop();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{rest}");
    assert!(!rest.contains(secret), "{rest}");
    let last = rest.lines().last().unwrap_or_default();
    let redacted = url.replace(secret, "***");
    assert!(
        last.starts_with(&format!(
            "bankpipe: error: warehouse unreachable at {redacted}: "
        )),
        "{last}"
    );
    assert!(last.contains("attempts)"), "{last}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains(secret), "{stdout}");
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}"));
    assert_eq!(report["status"], "failed");
    assert_eq!(
        report["error"].as_str().unwrap(),
        last.trim_start_matches("bankpipe: error: ")
    );
    // The database guard drops its database through the server.
    cluster.restart();
}
