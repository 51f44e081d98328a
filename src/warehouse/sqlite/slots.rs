//! `schedule_slots` on SQLite: claims in `BEGIN IMMEDIATE` transactions (one writer at
//! a time), the job's guard as an exclusive lock on `<database>.schedule-<job>.lock`,
//! held by this session until the slot's outcome is recorded. Other processes on the
//! same database see it held; the kernel releases it when the process dies.
//!
//! The guard is taken inside the claim's transaction and given back inside the one
//! that records the outcome, so claims see it and the slots' rows change together:
//! two instances claiming the same slot at once never see each other's guard (one
//! would record `skipped` a slot the other then finds claimed, and nobody runs it).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{SqliteWarehouse, sql};
use crate::warehouse::slots::{
    BusyHere, SlotClaim, SlotRecord, SlotStatus, dead_reason, skip_reason,
};
use crate::warehouse::{Result, WarehouseError};

/// Takes the guard of `job` on the database at `db` for the session holding `locks`:
/// `false` when another process holds it (or this session already does: the job is
/// running here).
fn take_job_guard(locks: &mut HashMap<String, Option<File>>, db: &Path, job: &str) -> Result<bool> {
    if locks.contains_key(job) {
        return Ok(false);
    }
    if db.as_os_str() == ":memory:" {
        // One process alone can open it: the scheduler's own guard is enough.
        locks.insert(job.to_owned(), None);
        return Ok(true);
    }
    let path = PathBuf::from(format!("{}.schedule-{job}.lock", db.display()));
    let failed = |e: std::io::Error| WarehouseError::Unreachable {
        url: format!("sqlite://{}", db.display()),
        reason: format!("schedule lock file {}: {e}", path.display()),
    };
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {
            locks.insert(job.to_owned(), Some(file));
            Ok(true)
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(failed(e)),
    }
}

impl SqliteWarehouse {
    pub(in crate::warehouse) fn claim_slot(
        &mut self,
        job: &str,
        slot_at: &str,
        claimant: &str,
        busy_here: Option<BusyHere<'_>>,
    ) -> Result<SlotClaim> {
        let mut guarded = false;
        let result = self.claim_in_transaction(job, slot_at, claimant, busy_here, &mut guarded);
        if guarded && !matches!(result, Ok(SlotClaim::Won)) {
            // Dropping the file releases the lock.
            self.job_locks.remove(job);
        }
        result
    }

    fn claim_in_transaction(
        &mut self,
        job: &str,
        slot_at: &str,
        claimant: &str,
        busy_here: Option<BusyHere<'_>>,
        guarded: &mut bool,
    ) -> Result<SlotClaim> {
        let now = crate::clock::now_rfc3339();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("claiming a schedule slot"))?;
        *guarded = busy_here.is_none() && take_job_guard(&mut self.job_locks, &self.path, job)?;
        let claim = if *guarded {
            let inserted = tx
                .execute(
                    "INSERT INTO schedule_slots (job, slot_at, claimed_by, claimed_at, status)
                     VALUES (?1, ?2, ?3, ?4, 'running') ON CONFLICT DO NOTHING",
                    params![job, slot_at, claimant, now],
                )
                .map_err(sql("claiming a schedule slot"))?;
            if inserted == 1 {
                // We hold the guard: whoever left a slot of this job `running` is gone.
                tx.execute(
                    "UPDATE schedule_slots SET status = 'interrupted', finished_at = ?3, error = ?4
                     WHERE job = ?1 AND status = 'running' AND slot_at <> ?2",
                    params![job, slot_at, now, dead_reason(claimant)],
                )
                .map_err(sql("closing dead schedule slots"))?;
                SlotClaim::Won
            } else {
                taken(&tx, job, slot_at)?
            }
        } else {
            let reason = match busy_here {
                Some(busy) => busy.reason(job, claimant),
                None => {
                    let running: Option<(String, String)> = tx
                        .query_row(
                            "SELECT slot_at, claimed_by FROM schedule_slots
                             WHERE job = ?1 AND status = 'running' ORDER BY slot_at DESC LIMIT 1",
                            params![job],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()
                        .map_err(sql("reading running schedule slots"))?;
                    skip_reason(job, running.as_ref().map(|(s, b)| (s.as_str(), b.as_str())))
                }
            };
            let inserted = tx
                .execute(
                    "INSERT INTO schedule_slots
                         (job, slot_at, claimed_by, claimed_at, finished_at, status, error)
                     VALUES (?1, ?2, ?3, ?4, ?4, 'skipped', ?5) ON CONFLICT DO NOTHING",
                    params![job, slot_at, claimant, now, reason],
                )
                .map_err(sql("recording a skipped schedule slot"))?;
            if inserted == 1 {
                SlotClaim::Skipped { reason }
            } else {
                taken(&tx, job, slot_at)?
            }
        };
        tx.commit().map_err(sql("claiming a schedule slot"))?;
        Ok(claim)
    }

    pub(in crate::warehouse) fn finish_slot(
        &mut self,
        job: &str,
        slot_at: &str,
        status: SlotStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let now = crate::clock::now_rfc3339();
        let recorded = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE schedule_slots SET status = ?3, finished_at = ?4, error = ?5
                 WHERE job = ?1 AND slot_at = ?2",
                params![job, slot_at, status.as_str(), now, error],
            )?;
            // In the transaction that records the outcome: a claim that takes the guard
            // next finds this slot finished, never `running` (it would call it
            // interrupted), and one that finds the guard held finds the slot running.
            self.job_locks.remove(job);
            tx.commit()
        })()
        .map_err(sql("recording a schedule slot's outcome"));
        // Whatever happened, the guard goes: when the outcome could not be written the
        // slot stays `running` and the next claim of the job records it interrupted.
        self.job_locks.remove(job);
        recorded
    }

    pub(in crate::warehouse) fn recent_slots(
        &mut self,
        job: &str,
        limit: u32,
    ) -> Result<Vec<SlotRecord>> {
        self.conn
            .prepare_cached(
                "SELECT job, slot_at, claimed_by, claimed_at, finished_at, status, error
                 FROM schedule_slots WHERE job = ?1 ORDER BY slot_at DESC LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![job, limit], |r| {
                    Ok(SlotRecord {
                        job: r.get(0)?,
                        slot_at: r.get(1)?,
                        claimed_by: r.get(2)?,
                        claimed_at: r.get(3)?,
                        finished_at: r.get(4)?,
                        status: r.get(5)?,
                        error: r.get(6)?,
                    })
                })?
                .collect()
            })
            .map_err(sql("reading schedule slots"))
    }
}

/// The claimant of a slot someone else inserted first.
fn taken(tx: &rusqlite::Transaction<'_>, job: &str, slot_at: &str) -> Result<SlotClaim> {
    let claimed_by = tx
        .query_row(
            "SELECT claimed_by FROM schedule_slots WHERE job = ?1 AND slot_at = ?2",
            params![job, slot_at],
            |r| r.get(0),
        )
        .map_err(sql("reading a schedule slot"))?;
    Ok(SlotClaim::Taken { claimed_by })
}
