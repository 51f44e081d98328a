//! The schedule of `bankpipe serve` (issue #11), end to end: real `serve` processes on
//! one warehouse (PostgreSQL from `tests/support/pg.rs`, and SQLite), a one-second cron,
//! then the warehouse is read: every slot ran exactly once with its outcome recorded; a
//! slot missed while every instance was down runs once at the next start; a job still
//! running at SIGTERM is recorded `interrupted` and its file rolls back; a scheduled
//! `ingest` and `POST /api/runs` never run side by side in one process.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;
#[path = "support/pg.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Timelike, Utc};
use pg::{PgCluster, TestDb};

/// Where the slots and runs are read from.
enum Store {
    Sqlite(PathBuf),
    Postgres(TestDb),
}

impl Store {
    fn url(&self) -> String {
        match self {
            Store::Sqlite(path) => format!("sqlite://{}", path.display()),
            Store::Postgres(db) => db.url.clone(),
        }
    }

    /// Rows of `sql` as `|`-joined text (PostgreSQL: `pg_sql`, SQLite: `lite_sql`).
    fn rows(&self, lite_sql: &str, pg_sql: &str) -> Vec<String> {
        match self {
            Store::Postgres(db) => {
                let out = PgCluster::shared().psql(&db.name, pg_sql);
                out.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            Store::Sqlite(path) => {
                if !path.exists() {
                    return Vec::new();
                }
                // Read-write (it only reads): a load cut by the process exit leaves a
                // hot rollback journal, which a read-only connection cannot roll back
                // (SQLITE_READONLY_ROLLBACK); this one does, as the next run would.
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
                )
                .unwrap();
                conn.busy_timeout(Duration::from_secs(30)).unwrap();
                let mut stmt = conn.prepare(lite_sql).unwrap();
                let n = stmt.column_count();
                stmt.query_map([], |r| {
                    Ok((0..n)
                        .map(|i| match r.get_ref(i).unwrap() {
                            rusqlite::types::ValueRef::Null => String::new(),
                            rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                            rusqlite::types::ValueRef::Text(t) => {
                                String::from_utf8_lossy(t).into_owned()
                            }
                            other => format!("{other:?}"),
                        })
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            }
        }
    }

    /// Every slot of `job`, oldest first: `(slot_at, claimed_by, claimed_at, status, error)`.
    fn slots(&self, job: &str) -> Vec<Slot> {
        let pg_ts = |c: &str| {
            format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
        };
        self.rows(
            &format!(
                "SELECT slot_at, claimed_by, claimed_at, status, coalesce(error, '') \
                 FROM schedule_slots WHERE job = '{job}' ORDER BY slot_at"
            ),
            &format!(
                "SELECT {}, claimed_by, {}, status, coalesce(error, '') \
                 FROM schedule_slots WHERE job = '{job}' ORDER BY slot_at",
                pg_ts("slot_at"),
                pg_ts("claimed_at")
            ),
        )
        .iter()
        .map(|line| {
            let f: Vec<&str> = line.splitn(5, '|').collect();
            Slot {
                slot_at: time(f[0]),
                claimed_by: f[1].to_owned(),
                claimed_at: time(f[2]),
                status: f[3].to_owned(),
                error: f[4].to_owned(),
            }
        })
        .collect()
    }

    /// Whether `schedule_slots` exists yet (a `serve` creates it).
    fn has_slots(&self) -> bool {
        let found = self.rows(
            "SELECT count(*) FROM sqlite_master WHERE name = 'schedule_slots'",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'schedule_slots'",
        );
        found == ["1"]
    }

    /// `runs` rows by status.
    fn runs(&self, status: &str) -> usize {
        let sql = format!("SELECT count(*) FROM runs WHERE status = '{status}'");
        self.rows(&sql, &sql)[0].parse().unwrap()
    }
}

#[derive(Debug)]
struct Slot {
    slot_at: DateTime<Utc>,
    claimed_by: String,
    claimed_at: DateTime<Utc>,
    status: String,
    error: String,
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .with_timezone(&Utc)
}

/// A work folder with an inbox and a `bankpipe.toml` holding `schedule`.
fn workdir(schedule: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    std::fs::write(
        dir.path().join("bankpipe.toml"),
        format!("data_dir = \".\"\n\n[schedule]\n{schedule}\n"),
    )
    .unwrap();
    dir
}

fn bankpipe(dir: &Path, url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
    c.current_dir(dir)
        .arg("--config")
        .arg(dir.join("bankpipe.toml"))
        .env("BANKPIPE_WAREHOUSE_URL", url)
        .env_remove("BANKPIPE_LAKE_URL")
        .env_remove("BANKPIPE_INBOX")
        .env_remove("BANKPIPE_CONFIG")
        .env_remove("BANKPIPE_DATA_DIR")
        .env("BANKPIPE_LOG", "info")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
    c
}

/// A `serve` on a free loopback port, its log in `dir/serve-<n>.log`.
fn serve(dir: &Path, url: &str, n: usize, extra: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join(format!("serve-{n}.log"))).unwrap();
    bankpipe(dir, url)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// SIGTERM, then the exit status, which must come within `limit`.
fn stop(child: &mut Child, limit: Duration) -> i32 {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("serve did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn logs(dir: &Path) -> String {
    let mut all = String::new();
    for n in 0..4 {
        if let Ok(text) = std::fs::read_to_string(dir.join(format!("serve-{n}.log"))) {
            all.push_str(&format!("--- serve-{n}.log\n{text}"));
        }
    }
    all
}

/// Sleeps until `t` (wall clock).
fn sleep_until(t: DateTime<Utc>) {
    if let Ok(d) = (t - Utc::now()).to_std() {
        std::thread::sleep(d);
    }
}

const HEADER: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)";

/// `instances` serves with `ingest = "* * * * * *"` for about five seconds, one file in
/// the inbox: each slot between the first and the last is in `schedule_slots` once
/// (the primary key allows no more), every one has an outcome, every slot some
/// instance won ran `bankpipe run` once (one `runs` row each), and the file is loaded
/// once.
fn every_slot_runs_once(store: &Store, instances: usize) {
    let dir = workdir("ingest = \"* * * * * *\"");
    std::fs::write(
        dir.path().join("inbox/a.csv"),
        format!("{HEADER}\nT1,C1,10/1/94,F,PUNE,1.00,2/8/16,143207,25.50\nT2,C2,10/1/94,M,GOA,1.00,3/8/16,101010,4.25\n"),
    )
    .unwrap();
    let url = store.url();
    let mut children: Vec<Child> = (0..instances)
        .map(|n| serve(dir.path(), &url, n, &[]))
        .collect();
    std::thread::sleep(Duration::from_millis(5_500));
    for child in &mut children {
        assert_eq!(
            stop(child, Duration::from_secs(30)),
            0,
            "{}",
            logs(dir.path())
        );
    }
    let slots = store.slots("ingest");
    assert!(slots.len() >= 3, "{slots:#?}\n{}", logs(dir.path()));
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1].slot_at - pair[0].slot_at,
            chrono::TimeDelta::seconds(1),
            "a slot is missing between {pair:#?}\n{}",
            logs(dir.path())
        );
    }
    for s in &slots {
        // `interrupted`: a run that SIGTERM found before its first file.
        assert!(
            ["ok", "skipped", "interrupted"].contains(&s.status.as_str()),
            "{s:?}\n{}",
            logs(dir.path())
        );
        assert!(s.claimed_at >= s.slot_at, "{s:?}");
        // A skipped slot says which slot was still running; an ok one has no error.
        assert_eq!(s.status == "ok", s.error.is_empty(), "{s:?}");
    }
    let ran = slots.iter().filter(|s| s.status == "ok").count();
    assert!(ran >= 3, "{slots:#?}");
    let interrupted = slots.iter().filter(|s| s.status == "interrupted").count();
    assert_eq!(
        (store.runs("ok"), store.runs("interrupted")),
        (ran, interrupted),
        "one run per slot won: {slots:#?}"
    );
    // Every instance saw every slot; it claimed those that no one had.
    let claimants: std::collections::BTreeSet<&str> =
        slots.iter().map(|s| s.claimed_by.as_str()).collect();
    eprintln!("{} slots claimed by {claimants:?}", slots.len());
    let loaded = store.rows(
        "SELECT count(*) || '|' || sum(rows_loaded) FROM files WHERE status = 'loaded'",
        "SELECT count(*) || '|' || sum(rows_loaded) FROM files WHERE status = 'loaded'",
    );
    assert_eq!(loaded, ["1|2"]);
}

/// A slot passes while no instance is up: the next start runs it once (and only the
/// latest missed one), however many instances start.
fn a_missed_slot_runs_once_at_start(store: &Store, instances: usize) {
    // Two slots a minute, 3 and 9 seconds from now (seconds wrap round the minute).
    let now = Utc::now();
    let a = (now + chrono::TimeDelta::seconds(3))
        .with_nanosecond(0)
        .unwrap();
    let b = a + chrono::TimeDelta::seconds(6);
    let dir = workdir(&format!(
        "verify = \"{},{} * * * * *\"",
        a.second(),
        b.second()
    ));
    let url = store.url();
    let mut children: Vec<Child> = (0..instances)
        .map(|n| serve(dir.path(), &url, n, &[]))
        .collect();
    sleep_until(a + chrono::TimeDelta::milliseconds(1_500));
    for child in &mut children {
        assert_eq!(
            stop(child, Duration::from_secs(30)),
            0,
            "{}",
            logs(dir.path())
        );
    }
    let before = store.slots("verify");
    assert_eq!(before.len(), 1, "{before:#?}\n{}", logs(dir.path()));
    assert_eq!(before[0].slot_at, a);
    // Every instance is down at b; they start again 1.5 s later.
    sleep_until(b + chrono::TimeDelta::milliseconds(1_500));
    let mut children: Vec<Child> = (0..instances)
        .map(|n| serve(dir.path(), &url, n + 2, &[]))
        .collect();
    std::thread::sleep(Duration::from_millis(2_000));
    for child in &mut children {
        assert_eq!(
            stop(child, Duration::from_secs(30)),
            0,
            "{}",
            logs(dir.path())
        );
    }
    let slots = store.slots("verify");
    assert_eq!(slots.len(), 2, "{slots:#?}\n{}", logs(dir.path()));
    let missed = &slots[1];
    assert_eq!(missed.slot_at, b);
    assert_eq!(missed.status, "ok", "{missed:?}");
    assert!(
        missed.claimed_at >= b + chrono::TimeDelta::seconds(1),
        "claimed late, at the start: {missed:?}"
    );
    assert!(
        logs(dir.path()).contains("Running a slot missed while no instance was up."),
        "{}",
        logs(dir.path())
    );
}

/// Rows in the file a test keeps `ingest` busy with: about 5 s of loading on SQLite
/// and 11 s on PostgreSQL in a debug build on these machines (the tests run debug
/// builds), against the 2.2 s the test waits before SIGTERM.
const BUSY_ROWS: &str = "400000";

/// `ingest` every second, a file that takes seconds to load. SIGTERM with
/// `--shutdown-timeout 1s` during the load: every instance exits 0 within the timeout
/// and nothing of the file is loaded. The running slot is recorded `interrupted`: at
/// once on PostgreSQL; on SQLite (whose write lock the load being cut still holds) by
/// the next start, which finds its guard free. A `serve` started again then loads the
/// file, exactly once; the slots that came while a load ran are `skipped` (here, or on
/// another instance: the job's guard), naming the slot still running.
fn overlapping_slots_are_skipped_and_sigterm_interrupts(store: &Store, instances: usize) {
    let dir = workdir("ingest = \"* * * * * *\"");
    let generated = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
        .args(["generate", "--rows", BUSY_ROWS, "--out"])
        .arg(dir.path().join("inbox/big.csv"))
        .output()
        .unwrap();
    assert!(generated.status.success());
    let url = store.url();
    let mut children: Vec<Child> = (0..instances)
        .map(|n| serve(dir.path(), &url, n, &["--shutdown-timeout", "1s"]))
        .collect();
    // A slot runs; two more come while it loads.
    let started = Instant::now();
    while !store.has_slots() || store.slots("ingest").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no slot claimed after 30 s\n{}",
            logs(dir.path())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2_200));
    for child in &mut children {
        assert_eq!(
            stop(child, Duration::from_secs(5)),
            0,
            "{}",
            logs(dir.path())
        );
    }
    let slots = store.slots("ingest");
    assert!(
        !slots.iter().any(|s| s.status == "ok"),
        "the load ended before the test could interrupt it (make BUSY_ROWS larger): {slots:#?}"
    );
    let first = &slots[0];
    match store {
        Store::Postgres(_) => {
            assert_eq!(
                first.status,
                "interrupted",
                "{slots:#?}\n{}",
                logs(dir.path())
            );
            assert!(first.error.contains("shutdown timeout 1s"), "{first:?}");
        }
        Store::Sqlite(_) => assert!(
            ["running", "interrupted"].contains(&first.status.as_str()),
            "{slots:#?}"
        ),
    }
    let count = "SELECT count(*) FROM transactions";
    assert_eq!(
        store.rows(count, count),
        ["0"],
        "the interrupted load rolled back"
    );
    // Started again: it loads the file (once) and says what became of the cut slot.
    let mut again = serve(dir.path(), &url, 3, &[]);
    let started = Instant::now();
    while !store.slots("ingest").iter().any(|s| s.status == "ok") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no slot ran to its end after 60 s\n{}",
            logs(dir.path())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        stop(&mut again, Duration::from_secs(30)),
        0,
        "{}",
        logs(dir.path())
    );
    let slots = store.slots("ingest");
    // Before the load that ended, only the cut one was interrupted (the last SIGTERM
    // may interrupt a later run before its first file).
    let first_ok = slots.iter().find(|s| s.status == "ok").unwrap().slot_at;
    let interrupted: Vec<&Slot> = slots
        .iter()
        .filter(|s| s.status == "interrupted" && s.slot_at < first_ok)
        .collect();
    assert_eq!(interrupted.len(), 1, "{slots:#?}\n{}", logs(dir.path()));
    assert_eq!(interrupted[0].slot_at, slots[0].slot_at);
    assert!(!slots.iter().any(|s| s.status == "running"), "{slots:#?}");
    let skipped: Vec<&Slot> = slots.iter().filter(|s| s.status == "skipped").collect();
    assert!(!skipped.is_empty(), "{slots:#?}\n{}", logs(dir.path()));
    for s in &skipped {
        assert!(s.error.contains("was still running"), "{s:?}");
    }
    let loaded = store.rows(
        "SELECT count(*) || '|' || sum(rows_loaded) FROM files WHERE status = 'loaded'",
        "SELECT count(*) || '|' || sum(rows_loaded) FROM files WHERE status = 'loaded'",
    );
    let rows_loaded = loaded[0].split('|').nth(1).unwrap().to_owned();
    assert_eq!(loaded[0], format!("1|{rows_loaded}"));
    assert_eq!(
        store.rows(count, count),
        [rows_loaded],
        "loaded exactly once"
    );
    // `status` shows the schedule with the last outcome.
    let status = bankpipe(dir.path(), &url).arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("schedule (UTC)"), "{text}");
    assert!(text.contains("  ingest  * * * * * *"), "{text}");
}

#[test]
fn overlapping_slots_are_skipped_and_sigterm_interrupts_on_postgresql() {
    let store = Store::Postgres(PgCluster::shared().database());
    overlapping_slots_are_skipped_and_sigterm_interrupts(&store, 2);
}

#[test]
fn overlapping_slots_are_skipped_and_sigterm_interrupts_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(dir.path().join("w.db"));
    overlapping_slots_are_skipped_and_sigterm_interrupts(&store, 1);
}

#[test]
fn two_instances_on_postgresql_run_every_slot_once() {
    let store = Store::Postgres(PgCluster::shared().database());
    every_slot_runs_once(&store, 2);
}

#[test]
fn a_missed_slot_runs_once_at_start_on_postgresql() {
    let store = Store::Postgres(PgCluster::shared().database());
    a_missed_slot_runs_once_at_start(&store, 2);
}

#[test]
fn one_instance_on_sqlite_runs_every_slot_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(dir.path().join("w.db"));
    every_slot_runs_once(&store, 1);
}

#[test]
fn a_missed_slot_runs_once_at_start_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(dir.path().join("w.db"));
    a_missed_slot_runs_once_at_start(&store, 1);
}

/// The address a `serve` logged (`Serving. addr=...`).
fn served_addr(dir: &Path, n: usize) -> String {
    daemon::poll(
        "serve to listen",
        Duration::from_secs(20),
        || {
            let log = std::fs::read_to_string(dir.join(format!("serve-{n}.log"))).ok()?;
            let line = log.lines().find(|l| l.contains("Serving."))?;
            let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
            Some(addr.to_owned())
        },
        || logs(dir),
    )
}

/// `/metrics` counts this process's slots by job and outcome and gives each job's next
/// slot; `promtool check metrics` finds nothing to say.
#[test]
fn metrics_count_runs_and_give_the_next_slot() {
    let dir = workdir("ingest = \"* * * * * *\"\nverify = \"0 0 1 1 *\"");
    let db = dir.path().join("w.db");
    let url = format!("sqlite://{}", db.display());
    let mut child = serve(dir.path(), &url, 0, &[]);
    let addr = served_addr(dir.path(), 0);
    std::thread::sleep(Duration::from_millis(3_500));
    let scraped = daemon::get(&addr, "/metrics", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no /metrics\n{}", logs(dir.path())));
    let scraped_at = Utc::now();
    assert_eq!(
        stop(&mut child, Duration::from_secs(30)),
        0,
        "{}",
        logs(dir.path())
    );
    let text = scraped.body;
    let ok = daemon::sample(
        &text,
        r#"bankpipe_scheduler_job_runs_total{job="ingest",status="ok"}"#,
    )
    .unwrap_or_else(|| panic!("{text}"));
    let recorded = Store::Sqlite(db).slots("ingest");
    let recorded_ok = recorded.iter().filter(|s| s.status == "ok").count() as f64;
    assert!(ok >= 2.0 && ok <= recorded_ok, "{ok} of {recorded:#?}");
    let next_ingest = daemon::sample(
        &text,
        r#"bankpipe_scheduler_next_run_timestamp_seconds{job="ingest"}"#,
    )
    .unwrap();
    let now = scraped_at.timestamp() as f64;
    assert!(
        next_ingest > now - 2.0 && next_ingest <= now + 1.0,
        "{next_ingest} vs {now}"
    );
    // Next 1 January, 00:00 UTC.
    let next_verify = daemon::sample(
        &text,
        r#"bankpipe_scheduler_next_run_timestamp_seconds{job="verify"}"#,
    )
    .unwrap();
    let new_year = chrono::NaiveDate::from_ymd_opt(scraped_at.year() + 1, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(next_verify, new_year.timestamp() as f64);
    let promtool = daemon::require("promtool", "prometheus");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{said}\n{text}"
    );
}

/// A `[schedule]` that cannot be used stops every command at config load with exit 2,
/// naming the job and its expression (or the time zone).
#[test]
fn a_bad_schedule_exits_2_naming_the_job_and_the_expression() {
    for (schedule, needle) in [
        (
            "export = \"0 0 30 2 *\"",
            "invalid [schedule] export = \"0 0 30 2 *\": it matches no time from now on",
        ),
        (
            "ingest = \"*/5 * * *\"",
            "invalid [schedule] ingest = \"*/5 * * *\": 4 fields",
        ),
        (
            "verify = \"0 61 * * *\"",
            "invalid [schedule] verify = \"0 61 * * *\"",
        ),
        (
            "ingest = \"@daily\"\ntimezone = \"Mars/Olympus\"",
            "invalid [schedule] timezone = \"Mars/Olympus\": not an IANA time zone name",
        ),
        (
            "ingest = \"@daily\"\nevery = \"1h\"",
            "unknown field `every`",
        ),
    ] {
        let dir = workdir(schedule);
        let url = format!("sqlite://{}", dir.path().join("w.db").display());
        for command in [&["status"][..], &["serve", "--listen", "127.0.0.1:0"]] {
            let out = bankpipe(dir.path(), &url).args(command).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command:?} {schedule}: {stderr}"
            );
            assert!(stderr.contains(needle), "{command:?} {schedule}: {stderr}");
        }
        assert!(!dir.path().join("w.db").exists(), "nothing created");
    }
}

/// A scheduled `export` exports the last complete quarter before its slot, through the
/// export command's front door: the quarter's manifest is written, and the slot is
/// `ok`; the next slot finds it up to date.
#[test]
fn a_scheduled_export_writes_the_last_complete_quarter() {
    let now = Utc::now();
    let (year, q) = if now.month() <= 3 {
        (now.year() - 1, 4)
    } else {
        (now.year(), (now.month() - 1) / 3)
    };
    let dir = workdir("export = \"*/2 * * * * *\"");
    for (n, month) in ((q - 1) * 3 + 1..=q * 3).enumerate() {
        let out = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
            .args(["generate", "--rows", "300", "--defects", "0", "--month"])
            .arg(format!("{year}-{month:02}"))
            .args(["--first-id", &(1 + n * 1000).to_string(), "--out"])
            .arg(dir.path().join(format!("inbox/m{month}.csv")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let db = dir.path().join("w.db");
    let url = format!("sqlite://{}", db.display());
    let run = bankpipe(dir.path(), &url).arg("run").output().unwrap();
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let mut child = serve(dir.path(), &url, 0, &[]);
    let store = Store::Sqlite(db);
    let started = Instant::now();
    while store
        .slots("export")
        .iter()
        .filter(|s| s.status != "running")
        .count()
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:#?}\n{}",
            store.slots("export"),
            logs(dir.path())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        stop(&mut child, Duration::from_secs(30)),
        0,
        "{}",
        logs(dir.path())
    );
    let slots = store.slots("export");
    assert!(
        slots
            .iter()
            .all(|s| s.status == "ok" || s.status == "interrupted"),
        "{slots:#?}\n{}",
        logs(dir.path())
    );
    let quarter = format!("{year}Q{q}");
    assert!(
        dir.path()
            .join(format!("exports/quarter={quarter}/manifest.json"))
            .is_file(),
        "{}",
        logs(dir.path())
    );
    let log = logs(dir.path());
    assert!(
        log.contains(&format!("{quarter} exported version")),
        "{log}"
    );
    assert!(
        log.contains(&format!("{quarter} up_to_date version")),
        "{log}"
    );
}

const TOKEN: &str = "scheduler-test-token-0123456789";

/// A bankpipe.toml in `dir` with `[schedule]` `schedule` (replacing the one there).
fn write_schedule(dir: &Path, schedule: &str) -> PathBuf {
    let toml = dir.join("bankpipe.toml");
    std::fs::write(
        &toml,
        format!("data_dir = \".\"\n\n[schedule]\n{schedule}\n"),
    )
    .unwrap();
    toml
}

/// `serve` with the API token, logging JSON (`tests/support/http.rs`).
fn api_serve(dir: &Path, url: &str) -> http::Serve {
    let toml = dir.join("bankpipe.toml");
    http::serve(
        dir,
        Some(url),
        &[("BANKPIPE_API_TOKEN", TOKEN)],
        &["--config", toml.to_str().unwrap()],
    )
}

fn post_run(s: &http::Serve) -> http::Reply {
    let auth = format!("Bearer {TOKEN}");
    s.call("POST", "/api/runs", &[("Authorization", auth.as_str())])
}

/// SIGTERM to a `serve` started by [`api_serve`]: exit 0 within 30 s.
fn stop_api_serve(s: &http::Serve) {
    s.daemon.signal("TERM");
    assert_eq!(
        s.daemon.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        s.daemon.log_text()
    );
}

/// Holds what a run needs to finish, so that a run stays in progress as long as the
/// test wants: PostgreSQL, a lock on `transactions` (the run waits in its load);
/// SQLite, the warehouse's run lock file (the run waits for it before its first file).
enum Hold {
    Postgres(Box<postgres::Client>),
    Sqlite(std::fs::File),
}

impl Hold {
    fn take(store: &Store) -> Hold {
        match store {
            Store::Postgres(db) => {
                let mut client = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
                client
                    .batch_execute("BEGIN; LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE")
                    .unwrap();
                Hold::Postgres(Box::new(client))
            }
            Store::Sqlite(path) => {
                let lock = std::fs::File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(format!("{}.lock", path.display()))
                    .unwrap();
                lock.lock().unwrap();
                Hold::Sqlite(lock)
            }
        }
    }

    fn release(self) {
        match self {
            Hold::Postgres(mut client) => client.batch_execute("ROLLBACK").unwrap(),
            Hold::Sqlite(lock) => lock.unlock().unwrap(),
        }
    }
}

/// The seconds of the next `n` whole seconds from `lead` seconds from now, as a cron
/// seconds list, and the last of them.
fn seconds_from_now(lead: i64, n: i64) -> (String, DateTime<Utc>) {
    let first = (Utc::now() + chrono::TimeDelta::seconds(lead))
        .with_nanosecond(0)
        .unwrap();
    let mut seconds: Vec<u32> = (0..n)
        .map(|k| (first + chrono::TimeDelta::seconds(k)).second())
        .collect();
    seconds.sort_unstable();
    let list: Vec<String> = seconds.iter().map(u32::to_string).collect();
    (list.join(","), first + chrono::TimeDelta::seconds(n - 1))
}

/// A scheduled `ingest` in progress: `POST /api/runs` answers 409 naming its run (not a
/// second run beside it, which PostgreSQL would otherwise allow), and that run is the
/// only one in progress; when it ends, the file is loaded once by it.
fn an_api_run_waits_for_a_scheduled_ingest(store: &Store) {
    let dir = workdir("ingest = \"* * * * * *\"");
    let url = store.url();
    let created = bankpipe(dir.path(), &url).arg("run").output().unwrap();
    assert!(created.status.success(), "{created:?}");
    let hold = Hold::take(store);
    http::generate(&dir.path().join("inbox/a.csv"), 300, 1, &[]);
    let s = api_serve(dir.path(), &url);
    // A slot claims the file's run, which waits on the hold.
    let running = daemon::poll(
        "a scheduled ingest in progress",
        Duration::from_secs(30),
        || {
            store
                .slots("ingest")
                .into_iter()
                .find(|slot| slot.status == "running")
        },
        || s.daemon.log_text(),
    );
    let refused = post_run(&s);
    assert_eq!(refused.status, 409, "{}", refused.body);
    let body = refused.json();
    assert_eq!(body["error"], "run_in_progress");
    let run_id = body["run_id"].as_str().unwrap().to_owned();
    let message = body["message"].as_str().unwrap();
    let slot = running
        .slot_at
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        message,
        format!(
            "run {run_id} of the scheduled ingest slot {slot} is still running in this server; \
             retry when it ends"
        )
    );
    assert!(store.runs("running") <= 1, "one run at a time");
    hold.release();
    daemon::poll(
        "the scheduled run to end",
        Duration::from_secs(60),
        || {
            let sql = format!("SELECT status FROM runs WHERE run_id = '{run_id}'");
            let status = store.rows(&sql, &sql);
            (status.len() == 1 && status[0] != "running").then_some(())
        },
        || s.daemon.log_text(),
    );
    stop_api_serve(&s);
    let by_run = "SELECT run_id || '|' || rows_loaded FROM files WHERE status = 'loaded'";
    let loaded = store.rows(by_run, by_run);
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert!(loaded[0].starts_with(&format!("{run_id}|")), "{loaded:?}");
    let at_slot = store
        .slots("ingest")
        .into_iter()
        .find(|s| s.slot_at == running.slot_at)
        .unwrap();
    assert_eq!(at_slot.status, "ok", "{at_slot:?}");
}

#[test]
fn an_api_run_waits_for_a_scheduled_ingest_on_postgresql() {
    let store = Store::Postgres(PgCluster::shared().database());
    an_api_run_waits_for_a_scheduled_ingest(&store);
}

#[test]
fn an_api_run_waits_for_a_scheduled_ingest_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(dir.path().join("w.db"));
    an_api_run_waits_for_a_scheduled_ingest(&store);
}

/// A run started through `POST /api/runs` in progress (held by a lock on
/// `transactions`): the `ingest` slots that come meanwhile start no run beside it
/// (which PostgreSQL would otherwise allow); each is recorded `skipped` naming the API
/// run, once that run has ended.
#[test]
fn scheduled_ingests_skip_while_an_api_run_runs_on_postgresql() {
    let store = Store::Postgres(PgCluster::shared().database());
    let url = store.url();
    let dir = workdir("");
    let created = bankpipe(dir.path(), &url).arg("run").output().unwrap();
    assert!(created.status.success(), "{created:?}");
    // Three slots, 6 to 8 seconds from now: time for serve to start and the POST.
    let (seconds, last) = seconds_from_now(6, 3);
    write_schedule(dir.path(), &format!("ingest = \"{seconds} * * * * *\""));
    let hold = Hold::take(&store);
    http::generate(&dir.path().join("inbox/a.csv"), 300, 1, &[]);
    let s = api_serve(dir.path(), &url);
    let started = post_run(&s);
    assert_eq!(started.status, 202, "{}", started.body);
    let api_run = started.json()["run_id"].as_str().unwrap().to_owned();
    assert!(
        Utc::now() < last - chrono::TimeDelta::seconds(2),
        "serve took too long to start: the slots came before the API run"
    );
    sleep_until(last + chrono::TimeDelta::milliseconds(700));
    let log = s.daemon.log_text();
    assert_eq!(
        log.matches("Slot skipped: another run of this process is in progress")
            .count(),
        3,
        "{log}"
    );
    assert!(
        store.slots("ingest").is_empty(),
        "written when the API run ends"
    );
    assert_eq!(store.runs("running"), 1, "the API run alone");
    hold.release();
    let slots = daemon::poll(
        "the held-off slots to be recorded",
        Duration::from_secs(60),
        || {
            let slots = store.slots("ingest");
            (slots.len() == 3).then_some(slots)
        },
        || s.daemon.log_text(),
    );
    stop_api_serve(&s);
    for slot in &slots {
        assert_eq!(slot.status, "skipped", "{slot:?}");
        assert!(
            slot.error.starts_with(&format!(
                "run {api_run} started through POST /api/runs was still running (on "
            )),
            "{slot:?}"
        );
    }
    assert_eq!(slots[2].slot_at, last);
    let all = "SELECT run_id || '|' || status FROM runs ORDER BY run_id";
    let runs = store.rows(all, all);
    assert_eq!(runs.len(), 2, "the creating run and the API's: {runs:?}");
    assert_eq!(runs[1], format!("{api_run}|ok"));
}
