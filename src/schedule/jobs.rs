//! The scheduled jobs: each calls the front door of its command in-process (never a
//! shell), on the calling thread, and says how it ended in one line.
//!
//! - `ingest`: [`crate::commands::ingest_as`] (under the run id `serve` gives it), the
//!   work of `bankpipe run` (stops between files when asked).
//! - `verify`: [`crate::commands::verify_lake`], the work of `bankpipe verify`.
//! - `export`: [`crate::commands::export_quarters`], the work of `bankpipe export
//!   --quarter Q` for the last complete quarter before the slot, in the schedule's time
//!   zone (see [`super::last_complete_quarter`]). A quarter with an empty month fails
//!   (the export command's rule without `--allow-partial`: a month missing from a past
//!   quarter is news); one already exported with the same data is `up to date`.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};

use super::{Job, JobSchedule, last_complete_quarter};
use crate::config::Config;
use crate::pipeline::RunError;
use crate::report::{Outcome, RunReport};
use crate::warehouse::SlotStatus;

/// How a job ended, with one line for the log and `schedule_slots.error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Done without error (what it did).
    Ok(String),
    /// Done with an error, or could not start (why).
    Failed(String),
    /// Stopped on request before its end (what was done, what is left).
    Interrupted(String),
}

impl JobOutcome {
    /// The slot status this outcome records.
    pub fn status(&self) -> SlotStatus {
        match self {
            JobOutcome::Ok(_) => SlotStatus::Ok,
            JobOutcome::Failed(_) => SlotStatus::Failed,
            JobOutcome::Interrupted(_) => SlotStatus::Interrupted,
        }
    }

    /// The line describing it.
    pub fn message(&self) -> &str {
        match self {
            JobOutcome::Ok(m) | JobOutcome::Failed(m) | JobOutcome::Interrupted(m) => m,
        }
    }

    /// What `schedule_slots.error` records: the message, except for a success.
    pub fn error(&self) -> Option<&str> {
        match self {
            JobOutcome::Ok(_) => None,
            other => Some(other.message()),
        }
    }
}

/// Runs the job of `schedule` for `slot`, blocking the calling thread until it ends.
/// `stop`, once set, asks it to end early (only `ingest` can: between files).
/// `run_id` is the id an `ingest` records its run under (`serve` names it while the
/// run is in progress; a new one when `None`); the other jobs have none.
pub fn run(
    schedule: &JobSchedule,
    slot: DateTime<Utc>,
    config: &Config,
    stop: &AtomicBool,
    run_id: Option<String>,
) -> JobOutcome {
    match schedule.job {
        Job::Ingest => ingest(
            config,
            stop,
            run_id.unwrap_or_else(crate::pipeline::new_run_id),
        ),
        Job::Verify => verify(config),
        Job::Export => export(config, last_complete_quarter(schedule.local_date(slot))),
    }
}

fn ingest(config: &Config, stop: &AtomicBool, run_id: String) -> JobOutcome {
    match crate::commands::ingest_as(config, stop, run_id, || {}) {
        Err(failure) => JobOutcome::Failed(failure.message),
        Ok(Ok(report)) if report.status == "ok" => JobOutcome::Ok(run_summary(&report)),
        Ok(Ok(report)) => JobOutcome::Failed(failed_files(&report)),
        Ok(Err(stopped)) => {
            let done = stopped
                .report
                .as_deref()
                .map_or_else(String::new, |r| format!(" ({})", run_summary(r)));
            match stopped.error {
                e @ RunError::Interrupted { .. } => JobOutcome::Interrupted(format!("{e}{done}")),
                e => JobOutcome::Failed(format!(
                    "{}{done}",
                    crate::commands::Failure::from(e).message
                )),
            }
        }
    }
}

/// `run <id>: N files (2 loaded, 1 duplicate_file), R rows loaded, J rejected`.
fn run_summary(report: &RunReport) -> String {
    let mut by_outcome: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &report.files {
        *by_outcome.entry(f.status.name()).or_default() += 1;
    }
    let outcomes: Vec<String> = by_outcome.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!(
        "run {}: {} files{}, {} rows loaded, {} rejected",
        report.run_id,
        report.files.len(),
        if outcomes.is_empty() {
            String::new()
        } else {
            format!(" ({})", outcomes.join(", "))
        },
        report.files.iter().map(|f| f.rows_loaded).sum::<u64>(),
        report.files.iter().map(|f| f.rows_rejected).sum::<u64>(),
    )
}

/// The files that failed, with their reasons (at most three named).
fn failed_files(report: &RunReport) -> String {
    let failed: Vec<String> = report
        .files
        .iter()
        .filter(|f| f.status == Outcome::Failed || f.error.is_some())
        .map(|f| match &f.error {
            Some(e) => format!("{}: {e}", f.name),
            None => f.name.clone(),
        })
        .collect();
    let shown = failed
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    let more = failed.len().saturating_sub(3);
    format!(
        "{} of {} files failed: {shown}{}; {}",
        failed.len(),
        report.files.len(),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        },
        run_summary(report)
    )
}

fn verify(config: &Config) -> JobOutcome {
    match crate::commands::verify_lake(config) {
        Err(failure) => JobOutcome::Failed(failure.message),
        Ok(v) if v.not_intact == 0 => JobOutcome::Ok(v.summary()),
        Ok(v) => JobOutcome::Failed(format!("{} (bankpipe verify lists them)", v.summary())),
    }
}

fn export(config: &Config, (year, q): (i32, u32)) -> JobOutcome {
    let Ok(q) = u8::try_from(q) else {
        return JobOutcome::Failed(format!("no quarter {q} of {year}"));
    };
    let quarter = crate::export::quarter::Quarter { year, q };
    let options = crate::export::Options {
        allow_partial: false,
        force: false,
        data_dir: config.data_dir.clone(),
        progress: false,
    };
    match crate::commands::export_quarters(config, crate::export::Which::One(quarter), &options) {
        Err(failure) => JobOutcome::Failed(format!("{quarter}: {}", failure.message)),
        Ok((_, Some(e))) => JobOutcome::Failed(format!(
            "{quarter}: {}",
            crate::commands::Failure::from(e).message
        )),
        Ok((reports, None)) => JobOutcome::Ok(
            reports
                .iter()
                .map(|r| {
                    format!(
                        "{} {} version {} ({} transactions)",
                        r.quarter,
                        r.status,
                        r.version.as_deref().unwrap_or("?"),
                        r.rows.unwrap_or(0)
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::FileReport;

    fn report(files: &[(&str, Outcome, Option<&str>)]) -> RunReport {
        RunReport {
            run_id: "r1".into(),
            status: "failed".into(),
            started_at: String::new(),
            finished_at: String::new(),
            elapsed_s: 0.0,
            files: files
                .iter()
                .map(|(name, outcome, error)| {
                    let mut f = FileReport::new(name, *outcome);
                    f.error = error.map(str::to_owned);
                    f
                })
                .collect(),
            error: None,
        }
    }

    #[test]
    fn a_run_is_summarised_by_outcome() {
        let r = report(&[
            ("a.csv", Outcome::Loaded, None),
            ("b.csv", Outcome::Loaded, None),
            ("c.csv", Outcome::DuplicateFile, None),
        ]);
        assert_eq!(
            run_summary(&r),
            "run r1: 3 files (1 duplicate_file, 2 loaded), 0 rows loaded, 0 rejected"
        );
        assert_eq!(
            run_summary(&report(&[])),
            "run r1: 0 files, 0 rows loaded, 0 rejected"
        );
    }

    #[test]
    fn failed_files_are_named_with_their_reasons() {
        let r = report(&[
            ("a.csv", Outcome::Loaded, None),
            ("b.csv", Outcome::Failed, Some("too many rejects")),
            ("c.csv", Outcome::Failed, Some("x")),
            ("d.csv", Outcome::Failed, Some("y")),
            ("e.csv", Outcome::Failed, Some("z")),
        ]);
        let m = failed_files(&r);
        assert!(
            m.starts_with("4 of 5 files failed: b.csv: too many rejects; c.csv: x; d.csv: y and 1 more; run r1"),
            "{m}"
        );
    }

    #[test]
    fn outcomes_map_to_slot_statuses() {
        assert_eq!(JobOutcome::Ok("x".into()).status(), SlotStatus::Ok);
        assert_eq!(JobOutcome::Ok("x".into()).error(), None);
        assert_eq!(JobOutcome::Failed("y".into()).error(), Some("y"));
        assert_eq!(
            JobOutcome::Interrupted("z".into()).status(),
            SlotStatus::Interrupted
        );
    }
}
