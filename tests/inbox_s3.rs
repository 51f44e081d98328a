//! An S3 prefix as the inbox, on a real S3-compatible server (s3s-fs,
//! `tests/support/s3.rs`): it behaves like a folder inbox (issue 9). Only objects
//! directly under the prefix are processed, folder markers never fail a run, and
//! `min_file_age` skips objects the store says were modified too recently.
//!
//! s3s-fs keeps a `incoming/` marker PUT as a folder and never lists it, so the marker
//! object as AWS lists it (the prefix itself, zero bytes) is covered by
//! `lake::tests::inbox_listings_skip_folder_markers_and_deeper_keys`; here the markers
//! are made through the S3 API as a client would.

#[path = "support/s3.rs"]
mod s3;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use s3::S3Server;
use serde_json::Value;

fn bankpipe(dir: &Path, server: &S3Server) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
    c.current_dir(dir)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("BANKPIPE_WAREHOUSE_URL")
        .env_remove("BANKPIPE_MIN_FILE_AGE")
        .env_remove("BANKPIPE_CONFIG")
        .env("BANKPIPE_LAKE_URL", "s3://lake/raw")
        .env("BANKPIPE_LOG", "warn")
        .stdin(Stdio::null());
    for (k, v) in server.env() {
        c.env(k, v);
    }
    c
}

fn all_output(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const KAGGLE: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)";

fn kaggle_file(id: &str) -> String {
    format!("{KAGGLE}\n{id},C1,10/1/94,F,X,1.00,2/8/16,143207,25.0\n")
}

/// PUTs an object through the S3 API (curl's SigV4 signing), as the S3 console or a
/// client creating a "folder" does.
fn put_object(server: &S3Server, key: &str, body: &str) {
    let out = put_as_is(server, key, body);
    assert!(out.status.success(), "PUT {key}: {}", all_output(&out));
}

/// PUT `key` sent as it is written (`--path-as-is`: curl neither folds `..` nor `//`),
/// whatever the server answers.
fn put_as_is(server: &S3Server, key: &str, body: &str) -> Output {
    Command::new("curl")
        .args([
            "-sS",
            "-f",
            "-X",
            "PUT",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
        ])
        .args(["--user", &format!("{}:{}", s3::ACCESS_KEY, s3::SECRET_KEY)])
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .args(["--path-as-is", "--data-binary", body])
        .arg(format!("{}/{key}", server.endpoint()))
        .output()
        .expect("curl (with --aws-sigv4, 7.75 or later) is needed for this test")
}

fn set_age(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn an_s3_inbox_behaves_like_a_folder_markers_subfolders_and_min_file_age() {
    let server = S3Server::start(&["lake", "drop"]);
    put_object(&server, "drop/incoming/", "");
    put_object(&server, "drop/incoming/sub/", "");
    put_object(&server, "drop/incoming/old.csv", &kaggle_file("T1"));
    put_object(&server, "drop/incoming/fresh.csv", &kaggle_file("T2"));
    put_object(&server, "drop/incoming/sub/deep.csv", &kaggle_file("T3"));
    let stored = |key: &str| server.root().join("drop/incoming").join(key);
    set_age(&stored("old.csv"), 7200);
    set_age(&stored("sub/deep.csv"), 7200);
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = bankpipe(dir.path(), &server)
            .args(["run", "--json", "--inbox", "s3://drop/incoming/"])
            .args(extra)
            .output()
            .unwrap();
        let r: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", all_output(&out)));
        (r, out.status.code().unwrap())
    };
    let (r, code) = run(&["--min-file-age", "1h"]);
    assert_eq!(code, 0, "{r}");
    let files = r["files"].as_array().unwrap();
    let got: Vec<(&str, &str)> = files
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [("old.csv", "loaded"), ("fresh.csv", "too_recent")],
        "no marker, nothing from sub/: {r}"
    );
    assert!(
        files[1]["reason"]
            .as_str()
            .unwrap()
            .contains("min_file_age is 3600s"),
        "{r}"
    );
    // Without an age limit the fresh object loads; sub/ is still not searched.
    let (r, code) = run(&[]);
    assert_eq!(code, 0, "{r}");
    let got: Vec<(&str, &str)> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [("fresh.csv", "loaded"), ("old.csv", "duplicate_file")],
        "{r}"
    );
}

/// Every file below `root`, relative, sorted.
fn files_below(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Object keys that try to leave the inbox prefix (issue #13), on a real S3 server:
/// `../`, `//`, an absolute-looking key, percent-encoded dots and slashes (`%2e%2e%2f`)
/// and `#`. Listing `s3://drop/incoming/` reads only the objects directly under it, each
/// one it lists loads under its own key, the raw copies land under the lake's prefix as
/// `raw/<profile>/<yyyy>/<mm>/<sha256>.csv`, and nothing of the objects outside the
/// prefix reaches the warehouse, the lake or the data folder.
///
/// Findings: keys holding `%` (or `#`, `[`, …) were listed but never read (`object not
/// found`: the key was percent-encoded again on the way to the store, so a file named
/// `a%23b.csv` failed at every run); and one key object_store cannot represent (here a
/// newline) fails the whole listing, which was reported as `inbox unreachable` (exit 3,
/// an outage to wait out) and now names the key to rename (exit 2).
#[test]
fn inbox_keys_cannot_escape_the_inbox_prefix() {
    let server = S3Server::start(&["lake", "drop"]);
    // Outside the prefix: what a `../` or an absolute key would reach.
    put_object(&server, "drop/secret.csv", &kaggle_file("OUTSIDE1"));
    put_object(&server, "drop/other/x.csv", &kaggle_file("OUTSIDE2"));
    // s3s-fs resolves `..` in a key (it stores `incoming/../escaped.csv` as
    // `escaped.csv`, outside the prefix) and folds `//`; AWS would keep such keys as
    // they are, which the unit test `listing_failures_name_the_key_that_object_store_refuses`
    // covers.
    put_object(
        &server,
        "drop/incoming/../escaped.csv",
        &kaggle_file("OUTSIDE3"),
    );
    put_object(&server, "drop/incoming//double.csv", &kaggle_file("T1"));
    // A key starting with `/` (s3s-fs answers 500 and stores nothing; stored, it would
    // not be under the prefix either).
    let _ = put_as_is(&server, "drop//etc/absolute.csv", &kaggle_file("OUTSIDE4"));
    // Literal percent signs in keys (`%25` is `%` on the wire).
    put_object(
        &server,
        "drop/incoming/%252e%252e%252fencoded.csv",
        &kaggle_file("T2"),
    );
    put_object(
        &server,
        "drop/incoming/up%252f..%252f..%252fx.csv",
        &kaggle_file("T3"),
    );
    // A name starting with `.` is a hidden file, skipped as in a folder inbox.
    put_object(
        &server,
        "drop/incoming/..%252fhidden.csv",
        &kaggle_file("HIDDEN"),
    );
    put_object(&server, "drop/incoming/a%2523b.csv", &kaggle_file("T4"));
    let under_prefix: Vec<String> = std::fs::read_dir(server.root().join("drop/incoming"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(under_prefix.len(), 5, "{under_prefix:?}");

    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let out = bankpipe(dir.path(), &server)
            .args(["run", "--json", "--inbox", "s3://drop/incoming/"])
            .output()
            .unwrap();
        let r: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", all_output(&out)));
        (r, out.status.code().unwrap(), all_output(&out))
    };
    let (r, code, output) = run();
    assert_eq!(code, 0, "{r}\n{output}");
    let mut got: Vec<(String, String)> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut expected: Vec<(String, String)> = [
        "%2e%2e%2fencoded.csv",
        "up%2f..%2f..%2fx.csv",
        "a%23b.csv",
        "double.csv",
    ]
    .iter()
    .map(|k| (k.to_string(), "loaded".to_owned()))
    .collect();
    expected.sort();
    assert_eq!(got, expected, "{r}");

    // Nothing from outside the prefix in the warehouse.
    let db = rusqlite::Connection::open(dir.path().join("warehouse.db")).unwrap();
    let mut ids: Vec<String> = db
        .prepare("SELECT transaction_id FROM transactions ORDER BY transaction_id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ids.sort();
    assert_eq!(ids, ["T1", "T2", "T3", "T4"]);
    // The raw copies: four, each under the lake's prefix at its content address.
    let lake = files_below(&server.root().join("lake"));
    assert_eq!(lake.len(), 4, "{lake:?}");
    for key in &lake {
        let parts: Vec<&str> = key.split('/').collect();
        assert!(
            parts.len() == 6
                && parts[..2] == ["raw", "raw"]
                && parts[5].len() == 64 + 4
                && parts[5].ends_with(".csv")
                && !key.contains(".."),
            "{key}"
        );
    }
    // Nothing left in the spool, nothing written elsewhere in the data folder, the
    // inbox's objects untouched.
    assert!(
        files_below(&dir.path().join(".spool"))
            .iter()
            .all(|f| f.ends_with("/lock")),
        "{:?}",
        files_below(&dir.path().join(".spool"))
    );
    let mut data: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("warehouse.db") && !n.ends_with(".lock"))
        .collect();
    data.sort();
    assert_eq!(
        data,
        [".spool"],
        "only the spool folder besides the warehouse"
    );
    assert_eq!(
        files_below(&server.root().join("drop/incoming")).len(),
        5,
        "the inbox's objects are not removed"
    );

    // A key object_store cannot represent (a newline; S3 allows it): the run says which
    // object to rename, reads nothing, and is not an outage (exit 2, not 3).
    std::fs::write(
        server.root().join("drop/incoming/new\nline.csv"),
        kaggle_file("T5"),
    )
    .unwrap();
    let (r, code, output) = run();
    assert_eq!(code, 2, "{r}\n{output}");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("holds an object whose key cannot be read")
            && error.contains("new\\nline.csv")
            && !error.contains("unreachable"),
        "{error}"
    );
    assert!(
        !output.contains("new\nline"),
        "the key's newline is escaped: {output}"
    );
    std::fs::remove_file(server.root().join("drop/incoming/new\nline.csv")).unwrap();
    let (r, code, _) = run();
    assert_eq!(code, 0, "{r}");
}
