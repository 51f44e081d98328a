//! Carries out each command: resolves configuration, opens what the command needs, and
//! writes its output (stdout for results, stderr for logs and progress).
//!
//! Exit statuses (issues #2 and #9; the table is in the README): 0 every file loaded or
//! skipped as a duplicate; 1 a file failed (or a check found a failing file); 2 usage,
//! configuration, authentication or permission error (never retried); 3 warehouse or
//! lake unreachable after bounded retries.
//!
//! Results go to stdout through `Stdout`: once the reader has gone away (`bankpipe
//! files | head -1`) the rest is discarded, so the command ends quietly with the status
//! of what it did, instead of the panic `println!` raises on a closed pipe.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::cli::{
    CheckArgs, Cli, Command, DemoArgs, ExportArgs, GenFormat, GenerateArgs, IdKind, MigrateArgs,
    PseudonymiseArgs, RejectsArgs, RotateKeyArgs, RunArgs,
};
use crate::config::{Config, ConfigError, Overrides};
use crate::generate::{GenerateOptions, OutputFormat};
use crate::lake::{Lake, LakeError};
use crate::pipeline::{self, Context, RunError};
use crate::progress::{Bars, Progress, Silent};
use crate::redact::redact_url;
use crate::report::RunReport;
use crate::warehouse::{Access, Fault, RejectFilter, Warehouse, WarehouseError};

/// Standard output for results. Once its reader has gone away (a closed pipe:
/// `bankpipe run | head -1`, `status | true`) the rest of the output is discarded: the
/// command still finishes and exits with the status of what it did (a failed file is
/// still 1), and nothing panics or reports an error.
struct Stdout {
    inner: std::io::StdoutLock<'static>,
    closed: bool,
}

fn stdout() -> Stdout {
    Stdout {
        inner: std::io::stdout().lock(),
        closed: false,
    }
}

impl Stdout {
    fn closed_is_done<T>(&mut self, r: std::io::Result<T>, done: T) -> std::io::Result<T> {
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(done)
            }
            other => other,
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.closed_is_done(r, buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.inner.flush();
        self.closed_is_done(r, ())
    }
}

/// A command that could not do its job, with its exit status.
#[derive(Debug)]
pub struct Failure {
    /// Exit status.
    pub code: u8,
    /// One-line message (no secrets).
    pub message: String,
}

impl Failure {
    /// The reader of stdout went away while `generate --out -` was writing (a closed
    /// pipe): nothing more to say, status 0.
    pub fn closed_pipe() -> Failure {
        Failure {
            code: 0,
            message: String::new(),
        }
    }

    /// Whether this is [`Failure::closed_pipe`].
    pub fn is_closed_pipe(&self) -> bool {
        self.code == 0
    }

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

/// A pseudonym key missing or unusable: a setting to fix.
impl From<crate::export::pseudonym::KeyError> for Failure {
    fn from(e: crate::export::pseudonym::KeyError) -> Failure {
        Failure::usage(e.to_string())
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure::usage(e.to_string())
    }
}

/// Writing results failed (a closed pipe never gets here, see `Stdout`): status 1,
/// the output is incomplete.
impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure {
            code: 1,
            message: format!("writing the output: {e}"),
        }
    }
}

impl From<WarehouseError> for Failure {
    fn from(e: WarehouseError) -> Failure {
        match e.fault() {
            Fault::Setup => Failure::usage(e.to_string()),
            Fault::Transient | Fault::Other => Failure::unreachable(e.to_string()),
        }
    }
}

impl From<LakeError> for Failure {
    fn from(e: LakeError) -> Failure {
        if e.is_setup() {
            Failure::usage(e.to_string())
        } else {
            Failure::unreachable(e.to_string())
        }
    }
}

impl From<crate::export::ExportError> for Failure {
    fn from(e: crate::export::ExportError) -> Failure {
        Failure {
            code: e.exit_code(),
            message: e.to_string(),
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
            // Not every file was processed: like a failed file, a rerun finishes it.
            RunError::Interrupted { .. } => Failure {
                code: 1,
                message: e.to_string(),
            },
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
            overrides.max_decompressed_bytes = args.max_decompressed_bytes.clone();
            overrides.workers = args.workers;
            overrides.parallel = args.parallel;
            overrides.min_file_age = args.min_file_age.clone();
            run(&resolve(&overrides, "run", args.json)?, &args)
        }
        Command::Demo(args) => demo(&overrides, &args, cli.quiet),
        Command::Generate(args) => generate(&args, cli.quiet),
        Command::Check(args) => {
            overrides.max_reject_share = args.max_reject_share;
            overrides.max_decompressed_bytes = args.max_decompressed_bytes.clone();
            overrides.workers = args.workers;
            check(&resolve(&overrides, "check", args.json)?, &args)
        }
        Command::Status(a) => status(&resolve(&overrides, "status", a.json)?, a.json),
        Command::Files(a) => files(&resolve(&overrides, "files", a.json)?, a.json),
        Command::Rejects(a) => rejects(&resolve(&overrides, "rejects", a.json)?, &a),
        Command::Verify(a) => verify(&resolve(&overrides, "verify", a.json)?, a.json),
        Command::Reprocess(a) => {
            overrides.max_reject_share = a.max_reject_share;
            overrides.max_decompressed_bytes = a.max_decompressed_bytes.clone();
            reprocess(&resolve(&overrides, "reprocess", a.json)?, &a)
        }
        Command::RotateKey(a) => rotate_key(&resolve(&overrides, "rotate-key", a.json)?, &a),
        Command::Migrate(args) => migrate(&Config::resolve(&overrides)?, &args),
        Command::Pseudonymise(a) => pseudonymise(&Config::resolve(&overrides)?, &a),
        Command::Export(args) => {
            overrides.export_url = args.out.clone();
            export(&resolve(&overrides, "export", args.json)?, &args)
        }
        Command::Serve(a) => {
            overrides.listen = a.listen.clone();
            serve(&Config::resolve(&overrides)?, &a)
        }
        Command::Healthcheck(a) => healthcheck(&overrides, &a),
    }
}

/// The configuration for `command`. A setting that does not parse (`BANKPIPE_WORKERS=two`,
/// `--max-reject-share 7`) stops the command with exit 2 before it does anything; with
/// `--json` stdout still gets the command's one failure object, as for a command line
/// that does not parse ([`crate::cli::failure_json`]).
fn resolve(overrides: &Overrides, command: &str, json: bool) -> Result<Config, Failure> {
    Config::resolve(overrides)
        .map_err(Failure::from)
        .inspect_err(|failure| {
            if json {
                let _ = writeln!(
                    stdout(),
                    "{}",
                    crate::cli::failure_json(Some(command), &failure.message)
                );
            }
        })
}

/// `bankpipe healthcheck`: 0 and `ready: URL` on stdout when `serve` answers `/ready`
/// with 200; 1 with the reason when it is not ready or does not answer; 2 for a bad
/// `--url` or configuration. With `--url` the configuration is not read at all: the
/// probe then works from any host.
fn healthcheck(
    overrides: &Overrides,
    args: &crate::cli::HealthcheckArgs,
) -> Result<ExitCode, Failure> {
    use crate::healthcheck::{self as probe, HealthcheckError};
    let fail = |e: HealthcheckError| Failure {
        code: e.exit_code(),
        message: e.to_string(),
    };
    let url = match &args.url {
        Some(base) => probe::ready_url(base),
        None => probe::url_for_listen(Config::resolve(overrides)?.listen),
    }
    .map_err(fail)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: 1,
            message: format!("cannot start the I/O runtime: {e}"),
        })?;
    rt.block_on(probe::check(&url, probe::TIMEOUT))
        .map_err(fail)?;
    writeln!(stdout(), "ready: {}", redact_url(url.as_str()))?;
    Ok(ExitCode::SUCCESS)
}

/// `bankpipe migrate`: the one command meant to create a warehouse and change its
/// schema; says what it applied, or that nothing was pending. With `--dry-run` it only
/// lists what it would apply, creating nothing.
fn migrate(config: &Config, args: &MigrateArgs) -> Result<ExitCode, Failure> {
    let mut out = stdout();
    let url = redact_url(&config.warehouse_url);
    if args.dry_run {
        let (mut w, pending) = match Warehouse::connect(&config.warehouse_url, Access::Existing) {
            Ok(mut w) => {
                let pending = w.pending()?;
                (Some(w), pending)
            }
            Err(WarehouseError::NoWarehouse { reason, .. })
                if crate::warehouse::sqlite::path_from_url(&config.warehouse_url).is_some() =>
            {
                // The reason's own advice ("create it with `bankpipe migrate`") is what
                // this line says already: the cause alone.
                let cause = reason.split(';').next().unwrap_or(&reason).trim();
                writeln!(
                    out,
                    "no warehouse at {url} ({cause}); `bankpipe migrate` would create it"
                )?;
                (None, crate::warehouse::sqlite::known_migrations())
            }
            Err(e) => return Err(e.into()),
        };
        if pending.is_empty() {
            let version = w.as_mut().map_or(Ok(0), Warehouse::schema_version)?;
            writeln!(
                out,
                "nothing pending: warehouse {url} is at schema version {version}"
            )?;
        } else {
            writeln!(out, "would apply to {url}:")?;
            for m in &pending {
                writeln!(out, "  {m}")?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut w = Warehouse::connect(&config.warehouse_url, Access::Create)?;
    let applied = w.migrate()?;
    if applied.is_empty() {
        writeln!(
            out,
            "nothing pending: warehouse {url} is at schema version {}",
            w.schema_version()?
        )?;
    } else {
        writeln!(out, "applied to {url}:")?;
        for m in &applied {
            writeln!(out, "  {m}")?;
        }
    }
    if args.create_roles {
        w.create_roles()?;
        writeln!(
            out,
            "roles bankpipe_owner, bankpipe_loader, bankpipe_reader are in place"
        )?;
    }
    Ok(ExitCode::SUCCESS)
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

/// `reprocess`, `rotate-key` and `export` change an existing warehouse: they never create one
/// (there would be nothing to reprocess or re-wrap), but apply pending migrations as
/// `run` does, since they write.
fn open_existing(url: &str) -> Result<Warehouse, Failure> {
    let mut w = Warehouse::connect(url, Access::Existing)?;
    match w.require_current() {
        Ok(()) => {}
        Err(WarehouseError::SchemaBehind { .. }) => {
            for m in w.migrate()? {
                tracing::info!(migration = %m, "Applied a pending migration.");
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(w)
}

fn open_context(
    config: &Config,
    rt: &tokio::runtime::Runtime,
    access: Access,
) -> Result<Context, Failure> {
    let warehouse = match access {
        Access::Create => Warehouse::open(&config.warehouse_url)?,
        Access::Existing => open_existing(&config.warehouse_url)?,
    };
    let lake = Lake::open(&config.lake_url, rt.handle().clone())?
        .with_master_key(config.master_key.clone());
    lake.check()?;
    Ok(Context {
        config: config.clone(),
        warehouse,
        lake,
    })
}

/// `run`. With `--json` exactly one JSON object is printed whatever happens: a run that
/// stops part-way (exit 2 or 3) prints what it did before, with `status` `failed` and the
/// run-level `error`; one that cannot start prints `run_id` `null`, no files and the
/// `error`. Without `--json` the summary of what was done comes before the error line.
fn run(config: &Config, args: &RunArgs) -> Result<ExitCode, Failure> {
    let mut printed = false;
    let mut report = None;
    // Checked before the run: a mistyped URL must not cost a run's metrics. A target
    // refused here is a run that cannot start, so `--json` still gets its one object.
    let result = metrics_targets(args).and_then(|push_to| {
        let result = run_printing(config, args, &mut printed, &mut report);
        if push_to.is_some() || args.metrics_file.is_some() {
            export_run_metrics(
                push_to.as_ref(),
                args.metrics_file.as_deref(),
                report.as_ref(),
            );
        }
        result
    });
    if let Err(failure) = &result
        && args.json
        && !printed
        && !failure.is_closed_pipe()
    {
        let unstarted = crate::cli::failure_json(Some("run"), &failure.message);
        writeln!(stdout(), "{unstarted}")?;
    }
    result
}

/// The Pushgateway URL (`--pushgateway`) and the textfile (`--metrics-file`) of a run,
/// checked before it starts (exit 2): a target that cannot work is a usage error, not
/// something to find out after the files are loaded.
fn metrics_targets(args: &RunArgs) -> Result<Option<url::Url>, Failure> {
    let push_to = match &args.pushgateway {
        Some(base) => {
            let (host, _) = crate::warehouse::Claimant::this_process();
            Some(crate::push::push_url(base, &host).map_err(|e| Failure::usage(e.to_string()))?)
        }
        None => None,
    };
    if let Some(path) = &args.metrics_file {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
        if path.is_dir() || folder.is_some_and(|f| !f.is_dir()) {
            return Err(Failure::usage(format!(
                "--metrics-file {}: give a file in an existing folder (node_exporter reads \
                 *.prom files of its textfile directory)",
                path.display()
            )));
        }
    }
    Ok(push_to)
}

/// Pushes the run's figures and/or writes them to the metrics file. A failure is logged
/// as an error and does not change the run's exit status: the run did its work (a rerun
/// would find nothing to do), and a gateway that missed a push shows it in its own
/// `push_time_seconds`.
fn export_run_metrics(
    push_to: Option<&url::Url>,
    metrics_file: Option<&Path>,
    report: Option<&RunReport>,
) {
    let text = crate::push::exposition(report, std::time::SystemTime::now());
    if let Some(path) = metrics_file {
        match crate::push::write_textfile(path, &text) {
            Ok(()) => tracing::info!(file = %path.display(), "Wrote the run's metrics."),
            Err(e) => tracing::error!(error = %e, "The run's metrics file was not written."),
        }
    }
    if let Some(url) = push_to {
        let pushed = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(crate::push::push(url, text))
                    .map_err(|e| e.to_string())
            });
        match pushed {
            Ok(()) => tracing::info!(
                pushgateway = %redact_url(url.as_str()),
                "Pushed the run's metrics."
            ),
            Err(e) => tracing::error!(error = %e, "The run's metrics were not pushed."),
        }
    }
}

/// A folder inbox must exist (an object-store inbox is listed by the run itself).
fn require_inbox(config: &Config) -> Result<(), Failure> {
    if !config.inbox.to_string_lossy().contains("://") && !config.inbox.is_dir() {
        return Err(Failure::usage(format!(
            "inbox {} is not a folder: create it and put files in it, or pass --inbox DIR",
            config.inbox.display()
        )));
    }
    Ok(())
}

/// The work of `bankpipe run` without its output, for `serve`'s scheduled `ingest`
/// job: the same checks (inbox, master key), then [`pipeline::run_until`], which starts
/// no further file once `stop` is set. Runs on the calling thread (it blocks; it opens
/// its own I/O runtime and warehouse session, as `run` does).
///
/// # Errors
/// The outer [`Failure`]: the run could not start (exit status as `run` would give).
/// The inner [`pipeline::Stopped`]: it stopped part-way (unreachable, interrupted),
/// with the report of what it did.
pub fn ingest(
    config: &Config,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Result<RunReport, pipeline::Stopped>, Failure> {
    ingest_as(config, stop, pipeline::new_run_id(), || {})
}

/// [`ingest`] under the run id `run_id` ([`pipeline::new_run_id`]), calling `opened`
/// once the warehouse and the lake are open and the master key is checked, before the
/// run takes the run lock: `serve`'s `POST /api/runs` answers then.
///
/// # Errors
/// As [`ingest`]; `opened` is not called when the outer [`Failure`] is returned.
pub fn ingest_as(
    config: &Config,
    stop: &std::sync::atomic::AtomicBool,
    run_id: String,
    opened: impl FnOnce(),
) -> Result<Result<RunReport, pipeline::Stopped>, Failure> {
    require_inbox(config)?;
    let rt = runtime()?;
    let mut ctx = open_context(config, &rt, Access::Create)?;
    require_current_key(&mut ctx.warehouse, config.master_key.as_deref(), false)?;
    opened();
    Ok(pipeline::run_as(&mut ctx, &mut Silent, stop, run_id))
}

fn run_printing(
    config: &Config,
    args: &RunArgs,
    printed: &mut bool,
    kept: &mut Option<RunReport>,
) -> Result<ExitCode, Failure> {
    require_inbox(config)?;
    let rt = runtime()?;
    let mut ctx = open_context(config, &rt, Access::Create)?;
    require_current_key(&mut ctx.warehouse, config.master_key.as_deref(), false)?;
    let mut progress = progress_for(args.json, args.no_progress);
    let outcome = pipeline::run(&mut ctx, progress.as_mut());
    drop(progress);
    *printed = true;
    match outcome {
        Ok(report) => {
            let code = exit_for(&report);
            print_run(kept.insert(report), args.json)?;
            Ok(code)
        }
        Err(stopped) => {
            let failure = Failure::from(stopped.error);
            match stopped.report {
                Some(report) => print_run(kept.insert(*report), args.json)?,
                None => *printed = false,
            }
            Err(failure)
        }
    }
}

impl From<pipeline::Stopped> for Failure {
    fn from(s: pipeline::Stopped) -> Failure {
        s.error.into()
    }
}

/// Refuses (exit 2) to `run` or `reprocess` with a master key other than the catalog's
/// current one, or with none while the catalog holds encrypted objects. Names key ids,
/// never keys; `none_ok` lets a command that writes no object go on without a key. A
/// run that passes can still be refused per file: the landing re-checks
/// the key in its own transaction (`Warehouse::record_landing`), which closes the race
/// with a rotation committing after this check.
fn require_current_key(
    warehouse: &mut Warehouse,
    configured: Option<&crate::crypt::MasterKey>,
    none_ok: bool,
) -> Result<(), Failure> {
    if configured.is_none() && none_ok {
        return Ok(());
    }
    let current = warehouse.master_key_id()?;
    match (configured, current) {
        (Some(key), Some(current)) if key.id() == current => Ok(()),
        (Some(key), Some(current)) => Err(WarehouseError::WrongMasterKey {
            configured: key.id().to_owned(),
            current,
        }
        .into()),
        (Some(key), None) => {
            // No current key yet: the first encrypted landing sets it. A catalog from
            // before schema 6 with objects under several ids has none; the configured
            // key must be one of them.
            let ids = warehouse.key_ids()?;
            if ids.is_empty() || ids.contains_key(key.id()) {
                Ok(())
            } else {
                let ids: Vec<&str> = ids.keys().map(String::as_str).collect();
                Err(Failure::usage(format!(
                    "wrong master key: the configured master key has id {}, but the lake's objects are \
                     encrypted under master key id {}: configure one of those keys",
                    key.id(),
                    ids.join(", ")
                )))
            }
        }
        (None, current) => {
            // One worker missing the key must not quietly store new files in clear next
            // to encrypted ones.
            let mut ids: Vec<String> = warehouse.key_ids()?.into_keys().collect();
            if let Some(c) = current
                && !ids.contains(&c)
            {
                ids.push(c);
            }
            if ids.is_empty() {
                Ok(())
            } else {
                Err(Failure::usage(format!(
                    "the lake holds objects encrypted under master key id {}: set BANKPIPE_MASTER_KEY or \
                     BANKPIPE_MASTER_KEY_FILE (without it new files would be stored in clear)",
                    ids.join(", ")
                )))
            }
        }
    }
}

fn exit_for(report: &RunReport) -> ExitCode {
    if report.status == "ok" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_run(report: &RunReport, json: bool) -> Result<(), Failure> {
    let mut out = stdout();
    if json {
        writeln!(out, "{}", serde_json::to_string(report).unwrap_or_default())?;
    } else {
        write!(out, "{}", report.table())?;
    }
    Ok(())
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
        run_id: crate::report::CHECK_RUN_ID.into(),
        status: if failed { "failed" } else { "ok" }.into(),
        started_at: String::new(),
        finished_at: crate::clock::now_rfc3339(),
        elapsed_s: started.elapsed().as_secs_f64(),
        files,
        error: None,
    };
    print_run(&report, args.json)?;
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

/// `bankpipe generate`: writes the rows, then says how many (on stderr, unless `quiet`).
fn generate(args: &GenerateArgs, quiet: bool) -> Result<ExitCode, Failure> {
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
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => Failure::closed_pipe(),
        _ => Failure {
            code: 1,
            message: format!("writing {}: {e}", args.out.display()),
        },
    })?;
    if !quiet {
        let defects: u64 = stats.defects.values().sum();
        eprintln!(
            "wrote {} rows ({defects} with an injected defect) to {}",
            stats.rows,
            args.out.display()
        );
    }
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

/// `bankpipe demo`: generates three monthly files (saying so on stderr, unless `quiet`)
/// and runs the pipeline on them.
fn demo(overrides: &Overrides, args: &DemoArgs, quiet: bool) -> Result<ExitCode, Failure> {
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
    if !quiet {
        eprintln!(
            "Generating {} Kaggle-layout rows in three monthly files under {} ...",
            args.rows,
            inbox.display()
        );
    }
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
        export_url: dir.join("exports").display().to_string(),
        ..config
    };
    let rt = runtime()?;
    let mut ctx = open_context(&config, &rt, Access::Create)?;
    let mut progress = progress_for(false, false);
    let mut out = stdout();
    let report = pipeline::run(&mut ctx, progress.as_mut())?;
    write!(out, "{}", report.table())?;
    let summary = ctx.warehouse.summary()?;
    writeln!(out)?;
    writeln!(
        out,
        "Rejected rows by rule (quarantined with file, line and raw text):"
    )?;
    for (rule, n) in &summary.rejects_by_rule {
        writeln!(out, "  {rule:<26} {n:>8}")?;
    }
    writeln!(
        out,
        "Attributes set to NULL by rule (rows loaded with a warning):"
    )?;
    for (rule, n) in &summary.warnings_by_rule {
        writeln!(out, "  {rule:<26} {n:>8}")?;
    }
    demo_export(&config, &rt, &mut ctx.warehouse, &mut out)?;
    let d = dir.display();
    writeln!(
        out,
        "\nTry next:\n  \
         bankpipe --data-dir {d} status\n  \
         bankpipe --data-dir {d} rejects --rule invalid_transaction_date --limit 5\n  \
         bankpipe --data-dir {d} run            # again: every file is a duplicate_file, nothing loads twice\n  \
         bankpipe check {d}/inbox/bank_transactions_2016_08.csv\n  \
         bankpipe --data-dir {d} serve          # http://127.0.0.1:8000/: status page, /metrics, /api/runs\n  \
         sqlite3 {d}/warehouse.db \"SELECT location, COUNT(*) FROM transactions GROUP BY 1 ORDER BY 2 DESC LIMIT 5\""
    )?;
    Ok(exit_for(&report))
}

/// Says on stderr that a pseudonymisation key was generated now (issue #10: the user is
/// told), and why it matters.
fn tell_generated_key(generated: Option<&Path>, key: &crate::export::PseudonymKey) {
    if let Some(path) = generated {
        eprintln!(
            "bankpipe: generated a pseudonymisation key in {} (key id {}): keep it with the \
             warehouse; exports made with another key have other customer_key values",
            path.display(),
            key.key_id()
        );
    }
}

/// On SIGINT or SIGTERM, for the rest of the process: removes the export's working
/// folders (`DATA_DIR/.export-*`, which can hold gigabytes), says what it means on
/// stderr (and, with `json = Some(destination)`, as `export --json`'s one object on
/// stdout), and exits with 128 + the signal's number (130, 143) as a shell reports a
/// process ended by it. Nothing is published by halves: a quarter whose marker was not
/// written is not there for readers, and the next export writes it again.
///
/// For the `export` and `demo` commands only: `serve` has its own shutdown, and its
/// scheduled export's folder, if cut, is removed by the next export as stale.
fn remove_work_dirs_on_signal(json: Option<String>) {
    let watch = || -> std::io::Result<_> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Registered here, before the export starts: a signal from now on is caught.
        let signals = {
            let _runtime = rt.enter();
            Signals::register()?
        };
        Ok((rt, signals))
    };
    let (rt, signals) = match watch() {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot watch for signals; an interrupted export leaves its working folder to the next export.");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("bankpipe-signals".into())
        .spawn(move || {
            let (name, number) = rt.block_on(signals.first());
            let removed = crate::workdir::remove_live();
            let message = format!(
                "export interrupted by {name}: {removed} working folder(s) removed; a quarter \
                 whose marker (quarter=…/manifest.json) was not written is not published, and \
                 the next export writes it"
            );
            if let Some(destination) = json {
                let v = serde_json::json!({
                    "status": "failed",
                    "destination": destination,
                    "quarters": [],
                    "error": message,
                });
                let mut out = stdout();
                if writeln!(out, "{v}").and_then(|()| out.flush()).is_err() {
                    tracing::debug!("Could not print the interruption on stdout.");
                }
            }
            eprintln!("bankpipe: error: {message}");
            std::process::exit(128 + number);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "Cannot watch for signals; an interrupted export leaves its working folder to the next export.");
    }
}

/// SIGINT and SIGTERM, watched (Ctrl-C elsewhere).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts watching; must run inside a tokio runtime.
    fn register() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The first signal received, with its name and number.
    async fn first(self) -> (&'static str, i32) {
        #[cfg(unix)]
        {
            let Signals {
                mut interrupt,
                mut terminate,
            } = self;
            tokio::select! {
                _ = interrupt.recv() => ("SIGINT", 2),
                _ = terminate.recv() => ("SIGTERM", 15),
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                // Not watchable: never fires (the default handling stays).
                std::future::pending::<()>().await;
            }
            ("Ctrl-C", 2)
        }
    }
}

/// The demo's last step: every quarter of its data exported (issue #10). Its three
/// months (August to October 2016) leave both quarters partial, which it says.
fn demo_export(
    config: &Config,
    rt: &tokio::runtime::Runtime,
    warehouse: &mut Warehouse,
    out: &mut Stdout,
) -> Result<(), Failure> {
    use crate::export::{Options, Which};
    remove_work_dirs_on_signal(None);
    let (destination, key, generated) = crate::export::prepare(
        &config.export_url,
        rt.handle().clone(),
        &config.data_dir,
        true,
    )?;
    tell_generated_key(generated.as_deref(), &key);
    let options = Options {
        allow_partial: true,
        force: false,
        data_dir: config.data_dir.clone(),
        progress: std::io::stderr().is_terminal(),
    };
    let (reports, error) =
        crate::export::export(warehouse, &destination, &key, Which::All, &options)?;
    if let Some(e) = error {
        return Err(e.into());
    }
    writeln!(
        out,
        "\nML datasets (bankpipe export --all --allow-partial) in {}:",
        destination.url()
    )?;
    for r in &reports {
        writeln!(
            out,
            "  {}  version {}  {} transactions{}\n    {}/{}",
            r.quarter,
            r.version.as_deref().unwrap_or(""),
            r.rows.unwrap_or(0),
            if r.partial {
                format!(
                    "  PARTIAL quarter: no data for {} (the demo has Aug-Oct 2016)",
                    r.empty_months.join(", ")
                )
            } else {
                String::new()
            },
            config.export_url,
            r.manifest.as_deref().unwrap_or("")
        )?;
    }
    writeln!(
        out,
        "Read one with Polars (paths from the manifest, which names the current version):\n  \
         import json, polars as pl\n  \
         m = json.load(open(\"{0}/quarter=2016Q3/manifest.json\"))\n  \
         tx = pl.read_parquet(\"{0}/\" + next(f[\"path\"] for f in m[\"files\"] if f[\"name\"] == \"transactions.parquet\"))",
        config.export_url
    )?;
    Ok(())
}

fn reprocess(config: &Config, args: &crate::cli::ReprocessArgs) -> Result<ExitCode, Failure> {
    let rt = runtime()?;
    let mut ctx = open_context(config, &rt, Access::Existing)?;
    // Reprocess writes no new object: without a key it may still reload a file stored
    // in clear (an encrypted one is refused by the lake, exit 2).
    require_current_key(&mut ctx.warehouse, config.master_key.as_deref(), true)?;
    let mut out = stdout();
    let r = pipeline::reprocess(&mut ctx, &args.file, args.dry_run).map_err(|e| match e {
        RunError::Inbox { reason, path } => {
            Failure::usage(format!("reprocess {}: {reason}", path.display()))
        }
        other => other.into(),
    })?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&r).unwrap_or_default())?;
    } else {
        writeln!(
            out,
            "file {} ({}){}",
            r.file_id,
            r.name,
            if r.dry_run {
                " — dry run, nothing changed"
            } else {
                ""
            }
        )?;
        writeln!(out, "{:<16} {:>14} {:>14}", "", "before", "after")?;
        let (x, y) = (&r.before, &r.after);
        for (label, a, b) in [
            (
                "status",
                x.status.name().to_owned(),
                y.status.name().to_owned(),
            ),
            (
                "rows_read",
                x.rows_read.to_string(),
                y.rows_read.to_string(),
            ),
            (
                "rows_loaded",
                x.rows_loaded.to_string(),
                y.rows_loaded.to_string(),
            ),
            (
                "rows_rejected",
                x.rows_rejected.to_string(),
                y.rows_rejected.to_string(),
            ),
            (
                "rows_duplicate",
                x.rows_duplicate.to_string(),
                y.rows_duplicate.to_string(),
            ),
            (
                "amount_loaded",
                x.amount_loaded.clone(),
                y.amount_loaded.clone(),
            ),
        ] {
            writeln!(out, "{label:<16} {a:>14} {b:>14}")?;
        }
        if r.rows_moved > 0 {
            let to: Vec<String> = r
                .moved_to
                .iter()
                .map(|m| format!("{} to file {} ({})", m.rows, m.file_id, m.name))
                .collect();
            writeln!(
                out,
                "rows_moved       {} (other files carry them: {})",
                r.rows_moved,
                to.join(", ")
            )?;
        }
        if let Some(e) = &r.after.error {
            writeln!(out, "error: {e}")?;
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
    let v = verify_lake(config)?;
    let mut out = stdout();
    if v.catalog_empty_no_lake {
        writeln!(out, "0 objects checked: the catalog is empty")?;
        return Ok(ExitCode::SUCCESS);
    }
    let Verification {
        results,
        not_intact: bad,
        orphans,
        explained,
        unfinished,
        ..
    } = v;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "checked": results.len(),
                "not_intact": bad,
                "objects": results,
                "orphans": orphans,
                "orphan_details": explained,
                "unfinished": unfinished,
            })
        )?;
    } else {
        print_verification(&mut out, &results, bad, &unfinished, &explained)?;
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What [`verify_lake`] found, for `bankpipe verify` and the scheduled `verify` job.
#[derive(Debug)]
pub struct Verification {
    /// One JSON object per finished catalog entry (`verify --json`'s `objects`).
    results: Vec<serde_json::Value>,
    /// Entries not `intact` (missing, corrupt or unreadable).
    pub not_intact: usize,
    /// Raw objects no catalog entry names.
    orphans: Vec<String>,
    explained: Vec<Orphan>,
    /// Claimed but unfinished entries (not checked).
    unfinished: Vec<serde_json::Value>,
    /// No lake folder, and nothing in the catalog to look for in it.
    catalog_empty_no_lake: bool,
}

impl Verification {
    /// Catalog entries checked.
    pub fn checked(&self) -> usize {
        self.results.len()
    }

    /// One line for a log or a scheduled slot's outcome.
    pub fn summary(&self) -> String {
        format!(
            "{} objects checked, {} missing, corrupt or unreadable, {} orphans, {} unfinished",
            self.results.len(),
            self.not_intact,
            self.orphans.len(),
            self.unfinished.len()
        )
    }
}

/// The work of `bankpipe verify` without its output: every landed object is streamed
/// back and hashed, and its state recorded in the catalog (`files.lake_status`, when
/// the role may write it). Used by `verify` and by `serve`'s scheduled `verify` job.
///
/// # Errors
/// A [`Failure`] with the exit status `verify` gives: no lake where objects are
/// expected, a master key missing, warehouse or lake unreachable.
pub fn verify_lake(config: &Config) -> Result<Verification, Failure> {
    let rt = runtime()?;
    let mut warehouse = Warehouse::open_read_only(&config.warehouse_url)?;
    // Opening a folder lake creates it; verify must not (a mistyped lake_url would
    // otherwise report every object missing from a new, empty folder).
    if let Some(folder) = crate::lake::local_folder(&config.lake_url)
        && !folder.is_dir()
    {
        if warehouse.files()?.is_empty() {
            return Ok(Verification {
                results: Vec::new(),
                not_intact: 0,
                orphans: Vec::new(),
                explained: Vec::new(),
                unfinished: Vec::new(),
                catalog_empty_no_lake: true,
            });
        }
        return Err(Failure::usage(format!(
            "no lake at {}: check lake_url (BANKPIPE_LAKE_URL) or --data-dir",
            folder.display()
        )));
    }
    let lake = Lake::open(&config.lake_url, rt.handle().clone())?
        .with_master_key(config.master_key.clone());
    let mut results = Vec::new();
    // Listed before the catalog is read (and the catalog read again at the end), so an
    // object landed while this runs is never taken for an orphan.
    let listed = lake.list()?;
    let catalog = warehouse.files()?;
    let mut record_status = true;
    let present: std::collections::HashSet<&str> =
        listed.iter().map(|(key, _)| key.as_str()).collect();
    // Claimed but not finished: listed as what they are (their object, if any, is the
    // raw copy of content that may still load), not checked (it may be being written)
    // and never offered as orphans.
    let mut unfinished = Vec::new();
    for f in &catalog {
        if f.status == "landing" {
            unfinished.push(serde_json::json!({
                "file_id": f.file_id,
                "name": f.original_name,
                "lake_key": f.lake_key,
                "object_present": present.contains(f.lake_key.as_str()),
                "reason": f.error,
            }));
            continue;
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
        // A role that may only read (bankpipe_reader) still gets the whole report.
        if state != "unreadable" && record_status {
            match warehouse.set_lake_status(f.file_id, state, &crate::clock::now_rfc3339()) {
                Ok(()) => {}
                Err(e) if e.fault() == Fault::Setup => {
                    tracing::warn!(error = %e, "Cannot record lake status with this role; the report is complete, the catalog is not updated.");
                    record_status = false;
                }
                Err(e) => return Err(e.into()),
            }
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
    let explained: Vec<Orphan> = orphans
        .iter()
        .map(|key| Orphan::explain(key, catalog.iter().chain(&now)))
        .collect();
    Ok(Verification {
        results,
        not_intact: bad,
        orphans,
        explained,
        unfinished,
        catalog_empty_no_lake: false,
    })
}

/// `verify`'s table: one line per object (and why it is not intact), the unfinished
/// claims and the orphans.
fn print_verification(
    out: &mut Stdout,
    results: &[serde_json::Value],
    bad: usize,
    unfinished: &[serde_json::Value],
    explained: &[Orphan],
) -> Result<(), Failure> {
    // One column layout for the objects and the unfinished claims.
    let cell = |v: &serde_json::Value, key: &str| v[key].as_str().unwrap_or("").to_owned();
    let table = VerifyTable::new(
        results
            .iter()
            .map(|r| {
                (
                    cell(r, "status"),
                    r["file_id"].as_i64().unwrap_or(0),
                    cell(r, "name"),
                )
            })
            .chain(unfinished.iter().map(|u| {
                (
                    "unfinished".to_owned(),
                    u["file_id"].as_i64().unwrap_or(0),
                    cell(u, "name"),
                )
            })),
    );
    let indent = table.indent();
    for r in results {
        let row = table.row(
            r["status"].as_str().unwrap_or(""),
            r["file_id"].as_i64().unwrap_or(0),
            r["name"].as_str().unwrap_or(""),
        );
        writeln!(out, "{row}  {}", r["lake_key"].as_str().unwrap_or(""))?;
        if let Some(actual) = r["actual_sha256"].as_str() {
            writeln!(
                out,
                "{indent}expected sha256 {} but the object hashes to {actual}",
                r["expected_sha256"].as_str().unwrap_or("")
            )?;
        }
        if let Some(reason) = r["reason"].as_str() {
            writeln!(out, "{indent}{reason}")?;
        }
    }
    writeln!(
        out,
        "{} objects checked, {bad} missing, corrupt or unreadable",
        results.len()
    )?;
    if !unfinished.is_empty() {
        writeln!(
            out,
            "{} files are claimed but not finished (status landing; not checked, not orphans; \
             the next run resumes one whose content arrives again):",
            unfinished.len()
        )?;
        for u in unfinished {
            let row = table.row(
                "unfinished",
                u["file_id"].as_i64().unwrap_or(0),
                u["name"].as_str().unwrap_or(""),
            );
            writeln!(
                out,
                "{row}  {} (object {})",
                u["lake_key"].as_str().unwrap_or(""),
                if u["object_present"] == true {
                    "present"
                } else {
                    "absent"
                }
            )?;
            writeln!(
                out,
                "{indent}{}",
                u["reason"].as_str().unwrap_or(
                    "no reason recorded: being processed now, or left by a run that died"
                )
            )?;
        }
    }
    if !explained.is_empty() {
        writeln!(
            out,
            "{} raw objects are named by no catalog entry (verify deletes nothing):",
            explained.len()
        )?;
        for o in explained {
            writeln!(out, "         {}\n           {}", o.key, o.what)?;
        }
    }
    Ok(())
}

/// The columns of `verify`'s text table: status, file id (right-aligned to the widest
/// id), name (padded to the longest, shortened past 48 characters) and lake key, so a
/// catalog with ids of any width stays aligned.
#[derive(Debug)]
struct VerifyTable {
    status: usize,
    id: usize,
    name: usize,
}

impl VerifyTable {
    /// Widths that fit every `(status, file id, name)` row.
    fn new(rows: impl Iterator<Item = (String, i64, String)>) -> VerifyTable {
        let mut t = VerifyTable {
            status: "corrupt".len(),
            id: 1,
            name: 4,
        };
        for (status, id, name) in rows {
            t.status = t.status.max(status.chars().count());
            t.id = t.id.max(id.to_string().len());
            t.name = t.name.max(name.chars().count().min(48));
        }
        t
    }

    /// A row's status, id and name columns (the lake key follows).
    fn row(&self, status: &str, id: i64, name: &str) -> String {
        let (sw, iw, nw) = (self.status, self.id, self.name);
        let name = crate::report::shorten(name, nw);
        format!("{status:<sw$} {id:>iw$}  {name:<nw$}")
    }

    /// The indent of a line continuing a row (under the id column).
    fn indent(&self) -> String {
        " ".repeat(self.status + 1)
    }
}

/// A raw object no catalog entry names, and what it is, as far as its key tells.
/// Never called "safe to delete": another warehouse sharing the lake, or an older copy
/// of this catalog restored from a backup, may name it.
#[derive(Debug, serde::Serialize)]
struct Orphan {
    key: String,
    /// The content digest in its key, when it has one.
    sha256: Option<String>,
    /// The catalog entry of the same content, when there is one.
    file_id: Option<i64>,
    what: String,
}

impl Orphan {
    fn explain<'a>(
        key: &str,
        catalog: impl Iterator<Item = &'a crate::warehouse::FileEntry>,
    ) -> Orphan {
        // raw/<profile>/<yyyy>/<mm>/<sha256>.<ext>[.<data-key tag>.enc]
        let sha = key
            .rsplit('/')
            .next()
            .and_then(|name| name.split('.').next())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_owned);
        let mut catalog = catalog;
        let entry = sha
            .as_deref()
            .and_then(|sha| catalog.find(|f| f.sha256 == sha));
        let what = match (&sha, entry) {
            (Some(_), Some(f)) => format!(
                "an earlier landing attempt of file {} ({}); the catalog reads that file from {}",
                f.file_id,
                crate::report::printable(&f.original_name),
                f.lake_key
            ),
            (Some(_), None) => "a raw copy of content this catalog does not hold: a landing \
                 whose claim was withdrawn, or an object that another warehouse sharing this lake \
                 (or an older copy of this catalog) names"
                .to_owned(),
            (None, _) => "not a key bankpipe writes (no content digest in its name)".to_owned(),
        };
        Orphan {
            key: key.to_owned(),
            sha256: sha,
            file_id: entry.map(|f| f.file_id),
            what,
        }
    }
}

/// `pseudonymise`: the header `id,key`, then one CSV line per id read, in input order.
/// Lines are read as [`crate::export::pseudonym::id_of_line`] says (line ending and
/// surrounding blanks dropped, a UTF-8 byte order mark before the first line too);
/// blank lines are skipped and counted in the closing log line. A line that is not
/// UTF-8 stops the command (exit 1): no stored id could match it.
fn pseudonymise(config: &Config, args: &PseudonymiseArgs) -> Result<ExitCode, Failure> {
    use crate::export::pseudonym::{PseudonymKey, csv_field, id_of_line};
    use std::io::BufRead;

    // Never a new key: it would not give the keys of the datasets already exported.
    let embedded = crate::warehouse::sqlite::path_from_url(&config.warehouse_url).is_some();
    let key = PseudonymKey::load_existing(&config.data_dir, embedded)?;
    let derive = match args.kind {
        IdKind::Customer => PseudonymKey::customer_key,
        IdKind::Transaction => PseudonymKey::transaction_key,
    };
    let (name, mut input): (String, Box<dyn BufRead>) = match args.file.as_deref() {
        Some(path) if path != Path::new("-") => {
            let file = std::fs::File::open(path)
                .map_err(|e| Failure::usage(format!("cannot open {}: {e}", path.display())))?;
            (
                path.display().to_string(),
                Box::new(std::io::BufReader::with_capacity(64 * 1024, file)),
            )
        }
        _ => ("standard input".into(), Box::new(std::io::stdin().lock())),
    };
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout());
    writeln!(out, "id,key")?;
    let mut line = Vec::new();
    let (mut line_no, mut ids, mut blank) = (0u64, 0u64, 0u64);
    loop {
        line.clear();
        let read = input.read_until(b'\n', &mut line).map_err(|e| Failure {
            code: 1,
            message: format!("reading {name}: {e}"),
        })?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let bytes = match line_no {
            1 => line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&line),
            _ => &line,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| Failure {
            code: 1,
            message: format!("line {line_no} of {name} is not UTF-8 text (stored ids are)"),
        })?;
        let id = id_of_line(text);
        if id.is_empty() {
            blank += 1;
            continue;
        }
        writeln!(out, "{},{}", csv_field(id), derive(&key, id))?;
        ids += 1;
        // Nobody reads any more (`| head`): the rest of the input is not worth reading.
        if out.get_ref().closed {
            break;
        }
    }
    out.flush()?;
    tracing::info!(ids, blank_lines = blank, key_id = %key.key_id(), "Pseudonymised ids.");
    Ok(ExitCode::SUCCESS)
}

/// `bankpipe serve`: runs until SIGTERM/SIGINT, then exits 0 (within
/// `--shutdown-timeout`); 2 when the address cannot be bound or a setting is wrong.
fn serve(config: &Config, args: &crate::cli::ServeArgs) -> Result<ExitCode, Failure> {
    let shutdown_timeout = crate::config::parse_age(&args.shutdown_timeout).ok_or_else(|| {
        Failure::usage(format!(
            "invalid --shutdown-timeout {:?}: a whole number with s, m or h (30s, 5m), or 0",
            args.shutdown_timeout
        ))
    })?;
    let options = crate::serve::ServeOptions {
        listen: config.listen,
        shutdown_timeout,
        api_token: crate::config::api_token()?,
    };
    let rt = runtime()?;
    let result = rt.block_on(crate::serve::serve(config.clone(), options));
    // Blocking tasks still running (a query waiting for a lock, a job past the
    // timeout) must not hold the exit: their transactions roll back with the process.
    rt.shutdown_background();
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ crate::serve::ServeError::Bind { .. }) => Err(Failure::usage(e.to_string())),
        Err(e) => Err(Failure::unreachable(e.to_string())),
    }
}

fn status(config: &Config, json: bool) -> Result<ExitCode, Failure> {
    let mut w = Warehouse::open_read_only(&config.warehouse_url)?;
    let s = w.summary()?;
    let schedule = crate::schedule::overview(&config.schedule, &mut w, chrono::Utc::now())?;
    let mut out = stdout();
    if json {
        let mut value = serde_json::to_value(&s).unwrap_or_default();
        value["schedule"] = serde_json::to_value(&schedule).unwrap_or_default();
        writeln!(out, "{value}")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "warehouse     {}", redact_url(&config.warehouse_url))?;
    writeln!(out, "schema        v{}", s.schema_version)?;
    let files: Vec<String> = s.files.iter().map(|(k, v)| format!("{v} {k}")).collect();
    writeln!(
        out,
        "files         {}",
        if files.is_empty() {
            "none".into()
        } else {
            files.join(", ")
        }
    )?;
    writeln!(out, "transactions  {}", s.transactions)?;
    if let Some((a, b)) = &s.transaction_span {
        writeln!(out, "time span     {a} .. {b}")?;
    }
    writeln!(out, "rejected rows {}", s.rejected_rows)?;
    for (rule, n) in &s.rejects_by_rule {
        writeln!(out, "  {rule:<26} {n:>8}")?;
    }
    writeln!(out, "warnings (loaded with NULL)")?;
    for (rule, n) in &s.warnings_by_rule {
        writeln!(out, "  {rule:<26} {n:>8}")?;
    }
    if !s.unfinished.is_empty() {
        writeln!(out, "unfinished (landing)")?;
        for u in &s.unfinished {
            writeln!(
                out,
                "  {:>5}  {}  {}",
                u.file_id,
                u.name,
                u.reason.as_deref().unwrap_or(
                    "no reason recorded: being processed now, or left by a run that died \
                     (the next run resumes it)"
                )
            )?;
        }
    }
    if !s.exports.is_empty() {
        writeln!(out, "exported quarters")?;
        for e in &s.exports {
            writeln!(
                out,
                "  {}  version {}  {} transactions  {}{}  {}  {}{}",
                e.quarter,
                e.version,
                e.rows,
                e.amount_sum,
                if e.partial { "  partial" } else { "" },
                e.created_at,
                e.destination,
                if e.flagged_features.is_empty() {
                    String::new()
                } else {
                    format!("  drift flagged: {}", e.flagged_features.join(", "))
                }
            )?;
        }
    }
    writeln!(out, "recent runs")?;
    for r in &s.recent_runs {
        writeln!(out, "  {}  {}  {}", r.run_id, r.started_at, r.status)?;
    }
    print_schedule(&mut out, &schedule, config.schedule.timezone)?;
    Ok(ExitCode::SUCCESS)
}

/// `status`'s schedule: per job, its expression, next slot (in the schedule's zone)
/// and the last outcome recorded in `schedule_slots`, with its reason when not ok.
fn print_schedule(
    out: &mut Stdout,
    jobs: &[crate::schedule::JobStatus],
    timezone: chrono_tz::Tz,
) -> Result<(), Failure> {
    if jobs.is_empty() {
        writeln!(
            out,
            "schedule      none ([schedule] in bankpipe.toml; run by `bankpipe serve`)"
        )?;
        return Ok(());
    }
    writeln!(out, "schedule ({})", timezone.name())?;
    for j in jobs {
        let next = match (&j.next_slot_local, &j.next_slot) {
            (Some(local), _) if timezone != chrono_tz::Tz::UTC => local.clone(),
            (_, Some(utc)) => utc.clone(),
            _ => "none".to_owned(),
        };
        let last = match (&j.last, &j.last_finished) {
            (None, _) => "never run".to_owned(),
            (Some(l), Some(f)) if l.status == "running" => {
                format!(
                    "running since {} (before: {} {})",
                    l.claimed_at, f.slot_at, f.status
                )
            }
            (Some(l), _) if l.status == "running" => format!("running since {}", l.claimed_at),
            (Some(l), _) => format!("{} {}", l.slot_at, l.status),
        };
        writeln!(
            out,
            "  {:<7} {:<20} next {next}  last {last}",
            j.job.as_str(),
            j.expression
        )?;
        if let Some(error) = j.last_finished.as_ref().and_then(|f| f.error.as_deref()) {
            writeln!(out, "          {error}")?;
        }
    }
    Ok(())
}

/// `bankpipe rotate-key`: every data key wrapped by the current master key is
/// re-wrapped by the new one, in the transaction that makes the new key the catalog's
/// current one; the objects are not touched. Files already under the new key are left
/// as they are (so a rerun finishes the job and exits 0); files under any other key make
/// the exit status 1. Refused (exit 2) when the catalog's current key is neither.
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
    let mut w = open_existing(&config.warehouse_url)?;
    let mut out = stdout();
    if let Some(id) = w.master_key_id()?
        && id != current.id()
        && id != new.id()
    {
        return Err(WarehouseError::WrongMasterKey {
            configured: current.id().to_owned(),
            current: id,
        }
        .into());
    }
    // What the catalog holds now, for the report and the dry run. The rotation itself
    // reads the wrappings again with the current-key row locked, so a file landed
    // meanwhile under the old key is re-wrapped too, and none can be landed after.
    let (mut to_rotate, mut already, mut clear) = (0usize, 0usize, 0usize);
    let mut other = Vec::new();
    for f in w.files()? {
        match f.sealed() {
            None => clear += 1,
            Some(s) if s.key_id == new.id() => already += 1,
            Some(s) if s.key_id == current.id() => to_rotate += 1,
            Some(s) => {
                other.push(serde_json::json!({ "file_id": f.file_id, "key_id": s.key_id }));
            }
        }
    }
    let rotated = if args.dry_run {
        0
    } else {
        w.rotate_master_key(current.id(), new.id(), &mut |sha256, sealed| {
            current.rewrap(sealed, sha256, &new)
        })
        .map_err(|e| match e {
            WarehouseError::Rewrap { .. } => Failure {
                code: 1,
                message: e.to_string(),
            },
            e => e.into(),
        })?
    };
    if args.dry_run {
        tracing::info!(
            from = current.id(),
            to = new.id(),
            to_rotate,
            already,
            "Dry run: data keys checked, nothing changed."
        );
    } else {
        tracing::info!(
            from = current.id(),
            to = new.id(),
            rotated,
            already,
            "Data keys re-wrapped."
        );
    }
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "from_key_id": current.id(),
                "to_key_id": new.id(),
                "dry_run": args.dry_run,
                "to_rotate": to_rotate,
                "rotated": rotated,
                "already_rotated": already,
                "in_clear": clear,
                "other_keys": other,
            })
        )?;
    } else {
        let (verb, n) = if args.dry_run {
            ("would re-wrap", to_rotate)
        } else {
            ("re-wrapped", rotated)
        };
        writeln!(
            out,
            "{verb} {n} data keys from {} to {}; {already} already under {}; {clear} objects stored in clear (not encrypted by rotation)",
            current.id(),
            new.id(),
            new.id()
        )?;
        for o in &other {
            writeln!(
                out,
                "file {} is under another master key ({}): not rotated",
                o["file_id"],
                o["key_id"].as_str().unwrap_or("")
            )?;
        }
        if !args.dry_run {
            writeln!(
                out,
                "{} is now the catalog's current master key id: set BANKPIPE_MASTER_KEY (or \
                 BANKPIPE_MASTER_KEY_FILE) to the new key on every worker; runs still holding {} are refused",
                new.id(),
                current.id()
            )?;
        }
    }
    Ok(if other.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn files(config: &Config, json: bool) -> Result<ExitCode, Failure> {
    let mut w = Warehouse::open_read_only(&config.warehouse_url)?;
    let files = w.files()?;
    let mut out = stdout();
    if json {
        writeln!(out, "{}", serde_json::to_string(&files).unwrap_or_default())?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
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
    )?;
    for f in files {
        let name = crate::report::shorten(&f.original_name, 32);
        writeln!(
            out,
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
        )?;
        if let Some(e) = f.error {
            writeln!(out, "      error: {e}")?;
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
    let mut w = Warehouse::open_read_only(&config.warehouse_url)?;
    if let Some(id) = args.file
        && !w.files()?.iter().any(|f| f.file_id == id)
    {
        return Err(Failure::usage(format!(
            "no file {id} in the catalog of {} (`bankpipe files` lists them)",
            w.display_url()
        )));
    }
    let rows = w.rejects(&RejectFilter {
        file_id: args.file,
        rule: args.rule.clone(),
        limit: args.limit,
    })?;
    let hidden = !w.can_read_raw()?;
    if hidden {
        eprintln!(
            "bankpipe: note: the raw text of rejected rows is hidden for this role (it may hold \
             personal data; bankpipe_reader cannot read rejected_rows.raw)"
        );
    }
    let mut out = stdout();
    for r in rows {
        if args.json {
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            if hidden {
                v["raw"] = serde_json::Value::Null;
            }
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "{}:{}  {}  {}  {}",
                crate::report::printable(&r.file),
                r.line_no,
                r.rule,
                r.field.as_deref().unwrap_or("-"),
                crate::report::printable(r.detail.as_deref().unwrap_or("")),
            )?;
            if !hidden {
                writeln!(out, "    {}", crate::report::printable(&r.raw))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bankpipe export` (issue #10): resolves what to export, then `export::export` does
/// the work; this prints the outcome. With `--json` exactly one object is printed,
/// also when the export fails. Exit status: 0 every quarter exported or up to date, 1 a
/// quarter failed (incomplete, reconciliation), 2 a setting, 3 unreachable.
/// The work of `bankpipe export` without its output, for `export` and for `serve`'s
/// scheduled `export` job: opens the warehouse (applying pending migrations, never
/// creating one), the destination and the pseudonym key, then exports the quarters
/// `which` names with `options`. Blocks the calling thread.
///
/// # Errors
/// The outer [`Failure`]: nothing could be exported (warehouse, destination, key). The
/// inner error, beside the reports: the first quarter that failed.
pub fn export_quarters(
    config: &Config,
    which: crate::export::Which,
    options: &crate::export::Options,
) -> Result<
    (
        Vec<crate::export::QuarterReport>,
        Option<crate::export::ExportError>,
    ),
    Failure,
> {
    let rt = runtime()?;
    // Export writes the quarter tables: like reprocess, it applies pending migrations
    // but never creates a warehouse.
    let mut warehouse = open_existing(&config.warehouse_url)?;
    let embedded = matches!(warehouse, Warehouse::Sqlite(_));
    let (destination, key, generated) = crate::export::prepare(
        &config.export_url,
        rt.handle().clone(),
        &config.data_dir,
        embedded,
    )?;
    tell_generated_key(generated.as_deref(), &key);
    Ok(crate::export::export(
        &mut warehouse,
        &destination,
        &key,
        which,
        options,
    )?)
}

fn export(config: &Config, args: &ExportArgs) -> Result<ExitCode, Failure> {
    use crate::export::{Options, Which};
    // As recorded in `exports` (a folder: its canonical absolute path).
    let destination_url = crate::lake::canonical_destination(&config.export_url);
    remove_work_dirs_on_signal(args.json.then(|| destination_url.clone()));
    let result = (|| -> Result<_, Failure> {
        let which = match (args.all, args.quarter.as_deref()) {
            (true, _) => Which::All,
            (false, Some(q)) if q.eq_ignore_ascii_case("latest") => Which::Latest,
            (false, Some(q)) => {
                Which::One(crate::export::quarter::Quarter::parse(q).ok_or_else(|| {
                    Failure::usage(format!("--quarter {q:?}: expected e.g. 2016Q3, or latest"))
                })?)
            }
            (false, None) => return Err(Failure::usage("give --quarter QUARTER or --all")),
        };
        let options = Options {
            allow_partial: args.allow_partial,
            force: args.force,
            data_dir: config.data_dir.clone(),
            progress: !args.json && std::io::stderr().is_terminal(),
        };
        export_quarters(config, which, &options)
    })();
    let mut out = stdout();
    let (reports, error) = match result {
        Ok(done) => done,
        Err(failure) => {
            if args.json {
                let v = serde_json::json!({
                    "status": "failed",
                    "destination": destination_url,
                    "quarters": [],
                    "error": failure.message,
                });
                writeln!(out, "{v}")?;
            }
            return Err(failure);
        }
    };
    let failure = error.map(Failure::from);
    if args.json {
        let v = serde_json::json!({
            "status": if failure.is_some() { "failed" } else { "ok" },
            "destination": destination_url,
            "quarters": reports,
            "error": failure.as_ref().map(|f| f.message.clone()),
        });
        writeln!(out, "{v}")?;
    } else {
        for r in &reports {
            match r.status {
                "exported" => writeln!(
                    out,
                    "{}  exported  version {}  {} transactions, amount {}{}{}\n          {}/{}",
                    r.quarter,
                    r.version.as_deref().unwrap_or(""),
                    r.rows.unwrap_or(0),
                    r.amount_sum.as_deref().unwrap_or(""),
                    if r.partial {
                        format!(
                            " (partial: no transactions in {})",
                            r.empty_months.join(", ")
                        )
                    } else {
                        String::new()
                    },
                    if r.flagged.is_empty() {
                        String::new()
                    } else {
                        format!("; drift flagged: {}", r.flagged.join(", "))
                    },
                    destination_url,
                    r.manifest.as_deref().unwrap_or(""),
                )?,
                "up_to_date" => writeln!(
                    out,
                    "{}  up to date  version {} (nothing written; --force writes it again)\n          {}/{}",
                    r.quarter,
                    r.version.as_deref().unwrap_or(""),
                    destination_url,
                    r.manifest.as_deref().unwrap_or(""),
                )?,
                _ => writeln!(
                    out,
                    "{}  failed  {}",
                    r.quarter,
                    r.error.as_deref().unwrap_or("")
                )?,
            }
        }
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(ExitCode::SUCCESS),
    }
}
