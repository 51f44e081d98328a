//! Slot arithmetic, config checks and the missed-slot rule, table by table.

use super::*;

fn utc(text: &str) -> DateTime<Utc> {
    parse_slot(text).unwrap_or_else(|| panic!("bad time {text}"))
}

fn job(expression: &str, timezone: &str) -> JobSchedule {
    JobSchedule::parse(Job::Ingest, expression, Tz::from_str(timezone).unwrap()).unwrap()
}

#[test]
fn next_slot_after_a_time() {
    let cases = [
        // (expression, zone, after, next)
        (
            "30 2 * * *",
            "UTC",
            "2026-12-01T00:00:00Z",
            "2026-12-01T02:30:00Z",
        ),
        (
            "30 2 * * *",
            "UTC",
            "2026-12-01T02:30:00Z",
            "2026-12-02T02:30:00Z",
        ),
        (
            "30 2 * * *",
            "UTC",
            "2026-12-01T02:29:59.999Z",
            "2026-12-01T02:30:00Z",
        ),
        (
            "0 6 1 * *",
            "UTC",
            "2026-12-15T00:00:00Z",
            "2027-01-01T06:00:00Z",
        ),
        (
            "@daily",
            "UTC",
            "2026-12-01T12:00:00Z",
            "2026-12-02T00:00:00Z",
        ),
        // Monday to Friday at 07:00: from a Saturday, the Monday.
        (
            "0 7 * * MON-FRI",
            "UTC",
            "2026-12-05T08:00:00Z",
            "2026-12-07T07:00:00Z",
        ),
    ];
    for (expression, zone, after, next) in cases {
        assert_eq!(
            job(expression, zone).next_after(utc(after)),
            Some(utc(next)),
            "{expression} after {after}"
        );
    }
}

#[test]
fn five_fields_fire_at_second_zero_six_fields_at_their_second() {
    let five = job("* * * * *", "UTC");
    assert_eq!(
        five.next_after(utc("2026-12-01T10:00:07Z")),
        Some(utc("2026-12-01T10:01:00Z"))
    );
    let every_second = job("* * * * * *", "UTC");
    assert_eq!(
        every_second.next_after(utc("2026-12-01T10:00:07Z")),
        Some(utc("2026-12-01T10:00:08Z"))
    );
    // A time between two seconds: the next whole second.
    assert_eq!(
        every_second.next_after(utc("2026-12-01T10:00:07.400Z")),
        Some(utc("2026-12-01T10:00:08Z"))
    );
    let quarter_minutes = job("*/15 * * * * *", "UTC");
    assert_eq!(
        quarter_minutes.next_after(utc("2026-12-01T10:00:07Z")),
        Some(utc("2026-12-01T10:00:15Z"))
    );
    assert_eq!(
        quarter_minutes.next_after(utc("2026-12-01T10:00:45Z")),
        Some(utc("2026-12-01T10:01:00Z"))
    );
    let at_second_20 = job("20 * * * * *", "UTC");
    assert_eq!(
        at_second_20.latest_at_or_before(utc("2026-12-01T10:00:19Z")),
        Some(utc("2026-12-01T09:59:20Z"))
    );
}

#[test]
fn latest_slot_at_or_before_includes_the_instant_itself() {
    let daily = job("30 2 * * *", "UTC");
    assert_eq!(
        daily.latest_at_or_before(utc("2026-12-01T02:30:00Z")),
        Some(utc("2026-12-01T02:30:00Z"))
    );
    assert_eq!(
        daily.latest_at_or_before(utc("2026-12-01T02:29:59Z")),
        Some(utc("2026-11-30T02:30:00Z"))
    );
    assert_eq!(
        job("* * * * * *", "UTC").latest_at_or_before(utc("2026-12-01T10:00:07.900Z")),
        Some(utc("2026-12-01T10:00:07Z"))
    );
}

#[test]
fn expressions_are_read_on_the_wall_clock_of_the_time_zone() {
    let paris = job("0 9 * * *", "Europe/Paris");
    // Winter: UTC+1.
    assert_eq!(
        paris.next_after(utc("2026-01-15T00:00:00Z")),
        Some(utc("2026-01-15T08:00:00Z"))
    );
    // Summer: UTC+2.
    assert_eq!(
        paris.next_after(utc("2026-07-15T00:00:00Z")),
        Some(utc("2026-07-15T07:00:00Z"))
    );
    let new_york = job("0 0 * * *", "America/New_York");
    assert_eq!(
        new_york.next_after(utc("2026-12-01T12:00:00Z")),
        Some(utc("2026-12-02T05:00:00Z"))
    );
    // The local date decides the quarter an export takes: 23:30 UTC on 31 March is
    // already 1 April in Tokyo.
    let tokyo = JobSchedule::parse(Job::Export, "30 8 1 * *", Tz::Asia__Tokyo).unwrap();
    let slot = tokyo.next_after(utc("2026-03-31T00:00:00Z")).unwrap();
    assert_eq!(slot, utc("2026-03-31T23:30:00Z"));
    assert_eq!(last_complete_quarter(tokyo.local_date(slot)), (2026, 1));
}

#[test]
fn daylight_saving_gaps_and_repeats_run_a_fixed_time_once() {
    // Paris springs forward on 2026-03-29 at 02:00 (to 03:00): 02:30 does not exist
    // that day; the slot is the first time after the gap.
    let half_past_two = job("30 2 * * *", "Europe/Paris");
    assert_eq!(
        half_past_two.next_after(utc("2026-03-28T12:00:00Z")),
        Some(utc("2026-03-29T01:00:00Z"))
    );
    // It falls back on 2026-10-25 at 03:00 (to 02:00): 02:30 happens twice, the slot
    // is the first.
    let first = half_past_two
        .next_after(utc("2026-10-24T12:00:00Z"))
        .unwrap();
    assert_eq!(first, utc("2026-10-25T00:30:00Z"));
    assert_eq!(
        half_past_two.next_after(first),
        Some(utc("2026-10-26T01:30:00Z"))
    );
}

#[test]
fn missed_slot_rule() {
    let t = utc;
    let cases = [
        // (latest slot at or before now, latest recorded slot, runs at start)
        (
            Some("2026-12-01T02:30:00Z"),
            Some("2026-11-30T02:30:00Z"),
            Some("2026-12-01T02:30:00Z"),
        ),
        // Several missed: only the latest runs.
        (
            Some("2026-12-01T02:30:00Z"),
            Some("2026-11-20T02:30:00Z"),
            Some("2026-12-01T02:30:00Z"),
        ),
        // Already claimed (ran, or ran by another instance): nothing.
        (
            Some("2026-12-01T02:30:00Z"),
            Some("2026-12-01T02:30:00Z"),
            None,
        ),
        // Never scheduled before: nothing was missed.
        (Some("2026-12-01T02:30:00Z"), None, None),
        (None, Some("2026-12-01T02:30:00Z"), None),
        (None, None, None),
    ];
    for (latest, recorded, expected) in cases {
        assert_eq!(
            missed_slot(latest.map(t), recorded.map(t)),
            expected.map(t),
            "{latest:?} {recorded:?}"
        );
    }
}

#[test]
fn last_complete_quarters() {
    let d = |y, m, day| chrono::NaiveDate::from_ymd_opt(y, m, day).unwrap();
    for (date, quarter) in [
        (d(2026, 1, 1), (2025, 4)),
        (d(2026, 3, 31), (2025, 4)),
        (d(2026, 4, 1), (2026, 1)),
        (d(2026, 6, 30), (2026, 1)),
        (d(2026, 7, 2), (2026, 2)),
        (d(2026, 10, 1), (2026, 3)),
        (d(2026, 12, 31), (2026, 3)),
    ] {
        assert_eq!(last_complete_quarter(date), quarter, "{date}");
    }
}

#[test]
fn slot_text_round_trips_and_sorts() {
    let t = utc("2026-12-01T02:30:05Z");
    assert_eq!(slot_text(t), "2026-12-01T02:30:05.000Z");
    assert_eq!(parse_slot(&slot_text(t)), Some(t));
    assert!(slot_text(t) < slot_text(utc("2026-12-01T02:30:06Z")));
}

fn resolve(raw: RawSchedule) -> Result<Schedule, ScheduleError> {
    Schedule::resolve(&raw, utc("2026-12-01T00:00:00Z"))
}

#[test]
fn a_schedule_resolves_its_jobs_in_order_with_utc_by_default() {
    let s = resolve(RawSchedule {
        verify: Some("0 3 * * SUN".into()),
        ingest: Some("*/5 * * * *".into()),
        ..RawSchedule::default()
    })
    .unwrap();
    assert_eq!(s.timezone, Tz::UTC);
    let jobs: Vec<Job> = s.jobs.iter().map(|j| j.job).collect();
    assert_eq!(jobs, [Job::Ingest, Job::Verify]);
    assert!(s.job(Job::Export).is_none());
    assert!(resolve(RawSchedule::default()).unwrap().is_empty());
}

#[test]
fn bad_expressions_name_the_job_and_the_expression() {
    for (expression, why) in [
        ("61 * * * *", "Component error"),
        ("* * * *", "4 fields"),
        ("0 0 0 * * * 2027", "7 fields"),
        ("every day", "fields"),
        ("0 0 30 2 *", "matches no time"),
        ("0 0 * * FOO", ""),
    ] {
        let err = resolve(RawSchedule {
            export: Some(expression.into()),
            ..RawSchedule::default()
        })
        .expect_err(expression)
        .to_string();
        assert!(
            err.contains("[schedule] export") && err.contains(&format!("{expression:?}")),
            "{err}"
        );
        assert!(err.contains(why), "{expression}: {err}");
    }
}

#[test]
fn time_zones_are_iana_names() {
    let s = resolve(RawSchedule {
        ingest: Some("0 6 * * *".into()),
        timezone: Some("Europe/Paris".into()),
        ..RawSchedule::default()
    })
    .unwrap();
    assert_eq!(s.timezone, Tz::Europe__Paris);
    for bad in ["Europe/Pariss", "CEST", "+02:00"] {
        let err = resolve(RawSchedule {
            ingest: Some("0 6 * * *".into()),
            timezone: Some(bad.into()),
            ..RawSchedule::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("timezone") && err.contains(bad) && err.contains("IANA"),
            "{err}"
        );
    }
}
