//! The warehouse behaviour suite (`tests/common`) on the PostgreSQL backend, against a
//! real throwaway cluster started by `tests/support/pg.rs` (never skipped: without
//! PostgreSQL installed these tests fail and say how to install it).

mod common;
#[path = "support/pg.rs"]
mod pg;

use bankpipe::warehouse::Warehouse;
use pg::PgCluster;

/// Runs one check on a fresh, empty database of the shared cluster.
fn on_fresh(check: common::Check) {
    let db = PgCluster::shared().database();
    let mut w = Warehouse::open(&db.url).expect("open a fresh PostgreSQL warehouse");
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

/// Migration 0012 fills `file_rejects` and `file_amounts` from the rows an existing
/// warehouse holds: the figures are the same as those the loads wrote.
#[test]
fn catalog_figures_are_backfilled_by_their_migration() {
    let c = PgCluster::shared();
    let db = c.database();
    let mut w = Warehouse::open(&db.url).unwrap();
    common::reject_share_fails_the_file(&mut w);
    common::reprocess_keeps_rows_other_files_carry(&mut w);
    let before = w.catalog_figures().unwrap();
    assert!(!before.rejected_by_rule.is_empty() && !before.amount_loaded.is_empty());
    drop(w);
    c.psql(
        &db.name,
        "DROP TABLE file_rejects, file_amounts;
         DELETE FROM schema_migrations WHERE version = 12",
    );
    let mut w = Warehouse::open(&db.url).unwrap();
    assert_eq!(w.catalog_figures().unwrap(), before);
    common::assert_catalog_figures(&mut w);
}

#[test]
fn a_finished_file_cannot_be_loaded_again() {
    on_fresh(common::loading_a_finished_file_is_refused);
}

/// Every check in sequence on one database, reconnecting between steps.
#[test]
fn whole_suite_on_one_reconnected_database() {
    let db = PgCluster::shared().database();
    common::whole_suite_reopening(&mut || {
        Warehouse::open(&db.url).expect("reopen the PostgreSQL warehouse")
    });
}

#[test]
fn data_keys_are_recorded_and_rewrapped() {
    on_fresh(common::data_keys_are_recorded_and_rewrapped);
}

/// Migrations on PostgreSQL: a missing version below the highest is applied, a schema
/// from a newer bankpipe is refused, and a migration blocked by a user's view fails with
/// its version, changing nothing.
#[test]
fn migrations_fill_gaps_refuse_newer_schemas_and_name_failures() {
    use bankpipe::warehouse::WarehouseError;
    let c = PgCluster::shared();
    let db = c.database();
    drop(Warehouse::open(&db.url).unwrap());
    let versions = || {
        c.psql(
            &db.name,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations",
        )
    };
    // Every version this binary knows (later ones are added by later migrations).
    let all = versions();
    assert!(all.starts_with("1,2,3,4"), "{all}");
    c.psql(
        &db.name,
        "DELETE FROM schema_migrations WHERE version = 3;
         ALTER TABLE files DROP COLUMN key_id, DROP COLUMN wrapped_key",
    );
    let mut w = Warehouse::open(&db.url).unwrap();
    assert!(w.files().is_ok(), "key_id and wrapped_key are back");
    drop(w);
    assert_eq!(versions(), all);

    c.psql(
        &db.name,
        "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')",
    );
    assert!(matches!(
        Warehouse::open(&db.url),
        Err(WarehouseError::SchemaTooNew { found: 99, .. })
    ));
    c.psql(
        &db.name,
        "DELETE FROM schema_migrations WHERE version IN (4, 99);
         DROP INDEX transactions_brin;
         ALTER TABLE transactions ADD COLUMN loaded_at TIMESTAMPTZ;
         CREATE VIEW recent AS SELECT transaction_id, loaded_at FROM transactions",
    );
    match Warehouse::open(&db.url) {
        Err(e @ WarehouseError::Migration { version: 4, .. }) => {
            assert!(e.to_string().contains("0004"), "{e}")
        }
        other => panic!("expected a Migration error, got {other:?}"),
    }
    assert_eq!(
        versions(),
        all.replacen(",4", "", 1),
        "nothing of 0004 was applied"
    );
    c.psql(&db.name, "DROP VIEW recent");
    drop(Warehouse::open(&db.url).unwrap());
    assert_eq!(versions(), all);
}

/// Migration 0006 on a catalog that already holds encrypted objects: their key id
/// becomes the current one when they all share it, and none is set when they do not.
#[test]
fn migration_6_adopts_the_single_key_id_of_an_existing_catalog() {
    use bankpipe::crypt::Sealed;
    let c = PgCluster::shared();
    let db = c.database();
    let mut w = Warehouse::open(&db.url).unwrap();
    for n in 0..2 {
        let bytes = common::csv_of(&[common::Row::new(&format!("K{n}"), "1.00")]);
        let id = common::claim_new(&mut w, &common::new_file(&bytes, "k.csv", "r1"));
        let sealed = Sealed {
            key_id: "mk-a".into(),
            wrapped: format!("w{n}"),
        };
        w.record_landing(id, &format!("raw/k{n}.enc"), Some(&sealed))
            .unwrap();
        w.release(id).unwrap();
    }
    drop(w);
    let before_6 = |extra: &str| {
        c.psql(
            &db.name,
            &format!(
                "DROP TABLE lake_master_key; DELETE FROM schema_migrations WHERE version = 6; {extra}"
            ),
        );
        Warehouse::open(&db.url).unwrap().master_key_id().unwrap()
    };
    assert_eq!(before_6("").as_deref(), Some("mk-a"));
    assert_eq!(
        before_6(
            "UPDATE files SET key_id = 'mk-b' WHERE file_id = (SELECT MAX(file_id) FROM files);"
        ),
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
    let db = PgCluster::shared().database();
    let open = || Warehouse::open(&db.url).unwrap();
    slots::slots_are_claimed_once_and_guarded(&open);
}

#[test]
fn racing_schedule_claims_win_each_slot_once() {
    let db = PgCluster::shared().database();
    let open = || Warehouse::open(&db.url).unwrap();
    slots::racing_claims_win_each_slot_once(&open);
}
