//! Properties of issue #13 ("Fuzzing and properties"), checked on generated files with
//! the real binary and the SQLite warehouse, over seeded random cases (the seed is
//! printed; `BANKPIPE_CAMPAIGN_SEED` replays it):
//!
//! - **Conservation:** for any generated files (any size, defect share, format,
//!   compression, overlap between files, reject threshold), rows and exact amounts are
//!   conserved: `read = loaded + rejected + duplicate (+ withheld by a failed file)`
//!   in every file's report, and the warehouse holds exactly what the reports say
//!   (rows, exact sums of `transactions`, `rejected_rows`, `duplicate_rows`).
//! - **Splitting:** a file cut into pieces at random line boundaries and loaded piece by
//!   piece gives the same warehouse as the file loaded whole, up to lineage (which file
//!   and line a row came from).
//!
//! Quick cases run in CI; `long_*` (`#[ignore]`) run many more.

#[path = "support/campaign.rs"]
mod campaign;
#[path = "support/snapshot.rs"]
mod snapshot;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bankpipe::generate::{GenerateOptions, OutputFormat};
use campaign::{Finished, Moments, run_bounded};
use serde_json::Value;
use snapshot::Backend;

fn bankpipe(dir: &Path, args: &[&str]) -> Finished {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
    c.current_dir(dir).arg("--data-dir").arg(dir).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("BANKPIPE_") || k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("BANKPIPE_LOG", "warn");
    run_bounded(&mut c, Duration::from_secs(300))
}

/// Exact minor units (scale 2, INR) of a decimal text such as `-12.5` or `3`.
fn minor(text: &str) -> i128 {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(frac.len() <= 2, "{text} has more than 2 decimals");
    let v: i128 = format!("{int}{frac:0<2}").parse().unwrap();
    if neg { -v } else { v }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// One conservation case: two generated files (the second overlapping the first by a
/// few ids and re-sending a few of its rows), random size, defect share, format,
/// compression and reject threshold.
fn conservation_case(rng: &mut Moments, case: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let rows = 1 + rng.below(3_000) as u64;
    let defects = rng.below(31) as f64 / 100.0;
    let (format, ext) = [
        (OutputFormat::Csv, "csv"),
        (OutputFormat::Ndjson, "ndjson"),
        (OutputFormat::JsonArray, "json"),
    ][rng.below(3)];
    let compress = rng.below(2) == 1;
    let share = ["0.05", "0.2", "1"][rng.below(3)];
    let overlap = rng.below(rows as usize / 10 + 1) as u64;
    let seed = rng.below(1 << 30) as u64;
    let opts = |seed, first_id| GenerateOptions {
        rows,
        seed,
        defects,
        format,
        first_id,
        month: Some((2016, 8)),
    };
    let mut a = campaign::generated(&opts(seed, 1));
    let b = campaign::generated(&opts(seed + 1, rows + 1 - overlap));
    let name = |i: usize| {
        if compress {
            format!("f{i}.{ext}.gz")
        } else {
            format!("f{i}.{ext}")
        }
    };
    if compress {
        a = gz(&a);
    }
    std::fs::write(inbox.join(name(0)), &a).unwrap();
    std::fs::write(inbox.join(name(1)), if compress { gz(&b) } else { b }).unwrap();
    let what = format!(
        "case {case}: {rows} rows a file, defects {defects}, {ext}{}, overlap {overlap}, max_reject_share {share}, generator seed {seed}",
        if compress { ".gz" } else { "" }
    );
    let done = bankpipe(dir.path(), &["run", "--json", "--max-reject-share", share]);
    assert!(
        matches!(done.code, Some(0) | Some(1)),
        "{what}: {}",
        done.text()
    );
    let report = done.json();
    let db = Backend::Sqlite(dir.path().join("warehouse.db"));
    let (mut loaded_rows, mut loaded_amount) = (0u64, 0i128);
    for f in report["files"].as_array().unwrap() {
        let status = f["status"].as_str().unwrap();
        assert!(status == "loaded" || status == "failed", "{what}: {f}");
        if f["rows_read"] == 0 && status == "failed" {
            continue; // failed before reading rows (never for generated files)
        }
        assert_eq!(
            n(&f["rows_read"]),
            rows,
            "{what}: every generated row is read: {f}"
        );
        let (read, l, r, d) = (
            n(&f["rows_read"]),
            n(&f["rows_loaded"]),
            n(&f["rows_rejected"]),
            n(&f["rows_duplicate"]),
        );
        let amounts = |k: &str| minor(f[k].as_str().unwrap());
        let (ar, al, aj, ad) = (
            amounts("amount_read"),
            amounts("amount_loaded"),
            amounts("amount_rejected"),
            amounts("amount_duplicate"),
        );
        if status == "loaded" {
            assert_eq!(read, l + r + d, "{what}: rows: {f}");
            assert_eq!(ar, al + aj + ad, "{what}: amounts: {f}");
            assert_eq!(
                f["rejects"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(n)
                    .sum::<u64>(),
                r,
                "{what}: rejects by rule: {f}"
            );
        } else {
            // A failed file loads nothing and withholds its valid new rows.
            assert_eq!((l, al), (0, 0), "{what}: {f}");
            assert!(read >= r + d && ar - aj - ad >= 0, "{what}: {f}");
        }
        let id = f["file_id"].as_i64().unwrap();
        let count = |sql: String| db.scalar(&sql).unwrap().parse::<u64>().unwrap();
        assert_eq!(
            count(format!(
                "SELECT CAST(COUNT(*) AS TEXT) FROM rejected_rows WHERE file_id = {id}"
            )),
            r,
            "{what}: rejected_rows of {f}"
        );
        if status == "loaded" {
            assert_eq!(
                count(format!(
                    "SELECT CAST(COUNT(*) AS TEXT) FROM duplicate_rows WHERE file_id = {id}"
                )),
                d,
                "{what}: duplicate_rows of {f}"
            );
            let rejected: i128 = db
                .query(&format!(
                    "SELECT amount FROM rejected_rows WHERE file_id = {id} AND amount IS NOT NULL"
                ))
                .into_iter()
                .map(|row| minor(row[0].as_deref().unwrap()))
                .sum();
            assert_eq!(rejected, aj, "{what}: rejected amounts of {f}");
        }
        loaded_rows += l;
        loaded_amount += al;
    }
    let stored: Vec<Vec<Option<String>>> = db.query("SELECT amount FROM transactions");
    assert_eq!(stored.len() as u64, loaded_rows, "{what}: transactions");
    let sum: i128 = stored.iter().map(|r| minor(r[0].as_deref().unwrap())).sum();
    assert_eq!(
        sum, loaded_amount,
        "{what}: exact sum of transactions.amount"
    );
    what
}

fn conservation(cases: usize, salt: u64) {
    let mut rng = Moments::new("conservation", salt);
    for case in 0..cases {
        let what = conservation_case(&mut rng, case);
        eprintln!("conservation seed {}: {what}: holds", rng.seed);
    }
}

#[test]
fn rows_and_amounts_are_conserved() {
    conservation(6, 11);
}

#[test]
#[ignore = "long: run with --ignored, results in docs/RELIABILITY.md"]
fn long_rows_and_amounts_are_conserved() {
    conservation(100, 11);
}

/// A warehouse up to lineage: transactions without `file_id`/`line_no`, rejected rows
/// without them (and the file and line a conflicting duplicate's detail names), the ids
/// of duplicate rows, and the totals of warnings and formats over all files.
fn without_lineage(db: &Backend) -> BTreeMap<&'static str, Vec<String>> {
    let rows = |sql: &str| -> Vec<String> {
        let mut v: Vec<String> = db
            .query(sql)
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|c| c.unwrap_or_else(|| "NULL".into()))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        v.sort();
        v
    };
    let mut m = BTreeMap::new();
    m.insert(
        "transactions",
        rows(
            "SELECT transaction_id, customer_id, customer_dob, gender, location, account_balance, \
             transaction_at, amount, currency FROM transactions",
        ),
    );
    let rejected: Vec<String> =
        rows("SELECT rule, field, detail, amount, CAST(raw AS TEXT) FROM rejected_rows")
            .into_iter()
            .map(|r| match r.find("from file ") {
                // `already loaded from file 3 line 9878 with …` → `from file _ line _ with …`
                Some(at) => {
                    let tail = &r[at..];
                    let with = tail.find(" with ").unwrap_or(tail.len());
                    format!("{}from file _ line _{}", &r[..at], &tail[with..])
                }
                None => r,
            })
            .collect();
    let mut rejected = rejected;
    rejected.sort();
    m.insert("rejected_rows", rejected);
    m.insert(
        "duplicate_rows",
        rows("SELECT transaction_id, CAST(warnings AS TEXT) FROM duplicate_rows"),
    );
    m.insert(
        "file_warnings",
        rows("SELECT rule, CAST(SUM(rows) AS TEXT) FROM file_warnings GROUP BY rule"),
    );
    m.insert(
        "file_formats",
        rows("SELECT field, format, CAST(SUM(rows) AS TEXT) FROM file_formats GROUP BY field, format"),
    );
    m.insert(
        "totals",
        rows(
            "SELECT CAST(SUM(rows_read) AS TEXT), CAST(SUM(rows_loaded) AS TEXT), \
             CAST(SUM(rows_rejected) AS TEXT), CAST(SUM(rows_duplicate) AS TEXT) FROM files",
        ),
    );
    m
}

/// One splitting case: a generated CSV file cut into 2–6 pieces at random line
/// boundaries (each with the header, in order), loaded piece by piece, against the same
/// file loaded whole (no reject threshold, so that no piece fails on its own share).
fn split_case(rng: &mut Moments, case: usize) -> String {
    let rows = 2 + rng.below(4_000) as u64;
    let defects = rng.below(21) as f64 / 100.0;
    let seed = rng.below(1 << 30) as u64;
    let text = campaign::generated(&GenerateOptions {
        rows,
        seed,
        defects,
        format: OutputFormat::Csv,
        first_id: 1,
        month: Some((2016, 9)),
    });
    let mut lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    let header = lines.remove(0);
    let pieces = 2 + rng.below(5).min(lines.len() - 2);
    let mut cuts: Vec<usize> = (0..pieces - 1)
        .map(|_| 1 + rng.below(lines.len() - 1))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let what = format!(
        "case {case}: {rows} rows, defects {defects}, generator seed {seed}, cut at lines {cuts:?}"
    );
    let whole = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(whole.path().join("inbox")).unwrap();
    std::fs::write(whole.path().join("inbox/whole.csv"), &text).unwrap();
    let split = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(split.path().join("inbox")).unwrap();
    let mut start = 0;
    for (i, end) in cuts.iter().copied().chain([lines.len()]).enumerate() {
        let mut piece = header.to_vec();
        for l in &lines[start..end] {
            piece.extend_from_slice(l);
        }
        std::fs::write(split.path().join(format!("inbox/piece{i:02}.csv")), piece).unwrap();
        start = end;
    }
    for dir in [whole.path(), split.path()] {
        let done = bankpipe(dir, &["run", "--json", "--max-reject-share", "1"]);
        assert_eq!(done.code, Some(0), "{what}: {}", done.text());
    }
    let a = without_lineage(&Backend::Sqlite(whole.path().join("warehouse.db")));
    let b = without_lineage(&Backend::Sqlite(split.path().join("warehouse.db")));
    for (table, rows) in &a {
        let other = &b[table];
        if rows != other {
            let only_a: Vec<&String> = rows.iter().filter(|r| !other.contains(r)).take(3).collect();
            let only_b: Vec<&String> = other.iter().filter(|r| !rows.contains(r)).take(3).collect();
            panic!(
                "{what}: {table} differs between the whole file ({} rows) and its pieces ({} rows)\n\
                 whole only: {only_a:?}\npieces only: {only_b:?}",
                rows.len(),
                other.len()
            );
        }
    }
    what
}

fn splitting(cases: usize, salt: u64) {
    let mut rng = Moments::new("splitting", salt);
    for case in 0..cases {
        let what = split_case(&mut rng, case);
        eprintln!("splitting seed {}: {what}: same warehouse", rng.seed);
    }
}

#[test]
fn loading_a_file_in_pieces_equals_loading_it_whole() {
    splitting(4, 12);
}

#[test]
#[ignore = "long: run with --ignored, results in docs/RELIABILITY.md"]
fn long_loading_a_file_in_pieces_equals_loading_it_whole() {
    splitting(60, 12);
}
