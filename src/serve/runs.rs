//! The run in progress in this `serve` process, whoever started it: `POST /api/runs`
//! or the scheduler's `ingest`. One at a time: both take the one [`RunGuard`] in
//! [`AppState`](super::AppState) before their run starts.
//!
//! Without it, on PostgreSQL (where runs of several processes may share the inbox
//! through their claims) a `POST /api/runs` during a scheduled `ingest` started a second
//! run in the same process, and a scheduled `ingest` started beside an API run. On
//! SQLite the warehouse's run lock made the second one wait for the first; now it is
//! refused at once, the same way on both backends:
//!
//! - the API answers 409 naming the run in progress (`serve/api/trigger.rs`);
//! - the scheduler records the `ingest` slot `skipped`, naming the run in progress
//!   (`serve/scheduler.rs`).
//!
//! It does not order runs of other processes (the SQLite run lock and the PostgreSQL
//! claims do) nor hold a slot's job guard in the warehouse (`warehouse/slots.rs`).

use std::sync::Arc;

use tokio::sync::watch;

/// Who started a run of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOrigin {
    /// `POST /api/runs`.
    Api,
    /// The scheduler's `ingest`, for the slot (RFC 3339 UTC, as `schedule_slots`).
    Schedule {
        /// The slot being run.
        slot: String,
    },
}

/// The run holding the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRun {
    /// The id the run records in `runs`.
    pub run_id: String,
    /// Who started it.
    pub origin: RunOrigin,
}

impl ActiveRun {
    /// One phrase naming the run and who started it, for 409 answers, skip reasons, the
    /// log and the status page: `run 01… started through POST /api/runs`, `run 01… of
    /// the scheduled ingest slot 2026-12-01T06:00:00.000Z`.
    pub fn describe(&self) -> String {
        match &self.origin {
            RunOrigin::Api => format!("run {} started through POST /api/runs", self.run_id),
            RunOrigin::Schedule { slot } => {
                format!("run {} of the scheduled ingest slot {slot}", self.run_id)
            }
        }
    }
}

/// The one run this process may have in progress. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct RunGuard {
    current: Arc<watch::Sender<Option<ActiveRun>>>,
}

impl Default for RunGuard {
    fn default() -> RunGuard {
        RunGuard {
            current: Arc::new(watch::Sender::new(None)),
        }
    }
}

impl RunGuard {
    /// The run in progress, if any.
    pub fn current(&self) -> Option<ActiveRun> {
        self.current.borrow().clone()
    }

    /// Marks `run` in progress unless another run is: then that one. The guard is given
    /// back when the [`RunTicket`] is dropped (move it into the run's thread, so that it
    /// goes however the run ends).
    ///
    /// # Errors
    /// The run in progress.
    pub fn try_take(&self, run: ActiveRun) -> Result<RunTicket, ActiveRun> {
        let run_id = run.run_id.clone();
        let mut running = None;
        self.current.send_if_modified(|current| match current {
            Some(other) => {
                running = Some(other.clone());
                false
            }
            None => {
                *current = Some(run);
                true
            }
        });
        match running {
            Some(other) => Err(other),
            None => Ok(RunTicket {
                current: Arc::clone(&self.current),
                run_id,
            }),
        }
    }

    /// Resolves once no run is in progress.
    pub async fn idle(&self) {
        let mut rx = self.current.subscribe();
        // The sender lives as long as `self`.
        let _ = rx.wait_for(Option::is_none).await;
    }

    /// Resolves once the run `run_id` no longer holds the guard (at once if it does
    /// not), whatever runs next.
    pub async fn released(&self, run_id: &str) {
        let mut rx = self.current.subscribe();
        let _ = rx
            .wait_for(|c| c.as_ref().is_none_or(|r| r.run_id != run_id))
            .await;
    }
}

/// Holds the guard for one run; dropping it gives the guard back.
#[derive(Debug)]
pub struct RunTicket {
    current: Arc<watch::Sender<Option<ActiveRun>>>,
    run_id: String,
}

impl Drop for RunTicket {
    fn drop(&mut self) {
        let run_id = &self.run_id;
        self.current.send_if_modified(|current| {
            // Only its own run: the guard never holds another while a ticket lives, but
            // a ticket must not release what it does not hold.
            let mine = current.as_ref().is_some_and(|r| &r.run_id == run_id);
            if mine {
                *current = None;
            }
            mine
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn api(id: &str) -> ActiveRun {
        ActiveRun {
            run_id: id.into(),
            origin: RunOrigin::Api,
        }
    }

    fn scheduled(id: &str) -> ActiveRun {
        ActiveRun {
            run_id: id.into(),
            origin: RunOrigin::Schedule {
                slot: "2026-12-01T06:00:00.000Z".into(),
            },
        }
    }

    #[tokio::test]
    async fn one_run_at_a_time_whoever_started_it() {
        let g = RunGuard::default();
        assert_eq!(g.current(), None);
        let a = g.try_take(api("a")).unwrap();
        assert_eq!(g.try_take(scheduled("s")).unwrap_err(), api("a"));
        assert_eq!(g.try_take(api("b")).unwrap_err(), api("a"));
        assert_eq!(g.current(), Some(api("a")));
        let idle = tokio::time::timeout(Duration::from_millis(50), g.idle()).await;
        assert!(idle.is_err(), "not idle while a run is in progress");
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), g.idle())
            .await
            .unwrap();
        let s = g.try_take(scheduled("s")).unwrap();
        assert_eq!(g.try_take(api("b")).unwrap_err(), scheduled("s"));
        drop(s);
        assert_eq!(g.current(), None);
    }

    #[tokio::test]
    async fn released_waits_for_that_run_only() {
        let g = RunGuard::default();
        let a = g.try_take(api("a")).unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), g.released("a")).await;
        assert!(waiting.is_err(), "a still holds it");
        // Another run's end is no concern of `a`'s waiter; a run not holding it is
        // released already.
        tokio::time::timeout(Duration::from_secs(1), g.released("b"))
            .await
            .unwrap();
        drop(a);
        let _s = g.try_take(scheduled("s")).unwrap();
        tokio::time::timeout(Duration::from_secs(1), g.released("a"))
            .await
            .unwrap();
    }

    #[test]
    fn descriptions_name_the_run_and_who_started_it() {
        assert_eq!(
            api("01a").describe(),
            "run 01a started through POST /api/runs"
        );
        assert_eq!(
            scheduled("01b").describe(),
            "run 01b of the scheduled ingest slot 2026-12-01T06:00:00.000Z"
        );
    }
}
