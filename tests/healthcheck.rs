//! `bankpipe healthcheck` against a real `bankpipe serve` (issue #12): the probe a
//! container's `HEALTHCHECK` runs. Exit 0 once serve is ready; 1 with a one-line reason
//! on stderr when it is not ready (no warehouse yet), when nothing listens, or when the
//! server does not answer in time; 2 for a setting it cannot use.

#[path = "support/daemon.rs"]
mod daemon;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use daemon::{Daemon, free_port, get, poll};

/// `bankpipe` with a clean environment for the probe: only what the test gives.
fn bankpipe(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
    c.current_dir(dir)
        .env("BANKPIPE_DATA_DIR", dir)
        .env("BANKPIPE_LOG", "warn")
        .env_remove("BANKPIPE_LAKE_URL")
        .env_remove("BANKPIPE_INBOX")
        .env_remove("BANKPIPE_CONFIG")
        .env_remove("BANKPIPE_LISTEN")
        .env_remove("BANKPIPE_WAREHOUSE_URL")
        .env_remove("BANKPIPE_LOG_FORMAT")
        .stdin(Stdio::null());
    c
}

/// Runs `command`, failing the test if it has not ended within `limit` (the probe's own
/// bound is 5 s: a hang would be the bug).
fn output_within(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bankpipe");
    let until = Instant::now() + limit;
    while child.try_wait().expect("wait for bankpipe").is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect bankpipe");
            panic!(
                "bankpipe healthcheck still running after {limit:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect bankpipe")
}

/// `bankpipe healthcheck` with `listen` as BANKPIPE_LISTEN (the container's way) and
/// `args`: (exit status, stdout, stderr).
fn healthcheck(dir: &Path, listen: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut c = bankpipe(dir);
    c.arg("healthcheck").args(args);
    if let Some(addr) = listen {
        c.env("BANKPIPE_LISTEN", addr);
    }
    let out = output_within(c, Duration::from_secs(30));
    (
        out.status.code().expect("an exit status"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The message of a failed probe: exactly one line on stderr, as a health log shows it.
fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr:?}");
    lines[0]
}

/// `bankpipe serve` on `addr`, given as BANKPIPE_LISTEN like in the image; returns once
/// `/health` answers.
fn serve(dir: &Path, addr: &str) -> Daemon {
    let exe = env!("CARGO_BIN_EXE_bankpipe");
    let data = dir.to_str().unwrap();
    let daemon = Daemon::start(
        "bankpipe serve",
        &[exe, "--data-dir", data, "serve"],
        &[("BANKPIPE_LISTEN", addr), ("BANKPIPE_LOG", "info")],
        &[
            "BANKPIPE_LAKE_URL",
            "BANKPIPE_INBOX",
            "BANKPIPE_CONFIG",
            "BANKPIPE_WAREHOUSE_URL",
        ],
        &dir.join("serve.log"),
    );
    poll(
        "serve to answer /health",
        Duration::from_secs(20),
        || get(addr, "/health", Duration::from_secs(2)).filter(|r| r.status == 200),
        || daemon.log_text(),
    );
    daemon
}

#[test]
fn healthcheck_follows_serve_from_not_ready_to_ready_to_gone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let s = serve(dir.path(), &addr);

    // No warehouse yet (serve creates none): not ready, with serve's own reason.
    let (code, stdout, stderr) = healthcheck(dir.path(), Some(&addr), &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let line = one_line(&stderr);
    assert!(line.starts_with("bankpipe: error: not ready: "), "{line}");
    assert!(line.contains("warehouse"), "{line}");
    assert!(
        line.ends_with(&format!("(http://{addr}/ready answered 503)")),
        "{line}"
    );
    assert!(stdout.is_empty(), "{stdout}");

    // A run creates the warehouse and the lake: ready, found through BANKPIPE_LISTEN.
    let generated = bankpipe(dir.path())
        .args(["generate", "--rows", "50", "--out", "inbox/a.csv"])
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    let run = bankpipe(dir.path()).arg("run").output().unwrap();
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let (code, stdout, stderr) = healthcheck(dir.path(), Some(&addr), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, format!("ready: http://{addr}/ready\n"));
    // --url names the server instead; the configuration is then not consulted (an
    // unusable BANKPIPE_LISTEN does not matter).
    let (code, stdout, stderr) = healthcheck(
        dir.path(),
        Some("not an address"),
        &["--url", &format!("http://{addr}")],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");

    // serve stopped: nothing answers.
    s.signal("TERM");
    assert_eq!(
        s.wait_exit(Duration::from_secs(40)),
        Some(0),
        "{}",
        s.log_text()
    );
    let (code, stdout, stderr) = healthcheck(dir.path(), Some(&addr), &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let line = one_line(&stderr);
    assert!(
        line.starts_with(&format!(
            "bankpipe: error: no answer from http://{addr}/ready: "
        )),
        "{line}"
    );
    assert!(line.contains("is `bankpipe serve` running"), "{line}");
}

#[test]
fn nothing_listening_is_1_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let (code, stdout, stderr) = healthcheck(dir.path(), Some(&addr), &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let line = one_line(&stderr);
    assert!(
        line.starts_with(&format!(
            "bankpipe: error: no answer from http://{addr}/ready: "
        )),
        "{line}"
    );
    assert!(line.to_lowercase().contains("refused"), "{line}");
}

/// A server that accepts the connection and never answers: the probe gives up on its
/// own (5 s) instead of hanging the container runtime's check.
#[test]
fn a_server_that_never_answers_is_1_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || {
        // Keep the accepted connection open, unanswered, until the probe hangs up.
        if let Ok((mut stream, _)) = listener.accept() {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stream, &mut sink);
        }
    });
    let (code, stdout, stderr) =
        healthcheck(dir.path(), None, &["--url", &format!("http://{addr}")]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(
        one_line(&stderr),
        format!("bankpipe: error: no answer from http://{addr}/ready within 5 s")
    );
    holder.join().unwrap();
}

#[test]
fn settings_it_cannot_use_are_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = healthcheck(dir.path(), None, &["--url", "bankpipe:8000"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        one_line(&stderr).contains("invalid --url bankpipe:8000"),
        "{stderr}"
    );
    // serve on port 0 picks its own port: only --url can name it.
    let (code, _, stderr) = healthcheck(dir.path(), Some("127.0.0.1:0"), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        one_line(&stderr).contains("give the server's URL with --url"),
        "{stderr}"
    );
    let (code, _, stderr) = healthcheck(dir.path(), Some("localhost"), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(one_line(&stderr).contains("BANKPIPE_LISTEN"), "{stderr}");
}
