//! Command-line arguments (clap). Only parsing lives here; `commands` carries them out.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Land, validate and load bank transaction files exactly once.
#[derive(Debug, Parser)]
#[command(name = "bankpipe", version, about, long_about = None)]
pub struct Cli {
    /// Config file (default: ./bankpipe.toml when present) [env: BANKPIPE_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data folder holding warehouse.db, lake/ and inbox/ [env: BANKPIPE_DATA_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// More log output (debug).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Less log output (warnings and errors only).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log line format on stderr: `text` (default) or `json` (one JSON object per line,
    /// for log shippers) [env: BANKPIPE_LOG_FORMAT]
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `span`s).
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Process every new file of the inbox once, then exit (the main job).
    Run(RunArgs),
    /// Generate three monthly Kaggle-layout files (1,048,567 rows) and run the pipeline on them.
    Demo(DemoArgs),
    /// Write realistic synthetic transactions in the Kaggle layout.
    Generate(GenerateArgs),
    /// Validate files against the contract without loading them.
    Check(CheckArgs),
    /// Warehouse summary: files, rows, rejects, warnings, recent runs.
    Status(JsonArg),
    /// The catalog of files.
    Files(JsonArg),
    /// Quarantined rows.
    Rejects(RejectsArgs),
    /// Re-read every landed raw object and check it against the catalog's SHA-256.
    Verify(JsonArg),
    /// Reload one file from its raw object in the lake under the current contract.
    Reprocess(ReprocessArgs),
    /// Apply pending warehouse migrations.
    Migrate(MigrateArgs),
    /// Write a quarter's ML-ready datasets (Parquet, pseudonymised, reconciled to the
    /// warehouse, with drift against the previous quarter).
    Export(ExportArgs),
    /// Re-wrap the data keys of encrypted lake objects under a new master key (objects
    /// are not rewritten). The current key comes from BANKPIPE_MASTER_KEY(_FILE).
    RotateKey(RotateKeyArgs),
    /// Print the pseudonymised key of each id read (one a line) as `id,key` CSV, to join
    /// label tables to exported datasets. The key comes from BANKPIPE_PSEUDONYM_KEY(_FILE),
    /// else (SQLite) DATA_DIR/pseudonym.key as the first export made it; never generated
    /// here (a new key would not match the exported customer_key).
    Pseudonymise(PseudonymiseArgs),
    /// Run as a service: health and readiness, Prometheus metrics, the status page and
    /// read API, and the schedule; stops cleanly on SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Ask a running `serve` whether it is ready (`GET /ready`, within 5 s): exit 0 when
    /// it is; 1 with the reason on stderr when it is not or nothing answers. For
    /// container health checks: the image needs no curl.
    Healthcheck(HealthcheckArgs),
}

/// `healthcheck` options.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The server's URL, e.g. http://bankpipe:8000 (`/ready` is added to its path).
    /// Default: the address `serve` listens on (`listen`, BANKPIPE_LISTEN), 0.0.0.0 or
    /// :: reached on loopback.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: BANKPIPE_LISTEN; config `listen`] (default 127.0.0.1:8000)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// On SIGTERM/SIGINT, how long to wait for requests and jobs in progress before
    /// exiting anyway (`30s`, `5m`, `0`).
    #[arg(long, value_name = "AGE", default_value = "30s")]
    pub shutdown_timeout: String,
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Inbox folder [env: BANKPIPE_INBOX] (default DATA_DIR/inbox)
    #[arg(long, value_name = "DIR")]
    pub inbox: Option<PathBuf>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Fail a file whose rejected-row share exceeds this (default 0.05).
    #[arg(long, value_name = "X")]
    pub max_reject_share: Option<f64>,
    /// Fail a compressed file that decompresses to more than this (`16GiB`, `500MB`, or
    /// bytes): a compression bomb stops there [env: BANKPIPE_MAX_DECOMPRESSED_BYTES]
    /// (default 16GiB).
    #[arg(long, value_name = "SIZE")]
    pub max_decompressed_bytes: Option<String>,
    /// Validation threads (default: number of cores).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Files processed at once, each on its own PostgreSQL session from the pool
    /// (default 1; SQLite always 1).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Skip files modified less than this long ago (`30s`, `5m`, `1h`, `0`): exports
    /// written in place may still be growing [env: BANKPIPE_MIN_FILE_AGE] (default 0).
    #[arg(long, value_name = "AGE")]
    pub min_file_age: Option<String>,
    /// No progress bars even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// After the run, PUT its figures to this Prometheus Pushgateway (job `bankpipe_run`,
    /// grouped by instance = this host's name), e.g. `http://pushgateway:9091`.
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
    /// After the run, write its figures to this file in the node_exporter
    /// textfile-collector format (written aside, then renamed into place).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

/// `demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder to create (a folder from an earlier demo is replaced).
    #[arg(long, value_name = "DIR", default_value = "bankpipe-demo")]
    pub dir: PathBuf,
    /// Rows in total over the three files.
    #[arg(long, default_value_t = 1_048_567)]
    pub rows: u64,
}

/// Output format of `generate`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GenFormat {
    /// CSV with the Kaggle header.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// One JSON array.
    Json,
}

/// `generate` options.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of rows.
    #[arg(long)]
    pub rows: u64,
    /// Output file (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: GenFormat,
    /// Random seed; the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of rows with one injected defect (0 to 1).
    #[arg(long, default_value_t = 0.005)]
    pub defects: f64,
    /// Only this month, as YYYY-MM (default: Aug-Oct 2016 like the Kaggle file).
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// Number of the first transaction id (`T<n>`).
    #[arg(long, default_value_t = 1)]
    pub first_id: u64,
}

/// `check` options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Fail a file whose rejected-row share exceeds this (default 0.05).
    #[arg(long, value_name = "X")]
    pub max_reject_share: Option<f64>,
    /// Fail a compressed file that decompresses to more than this (`16GiB`, `500MB`, or
    /// bytes): a compression bomb stops there [env: BANKPIPE_MAX_DECOMPRESSED_BYTES]
    /// (default 16GiB).
    #[arg(long, value_name = "SIZE")]
    pub max_decompressed_bytes: Option<String>,
    /// Validation threads (default: number of cores).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

/// A `--json` switch.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `rejects` options.
#[derive(Debug, Args)]
pub struct RejectsArgs {
    /// Only rows of this file id.
    #[arg(long, value_name = "ID")]
    pub file: Option<i64>,
    /// Only rows that broke this rule (e.g. invalid_amount).
    #[arg(long, value_name = "RULE")]
    pub rule: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `migrate` options.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Also create the least-privilege roles bankpipe_owner, bankpipe_loader and
    /// bankpipe_reader (PostgreSQL).
    #[arg(long)]
    pub create_roles: bool,
    /// List the pending migrations; apply nothing, create nothing.
    #[arg(long, conflicts_with = "create_roles")]
    pub dry_run: bool,
}

/// `reprocess` options.
#[derive(Debug, Args)]
pub struct ReprocessArgs {
    /// The file: its catalog id or its SHA-256.
    pub file: String,
    /// Show what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Fail the file when its rejected-row share exceeds this (default 0.05).
    #[arg(long, value_name = "X")]
    pub max_reject_share: Option<f64>,
    /// Fail the file when its raw object decompresses to more than this (`16GiB`,
    /// `500MB`, or bytes) [env: BANKPIPE_MAX_DECOMPRESSED_BYTES] (default 16GiB).
    #[arg(long, value_name = "SIZE")]
    pub max_decompressed_bytes: Option<String>,
}

/// `rotate-key` options.
#[derive(Debug, Args)]
pub struct RotateKeyArgs {
    /// File holding the new master key (base64 of 32 bytes, or the 32 raw bytes)
    /// [env: BANKPIPE_NEW_MASTER_KEY (base64) or BANKPIPE_NEW_MASTER_KEY_FILE]
    #[arg(long, value_name = "FILE")]
    pub new_key_file: Option<PathBuf>,
    /// Check that every data key can be re-wrapped; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Which identifier `pseudonymise` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IdKind {
    /// `customer_id` → `customer_key`.
    Customer,
    /// `transaction_id` → `transaction_key`.
    Transaction,
}

/// `pseudonymise` options.
#[derive(Debug, Args)]
pub struct PseudonymiseArgs {
    /// Which identifiers the input holds.
    #[arg(long, value_enum)]
    pub kind: IdKind,
    /// File of ids, one a line (`-` or none: standard input).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// `export` options.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["quarter", "all"]))]
pub struct ExportArgs {
    /// The quarter, e.g. 2016Q3, or `latest` (the latest quarter with loaded transactions).
    #[arg(long, value_name = "QUARTER")]
    pub quarter: Option<String>,
    /// Every quarter with data, oldest first.
    #[arg(long)]
    pub all: bool,
    /// Destination: a folder or s3://BUCKET/PREFIX [env: BANKPIPE_EXPORT_URL] (default
    /// DATA_DIR/exports).
    #[arg(long, value_name = "URL")]
    pub out: Option<String>,
    /// Export a quarter even when one of its months has no loaded transaction.
    #[arg(long)]
    pub allow_partial: bool,
    /// Write the version again even when it exists.
    #[arg(long)]
    pub force: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The one JSON object a command line holding `--json` prints on stdout when it does
/// not parse (a bad flag or value, a missing argument: exit 2), so that a caller reading
/// stdout as JSON gets an answer it can read rather than nothing. Shaped as the
/// command's own `--json` failure: `run`'s run that could not start (`run_id` `null`,
/// `files` `[]`), `export`'s (`destination` `null`, `quarters` `[]`), else
/// `{"status": "failed", "error": …}`; `error` is clap's message and the usage line.
///
/// `None` without `--json` (before a `--`), and for `--help`/`--version`, which are not
/// errors.
pub fn usage_error_json(
    args: &[std::ffi::OsString],
    error: &clap::Error,
) -> Option<serde_json::Value> {
    use clap::CommandFactory;
    if !error.use_stderr() {
        return None;
    }
    let args: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .take_while(|a| a != "--")
        .collect();
    if !args
        .iter()
        .any(|a| a == "--json" || a.starts_with("--json="))
    {
        return None;
    }
    // The subcommand: the first word that is neither a global option nor its value.
    let cli = Cli::command();
    let takes_value: Vec<String> = cli
        .get_arguments()
        .filter(|a| a.get_action().takes_values())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let mut words = args.iter();
    let mut command = None;
    while let Some(w) = words.next() {
        if takes_value.contains(w) {
            words.next();
        } else if !w.starts_with('-') {
            command = Some(w.as_str());
            break;
        }
    }
    let text = error.render().to_string();
    // The first paragraph (`the following required arguments were not provided:` and
    // the list under it), on one line.
    let first = text
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let first = first.strip_prefix("error: ").unwrap_or(&first);
    let message = match text.lines().find_map(|l| l.trim().strip_prefix("Usage: ")) {
        Some(usage) => format!("{first}; usage: {usage}"),
        None => first.to_owned(),
    };
    Some(failure_json(command, &message))
}

/// The one JSON object a `--json` command prints when it fails before doing anything (a
/// command line that does not parse, a setting that does not): shaped as that command's
/// own failure, so that a caller reading stdout always gets one object. `run`: `run_id`
/// `null`, `files` `[]`; `export`: `destination` `null`, `quarters` `[]`; the others
/// `status` and `error`.
#[must_use]
pub fn failure_json(command: Option<&str>, message: &str) -> serde_json::Value {
    match command {
        Some("run") => serde_json::json!({
            "run_id": null,
            "status": "failed",
            "started_at": null,
            "finished_at": crate::clock::now_rfc3339(),
            "elapsed_s": 0.0,
            "files": [],
            "error": message,
        }),
        Some("export") => serde_json::json!({
            "status": "failed",
            "destination": null,
            "quarters": [],
            "error": message,
        }),
        _ => serde_json::json!({ "status": "failed", "error": message }),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, usage_error_json};

    fn json_of(args: &[&str]) -> Option<serde_json::Value> {
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        let error = Cli::try_parse_from(&args).expect_err("a usage error");
        usage_error_json(&args, &error)
    }

    #[test]
    fn usage_errors_with_json_are_json_shaped_as_the_command() {
        let v = json_of(&["bankpipe", "export", "--json", "--bogus"]).unwrap();
        assert_eq!(v["status"], "failed");
        assert_eq!(v["quarters"], serde_json::json!([]));
        assert!(v["destination"].is_null());
        let error = v["error"].as_str().unwrap();
        assert!(
            error.starts_with("unexpected argument '--bogus' found"),
            "{error}"
        );
        assert!(error.contains("usage: bankpipe export"), "{error}");
        // A bad value, a missing argument, global options with values before it.
        let v = json_of(&[
            "bankpipe",
            "--data-dir",
            "d",
            "export",
            "--quarter",
            "2016Q3",
            "--json",
            "--out",
        ])
        .unwrap();
        assert_eq!(v["quarters"], serde_json::json!([]), "{v}");
        let v = json_of(&[
            "bankpipe",
            "--config",
            "export",
            "run",
            "--json",
            "--workers",
            "two",
        ])
        .unwrap();
        assert!(
            v["run_id"].is_null() && v["files"] == serde_json::json!([]),
            "{v}"
        );
        assert!(v["error"].as_str().unwrap().contains("two"), "{v}");
        let v = json_of(&["bankpipe", "export", "--json"]).unwrap();
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with("the following required arguments were not provided: <--quarter"),
            "{v}"
        );
        let v = json_of(&["bankpipe", "status", "--json", "--nope"]).unwrap();
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["error", "status"]
        );
        // Without --json, or only after `--`: clap's text alone.
        assert!(json_of(&["bankpipe", "export", "--bogus"]).is_none());
        assert!(json_of(&["bankpipe", "pseudonymise", "--kind", "x", "--", "--json"]).is_none());
    }

    /// The README's usage block has a line for every command, and that line names every
    /// flag of the command (`rejects --limit` was missing): a flag added later must be
    /// documented with it.
    #[test]
    fn the_readme_usage_names_every_command_and_flag() {
        let readme = include_str!("../README.md");
        let block = readme
            .split("## Using it")
            .nth(1)
            .and_then(|s| s.split("```sh\n").nth(1))
            .and_then(|s| s.split("```").next())
            .expect("README: a sh block under \"## Using it\"");
        // "bankpipe status | files [--json]  # ..." documents status and files.
        let lines: Vec<(Vec<&str>, &str)> = block
            .lines()
            .filter_map(|l| l.strip_prefix("bankpipe "))
            .map(|l| {
                let usage = l.split("  #").next().unwrap_or(l);
                let mut names = Vec::new();
                let mut words = usage.split_whitespace();
                while let Some(name) = words.next() {
                    names.push(name);
                    if words.next() != Some("|") {
                        break;
                    }
                }
                (names, usage)
            })
            .collect();
        let cli = Cli::command();
        let global: Vec<&str> = cli.get_arguments().filter_map(|a| a.get_long()).collect();
        for command in cli.get_subcommands() {
            let name = command.get_name();
            let Some((_, usage)) = lines.iter().find(|(names, _)| names.contains(&name)) else {
                panic!("README usage: no line for `bankpipe {name}`");
            };
            for flag in command.get_arguments().filter_map(|a| a.get_long()) {
                if flag == "help" || global.contains(&flag) {
                    continue;
                }
                assert!(
                    usage
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                        .any(|w| w == format!("--{flag}")),
                    "README usage of `bankpipe {name}` lacks --{flag}: {usage}"
                );
            }
        }
    }
}
