//! How the export's three record types sort and spill (see `sort`): source rows by
//! `(customer_id, transaction_at, transaction_id)` with ids as bytes (the order that
//! defines "earlier"), transaction rows by `(transaction_at, transaction_key)`, customer
//! rows by `customer_key` (the orders of the files).

use std::cmp::Ordering;
use std::io;
use std::mem::size_of;

use super::features::{CustomerRow, Decimal, SourceRow, TxnFeatures};
use super::sort::{Codec, Record, heap_of, put};
use crate::model::Date;

fn put_decimal(out: &mut Vec<u8>, d: Option<Decimal>) {
    put::opt(out, d, |o, d| {
        put::i64(o, d.minor);
        o.push(d.scale);
    });
}

fn decimal(c: &mut Codec<'_>) -> io::Result<Option<Decimal>> {
    c.opt(|c| {
        Ok(Decimal {
            minor: c.i64()?,
            scale: c.u8()?,
        })
    })
}

fn put_f64(out: &mut Vec<u8>, v: Option<f64>) {
    put::opt(out, v, put::f64);
}

fn put_i32(out: &mut Vec<u8>, v: Option<i32>) {
    put::opt(out, v, put::i32);
}

impl Record for SourceRow {
    fn order(&self, other: &Self) -> Ordering {
        self.customer_id
            .as_bytes()
            .cmp(other.customer_id.as_bytes())
            .then(self.at.cmp(&other.at))
            .then(
                self.transaction_id
                    .as_bytes()
                    .cmp(other.transaction_id.as_bytes()),
            )
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put::str(out, &self.customer_id);
        put::str(out, &self.transaction_id);
        put::i64(out, self.at);
        put::i64(out, self.amount);
        put::opt(out, self.dob, |o, d| put::i64(o, d.days_since_epoch()));
        put::opt_str(out, self.gender.as_ref());
        put::opt_str(out, self.location.as_ref());
        put_decimal(out, self.balance);
    }

    fn decode(c: &mut Codec<'_>) -> io::Result<Self> {
        Ok(SourceRow {
            customer_id: c.str()?,
            transaction_id: c.str()?,
            at: c.i64()?,
            amount: c.i64()?,
            dob: c.opt(|c| c.i64().map(Date::from_days_since_epoch))?,
            gender: c.opt(Codec::str)?,
            location: c.opt(Codec::str)?,
            balance: decimal(c)?,
        })
    }

    fn mem_size(&self) -> usize {
        size_of::<Self>()
            + heap_of(&self.customer_id)
            + heap_of(&self.transaction_id)
            + self.gender.as_ref().map_or(0, heap_of)
            + self.location.as_ref().map_or(0, heap_of)
    }
}

impl Record for TxnFeatures {
    fn order(&self, other: &Self) -> Ordering {
        self.at
            .cmp(&other.at)
            .then(self.transaction_key.cmp(&other.transaction_key))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put::i64(out, self.at);
        put::u128(out, self.transaction_key);
        put::u128(out, self.customer_key);
        put::i64(out, self.amount);
        put_i32(out, self.age_years);
        put::opt_str(out, self.gender.as_ref());
        put::opt_str(out, self.location.as_ref());
        put_decimal(out, self.account_balance);
        put::i64(out, self.prior_count);
        put_f64(out, self.prior_amount_mean);
        put::opt(out, self.seconds_since_prev, put::i64);
        put_f64(out, self.amount_to_prior_mean);
        put_f64(out, self.amount_to_balance);
        put::opt(out, self.location_is_new, |o, b| o.push(u8::from(b)));
    }

    fn decode(c: &mut Codec<'_>) -> io::Result<Self> {
        Ok(TxnFeatures {
            at: c.i64()?,
            transaction_key: c.u128()?,
            customer_key: c.u128()?,
            amount: c.i64()?,
            age_years: c.opt(Codec::i32)?,
            gender: c.opt(Codec::str)?,
            location: c.opt(Codec::str)?,
            account_balance: decimal(c)?,
            prior_count: c.i64()?,
            prior_amount_mean: c.opt(Codec::f64)?,
            seconds_since_prev: c.opt(Codec::i64)?,
            amount_to_prior_mean: c.opt(Codec::f64)?,
            amount_to_balance: c.opt(Codec::f64)?,
            location_is_new: c.opt(|c| c.u8().map(|b| b == 1))?,
        })
    }

    fn mem_size(&self) -> usize {
        size_of::<Self>()
            + self.gender.as_ref().map_or(0, heap_of)
            + self.location.as_ref().map_or(0, heap_of)
    }
}

impl Record for CustomerRow {
    fn order(&self, other: &Self) -> Ordering {
        self.customer_key.cmp(&other.customer_key)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put::u128(out, self.customer_key);
        put::str(out, &self.customer_id);
        put::i64(out, self.txn_count);
        put::i128(out, self.amount_sum);
        put::f64(out, self.amount_mean);
        put::i64(out, self.amount_min);
        put::i64(out, self.amount_max);
        put_f64(out, self.amount_std);
        put::i64(out, self.first_txn_at);
        put::i64(out, self.last_txn_at);
        put::i32(out, self.recency_days);
        put::i32(out, self.active_days);
        put::i32(out, self.distinct_locations);
        put::opt_str(out, self.home_location.as_ref());
        put::opt_str(out, self.gender.as_ref());
        put_i32(out, self.age_years);
        put_decimal(out, self.balance_last);
        put::f64(out, self.night_share);
        put::f64(out, self.weekend_share);
        put::i64(out, self.prior_txn_count);
        put::i32(out, self.tenure_days);
    }

    fn decode(c: &mut Codec<'_>) -> io::Result<Self> {
        Ok(CustomerRow {
            customer_key: c.u128()?,
            customer_id: c.str()?,
            txn_count: c.i64()?,
            amount_sum: c.i128()?,
            amount_mean: c.f64()?,
            amount_min: c.i64()?,
            amount_max: c.i64()?,
            amount_std: c.opt(Codec::f64)?,
            first_txn_at: c.i64()?,
            last_txn_at: c.i64()?,
            recency_days: c.i32()?,
            active_days: c.i32()?,
            distinct_locations: c.i32()?,
            home_location: c.opt(Codec::str)?,
            gender: c.opt(Codec::str)?,
            age_years: c.opt(Codec::i32)?,
            balance_last: decimal(c)?,
            night_share: c.f64()?,
            weekend_share: c.f64()?,
            prior_txn_count: c.i64()?,
            tenure_days: c.i32()?,
        })
    }

    fn mem_size(&self) -> usize {
        size_of::<Self>()
            + heap_of(&self.customer_id)
            + self.home_location.as_ref().map_or(0, heap_of)
            + self.gender.as_ref().map_or(0, heap_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Record + PartialEq + std::fmt::Debug>(r: &T) {
        let mut bytes = Vec::new();
        r.encode(&mut bytes);
        let mut c = super::super::sort::Codec::new(&bytes);
        assert_eq!(&T::decode(&mut c).unwrap(), r);
        assert!(c.is_empty(), "every byte read");
    }

    #[test]
    fn records_round_trip_with_and_without_nulls() {
        let full = SourceRow {
            customer_id: "C1234567890123456789012345".into(),
            transaction_id: "T1".into(),
            at: 1_467_349_200,
            amount: -5,
            dob: Date::new(1990, 8, 1),
            gender: Some("F".into()),
            location: Some("NEW DELHI".into()),
            balance: Some(Decimal {
                minor: -1250,
                scale: 2,
            }),
        };
        round_trip(&full);
        round_trip(&SourceRow {
            dob: None,
            gender: None,
            location: None,
            balance: None,
            ..full
        });
        let t = TxnFeatures {
            at: 1,
            transaction_key: u128::MAX,
            customer_key: 7,
            amount: 2,
            age_years: Some(-1),
            gender: None,
            location: Some("X".into()),
            account_balance: None,
            prior_count: 3,
            prior_amount_mean: Some(1.5),
            seconds_since_prev: Some(0),
            amount_to_prior_mean: None,
            amount_to_balance: Some(f64::MIN_POSITIVE),
            location_is_new: Some(false),
        };
        round_trip(&t);
        round_trip(&CustomerRow {
            customer_key: 1,
            customer_id: "C1".into(),
            txn_count: 2,
            amount_sum: i128::MAX,
            amount_mean: 0.5,
            amount_min: i64::MIN,
            amount_max: i64::MAX,
            amount_std: None,
            first_txn_at: 1,
            last_txn_at: 2,
            recency_days: 3,
            active_days: 4,
            distinct_locations: 5,
            home_location: None,
            gender: Some("M".into()),
            age_years: Some(30),
            balance_last: None,
            night_share: 0.25,
            weekend_share: 0.75,
            prior_txn_count: 9,
            tenure_days: 10,
        });
    }
}
