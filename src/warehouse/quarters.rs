//! What `bankpipe export` (issue #10) reads from and writes to the warehouse: the
//! loaded rows as canonical texts, the quarter's inputs and control totals, and the
//! quarter tables (`quarter_customers`, `quarter_daily`, `exports`, migration 0011).
//!
//! Backend-neutral types and the [`Warehouse`] dispatch live here; each backend's SQL
//! lives with it (`sqlite/quarters.rs`, `postgres/quarters.rs`). Rows cross the seam as the texts the SQLite
//! schema stores (`YYYY-MM-DD HH:MM:SS`, plain decimals), so the export computes the
//! same bytes from either backend.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use compact_str::CompactString;
use serde::Serialize;

use super::{Result, Warehouse};
use crate::model::Total;

/// One loaded transaction, borrowed from the driver's row: canonical texts.
#[derive(Debug, Clone, Copy)]
pub struct ExportRow<'a> {
    /// `transaction_id`.
    pub transaction_id: &'a str,
    /// `customer_id`.
    pub customer_id: &'a str,
    /// `customer_dob`, `YYYY-MM-DD`.
    pub customer_dob: Option<&'a str>,
    /// `gender`.
    pub gender: Option<&'a str>,
    /// `location`.
    pub location: Option<&'a str>,
    /// `account_balance`, plain decimal.
    pub account_balance: Option<&'a str>,
    /// `transaction_at`, `YYYY-MM-DD HH:MM:SS`; `None` when not text (a damaged row).
    pub transaction_at: Option<&'a str>,
    /// `amount`, plain decimal; `None` when not text (a damaged row).
    pub amount: Option<&'a str>,
}

/// A loaded source file holding rows dated before a quarter's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Catalog id.
    pub file_id: i64,
    /// Name as received.
    pub original_name: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Catalog `rows_loaded`.
    pub rows_loaded: u64,
    /// Catalog `amount_loaded` (exact decimal text).
    pub amount_loaded: String,
    /// Its stored rows dated before the quarter's end.
    pub rows: u64,
    /// Of those, the rows dated in the quarter.
    pub rows_in_quarter: u64,
}

/// Everything a quarter's export depends on, read before its rows.
#[derive(Debug, Clone, Default)]
pub struct QuarterInputs {
    /// Files holding rows dated before the quarter's end, by file id.
    pub sources: Vec<SourceFile>,
    /// Rows per month (`YYYY-MM`) of the quarter; months without rows are absent.
    pub months: BTreeMap<String, u64>,
    /// The largest amount scale among the rows dated before the quarter's end.
    pub max_scale: u8,
    /// The amount scales of the quarter's rows.
    pub quarter_scales: Vec<u8>,
    /// Rows per currency code: dated before the quarter, and in it. The export
    /// refuses more than one (money features would add different currencies).
    pub currencies: BTreeMap<String, CurrencyRows>,
}

/// A currency's rows among those an export reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CurrencyRows {
    /// Dated before the quarter (history).
    pub before: u64,
    /// Dated in the quarter.
    pub in_quarter: u64,
}

impl QuarterInputs {
    /// Folds the backend's grouped counts — `(file_id, month of the quarter or None for
    /// an earlier row, amount scale, currency, rows)` — and the catalog into the inputs:
    /// the same on both backends, so both give the same version.
    pub(super) fn from_groups(
        groups: impl IntoIterator<Item = (i64, Option<String>, i64, String, u64)>,
        catalog: Vec<super::FileEntry>,
    ) -> QuarterInputs {
        let mut inputs = QuarterInputs::default();
        let mut per_file: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for (file_id, month, scale, currency, rows) in groups {
            let scale = u8::try_from(scale).unwrap_or(u8::MAX);
            inputs.max_scale = inputs.max_scale.max(scale);
            let e = per_file.entry(file_id).or_default();
            e.0 += rows;
            let c = inputs.currencies.entry(currency).or_default();
            if month.is_some() {
                c.in_quarter += rows;
            } else {
                c.before += rows;
            }
            if let Some(month) = month {
                e.1 += rows;
                *inputs.months.entry(month).or_default() += rows;
                if !inputs.quarter_scales.contains(&scale) {
                    inputs.quarter_scales.push(scale);
                }
            }
        }
        inputs.quarter_scales.sort_unstable();
        for f in catalog {
            if let Some(&(rows, rows_in_quarter)) = per_file.get(&f.file_id) {
                inputs.sources.push(SourceFile {
                    file_id: f.file_id,
                    original_name: f.original_name,
                    sha256: f.sha256,
                    rows_loaded: f.rows_loaded.unwrap_or(0),
                    amount_loaded: f.amount_loaded.unwrap_or_default(),
                    rows,
                    rows_in_quarter,
                });
            }
        }
        inputs.sources.sort_by_key(|s| s.file_id);
        inputs
    }
}

/// The warehouse's own count and exact sum of a quarter's rows of one amount scale.
#[derive(Debug, Clone)]
pub struct ScaleTotal {
    /// Digits after the point.
    pub scale: u8,
    /// Rows.
    pub rows: u64,
    /// Exact sum at `scale`.
    pub sum: Total,
}

/// One row of `quarter_customers`: the columns of `customers.parquet` with the raw
/// `customer_id`, money as exact decimal texts. Texts are `CompactString`s: each fits
/// inline (ids, amounts, timestamps are short), so half a million rows written to the
/// warehouse cost no allocation per value.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // the columns of customers.parquet, documented there
pub struct QuarterCustomer {
    pub customer_id: CompactString,
    pub txn_count: i64,
    pub amount_sum: CompactString,
    pub amount_mean: f64,
    pub amount_min: CompactString,
    pub amount_max: CompactString,
    pub amount_std: Option<f64>,
    pub first_txn_at: CompactString,
    pub last_txn_at: CompactString,
    pub recency_days: i32,
    pub active_days: i32,
    pub distinct_locations: i32,
    pub home_location: Option<CompactString>,
    pub gender: Option<CompactString>,
    pub age_years: Option<i32>,
    pub balance_last: Option<CompactString>,
    pub night_share: f64,
    pub weekend_share: f64,
    pub prior_txn_count: i64,
    pub tenure_days: i32,
}

/// One row of `quarter_daily`: the columns of `daily.parquet`, money as exact text.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // the columns of daily.parquet, documented there
pub struct QuarterDay {
    pub date: String,
    pub txn_count: i64,
    pub amount_sum: String,
    pub amount_mean: Option<f64>,
    pub amount_p50: Option<f64>,
    pub amount_p95: Option<f64>,
    pub unique_customers: i64,
    pub new_customers: i64,
}

/// One row of `exports`: a version of a quarter written to a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportEntry {
    /// e.g. `2016Q3`.
    pub quarter: String,
    /// The version `V`.
    pub version: String,
    /// When it was written.
    pub created_at: String,
    /// The destination URL (no secrets).
    pub destination: String,
    /// Transactions in the quarter.
    pub rows: u64,
    /// Their exact sum.
    pub amount_sum: String,
    /// A month had no transaction.
    pub partial: bool,
    /// Features flagged by the drift check.
    pub flagged_features: Vec<String>,
}

/// Customer rows for [`Warehouse::replace_quarter`], from wherever the caller keeps
/// them; an `Err` (its text) rolls the replacement back.
pub type CustomerRows<'a> = dyn Iterator<Item = std::result::Result<QuarterCustomer, String>> + 'a;

impl Warehouse {
    /// Starts a read snapshot: the reads of one export see one state of the warehouse
    /// (on SQLite a load waits to commit until [`Warehouse::end_snapshot`]).
    ///
    /// # Errors
    /// SQL failures.
    pub fn begin_snapshot(&mut self) -> Result<()> {
        match self {
            Warehouse::Sqlite(w) => w.begin_snapshot(),
            Warehouse::Postgres(w) => w.begin_snapshot(),
        }
    }

    /// Ends the read snapshot.
    ///
    /// # Errors
    /// SQL failures.
    pub fn end_snapshot(&mut self) -> Result<()> {
        match self {
            Warehouse::Sqlite(w) => w.end_snapshot(),
            Warehouse::Postgres(w) => w.end_snapshot(),
        }
    }

    /// Loaded transactions per month (`YYYY-MM`), oldest first.
    ///
    /// # Errors
    /// SQL failures.
    pub fn months_with_data(&mut self) -> Result<Vec<(String, u64)>> {
        match self {
            Warehouse::Sqlite(w) => w.months_with_data(),
            Warehouse::Postgres(w) => w.months_with_data(),
        }
    }

    /// The inputs of the quarter `[start, end)` (stored timestamp texts).
    ///
    /// # Errors
    /// SQL failures.
    pub fn quarter_inputs(&mut self, start: &str, end: &str) -> Result<QuarterInputs> {
        match self {
            Warehouse::Sqlite(w) => w.quarter_inputs(start, end),
            Warehouse::Postgres(w) => w.quarter_inputs(start, end),
        }
    }

    /// Count and exact sum of the quarter's rows, per amount scale in `scales`.
    ///
    /// # Errors
    /// SQL failures.
    pub fn quarter_control(
        &mut self,
        start: &str,
        end: &str,
        scales: &[u8],
    ) -> Result<Vec<ScaleTotal>> {
        match self {
            Warehouse::Sqlite(w) => w.quarter_control(start, end, scales),
            Warehouse::Postgres(w) => w.quarter_control(start, end, scales),
        }
    }

    /// Calls `each` with every loaded transaction dated before `end`, in no particular
    /// order, until it breaks.
    ///
    /// # Errors
    /// SQL failures.
    pub fn export_rows(
        &mut self,
        end: &str,
        each: &mut dyn FnMut(&ExportRow<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        match self {
            Warehouse::Sqlite(w) => w.export_rows(end, each),
            Warehouse::Postgres(w) => w.export_rows(end, each),
        }
    }

    /// Replaces the quarter's rows of `quarter_customers` and `quarter_daily` and
    /// records `entry` in `exports`, in one transaction.
    ///
    /// # Errors
    /// SQL failures; [`WarehouseError::Source`](super::WarehouseError::Source) when `customers` yields an error
    /// (nothing changed).
    pub fn replace_quarter(
        &mut self,
        customers: &mut CustomerRows<'_>,
        days: &[QuarterDay],
        entry: &ExportEntry,
    ) -> Result<()> {
        match self {
            Warehouse::Sqlite(w) => w.replace_quarter(customers, days, entry),
            Warehouse::Postgres(w) => w.replace_quarter(customers, days, entry),
        }
    }

    /// Every recorded export, by quarter then time.
    ///
    /// # Errors
    /// SQL failures.
    pub fn exports(&mut self) -> Result<Vec<ExportEntry>> {
        match self {
            Warehouse::Sqlite(w) => w.exports(),
            Warehouse::Postgres(w) => w.exports(),
        }
    }
}
