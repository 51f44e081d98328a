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
    let out = Command::new("curl")
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
        .args(["--data-binary", body])
        .arg(format!("{}/{key}", server.endpoint()))
        .output()
        .expect("curl (with --aws-sigv4, 7.75 or later) is needed for this test");
    assert!(out.status.success(), "PUT {key}: {}", all_output(&out));
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
