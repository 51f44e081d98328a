//! The drift inputs, bounded: per quarter, the values of at most [`SAMPLE`]
//! transactions and [`SAMPLE`] customers, those with the smallest pseudonymous keys.
//! The keys are HMAC outputs, so this is a uniform sample, the same on every run and
//! backend; below the bound it is the whole population. Holding every value of a
//! 10M-row quarter (and of the one before) would break the export's memory bound.

use std::collections::BinaryHeap;

use super::drift::Values;
use super::features::{CustomerRow, Scale};

/// Most values kept per quarter and population.
pub const SAMPLE: usize = 100_000;

/// The `k` entries with the smallest keys.
#[derive(Debug)]
pub struct BottomK<T> {
    k: usize,
    heap: BinaryHeap<Entry<T>>,
}

#[derive(Debug)]
struct Entry<T> {
    key: u128,
    value: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl<T> BottomK<T> {
    /// Keeps at most `k`.
    pub fn new(k: usize) -> BottomK<T> {
        BottomK {
            k,
            heap: BinaryHeap::new(),
        }
    }

    /// Offers one entry; `make` runs only when it is kept.
    pub fn offer(&mut self, key: u128, make: impl FnOnce() -> T) {
        if self.heap.len() < self.k {
            self.heap.push(Entry { key, value: make() });
        } else if let Some(mut top) = self.heap.peek_mut()
            && key < top.key
        {
            // Replaced in place: one sift instead of a pop and a push.
            *top = Entry { key, value: make() };
        }
    }

    /// Number kept.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether none was kept.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The values, by key.
    pub fn into_sorted(self) -> Vec<T> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| e.value)
            .collect()
    }
}

/// The drift features of one customer in one quarter.
#[derive(Debug, Clone)]
pub struct CustomerDrift {
    txn_count: f64,
    amount_sum: f64,
    age_years: Option<f64>,
    balance_last: Option<f64>,
    gender: Option<String>,
    home_location: Option<String>,
}

impl CustomerDrift {
    /// From a customer row.
    pub fn of(c: &CustomerRow, scale: Scale) -> CustomerDrift {
        CustomerDrift {
            txn_count: c.txn_count as f64,
            amount_sum: scale.to_f64(c.amount_sum),
            age_years: c.age_years.map(f64::from),
            balance_last: c.balance_last.map(|b| b.to_f64()),
            gender: c.gender.as_deref().map(str::to_owned),
            home_location: c.home_location.as_deref().map(str::to_owned),
        }
    }
}

/// One quarter's drift sample.
#[derive(Debug)]
pub struct QuarterSample {
    /// Amounts of transactions (doubles).
    pub amounts: BottomK<f64>,
    /// Customers.
    pub customers: BottomK<CustomerDrift>,
}

impl Default for QuarterSample {
    fn default() -> QuarterSample {
        QuarterSample {
            amounts: BottomK::new(SAMPLE),
            customers: BottomK::new(SAMPLE),
        }
    }
}

/// The features compared, in the manifest's order: (name, values).
pub fn features(sample: QuarterSample) -> Vec<(&'static str, Values)> {
    let amounts = sample.amounts.into_sorted();
    let customers = sample.customers.into_sorted();
    let num =
        |f: fn(&CustomerDrift) -> Option<f64>| Values::Numeric(customers.iter().map(f).collect());
    let cat = |f: fn(&CustomerDrift) -> Option<String>| {
        Values::Categorical(customers.iter().map(f).collect())
    };
    vec![
        (
            "amount",
            Values::Numeric(amounts.into_iter().map(Some).collect()),
        ),
        ("txn_count", num(|c| Some(c.txn_count))),
        ("amount_sum", num(|c| Some(c.amount_sum))),
        ("age_years", num(|c| c.age_years)),
        ("balance_last", num(|c| c.balance_last)),
        ("gender", cat(|c| c.gender.clone())),
        ("home_location", cat(|c| c.home_location.clone())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_smallest_keys_whatever_the_order() {
        let mut a = BottomK::new(3);
        let mut b = BottomK::new(3);
        for k in [9u128, 1, 7, 3, 5, 2] {
            a.offer(k, || k);
        }
        for k in [2u128, 5, 3, 7, 1, 9] {
            b.offer(k, || k);
        }
        assert_eq!(a.into_sorted(), [1, 2, 3]);
        assert_eq!(b.into_sorted(), [1, 2, 3]);
    }
}
