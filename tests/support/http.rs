//! `bankpipe serve` for the read API and status page tests (`tests/api.rs`,
//! `tests/page.rs`): a data folder loaded by the real binary, the server started on a
//! port of its own choosing (read back from its JSON log line `Serving.`), and a
//! minimal HTTP/1.0 client that sends any method and headers.
//!
//! Include it after `support/daemon.rs`:
//!
//! ```ignore
//! #[path = "support/daemon.rs"]
//! mod daemon;
//! #[path = "support/http.rs"]
//! mod http;
//! ```

#![allow(dead_code)] // each test crate uses a different subset

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{Daemon, free_port, poll};

/// `bankpipe` on the data folder `dir` (and `warehouse` when not the default SQLite
/// one), with no `BANKPIPE_*` setting inherited from the environment.
pub fn bankpipe(dir: &Path, warehouse: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
    c.current_dir(dir)
        .arg("--data-dir")
        .arg(dir)
        .env("BANKPIPE_LOG", "warn")
        .stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BANKPIPE_") && k != "BANKPIPE_LOG" {
            c.env_remove(k);
        }
    }
    if let Some(url) = warehouse {
        c.env("BANKPIPE_WAREHOUSE_URL", url);
    }
    // Shells set HOSTNAME without exporting it: services (systemd, cron) rarely have it.
    c.env_remove("HOSTNAME");
    c
}

/// `bankpipe generate` of `rows` rows (2% with a defect) from id `first_id` into `path`.
pub fn generate(path: &Path, rows: u64, first_id: u64, extra: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
        .args(["generate", "--rows", &rows.to_string(), "--out"])
        .arg(path)
        .args(["--first-id", &first_id.to_string(), "--defects", "0.02"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `bankpipe <args> --json` (or any command printing JSON), which must exit 0.
pub fn json(dir: &Path, warehouse: Option<&str>, args: &[&str]) -> Value {
    let out = bankpipe(dir, warehouse).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stderr}"))
}

/// `bankpipe rejects --json` (one object a line): every rejected row.
pub fn cli_rejects(dir: &Path, warehouse: Option<&str>) -> Vec<Value> {
    let out = bankpipe(dir, warehouse)
        .args(["rejects", "--json", "--limit", "1000000"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A running `bankpipe serve`.
pub struct Serve {
    /// The process.
    pub daemon: Daemon,
    /// `127.0.0.1:port`.
    pub addr: String,
}

/// Starts `bankpipe serve` on `dir` with `envs` (e.g. `BANKPIPE_API_TOKEN`) and the
/// global flags `flags` (e.g. `--config FILE`).
pub fn serve(dir: &Path, warehouse: Option<&str>, envs: &[(&str, &str)], flags: &[&str]) -> Serve {
    let exe = env!("CARGO_BIN_EXE_bankpipe");
    let data = dir.to_str().unwrap();
    let mut command = vec![exe, "--data-dir", data, "--log-format", "json"];
    command.extend_from_slice(flags);
    command.extend_from_slice(&["serve", "--listen", "127.0.0.1:0"]);
    let mut all_envs = vec![("BANKPIPE_LOG", "info")];
    if let Some(url) = warehouse {
        all_envs.push(("BANKPIPE_WAREHOUSE_URL", url));
    }
    all_envs.extend_from_slice(envs);
    let inherited: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .filter(|k| k.starts_with("BANKPIPE_"))
        .collect();
    let unset: Vec<&str> = inherited
        .iter()
        .map(String::as_str)
        .filter(|k| !all_envs.iter().any(|(e, _)| e == k))
        .collect();
    let log = dir.join(format!("serve-{}.log", free_port()));
    let daemon = Daemon::start("bankpipe serve", &command, &all_envs, &unset, &log);
    let addr = poll(
        "serve to listen",
        Duration::from_secs(30),
        || {
            daemon.log_text().lines().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["fields"]["message"] == "Serving.")
                    .then(|| v["fields"]["addr"].as_str().map(str::to_owned))?
            })
        },
        || daemon.log_text(),
    );
    Serve { daemon, addr }
}

impl Serve {
    /// `GET path`.
    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, &[])
    }

    /// `method path` with `headers`; panics (with the server's log) when nothing answers.
    pub fn call(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(&self.addr, method, path, headers, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{method} {path}: no answer\n{}", self.daemon.log_text()))
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
    /// How long it took.
    pub elapsed: Duration,
}

impl Reply {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics (showing it) when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// `method http://addr/path` over HTTP/1.0 (the server closes the connection after the
/// body); `None` when nothing answers within `timeout`.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Option<Reply> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: body.to_owned(),
        elapsed: started.elapsed(),
    })
}
