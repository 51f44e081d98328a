//! The bad-input and security campaign (issue #13, "Bad input" and "Security"): the real
//! `bankpipe` binary fed what a careless or hostile sender can put in an inbox, on SQLite
//! and, where the warehouse matters, on a throwaway PostgreSQL cluster.
//!
//! Every case checks a clear outcome per file (failed, with the reason) or per row
//! (rejected, with the rule), no panic, the invariant "every row read ends loaded,
//! rejected with a reason, or counted as a duplicate" through `bankpipe files --json` and
//! the warehouse, and measures the peak memory (RSS) of the bankpipe process with GNU
//! `time` (`/usr/bin/time`, Debian package `time`). Each case prints a `FIGURE` line
//! (`cargo test --test campaign_input -- --nocapture | grep FIGURE`); the figures are in
//! docs/RELIABILITY.md. Memory is asserted, generously, only where a regression would be
//! unbounded (bombs, a 100 MB line, a gigabyte of newlines); time never is.
//!
//! The quick part runs in CI (about two minutes in a debug build). The long part is
//! `#[ignore]`d: `cargo test --release --test campaign_input -- --ignored --nocapture`.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;
#[path = "support/pg.rs"]
mod pg;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const HEADER: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)";

/// A valid Kaggle-layout row with this id.
fn row(id: &str) -> String {
    format!("{id},C1,10/1/94,F,DELHI,100.00,2/8/16,143207,25.00")
}

/// A CSV file: the header, then `rows`.
fn csv(rows: &[String]) -> Vec<u8> {
    let mut out = format!("{HEADER}\n");
    for r in rows {
        out.push_str(r);
        out.push('\n');
    }
    out.into_bytes()
}

/// GNU time, which reports a process's peak RSS; panics saying how to install it.
fn gnu_time() -> PathBuf {
    let p = PathBuf::from("/usr/bin/time");
    assert!(
        p.exists(),
        "/usr/bin/time is not installed: this test measures peak memory with it. Install the \
         Debian package `time` (apt-get install time); `.ci/run` does."
    );
    p
}

/// What one bankpipe process did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    /// Peak resident set size, MiB.
    rss_mib: f64,
    secs: f64,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// No panic, no internal error, whatever the exit status.
    fn no_panic(&self) {
        for bad in ["panicked", "RUST_BACKTRACE", "internal error"] {
            assert!(
                !self.stderr.contains(bad),
                "{bad} on stderr:\n{}",
                self.stderr
            );
        }
    }
}

/// A data folder with an inbox, on SQLite or on a PostgreSQL database.
struct Bench {
    dir: tempfile::TempDir,
    pg: Option<(&'static pg::PgCluster, pg::TestDb)>,
}

impl Bench {
    fn sqlite() -> Bench {
        Bench::with(None)
    }

    fn postgres() -> Bench {
        let cluster = pg::PgCluster::shared();
        let db = cluster.database();
        Bench::with(Some((cluster, db)))
    }

    fn with(pg: Option<(&'static pg::PgCluster, pg::TestDb)>) -> Bench {
        let b = Bench {
            dir: tempfile::tempdir().unwrap(),
            pg,
        };
        std::fs::create_dir_all(b.inbox()).unwrap();
        b
    }

    fn backend(&self) -> &'static str {
        if self.pg.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn inbox(&self) -> PathBuf {
        self.path().join("inbox")
    }

    fn put(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.inbox().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// `bankpipe <args>` under GNU time.
    fn run(&self, args: &[&str]) -> Run {
        let stats = self.path().join(".time");
        let mut c = Command::new(gnu_time());
        c.arg("-f")
            .arg("%M %e")
            .arg("-o")
            .arg(&stats)
            .arg(env!("CARGO_BIN_EXE_bankpipe"))
            .arg("--data-dir")
            .arg(self.path())
            .args(args)
            .current_dir(self.path())
            .env("BANKPIPE_LOG", "warn")
            .stdin(Stdio::null());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BANKPIPE_") && k != "BANKPIPE_LOG" {
                c.env_remove(k);
            }
        }
        if let Some((_, db)) = &self.pg {
            c.env("BANKPIPE_WAREHOUSE_URL", &db.url);
        }
        let out = c.output().unwrap();
        let text = std::fs::read_to_string(&stats).unwrap_or_default();
        let last = text.lines().last().unwrap_or_default().to_owned();
        let mut parts = last.split_whitespace();
        let rss_kib: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let secs: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            rss_mib: rss_kib / 1024.0,
            secs,
        };
        run.no_panic();
        run
    }

    /// `bankpipe run --json <extra>`: the report, with the process's figures.
    fn run_json(&self, extra: &[&str]) -> (Value, Run) {
        let mut args = vec!["run", "--json"];
        args.extend_from_slice(extra);
        let run = self.run(&args);
        (run.json(), run)
    }

    /// `bankpipe files --json`.
    fn files(&self) -> Vec<Value> {
        let r = self.run(&["files", "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.json().as_array().unwrap().clone()
    }

    /// Rejected rows per file id, and how many of them have no rule.
    fn rejected_per_file(&self) -> BTreeMap<i64, (u64, u64)> {
        let sql = "SELECT file_id, COUNT(*), SUM(CASE WHEN rule IS NULL OR rule = '' OR detail IS NULL THEN 1 ELSE 0 END) FROM rejected_rows GROUP BY file_id";
        match &self.pg {
            None => {
                let conn = rusqlite::Connection::open(self.path().join("warehouse.db")).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        (r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64),
                    ))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            }
            Some((cluster, db)) => cluster
                .psql(&db.name, sql)
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let v: Vec<&str> = l.split('|').collect();
                    (
                        v[0].parse().unwrap(),
                        (v[1].parse().unwrap(), v[2].parse().unwrap()),
                    )
                })
                .collect(),
        }
    }

    /// Rows loaded per file id, counted in `transactions`.
    fn loaded_per_file(&self) -> BTreeMap<i64, u64> {
        let sql = "SELECT file_id, COUNT(*) FROM transactions GROUP BY file_id";
        match &self.pg {
            None => {
                let conn = rusqlite::Connection::open(self.path().join("warehouse.db")).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                stmt.query_map([], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            }
            Some((cluster, db)) => cluster
                .psql(&db.name, sql)
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (a, b) = l.split_once('|').unwrap();
                    (a.parse().unwrap(), b.parse().unwrap())
                })
                .collect(),
        }
    }

    /// The invariant, for every file of the catalog: a loaded file's rows read are its
    /// rows loaded + rejected + duplicate (amounts too), each rejected row is stored with
    /// a rule and a detail, each loaded row is in `transactions`; a failed file loads
    /// nothing and says why.
    fn check_invariant(&self) {
        let rejected = self.rejected_per_file();
        let loaded = self.loaded_per_file();
        for f in self.files() {
            let id = f["file_id"].as_i64().unwrap();
            let n = |k: &str| f[k].as_u64().unwrap_or(0);
            let (stored_rejects, without_rule) = rejected.get(&id).copied().unwrap_or((0, 0));
            assert_eq!(without_rule, 0, "rejected rows without a rule: {f}");
            assert_eq!(
                stored_rejects,
                n("rows_rejected"),
                "rejected rows stored: {f}"
            );
            match f["status"].as_str().unwrap() {
                "loaded" => {
                    assert_eq!(
                        n("rows_read"),
                        n("rows_loaded") + n("rows_rejected") + n("rows_duplicate"),
                        "{f}"
                    );
                    assert_eq!(
                        minor(&f["amount_read"]),
                        minor(&f["amount_loaded"])
                            + minor(&f["amount_rejected"])
                            + minor(&f["amount_duplicate"]),
                        "{f}"
                    );
                    assert_eq!(
                        loaded.get(&id).copied().unwrap_or(0),
                        n("rows_loaded"),
                        "{f}"
                    );
                }
                "failed" => {
                    assert_eq!(n("rows_loaded"), 0, "{f}");
                    assert!(
                        n("rows_read") >= n("rows_rejected") + n("rows_duplicate"),
                        "{f}"
                    );
                    assert_eq!(loaded.get(&id).copied().unwrap_or(0), 0, "{f}");
                    assert!(
                        f["error"].as_str().is_some_and(|e| !e.is_empty()),
                        "a failed file without a reason: {f}"
                    );
                }
                other => panic!("file left {other}: {f}"),
            }
        }
    }
}

/// Exact minor units (scale 2) of a decimal string; 0 for null.
fn minor(v: &Value) -> i128 {
    let Some(s) = v.as_str() else { return 0 };
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    i.parse::<i128>().unwrap() * 100 + format!("{f:0<2}").parse::<i128>().unwrap()
}

fn file<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no {name:?} in {report}"))
}

/// Prints the figure of a case (collected into docs/RELIABILITY.md).
fn figure(bench: &Bench, case: &str, run: &Run) {
    eprintln!(
        "FIGURE {:<8} {case}: peak RSS {:.0} MiB, {:.2} s (exit {})",
        bench.backend(),
        run.rss_mib,
        run.secs,
        run.code
    );
}

/// The error of a failed file, asserting it failed.
fn failed_with<'a>(report: &'a Value, name: &str) -> &'a str {
    let f = file(report, name);
    assert_eq!(f["status"], "failed", "{f}");
    assert_eq!(f["rows_loaded"], 0, "{f}");
    f["error"].as_str().unwrap()
}

// ---------------------------------------------------------------------------------------
// Bombs
// ---------------------------------------------------------------------------------------

/// A gzip file of `members` members, each `block` bytes of `fill` compressed, after a
/// first member holding a header and one row: it expands to `members × block` bytes.
fn gzip_bomb(fill: u8, block: usize, members: usize) -> Vec<u8> {
    let mut head = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    head.write_all(&csv(&[row("B1")])).unwrap();
    let mut out = head.finish().unwrap();
    let mut one = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    one.write_all(&vec![fill; block]).unwrap();
    let one = one.finish().unwrap();
    for _ in 0..members {
        out.extend_from_slice(&one);
    }
    out
}

/// The same with zstd frames.
fn zstd_bomb(fill: u8, block: usize, frames: usize) -> Vec<u8> {
    let mut out = zstd::encode_all(&csv(&[row("Z1")])[..], 1).unwrap();
    let one = zstd::encode_all(&vec![fill; block][..], 19).unwrap();
    for _ in 0..frames {
        out.extend_from_slice(&one);
    }
    out
}

/// A gzip bomb (newlines: 52 MB expanding to 50 GiB) and a zstd bomb (NUL bytes, one
/// endless line: 2 MB expanding to 50 GiB) fail at `--max-decompressed-bytes`, naming
/// it, loading nothing, in bounded memory. The limit is low here to keep a debug build
/// quick (gzip decodes at a few MB/s unoptimised); the ignored
/// `bombs_stop_at_the_default_limit` runs them to the default 16 GiB.
#[test]
fn compression_bombs_fail_at_the_decompressed_size_limit() {
    let b = Bench::sqlite();
    let gz = gzip_bomb(b'\n', 1 << 20, 50 * 1024);
    let zs = zstd_bomb(0, 1 << 20, 50 * 1024);
    eprintln!(
        "bomb files: gzip {} bytes, zstd {} bytes, each expanding to 50 GiB",
        gz.len(),
        zs.len()
    );
    b.put("bomb.csv.gz", &gz);
    b.put("bomb.csv.zst", &zs);
    for (name, limit) in [("bomb.csv.gz", "64MiB"), ("bomb.csv.zst", "1GiB")] {
        let other = if name.ends_with("gz") {
            "bomb.csv.zst"
        } else {
            "bomb.csv.gz"
        };
        std::fs::rename(b.inbox().join(other), b.path().join(other)).unwrap();
        let (report, run) = b.run_json(&["--max-decompressed-bytes", limit]);
        std::fs::rename(b.path().join(other), b.inbox().join(other)).unwrap();
        figure(&b, &format!("{name} (50 GiB) cut at {limit}"), &run);
        assert_eq!(run.code, 1, "{report}");
        let error = failed_with(&report, name);
        let kind = if name.ends_with("gz") { "gzip" } else { "zstd" };
        let shown = if limit == "64MiB" { "64 MiB" } else { "1 GiB" };
        assert!(
            error.contains(&format!("{kind} content decompresses to more than {shown}"))
                && error.contains("max_decompressed_bytes")
                && error.contains("BANKPIPE_MAX_DECOMPRESSED_BYTES"),
            "{error}"
        );
        assert!(run.rss_mib < 300.0, "{name}: peak RSS {} MiB", run.rss_mib);
        // The raw (compressed) copy is kept, as for every failed file.
        let key = file(&report, name)["lake_key"].as_str().unwrap().to_owned();
        assert!(b.path().join("lake").join(&key).exists(), "{key}");
        b.check_invariant();
    }
    // The limit comes from the environment and the config file too; a bad one is exit 2.
    let r = b.run(&["run", "--max-decompressed-bytes", "lots"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("--max-decompressed-bytes"),
        "{}",
        r.stderr
    );
}

/// The same bombs at the default limit (16 GiB), with `--release`: how long a bomb
/// runs before it is cut.
#[test]
#[ignore = "long: decompresses 2 × 16 GiB; run with --release"]
fn bombs_stop_at_the_default_limit() {
    let b = Bench::sqlite();
    b.put("bomb.csv.gz", gzip_bomb(b'\n', 1 << 20, 50 * 1024));
    b.put("bomb.csv.zst", zstd_bomb(0, 1 << 20, 50 * 1024));
    let (report, run) = b.run_json(&[]);
    figure(&b, "two 50 GiB bombs cut at the default 16 GiB", &run);
    for name in ["bomb.csv.gz", "bomb.csv.zst"] {
        assert!(
            failed_with(&report, name).contains("more than 16 GiB"),
            "{report}"
        );
    }
    assert!(run.rss_mib < 300.0, "peak RSS {} MiB", run.rss_mib);
}

// ---------------------------------------------------------------------------------------
// Lines, bytes and encodings
// ---------------------------------------------------------------------------------------

/// One 100 MB line between valid rows: rejected `row_too_long` (its raw text kept to
/// 64 KiB), the rows around it loaded; memory stays bounded. On both warehouses.
fn a_100_mb_line(b: &Bench) {
    let mut bytes = csv(&[row("L1")]);
    bytes.extend(std::iter::repeat_n(b'x', 100_000_000));
    bytes.extend_from_slice(format!("\n{}\n", row("L2")).as_bytes());
    b.put("long.csv", bytes);
    let (report, run) = b.run_json(&["--max-reject-share", "1"]);
    figure(b, "100 MB single line", &run);
    assert_eq!(run.code, 0, "{report}");
    let f = file(&report, "long.csv");
    assert_eq!(
        (
            &f["rows_read"],
            &f["rows_loaded"],
            &f["rejects"]["row_too_long"]
        ),
        (&Value::from(3), &Value::from(2), &Value::from(1)),
        "{f}"
    );
    assert!(run.rss_mib < 300.0, "peak RSS {} MiB", run.rss_mib);
    let rejects = b.run(&["rejects", "--json"]);
    let raw_len = rejects
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["rule"] == "row_too_long")
        .unwrap()["raw"]
        .as_str()
        .unwrap()
        .len();
    assert_eq!(raw_len, 64 * 1024, "raw text kept of the long line");
    b.check_invariant();
}

#[test]
fn a_100_mb_line_on_sqlite() {
    a_100_mb_line(&Bench::sqlite());
}

#[test]
fn a_100_mb_line_on_postgres() {
    a_100_mb_line(&Bench::postgres());
}

/// NUL bytes: in a CSV row (raw byte), in a JSON value (`\u0000`) and in a header. A row
/// is rejected `invalid_encoding`, a header fails its file; on PostgreSQL, whose text
/// cannot hold NUL, this once stopped the whole run (exit 3, `22021`) at the COPY, and
/// at recording the failed header. Invalid UTF-8 in a row and a header likewise.
fn nul_bytes_and_invalid_utf8(b: &Bench) {
    let mut nul_row = csv(&[row("N1")]);
    nul_row.extend_from_slice(b"N2\0,C1,10/1/94,F,DEL\0HI,100.00,2/8/16,143207,25.00\n");
    nul_row.extend_from_slice(format!("{}\n", row("N3")).as_bytes());
    b.put("nul-row.csv", nul_row);
    b.put(
        "nul-value.ndjson",
        concat!(
            r#"{"TransactionID":"J1","CustomerID":"C1","TransactionDate":"2/8/16","TransactionTime":"143207","TransactionAmount (INR)":"5","CustLocation":"A\u0000B"}"#,
            "\n",
            r#"{"TransactionID":"J2","CustomerID":"C1","TransactionDate":"2/8/16","TransactionTime":"143207","TransactionAmount (INR)":"5","CustLocation":"AB"}"#,
            "\n"
        ),
    );
    let mut nul_header = HEADER
        .replacen("CustomerID", "Customer\0ID", 1)
        .into_bytes();
    nul_header.extend_from_slice(format!("\n{}\n", row("H1")).as_bytes());
    b.put("nul-header.csv", nul_header);
    let mut latin_row = csv(&[row("U1")]);
    latin_row.extend_from_slice(b"U2,C1,10/1/94,F,Z\xfcRICH,100.00,2/8/16,143207,25.00\n");
    b.put("latin1-row.csv", latin_row);
    let mut raw_header = HEADER.replace("(INR)", "(X)").into_bytes();
    let at = raw_header.iter().position(|c| *c == b'X').unwrap();
    raw_header[at] = 0xE9; // é in Latin-1
    raw_header.extend_from_slice(format!("\n{}\n", row("V1")).as_bytes());
    b.put("latin1-header.csv", raw_header);
    let mut utf16 = vec![0xFF, 0xFE];
    for u in format!("{HEADER}\n{}\n", row("W1")).encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    b.put("utf16.csv", utf16);

    let (report, run) = b.run_json(&["--max-reject-share", "1"]);
    figure(b, "NUL bytes, invalid UTF-8, UTF-16 (6 files)", &run);
    assert_eq!(run.code, 1, "a header failed: {report}");
    assert!(
        report["error"].is_null(),
        "the run went to the end: {report}"
    );
    let f = file(&report, "nul-row.csv");
    assert_eq!(
        (&f["status"], &f["rows_loaded"]),
        (&"loaded".into(), &2.into()),
        "{f}"
    );
    assert_eq!(f["rejects"]["invalid_encoding"], 1, "{f}");
    let f = file(&report, "nul-value.ndjson");
    assert_eq!(
        (&f["status"], &f["rows_loaded"]),
        (&"loaded".into(), &1.into()),
        "{f}"
    );
    assert_eq!(f["rejects"]["invalid_encoding"], 1, "{f}");
    let e = failed_with(&report, "nul-header.csv");
    assert_eq!(
        e,
        "header unreadable: holds a NUL byte (0x00) at position 23: not a text header (a binary file?)"
    );
    let f = file(&report, "latin1-row.csv");
    assert_eq!(f["rejects"]["invalid_encoding"], 1, "{f}");
    let e = failed_with(&report, "latin1-header.csv");
    assert_eq!(
        e,
        "header unreadable: not valid UTF-8: byte 0xE9 at position 132 (a Latin-1 or \
         Windows-1252 file?); save the file as UTF-8"
    );
    let e = failed_with(&report, "utf16.csv");
    assert!(e.contains("looks like UTF-16"), "{e}");
    // The quarantine keeps the rows' text (NUL shown as U+FFFD on PostgreSQL).
    let rejects = b.run(&["rejects", "--json"]);
    let details: Vec<Value> = rejects
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        details
            .iter()
            .any(|r| r["detail"] == "holds a NUL byte (0x00) at position 3"
                && r["raw"].as_str().unwrap().starts_with("N2")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|r| r["detail"]
            .as_str()
            .unwrap()
            .contains("\"CustLocation\" holds a NUL character")),
        "{details:?}"
    );
    b.check_invariant();
}

#[test]
fn nul_bytes_and_invalid_utf8_on_sqlite() {
    nul_bytes_and_invalid_utf8(&Bench::sqlite());
}

#[test]
fn nul_bytes_and_invalid_utf8_on_postgres() {
    nul_bytes_and_invalid_utf8(&Bench::postgres());
}

/// A header naming a column twice: the file fails when the profile reads that column
/// (which copy is meant would be a guess); duplicates of columns it does not read do
/// not matter.
#[test]
fn a_header_with_duplicate_column_names() {
    let b = Bench::sqlite();
    let read_twice = HEADER.replace("CustGender", "TransactionID");
    b.put("read-twice.csv", format!("{read_twice}\n{}\n", row("D1")));
    let unread_twice = format!("{HEADER},Note,note");
    b.put(
        "unread-twice.csv",
        format!("{unread_twice}\n{},a,b\n", row("D2")),
    );
    let (report, run) = b.run_json(&[]);
    figure(&b, "duplicate column names", &run);
    let e = failed_with(&report, "read-twice.csv");
    assert!(
        e.contains("\"TransactionID\" appears 2 times in the header (columns 1 and 4)"),
        "{e}"
    );
    assert_eq!(
        file(&report, "unread-twice.csv")["status"],
        "loaded",
        "{report}"
    );
    b.check_invariant();
}

/// JSON nested 100,000 deep: as a record (longer than 64 KiB: `row_too_long`), as a
/// value 20,000 deep of a key no profile reads (skipped without recursion: the row
/// loads, as any unused key's value does), as a JSON array's first element (the file
/// fails: no header to read). No panic, no stack overflow.
#[test]
fn json_nested_100000_deep() {
    let b = Bench::sqlite();
    let ok = r#"{"TransactionID":"K1","CustomerID":"C1","TransactionDate":"2/8/16","TransactionTime":"143207","TransactionAmount (INR)":"5"}"#;
    let deep_record = format!(
        "{}{}",
        "{\"a\":".repeat(100_000),
        "1".to_owned() + &"}".repeat(100_000)
    );
    let deep_value = format!(
        r#"{{"TransactionID":"K2","CustomerID":"C1","TransactionDate":"2/8/16","TransactionTime":"143207","TransactionAmount (INR)":"5","x":{}1{}}}"#,
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    b.put(
        "deep.ndjson",
        format!("{ok}\n{deep_record}\n{deep_value}\n"),
    );
    b.put(
        "deep-array.json",
        format!("{}{}", "[".repeat(100_001), "]".repeat(100_001)),
    );
    let (report, run) = b.run_json(&["--max-reject-share", "1"]);
    figure(&b, "JSON nested 100,000 deep", &run);
    let f = file(&report, "deep.ndjson");
    assert_eq!(f["rows_loaded"], 2, "{f}");
    assert_eq!(f["rejects"], serde_json::json!({"row_too_long": 1}), "{f}");
    let e = failed_with(&report, "deep-array.json");
    assert_eq!(e, "header unreadable: line 1 is longer than 64 KiB");
    b.check_invariant();
}

/// A JSON array of a million tiny objects after one valid one: each `{}` is a row
/// rejected `missing_transaction_id` (the file fails on its reject share, its rejects
/// quarantined), in bounded memory. On both warehouses.
fn a_million_tiny_json_objects(b: &Bench) {
    let mut text = String::from(
        r#"[{"TransactionID":"M1","CustomerID":"C1","TransactionDate":"2/8/16","TransactionTime":"143207","TransactionAmount (INR)":"5"}"#,
    );
    text.push_str(&",{}".repeat(1_000_000));
    text.push(']');
    b.put("million.json", text);
    let (report, run) = b.run_json(&[]);
    figure(b, "JSON array of 1,000,000 tiny objects", &run);
    let e = failed_with(&report, "million.json");
    assert!(e.contains("reject"), "{e}");
    let f = file(&report, "million.json");
    assert!(run.rss_mib < 300.0, "peak RSS {} MiB", run.rss_mib);
    assert_eq!(f["rows_read"], 1_000_001, "{f}");
    assert_eq!(f["rejects"]["missing_transaction_id"], 1_000_000, "{f}");
    b.check_invariant();
}

#[test]
fn a_million_tiny_json_objects_on_sqlite() {
    a_million_tiny_json_objects(&Bench::sqlite());
}

#[test]
fn a_million_tiny_json_objects_on_postgres() {
    a_million_tiny_json_objects(&Bench::postgres());
}

/// Files of nothing but newlines: 16 MB as a plain file ("file is empty"), and 1 GiB
/// inside a small zstd file, which the splitter once held whole in memory waiting for a
/// record (now: bounded, and skipped a word at a time).
#[test]
fn files_of_only_newlines() {
    let b = Bench::sqlite();
    b.put("newlines.csv", vec![b'\n'; 16 << 20]);
    b.put(
        "gigabyte-of-newlines.csv.zst",
        zstd::encode_all(&vec![b'\n'; 1 << 20][..], 19)
            .unwrap()
            .repeat(1024),
    );
    let (report, run) = b.run_json(&[]);
    figure(&b, "16 MB of newlines + 1 GiB of newlines (zstd)", &run);
    assert_eq!(failed_with(&report, "newlines.csv"), "file is empty");
    assert_eq!(
        failed_with(&report, "gigabyte-of-newlines.csv.zst"),
        "file is empty"
    );
    assert!(run.rss_mib < 300.0, "peak RSS {} MiB", run.rss_mib);
    b.check_invariant();
}

/// An empty `.gz` (0 bytes), a gzip of nothing, a truncated `.gz` and a truncated `.zst`
/// (their first rows complete): each fails with its reason, nothing of it loaded.
#[test]
fn empty_and_truncated_compressed_files() {
    let b = Bench::sqlite();
    let rows: Vec<String> = (0..20_000).map(|i| row(&format!("G{i}"))).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&csv(&rows)).unwrap();
    let gz = gz.finish().unwrap();
    let zs = zstd::encode_all(&csv(&rows)[..], 3).unwrap();
    let mut nothing = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    nothing.write_all(b"").unwrap();
    b.put("empty.csv.gz", b"");
    b.put("nothing.csv.gz", nothing.finish().unwrap());
    b.put("truncated.csv.gz", &gz[..gz.len() * 2 / 3]);
    b.put("truncated.csv.zst", &zs[..zs.len() * 2 / 3]);
    let (report, run) = b.run_json(&[]);
    figure(&b, "empty and truncated .gz/.zst", &run);
    assert_eq!(failed_with(&report, "empty.csv.gz"), "file is empty");
    assert_eq!(failed_with(&report, "nothing.csv.gz"), "file is empty");
    for (name, kind) in [("truncated.csv.gz", "gzip"), ("truncated.csv.zst", "zstd")] {
        let e = failed_with(&report, name);
        assert!(
            e.contains(&format!("the {kind} data is truncated or damaged")),
            "{name}: {e}"
        );
    }
    b.check_invariant();
}

/// A quote that never closes: in one row of many (only that line rejected), and as a
/// file's last line.
#[test]
fn a_csv_whose_quoting_never_closes() {
    let b = Bench::sqlite();
    let mut rows: Vec<String> = vec!["Q0,C1,10/1/94,F,\"DELHI,100.00,2/8/16,143207,25.00".into()];
    rows.extend((1..=5000).map(|i| row(&format!("Q{i}"))));
    b.put("open-quote.csv", csv(&rows));
    let mut tail = csv(&[row("E1"), row("E2")]);
    tail.extend_from_slice(b"E3,C1,10/1/94,F,\"DELHI");
    b.put("open-quote-at-end.csv", tail);
    let (report, run) = b.run_json(&["--max-reject-share", "1"]);
    figure(&b, "CSV quoting never closes", &run);
    let f = file(&report, "open-quote.csv");
    assert_eq!(
        (&f["rows_loaded"], &f["rejects"]["malformed_row"]),
        (&5000.into(), &1.into()),
        "{f}"
    );
    let f = file(&report, "open-quote-at-end.csv");
    assert_eq!(
        (&f["rows_loaded"], &f["rejects"]["malformed_row"]),
        (&2.into(), &1.into()),
        "{f}"
    );
    b.check_invariant();
}

/// A file of random bytes named `.csv`: fails, naming why.
#[test]
fn random_bytes() {
    let b = Bench::sqlite();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..4_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    b.put("noise.csv", noise);
    let (report, run) = b.run_json(&[]);
    figure(&b, "4 MB of random bytes", &run);
    let e = failed_with(&report, "noise.csv");
    assert!(e.starts_with("header unreadable"), "{e}");
    b.check_invariant();
}

// ---------------------------------------------------------------------------------------
// Inbox names and links
// ---------------------------------------------------------------------------------------

/// A symbolic link in the inbox to a file outside it (a key file, say) is not read: the
/// file is reported failed with the reason, nothing is claimed or landed, and its bytes
/// are nowhere in the lake or the warehouse. A link to another file of the inbox is
/// read (as a copy of it). A dangling link is not a file.
#[test]
fn a_symlink_pointing_outside_the_inbox_is_not_read() {
    let b = Bench::sqlite();
    let secret = b.path().join("outside-secret.csv");
    std::fs::write(&secret, csv(&[row("SECRET-ROW-7f3a")])).unwrap();
    std::os::unix::fs::symlink(&secret, b.inbox().join("a-link-out.csv")).unwrap();
    std::os::unix::fs::symlink(
        "../outside-secret.csv",
        b.inbox().join("b-relative-out.csv"),
    )
    .unwrap();
    b.put("c-real.csv", csv(&[row("R1")]));
    std::os::unix::fs::symlink("c-real.csv", b.inbox().join("d-link-in.csv")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/x.csv", b.inbox().join("e-dangling.csv")).unwrap();
    let (report, run) = b.run_json(&[]);
    figure(&b, "symlinks in the inbox", &run);
    assert_eq!(run.code, 1, "{report}");
    for name in ["a-link-out.csv", "b-relative-out.csv"] {
        let f = file(&report, name);
        assert!(
            f["sha256"].is_null() && f["file_id"].is_null(),
            "not read: {f}"
        );
        let e = failed_with(&report, name);
        assert!(
            e.contains("symbolic link to a file outside the inbox folder: not read"),
            "{e}"
        );
    }
    assert_eq!(file(&report, "c-real.csv")["status"], "loaded");
    assert_eq!(file(&report, "d-link-in.csv")["status"], "duplicate_file");
    assert_eq!(report["files"].as_array().unwrap().len(), 4, "{report}");
    // The secret's bytes are nowhere bankpipe writes.
    for path in walk(b.path()) {
        if path == secret {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            !contains(&bytes, b"SECRET-ROW-7f3a"),
            "the linked file's content is in {}",
            path.display()
        );
    }
    b.check_invariant();
}

/// Every regular file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            out.extend(walk(&p));
        } else if t.is_file() {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Names with a newline, quotes, HTML, an escape sequence and non-ASCII letters: loaded
/// under their exact names (JSON keeps them), and text outputs (logs, tables) escape
/// control characters so that a name cannot forge a log line. On both warehouses.
fn odd_file_names(b: &Bench) {
    let names = [
        "a\n2026-01-01T00:00:00Z ERROR forged.csv",
        "q\"uo'te.csv",
        "<script>alert(1)<\\script>.csv",
        "<img src=x onerror=alert(1)>.csv",
        "e\u{1b}[2J\u{1b}[31mred.csv",
        "zürich-€-日本.csv",
    ];
    for (i, name) in names.iter().enumerate() {
        b.put(name, csv(&[row(&format!("O{i}"))]));
    }
    let (report, run) = b.run_json(&[]);
    figure(b, "odd file names", &run);
    assert_eq!(run.code, 0, "{report}");
    for name in names {
        assert_eq!(file(&report, name)["status"], "loaded", "{name:?}");
    }
    let catalog: Vec<String> = b
        .files()
        .iter()
        .map(|f| f["original_name"].as_str().unwrap().to_owned())
        .collect();
    for name in names {
        assert!(
            catalog.iter().any(|n| n == name),
            "{name:?} not in {catalog:?}"
        );
    }
    // Text outputs: every line starts as a log line or table row does.
    b.put("z-fails\nforged.csv", "x,y\n1,2\n");
    let out = b.run(&["-v", "run"]);
    for line in out.stderr.lines() {
        assert!(
            line.starts_with("20") || line.starts_with("bankpipe:"),
            "forged log line: {line:?}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "escape sequence in a log line: {line:?}"
        );
    }
    assert!(
        out.stderr.contains("z-fails\\nforged.csv"),
        "{}",
        out.stderr
    );
    let table = b.run(&["files"]).stdout;
    assert!(!table.contains('\u{1b}'), "{table}");
    assert!(
        !table
            .lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00Z ERROR")),
        "{table}"
    );
    b.check_invariant();
}

#[test]
fn odd_file_names_on_sqlite() {
    odd_file_names(&Bench::sqlite());
}

#[test]
fn odd_file_names_on_postgres() {
    odd_file_names(&Bench::postgres());
}

/// `files` tiny files (a header and one row each) in one run: each loaded once; the
/// per-file overhead is the run's time divided by the files (printed).
fn a_thousand_tiny_files(b: &Bench, files: usize) {
    for i in 0..files {
        b.put(&format!("f{i:05}.csv"), csv(&[row(&format!("F{i}"))]));
    }
    let (report, run) = b.run_json(&[]);
    figure(b, &format!("{files} tiny files"), &run);
    eprintln!(
        "FIGURE {:<8} per-file overhead: {:.1} ms",
        b.backend(),
        run.secs * 1000.0 / files as f64
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let loaded = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "loaded" && f["rows_loaded"] == 1)
        .count();
    assert_eq!(loaded, files);
    b.check_invariant();
}

#[test]
fn a_thousand_tiny_files_on_sqlite() {
    a_thousand_tiny_files(&Bench::sqlite(), 1000);
}

/// 200 files in CI (a debug build on a busy 2-core machine spends about 0.1 s a file
/// on PostgreSQL); the ignored test below does the thousand.
#[test]
fn two_hundred_tiny_files_on_postgres() {
    a_thousand_tiny_files(&Bench::postgres(), 200);
}

#[test]
#[ignore = "long in a debug build: run with --release"]
fn a_thousand_tiny_files_on_postgres() {
    a_thousand_tiny_files(&Bench::postgres(), 1000);
}

/// Peak RSS of a reference run (one 10,000-row file), to read the others against.
#[test]
fn reference_run() {
    let b = Bench::sqlite();
    let rows: Vec<String> = (0..10_000).map(|i| row(&format!("X{i}"))).collect();
    b.put("ref.csv", csv(&rows));
    let (report, run) = b.run_json(&[]);
    figure(&b, "reference: one 10,000-row file", &run);
    assert_eq!(file(&report, "ref.csv")["rows_loaded"], 10_000);
    b.check_invariant();
}

// ---------------------------------------------------------------------------------------
// Security
// ---------------------------------------------------------------------------------------

/// Everything a scripted session produced: process outputs, HTTP answers, files.
#[derive(Default)]
struct Transcript {
    /// (where, bytes)
    parts: Vec<(String, Vec<u8>)>,
}

impl Transcript {
    fn add(&mut self, what: impl Into<String>, bytes: impl AsRef<[u8]>) {
        self.parts.push((what.into(), bytes.as_ref().to_vec()));
    }

    fn run(&mut self, what: &str, mut c: Command) -> std::process::Output {
        let out = c.output().unwrap();
        self.add(format!("{what}: stdout"), &out.stdout);
        self.add(format!("{what}: stderr"), &out.stderr);
        out
    }

    /// Panics naming where any form of any secret appears.
    fn assert_clean(&self, secrets: &[(&str, Vec<Vec<u8>>)]) {
        let bytes: usize = self.parts.iter().map(|(_, b)| b.len()).sum();
        eprintln!(
            "FIGURE security session: {} outputs, answers and files searched, {bytes} bytes, {} secret forms",
            self.parts.len(),
            secrets.iter().map(|(_, f)| f.len()).sum::<usize>()
        );
        for (name, forms) in secrets {
            for form in forms {
                for (what, hay) in &self.parts {
                    assert!(
                        !contains(hay, form),
                        "the {name} ({}) appears in {what}",
                        String::from_utf8_lossy(form)
                    );
                }
            }
        }
    }
}

/// The forms a secret may leak in: itself, base64 (standard and URL-safe, with and
/// without padding), hex (both cases), percent-encoded.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let e = base64::engine::general_purpose::STANDARD;
    let u = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let pct: String = secret
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut out = vec![
        secret.to_vec(),
        e.encode(secret).into_bytes(),
        e.encode(secret).trim_end_matches('=').as_bytes().to_vec(),
        u.encode(secret).into_bytes(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        pct.into_bytes(),
    ];
    out.sort();
    out.dedup();
    out
}

/// A scripted session on a TLS PostgreSQL cluster with password authentication, an
/// encrypted lake, a pseudonymisation key and an API token: wrong and right passwords,
/// a certificate that is not trusted, a wrong and a malformed master key, debug logs
/// (`-v`, `BANKPIPE_LOG=debug`, JSON logs), every `--json` output, a metrics file, an
/// export, `serve` with its metrics, status page and API (no token, a wrong one, the
/// right one), error answers. Every byte written to stdout, stderr, the serve log, the
/// HTTP answers (headers too), every file under DATA_DIR (the encrypted lake, the
/// exports, the spool included: no key file is there, keys come from the environment), a
/// plain `pg_dump` of the database and the server's log is searched for every form of
/// every secret: none is found.
#[test]
fn secrets_never_leak_in_a_scripted_session() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let cluster = pg::PgCluster::start_tls();
    let db = cluster.database();
    const PASSWORD: &str = "Pg-Secret-Passw0rd-9c1e";
    const WRONG_PASSWORD: &str = "Wrong-Passw0rd-77aa";
    const TOKEN: &str = "api-token-5b2f8e0d4c7a41e6b9d3";
    const WRONG_TOKEN: &str = "api-token-wrong-0000000000000";
    let master: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
    let other_master: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(11) ^ 0x3C).collect();
    let pseudonym: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(53) ^ 0x5A).collect();
    let malformed_master = format!("{}!!", &b64.encode(&master)[..30]);
    cluster.create_login("bp_app", PASSWORD);
    cluster.psql(
        "postgres",
        &format!("ALTER DATABASE {} OWNER TO bp_app", db.name),
    );
    let ca = cluster.ca_cert().unwrap().display().to_string();
    let url = |password: &str, tls: &str| {
        format!(
            "postgres://bp_app:{password}@localhost:{}/{}?{tls}",
            cluster.port(),
            db.name
        )
    };
    let good = url(PASSWORD, &format!("sslmode=verify-full&sslrootcert={ca}"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let inbox = data.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for (month, first) in [("2016-08", 1), ("2016-09", 100_000)] {
        http::generate(
            &inbox.join(format!("{month}.csv")),
            1500,
            first,
            &["--month", month],
        );
    }
    std::fs::write(inbox.join("bad-header.csv"), "who,knows\n1,2\n").unwrap();
    let mut t = Transcript::default();
    let bankpipe = |warehouse: &str, envs: &[(&str, &str)]| {
        let mut c = http::bankpipe(&data, Some(warehouse));
        c.env("BANKPIPE_MASTER_KEY", b64.encode(&master))
            .env("BANKPIPE_PSEUDONYM_KEY", b64.encode(&pseudonym));
        for (k, v) in envs {
            c.env(k, v);
        }
        c
    };
    let with = |warehouse: &str, envs: &[(&str, &str)], args: &[&str]| {
        let mut c = bankpipe(warehouse, envs);
        c.args(args);
        c
    };
    let code = |o: &std::process::Output| o.status.code().unwrap_or(-1);
    // Wrong password, an untrusted certificate: exit 2, saying why.
    let o = t.run(
        "wrong password",
        with(
            &url(
                WRONG_PASSWORD,
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            &[("BANKPIPE_LOG", "debug")],
            &["-v", "run", "--json"],
        ),
    );
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
    let o = t.run(
        "untrusted certificate",
        with(
            &url(PASSWORD, "sslmode=verify-full"),
            &[],
            &["-v", "status"],
        ),
    );
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
    // The right one, with debug logs as text and as JSON, and a metrics file.
    let metrics = data.join("run.prom");
    let o = t.run(
        "run",
        with(
            &good,
            &[("BANKPIPE_LOG", "debug")],
            &[
                "-v",
                "run",
                "--json",
                "--metrics-file",
                metrics.to_str().unwrap(),
            ],
        ),
    );
    assert_eq!(
        code(&o),
        1,
        "bad-header.csv fails: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for args in [
        &["--log-format", "json", "-v", "files", "--json"][..],
        &["-v", "status", "--json"],
        &["-v", "rejects", "--json", "--limit", "20"],
        &["-v", "rejects", "--limit", "20"],
        &["-v", "verify", "--json"],
        &["-v", "files"],
        &["-v", "status"],
        &["-v", "export", "--all", "--allow-partial", "--json"],
        &["-v", "reprocess", "1", "--dry-run", "--json"],
    ] {
        let o = t.run(
            &format!("{args:?}"),
            with(&good, &[("BANKPIPE_LOG", "debug")], args),
        );
        assert!(
            code(&o) <= 1,
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let mut c = with(&good, &[], &["-v", "pseudonymise", "--kind", "customer"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"C1\nC2\n").unwrap();
    let o = child.wait_with_output().unwrap();
    t.add("pseudonymise stdout", &o.stdout);
    t.add("pseudonymise stderr", &o.stderr);
    // A wrong master key, a malformed one, a malformed pseudonym key: exit 2.
    for (what, envs) in [
        (
            "wrong master key",
            vec![("BANKPIPE_MASTER_KEY", b64.encode(&other_master))],
        ),
        (
            "malformed master key",
            vec![("BANKPIPE_MASTER_KEY", malformed_master.clone())],
        ),
        (
            "malformed pseudonym key",
            vec![(
                "BANKPIPE_PSEUDONYM_KEY",
                format!("{}x", b64.encode(&pseudonym)),
            )],
        ),
    ] {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let args: &[&str] = if what.contains("pseudonym") {
            &["-v", "export", "--quarter", "2016Q3", "--json"]
        } else {
            &["-v", "run", "--json"]
        };
        let o = t.run(what, with(&good, &envs, args));
        assert_eq!(
            code(&o),
            2,
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // serve, with debug logs in JSON, the token, and every surface.
    let s = http::serve(
        &data,
        Some(&good),
        &[
            ("BANKPIPE_LOG", "debug"),
            ("BANKPIPE_API_TOKEN", TOKEN),
            ("BANKPIPE_MASTER_KEY", &b64.encode(&master)),
            ("BANKPIPE_PSEUDONYM_KEY", &b64.encode(&pseudonym)),
        ],
        &["-v"],
    );
    let bearer = |token: &str| format!("Bearer {token}");
    let (right, wrong) = (bearer(TOKEN), bearer(WRONG_TOKEN));
    for (path, headers) in [
        ("/health", vec![]),
        ("/ready", vec![]),
        ("/metrics", vec![]),
        ("/", vec![]),
        ("/api/runs", vec![]),
        ("/api/files?limit=1000", vec![]),
        ("/api/quarters", vec![]),
        ("/api/rejects?limit=50", vec![]),
        (
            "/api/rejects?limit=50",
            vec![("Authorization", wrong.as_str())],
        ),
        (
            "/api/rejects?limit=50",
            vec![("Authorization", right.as_str())],
        ),
        ("/api/files?stauts=failed", vec![]),
        ("/api/nothing-here", vec![]),
    ] {
        let r = s.call("GET", path, &headers);
        t.add(
            format!("GET {path} {headers:?}"),
            format!("{:?}\n{}", r.headers, r.body),
        );
    }
    for token in [None, Some(wrong.as_str()), Some(right.as_str())] {
        let headers: Vec<(&str, &str)> = token.map(|t| ("Authorization", t)).into_iter().collect();
        let r = s.call("POST", "/api/runs", &headers);
        t.add(
            format!("POST /api/runs {token:?}"),
            format!("{} {:?}\n{}", r.status, r.headers, r.body),
        );
    }
    // Let the API's run finish and the catalog refresh, then read the page again.
    daemon::poll(
        "the API's run to finish",
        std::time::Duration::from_secs(60),
        || {
            let r = s.get("/api/runs?limit=1");
            (!r.body.contains("\"running\"")).then_some(())
        },
        || s.daemon.log_text(),
    );
    for path in ["/", "/metrics"] {
        let r = s.get(path);
        t.add(
            format!("GET {path} again"),
            format!("{:?}\n{}", r.headers, r.body),
        );
    }
    s.daemon.signal("TERM");
    assert_eq!(
        s.daemon.wait_exit(std::time::Duration::from_secs(30)),
        Some(0)
    );
    t.add("serve log", s.daemon.log_text());
    // Every file under DATA_DIR (serve's log is there too), the database, the server log.
    for path in walk(&data) {
        t.add(
            path.display().to_string(),
            std::fs::read(&path).unwrap_or_default(),
        );
    }
    let dump = Command::new(cluster.bin_dir().join("pg_dump"))
        .args([
            "-h",
            cluster.dir().to_str().unwrap(),
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
            &db.name,
        ])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(
        dump.stdout.len() > 10_000,
        "the dump holds the session's data"
    );
    t.add("pg_dump", &dump.stdout);
    t.add(
        "PostgreSQL server log",
        std::fs::read(cluster.dir().join("server.log")).unwrap_or_default(),
    );
    // The session did what it says (so that a clean search means something).
    let all: Vec<u8> = t.parts.iter().flat_map(|(_, b)| b.clone()).collect();
    for expected in [
        "password authentication failed",
        "mk-",
        "\"loaded\"",
        "bankpipe_rows_total",
        "raw_text",
        "HMAC-SHA256",
    ] {
        assert!(
            contains(&all, expected.as_bytes()),
            "the session never produced {expected:?}"
        );
    }
    // The search finds a secret where one is (the URL the session was given holds it).
    assert!(
        forms(PASSWORD.as_bytes())
            .iter()
            .any(|f| contains(good.as_bytes(), f))
    );
    assert!(
        forms(&master)
            .iter()
            .any(|f| contains(b64.encode(&master).as_bytes(), f))
    );
    t.assert_clean(&[
        ("PostgreSQL password", forms(PASSWORD.as_bytes())),
        (
            "wrong PostgreSQL password",
            forms(WRONG_PASSWORD.as_bytes()),
        ),
        ("master key", forms(&master)),
        ("wrong master key", forms(&other_master)),
        ("malformed master key", forms(malformed_master.as_bytes())),
        ("pseudonym key", forms(&pseudonym)),
        ("API token", forms(TOKEN.as_bytes())),
        ("wrong API token", forms(WRONG_TOKEN.as_bytes())),
    ]);
}

/// Inbox names cannot steer where bankpipe writes: whatever the name (`..`, backslashes,
/// percent-encoded slashes, a slash look-alike, 250 bytes), the raw copy's key is
/// `raw/<profile>/<yyyy>/<mm>/<sha256>.<ext>` under the lake folder and nothing appears
/// outside DATA_DIR. (A name cannot hold `/` in a folder inbox, and an object-store
/// inbox lists only keys without `/` below its prefix; symbolic links: see
/// `a_symlink_pointing_outside_the_inbox_is_not_read`.)
#[test]
fn inbox_names_cannot_escape_the_lake_prefix() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let b = Bench {
        dir: tempfile::tempdir_in(root.path()).unwrap(),
        pg: None,
    };
    std::fs::create_dir_all(b.inbox()).unwrap();
    let long = format!("{}.csv", "n".repeat(246));
    let names = [
        "..csv",
        "a..\\..\\outside\\x.csv",
        "%2e%2e%2f%2e%2e%2foutside%2fy.csv",
        "a%2F..%2F..%2Foutside%2Fz.csv",
        "a∕..∕..∕outside∕w.csv",
        long.as_str(),
    ];
    for (i, name) in names.iter().enumerate() {
        b.put(name, csv(&[row(&format!("P{i}"))]));
    }
    let (report, run) = b.run_json(&[]);
    figure(&b, "inbox names with ../, backslashes, encodings", &run);
    // `..csv` starts with a dot: a hidden file, skipped; the others load.
    assert_eq!(
        report["files"].as_array().unwrap().len(),
        names.len() - 1,
        "{report}"
    );
    for f in report["files"].as_array().unwrap() {
        assert_eq!(f["status"], "loaded", "{f}");
        let key = f["lake_key"].as_str().unwrap();
        let sha = f["sha256"].as_str().unwrap();
        assert!(
            key.starts_with("raw/kaggle-bank/")
                && key.ends_with(&format!("/{sha}.csv"))
                && key.matches('/').count() == 4,
            "{key}"
        );
    }
    let lake = b.path().join("lake");
    for path in walk(&lake) {
        let rel = path
            .strip_prefix(&lake)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            rel.starts_with("raw/kaggle-bank/") && !rel.contains(".."),
            "{rel}"
        );
    }
    assert!(
        walk(&outside).is_empty(),
        "written outside: {:?}",
        walk(&outside)
    );
    let siblings: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        siblings.len(),
        2,
        "only DATA_DIR and the sentinel: {siblings:?}"
    );
    b.check_invariant();
}

/// A file named like markup (`<script>…`, `<img onerror>`), rejected rows whose raw text
/// holds markup, and a header of markup (its file's error quotes it): headless Chromium
/// renders the status page and the API's JSON, and the DOM holds the names as text,
/// visible, and no element from them (no script, no img).
#[test]
fn markup_in_names_and_rows_shows_as_text_in_the_browser() {
    let b = Bench::sqlite();
    let script = "<script>alert(1)<\\script>.csv";
    let img = "<img src=x onerror=alert(1)>.csv";
    b.put(
        script,
        csv(&[
            row("X1"),
            "X2,C1,10/1/94,F,<script>alert(2)</script>,100.00,2/8/16,143207,abc".into(),
        ]),
    );
    b.put(img, csv(&[row("X3")]));
    b.put("header.csv", "<script>alert(3)</script>,b\n1,2\n");
    let (report, run) = b.run_json(&["--max-reject-share", "1"]);
    figure(&b, "markup in names and rows", &run);
    assert_eq!(file(&report, script)["status"], "loaded");
    let s = http::serve(b.path(), None, &[], &[]);
    let page = dump_dom(&s.url("/"));
    let files_api = dump_dom(&s.url("/api/files"));
    let rejects_api = dump_dom(&s.url("/api/rejects"));
    for (what, dom) in [
        ("page", &page),
        ("/api/files", &files_api),
        ("/api/rejects", &rejects_api),
    ] {
        for element in ["<script", "<img", "onerror=\""] {
            assert!(
                !dom.contains(element),
                "{element} in the {what} DOM:\n{dom}"
            );
        }
    }
    // Shown as text: escaped in the DOM, so the browser displays the characters.
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;\\script&gt;.csv"),
        "{page}"
    );
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;.csv"),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(3)&lt;/script&gt;"),
        "the header's error: {page}"
    );
    assert!(
        files_api.contains("&lt;script&gt;alert(1)&lt;\\\\script&gt;.csv"),
        "{files_api}"
    );
    let r = s.get("/api/files");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.body.contains("<script>alert(1)<\\\\script>.csv"),
        "exact name in the JSON: {}",
        r.body
    );
}

/// The DOM Chromium renders from `url` (see tests/page.rs).
fn dump_dom(url: &str) -> String {
    let chromium = daemon::require("chromium", "chromium");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .arg("90")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium --dump-dom {url} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}
