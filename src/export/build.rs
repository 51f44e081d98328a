//! Steps 5 to 8 of an export: read the quarter's rows and their history, compute the
//! features customer by customer, and write the three Parquet files into a local
//! staging folder, with every total the reconciliation needs.
//!
//! Memory is bounded by the sort budgets, not by the quarter: rows are pushed into an
//! external sort by `(customer_id, transaction_at, transaction_id)`, one customer's rows
//! at a time are folded (`features::fold_customer`), and the outputs are pushed into two
//! more external sorts (transactions by time and key, customers by key) that are merged
//! straight into the Parquet writers. The daily percentiles are computed while the
//! transactions stream by in time order, one day's amounts at a time.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::features::{
    self, CustomerRow, DayTally, Folded, Keys, QuarterContext, SourceRow, TxnFeatures,
};
use super::parquet::{self as pq, TableWriter, Value, key_hex};
use super::pseudonym::PseudonymKey;
use super::reconcile::Totals;
use super::sample::{CustomerDrift, QuarterSample};
use super::sort::{Sorted, Sorter};
use super::source::{self, Unreadable};
use super::{ExportError, Progress};
use crate::warehouse::Warehouse;

/// Sort budgets: the source sort fills alone; the two output sorts fill together while
/// the source sort is merged (then only its read buffers are held).
const SOURCE_BUDGET: usize = 96 << 20;
const TXN_BUDGET: usize = 64 << 20;
const CUSTOMER_BUDGET: usize = 32 << 20;

/// [`Keys`] from the pseudonymisation key.
pub(super) struct HmacKeys<'a>(pub(super) &'a PseudonymKey);

impl Keys for HmacKeys<'_> {
    fn customer(&self, id: &str) -> u128 {
        self.0.customer_key_u128(id)
    }

    fn transaction(&self, id: &str) -> u128 {
        self.0.transaction_key_u128(id)
    }
}

/// One staged data file.
#[derive(Debug)]
pub(super) struct StagedFile {
    pub(super) name: &'static str,
    pub(super) path: PathBuf,
    pub(super) rows: u64,
}

/// Everything steps 5-8 produced.
#[derive(Debug)]
pub(super) struct Built {
    pub(super) files: Vec<StagedFile>,
    /// Totals per dataset, for the reconciliation.
    pub(super) totals: Vec<(&'static str, Totals)>,
    pub(super) unreadable: Unreadable,
    pub(super) days: Vec<DayRow>,
    pub(super) customers: Sorted<CustomerRow>,
    pub(super) current: QuarterSample,
    pub(super) previous: QuarterSample,
}

/// One row of `daily.parquet`.
#[derive(Debug, Clone, Default)]
pub(super) struct DayRow {
    pub(super) tally: DayTally,
    pub(super) p50: Option<f64>,
    pub(super) p95: Option<f64>,
}

fn local(dir: &Path) -> impl Fn(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Local {
        dir: dir.to_owned(),
        source,
    }
}

/// Step 5: every stored row dated before the quarter's end, parsed and sorted by
/// customer. Reads inside the caller's snapshot.
pub(super) fn read_sorted(
    warehouse: &mut Warehouse,
    ctx: &QuarterContext,
    work: &Path,
    progress: &mut Progress,
) -> Result<(Sorted<SourceRow>, Unreadable), ExportError> {
    let mut sorter = Sorter::new(work, "source", SOURCE_BUDGET);
    let mut unreadable = Unreadable::default();
    let mut failed = None;
    let mut read = 0u64;
    warehouse.export_rows(&ctx.quarter.end_text(), &mut |row| {
        read += 1;
        if read.is_multiple_of(65_536) {
            progress.rows("reading", read);
        }
        let Some(r) = source::parse_or_count(row, ctx.scale, &mut unreadable) else {
            return ControlFlow::Continue(());
        };
        match sorter.push(r) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(local(work)(e));
    }
    tracing::info!(quarter = %ctx.quarter, rows = read, runs = sorter.runs(), "Read the quarter and its history.");
    progress.step("rows read");
    Ok((sorter.finish().map_err(local(work))?, unreadable))
}

/// Steps 6-8: fold each customer, then write the staged Parquet files.
pub(super) fn build(
    ctx: &QuarterContext,
    sources: &Sorted<SourceRow>,
    unreadable: Unreadable,
    keys: &dyn Keys,
    work: &Path,
    progress: &mut Progress,
) -> Result<Built, ExportError> {
    let err = local(work);
    let mut txns = Sorter::<TxnFeatures>::new(work, "transactions", TXN_BUDGET);
    let mut customers = Sorter::<CustomerRow>::new(work, "customers", CUSTOMER_BUDGET);
    let mut tallies = vec![DayTally::default(); ctx.quarter.days()];
    let mut current = QuarterSample::default();
    let mut previous = QuarterSample::default();
    let mut customer_totals = Totals::default();
    let mut folded = Folded::default();
    let mut done = 0u64;
    let mut customers_done = 0u64;
    let mut flush = |rows: &[SourceRow]| -> Result<(), ExportError> {
        features::fold_customer(rows, ctx, keys, &mut tallies, &mut folded);
        done += rows.len() as u64;
        customers_done += 1;
        for (key, amount) in folded.previous_amounts.drain(..) {
            previous
                .amounts
                .offer(key, || ctx.scale.to_f64(i128::from(amount)));
        }
        if let Some(p) = folded.previous.take() {
            previous
                .customers
                .offer(p.customer_key, || CustomerDrift::of(&p, ctx.scale));
        }
        for t in folded.transactions.drain(..) {
            current
                .amounts
                .offer(t.transaction_key, || ctx.scale.to_f64(i128::from(t.amount)));
            txns.push(t).map_err(&err)?;
        }
        if let Some(c) = folded.current.take() {
            customer_totals.rows += c.txn_count as u64;
            customer_totals.amount += c.amount_sum;
            current
                .customers
                .offer(c.customer_key, || CustomerDrift::of(&c, ctx.scale));
            customers.push(c).map_err(&err)?;
        }
        if customers_done.is_multiple_of(4096) {
            progress.rows("computing", done);
        }
        Ok(())
    };
    // The merge of the sorted runs (reading, decoding) runs on its own thread and hands
    // over chunks of whole customers; the fold runs here, on slices of them.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<SourceRow>>>(4);
    std::thread::scope(|scope| -> Result<(), ExportError> {
        scope.spawn(move || merge_in_chunks(sources, &sender));
        for chunk in receiver {
            let chunk = chunk.map_err(&err)?;
            let mut start = 0;
            for i in 1..=chunk.len() {
                if i == chunk.len() || chunk[i].customer_id != chunk[start].customer_id {
                    flush(&chunk[start..i])?;
                    start = i;
                }
            }
        }
        Ok(())
    })?;
    let txns = txns.finish().map_err(&err)?;
    let customers = customers.finish().map_err(&err)?;
    progress.step("features computed");

    progress.step("writing customers.parquet and transactions.parquet");
    let mut days: Vec<DayRow> = tallies
        .into_iter()
        .map(|tally| DayRow {
            tally,
            ..DayRow::default()
        })
        .collect();
    // The two files are independent: one per core.
    let (customers_file, transactions) = std::thread::scope(|scope| {
        let customers_writer = scope.spawn(|| write_customers(ctx, &customers, work));
        let transactions = write_transactions(ctx, &txns, &mut days, work);
        let customers_file = customers_writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (customers_file, transactions)
    });
    let customers_file = customers_file?;
    let (transactions_file, txn_totals) = transactions?;
    drop(txns);
    progress.step("writing daily.parquet");
    let (daily_file, daily_totals) = write_daily(ctx, &days, work)?;
    Ok(Built {
        files: vec![customers_file, transactions_file, daily_file],
        totals: vec![
            ("transactions.parquet", txn_totals),
            ("customers.parquet (txn_count, amount_sum)", customer_totals),
            ("daily.parquet (txn_count, amount_sum)", daily_totals),
        ],
        unreadable,
        days,
        customers,
        current,
        previous,
    })
}

/// Rows handed from the merging thread to the fold at a time (cut between customers).
const CHUNK_ROWS: usize = 8192;

/// Merges the sorted source runs into chunks of whole customers sent to `sender`, then
/// the first error if any. Stops early when the receiver has gone (the fold stopped on
/// its own error, which is the one reported).
fn merge_in_chunks(
    sources: &Sorted<SourceRow>,
    sender: &std::sync::mpsc::SyncSender<std::io::Result<Vec<SourceRow>>>,
) {
    let merge = match sources.iter() {
        Ok(merge) => merge,
        Err(e) => {
            if sender.send(Err(e)).is_err() {
                tracing::debug!("The fold stopped before the merge started.");
            }
            return;
        }
    };
    let mut chunk: Vec<SourceRow> = Vec::with_capacity(CHUNK_ROWS);
    for r in merge {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                if sender.send(Err(e)).is_err() {
                    tracing::debug!("The fold stopped before a merge error could be handed over.");
                }
                return;
            }
        };
        if chunk.len() >= CHUNK_ROWS && chunk.last().is_some_and(|l| l.customer_id != r.customer_id)
        {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
            if sender.send(Ok(full)).is_err() {
                return;
            }
        }
        chunk.push(r);
    }
    if !chunk.is_empty() && sender.send(Ok(chunk)).is_err() {
        tracing::debug!("The fold stopped before the last chunk.");
    }
}

fn ts(at: i64) -> Value<'static> {
    Value::Timestamp(at)
}

fn write_customers(
    ctx: &QuarterContext,
    customers: &Sorted<CustomerRow>,
    work: &Path,
) -> Result<StagedFile, ExportError> {
    let path = work.join("customers.parquet");
    let mut w = TableWriter::create(&path, "customers.parquet", pq::CUSTOMERS, &[0])?;
    let quarter = ctx.quarter.to_string();
    let s = ctx.scale;
    let mut buf = [0u8; 32];
    for c in customers.iter().map_err(local(work))? {
        let c = c.map_err(local(work))?;
        w.append(&[
            Value::Text(Some(key_hex(c.customer_key, &mut buf))),
            Value::Text(Some(&quarter)),
            Value::Int64(Some(c.txn_count)),
            Value::Double(Some(s.to_f64(c.amount_sum))),
            Value::Double(Some(c.amount_mean)),
            Value::Double(Some(s.to_f64(i128::from(c.amount_min)))),
            Value::Double(Some(s.to_f64(i128::from(c.amount_max)))),
            Value::Double(c.amount_std),
            ts(c.first_txn_at),
            ts(c.last_txn_at),
            Value::Int32(Some(c.recency_days)),
            Value::Int32(Some(c.active_days)),
            Value::Int32(Some(c.distinct_locations)),
            Value::Text(c.home_location.as_deref()),
            Value::Text(c.gender.as_deref()),
            Value::Int32(c.age_years),
            Value::Double(c.balance_last.map(|b| b.to_f64())),
            Value::Double(Some(c.night_share)),
            Value::Double(Some(c.weekend_share)),
            Value::Int64(Some(c.prior_txn_count)),
            Value::Int32(Some(c.tenure_days)),
        ])?;
    }
    let rows = w.finish()?;
    Ok(StagedFile {
        name: "customers.parquet",
        path,
        rows,
    })
}

fn write_transactions(
    ctx: &QuarterContext,
    txns: &Sorted<TxnFeatures>,
    days: &mut [DayRow],
    work: &Path,
) -> Result<(StagedFile, Totals), ExportError> {
    let path = work.join("transactions.parquet");
    let mut w = TableWriter::create(&path, "transactions.parquet", pq::TRANSACTIONS, &[2, 0])?;
    let s = ctx.scale;
    let (mut k1, mut k2) = ([0u8; 32], [0u8; 32]);
    let mut totals = Totals::default();
    let mut day_amounts: Vec<i64> = Vec::new();
    let mut day = None;
    let mut close_day = |day: Option<usize>, amounts: &mut Vec<i64>| {
        if let Some(d) = day {
            amounts.sort_unstable();
            days[d].p50 = features::quantile(amounts, 0.5, s);
            days[d].p95 = features::quantile(amounts, 0.95, s);
        }
        amounts.clear();
    };
    for t in txns.iter().map_err(local(work))? {
        let t = t.map_err(local(work))?;
        let d = ctx.day_index(t.at);
        if day != Some(d) {
            close_day(day, &mut day_amounts);
            day = Some(d);
        }
        day_amounts.push(t.amount);
        totals.rows += 1;
        totals.amount += i128::from(t.amount);
        let (hour, weekday, _) = features::clock(t.at);
        w.append(&[
            Value::Text(Some(key_hex(t.transaction_key, &mut k1))),
            Value::Text(Some(key_hex(t.customer_key, &mut k2))),
            ts(t.at),
            Value::Double(Some(s.to_f64(i128::from(t.amount)))),
            Value::Int32(Some(hour)),
            Value::Int32(Some(weekday)),
            Value::Bool(Some(weekday >= 5)),
            Value::Int32(t.age_years),
            Value::Text(t.gender.as_deref()),
            Value::Text(t.location.as_deref()),
            Value::Double(t.account_balance.map(|b| b.to_f64())),
            Value::Int64(Some(t.prior_count)),
            Value::Double(t.prior_amount_mean),
            Value::Int64(t.seconds_since_prev),
            Value::Double(t.amount_to_prior_mean),
            Value::Double(t.amount_to_balance),
            Value::Bool(t.location_is_new),
        ])?;
    }
    close_day(day, &mut day_amounts);
    let rows = w.finish()?;
    Ok((
        StagedFile {
            name: "transactions.parquet",
            path,
            rows,
        },
        totals,
    ))
}

fn write_daily(
    ctx: &QuarterContext,
    days: &[DayRow],
    work: &Path,
) -> Result<(StagedFile, Totals), ExportError> {
    let path = work.join("daily.parquet");
    let mut w = TableWriter::create(&path, "daily.parquet", pq::DAILY, &[0])?;
    let first = ctx.quarter.first_day().days_since_epoch();
    let s = ctx.scale;
    let mut totals = Totals::default();
    for (i, d) in days.iter().enumerate() {
        let t = &d.tally;
        totals.rows += t.txn_count as u64;
        totals.amount += t.amount_sum;
        w.append(&[
            Value::Date((first + i as i64) as i32),
            Value::Int64(Some(t.txn_count)),
            Value::Double(Some(s.to_f64(t.amount_sum))),
            Value::Double((t.txn_count > 0).then(|| s.mean(t.amount_sum, t.txn_count))),
            Value::Double(d.p50),
            Value::Double(d.p95),
            Value::Int64(Some(t.unique_customers)),
            Value::Int64(Some(t.new_customers)),
        ])?;
    }
    let rows = w.finish()?;
    Ok((
        StagedFile {
            name: "daily.parquet",
            path,
            rows,
        },
        totals,
    ))
}
