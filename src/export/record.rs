//! Step 11 of an export: the quarter's rows of `quarter_customers` and `quarter_daily`
//! (raw customer ids, exact decimals) and its `exports` row, in one warehouse
//! transaction, after the files are published.

use super::ExportError;
use super::build::Built;
use super::features::{CustomerRow, QuarterContext, Scale};
use super::manifest::Manifest;
use crate::lake::Lake;
use crate::model::{Date, DateTime};
use crate::warehouse::{ExportEntry, QuarterCustomer, QuarterDay, Warehouse};

fn timestamp_text(at: i64) -> String {
    DateTime {
        date: Date::from_days_since_epoch(at.div_euclid(86_400)),
        seconds: at.rem_euclid(86_400) as u32,
    }
    .to_string()
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
                        .map(|c| quarter_customer(c, s)),
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

fn quarter_customer(c: CustomerRow, s: Scale) -> QuarterCustomer {
    QuarterCustomer {
        customer_id: c.customer_id.to_string(),
        txn_count: c.txn_count,
        amount_sum: s.text(c.amount_sum),
        amount_mean: c.amount_mean,
        amount_min: s.text(i128::from(c.amount_min)),
        amount_max: s.text(i128::from(c.amount_max)),
        amount_std: c.amount_std,
        first_txn_at: timestamp_text(c.first_txn_at),
        last_txn_at: timestamp_text(c.last_txn_at),
        recency_days: c.recency_days,
        active_days: c.active_days,
        distinct_locations: c.distinct_locations,
        home_location: c.home_location.map(|l| l.to_string()),
        gender: c.gender.map(|g| g.to_string()),
        age_years: c.age_years,
        balance_last: c.balance_last.map(|b| b.to_text()),
        night_share: c.night_share,
        weekend_share: c.weekend_share,
        prior_txn_count: c.prior_txn_count,
        tenure_days: c.tenure_days,
    }
}
