//! Long-running processes for integration tests (`bankpipe serve`, `prometheus`,
//! `prometheus-pushgateway`), stopped however the test ends, and a minimal HTTP client.
//!
//! Include it from a test crate with `#[path = "support/daemon.rs"] mod daemon;`.
//!
//! # Cleanup
//!
//! As in `support/pg.rs`, without `unsafe`: each program runs under a small `sh`
//! watchdog whose standard input is a pipe only the test process holds. The watchdog
//! starts the program in the background, prints its pid, and waits; a second background
//! shell blocks reading the pipe and, at end-of-file (the [`Daemon`] dropped, or the test
//! process gone in any way, `SIGKILL` included), sends the program `SIGTERM`, then
//! `SIGKILL` two seconds later. When the program ends, the watchdog prints `exit N`
//! (N = its exit status, 128 + signal when killed), which [`Daemon::wait_exit`] reads.
//!
//! # Missing programs
//!
//! [`require`] panics naming the Debian package to install: a test never passes
//! silently because Prometheus is missing (`.ci/run` installs it).

#![allow(dead_code)] // each test crate uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The watchdog: `$1` is the log file, the rest the program and its arguments.
/// (A background list's standard input is `/dev/null` unless redirected: the pipe is
/// kept as descriptor 3 for the watcher.)
const WATCHDOG: &str = r#"
log="$1"; shift
exec 3<&0
"$@" >"$log" 2>&1 </dev/null 3<&- &
pid=$!
echo "$pid"
( cat <&3 >/dev/null; kill -TERM "$pid" 2>/dev/null; sleep 2; kill -KILL "$pid" 2>/dev/null ) &
exec 3<&-
trap '' INT TERM HUP QUIT
wait "$pid"
echo "exit $?"
"#;

/// The path of `program` on `PATH`; panics saying which Debian package to install.
pub fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{program}` is not installed: this test needs it. Install the Debian package \
         `{package}` (apt-get install {package}); `.ci/run` does."
    )
}

/// A port nothing listens on now (bound, then released: another process could take it
/// in between, which the callers' retries cover).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running program, stopped when dropped.
pub struct Daemon {
    name: String,
    watchdog: Child,
    keep_alive: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// The program's pid.
    pub pid: u32,
    /// Its combined stdout and stderr.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `command` (program and arguments, with `envs` set and `unset` removed),
    /// logging to `log`.
    pub fn start(
        name: &str,
        command: &[&str],
        envs: &[(&str, &str)],
        unset: &[&str],
        log: &Path,
    ) -> Daemon {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(log)
            .args(command);
        for (k, v) in envs {
            c.env(k, v);
        }
        for k in unset {
            c.env_remove(k);
        }
        let mut watchdog = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sh for {name}: {e}"));
        let keep_alive = watchdog.stdin.take();
        let stdout: ChildStdout = watchdog.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = lines
            .recv_timeout(Duration::from_secs(10))
            .ok()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: the watchdog printed no pid"));
        Daemon {
            name: name.to_owned(),
            watchdog,
            keep_alive,
            lines,
            pid,
            log: log.to_owned(),
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`TERM`, `INT`, ...) to the program.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{}: kill -{signal} {} failed", self.name, self.pid);
    }

    /// The program's exit status once it ends, if within `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        let until = Instant::now() + timeout;
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(code) = line.strip_prefix("exit ") {
                        return code.trim().parse().ok();
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Whether the program still runs (its exit not yet reported).
    pub fn running(&self) -> bool {
        Command::new("kill")
            .args(["-0", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        drop(self.keep_alive.take());
        let _ = self.watchdog.wait();
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body as text.
    pub body: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// `GET http://addr/path` (HTTP/1.0: the server closes the connection after the body,
/// no chunked encoding); `None` when nothing answers within `timeout`.
pub fn get(addr: &str, path: &str, timeout: Duration) -> Option<Response> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Response {
        status,
        body: body.to_owned(),
        elapsed: started.elapsed(),
    })
}

/// Calls `f` every 200 ms until it returns `Some`, for at most `timeout`; panics with
/// `what` (and `context()`, e.g. a log) otherwise.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > until {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of the sample `series` (name with its labels exactly as written, e.g.
/// `bankpipe_rows_total{outcome="loaded"}`) in a text exposition.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}
