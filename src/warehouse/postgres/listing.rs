//! The read API's paged reads on PostgreSQL (see [`crate::warehouse::listing`]). Each
//! query names only the parameters its filters use (the server must infer each
//! parameter's type), and orders rejected rows by `raw` only when this role may read
//! it (`bankpipe_reader` may not).

use postgres::types::ToSql;

use super::{PgWarehouse, pg, ts};
use crate::warehouse::listing::{ExportedQuarter, RawReject, RejectQuery, RunRecord, Span};
use crate::warehouse::{RejectEntry, Result, RunEntry};

impl PgWarehouse {
    pub(in crate::warehouse) fn runs_page(
        &mut self,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<RunRecord>> {
        let limit = clamp(limit);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit];
        if let Some(b) = &before {
            params.push(b);
        }
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT run_id, {}, {}, status, host, pid, counts::text FROM runs
                     {} ORDER BY run_id DESC LIMIT $1",
                    ts("started_at"),
                    ts("finished_at"),
                    if before.is_some() {
                        "WHERE run_id < $2"
                    } else {
                        ""
                    }
                ),
                &params,
            )
            .map_err(pg("listing runs"))?;
        Ok(rows
            .iter()
            .map(|r| RunRecord {
                run: RunEntry {
                    run_id: r.get(0),
                    started_at: r.get(1),
                    finished_at: r.get(2),
                    status: r.get(3),
                },
                host: r.get(4),
                pid: r.get::<_, Option<i32>>(5).map(i64::from),
                counts: r
                    .get::<_, Option<String>>(6)
                    .and_then(|c| serde_json::from_str(&c).ok()),
            })
            .collect())
    }

    pub(in crate::warehouse) fn rejects_from(
        &mut self,
        query: &RejectQuery,
        span: Span,
        limit: u64,
    ) -> Result<Vec<RawReject>> {
        let readable = self.can_read_raw()?;
        let limit = clamp(limit);
        let (line, offset) = match span {
            Span::All => (None, 0),
            Span::Line {
                file_id,
                line_no,
                offset,
            } => (Some((file_id, line_no, "=")), clamp(offset)),
            Span::After { file_id, line_no } => (Some((file_id, line_no, ">")), 0),
        };
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit, &offset];
        let mut clauses = Vec::new();
        if let Some(id) = &query.file_id {
            params.push(id);
            clauses.push(format!("r.file_id = ${}", params.len()));
        }
        if let Some(rule) = &query.rule {
            params.push(rule);
            clauses.push(format!("r.rule = ${}", params.len()));
        }
        if let Some((file_id, line_no, op)) = &line {
            params.push(file_id);
            params.push(line_no);
            clauses.push(format!(
                "(r.file_id, r.line_no) {op} (${}, ${})",
                params.len() - 1,
                params.len()
            ));
        }
        let q = format!(
            "SELECT r.file_id, f.original_name, r.line_no, r.rule, r.field, r.detail, {raw}
             FROM rejected_rows r JOIN files f ON f.file_id = r.file_id
             {where_} ORDER BY r.file_id, r.line_no, r.rule, r.field, r.detail{order_raw}
             LIMIT $1 OFFSET $2",
            raw = if query.with_raw && readable {
                "r.raw"
            } else {
                "NULL::text"
            },
            where_ = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            },
            order_raw = if readable { ", r.raw" } else { "" },
        );
        let rows = self
            .client
            .query(&q, &params)
            .map_err(pg("listing rejects"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let raw: Option<String> = r.get(6);
                RawReject {
                    raw_read: raw.is_some(),
                    entry: RejectEntry {
                        file_id: r.get(0),
                        file: r.get(1),
                        line_no: r.get::<_, i64>(2).max(0) as u64,
                        rule: r.get(3),
                        field: r.get(4),
                        detail: r.get(5),
                        raw: raw.unwrap_or_default(),
                    },
                }
            })
            .collect())
    }

    pub(in crate::warehouse) fn exported_quarters(&mut self) -> Result<Vec<ExportedQuarter>> {
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass('exports') IS NOT NULL", &[])
            .map_err(pg("listing exports"))?
            .get(0);
        if !exists {
            return Ok(Vec::new());
        }
        let rows = self
            .client
            .query(
                "SELECT quarter, version, created_at, destination, rows, amount_sum::text, partial,
                        flagged_features
                 FROM exports ORDER BY quarter, created_at",
                &[],
            )
            .map_err(pg("listing exports"))?;
        Ok(rows
            .iter()
            .map(|r| ExportedQuarter {
                quarter: r.get(0),
                version: r.get(1),
                created_at: r.get(2),
                destination: r.get(3),
                rows: r.get::<_, i64>(4).max(0) as u64,
                amount_sum: r.get(5),
                partial: r.get(6),
                flagged_features: r.get(7),
            })
            .collect())
    }
}

/// A row count as PostgreSQL's `LIMIT` takes it.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
