//! `bankpipe export --out s3://…` on a real S3-compatible server (s3s-fs, which stores
//! each object as a plain file): the same bytes as a folder export, the commit marker
//! written last, exit 2 for a missing bucket and exit 3 for an unreachable endpoint.

#[path = "support/s3.rs"]
mod s3;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use base64::Engine as _;
use s3::S3Server;
use serde_json::Value;

const HEADER: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)";

fn bankpipe(dir: &Path, server: &S3Server) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
    c.current_dir(dir)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("BANKPIPE_WAREHOUSE_URL")
        .env_remove("BANKPIPE_LAKE_URL")
        .env_remove("BANKPIPE_EXPORT_URL")
        .env(
            "BANKPIPE_PSEUDONYM_KEY",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        )
        .env("BANKPIPE_LOG", "warn")
        .stdin(Stdio::null());
    for (k, v) in server.env() {
        c.env(k, v);
    }
    c
}

fn run(dir: &Path, server: &S3Server, args: &[&str]) -> Output {
    bankpipe(dir, server).args(args).output().unwrap()
}

/// A complete 2016Q3 and a little history.
fn load(dir: &Path, server: &S3Server) {
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    let mut text = format!("{HEADER}\n");
    for (i, (date, amount)) in [
        ("20/6/16", "5.00"),
        ("1/7/16", "25.50"),
        ("1/7/16", "50.00"),
        ("15/8/16", "300.00"),
        ("30/9/16", "1.00"),
    ]
    .iter()
    .enumerate()
    {
        text.push_str(&format!(
            "T{i},C{},1/1/90,F,PUNE,100.00,{date},1200{i:02},{amount}\n",
            i % 2
        ));
    }
    std::fs::write(dir.join("inbox/q3.csv"), text).unwrap();
    let out = run(dir, server, &["run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn an_s3_export_has_the_folder_bytes_and_its_marker_written_last() {
    let server = S3Server::start(&["exports"]);
    let dir = tempfile::tempdir().unwrap();
    load(dir.path(), &server);

    let out = run(
        dir.path(),
        &server,
        &[
            "export",
            "--quarter",
            "2016Q3",
            "--json",
            "--out",
            "s3://exports/ml/bank",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    let version = report["quarters"][0]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(report["destination"], "s3://exports/ml/bank");

    // The same warehouse exported to a folder: the same version and data bytes.
    let folder = dir.path().join("folder");
    let out = run(
        dir.path(),
        &server,
        &[
            "export",
            "--quarter",
            "2016Q3",
            "--json",
            "--out",
            folder.to_str().unwrap(),
        ],
    );
    assert_eq!(json(&out)["quarters"][0]["version"], version.as_str());
    let on_s3 = server.root().join("exports/ml/bank/quarter=2016Q3");
    let version_dir = format!("version={version}");
    for name in ["customers.parquet", "transactions.parquet", "daily.parquet"] {
        assert_eq!(
            std::fs::read(on_s3.join(&version_dir).join(name)).unwrap(),
            std::fs::read(folder.join("quarter=2016Q3").join(&version_dir).join(name)).unwrap(),
            "{name}"
        );
    }
    // The marker is the version's manifest, and no object is newer than it.
    let marker = on_s3.join("manifest.json");
    assert_eq!(
        std::fs::read(&marker).unwrap(),
        std::fs::read(on_s3.join(&version_dir).join("manifest.json")).unwrap()
    );
    let written = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let last: SystemTime = written(&marker);
    for entry in std::fs::read_dir(on_s3.join(&version_dir)).unwrap() {
        let p = entry.unwrap().path();
        assert!(
            written(&p) <= last,
            "{} written after the marker",
            p.display()
        );
    }

    // Up to date on S3 too.
    let out = run(
        dir.path(),
        &server,
        &[
            "export",
            "--quarter",
            "2016Q3",
            "--json",
            "--out",
            "s3://exports/ml/bank",
        ],
    );
    assert_eq!(json(&out)["quarters"][0]["status"], "up_to_date");
}

#[test]
fn a_missing_bucket_exits_2_and_an_unreachable_endpoint_exits_3() {
    let mut server = S3Server::start(&["exports"]);
    let dir = tempfile::tempdir().unwrap();
    load(dir.path(), &server);
    let out = run(
        dir.path(),
        &server,
        &[
            "export",
            "--quarter",
            "2016Q3",
            "--out",
            "s3://no-such-bucket/x",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bucket"), "{err}");
    assert!(!err.contains(s3::SECRET_KEY));

    server.stop();
    let out = run(
        dir.path(),
        &server,
        &["export", "--quarter", "2016Q3", "--out", "s3://exports/x"],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
