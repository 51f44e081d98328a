//! The schedule inside `serve` (issue #11): one task per `[schedule]` job that sleeps
//! until the job's next slot, claims the slot in the warehouse and, when this instance
//! wins it, runs the job in-process on a thread of its own. What a slot and a claim
//! are, and the slot arithmetic, live in [`crate::schedule`]; the claim itself in
//! [`Warehouse::claim_slot`].
//!
//! - **Exactly once per slot**, across any number of instances on one warehouse: the
//!   claim (`schedule_slots` primary key) decides, before the job starts.
//! - **A missed slot runs once at start:** when the job's latest slot at or before the
//!   start is later than its latest recorded slot ([`crate::schedule::missed_slot`]);
//!   only the most recent one, however many were missed.
//! - **No overlapping runs:** a slot that comes while the job still runs here is
//!   recorded `skipped` when the run ends (it is never queued, and written then because
//!   on SQLite the run's write lock would hold the write up); one that comes while the
//!   job runs on another instance is recorded `skipped` at once (the job's guard is
//!   held there).
//! - **One run per process:** an `ingest` takes the process's run guard
//!   ([`AppState::runs`](super::AppState), shared with `POST /api/runs`) before its
//!   claim and holds it until its thread ends. A slot that finds a run started through
//!   the API in progress is not claimed: it is recorded `skipped`, naming that run,
//!   when that run ends (like a slot that comes while the job runs here, and for the
//!   same reason: the run may hold SQLite's write lock).
//! - **A late wake-up catches up once:** when several slots passed while the task was
//!   not scheduled (a suspended machine), only the latest is taken.
//! - **Shutdown:** once `shutdown` is cancelled no slot is claimed; a running `ingest`
//!   is asked to stop between files ([`crate::pipeline::run_until`]) and the others
//!   run on. The task waits for the job until just before the shutdown timeout, then
//!   records the slot's outcome, or `interrupted` when the job is still running (the
//!   process exit then rolls its open transaction back; the next run resumes the file).
//!
//! Figures go to [`AppState::jobs`](super::AppState::jobs): runs by job and outcome
//! (`ok`, `failed`, `skipped`, `interrupted`, and `unclaimed` for a slot this instance
//! could not claim because the warehouse did not answer) and the next slot of each job.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::AppState;
use super::runs::{ActiveRun, RunGuard, RunOrigin, RunTicket};
use crate::schedule::jobs::{self, JobOutcome};
use crate::schedule::{Job, JobSchedule, missed_slot, parse_slot, slot_text};
use crate::warehouse::{BusyHere, Claimant, SlotClaim, SlotStatus, Warehouse, WarehouseError};

/// Claims retried this many times when the warehouse fails transiently.
const CLAIM_ATTEMPTS: u32 = 3;

/// A warehouse session held by the async scheduler. Closing a PostgreSQL session
/// blocks (the driver's `Drop` runs a runtime of its own, which panics on a runtime
/// thread), so a session dropped here is closed on a thread of its own.
#[derive(Default)]
struct Session(Option<Warehouse>);

impl Session {
    fn take(&mut self) -> Option<Warehouse> {
        self.0.take()
    }

    fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            let closing = std::thread::Builder::new()
                .name("bankpipe-close".into())
                .spawn(move || drop(w));
            if let Err(e) = closing {
                // No thread to close it on: the process exit closes its socket.
                warn!(error = %e, "Cannot close a warehouse session; leaving it open.");
            }
        }
    }
}

/// Starts the scheduler. The task ends once `shutdown` is cancelled and each running
/// job has ended or been recorded `interrupted`, which happens before `grace` (the
/// `--shutdown-timeout` `serve` waits for it) runs out.
pub(super) fn spawn(
    state: Arc<AppState>,
    shutdown: CancellationToken,
    grace: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let schedule = state.config.schedule.clone();
        if schedule.is_empty() {
            info!("No [schedule] in the configuration: the scheduler runs no job.");
            shutdown.cancelled().await;
            return;
        }
        let (host, pid) = Claimant::this_process();
        let claimant = format!("{host}:{pid}");
        let tasks: Vec<JoinHandle<()>> = schedule
            .jobs
            .into_iter()
            .map(|job| {
                state.jobs.declare(job.job.as_str());
                info!(job = %job.job, expression = %job.expression, timezone = %schedule.timezone.name(), "Job scheduled.");
                let task = JobTask {
                    state: Arc::clone(&state),
                    job,
                    claimant: claimant.clone(),
                    session: Session::default(),
                    running: None,
                    held_off: None,
                };
                tokio::spawn(task.run(shutdown.clone(), grace))
            })
            .collect();
        for task in tasks {
            if let Err(e) = task.await {
                error!(error = %e, "A scheduler task ended abnormally.");
            }
        }
    })
}

/// A job running on its own thread.
struct Running {
    slot: DateTime<Utc>,
    slot_text: String,
    /// Set to ask the job to stop early.
    stop: Arc<AtomicBool>,
    /// The job's outcome, sent by its thread.
    done: oneshot::Receiver<JobOutcome>,
    /// The session whose claim holds the job's guard; the outcome is recorded with it.
    guard: Session,
    /// Slots that came while it ran: recorded `skipped` when it ends.
    overlapped: Vec<DateTime<Utc>>,
    /// When its thread was started, for its duration.
    started: Instant,
}

/// What kept a slot from running here ([`BusyHere`], owned: it travels to a blocking
/// thread).
enum BusySince {
    /// The job's earlier slot (RFC 3339 UTC) still runs here.
    Slot(String),
    /// Another run of this process, described.
    Work(String),
}

/// The loop of one job.
struct JobTask {
    state: Arc<AppState>,
    job: JobSchedule,
    claimant: String,
    /// The session used for claims (opened on first use, replaced after a failure).
    session: Session,
    running: Option<Running>,
    /// Slots that came while another run of this process (an API run) held the run
    /// guard: recorded `skipped` when it ends.
    held_off: Option<HeldOff>,
}

/// `ingest` slots kept from running by a run this process started otherwise.
struct HeldOff {
    /// That run's id.
    run_id: String,
    /// It, described ([`ActiveRun::describe`]).
    what: String,
    slots: Vec<DateTime<Utc>>,
}

impl JobTask {
    fn name(&self) -> &'static str {
        self.job.job.as_str()
    }

    async fn run(mut self, shutdown: CancellationToken, grace: Duration) {
        // Every wait on the warehouse gives way to the shutdown signal (opening a session
        // retries for a while when it is down): a claim cut there leaves at worst a
        // `running` row, recorded `interrupted` by the next winner.
        let start = Utc::now();
        let missed = tokio::select! {
            missed = self.missed_at(start) => missed,
            () = shutdown.cancelled() => None,
        };
        if let Some(slot) = missed {
            warn!(job = self.name(), slot = %slot_text(slot), "Running a slot missed while no instance was up.");
            tokio::select! {
                () = self.take_slot(slot) => {}
                () = shutdown.cancelled() => {}
            }
        }
        let mut after = start;
        loop {
            let next = self.job.next_after(after);
            self.state
                .jobs
                .set_next_run(self.name(), next.map(SystemTime::from));
            let Some(next) = next else {
                warn!(
                    job = self.name(),
                    "The job's expression matches no later time: it will not run again."
                );
                shutdown.cancelled().await;
                break;
            };
            let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                outcome = wait_for(&mut self.running) => self.finish(outcome).await,
                () = held_off_ended(&self.state.runs, self.held_off.as_ref()) => {
                    self.record_held_off().await;
                }
                () = tokio::time::sleep(wait) => {
                    let now = Utc::now();
                    if now < next {
                        // The wall clock lags the timer (it was set back): wait again.
                        continue;
                    }
                    // Several slots passed while this task was not running (a suspended
                    // machine): the latest is taken, once.
                    let slot = self
                        .job
                        .latest_at_or_before(now)
                        .filter(|s| *s > next)
                        .unwrap_or(next);
                    after = slot;
                    tokio::select! {
                        () = self.take_slot(slot) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
            }
        }
        self.shut_down(grace).await;
    }

    /// The missed slot to run at start (see [`missed_slot`]); `None` also when the
    /// warehouse cannot tell (then nothing is run late: a wrong guess would run twice).
    async fn missed_at(&mut self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let latest = self.job.latest_at_or_before(start)?;
        let job = self.name();
        match self.call(move |w| w.recent_slots(job, 1)).await {
            Ok(recent) => missed_slot(
                Some(latest),
                recent.first().and_then(|s| parse_slot(&s.slot_at)),
            ),
            Err(e) => {
                warn!(job, error = %e, "Cannot read the job's last slot: no missed slot is run.");
                None
            }
        }
    }

    /// Claims `slot` and, when this instance wins it, starts the job. A slot that
    /// comes while the job runs here is kept aside and recorded `skipped` when the run
    /// ends ([`JobTask::record`]): written now, it would wait for the run's own write
    /// lock on SQLite. An `ingest` slot that finds another run of this process in
    /// progress (started through the API) is recorded `skipped` at once.
    async fn take_slot(&mut self, slot: DateTime<Utc>) {
        let job = self.name();
        let text = slot_text(slot);
        if let Some(running) = &mut self.running {
            warn!(job, slot = %text, running = %running.slot_text, "Slot skipped: the job is still running here (recorded when it ends).");
            running.overlapped.push(slot);
            return;
        }
        // Taken before the claim, so that no API run starts between a won claim and
        // the job; released by the job's thread (or here, when the slot is not won).
        let run = match self.job.job {
            Job::Ingest => {
                let run = ActiveRun {
                    run_id: crate::pipeline::new_run_id(),
                    origin: RunOrigin::Schedule { slot: text.clone() },
                };
                match self.state.runs.try_take(run.clone()) {
                    Ok(ticket) => {
                        // The run that held slots off has ended: they come first.
                        self.record_held_off().await;
                        Some((run.run_id, ticket))
                    }
                    Err(busy) => {
                        let what = busy.describe();
                        warn!(job, slot = %text, running = %what, "Slot skipped: another run of this process is in progress (recorded when it ends).");
                        if self
                            .held_off
                            .as_ref()
                            .is_some_and(|h| h.run_id != busy.run_id)
                        {
                            self.record_held_off().await;
                        }
                        self.held_off
                            .get_or_insert_with(|| HeldOff {
                                run_id: busy.run_id,
                                what,
                                slots: Vec::new(),
                            })
                            .slots
                            .push(slot);
                        return;
                    }
                }
            }
            Job::Verify | Job::Export => None,
        };
        let mut attempt = 0;
        let claim = loop {
            let (slot_at, claimant) = (text.clone(), self.claimant.clone());
            match self
                .call(move |w| w.claim_slot(job, &slot_at, &claimant, None))
                .await
            {
                Err(e) if e.is_transient() && attempt + 1 < CLAIM_ATTEMPTS => {
                    let delay = crate::retry::backoff(attempt);
                    warn!(job, slot = %text, attempt, error = %e, delay_ms = delay.as_millis() as u64, "Cannot claim the slot yet; retrying.");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => break other,
            }
        };
        match claim {
            Ok(SlotClaim::Won) => self.start(slot, text, run).await,
            Ok(SlotClaim::Taken { claimed_by }) => {
                debug!(job, slot = %text, %claimed_by, "Slot claimed by another instance.");
            }
            Ok(SlotClaim::Skipped { reason }) => {
                warn!(job, slot = %text, %reason, "Slot skipped: the job is still running.");
                self.count(SlotStatus::Skipped.as_str());
            }
            Err(e) => {
                error!(job, slot = %text, error = %e, "Slot not claimed: the warehouse did not answer (another instance may run it).");
                self.count("unclaimed");
            }
        }
    }

    /// Records the slots held off by a run of this process ([`HeldOff`]) `skipped`.
    async fn record_held_off(&mut self) {
        if let Some(held) = self.held_off.take() {
            for slot in held.slots {
                self.record_skipped(slot, BusySince::Work(held.what.clone()))
                    .await;
            }
        }
    }

    /// Records `slot` `skipped` because of `busy` (unless another instance claimed it
    /// first), and counts it.
    async fn record_skipped(&mut self, slot: DateTime<Utc>, busy: BusySince) {
        let job = self.name();
        let (slot_at, claimant) = (slot_text(slot), self.claimant.clone());
        match self
            .call(move |w| {
                let busy = match &busy {
                    BusySince::Slot(s) => BusyHere::Slot(s),
                    BusySince::Work(w) => BusyHere::Work(w),
                };
                w.claim_slot(job, &slot_at, &claimant, Some(busy))
            })
            .await
        {
            Ok(SlotClaim::Skipped { reason }) => {
                debug!(job, slot = %slot_text(slot), %reason, "Skipped slot recorded.");
                self.count(SlotStatus::Skipped.as_str());
            }
            Ok(SlotClaim::Taken { claimed_by }) => {
                debug!(job, slot = %slot_text(slot), %claimed_by, "Slot recorded by another instance.");
            }
            Ok(SlotClaim::Won) => {
                // Never returned with `busy_here` set.
                error!(job, slot = %slot_text(slot), "A skipped slot was claimed as won (a bug).");
            }
            Err(e) => {
                error!(job, slot = %slot_text(slot), error = %e, "Cannot record a skipped slot.");
                self.count("unclaimed");
            }
        }
    }

    /// Starts the job of a slot this instance won, on a thread of its own; `run` is the
    /// run id and guard of an `ingest`, which the thread holds until the job ends.
    async fn start(&mut self, slot: DateTime<Utc>, text: String, run: Option<(String, RunTicket)>) {
        let job = self.job.clone();
        let config = self.state.config.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, done) = oneshot::channel();
        let thread_stop = Arc::clone(&stop);
        let started = Instant::now();
        let spawned = std::thread::Builder::new()
            .name(format!("bankpipe-{}", job.job))
            .spawn(move || {
                let (run_id, ticket) = run.unzip();
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    jobs::run(&job, slot, &config, &thread_stop, run_id)
                }))
                .unwrap_or_else(|_| {
                    JobOutcome::Failed("the job panicked (a bug; see the log)".into())
                });
                // The run is over: an API run may start while the outcome is recorded.
                drop(ticket);
                // The receiver is gone only when serve is exiting: nobody to tell.
                let _ = tx.send(outcome);
            });
        let running = Running {
            slot,
            slot_text: text,
            stop,
            done,
            guard: Session(self.session.take()),
            overlapped: Vec::new(),
            started,
        };
        match spawned {
            Ok(_) => {
                info!(job = self.name(), slot = %running.slot_text, "Slot claimed; job started.");
                self.running = Some(running);
            }
            Err(e) => {
                let outcome = JobOutcome::Failed(format!("cannot start the job's thread: {e}"));
                error!(job = self.name(), slot = %running.slot_text, error = %outcome.message(), "Job failed.");
                self.record(running, &outcome).await;
            }
        }
    }

    /// Records the outcome of the job that just ended and gives its guard back.
    async fn finish(&mut self, outcome: JobOutcome) {
        let Some(running) = self.running.take() else {
            return;
        };
        let job = self.name();
        match &outcome {
            JobOutcome::Ok(m) => {
                info!(job, slot = %running.slot_text, outcome = %m, "Job finished.")
            }
            JobOutcome::Failed(m) => {
                error!(job, slot = %running.slot_text, error = %m, "Job failed.")
            }
            JobOutcome::Interrupted(m) => {
                warn!(job, slot = %running.slot_text, reason = %m, "Job interrupted.")
            }
        }
        self.record(running, &outcome).await;
    }

    /// Writes a slot's outcome with the session that holds its guard (else a new one:
    /// the guard went with a broken session), counts it, and keeps the session for the
    /// next claims.
    async fn record(&mut self, running: Running, outcome: &JobOutcome) {
        let job = self.name();
        self.state
            .jobs
            .record_duration(job, running.started.elapsed());
        let (text, status) = (running.slot_text.clone(), outcome.status());
        let error = outcome.error().map(str::to_owned);
        let mut running = running;
        let guard = running.guard.take();
        let url = self.state.config.warehouse_url.clone();
        let (session, result) = blocking(guard, url, move |w| {
            w.finish_slot(job, &text, status, error.as_deref())
        })
        .await;
        let result = match result {
            Err(e) if e.is_transient() => {
                warn!(job, slot = %running.slot_text, error = %e, "Recording the outcome failed; retrying on a new session.");
                let (text, error) = (
                    running.slot_text.clone(),
                    outcome.error().map(str::to_owned),
                );
                let (session, result) =
                    blocking(None, self.state.config.warehouse_url.clone(), move |w| {
                        w.finish_slot(job, &text, status, error.as_deref())
                    })
                    .await;
                self.keep(session);
                result
            }
            other => {
                self.keep(session);
                other
            }
        };
        if let Err(e) = result {
            error!(job, slot = %running.slot_text, status = status.as_str(), error = %e, "Cannot record the slot's outcome: it stays `running` until the job's next claim marks it interrupted.");
        }
        debug!(job, slot = %slot_text(running.slot), status = status.as_str(), "Slot recorded.");
        self.count(status.as_str());
        for slot in std::mem::take(&mut running.overlapped) {
            self.record_skipped(slot, BusySince::Slot(running.slot_text.clone()))
                .await;
        }
    }

    /// Stops claiming; asks a running job to stop and waits for it until just before
    /// `grace` runs out, then records its outcome (or `interrupted`).
    async fn shut_down(mut self, grace: Duration) {
        let Some(mut running) = self.running.take() else {
            self.shut_down_held_off(grace).await;
            return;
        };
        let job = self.name();
        running.stop.store(true, Ordering::Relaxed);
        info!(job, slot = %running.slot_text, "Shutting down: asked the running job to stop.");
        // Leave time to record the outcome before serve's own timeout.
        let margin = (grace / 5).min(Duration::from_secs(2));
        let outcome = match tokio::time::timeout(grace.saturating_sub(margin), &mut running.done)
            .await
        {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => JobOutcome::Failed("the job's thread ended without an outcome".into()),
            Err(_) => JobOutcome::Interrupted(format!(
                "serve stopped while the job was still running (shutdown timeout {}s): its \
                 open transaction rolls back with the process; the next run resumes the work",
                grace.as_secs()
            )),
        };
        match &outcome {
            JobOutcome::Ok(m) => info!(job, outcome = %m, "Job finished during shutdown."),
            JobOutcome::Failed(m) => error!(job, error = %m, "Job failed during shutdown."),
            JobOutcome::Interrupted(m) => {
                warn!(job, reason = %m, "Job interrupted by the shutdown.")
            }
        }
        // On SQLite the write waits for the lock the job being cut still holds: within
        // the margin, else the next start records the slot (its guard is free then).
        let slot = running.slot_text.clone();
        if tokio::time::timeout(margin, self.record(running, &outcome))
            .await
            .is_err()
        {
            warn!(job, %slot, "No time left to record the slot's outcome: the next start records it interrupted.");
        }
    }

    /// Records the slots held off by a run of this process, waiting for it until just
    /// before `grace` runs out (it is asked to stop between files by the same signal).
    async fn shut_down_held_off(&mut self, grace: Duration) {
        let Some(held) = &self.held_off else {
            return;
        };
        let (job, run_id, n) = (self.name(), held.run_id.clone(), held.slots.len());
        let margin = (grace / 5).min(Duration::from_secs(2));
        let recorded = tokio::time::timeout(grace.saturating_sub(margin), async {
            self.state.runs.released(&run_id).await;
            self.record_held_off().await;
        })
        .await;
        if recorded.is_err() {
            warn!(
                job,
                slots = n,
                run_id,
                "No time left to record the slots skipped during a run started through the API: the next start may run the latest as missed."
            );
        }
    }

    /// Keeps `session` for the next claims when there is none (else it is closed).
    fn keep(&mut self, session: Session) {
        if self.session.is_none() {
            self.session = session;
        }
    }

    fn count(&self, status: &str) {
        self.state
            .jobs
            .record_run(self.name(), status, SystemTime::now());
    }

    /// Runs `f` on the claims session, on tokio's blocking pool (the warehouse API
    /// blocks). A session that failed transiently is replaced next time.
    async fn call<T, F>(&mut self, f: F) -> Result<T, WarehouseError>
    where
        F: FnOnce(&mut Warehouse) -> Result<T, WarehouseError> + Send + 'static,
        T: Send + 'static,
    {
        let (session, result) = blocking(
            self.session.take(),
            self.state.config.warehouse_url.clone(),
            f,
        )
        .await;
        self.session = session;
        result
    }
}

/// Resolves once the run holding slots off has released the process's run guard
/// (never, when no slot is held off).
async fn held_off_ended(runs: &RunGuard, held: Option<&HeldOff>) {
    match held {
        Some(h) => runs.released(&h.run_id).await,
        None => std::future::pending().await,
    }
}

/// The outcome of the running job, if any (never resolves without one).
async fn wait_for(running: &mut Option<Running>) -> JobOutcome {
    match running {
        Some(r) => match (&mut r.done).await {
            Ok(outcome) => outcome,
            Err(_) => JobOutcome::Failed("the job's thread ended without an outcome".into()),
        },
        None => std::future::pending().await,
    }
}

/// Runs `f` with `session` (opened when `None`: created and migrated like `run` does,
/// since the schedule writes) on tokio's blocking pool; gives the session back unless
/// it failed transiently. The session travels back as a [`Session`], so that it is
/// closed safely wherever it is dropped (also when the caller is cancelled after the
/// call ended).
async fn blocking<T, F>(
    session: Option<Warehouse>,
    url: String,
    f: F,
) -> (Session, Result<T, WarehouseError>)
where
    F: FnOnce(&mut Warehouse) -> Result<T, WarehouseError> + Send + 'static,
    T: Send + 'static,
{
    let task = tokio::task::spawn_blocking(move || {
        let mut w = match session {
            Some(w) => w,
            None => match Warehouse::open(&url) {
                Ok(w) => w,
                Err(e) => return (Session(None), Err(e)),
            },
        };
        let result = f(&mut w);
        let broken = result.as_ref().is_err_and(WarehouseError::is_transient);
        (Session((!broken).then_some(w)), result)
    });
    match task.await {
        Ok(answer) => answer,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
