//! The schedule's slots in the warehouse (`schedule_slots`, issue #11), checked on each
//! backend by `tests/warehouse_sqlite.rs` and `tests/warehouse_postgres.rs`: a slot is
//! won once, a job runs once at a time (its guard), a dead holder's slot is found
//! `interrupted`, and sessions racing for the same slots never record one `skipped`
//! that nobody ran.

use std::sync::{Barrier, Mutex};

use bankpipe::warehouse::{BusyHere, SlotClaim, SlotStatus, Warehouse};

const S1: &str = "2026-12-01T06:00:00.000Z";
const S2: &str = "2026-12-01T06:00:01.000Z";
const S3: &str = "2026-12-01T06:00:02.000Z";
const S4: &str = "2026-12-01T06:00:03.000Z";
const S5: &str = "2026-12-01T06:00:04.000Z";

fn skipped(claim: SlotClaim) -> String {
    match claim {
        SlotClaim::Skipped { reason } => reason,
        other => panic!("expected skipped, got {other:?}"),
    }
}

/// Claims, guards, outcomes and history with three sessions.
pub fn slots_are_claimed_once_and_guarded(open: &dyn Fn() -> Warehouse) {
    let (mut a, mut b) = (open(), open());
    assert!(a.recent_slots("ingest", 5).unwrap().is_empty());
    assert_eq!(
        a.claim_slot("ingest", S1, "a:1", None).unwrap(),
        SlotClaim::Won
    );
    // The same slot elsewhere: taken, nothing written.
    assert_eq!(
        b.claim_slot("ingest", S1, "b:2", None).unwrap(),
        SlotClaim::Taken {
            claimed_by: "a:1".into()
        }
    );
    // The next slot while `a` runs the job: skipped, naming the slot still running.
    let reason = skipped(b.claim_slot("ingest", S2, "b:2", None).unwrap());
    assert!(reason.contains(S1) && reason.contains("a:1"), "{reason}");
    // Another job is not held up by it.
    assert_eq!(
        b.claim_slot("verify", S2, "b:2", None).unwrap(),
        SlotClaim::Won
    );
    b.finish_slot("verify", S2, SlotStatus::Failed, Some("2 objects missing"))
        .unwrap();
    a.finish_slot("ingest", S1, SlotStatus::Ok, None).unwrap();
    // The guard went with the outcome: the next slot can run anywhere.
    assert_eq!(
        b.claim_slot("ingest", S3, "b:2", None).unwrap(),
        SlotClaim::Won
    );
    // A slot this process sees while it runs the job itself.
    let reason = skipped(
        b.claim_slot("ingest", S4, "b:2", Some(BusyHere::Slot(S3)))
            .unwrap(),
    );
    assert!(reason.contains(S3), "{reason}");
    // A slot of a job whose guard is free while this process does the job's work
    // started another way (`serve`: an ingest slot during an API run): skipped too,
    // saying what ran, and the guard is not kept.
    let api_run = BusyHere::Work("run 01x started through POST /api/runs");
    let reason = skipped(a.claim_slot("export", S4, "a:1", Some(api_run)).unwrap());
    assert_eq!(
        reason,
        "run 01x started through POST /api/runs was still running (on a:1)"
    );
    assert_eq!(
        b.claim_slot("export", S4, "b:2", None).unwrap(),
        SlotClaim::Taken {
            claimed_by: "a:1".into()
        }
    );
    assert_eq!(
        b.claim_slot("export", S5, "b:2", None).unwrap(),
        SlotClaim::Won
    );
    // `b` dies without an outcome: its guard goes with its session, and the next
    // winner records S3 interrupted.
    drop(b);
    let mut c = open();
    assert_eq!(
        c.claim_slot("ingest", S5, "c:3", None).unwrap(),
        SlotClaim::Won
    );
    let history = c.recent_slots("ingest", 10).unwrap();
    let seen: Vec<(&str, &str)> = history
        .iter()
        .map(|s| (s.slot_at.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (S5, "running"),
            (S4, "skipped"),
            (S3, "interrupted"),
            (S2, "skipped"),
            (S1, "ok"),
        ]
    );
    let dead = &history[2];
    assert_eq!(dead.claimed_by, "b:2");
    assert!(
        dead.error.as_deref().unwrap_or("").contains("c:3") && dead.finished_at.is_some(),
        "{dead:?}"
    );
    assert_eq!(history[4].error, None);
    assert!(history[4].finished_at.as_deref() >= Some(history[4].claimed_at.as_str()));
    let verify = c.recent_slots("verify", 10).unwrap();
    assert_eq!(verify.len(), 1);
    assert_eq!(
        (verify[0].status.as_str(), verify[0].error.as_deref()),
        ("failed", Some("2 objects missing"))
    );
    c.finish_slot("ingest", S5, SlotStatus::Interrupted, Some("stopped"))
        .unwrap();
    assert_eq!(
        c.recent_slots("ingest", 1).unwrap()[0].status,
        "interrupted"
    );
    assert_eq!(c.recent_slots("ingest", 2).unwrap().len(), 2);
}

/// Sessions claiming the same slots at the same instant: each slot is won once and
/// taken by the others, never recorded `skipped` (the winner's guard must not be seen
/// by a claim of the slot it is winning).
pub fn racing_claims_win_each_slot_once(open: &(dyn Fn() -> Warehouse + Sync)) {
    const SESSIONS: usize = 5;
    const SLOTS: u32 = 60;
    let start = Barrier::new(SESSIONS);
    let done = Barrier::new(SESSIONS);
    let claims: Mutex<Vec<(u32, SlotClaim)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for n in 0..SESSIONS {
            let (start, done, claims) = (&start, &done, &claims);
            scope.spawn(move || {
                let mut w = open();
                for slot in 0..SLOTS {
                    let slot_at = format!("2026-12-01T07:00:{slot:02}.000Z");
                    start.wait();
                    let claim = w
                        .claim_slot("ingest", &slot_at, &format!("s:{n}"), None)
                        .unwrap();
                    if claim == SlotClaim::Won {
                        w.finish_slot("ingest", &slot_at, SlotStatus::Ok, None)
                            .unwrap();
                    }
                    claims.lock().unwrap().push((slot, claim));
                    // Every outcome is in before the next slot.
                    done.wait();
                }
            });
        }
    });
    let claims = claims.into_inner().unwrap();
    for slot in 0..SLOTS {
        let of_slot: Vec<&SlotClaim> = claims
            .iter()
            .filter(|(s, _)| *s == slot)
            .map(|(_, c)| c)
            .collect();
        let won = of_slot.iter().filter(|c| ***c == SlotClaim::Won).count();
        let taken = of_slot
            .iter()
            .filter(|c| matches!(c, SlotClaim::Taken { .. }))
            .count();
        assert_eq!((won, taken), (1, SESSIONS - 1), "slot {slot}: {of_slot:?}");
    }
    let mut w = open();
    let history = w.recent_slots("ingest", 100).unwrap();
    assert_eq!(history.len(), SLOTS as usize);
    assert!(history.iter().all(|s| s.status == "ok"), "{history:#?}");
}
