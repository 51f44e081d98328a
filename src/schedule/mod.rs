//! The schedule `bankpipe serve` keeps (issue #11): which job is due when, and what
//! became of each slot.
//!
//! This module owns the `[schedule]` section of `bankpipe.toml` (cron expressions per
//! job, a time zone), turned into a [`Schedule`] at config load; the slot arithmetic
//! (pure, table-tested: [`JobSchedule::next_after`], [`JobSchedule::latest_at_or_before`],
//! [`missed_slot`]); and [`overview`], what `bankpipe status` and the status page show.
//! The loop that claims slots in the warehouse and runs the jobs is `serve::scheduler`; the jobs
//! themselves are the commands' front doors ([`jobs`]). It does not decide what a job
//! does: `ingest` is `bankpipe run`, `verify` is `bankpipe verify`, `export` exports the
//! last complete quarter.
//!
//! **A slot** is one instant at which a job's expression matches the wall clock of the
//! schedule's time zone, kept in UTC to the second (`2026-12-01T06:00:00.000Z`). Each is
//! claimed in the warehouse (`schedule_slots`, primary key `(job, slot_at)`) before it
//! runs, so it runs once whatever the number of `serve` instances.

pub mod jobs;

use std::str::FromStr;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use crate::warehouse::{SlotRecord, Warehouse, WarehouseError};

/// The jobs a schedule can run: a closed set, also the `job` label of the scheduler
/// metrics and the `job` column of `schedule_slots`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Job {
    /// `bankpipe run`: every new file of the inbox.
    Ingest,
    /// `bankpipe export` of the last complete quarter before the slot.
    Export,
    /// `bankpipe verify`: every landed object read back and hashed.
    Verify,
}

impl Job {
    /// Every job, in the order `status` lists them.
    pub const ALL: [Job; 3] = [Job::Ingest, Job::Export, Job::Verify];

    /// The name used in the config, the warehouse and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Ingest => "ingest",
            Job::Export => "export",
            Job::Verify => "verify",
        }
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[schedule]` section as written: every key optional; a job without an
/// expression never runs.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Cron expression of `ingest` (`bankpipe run`).
    pub ingest: Option<String>,
    /// Cron expression of `export` (the last complete quarter).
    pub export: Option<String>,
    /// Cron expression of `verify`.
    pub verify: Option<String>,
    /// IANA time zone name the expressions are read in (default `UTC`).
    pub timezone: Option<String>,
}

/// A `[schedule]` that cannot be used (exit status 2 at config load).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A job's cron expression does not parse, or never matches.
    #[error(
        "invalid [schedule] {job} = {expression:?}: {reason} (5 fields `minute hour day-of-month \
         month day-of-week`, or 6 with seconds first, e.g. \"0 30 2 * * *\")"
    )]
    Expression {
        /// The job.
        job: Job,
        /// The expression as written.
        expression: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The time zone is not an IANA name.
    #[error(
        "invalid [schedule] timezone = {name:?}: not an IANA time zone name (e.g. UTC, \
         Europe/Paris, America/New_York)"
    )]
    Timezone {
        /// The name as written.
        name: String,
    },
}

/// One job's expression, parsed.
#[derive(Debug, Clone)]
pub struct JobSchedule {
    /// The job.
    pub job: Job,
    /// The expression as written (for `status`, logs and errors).
    pub expression: String,
    cron: Cron,
    timezone: Tz,
}

/// The resolved `[schedule]`: the jobs that have an expression, in [`Job::ALL`] order,
/// and the time zone they are read in.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Jobs with an expression.
    pub jobs: Vec<JobSchedule>,
    /// The time zone of every expression (default UTC).
    pub timezone: Tz,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule {
            jobs: Vec::new(),
            timezone: Tz::UTC,
        }
    }
}

impl Schedule {
    /// Parses and checks every expression and the time zone, as of `now` (an expression
    /// that matches no time after `now`, such as `0 0 30 2 *`, is refused).
    ///
    /// # Errors
    /// [`ScheduleError`], naming the job and its expression.
    pub fn resolve(raw: &RawSchedule, now: DateTime<Utc>) -> Result<Schedule, ScheduleError> {
        let timezone = match raw.timezone.as_deref().map(str::trim) {
            None | Some("") => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::Timezone {
                name: name.to_owned(),
            })?,
        };
        let mut jobs = Vec::new();
        for job in Job::ALL {
            let expression = match job {
                Job::Ingest => &raw.ingest,
                Job::Export => &raw.export,
                Job::Verify => &raw.verify,
            };
            let Some(expression) = expression else {
                continue;
            };
            let parsed = JobSchedule::parse(job, expression, timezone)?;
            if parsed.next_after(now).is_none() {
                return Err(ScheduleError::Expression {
                    job,
                    expression: expression.clone(),
                    reason: "it matches no time from now on".into(),
                });
            }
            jobs.push(parsed);
        }
        Ok(Schedule { jobs, timezone })
    }

    /// Whether no job is scheduled.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The schedule of `job`, when it has one.
    pub fn job(&self, job: Job) -> Option<&JobSchedule> {
        self.jobs.iter().find(|j| j.job == job)
    }
}

impl JobSchedule {
    /// Parses one expression: 5 fields (minute resolution, the slot at second 0) or 6
    /// (seconds first); `@daily` and friends; no year field.
    ///
    /// # Errors
    /// [`ScheduleError::Expression`].
    pub fn parse(job: Job, expression: &str, timezone: Tz) -> Result<JobSchedule, ScheduleError> {
        let invalid = |reason: String| ScheduleError::Expression {
            job,
            expression: expression.to_owned(),
            reason,
        };
        let fields = expression.split_whitespace().count();
        if !expression.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(invalid(format!("{fields} fields")));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(JobSchedule {
            job,
            expression: expression.to_owned(),
            cron,
            timezone,
        })
    }

    /// The first slot strictly after `t`; `None` when the expression matches no later
    /// time (refused at config load).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last slot at or before `t`; `None` when there is none (an expression that
    /// never matched before `t`).
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The slot's date in the schedule's time zone (for the quarter an export takes).
    pub fn local_date(&self, slot: DateTime<Utc>) -> chrono::NaiveDate {
        slot.with_timezone(&self.timezone).date_naive()
    }
}

/// The missed slot to run at start, if any: the latest slot at or before now
/// (`latest`), when it is later than the job's most recent recorded slot
/// (`last_recorded`). Only the most recent missed slot runs, once, however many were
/// missed: a job catches up on its work (an ingest takes every file that arrived), not
/// on its calendar. A job with no recorded slot at all has missed nothing: it was not
/// scheduled before, and its first slot is the next one.
pub fn missed_slot(
    latest: Option<DateTime<Utc>>,
    last_recorded: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match (latest, last_recorded) {
        (Some(latest), Some(last)) if latest > last => Some(latest),
        _ => None,
    }
}

/// A slot (or any instant) as stored and shown: RFC 3339 UTC to the millisecond, the
/// format of [`crate::clock::now_rfc3339`], so slots sort and compare as text.
pub fn slot_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Reads back [`slot_text`] (or any RFC 3339 time).
pub fn parse_slot(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The last quarter that ended before `date`: `(year, 1..=4)`. An export slot on
/// 2026-04-02 takes 2026Q1; one on 2026-01-01 takes 2025Q4.
pub fn last_complete_quarter(date: chrono::NaiveDate) -> (i32, u32) {
    let current = (date.month() - 1) / 3 + 1;
    if current == 1 {
        (date.year() - 1, 4)
    } else {
        (date.year(), current - 1)
    }
}

/// One job as `status` and the status page show it.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// The job.
    pub job: Job,
    /// Its cron expression.
    pub expression: String,
    /// The time zone the expression is read in.
    pub timezone: String,
    /// Its next slot after now (UTC, [`slot_text`]).
    pub next_slot: Option<String>,
    /// The same, in the schedule's time zone (RFC 3339 with offset).
    pub next_slot_local: Option<String>,
    /// Its most recent slot in the warehouse (it may still be `running`).
    pub last: Option<SlotRecord>,
    /// Its most recent slot with an outcome (`ok`, `failed`, `skipped`, `interrupted`).
    pub last_finished: Option<SlotRecord>,
}

/// The schedule as `bankpipe status` and the status page show it: for each scheduled
/// job, its next slot after `now` (from the config) and its latest slots (from
/// `schedule_slots`), in [`Job::ALL`] order. Reads only (one indexed query per job);
/// works with the `bankpipe_reader` role. From `serve`'s handlers, on a read-only
/// session off the runtime:
///
/// ```text
/// let schedule = state.config.schedule.clone();
/// let jobs = state
///     .with_warehouse(move |w| schedule::overview(&schedule, w, chrono::Utc::now()))
///     .await?;
/// ```
///
/// This process's own figures (runs by outcome since it started) are in
/// `AppState::jobs`; this reads what every instance recorded.
///
/// # Errors
/// When the warehouse cannot be read.
pub fn overview(
    schedule: &Schedule,
    warehouse: &mut Warehouse,
    now: DateTime<Utc>,
) -> Result<Vec<JobStatus>, WarehouseError> {
    let mut out = Vec::with_capacity(schedule.jobs.len());
    for j in &schedule.jobs {
        let recent = warehouse.recent_slots(j.job.as_str(), 20)?;
        let next = j.next_after(now);
        out.push(JobStatus {
            job: j.job,
            expression: j.expression.clone(),
            timezone: schedule.timezone.name().to_owned(),
            next_slot: next.map(slot_text),
            next_slot_local: next.map(|t| t.with_timezone(&schedule.timezone).to_rfc3339()),
            last: recent.first().cloned(),
            last_finished: recent.iter().find(|s| s.finished_at.is_some()).cloned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
