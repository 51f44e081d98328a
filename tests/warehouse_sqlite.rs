//! The warehouse behaviour suite (`tests/common`) on the SQLite backend.

mod common;

use bankpipe::warehouse::Warehouse;

/// The URL of a database file in `dir`.
fn url(dir: &std::path::Path) -> String {
    format!("sqlite://{}/w.db", dir.display())
}

/// Runs one check on a fresh, empty SQLite warehouse in its own temporary directory.
fn on_fresh(check: common::Check) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut w = Warehouse::open(&url(dir.path())).expect("open a fresh SQLite warehouse");
    check(&mut w);
}

#[test]
fn load_then_read_back() {
    on_fresh(common::load_then_read_back);
}

#[test]
fn duplicate_rows_in_a_file_and_across_files() {
    on_fresh(common::duplicate_rows_in_a_file_and_across_files);
}

#[test]
fn first_occurrence_wins() {
    on_fresh(common::first_occurrence_wins);
}

#[test]
fn claims() {
    on_fresh(common::claims);
}

#[test]
fn abort_rolls_back() {
    on_fresh(common::abort_rolls_back);
}

#[test]
fn reject_share_fails_the_file() {
    on_fresh(common::reject_share_fails_the_file);
}

#[test]
fn rejects_are_queryable() {
    on_fresh(common::rejects_are_queryable);
}

#[test]
fn warnings_counted() {
    on_fresh(common::warnings_counted);
}

#[test]
fn runs() {
    on_fresh(common::runs);
}

#[test]
fn bulk_load_across_chunks() {
    on_fresh(common::bulk_load_across_chunks);
}

#[test]
fn reprocess_keeps_rows_other_files_carry() {
    on_fresh(common::reprocess_keeps_rows_other_files_carry);
}

/// Every check in sequence on one database file, closed and reopened between steps.
#[test]
fn whole_suite_on_one_reopened_database() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = url(dir.path());
    common::whole_suite_reopening(&mut || {
        Warehouse::open(&url).expect("reopen the SQLite warehouse")
    });
}

/// Migration 0012 fills `file_rejects` and `file_amounts` from the rows an existing
/// warehouse holds: the figures are the same as those the loads wrote.
#[test]
fn catalog_figures_are_backfilled_by_their_migration() {
    let dir = tempfile::tempdir().unwrap();
    let url = url(dir.path());
    let mut w = Warehouse::open(&url).unwrap();
    common::reject_share_fails_the_file(&mut w);
    common::reprocess_keeps_rows_other_files_carry(&mut w);
    let before = w.catalog_figures().unwrap();
    assert!(!before.rejected_by_rule.is_empty() && !before.amount_loaded.is_empty());
    drop(w);
    rusqlite::Connection::open(dir.path().join("w.db"))
        .unwrap()
        .execute_batch(
            "DROP TABLE file_rejects; DROP TABLE file_amounts;
             DELETE FROM schema_migrations WHERE version = 12;",
        )
        .unwrap();
    let mut w = Warehouse::open(&url).unwrap();
    assert_eq!(w.catalog_figures().unwrap(), before);
    common::assert_catalog_figures(&mut w);
}

#[test]
fn a_finished_file_cannot_be_loaded_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Warehouse::open(&format!("sqlite://{}/w.db", dir.path().display())).unwrap();
    common::loading_a_finished_file_is_refused(&mut w);
}

#[test]
fn data_keys_are_recorded_and_rewrapped() {
    on_fresh(common::data_keys_are_recorded_and_rewrapped);
}

/// Migrations: a missing version below the highest is applied (never skipped), a
/// warehouse migrated by a newer bankpipe is refused, and a migration that cannot apply
/// (a user view on a dropped column) fails with its version and cause, changing nothing.
#[test]
fn migrations_fill_gaps_refuse_newer_schemas_and_name_failures() {
    use bankpipe::warehouse::WarehouseError;
    let dir = tempfile::tempdir().unwrap();
    let url = url(dir.path());
    let db = dir.path().join("w.db");
    drop(Warehouse::open(&url).unwrap());
    let sql = |q: &str| {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(q)
            .unwrap()
    };
    let versions = || -> Vec<i64> {
        let c = rusqlite::Connection::open(&db).unwrap();
        let mut s = c
            .prepare("SELECT version FROM schema_migrations ORDER BY 1")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    // Every version this binary knows (later ones are added by later migrations).
    let all = versions();
    assert!(all.starts_with(&[1, 2, 3, 4]), "{all:?}");

    // A warehouse at {1, 2, 4} (migrated by a build that lacked 0003) gets 0003.
    sql("DELETE FROM schema_migrations WHERE version = 3;
         ALTER TABLE files DROP COLUMN key_id; ALTER TABLE files DROP COLUMN wrapped_key;");
    let mut w = Warehouse::open(&url).unwrap();
    assert!(w.files().is_ok(), "key_id and wrapped_key are back");
    drop(w);
    assert_eq!(versions(), all);

    // Newer than this binary: refused.
    sql("INSERT INTO schema_migrations VALUES (99, 'future', 'x')");
    match Warehouse::open(&url) {
        Err(e @ WarehouseError::SchemaTooNew { found: 99, .. }) => {
            assert!(e.to_string().contains("upgrade bankpipe"), "{e}")
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    sql("DELETE FROM schema_migrations WHERE version = 99");

    // Before 0004, with a user view on transactions.loaded_at: 0004 cannot apply.
    sql("DELETE FROM schema_migrations WHERE version = 4;
         ALTER TABLE transactions ADD COLUMN loaded_at TEXT;
         CREATE VIEW recent AS SELECT transaction_id, loaded_at FROM transactions;");
    match Warehouse::open(&url) {
        Err(e @ WarehouseError::Migration { version: 4, .. }) => {
            let text = e.to_string();
            assert!(text.contains("0004") && text.contains("recent"), "{text}");
        }
        other => panic!("expected a Migration error, got {other:?}"),
    }
    let without_4: Vec<i64> = all.iter().copied().filter(|&v| v != 4).collect();
    assert_eq!(versions(), without_4, "nothing of 0004 was applied");
    sql("DROP VIEW recent;");
    drop(Warehouse::open(&url).unwrap());
    assert_eq!(versions(), all);
}

/// Migration 0006 on a catalog that already holds encrypted objects: their key id
/// becomes the current one when they all share it, and none is set when they do not
/// (the first encrypted run then adopts its key if objects are under it).
#[test]
fn migration_6_adopts_the_single_key_id_of_an_existing_catalog() {
    use bankpipe::crypt::Sealed;
    let dir = tempfile::tempdir().unwrap();
    let url = url(dir.path());
    let db = dir.path().join("w.db");
    let mut w = Warehouse::open(&url).unwrap();
    for n in 0..2 {
        let bytes = common::csv_of(&[common::Row::new(&format!("K{n}"), "1.00")]);
        let id = common::claim_new(&mut w, &common::new_file(&bytes, "k.csv", "r1"));
        let sealed = Sealed {
            key_id: "mk-a".into(),
            wrapped: format!("w{n}"),
        };
        w.record_landing(id, &format!("raw/k{n}.enc"), Some(&sealed))
            .unwrap();
    }
    drop(w);
    let before_6 = |extra: &str| {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(&format!(
                "DROP TABLE lake_master_key; DELETE FROM schema_migrations WHERE version = 6; {extra}"
            ))
            .unwrap();
        Warehouse::open(&url).unwrap().master_key_id().unwrap()
    };
    assert_eq!(before_6("").as_deref(), Some("mk-a"));
    assert_eq!(
        before_6("UPDATE files SET key_id = 'mk-b' WHERE file_id = 2;"),
        None
    );
}

#[test]
fn stopped_claims_are_shown_resumed_and_withdrawn() {
    on_fresh(common::stopped_claims_are_shown_resumed_and_withdrawn);
}

#[path = "common/slots.rs"]
mod slots;

#[test]
fn schedule_slots_are_claimed_once_and_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Warehouse::open(&url(dir.path())).unwrap();
    slots::slots_are_claimed_once_and_guarded(&open);
}

#[test]
fn racing_schedule_claims_win_each_slot_once() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Warehouse::open(&url(dir.path())).unwrap();
    slots::racing_claims_win_each_slot_once(&open);
}
