//! The SQLite side of `bankpipe export` (see `warehouse::quarters`). No index helps
//! here: `transactions` has none on `transaction_at`, and every statement below is one
//! scan in rowid order (the fastest read SQLite has); the export orders rows itself.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use rusqlite::params;
use rusqlite::types::ValueRef;

use super::{SqliteWarehouse, exact_sum, sql};
use crate::warehouse::quarters::{
    CustomerRows, ExportEntry, ExportRow, QuarterCustomer, QuarterDay, QuarterInputs, ScaleTotal,
};
use crate::warehouse::{Result, WarehouseError};

/// Digits after the point of a stored amount text.
const SCALE_OF_AMOUNT: &str =
    "CASE WHEN instr(amount, '.') = 0 THEN 0 ELSE length(amount) - instr(amount, '.') END";

/// Rows of `quarter_customers` per `INSERT` (21 parameters each).
const ROWS_PER_INSERT: usize = 32;

/// Columns of `quarter_customers`.
const CUSTOMER_COLUMNS: usize = 21;

/// `INSERT INTO quarter_customers … VALUES (…), (…)` for `rows` rows.
fn customer_insert(rows: usize) -> String {
    let one = format!("({})", vec!["?"; CUSTOMER_COLUMNS].join(", "));
    format!(
        "INSERT INTO quarter_customers (quarter, customer_id, txn_count, amount_sum,
            amount_mean, amount_min, amount_max, amount_std, first_txn_at, last_txn_at,
            recency_days, active_days, distinct_locations, home_location, gender,
            age_years, balance_last, night_share, weekend_share, prior_txn_count,
            tenure_days)
         VALUES {}",
        vec![one; rows].join(", ")
    )
}

/// Binds one customer's 21 values after the first `offset` parameters.
fn bind_customer(
    stmt: &mut rusqlite::Statement<'_>,
    offset: usize,
    quarter: &str,
    c: &QuarterCustomer,
) -> rusqlite::Result<()> {
    let values: [&dyn rusqlite::ToSql; CUSTOMER_COLUMNS] = [
        &quarter,
        &c.customer_id.as_str(),
        &c.txn_count,
        &c.amount_sum.as_str(),
        &c.amount_mean,
        &c.amount_min.as_str(),
        &c.amount_max.as_str(),
        &c.amount_std,
        &c.first_txn_at.as_str(),
        &c.last_txn_at.as_str(),
        &c.recency_days,
        &c.active_days,
        &c.distinct_locations,
        &c.home_location.as_deref(),
        &c.gender.as_deref(),
        &c.age_years,
        &c.balance_last.as_deref(),
        &c.night_share,
        &c.weekend_share,
        &c.prior_txn_count,
        &c.tenure_days,
    ];
    for (i, v) in values.into_iter().enumerate() {
        stmt.raw_bind_parameter(offset + i + 1, v)?;
    }
    Ok(())
}

/// `(file_id, month of the quarter or none, amount scale, currency)`.
type Group = (i64, Option<String>, i64, String);

fn text(v: ValueRef<'_>) -> Option<&str> {
    match v {
        ValueRef::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    }
}

impl SqliteWarehouse {
    pub(in crate::warehouse) fn begin_snapshot(&mut self) -> Result<()> {
        // An export scans every row once: a large page cache buys nothing and counts
        // against its memory bound (the loader's connection keeps 64 MiB).
        self.conn
            .execute_batch("PRAGMA cache_size = -8192; BEGIN DEFERRED")
            .map_err(sql("starting the export's read transaction"))
    }

    pub(in crate::warehouse) fn end_snapshot(&mut self) -> Result<()> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(sql("ending the export's read transaction"))
    }

    /// Aggregated here rather than with `GROUP BY`: SQLite would sort every row to
    /// group them, in memory (`temp_store = MEMORY`), which a 10M-row warehouse cannot
    /// afford; one scan into a handful of groups costs nothing.
    pub(in crate::warehouse) fn months_with_data(&mut self) -> Result<Vec<(String, u64)>> {
        const CONTEXT: &str = "listing months with transactions";
        let mut stmt = self
            .conn
            .prepare("SELECT substr(transaction_at, 1, 7) FROM transactions")
            .map_err(sql(CONTEXT))?;
        let mut rows = stmt.query([]).map_err(sql(CONTEXT))?;
        let mut months: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(r) = rows.next().map_err(sql(CONTEXT))? {
            let month = r.get_ref(0).map(text).map_err(sql(CONTEXT))?.unwrap_or("");
            match months.get_mut(month) {
                Some(n) => *n += 1,
                None => {
                    months.insert(month.to_owned(), 1);
                }
            }
        }
        Ok(months.into_iter().collect())
    }

    pub(in crate::warehouse) fn quarter_inputs(
        &mut self,
        start: &str,
        end: &str,
    ) -> Result<QuarterInputs> {
        const CONTEXT: &str = "reading the quarter's inputs";
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT file_id,
                        CASE WHEN transaction_at >= ?1 THEN substr(transaction_at, 1, 7) END,
                        {SCALE_OF_AMOUNT}, currency
                 FROM transactions WHERE transaction_at < ?2"
            ))
            .map_err(sql(CONTEXT))?;
        let mut rows = stmt.query(params![start, end]).map_err(sql(CONTEXT))?;
        // (file, month in the quarter or none, scale, currency) → rows: a few groups,
        // searched without allocating; rows of one file come together (rowid order), so
        // the group of the row before is tried first.
        let mut groups: Vec<(Group, u64)> = Vec::new();
        let mut last = 0;
        while let Some(r) = rows.next().map_err(sql(CONTEXT))? {
            let file_id: i64 = r.get(0).map_err(sql(CONTEXT))?;
            let month = r.get_ref(1).map(text).map_err(sql(CONTEXT))?;
            let scale: i64 = r.get(2).map_err(sql(CONTEXT))?;
            let currency = r.get_ref(3).map(text).map_err(sql(CONTEXT))?.unwrap_or("");
            let is = |g: &Group| {
                g.0 == file_id && g.1.as_deref() == month && g.2 == scale && g.3 == currency
            };
            let found = match groups.get(last) {
                Some((g, _)) if is(g) => Some(last),
                _ => groups.iter().position(|(g, _)| is(g)),
            };
            last = found.unwrap_or_else(|| {
                let key = (
                    file_id,
                    month.map(str::to_owned),
                    scale,
                    currency.to_owned(),
                );
                groups.push((key, 0));
                groups.len() - 1
            });
            groups[last].1 += 1;
        }
        drop(rows);
        drop(stmt);
        let catalog = self.files(&crate::warehouse::FileFilter::default())?;
        Ok(QuarterInputs::from_groups(
            groups
                .into_iter()
                .map(|((file_id, month, scale, currency), rows)| {
                    (file_id, month, scale, currency, rows)
                }),
            catalog,
        ))
    }

    pub(in crate::warehouse) fn quarter_control(
        &mut self,
        start: &str,
        end: &str,
        scales: &[u8],
    ) -> Result<Vec<ScaleTotal>> {
        scales
            .iter()
            .map(|&scale| {
                let (rows, sum) = exact_sum(
                    &self.conn,
                    scale,
                    &format!(
                        "transactions WHERE transaction_at >= ?1 AND transaction_at < ?2
                         AND {SCALE_OF_AMOUNT} = ?3"
                    ),
                    params![start, end, scale],
                    "summing the quarter's amounts",
                )?;
                Ok(ScaleTotal { scale, rows, sum })
            })
            .collect()
    }

    pub(in crate::warehouse) fn export_rows(
        &mut self,
        end: &str,
        each: &mut dyn FnMut(&ExportRow<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        const CONTEXT: &str = "reading transactions for the export";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT transaction_id, customer_id, customer_dob, gender, location,
                        account_balance, transaction_at, amount
                 FROM transactions WHERE transaction_at < ?1",
            )
            .map_err(sql(CONTEXT))?;
        let mut rows = stmt.query([end]).map_err(sql(CONTEXT))?;
        while let Some(r) = rows.next().map_err(sql(CONTEXT))? {
            let v = |i: usize| r.get_ref(i).map(text).map_err(sql(CONTEXT));
            let row = ExportRow {
                transaction_id: v(0)?.unwrap_or_default(),
                customer_id: v(1)?.unwrap_or_default(),
                customer_dob: v(2)?,
                gender: v(3)?,
                location: v(4)?,
                account_balance: v(5)?,
                transaction_at: v(6)?,
                amount: v(7)?,
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
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(CONTEXT))?;
        let q = entry.quarter.as_str();
        tx.execute("DELETE FROM quarter_customers WHERE quarter = ?1", [q])
            .map_err(sql(CONTEXT))?;
        tx.execute("DELETE FROM quarter_daily WHERE quarter = ?1", [q])
            .map_err(sql(CONTEXT))?;
        {
            // Several rows per statement: a statement's step and reset cost more than
            // its row for a table this wide (half the time of the step, measured).
            let mut many = tx
                .prepare(&customer_insert(ROWS_PER_INSERT))
                .map_err(sql(CONTEXT))?;
            let mut one = tx.prepare(&customer_insert(1)).map_err(sql(CONTEXT))?;
            let mut batch = Vec::with_capacity(ROWS_PER_INSERT);
            let mut customers = customers.peekable();
            while customers.peek().is_some() {
                batch.clear();
                for c in customers.by_ref().take(ROWS_PER_INSERT) {
                    batch.push(c.map_err(WarehouseError::Source)?);
                }
                // A full batch in one statement; the last, shorter one row by row.
                let (stmt, rows) = if batch.len() == ROWS_PER_INSERT {
                    (&mut many, ROWS_PER_INSERT)
                } else {
                    (&mut one, 1)
                };
                for chunk in batch.chunks(rows) {
                    for (i, c) in chunk.iter().enumerate() {
                        bind_customer(stmt, i * CUSTOMER_COLUMNS, q, c).map_err(sql(CONTEXT))?;
                    }
                    stmt.raw_execute().map_err(sql(CONTEXT))?;
                }
            }
            let mut insert = tx
                .prepare(
                    "INSERT INTO quarter_daily (quarter, date, txn_count, amount_sum, amount_mean,
                        amount_p50, amount_p95, unique_customers, new_customers)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(sql(CONTEXT))?;
            for d in days {
                insert
                    .execute(params![
                        q,
                        d.date,
                        d.txn_count,
                        d.amount_sum,
                        d.amount_mean,
                        d.amount_p50,
                        d.amount_p95,
                        d.unique_customers,
                        d.new_customers,
                    ])
                    .map_err(sql(CONTEXT))?;
            }
        }
        tx.execute(
            "INSERT INTO exports (quarter, version, destination, created_at, rows, amount_sum,
                partial, flagged_features)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (quarter, version, destination) DO UPDATE SET
                created_at = excluded.created_at, rows = excluded.rows,
                amount_sum = excluded.amount_sum, partial = excluded.partial,
                flagged_features = excluded.flagged_features",
            params![
                q,
                entry.version,
                entry.destination,
                entry.created_at,
                entry.rows as i64,
                entry.amount_sum,
                entry.partial,
                serde_json::to_string(&entry.flagged_features).unwrap_or_default(),
            ],
        )
        .map_err(sql(CONTEXT))?;
        tx.commit().map_err(sql(CONTEXT))
    }

    pub(in crate::warehouse) fn exports(&mut self) -> Result<Vec<ExportEntry>> {
        const CONTEXT: &str = "listing exports";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT quarter, version, created_at, destination, rows, amount_sum, partial,
                        flagged_features
                 FROM exports ORDER BY quarter, created_at",
            )
            .map_err(sql(CONTEXT))?;
        let rows = stmt
            .query_map([], |r| {
                let flagged: String = r.get(7)?;
                Ok(ExportEntry {
                    quarter: r.get(0)?,
                    version: r.get(1)?,
                    created_at: r.get(2)?,
                    destination: r.get(3)?,
                    rows: r.get::<_, i64>(4)? as u64,
                    amount_sum: r.get(5)?,
                    partial: r.get(6)?,
                    flagged_features: serde_json::from_str(&flagged).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            7,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })?,
                })
            })
            .map_err(sql(CONTEXT))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(sql(CONTEXT))
    }
}
