//! The warehouse behaviour suite: helpers to turn CSV text into loads, and one `pub fn`
//! per guarantee of the [`Warehouse`] seam. Every backend's test file runs every check
//! on a fresh warehouse, plus [`whole_suite_reopening`] on one persistent warehouse.
//!
//! The checks only use the public API and never assume the warehouse is empty: ids and
//! file contents carry a per-call nonce and warehouse-wide figures are compared as
//! before/after deltas, so the whole suite can run in sequence on one database (and on a
//! shared server database for backends that have one).

#![allow(dead_code)] // each test crate uses a different subset of the helpers

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};

use bankpipe::generate::{GenerateOptions, OutputFormat, generate};
use bankpipe::lake;
use bankpipe::model::{Amount, Total};
use bankpipe::profile::{Profile, builtin_specs};
use bankpipe::scan::{self, Scanner};
use bankpipe::source::Format;
use bankpipe::validate::Rule;
use bankpipe::warehouse::{
    Claim, FileEntry, FileStatus, LoadPlan, NewFile, RejectEntry, RejectFilter, Stored, Summary,
    Tally, Warehouse, WarehouseError,
};

/// Header of the Kaggle export (profile `kaggle-bank`).
pub const HEADER: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)";

/// Scale of INR amounts.
pub const SCALE: u8 = 2;

/// Reject share that never fails a file.
pub const NEVER_FAIL: f64 = 1.0;

/// One behaviour check: takes a warehouse and panics with a message when it misbehaves.
pub type Check = fn(&mut Warehouse);

/// Every check of the suite, by name, in the order [`whole_suite_reopening`] runs them.
pub const SUITE: &[(&str, Check)] = &[
    ("load_then_read_back", load_then_read_back),
    (
        "duplicate_rows_in_a_file_and_across_files",
        duplicate_rows_in_a_file_and_across_files,
    ),
    ("first_occurrence_wins", first_occurrence_wins),
    ("claims", claims),
    ("abort_rolls_back", abort_rolls_back),
    ("reject_share_fails_the_file", reject_share_fails_the_file),
    ("rejects_are_queryable", rejects_are_queryable),
    ("warnings_counted", warnings_counted),
    ("runs", runs),
    ("bulk_load_across_chunks", bulk_load_across_chunks),
    (
        "reprocess_keeps_rows_other_files_carry",
        reprocess_keeps_rows_other_files_carry,
    ),
];

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The built-in profiles, resolved.
pub fn profiles() -> Vec<Profile> {
    builtin_specs()
        .iter()
        .map(|s| Profile::from_spec(s).expect("built-in profile spec resolves"))
        .collect()
}

/// A string unique to this call, across calls, threads and processes.
pub fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}{:x}{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Kaggle-layout row, every field valid by default.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub customer: String,
    pub dob: String,
    pub gender: String,
    pub location: String,
    pub balance: String,
    pub date: String,
    pub time: String,
    pub amount: String,
}

impl Row {
    /// A clean row with this id and amount text.
    pub fn new(id: &str, amount: &str) -> Row {
        Row {
            id: id.to_owned(),
            customer: "C5841053".to_owned(),
            dob: "10/1/94".to_owned(),
            gender: "F".to_owned(),
            location: "JAMSHEDPUR".to_owned(),
            balance: "17819.05".to_owned(),
            date: "2/8/16".to_owned(),
            time: "143207".to_owned(),
            amount: amount.to_owned(),
        }
    }

    /// The row changed by `f`.
    pub fn with(mut self, f: impl FnOnce(&mut Row)) -> Row {
        f(&mut self);
        self
    }

    /// The CSV line, without line end.
    pub fn line(&self) -> String {
        [
            &self.id,
            &self.customer,
            &self.dob,
            &self.gender,
            &self.location,
            &self.balance,
            &self.date,
            &self.time,
            &self.amount,
        ]
        .map(String::as_str)
        .join(",")
    }
}

/// A CSV file: the header, then `lines` (each without line end), LF-terminated.
pub fn csv(lines: &[String]) -> Vec<u8> {
    let mut out = String::with_capacity(HEADER.len() + 1 + lines.len() * 80);
    out.push_str(HEADER);
    out.push('\n');
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out.into_bytes()
}

/// A CSV file of these rows.
pub fn csv_of(rows: &[Row]) -> Vec<u8> {
    csv(&rows.iter().map(Row::line).collect::<Vec<_>>())
}

/// Exact sum of amount texts at [`SCALE`].
pub fn total(amounts: &[&str]) -> Total {
    let mut t = Total::default();
    for a in amounts {
        t.add(Amount::parse(a, SCALE).unwrap_or_else(|e| panic!("bad amount {a:?}: {e:?}")));
    }
    t
}

/// Starts a scan of CSV bytes with the built-in profiles, two workers, prepared for
/// loading.
pub fn scanner(bytes: &[u8]) -> Scanner {
    scan::start(
        Box::new(Cursor::new(bytes.to_vec())),
        Format::Csv,
        &profiles(),
        2,
        true,
    )
    .unwrap_or_else(|e| panic!("scan did not start: {e}"))
}

/// The catalog entry of a file about to be claimed: the real SHA-256 and length of
/// `bytes`, so different contents are different files.
pub fn new_file(bytes: &[u8], name: &str, run_id: &str) -> NewFile {
    let (sha256, len) = lake::fingerprint(Cursor::new(bytes)).expect("hashing in memory");
    NewFile {
        lake_key: format!("raw/kaggle-bank/2016-08/{sha256}.csv"),
        sha256,
        original_name: name.to_owned(),
        bytes: len,
        profile: Some("kaggle-bank".to_owned()),
        format: "csv".to_owned(),
        compression: "none".to_owned(),
        received_at: bankpipe::clock::now_rfc3339(),
        run_id: run_id.to_owned(),
    }
}

/// Claims a file that must be new; returns its id.
pub fn claim_new(w: &mut Warehouse, file: &NewFile) -> i64 {
    match w.claim(file) {
        Ok(Claim::New { file_id }) => file_id,
        other => panic!(
            "first claim of {} should be Claim::New, got {other:?}",
            file.original_name
        ),
    }
}

/// A load plan at [`SCALE`].
pub fn plan(file_id: i64, run_id: &str, max_reject_share: f64) -> LoadPlan {
    LoadPlan {
        file_id,
        run_id: run_id.to_owned(),
        max_reject_share,
        scale: SCALE,
        replace: false,
        format_names: Default::default(),
    }
}

/// Loads CSV bytes under `plan`, with a `before_commit` hook. Checks that `progress`
/// saw every row and that `before_commit` saw the tally that is returned.
pub fn load_with(
    w: &mut Warehouse,
    plan: &LoadPlan,
    bytes: &[u8],
    before_commit: &mut dyn FnMut(&Tally) -> Result<(), String>,
) -> Result<Tally, WarehouseError> {
    let mut source = bankpipe::scan::Reopening::new(scanner(bytes), || Ok(scanner(bytes)));
    let mut progressed: Option<u64> = None;
    let mut seen: Option<Tally> = None;
    let result = w.load(
        plan,
        &mut source,
        &mut |t| progressed = Some(t.rows_read),
        &mut |t| {
            seen = Some(t.clone());
            before_commit(t)
        },
    );
    bankpipe::scan::BatchSource::finish(&mut source)
        .unwrap_or_else(|e| panic!("scanner did not end cleanly: {e}"));
    if let Ok(tally) = &result {
        assert_eq!(
            progressed,
            Some(tally.rows_read),
            "progress should see the running tally after every batch, the last one with all rows"
        );
        assert_eq!(
            seen.as_ref(),
            Some(tally),
            "before_commit should see exactly the tally the load returns"
        );
    }
    result
}

/// Loads CSV bytes under `plan`; the load must succeed (a file failed for its reject
/// share is a success of the load).
pub fn load(w: &mut Warehouse, plan: &LoadPlan, bytes: &[u8]) -> Tally {
    load_with(w, plan, bytes, &mut |_| Ok(()))
        .unwrap_or_else(|e| panic!("load of file {} failed: {e}", plan.file_id))
}

/// Claims (as new) and loads CSV bytes, then checks the control totals; returns the
/// file id and tally.
pub fn ingest(
    w: &mut Warehouse,
    run_id: &str,
    name: &str,
    bytes: &[u8],
    max_reject_share: f64,
) -> (i64, Tally) {
    let file = new_file(bytes, name, run_id);
    let file_id = claim_new(w, &file);
    let tally = load(w, &plan(file_id, run_id, max_reject_share), bytes);
    assert_control_totals(w, file_id, &tally);
    (file_id, tally)
}

/// What the warehouse holds for a file.
pub fn stored(w: &mut Warehouse, file_id: i64) -> Stored {
    w.stored(file_id, SCALE)
        .unwrap_or_else(|e| panic!("stored({file_id}) failed: {e}"))
}

/// The catalog entry of a file.
pub fn file_entry(w: &mut Warehouse, file_id: i64) -> FileEntry {
    w.files()
        .expect("files() failed")
        .into_iter()
        .find(|f| f.file_id == file_id)
        .unwrap_or_else(|| panic!("file {file_id} missing from files()"))
}

/// The warehouse-wide figures.
pub fn summary(w: &mut Warehouse) -> Summary {
    w.summary().expect("summary() failed")
}

/// Asserts that the catalog figures `/metrics` reads (per-file pre-aggregates, migration
/// 0012) agree with the rows themselves: rows loaded with `transactions`, rejects by rule
/// with `rejected_rows`, warnings by rule, and the exact loaded amount (every test row is
/// INR) with the files' `amount_loaded`.
pub fn assert_catalog_figures(w: &mut Warehouse) {
    let f = w.catalog_figures().expect("catalog_figures() failed");
    let s = summary(w);
    assert_eq!(f.rows_loaded, s.transactions, "rows loaded: {f:?}");
    assert_eq!(f.rejected_by_rule, s.rejects_by_rule, "rejects by rule");
    assert_eq!(
        f.rejected_by_rule.values().sum::<u64>(),
        s.rejected_rows,
        "rejected rows"
    );
    assert_eq!(f.warnings_by_rule, s.warnings_by_rule, "warnings by rule");
    let mut loaded = Total::default();
    for e in w.files().expect("files() failed") {
        if let Some(a) = e.amount_loaded.filter(|_| e.status == "loaded") {
            loaded.merge(&Total::parse(&a, SCALE).expect("amount_loaded at SCALE"));
        }
    }
    let expected: BTreeMap<String, String> = if s.transactions == 0 {
        BTreeMap::new()
    } else {
        [("INR".to_owned(), loaded.to_text(SCALE))].into()
    };
    assert_eq!(f.amount_loaded, expected, "amount loaded by currency");
    assert_eq!(
        f.files.values().sum::<u64>(),
        w.files().expect("files() failed").len() as u64,
        "files by status"
    );
    // The rejected-share histogram: one observation per processed file with rows, in
    // every bucket at or above its share (the same division as the pipeline's judge).
    let shares: Vec<f64> = w
        .files()
        .expect("files() failed")
        .iter()
        .filter(|e| e.status != "landing")
        .filter_map(|e| match (e.rows_read, e.rows_rejected) {
            (Some(read), Some(rejected)) if read > 0 => Some(rejected as f64 / read as f64),
            _ => None,
        })
        .collect();
    assert_eq!(
        f.reject_share.count,
        shares.len() as u64,
        "reject share count"
    );
    for (le, n) in &f.reject_share.buckets {
        let want = shares.iter().filter(|s| *s <= le).count() as u64;
        assert_eq!(*n, want, "files with a rejected share <= {le}");
    }
    let sum: f64 = shares.iter().sum();
    assert!((f.reject_share.sum - sum).abs() < 1e-9, "reject share sum");
}

/// Every quarantined row of a file, in line order.
pub fn rejects_of(w: &mut Warehouse, file_id: i64) -> Vec<RejectEntry> {
    w.rejects(&RejectFilter {
        file_id: Some(file_id),
        rule: None,
        limit: u64::MAX,
    })
    .expect("rejects() failed")
}

/// Rejection counts by rule name, for comparing with a tally.
pub fn by_rule(tally: &Tally) -> BTreeMap<&'static str, u64> {
    tally.rejects.iter().map(|(r, n)| (r.name(), *n)).collect()
}

/// Warning counts by rule name.
pub fn warnings_by_rule(tally: &Tally) -> BTreeMap<&'static str, u64> {
    tally.warnings.iter().map(|(r, n)| (r.name(), n)).collect()
}

/// Asserts what the pipeline's control-total check asserts after every commit: the
/// tally balances, and `transactions`, `rejected_rows` and the catalog row agree with it.
pub fn assert_control_totals(w: &mut Warehouse, file_id: i64, tally: &Tally) {
    assert!(
        tally.balances(),
        "file {file_id}: read != loaded + rejected + duplicate (rows or amounts): {tally:?}"
    );
    let rejects_total: u64 = tally.rejects.values().sum();
    assert_eq!(
        rejects_total, tally.rows_rejected,
        "file {file_id}: rejections by rule should add up to rows_rejected"
    );
    let failed = tally.failure.is_some();
    let (rows, amount) = if failed {
        (0, Total::default())
    } else {
        (tally.rows_loaded, tally.amount_loaded.clone())
    };
    let s = stored(w, file_id);
    let want_status = if failed {
        FileStatus::Failed
    } else {
        FileStatus::Loaded
    };
    assert_eq!(s.status, Some(want_status), "file {file_id}: status");
    assert_eq!(
        (s.transactions, s.transactions_amount),
        (rows, amount.clone()),
        "file {file_id}: rows and amount in transactions"
    );
    assert_eq!(
        (s.rejected, s.rejected_amount),
        (tally.rows_rejected, tally.amount_rejected.clone()),
        "file {file_id}: rows and amount in rejected_rows"
    );
    assert_eq!(
        s.duplicates,
        if failed { 0 } else { tally.rows_duplicate },
        "file {file_id}: duplicate lineage rows (a failed file keeps none)"
    );
    let r = &s.recorded;
    assert_eq!(
        (
            r.rows_read,
            r.rows_loaded,
            r.rows_rejected,
            r.rows_duplicate
        ),
        (
            tally.rows_read,
            rows,
            tally.rows_rejected,
            tally.rows_duplicate
        ),
        "file {file_id}: counts recorded in files"
    );
    assert_eq!(
        (
            r.amount_read.clone(),
            r.amount_loaded.clone(),
            r.amount_rejected.clone(),
            r.amount_duplicate.clone()
        ),
        (
            tally.amount_read.clone(),
            amount,
            tally.amount_rejected.clone(),
            tally.amount_duplicate.clone()
        ),
        "file {file_id}: amounts recorded in files"
    );
}

/// A run id unique to this call, started now.
pub fn start_run(w: &mut Warehouse, tag: &str) -> String {
    let run_id = format!("{tag}-{}", nonce());
    w.start_run(&run_id, &bankpipe::clock::now_rfc3339())
        .unwrap_or_else(|e| panic!("start_run({run_id}) failed: {e}"));
    run_id
}

/// Ends a run as `ok`.
pub fn finish_run(w: &mut Warehouse, run_id: &str) {
    w.finish_run(run_id, &bankpipe::clock::now_rfc3339(), "ok", "{}")
        .unwrap_or_else(|e| panic!("finish_run({run_id}) failed: {e}"));
}

/// A text fingerprint of everything the read API shows, to compare across reopening.
pub fn snapshot(w: &mut Warehouse) -> String {
    let files = w.files().expect("files() failed");
    let rejects = w
        .rejects(&RejectFilter {
            file_id: None,
            rule: None,
            limit: u64::MAX,
        })
        .expect("rejects() failed");
    let mut stored = Vec::new();
    for f in &files {
        stored.push(w.stored(f.file_id, SCALE).expect("stored() failed"));
    }
    format!("{files:#?}\n{rejects:#?}\n{stored:#?}\n{:#?}", summary(w))
}

fn delta(after: u64, before: u64) -> u64 {
    after
        .checked_sub(before)
        .unwrap_or_else(|| panic!("a warehouse-wide count went down: {before} -> {after}"))
}

fn count(map: &BTreeMap<String, u64>, key: &str) -> u64 {
    map.get(key).copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// The behaviour suite
// ---------------------------------------------------------------------------------------

/// Rows are loaded and every read-back (`stored`, `files`, `summary`) agrees with the
/// tally, to the paisa.
pub fn load_then_read_back(w: &mut Warehouse) {
    let p = format!("rb{}-", nonce());
    let id = |n: u32| format!("{p}{n}");
    let good = ["25.0", "1000", "0.5", "17819.05", "3"];
    let mut rows: Vec<Row> = good
        .iter()
        .enumerate()
        .map(|(n, a)| Row::new(&id(n as u32), a))
        .collect();
    rows[1].date = "31/10/16".into();
    rows[1].time = "235959".into();
    rows[2].date = "1/8/16".into();
    rows[2].time = "0".into();
    // Rejected, but its amount parsed: it counts in amount_read and amount_rejected.
    rows.push(Row::new(&id(10), "7.25").with(|r| r.date = "31/2/16".into()));
    // Rejected without an amount.
    rows.push(Row::new(&id(11), ""));
    let bytes = csv_of(&rows);

    let before = summary(w);
    let run = start_run(w, "read-back");
    let file = new_file(&bytes, "read_back.csv", &run);
    let file_id = claim_new(w, &file);
    let tally = load(w, &plan(file_id, &run, NEVER_FAIL), &bytes);
    finish_run(w, &run);

    assert_eq!(tally.failure, None, "the file should not fail");
    assert_eq!(
        (
            tally.rows_read,
            tally.rows_loaded,
            tally.rows_rejected,
            tally.rows_duplicate
        ),
        (7, 5, 2, 0),
        "read, loaded, rejected, duplicate"
    );
    assert_eq!(tally.amount_loaded, total(&good), "amount_loaded");
    assert_eq!(tally.amount_rejected, total(&["7.25"]), "amount_rejected");
    assert_eq!(tally.amount_duplicate, Total::default(), "amount_duplicate");
    assert_eq!(
        tally.amount_read,
        total(&["7.25", "25.0", "1000", "0.5", "17819.05", "3"])
    );
    assert_eq!(
        by_rule(&tally),
        BTreeMap::from([("invalid_transaction_date", 1), ("missing_amount", 1)])
    );
    assert_control_totals(w, file_id, &tally);

    let s = stored(w, file_id);
    assert_eq!(s.transactions, 5);
    assert_eq!(s.transactions_amount.to_text(SCALE), "18847.55");

    let f = file_entry(w, file_id);
    assert_eq!(f.status, "loaded");
    assert_eq!(f.sha256, file.sha256);
    assert_eq!(f.original_name, "read_back.csv");
    assert_eq!(f.bytes, bytes.len() as u64);
    assert_eq!(f.profile.as_deref(), Some("kaggle-bank"));
    assert_eq!(f.lake_key, file.lake_key);
    assert_eq!(f.received_at, file.received_at);
    assert!(f.processed_at.is_some(), "processed_at is set on load");
    assert_eq!(
        (
            f.rows_read,
            f.rows_loaded,
            f.rows_rejected,
            f.rows_duplicate
        ),
        (Some(7), Some(5), Some(2), Some(0)),
        "counts in files()"
    );
    assert_eq!(f.amount_loaded.as_deref(), Some("18847.55"));
    assert_eq!(f.error, None);
    assert_eq!(
        w.find_file(&file.sha256).expect("find_file failed"),
        Some((file_id, "read_back.csv".to_owned(), FileStatus::Loaded))
    );

    let after = summary(w);
    assert_eq!(delta(after.transactions, before.transactions), 5);
    assert_eq!(delta(after.rejected_rows, before.rejected_rows), 2);
    assert_eq!(
        delta(
            count(&after.files, "loaded"),
            count(&before.files, "loaded")
        ),
        1
    );
    assert_eq!(
        delta(
            count(&after.rejects_by_rule, "missing_amount"),
            count(&before.rejects_by_rule, "missing_amount")
        ),
        1
    );
    let (first, last) = after
        .transaction_span
        .expect("transaction_span is set once rows are loaded");
    assert!(
        first.as_str() <= "2016-08-01 00:00:00" && last.as_str() >= "2016-10-31 23:59:59",
        "transaction_span {first}..{last} should cover the loaded rows"
    );
    assert!(after.schema_version >= 1, "schema version");
    assert_catalog_figures(w);
}

/// Exactly once: identical rows are duplicates (in the same file and across files),
/// rows with a known id and other content are `conflicting_duplicate` rejections.
pub fn duplicate_rows_in_a_file_and_across_files(w: &mut Warehouse) {
    let p = format!("dup{}-", nonce());
    let id = |s: &str| format!("{p}{s}");
    let run = start_run(w, "dup");

    let a1 = Row::new(&id("a1"), "10.00");
    let a2 = Row::new(&id("a2"), "20.00");
    let a3 = Row::new(&id("a3"), "30");
    let a4 = Row::new(&id("a4"), "40.00");
    let a2_changed = a2.clone().with(|r| r.amount = "21.00".into());
    let file_a = csv(&[
        a1.line(),         // 2 loaded
        a2.line(),         // 3 loaded
        a3.line(),         // 4 loaded
        a1.line(),         // 5 duplicate (identical line repeated)
        a2_changed.line(), // 6 conflicting_duplicate (amount)
        a4.line(),         // 7 loaded
    ]);
    let before = summary(w);
    let (file_a_id, ta) = ingest(w, &run, "dup_a.csv", &file_a, NEVER_FAIL);
    assert_eq!(
        (
            ta.rows_read,
            ta.rows_loaded,
            ta.rows_rejected,
            ta.rows_duplicate
        ),
        (6, 4, 1, 1),
        "file A: read, loaded, rejected, duplicate"
    );
    assert_eq!(ta.amount_duplicate, total(&["10.00"]));
    assert_eq!(ta.amount_rejected, total(&["21.00"]));
    assert_eq!(ta.amount_loaded, total(&["10", "20", "30", "40"]));
    assert_eq!(by_rule(&ta), BTreeMap::from([("conflicting_duplicate", 1)]));
    let rejects = rejects_of(w, file_a_id);
    assert_eq!(rejects.len(), 1, "file A quarantines one row: {rejects:?}");
    let r = &rejects[0];
    assert_eq!(
        (r.line_no, r.rule.as_str(), r.raw.as_str()),
        (6, "conflicting_duplicate", a2_changed.line().as_str()),
        "the conflicting row keeps its line and raw text"
    );
    assert_eq!(r.field.as_deref(), Some("transaction_id"));
    assert_eq!(r.file, "dup_a.csv");
    let detail = r.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("amount"),
        "the detail should name the differing column: {detail:?}"
    );

    // File B: other bytes (another digest), rows overlapping A.
    let b1 = Row::new(&id("b1"), "50.00");
    let a4_moved = a4.clone().with(|r| r.location = "PUNE".into());
    let file_b = csv(&[
        a1.line(),                                             // 2 duplicate of A's row
        a3.clone().with(|r| r.amount = "30.00".into()).line(), // 3 duplicate: same value, other text
        a4_moved.line(),                                       // 4 conflicting_duplicate (location)
        b1.line(),                                             // 5 loaded
        a2.line(),                                             // 6 duplicate of the loaded version
        a2_changed.line(), // 7 conflicting: A's rejected version
    ]);
    let (file_b_id, tb) = ingest(w, &run, "dup_b.csv", &file_b, NEVER_FAIL);
    assert_ne!(file_a_id, file_b_id);
    assert_eq!(
        (
            tb.rows_read,
            tb.rows_loaded,
            tb.rows_rejected,
            tb.rows_duplicate
        ),
        (6, 1, 2, 3),
        "file B: read, loaded, rejected, duplicate"
    );
    assert_eq!(tb.amount_loaded, total(&["50"]));
    assert_eq!(tb.amount_duplicate, total(&["10", "30", "20"]));
    assert_eq!(tb.amount_rejected, total(&["40", "21"]));
    assert_eq!(by_rule(&tb), BTreeMap::from([("conflicting_duplicate", 2)]));
    let rejects = rejects_of(w, file_b_id);
    let got: Vec<(u64, &str, &str)> = rejects
        .iter()
        .map(|r| (r.line_no, r.rule.as_str(), r.raw.as_str()))
        .collect();
    let (l4, l7) = (a4_moved.line(), a2_changed.line());
    assert_eq!(
        got,
        [
            (4, "conflicting_duplicate", l4.as_str()),
            (7, "conflicting_duplicate", l7.as_str())
        ],
        "file B's quarantine"
    );
    let detail = rejects[0].detail.clone().unwrap_or_default();
    assert!(
        detail.contains("location"),
        "the detail should name the differing column: {detail:?}"
    );

    // Loading again the same ids through a third file changes nothing.
    let file_c = csv(&[a1.line(), a2.line(), a3.line(), a4.line(), b1.line()]);
    let (_, tc) = ingest(w, &run, "dup_c.csv", &file_c, NEVER_FAIL);
    assert_eq!(
        (tc.rows_loaded, tc.rows_rejected, tc.rows_duplicate),
        (0, 0, 5),
        "file C is all duplicates"
    );

    let after = summary(w);
    assert_eq!(
        delta(after.transactions, before.transactions),
        5,
        "each id is stored once"
    );
    assert_eq!(delta(after.rejected_rows, before.rejected_rows), 3);
    finish_run(w, &run);
    assert_catalog_figures(w);
}

/// Within one file the first line of an id is the one loaded, also when its later
/// occurrences are in another insert group or another chunk of the file.
pub fn first_occurrence_wins(w: &mut Warehouse) {
    let p = format!("first{}-", nonce());
    let id = |s: &str| format!("{p}{s}");
    let run = start_run(w, "first");

    let x1 = Row::new(&id("x"), "1.00");
    let x2 = x1.clone().with(|r| r.amount = "2.00".into());
    let y_rejected = Row::new(&id("y"), "3.00").with(|r| r.time = "246000".into());
    let y = Row::new(&id("y"), "4.00");
    let mut lines = vec![
        x1.line(),         // 2 loaded
        x2.line(),         // 3 conflicting (same insert group)
        x1.line(),         // 4 duplicate: compared with line 2, not line 3
        y_rejected.line(), // 5 invalid_transaction_time: not loaded, so not an occurrence
        y.line(),          // 6 loaded
    ];
    // Enough filler to end up in a second chunk of the scan (chunks are ~512 KiB).
    let filler = 8_000;
    for n in 0..filler {
        lines.push(
            Row::new(&id(&format!("f{n}")), "1.00")
                .with(|r| r.location = "A LONG LOCATION NAME TO MAKE THE FILE LARGE".into())
                .line(),
        );
    }
    let late = lines.len() as u64 + 2;
    lines.push(x2.line()); // conflicting, many groups and a chunk later
    lines.push(y.with(|r| r.amount = "5.00".into()).line()); // conflicting too
    let bytes = csv(&lines);
    assert!(
        bytes.len() > 600 * 1024,
        "the file should span several chunks"
    );
    let (file_id, t) = ingest(w, &run, "first.csv", &bytes, NEVER_FAIL);
    assert_eq!(
        (
            t.rows_read,
            t.rows_loaded,
            t.rows_rejected,
            t.rows_duplicate
        ),
        (5 + filler + 2, 2 + filler, 4, 1),
        "read, loaded, rejected, duplicate"
    );
    let got: Vec<(u64, String)> = rejects_of(w, file_id)
        .into_iter()
        .map(|r| (r.line_no, r.rule))
        .collect();
    let want: Vec<(u64, String)> = [
        (3, "conflicting_duplicate"),
        (5, "invalid_transaction_time"),
        (late, "conflicting_duplicate"),
        (late + 1, "conflicting_duplicate"),
    ]
    .into_iter()
    .map(|(l, r)| (l, r.to_owned()))
    .collect();
    assert_eq!(got, want, "rejected lines: later occurrences lose");
    for r in rejects_of(w, file_id)
        .iter()
        .filter(|r| r.rule == "conflicting_duplicate")
    {
        let detail = r.detail.clone().unwrap_or_default();
        let first_line = if r.raw.starts_with(&id("x")) { 2 } else { 6 };
        assert!(
            detail.contains(&format!("line {first_line}")),
            "line {}: the detail should point at the first occurrence, line {first_line}: {detail:?}",
            r.line_no
        );
    }

    // What is stored is the first version: a file repeating it is all duplicates, one
    // repeating the later version is all conflicts.
    let (_, again) = ingest(
        w,
        &run,
        "first_again.csv",
        &csv(&[x1.line(), Row::new(&id("y"), "4.00").line()]),
        NEVER_FAIL,
    );
    assert_eq!(
        (again.rows_duplicate, again.rows_rejected),
        (2, 0),
        "the first versions are the stored ones"
    );
    let (_, later) = ingest(
        w,
        &run,
        "first_later.csv",
        &csv(&[x2.line(), Row::new(&id("y"), "5.00").line()]),
        NEVER_FAIL,
    );
    assert_eq!(
        (later.rows_duplicate, later.rows_rejected),
        (0, 2),
        "the later versions were not stored"
    );
    finish_run(w, &run);
}

/// Claims: new, resumed while never finished (same id and lake key), duplicate once
/// loaded or failed.
pub fn claims(w: &mut Warehouse) {
    let p = format!("claim{}-", nonce());
    let run = start_run(w, "claims");
    let bytes = csv_of(&[Row::new(&format!("{p}1"), "1.00")]);
    let first = new_file(&bytes, "claim.csv", &run);
    assert_eq!(
        w.find_file(&first.sha256).expect("find_file failed"),
        None,
        "unknown digest"
    );
    let file_id = claim_new(w, &first);
    assert_eq!(
        w.find_file(&first.sha256).expect("find_file failed"),
        Some((file_id, "claim.csv".to_owned(), FileStatus::Landing))
    );
    assert_eq!(file_entry(w, file_id).status, "landing");
    assert_eq!(stored(w, file_id).status, Some(FileStatus::Landing));

    // A later attempt (another run, another name and lake key) resumes the first.
    let run2 = start_run(w, "claims-resume");
    let mut retry = new_file(&bytes, "claim_renamed.csv", &run2);
    retry.lake_key = format!("raw/elsewhere/{}.csv", retry.sha256);
    assert_eq!(
        w.claim(&retry).expect("claim failed"),
        Claim::Resume {
            file_id,
            lake_key: first.lake_key.clone()
        },
        "a claimed but unfinished file is handed back with its lake key"
    );
    assert_eq!(
        w.claim(&retry).expect("claim failed"),
        Claim::Resume {
            file_id,
            lake_key: first.lake_key.clone()
        },
        "and again, as long as it is unfinished"
    );
    assert_eq!(file_entry(w, file_id).lake_key, first.lake_key);

    // Other content is another file.
    let other_bytes = csv_of(&[Row::new(&format!("{p}2"), "2.00")]);
    let other = new_file(&other_bytes, "claim_other.csv", &run2);
    let other_id = claim_new(w, &other);
    assert_ne!(other_id, file_id);

    let tally = load(w, &plan(file_id, &run2, NEVER_FAIL), &bytes);
    assert_control_totals(w, file_id, &tally);
    match w.claim(&retry).expect("claim failed") {
        Claim::Duplicate {
            file_id: id,
            status,
            ..
        } => {
            assert_eq!(id, file_id, "duplicate claim names the loaded file");
            assert_eq!(status, FileStatus::Loaded);
        }
        other => panic!("claim after load should be Claim::Duplicate, got {other:?}"),
    }

    // A file failed as a whole is not retried either.
    w.fail_file(
        other_id,
        &run2,
        "unreadable",
        &bankpipe::clock::now_rfc3339(),
    )
    .expect("fail_file failed");
    let f = file_entry(w, other_id);
    assert_eq!(
        (f.status.as_str(), f.error.as_deref()),
        ("failed", Some("unreadable"))
    );
    match w.claim(&other).expect("claim failed") {
        Claim::Duplicate {
            file_id: id,
            original_name,
            status,
        } => {
            assert_eq!(
                (id, original_name.as_str(), status),
                (other_id, "claim_other.csv", FileStatus::Failed)
            );
        }
        other => panic!("claim after fail_file should be Claim::Duplicate, got {other:?}"),
    }
    finish_run(w, &run);
    finish_run(w, &run2);
}

/// A load refused by `before_commit` leaves nothing behind; the claim can be resumed
/// and loaded exactly once.
pub fn abort_rolls_back(w: &mut Warehouse) {
    let p = format!("abort{}-", nonce());
    let run = start_run(w, "abort");
    let rows = [
        Row::new(&format!("{p}1"), "1.00"),
        Row::new(&format!("{p}2"), "2.00").with(|r| r.gender = "X".into()),
        Row::new(&format!("{p}3"), "-3.00"), // negative_amount
        Row::new(&format!("{p}1"), "1.00"),  // duplicate
        Row::new(&format!("{p}4"), "4.00"),
    ];
    let bytes = csv_of(&rows);
    let file = new_file(&bytes, "abort.csv", &run);
    let file_id = claim_new(w, &file);
    let before = summary(w);

    let mut refused_with: Option<Tally> = None;
    let result = load_with(w, &plan(file_id, &run, NEVER_FAIL), &bytes, &mut |t| {
        refused_with = Some(t.clone());
        Err("lake copy did not verify".to_owned())
    });
    match result {
        Err(WarehouseError::Aborted(msg)) => {
            assert!(
                msg.contains("lake copy did not verify"),
                "Aborted carries the reason: {msg:?}"
            );
        }
        other => panic!("a refused load should be WarehouseError::Aborted, got {other:?}"),
    }
    let refused_with = refused_with.expect("before_commit was called");
    assert_eq!(
        (refused_with.rows_read, refused_with.rows_loaded),
        (5, 3),
        "before_commit saw the complete tally"
    );

    let s = stored(w, file_id);
    assert_eq!(s.status, Some(FileStatus::Landing), "status stays landing");
    assert_eq!(
        (s.transactions, s.rejected),
        (0, 0),
        "no rows and no rejects survive an abort"
    );
    let f = file_entry(w, file_id);
    assert_eq!(f.status, "landing");
    assert_eq!(f.rows_loaded, None, "no counts recorded by an aborted load");
    let mid = summary(w);
    assert_eq!(
        mid.transactions, before.transactions,
        "transactions unchanged"
    );
    assert_eq!(mid.rejected_rows, before.rejected_rows, "rejects unchanged");
    assert_eq!(
        mid.warnings_by_rule, before.warnings_by_rule,
        "warnings unchanged"
    );
    assert_eq!(mid.files, before.files, "file statuses unchanged");

    // The next attempt resumes the claim and loads everything once.
    let run2 = start_run(w, "abort-retry");
    assert_eq!(
        w.claim(&new_file(&bytes, "abort.csv", &run2))
            .expect("claim failed"),
        Claim::Resume {
            file_id,
            lake_key: file.lake_key.clone()
        }
    );
    let tally = load(w, &plan(file_id, &run2, NEVER_FAIL), &bytes);
    assert_eq!(
        (
            tally.rows_read,
            tally.rows_loaded,
            tally.rows_rejected,
            tally.rows_duplicate
        ),
        (5, 3, 1, 1),
        "the retry loads as if the aborted attempt never happened"
    );
    assert_control_totals(w, file_id, &tally);
    let after = summary(w);
    assert_eq!(delta(after.transactions, before.transactions), 3);
    assert_eq!(delta(after.rejected_rows, before.rejected_rows), 1);
    assert_eq!(
        delta(
            count(&after.warnings_by_rule, "invalid_gender"),
            count(&before.warnings_by_rule, "invalid_gender")
        ),
        1
    );
    finish_run(w, &run);
    finish_run(w, &run2);
}

/// A file whose rejected share exceeds `max_reject_share` fails as a whole: nothing of
/// it is kept except its quarantined rows.
pub fn reject_share_fails_the_file(w: &mut Warehouse) {
    let p = format!("share{}-", nonce());
    let run = start_run(w, "share");
    let good: Vec<Row> = (0..18)
        .map(|n| {
            let r = Row::new(&format!("{p}{n}"), "10.00");
            if n == 0 {
                r.with(|r| r.location = String::new()) // a warning, not counted in summary
            } else {
                r
            }
        })
        .collect();
    let mut rows = good.clone();
    rows.insert(5, Row::new(&format!("{p}bad1"), "abc")); // invalid_amount
    rows.insert(
        9,
        Row::new(&format!("{p}bad2"), "1.00").with(|r| r.customer = String::new()),
    );
    let bytes = csv_of(&rows);
    let before = summary(w);
    let (file_id, t) = ingest(w, &run, "share.csv", &bytes, 0.05);
    assert!(
        t.failure.is_some(),
        "2 of 20 rows rejected (10%) exceeds 5%: the file fails"
    );
    assert_eq!((t.rows_read, t.rows_rejected), (20, 2));
    let s = stored(w, file_id);
    assert_eq!(s.status, Some(FileStatus::Failed));
    assert_eq!(
        (s.transactions, s.transactions_amount),
        (0, Total::default())
    );
    assert_eq!(s.recorded.rows_loaded, 0, "files records nothing loaded");
    assert_eq!(
        s.rejected, 2,
        "rejected rows stay quarantined for diagnosis"
    );
    let f = file_entry(w, file_id);
    assert_eq!(f.status, "failed");
    assert_eq!(f.error, t.failure, "the failure reason is recorded");
    let lines: Vec<(u64, String)> = rejects_of(w, file_id)
        .into_iter()
        .map(|r| (r.line_no, r.rule))
        .collect();
    assert_eq!(
        lines,
        [
            (7, "invalid_amount".to_owned()),
            (11, "missing_customer_id".to_owned())
        ]
    );
    let mid = summary(w);
    assert_eq!(mid.transactions, before.transactions, "nothing loaded");
    assert_eq!(
        delta(count(&mid.files, "failed"), count(&before.files, "failed")),
        1
    );
    assert_eq!(
        count(&mid.warnings_by_rule, "missing_location"),
        count(&before.warnings_by_rule, "missing_location"),
        "warnings of a failed file are not counted"
    );
    match w
        .claim(&new_file(&bytes, "share.csv", &run))
        .expect("claim failed")
    {
        Claim::Duplicate {
            file_id: id,
            status,
            ..
        } => {
            assert_eq!((id, status), (file_id, FileStatus::Failed));
        }
        other => panic!("a failed file's content should claim as Duplicate, got {other:?}"),
    }

    // Its ids were not kept: another file loads them as new rows.
    let (_, t2) = ingest(w, &run, "share_fixed.csv", &csv_of(&good), 0.05);
    assert_eq!(t2.failure, None);
    assert_eq!(
        (t2.rows_loaded, t2.rows_duplicate, t2.rows_rejected),
        (18, 0, 0),
        "ids of a failed file load later"
    );

    // At exactly the limit a file is loaded: 1 of 20 is 5%.
    let mut rows: Vec<Row> = (0..19)
        .map(|n| Row::new(&format!("{p}edge{n}"), "1.00"))
        .collect();
    rows.push(Row::new(&format!("{p}edge-bad"), "-1.00"));
    let (_, t3) = ingest(w, &run, "share_edge.csv", &csv_of(&rows), 0.05);
    assert_eq!(t3.failure, None, "5% rejected is not above 5%");
    assert_eq!((t3.rows_loaded, t3.rows_rejected), (19, 1));
    finish_run(w, &run);
    assert_catalog_figures(w);
}

/// Quarantined rows can be listed by file and rule with line numbers and raw text;
/// bytes that are not UTF-8 are kept (and returned lossy).
pub fn rejects_are_queryable(w: &mut Warehouse) {
    let p = format!("rej{}-", nonce());
    let id = |n: u32| format!("{p}{n}");
    let run = start_run(w, "rejects");
    let bad_date = Row::new(&id(1), "7.25").with(|r| r.date = "32/8/16".into());
    let negative = Row::new(&id(3), "-5.00");
    let no_customer = Row::new(&id(4), "2.00").with(|r| r.customer = String::new());
    let short = format!("{},C1", id(5));
    let mut latin1 = Row::new(&id(6), "1.00")
        .with(|r| r.location = "MUNCHEN".into())
        .line()
        .into_bytes();
    let at = latin1
        .windows(7)
        .position(|w| w == b"MUNCHEN")
        .expect("location in line")
        + 1;
    latin1[at] = 0xDC; // Latin-1 'Ü': not UTF-8
    let mut bytes = csv(&[
        bad_date.line(),                 // 2 invalid_transaction_date
        Row::new(&id(2), "1.00").line(), // 3 loaded
        negative.line(),                 // 4 negative_amount
        no_customer.line(),              // 5 missing_customer_id
        short.clone(),                   // 6 malformed_row
    ]);
    bytes.extend_from_slice(&latin1); // 7 invalid_encoding
    bytes.push(b'\n');
    bytes.extend_from_slice(Row::new(&id(7), "1.00").line().as_bytes()); // 8 loaded
    bytes.push(b'\n');

    let (file_id, t) = ingest(w, &run, "rejects.csv", &bytes, NEVER_FAIL);
    assert_eq!((t.rows_read, t.rows_loaded, t.rows_rejected), (7, 2, 5));
    assert_eq!(
        t.amount_rejected,
        total(&["7.25", "-5.00", "2.00"]),
        "parsed amounts of rejected rows"
    );

    let all = rejects_of(w, file_id);
    let got: Vec<(u64, &str, &str)> = all
        .iter()
        .map(|r| (r.line_no, r.rule.as_str(), r.raw.as_str()))
        .collect();
    let lossy = String::from_utf8_lossy(&latin1).into_owned();
    let (l2, l4, l5) = (bad_date.line(), negative.line(), no_customer.line());
    assert_eq!(
        got,
        [
            (2, "invalid_transaction_date", l2.as_str()),
            (4, "negative_amount", l4.as_str()),
            (5, "missing_customer_id", l5.as_str()),
            (6, "malformed_row", short.as_str()),
            (7, "invalid_encoding", lossy.as_str()),
        ],
        "every rejected line of the file, in line order, with raw text"
    );
    assert!(lossy.contains('\u{FFFD}') && lossy.contains("NCHEN"));
    assert!(
        all.iter()
            .all(|r| r.file_id == file_id && r.file == "rejects.csv")
    );
    assert_eq!(all[1].field.as_deref(), Some("amount"));
    assert_eq!(all[2].field.as_deref(), Some("customer_id"));
    assert!(
        all[0].detail.as_deref().unwrap_or("").contains("32/8/16"),
        "the detail quotes the bad value: {:?}",
        all[0].detail
    );

    let by = |w: &mut Warehouse, file_id: Option<i64>, rule: Option<&str>, limit: u64| {
        w.rejects(&RejectFilter {
            file_id,
            rule: rule.map(str::to_owned),
            limit,
        })
        .expect("rejects() failed")
    };
    let neg = by(w, Some(file_id), Some("negative_amount"), 100);
    assert_eq!(neg.len(), 1, "filter by file and rule: {neg:?}");
    assert_eq!((neg[0].line_no, neg[0].raw.as_str()), (4, l4.as_str()));
    let limited = by(w, Some(file_id), None, 2);
    assert_eq!(
        limited.iter().map(|r| r.line_no).collect::<Vec<_>>(),
        [2, 4],
        "limit keeps the first lines"
    );
    assert!(by(w, Some(file_id), Some("no_such_rule"), 100).is_empty());
    assert!(by(w, Some(file_id), Some("conflicting_duplicate"), 100).is_empty());

    // A second file: filtering by rule alone spans files, by file excludes others.
    let (file2, _) = ingest(
        w,
        &run,
        "rejects2.csv",
        &csv_of(&[Row::new(&id(10), "-1.00"), Row::new(&id(11), "1.00")]),
        NEVER_FAIL,
    );
    let neg_all = by(w, None, Some("negative_amount"), u64::MAX);
    assert!(neg_all.iter().all(|r| r.rule == "negative_amount"));
    let ours: Vec<(i64, u64)> = neg_all
        .iter()
        .filter(|r| r.file_id == file_id || r.file_id == file2)
        .map(|r| (r.file_id, r.line_no))
        .collect();
    assert_eq!(ours, [(file_id, 4), (file2, 2)], "rule filter spans files");
    let only2 = by(w, Some(file2), None, 100);
    assert_eq!(
        only2
            .iter()
            .map(|r| (r.file_id, r.line_no))
            .collect::<Vec<_>>(),
        [(file2, 2)]
    );
    finish_run(w, &run);
    assert_catalog_figures(w);
}

/// Placeholder birth dates, invalid genders and empty locations are loaded as NULL and
/// counted by rule.
pub fn warnings_counted(w: &mut Warehouse) {
    let p = format!("warn{}-", nonce());
    let id = |n: u32| format!("{p}{n}");
    let run = start_run(w, "warnings");
    let placeholder = Row::new(&id(1), "1.00").with(|r| r.dob = "1/1/1800".into());
    let gender_x = Row::new(&id(2), "2.00").with(|r| r.gender = "X".into());
    let no_location = Row::new(&id(3), "3.00").with(|r| r.location = String::new());
    let all_three = Row::new(&id(4), "4.00").with(|r| {
        r.dob = "1/1/1800".into();
        r.gender = "X".into();
        r.location = String::new();
    });
    let clean = Row::new(&id(5), "5.00");
    let before = summary(w);
    let (_, t) = ingest(
        w,
        &run,
        "warnings.csv",
        &csv_of(&[
            placeholder.clone(),
            gender_x.clone(),
            no_location.clone(),
            all_three.clone(),
            clean,
        ]),
        NEVER_FAIL,
    );
    assert_eq!(
        (t.rows_loaded, t.rows_rejected),
        (5, 0),
        "warnings do not reject"
    );
    let want = BTreeMap::from([
        ("invalid_gender", 2),
        ("missing_location", 2),
        ("placeholder_dob", 2),
    ]);
    assert_eq!(warnings_by_rule(&t), want, "tally warnings by rule");
    let after = summary(w);
    for (rule, n) in &want {
        assert_eq!(
            delta(
                count(&after.warnings_by_rule, rule),
                count(&before.warnings_by_rule, rule)
            ),
            *n,
            "summary warnings for {rule}"
        );
    }

    // The attributes are stored as NULL: the same rows with the attribute simply
    // missing are identical (duplicates); with a real value they conflict.
    let (file2, t2) = ingest(
        w,
        &run,
        "warnings_again.csv",
        &csv_of(&[
            placeholder.clone().with(|r| r.dob = String::new()),
            gender_x.clone().with(|r| r.gender = String::new()),
            no_location.clone().with(|r| r.location = "nan".into()),
            all_three.with(|r| {
                r.dob = "NULL".into();
                r.gender = "N/A".into();
            }),
            gender_x.with(|r| r.gender = "M".into()),
            placeholder.with(|r| r.dob = "10/1/94".into()),
        ]),
        NEVER_FAIL,
    );
    assert_eq!(
        (t2.rows_loaded, t2.rows_duplicate, t2.rows_rejected),
        (0, 4, 2),
        "NULL equals NULL; a value differs from NULL"
    );
    assert_eq!(
        warnings_by_rule(&t2),
        BTreeMap::new(),
        "only loaded rows count warnings"
    );
    let details: Vec<(u64, String)> = rejects_of(w, file2)
        .into_iter()
        .map(|r| (r.line_no, r.detail.unwrap_or_default()))
        .collect();
    assert_eq!(details.len(), 2);
    assert!(
        details[0].1.contains("gender") && details[1].1.contains("customer_dob"),
        "details name the differing column: {details:?}"
    );
    finish_run(w, &run);
    assert_catalog_figures(w);
}

/// Runs are recorded; one left `running` is marked `aborted` by the next start.
pub fn runs(w: &mut Warehouse) {
    let tag = nonce();
    let pause = || std::thread::sleep(std::time::Duration::from_millis(5));
    let find = |w: &mut Warehouse, id: &str| {
        summary(w)
            .recent_runs
            .into_iter()
            .find(|r| r.run_id == id)
            .unwrap_or_else(|| panic!("run {id} missing from recent_runs"))
    };
    pause();
    let r1 = format!("run1-{tag}");
    let t1 = bankpipe::clock::now_rfc3339();
    w.start_run(&r1, &t1).expect("start_run failed");
    let e = find(w, &r1);
    assert_eq!(
        (e.status.as_str(), e.started_at.as_str(), e.finished_at),
        ("running", t1.as_str(), None)
    );
    pause();
    let f1 = bankpipe::clock::now_rfc3339();
    w.finish_run(&r1, &f1, "ok", r#"{"files":0}"#)
        .expect("finish_run failed");
    let e = find(w, &r1);
    assert_eq!(
        (e.status.as_str(), e.finished_at.as_deref()),
        ("ok", Some(f1.as_str()))
    );

    pause();
    let r2 = format!("run2-{tag}");
    w.start_run(&r2, &bankpipe::clock::now_rfc3339())
        .expect("start_run failed");
    // The process running r2 dies; the next run closes it.
    pause();
    let r3 = format!("run3-{tag}");
    w.start_run(&r3, &bankpipe::clock::now_rfc3339())
        .expect("start_run failed");
    assert_eq!(find(w, &r2).status, "aborted", "a dead run is aborted");
    assert_eq!(find(w, &r3).status, "running");
    assert_eq!(find(w, &r1).status, "ok", "finished runs are left alone");
    pause();
    w.finish_run(&r3, &bankpipe::clock::now_rfc3339(), "failed", "{}")
        .expect("finish_run failed");
    assert_eq!(find(w, &r3).status, "failed");

    let order: Vec<String> = summary(w)
        .recent_runs
        .into_iter()
        .map(|r| r.run_id)
        .filter(|id| id.ends_with(&tag))
        .collect();
    assert_eq!(order, [r3, r2, r1], "recent runs are newest first");
}

/// A generated file of 25,000 rows with defects spans several scan chunks and many
/// insert groups; the counts match what the generator injected and every total holds.
/// Loading the same rows again through another file makes them all duplicates.
pub fn bulk_load_across_chunks(w: &mut Warehouse) {
    let rows = 25_000;
    let first_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64);
    let opts = GenerateOptions {
        rows,
        seed: 7,
        defects: 0.02,
        format: OutputFormat::Csv,
        first_id,
        month: None,
    };
    let mut bytes = Vec::new();
    let stats = generate(&opts, &mut bytes).expect("generate failed");
    assert!(bytes.len() > 2 * 512 * 1024, "more than two scan chunks");
    let defects = |k: &str| stats.defects.get(k).copied().unwrap_or(0);
    let all_defects: u64 = stats.defects.values().sum();

    let run = start_run(w, "bulk");
    let before = summary(w);
    let (_, t) = ingest(w, &run, "bulk.csv", &bytes, NEVER_FAIL);
    assert_eq!(t.failure, None);
    assert_eq!(t.rows_read, rows);
    assert_eq!(
        t.rows_duplicate,
        defects("exact_duplicate"),
        "exact duplicates"
    );
    assert_eq!(
        t.rejects
            .get(&Rule::ConflictingDuplicate)
            .copied()
            .unwrap_or(0),
        defects("conflicting_duplicate"),
        "conflicting duplicates"
    );
    assert_eq!(
        t.rows_rejected,
        all_defects - defects("exact_duplicate"),
        "every other defect is a rejection"
    );
    assert_eq!(t.rows_loaded, rows - all_defects, "clean rows are loaded");
    let after = summary(w);
    assert_eq!(
        delta(after.transactions, before.transactions),
        t.rows_loaded
    );

    // The same rows plus one new row: another digest, everything else already known.
    let extra = Row::new(&format!("bulk{}", nonce()), "1.00").line();
    bytes.extend_from_slice(extra.as_bytes());
    bytes.push(b'\n');
    let (_, t2) = ingest(w, &run, "bulk_again.csv", &bytes, NEVER_FAIL);
    assert_eq!(
        (t2.rows_loaded, t2.rows_duplicate, t2.rows_rejected),
        (1, t.rows_loaded + t.rows_duplicate, t.rows_rejected),
        "a re-delivery only loads the new row"
    );
    assert_eq!(t2.amount_duplicate, {
        let mut d = t.amount_loaded.clone();
        d.merge(&t.amount_duplicate);
        d
    });
    finish_run(w, &run);
}

/// Runs every check of [`SUITE`] on one warehouse, closing and reopening it (with
/// `open`) between checks and verifying that everything the read API shows is the same
/// after reopening; then checks that a claim and an aborted load survive reopening.
pub fn whole_suite_reopening(open: &mut dyn FnMut() -> Warehouse) {
    let mut last: Option<(&str, String)> = None;
    for (name, check) in SUITE {
        let mut w = open();
        if let Some((prev, snap)) = &last {
            assert_eq!(
                &snapshot(&mut w),
                snap,
                "state after {prev} changed across reopening"
            );
        }
        check(&mut w);
        last = Some((*name, snapshot(&mut w)));
    }

    // A claim made before closing is resumed after reopening; an aborted load leaves
    // nothing behind after reopening either.
    let bytes = csv_of(&[Row::new(&format!("reopen{}", nonce()), "9.99")]);
    let mut w = open();
    let run = start_run(&mut w, "reopen");
    let file = new_file(&bytes, "reopen.csv", &run);
    let file_id = claim_new(&mut w, &file);
    let aborted = load_with(
        &mut w,
        &plan(file_id, &run, NEVER_FAIL),
        &bytes,
        &mut |_| Err("stop".into()),
    );
    assert!(matches!(aborted, Err(WarehouseError::Aborted(_))));
    drop(w);
    let mut w = open();
    let s = stored(&mut w, file_id);
    assert_eq!(
        (s.status, s.transactions, s.rejected),
        (Some(FileStatus::Landing), 0, 0)
    );
    let run2 = start_run(&mut w, "reopen-retry");
    assert_eq!(
        w.claim(&new_file(&bytes, "reopen.csv", &run2))
            .expect("claim failed"),
        Claim::Resume {
            file_id,
            lake_key: file.lake_key.clone()
        }
    );
    assert_eq!(
        summary(&mut w)
            .recent_runs
            .iter()
            .find(|r| r.run_id == run)
            .map(|r| r.status.as_str()),
        Some("aborted"),
        "the run left running before reopening is aborted by the next start"
    );
    let tally = load(&mut w, &plan(file_id, &run2, NEVER_FAIL), &bytes);
    finish_run(&mut w, &run2);
    drop(w);
    let mut w = open();
    assert_control_totals(&mut w, file_id, &tally);
    assert_eq!(tally.rows_loaded, 1);
    assert!(matches!(
        w.claim(&file).expect("claim failed"),
        Claim::Duplicate { .. }
    ));
}

/// A reprocess plan: the file may already be finished; its outcome is replaced.
pub fn replan(file_id: i64, run_id: &str, max_reject_share: f64) -> LoadPlan {
    LoadPlan {
        replace: true,
        ..plan(file_id, run_id, max_reject_share)
    }
}

/// Asserts that a file's catalog row balances and agrees with what `transactions` and
/// `duplicate_rows` hold for it, and returns (loaded, duplicate) rows.
pub fn assert_file_consistent(w: &mut Warehouse, file_id: i64) -> (u64, u64) {
    let s = stored(w, file_id);
    let r = &s.recorded;
    assert!(
        r.balances(),
        "file {file_id}: recorded counts balance: {r:?}"
    );
    assert_eq!(
        (s.transactions, &s.transactions_amount),
        (r.rows_loaded, &r.amount_loaded),
        "file {file_id}: transactions agree with the catalog"
    );
    assert_eq!(
        s.duplicates, r.rows_duplicate,
        "file {file_id}: duplicate lineage agrees with the catalog"
    );
    (r.rows_loaded, r.rows_duplicate)
}

/// Issue 8 section 4: file A loads T1, file B counts an identical T1 as a duplicate. A
/// reprocess of A that now fails A as a whole keeps T1, moved to B (B's counts move it
/// from duplicate to loaded); a dry run shows the move and changes nothing; reprocessing
/// A so that it loads again counts T1 once (a duplicate in A now); and B failing in turn
/// moves T1 back to A. Every file's totals hold throughout.
pub fn reprocess_keeps_rows_other_files_carry(w: &mut Warehouse) {
    let p = format!("move{}-", nonce());
    let id = |s: &str| format!("{p}{s}");
    let run = start_run(w, "move");
    let t1 = Row::new(&id("t1"), "25.00").with(|r| r.location = String::new());
    let file_a = csv_of(&[
        t1.clone(),
        Row::new(&id("a-bad"), "abc"), // invalid_amount: A fails at a share of 0
        Row::new(&id("a1"), "1.00"),
        Row::new(&id("a2"), "2.00"),
    ]);
    let file_b = csv_of(&[
        Row::new(&id("b1"), "3.00"),
        Row::new(&id("b-bad"), "-1"), // B can fail too
        t1.clone(),                   // line 4: identical to A's line 2
        Row::new(&id("b2"), "4.00"),
    ]);
    let start = summary(w);
    let (a, ta) = ingest(w, &run, "move_a.csv", &file_a, NEVER_FAIL);
    assert_eq!((ta.rows_loaded, ta.rows_rejected), (3, 1));
    let (b, tb) = ingest(w, &run, "move_b.csv", &file_b, NEVER_FAIL);
    assert_eq!(
        (tb.rows_loaded, tb.rows_duplicate, tb.rows_rejected),
        (2, 1, 1)
    );

    // Dry run: the move is reported, nothing changes.
    let before = snapshot(w);
    let mut seen = None;
    let dry = load_with(w, &replan(a, &run, 0.0), &file_a, &mut |t| {
        seen = Some(t.clone());
        Err("dry run".into())
    });
    assert!(matches!(dry, Err(WarehouseError::Aborted(_))), "{dry:?}");
    let seen = seen.expect("before_commit saw the tally");
    assert!(seen.failure.is_some(), "A fails at a reject share of 0");
    assert_eq!(
        seen.rehomed,
        [bankpipe::warehouse::Rehomed {
            file_id: b,
            rows: 1,
            amount: total(&["25.00"]),
        }],
        "the dry run names the row that would move and where"
    );
    assert_eq!(snapshot(w), before, "a dry run changes nothing");

    // A fails as a whole: T1 stays, now B's; a1 and a2 go.
    let t = load(w, &replan(a, &run, 0.0), &file_a);
    assert!(t.failure.is_some());
    assert_eq!(t.rehomed, seen.rehomed);
    assert_control_totals(w, a, &t);
    assert_eq!(
        assert_file_consistent(w, b),
        (3, 0),
        "B: T1 moved from duplicate to loaded"
    );
    let sb = stored(w, b);
    assert_eq!(sb.recorded.amount_loaded, total(&["3", "25", "4"]));
    assert_eq!(sb.recorded.amount_duplicate, Total::default());
    let mid = summary(w);
    assert_eq!(
        delta(mid.transactions, start.transactions),
        3,
        "T1, b1, b2 stored"
    );
    assert_eq!(
        count(&mid.warnings_by_rule, "missing_location"),
        count(&start.warnings_by_rule, "missing_location") + 1,
        "T1's warning moved to B with it"
    );

    // A loads again: T1 is counted once, as A's duplicate of B's row.
    for _ in 0..2 {
        let t = load(w, &replan(a, &run, NEVER_FAIL), &file_a);
        assert_eq!(
            (t.rows_loaded, t.rows_duplicate, t.rows_rejected),
            (2, 1, 1)
        );
        assert!(t.rehomed.is_empty(), "T1 is B's now: nothing to move");
        assert_control_totals(w, a, &t);
        assert_eq!(assert_file_consistent(w, b), (3, 0));
        assert_eq!(
            delta(summary(w).transactions, start.transactions),
            5,
            "T1, a1, a2, b1, b2: each once"
        );
    }

    // B fails in turn: T1 goes back to A, the file that still carries it.
    let t = load(w, &replan(b, &run, 0.0), &file_b);
    assert!(t.failure.is_some());
    assert_eq!(
        t.rehomed,
        [bankpipe::warehouse::Rehomed {
            file_id: a,
            rows: 1,
            amount: total(&["25.00"]),
        }]
    );
    assert_control_totals(w, b, &t);
    assert_eq!(assert_file_consistent(w, a), (3, 0));
    assert_eq!(delta(summary(w).transactions, start.transactions), 3);

    // A reprocess that loads T1 itself keeps it where it is.
    let t = load(w, &replan(a, &run, NEVER_FAIL), &file_a);
    assert!(t.rehomed.is_empty());
    assert_control_totals(w, a, &t);
    assert_eq!(
        (t.rows_loaded, t.rows_duplicate),
        (3, 0),
        "A holds T1 again"
    );
    finish_run(w, &run);
    assert_catalog_figures(w);
}

/// A file already loaded cannot be loaded again under the same claim: the second load
/// is refused and the warehouse is unchanged (exactly-once even if two workers race).
pub fn loading_a_finished_file_is_refused(w: &mut Warehouse) {
    let tag = nonce();
    let bytes = csv_of(&[
        Row::new(&format!("{tag}-1"), "1.00"),
        Row::new(&format!("{tag}-2"), "2.00"),
    ]);
    let id = claim_new(w, &new_file(&bytes, "once.csv", "r1"));
    let first = load(w, &plan(id, "r1", 1.0), &bytes);
    assert_eq!(first.rows_loaded, 2);
    let before = stored(w, id);
    match load_with(w, &plan(id, "r2", 1.0), &bytes, &mut |_| Ok(())) {
        Err(WarehouseError::NotClaimed { file_id, status }) => {
            assert_eq!(file_id, id);
            assert_eq!(status, "loaded");
        }
        other => panic!("a second load of a loaded file must be refused, got {other:?}"),
    }
    assert_eq!(stored(w, id), before, "a refused load changes nothing");
}

/// Encryption bookkeeping: a landing file's object key and data-key wrapping are
/// recorded (and cleared), a finished file's are not changed by `record_landing`, and `rewrap` swaps wrappings
/// only where the row still holds the one it was read with.
pub fn data_keys_are_recorded_and_rewrapped(w: &mut Warehouse) {
    use bankpipe::crypt::Sealed;
    let sealed = |id: &str, wrapped: &str| Sealed {
        key_id: id.into(),
        wrapped: wrapped.into(),
    };
    let tag = nonce();
    let bytes = csv_of(&[Row::new(&format!("{tag}-k"), "1.00")]);
    let id = claim_new(w, &new_file(&bytes, "keys.csv", "r1"));
    let entry = |w: &mut Warehouse| file_entry(w, id);
    assert_eq!(entry(w).sealed(), None);
    assert_eq!(w.master_key_id().unwrap(), None);
    w.record_landing(id, "raw/k.csv", None).unwrap();
    assert_eq!(
        w.master_key_id().unwrap(),
        None,
        "a clear landing sets no key"
    );
    w.record_landing(id, "raw/k.csv.0001.enc", Some(&sealed("mk-a", "w1")))
        .unwrap();
    assert_eq!(entry(w).sealed(), Some(sealed("mk-a", "w1")));
    assert_eq!(entry(w).lake_key, "raw/k.csv.0001.enc");
    assert_eq!(
        w.master_key_id().unwrap().as_deref(),
        Some("mk-a"),
        "the first encrypted landing sets the current key"
    );
    // Another key is refused and changes nothing.
    match w.record_landing(id, "raw/k.csv.0009.enc", Some(&sealed("mk-z", "zz"))) {
        Err(WarehouseError::WrongMasterKey {
            configured,
            current,
        }) => assert_eq!((configured.as_str(), current.as_str()), ("mk-z", "mk-a")),
        other => panic!("{other:?}"),
    }
    assert_eq!(entry(w).sealed(), Some(sealed("mk-a", "w1")));
    w.record_landing(id, "raw/k.csv.0002.enc", Some(&sealed("mk-a", "w2")))
        .unwrap();
    load(w, &plan(id, "r1", 1.0), &bytes);
    // Loaded: a late attempt is refused and changes nothing; only rotation may change
    // the wrapping now.
    assert!(matches!(
        w.record_landing(id, "raw/k.csv.0003.enc", Some(&sealed("mk-a", "w9"))),
        Err(WarehouseError::NotClaimed { .. })
    ));
    assert_eq!(entry(w).sealed(), Some(sealed("mk-a", "w2")));
    assert_eq!(entry(w).lake_key, "raw/k.csv.0002.enc");

    // A rotation from a key that is not current is refused, nothing changes.
    assert!(matches!(
        w.rotate_master_key("mk-x", "mk-y", &mut |_, _| unreachable!()),
        Err(WarehouseError::WrongMasterKey { .. })
    ));
    // A wrapping that does not open aborts the whole rotation.
    assert!(matches!(
        w.rotate_master_key("mk-a", "mk-b", &mut |_, _| Err(
            bankpipe::crypt::KeyError::Unwrap {
                key_id: "mk-a".into()
            }
        )),
        Err(WarehouseError::Rewrap { file_id, .. }) if file_id == id
    ));
    assert_eq!(entry(w).sealed(), Some(sealed("mk-a", "w2")));
    assert_eq!(w.master_key_id().unwrap().as_deref(), Some("mk-a"));

    // A second file claimed by a worker that checked its key (mk-a) before the rotation.
    let bytes2 = csv_of(&[Row::new(&format!("{tag}-k2"), "2.00")]);
    let id2 = claim_new(w, &new_file(&bytes2, "keys2.csv", "r2"));
    let mut seen = Vec::new();
    let rotated = w
        .rotate_master_key("mk-a", "mk-b", &mut |sha256, old| {
            seen.push((sha256.to_owned(), old.clone()));
            Ok(sealed("mk-b", "w3"))
        })
        .unwrap();
    assert_eq!(rotated, 1);
    assert_eq!(seen, [(entry(w).sha256, sealed("mk-a", "w2"))]);
    assert_eq!(entry(w).sealed(), Some(sealed("mk-b", "w3")));
    assert_eq!(w.master_key_id().unwrap().as_deref(), Some("mk-b"));
    // That worker now records its landing: refused, naming both ids; nothing recorded.
    match w.record_landing(id2, "raw/k2.csv.0001.enc", Some(&sealed("mk-a", "v1"))) {
        Err(e @ WarehouseError::WrongMasterKey { .. }) => {
            let text = e.to_string();
            assert!(text.contains("mk-a") && text.contains("mk-b"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(file_entry(w, id2).sealed(), None);
    w.record_landing(id2, "raw/k2.csv.0002.enc", Some(&sealed("mk-b", "v2")))
        .unwrap();
    // A rerun of the same rotation finds nothing left under the old key.
    assert_eq!(
        w.rotate_master_key("mk-a", "mk-b", &mut |_, _| unreachable!())
            .unwrap(),
        0
    );
    assert_eq!(w.master_key_id().unwrap().as_deref(), Some("mk-b"));
}

/// Issue 8 §8: a claim that stopped (its source changed while being read) records why,
/// stays resumable by the same content (which clears the reason), is listed as
/// unfinished, and is withdrawn once another version of the same inbox file finished.
pub fn stopped_claims_are_shown_resumed_and_withdrawn(w: &mut Warehouse) {
    let p = format!("stop{}-", nonce());
    let name = format!("{p}grow.csv");
    let run = start_run(w, "stopped");
    let snapshot = csv_of(&[Row::new(&format!("{p}1"), "1.00")]);
    let first = new_file(&snapshot, &name, &run);
    let stopped = claim_new(w, &first);
    w.stop_claim(stopped, "stopped: changed while being read")
        .expect("stop_claim failed");
    w.release(stopped).expect("release failed");
    assert_eq!(file_entry(w, stopped).status, "landing");
    assert_eq!(
        file_entry(w, stopped).error.as_deref(),
        Some("stopped: changed while being read")
    );
    let listed = w.unfinished().expect("unfinished failed");
    let mine = listed
        .iter()
        .find(|u| u.file_id == stopped)
        .expect("listed");
    assert_eq!(
        mine.reason.as_deref(),
        Some("stopped: changed while being read")
    );
    assert_eq!(
        summary(w)
            .unfinished
            .iter()
            .filter(|u| u.file_id == stopped)
            .count(),
        1
    );

    // The same content again resumes the claim, and the reason goes.
    assert!(matches!(w.claim(&first), Ok(Claim::Resume { file_id, .. }) if file_id == stopped));
    assert_eq!(file_entry(w, stopped).error, None);
    w.stop_claim(stopped, "stopped: changed again")
        .expect("stop_claim failed");
    w.release(stopped).expect("release failed");

    // Nothing is withdrawn for an unfinished version; a finished one withdraws it.
    let stable = csv_of(&[
        Row::new(&format!("{p}1"), "1.00"),
        Row::new(&format!("{p}2"), "2.00"),
    ]);
    let grown = new_file(&stable, &name, &run);
    let (file_id, tally) = ingest(w, &run, &name, &stable, NEVER_FAIL);
    assert_eq!(tally.rows_loaded, 2);
    assert_ne!(file_id, stopped);
    let other = new_file(&stable, &format!("{p}other.csv"), &run);
    assert_eq!(other.sha256, grown.sha256);
    let withdrawn = w
        .withdraw_stopped(&name, file_id)
        .expect("withdraw_stopped failed");
    assert_eq!(
        withdrawn.iter().map(|u| u.file_id).collect::<Vec<_>>(),
        [stopped]
    );
    assert_eq!(withdrawn[0].lake_key, first.lake_key);
    assert!(w.file(stopped).expect("file failed").is_none());
    assert!(
        w.unfinished()
            .expect("unfinished failed")
            .iter()
            .all(|u| u.file_id != stopped)
    );
    assert_eq!(file_entry(w, file_id).status, "loaded");
    finish_run(w, &run);
}
