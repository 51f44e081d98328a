//! The three ML tables of issue #10, computed from one customer's rows at a time: pure
//! functions of the rows, no I/O, unit-tested against hand-computed values.
//!
//! The export reads every loaded transaction dated before the quarter's end, ordered by
//! `(customer_id, transaction_at, transaction_id)` with ids compared as bytes, and hands
//! each customer's rows to [`fold_customer`]. "Earlier" is that order, so point-in-time
//! history is simply "the rows before this one in the slice"; nothing at or after a row
//! can leak into its features, and rows after the quarter never reach this module.
//!
//! Money is exact until the last step: amounts are `i64` minor units at the export's
//! scale ([`Scale`]), sums and sums of squares are `i128`, and each double is produced
//! by one conversion and one division (both correctly rounded), so the bytes are the
//! same on every machine and on both warehouses.
//!
//! Not here: ordering the output (`sort`), pseudonymisation (the [`Keys`] seam), and
//! writing files (`parquet`).

use std::collections::HashMap;

use compact_str::CompactString;

use super::quarter::Quarter;
use crate::model::Date;

/// Version of the feature definitions; part of every dataset version `V`. Bump it when
/// any value this module computes changes for the same rows.
pub const FEATURE_VERSION: u32 = 1;

const POW10: [i128; 13] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
];

/// An exact decimal: `minor / 10^scale` (account balances keep their stored scale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    /// Value in units of `10^-scale`.
    pub minor: i64,
    /// Digits after the point (at most [`crate::model::MAX_SCALE`]).
    pub scale: u8,
}

impl Decimal {
    /// Parses a plain decimal text (`-12.50`, `7`) as stored by the warehouses.
    pub fn parse(text: &str) -> Option<Decimal> {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let scale = u8::try_from(frac.len())
            .ok()
            .filter(|s| *s <= crate::model::MAX_SCALE)?;
        crate::model::Amount::parse(text, scale)
            .ok()
            .filter(|_| !int.is_empty() && int != "-")
            .map(|a| Decimal {
                minor: a.minor,
                scale,
            })
    }

    /// The nearest double.
    pub fn to_f64(self) -> f64 {
        self.minor as f64 / POW10[usize::from(self.scale)] as f64
    }

    /// Canonical text at its scale.
    pub fn to_text(self) -> String {
        let mut s = String::new();
        crate::model::write_minor(i128::from(self.minor), self.scale, &mut s);
        s
    }
}

/// The money scale of one export: every amount of the quarter and its history is read
/// as minor units at this scale (the largest scale among them, 2 for INR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale(pub u8);

impl Scale {
    fn unit(self) -> i128 {
        POW10[usize::from(self.0)]
    }

    /// `minor / 10^S` as the nearest double.
    pub fn to_f64(self, minor: i128) -> f64 {
        minor as f64 / self.unit() as f64
    }

    /// `sum / (n · 10^S)`: a mean with one rounding.
    pub fn mean(self, sum: i128, n: i64) -> f64 {
        sum as f64 / (i128::from(n) * self.unit()) as f64
    }

    /// Exact decimal text of `minor` at this scale.
    pub fn text(self, minor: i128) -> String {
        let mut s = String::new();
        crate::model::write_minor(minor, self.0, &mut s);
        s
    }
}

/// One loaded transaction, as read from the warehouse.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    /// Raw customer id (never written to the ML files).
    pub customer_id: CompactString,
    /// Raw transaction id (never written to the ML files).
    pub transaction_id: CompactString,
    /// `transaction_at` as seconds since 1970-01-01 00:00:00, wall clock.
    pub at: i64,
    /// Amount in minor units at the export's [`Scale`].
    pub amount: i64,
    /// Birth date (never written to the ML files).
    pub dob: Option<Date>,
    /// Gender code.
    pub gender: Option<CompactString>,
    /// Location.
    pub location: Option<CompactString>,
    /// Account balance.
    pub balance: Option<Decimal>,
}

/// Pseudonymous keys of raw ids, as 128-bit numbers (their hex is the file's text).
pub trait Keys {
    /// `customer_key` of a customer id.
    fn customer(&self, customer_id: &str) -> u128;
    /// `transaction_key` of a transaction id.
    fn transaction(&self, transaction_id: &str) -> u128;
}

/// What a fold needs to know about the quarter.
#[derive(Debug, Clone, Copy)]
pub struct QuarterContext {
    /// The quarter exported.
    pub quarter: Quarter,
    /// The money scale.
    pub scale: Scale,
    start: i64,
    end: i64,
    prev_start: i64,
    first_day: i64,
    last_day: i64,
}

impl QuarterContext {
    /// The context of `quarter` at money scale `scale`.
    pub fn new(quarter: Quarter, scale: Scale) -> QuarterContext {
        QuarterContext {
            quarter,
            scale,
            start: quarter.start_seconds(),
            end: quarter.end_seconds(),
            prev_start: quarter.previous().start_seconds(),
            first_day: quarter.first_day().days_since_epoch(),
            last_day: quarter.last_day().days_since_epoch(),
        }
    }

    /// Index of the quarter day holding `at` (0 for the first day).
    pub fn day_index(&self, at: i64) -> usize {
        (at.div_euclid(86_400) - self.first_day) as usize
    }

    /// Whether `at` is in the quarter.
    pub fn contains(&self, at: i64) -> bool {
        (self.start..self.end).contains(&at)
    }
}

/// One row of `transactions.parquet`, before its columns are derived from `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnFeatures {
    /// Seconds since 1970 (wall clock).
    pub at: i64,
    /// `transaction_key`.
    pub transaction_key: u128,
    /// `customer_key`.
    pub customer_key: u128,
    /// Minor units at the export scale.
    pub amount: i64,
    /// Whole years at the transaction date.
    pub age_years: Option<i32>,
    /// Gender code.
    pub gender: Option<CompactString>,
    /// Location.
    pub location: Option<CompactString>,
    /// Account balance.
    pub account_balance: Option<Decimal>,
    /// Earlier transactions of the customer.
    pub prior_count: i64,
    /// Their mean amount.
    pub prior_amount_mean: Option<f64>,
    /// Seconds since the previous one.
    pub seconds_since_prev: Option<i64>,
    /// Amount over the prior mean.
    pub amount_to_prior_mean: Option<f64>,
    /// Amount over the balance.
    pub amount_to_balance: Option<f64>,
    /// No earlier transaction of the customer had this location.
    pub location_is_new: Option<bool>,
}

/// One row of `customers.parquet` (and, with the raw id, of `quarter_customers`).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRow {
    /// `customer_key`.
    pub customer_key: u128,
    /// Raw id: only for the warehouse table, never the ML file.
    pub customer_id: CompactString,
    /// Transactions in the quarter.
    pub txn_count: i64,
    /// Exact sum, minor units.
    pub amount_sum: i128,
    /// Mean amount.
    pub amount_mean: f64,
    /// Smallest amount, minor units.
    pub amount_min: i64,
    /// Largest amount, minor units.
    pub amount_max: i64,
    /// Sample standard deviation (n − 1); `None` for one transaction.
    pub amount_std: Option<f64>,
    /// First transaction in the quarter.
    pub first_txn_at: i64,
    /// Last transaction in the quarter.
    pub last_txn_at: i64,
    /// Last day of the quarter − date of `last_txn_at`.
    pub recency_days: i32,
    /// Distinct dates.
    pub active_days: i32,
    /// Distinct non-null locations.
    pub distinct_locations: i32,
    /// Most frequent non-null location; ties → the one used most recently.
    pub home_location: Option<CompactString>,
    /// From the latest transaction having one.
    pub gender: Option<CompactString>,
    /// Age at the quarter's last day, from the latest transaction having a birth date.
    pub age_years: Option<i32>,
    /// Latest non-null balance.
    pub balance_last: Option<Decimal>,
    /// Share with hour < 6.
    pub night_share: f64,
    /// Share on Saturday or Sunday.
    pub weekend_share: f64,
    /// Transactions before the quarter.
    pub prior_txn_count: i64,
    /// Last day of the quarter − date of the first transaction ever.
    pub tenure_days: i32,
}

/// The per-day figures a fold contributes to (percentiles come later, from the
/// transactions in time order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayTally {
    /// Transactions.
    pub txn_count: i64,
    /// Exact sum, minor units.
    pub amount_sum: i128,
    /// Customers with a transaction that day.
    pub unique_customers: i64,
    /// Customers whose first transaction ever is that day.
    pub new_customers: i64,
}

/// What one customer's fold produced.
#[derive(Debug, Default)]
pub struct Folded {
    /// Feature rows of the customer's transactions in the quarter, in order.
    pub transactions: Vec<TxnFeatures>,
    /// The customer's row for the quarter, when it has transactions in it.
    pub current: Option<CustomerRow>,
    /// The same figures for the previous quarter (drift), when it had transactions.
    pub previous: Option<CustomerRow>,
    /// `(transaction_key, amount)` of the previous quarter's transactions (drift).
    pub previous_amounts: Vec<(u128, i64)>,
}

/// Hour of day, weekday (Monday = 0) and date (days since 1970) of `at`.
pub fn clock(at: i64) -> (i32, i32, i64) {
    let day = at.div_euclid(86_400);
    let hour = (at.rem_euclid(86_400) / 3600) as i32;
    // 1970-01-01 was a Thursday (3 when Monday is 0).
    let weekday = (day + 3).rem_euclid(7) as i32;
    (hour, weekday, day)
}

/// Whole years from `dob` to the date `on` (days since 1970); `None` when the birth
/// date is after it.
pub fn age_years(dob: Date, on: i64) -> Option<i32> {
    let on = Date::from_days_since_epoch(on);
    let mut age = on.year - dob.year;
    if (on.month, on.day) < (dob.month, dob.day) {
        age -= 1;
    }
    (age >= 0).then_some(age)
}

/// Locations of one customer with their counts and latest position: a short list
/// (most customers have a handful of transactions), a hash map past 16 locations, so
/// the common case allocates once and the rare heavy customer stays linear.
#[derive(Debug, Default)]
struct Locations<'a> {
    few: Vec<(&'a str, u32, usize)>,
    many: Option<HashMap<&'a str, (u32, usize)>>,
}

impl<'a> Locations<'a> {
    fn add(&mut self, location: &'a str, position: usize) {
        if let Some(many) = &mut self.many {
            let e = many.entry(location).or_insert((0, position));
            e.0 += 1;
            e.1 = position;
        } else if let Some(e) = self.few.iter_mut().find(|e| e.0 == location) {
            e.1 += 1;
            e.2 = position;
        } else {
            self.few.push((location, 1, position));
            if self.few.len() > 16 {
                self.many = Some(self.few.drain(..).map(|(l, n, p)| (l, (n, p))).collect());
            }
        }
    }

    fn contains(&self, location: &str) -> bool {
        match &self.many {
            Some(many) => many.contains_key(location),
            None => self.few.iter().any(|e| e.0 == location),
        }
    }

    fn len(&self) -> usize {
        self.many.as_ref().map_or(self.few.len(), HashMap::len)
    }

    /// The most frequent; ties go to the one at the latest position.
    fn most_frequent(&self) -> Option<&'a str> {
        match &self.many {
            Some(many) => many
                .iter()
                .max_by_key(|(_, (n, p))| (*n, *p))
                .map(|(l, _)| *l),
            None => self.few.iter().max_by_key(|e| (e.1, e.2)).map(|e| e.0),
        }
    }
}

/// One quarter's running figures for one customer.
#[derive(Debug, Default)]
struct QuarterAgg<'a> {
    count: i64,
    sum: i128,
    /// Σ amount², `None` once it would overflow (then the two-pass fallback is used).
    sum_sq: Option<i128>,
    /// Position of the quarter's first row in the customer's rows (they are contiguous).
    first_position: usize,
    min: i64,
    max: i64,
    first_at: i64,
    last_at: i64,
    last_day: Option<i64>,
    active_days: i32,
    /// location → (transactions, position of the latest one).
    locations: Locations<'a>,
    gender: Option<&'a CompactString>,
    dob: Option<Date>,
    balance: Option<Decimal>,
    night: i64,
    weekend: i64,
    /// Transactions of the customer before the quarter.
    prior: i64,
}

impl<'a> QuarterAgg<'a> {
    fn add(&mut self, row: &'a SourceRow, position: usize, prior: i64) {
        let a = row.amount;
        if self.count == 0 {
            self.min = a;
            self.max = a;
            self.first_at = row.at;
            self.prior = prior;
            self.sum_sq = Some(0);
            self.first_position = position;
        }
        self.count += 1;
        self.sum += i128::from(a);
        self.sum_sq = self
            .sum_sq
            .and_then(|s| s.checked_add(i128::from(a) * i128::from(a)));
        self.min = self.min.min(a);
        self.max = self.max.max(a);
        self.last_at = row.at;
        let (hour, weekday, day) = clock(row.at);
        if self.last_day != Some(day) {
            self.active_days += 1;
            self.last_day = Some(day);
        }
        if let Some(l) = &row.location {
            self.locations.add(l.as_str(), position);
        }
        if row.gender.is_some() {
            self.gender = row.gender.as_ref();
        }
        if row.dob.is_some() {
            self.dob = row.dob;
        }
        if row.balance.is_some() {
            self.balance = row.balance;
        }
        self.night += i64::from(hour < 6);
        self.weekend += i64::from(weekday >= 5);
    }

    /// Sample standard deviation from exact sums: `(nΣx² − (Σx)²) / (n(n−1))`, one
    /// rounding per conversion; a fixed-order two-pass in doubles if `i128` overflows.
    fn std(&self, rows: &[SourceRow], scale: Scale) -> Option<f64> {
        let n = i128::from(self.count);
        if n < 2 {
            return None;
        }
        let exact = self.sum_sq.and_then(|sq| {
            let num = n
                .checked_mul(sq)?
                .checked_sub(self.sum.checked_mul(self.sum)?)?;
            let den = (n * (n - 1)).checked_mul(scale.unit() * scale.unit())?;
            Some((num as f64 / den as f64).sqrt())
        });
        exact.or_else(|| {
            let mean = self.sum as f64 / n as f64;
            let ss: f64 = rows[self.first_position..][..self.count as usize]
                .iter()
                .map(|r| (r.amount as f64 - mean) * (r.amount as f64 - mean))
                .sum();
            Some((ss / (n - 1) as f64).sqrt() / scale.unit() as f64)
        })
    }

    fn finish(
        &self,
        rows: &[SourceRow],
        ctx: &QuarterContext,
        last_day: i64,
        customer_key: u128,
        customer_id: &CompactString,
        first_ever: i64,
    ) -> CustomerRow {
        let n = self.count as f64;
        let home = self.locations.most_frequent().map(CompactString::from);
        CustomerRow {
            customer_key,
            customer_id: customer_id.clone(),
            txn_count: self.count,
            amount_sum: self.sum,
            amount_mean: ctx.scale.mean(self.sum, self.count),
            amount_min: self.min,
            amount_max: self.max,
            amount_std: self.std(rows, ctx.scale),
            first_txn_at: self.first_at,
            last_txn_at: self.last_at,
            recency_days: (last_day - self.last_at.div_euclid(86_400)) as i32,
            active_days: self.active_days,
            distinct_locations: self.locations.len() as i32,
            home_location: home,
            gender: self.gender.cloned(),
            age_years: self.dob.and_then(|d| age_years(d, last_day)),
            balance_last: self.balance,
            night_share: self.night as f64 / n,
            weekend_share: self.weekend as f64 / n,
            prior_txn_count: self.prior,
            tenure_days: (last_day - first_ever.div_euclid(86_400)) as i32,
        }
    }
}

/// Folds one customer's rows (every loaded transaction before the quarter's end, in
/// order) into the quarter's feature rows, its customer row, its previous-quarter
/// figures for drift, and the day tallies.
///
/// # Panics
/// When `rows` mixes customers or is out of order, or `daily` is shorter than the
/// quarter (caller bugs; checked in debug builds only).
pub fn fold_customer(
    rows: &[SourceRow],
    ctx: &QuarterContext,
    keys: &dyn Keys,
    daily: &mut [DayTally],
    out: &mut Folded,
) {
    out.transactions.clear();
    out.current = None;
    out.previous = None;
    out.previous_amounts.clear();
    let Some(first) = rows.first() else {
        return;
    };
    debug_assert!(rows.iter().all(|r| r.customer_id == first.customer_id));
    debug_assert!(
        rows.windows(2)
            .all(|w| (w[0].at, w[0].transaction_id.as_bytes())
                < (w[1].at, w[1].transaction_id.as_bytes()))
    );
    let scale = ctx.scale;
    let mut customer_key = None;
    let mut key = || *customer_key.get_or_insert_with(|| keys.customer(&first.customer_id));
    let mut sum: i128 = 0;
    let mut prev_at: Option<i64> = None;
    let mut seen = Locations::default();
    let mut current = QuarterAgg::default();
    let mut previous = QuarterAgg::default();
    let mut last_active_day = None;
    for (i, r) in rows.iter().enumerate() {
        // Rows before this one: all earlier transactions of the customer.
        let count = i as i64;
        if ctx.contains(r.at) {
            let (_, _, day) = clock(r.at);
            let amount = i128::from(r.amount);
            out.transactions.push(TxnFeatures {
                at: r.at,
                transaction_key: keys.transaction(&r.transaction_id),
                customer_key: key(),
                amount: r.amount,
                age_years: r.dob.and_then(|d| age_years(d, day)),
                gender: r.gender.clone(),
                location: r.location.clone(),
                account_balance: r.balance,
                prior_count: count,
                prior_amount_mean: (count > 0).then(|| scale.mean(sum, count)),
                seconds_since_prev: prev_at.map(|p| r.at - p),
                amount_to_prior_mean: (count > 0 && sum != 0)
                    .then(|| (amount * i128::from(count)) as f64 / sum as f64),
                amount_to_balance: r.balance.filter(|b| b.minor != 0).map(|b| {
                    (amount * POW10[usize::from(b.scale)]) as f64
                        / (i128::from(b.minor) * scale.unit()) as f64
                }),
                location_is_new: if count == 0 {
                    None
                } else {
                    r.location.as_deref().map(|l| !seen.contains(l))
                },
            });
            current.add(r, i, count);
            let tally = &mut daily[ctx.day_index(r.at)];
            tally.txn_count += 1;
            tally.amount_sum += amount;
            if last_active_day != Some(day) {
                tally.unique_customers += 1;
                last_active_day = Some(day);
            }
        } else if r.at >= ctx.prev_start && r.at < ctx.start {
            previous.add(r, i, count);
            out.previous_amounts
                .push((keys.transaction(&r.transaction_id), r.amount));
        }
        sum += i128::from(r.amount);
        prev_at = Some(r.at);
        if let Some(l) = &r.location
            && !seen.contains(l)
        {
            seen.add(l.as_str(), i);
        }
    }
    if current.count > 0 {
        if ctx.contains(first.at) {
            daily[ctx.day_index(first.at)].new_customers += 1;
        }
        out.current =
            Some(current.finish(rows, ctx, ctx.last_day, key(), &first.customer_id, first.at));
    }
    if previous.count > 0 {
        let prev_last_day = ctx.first_day - 1;
        out.previous = Some(previous.finish(
            rows,
            ctx,
            prev_last_day,
            key(),
            &first.customer_id,
            first.at,
        ));
    }
}

/// The `q` quantile of sorted amounts (minor units), with numpy's default method
/// (`linear`: virtual index `(n − 1)q`, and numpy's two-sided lerp), as doubles.
pub fn quantile(sorted: &[i64], q: f64, scale: Scale) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let virtual_index = (n - 1) as f64 * q;
    let below = virtual_index.floor();
    let gamma = virtual_index - below;
    let lo = (below as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let a = scale.to_f64(i128::from(sorted[lo]));
    let b = scale.to_f64(i128::from(sorted[hi]));
    let diff = b - a;
    Some(if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    })
}

#[cfg(test)]
mod tests;
