//! The lake on a real S3-compatible server (s3s-fs, `tests/support/s3.rs`): landing,
//! multipart objects over 64 MB, `verify` catching a changed byte, clear exit-2 errors
//! for a missing bucket, wrong credentials or a plain-http endpoint without
//! `AWS_ALLOW_HTTP`, exit 3 for an unreachable endpoint, a missing object named with
//! its file, with no secret and no raw XML in any output. Encryption at rest runs the
//! same scenario on S3 and on the local-folder lake; the catalog's current master key
//! (wrong and retired keys refused) is checked on both warehouses.

#[path = "support/pg.rs"]
mod pg;
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

    // Reprocessing a damaged object names it and both digests, and changes nothing.
    let small = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "small.csv")
        .unwrap();
    let key = small["lake_key"].as_str().unwrap();
    let stored = server.root().join("lake/raw-zone").join(key);
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'7' { b'8' } else { b'7' };
    std::fs::write(&stored, bytes).unwrap();
    let sha = small["sha256"].as_str().unwrap();
    let re = bankpipe(dir.path(), &server, "s3://lake/raw-zone")
        .args(["reprocess", sha])
        .output()
        .unwrap();
    assert_eq!(re.status.code(), Some(1), "{}", all_output(&re));
    let text = all_output(&re);
    assert!(
        text.contains(&format!(
            "lake object {key} is corrupt: expected sha256 {sha}"
        )),
        "{text}"
    );
    let status = bankpipe(dir.path(), &server, "s3://lake/raw-zone")
        .args(["status", "--json"])
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["transactions"], 1_100_000, "{s}");
}

#[test]
fn missing_bucket_and_wrong_keys_exit_2_an_unreachable_endpoint_3_without_secrets() {
    let server = S3Server::start(&["lake"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    generate(&dir.path().join("inbox/a.csv"), 10);

    // Settings to fix: exit 2 at once, naming the setting, never the raw XML reply.
    let missing = bankpipe(dir.path(), &server, "s3://no-such-bucket/x")
        .arg("run")
        .output()
        .unwrap();
    let text = all_output(&missing);
    assert_eq!(missing.status.code(), Some(2), "{text}");
    assert!(
        text.contains("bucket not found") && text.contains("lake_url"),
        "{text}"
    );
    assert!(!text.contains('<'), "no XML: {text}");

    let wrong = bankpipe(dir.path(), &server, "s3://lake/x")
        .arg("run")
        .env("AWS_SECRET_ACCESS_KEY", "WrongSecretValue123")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2), "{}", all_output(&wrong));
    let text = all_output(&wrong);
    assert!(!text.contains("WrongSecretValue123"), "{text}");
    assert!(text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
    assert!(!text.contains('<'), "no XML: {text}");

    let plain_http = bankpipe(dir.path(), &server, "s3://lake/x")
        .arg("run")
        .env_remove("AWS_ALLOW_HTTP")
        .output()
        .unwrap();
    let text = all_output(&plain_http);
    assert_eq!(plain_http.status.code(), Some(2), "{text}");
    assert!(text.contains("set AWS_ALLOW_HTTP=true"), "{text}");
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

/// Where a lake URL stores an object: the server's bucket folder, or the lake folder.
struct LakeUnderTest<'a> {
    url: String,
    server: &'a S3Server,
    stored: Box<dyn Fn(&str) -> std::path::PathBuf + 'a>,
    /// The folder holding every byte the lake stores.
    root: std::path::PathBuf,
}

/// Every file below `dir`, recursively.
fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn key_text(byte: u8) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode([byte; 32].map(|b| b ^ 0x5a))
}

/// Encryption at rest end to end: no plaintext in stored bytes, round trip through
/// verify and reprocess, missing and wrong keys, rotation without rewriting data, and
/// tampered, reordered and truncated objects each named; keys never printed.
fn encryption_scenario(dir: &Path, lake: &LakeUnderTest) {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    generate(&inbox.join("jan.csv"), 30_000);
    let input = std::fs::read_to_string(inbox.join("jan.csv")).unwrap();
    let mut cities: Vec<&str> = input
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(4))
        .filter(|c| c.len() >= 5)
        .collect();
    cities.sort_unstable();
    cities.dedup();
    assert!(cities.len() > 20, "{}", cities.len());
    let (k1, k2) = (key_text(1), key_text(2));
    let key_file = dir.join("master.key");
    std::fs::write(&key_file, format!("{k1}\n")).unwrap();

    let cmd = |args: &[&str], key: Option<&str>| {
        let mut c = bankpipe(dir, lake.server, &lake.url);
        c.args(args)
            .env_remove("BANKPIPE_MASTER_KEY")
            .env_remove("BANKPIPE_MASTER_KEY_FILE");
        match key {
            Some("file") => {
                c.env("BANKPIPE_MASTER_KEY_FILE", &key_file);
            }
            Some(k) => {
                c.env("BANKPIPE_MASTER_KEY", k);
            }
            None => {}
        }
        let out = c.output().unwrap();
        let text = all_output(&out);
        assert!(
            !text.contains(&k1) && !text.contains(&k2),
            "a key leaked: {text}"
        );
        out
    };

    let run = cmd(&["run", "--json"], Some("file"));
    assert_eq!(run.status.code(), Some(0), "{}", all_output(&run));
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["files"][0]["rows_loaded"], 30_000);
    let key = report["files"][0]["lake_key"].as_str().unwrap().to_owned();
    let stored_path = (lake.stored)(&key);
    let stored = std::fs::read(&stored_path).unwrap();
    assert!(stored.len() > input.len(), "chunk tags and header added");
    let everything = all_files(&lake.root);
    assert!(everything.contains(&stored_path), "{everything:?}");
    for path in &everything {
        let bytes = std::fs::read(path).unwrap();
        for needle in cities
            .iter()
            .copied()
            .chain(["TransactionID", "CustLocation"])
        {
            assert!(
                memchr::memmem::find(&bytes, needle.as_bytes()).is_none(),
                "plaintext {needle:?} found in stored file {}",
                path.display()
            );
        }
    }
    let files: Value = serde_json::from_slice(&cmd(&["files", "--json"], None).stdout).unwrap();
    let old_id = files[0]["key_id"].as_str().unwrap().to_owned();
    assert!(old_id.starts_with("mk-"), "{files}");

    let verify = cmd(&["verify", "--json"], Some(&k1));
    assert_eq!(verify.status.code(), Some(0), "{}", all_output(&verify));
    let re = cmd(&["reprocess", "1", "--json"], Some("file"));
    assert_eq!(re.status.code(), Some(0), "{}", all_output(&re));
    let re: Value = serde_json::from_slice(&re.stdout).unwrap();
    assert_eq!(re["after"]["rows_loaded"], 30_000, "{re}");

    let none = cmd(&["verify"], None);
    assert_eq!(none.status.code(), Some(2), "{}", all_output(&none));
    assert!(all_output(&none).contains(&format!("encrypted under master key id {old_id}")));
    // A run without the key refuses to store new files in clear beside encrypted ones.
    let clear = cmd(&["run"], None);
    assert_eq!(clear.status.code(), Some(2), "{}", all_output(&clear));
    assert!(all_output(&clear).contains(&format!("encrypted under master key id {old_id}")));
    assert!(key.ends_with(".enc"), "{key}");
    let wrong = cmd(&["reprocess", "1"], Some(&k2));
    assert_eq!(wrong.status.code(), Some(2), "{}", all_output(&wrong));
    assert!(
        all_output(&wrong).contains("wrong master key"),
        "{}",
        all_output(&wrong)
    );

    // Rotation re-wraps the data key only: the object is byte for byte the same.
    let mut rotate = bankpipe(dir, lake.server, &lake.url);
    rotate
        .args(["rotate-key", "--json"])
        .env("BANKPIPE_MASTER_KEY", &k1)
        .env("BANKPIPE_NEW_MASTER_KEY", &k2);
    let rotated = rotate.output().unwrap();
    assert_eq!(rotated.status.code(), Some(0), "{}", all_output(&rotated));
    let r: Value = serde_json::from_slice(&rotated.stdout).unwrap();
    assert_eq!(r["rotated"], 1, "{r}");
    assert!(!all_output(&rotated).contains(&k2));
    assert_eq!(
        std::fs::read(&stored_path).unwrap(),
        stored,
        "data not rewritten"
    );
    let again = rotate.output().unwrap();
    let r: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        (r["rotated"].as_u64(), r["already_rotated"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(cmd(&["verify"], Some(&k2)).status.code(), Some(0));
    // Under the old key the object is reported unreadable (not corrupt), exit 1.
    let old = cmd(&["verify", "--json"], Some(&k1));
    assert_eq!(old.status.code(), Some(1), "{}", all_output(&old));
    let j: Value = serde_json::from_slice(&old.stdout).unwrap();
    assert_eq!(j["objects"][0]["status"], "unreadable", "{j}");
    assert!(
        j["objects"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("wrong master key")
    );

    // Damage, each named.
    let stride = 8 + 65_536 + 16;
    let damaged = |bytes: Vec<u8>, expect: &str| {
        std::fs::write(&stored_path, &bytes).unwrap();
        let v = cmd(&["verify", "--json"], Some(&k2));
        assert_eq!(v.status.code(), Some(1), "{}", all_output(&v));
        let j: Value = serde_json::from_slice(&v.stdout).unwrap();
        let reason = j["objects"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(reason.contains(expect), "{expect}: {j}");
        assert_eq!(j["objects"][0]["status"], "corrupt");
    };
    let mut tampered = stored.clone();
    tampered[36 + stride + 1_000] ^= 0x01;
    damaged(tampered, "chunk 1 fails authentication (tampered)");
    let mut reordered = stored.clone();
    let (a, b) = (36, 36 + stride);
    reordered[a..a + stride].copy_from_slice(&stored[b..b + stride]);
    reordered[b..b + stride].copy_from_slice(&stored[a..a + stride]);
    damaged(reordered, "chunks reordered: chunk 1 found at position 0");
    damaged(stored[..stored.len() - 10].to_vec(), "truncated");
    // Reprocessing a damaged object changes nothing and says why.
    let re = cmd(&["reprocess", "1"], Some(&k2));
    assert_eq!(re.status.code(), Some(1), "{}", all_output(&re));
    assert!(all_output(&re).contains("truncated"), "{}", all_output(&re));
    let status: Value = serde_json::from_slice(&cmd(&["status", "--json"], None).stdout).unwrap();
    assert_eq!(status["transactions"], 30_000);
    std::fs::write(&stored_path, &stored).unwrap();
    assert_eq!(cmd(&["verify"], Some(&k2)).status.code(), Some(0));
}

#[test]
fn encryption_at_rest_on_s3() {
    let server = S3Server::start(&["lake"]);
    let dir = tempfile::tempdir().unwrap();
    let root = server.root().to_owned();
    encryption_scenario(
        dir.path(),
        &LakeUnderTest {
            url: "s3://lake/enc".into(),
            server: &server,
            root: root.join("lake"),
            stored: Box::new(move |key| root.join("lake/enc").join(key)),
        },
    );
}

#[test]
fn encryption_at_rest_on_the_local_folder() {
    let server = S3Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake-folder");
    let url = lake_dir.display().to_string();
    let root = lake_dir.clone();
    encryption_scenario(
        dir.path(),
        &LakeUnderTest {
            url,
            server: &server,
            root,
            stored: Box::new(move |key| lake_dir.join(key)),
        },
    );
}

#[test]
fn a_landing_that_fails_after_retries_leaves_no_catalog_entry() {
    use std::io::BufRead;
    let mut server = S3Server::start(&["lake"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    generate(&dir.path().join("inbox/big.csv"), 300_000);
    let mut child = bankpipe(dir.path(), &server, "s3://lake/raw")
        .args(["run", "--json"])
        .env("BANKPIPE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        log.push_str(&line);
        if line.contains("Claimed") {
            break;
        }
        line.clear();
    }
    assert!(log.contains("Claimed"), "{log}");
    server.stop(); // mid-upload: every retry is refused
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{log}{rest}");
    assert!(rest.contains("raw/"), "the error names the object: {rest}");

    let catalog = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["files", "--json"])
        .output()
        .unwrap();
    let files: Value = serde_json::from_slice(&catalog.stdout).unwrap();
    assert_eq!(
        files,
        serde_json::json!([]),
        "no entry for an object that was not landed"
    );

    // The next run, against a working store, lands and loads the file.
    let server = S3Server::start(&["lake"]);
    let again = bankpipe(dir.path(), &server, "s3://lake/raw")
        .args(["run", "--json"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", all_output(&again));
    let r: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(r["files"][0]["rows_loaded"], 300_000, "{r}");
}

/// Issue 8 §7: the catalog records its current master key id. A run (or reprocess) with
/// another key is refused with exit 2 naming both ids; after `rotate-key` a worker still
/// holding the old key is refused too, so no object is ever landed under a retired key:
/// `verify` with the new key finds every object intact and a rerun of the rotation
/// exits 0. `warehouse`: `None` for the default SQLite one.
fn a_wrong_or_retired_master_key_is_refused(warehouse: Option<&str>) {
    let server = S3Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake").display().to_string();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    generate(&inbox.join("jan.csv"), 2_000);
    let (a, b) = (key_text(1), key_text(2));
    let id = |k: &str| {
        bankpipe::crypt::MasterKey::from_base64(k, "test")
            .unwrap()
            .id()
            .to_owned()
    };
    let (id_a, id_b) = (id(&a), id(&b));
    let cmd = |args: &[&str], key: &str, new_key: Option<&str>| {
        let mut c = bankpipe(dir.path(), &server, &lake);
        c.args(args)
            .env("BANKPIPE_MASTER_KEY", key)
            .env_remove("BANKPIPE_MASTER_KEY_FILE");
        if let Some(url) = warehouse {
            c.env("BANKPIPE_WAREHOUSE_URL", url);
        }
        if let Some(k) = new_key {
            c.env("BANKPIPE_NEW_MASTER_KEY", k);
        }
        let out = c.output().unwrap();
        let text = all_output(&out);
        assert!(
            !text.contains(&a) && !text.contains(&b),
            "a key leaked: {text}"
        );
        (out.status.code(), text, out.stdout)
    };
    let refused = |(code, text, _): (Option<i32>, String, Vec<u8>), configured: &str| {
        assert_eq!(code, Some(2), "{text}");
        assert!(
            text.contains(&format!("configured master key has id {configured}")),
            "{text}"
        );
        assert!(text.contains(&id_a) && text.contains(&id_b), "{text}");
    };
    let catalog = || -> Vec<Value> {
        let (code, text, stdout) = cmd(&["files", "--json"], &a, None);
        assert_eq!(code, Some(0), "{text}");
        serde_json::from_slice(&stdout).unwrap()
    };
    let objects = || all_files(&dir.path().join("lake")).len();

    let (code, text, _) = cmd(&["run"], &a, None);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(catalog()[0]["key_id"], id_a.as_str());
    let landed = objects();

    // Another key: refused before anything is claimed or landed.
    generate(&inbox.join("feb.csv"), 1_000);
    std::fs::write(
        inbox.join("feb.csv"),
        std::fs::read_to_string(inbox.join("feb.csv"))
            .unwrap()
            .replace("\nT", "\nF"),
    )
    .unwrap();
    refused(cmd(&["run"], &b, None), &id_b);
    refused(cmd(&["reprocess", "1"], &b, None), &id_b);
    assert_eq!(catalog().len(), 1);
    assert_eq!(objects(), landed);

    let (code, text, stdout) = cmd(&["rotate-key", "--json"], &a, Some(&b));
    assert_eq!(code, Some(0), "{text}");
    let r: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(r["rotated"], 1, "{r}");

    // A worker still holding the retired key.
    refused(cmd(&["run"], &a, None), &id_a);
    refused(cmd(&["reprocess", "1"], &a, None), &id_a);
    assert_eq!(catalog().len(), 1);
    assert_eq!(objects(), landed);

    let (code, text, stdout) = cmd(&["verify", "--json"], &b, None);
    assert_eq!(code, Some(0), "{text}");
    let v: Value = serde_json::from_slice(&stdout).unwrap();
    assert!(
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "intact"),
        "{v}"
    );
    let (code, text, stdout) = cmd(&["rotate-key", "--json"], &a, Some(&b));
    assert_eq!(
        code,
        Some(0),
        "a rerun of the rotation finds nothing to do: {text}"
    );
    let r: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(
        (r["rotated"].as_u64(), r["already_rotated"].as_u64()),
        (Some(0), Some(1))
    );
    // Rotating back from a key that is not current is refused.
    refused(cmd(&["rotate-key"], &a, Some(&key_text(3))), &id_a);

    // The new key lands the waiting file; everything reads back under it.
    let (code, text, _) = cmd(&["run"], &b, None);
    assert_eq!(code, Some(0), "{text}");
    let files = catalog();
    assert_eq!(files.len(), 2);
    assert!(
        files.iter().all(|f| f["key_id"] == id_b.as_str()),
        "{files:?}"
    );
    let (code, text, _) = cmd(&["verify"], &b, None);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn a_wrong_or_retired_master_key_is_refused_on_sqlite() {
    a_wrong_or_retired_master_key_is_refused(None);
}

#[test]
fn a_wrong_or_retired_master_key_is_refused_on_postgres() {
    let db = pg::PgCluster::shared().database();
    a_wrong_or_retired_master_key_is_refused(Some(&db.url));
}

#[test]
fn reprocess_of_a_missing_object_names_the_object_and_its_file_without_xml() {
    let server = S3Server::start(&["lake"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    generate(&dir.path().join("inbox/gone.csv"), 100);
    let out = bankpipe(dir.path(), &server, "s3://lake/raw")
        .args(["run", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = r["files"][0]["lake_key"].as_str().unwrap().to_owned();
    std::fs::remove_file(server.root().join("lake/raw").join(&key)).unwrap();
    let out = bankpipe(dir.path(), &server, "s3://lake/raw")
        .args(["reprocess", "1"])
        .output()
        .unwrap();
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&key), "names the object: {text}");
    assert!(text.contains("file 1 (gone.csv)"), "names the file: {text}");
    assert!(text.contains("is missing"), "{text}");
    assert!(!text.contains('<'), "no XML: {text}");
}
