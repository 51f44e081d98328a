//! A real S3-compatible server for tests: `s3s-fs` (the `s3s` project's file-backed
//! server), started on a free loopback port with its own data folder. Chosen over moto
//! (accepts any credentials, keeps data in memory) and Garage (7.5 min build, ignores
//! create-only puts): s3s-fs checks SigV4 signatures, rejects undersized multipart
//! parts, and stores each object as a plain file, so tests can damage one on purpose.
//!
//! Install: `cargo install s3s-fs@0.14.1 --features binary` (done by `.ci/run`). A test
//! never skips when it is missing: it panics with that command.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access key the server accepts.
pub const ACCESS_KEY: &str = "bankpipe-test";
/// Secret key the server accepts (tests check it never appears in output).
pub const SECRET_KEY: &str = "S3cretKeyThatMustNeverLeak";

/// A running s3s-fs server.
pub struct S3Server {
    child: Child,
    root: tempfile::TempDir,
    port: u16,
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("S3S_FS_BIN") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    for candidate in [
        PathBuf::from(&home).join(".cargo/bin/s3s-fs"),
        PathBuf::from("/usr/local/bin/s3s-fs"),
    ] {
        if candidate.exists() {
            return candidate;
        }
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("s3s-fs");
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "the S3 test server s3s-fs is not installed: run \
         `cargo install s3s-fs@0.14.1 --features binary` (or set S3S_FS_BIN)"
    );
}

impl S3Server {
    /// Starts a server with one empty bucket per name in `buckets`.
    pub fn start(buckets: &[&str]) -> S3Server {
        let bin = binary();
        let root = tempfile::tempdir().expect("temporary folder for s3s-fs");
        for b in buckets {
            std::fs::create_dir_all(root.path().join(b)).unwrap();
        }
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap();
            let mut child = Command::new(&bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(root.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start s3s-fs");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3Server { child, root, port };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("s3s-fs did not start");
    }

    /// Stops the server (kill): later requests are refused.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The folder holding the buckets (an object `k` of bucket `b` is `root/b/k`).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The environment a client needs: endpoint, keys, region, plain HTTP.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
