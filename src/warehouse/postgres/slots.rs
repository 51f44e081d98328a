//! `schedule_slots` on PostgreSQL: the job's guard is a session-level advisory lock
//! (`LOCK_SPACE + 2`, `hashtext(job)`) of the session that won the slot, held until the
//! outcome is recorded; the server releases it when that session ends, so a `running`
//! row whose lock is free belongs to an instance that died.
//!
//! Claims and outcomes of a job are serialized by a transaction-level advisory lock
//! (`LOCK_SPACE + 3`): two instances claiming the same slot at once would otherwise
//! see each other's guard taken for an instant, and one would record the slot
//! `skipped` while the other found it claimed: a slot run by nobody. Likewise a claim
//! never sees the guard of a run whose outcome is being recorded.

use super::{LOCK_SPACE, PgWarehouse, pg, ts};
use crate::warehouse::Result;
use crate::warehouse::slots::{
    BusyHere, SlotClaim, SlotRecord, SlotStatus, dead_reason, skip_reason,
};

/// Advisory-lock namespace of scheduled jobs' guards (session-level).
const JOB_SPACE: i32 = LOCK_SPACE + 2;

/// Advisory-lock namespace serializing the claims and outcomes of a job
/// (transaction-level).
const CLAIM_SPACE: i32 = LOCK_SPACE + 3;

impl PgWarehouse {
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
            self.release_job(job)?;
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
        let mut tx = self
            .client
            .transaction()
            .map_err(pg("claiming a schedule slot"))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&CLAIM_SPACE, &job],
        )
        .map_err(pg("claiming a schedule slot"))?;
        // Never asked while this process is busy with the job (`busy_here`): advisory locks
        // are re-entrant within a session, so it would take its own guard again.
        *guarded = busy_here.is_none()
            && tx
                .query_one(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))",
                    &[&JOB_SPACE, &job],
                )
                .map_err(pg("taking a scheduled job's guard"))?
                .get::<_, bool>(0);
        let claim = if *guarded {
            let inserted = tx
                .execute(
                    "INSERT INTO schedule_slots (job, slot_at, claimed_by, claimed_at, status)
                     VALUES ($1, $2::text::timestamptz, $3, $4::text::timestamptz, 'running')
                     ON CONFLICT DO NOTHING",
                    &[&job, &slot_at, &claimant, &now],
                )
                .map_err(pg("claiming a schedule slot"))?;
            if inserted == 1 {
                // We hold the guard: whoever left a slot of this job `running` is gone.
                tx.execute(
                    "UPDATE schedule_slots
                     SET status = 'interrupted', finished_at = $3::text::timestamptz, error = $4
                     WHERE job = $1 AND status = 'running' AND slot_at <> $2::text::timestamptz",
                    &[&job, &slot_at, &now, &dead_reason(claimant)],
                )
                .map_err(pg("closing dead schedule slots"))?;
                SlotClaim::Won
            } else {
                taken(&mut tx, job, slot_at)?
            }
        } else {
            let reason = match busy_here {
                Some(busy) => busy.reason(job, claimant),
                None => {
                    let running: Option<(String, String)> = tx
                        .query_opt(
                            &format!(
                                "SELECT {}, claimed_by FROM schedule_slots
                                 WHERE job = $1 AND status = 'running'
                                 ORDER BY slot_at DESC LIMIT 1",
                                ts("slot_at")
                            ),
                            &[&job],
                        )
                        .map_err(pg("reading running schedule slots"))?
                        .map(|r| (r.get(0), r.get(1)));
                    skip_reason(job, running.as_ref().map(|(s, b)| (s.as_str(), b.as_str())))
                }
            };
            let inserted = tx
                .execute(
                    "INSERT INTO schedule_slots
                         (job, slot_at, claimed_by, claimed_at, finished_at, status, error)
                     VALUES ($1, $2::text::timestamptz, $3, $4::text::timestamptz,
                             $4::text::timestamptz, 'skipped', $5)
                     ON CONFLICT DO NOTHING",
                    &[&job, &slot_at, &claimant, &now, &reason],
                )
                .map_err(pg("recording a skipped schedule slot"))?;
            if inserted == 1 {
                SlotClaim::Skipped { reason }
            } else {
                taken(&mut tx, job, slot_at)?
            }
        };
        tx.commit().map_err(pg("claiming a schedule slot"))?;
        Ok(claim)
    }

    fn release_job(&mut self, job: &str) -> Result<()> {
        self.client
            .execute(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&JOB_SPACE, &job],
            )
            .map_err(pg("giving a scheduled job's guard back"))?;
        Ok(())
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
            let mut tx = self.client.transaction()?;
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&CLAIM_SPACE, &job],
            )?;
            tx.execute(
                "UPDATE schedule_slots
                 SET status = $3, finished_at = $4::text::timestamptz, error = $5
                 WHERE job = $1 AND slot_at = $2::text::timestamptz",
                &[&job, &slot_at, &status.as_str(), &now, &error],
            )?;
            // In the transaction that records the outcome: a claim that takes the guard
            // next finds this slot finished, never `running` (it would call it
            // interrupted), and one that finds the guard held finds the slot running.
            tx.execute(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&JOB_SPACE, &job],
            )?;
            tx.commit()
        })()
        .map_err(pg("recording a schedule slot's outcome"));
        if recorded.is_err() {
            // Whatever happened, the guard goes: the slot stays `running` and the next
            // claim of the job records it interrupted.
            let _ = self.release_job(job);
        }
        recorded
    }

    pub(in crate::warehouse) fn recent_slots(
        &mut self,
        job: &str,
        limit: u32,
    ) -> Result<Vec<SlotRecord>> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT job, {}, claimed_by, {}, {}, status, error
                     FROM schedule_slots WHERE job = $1 ORDER BY slot_at DESC LIMIT $2",
                    ts("slot_at"),
                    ts("claimed_at"),
                    ts("finished_at")
                ),
                &[&job, &i64::from(limit)],
            )
            .map_err(pg("reading schedule slots"))?;
        Ok(rows
            .iter()
            .map(|r| SlotRecord {
                job: r.get(0),
                slot_at: r.get(1),
                claimed_by: r.get(2),
                claimed_at: r.get(3),
                finished_at: r.get(4),
                status: r.get(5),
                error: r.get(6),
            })
            .collect())
    }
}

/// The claimant of a slot someone else inserted first.
fn taken(tx: &mut postgres::Transaction<'_>, job: &str, slot_at: &str) -> Result<SlotClaim> {
    let claimed_by = tx
        .query_one(
            "SELECT claimed_by FROM schedule_slots WHERE job = $1 AND slot_at = $2::text::timestamptz",
            &[&job, &slot_at],
        )
        .map_err(pg("reading a schedule slot"))?
        .get(0);
    Ok(SlotClaim::Taken { claimed_by })
}
