//! `bankpipe export` from PostgreSQL (issue #10): the same rows give byte-identical
//! Parquet files and the same version as from SQLite, the quarter tables are written on
//! the server, and without a pseudonymisation key the export refuses with exit 2.

#[path = "support/pg.rs"]
mod pg;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use pg::PgCluster;
use serde_json::Value;

const HEADER: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)";

/// The crafted history of `tests/export.rs` plus generated volume.
const CRAFTED: &[&str] = &[
    "TX1,CUSTA,1/8/90,M,ALPHA,1000.00,15/6/16,100000,100.00",
    "TX10,CUSTA,,,ALPHA,0.00,1/7/16,050000,25.50",
    "TX9,CUSTA,,,BETA,,1/7/16,050000,50.00",
    "TX11,CUSTA,1/8/90,F,,500.00,2/7/16,120000,10.00",
    "TX30,CUSTC,5/5/80,F,GAMMA,2000.00,15/8/16,093000,300.00",
    "TX20,CUSTB,1/12/16,M,ALPHA,10.00,30/9/16,235959,1.00",
];

fn bankpipe(dir: &Path, url: &str, key: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
    c.current_dir(dir)
        .arg("--data-dir")
        .arg(dir)
        .env("BANKPIPE_WAREHOUSE_URL", url)
        .env_remove("BANKPIPE_LAKE_URL")
        .env_remove("BANKPIPE_EXPORT_URL")
        .env_remove("BANKPIPE_PSEUDONYM_KEY_FILE")
        .env("BANKPIPE_LOG", "warn")
        .stdin(Stdio::null());
    match key {
        Some(k) => c.env("BANKPIPE_PSEUDONYM_KEY", k),
        None => c.env_remove("BANKPIPE_PSEUDONYM_KEY"),
    };
    c
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Loads the same inbox into the warehouse at `url`, from its own data folder.
fn load(dir: &Path, url: &str, key: &str) {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(
        inbox.join("crafted.csv"),
        format!("{HEADER}\n{}\n", CRAFTED.join("\n")),
    )
    .unwrap();
    for (month, first) in [
        ("2016-07", "100000"),
        ("2016-08", "200000"),
        ("2016-09", "300000"),
    ] {
        ok(&bankpipe(dir, url, Some(key))
            .args([
                "generate",
                "--rows",
                "3000",
                "--month",
                month,
                "--first-id",
                first,
                "--out",
            ])
            .arg(inbox.join(format!("{month}.csv")))
            .output()
            .unwrap());
    }
    ok(&bankpipe(dir, url, Some(key)).arg("run").output().unwrap());
}

fn export(dir: &Path, url: &str, key: Option<&str>) -> (Value, i32) {
    let out = bankpipe(dir, url, key)
        .args(["export", "--quarter", "2016Q3", "--json"])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (v, out.status.code().unwrap())
}

#[test]
fn postgres_and_sqlite_give_the_same_bytes() {
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let db = PgCluster::shared().database();
    let pg_dir = tempfile::tempdir().unwrap();
    let lite_dir = tempfile::tempdir().unwrap();
    load(pg_dir.path(), &db.url, &key);
    let lite_url = format!("sqlite://{}/warehouse.db", lite_dir.path().display());
    load(lite_dir.path(), &lite_url, &key);

    let (pg_report, code) = export(pg_dir.path(), &db.url, Some(&key));
    assert_eq!(code, 0, "{pg_report}");
    let (lite_report, code) = export(lite_dir.path(), &lite_url, Some(&key));
    assert_eq!(code, 0, "{lite_report}");
    let version = pg_report["quarters"][0]["version"].as_str().unwrap();
    assert_eq!(
        lite_report["quarters"][0]["version"], version,
        "same inputs, same version"
    );
    assert_eq!(
        pg_report["quarters"][0]["amount_sum"],
        lite_report["quarters"][0]["amount_sum"]
    );
    let rel = format!("exports/quarter=2016Q3/version={version}");
    for name in ["customers.parquet", "transactions.parquet", "daily.parquet"] {
        let a = std::fs::read(pg_dir.path().join(&rel).join(name)).unwrap();
        let b = std::fs::read(lite_dir.path().join(&rel).join(name)).unwrap();
        assert!(a == b, "{name} differs between PostgreSQL and SQLite");
    }

    // The quarter tables on the server: raw ids, exact money.
    let c = PgCluster::shared();
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT amount_sum, balance_last, txn_count FROM quarter_customers
             WHERE quarter = '2016Q3' AND customer_id = 'CUSTA'"
        ),
        "85.50|500.00|3"
    );
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT COUNT(*) FROM quarter_daily WHERE quarter = '2016Q3'"
        ),
        "92"
    );
    assert_eq!(
        c.psql(
            &db.name,
            "SELECT version FROM exports WHERE quarter = '2016Q3'"
        ),
        version
    );
    let (again, code) = export(pg_dir.path(), &db.url, Some(&key));
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["quarters"][0]["status"], "up_to_date");
}

#[test]
fn postgres_requires_the_pseudonymisation_key() {
    let db = PgCluster::shared().database();
    let dir = tempfile::tempdir().unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
    load(dir.path(), &db.url, &key);
    let (report, code) = export(dir.path(), &db.url, None);
    assert_eq!(code, 2, "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("BANKPIPE_PSEUDONYM_KEY"),
        "says how to set it: {error}"
    );
    assert!(
        !dir.path().join("pseudonym.key").exists(),
        "no key generated for PostgreSQL"
    );
    assert!(!dir.path().join("exports").exists(), "nothing written");
}

#[test]
fn a_loader_role_exports_and_a_reader_role_reads_the_quarter_tables() {
    let c = PgCluster::shared();
    let db = c.database();
    let dir = tempfile::tempdir().unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
    load(dir.path(), &db.url, &key);
    ok(&bankpipe(dir.path(), &db.url, Some(&key))
        .args(["migrate", "--create-roles"])
        .output()
        .unwrap());
    c.psql(&db.name, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ml_export') THEN CREATE ROLE ml_export LOGIN; END IF; END $$; GRANT bankpipe_loader TO ml_export");
    let loader =
        db.url.replacen("postgres@", "ml_export@", 1) + "?options=-c%20role%3Dbankpipe_loader";
    let (report, code) = export(dir.path(), &loader, Some(&key));
    assert_eq!(
        code, 0,
        "the loader role may write the quarter tables: {report}"
    );
    assert_eq!(
        c.psql(
            &db.name,
            "SET ROLE bankpipe_reader; SELECT COUNT(*) FROM quarter_daily WHERE quarter = '2016Q3'"
        ),
        "SET\n92"
    );
    assert_eq!(
        c.psql(
            &db.name,
            "SET ROLE bankpipe_reader; SELECT COUNT(*) FROM exports"
        ),
        "SET\n1"
    );
}

/// As `currencies_are_never_mixed` in `tests/export.rs`, on PostgreSQL: a quarter with
/// rows in two currencies is refused (exit 1, nothing written) naming each with its
/// rows; one currency is exported and named in the manifest.
#[test]
fn postgres_refuses_a_quarter_in_two_currencies() {
    let db = PgCluster::shared().database();
    let dir = tempfile::tempdir().unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
    std::fs::write(
        dir.path().join("bankpipe.toml"),
        r#"
[[profile]]
name = "multi"
[profile.columns]
transaction_id = "id"
customer_id = "customer"
transaction_at = "at"
amount = "amount"
currency = "currency"
"#,
    )
    .unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let put = |name: &str, rows: &str| {
        std::fs::write(
            inbox.join(name),
            format!("id,customer,at,amount,currency\n{rows}"),
        )
        .unwrap();
        ok(&bankpipe(dir.path(), &db.url, Some(&key))
            .arg("run")
            .output()
            .unwrap());
    };
    put(
        "inr.csv",
        "A1,C1,2016-07-02T10:00:00,10.00,INR\nA2,C2,2016-08-02T10:00:00,20.00,INR\n\
         A3,C1,2016-09-02T10:00:00,30.00,INR\n",
    );
    let (one, code) = export(dir.path(), &db.url, Some(&key));
    assert_eq!(code, 0, "{one}");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("exports/quarter=2016Q3/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["currency"], "INR");

    put("usd.csv", "U1,C3,2016-08-15T10:00:00,5.00,USD\n");
    let (mixed, code) = export(dir.path(), &db.url, Some(&key));
    assert_eq!(code, 1, "{mixed}");
    let error = mixed["error"].as_str().unwrap();
    assert!(
        error.contains("more than one currency")
            && error.contains("INR: 3 rows in 2016Q3, 0 before it")
            && error.contains("USD: 1 rows in 2016Q3, 0 before it"),
        "{error}"
    );
    let versions = std::fs::read_dir(dir.path().join("exports/quarter=2016Q3"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir())
        .count();
    assert_eq!(versions, 1, "no new version written");
}
