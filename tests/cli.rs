//! End-to-end tests of the `bankpipe` binary: real files in a temporary data folder,
//! the real SQLite warehouse and local lake, checked through the JSON report, the exit
//! status and the warehouse itself.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const HEADER: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)";

/// A temporary data folder with an inbox, and a way to run the binary against it.
struct Workdir {
    dir: tempfile::TempDir,
    /// `BANKPIPE_MASTER_KEY` for every command, when set.
    key: Option<String>,
}

impl Workdir {
    fn new() -> Workdir {
        let w = Workdir {
            dir: tempfile::tempdir().unwrap(),
            key: None,
        };
        std::fs::create_dir_all(w.inbox()).unwrap();
        w
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn inbox(&self) -> PathBuf {
        self.path().join("inbox")
    }

    fn db(&self) -> PathBuf {
        self.path().join("warehouse.db")
    }

    fn put(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.inbox().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
        c.current_dir(self.path())
            .arg("--data-dir")
            .arg(self.path())
            .env_remove("BANKPIPE_WAREHOUSE_URL")
            .env_remove("BANKPIPE_LAKE_URL")
            .env_remove("BANKPIPE_INBOX")
            .env_remove("BANKPIPE_DATA_DIR")
            .env_remove("BANKPIPE_CONFIG")
            .env_remove("BANKPIPE_MASTER_KEY")
            .env_remove("BANKPIPE_MASTER_KEY_FILE")
            .env("BANKPIPE_LOG", "warn")
            .stdin(Stdio::null());
        if let Some(key) = &self.key {
            c.env("BANKPIPE_MASTER_KEY", key);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `bankpipe run --json`, returning the report and the exit code.
    fn run_json(&self, extra: &[&str]) -> (Value, i32) {
        let mut args = vec!["run", "--json"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let text = String::from_utf8(out.stdout).unwrap();
        let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}): {text}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (report, out.status.code().unwrap())
    }

    fn generate(&self, name: &str, rows: u64, extra: &[&str]) -> PathBuf {
        let out = self.inbox().join(name);
        let mut args = vec!["generate", "--rows"];
        let rows = rows.to_string();
        args.push(&rows);
        args.push("--out");
        let out_s = out.display().to_string();
        args.push(&out_s);
        args.extend_from_slice(extra);
        let o = self.run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    }

    fn query_i64(&self, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

fn file<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

/// Exact sum of decimal strings, in minor units.
fn minor(v: &Value) -> i128 {
    let s = v.as_str().unwrap();
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    let v = i.parse::<i128>().unwrap() * 100 + format!("{f:0<2}").parse::<i128>().unwrap();
    if neg { -v } else { v }
}

fn assert_balances(f: &Value) {
    assert_eq!(
        n(&f["rows_read"]),
        n(&f["rows_loaded"]) + n(&f["rows_rejected"]) + n(&f["rows_duplicate"]),
        "rows do not add up: {f}"
    );
    assert_eq!(
        minor(&f["amount_read"]),
        minor(&f["amount_loaded"]) + minor(&f["amount_rejected"]) + minor(&f["amount_duplicate"]),
        "amounts do not add up: {f}"
    );
}

#[test]
fn run_json_report_has_the_contract_fields() {
    let w = Workdir::new();
    w.generate("jan.csv", 5_000, &["--seed", "1", "--defects", "0.01"]);
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["status"], "ok");
    assert!(r["run_id"].as_str().unwrap().len() >= 32);
    assert!(r["elapsed_s"].as_f64().unwrap() > 0.0);
    let f = file(&r, "jan.csv");
    assert_eq!(f["status"], "loaded");
    assert_eq!(f["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(n(&f["rows_read"]), 5_000);
    assert!(n(&f["rows_rejected"]) > 0, "1% defects give rejects: {f}");
    assert!(f["warnings"]["placeholder_dob"].as_u64().unwrap() > 100);
    assert!(f["error"].is_null());
    assert_balances(f);
    // The warehouse agrees with the report.
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM transactions") as u64,
        n(&f["rows_loaded"])
    );
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM rejected_rows") as u64,
        n(&f["rows_rejected"])
    );
    assert_eq!(
        w.query_i64("SELECT SUM(CAST(REPLACE(amount, '.', '') AS INTEGER)) FROM transactions")
            as i128,
        minor(&f["amount_loaded"])
    );
    // And the raw copy is in the lake, byte for byte.
    let key = f["lake_key"].as_str().unwrap();
    assert!(key.starts_with("raw/kaggle-bank/"), "{key}");
    assert_eq!(
        std::fs::read(w.path().join("lake").join(key)).unwrap(),
        std::fs::read(w.inbox().join("jan.csv")).unwrap()
    );
}

#[test]
fn the_same_content_is_loaded_once_whatever_its_name() {
    let w = Workdir::new();
    let p = w.generate("a.csv", 3_000, &["--seed", "2"]);
    let (r1, c1) = w.run_json(&[]);
    assert_eq!(c1, 0);
    let loaded = n(&file(&r1, "a.csv")["rows_loaded"]);
    // Same file again, and the same bytes under another name.
    std::fs::copy(&p, w.inbox().join("a-copy.csv")).unwrap();
    let (r2, c2) = w.run_json(&[]);
    assert_eq!(c2, 0, "{r2}");
    assert_eq!(file(&r2, "a.csv")["status"], "duplicate_file");
    assert_eq!(file(&r2, "a-copy.csv")["status"], "duplicate_file");
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM transactions") as u64,
        loaded
    );
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM files"), 1);
}

#[test]
fn overlapping_files_load_each_transaction_once() {
    let w = Workdir::new();
    let body = |ids: std::ops::Range<u32>, amount: &str| {
        let mut s = format!("{HEADER}\n");
        for i in ids {
            s.push_str(&format!(
                "T{i},C{i},10/1/94,F,PUNE,100.5,2/8/16,143207,{amount}\n"
            ));
        }
        s
    };
    w.put("1.csv", body(0..100, "25.0"));
    // 50 identical rows and 50 new ones, plus 10 rows that changed their amount.
    let mut second = body(50..150, "25.0");
    second.push_str(&body(0..10, "26.0")[HEADER.len() + 1..]);
    w.put("2.csv", second);
    let (r, code) = w.run_json(&["--max-reject-share", "0.5"]);
    assert_eq!(code, 0, "{r}");
    let f2 = file(&r, "2.csv");
    assert_eq!(n(&f2["rows_loaded"]), 50);
    assert_eq!(n(&f2["rows_duplicate"]), 50);
    assert_eq!(n(&f2["rows_rejected"]), 10);
    assert_eq!(f2["rejects"]["conflicting_duplicate"], 10);
    assert_balances(f2);
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), 150);
}

#[test]
fn every_format_loads_the_same_rows() {
    let reference = {
        let w = Workdir::new();
        w.generate("x.csv", 4_000, &["--seed", "3", "--defects", "0"]);
        let (r, code) = w.run_json(&[]);
        assert_eq!(code, 0, "{r}");
        let f = file(&r, "x.csv").clone();
        (
            n(&f["rows_loaded"]),
            f["amount_loaded"].clone(),
            f["warnings"].clone(),
        )
    };
    assert_eq!(reference.0, 4_000);
    let csv = {
        let w = Workdir::new();
        let p = w.generate("x.csv", 4_000, &["--seed", "3", "--defects", "0"]);
        std::fs::read(p).unwrap()
    };
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&csv).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&csv[..], 3).unwrap();
    let crlf_bom = {
        let mut v = b"\xEF\xBB\xBF".to_vec();
        v.extend(
            String::from_utf8(csv.clone())
                .unwrap()
                .replace('\n', "\r\n")
                .into_bytes(),
        );
        v.extend_from_slice(b"\r\n\r\n");
        v
    };
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("x.csv.gz", gz),
        ("x.csv.zst", zst),
        ("x-crlf.csv", crlf_bom),
    ];
    for (name, bytes) in variants {
        let w = Workdir::new();
        w.put(name, bytes);
        let (r, code) = w.run_json(&[]);
        assert_eq!(code, 0, "{name}: {r}");
        let f = file(&r, name);
        assert_eq!(n(&f["rows_loaded"]), reference.0, "{name}");
        assert_eq!(f["amount_loaded"], reference.1, "{name}");
        assert_eq!(f["warnings"], reference.2, "{name}");
    }
    for (format, name) in [("ndjson", "x.ndjson"), ("json", "x.json")] {
        let w = Workdir::new();
        w.generate(
            name,
            4_000,
            &["--seed", "3", "--defects", "0", "--format", format],
        );
        let (r, code) = w.run_json(&[]);
        assert_eq!(code, 0, "{name}: {r}");
        let f = file(&r, name);
        assert_eq!(n(&f["rows_loaded"]), reference.0, "{name}");
        assert_eq!(f["amount_loaded"], reference.1, "{name}");
    }
}

#[test]
fn rows_are_stored_exactly_with_lineage() {
    let w = Workdir::new();
    let text = format!(
        "\u{feff}{HEADER}\r\n\
         T1 , C1 ,10/1/94,F,\" NAVI MUMBAI, MH \",17819.05,2/8/16,143207,25.0\r\n\
         T2,C2,1/1/1800,X,,abc,31/12/16,3607,0.10\r\n\
         \r\n\
         T3,C3,,M,\"A \"\"Q\"\" B\",,1/1/17,0,100000000"
    );
    w.put("exact.csv", text);
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    let rows: Vec<Vec<Option<String>>> = conn
        .prepare(
            "SELECT transaction_id, customer_id, customer_dob, gender, location,
                    account_balance, transaction_at, amount, currency,
                    CAST(line_no AS TEXT), CAST(file_id AS TEXT)
             FROM transactions ORDER BY transaction_id",
        )
        .unwrap()
        .query_map([], |r| (0..11).map(|i| r.get(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        rows,
        vec![
            vec![
                s("T1"),
                s("C1"),
                s("1994-01-10"),
                s("F"),
                s(" NAVI MUMBAI, MH "),
                s("17819.05"),
                s("2016-08-02 14:32:07"),
                s("25.00"),
                s("INR"),
                s("2"),
                s("1")
            ],
            vec![
                s("T2"),
                s("C2"),
                None,
                None,
                None,
                None,
                s("2016-12-31 00:36:07"),
                s("0.10"),
                s("INR"),
                s("3"),
                s("1")
            ],
            vec![
                s("T3"),
                s("C3"),
                None,
                s("M"),
                s("A \"Q\" B"),
                None,
                s("2017-01-01 00:00:00"),
                s("100000000.00"),
                s("INR"),
                s("5"),
                s("1")
            ],
        ]
    );
    let f = file(&r, "exact.csv");
    assert_eq!(f["warnings"]["placeholder_dob"], 1);
    assert_eq!(f["warnings"]["invalid_gender"], 1);
    assert_eq!(f["warnings"]["missing_location"], 1);
    assert_eq!(f["warnings"]["invalid_balance"], 1);
    assert_eq!(f["warnings"]["missing_dob"], 1);
    assert_eq!(f["warnings"]["missing_balance"], 1);
}

#[test]
fn rejected_rows_keep_file_line_rule_and_raw_text() {
    let w = Workdir::new();
    let mut text = format!("{HEADER}\n");
    for i in 0..200 {
        text.push_str(&format!(
            "T{i},C{i},10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"
        ));
    }
    text.push_str("T900,C1,10/1/94,F,PUNE,1.0,31/2/16,143207,25.0\n"); // line 202
    text.push_str("T901,C1,10/1/94,F,PUNE,1.0,2/8/16,246000,25.0\n");
    text.push_str("T902,C1,10/1/94,F,PUNE,1.0,2/8/16,1261,25.0\n");
    text.push_str("T903,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,\"1,000.50\"\n");
    text.push_str("T904,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,1e3\n");
    text.push_str("T905,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,-5\n");
    text.push_str("T906,,10/1/94,F,PUNE,1.0,2/8/16,143207,5\n");
    text.push_str(",C1,10/1/94,F,PUNE,1.0,2/8/16,143207,5\n");
    text.push_str("T908,C1,10/1/94,F,PUNE\n");
    text.push_str("T909,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,100000000.01\n"); // line 211
    w.put("bad.csv", text);
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "rejected rows do not fail a run: {r}");
    let f = file(&r, "bad.csv");
    assert_eq!(n(&f["rows_rejected"]), 10);
    assert_balances(f);
    let out = w.run(&["rejects", "--json", "--limit", "100"]);
    assert!(out.status.success());
    let got: Vec<(u64, String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["file"], "bad.csv");
            (
                n(&v["line_no"]),
                v["rule"].as_str().unwrap().to_owned(),
                v["raw"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let rules: Vec<(u64, &str)> = got.iter().map(|(l, r, _)| (*l, r.as_str())).collect();
    assert_eq!(
        rules,
        [
            (202, "invalid_transaction_date"),
            (203, "invalid_transaction_time"),
            (204, "invalid_transaction_time"),
            (205, "invalid_amount"),
            (206, "invalid_amount"),
            (207, "negative_amount"),
            (208, "missing_customer_id"),
            (209, "missing_transaction_id"),
            (210, "malformed_row"),
            (211, "amount_above_max"),
        ]
    );
    assert_eq!(
        got[3].2,
        "T903,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,\"1,000.50\""
    );
    let only = w.run(&["rejects", "--json", "--rule", "invalid_amount"]);
    assert_eq!(String::from_utf8(only.stdout).unwrap().lines().count(), 2);
    let bad_rule = w.run(&["rejects", "--rule", "nope"]);
    assert_eq!(bad_rule.status.code(), Some(2));
}

#[test]
fn each_way_a_file_fails_and_the_run_goes_on() {
    let w = Workdir::new();
    w.generate("good.csv", 1_000, &["--seed", "4", "--defects", "0"]);
    w.put("empty.csv", "");
    w.put("header-only.csv", format!("{HEADER}\n"));
    w.put(
        "no-header.csv",
        "T1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n",
    );
    w.put(
        "missing-column.csv",
        "TransactionID,CustomerID,CustomerDOB,TransactionDate,TransactionAmount (INR)\nT1,C1,1/1/80,2/8/16,5\n",
    );
    let mut mostly_bad = format!("{HEADER}\n");
    for i in 0..100 {
        let date = if i % 10 == 0 { "31/2/16" } else { "2/8/16" };
        mostly_bad.push_str(&format!("U{i},C1,10/1/94,F,PUNE,1.0,{date},143207,25.0\n"));
    }
    w.put("too-many-rejects.csv", mostly_bad);
    // A gzip stream cut in the middle.
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut body = format!("{HEADER}\n");
        for i in 0..20_000 {
            body.push_str(&format!("V{i},C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"));
        }
        e.write_all(body.as_bytes()).unwrap();
        let full = e.finish().unwrap();
        full[..full.len() / 2].to_vec()
    };
    w.put("truncated.csv.gz", gz);
    w.put("not-json.json", "\"a JSON string, not an array\"");
    w.put("binary.dat", [0u8, 159, 146, 150, 255, 0, 1, 2]);
    w.put(".hidden.csv", "ignored");
    w.put("upload.csv.part", "ignored");

    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 1, "a failed file gives exit status 1: {r}");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["files"].as_array().unwrap().len(), 9, "{r}");
    assert_eq!(file(&r, "good.csv")["status"], "loaded");
    assert_eq!(n(&file(&r, "good.csv")["rows_loaded"]), 1_000);
    let failed_with = |name: &str, needle: &str| {
        let f = file(&r, name);
        assert_eq!(f["status"], "failed", "{name}: {f}");
        let e = f["error"].as_str().unwrap();
        assert!(e.contains(needle), "{name}: {e:?} lacks {needle:?}");
        assert_eq!(n(&f["rows_loaded"]), 0);
        // The raw copy is kept even for a failed file.
        let key = f["lake_key"].as_str().unwrap();
        assert!(w.path().join("lake").join(key).exists(), "{name}");
    };
    failed_with("empty.csv", "empty");
    failed_with("header-only.csv", "no data rows");
    failed_with("no-header.csv", "no profile matches");
    failed_with("missing-column.csv", "required column missing");
    failed_with("too-many-rejects.csv", "exceeds max_reject_share");
    failed_with("truncated.csv.gz", "reading failed");
    failed_with("not-json.json", "JSON array");
    failed_with("binary.dat", "header unreadable");
    // Nothing of the failed files reached the warehouse.
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), 1_000);
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM files WHERE status = 'failed'"),
        8
    );
    // The rejects of the file that failed on its share stay quarantined.
    assert_eq!(
        w.query_i64(
            "SELECT COUNT(*) FROM rejected_rows r JOIN files f USING (file_id)
             WHERE f.original_name = 'too-many-rejects.csv'"
        ),
        10
    );
}

#[test]
fn a_higher_reject_share_lets_a_file_load() {
    let w = Workdir::new();
    let mut text = format!("{HEADER}\n");
    for i in 0..100 {
        let date = if i % 10 == 0 { "31/2/16" } else { "2/8/16" };
        text.push_str(&format!("U{i},C1,10/1/94,F,PUNE,1.0,{date},143207,25.0\n"));
    }
    w.put("f.csv", text);
    let (r, code) = w.run_json(&["--max-reject-share", "0.2"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(n(&file(&r, "f.csv")["rows_loaded"]), 90);
}

/// Issue 8 §3: content that already failed is never a successful duplicate.
#[test]
fn content_that_already_failed_fails_again_with_the_way_out() {
    let w = Workdir::new();
    let mut bad = format!("{HEADER}\n");
    for i in 0..10 {
        let date = if i % 2 == 0 { "31/2/16" } else { "2/8/16" };
        bad.push_str(&format!("B{i},C1,10/1/94,F,PUNE,1.0,{date},143207,25.0\n"));
    }
    w.put("bad.csv", &bad);
    w.put("empty.csv", "");
    w.put("header-only.csv", format!("{HEADER}\n"));
    w.put(
        "good.csv",
        format!("{HEADER}\nG1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    let (r1, c1) = w.run_json(&[]);
    assert_eq!(c1, 1, "{r1}");
    let id = |r: &Value, name: &str| file(r, name)["file_id"].as_i64().unwrap();
    let bad_id = id(&r1, "bad.csv");
    assert_eq!(file(&r1, "bad.csv")["status"], "failed");
    assert_eq!(file(&r1, "bad.csv")["duplicate_of"], Value::Null);

    // The same content again, even with a share that would let it load, and the same
    // bytes as the empty and header-only files under new names.
    w.put("bad-again.csv", &bad);
    w.put("empty-2.csv", "");
    w.put("header-only-2.csv", format!("{HEADER}\n"));
    w.put(
        "good-copy.csv",
        std::fs::read(w.inbox().join("good.csv")).unwrap(),
    );
    let (r2, c2) = w.run_json(&["--max-reject-share", "0.6"]);
    assert_eq!(c2, 1, "content that failed fails the run again: {r2}");
    assert_eq!(r2["status"], "failed");
    for (name, earlier) in [
        ("bad.csv", "bad.csv"),
        ("bad-again.csv", "bad.csv"),
        ("empty-2.csv", "empty.csv"),
        ("header-only-2.csv", "header-only.csv"),
    ] {
        let f = file(&r2, name);
        let earlier_id = id(&r1, earlier);
        assert_eq!(f["status"], "failed", "{f}");
        assert_eq!(
            f["duplicate_of"],
            serde_json::json!({"file_id": earlier_id, "name": earlier, "status": "failed"}),
            "{f}"
        );
        let e = f["error"].as_str().unwrap();
        let reason = file(&r1, earlier)["error"].as_str().unwrap();
        assert!(e.contains(&format!("file {earlier_id} ({earlier})")), "{e}");
        assert!(e.contains(reason), "{e} lacks the earlier reason {reason}");
        // Reprocessing helps only where the settings can change the outcome.
        if earlier == "bad.csv" {
            assert!(
                e.contains(&format!("bankpipe reprocess {earlier_id}")),
                "{e}"
            );
        } else {
            assert!(e.contains("Fix the file"), "{e}");
        }
    }
    // A true duplicate of a loaded file names it too, and stays a success.
    for name in ["good.csv", "good-copy.csv"] {
        let f = file(&r2, name);
        assert_eq!(f["status"], "duplicate_file", "{f}");
        assert_eq!(f["error"], Value::Null);
        assert_eq!(
            f["duplicate_of"],
            serde_json::json!({"file_id": id(&r1, "good.csv"), "name": "good.csv", "status": "loaded"})
        );
    }
    let table = String::from_utf8(w.run(&["run"]).stdout).unwrap();
    assert!(
        table.contains(&format!("bankpipe reprocess {bad_id}")),
        "{table}"
    );

    // The way out works; afterwards the content is a plain duplicate of a loaded file.
    let out = w.run(&[
        "reprocess",
        &bad_id.to_string(),
        "--max-reject-share",
        "0.6",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for name in [
        "empty.csv",
        "empty-2.csv",
        "header-only.csv",
        "header-only-2.csv",
    ] {
        std::fs::remove_file(w.inbox().join(name)).unwrap();
    }
    let (r3, c3) = w.run_json(&[]);
    assert_eq!(c3, 0, "{r3}");
    assert_eq!(file(&r3, "bad-again.csv")["status"], "duplicate_file");
    assert_eq!(
        file(&r3, "bad-again.csv")["duplicate_of"]["status"],
        "loaded"
    );
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), 6);
}

/// Issue 8 §6: amounts of any size above the maximum are `amount_above_max`, counted
/// exactly in the totals, and the exact read-back holds.
#[test]
fn huge_amounts_are_above_max_and_counted_exactly() {
    let w = Workdir::new();
    let twenty_a = "92233720368547758070";
    let twenty_b = "98765432109876543210";
    let forty = "1234567890123456789012345678901234567890";
    let mut text = format!("{HEADER}\n");
    for i in 0..100 {
        text.push_str(&format!("H{i},C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"));
    }
    for (id, amount) in [("BIG1", twenty_a), ("BIG2", twenty_b), ("BIG3", forty)] {
        text.push_str(&format!(
            "{id},C1,10/1/94,F,PUNE,1.0,2/8/16,143207,{amount}\n"
        ));
    }
    w.put("huge.csv", &text);
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["status"], "ok");
    let f = file(&r, "huge.csv");
    assert_eq!(f["status"], "loaded", "{f}");
    assert_eq!(f["error"], Value::Null, "{f}");
    assert_eq!(f["rejects"], serde_json::json!({"amount_above_max": 3}));
    assert_eq!((n(&f["rows_read"]), n(&f["rows_loaded"])), (103, 100));
    // Exactly, digit for digit (python: sum of the three + 100 × 25).
    assert_eq!(
        f["amount_rejected"],
        "1234567890123456789203344831379658869170.00"
    );
    assert_eq!(
        f["amount_read"],
        "1234567890123456789203344831379658871670.00"
    );
    assert_eq!(f["amount_loaded"], "2500.00");
    // The read-back sums the stored text exactly; the catalog holds the same.
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    let (read, rejected): (String, String) = conn
        .query_row("SELECT amount_read, amount_rejected FROM files", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(read, "1234567890123456789203344831379658871670.00");
    assert_eq!(rejected, "1234567890123456789203344831379658869170.00");
    let stored: Vec<String> = conn
        .prepare("SELECT amount FROM rejected_rows ORDER BY line_no")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        stored,
        [
            format!("{twenty_a}.00"),
            format!("{twenty_b}.00"),
            format!("{forty}.00")
        ]
    );
    // Committed once: the next run calls it a duplicate of a loaded file.
    let (again, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(file(&again, "huge.csv")["duplicate_of"]["status"], "loaded");
}

/// Issue 8 §6: the control totals are checked before commit; a load whose read-back
/// does not hold is rolled back and the file recorded failed with the reason, never left
/// `loaded` while the run says failed.
#[test]
fn control_totals_that_do_not_hold_roll_the_load_back() {
    let w = Workdir::new();
    w.put(
        "ok.csv",
        format!("{HEADER}\nK1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    // Something between the loader and the table changes a stored amount.
    rusqlite::Connection::open(w.db())
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER skew AFTER INSERT ON transactions WHEN NEW.transaction_id = 'S2'
             BEGIN UPDATE transactions SET amount = '1.00' WHERE transaction_id = 'S2'; END;",
        )
        .unwrap();
    let mut text = format!("{HEADER}\n");
    for i in 0..5 {
        text.push_str(&format!("S{i},C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"));
    }
    w.put("skewed.csv", &text);
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 1, "{r}");
    let f = file(&r, "skewed.csv");
    assert_eq!(f["status"], "failed", "{f}");
    let e = f["error"].as_str().unwrap();
    assert!(e.contains("control totals do not hold"), "{e}");
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM transactions WHERE transaction_id LIKE 'S%'"),
        0,
        "rolled back"
    );
    let files: Value = serde_json::from_slice(&w.run(&["files", "--json"]).stdout).unwrap();
    let entry = files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["original_name"] == "skewed.csv")
        .unwrap();
    assert_eq!(entry["status"], "failed");
    assert!(
        entry["error"]
            .as_str()
            .unwrap()
            .contains("control totals do not hold")
    );
    // The next run says so again instead of calling it a duplicate.
    let (again, code) = w.run_json(&[]);
    assert_eq!(code, 1, "{again}");
    assert_eq!(file(&again, "skewed.csv")["status"], "failed");
}

#[test]
fn exit_status_2_for_usage_and_configuration_errors() {
    let w = Workdir::new();
    assert_eq!(w.run(&["run", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(
        w.run(&["run", "--max-reject-share", "7"]).status.code(),
        Some(2)
    );
    let missing_inbox = w.run(&["run", "--inbox", "/nonexistent/inbox"]);
    assert_eq!(missing_inbox.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing_inbox.stderr).contains("/nonexistent/inbox"));
    std::fs::write(w.path().join("bad.toml"), "data_dirr = 'x'\n").unwrap();
    let bad_config = w.run(&["--config", "bad.toml", "status"]);
    assert_eq!(bad_config.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_config.stderr).contains("unknown field"));
}

/// A setting that does not parse stops a `--json` command with exit 2 and, as a command
/// line that does not parse does, one JSON object on stdout shaped as the command's own
/// failure: a caller reading stdout is never left with nothing to parse.
#[test]
fn configuration_errors_with_json_print_one_object() {
    let w = Workdir::new();
    std::fs::write(w.path().join("bad.toml"), "data_dirr = 'x'\n").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["run", "--json", "--max-reject-share", "7"],
            "--max-reject-share",
        ),
        (
            &["run", "--json", "--max-decompressed-bytes", "lots"],
            "--max-decompressed-bytes",
        ),
        (
            &["check", "--json", "--max-reject-share", "7", "x.csv"],
            "--max-reject-share",
        ),
        (
            &["--config", "bad.toml", "files", "--json"],
            "unknown field",
        ),
        (
            &["--config", "bad.toml", "export", "--json", "--all"],
            "unknown field",
        ),
    ];
    for (args, says) in cases {
        let out = w.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON object ({e}): {stderr}"));
        assert_eq!(v["status"], "failed", "{args:?}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{args:?}: {v}");
        match args.iter().find(|a| ["run", "export"].contains(a)) {
            Some(&"run") => {
                assert!(v["run_id"].is_null(), "{v}");
                assert_eq!(v["files"], serde_json::json!([]), "{v}");
            }
            Some(_) => assert_eq!(v["quarters"], serde_json::json!([]), "{v}"),
            None => {}
        }
    }
    // Without --json, stdout stays empty.
    let out = w.run(&["run", "--max-reject-share", "7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn exit_status_2_when_warehouse_or_lake_path_is_not_usable() {
    let w = Workdir::new();
    w.generate("a.csv", 10, &[]);
    // The warehouse path is a folder: a setting to fix, not an outage.
    let out = w
        .cmd()
        .args(["run"])
        .env(
            "BANKPIPE_WAREHOUSE_URL",
            format!("sqlite://{}", w.inbox().display()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warehouse_url"), "names the setting: {err}");
    // The lake path is a file.
    let lake_file = w.path().join("lake-is-a-file");
    std::fs::write(&lake_file, "x").unwrap();
    let out = w
        .cmd()
        .args(["run"])
        .env("BANKPIPE_LAKE_URL", &lake_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lake_url"), "names the setting: {err}");
}

#[test]
fn exit_status_3_when_the_warehouse_is_unreachable_after_retries() {
    let w = Workdir::new();
    w.generate("a.csv", 10, &[]);
    // Nothing listens on port 9: connection refused, retried, then given up.
    let out = w
        .cmd()
        .args(["run"])
        .env("BANKPIPE_LOG", "warn")
        .env(
            "BANKPIPE_WAREHOUSE_URL",
            "postgres://loader:Pw0rdNeverShown@127.0.0.1:9/bank?sslmode=disable",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warehouse unreachable"), "{err}");
    assert!(err.contains("retrying"), "retried first: {err}");
    assert!(!err.contains("Pw0rdNeverShown"), "{err}");
}

#[test]
fn secrets_in_urls_never_reach_the_output() {
    let w = Workdir::new();
    let out = w
        .cmd()
        .args(["status"])
        .env(
            "BANKPIPE_WAREHOUSE_URL",
            "mysql://loader:Sup3rS3cret@db.example:5432/bank",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("Sup3rS3cret"), "{all}");
    assert!(all.contains("***"), "{all}");
}

#[test]
fn check_reports_without_loading() {
    let w = Workdir::new();
    let good = w.generate("good.csv", 2_000, &["--seed", "5", "--defects", "0.01"]);
    let out = w.run(&["check", "--json", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &r["files"][0];
    assert_eq!(f["status"], "checked");
    assert_eq!(n(&f["rows_read"]), 2_000);
    assert_balances(f);
    assert!(!w.db().exists(), "check must not create a warehouse");
    // The same file loaded gives the same figures.
    let (run, _) = w.run_json(&[]);
    let loaded = file(&run, "good.csv");
    for k in [
        "rows_loaded",
        "rows_rejected",
        "rows_duplicate",
        "amount_loaded",
        "warnings",
    ] {
        assert_eq!(f[k], loaded[k], "{k}");
    }
    let missing = w.run(&["check", "/nonexistent.csv"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn status_and_files_describe_the_warehouse() {
    let w = Workdir::new();
    w.generate("a.csv", 1_000, &["--seed", "6"]);
    let (r, _) = w.run_json(&[]);
    let status: Value = serde_json::from_slice(&w.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["files"]["loaded"], 1);
    assert_eq!(status["transactions"], file(&r, "a.csv")["rows_loaded"]);
    assert_eq!(status["recent_runs"][0]["status"], "ok");
    let files: Value = serde_json::from_slice(&w.run(&["files", "--json"]).stdout).unwrap();
    assert_eq!(files[0]["original_name"], "a.csv");
    assert_eq!(files[0]["status"], "loaded");
    let text = String::from_utf8(w.run(&["status"]).stdout).unwrap();
    assert!(text.contains("transactions"), "{text}");
}

/// Reads stderr lines until one contains `needle`.
fn wait_for_line(child: &mut std::process::Child, needle: &str) -> bool {
    let stderr = child.stderr.take().unwrap();
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    let found = loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break false,
            Ok(_) if line.contains(needle) => break true,
            Ok(_) => {}
        }
    };
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    found
}

#[test]
fn kill_9_at_any_moment_then_rerun_loads_exactly_once() {
    // The expected outcome, from an uninterrupted run.
    let reference = Workdir::new();
    let source = reference.generate("big.csv", 300_000, &["--seed", "8", "--defects", "0.002"]);
    reference.put(
        "small.csv",
        format!("{HEADER}\nZ1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    let (r, code) = reference.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    let expected = reference.query_i64("SELECT COUNT(*) FROM transactions");
    let expected_rejects = reference.query_i64("SELECT COUNT(*) FROM rejected_rows");
    assert!(expected > 299_000);

    // Kill points: while fingerprinting/claiming, early in the load, mid-load, late.
    // Odd rounds encrypt the lake: a resumed claim must re-land under a data key the
    // catalog holds.
    for (round, delay_ms) in [0u64, 30, 150, 400, 800].into_iter().enumerate() {
        let mut w = Workdir::new();
        if round % 2 == 1 {
            w.key = Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into());
        }
        std::fs::copy(&source, w.inbox().join("big.csv")).unwrap();
        w.put(
            "small.csv",
            format!("{HEADER}\nZ1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
        );
        let mut child = w
            .cmd()
            .args(["run", "--json"])
            .env("BANKPIPE_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let marker = if round == 0 { "Run started" } else { "Claimed" };
        assert!(wait_for_line(&mut child, marker), "no {marker:?} line");
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let (r, code) = w.run_json(&[]);
        assert_eq!(code, 0, "rerun after kill at {delay_ms} ms: {r}");
        assert_eq!(
            w.query_i64("SELECT COUNT(*) FROM transactions"),
            expected,
            "kill at {delay_ms} ms"
        );
        assert_eq!(
            w.query_i64("SELECT COUNT(*) FROM rejected_rows"),
            expected_rejects,
            "kill at {delay_ms} ms"
        );
        assert_eq!(
            w.query_i64("SELECT COUNT(*) FROM files WHERE status = 'loaded'"),
            2,
            "kill at {delay_ms} ms"
        );
        assert_eq!(w.query_i64("SELECT COUNT(*) FROM files"), 2);
        // A third run has nothing left to do.
        let (again, _) = w.run_json(&[]);
        for f in again["files"].as_array().unwrap() {
            assert_eq!(f["status"], "duplicate_file", "{again}");
        }
        // The raw copies read back intact (decrypted with the catalog's data keys).
        let v = w.run(&["verify"]);
        assert!(
            v.status.success(),
            "kill at {delay_ms} ms: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        let encrypted = w.query_i64("SELECT COUNT(*) FROM files WHERE key_id IS NOT NULL");
        assert_eq!(encrypted, if w.key.is_some() { 2 } else { 0 });
    }
}

/// A run killed after its encrypted raw copy was complete but before its load committed
/// leaves a complete object under that attempt's data key; the rerun lands the file
/// under a new data key, hence a new object name. The earlier object must go with the
/// resumed claim, not stay in the lake for good as an orphan `verify` lists. The
/// killed attempt is made with the library (claim, landing recorded under a data key of
/// the same master key, object written, claim left `landing`), exactly what the
/// binary leaves at that moment, without a timing-dependent kill.
#[test]
fn a_resumed_encrypted_claim_removes_the_earlier_attempts_object() {
    let mut w = Workdir::new();
    let master_b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    w.key = Some(master_b64.into());
    let bytes = format!(
        "{HEADER}\nT1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\nT2,C2,10/1/94,M,DELHI,2.0,2/8/16,143208,30.5\n"
    );
    let source = w.put("jan.csv", &bytes);

    // The killed attempt.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let master = std::sync::Arc::new(
        bankpipe::crypt::MasterKey::from_base64(master_b64, "BANKPIPE_MASTER_KEY").unwrap(),
    );
    let (sha256, len) =
        bankpipe::lake::fingerprint(std::io::Cursor::new(bytes.as_bytes())).unwrap();
    let earlier = {
        let url = format!("sqlite://{}", w.db().display());
        let mut catalog = bankpipe::warehouse::Warehouse::open(&url).unwrap();
        catalog
            .start_run("killed-run", &bankpipe::clock::now_rfc3339())
            .unwrap();
        let plain = bankpipe::lake::Lake::raw_key(
            "kaggle-bank",
            bankpipe::clock::year_month(),
            &sha256,
            "csv",
        );
        let file_id = match catalog
            .claim(&bankpipe::warehouse::NewFile {
                sha256: sha256.clone(),
                original_name: "jan.csv".into(),
                bytes: len,
                profile: Some("kaggle-bank".into()),
                format: "csv".into(),
                compression: "none".into(),
                lake_key: plain.clone(),
                received_at: bankpipe::clock::now_rfc3339(),
                run_id: "killed-run".into(),
            })
            .unwrap()
        {
            bankpipe::warehouse::Claim::New { file_id } => file_id,
            other => panic!("expected a new claim, got {other:?}"),
        };
        let (data_key, sealed) = master.new_data_key(&sha256).unwrap();
        let key = format!("{plain}.{}.enc", data_key.tag());
        catalog
            .record_landing(file_id, &key, Some(&sealed))
            .unwrap();
        let lake = bankpipe::lake::Lake::open(
            &w.path().join("lake").display().to_string(),
            runtime.handle().clone(),
        )
        .unwrap()
        .with_master_key(Some(master.clone()));
        lake.land(
            &key,
            "jan.csv",
            std::fs::File::open(&source).unwrap(),
            &sha256,
            Some(bankpipe::lake::Encrypt { key: data_key, len }),
        )
        .unwrap();
        key
    };
    let earlier_path = w.path().join("lake").join(&earlier);
    assert!(
        earlier_path.is_file(),
        "the killed attempt's object is in the lake"
    );
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM files WHERE status = 'landing'"),
        1
    );

    // The rerun resumes the claim, lands under a new data key and loads the file once.
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, "jan.csv");
    assert_eq!(f["status"], "loaded", "{r}");
    assert_eq!(n(&f["rows_loaded"]), 2);
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), 2);
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM files"), 1);
    let now_key = f["lake_key"].as_str().unwrap().to_owned();
    assert_ne!(
        now_key, earlier,
        "a resumed encrypted claim lands under a new data key"
    );
    assert!(w.path().join("lake").join(&now_key).is_file());

    // The earlier attempt's object is gone: the lake holds the catalog's object only.
    assert!(
        !earlier_path.exists(),
        "the earlier attempt's object {earlier} was left in the lake"
    );
    let out = w.run(&["verify", "--json"]);
    let verify: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(verify["orphans"], serde_json::json!([]), "{verify}");
    assert_eq!(verify["unfinished"], serde_json::json!([]), "{verify}");
    assert_eq!(verify["not_intact"], 0, "{verify}");
    assert!(out.status.success(), "{verify}");
}

#[test]
fn two_runs_at_once_share_the_warehouse_safely() {
    let w = Workdir::new();
    for i in 0..4 {
        w.generate(
            &format!("f{i}.csv"),
            20_000,
            &[
                "--seed",
                &i.to_string(),
                "--first-id",
                &(1 + i * 20_000).to_string(),
            ],
        );
    }
    let spawn = || {
        w.cmd()
            .args(["run", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let started = Instant::now();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(started.elapsed() < Duration::from_secs(120));
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(b.status.code(), Some(0));
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM files WHERE status = 'loaded'"),
        4
    );
    let loaded: i64 = w.query_i64("SELECT SUM(rows_loaded) FROM files");
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), loaded);
}

#[test]
fn demo_runs_end_to_end_on_a_small_scale() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
        .current_dir(dir.path())
        .args(["demo", "--rows", "30000"])
        .env("BANKPIPE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bank_transactions_2016_08.csv"), "{text}");
    assert!(text.contains("Try next"), "{text}");
    // A second demo replaces its own folder but refuses someone else's.
    let again = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
        .current_dir(dir.path())
        .args(["demo", "--rows", "300"])
        .output()
        .unwrap();
    assert!(again.status.success());
    std::fs::create_dir_all(dir.path().join("mine")).unwrap();
    std::fs::write(dir.path().join("mine/precious.txt"), "keep").unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
        .current_dir(dir.path())
        .args(["demo", "--rows", "300", "--dir", "mine"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(dir.path().join("mine/precious.txt").exists());
}

#[test]
fn a_profile_declared_in_bankpipe_toml_loads_without_code() {
    let w = Workdir::new();
    std::fs::write(
        w.path().join("bankpipe.toml"),
        r#"
max_reject_share = 0.5
[[profile]]
name = "acme-eur"
currency = "EUR"
max_amount = "1000"
[profile.columns]
transaction_id = "Ref"
customer_id = "Client"
transaction_date = "Day"
transaction_time = "Time"
amount = "Amount"
location = "City"
[profile.formats]
transaction_date = "%d.%m.%Y"
transaction_time = "iso"
"#,
    )
    .unwrap();
    w.put("acme.csv", "ref;x,client,day,time,amount,city\n");
    w.put(
        "acme2.csv",
        "Amount,City,Ref,Client,Day,Time\n12.5,Paris,A1,K1,02.08.2016,10:11:12\n1000.01,Paris,A2,K1,02.08.2016,10:11:12\n",
    );
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 1, "acme.csv matches no profile: {r}");
    let f = file(&r, "acme2.csv");
    assert_eq!(f["status"], "loaded", "{f}");
    assert_eq!(f["profile"], "acme-eur");
    assert_eq!(n(&f["rows_loaded"]), 1);
    assert_eq!(f["rejects"]["amount_above_max"], 1);
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    let (currency, at, amount): (String, String, String) = conn
        .query_row(
            "SELECT currency, transaction_at, amount FROM transactions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (currency.as_str(), at.as_str(), amount.as_str()),
        ("EUR", "2016-08-02 10:11:12", "12.50")
    );
}

#[test]
fn canonical_ndjson_with_numbers_and_strings() {
    let w = Workdir::new();
    w.put(
        "c.ndjson",
        concat!(
            r#"{"transaction_id":"X1","customer_id":"C1","transaction_at":"2016-08-02T10:00:00+05:30","amount":25.10,"currency":"INR","gender":"m"}"#,
            "\n",
            r#"{"transaction_id":"X2","customer_id":"C1","transaction_at":"2016-08-02T10:00:00Z","amount":"7","currency":"usd","location":"Pune"}"#,
            "\n",
            r#"{"transaction_id":"X3","customer_id":"C1","transaction_at":"2016-08-02T10:00:00Z","amount":1e3,"currency":"INR"}"#,
            "\n",
            r#"not json"#,
            "\n"
        ),
    );
    let (r, code) = w.run_json(&["--max-reject-share", "0.6"]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, "c.ndjson");
    assert_eq!(f["profile"], "canonical");
    assert_eq!(n(&f["rows_loaded"]), 2);
    assert_eq!(f["rejects"]["invalid_amount"], 1);
    assert_eq!(f["rejects"]["malformed_row"], 1);
    assert_eq!(f["amount_loaded"], "32.10");
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    let at: String = conn
        .query_row(
            "SELECT transaction_at FROM transactions WHERE transaction_id = 'X1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(at, "2016-08-02 04:30:00", "offsets are converted to UTC");
}

#[test]
fn verify_finds_missing_and_corrupt_lake_objects() {
    let w = Workdir::new();
    w.generate("a.csv", 2_000, &["--seed", "51"]);
    w.generate("b.csv", 2_000, &["--seed", "52", "--first-id", "5000"]);
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    let verify = |w: &Workdir| {
        let out = w.run(&["verify", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (v, out.status.code().unwrap())
    };
    let (v, code) = verify(&w);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["checked"], 2);
    assert_eq!(v["not_intact"], 0);
    // Change one byte of a's raw copy and remove b's.
    let a_key = file(&r, "a.csv")["lake_key"].as_str().unwrap().to_owned();
    let b_key = file(&r, "b.csv")["lake_key"].as_str().unwrap().to_owned();
    let a_path = w.path().join("lake").join(&a_key);
    let mut bytes = std::fs::read(&a_path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&a_path, bytes).unwrap();
    std::fs::remove_file(w.path().join("lake").join(&b_key)).unwrap();
    let (v, code) = verify(&w);
    assert_eq!(code, 1, "{v}");
    let state = |key: &str| {
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["lake_key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(state(&a_key)["status"], "corrupt");
    assert_ne!(
        state(&a_key)["actual_sha256"],
        state(&a_key)["expected_sha256"]
    );
    assert_eq!(state(&b_key)["status"], "missing");
    // The catalog remembers.
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    let statuses: Vec<String> = conn
        .prepare("SELECT lake_status FROM files ORDER BY file_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(statuses, ["corrupt", "missing"]);
}

#[test]
fn reprocess_reloads_from_the_lake_with_a_dry_run_first() {
    let w = Workdir::new();
    let mut text = format!("{HEADER}\n");
    for i in 0..100 {
        let date = if i % 10 == 0 { "31/2/16" } else { "2/8/16" };
        text.push_str(&format!("P{i},C1,10/1/94,F,PUNE,1.0,{date},143207,25.0\n"));
    }
    w.put("p.csv", text);
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 1, "10% rejects fail the file at the default 5%: {r}");
    let id = file(&r, "p.csv")["file_id"].as_i64().unwrap().to_string();
    // The contract changes: 20% rejects are now acceptable.
    std::fs::write(w.path().join("bankpipe.toml"), "max_reject_share = 0.2\n").unwrap();
    // The inbox copy is gone: reprocess reads the raw object from the lake.
    std::fs::remove_file(w.inbox().join("p.csv")).unwrap();

    let dry = w.run(&["reprocess", &id, "--dry-run", "--json"]);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let d: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(d["before"]["status"], "failed");
    assert_eq!(d["after"]["status"], "loaded");
    assert_eq!(d["after"]["rows_loaded"], 90);
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM transactions"),
        0,
        "dry run changes nothing"
    );

    let real = w.run(&["reprocess", &id, "--json"]);
    assert_eq!(
        real.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), 90);
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM rejected_rows"),
        10,
        "rejects replaced, not doubled"
    );
    assert_eq!(
        w.query_i64(
            "SELECT COUNT(*) FROM transactions WHERE line_no = 3 AND transaction_id = 'P1'"
        ),
        1,
        "lineage stays exact"
    );
    assert_eq!(w.query_i64("SELECT rows_loaded FROM files"), 90);
    // Reprocessing again gives the same state.
    assert_eq!(w.run(&["reprocess", &id]).status.code(), Some(0));
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), 90);
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM rejected_rows"), 10);

    // A changed byte in the raw object: a clear error, the catalog marks it, the data stays.
    let files: Value = serde_json::from_slice(&w.run(&["files", "--json"]).stdout).unwrap();
    let key = files[0]["lake_key"].as_str().unwrap();
    let obj = w.path().join("lake").join(key);
    let mut bytes = std::fs::read(&obj).unwrap();
    let last = bytes.len() - 3;
    bytes[last] = b'9';
    std::fs::write(&obj, bytes).unwrap();
    let bad = w.run(&["reprocess", &id]);
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(out.contains("is corrupt: expected sha256"), "{out}");
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM transactions"),
        90,
        "previous load untouched"
    );
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    let status: String = conn
        .query_row("SELECT lake_status FROM files", [], |r| r.get(0))
        .unwrap();
    assert_eq!(status, "corrupt");
}

/// Issue 8 section 4: a row another file counted as an identical duplicate survives a
/// reprocess that fails the file holding it, moved to the other file's line; a dry run
/// shows the move first; reprocessing back counts the row once; a row another file had
/// rejected as conflicting stays rejected.
#[test]
fn reprocess_moves_rows_other_files_carry_instead_of_losing_them() {
    let w = Workdir::new();
    let t1 = "T1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0";
    let mut a = format!("{HEADER}\n{t1}\nT0,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,abc\n");
    for i in 1..=8 {
        a.push_str(&format!("A{i},C1,10/1/94,F,PUNE,1.0,2/8/16,143207,1.0\n"));
    }
    w.put("a.csv", a);
    let (r, code) = w.run_json(&["--max-reject-share", "0.2"]);
    assert_eq!(code, 0, "{r}");
    w.put(
        "b.csv",
        format!(
            "{HEADER}\nB1,C2,10/1/94,F,PUNE,1.0,2/8/16,143207,3.0\n{t1}\nB2,C2,10/1/94,F,PUNE,1.0,2/8/16,143207,4.0\n"
        ),
    );
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(file(&r, "b.csv")["rows_duplicate"], 1, "{r}");
    w.put(
        "c.csv",
        format!(
            "{HEADER}\nT1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,26.0\nC1,C3,10/1/94,F,PUNE,1.0,2/8/16,143207,5.0\n"
        ),
    );
    let (r, code) = w.run_json(&["--max-reject-share", "0.5"]);
    assert_eq!(code, 0, "{r}");
    let lineage = "SELECT file_id * 1000 + line_no FROM transactions WHERE transaction_id = 'T1'";
    assert_eq!(w.query_i64(lineage), 1002, "T1 from a.csv line 2");
    let balanced = || {
        w.query_i64(
            "SELECT COUNT(*) FROM files WHERE status = 'loaded'
               AND rows_read <> rows_loaded + rows_rejected + rows_duplicate",
        )
    };

    // The dry run says which rows would move where, and changes nothing.
    let dry = w.run(&[
        "reprocess",
        "1",
        "--dry-run",
        "--json",
        "--max-reject-share",
        "0",
    ]);
    assert_eq!(dry.status.code(), Some(1), "A would fail");
    let d: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(d["after"]["status"], "failed", "{d}");
    assert_eq!(d["rows_moved"], 1, "{d}");
    assert_eq!(d["moved_to"][0]["file_id"], 2, "{d}");
    assert_eq!(d["moved_to"][0]["name"], "b.csv", "{d}");
    assert_eq!(d["moved_to"][0]["rows"], 1, "{d}");
    assert_eq!(d["moved_to"][0]["amount"], "25.00", "{d}");
    let text = w.run(&["reprocess", "1", "--dry-run", "--max-reject-share", "0"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("rows_moved") && text.contains("1 to file 2 (b.csv)"),
        "{text}"
    );
    assert_eq!(w.query_i64(lineage), 1002, "a dry run changes nothing");

    // A fails as a whole: T1 stays, from b.csv line 3; B counts it loaded now.
    let out = w.run(&["reprocess", "1", "--json", "--max-reject-share", "0"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(o["rows_moved"], 1, "{o}");
    assert!(
        o["after"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("rejected-row share"),
        "{o}"
    );
    assert_eq!(w.query_i64(lineage), 2003, "T1 now from b.csv line 3");
    assert_eq!(
        w.query_i64("SELECT amount = '25.00' FROM transactions WHERE transaction_id = 'T1'"),
        1
    );
    assert_eq!(
        w.query_i64("SELECT rows_loaded FROM files WHERE file_id = 2"),
        3
    );
    assert_eq!(
        w.query_i64("SELECT rows_duplicate FROM files WHERE file_id = 2"),
        0
    );
    assert_eq!(
        w.query_i64("SELECT amount_loaded = '32.00' FROM files WHERE file_id = 2"),
        1
    );
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM transactions"),
        4,
        "T1, B1, B2, C1"
    );
    assert_eq!(balanced(), 0);
    // C's conflicting T1 stays quarantined (see docs/ARCHITECTURE.md).
    assert_eq!(
        w.query_i64(
            "SELECT COUNT(*) FROM rejected_rows WHERE file_id = 3 AND rule = 'conflicting_duplicate'"
        ),
        1
    );

    // A loads again: T1 counted once, B keeps it, A counts it a duplicate.
    for _ in 0..2 {
        let out = w.run(&["reprocess", "1", "--json", "--max-reject-share", "0.2"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let o: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(o["rows_moved"], 0, "{o}");
        assert_eq!(o["after"]["rows_loaded"], 8, "{o}");
        assert_eq!(o["after"]["rows_duplicate"], 1, "{o}");
        assert_balances(&o["after"]);
        assert_eq!(
            w.query_i64("SELECT COUNT(*) FROM transactions WHERE transaction_id = 'T1'"),
            1
        );
        assert_eq!(w.query_i64(lineage), 2003);
        assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), 12);
        assert_eq!(balanced(), 0);
    }
}

/// A compact JSON array: many records on one line, with a repeated id and two rejects
/// on that same line.
pub const COMPACT_JSON: &str = r#"[{"transaction_id":"J1","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"10.00","currency":"INR"},{"transaction_id":"J1","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"10.00","currency":"INR"},{"transaction_id":"J2","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"-1","currency":"INR"},{"transaction_id":"J3","customer_id":"","transaction_at":"2016-08-02T10:00:00","amount":"5","currency":"INR"},{"transaction_id":"J1","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"11.00","currency":"INR"},{"transaction_id":"J4","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"4.00","currency":"INR"}]"#;

#[test]
fn records_sharing_a_line_are_counted_and_quarantined_correctly() {
    let w = Workdir::new();
    w.put("compact.json", COMPACT_JSON);
    let (r, code) = w.run_json(&["--max-reject-share", "0.9"]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, "compact.json");
    assert_eq!(n(&f["rows_read"]), 6);
    assert_eq!(n(&f["rows_loaded"]), 2, "{f}");
    assert_eq!(n(&f["rows_duplicate"]), 1, "{f}");
    assert_eq!(n(&f["rows_rejected"]), 3, "{f}");
    assert_eq!(f["amount_loaded"], "14.00");
    assert_balances(f);
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), 2);
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM rejected_rows WHERE line_no = 1"),
        3
    );
}

#[test]
fn a_file_changed_while_being_read_is_not_loaded_and_retried_later() {
    let w = Workdir::new();
    let path = w.generate("big.csv", 400_000, &["--seed", "61", "--defects", "0"]);
    let original = std::fs::read(&path).unwrap();
    let mut child = w
        .cmd()
        .args(["run", "--json"])
        .env("BANKPIPE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for_line(&mut child, "Claimed"));
    // Truncate in place while the scan is running.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(original.len() as u64 / 10)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{r}");
    let e = file(&r, "big.csv")["error"].as_str().unwrap().to_owned();
    assert!(
        e.contains("changed while") || e.contains("changed while being landed"),
        "{e}"
    );
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), 0);
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM files WHERE status = 'landing'"),
        1,
        "the claim stays open, not failed"
    );
    // The complete file arrives again: it loads in full.
    std::fs::write(&path, &original).unwrap();
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(n(&file(&r, "big.csv")["rows_loaded"]), 400_000);
}

/// Issue 8 §8: a file appended to while being read. Its claim records why it stopped
/// (`files`, `status`), `verify` lists it as unfinished (not as an orphan), and once the
/// file is stable the next run loads it exactly once and withdraws the stopped claim.
#[test]
fn a_file_that_grows_while_being_read_is_shown_then_loaded_once_stable() {
    let w = Workdir::new();
    let path = w.generate("grow.csv", 400_000, &["--seed", "62", "--defects", "0"]);
    let mut child = w
        .cmd()
        .args(["run", "--json"])
        .env("BANKPIPE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for_line(&mut child, "Claimed"));
    // A real writer appends while the run reads.
    let mut more = String::new();
    for i in 0..1_000 {
        more.push_str(&format!(
            "GROW{i},C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"
        ));
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(more.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{r}");
    let f = file(&r, "grow.csv");
    assert!(
        f["error"].as_str().unwrap().contains("changed while"),
        "{f}"
    );
    let stopped_id = f["file_id"].as_i64().unwrap();
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), 0);

    let json = |args: &[&str]| -> Value {
        let out = w.run(args);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    // files: still landing, with the reason.
    let files = json(&["files", "--json"]);
    let entry = &files.as_array().unwrap()[0];
    assert_eq!(entry["status"], "landing");
    let reason = entry["error"].as_str().unwrap().to_owned();
    assert!(reason.contains("changed while"), "{reason}");
    assert!(reason.contains("next run"), "{reason}");
    // status: listed as unfinished with the reason.
    let status = json(&["status", "--json"]);
    assert_eq!(status["unfinished"][0]["file_id"], stopped_id, "{status}");
    assert_eq!(status["unfinished"][0]["reason"], reason.as_str());
    // verify: listed as unfinished, never as a safe-to-delete orphan.
    let verify = json(&["verify", "--json"]);
    assert_eq!(verify["unfinished"][0]["file_id"], stopped_id, "{verify}");
    assert_eq!(verify["unfinished"][0]["reason"], reason.as_str());
    let key = entry["lake_key"].as_str().unwrap();
    assert!(
        !verify["orphans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == key),
        "{verify}"
    );
    let text = String::from_utf8(w.run(&["status"]).stdout).unwrap();
    assert!(
        text.contains("unfinished") && text.contains("changed while"),
        "{text}"
    );

    // The file is stable now: the next run loads all of it, once, and withdraws the
    // stopped claim of the snapshot (and its raw object, if it had landed).
    let (r2, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r2}");
    let f2 = file(&r2, "grow.csv");
    assert_eq!(f2["status"], "loaded");
    assert_eq!(n(&f2["rows_loaded"]), 401_000);
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), 401_000);
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM files"), 1);
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM files WHERE status = 'landing'"),
        0
    );
    let verify = json(&["verify", "--json"]);
    assert_eq!(verify["unfinished"], serde_json::json!([]), "{verify}");
    assert_eq!(verify["orphans"], serde_json::json!([]), "{verify}");
    assert_eq!(verify["not_intact"], 0);
    let (r3, code) = w.run_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(file(&r3, "grow.csv")["status"], "duplicate_file");
}

#[test]
fn a_master_key_file_in_bankpipe_toml_turns_encryption_on() {
    let w = Workdir::new();
    w.put(
        "a.csv",
        format!("{HEADER}\nZ1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    std::fs::write(w.path().join("master.key"), [7u8; 32]).unwrap();
    std::fs::write(
        w.path().join("bankpipe.toml"),
        "master_key_file = \"master.key\"\n",
    )
    .unwrap();
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    let key = r["files"][0]["lake_key"].as_str().unwrap();
    let stored = std::fs::read(w.path().join("lake").join(key)).unwrap();
    assert!(stored.starts_with(b"BPENC"));
    assert!(memchr::memmem::find(&stored, b"PUNE").is_none());
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM files WHERE key_id LIKE 'mk-%'"),
        1
    );
    // Both variables at once: a configuration error, exit 2, no key in the message.
    let out = w
        .cmd()
        .arg("verify")
        .env(
            "BANKPIPE_MASTER_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .env("BANKPIPE_MASTER_KEY_FILE", "master.key")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set one of them, not both"), "{err}");
    assert!(!err.contains("AAECAwQF"), "{err}");
    assert!(w.run(&["verify"]).status.success());
    // An object no catalog entry names (an interrupted attempt's) is listed, not counted
    // as damage.
    let orphan = w
        .path()
        .join("lake/raw/kaggle-bank/2016/08/deadbeef.csv.00000000.enc");
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"BPENC").unwrap();
    let v = w.run(&["verify", "--json"]);
    assert!(v.status.success());
    let v: Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(
        v["orphans"],
        serde_json::json!(["raw/kaggle-bank/2016/08/deadbeef.csv.00000000.enc"])
    );
}

/// The exact line of issue 8 §5: a quote opened in CustLocation that never closes on its
/// line.
const STRAY_QUOTE_LINE: &str = "T991,C5393377,1/1/1800,M,\"YATA,23393.64,24/9/16,141411,25.0";

/// `rows` clean data lines `T{first}..`, each with a LF.
fn clean_rows(first: u64, rows: u64) -> String {
    (first..first + rows)
        .map(|i| format!("T{i},C{i},10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"))
        .collect()
}

/// Loads `text` as `name` and checks that every one of its `rows` data lines was read as a
/// row, that exactly the line `bad_line` was rejected (as `malformed_row`, raw text
/// `STRAY_QUOTE_LINE`), and that all the others were loaded.
fn assert_only_the_stray_line_is_lost(name: &str, text: String, rows: u64, bad_line: u64) {
    let w = Workdir::new();
    w.put(name, text);
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, name);
    assert_eq!(n(&f["rows_read"]), rows, "{f}");
    assert_eq!(n(&f["rows_rejected"]), 1, "{f}");
    assert_eq!(f["rejects"]["malformed_row"], 1, "{f}");
    assert_eq!(n(&f["rows_loaded"]), rows - 1, "{f}");
    assert_balances(f);
    let out = w.run(&["rejects", "--json"]);
    let reject: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(n(&reject["line_no"]), bad_line);
    assert_eq!(reject["raw"], STRAY_QUOTE_LINE);
}

#[test]
fn a_stray_quote_does_not_swallow_the_rows_after_it() {
    let w = Workdir::new();
    let path = w.generate("g.csv", 3_000, &["--seed", "7", "--defects", "0"]);
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // As in the issue: the next quote character comes 98 lines after the stray one.
    let quoted = (100..lines.len())
        .find(|&i| lines[i].contains('"'))
        .unwrap();
    lines[quoted - 98] = STRAY_QUOTE_LINE.to_owned();
    let text = lines.join("\n") + "\n";
    assert_only_the_stray_line_is_lost("g.csv", text, 3_000, quoted as u64 - 97);
}

#[test]
fn a_stray_quote_whose_next_quote_is_past_64_kib_or_never_comes() {
    // The next quote 2,000 rows (> 64 KiB) later.
    let text = format!(
        "{HEADER}\n{}{STRAY_QUOTE_LINE}\n{}T9000,C1,10/1/94,F,\"PUNE, MH\",1.0,2/8/16,143207,25.0\n{}",
        clean_rows(0, 10),
        clean_rows(10, 2_000),
        clean_rows(2_010, 10)
    );
    assert!(text.len() > 64 * 1024 + 2_000);
    assert_only_the_stray_line_is_lost("far.csv", text, 2_022, 12);
    // No other quote before the end of the file.
    let text = format!(
        "{HEADER}\n{}{STRAY_QUOTE_LINE}\n{}",
        clean_rows(0, 30),
        clean_rows(30, 30)
    );
    assert_only_the_stray_line_is_lost("eof.csv", text, 61, 32);
}

#[test]
fn a_quoted_field_holding_a_newline_loads_with_it() {
    let w = Workdir::new();
    let text = format!(
        "{HEADER}\r\n{}T500,C500,10/1/94,F,\"NEW\nDELHI\",1.0,2/8/16,143207,25.0\r\n{}",
        clean_rows(0, 20),
        clean_rows(20, 20)
    );
    w.put("nl.csv", text);
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, "nl.csv");
    assert_eq!((n(&f["rows_read"]), n(&f["rows_loaded"])), (41, 41), "{f}");
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    let location: String = conn
        .query_row(
            "SELECT location FROM transactions WHERE transaction_id = 'T500'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(location, "NEW\nDELHI");
}

/// Runs `args` with stdout a pipe whose reading end is already closed, so the first
/// write fails with `EPIPE` (deterministically: no race with a reader exiting).
fn run_into_closed_pipe(w: &Workdir, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = w
        .cmd()
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = child.wait().unwrap();
    Output {
        status,
        stdout: Vec::new(),
        stderr: stderr.into_bytes(),
    }
}

#[test]
fn writing_to_a_closed_pipe_ends_quietly() {
    let w = Workdir::new();
    let mut text = format!("{HEADER}\n");
    text.push_str("P1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n");
    text.push_str("P2,C1,10/1/94,F,PUNE,1.0,31/2/16,143207,25.0\n");
    w.put("p.csv", text);
    let (r, code) = w.run_json(&["--max-reject-share", "0.6"]);
    assert_eq!(code, 0, "{r}");
    for args in [
        &["files"][..],
        &["status"],
        &["status", "--json"],
        &["rejects"],
        &["verify"],
        &["migrate"],
        &["generate", "--rows", "100000", "--out", "-"],
    ] {
        let out = run_into_closed_pipe(&w, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("error"), "{args:?}: {err}");
    }
    // The status still tells what happened: a failed file is 1 even if nobody reads.
    for (i, args) in [&["run"][..], &["run", "--json"]].into_iter().enumerate() {
        // A header without rows (different bytes each time, so not a duplicate) fails.
        w.put(
            &format!("empty{i}.csv"),
            format!("{HEADER}{}", "\n".repeat(i + 1)),
        );
        let out = run_into_closed_pipe(&w, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn read_only_commands_create_nothing_where_the_url_points_nowhere() {
    let w = Workdir::new();
    for args in [
        &["status"][..],
        &["files"],
        &["rejects"],
        &["verify"],
        &["status", "--json"],
    ] {
        let out = w.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("no warehouse at sqlite://{}", w.db().display())),
            "{args:?}: {err}"
        );
    }
    let nested = w.path().join("typo/w.db");
    let out = w
        .cmd()
        .arg("files")
        .env(
            "BANKPIPE_WAREHOUSE_URL",
            format!("sqlite://{}", nested.display()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!w.db().exists(), "no warehouse created");
    assert!(!w.path().join("typo").exists(), "no folder created");
    assert!(!w.path().join("lake").exists(), "no lake created");
    // `check` needs no warehouse at all.
    let f = w.generate("c.csv", 10, &[]);
    assert!(w.run(&["check", f.to_str().unwrap()]).status.success());
    assert!(!w.db().exists());
    // A dry run of migrate says what it would do, and does nothing.
    let out = w.run(&["migrate", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text.contains("would create"), "{text}");
    assert_eq!(
        text.matches("bankpipe migrate").count(),
        1,
        "said once: {text}"
    );
    assert!(text.contains("0001 init"), "{text}");
    assert!(!w.db().exists());
    // `migrate` creates it and says what it applied; the read-only commands then work.
    let out = w.run(&["migrate"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text.contains("applied") && text.contains("0001 init"),
        "{text}"
    );
    let out = w.run(&["migrate"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nothing pending"), "{text}");
    for args in [&["status"][..], &["files"], &["rejects"], &["verify"]] {
        let out = w.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
}

#[test]
fn a_schema_behind_says_run_migrate_and_migrate_applies_what_is_pending() {
    let w = Workdir::new();
    // A warehouse made by a bankpipe that knew migrations 1 to 3.
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    conn.execute_batch(
        "CREATE TABLE schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .unwrap();
    for (v, name, sql) in [
        (1, "init", include_str!("../sql/sqlite/0001_init.sql")),
        (
            2,
            "lake_status",
            include_str!("../sql/sqlite/0002_lake_status.sql"),
        ),
        (
            3,
            "encryption",
            include_str!("../sql/sqlite/0003_encryption.sql"),
        ),
    ] {
        conn.execute_batch(sql).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?1, ?2, '2026-01-01T00:00:00Z')",
            rusqlite::params![v, name],
        )
        .unwrap();
    }
    drop(conn);
    let version = || w.query_i64("SELECT MAX(version) FROM schema_migrations");
    for args in [&["status"][..], &["files"], &["rejects"], &["verify"]] {
        let out = w.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("run `bankpipe migrate`"), "{args:?}: {err}");
        assert!(err.contains("0004 lean_transactions"), "{args:?}: {err}");
    }
    assert_eq!(version(), 3, "read-only commands migrate nothing");
    let out = w.run(&["migrate", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text.contains("would apply") && text.contains("0004 lean_transactions"),
        "{text}"
    );
    assert!(!text.contains("0003"), "{text}");
    assert_eq!(version(), 3, "a dry run migrates nothing");
    let out = w.run(&["migrate"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("applied") && text.contains("0004 lean_transactions"),
        "{text}"
    );
    assert!(version() >= 4);
    assert!(w.run(&["status"]).status.success());
}

#[test]
fn paths_in_a_config_file_are_relative_to_its_folder() {
    let top = tempfile::tempdir().unwrap();
    let conf = top.path().join("conf");
    std::fs::create_dir_all(conf.join("in")).unwrap();
    std::fs::write(
        conf.join("bankpipe.toml"),
        "data_dir = \"data\"\ninbox = \"in\"\n",
    )
    .unwrap();
    let mut text = format!("{HEADER}\n");
    text.push_str("K1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n");
    std::fs::write(conf.join("in/k.csv"), text).unwrap();
    let elsewhere = top.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let bankpipe = |cwd: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
        c.current_dir(cwd)
            .env_remove("BANKPIPE_WAREHOUSE_URL")
            .env_remove("BANKPIPE_LAKE_URL")
            .env_remove("BANKPIPE_INBOX")
            .env_remove("BANKPIPE_DATA_DIR")
            .env_remove("BANKPIPE_CONFIG")
            .env_remove("BANKPIPE_MASTER_KEY")
            .env_remove("BANKPIPE_MASTER_KEY_FILE")
            .env("BANKPIPE_LOG", "warn");
        c
    };
    // --config given relative to the working folder.
    let out = bankpipe(top.path())
        .args(["--config", "conf/bankpipe.toml", "run", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["files"][0]["rows_loaded"], 1, "{r}");
    assert!(conf.join("data/warehouse.db").exists());
    assert!(conf.join("data/lake").is_dir());
    assert!(!top.path().join("data").exists());
    // BANKPIPE_CONFIG, from another folder.
    let out = bankpipe(&elsewhere)
        .env("BANKPIPE_CONFIG", conf.join("bankpipe.toml"))
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["transactions"], 1);
}

#[test]
fn environment_variables_are_honoured_or_refused_never_ignored() {
    let w = Workdir::new();
    let mut text = format!("{HEADER}\n");
    for i in 0..10 {
        let date = if i % 5 == 0 { "31/2/16" } else { "2/8/16" };
        text.push_str(&format!("E{i},C1,10/1/94,F,PUNE,1.0,{date},143207,25.0\n"));
    }
    w.put("e.csv", text);
    // 20% rejected: over the default 5%, under the variable's 30%.
    let out = w
        .cmd()
        .args(["run", "--json", "--no-progress"])
        .env("BANKPIPE_MAX_REJECT_SHARE", "0.3")
        .env("BANKPIPE_WORKERS", "1")
        .env("BANKPIPE_PARALLEL", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["files"][0]["rows_loaded"], 8, "{r}");
    for (var, value) in [
        ("BANKPIPE_MAX_REJECT_SHARE", "5%"),
        ("BANKPIPE_MAX_REJECT_SHARE", "7"),
        ("BANKPIPE_WORKERS", "two"),
        ("BANKPIPE_WORKERS", "0"),
        ("BANKPIPE_PARALLEL", "-1"),
        ("BANKPIPE_LOG", "debug,[[bad"),
    ] {
        let out = w.cmd().arg("status").env(var, value).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.contains(var), "{var}={value}: {err}");
    }
    // A flag still wins over the variable.
    let out = w
        .cmd()
        .args(["check", "--workers", "2"])
        .arg(w.inbox().join("e.csv"))
        .env("BANKPIPE_WORKERS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // A misspelt variable is not silently ignored.
    let out = w
        .cmd()
        .arg("status")
        .env("BANKPIPE_WAREHOUSE", "postgres://x")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BANKPIPE_WAREHOUSE"), "{err}");
}

#[test]
fn verify_says_what_an_orphan_object_is_and_never_that_it_is_safe_to_delete() {
    let w = Workdir::new();
    w.generate("o.csv", 100, &["--defects", "0"]);
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    let sha = file(&r, "o.csv")["sha256"].as_str().unwrap().to_owned();
    let dir = w.path().join("lake/raw/kaggle-bank/2016/08");
    std::fs::create_dir_all(&dir).unwrap();
    // An earlier encrypted attempt at the same content, and content no entry holds.
    std::fs::write(dir.join(format!("{sha}.csv.0011aabb.enc")), b"BPENC").unwrap();
    std::fs::write(dir.join(format!("{}.csv", "f".repeat(64))), b"x").unwrap();
    let out = w.run(&["verify"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("safe to delete"), "{text}");
    assert!(
        text.contains("earlier landing attempt of file 1 (o.csv)"),
        "{text}"
    );
    assert!(text.contains("another warehouse"), "{text}");
    let out = w.run(&["verify", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["orphans"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["orphan_details"][0]["file_id"], 1, "{v}");
}

#[test]
fn rejects_of_an_unknown_file_says_so() {
    let w = Workdir::new();
    w.generate("a.csv", 100, &[]);
    let (_, code) = w.run_json(&[]);
    assert_eq!(code, 0);
    let out = w.run(&["rejects", "--file", "999"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no file 999"), "{err}");
    assert!(w.run(&["rejects", "--file", "1"]).status.success());
}

#[test]
fn check_shortens_long_names_with_an_ellipsis() {
    let w = Workdir::new();
    let long = format!("{}_end.csv", "a_very_long_export_name".repeat(4));
    let f = w.put(
        &long,
        format!("{HEADER}\nL1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    let short = w.put(
        "s.csv",
        format!("{HEADER}\nL2,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    let out = w.run(&["check", f.to_str().unwrap(), short.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].contains('…') && lines[1].contains("_end.csv"),
        "{text}"
    );
    // Columns line up: the status column starts at the same character in every row.
    let at = |line: &str, word: &str| line[..line.find(word).unwrap()].chars().count();
    assert_eq!(at(lines[1], "checked"), at(lines[0], "status"), "{text}");
    assert_eq!(at(lines[2], "checked"), at(lines[0], "status"), "{text}");
}

#[test]
fn rotate_key_dry_run_logs_nothing_as_re_wrapped_and_needs_a_warehouse() {
    let mut w = Workdir::new();
    // base64 of 32 bytes 0x01 and 32 bytes 0x02.
    let old = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let new = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
    // No warehouse yet: rotate-key and reprocess write, but never create one.
    w.key = Some(old.into());
    for args in [&["rotate-key"][..], &["reprocess", "1"]] {
        let out = w
            .cmd()
            .args(args)
            .env("BANKPIPE_NEW_MASTER_KEY", new)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("no warehouse at"), "{args:?}: {err}");
        assert!(!w.db().exists(), "{args:?} created a warehouse");
    }
    w.put(
        "k.csv",
        format!("{HEADER}\nR1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    let out = w
        .cmd()
        .args(["rotate-key", "--dry-run"])
        .env("BANKPIPE_NEW_MASTER_KEY", new)
        .env("BANKPIPE_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("would re-wrap 1"), "{stdout}");
    assert!(!stderr.contains("re-wrapped"), "{stderr}");
    assert!(stderr.contains("nothing changed"), "{stderr}");
}

/// `reprocess --dry-run --json`: `before` is the catalog row as stored (counts, exact
/// amounts, profile, lake key, bytes), `after` carries the bytes too; `files --json`
/// carries every amount total; a 12-digit sha256 prefix selects the file; a corrupt
/// object leaves the after column at the catalog's values.
#[test]
fn reprocess_before_is_the_catalog_row_and_files_json_has_every_total() {
    let w = Workdir::new();
    let mut text = format!("{HEADER}\n");
    for i in 0..20 {
        let date = if i % 10 == 0 { "31/2/16" } else { "2/8/16" };
        text.push_str(&format!("Q{i},C1,10/1/94,F,PUNE,1.0,{date},143207,25.5\n"));
    }
    text.push_str("Q1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.5\n");
    w.put("q.csv", text);
    let (r, code) = w.run_json(&["--max-reject-share", "0.5"]);
    assert_eq!(code, 0, "{r}");
    let files: Value = serde_json::from_slice(&w.run(&["files", "--json"]).stdout).unwrap();
    let entry = &files[0];
    assert_eq!(entry["amount_read"], "535.50", "{entry}");
    assert_eq!(entry["amount_loaded"], "459.00", "{entry}");
    assert_eq!(entry["amount_rejected"], "51.00", "{entry}");
    assert_eq!(entry["amount_duplicate"], "25.50", "{entry}");
    let sha = entry["sha256"].as_str().unwrap().to_owned();

    let dry = w.run(&[
        "reprocess",
        &sha[..12],
        "--dry-run",
        "--json",
        "--max-reject-share",
        "0.5",
    ]);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let d: Value = serde_json::from_slice(&dry.stdout).unwrap();
    let before = &d["before"];
    for k in [
        "amount_read",
        "amount_loaded",
        "amount_rejected",
        "amount_duplicate",
        "profile",
        "lake_key",
        "bytes",
        "rows_read",
        "rows_rejected",
        "rows_duplicate",
    ] {
        assert_eq!(before[k], entry[k], "{k}: {before}");
    }
    assert!(d["after"]["bytes"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["after"]["bytes"], entry["bytes"]);

    // Too short a prefix is not a selector.
    let short = w.run(&["reprocess", &sha[..8], "--dry-run"]);
    assert_eq!(short.status.code(), Some(2));

    // A corrupt object: the after column shows the catalog's values, unchanged.
    let key = entry["lake_key"].as_str().unwrap();
    let obj = w.path().join("lake").join(key);
    let mut bytes = std::fs::read(&obj).unwrap();
    let last = bytes.len() - 3;
    bytes[last] = b'9';
    std::fs::write(&obj, bytes).unwrap();
    let bad = w.run(&["reprocess", "1", "--json"]);
    assert_eq!(bad.status.code(), Some(1));
    let b: Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert!(
        b["after"]["error"].as_str().unwrap().contains("is corrupt"),
        "{b}"
    );
    for k in ["amount_loaded", "rows_loaded", "rows_read", "status"] {
        assert_eq!(b["after"][k], b["before"][k], "{k}: {b}");
    }
}

/// Two files whose sha256s share a prefix cannot be told apart by it: exit 2 naming both.
#[test]
fn reprocess_refuses_an_ambiguous_sha256_prefix() {
    let w = Workdir::new();
    w.put(
        "a.csv",
        format!("{HEADER}\nA1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    w.put(
        "b.csv",
        format!("{HEADER}\nB1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    conn.execute_batch("UPDATE files SET sha256 = 'abcdef012345' || substr(sha256, 13)")
        .unwrap();
    let out = w.run(&["reprocess", "abcdef012345", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ambiguous") && err.contains("file 1") && err.contains("file 2"),
        "{err}"
    );
}

/// An empty `AWS_ALLOW_HTTP=` counts as unset (no "failed to parse" naming no variable),
/// and an `s3://` inbox that fails is called an inbox, not a lake.
#[test]
fn empty_aws_allow_http_is_unset_and_an_s3_inbox_is_called_an_inbox() {
    let w = Workdir::new();
    let out = w
        .cmd()
        .args(["run", "--inbox", "s3://nobkt/x/"])
        .env("AWS_ALLOW_HTTP", "")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("failed to parse"), "{text}");
    assert!(text.contains("inbox"), "{text}");
    assert!(!text.contains("lake s3://nobkt"), "{text}");
    assert!(!text.contains("lake unreachable at s3://nobkt"), "{text}");
}

/// An empty or header-only file fails the same way however often it is reprocessed:
/// its later copies say to fix the file, not to run `bankpipe reprocess`.
#[test]
fn an_empty_or_header_only_file_is_not_sent_to_reprocess() {
    let w = Workdir::new();
    w.put("empty.csv", "");
    w.put("header.csv", format!("{HEADER}\n"));
    let (r1, code) = w.run_json(&[]);
    assert_eq!(code, 1, "{r1}");
    for name in ["empty.csv", "header.csv"] {
        let e = file(&r1, name)["error"].as_str().unwrap().to_owned();
        assert!(!e.contains("reprocess"), "{e}");
    }
    w.put("empty-again.csv", "");
    w.put("header-again.csv", format!("{HEADER}\n"));
    let (r2, code) = w.run_json(&[]);
    assert_eq!(code, 1, "{r2}");
    for name in ["empty-again.csv", "header-again.csv"] {
        let f = file(&r2, name);
        assert_eq!(f["status"], "failed", "{f}");
        let e = f["error"].as_str().unwrap();
        assert!(!e.contains("bankpipe reprocess"), "{e}");
        assert!(e.contains("Fix the file"), "{e}");
    }
    let table = String::from_utf8(w.run(&["run"]).stdout).unwrap();
    assert!(!table.contains("bankpipe reprocess"), "{table}");
}

/// The file a run stopped on reports its amounts at its own scale (a KWD profile: 3
/// decimals), not at the default.
#[test]
fn the_file_a_run_stopped_on_reports_amounts_at_its_scale() {
    let w = Workdir::new();
    std::fs::write(
        w.path().join("bankpipe.toml"),
        r#"
[[profile]]
name = "kw"
currency = "KWD"
[profile.columns]
transaction_id = "Ref"
customer_id = "Client"
transaction_date = "Day"
transaction_time = "Time"
amount = "Amount"
[profile.formats]
transaction_date = "iso"
transaction_time = "iso"
"#,
    )
    .unwrap();
    assert!(w.run(&["migrate"]).status.success());
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON files
         BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END;",
    )
    .unwrap();
    drop(conn);
    w.put(
        "kw.csv",
        "Ref,Client,Day,Time,Amount\nK1,C1,2016-08-02,10:11:12,1.250\n",
    );
    let (report, code) = w.run_json(&[]);
    assert_eq!(code, 3, "{report}");
    let f = file(&report, "kw.csv");
    assert_eq!(f["status"], "failed", "{f}");
    assert_eq!(f["profile"], "kw", "{f}");
    assert_eq!(f["amount_read"], "0.000", "{f}");
    assert_eq!(f["amount_loaded"], "0.000", "{f}");
}

/// A run that stops part-way (here: the warehouse refuses the second file's claim, an
/// unexpected error, exit 3) still prints exactly one JSON object with `--json`: the
/// file it loaded before, `status` `failed` and the run-level `error`; the text summary
/// lists what was done before the error line.
#[test]
fn a_run_that_stops_part_way_reports_what_it_did() {
    let w = Workdir::new();
    let migrated = w.run(&["migrate"]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_b BEFORE INSERT ON files WHEN NEW.original_name = 'b.csv'
         BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END;",
    )
    .unwrap();
    drop(conn);
    w.put(
        "a.csv",
        format!("{HEADER}\nA1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    w.put(
        "b.csv",
        format!("{HEADER}\nB1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    let out = w.run(&["run", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {text}\n{stderr}"));
    assert_eq!(report["status"], "failed", "{report}");
    let error = report["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{report}"));
    assert!(error.contains("refused by a test trigger"), "{error}");
    assert!(
        stderr.contains(error),
        "the same message ends stderr: {stderr}"
    );
    assert_eq!(file(&report, "a.csv")["status"], "loaded", "{report}");
    assert_eq!(file(&report, "a.csv")["rows_loaded"], 1, "{report}");
    // The file it stopped on: what was known of it (digest, size, profile), nothing
    // counted, amounts at the file's scale.
    let b = file(&report, "b.csv");
    assert_eq!(b["status"], "failed", "{report}");
    assert_eq!(b["error"], report["error"], "{b}");
    let bytes = std::fs::read(w.inbox().join("b.csv")).unwrap();
    assert_eq!(b["bytes"], bytes.len(), "{b}");
    let sha = b["sha256"].as_str().unwrap_or_else(|| panic!("{b}"));
    assert_eq!(sha.len(), 64, "{b}");
    assert_ne!(Some(sha), file(&report, "a.csv")["sha256"].as_str(), "{b}");
    assert_eq!(b["profile"], "kaggle-bank", "{b}");
    assert_eq!(b["rows_read"], 0, "{b}");
    for k in [
        "amount_read",
        "amount_loaded",
        "amount_rejected",
        "amount_duplicate",
    ] {
        assert_eq!(b[k], "0.00", "{k}: {b}");
    }
    assert!(report["run_id"].is_string(), "{report}");

    // Text mode: the summary of what was done, then the error line on stderr.
    let w2 = Workdir::new();
    assert!(w2.run(&["migrate"]).status.success());
    let conn = rusqlite::Connection::open(w2.db()).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_b BEFORE INSERT ON files WHEN NEW.original_name = 'b.csv'
         BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END;",
    )
    .unwrap();
    drop(conn);
    w2.put(
        "a.csv",
        format!("{HEADER}\nA1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    w2.put(
        "b.csv",
        format!("{HEADER}\nB1,C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
    );
    let out = w2.run(&["run"]);
    assert_eq!(out.status.code(), Some(3));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("a.csv") && l.contains("loaded")),
        "{table}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bankpipe: error: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A run that cannot start prints one JSON object too.
    let out = w.run(&["run", "--json", "--inbox", "/nonexistent-bankpipe-inbox"]);
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["status"], "failed");
    assert!(report["run_id"].is_null());
    assert!(report["error"].as_str().unwrap().contains("not a folder"));
}

/// `verify`'s table keeps its columns aligned whatever the width of the file ids (ids
/// 1 to 12 here), and with a `corrupt` line among them.
#[test]
fn verify_aligns_its_columns_for_ids_of_any_width() {
    let w = Workdir::new();
    for i in 1..=12 {
        w.put(
            &format!("f{i:02}{}.csv", "x".repeat(i % 3)),
            format!("{HEADER}\nT{i},C1,10/1/94,F,PUNE,1.0,2/8/16,143207,25.0\n"),
        );
    }
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    let key = file(&r, "f11xx.csv")["lake_key"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(w.path().join("lake").join(&key), b"tampered").unwrap();
    let out = w.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("  raw/")).collect();
    assert_eq!(rows.len(), 12, "{text}");
    // The name column and the lake key column start at the same character on every row.
    let at = |line: &str, word: &str| line[..line.find(word).unwrap()].chars().count();
    for row in &rows {
        assert_eq!(at(row, " f"), at(rows[0], " f"), "{text}");
        assert_eq!(at(row, "raw/"), at(rows[0], "raw/"), "{text}");
    }
    assert!(
        rows.iter()
            .any(|r| r.starts_with("corrupt") && r.contains("f11xx.csv")),
        "{text}"
    );
}

/// `-q` leaves warnings and errors only: `generate` no longer says what it wrote.
#[test]
fn generate_quiet_prints_nothing_on_stderr() {
    let w = Workdir::new();
    let out_path = w.inbox().join("q.csv").display().to_string();
    let loud = w.run(&["generate", "--rows", "10", "--out", &out_path]);
    assert!(loud.status.success());
    assert!(
        String::from_utf8_lossy(&loud.stderr).contains("wrote 10 rows"),
        "{loud:?}"
    );
    for args in [
        &["generate", "-q", "--rows", "10", "--out", &out_path][..],
        &["-q", "generate", "--rows", "10", "--out", &out_path],
    ] {
        let quiet = w.run(args);
        assert!(quiet.status.success(), "{quiet:?}");
        assert_eq!(String::from_utf8_lossy(&quiet.stderr), "", "{args:?}");
    }
}

/// A file failed for its reject share is read to the end: it keeps `rows_read`, its
/// rejects and the duplicates it found, loads nothing, and the rest are the valid new
/// rows its failure withheld (read = loaded + rejected + duplicate + withheld), in the
/// report and in the catalog alike.
#[test]
fn a_failed_file_keeps_read_rejected_and_duplicate_and_withholds_the_rest() {
    let w = Workdir::new();
    let row =
        |id: &str, amount: &str| format!("{id},C1,10/1/94,F,PUNE,1.0,2/8/16,143207,{amount}\n");
    w.put("a.csv", format!("{HEADER}\n{}", row("A1", "25.00")));
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    w.put(
        "b.csv",
        format!(
            "{HEADER}\n{}{}{}{}{}",
            row("A1", "25.00"),
            row("B1", "-1.00"),
            row("B2", "-2.00"),
            row("B3", "7.00"),
            row("B4", "8.50")
        ),
    );
    let (r, code) = w.run_json(&[]);
    assert_eq!(code, 1, "{r}");
    let f = file(&r, "b.csv");
    assert_eq!(f["status"], "failed", "{f}");
    let files: Value = serde_json::from_slice(&w.run(&["files", "--json"]).stdout).unwrap();
    let entry = files
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["original_name"] == "b.csv")
        .unwrap();
    for (what, v) in [("report", f), ("catalog", entry)] {
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{what} {k}: {v}"));
        assert_eq!(
            (
                n("rows_read"),
                n("rows_loaded"),
                n("rows_rejected"),
                n("rows_duplicate")
            ),
            (5, 0, 2, 1),
            "{what}: {v}"
        );
        // Withheld: B3 and B4, 15.50.
        assert_eq!(
            [
                &v["amount_read"],
                &v["amount_loaded"],
                &v["amount_rejected"],
                &v["amount_duplicate"]
            ],
            ["37.50", "0.00", "-3.00", "25.00"],
            "{what}: {v}"
        );
    }
    assert_eq!(w.query_i64("SELECT COUNT(*) FROM transactions"), 1);
    assert_eq!(
        w.query_i64("SELECT COUNT(*) FROM rejected_rows r JOIN files f USING (file_id) WHERE f.original_name = 'b.csv'"),
        2
    );
}
