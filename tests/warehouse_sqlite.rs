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

/// Every check in sequence on one database file, closed and reopened between steps.
#[test]
fn whole_suite_on_one_reopened_database() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = url(dir.path());
    common::whole_suite_reopening(&mut || {
        Warehouse::open(&url).expect("reopen the SQLite warehouse")
    });
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
