//! The read API's paged reads on SQLite (see [`crate::warehouse::listing`]). Each query
//! is built for the filters given, so that SQLite walks the index that matches them
//! (`rejected_rows (file_id, line_no)` or `(rule, file_id, line_no)`, the `runs`
//! primary key) instead of testing an `? IS NULL OR …` on every row.

use rusqlite::params;
use rusqlite::types::ValueRef;

use super::{SqliteWarehouse, sql};
use crate::warehouse::listing::{ExportedQuarter, RawReject, RejectQuery, RunRecord, Span};
use crate::warehouse::{RejectEntry, Result, RunEntry};

impl SqliteWarehouse {
    pub(in crate::warehouse) fn runs_page(
        &mut self,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<RunRecord>> {
        let q = format!(
            "SELECT run_id, started_at, finished_at, status, host, pid, counts FROM runs
             {} ORDER BY run_id DESC LIMIT ?2",
            if before.is_some() {
                "WHERE run_id < ?1"
            } else {
                ""
            }
        );
        let mut stmt = self.conn.prepare_cached(&q).map_err(sql("listing runs"))?;
        let rows = stmt
            .query_map(params![before, clamp(limit)], |r| {
                let counts: Option<String> = r.get(6)?;
                Ok(RunRecord {
                    run: RunEntry {
                        run_id: r.get(0)?,
                        started_at: r.get(1)?,
                        finished_at: r.get(2)?,
                        status: r.get(3)?,
                    },
                    host: r.get(4)?,
                    pid: r.get(5)?,
                    counts: counts.and_then(|c| serde_json::from_str(&c).ok()),
                })
            })
            .map_err(sql("listing runs"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(sql("listing runs"))
    }

    pub(in crate::warehouse) fn rejects_from(
        &mut self,
        query: &RejectQuery,
        span: Span,
        limit: u64,
    ) -> Result<Vec<RawReject>> {
        let mut clauses = Vec::new();
        if query.file_id.is_some() {
            clauses.push("r.file_id = ?1");
        }
        match (query.file_id, &query.rule) {
            // A file's rows are few: walk them by line (`(file_id, line_no)` index) and
            // test the rule on each. Left to itself SQLite takes the rule's index from
            // the position instead, and reads on to the rule's last file when the file
            // has no more rows of it: a scan of every later file on the last page.
            (Some(_), Some(_)) => clauses.push("+r.rule = ?2"),
            // Rule alone: `(rule, file_id, line_no)` (migration 0014), walked from the
            // position in the listing's order; a page reads its own rows only.
            (None, Some(_)) => clauses.push("r.rule = ?2"),
            (_, None) => {}
        }
        let (line, offset) = match span {
            Span::All => (None, 0),
            Span::Line {
                file_id,
                line_no,
                offset,
            } => {
                clauses.push("r.file_id = ?3 AND r.line_no = ?4");
                (Some((file_id, line_no)), offset)
            }
            Span::After { file_id, line_no } => {
                clauses.push("(r.file_id, r.line_no) > (?3, ?4)");
                (Some((file_id, line_no)), 0)
            }
        };
        let q = format!(
            "SELECT r.file_id, f.original_name, r.line_no, r.rule, r.field, r.detail, {raw}
             FROM rejected_rows r JOIN files f ON f.file_id = r.file_id
             {where_} ORDER BY r.file_id, r.line_no, r.rule, r.field, r.detail, r.raw
             LIMIT ?5 OFFSET ?6",
            raw = if query.with_raw { "r.raw" } else { "NULL" },
            where_ = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            }
        );
        let mut stmt = self
            .conn
            .prepare_cached(&q)
            .map_err(sql("listing rejects"))?;
        let rows = stmt
            .query_map(
                params![
                    query.file_id,
                    query.rule,
                    line.map(|l| l.0),
                    line.map(|l| l.1),
                    clamp(limit),
                    clamp(offset),
                ],
                |r| {
                    let raw = match r.get_ref(6)? {
                        ValueRef::Text(t) | ValueRef::Blob(t) => {
                            Some(String::from_utf8_lossy(t).into_owned())
                        }
                        _ => None,
                    };
                    Ok(RawReject {
                        raw_read: raw.is_some(),
                        entry: RejectEntry {
                            file_id: r.get(0)?,
                            file: r.get(1)?,
                            line_no: r.get::<_, i64>(2)?.max(0) as u64,
                            rule: r.get(3)?,
                            field: r.get(4)?,
                            detail: r.get(5)?,
                            raw: raw.unwrap_or_default(),
                        },
                    })
                },
            )
            .map_err(sql("listing rejects"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(sql("listing rejects"))
    }

    pub(in crate::warehouse) fn exported_quarters(&mut self) -> Result<Vec<ExportedQuarter>> {
        let exists: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'exports')",
                [],
                |r| r.get(0),
            )
            .map_err(sql("listing exports"))?;
        if !exists {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT quarter, version, created_at, destination, rows, amount_sum, partial,
                        flagged_features
                 FROM exports ORDER BY quarter, created_at",
            )
            .map_err(sql("listing exports"))?;
        let rows = stmt
            .query_map([], |r| {
                let flagged: String = r.get(7)?;
                let flagged_features = serde_json::from_str(&flagged).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        7,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?;
                Ok(ExportedQuarter {
                    quarter: r.get(0)?,
                    version: r.get(1)?,
                    created_at: r.get(2)?,
                    destination: r.get(3)?,
                    rows: r.get::<_, i64>(4)?.max(0) as u64,
                    amount_sum: r.get(5)?,
                    partial: r.get(6)?,
                    flagged_features,
                })
            })
            .map_err(sql("listing exports"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(sql("listing exports"))
    }
}

/// A row count as SQLite's `LIMIT` takes it.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
