//! Carries out each command: resolves configuration, opens what the command needs, and
//! writes its output (stdout for results, stderr for logs and progress).
//!
//! Exit statuses (the contract of issue #2): 0 every file loaded or skipped as a
//! duplicate; 1 a file failed (or a check found a failing file); 2 usage or
//! configuration error; 3 warehouse or lake unreachable.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::cli::{
    CheckArgs, Cli, Command, DemoArgs, GenFormat, GenerateArgs, RejectsArgs, RotateKeyArgs, RunArgs,
};
use crate::config::{Config, ConfigError, Overrides, redact_url};
use crate::generate::{GenerateOptions, OutputFormat};
use crate::lake::{Lake, LakeError};
use crate::pipeline::{self, Context, RunError};
use crate::progress::{Bars, Progress, Silent};
use crate::report::RunReport;
use crate::warehouse::{RejectFilter, Warehouse, WarehouseError};

/// A command that could not do its job, with its exit status.
#[derive(Debug)]
pub struct Failure {
    /// Exit status.
    pub code: u8,
    /// One-line message (no secrets).
    pub message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    fn unreachable(message: impl Into<String>) -> Failure {
        Failure {
            code: 3,
            message: message.into(),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure::usage(e.to_string())
    }
}

impl From<WarehouseError> for Failure {
    fn from(e: WarehouseError) -> Failure {
        match e {
            WarehouseError::UnsupportedUrl(_)
            | WarehouseError::Migration { .. }
            | WarehouseError::SchemaTooNew { .. } => Failure::usage(e.to_string()),
            _ => Failure::unreachable(e.to_string()),
        }
    }
}

impl From<LakeError> for Failure {
    fn from(e: LakeError) -> Failure {
        match e {
            // The system's random generator failing is not a configuration problem.
            LakeError::Key {
                source: crate::crypt::KeyError::Random,
                ..
            } => Failure::unreachable(e.to_string()),
            LakeError::UnsupportedUrl(_) | LakeError::Key { .. } => Failure::usage(e.to_string()),
            _ => Failure::unreachable(e.to_string()),
        }
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Failure {
        match e {
            RunError::Inbox { .. } => Failure::usage(e.to_string()),
            RunError::Warehouse(w) => w.into(),
            RunError::Lake(l) => l.into(),
            RunError::Lock { .. } => Failure::unreachable(e.to_string()),
        }
    }
}

/// Runs the parsed command line.
///
/// # Errors
/// A [`Failure`] carrying the exit status.
pub fn execute(cli: Cli) -> Result<ExitCode, Failure> {
    let mut overrides = Overrides {
        config: cli.config.clone(),
        data_dir: cli.data_dir.clone(),
        ..Overrides::default()
    };
    match cli.command {
        Command::Run(args) => {
            overrides.inbox = args.inbox.clone();
            overrides.max_reject_share = args.max_reject_share;
            overrides.workers = args.workers;
            overrides.parallel = args.parallel;
            overrides.min_file_age = args.min_file_age.clone();
            run(&Config::resolve(&overrides)?, &args)
        }
        Command::Demo(args) => demo(&overrides, &args),
        Command::Generate(args) => generate(&args),
        Command::Check(args) => {
            overrides.max_reject_share = args.max_reject_share;
            overrides.workers = args.workers;
            check(&Config::resolve(&overrides)?, &args)
        }
        Command::Status(a) => status(&Config::resolve(&overrides)?, a.json),
        Command::Files(a) => files(&Config::resolve(&overrides)?, a.json),
        Command::Rejects(a) => rejects(&Config::resolve(&overrides)?, &a),
        Command::Verify(a) => verify(&Config::resolve(&overrides)?, a.json),
        Command::Reprocess(a) => {
            overrides.max_reject_share = a.max_reject_share;
            reprocess(&Config::resolve(&overrides)?, &a)
        }
        Command::RotateKey(a) => rotate_key(&Config::resolve(&overrides)?, &a),
        Command::Migrate(args) => {
            let config = Config::resolve(&overrides)?;
            let mut w = Warehouse::open(&config.warehouse_url)?;
            if args.create_roles {
                w.create_roles().map_err(|e| Failure {
                    code: 1,
                    message: e.to_string(),
                })?;
                println!("roles bankpipe_owner, bankpipe_loader, bankpipe_reader are in place");
            }
            println!(
                "warehouse {} is at the latest schema",
                redact_url(&config.warehouse_url)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn progress_for(json: bool, no_progress: bool) -> Box<dyn Progress> {
    if !json && !no_progress && std::io::stderr().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(Silent)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bankpipe-io")
        .enable_all()
        .build()
        .map_err(|e| Failure::unreachable(format!("cannot start the I/O runtime: {e}")))
}

fn open_context(config: &Config, rt: &tokio::runtime::Runtime) -> Result<Context, Failure> {
    let warehouse = Warehouse::open(&config.warehouse_url)?;
    let lake = Lake::open(&config.lake_url, rt.handle().clone())?
        .with_master_key(config.master_key.clone());
    lake.check()?;
    Ok(Context {
        config: config.clone(),
        warehouse,
        lake,
    })
}

fn run(config: &Config, args: &RunArgs) -> Result<ExitCode, Failure> {
    if !config.inbox.to_string_lossy().contains("://") && !config.inbox.is_dir() {
        return Err(Failure::usage(format!(
            "inbox {} is not a folder: create it and put files in it, or pass --inbox DIR",
            config.inbox.display()
        )));
    }
    let rt = runtime()?;
    let mut ctx = open_context(config, &rt)?;
    if config.master_key.is_none() {
        // One worker missing the key must not quietly store new files in clear next to
        // encrypted ones.
        let ids = ctx.warehouse.key_ids()?;
        if !ids.is_empty() {
            let ids: Vec<&str> = ids.keys().map(String::as_str).collect();
            return Err(Failure::usage(format!(
                "the lake holds objects encrypted under master key id {}: set BANKPIPE_MASTER_KEY or \
                 BANKPIPE_MASTER_KEY_FILE (without it new files would be stored in clear)",
                ids.join(", ")
            )));
        }
    }
    let mut progress = progress_for(args.json, args.no_progress);
    let report = pipeline::run(&mut ctx, progress.as_mut())?;
    print_run(&report, args.json);
    Ok(exit_for(&report))
}

fn exit_for(report: &RunReport) -> ExitCode {
    if report.status == "ok" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_run(report: &RunReport, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{}", serde_json::to_string(report).unwrap_or_default());
    } else {
        let _ = write!(out, "{}", report.table());
    }
}

fn check(config: &Config, args: &CheckArgs) -> Result<ExitCode, Failure> {
    let mut progress = progress_for(args.json, false);
    let started = std::time::Instant::now();
    let files: Vec<_> = args
        .files
        .iter()
        .map(|p| crate::check::check_file(config, p, progress.as_mut()))
        .collect();
    let failed = files
        .iter()
        .any(|f| f.status == crate::report::Outcome::Failed);
    let report = RunReport {
        run_id: "check".into(),
        status: if failed { "failed" } else { "ok" }.into(),
        started_at: String::new(),
        finished_at: crate::clock::now_rfc3339(),
        elapsed_s: started.elapsed().as_secs_f64(),
        files,
    };
    print_run(&report, args.json);
    Ok(exit_for(&report))
}

fn parse_month(text: &str) -> Result<(i32, u32), Failure> {
    let bad = || Failure::usage(format!("--month {text:?}: expected YYYY-MM"));
    let (y, m) = text.split_once('-').ok_or_else(bad)?;
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&m) || !(1900..=9999).contains(&y) {
        return Err(bad());
    }
    Ok((y, m))
}

fn generate(args: &GenerateArgs) -> Result<ExitCode, Failure> {
    if !(0.0..=1.0).contains(&args.defects) {
        return Err(Failure::usage("--defects must be between 0 and 1"));
    }
    let opts = GenerateOptions {
        rows: args.rows,
        seed: args.seed,
        defects: args.defects,
        format: match args.format {
            GenFormat::Csv => OutputFormat::Csv,
            GenFormat::Ndjson => OutputFormat::Ndjson,
            GenFormat::Json => OutputFormat::JsonArray,
        },
        first_id: args.first_id,
        month: args.month.as_deref().map(parse_month).transpose()?,
    };
    let stats = if args.out == Path::new("-") {
        crate::generate::generate(&opts, &mut std::io::stdout().lock())
    } else {
        write_generated(&opts, &args.out)
    }
    .map_err(|e| Failure {
        code: 1,
        message: format!("writing {}: {e}", args.out.display()),
    })?;
    let defects: u64 = stats.defects.values().sum();
    eprintln!(
        "wrote {} rows ({defects} with an injected defect) to {}",
        stats.rows,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes to a temporary name and renames, so an inbox never sees a half-written file.
fn write_generated(
    opts: &GenerateOptions,
    out: &Path,
) -> std::io::Result<crate::generate::GenerateStats> {
    let tmp = out.with_extension(format!(
        "{}.tmp",
        out.extension().and_then(|e| e.to_str()).unwrap_or("out")
    ));
    let mut file = std::fs::File::create(&tmp)?;
    let stats = crate::generate::generate(opts, &mut file)?;
    file.sync_all()?;
    std::fs::rename(&tmp, out)?;
    Ok(stats)
}

fn demo(overrides: &Overrides, args: &DemoArgs) -> Result<ExitCode, Failure> {
    let dir = &args.dir;
    let marker = dir.join(".bankpipe-demo");
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if marker.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| Failure::usage(format!("cannot clear {}: {e}", dir.display())))?;
        } else if !empty {
            return Err(Failure::usage(format!(
                "{} exists and was not made by `bankpipe demo`; pass --dir with a new folder",
                dir.display()
            )));
        }
    }
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox)
        .and_then(|()| std::fs::write(&marker, b"made by bankpipe demo\n"))
        .map_err(|e| Failure::usage(format!("cannot create {}: {e}", dir.display())))?;
    let months = [(2016, 8), (2016, 9), (2016, 10)];
    let mut first_id = 1;
    eprintln!(
        "Generating {} Kaggle-layout rows in three monthly files under {} ...",
        args.rows,
        inbox.display()
    );
    for (i, month) in months.iter().enumerate() {
        let share = args.rows / 3 + u64::from((i as u64) < args.rows % 3);
        let out = inbox.join(format!("bank_transactions_{}_{:02}.csv", month.0, month.1));
        let opts = GenerateOptions {
            rows: share,
            seed: 2016 * 100 + u64::from(month.1),
            defects: 0.004,
            format: OutputFormat::Csv,
            first_id,
            month: Some(*month),
        };
        write_generated(&opts, &out)
            .map_err(|e| Failure::usage(format!("writing {}: {e}", out.display())))?;
        first_id += share;
    }
    let config = Config::resolve(&Overrides {
        data_dir: Some(dir.clone()),
        inbox: Some(inbox),
        ..overrides.clone()
    })?;
    let config = Config {
        // The demo always runs on the embedded defaults inside its own folder.
        warehouse_url: format!("sqlite://{}", dir.join("warehouse.db").display()),
        lake_url: dir.join("lake").display().to_string(),
        // Its files were just written: an age limit would skip them all.
        min_file_age: std::time::Duration::ZERO,
        ..config
    };
    let rt = runtime()?;
    let mut ctx = open_context(&config, &rt)?;
    let mut progress = progress_for(false, false);
    let report = pipeline::run(&mut ctx, progress.as_mut())?;
    print!("{}", report.table());
    let summary = ctx.warehouse.summary()?;
    println!();
    println!("Rejected rows by rule (quarantined with file, line and raw text):");
    for (rule, n) in &summary.rejects_by_rule {
        println!("  {rule:<26} {n:>8}");
    }
    println!("Attributes set to NULL by rule (rows loaded with a warning):");
    for (rule, n) in &summary.warnings_by_rule {
        println!("  {rule:<26} {n:>8}");
    }
    let d = dir.display();
    println!(
        "\nTry next:\n  \
         bankpipe --data-dir {d} status\n  \
         bankpipe --data-dir {d} rejects --rule invalid_transaction_date --limit 5\n  \
         bankpipe --data-dir {d} run            # again: every file is a duplicate_file, nothing loads twice\n  \
         bankpipe check {d}/inbox/bank_transactions_2016_08.csv\n  \
         sqlite3 {d}/warehouse.db \"SELECT location, COUNT(*) FROM transactions GROUP BY 1 ORDER BY 2 DESC LIMIT 5\""
    );
    Ok(exit_for(&report))
}

fn reprocess(config: &Config, args: &crate::cli::ReprocessArgs) -> Result<ExitCode, Failure> {
    let rt = runtime()?;
    let mut ctx = open_context(config, &rt)?;
    let r = pipeline::reprocess(&mut ctx, &args.file, args.dry_run).map_err(|e| match e {
        RunError::Inbox { reason, path } => {
            Failure::usage(format!("reprocess {}: {reason}", path.display()))
        }
        other => other.into(),
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    } else {
        println!(
            "file {} ({}){}",
            r.file_id,
            r.name,
            if r.dry_run {
                " — dry run, nothing changed"
            } else {
                ""
            }
        );
        println!("{:<16} {:>14} {:>14}", "", "before", "after");
        let row = |label: &str, a: String, b: String| println!("{label:<16} {a:>14} {b:>14}");
        row(
            "status",
            r.before.status.name().into(),
            r.after.status.name().into(),
        );
        row(
            "rows_read",
            r.before.rows_read.to_string(),
            r.after.rows_read.to_string(),
        );
        row(
            "rows_loaded",
            r.before.rows_loaded.to_string(),
            r.after.rows_loaded.to_string(),
        );
        row(
            "rows_rejected",
            r.before.rows_rejected.to_string(),
            r.after.rows_rejected.to_string(),
        );
        row(
            "rows_duplicate",
            r.before.rows_duplicate.to_string(),
            r.after.rows_duplicate.to_string(),
        );
        row(
            "amount_loaded",
            r.before.amount_loaded.clone(),
            r.after.amount_loaded.clone(),
        );
        if let Some(e) = &r.after.error {
            println!("error: {e}");
        }
    }
    // 1 when the file fails (or would fail) under the current contract, or could not
    // be read back intact.
    let failed = r.after.error.is_some() || r.after.status == crate::report::Outcome::Failed;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `bankpipe verify`: every landed object is streamed back and hashed; missing or
/// corrupt ones are reported, recorded in the catalog (`files.lake_status`), and make the
/// exit status 1.
fn verify(config: &Config, json: bool) -> Result<ExitCode, Failure> {
    let rt = runtime()?;
    let mut warehouse = Warehouse::open(&config.warehouse_url)?;
    let lake = Lake::open(&config.lake_url, rt.handle().clone())?
        .with_master_key(config.master_key.clone());
    let mut results = Vec::new();
    // Listed before the catalog is read (and the catalog read again at the end), so an
    // object landed while this runs is never taken for an orphan.
    let listed = lake.list()?;
    let catalog = warehouse.files()?;
    for f in &catalog {
        if f.status == "landing" {
            continue; // not landed yet (or being landed right now)
        }
        let outcome = match lake.verify(&f.lake_key, &f.sha256, f.sealed().as_ref()) {
            Ok(outcome) => Ok(outcome),
            // A key this object needs is not configured at all: a configuration error.
            Err(
                e @ LakeError::Key {
                    source: crate::crypt::KeyError::NoMasterKey { .. },
                    ..
                },
            ) => return Err(e.into()),
            // One object under another master key (a partial rotation) or with a damaged
            // wrapping: reported for that object, the others are still checked.
            Err(LakeError::Key { source, .. }) => Err(source.to_string()),
            Err(e) => return Err(e.into()),
        };
        let (state, actual, reason) = match &outcome {
            Ok(crate::lake::Verified::Intact { .. }) => ("intact", None, None),
            Ok(crate::lake::Verified::Missing) => ("missing", None, None),
            Ok(crate::lake::Verified::Corrupt { actual }) => {
                ("corrupt", Some(actual.clone()), None)
            }
            Ok(crate::lake::Verified::Damaged { reason }) => {
                ("corrupt", None, Some(reason.clone()))
            }
            Err(reason) => ("unreadable", None, Some(reason.clone())),
        };
        // `unreadable` is about the key, not the object: the lake status is not changed.
        if state != "unreadable" {
            warehouse.set_lake_status(f.file_id, state, &crate::clock::now_rfc3339())?;
        }
        if state != "intact" {
            tracing::error!(file_id = f.file_id, key = %f.lake_key, state, expected = %f.sha256, actual = actual.as_deref().unwrap_or("-"), reason = reason.as_deref().unwrap_or("-"), "Lake object is not intact.");
        }
        results.push(serde_json::json!({
            "file_id": f.file_id,
            "name": f.original_name,
            "lake_key": f.lake_key,
            "status": state,
            "expected_sha256": f.sha256,
            "actual_sha256": actual,
            "reason": reason,
            "key_id": f.key_id,
        }));
    }
    let bad = results.iter().filter(|r| r["status"] != "intact").count();
    // Raw objects no catalog row names: left by attempts that died after writing their
    // object (an encrypted retry writes a new one). Reported, never deleted here.
    let now = warehouse.files()?;
    let named: std::collections::HashSet<&str> = catalog
        .iter()
        .chain(&now)
        .map(|f| f.lake_key.as_str())
        .collect();
    let orphans: Vec<String> = listed
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| key.starts_with("raw/") && !named.contains(key.as_str()))
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "checked": results.len(),
                "not_intact": bad,
                "objects": results,
                "orphans": orphans,
            })
        );
    } else {
        for r in &results {
            println!(
                "{:<8} {:>5}  {}  {}",
                r["status"].as_str().unwrap_or(""),
                r["file_id"],
                r["name"].as_str().unwrap_or(""),
                r["lake_key"].as_str().unwrap_or("")
            );
            if let Some(actual) = r["actual_sha256"].as_str() {
                println!(
                    "         expected sha256 {} but the object hashes to {actual}",
                    r["expected_sha256"].as_str().unwrap_or("")
                );
            }
            if let Some(reason) = r["reason"].as_str() {
                println!("         {reason}");
            }
        }
        println!(
            "{} objects checked, {bad} missing, corrupt or unreadable",
            results.len()
        );
        if !orphans.is_empty() {
            println!(
                "{} raw objects are named by no catalog entry (left by interrupted attempts; safe to delete):",
                orphans.len()
            );
            for key in &orphans {
                println!("         {key}");
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn status(config: &Config, json: bool) -> Result<ExitCode, Failure> {
    let mut w = Warehouse::open(&config.warehouse_url)?;
    let s = w.summary()?;
    if json {
        println!("{}", serde_json::to_string(&s).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    println!("warehouse     {}", redact_url(&config.warehouse_url));
    println!("schema        v{}", s.schema_version);
    let files: Vec<String> = s.files.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!(
        "files         {}",
        if files.is_empty() {
            "none".into()
        } else {
            files.join(", ")
        }
    );
    println!("transactions  {}", s.transactions);
    if let Some((a, b)) = &s.transaction_span {
        println!("time span     {a} .. {b}");
    }
    println!("rejected rows {}", s.rejected_rows);
    for (rule, n) in &s.rejects_by_rule {
        println!("  {rule:<26} {n:>8}");
    }
    println!("warnings (loaded with NULL)");
    for (rule, n) in &s.warnings_by_rule {
        println!("  {rule:<26} {n:>8}");
    }
    println!("recent runs");
    for r in &s.recent_runs {
        println!("  {}  {}  {}", r.run_id, r.started_at, r.status);
    }
    Ok(ExitCode::SUCCESS)
}

/// `bankpipe rotate-key`: every data key wrapped by the current master key is
/// re-wrapped by the new one, in one transaction; the objects are not touched. Files
/// already under the new key are left as they are (so a rerun after an interruption
/// finishes the job); files under any other key make the exit status 1.
fn rotate_key(config: &Config, args: &RotateKeyArgs) -> Result<ExitCode, Failure> {
    let current = config.master_key.clone().ok_or_else(|| {
        Failure::usage(
            "rotate-key needs the current master key in BANKPIPE_MASTER_KEY or BANKPIPE_MASTER_KEY_FILE",
        )
    })?;
    let new = match &args.new_key_file {
        Some(path) => Some(
            crate::crypt::MasterKey::from_file(path, "--new-key-file").map_err(ConfigError::from)?,
        ),
        None => crate::config::master_key(
            "BANKPIPE_NEW_MASTER_KEY",
            "BANKPIPE_NEW_MASTER_KEY_FILE",
            None,
        )?,
    }
    .ok_or_else(|| {
        Failure::usage(
            "rotate-key needs the new master key: --new-key-file FILE, BANKPIPE_NEW_MASTER_KEY or BANKPIPE_NEW_MASTER_KEY_FILE",
        )
    })?;
    if new.id() == current.id() {
        return Err(Failure::usage(format!(
            "the new master key is the current one ({})",
            current.id()
        )));
    }
    let mut w = Warehouse::open(&config.warehouse_url)?;
    let mut changes = Vec::new();
    let (mut already, mut clear) = (0usize, 0usize);
    let mut other = Vec::new();
    for f in w.files()? {
        let Some(sealed) = f.sealed() else {
            clear += 1;
            continue;
        };
        if sealed.key_id == new.id() {
            already += 1;
        } else if sealed.key_id == current.id() {
            let rewrapped = current
                .rewrap(&sealed, &f.sha256, &new)
                .map_err(|e| Failure {
                    code: 1,
                    message: format!("file {}: {e}; nothing changed", f.file_id),
                })?;
            changes.push(crate::warehouse::Rewrap {
                file_id: f.file_id,
                old: sealed,
                new: rewrapped,
            });
        } else {
            other.push(serde_json::json!({ "file_id": f.file_id, "key_id": sealed.key_id }));
        }
    }
    let rotated = if args.dry_run { 0 } else { w.rewrap(&changes)? };
    // Files changed or landed under the current key while this ran (a run still using
    // it): the old key is still needed until a rerun re-wraps them.
    let raced = if args.dry_run {
        0
    } else {
        let left = w.key_ids()?.get(current.id()).copied().unwrap_or(0) as usize;
        left.max(changes.len() - rotated)
    };
    tracing::info!(
        from = current.id(),
        to = new.id(),
        rotated,
        already,
        raced,
        "Data keys re-wrapped."
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "from_key_id": current.id(),
                "to_key_id": new.id(),
                "dry_run": args.dry_run,
                "to_rotate": changes.len(),
                "rotated": rotated,
                "already_rotated": already,
                "changed_meanwhile": raced,
                "in_clear": clear,
                "other_keys": other,
            })
        );
    } else {
        let verb = if args.dry_run {
            "would re-wrap"
        } else {
            "re-wrapped"
        };
        let n = if args.dry_run { changes.len() } else { rotated };
        println!(
            "{verb} {n} data keys from {} to {}; {already} already under {}; {clear} objects stored in clear (not encrypted by rotation)",
            current.id(),
            new.id(),
            new.id()
        );
        if raced > 0 {
            println!(
                "{raced} files are still under {} (landed or changed during the rotation): run rotate-key again",
                current.id()
            );
        }
        for o in &other {
            println!(
                "file {} is under another master key ({}): not rotated",
                o["file_id"],
                o["key_id"].as_str().unwrap_or("")
            );
        }
        if !args.dry_run && raced == 0 && other.is_empty() {
            println!(
                "now set BANKPIPE_MASTER_KEY (or BANKPIPE_MASTER_KEY_FILE) to the new key; the old one is no longer needed"
            );
        }
    }
    Ok(if other.is_empty() && raced == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn files(config: &Config, json: bool) -> Result<ExitCode, Failure> {
    let mut w = Warehouse::open(&config.warehouse_url)?;
    let files = w.files()?;
    if json {
        println!("{}", serde_json::to_string(&files).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>4}  {:<32}  {:<8}  {:<12}  {:>9}  {:>9}  {:>8}  {:>8}  {:<12}  {:<19}",
        "id",
        "name",
        "status",
        "profile",
        "read",
        "loaded",
        "rejected",
        "dup",
        "sha256",
        "encrypted"
    );
    for f in files {
        let name: String = f.original_name.chars().take(32).collect();
        println!(
            "{:>4}  {name:<32}  {:<8}  {:<12}  {:>9}  {:>9}  {:>8}  {:>8}  {:<12}  {:<19}",
            f.file_id,
            f.status,
            f.profile.as_deref().unwrap_or("-"),
            f.rows_read.unwrap_or(0),
            f.rows_loaded.unwrap_or(0),
            f.rows_rejected.unwrap_or(0),
            f.rows_duplicate.unwrap_or(0),
            &f.sha256[..12.min(f.sha256.len())],
            f.key_id.as_deref().unwrap_or("no")
        );
        if let Some(e) = f.error {
            println!("      error: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rejects(config: &Config, args: &RejectsArgs) -> Result<ExitCode, Failure> {
    if let Some(rule) = &args.rule
        && crate::validate::Rule::from_name(rule).is_none()
    {
        let names: Vec<&str> = crate::validate::Rule::ALL
            .iter()
            .filter(|r| r.severity() == crate::validate::Severity::Reject)
            .map(|r| r.name())
            .collect();
        return Err(Failure::usage(format!(
            "unknown rule {rule:?}; rules: {}",
            names.join(", ")
        )));
    }
    let mut w = Warehouse::open(&config.warehouse_url)?;
    let rows = w.rejects(&RejectFilter {
        file_id: args.file,
        rule: args.rule.clone(),
        limit: args.limit,
    })?;
    let mut out = std::io::stdout().lock();
    for r in rows {
        if args.json {
            let _ = writeln!(out, "{}", serde_json::to_string(&r).unwrap_or_default());
        } else {
            let _ = writeln!(
                out,
                "{}:{}  {}  {}  {}\n    {}",
                r.file,
                r.line_no,
                r.rule,
                r.field.as_deref().unwrap_or("-"),
                r.detail.as_deref().unwrap_or(""),
                r.raw
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
