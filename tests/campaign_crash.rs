//! The crash and fault campaign (issue #13, "Crash anywhere" and "Faults"): the real
//! `bankpipe` binary killed with `kill -9` at seeded random moments, and its warehouse,
//! lake and export destination faulted (PostgreSQL restarted or gone, the S3 server
//! killed or full, a full disk), each followed by a rerun whose result must equal a clean
//! run's exactly: every table of the warehouse (`tests/support/snapshot.rs` says what is
//! compared and what legitimately differs), the lake checked by `bankpipe verify` and by
//! listing what the folder physically holds.
//!
//! The moments are drawn uniformly in `[0, T_clean]`, where `T_clean` is the duration of a
//! clean run of the same command measured in the same test. The seed is printed and
//! taken from `BANKPIPE_CAMPAIGN_SEED` when set, so a failure replays exactly.
//!
//! Quick tests (CI) use small files and a few moments; the `long_*` tests (`#[ignore]`)
//! are the full figures (20 moments per backend and command, 4 workers × 50
//! files × 5 kills): `cargo test --release --test campaign_crash -- --ignored
//! --nocapture`. Their last results are in `docs/RELIABILITY.md`.

#[path = "support/campaign.rs"]
mod campaign;
#[path = "support/pg.rs"]
mod pg;
#[path = "support/snapshot.rs"]
mod snapshot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use campaign::{Ended, Finished, FolderContent, Moments, folder_content, kill_at, run_bounded};
use pg::PgCluster;
use serde_json::Value;
use snapshot::{Backend, Snapshot};

/// Pseudonymisation key of every site (base64 of 32 bytes), so exports compare.
const PSEUDONYM_KEY: &str = "cHNldWRvbnltLWtleS1vZi10aGUtY2FtcGFpZ24tMzI=";
/// Master keys for the rotation campaign (base64 of 32 bytes each).
const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// The bound of any single command of the campaign.
const COMMAND_LIMIT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------
// Sites: a data folder (inbox, lake, exports) and a warehouse
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        }
    }
}

/// A database of the shared cluster, dropped with the guard. Made empty or as a copy of
/// another (`TEMPLATE`), which is how a site is cloned in a few milliseconds.
struct PgDb {
    name: String,
    url: String,
}

impl PgDb {
    fn create(template: Option<&str>) -> PgDb {
        static N: AtomicU64 = AtomicU64::new(0);
        let c = PgCluster::shared();
        let name = format!(
            "camp_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        // A template must have no session: the backend of a process that just exited
        // may take a moment to go.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match std::panic::catch_unwind(|| c.psql("postgres", &sql)) {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        PgDb {
            url: format!("postgres://postgres@127.0.0.1:{}/{name}", c.port()),
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            PgCluster::shared().psql(
                "postgres",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            )
        });
    }
}

/// One place where bankpipe runs: `DATA_DIR` (inbox, lake, exports, SQLite database)
/// and its warehouse.
struct Site {
    root: PathBuf,
    /// The temporary folder `root` is in, when the site owns it.
    _tmp: Option<tempfile::TempDir>,
    backend: Backend,
    /// The database guard (PostgreSQL), dropped with the site.
    db: Option<Box<dyn std::any::Any>>,
    /// Name of the database on the shared cluster, to clone it.
    template: Option<String>,
    kind: Kind,
    /// Extra variables of every command (master key, lake URL, …).
    env: BTreeMap<String, String>,
}

impl Site {
    /// An empty site whose inbox holds copies of `files`.
    fn new(kind: Kind, files: &[PathBuf]) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let mut site = Site::at(kind, tmp.path(), files);
        site._tmp = Some(tmp);
        site
    }

    /// An empty site in `root` (made if missing), on the shared cluster for PostgreSQL.
    fn at(kind: Kind, root: &Path, files: &[PathBuf]) -> Site {
        let inbox = root.join("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        for f in files {
            std::fs::copy(f, inbox.join(f.file_name().unwrap())).unwrap();
        }
        let mut site = Site {
            root: root.to_owned(),
            _tmp: None,
            backend: Backend::Sqlite(root.join("warehouse.db")),
            db: None,
            template: None,
            kind,
            env: BTreeMap::new(),
        };
        if kind == Kind::Postgres {
            let db = PgDb::create(None);
            site.backend = Backend::Postgres(db.url.clone());
            site.template = Some(db.name.clone());
            site.db = Some(Box::new(db));
        }
        site
    }

    /// An empty PostgreSQL site on a cluster of its own (which the test may restart).
    fn on_cluster(cluster: &PgCluster, files: &[PathBuf]) -> Site {
        let mut site = Site::new(Kind::Sqlite, files);
        let db = cluster.database();
        site.kind = Kind::Postgres;
        site.backend = Backend::Postgres(db.url.clone());
        site.db = Some(Box::new(db));
        site
    }

    /// Puts the SQLite warehouse at `path` (outside `DATA_DIR`).
    fn sqlite_at(&mut self, path: &Path) {
        self.backend = Backend::Sqlite(path.to_owned());
    }

    /// A copy of this site: its folder, and its database (SQLite: inside the folder;
    /// PostgreSQL: `CREATE DATABASE … TEMPLATE`).
    fn clone_site(&self) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        campaign::copy_dir(self.path(), tmp.path());
        let mut site = Site {
            root: tmp.path().to_owned(),
            _tmp: Some(tmp),
            backend: Backend::Sqlite(PathBuf::new()),
            db: None,
            template: None,
            kind: self.kind,
            env: self.env.clone(),
        };
        match (&self.backend, &self.template) {
            (Backend::Sqlite(_), _) => {
                site.backend = Backend::Sqlite(site.root.join("warehouse.db"))
            }
            (Backend::Postgres(_), Some(base)) => {
                let db = PgDb::create(Some(base));
                site.backend = Backend::Postgres(db.url.clone());
                site.template = Some(db.name.clone());
                site.db = Some(Box::new(db));
            }
            (Backend::Postgres(_), None) => panic!("only sites on the shared cluster clone"),
        }
        site
    }

    fn path(&self) -> &Path {
        &self.root
    }

    fn lake(&self) -> PathBuf {
        self.path().join("lake")
    }

    fn exports(&self) -> PathBuf {
        self.path().join("exports")
    }

    fn set(&mut self, key: &str, value: &str) {
        self.env.insert(key.to_owned(), value.to_owned());
    }

    /// `bankpipe ARGS` on this site, with a clean environment.
    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_in(self.path(), args)
    }

    /// `bankpipe ARGS` on this site's warehouse, with `data_dir` as `DATA_DIR`.
    fn cmd_in(&self, data_dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
        c.current_dir(self.path())
            .arg("--data-dir")
            .arg(data_dir)
            .args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("BANKPIPE_") || k.starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.env("BANKPIPE_WAREHOUSE_URL", self.backend.url())
            .env("BANKPIPE_LOG", "warn")
            .env("BANKPIPE_PSEUDONYM_KEY", PSEUDONYM_KEY);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Finished {
        run_bounded(&mut self.cmd(args), COMMAND_LIMIT)
    }

    /// Whether the warehouse exists (a SQLite file may not have been made yet).
    fn backend_exists(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(p) => p.exists(),
            Backend::Postgres(_) => true,
        }
    }

    /// The warehouse, with this site's folder written `$DATA_DIR` in the paths it
    /// records (an export's destination).
    fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.backend).replacing(&self.root.display().to_string(), "$DATA_DIR")
    }

    /// `bankpipe verify --json` must find every object intact, no orphan and no
    /// unfinished claim; and the folder must hold no staging file of an upload that never
    /// completed.
    fn assert_lake_intact(&self, context: &str) {
        let v = self.run(&["verify", "--json"]);
        assert_eq!(v.code, Some(0), "{context}: verify: {}", v.text());
        let j = v.json();
        assert_eq!(j["not_intact"], 0, "{context}: {j}");
        assert_eq!(
            j["orphans"].as_array().map(Vec::len),
            Some(0),
            "{context}: {j}"
        );
        assert_eq!(
            j["unfinished"].as_array().map(Vec::len),
            Some(0),
            "{context}: {j}"
        );
        let lake = folder_content(&self.lake());
        assert!(
            lake.staging.is_empty(),
            "{context}: the lake folder keeps the staging files of uploads that never \
             completed: {:?}",
            lake.staging
        );
    }

    /// No run left `running` once a run has followed the killed one.
    fn assert_no_run_left_running(&self, context: &str) {
        let running = self
            .backend
            .scalar("SELECT CAST(COUNT(*) AS TEXT) FROM runs WHERE status = 'running'");
        assert_eq!(
            running.as_deref(),
            Some("0"),
            "{context}: a run is left running"
        );
    }

    /// Work folders left in `DATA_DIR` (`.export-*`, `.spool/*`), which a crash may leave.
    fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.path()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".export-") {
                out.push(name);
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.path().join(".spool")) {
            out.extend(
                entries
                    .flatten()
                    .map(|e| format!(".spool/{}", e.file_name().to_string_lossy())),
            );
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Where a kill landed
// ---------------------------------------------------------------------------------------

/// Where a `kill -9` of `bankpipe run` landed, read from the killed process's debug log
/// (`Run started`, `Fingerprinted`, `Claimed`, `Load committed`, `Run finished`) and from
/// what the lake folder held for the file being loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Before the run recorded its start (process start, configuration, migrations).
    Startup,
    /// Between files: fingerprinting, looking a file up, after a commit.
    BetweenFiles,
    /// A file claimed, its load open, and its raw copy still being written to the lake.
    MidLoadAndLanding,
    /// A file claimed, its raw copy complete in the lake, its load still open.
    MidLoad,
    /// Every file done; the run's own bookkeeping and report.
    Finishing,
    /// The process had already exited when its moment came.
    Exited,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Startup => "startup (before the run started)",
            Phase::BetweenFiles => "between files (fingerprint, look-up, after a commit)",
            Phase::MidLoadAndLanding => "mid-load and mid-landing (raw copy incomplete)",
            Phase::MidLoad => "mid-load (raw copy complete, load not committed)",
            Phase::Finishing => "after the last file (run bookkeeping)",
            Phase::Exited => "after the process had exited",
        }
    }
}

fn phase_of_run(log: &str, lake: &Path, keys: &BTreeMap<String, String>) -> Phase {
    let mut phase = Phase::Startup;
    let mut claimed: Option<String> = None;
    for line in log.lines() {
        if line.contains("Run finished") {
            phase = Phase::Finishing;
        } else if line.contains("Run started") {
            phase = Phase::BetweenFiles;
        } else if line.contains("Claimed.") {
            claimed = keys
                .keys()
                .find(|name| line.contains(name.as_str()))
                .cloned();
            phase = Phase::MidLoad;
        } else if line.contains("Load committed") || line.contains("Fingerprinted") {
            phase = Phase::BetweenFiles;
            claimed = None;
        }
    }
    if phase == Phase::MidLoad {
        let complete = claimed
            .and_then(|name| keys.get(&name))
            .is_some_and(|key| lake.join(key).is_file());
        if !complete {
            return Phase::MidLoadAndLanding;
        }
    }
    phase
}

/// Counts of kills by phase, printed at the end of a campaign.
#[derive(Default)]
struct Tally {
    phases: BTreeMap<String, usize>,
    lines: Vec<String>,
}

impl Tally {
    fn add(&mut self, phase: &str, line: String) {
        *self.phases.entry(phase.to_owned()).or_default() += 1;
        self.lines.push(line);
    }

    fn print(&self, title: &str) {
        let mut s = format!("== {title}\n");
        for l in &self.lines {
            s.push_str(&format!("  {l}\n"));
        }
        for (p, n) in &self.phases {
            s.push_str(&format!("  {n:>3} × {p}\n"));
        }
        eprint!("{s}");
    }
}

// ---------------------------------------------------------------------------------------
// 1. kill -9 of `bankpipe run`
// ---------------------------------------------------------------------------------------

/// The three monthly files of `rows` rows each, made once (deterministic) in a folder
/// of the build's temporary directory and reused by later runs of the tests.
fn inbox_files(rows: u64) -> Vec<PathBuf> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("campaign-inbox-{rows}"));
    if !dir.exists() {
        // Made aside, then renamed into place: a concurrent test process sees all or
        // nothing.
        let aside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        campaign::monthly_files(aside.path(), rows);
        let kept = aside.keep();
        if std::fs::rename(&kept, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&kept);
        }
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert_eq!(v.len(), 3, "{}: {v:?}", dir.display());
    v
}

/// A clean `bankpipe run` over the three monthly files: what every faulted run must end
/// up equal to.
struct Reference {
    snapshot: Snapshot,
    /// The lake folder's objects.
    lake: FolderContent,
    /// Each file's lake key, by name.
    keys: BTreeMap<String, String>,
    /// How long the clean run took (the campaign's `T_clean`).
    elapsed: Duration,
}

/// The clean run of `kind` over the monthly files of `rows` rows, made once per test
/// binary (tests of one backend and size share it).
fn reference(kind: Kind, rows: u64) -> std::sync::Arc<Reference> {
    static CACHE: std::sync::Mutex<BTreeMap<(u8, u64), std::sync::Arc<Reference>>> =
        std::sync::Mutex::new(BTreeMap::new());
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    cache
        .entry((kind as u8, rows))
        .or_insert_with(|| {
            let clean = Site::new(kind, &inbox_files(rows));
            let done = clean.run(&["run", "--json"]);
            // September fails for its reject share: exit 1, in the clean run as after
            // any fault.
            assert_eq!(done.code, Some(1), "clean run: {}", done.text());
            let report = done.json();
            let statuses: Vec<&str> = report["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["status"].as_str().unwrap())
                .collect();
            assert_eq!(statuses, ["loaded", "loaded", "failed"], "{report}");
            clean.assert_lake_intact("clean run");
            let snapshot = clean.snapshot();
            assert!(snapshot.rows("duplicate_rows") > 0 && snapshot.rows("rejected_rows") > 0);
            let keys = clean
                .backend
                .query("SELECT original_name, lake_key FROM files")
                .into_iter()
                .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
                .collect();
            std::sync::Arc::new(Reference {
                snapshot,
                lake: folder_content(&clean.lake()),
                keys,
                elapsed: done.elapsed,
            })
        })
        .clone()
}

/// `kill -9` of `bankpipe run` over the three monthly files at `moments` random moments,
/// each followed by a rerun: the warehouse then equals a clean run's, the lake verifies.
fn crash_run(kind: Kind, rows: u64, moments: usize, salt: u64) {
    let test = format!("crash_run_{}", kind.name());
    let mut rng = Moments::new(&test, salt);
    let files = inbox_files(rows);

    let clean = reference(kind, rows);
    let (t_clean, expected, keys, expected_lake) =
        (clean.elapsed, &clean.snapshot, &clean.keys, &clean.lake);

    let mut tally = Tally::default();
    for i in 0..moments {
        let delay = rng.within(t_clean);
        let site = Site::new(kind, &files);
        let log = site.path().join("killed.log");
        let ended = kill_at(
            site.cmd(&["run", "--json"])
                .env("BANKPIPE_LOG", "bankpipe=debug"),
            delay,
            &log,
        );
        let phase = match ended {
            Ended::Exited(_) => Phase::Exited,
            Ended::Killed => phase_of_run(
                &std::fs::read_to_string(&log).unwrap_or_default(),
                &site.lake(),
                keys,
            ),
        };
        let context = format!(
            "{test} seed {} moment {i}: kill at {:.3} s of {:.3} s, {}",
            rng.seed,
            delay.as_secs_f64(),
            t_clean.as_secs_f64(),
            phase.label()
        );
        let rerun = site.run(&["run", "--json"]);
        assert_eq!(rerun.code, Some(1), "{context}: rerun: {}", rerun.text());
        if let Some(d) = expected.diff(&site.snapshot()) {
            panic!("{context}: the warehouse differs from a clean run's:\n{d}");
        }
        site.assert_lake_intact(&context);
        assert_eq!(
            folder_content(&site.lake()).objects,
            expected_lake.objects,
            "{context}: lake objects"
        );
        site.assert_no_run_left_running(&context);
        tally.add(
            phase.label(),
            format!(
                "moment {i:>2}: {:>7.3} s of {:.3} s → {}",
                delay.as_secs_f64(),
                t_clean.as_secs_f64(),
                phase.label()
            ),
        );
    }
    tally.print(&format!(
        "{test}: {moments} kills, seed {}, T_clean {:.3} s, {rows} rows a file: all passed",
        rng.seed,
        t_clean.as_secs_f64()
    ));
}

/// Rows a monthly file holds in the quick (CI) campaign.
const QUICK_ROWS: u64 = 10_000;
/// Rows a monthly file holds in the long campaign.
const LONG_ROWS: u64 = 100_000;

#[test]
fn crash_run_sqlite() {
    crash_run(Kind::Sqlite, QUICK_ROWS, 5, 1);
}

#[test]
fn crash_run_postgres() {
    crash_run(Kind::Postgres, QUICK_ROWS, 5, 2);
}

#[test]
#[ignore = "long campaign: run with --ignored, results in docs/RELIABILITY.md"]
fn long_crash_run_sqlite() {
    crash_run(Kind::Sqlite, LONG_ROWS, 20, 1);
}

#[test]
#[ignore = "long campaign: run with --ignored, results in docs/RELIABILITY.md"]
fn long_crash_run_postgres() {
    crash_run(Kind::Postgres, LONG_ROWS, 20, 2);
}

// ---------------------------------------------------------------------------------------
// 1b. kill -9 of `reprocess`, `rotate-key` and `export`
// ---------------------------------------------------------------------------------------

/// A site after `run` over the three monthly files (September failed), with the master
/// key `KEY_A` when `encrypted`.
fn loaded_site(kind: Kind, rows: u64, encrypted: bool) -> Site {
    let mut site = Site::new(kind, &inbox_files(rows));
    if encrypted {
        site.set("BANKPIPE_MASTER_KEY", KEY_A);
    }
    let done = site.run(&["run", "--json"]);
    assert_eq!(done.code, Some(1), "loading the base: {}", done.text());
    site
}

fn sha_of(site: &Site, name: &str) -> String {
    site.backend
        .scalar(&format!(
            "SELECT sha256 FROM files WHERE original_name = '{name}'"
        ))
        .unwrap_or_else(|| panic!("no file {name}"))
}

/// Where a kill of a one-transaction command landed: judged by the warehouse right after
/// the kill, which must be either the state before the command or the state after a
/// clean one — never anything in between.
fn atomic_phase(
    ended: Ended,
    after_kill: &Snapshot,
    before: &Snapshot,
    expected: &Snapshot,
    context: &str,
) -> &'static str {
    let state = if after_kill == before {
        "nothing committed"
    } else if after_kill == expected {
        "committed"
    } else {
        panic!(
            "{context}: after the kill the warehouse is neither the state before the command \
             nor the state after it:\nagainst before:\n{}\nagainst after:\n{}",
            before.diff(after_kill).unwrap_or_default(),
            expected.diff(after_kill).unwrap_or_default()
        );
    };
    match (ended, state) {
        (Ended::Exited(_), _) => "after the process had exited",
        (Ended::Killed, "committed") => "killed after its commit",
        (Ended::Killed, _) => "killed before its commit (nothing changed)",
    }
}

/// `kill -9` of a one-transaction command (`reprocess`, `rotate-key`) at random moments
/// of a clean run's duration, then the same command again: the warehouse is the clean
/// outcome's, and right after the kill it was all or nothing.
fn crash_atomic(
    test: &str,
    base: &Site,
    args: &[&str],
    moments: usize,
    salt: u64,
    // Variables that verify the lake after the command (the new master key).
    verify_env: &[(&str, &str)],
) {
    let mut rng = Moments::new(test, salt);
    let before = base.snapshot();
    let mut clean = base.clone_site();
    let done = clean.run(args);
    assert_eq!(done.code, Some(0), "{test}: clean: {}", done.text());
    let t_clean = done.elapsed;
    let expected = clean.snapshot();
    assert_ne!(before, expected, "{test}: the command changes nothing");
    for (k, v) in verify_env {
        clean.set(k, v);
    }
    clean.assert_lake_intact(&format!("{test}: clean"));

    let mut tally = Tally::default();
    for i in 0..moments {
        let delay = rng.within(t_clean);
        let mut site = base.clone_site();
        let log = site.path().join("killed.log");
        let ended = kill_at(&mut site.cmd(args), delay, &log);
        let context = format!(
            "{test} seed {} moment {i}: kill at {:.3} s of {:.3} s",
            rng.seed,
            delay.as_secs_f64(),
            t_clean.as_secs_f64()
        );
        let phase = atomic_phase(ended, &site.snapshot(), &before, &expected, &context);
        let rerun = site.run(args);
        assert_eq!(
            rerun.code,
            Some(0),
            "{context} ({phase}): rerun: {}",
            rerun.text()
        );
        if let Some(d) = expected.diff(&site.snapshot()) {
            panic!("{context} ({phase}): the warehouse differs from a clean run's:\n{d}");
        }
        for (k, v) in verify_env {
            site.set(k, v);
        }
        site.assert_lake_intact(&context);
        tally.add(
            phase,
            format!(
                "moment {i:>2}: {:>7.3} s of {:.3} s → {phase}",
                delay.as_secs_f64(),
                t_clean.as_secs_f64()
            ),
        );
    }
    tally.print(&format!(
        "{test}: {moments} kills, seed {}, T_clean {:.3} s: all passed",
        rng.seed,
        t_clean.as_secs_f64()
    ));
}

fn crash_reprocess(kind: Kind, rows: u64, moments: usize, salt: u64) {
    let base = loaded_site(kind, rows, false);
    let sha = sha_of(&base, "2016-09.csv.gz");
    crash_atomic(
        &format!("crash_reprocess_{}", kind.name()),
        &base,
        &["reprocess", &sha, "--max-reject-share", "0.2", "--json"],
        moments,
        salt,
        &[],
    );
}

fn crash_rotate_key(kind: Kind, rows: u64, moments: usize, salt: u64) {
    let mut base = loaded_site(kind, rows, true);
    base.set("BANKPIPE_NEW_MASTER_KEY", KEY_B);
    crash_atomic(
        &format!("crash_rotate_key_{}", kind.name()),
        &base,
        &["rotate-key", "--json"],
        moments,
        salt,
        &[("BANKPIPE_MASTER_KEY", KEY_B)],
    );
}

#[test]
fn crash_reprocess_sqlite() {
    crash_reprocess(Kind::Sqlite, QUICK_ROWS, 3, 3);
}

#[test]
fn crash_reprocess_postgres() {
    crash_reprocess(Kind::Postgres, QUICK_ROWS, 3, 4);
}

#[test]
fn crash_rotate_key_sqlite() {
    crash_rotate_key(Kind::Sqlite, QUICK_ROWS, 3, 5);
}

#[test]
fn crash_rotate_key_postgres() {
    crash_rotate_key(Kind::Postgres, QUICK_ROWS, 3, 6);
}

#[test]
#[ignore = "long campaign: run with --ignored, results in docs/RELIABILITY.md"]
fn long_crash_reprocess_sqlite() {
    crash_reprocess(Kind::Sqlite, LONG_ROWS, 20, 3);
}

#[test]
#[ignore = "long campaign: run with --ignored, results in docs/RELIABILITY.md"]
fn long_crash_reprocess_postgres() {
    crash_reprocess(Kind::Postgres, LONG_ROWS, 20, 4);
}

#[test]
#[ignore = "long campaign: run with --ignored, results in docs/RELIABILITY.md"]
fn long_crash_rotate_key_sqlite() {
    crash_rotate_key(Kind::Sqlite, LONG_ROWS, 20, 5);
}

#[test]
#[ignore = "long campaign: run with --ignored, results in docs/RELIABILITY.md"]
fn long_crash_rotate_key_postgres() {
    crash_rotate_key(Kind::Postgres, LONG_ROWS, 20, 6);
}

/// What an export destination publishes: for each quarter marker, the version it names,
/// after checking that the version is whole (its manifest equals the marker, and every
/// file the manifest lists is there with the stated size and SHA-256).
fn published(out: &Path, context: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return found;
    };
    for q in entries.flatten() {
        let marker = q.path().join("manifest.json");
        let Ok(text) = std::fs::read(&marker) else {
            continue;
        };
        let m: Value = serde_json::from_slice(&text)
            .unwrap_or_else(|e| panic!("{context}: {} is not JSON: {e}", marker.display()));
        let version = m["version"].as_str().unwrap().to_owned();
        let own = q.path().join(format!("version={version}/manifest.json"));
        assert_eq!(
            std::fs::read(&own).ok().as_deref(),
            Some(&text[..]),
            "{context}: the marker names version {version}, whose own manifest differs or is missing"
        );
        for f in m["files"].as_array().unwrap() {
            let path = out.join(f["path"].as_str().unwrap());
            let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{context}: the marker's version lacks {}: {e}",
                    path.display()
                )
            });
            assert_eq!(
                bytes.len() as u64,
                f["bytes"].as_u64().unwrap(),
                "{context}: {}",
                path.display()
            );
            let sha = bankpipe::lake::fingerprint(&bytes[..]).unwrap().0;
            assert_eq!(
                sha,
                f["sha256"].as_str().unwrap(),
                "{context}: {}",
                path.display()
            );
        }
        found.insert(q.file_name().to_string_lossy().into_owned(), version);
    }
    found
}

/// The export destination's objects, with the manifests' `created_at` removed (the one
/// value two exports of the same rows legitimately differ in).
fn export_content(out: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for key in folder_content(out).objects.keys() {
        let mut bytes = std::fs::read(out.join(key)).unwrap();
        if key.ends_with("manifest.json") {
            let mut v: Value = serde_json::from_slice(&bytes).unwrap();
            v["created_at"] = Value::Null;
            bytes = serde_json::to_vec(&v).unwrap();
        }
        m.insert(key.clone(), bytes);
    }
    m
}

/// `kill -9` of `bankpipe export --quarter 2016Q3` at random moments, then the export
/// again: a killed export publishes nothing (no marker, or the marker of a whole
/// version), and the next one publishes the clean run's version, byte for byte.
fn crash_export(kind: Kind, rows: u64, moments: usize, salt: u64) {
    let test = format!("crash_export_{}", kind.name());
    let mut rng = Moments::new(&test, salt);
    let base = loaded_site(kind, rows, false);
    let sha = sha_of(&base, "2016-09.csv.gz");
    let r = base.run(&["reprocess", &sha, "--max-reject-share", "0.2"]);
    assert_eq!(r.code, Some(0), "{}", r.text());
    let args = ["export", "--quarter", "2016Q3", "--json"];
    let before = base.snapshot();

    let clean = base.clone_site();
    let done = clean.run(&args);
    assert_eq!(done.code, Some(0), "clean export: {}", done.text());
    let t_clean = done.elapsed;
    let expected = clean.snapshot();
    let versions = published(&clean.exports(), "clean export");
    assert_eq!(versions.len(), 1, "{versions:?}");
    let expected_files = export_content(&clean.exports());
    assert!(clean.leftovers().is_empty(), "{:?}", clean.leftovers());

    let mut tally = Tally::default();
    // The random moments, then one aimed at the publishing window (the first object
    // of the version seen at the destination), which random moments rarely hit.
    for i in 0..=moments {
        let site = base.clone_site();
        let (ended, delay) = if i < moments {
            let delay = rng.within(t_clean);
            let log = site.path().join("killed.log");
            (kill_at(&mut site.cmd(&args), delay, &log), delay)
        } else {
            kill_when_publishing(&site, &args)
        };
        let context = format!(
            "{test} seed {} moment {i}: kill at {:.3} s of {:.3} s",
            rng.seed,
            delay.as_secs_f64(),
            t_clean.as_secs_f64()
        );
        // Right after the kill: nothing published, or a whole version.
        let after = published(&site.exports(), &context);
        let unpublished = folder_content(&site.exports());
        let phase = match (ended, after.is_empty()) {
            (Ended::Exited(_), _) => "after the process had exited".to_owned(),
            (Ended::Killed, true)
                if unpublished.objects.is_empty() && unpublished.staging.is_empty() =>
            {
                "killed before publishing (destination empty)".to_owned()
            }
            (Ended::Killed, true) => format!(
                "killed while publishing: no marker; {} files of the unpublished version, {} staging",
                unpublished.objects.len(),
                unpublished.staging.len()
            ),
            (Ended::Killed, false) => "killed after the marker (published whole)".to_owned(),
        };
        if after.is_empty() {
            let snap = site.snapshot();
            assert!(
                snap == before,
                "{context}: nothing published, yet the warehouse changed:\n{}",
                before.diff(&snap).unwrap_or_default()
            );
        }
        let rerun = site.run(&args);
        assert_eq!(
            rerun.code,
            Some(0),
            "{context} ({phase}): rerun: {}",
            rerun.text()
        );
        assert_eq!(published(&site.exports(), &context), versions, "{context}");
        let got = export_content(&site.exports());
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected_files.keys().collect::<Vec<_>>(),
            "{context} ({phase}): the destination's objects"
        );
        for (k, v) in &expected_files {
            assert!(
                got[k] == *v,
                "{context} ({phase}): {k} differs from the clean export's"
            );
        }
        let staging = folder_content(&site.exports()).staging;
        assert!(
            staging.is_empty(),
            "{context} ({phase}): staging files left: {staging:?}"
        );
        if let Some(d) = expected.diff(&site.snapshot()) {
            panic!("{context} ({phase}): the warehouse differs from a clean export's:\n{d}");
        }
        let leftovers = site.leftovers();
        assert!(
            leftovers.is_empty(),
            "{context} ({phase}): work folders left in DATA_DIR after the rerun: {leftovers:?}"
        );
        tally.add(
            &phase,
            format!(
                "moment {i:>2}: {:>7.3} s of {:.3} s → {phase}",
                delay.as_secs_f64(),
                t_clean.as_secs_f64()
            ),
        );
    }
    tally.print(&format!(
        "{test}: {moments} random kills and one aimed at publishing, seed {}, T_clean {:.3} s: all passed",
        rng.seed,
        t_clean.as_secs_f64()
    ));
}

/// Starts the export and `kill -9`s it as soon as anything of the version appears at
/// the destination (an object or a staging file).
fn kill_when_publishing(site: &Site, args: &[&str]) -> (Ended, Duration) {
    let started = Instant::now();
    let mut child = site
        .cmd(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = site.exports();
    let mut exited = None;
    let seen = poll(COMMAND_LIMIT, || {
        if let Ok(Some(s)) = child.try_wait() {
            exited = Some(s.code());
            return true;
        }
        let c = folder_content(&out);
        !c.objects.is_empty() || !c.staging.is_empty()
    });
    assert!(seen, "the export neither published nor ended");
    let ended = match exited {
        Some(code) => Ended::Exited(code),
        None => {
            child.kill().unwrap();
            child.wait().unwrap();
            Ended::Killed
        }
    };
    (ended, started.elapsed())
}

#[test]
fn crash_export_sqlite() {
    crash_export(Kind::Sqlite, 5_000, 3, 7);
}

#[test]
fn crash_export_postgres() {
    crash_export(Kind::Postgres, 5_000, 3, 8);
}

#[test]
#[ignore = "long campaign: run with --ignored, results in docs/RELIABILITY.md"]
fn long_crash_export_sqlite() {
    crash_export(Kind::Sqlite, 20_000, 20, 7);
}

#[test]
#[ignore = "long campaign: run with --ignored, results in docs/RELIABILITY.md"]
fn long_crash_export_postgres() {
    crash_export(Kind::Postgres, 20_000, 20, 8);
}

// ---------------------------------------------------------------------------------------
// 2. Four workers on one PostgreSQL, one of them killed
// ---------------------------------------------------------------------------------------

/// `n` files of `rows` rows each, ids disjoint between files (so that the warehouse does
/// not depend on which worker loads which file first), 1% defects, months July to
/// September in turn.
fn worker_files(n: u64, rows: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..n {
        let bytes = campaign::generated(&bankpipe::generate::GenerateOptions {
            rows,
            seed: 5_000 + i,
            defects: 0.01,
            format: bankpipe::generate::OutputFormat::Csv,
            first_id: 1 + i * rows,
            month: Some((2016, 7 + (i % 3) as u32)),
        });
        std::fs::write(dir.path().join(format!("f{i:03}.csv")), bytes).unwrap();
    }
    dir
}

/// Four `bankpipe run` processes on one shared inbox and one PostgreSQL database; kills
/// worker `victim` at `delay` (never, with `None`). Returns how long until the last one
/// ended and each survivor's report.
fn four_workers(
    site: &Site,
    inbox: &Path,
    kill: Option<(usize, Duration)>,
) -> (Duration, Vec<Value>, Ended) {
    let started = Instant::now();
    let inbox_arg = inbox.display().to_string();
    let mut children: Vec<std::process::Child> = (0..4)
        .map(|w| {
            site.cmd(&["run", "--json", "--inbox", &inbox_arg])
                .stdin(std::process::Stdio::null())
                .stdout(std::fs::File::create(site.path().join(format!("w{w}.json"))).unwrap())
                .stderr(std::fs::File::create(site.path().join(format!("w{w}.log"))).unwrap())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ended = Ended::Exited(None);
    if let Some((victim, delay)) = kill {
        std::thread::sleep(delay);
        ended = match children[victim].try_wait().unwrap() {
            Some(s) => Ended::Exited(s.code()),
            None => {
                children[victim].kill().unwrap();
                children[victim].wait().unwrap();
                Ended::Killed
            }
        };
    }
    let mut reports = Vec::new();
    for (w, child) in children.iter_mut().enumerate() {
        if kill.is_some_and(|(v, _)| v == w) {
            continue;
        }
        let status = campaign::wait_bounded(child, COMMAND_LIMIT)
            .unwrap_or_else(|| panic!("worker {w} still running after {COMMAND_LIMIT:?}"));
        let out = std::fs::read_to_string(site.path().join(format!("w{w}.json"))).unwrap();
        let log = std::fs::read_to_string(site.path().join(format!("w{w}.log"))).unwrap();
        assert_eq!(status.code(), Some(0), "worker {w}: {out}\n{log}");
        reports.push(serde_json::from_str(&out).unwrap());
    }
    (started.elapsed(), reports, ended)
}

fn workers_campaign(files: u64, rows: u64, reps: usize, salt: u64) {
    let test = "four_workers_one_killed";
    let mut rng = Moments::new(test, salt);
    let data = worker_files(files, rows);

    let clean = Site::new(Kind::Postgres, &[]);
    let (t_clean, reports, _) = four_workers(&clean, data.path(), None);
    let loaded: usize = reports
        .iter()
        .flat_map(|r| r["files"].as_array().unwrap())
        .filter(|f| f["status"] == "loaded")
        .count();
    assert_eq!(
        loaded as u64, files,
        "each file loaded by exactly one worker"
    );
    let expected = clean.snapshot();
    assert_eq!(expected.rows("files") as u64, files);
    let expected_rows = clean
        .backend
        .scalar("SELECT CAST(SUM(rows_loaded) AS TEXT) FROM files")
        .unwrap();

    let mut tally = Tally::default();
    for rep in 0..reps {
        let victim = rng.below(4);
        let delay = rng.within(t_clean);
        let site = Site::new(Kind::Postgres, &[]);
        let (_, survivors, ended) = four_workers(&site, data.path(), Some((victim, delay)));
        let context = format!(
            "{test} seed {} repetition {rep}: worker {victim} killed at {:.3} s of {:.3} s",
            rng.seed,
            delay.as_secs_f64(),
            t_clean.as_secs_f64()
        );
        let left = site
            .backend
            .scalar("SELECT CAST(COUNT(*) AS TEXT) FROM files WHERE status = 'landing'")
            .unwrap();
        let by_survivors: usize = survivors
            .iter()
            .flat_map(|r| r["files"].as_array().unwrap())
            .filter(|f| f["status"] == "loaded")
            .count();
        let rerun = site.run(&[
            "run",
            "--json",
            "--inbox",
            &data.path().display().to_string(),
        ]);
        assert_eq!(rerun.code, Some(0), "{context}: rerun: {}", rerun.text());
        let by_rerun = rerun.json()["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["status"] == "loaded")
            .count();
        if let Some(d) = expected.diff(&site.snapshot()) {
            panic!("{context}: the warehouse differs from a clean run's:\n{d}");
        }
        assert_eq!(
            site.backend
                .scalar("SELECT CAST(COUNT(*) AS TEXT) FROM transactions")
                .unwrap(),
            expected_rows,
            "{context}"
        );
        site.assert_lake_intact(&context);
        let phase = match ended {
            Ended::Killed => format!(
                "worker killed; {left} claim(s) left landing; survivors loaded {by_survivors}, the rerun {by_rerun}"
            ),
            Ended::Exited(_) => {
                format!("worker had exited; survivors loaded {by_survivors}, the rerun {by_rerun}")
            }
        };
        tally.add(
            if ended == Ended::Killed {
                "killed while running"
            } else {
                "had already exited"
            },
            format!("repetition {rep}: {context}: {phase}"),
        );
    }
    tally.print(&format!(
        "{test}: 4 workers × {files} files × {rows} rows, {reps} repetitions, seed {}, T_clean {:.3} s: every file loaded exactly once",
        rng.seed,
        t_clean.as_secs_f64()
    ));
}

#[test]
fn four_workers_one_killed() {
    workers_campaign(12, 2_000, 2, 9);
}

#[test]
#[ignore = "long campaign: run with --ignored, results in docs/RELIABILITY.md"]
fn long_four_workers_fifty_files_five_kills() {
    workers_campaign(50, 5_000, 5, 9);
}

// ---------------------------------------------------------------------------------------
// 3. Faults
// ---------------------------------------------------------------------------------------

/// Polls `cond` every 2 ms for at most `limit`; whether it came true.
fn poll(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// A site's run after a fault, then the checks every fault ends with: the warehouse
/// equals a clean run's, the lake verifies whole, no run is left running.
fn assert_like_clean(site: &Site, rows: u64, context: &str) {
    let clean = reference(site.kind, rows);
    if let Some(d) = clean.snapshot.diff(&site.snapshot()) {
        panic!("{context}: the warehouse differs from a clean run's:\n{d}");
    }
    site.assert_lake_intact(context);
    site.assert_no_run_left_running(context);
}

/// `pg_ctl restart -m fast` (every session terminated with `57P01`, a shutdown
/// checkpoint, then a start), as an operator restarting the server would.
fn pg_restart_fast(cluster: &PgCluster) -> Duration {
    let started = Instant::now();
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(cluster.bin_dir().join("pg_ctl"));
        c
    } else {
        Command::new(cluster.bin_dir().join("pg_ctl"))
    };
    let out = cmd
        .arg("-D")
        .arg(cluster.dir().join("data"))
        .arg("-l")
        .arg(cluster.dir().join("server.log"))
        .args(["-w", "-t", "60", "-m", "fast", "-o"])
        .arg(format!("-c port={}", cluster.port()))
        .arg("restart")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_ctl restart: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Whether this process runs as root (the cluster then runs as `postgres`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Rows a monthly file holds in the fault tests.
const FAULT_ROWS: u64 = 30_000;

/// PostgreSQL restarted (`pg_ctl restart -m fast`) while a run's `COPY` streams rows:
/// the run retries the file within its bounds and ends as a clean run does.
#[test]
fn postgres_restarted_mid_copy() {
    let cluster = PgCluster::start();
    let site = Site::on_cluster(&cluster, &inbox_files(FAULT_ROWS));
    let mut child = site
        .cmd(&["run", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || std::io::read_to_string(out).unwrap());
    let err = std::thread::spawn(move || std::io::read_to_string(err).unwrap());
    let db = match &site.backend {
        Backend::Postgres(url) => url.rsplit('/').next().unwrap().to_owned(),
        Backend::Sqlite(_) => unreachable!(),
    };
    let copying = poll(Duration::from_secs(120), || {
        cluster.psql(
            "postgres",
            &format!(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '{db}' \
                 AND state = 'active' AND query LIKE 'COPY transactions%'"
            ),
        ) != "0"
    });
    assert!(copying, "no COPY into transactions seen");
    let restart = pg_restart_fast(&cluster);
    let status = campaign::wait_bounded(&mut child, COMMAND_LIMIT).expect("run ended");
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("retrying"), "a retry is logged: {err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let statuses: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["loaded", "loaded", "failed"], "{report}");
    assert_like_clean(&site, FAULT_ROWS, "PostgreSQL restarted mid-COPY");
    eprintln!(
        "postgres_restarted_mid_copy: pg_ctl restart -m fast took {:.2} s; the run retried and \
         ended in {} s (a clean run: {:.2} s)",
        restart.as_secs_f64(),
        report["elapsed_s"],
        reference(Kind::Postgres, FAULT_ROWS).elapsed.as_secs_f64()
    );
}

/// PostgreSQL down when a run starts: exit 3 within bounded retries, naming the
/// unreachable warehouse; nothing landed, nothing claimed; once it is back, a rerun
/// completes.
#[test]
fn postgres_unreachable_at_start() {
    let cluster = PgCluster::start();
    let site = Site::on_cluster(&cluster, &inbox_files(FAULT_ROWS));
    cluster.stop();
    let down = site.run(&["run", "--json"]);
    assert_eq!(down.code, Some(3), "{}", down.text());
    let last = down.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("bankpipe: error: warehouse unreachable at "),
        "{}",
        down.text()
    );
    let report = down.json();
    assert_eq!(report["status"], "failed");
    assert_eq!(
        report["files"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    let lake = folder_content(&site.lake());
    assert!(
        lake.objects.is_empty() && lake.staging.is_empty(),
        "nothing may land while the warehouse is down: {lake:?}"
    );
    cluster.restart();
    let rerun = site.run(&["run", "--json"]);
    assert_eq!(rerun.code, Some(1), "{}", rerun.text());
    assert_like_clean(&site, FAULT_ROWS, "PostgreSQL unreachable at start");
    eprintln!(
        "postgres_unreachable_at_start: exit 3 after {:.2} s: {last}",
        down.elapsed.as_secs_f64()
    );
}

/// Points a site's lake at bucket `lake` of `s3`.
fn use_s3_lake(site: &mut Site, s3: &campaign::S3Fs) {
    site.set("BANKPIPE_LAKE_URL", "s3://lake");
    for (k, v) in s3.env() {
        site.set(k, &v);
    }
}

/// The S3 lake's objects (files of the bucket folder), which must be exactly the
/// catalog's keys.
fn assert_bucket_is_the_catalog(site: &Site, s3: &campaign::S3Fs, context: &str) {
    let objects: Vec<String> = folder_content(&s3.root().join("lake"))
        .objects
        .into_keys()
        .collect();
    let mut keys: Vec<String> = site
        .backend
        .query("SELECT lake_key FROM files")
        .into_iter()
        .filter_map(|mut r| r.remove(0))
        .collect();
    keys.sort();
    assert_eq!(
        objects, keys,
        "{context}: the bucket holds exactly the catalog's objects"
    );
}

/// The S3 server killed (`kill -9`) while a raw copy is being uploaded (a multipart
/// upload begun and not completed): the landing fails after the store's bounded
/// retries, the claim is withdrawn, the run stops with exit 3 naming the lake; once the
/// server is back, a rerun ends as a clean run does. Also the server down when the run
/// starts.
#[test]
fn s3_stopped_mid_upload_and_down_at_start() {
    let s3_root = tempfile::tempdir().unwrap();
    let mut s3 = campaign::S3Fs::start(s3_root.path(), &["lake"]);
    let mut site = Site::new(Kind::Sqlite, &inbox_files(FAULT_ROWS));
    use_s3_lake(&mut site, &s3);

    // Down at start.
    s3.kill();
    let down = site.run(&["run", "--json"]);
    assert_eq!(down.code, Some(3), "{}", down.text());
    assert!(
        down.stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("lake unreachable at s3://lake"),
        "{}",
        down.text()
    );
    assert!(!down.text().contains(campaign::S3_SECRET_KEY));
    let claims = site
        .backend
        .scalar("SELECT CAST(COUNT(*) AS TEXT) FROM files")
        .unwrap_or_else(|| "0".into());
    assert_eq!(claims, "0", "nothing claimed while the lake is down");
    let down_at_start = down.elapsed;

    // Killed mid-upload.
    s3.restart();
    let mut child = site
        .cmd(&["run", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || std::io::read_to_string(out).unwrap());
    let err = std::thread::spawn(move || std::io::read_to_string(err).unwrap());
    let mid = poll(Duration::from_secs(120), || s3.uploads_in_progress() > 0);
    assert!(mid, "no multipart upload seen");
    s3.kill();
    let killed_at = Instant::now();
    let status = campaign::wait_bounded(&mut child, COMMAND_LIMIT).expect("run ended");
    let ended_after = killed_at.elapsed();
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert_eq!(status.code(), Some(3), "{out}\n{err}");
    assert!(
        err.lines().last().unwrap_or_default().contains("lake"),
        "the error names the lake: {err}"
    );
    assert!(!out.contains(campaign::S3_SECRET_KEY) && !err.contains(campaign::S3_SECRET_KEY));
    let landing = site
        .backend
        .scalar("SELECT CAST(COUNT(*) AS TEXT) FROM files WHERE status = 'landing'");
    assert_eq!(
        landing.as_deref(),
        Some("0"),
        "a claim whose landing failed is withdrawn"
    );

    s3.restart();
    let rerun = site.run(&["run", "--json"]);
    assert_eq!(rerun.code, Some(1), "{}", rerun.text());
    assert_like_clean(&site, FAULT_ROWS, "S3 killed mid-upload");
    assert_bucket_is_the_catalog(&site, &s3, "S3 killed mid-upload");
    eprintln!(
        "s3_stopped_mid_upload_and_down_at_start: down at start: exit 3 after {:.2} s; \
         killed mid-upload: exit 3 {:.2} s after the kill; {} incomplete upload(s) left on \
         the server (invisible; a bucket lifecycle rule aborts them on real S3)",
        down_at_start.as_secs_f64(),
        ended_after.as_secs_f64(),
        s3.uploads_in_progress()
    );
}

/// The S3 store refusing writes: every `PUT`/`POST`/`DELETE` answered `503 SlowDown`
/// (a proxy in front of the real server; reads pass), from the start (the run's probe
/// write is refused) and from the moment the first raw copy is in (the next landing is
/// refused). Each time the store's bounded retries run out, no claim is left, exit 3
/// naming the store; once writes are accepted again a rerun ends as a clean run does.
#[test]
fn s3_refusing_writes() {
    let mut figures = Vec::new();
    for from_start in [true, false] {
        let what = if from_start {
            "from the start"
        } else {
            "mid-run"
        };
        let s3_root = tempfile::tempdir().unwrap();
        let s3 = campaign::S3Fs::start(s3_root.path(), &["lake"]);
        let proxy = campaign::WriteRefusingProxy::start(s3.port());
        proxy.set_refusing(from_start);
        let mut site = Site::new(Kind::Sqlite, &inbox_files(FAULT_ROWS));
        use_s3_lake(&mut site, &s3);
        site.set("AWS_ENDPOINT_URL", &proxy.endpoint());
        let mut cmd = site.cmd(&["run", "--json"]);
        let child = std::thread::spawn(move || run_bounded(&mut cmd, COMMAND_LIMIT));
        if !from_start {
            let raw = s3.root().join("lake/raw");
            let landed = poll(Duration::from_secs(120), || {
                !folder_content(&raw).objects.is_empty()
            });
            assert!(landed, "{what}: no raw copy landed");
            proxy.set_refusing(true);
        }
        let refused = child.join().unwrap();
        assert_eq!(refused.code, Some(3), "{what}: {}", refused.text());
        let last = refused.stderr.lines().last().unwrap_or_default().to_owned();
        assert!(last.contains("lake"), "{what}: {}", refused.text());
        assert!(proxy.refused() > 0, "{what}");
        let landing = site
            .backend
            .scalar("SELECT CAST(COUNT(*) AS TEXT) FROM files WHERE status = 'landing'");
        assert_eq!(landing.as_deref(), Some("0"), "{what}: {}", refused.text());
        // What the bucket holds is what the catalog names (no object of a withdrawn
        // claim), and it verifies.
        assert_bucket_is_the_catalog(&site, &s3, what);
        proxy.set_refusing(false);
        let rerun = site.run(&["run", "--json"]);
        assert_eq!(rerun.code, Some(1), "{what}: {}", rerun.text());
        assert_like_clean(&site, FAULT_ROWS, &format!("S3 refusing writes {what}"));
        assert_bucket_is_the_catalog(&site, &s3, what);
        figures.push(format!(
            "{what}: {} writes refused; exit 3 after {:.2} s: {last}",
            proxy.refused(),
            refused.elapsed.as_secs_f64()
        ));
    }
    eprintln!("s3_refusing_writes:\n  {}", figures.join("\n  "));
}

/// `DATA_DIR` on a full disk, twice: with the lake folder in it (the raw copy runs out
/// of space first), and with only the SQLite warehouse in it (the load transaction runs
/// out of space). Each: a clear error and exit 3, nothing partial in the warehouse or
/// the lake, and with space again a rerun ends as a clean run does.
#[test]
fn full_disk_under_sqlite_and_lake() {
    let files = inbox_files(FAULT_ROWS);
    let inbox = tempfile::tempdir().unwrap();
    for f in &files {
        std::fs::copy(f, inbox.path().join(f.file_name().unwrap())).unwrap();
    }
    let mut figures = Vec::new();
    for lake_inside in [true, false] {
        let what = if lake_inside {
            "lake and warehouse on the full disk"
        } else {
            "warehouse alone on the full disk"
        };
        let disk = campaign::Tmpfs::mount(if lake_inside { 6 } else { 4 });
        let elsewhere = tempfile::tempdir().unwrap();
        let mut site = Site::at(Kind::Sqlite, &disk.path().join("data"), &[]);
        site.set("BANKPIPE_INBOX", &inbox.path().display().to_string());
        let lake = if lake_inside {
            site.lake()
        } else {
            let lake = elsewhere.path().join("lake");
            site.set("BANKPIPE_LAKE_URL", &lake.display().to_string());
            lake
        };
        let full = site.run(&["run", "--json"]);
        assert_eq!(full.code, Some(3), "{what}: {}", full.text());
        let last = full.stderr.lines().last().unwrap_or_default().to_owned();
        assert!(
            last.contains("No space left on device") || last.contains("disk is full"),
            "{what}: the error says the disk is full: {}",
            full.text()
        );
        // Nothing partial: what the catalog holds verifies, no staging file is left.
        if site.backend_exists() {
            let v = site.run(&["verify", "--json"]);
            assert_eq!(v.code, Some(0), "{what}: {}", v.text());
            let landing = site
                .backend
                .scalar("SELECT CAST(COUNT(*) AS TEXT) FROM files WHERE status <> 'loaded' AND status <> 'failed'");
            figures.push(format!("{what}: exit 3 after {:.2} s, {} claim(s) left landing (resumed by the rerun): {last}", full.elapsed.as_secs_f64(), landing.unwrap_or_default()));
        } else {
            figures.push(format!(
                "{what}: exit 3 after {:.2} s: {last}",
                full.elapsed.as_secs_f64()
            ));
        }
        let staged = folder_content(&lake).staging;
        assert!(staged.is_empty(), "{what}: {staged:?}");
        disk.resize(512);
        let rerun = site.run(&["run", "--json"]);
        assert_eq!(rerun.code, Some(1), "{what}: {}", rerun.text());
        assert_like_clean(&site, FAULT_ROWS, what);
        assert_eq!(
            folder_content(&lake).objects,
            reference(Kind::Sqlite, FAULT_ROWS).lake.objects,
            "{what}"
        );
    }
    eprintln!(
        "full_disk_under_sqlite_and_lake:\n  {}",
        figures.join("\n  ")
    );
}

/// `kill -9` of a run whose inbox is an S3 prefix, at random moments (spooling,
/// loading): the rerun ends as a clean run from a folder inbox does, and the killed
/// run's spool folder (`DATA_DIR/.spool/run-*`) is gone.
#[test]
fn crash_run_from_an_s3_inbox() {
    let rows = QUICK_ROWS;
    let mut rng = Moments::new("crash_run_from_an_s3_inbox", 10);
    let s3_root = tempfile::tempdir().unwrap();
    let s3 = campaign::S3Fs::start(s3_root.path(), &["inbox"]);
    for f in inbox_files(rows) {
        std::fs::copy(&f, s3.root().join("inbox").join(f.file_name().unwrap())).unwrap();
    }
    let args = ["run", "--json", "--inbox", "s3://inbox"];
    let with_s3 = |site: &mut Site| {
        for (k, v) in s3.env() {
            site.set(k, &v);
        }
    };
    let mut clean = Site::new(Kind::Sqlite, &[]);
    with_s3(&mut clean);
    let done = clean.run(&args);
    assert_eq!(done.code, Some(1), "{}", done.text());
    let expected = reference(Kind::Sqlite, rows);
    assert!(
        expected.snapshot == clean.snapshot(),
        "an S3 inbox loads as a folder inbox"
    );
    let mut tally = Tally::default();
    for i in 0..3 {
        let delay = rng.within(done.elapsed);
        let mut site = Site::new(Kind::Sqlite, &[]);
        with_s3(&mut site);
        let ended = kill_at(&mut site.cmd(&args), delay, &site.path().join("killed.log"));
        let context = format!(
            "S3 inbox, seed {} moment {i}: kill at {:.3} s of {:.3} s ({ended:?})",
            rng.seed,
            delay.as_secs_f64(),
            done.elapsed.as_secs_f64()
        );
        let spooled = folder_content(&site.path().join(".spool"))
            .objects
            .keys()
            .any(|k| !k.ends_with("/lock") && !k.ends_with("/.lock.new"));
        let rerun = site.run(&args);
        assert_eq!(rerun.code, Some(1), "{context}: {}", rerun.text());
        if let Some(d) = expected.snapshot.diff(&site.snapshot()) {
            panic!("{context}: the warehouse differs from a clean run's:\n{d}");
        }
        site.assert_lake_intact(&context);
        let left = site.leftovers();
        assert!(
            left.is_empty(),
            "{context}: the killed run's spool is left: {left:?}"
        );
        tally.add(
            if spooled {
                "killed with a spooled copy on disk"
            } else {
                "killed with nothing spooled"
            },
            context,
        );
    }
    tally.print(&format!(
        "crash_run_from_an_s3_inbox: 3 kills, seed {}: all passed",
        rng.seed
    ));
}

/// The spool of an S3 inbox (`DATA_DIR/.spool`) on a full disk: the objects that do not
/// fit fail with a clear reason (exit 1), nothing of them is claimed, no partial spooled
/// copy is left; with space again a rerun ends as a clean run does.
#[test]
fn full_disk_under_the_spool() {
    let disk = campaign::Tmpfs::mount(1);
    let s3_root = tempfile::tempdir().unwrap();
    let s3 = campaign::S3Fs::start(s3_root.path(), &["inbox"]);
    for f in inbox_files(FAULT_ROWS) {
        std::fs::copy(&f, s3.root().join("inbox").join(f.file_name().unwrap())).unwrap();
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let mut site = Site::at(Kind::Sqlite, &disk.path().join("data"), &[]);
    site.sqlite_at(&elsewhere.path().join("warehouse.db"));
    site.set(
        "BANKPIPE_LAKE_URL",
        &elsewhere.path().join("lake").display().to_string(),
    );
    for (k, v) in s3.env() {
        site.set(k, &v);
    }
    let full = site.run(&["run", "--json", "--inbox", "s3://inbox"]);
    assert_eq!(full.code, Some(1), "{}", full.text());
    let report = full.json();
    let failed: Vec<&Value> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["error"]
                .as_str()
                .is_some_and(|e| e.contains("No space left on device"))
        })
        .collect();
    assert!(!failed.is_empty(), "{report}");
    for f in &failed {
        assert_eq!(f["status"], "failed", "{f}");
        assert!(
            f["file_id"].is_null(),
            "a file that was not spooled is not claimed: {f}"
        );
    }
    let left = site.leftovers();
    assert!(left.is_empty(), "partial spooled copies left: {left:?}");
    disk.resize(256);
    let rerun = site.run(&["run", "--json", "--inbox", "s3://inbox"]);
    assert_eq!(rerun.code, Some(1), "{}", rerun.text());
    // The lake is outside DATA_DIR here: check it where it is.
    let clean = reference(Kind::Sqlite, FAULT_ROWS);
    if let Some(d) = clean.snapshot.diff(&site.snapshot()) {
        panic!("spool full: the warehouse differs from a clean run's:\n{d}");
    }
    assert_eq!(
        folder_content(&elsewhere.path().join("lake")).objects,
        clean.lake.objects
    );
    let v = site.run(&["verify", "--json"]);
    assert_eq!(v.code, Some(0), "{}", v.text());
    assert!(site.leftovers().is_empty(), "{:?}", site.leftovers());
    eprintln!(
        "full_disk_under_the_spool: exit 1; {} of 3 files failed: {}",
        failed.len(),
        failed[0]["error"]
    );
}

/// A base for exports: the three monthly files loaded, September reprocessed, so the
/// quarter 2016Q3 is complete.
fn exported_base(kind: Kind, rows: u64) -> Site {
    let base = loaded_site(kind, rows, false);
    let sha = sha_of(&base, "2016-09.csv.gz");
    let r = base.run(&["reprocess", &sha, "--max-reject-share", "0.2"]);
    assert_eq!(r.code, Some(0), "{}", r.text());
    base
}

/// `bankpipe export` with its working folder (`DATA_DIR/.export-*`) on a full disk, then
/// with its destination on a full disk: a clear error, nothing published, no working
/// folder or staging file left; with space again the export publishes the clean
/// export's version, byte for byte.
#[test]
fn full_disk_under_the_export() {
    let base = exported_base(Kind::Sqlite, FAULT_ROWS);
    let clean = base.clone_site();
    let done = clean.run(&["export", "--quarter", "2016Q3", "--json"]);
    assert_eq!(done.code, Some(0), "{}", done.text());
    let expected = export_content(&clean.exports());

    // The working folder on a full disk.
    let work = campaign::Tmpfs::mount(2);
    let site = base.clone_site();
    // DATA_DIR on the small disk; the warehouse, lake and destination where they are.
    let mut cmd = site.cmd_in(work.path(), &["export", "--quarter", "2016Q3", "--json"]);
    cmd.env("BANKPIPE_LAKE_URL", site.lake())
        .arg("--out")
        .arg(site.exports());
    let full = run_bounded(&mut cmd, COMMAND_LIMIT);
    assert!(matches!(full.code, Some(1) | Some(3)), "{}", full.text());
    assert!(
        full.text().contains("No space left on device"),
        "{}",
        full.text()
    );
    let work_left = folder_content(work.path());
    assert!(
        work_left.objects.is_empty() && work_left.staging.is_empty(),
        "the working folder is removed: {work_left:?}"
    );
    assert!(published(&site.exports(), "work full").is_empty());
    work.resize(512);
    let again = run_bounded(&mut cmd, COMMAND_LIMIT);
    assert_eq!(again.code, Some(0), "{}", again.text());
    assert!(
        export_content(&site.exports()) == expected,
        "work full: not the clean export"
    );
    let work_error = full.stderr.lines().last().unwrap_or_default().to_owned();
    let work_code = full.code;

    // The destination on a full disk.
    let dest = campaign::Tmpfs::mount(1);
    let site = base.clone_site();
    let mut cmd = site.cmd(&["export", "--quarter", "2016Q3", "--json"]);
    cmd.arg("--out").arg(dest.path());
    let full = run_bounded(&mut cmd, COMMAND_LIMIT);
    assert!(matches!(full.code, Some(1) | Some(3)), "{}", full.text());
    assert!(
        full.text().contains("No space left on device"),
        "{}",
        full.text()
    );
    assert!(published(dest.path(), "destination full").is_empty());
    let d = folder_content(dest.path());
    assert!(d.staging.is_empty(), "staging files left: {d:?}");
    assert!(site.leftovers().is_empty(), "{:?}", site.leftovers());
    dest.resize(512);
    let again = run_bounded(&mut cmd, COMMAND_LIMIT);
    assert_eq!(again.code, Some(0), "{}", again.text());
    assert!(
        export_content(dest.path()) == expected,
        "destination full: not the clean export"
    );
    eprintln!(
        "full_disk_under_the_export: working folder full: exit {:?}: {work_error}; destination \
         full: exit {:?}: {}; {} unpublished object(s) of the version left behind until the rerun",
        work_code,
        full.code,
        full.stderr.lines().last().unwrap_or_default(),
        d.objects.len()
    );
}

// ---------------------------------------------------------------------------------------
// Clock
// ---------------------------------------------------------------------------------------

/// libfaketime, which shifts a process's wall clock (`apt-get install faketime`).
fn libfaketime() -> PathBuf {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("libfaketime is not installed: `apt-get install faketime` (.ci/run does)")
        })
}

/// Two workers on one PostgreSQL whose wall clocks differ by three days (libfaketime):
/// every file is loaded exactly once, file ids follow the order of the claims on the
/// server's clock, and the warehouse equals a one-worker run's except for the lake keys'
/// `yyyy/mm`, which come from the landing worker's clock.
#[test]
fn two_workers_whose_clocks_differ() {
    let lib = libfaketime();
    let data = worker_files(8, 2_000);
    let inbox = data.path().display().to_string();
    let clean = Site::new(Kind::Postgres, &[]);
    let done = clean.run(&["run", "--json", "--inbox", &inbox]);
    assert_eq!(done.code, Some(0), "{}", done.text());
    let expected = clean.snapshot().without("files", "lake_key");

    let site = Site::new(Kind::Postgres, &[]);
    let mut skewed = site.cmd(&["run", "--json", "--inbox", &inbox]);
    skewed
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME", "-3d")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let mut normal = site.cmd(&["run", "--json", "--inbox", &inbox]);
    let a = std::thread::spawn(move || run_bounded(&mut normal, COMMAND_LIMIT));
    let b = run_bounded(&mut skewed, COMMAND_LIMIT);
    let a = a.join().unwrap();
    assert_eq!(a.code, Some(0), "{}", a.text());
    assert_eq!(b.code, Some(0), "{}", b.text());
    // The skew took: the two runs' start times (each worker's clock) are days apart.
    let spread = site
        .backend
        .scalar(
            "SELECT CAST(EXTRACT(EPOCH FROM MAX(started_at) - MIN(started_at)) AS BIGINT)::text FROM runs",
        )
        .unwrap();
    assert!(
        spread.parse::<i64>().unwrap() > 2 * 86_400,
        "runs started {spread} s apart"
    );
    if let Some(d) = expected.diff(&site.snapshot().without("files", "lake_key")) {
        panic!("two clocks: the warehouse differs from one worker's:\n{d}");
    }
    // File ids and claim times both come from the server: the same order.
    let by_id = site
        .backend
        .query("SELECT CAST(file_id AS TEXT) AS id FROM files ORDER BY file_id");
    let by_claim = site
        .backend
        .query("SELECT CAST(file_id AS TEXT) AS id FROM files ORDER BY claimed_at, file_id");
    assert_eq!(by_id, by_claim);
    let loaded: Vec<usize> = [&a, &b]
        .iter()
        .map(|r| {
            r.json()["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["status"] == "loaded")
                .count()
        })
        .collect();
    assert_eq!(loaded.iter().sum::<usize>(), 8, "{loaded:?}");
    site.assert_lake_intact("two clocks");
    eprintln!(
        "two_workers_whose_clocks_differ: runs started {spread} s apart; files loaded by the \
         worker on time {}, by the one 3 days behind {}; every file once",
        loaded[0], loaded[1]
    );
}

/// A run killed on PostgreSQL while its server session lingers (a backend busy in a
/// statement that does not read from the client notices the dead client only at its
/// next check, up to a second later), then a rerun at once: the rerun's start cannot yet
/// tell that the killed run is dead, since its session still holds the run's lock. It
/// must be recorded `aborted` by the time the rerun ends, not left `running` (and
/// counted in `bankpipe_runs_in_progress`) until some later run. The lingering session
/// is played by a session holding the killed run's lock (`src/warehouse/postgres.rs`:
/// `LOCK_SPACE + 1`, `hashtext(run_id)`), let go once the rerun has started: found by the
/// long campaign (a kill during the merge).
#[test]
fn a_killed_run_whose_session_lingers_is_recorded_aborted_by_the_rerun() {
    let site = Site::new(Kind::Postgres, &inbox_files(QUICK_ROWS));
    let url = site.backend.url();
    let m = site.run(&["migrate"]);
    assert_eq!(m.code, Some(0), "{}", m.text());
    let mut lingering = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    lingering
        .batch_execute(
            "INSERT INTO runs (run_id, started_at, status, host, pid) \
             VALUES ('killed-run', now(), 'running', 'elsewhere', 1); \
             SELECT pg_advisory_lock(1650552427 + 1, hashtext('killed-run'));",
        )
        .unwrap();
    let mut rerun = site.cmd(&["run", "--json"]);
    let rerun = std::thread::spawn(move || run_bounded(&mut rerun, COMMAND_LIMIT));
    // Once the rerun has recorded its own start, the lingering session ends.
    let started = poll(COMMAND_LIMIT, || {
        site.backend
            .scalar("SELECT CAST(COUNT(*) AS TEXT) FROM runs WHERE run_id <> 'killed-run'")
            .as_deref()
            == Some("1")
    });
    assert!(started);
    drop(lingering);
    let rerun = rerun.join().unwrap();
    assert_eq!(rerun.code, Some(1), "{}", rerun.text());
    let status = site
        .backend
        .scalar("SELECT status FROM runs WHERE run_id = 'killed-run'");
    assert_eq!(status.as_deref(), Some("aborted"));
    site.assert_no_run_left_running("a killed run whose session lingered");
}
