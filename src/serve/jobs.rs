//! The scheduler's figures, as this process saw them: how many times each job ran and
//! with what outcome, how long its runs took, its last outcome, and its next slot. The
//! scheduler writes them; `/metrics` (`bankpipe_scheduler_job_runs_total{job,status}`,
//! `bankpipe_scheduler_job_duration_seconds{job}`,
//! `bankpipe_scheduler_next_run_timestamp_seconds{job}`) and the status page read them.
//!
//! Process-level, not catalog-derived: they start at zero when `serve` starts (a
//! Prometheus counter reset, which `rate()`/`increase()` handle). Label values must
//! come from small closed sets: job names of the `[schedule]` table (`ingest`,
//! `export`, `verify`) and outcomes such as `ok`, `failed`, `skipped`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::metrics::Histogram;

/// The outcomes the scheduler counts: a slot's recorded status (`ok`, `failed`,
/// `skipped`, `interrupted`), and `unclaimed` when the warehouse did not answer its
/// claim.
pub const OUTCOMES: &[&str] = &["ok", "failed", "skipped", "interrupted", "unclaimed"];

/// Upper bounds (seconds) of the job-duration histogram: from an ingest that finds the
/// inbox empty (well under a second) to a long backlog or a large export (six hours).
pub const DURATION_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

/// What this process knows of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFigures {
    /// Runs finished since `serve` started, by outcome (`ok`, `failed`, ...).
    pub runs: BTreeMap<String, u64>,
    /// How long each run took, from its start to its outcome ([`DURATION_BUCKETS`]):
    /// runs that started (`ok`, `failed`, `interrupted`), not slots skipped or
    /// unclaimed.
    pub durations: Histogram,
    /// The last run's outcome and when it finished.
    pub last: Option<(String, SystemTime)>,
    /// The next slot the job is due at; `None` when none is planned.
    pub next_run: Option<SystemTime>,
}

impl Default for JobFigures {
    fn default() -> JobFigures {
        JobFigures {
            runs: BTreeMap::new(),
            durations: Histogram::with_bounds(DURATION_BUCKETS),
            last: None,
            next_run: None,
        }
    }
}

/// The figures of every job, shared between the scheduler and the readers. Cheap to
/// update (a short mutex; never held across `.await`).
#[derive(Debug, Default)]
pub struct Jobs {
    jobs: Mutex<BTreeMap<String, JobFigures>>,
}

impl Jobs {
    fn update(&self, job: &str, f: impl FnOnce(&mut JobFigures)) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        f(jobs.entry(job.to_owned()).or_default());
    }

    /// Makes `job` known with no runs yet, every outcome of [`OUTCOMES`] at 0, so its
    /// series exist from the start (a counter that appears only at its first increment
    /// loses that increment in `rate()`/`increase()`, and an alert on the first failure
    /// of a job would never fire). Call once per configured job.
    pub fn declare(&self, job: &str) {
        self.update(job, |j| {
            for status in OUTCOMES {
                j.runs.entry((*status).to_owned()).or_default();
            }
        });
    }

    /// Records a finished run of `job` with outcome `status` (`ok`, `failed`, ...).
    pub fn record_run(&self, job: &str, status: &str, finished_at: SystemTime) {
        self.update(job, |j| {
            *j.runs.entry(status.to_owned()).or_default() += 1;
            j.last = Some((status.to_owned(), finished_at));
        });
    }

    /// Records how long a run of `job` took, from its start to its outcome.
    pub fn record_duration(&self, job: &str, took: Duration) {
        self.update(job, |j| j.durations.observe(took.as_secs_f64()));
    }

    /// Sets the next slot of `job` (`None`: nothing planned).
    pub fn set_next_run(&self, job: &str, at: Option<SystemTime>) {
        self.update(job, |j| j.next_run = at);
    }

    /// A copy of every job's figures, by job name.
    pub fn snapshot(&self) -> BTreeMap<String, JobFigures> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_counted_by_outcome() {
        let jobs = Jobs::default();
        jobs.declare("verify");
        let t = SystemTime::UNIX_EPOCH;
        jobs.record_run("ingest", "ok", t);
        jobs.record_run("ingest", "ok", t);
        jobs.record_run("ingest", "failed", t);
        jobs.set_next_run("ingest", Some(t));
        let s = jobs.snapshot();
        assert_eq!(s["ingest"].runs["ok"], 2);
        assert_eq!(s["ingest"].runs["failed"], 1);
        assert_eq!(s["ingest"].last, Some(("failed".to_owned(), t)));
        assert_eq!(s["ingest"].next_run, Some(t));
        jobs.record_duration("ingest", Duration::from_millis(700));
        let h = &jobs.snapshot()["ingest"].durations;
        assert_eq!((h.count, h.sum), (1, 0.7));
        assert_eq!(h.buckets[..2], [(0.5, 0), (1.0, 1)]);
        jobs.declare("ingest");
        let s = jobs.snapshot();
        assert_eq!(s["ingest"].runs["ok"], 2, "declaring keeps the counts");
        assert_eq!(
            s["ingest"].runs["skipped"], 0,
            "and adds the other outcomes"
        );
        assert_eq!(s["verify"].runs.len(), OUTCOMES.len());
        assert!(s["verify"].runs.values().all(|n| *n == 0));
        assert_eq!(s["verify"].durations.buckets.len(), DURATION_BUCKETS.len());
    }

    #[test]
    fn every_slot_outcome_is_declared() {
        for status in crate::warehouse::SlotStatus::OUTCOMES {
            assert!(OUTCOMES.contains(&status.as_str()), "{}", status.as_str());
        }
    }
}
