//! The `bankpipe` binary: parse the command line, set up logging, run the command, map
//! the outcome to an exit status. Everything else lives in the library.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use bankpipe::cli::LogFormat;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match bankpipe::cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // With --json, the caller reads stdout: one JSON object there too.
            if let Some(v) = bankpipe::cli::usage_error_json(&args, &e) {
                let _ = writeln!(std::io::stdout().lock(), "{v}");
            }
            // clap: 0 for --help/--version, 2 for usage errors.
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    // On a terminal the progress bars tell the story; logs would tear them.
    let default = if cli.verbose {
        "debug"
    } else if cli.quiet || std::io::stderr().is_terminal() {
        "warn"
    } else {
        "info"
    };
    // A BANKPIPE_LOG that does not parse is refused, not replaced by the default: a
    // variable a user sets is never silently ignored.
    let filter = match std::env::var("BANKPIPE_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => f,
            Err(e) => {
                eprintln!(
                    "bankpipe: error: invalid BANKPIPE_LOG={v:?}: {e} (use e.g. warn, info, debug)"
                );
                return ExitCode::from(2);
            }
        },
        _ => EnvFilter::new(default),
    };
    // --log-format, else BANKPIPE_LOG_FORMAT; a value that does not parse is refused.
    let json = match cli.log_format {
        Some(format) => format == LogFormat::Json,
        None => match std::env::var("BANKPIPE_LOG_FORMAT") {
            Ok(v) if v.trim().eq_ignore_ascii_case("json") => true,
            Ok(v) if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("text") => false,
            Ok(v) => {
                eprintln!("bankpipe: error: invalid BANKPIPE_LOG_FORMAT={v:?}: use text or json");
                return ExitCode::from(2);
            }
            Err(_) => false,
        },
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(bankpipe::progress::LogWriter);
    if json {
        // One JSON object per line, no colours: for log shippers.
        logs.json().with_current_span(false).init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    for name in bankpipe::config::unknown_env_vars() {
        tracing::warn!(variable = %name, "Unknown BANKPIPE_ variable ignored (a typo?); see the README's configuration table.");
    }
    match bankpipe::commands::execute(cli) {
        Ok(code) => code,
        // The reader of our output went away (`bankpipe files | head -1`): done.
        Err(failure) if failure.is_closed_pipe() => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("bankpipe: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
