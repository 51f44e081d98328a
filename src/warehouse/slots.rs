//! Slots of the `serve` schedule in the warehouse (`schedule_slots`, migration 0013):
//! the claim that makes a slot run once across instances, its outcome, and its history.
//!
//! Guarantees, on both backends:
//! - **Once per slot:** [`Warehouse::claim_slot`] inserts `(job, slot_at)` with
//!   `ON CONFLICT DO NOTHING`; only the instance whose insert lands runs the slot.
//! - **One run of a job at a time:** the winner also holds the job's guard (PostgreSQL:
//!   a session advisory lock of the claiming session; SQLite: an exclusive lock on the
//!   file `<database>.schedule-<job>.lock`) until [`Warehouse::finish_slot`]. A slot
//!   that comes while the guard is held elsewhere, or while this process is busy with
//!   the job ([`BusyHere`]: its earlier slot, or a run started otherwise), is recorded
//!   `skipped`, naming what is still running. A guard
//!   dies with its holder (session or process), so a `running` row whose guard is free
//!   belongs to an instance that died: the next claim records it `interrupted`.
//!
//! It does not compute slots or run jobs (`crate::schedule`).

use serde::Serialize;

use super::{Result, Warehouse};

/// What became of a slot: the `status` column, also the `status` label of
/// `bankpipe_scheduler_job_runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotStatus {
    /// Claimed, no outcome yet (the job is running, or its instance died: see
    /// [`SlotStatus::Interrupted`]).
    Running,
    /// The job ended without error.
    Ok,
    /// The job ended with an error (message in `error`).
    Failed,
    /// Not run: the job was still running from an earlier slot.
    Skipped,
    /// The job was stopped before its end: `serve` shut down, or the instance running
    /// it died (found by the next claim of the job).
    Interrupted,
}

impl SlotStatus {
    /// Every outcome (not [`SlotStatus::Running`]).
    pub const OUTCOMES: [SlotStatus; 4] = [
        SlotStatus::Ok,
        SlotStatus::Failed,
        SlotStatus::Skipped,
        SlotStatus::Interrupted,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotStatus::Running => "running",
            SlotStatus::Ok => "ok",
            SlotStatus::Failed => "failed",
            SlotStatus::Skipped => "skipped",
            SlotStatus::Interrupted => "interrupted",
        }
    }
}

/// One row of `schedule_slots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotRecord {
    /// The job (`ingest`, `export`, `verify`).
    pub job: String,
    /// The slot, RFC 3339 UTC to the millisecond.
    pub slot_at: String,
    /// Who claimed it: `host:pid`.
    pub claimed_by: String,
    /// When it was claimed (later than `slot_at` for a missed slot run at start).
    pub claimed_at: String,
    /// When its outcome was recorded.
    pub finished_at: Option<String>,
    /// `running`, `ok`, `failed`, `skipped` or `interrupted`.
    pub status: String,
    /// Why it failed, was skipped or interrupted.
    pub error: Option<String>,
}

/// Why this process cannot run a job's slot now, told to [`Warehouse::claim_slot`]:
/// the slot is then recorded `skipped` with the reason, if no instance claimed it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyHere<'a> {
    /// This process still runs the job's slot `slot_at` (it never takes its own guard
    /// twice).
    Slot(&'a str),
    /// This process runs the job's work started another way, described (`serve`: `run
    /// 01… started through POST /api/runs`, when the job is `ingest`).
    Work(&'a str),
}

impl BusyHere<'_> {
    /// The reason a slot of `job` skipped for it records; `claimant` is this process.
    pub fn reason(&self, job: &str, claimant: &str) -> String {
        match self {
            BusyHere::Slot(slot) => skip_reason(job, Some((slot, claimant))),
            BusyHere::Work(what) => format!("{what} was still running (on {claimant})"),
        }
    }
}

/// The answer to [`Warehouse::claim_slot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotClaim {
    /// This instance runs the slot: the row is `running` and this warehouse session
    /// holds the job's guard until [`Warehouse::finish_slot`].
    Won,
    /// Another instance claimed the slot first; nothing was written.
    Taken {
        /// Its claimant.
        claimed_by: String,
    },
    /// Recorded `skipped` by this instance: the job (or, with [`BusyHere::Work`], the
    /// work that stood in its way) was still running.
    Skipped {
        /// The reason recorded (names what was still running, and where).
        reason: String,
    },
}

impl Warehouse {
    /// Claims `slot_at` of `job` for `claimant` (`host:pid`). `busy_here` says why this
    /// process cannot run the job now, if it cannot: then the slot is recorded `skipped`
    /// with [`BusyHere::reason`] rather than run (unless another instance claimed it
    /// first: [`SlotClaim::Taken`]).
    ///
    /// # Errors
    /// On SQL failure (nothing is claimed then).
    pub fn claim_slot(
        &mut self,
        job: &str,
        slot_at: &str,
        claimant: &str,
        busy_here: Option<BusyHere<'_>>,
    ) -> Result<SlotClaim> {
        match self {
            Warehouse::Sqlite(w) => w.claim_slot(job, slot_at, claimant, busy_here),
            Warehouse::Postgres(w) => w.claim_slot(job, slot_at, claimant, busy_here),
        }
    }

    /// Records the outcome of a slot this session won and gives the job's guard back.
    /// Idempotent; the outcome replaces whatever the row held (an instance that lost
    /// its session mid-job still records what the job did).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn finish_slot(
        &mut self,
        job: &str,
        slot_at: &str,
        status: SlotStatus,
        error: Option<&str>,
    ) -> Result<()> {
        match self {
            Warehouse::Sqlite(w) => w.finish_slot(job, slot_at, status, error),
            Warehouse::Postgres(w) => w.finish_slot(job, slot_at, status, error),
        }
    }

    /// The latest `limit` slots of `job`, newest first.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn recent_slots(&mut self, job: &str, limit: u32) -> Result<Vec<SlotRecord>> {
        match self {
            Warehouse::Sqlite(w) => w.recent_slots(job, limit),
            Warehouse::Postgres(w) => w.recent_slots(job, limit),
        }
    }
}

/// The reason a `skipped` slot records.
pub(super) fn skip_reason(job: &str, running: Option<(&str, &str)>) -> String {
    match running {
        Some((slot, by)) => format!("the {job} slot of {slot} was still running (on {by})"),
        None => format!("the {job} job was still running on another instance"),
    }
}

/// The reason a `running` row whose guard is free gets.
pub(super) fn dead_reason(claimant: &str) -> String {
    format!(
        "its instance stopped before recording an outcome (found by {claimant}); the next run \
         resumes the work"
    )
}
