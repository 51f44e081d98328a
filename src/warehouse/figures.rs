//! The catalog's figures for monitoring (`serve`'s `/metrics`, issue #11): totals over
//! every file, run and rule the warehouse knows, whoever loaded them.
//!
//! Read from the catalog tables only (`files`, `runs`, `file_warnings`, and the
//! per-file `file_rejects` / `file_amounts` of migration 0012): never from
//! `rejected_rows` or `transactions`, so reading them costs a scan of one row per file
//! and per run, not per transaction. Each backend's `catalog_figures` fills
//! [`CatalogFigures`]; the SQL that both share is built here.

use std::collections::BTreeMap;

use crate::metrics::Histogram;

/// Upper bounds (seconds) of the per-file processing-time histogram: from a small file
/// (tenths of a second) to a large one on a busy machine (an hour).
pub const PROCESSING_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Upper bounds of the per-file rejected-share histogram (`rows_rejected / rows_read`):
/// fine below the default `max_reject_share` (0.05, a bound, so that an alert can
/// count the files above it), coarse above.
pub const REJECT_SHARE_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// Totals read from the catalog at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogFigures {
    /// Files by status (`landing`, `loaded`, `failed`; every status present, 0 when none).
    pub files: BTreeMap<String, u64>,
    /// Rows loaded (stored in `transactions`), over every file.
    pub rows_loaded: u64,
    /// Rows rejected (quarantined), over every file, failed ones included.
    pub rows_rejected: u64,
    /// Rows skipped as identical duplicates, over every loaded file.
    pub rows_duplicate: u64,
    /// Rejected rows by rule (from `file_rejects`).
    pub rejected_by_rule: BTreeMap<String, u64>,
    /// Loaded rows' warnings by rule (from `file_warnings` of loaded files: a failed
    /// file loaded nothing).
    pub warnings_by_rule: BTreeMap<String, u64>,
    /// Exact sum of the loaded amounts by currency, as decimal text (from
    /// `file_amounts`).
    pub amount_loaded: BTreeMap<String, String>,
    /// Bytes of the raw files landed in the lake (every file past `landing`: loaded
    /// and failed files alike keep their raw copy).
    pub bytes_landed: u64,
    /// Runs by status (`ok`, `failed`, `aborted`, `interrupted`; every one present). Runs in progress
    /// are in [`CatalogFigures::runs_in_progress`] instead.
    pub runs: BTreeMap<String, u64>,
    /// Runs recorded `running` (a run whose process died stays so until the next run
    /// starts and marks it `aborted`).
    pub runs_in_progress: u64,
    /// End of the last run whose status is `ok`, in seconds since the Unix epoch.
    pub last_successful_run: Option<f64>,
    /// Seconds from claim to the load's catalog record, per file past `landing`
    /// ([`PROCESSING_BUCKETS`]). Files claimed before schema 8 have no claim time and
    /// are not counted.
    pub processing: Histogram,
    /// Per file past `landing` with at least one row read: its rejected share
    /// (`rows_rejected / rows_read`, the share `max_reject_share` is compared with)
    /// ([`REJECT_SHARE_BUCKETS`]). Failed files count: a file failed for its share is
    /// what this shows.
    pub reject_share: Histogram,
    /// Files past `landing` by what `bankpipe verify` last found of their raw object:
    /// `intact`, `missing`, `corrupt`, or `unchecked` (never verified).
    pub lake_objects: BTreeMap<String, u64>,
    /// Quarterly exports (table `exports`, schema 11); `None` when the warehouse has no
    /// such table or no export yet.
    pub exports: Option<ExportFigures>,
}

/// What the `exports` table says of the dataset versions written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportFigures {
    /// When the most recent export version was written, in seconds since the Unix
    /// epoch (every `exports` row is a version written in full).
    pub last_success: f64,
    /// Features the drift check flagged in that most recent export.
    pub drift_flagged_features: u64,
}

impl CatalogFigures {
    /// Figures with every closed-set label present at 0, so each series exists from
    /// the first scrape (a series that appears at its first increment loses it in
    /// `rate()`).
    pub fn zeroed() -> CatalogFigures {
        let zeros = |names: &[&str]| names.iter().map(|n| ((*n).to_owned(), 0)).collect();
        CatalogFigures {
            files: zeros(&["landing", "loaded", "failed"]),
            runs: zeros(&["ok", "failed", "aborted", "interrupted"]),
            lake_objects: zeros(&["intact", "missing", "corrupt", "unchecked"]),
            processing: Histogram::with_bounds(PROCESSING_BUCKETS),
            reject_share: Histogram::with_bounds(REJECT_SHARE_BUCKETS),
            ..CatalogFigures::default()
        }
    }
}

/// An RFC 3339 timestamp as the catalog writes it (`2026-11-26T16:54:28.123Z`) in
/// seconds since the Unix epoch.
pub(super) fn epoch_seconds(text: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
}

/// The one scan of `files` behind most figures (both backends): counts by status and
/// by lake state, row and byte sums, and the processing-time histogram, over a column
/// `d` of seconds computed by `duration` (each backend's date arithmetic, over
/// `processed_at` and `claimed_at`). Read the row with [`FilesRow::read`].
pub(super) fn files_query(duration: &str) -> String {
    let mut q = String::from(
        "SELECT COUNT(*) FILTER (WHERE status = 'landing'),
                COUNT(*) FILTER (WHERE status = 'loaded'),
                COUNT(*) FILTER (WHERE status = 'failed'),
                CAST(COALESCE(SUM(rows_loaded), 0) AS BIGINT),
                CAST(COALESCE(SUM(rows_rejected), 0) AS BIGINT),
                CAST(COALESCE(SUM(rows_duplicate), 0) AS BIGINT),
                CAST(COALESCE(SUM(bytes) FILTER (WHERE status <> 'landing'), 0) AS BIGINT),
                COUNT(*) FILTER (WHERE status <> 'landing' AND lake_status = 'intact'),
                COUNT(*) FILTER (WHERE status <> 'landing' AND lake_status = 'missing'),
                COUNT(*) FILTER (WHERE status <> 'landing' AND lake_status = 'corrupt'),
                COUNT(*) FILTER (WHERE status <> 'landing' AND lake_status IS NULL),
                COUNT(d), COALESCE(SUM(d), 0.0)",
    );
    for b in PROCESSING_BUCKETS {
        q.push_str(&format!(", COUNT(*) FILTER (WHERE d <= {b:?})"));
    }
    q.push_str(&format!(
        " FROM (SELECT status, rows_loaded, rows_rejected, rows_duplicate, bytes, lake_status,
                  CASE WHEN status <> 'landing' AND processed_at IS NOT NULL
                            AND claimed_at IS NOT NULL THEN {duration} END AS d
           FROM files) f"
    ));
    q
}

/// The row of [`files_query`], as integers (counts and sums) and the histogram sum.
pub(super) struct FilesRow {
    /// Columns 0..=12 but the histogram sum (column 12), then one count per bound.
    pub(super) ints: Vec<i64>,
    /// Column 12: the sum of the durations.
    pub(super) seconds: f64,
}

impl FilesRow {
    /// Puts the row into `f`.
    pub(super) fn read(self, f: &mut CatalogFigures) {
        let n = |i: usize| self.ints.get(i).copied().unwrap_or(0).max(0) as u64;
        for (i, status) in ["landing", "loaded", "failed"].into_iter().enumerate() {
            f.files.insert(status.to_owned(), n(i));
        }
        (
            f.rows_loaded,
            f.rows_rejected,
            f.rows_duplicate,
            f.bytes_landed,
        ) = (n(3), n(4), n(5), n(6));
        for (i, state) in ["intact", "missing", "corrupt", "unchecked"]
            .into_iter()
            .enumerate()
        {
            f.lake_objects.insert(state.to_owned(), n(7 + i));
        }
        let h = &mut f.processing;
        h.count = n(11);
        h.sum = self.seconds;
        for (k, (_, count)) in h.buckets.iter_mut().enumerate() {
            *count = n(12 + k);
        }
    }
}

/// Columns of [`files_query`]'s row: 12 integers, the histogram sum, one count per bound.
pub(super) const FILES_COLUMNS: usize = 13 + PROCESSING_BUCKETS.len();

/// The SQL of a histogram over one value per row (both backends): `COUNT(v)`,
/// `COALESCE(SUM(v), 0.0)`, then one `COUNT` per bound of `bounds`, over
/// `SELECT {value} AS v FROM {from}`. Read the row with [`histogram_from_row`].
pub(super) fn histogram_query(value: &str, from: &str, bounds: &[f64]) -> String {
    let mut q = String::from("SELECT COUNT(v), COALESCE(SUM(v), 0.0)");
    for b in bounds {
        q.push_str(&format!(", COUNT(*) FILTER (WHERE v <= {b:?})"));
    }
    q.push_str(&format!(" FROM (SELECT {value} AS v FROM {from}) h"));
    q
}

/// The histogram of a [`histogram_query`] row, given its count (column 0), its sum
/// (column 1) and its cumulative bucket counts (columns 2..).
pub(super) fn histogram_from_row(
    bounds: &[f64],
    count: i64,
    sum: f64,
    buckets: &[i64],
) -> Histogram {
    let mut h = Histogram::with_bounds(bounds);
    h.count = count.max(0) as u64;
    h.sum = sum;
    for ((_, n), got) in h.buckets.iter_mut().zip(buckets) {
        *n = (*got).max(0) as u64;
    }
    h
}

/// The [`histogram_query`] of the per-file rejected share; `as_float` is the backend's
/// cast of an integer column to a 64-bit float (the division is then the same IEEE one
/// as `Tally::reject_share`, so a file at exactly a bound lands as the pipeline judged it).
///
/// A query of its own rather than more columns of [`files_query`]: measured on 10,000
/// files with SQLite, the separate scan adds about 14 ms to the catalog read, the same
/// aggregates folded into the files scan about 20 ms.
pub(super) fn reject_share_query(as_float: fn(&str) -> String) -> String {
    histogram_query(
        &format!("{} / rows_read", as_float("rows_rejected")),
        "files WHERE status <> 'landing' AND rows_read > 0",
        REJECT_SHARE_BUCKETS,
    )
}

/// Exact decimal addition of texts such as `25.00`, `-3`, `1.234` of any scale, for
/// summing per-file amounts that may carry different scales (SQLite stores text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct DecimalSum {
    /// The sum in units of 10^-scale.
    units: i128,
    scale: u32,
    /// A text that did not parse or a sum beyond 128 bits: the sum is unknown.
    broken: bool,
}

impl DecimalSum {
    /// Adds one decimal text.
    pub(super) fn add(&mut self, text: &str) {
        let text = text.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            self.broken = true;
            return;
        }
        let scale = frac.len() as u32;
        let Ok(mut value) = format!("{int}{frac}").parse::<i128>() else {
            self.broken = true;
            return;
        };
        if negative {
            value = -value;
        }
        self.add_minor(value, scale);
    }

    /// Adds `units` of 10^-`scale`.
    pub(super) fn add_minor(&mut self, units: i128, scale: u32) {
        let (a, b) = if scale > self.scale {
            (self.rescaled(scale), Some(units))
        } else {
            (
                Some(self.units),
                10i128
                    .checked_pow(self.scale - scale)
                    .and_then(|p| units.checked_mul(p)),
            )
        };
        match (a, b) {
            (Some(a), Some(b)) if a.checked_add(b).is_some() => {
                self.units = a + b;
                self.scale = self.scale.max(scale);
            }
            _ => self.broken = true,
        }
    }

    fn rescaled(&self, scale: u32) -> Option<i128> {
        self.units
            .checked_mul(10i128.checked_pow(scale - self.scale)?)
    }

    /// The sum as decimal text at the largest scale added; `None` when it is unknown.
    pub(super) fn text(&self) -> Option<String> {
        if self.broken {
            return None;
        }
        if self.scale == 0 {
            return Some(self.units.to_string());
        }
        let p = 10u128.pow(self.scale);
        let abs = self.units.unsigned_abs();
        Some(format!(
            "{}{}.{:0width$}",
            if self.units < 0 { "-" } else { "" },
            abs / p,
            abs % p,
            width = self.scale as usize
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_sums_are_exact_across_scales() {
        let mut s = DecimalSum::default();
        for t in ["25.00", "0.05", "100", "1.234", "-2.5"] {
            s.add(t);
        }
        assert_eq!(s.text().as_deref(), Some("123.784"));
        let mut s = DecimalSum::default();
        s.add("0.10");
        s.add("0.20");
        assert_eq!(s.text().as_deref(), Some("0.30"));
        let mut s = DecimalSum::default();
        s.add("-0.5");
        assert_eq!(s.text().as_deref(), Some("-0.5"));
        s.add_minor(125, 2);
        assert_eq!(s.text().as_deref(), Some("0.75"));
        s.add("x");
        assert_eq!(s.text(), None);
    }

    #[test]
    fn a_histogram_query_counts_each_bound_cumulatively() {
        let q = histogram_query("x", "t", &[0.05, 1.0]);
        assert_eq!(
            q,
            "SELECT COUNT(v), COALESCE(SUM(v), 0.0), COUNT(*) FILTER (WHERE v <= 0.05), \
             COUNT(*) FILTER (WHERE v <= 1.0) FROM (SELECT x AS v FROM t) h"
        );
        let h = histogram_from_row(&[0.05, 1.0], 3, 0.6, &[2, 3]);
        assert_eq!((h.count, h.sum), (3, 0.6));
        assert_eq!(h.buckets, vec![(0.05, 2), (1.0, 3)]);
        assert!(REJECT_SHARE_BUCKETS.contains(&crate::config::DEFAULT_MAX_REJECT_SHARE));
    }

    #[test]
    fn the_files_query_counts_each_bound() {
        let q = files_query("0.5");
        assert!(q.contains("FILTER (WHERE d <= 0.1)"), "{q}");
        assert!(q.contains("FILTER (WHERE d <= 3600.0)"), "{q}");
        assert_eq!(q.matches("COUNT(").count() + 5, FILES_COLUMNS, "{q}");
    }
}
