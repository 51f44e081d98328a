//! The drift inputs, bounded: per quarter, the values of at most [`SAMPLE`]
//! transactions and [`SAMPLE`] customers, those with the smallest pseudonymous keys.
//! The keys are HMAC outputs, so this is a uniform sample, the same on every run and
//! backend; below the bound it is the whole population. Holding every value of a
//! 10M-row quarter (and of the one before) would break the export's memory bound.

use compact_str::CompactString;

use super::drift::Values;
use super::features::{CustomerRow, Scale};

/// Most values kept per quarter and population.
pub const SAMPLE: usize = 100_000;

/// The `k` entries with the smallest keys.
///
/// Not a heap: offers come by the hundred thousand with random keys, and a heap of
/// 100,000 entries replaces its top at every key smaller than its largest (some
/// `k·ln(n/k)` times), each a sift through 17 levels that miss the cache. Here kept
/// entries are appended to a buffer of up to `1.25·k`; when it is full, a selection
/// (`select_nth_unstable`, linear) keeps the `k` smallest and their largest key
/// becomes the bound below which an offer is kept. Its memory is that of the heap it
/// replaces (whose doubling left room for 131,072 entries at 100,000). The same `k`
/// smallest in the end; keys are unique (HMAC outputs of distinct ids), so the set
/// does not depend on the order of offers.
#[derive(Debug)]
pub struct BottomK<T> {
    k: usize,
    entries: Vec<Entry<T>>,
    /// Keys at or above it are not among the `k` smallest (set once `k` are kept).
    bound: Option<u128>,
}

#[derive(Debug)]
struct Entry<T> {
    key: u128,
    value: T,
}

impl<T> BottomK<T> {
    /// Keeps at most `k`.
    pub fn new(k: usize) -> BottomK<T> {
        BottomK {
            k,
            entries: Vec::new(),
            bound: None,
        }
    }

    /// Offers one entry; `make` runs only when it may be kept.
    pub fn offer(&mut self, key: u128, make: impl FnOnce() -> T) {
        if self.k == 0 || self.bound.is_some_and(|b| key >= b) {
            return;
        }
        let full = self.k + self.k.div_ceil(4);
        if self.entries.capacity() == 0 {
            // Once, exactly: a doubling Vec would overshoot to 2^17 entries at 100,000.
            self.entries.reserve_exact(full);
        }
        self.entries.push(Entry { key, value: make() });
        if self.entries.len() >= full {
            self.keep_k();
        }
    }

    /// Drops all but the `k` smallest, and bounds later offers by the largest kept.
    fn keep_k(&mut self) {
        if self.entries.len() > self.k {
            self.entries
                .select_nth_unstable_by_key(self.k - 1, |e| e.key);
            self.entries.truncate(self.k);
            self.bound = self.entries.iter().map(|e| e.key).max();
        }
    }

    /// Number kept.
    pub fn len(&self) -> usize {
        self.entries.len().min(self.k)
    }

    /// Whether none was kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The values, by key.
    pub fn into_sorted(mut self) -> Vec<T> {
        self.keep_k();
        self.entries.sort_unstable_by_key(|e| e.key);
        self.entries.into_iter().map(|e| e.value).collect()
    }
}

/// The drift features of one customer in one quarter.
#[derive(Debug, Clone)]
pub struct CustomerDrift {
    txn_count: f64,
    amount_sum: f64,
    age_years: Option<f64>,
    balance_last: Option<f64>,
    gender: Option<CompactString>,
    home_location: Option<CompactString>,
}

impl CustomerDrift {
    /// From a customer row.
    pub fn of(c: &CustomerRow, scale: Scale) -> CustomerDrift {
        CustomerDrift {
            txn_count: c.txn_count as f64,
            amount_sum: scale.to_f64(c.amount_sum),
            age_years: c.age_years.map(f64::from),
            balance_last: c.balance_last.map(|b| b.to_f64()),
            gender: c.gender.clone(),
            home_location: c.home_location.clone(),
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
    let cat = |f: fn(&CustomerDrift) -> Option<&CompactString>| {
        Values::Categorical(
            customers
                .iter()
                .map(|c| f(c).map(|s| s.to_string()))
                .collect(),
        )
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
        ("gender", cat(|c| c.gender.as_ref())),
        ("home_location", cat(|c| c.home_location.as_ref())),
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

    /// Against the obvious oracle (sort everything, take `k`), across compactions, for
    /// sizes below, at and above `k`, with `make` called only for offers that may stay.
    #[test]
    fn equals_sorting_everything() {
        // A fixed pseudo-random sequence of distinct keys (an LCG over u64, widened).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let keys: Vec<u128> = (0..5000)
            .map(|i| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (u128::from(x) << 64) | i
            })
            .collect();
        for k in [1usize, 2, 7, 100, 999, 5000, 6000] {
            for n in [0usize, 1, 50, 1000, 5000] {
                let mut b = BottomK::new(k);
                let mut made = 0;
                for &key in &keys[..n] {
                    b.offer(key, || {
                        made += 1;
                        key
                    });
                }
                assert_eq!(b.len(), n.min(k), "k {k} n {n}");
                assert_eq!(b.is_empty(), n == 0);
                let mut all = keys[..n].to_vec();
                all.sort_unstable();
                all.truncate(k);
                assert!(made <= n, "k {k} n {n}");
                assert_eq!(b.into_sorted(), all, "k {k} n {n}");
            }
        }
        let mut none = BottomK::new(0);
        none.offer(1, || 1);
        assert!(none.is_empty() && none.into_sorted().is_empty());
    }
}
