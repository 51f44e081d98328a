//! Step 11 of an export: the quarter's rows of `quarter_customers` and `quarter_daily`
//! (raw customer ids, exact decimals) and its `exports` row, in one warehouse
//! transaction, after the files are published.

use compact_str::CompactString;

use super::ExportError;
use super::build::Built;
use super::features::{CustomerRow, QuarterContext, Scale};
use super::manifest::Manifest;
use crate::lake::Lake;
use crate::model::{Date, DateTime};
use crate::warehouse::{ExportEntry, QuarterCustomer, QuarterDay, Warehouse};

/// `YYYY-MM-DD HH:MM:SS` of `at` (seconds since 1970), through the scratch `buf`.
fn timestamp_text(at: i64, buf: &mut String) -> CompactString {
    buf.clear();
    DateTime {
        date: Date::from_days_since_epoch(at.div_euclid(86_400)),
        seconds: at.rem_euclid(86_400) as u32,
    }
    .write_to(buf);
    CompactString::from(buf.as_str())
}

/// The exact decimal text of `minor` at `scale`, through the scratch `buf`.
fn decimal_text(minor: i128, scale: u8, buf: &mut String) -> CompactString {
    buf.clear();
    crate::model::write_minor(minor, scale, buf);
    CompactString::from(buf.as_str())
}

/// Step 11: `quarter_customers`, `quarter_daily` and the `exports` row, in one
/// transaction.
pub(super) fn record(
    warehouse: &mut Warehouse,
    destination: &Lake,
    ctx: &QuarterContext,
    built: &Built,
    manifest: &Manifest,
) -> Result<(), ExportError> {
    let s = ctx.scale;
    let first_day = ctx.quarter.first_day().days_since_epoch();
    let days: Vec<QuarterDay> = built
        .days
        .iter()
        .enumerate()
        .map(|(i, d)| QuarterDay {
            date: Date::from_days_since_epoch(first_day + i as i64).to_string(),
            txn_count: d.tally.txn_count,
            amount_sum: s.text(d.tally.amount_sum),
            amount_mean: (d.tally.txn_count > 0)
                .then(|| s.mean(d.tally.amount_sum, d.tally.txn_count)),
            amount_p50: d.p50,
            amount_p95: d.p95,
            unique_customers: d.tally.unique_customers,
            new_customers: d.tally.new_customers,
        })
        .collect();
    let quarter = ctx.quarter.to_string();
    let entry = ExportEntry {
        quarter,
        version: manifest.version.clone(),
        created_at: manifest.created_at.clone(),
        destination: destination.url().to_owned(),
        rows: manifest.control.rows,
        amount_sum: manifest.control.amount_sum.clone(),
        partial: manifest.partial,
        flagged_features: manifest.drift.flagged.clone(),
    };
    // Nothing else runs by now: reading the sorted customers back and formatting their
    // texts go on a second thread while this one writes to the warehouse (a third of
    // the step's time on the demo).
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<CustomerText>>(4);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let mut buf = String::new();
            let customers = match built.customers.iter() {
                Ok(customers) => customers,
                Err(e) => {
                    let failed = vec![Err(format!("reading the sorted customers: {e}"))];
                    if sender.send(failed).is_err() {
                        tracing::debug!("The warehouse write stopped first.");
                    }
                    return;
                }
            };
            for c in customers {
                batch.push(
                    c.map_err(|e| format!("reading the sorted customers: {e}"))
                        .map(|c| quarter_customer(c, s, &mut buf)),
                );
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    // The writer stopped (its own error, which is the one reported).
                    if sender.send(full).is_err() {
                        return;
                    }
                }
            }
            if !batch.is_empty() && sender.send(batch).is_err() {
                tracing::debug!("The warehouse write stopped before the last customers.");
            }
        });
        let mut rows = receiver.into_iter().flatten();
        warehouse.replace_quarter(&mut rows, &days, &entry)
    })?;
    Ok(())
}

/// Customers handed from the reading thread to the writer at a time.
const BATCH: usize = 4096;

/// One `quarter_customers` row as the warehouse takes it, or why it could not be read.
type CustomerText = Result<QuarterCustomer, String>;

/// The texts of one customer row; `buf` is scratch space, reused from row to row.
fn quarter_customer(c: CustomerRow, s: Scale, buf: &mut String) -> QuarterCustomer {
    QuarterCustomer {
        customer_id: c.customer_id,
        txn_count: c.txn_count,
        amount_sum: decimal_text(c.amount_sum, s.0, buf),
        amount_mean: c.amount_mean,
        amount_min: decimal_text(i128::from(c.amount_min), s.0, buf),
        amount_max: decimal_text(i128::from(c.amount_max), s.0, buf),
        amount_std: c.amount_std,
        first_txn_at: timestamp_text(c.first_txn_at, buf),
        last_txn_at: timestamp_text(c.last_txn_at, buf),
        recency_days: c.recency_days,
        active_days: c.active_days,
        distinct_locations: c.distinct_locations,
        home_location: c.home_location,
        gender: c.gender,
        age_years: c.age_years,
        balance_last: c
            .balance_last
            .map(|b| decimal_text(i128::from(b.minor), b.scale, buf)),
        night_share: c.night_share,
        weekend_share: c.weekend_share,
        prior_txn_count: c.prior_txn_count,
        tenure_days: c.tenure_days,
    }
}
