//! The PostgreSQL side of `bankpipe export` (see `warehouse::quarters`). Rows leave the
//! server as the texts the SQLite schema stores (`to_char` timestamps and dates,
//! `numeric::text` at the stored scale), so the export computes the same bytes from
//! either backend. The scans use the BRIN index on `transaction_at` where it helps.

use std::io::Write;
use std::ops::ControlFlow;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;

use super::{PgWarehouse, pg};
use crate::model::Total;
use crate::warehouse::quarters::{
    CustomerRows, ExportEntry, ExportRow, QuarterDay, QuarterInputs, ScaleTotal,
};
use crate::warehouse::{Result, WarehouseError};

/// One field of a `COPY … FROM STDIN` text-format row.
fn field(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.extend_from_slice(b"\\N"),
        Some(v) => {
            for b in v.bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    _ => out.push(b),
                }
            }
        }
    }
}

fn row(out: &mut Vec<u8>, fields: &[Option<&str>]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        field(out, *f);
    }
    out.push(b'\n');
}

impl PgWarehouse {
    pub(in crate::warehouse) fn begin_snapshot(&mut self) -> Result<()> {
        self.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(pg("starting the export's read transaction"))
    }

    pub(in crate::warehouse) fn end_snapshot(&mut self) -> Result<()> {
        self.client
            .batch_execute("COMMIT")
            .map_err(pg("ending the export's read transaction"))
    }

    pub(in crate::warehouse) fn months_with_data(&mut self) -> Result<Vec<(String, u64)>> {
        const CONTEXT: &str = "listing months with transactions";
        let rows = self
            .client
            .query(
                "SELECT to_char(transaction_at, 'YYYY-MM'), COUNT(*) FROM transactions
                 GROUP BY 1 ORDER BY 1",
                &[],
            )
            .map_err(pg(CONTEXT))?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    pub(in crate::warehouse) fn quarter_inputs(
        &mut self,
        start: &str,
        end: &str,
    ) -> Result<QuarterInputs> {
        const CONTEXT: &str = "reading the quarter's inputs";
        let groups = self
            .client
            .query(
                "SELECT file_id,
                        CASE WHEN transaction_at >= $1::text::timestamp
                             THEN to_char(transaction_at, 'YYYY-MM') END,
                        scale(amount), currency, COUNT(*)
                 FROM transactions WHERE transaction_at < $2::text::timestamp
                 GROUP BY 1, 2, 3, 4",
                &[&start, &end],
            )
            .map_err(pg(CONTEXT))?;
        let groups = groups.iter().map(|g| {
            let (file_id, month, scale, currency, rows): (i64, Option<String>, i32, String, i64) =
                (g.get(0), g.get(1), g.get(2), g.get(3), g.get(4));
            (file_id, month, i64::from(scale), currency, rows as u64)
        });
        let catalog = self.files(&crate::warehouse::FileFilter::default())?;
        Ok(QuarterInputs::from_groups(groups, catalog))
    }

    pub(in crate::warehouse) fn quarter_control(
        &mut self,
        start: &str,
        end: &str,
        scales: &[u8],
    ) -> Result<Vec<ScaleTotal>> {
        const CONTEXT: &str = "summing the quarter's amounts";
        let rows = self
            .client
            .query(
                "SELECT scale(amount), COUNT(*), SUM(amount)::text FROM transactions
                 WHERE transaction_at >= $1::text::timestamp AND transaction_at < $2::text::timestamp
                 GROUP BY 1",
                &[&start, &end],
            )
            .map_err(pg(CONTEXT))?;
        let mut totals = Vec::new();
        for r in &rows {
            let scale = u8::try_from(r.get::<_, i32>(0)).unwrap_or(u8::MAX);
            if !scales.contains(&scale) {
                continue;
            }
            let text: String = r.get(2);
            let sum = Total::parse(&text, scale).ok_or_else(|| {
                WarehouseError::ControlTotals(format!("the quarter's sum {text:?} does not parse"))
            })?;
            totals.push(ScaleTotal {
                scale,
                rows: r.get::<_, i64>(1) as u64,
                sum,
            });
        }
        totals.sort_by_key(|t| t.scale);
        Ok(totals)
    }

    pub(in crate::warehouse) fn export_rows(
        &mut self,
        end: &str,
        each: &mut dyn FnMut(&ExportRow<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        const CONTEXT: &str = "reading transactions for the export";
        let params: [&(dyn ToSql + Sync); 1] = [&end];
        let mut rows = self
            .client
            .query_raw(
                "SELECT transaction_id, customer_id, to_char(customer_dob, 'YYYY-MM-DD'), gender,
                        location, account_balance::text,
                        to_char(transaction_at, 'YYYY-MM-DD HH24:MI:SS'), amount::text
                 FROM transactions WHERE transaction_at < $1::text::timestamp",
                params,
            )
            .map_err(pg(CONTEXT))?;
        while let Some(r) = rows.next().map_err(pg(CONTEXT))? {
            let row = ExportRow {
                transaction_id: r.get(0),
                customer_id: r.get(1),
                customer_dob: r.get(2),
                gender: r.get(3),
                location: r.get(4),
                account_balance: r.get(5),
                transaction_at: r.get(6),
                amount: r.get(7),
            };
            if each(&row).is_break() {
                break;
            }
        }
        Ok(())
    }

    pub(in crate::warehouse) fn replace_quarter(
        &mut self,
        customers: &mut CustomerRows<'_>,
        days: &[QuarterDay],
        entry: &ExportEntry,
    ) -> Result<()> {
        const CONTEXT: &str = "writing the quarter tables";
        let q = entry.quarter.as_str();
        let mut tx = self.client.transaction().map_err(pg(CONTEXT))?;
        tx.execute("DELETE FROM quarter_customers WHERE quarter = $1", &[&q])
            .map_err(pg(CONTEXT))?;
        tx.execute("DELETE FROM quarter_daily WHERE quarter = $1", &[&q])
            .map_err(pg(CONTEXT))?;
        let mut writer = tx
            .copy_in(
                "COPY quarter_customers (quarter, customer_id, txn_count, amount_sum, amount_mean,
                    amount_min, amount_max, amount_std, first_txn_at, last_txn_at, recency_days,
                    active_days, distinct_locations, home_location, gender, age_years,
                    balance_last, night_share, weekend_share, prior_txn_count, tenure_days)
                 FROM STDIN",
            )
            .map_err(pg(CONTEXT))?;
        let mut buf = Vec::with_capacity(1 << 16);
        let io = |e: std::io::Error| WarehouseError::Source(format!("{CONTEXT}: {e}"));
        for c in customers {
            let c = c.map_err(WarehouseError::Source)?;
            let n = |v: i64| v.to_string();
            let f = |v: f64| v.to_string();
            row(
                &mut buf,
                &[
                    Some(q),
                    Some(&c.customer_id),
                    Some(&n(c.txn_count)),
                    Some(&c.amount_sum),
                    Some(&f(c.amount_mean)),
                    Some(&c.amount_min),
                    Some(&c.amount_max),
                    c.amount_std.map(f).as_deref(),
                    Some(&c.first_txn_at),
                    Some(&c.last_txn_at),
                    Some(&n(c.recency_days.into())),
                    Some(&n(c.active_days.into())),
                    Some(&n(c.distinct_locations.into())),
                    c.home_location.as_deref(),
                    c.gender.as_deref(),
                    c.age_years.map(|a| n(a.into())).as_deref(),
                    c.balance_last.as_deref(),
                    Some(&f(c.night_share)),
                    Some(&f(c.weekend_share)),
                    Some(&n(c.prior_txn_count)),
                    Some(&n(c.tenure_days.into())),
                ],
            );
            if buf.len() > 1 << 16 {
                writer.write_all(&buf).map_err(io)?;
                buf.clear();
            }
        }
        writer.write_all(&buf).map_err(io)?;
        writer.finish().map_err(pg(CONTEXT))?;
        let insert = tx
            .prepare(
                "INSERT INTO quarter_daily (quarter, date, txn_count, amount_sum, amount_mean,
                    amount_p50, amount_p95, unique_customers, new_customers)
                 VALUES ($1, $2::text::date, $3, $4::text::numeric, $5, $6, $7, $8, $9)",
            )
            .map_err(pg(CONTEXT))?;
        for d in days {
            tx.execute(
                &insert,
                &[
                    &q,
                    &d.date,
                    &d.txn_count,
                    &d.amount_sum,
                    &d.amount_mean,
                    &d.amount_p50,
                    &d.amount_p95,
                    &d.unique_customers,
                    &d.new_customers,
                ],
            )
            .map_err(pg(CONTEXT))?;
        }
        tx.execute(
            "INSERT INTO exports (quarter, version, destination, created_at, rows, amount_sum,
                partial, flagged_features)
             VALUES ($1, $2, $3, $4, $5, $6::text::numeric, $7, $8)
             ON CONFLICT (quarter, version, destination) DO UPDATE SET
                created_at = excluded.created_at, rows = excluded.rows,
                amount_sum = excluded.amount_sum, partial = excluded.partial,
                flagged_features = excluded.flagged_features",
            &[
                &q,
                &entry.version,
                &entry.destination,
                &entry.created_at,
                &(entry.rows as i64),
                &entry.amount_sum,
                &entry.partial,
                &entry.flagged_features,
            ],
        )
        .map_err(pg(CONTEXT))?;
        tx.commit().map_err(pg(CONTEXT))
    }

    pub(in crate::warehouse) fn exports(&mut self) -> Result<Vec<ExportEntry>> {
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
            .map(|r| ExportEntry {
                quarter: r.get(0),
                version: r.get(1),
                created_at: r.get(2),
                destination: r.get(3),
                rows: r.get::<_, i64>(4) as u64,
                amount_sum: r.get(5),
                partial: r.get(6),
                flagged_features: r.get(7),
            })
            .collect())
    }
}
