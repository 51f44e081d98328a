//! The lake on a real S3-compatible server (s3s-fs, `tests/support/s3.rs`): landing,
//! multipart objects over 64 MB, `verify` catching a changed byte, and clear exit-3
//! errors for a missing bucket, wrong credentials or an unreachable endpoint, with no
//! secret in any output.

#[path = "support/s3.rs"]
mod s3;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use s3::S3Server;
use serde_json::Value;

fn bankpipe(dir: &Path, server: &S3Server, lake: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
    c.current_dir(dir)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("BANKPIPE_WAREHOUSE_URL")
        .env("BANKPIPE_LAKE_URL", lake)
        .env("BANKPIPE_LOG", "warn")
        .stdin(Stdio::null());
    for (k, v) in server.env() {
        c.env(k, v);
    }
    c
}

fn generate(path: &Path, rows: u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
        .args([
            "generate",
            "--rows",
            &rows.to_string(),
            "--defects",
            "0",
            "--out",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
}

fn all_output(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn lands_large_files_in_s3_and_verify_catches_a_changed_byte() {
    let server = S3Server::start(&["lake"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    // ~72 MB: more than 64 MB, so the upload is multipart (8 MiB parts).
    generate(&dir.path().join("inbox/big.csv"), 1_100_000);
    generate(&dir.path().join("inbox/small.csv"), 100);
    let out = bankpipe(dir.path(), &server, "s3://lake/raw-zone")
        .args(["run", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let big = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "big.csv")
        .unwrap();
    let key = big["lake_key"].as_str().unwrap();
    let stored = server.root().join("lake/raw-zone").join(key);
    let original = std::fs::read(dir.path().join("inbox/big.csv")).unwrap();
    assert!(original.len() > 64 << 20);
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        original,
        "byte-for-byte copy"
    );

    let verify = || {
        bankpipe(dir.path(), &server, "s3://lake/raw-zone")
            .args(["verify", "--json"])
            .output()
            .unwrap()
    };
    let ok = verify();
    assert_eq!(ok.status.code(), Some(0), "{}", all_output(&ok));
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[12_345] ^= 0x20;
    std::fs::write(&stored, bytes).unwrap();
    let bad = verify();
    assert_eq!(bad.status.code(), Some(1), "{}", all_output(&bad));
    let v: Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(v["not_intact"], 1);
    let text = all_output(&bad);
    assert!(!text.contains(s3::SECRET_KEY));
}

#[test]
fn missing_bucket_wrong_keys_and_unreachable_endpoint_exit_3_without_secrets() {
    let server = S3Server::start(&["lake"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    generate(&dir.path().join("inbox/a.csv"), 10);

    let missing = bankpipe(dir.path(), &server, "s3://no-such-bucket/x")
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(3), "{}", all_output(&missing));
    assert!(
        all_output(&missing).contains("lake unreachable"),
        "{}",
        all_output(&missing)
    );

    let wrong = bankpipe(dir.path(), &server, "s3://lake/x")
        .arg("run")
        .env("AWS_SECRET_ACCESS_KEY", "WrongSecretValue123")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(3), "{}", all_output(&wrong));
    let text = all_output(&wrong);
    assert!(!text.contains("WrongSecretValue123"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains("error")).count(),
        1,
        "one line: {text}"
    );

    let gone = bankpipe(dir.path(), &server, "s3://lake/x")
        .arg("run")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(3), "{}", all_output(&gone));
    assert!(!all_output(&gone).contains(s3::SECRET_KEY));
    // Nothing was loaded by the failed attempts.
    let status = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["status", "--json"])
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["transactions"], 0);
}

#[test]
fn an_s3_prefix_as_inbox_is_read_but_never_modified() {
    let server = S3Server::start(&["lake", "drop"]);
    let incoming = server.root().join("drop/incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    generate(&incoming.join("jan.csv"), 1_000);
    generate(&incoming.join("feb.csv.part"), 10); // an upload in progress: ignored
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        bankpipe(dir.path(), &server, "s3://lake/raw")
            .args(["run", "--json", "--inbox", "s3://drop/incoming/"])
            .output()
            .unwrap()
    };
    let first = run();
    assert_eq!(first.status.code(), Some(0), "{}", all_output(&first));
    let r: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(r["files"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["files"][0]["name"], "jan.csv");
    assert_eq!(r["files"][0]["rows_loaded"], 1_000);
    assert!(
        incoming.join("jan.csv").exists(),
        "the inbox object is kept"
    );
    let second = run();
    let r: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(r["files"][0]["status"], "duplicate_file");
}
