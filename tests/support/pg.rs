//! A throwaway PostgreSQL server for integration tests.
//!
//! Include it from a test crate with
//!
//! ```ignore
//! #[path = "support/pg.rs"]
//! mod pg;
//! ```
//!
//! and use [`PgCluster::shared`] (one trust-auth cluster per test binary, started on first
//! use) with [`PgCluster::database`] (one fresh database per test), or a dedicated cluster
//! from [`PgCluster::start`] / [`PgCluster::start_tls`] for tests that restart the server
//! or need TLS and password authentication.
//!
//! Only the PostgreSQL binaries (`initdb`, `pg_ctl`, `psql`) and, for TLS, the `openssl`
//! CLI are needed: no client crate. They are looked up in `/usr/lib/postgresql/*/bin`
//! (highest version first) and then in `PATH`. When they are missing the fixture panics
//! with installation instructions: a test never passes silently without a server.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI containers), the server
//! binaries run as the `postgres` user through `runuser -u postgres --` and the cluster
//! folder is handed over to that user; otherwise they run directly as the current user.
//! `psql` always runs as the current user and connects as the `postgres` superuser over the
//! Unix socket in the cluster folder.
//!
//! # Cleanup
//!
//! Every cluster gets a *watchdog*: a small `sh` process spawned by the test process with a
//! pipe as its standard input, whose write end only the test process holds (Rust opens
//! pipes close-on-exec, so no other child inherits it). The watchdog blocks reading that
//! pipe; it reads end-of-file as soon as the write end is closed, which happens when
//! [`PgCluster`] is dropped **or** when the test process ends in any way (normal exit of a
//! test binary, a panic with `panic = "abort"`, `SIGKILL`, Ctrl-C). It then runs
//! `pg_ctl -m immediate stop` and removes the cluster folder. The watchdog ignores
//! `SIGINT`/`SIGTERM`/`SIGHUP`/`SIGQUIT` so that a Ctrl-C on the terminal kills the test
//! process but not the clean-up. This is how the [`PgCluster::shared`] cluster, which lives
//! in a `static` and is therefore never dropped, gets stopped at process exit without
//! `libc`/`atexit` (the crate forbids `unsafe`). The pipe is preferred over polling the
//! parent pid (`kill -0 $PPID`) because it reacts immediately, needs no sleep loop and
//! cannot be fooled by pid reuse; a thread-local `Drop` guard was rejected because
//! thread-locals of the main thread are not destroyed at process exit and libtest runs
//! tests on worker threads that end before the process does.
//!
//! [`PgCluster`]'s `Drop` simply closes the pipe and waits for the watchdog, so the stop and
//! the removal happen synchronously there, through the same code path.

#![allow(dead_code)] // each test crate uses a different subset of the fixture

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Password of the `postgres` superuser on TLS clusters (whose TCP connections require a
/// password); [`TestDb::url`] of a TLS cluster carries it.
pub const TLS_SUPERUSER_PASSWORD: &str = "postgres-test-password";

/// How many times a start is attempted, each on a fresh free port.
const START_ATTEMPTS: usize = 5;

/// A PostgreSQL cluster in a temporary folder under `/tmp/bpg-XXXXXX`, listening on
/// `127.0.0.1:<port>` and on a Unix socket in that folder, stopped and removed when dropped
/// (or, for [`PgCluster::shared`], when the test process ends).
///
/// The server runs with `fsync=off`, `synchronous_commit=off`, `full_page_writes=off` (fast,
/// not crash-safe: fine for a throwaway cluster) and `max_connections=200`, database
/// encoding UTF8 with the C locale.
pub struct PgCluster {
    /// The temporary folder: `data/` (the cluster), `server.log`, the Unix socket, and the
    /// certificates of a TLS cluster.
    dir: PathBuf,
    /// TCP port on 127.0.0.1 (also the Unix socket's port number).
    port: u16,
    /// Folder of `initdb`, `pg_ctl`, `psql`.
    bin: PathBuf,
    /// Whether the cluster has `ssl=on` and password (scram) authentication on TCP.
    tls: bool,
    /// The CA certificate (TLS clusters only).
    ca: Option<PathBuf>,
    /// What [`TestDb`] needs to drop its database, shared with it.
    admin: Arc<Admin>,
    /// Stops the server and removes `dir` when the pipe to it closes.
    watchdog: Watchdog,
}

/// A fresh, empty database on a [`PgCluster`], dropped (`DROP DATABASE ... WITH (FORCE)`,
/// which also terminates its open connections) when this guard is dropped.
pub struct TestDb {
    /// Connection URL: `postgres://postgres@127.0.0.1:PORT/NAME` on trust clusters,
    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/NAME` on TLS clusters (password
    /// [`TLS_SUPERUSER_PASSWORD`]; no TLS parameters: add `sslmode`/root certificate the way
    /// your client expects them).
    pub url: String,
    /// Database name, `t_<pid>_<counter>`.
    pub name: String,
    /// Connection details of the cluster, to drop the database.
    admin: Arc<Admin>,
}

impl PgCluster {
    /// The cluster shared by all tests of this test binary: trust authentication, no TLS,
    /// started on first use (`std::sync::OnceLock`).
    ///
    /// A `static` is never dropped, so it is stopped with `pg_ctl -m immediate stop` and
    /// its folder removed by its watchdog process when the test process exits (see the
    /// module documentation). Do not [`restart`](Self::restart) it: other tests use it
    /// concurrently; use [`PgCluster::start`] for that.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(PgCluster::start)
    }

    /// A dedicated cluster with trust authentication and no TLS, stopped and removed when
    /// dropped. For tests that restart or otherwise disturb the server.
    pub fn start() -> PgCluster {
        PgCluster::launch(false)
    }

    /// A dedicated cluster with TLS on (`ssl=on`, a self-signed CA and a server certificate
    /// for `CN=localhost` with SAN `DNS:localhost` and `IP:127.0.0.1`, generated with the
    /// `openssl` CLI into the temporary folder) that also accepts password authentication.
    /// `pg_hba.conf` is exactly:
    ///
    /// ```text
    /// local   all  postgres                trust
    /// hostssl all  all       127.0.0.1/32  scram-sha-256
    /// host    all  all       127.0.0.1/32  scram-sha-256
    /// ```
    ///
    /// i.e. the superuser connects without a password over the Unix socket only (that is
    /// what [`psql`](Self::psql) uses), and every TCP connection, with or without TLS,
    /// needs a password: the superuser's is [`TLS_SUPERUSER_PASSWORD`], other roles come
    /// from [`create_login`](Self::create_login). Stopped and removed when dropped.
    pub fn start_tls() -> PgCluster {
        PgCluster::launch(true)
    }

    /// The TCP port the server listens on, on 127.0.0.1. Unchanged by
    /// [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path of the CA certificate (TLS clusters only), for `sslrootcert=` or a client's
    /// root store.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// The temporary folder of the cluster: `data/`, `server.log` (the server log, handy
    /// when a test fails), the Unix socket and, on TLS clusters, the certificates.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder holding the PostgreSQL binaries in use (`psql`, `pg_dump`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Creates a fresh database `t_<pid>_<counter>` and returns its URL:
    /// `postgres://postgres@127.0.0.1:PORT/NAME` on trust clusters (see [`TestDb::url`]
    /// for TLS clusters). The database is dropped by the returned guard's `Drop`
    /// (`DROP DATABASE ... WITH (FORCE)`).
    pub fn database(&self) -> TestDb {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(&name)),
        );
        let credentials = if self.tls {
            format!("postgres:{TLS_SUPERUSER_PASSWORD}")
        } else {
            "postgres".to_owned()
        };
        TestDb {
            url: format!("postgres://{credentials}@127.0.0.1:{}/{name}", self.port),
            name,
            admin: Arc::clone(&self.admin),
        }
    }

    /// Runs SQL (one or more `;`-separated statements) as the superuser via
    /// `psql -X -v ON_ERROR_STOP=1 -At` over the Unix socket against database `db`, and
    /// returns its standard output without the final newline: unaligned, tuples only, `|`
    /// between columns, one line per row (`psql("postgres", "SELECT 1") == "1"`).
    /// Panics with psql's standard error when it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.admin
            .psql(db, sql)
            .unwrap_or_else(|e| panic!("psql on database {db:?} failed running\n{sql}\n{e}"))
    }

    /// Creates a login role with a password (stored as SCRAM-SHA-256), for TLS/password
    /// tests. The role is a plain one: grant it what the test needs with
    /// [`psql`](Self::psql) (for instance `ALTER DATABASE ... OWNER TO ...`: since
    /// PostgreSQL 15 only the database owner may create tables in its `public` schema).
    pub fn create_login(&self, name: &str, password: &str) {
        self.psql(
            "postgres",
            &format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                quote_ident(name),
                quote_literal(password)
            ),
        );
    }

    /// Stops the server abruptly (`pg_ctl -m immediate stop`: every connection is cut, no
    /// shutdown checkpoint) and starts it again on the same port, to test reconnect/retry
    /// logic. Returns once the server accepts connections again.
    ///
    /// A `CHECKPOINT` runs first (best effort): with `synchronous_commit=off` the last
    /// fraction of a second of committed transactions would otherwise be lost, which a
    /// real (synchronous) server would not do. Committed data therefore survives; open
    /// transactions are rolled back by crash recovery. Not safe to call concurrently on the
    /// same cluster, nor on [`PgCluster::shared`] while other tests use it.
    pub fn restart(&self) {
        let _ = self.admin.psql("postgres", "CHECKPOINT");
        let stop = self.pg_ctl_stop();
        let mut failure = String::new();
        for attempt in 1..=START_ATTEMPTS {
            match try_start(&self.bin, &self.dir, self.port) {
                Ok(()) => return,
                Err(e) => failure = e,
            }
            if attempt < START_ATTEMPTS {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        panic!(
            "restarting PostgreSQL on port {} failed {START_ATTEMPTS} times.\n\
             stop: {stop}\nlast start: {failure}",
            self.port
        );
    }

    /// Stops the server abruptly (`pg_ctl -m immediate stop`: every connection is cut)
    /// and leaves it stopped, so that clients find it unreachable. Not for
    /// [`PgCluster::shared`].
    pub fn stop(&self) {
        let _ = self.pg_ctl_stop();
    }

    /// Creates, configures and starts a cluster.
    fn launch(tls: bool) -> PgCluster {
        let bins = binaries();
        let owner = server_user();
        let dir = tempfile::Builder::new()
            .prefix("bpg-")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("cannot create a temporary folder in /tmp: {e}"))
            .keep();
        // From here on, the watchdog removes `dir` whatever happens (even a panic below).
        let watchdog = Watchdog::spawn(&dir, &bins.pg_ctl);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", dir.display()));
        }
        let data = dir.join("data");
        let out = run(server_command(&bins.initdb)
            .current_dir(&dir)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-N", "-E", "UTF8"])
            .arg("--locale=C"));
        check(&out, "initdb");

        let mut conf = format!(
            "\n# bankpipe test fixture (tests/support/pg.rs)\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 200\n",
            conf_path(&dir)
        );
        let mut ca = None;
        if tls {
            ca = Some(make_certificates(&dir, owner));
            conf.push_str(&format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                conf_path(&dir.join("server.crt")),
                conf_path(&dir.join("server.key"))
            ));
            write_existing(
                &data.join("pg_hba.conf"),
                "# bankpipe test fixture (tests/support/pg.rs)\n\
                 local   all      postgres               trust\n\
                 hostssl all      all      127.0.0.1/32  scram-sha-256\n\
                 host    all      all      127.0.0.1/32  scram-sha-256\n",
            );
        }
        append(&data.join("postgresql.conf"), &conf);

        let mut failures = Vec::new();
        let port = (0..START_ATTEMPTS)
            .find_map(|_| {
                let port = free_port();
                match try_start(&bins.dir, &dir, port) {
                    Ok(()) => Some(port),
                    Err(e) => {
                        failures.push(format!("port {port}: {e}"));
                        None
                    }
                }
            })
            .unwrap_or_else(|| {
                panic!(
                    "PostgreSQL failed to start {START_ATTEMPTS} times:\n{}",
                    failures.join("\n")
                )
            });
        let cluster = PgCluster {
            admin: Arc::new(Admin {
                psql: bins.psql.clone(),
                dir: dir.clone(),
                port,
            }),
            dir,
            port,
            bin: bins.dir.clone(),
            tls,
            ca,
            watchdog,
        };
        if tls {
            cluster.psql(
                "postgres",
                &format!(
                    "ALTER ROLE postgres PASSWORD {}",
                    quote_literal(TLS_SUPERUSER_PASSWORD)
                ),
            );
        }
        cluster
    }

    /// `pg_ctl -m immediate stop`; returns a description of the outcome (for messages).
    fn pg_ctl_stop(&self) -> String {
        let out = run(server_command(&self.bin.join("pg_ctl"))
            .current_dir(&self.dir)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"]));
        format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }
}

impl Drop for PgCluster {
    /// Stops the server (`pg_ctl -m immediate stop`) and removes the temporary folder,
    /// both done by the watchdog, which this waits for.
    fn drop(&mut self) {
        self.watchdog.finish();
    }
}

impl Drop for TestDb {
    /// Drops the database with `DROP DATABASE ... WITH (FORCE)`. Does nothing when its
    /// cluster is already gone; panics when the drop fails (only prints the error if the
    /// thread is already panicking).
    fn drop(&mut self) {
        if !self.admin.dir.exists() {
            return;
        }
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&self.name)
        );
        if let Err(e) = self.admin.psql("postgres", &sql) {
            let message = format!("dropping test database {} failed: {e}", self.name);
            if std::thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

/// How to reach a cluster as the superuser: `psql` over the Unix socket.
struct Admin {
    psql: PathBuf,
    /// Unix socket folder (the cluster folder).
    dir: PathBuf,
    port: u16,
}

impl Admin {
    /// Runs `sql` through `psql -X -v ON_ERROR_STOP=1 -At` on `db`; stdout without its
    /// final newline, or a description of the failure.
    fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut child = clean_env(&mut Command::new(&self.psql))
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-At", "-h"])
            .arg(&self.dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db, "-f", "-"])
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.psql.display()))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let sql = sql.to_owned();
        // Feed the script from another thread so a large output cannot deadlock us.
        let writer = std::thread::spawn(move || stdin.write_all(sql.as_bytes()));
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for psql: {e}"))?;
        let written = writer.join().expect("psql stdin writer");
        if !out.status.success() {
            return Err(format!(
                "psql {}:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        written.map_err(|e| format!("writing the script to psql: {e}"))?;
        let mut stdout = String::from_utf8(out.stdout).map_err(|e| e.to_string())?;
        if stdout.ends_with('\n') {
            stdout.pop();
        }
        Ok(stdout)
    }
}

/// The clean-up process of a cluster (see the module documentation).
struct Watchdog {
    child: Option<Child>,
}

impl Watchdog {
    /// Spawns `sh`, which waits for end-of-file on its stdin, then runs
    /// `[runuser -u postgres --] pg_ctl -D DIR/data -m immediate stop` and `rm -rf DIR`.
    fn spawn(dir: &Path, pg_ctl: &Path) -> Watchdog {
        const SCRIPT: &str = r#"trap '' INT TERM HUP QUIT
dir=$1; shift
cat >/dev/null
"$@" -D "$dir/data" -m immediate stop >/dev/null 2>&1
rm -rf -- "$dir""#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(SCRIPT).arg("bpg-watchdog").arg(dir);
        if server_user().is_some() {
            cmd.args(["runuser", "-u", "postgres", "--"]);
        }
        let child = clean_env(&mut cmd)
            .arg(pg_ctl)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn the clean-up shell (sh): {e}"));
        Watchdog { child: Some(child) }
    }

    /// Closes the pipe and waits for the watchdog to stop the server and remove the folder.
    fn finish(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Where the PostgreSQL binaries are.
struct Binaries {
    dir: PathBuf,
    initdb: PathBuf,
    pg_ctl: PathBuf,
    psql: PathBuf,
}

/// Finds `initdb` and `pg_ctl` in `/usr/lib/postgresql/*/bin` (highest version), else in
/// `PATH`; `psql` next to them, else in `PATH`. Panics with installation instructions when
/// they are missing.
fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
        let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let version = name
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<Vec<u32>>>()?;
                Some((version, entry.path().join("bin")))
            })
            .filter(|(_, bin)| has_server(bin))
            .collect();
        versions.sort();
        let path_dirs = || {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect::<Vec<_>>()
        };
        let dir = versions
            .pop()
            .map(|(_, bin)| bin)
            .or_else(|| path_dirs().into_iter().find(|d| has_server(d)))
            .unwrap_or_else(|| {
                panic!(
                    "PostgreSQL server binaries (initdb, pg_ctl) not found in \
                     /usr/lib/postgresql/*/bin nor in PATH; the integration tests need a real \
                     server. Install PostgreSQL: `apt-get install postgresql` on Debian/Ubuntu \
                     (`dnf install postgresql-server` on Fedora, `brew install postgresql` on \
                     macOS), or put its bin folder in PATH."
                )
            });
        let psql = if dir.join("psql").is_file() {
            dir.join("psql")
        } else {
            path_dirs()
                .into_iter()
                .map(|d| d.join("psql"))
                .find(|p| p.is_file())
                .unwrap_or_else(|| {
                    panic!(
                        "psql not found next to {} nor in PATH. Install it: \
                         `apt-get install postgresql-client` on Debian/Ubuntu.",
                        dir.display()
                    )
                })
        };
        Binaries {
            initdb: dir.join("initdb"),
            pg_ctl: dir.join("pg_ctl"),
            psql,
            dir,
        }
    })
}

/// `Some((uid, gid))` of the `postgres` user when running as root (the server binaries then
/// run as that user), `None` otherwise.
fn server_user() -> Option<(u32, u32)> {
    static USER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER.get_or_init(|| {
        let id = |args: &[&str]| -> Option<u32> {
            let out = Command::new("id").args(args).output().ok()?;
            if !out.status.success() {
                return None;
            }
            String::from_utf8(out.stdout).ok()?.trim().parse().ok()
        };
        let me = id(&["-u"]).expect("`id -u` failed: cannot tell whether the tests run as root");
        if me != 0 {
            return None;
        }
        let user = id(&["-u", "postgres"]).zip(id(&["-g", "postgres"]));
        if user.is_none() {
            panic!(
                "the tests run as root, PostgreSQL refuses to run as root, and there is no \
                 `postgres` user to run it as. Install PostgreSQL (`apt-get install postgresql` \
                 on Debian/Ubuntu creates the user) or run the tests as a normal user."
            );
        }
        if !Path::new("/usr/sbin/runuser").exists() && !on_path("runuser") {
            panic!("the tests run as root and need `runuser` (util-linux) to start PostgreSQL as `postgres`");
        }
        user
    })
}

/// Whether `program` is in `PATH`.
fn on_path(program: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join(program).is_file())
}

/// A command running a server binary: through `runuser -u postgres --` as root.
fn server_command(program: &Path) -> Command {
    let mut cmd = if server_user().is_some() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    };
    clean_env(&mut cmd);
    cmd
}

/// Removes the `PG*` variables (PGHOST, PGPORT, PGPASSWORD, PGSSLMODE, PGDATA, ...) that
/// would redirect or alter our commands.
fn clean_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs a command to completion (stdin closed, output captured); panics if it cannot start.
fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Panics with the output of a command that failed.
fn check(out: &Output, what: &str) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `pg_ctl start` of the cluster in `dir` on `port`, waiting until the server accepts
/// connections; the error carries pg_ctl's output and the end of the server log.
fn try_start(bin: &Path, dir: &Path, port: u16) -> Result<(), String> {
    let log = dir.join("server.log");
    let out = run(server_command(&bin.join("pg_ctl"))
        .current_dir(dir)
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "-o"])
        .arg(format!("-c port={port}"))
        .arg("start"));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pg_ctl start {}:\n{}{}\n--- end of {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            log.display(),
            log_tail(&log, 20)
        ))
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to pick a port: {e}"))
}

/// Generates, with the openssl CLI, `ca.crt`/`ca.key` (a self-signed CA) and
/// `server.crt`/`server.key` (CN=localhost, SAN DNS:localhost, IP:127.0.0.1, signed by the
/// CA) in `dir`; hands the server files to the server user. Returns the CA path.
fn make_certificates(dir: &Path, owner: Option<(u32, u32)>) -> PathBuf {
    std::fs::write(
        dir.join("openssl.cnf"),
        "[req]\n\
         distinguished_name = dn\n\
         prompt = no\n\
         [dn]\n\
         CN = bankpipe test CA\n\
         [ca_ext]\n\
         basicConstraints = critical, CA:TRUE\n\
         keyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [server_ext]\n\
         basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:localhost, IP:127.0.0.1\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid, issuer\n",
    )
    .expect("write openssl.cnf");
    let openssl = |args: &[&str]| {
        let out = clean_env(&mut Command::new("openssl"))
            .current_dir(dir)
            .env_remove("OPENSSL_CONF")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run the openssl CLI ({e}); TLS tests need it: \
                     `apt-get install openssl` on Debian/Ubuntu"
                )
            });
        check(&out, &format!("openssl {}", args.join(" ")));
    };
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-new",
                "-config",
                "openssl.cnf",
                "-extensions",
                "ca_ext",
            ][..],
            &new_key,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "3650"],
            &["-subj", "/CN=bankpipe test CA"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-new", "-config", "openssl.cnf"][..],
            &new_key,
            &["-keyout", "server.key", "-out", "server.csr"],
            &["-subj", "/CN=localhost"],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "3650",
        "-extfile",
        "openssl.cnf",
        "-extensions",
        "server_ext",
    ]);
    use std::os::unix::fs::PermissionsExt;
    for (file, mode) in [
        ("server.key", 0o600),
        ("server.crt", 0o644),
        ("ca.crt", 0o644),
    ] {
        let path = dir.join(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }
    dir.join("ca.crt")
}

/// A path as a single-quoted postgresql.conf value body (quotes doubled).
fn conf_path(path: &Path) -> String {
    path.display().to_string().replace('\'', "''")
}

/// Replaces the content of an existing file (keeping its owner).
fn write_existing(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Appends to an existing file.
fn append(path: &Path, content: &str) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(content.as_bytes()))
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}

/// The last `lines` lines of a log file (or why it cannot be read).
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read: {e})"),
    }
}

/// An SQL identifier, double-quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An SQL string literal (standard_conforming_strings is on by default).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
