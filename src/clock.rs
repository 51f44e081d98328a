//! Wall-clock timestamps in one format (UTC, RFC 3339 to the millisecond), so that
//! catalog, reports and logs sort and compare as text.

/// Now, e.g. `2026-11-26T16:54:28.123Z`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Now as (year, month), for lake partitions.
pub fn year_month() -> (i32, u32) {
    use chrono::Datelike;
    let now = chrono::Utc::now();
    (now.year(), now.month())
}
