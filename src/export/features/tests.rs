//! Hand-computed values on a small crafted history: same-second rows ordered by id
//! bytes (`T10` before `T9`), nulls, a zero balance, a customer spanning two quarters,
//! a birth date after the quarter, ties for the home location.

use super::*;

struct DigitKeys;

/// Keys that are the digits of the id, so expectations stay readable.
impl Keys for DigitKeys {
    fn customer(&self, id: &str) -> u128 {
        id[1..].parse().unwrap()
    }
    fn transaction(&self, id: &str) -> u128 {
        1000 + id[1..].parse::<u128>().unwrap()
    }
}

fn at(text: &str) -> i64 {
    let d = Date::new(
        text[0..4].parse().unwrap(),
        text[5..7].parse().unwrap(),
        text[8..10].parse().unwrap(),
    )
    .unwrap();
    let h: i64 = text[11..13].parse().unwrap();
    let m: i64 = text[14..16].parse().unwrap();
    let s: i64 = text[17..19].parse().unwrap();
    d.days_since_epoch() * 86_400 + h * 3600 + m * 60 + s
}

fn row(customer: &str, id: &str, when: &str, amount: i64) -> SourceRow {
    SourceRow {
        customer_id: customer.into(),
        transaction_id: id.into(),
        at: at(when),
        amount,
        dob: None,
        gender: None,
        location: None,
        balance: None,
    }
}

fn date(y: i32, m: u8, d: u8) -> Date {
    Date::new(y, m, d).unwrap()
}

fn ctx() -> QuarterContext {
    QuarterContext::new(Quarter::parse("2016Q3").unwrap(), Scale(2))
}

fn dec(minor: i64, scale: u8) -> Option<Decimal> {
    Some(Decimal { minor, scale })
}

/// C1: one transaction in 2016Q2, three in 2016Q3 (two in the same second).
fn c1() -> Vec<SourceRow> {
    vec![
        SourceRow {
            dob: Some(date(1990, 8, 1)),
            gender: Some("M".into()),
            location: Some("A".into()),
            balance: dec(100_000, 2),
            ..row("C1", "T1", "2016-06-15 10:00:00", 10_000)
        },
        SourceRow {
            location: Some("A".into()),
            balance: dec(0, 2),
            ..row("C1", "T10", "2016-07-01 05:00:00", 2_550)
        },
        SourceRow {
            location: Some("B".into()),
            ..row("C1", "T9", "2016-07-01 05:00:00", 5_000)
        },
        SourceRow {
            dob: Some(date(1990, 8, 1)),
            gender: Some("F".into()),
            balance: dec(5_000, 1),
            ..row("C1", "T11", "2016-07-02 12:00:00", 1_000)
        },
    ]
}

fn fold(rows: &[SourceRow], daily: &mut [DayTally]) -> Folded {
    let mut out = Folded::default();
    fold_customer(rows, &ctx(), &DigitKeys, daily, &mut out);
    out
}

#[test]
fn point_in_time_history_of_each_transaction() {
    let mut daily = vec![DayTally::default(); 92];
    let out = fold(&c1(), &mut daily);
    let t = &out.transactions;
    assert_eq!(t.len(), 3, "the 2016Q2 row gives no row");
    assert_eq!(
        t.iter().map(|x| x.transaction_key).collect::<Vec<_>>(),
        [1010, 1009, 1011],
        "same second: T10 is earlier than T9 (bytes)"
    );

    // T10: one earlier transaction (100.00, 15 days 19 hours before).
    assert_eq!(t[0].customer_key, 1);
    assert_eq!(t[0].prior_count, 1);
    assert_eq!(t[0].prior_amount_mean, Some(100.0));
    assert_eq!(t[0].seconds_since_prev, Some(15 * 86_400 + 19 * 3600));
    assert_eq!(t[0].amount_to_prior_mean, Some(0.255));
    assert_eq!(t[0].amount_to_balance, None, "zero balance");
    assert_eq!(t[0].account_balance, dec(0, 2));
    assert_eq!(t[0].location_is_new, Some(false), "A was used in June");
    assert_eq!(t[0].age_years, None, "no birth date on the row");
    assert_eq!(t[0].gender, None);

    // T9: same second as T10, after it.
    assert_eq!(t[1].prior_count, 2);
    assert_eq!(t[1].prior_amount_mean, Some(62.75));
    assert_eq!(t[1].seconds_since_prev, Some(0));
    assert_eq!(t[1].amount_to_prior_mean, Some(10_000.0 / 12_550.0));
    assert_eq!(t[1].location_is_new, Some(true));
    assert_eq!(t[1].amount_to_balance, None, "no balance");

    // T11: no location, balance 500.0 at scale 1, 25 on 2016-07-02 (born 1990-08-01).
    assert_eq!(t[2].prior_count, 3);
    assert_eq!(t[2].prior_amount_mean, Some(17_550.0 / 300.0));
    assert_eq!(t[2].seconds_since_prev, Some(31 * 3600));
    assert_eq!(t[2].amount_to_prior_mean, Some(3_000.0 / 17_550.0));
    assert_eq!(t[2].amount_to_balance, Some(0.02));
    assert_eq!(t[2].location_is_new, None, "no location");
    assert_eq!(t[2].age_years, Some(25));
    assert_eq!(t[2].gender.as_deref(), Some("F"));
}

#[test]
fn the_customer_row_of_the_quarter() {
    let mut daily = vec![DayTally::default(); 92];
    let out = fold(&c1(), &mut daily);
    let c = out.current.unwrap();
    assert_eq!(c.customer_key, 1);
    assert_eq!(c.customer_id, "C1");
    assert_eq!(c.txn_count, 3);
    assert_eq!(c.amount_sum, 8_550);
    assert_eq!(c.amount_mean, 28.5);
    assert_eq!((c.amount_min, c.amount_max), (1_000, 5_000));
    // 25.5, 50, 10: squared deviations 9 + 462.25 + 342.25 = 813.5, / 2.
    assert_eq!(c.amount_std, Some(406.75f64.sqrt()));
    assert_eq!(c.first_txn_at, at("2016-07-01 05:00:00"));
    assert_eq!(c.last_txn_at, at("2016-07-02 12:00:00"));
    assert_eq!(c.recency_days, 90, "2016-09-30 - 2016-07-02");
    assert_eq!(c.active_days, 2);
    assert_eq!(c.distinct_locations, 2);
    assert_eq!(
        c.home_location.as_deref(),
        Some("B"),
        "A and B once each in the quarter: B was used last"
    );
    assert_eq!(c.gender.as_deref(), Some("F"), "latest with a gender");
    assert_eq!(c.age_years, Some(26), "at 2016-09-30");
    assert_eq!(c.balance_last, dec(5_000, 1));
    assert_eq!(c.night_share, 2.0 / 3.0);
    assert_eq!(c.weekend_share, 1.0 / 3.0, "2016-07-02 is a Saturday");
    assert_eq!(c.prior_txn_count, 1);
    assert_eq!(c.tenure_days, 107, "2016-09-30 - 2016-06-15");

    let p = out.previous.unwrap();
    assert_eq!((p.txn_count, p.amount_sum), (1, 10_000));
    assert_eq!(p.gender.as_deref(), Some("M"));
    assert_eq!(p.age_years, Some(25), "at 2016-06-30");
    assert_eq!(p.amount_std, None);
    assert_eq!(out.previous_amounts, [(1001, 10_000)]);
}

#[test]
fn days_count_customers_once_and_new_customers_on_their_first_day() {
    let mut daily = vec![DayTally::default(); 92];
    fold(&c1(), &mut daily);
    // C2: first transaction ever on the quarter's last second; born after the quarter.
    let c2 = vec![SourceRow {
        dob: Some(date(2016, 12, 1)),
        location: Some("A".into()),
        ..row("C2", "T5", "2016-09-30 23:59:59", 100)
    }];
    let out = fold(&c2, &mut daily);
    assert_eq!(
        daily[0],
        DayTally {
            txn_count: 2,
            amount_sum: 7_550,
            unique_customers: 1,
            new_customers: 0,
        }
    );
    assert_eq!(daily[1].txn_count, 1);
    assert_eq!(daily[1].unique_customers, 1);
    assert_eq!(
        daily[91],
        DayTally {
            txn_count: 1,
            amount_sum: 100,
            unique_customers: 1,
            new_customers: 1,
        }
    );
    assert_eq!(daily[2..91].iter().map(|d| d.txn_count).sum::<i64>(), 0);

    let t = &out.transactions[0];
    assert_eq!(t.prior_count, 0);
    assert_eq!(
        (
            t.prior_amount_mean,
            t.seconds_since_prev,
            t.amount_to_prior_mean
        ),
        (None, None, None)
    );
    assert_eq!(t.location_is_new, None, "no earlier transaction");
    assert_eq!(t.age_years, None, "born after the transaction");
    let c = out.current.unwrap();
    assert_eq!(c.age_years, None, "born after the quarter");
    assert_eq!(c.amount_std, None, "one transaction");
    assert_eq!((c.recency_days, c.tenure_days), (0, 0));
    assert_eq!(c.night_share, 0.0);
    assert!(out.previous.is_none());
}

#[test]
fn std_overflowing_i128_falls_back_to_two_pass() {
    let big = i64::MAX / 2;
    let rows: Vec<SourceRow> = (0..4)
        .map(|i| row("C3", &format!("T{i}"), "2016-08-01 10:00:00", big - i))
        .enumerate()
        .map(|(i, mut r)| {
            r.at += i as i64;
            r
        })
        .collect();
    let mut daily = vec![DayTally::default(); 92];
    let c = fold(&rows, &mut daily).current.unwrap();
    assert_eq!(c.amount_sum, 4 * i128::from(big) - 6);
    // Two-pass in doubles: the values collapse to one double, so the spread is 0.
    assert_eq!(c.amount_std, Some(0.0));
}

#[test]
fn quantiles_match_numpy_linear() {
    let s = Scale(0);
    assert_eq!(quantile(&[1, 2, 3, 4], 0.5, s), Some(2.5));
    // np.percentile([1, 2, 3, 4], 95) == 3.8499999999999996
    assert_eq!(quantile(&[1, 2, 3, 4], 0.95, s), Some(3.8499999999999996));
    assert_eq!(quantile(&[7], 0.95, s), Some(7.0));
    assert_eq!(quantile(&[], 0.5, s), None);
    assert_eq!(quantile(&[100, 300], 0.5, Scale(2)), Some(2.0));
    // np.percentile([0.1, 0.2, 0.3], 95) == 0.29
    assert_eq!(quantile(&[10, 20, 30], 0.95, Scale(2)), Some(0.29));
}

#[test]
fn ages_weekdays_and_decimals() {
    let on = |y, m, d| date(y, m, d).days_since_epoch();
    assert_eq!(age_years(date(2000, 2, 29), on(2001, 2, 28)), Some(0));
    assert_eq!(age_years(date(2000, 2, 29), on(2001, 3, 1)), Some(1));
    assert_eq!(age_years(date(2000, 1, 2), on(2000, 1, 1)), None);
    assert_eq!(clock(at("2016-07-02 12:34:56")), (12, 5, on(2016, 7, 2)));
    assert_eq!(clock(at("2016-07-04 00:00:00")).1, 0, "a Monday");
    assert_eq!(Decimal::parse("-12.50"), dec(-1_250, 2));
    assert_eq!(Decimal::parse("7"), dec(7, 0));
    assert_eq!(Decimal::parse("12,50"), None);
    assert_eq!(Decimal::parse("1.2345678"), None, "beyond MAX_SCALE");
    assert_eq!(Decimal::parse("-12.50").unwrap().to_f64(), -12.5);
    assert_eq!(Scale(2).text(-5), "-0.05");
}

#[test]
fn many_locations_count_the_same_past_the_short_list() {
    // 20 locations (more than the short list holds), then L3 and L7 twice more, L7 last.
    let mut rows = Vec::new();
    let mut add = |loc: String| {
        let i = rows.len() as i64;
        rows.push(SourceRow {
            location: Some(loc.into()),
            at: at("2016-08-01 00:00:00") + i,
            ..row("C9", &format!("T{i:03}"), "2016-08-01 00:00:00", 100)
        });
    };
    for i in 0..20 {
        add(format!("L{i}"));
    }
    for l in ["L3", "L7", "L3", "L7"] {
        add(l.to_owned());
    }
    let mut daily = vec![DayTally::default(); 92];
    let out = fold(&rows, &mut daily);
    let c = out.current.unwrap();
    assert_eq!(c.distinct_locations, 20);
    assert_eq!(
        c.home_location.as_deref(),
        Some("L7"),
        "L3 and L7 3 times each, L7 last"
    );
    let new: Vec<Option<bool>> = out.transactions.iter().map(|t| t.location_is_new).collect();
    let mut expected = vec![None];
    expected.extend(std::iter::repeat_n(Some(true), 19));
    expected.extend([Some(false); 4]);
    assert_eq!(new, expected);
}
