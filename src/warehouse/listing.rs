//! Paged reads of the catalog for `serve`'s read API (issue #11): runs newest first,
//! rejected rows in a stable order that a cursor can resume, and the exported quarters.
//! Each backend's half lives in `sqlite/listing.rs` and `postgres/listing.rs`; files are
//! paged by [`Warehouse::files_matching`] (a [`FileFilter`](super::FileFilter) with
//! `after` and `limit`).
//!
//! # Rejected rows: order and resumption
//!
//! `rejected_rows` has no unique key: several records of a compact JSON array share a
//! line, so `(file_id, line_no)` repeats. Rows are listed by `file_id`, `line_no`, then
//! by their visible columns (`rule`, `field`, `detail`, and `raw` when the session may
//! read it), a total order over what a reader can tell apart. A page ends at a
//! [`RejectKey`]: the last `(file_id, line_no)` listed and how many rows of that line
//! were listed so far. The next page reads the rest of that line (`OFFSET` that many,
//! within the line only), then the lines after it. Rows identical in every visible
//! column are interchangeable, so an offset among them is exact. A line usually holds
//! one record; a one-line JSON array costs a scan of its rows already listed, per page.
//!
//! Filtered by file, a page walks the `(file_id, line_no)` index from its position. By
//! rule alone, it walks `(rule, file_id, line_no)` (migration 0014) from its position:
//! before that index each page sorted every row of the rule after its position, 2.4 s a
//! page for a rule of 900,000 rows on SQLite (`bench/api_rejects.py`).
//!
//! No schema change and no role grant is needed (the `bankpipe_reader` role reads no
//! system column such as `ctid`), and a `VACUUM` does not move a cursor. A reprocess
//! between two pages replaces a file's rows: the listing then shows that file as it is.
//!
//! # Exported quarters
//!
//! The `exports` table arrives with the export work (migration 0011). Until a warehouse
//! has it, [`Warehouse::exported_quarters`] answers an empty list rather than an error.

use serde::Serialize;

use super::{RejectEntry, Result, RunEntry, Warehouse};

/// One row of `runs`, as the read API lists it: the fields of `status --json`'s
/// `recent_runs`, plus where it ran and its counts.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Id, start, end and status (as in `bankpipe status --json`).
    #[serde(flatten)]
    pub run: RunEntry,
    /// Host that ran it.
    pub host: Option<String>,
    /// Its process id there.
    pub pid: Option<i64>,
    /// What the run recorded when it finished (`files`, `loaded`, `failed`,
    /// `rows_loaded`, ...); `None` while running or for a run that died.
    pub counts: Option<serde_json::Value>,
}

/// Where a page of rejected rows ends, for the next page to resume at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectKey {
    /// File id of the last row listed.
    pub file_id: i64,
    /// Its line.
    pub line_no: i64,
    /// How many rows of that `(file_id, line_no)` were listed up to here (at least 1).
    pub listed: u64,
}

/// What [`Warehouse::rejects_page`] reads.
#[derive(Debug, Clone, Default)]
pub struct RejectQuery {
    /// Only this file.
    pub file_id: Option<i64>,
    /// Only this rule.
    pub rule: Option<String>,
    /// Resume after this key (`None`: from the start).
    pub after: Option<RejectKey>,
    /// At most this many rows.
    pub limit: u64,
    /// Read the raw text (when the session may). Without it, or when the session may
    /// not ([`Warehouse::can_read_raw`]), `raw` is `None`.
    pub with_raw: bool,
}

/// One rejected row of a page.
#[derive(Debug, Clone)]
pub struct PagedReject {
    /// The row as `bankpipe rejects` prints it (`raw` empty when not read).
    pub entry: RejectEntry,
    /// Whether `entry.raw` holds the raw text.
    pub raw_read: bool,
}

/// A page of rejected rows.
#[derive(Debug, Clone)]
pub struct RejectPage {
    /// The rows, in listing order.
    pub rows: Vec<PagedReject>,
    /// Where the next page starts; `None` when this one is the last.
    pub next: Option<RejectKey>,
}

/// One row of `exports` (schema 11): a version of a quarter written to a destination.
/// The same fields as `bankpipe status --json`'s `exports` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportedQuarter {
    /// e.g. `2016Q3`.
    pub quarter: String,
    /// The version.
    pub version: String,
    /// When it was written.
    pub created_at: String,
    /// The destination URL (any password removed).
    pub destination: String,
    /// Transactions in the quarter.
    pub rows: u64,
    /// Their exact sum.
    pub amount_sum: String,
    /// A month of the quarter had no transaction.
    pub partial: bool,
    /// Features the drift check flagged against the previous quarter.
    pub flagged_features: Vec<String>,
}

/// One row as a backend reads it, before paging decides where the page ends.
#[derive(Debug)]
pub(super) struct RawReject {
    pub(super) entry: RejectEntry,
    pub(super) raw_read: bool,
}

/// Which rows a backend's `rejects_from` reads, in listing order.
#[derive(Debug, Clone, Copy)]
pub(super) enum Span {
    /// From the first row.
    All,
    /// Rows of this `(file_id, line_no)` only, past the first `offset`.
    Line {
        /// File id.
        file_id: i64,
        /// Line.
        line_no: i64,
        /// Rows of the line to pass over.
        offset: u64,
    },
    /// Rows of the lines after this `(file_id, line_no)`.
    After {
        /// File id.
        file_id: i64,
        /// Line.
        line_no: i64,
    },
}

impl Warehouse {
    /// Runs, newest first (run ids are UUIDv7: their order is their start order), after
    /// `before` (a run id) when given, at most `limit`.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn runs_page(&mut self, before: Option<&str>, limit: u64) -> Result<Vec<RunRecord>> {
        match self {
            Warehouse::Sqlite(w) => w.runs_page(before, limit),
            Warehouse::Postgres(w) => w.runs_page(before, limit),
        }
    }

    /// A page of rejected rows in the order the module doc describes, and where the next
    /// page starts.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn rejects_page(&mut self, query: &RejectQuery) -> Result<RejectPage> {
        // One row more than asked tells whether another page follows.
        let wanted = query.limit.saturating_add(1);
        let mut rows = Vec::new();
        let spans = match query.after {
            None => vec![Span::All],
            Some(k) => vec![
                Span::Line {
                    file_id: k.file_id,
                    line_no: k.line_no,
                    offset: k.listed,
                },
                Span::After {
                    file_id: k.file_id,
                    line_no: k.line_no,
                },
            ],
        };
        for span in spans {
            let left = wanted - rows.len() as u64;
            if left == 0 {
                break;
            }
            rows.extend(match self {
                Warehouse::Sqlite(w) => w.rejects_from(query, span, left)?,
                Warehouse::Postgres(w) => w.rejects_from(query, span, left)?,
            });
        }
        Ok(page(rows, query.after, query.limit))
    }

    /// Every exported quarter version, by quarter then time; empty when the warehouse
    /// has no `exports` table yet (schema 11 comes with the export work).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn exported_quarters(&mut self) -> Result<Vec<ExportedQuarter>> {
        let mut quarters = match self {
            Warehouse::Sqlite(w) => w.exported_quarters()?,
            Warehouse::Postgres(w) => w.exported_quarters()?,
        };
        for q in &mut quarters {
            q.destination = crate::redact::redact_url(&q.destination);
        }
        Ok(quarters)
    }
}

/// Cuts a page of `limit` rows from `rows` (read from `after` on, in listing order) and
/// says where the next page starts: after the last row kept, counting the rows of its
/// line listed so far (on earlier pages too, when it is `after`'s line).
fn page(mut rows: Vec<RawReject>, after: Option<RejectKey>, limit: u64) -> RejectPage {
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let mut key = after;
    for row in &rows {
        let (file_id, line_no) = (row.entry.file_id, row.entry.line_no as i64);
        key = Some(match key {
            Some(k) if k.file_id == file_id && k.line_no == line_no => RejectKey {
                listed: k.listed + 1,
                ..k
            },
            _ => RejectKey {
                file_id,
                line_no,
                listed: 1,
            },
        });
    }
    RejectPage {
        rows: rows
            .into_iter()
            .map(|r| PagedReject {
                entry: r.entry,
                raw_read: r.raw_read,
            })
            .collect(),
        next: if more { key } else { None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(file_id: i64, line_no: u64, rule: &str) -> RawReject {
        RawReject {
            entry: RejectEntry {
                file_id,
                file: "f.csv".into(),
                line_no,
                rule: rule.into(),
                field: None,
                detail: None,
                raw: String::new(),
            },
            raw_read: false,
        }
    }

    fn key(file_id: i64, line_no: i64, listed: u64) -> RejectKey {
        RejectKey {
            file_id,
            line_no,
            listed,
        }
    }

    #[test]
    fn a_page_ends_with_a_key_only_when_more_rows_follow() {
        let p = page(vec![raw(1, 2, "a"), raw(1, 3, "a")], None, 2);
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.next, None);
        let p = page(
            vec![raw(1, 2, "a"), raw(1, 3, "a"), raw(2, 2, "a")],
            None,
            2,
        );
        assert_eq!(p.next, Some(key(1, 3, 1)));
    }

    #[test]
    fn rows_sharing_a_line_are_counted_across_pages() {
        // Line 1 of file 7 holds three records: pages of one, as the backend would
        // read them (the rest of the cursor's line, then the lines after it).
        let p1 = page(vec![raw(7, 1, "a"), raw(7, 1, "b")], None, 1);
        assert_eq!(p1.next, Some(key(7, 1, 1)));
        let p2 = page(vec![raw(7, 1, "b"), raw(7, 1, "c")], p1.next, 1);
        assert_eq!(p2.next, Some(key(7, 1, 2)));
        let p3 = page(vec![raw(7, 1, "c"), raw(7, 2, "a")], p2.next, 1);
        assert_eq!(p3.next, Some(key(7, 1, 3)));
        let p4 = page(vec![raw(7, 2, "a")], p3.next, 1);
        assert_eq!(p4.next, None);
        let p = page(
            vec![raw(7, 1, "c"), raw(7, 2, "a"), raw(8, 1, "a")],
            p2.next,
            2,
        );
        assert_eq!(p.next, Some(key(7, 2, 1)));
    }
}
