//! The row contract: turns the text cells of one record into a [`Transaction`] or a
//! [`Rejection`], and counts the warnings of attributes set to NULL.
//!
//! Pure and allocation-light: it runs on every row of every file, on worker threads.
//! Row-level failures found before cells exist (`malformed_row`, `invalid_encoding`,
//! `row_too_long`) and duplicates (which need the warehouse) are decided elsewhere but
//! use the same [`Rule`] names.

use crate::model::{
    Amount, AmountError, Currency, Date, DateTime, Gender, ParsedAmount, Text, Transaction,
};
use crate::profile::{CurrencySource, FIELD_COUNT, Field, Profile, When, YearRule};

/// Every rule of the contract, with the stable name stored in the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    // Rejections: the row is not loaded.
    /// Wrong number of fields, broken quoting, or not a JSON object.
    MalformedRow,
    /// Not valid UTF-8.
    InvalidEncoding,
    /// Longer than 64 KiB.
    RowTooLong,
    /// Empty transaction id.
    MissingTransactionId,
    /// Empty customer id.
    MissingCustomerId,
    /// Transaction date missing or impossible.
    InvalidTransactionDate,
    /// Transaction time missing or impossible.
    InvalidTransactionTime,
    /// Amount missing.
    MissingAmount,
    /// Amount not a plain decimal at the currency's scale.
    InvalidAmount,
    /// Amount below zero.
    NegativeAmount,
    /// Amount above the profile's maximum.
    AmountAboveMax,
    /// Currency missing or not a three-letter code.
    InvalidCurrency,
    /// Transaction id already loaded with different content.
    ConflictingDuplicate,
    // Warnings: the row is loaded with the attribute set to NULL.
    /// Birth date missing.
    MissingDob,
    /// Birth date is the source's placeholder (1/1/1800).
    PlaceholderDob,
    /// Birth date unparseable.
    InvalidDob,
    /// Birth date after the transaction.
    DobAfterTransaction,
    /// Birth date more than the profile's maximum age before the transaction.
    DobTooOld,
    /// Gender missing.
    MissingGender,
    /// Gender not M, F or T.
    InvalidGender,
    /// Location empty.
    MissingLocation,
    /// Balance missing.
    MissingBalance,
    /// Balance not a decimal.
    InvalidBalance,
}

/// Whether a rule rejects a row or only NULLs an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Not loaded; quarantined.
    Reject,
    /// Loaded with a NULL; counted.
    Warning,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 23] = [
        Rule::MalformedRow,
        Rule::InvalidEncoding,
        Rule::RowTooLong,
        Rule::MissingTransactionId,
        Rule::MissingCustomerId,
        Rule::InvalidTransactionDate,
        Rule::InvalidTransactionTime,
        Rule::MissingAmount,
        Rule::InvalidAmount,
        Rule::NegativeAmount,
        Rule::AmountAboveMax,
        Rule::InvalidCurrency,
        Rule::ConflictingDuplicate,
        Rule::MissingDob,
        Rule::PlaceholderDob,
        Rule::InvalidDob,
        Rule::DobAfterTransaction,
        Rule::DobTooOld,
        Rule::MissingGender,
        Rule::InvalidGender,
        Rule::MissingLocation,
        Rule::MissingBalance,
        Rule::InvalidBalance,
    ];

    /// The warning rules, in bit order of [`Warnings`].
    pub const WARNINGS: [Rule; 10] = [
        Rule::MissingDob,
        Rule::PlaceholderDob,
        Rule::InvalidDob,
        Rule::DobAfterTransaction,
        Rule::DobTooOld,
        Rule::MissingGender,
        Rule::InvalidGender,
        Rule::MissingLocation,
        Rule::MissingBalance,
        Rule::InvalidBalance,
    ];

    /// Stable name, as stored in `rejected_rows.rule` and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Rule::MalformedRow => "malformed_row",
            Rule::InvalidEncoding => "invalid_encoding",
            Rule::RowTooLong => "row_too_long",
            Rule::MissingTransactionId => "missing_transaction_id",
            Rule::MissingCustomerId => "missing_customer_id",
            Rule::InvalidTransactionDate => "invalid_transaction_date",
            Rule::InvalidTransactionTime => "invalid_transaction_time",
            Rule::MissingAmount => "missing_amount",
            Rule::InvalidAmount => "invalid_amount",
            Rule::NegativeAmount => "negative_amount",
            Rule::AmountAboveMax => "amount_above_max",
            Rule::InvalidCurrency => "invalid_currency",
            Rule::ConflictingDuplicate => "conflicting_duplicate",
            Rule::MissingDob => "missing_dob",
            Rule::PlaceholderDob => "placeholder_dob",
            Rule::InvalidDob => "invalid_dob",
            Rule::DobAfterTransaction => "dob_after_transaction",
            Rule::DobTooOld => "dob_too_old",
            Rule::MissingGender => "missing_gender",
            Rule::InvalidGender => "invalid_gender",
            Rule::MissingLocation => "missing_location",
            Rule::MissingBalance => "missing_balance",
            Rule::InvalidBalance => "invalid_balance",
        }
    }

    /// Looks a rule up by its stable name.
    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Reject or warning.
    pub const fn severity(self) -> Severity {
        match self {
            Rule::MissingDob
            | Rule::PlaceholderDob
            | Rule::InvalidDob
            | Rule::DobAfterTransaction
            | Rule::DobTooOld
            | Rule::MissingGender
            | Rule::InvalidGender
            | Rule::MissingLocation
            | Rule::MissingBalance
            | Rule::InvalidBalance => Severity::Warning,
            _ => Severity::Reject,
        }
    }

    /// Bit of a warning rule in [`Warnings`].
    fn warning_bit(self) -> u16 {
        let index = Rule::WARNINGS.iter().position(|r| *r == self).unwrap_or(0);
        1 << index
    }
}

/// The warnings of one row, as a bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Warnings(pub u16);

impl Warnings {
    fn add(&mut self, rule: Rule) {
        self.0 |= rule.warning_bit();
    }

    /// The rules set.
    pub fn rules(self) -> impl Iterator<Item = Rule> {
        Rule::WARNINGS
            .into_iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, r)| r)
    }
}

/// Per-rule warning counters for a batch or a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarningCounts(pub [u64; Rule::WARNINGS.len()]);

impl WarningCounts {
    /// Counts one row's warnings.
    pub fn add(&mut self, w: Warnings) {
        if w.0 == 0 {
            return;
        }
        for (i, c) in self.0.iter_mut().enumerate() {
            *c += u64::from(w.0 >> i & 1);
        }
    }

    /// Adds another set of counters.
    pub fn merge(&mut self, other: &WarningCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// Non-zero counters by rule.
    pub fn iter(&self) -> impl Iterator<Item = (Rule, u64)> + '_ {
        Rule::WARNINGS
            .into_iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
    }
}

/// Why a row was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The rule broken (the first one, in contract order).
    pub rule: Rule,
    /// The field at fault, when one is.
    pub field: Option<Field>,
    /// A short human explanation, e.g. the offending value.
    pub detail: String,
    /// The amount, when it parsed (it counts in the control totals), whatever its size.
    pub amount: Option<ParsedAmount>,
}

/// The result of validating one row.
// Not boxed: this is returned for every row, and a heap allocation per row costs more
// than moving the larger variant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Load it; warnings say which attributes were set to NULL.
    Valid(Transaction, Warnings),
    /// Quarantine it.
    Rejected(Rejection),
}

fn reject(rule: Rule, field: Field, detail: String, amount: Option<ParsedAmount>) -> Verdict {
    Verdict::Rejected(Rejection {
        rule,
        field: Some(field),
        detail,
        amount,
    })
}

/// Shortens a value quoted in a detail message.
fn quoted(value: &str) -> String {
    let mut s: String = value.chars().take(40).collect();
    if s.len() < value.len() {
        s.push('…');
    }
    format!("{s:?}")
}

/// Shortens a long number quoted in a detail message (the raw row keeps all of it).
fn shortened(value: &str) -> String {
    match value.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

/// Validates one row. `cells` holds, per field slot, the trimmed cell text or `None`
/// when the column is absent or the value is one of the profile's null values.
pub fn validate(profile: &Profile, cells: &[Option<&str>; FIELD_COUNT]) -> Verdict {
    let cell = |f: Field| cells[f.slot()];

    // The amount is parsed first so that a row rejected for another rule still
    // contributes its amount to the control totals.
    // Any well-formed amount parses exactly, however many digits it has: one too large
    // for 64 bits is above every maximum and must still count (issue 8 §6).
    let amount_text = cell(Field::Amount);
    let (amount, amount_error) = match amount_text.map(|t| ParsedAmount::parse(t, profile.scale)) {
        Some(Ok(a)) => (Some(a), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };

    let Some(transaction_id) = cell(Field::TransactionId) else {
        return reject(
            Rule::MissingTransactionId,
            Field::TransactionId,
            "empty transaction id".into(),
            amount,
        );
    };
    let Some(customer_id) = cell(Field::CustomerId) else {
        return reject(
            Rule::MissingCustomerId,
            Field::CustomerId,
            "empty customer id".into(),
            amount,
        );
    };

    let transaction_at = match &profile.when {
        When::At(format) => match cell(Field::TransactionAt) {
            Some(text) => match format.parse(text) {
                Some(at) => at,
                None => {
                    return reject(
                        Rule::InvalidTransactionDate,
                        Field::TransactionAt,
                        format!("{} is not a valid timestamp", quoted(text)),
                        amount,
                    );
                }
            },
            None => {
                return reject(
                    Rule::InvalidTransactionDate,
                    Field::TransactionAt,
                    "missing timestamp".into(),
                    amount,
                );
            }
        },
        When::DateAndTime(date_format, time_format) => {
            let date = match cell(Field::TransactionDate) {
                Some(text) => match date_format.parse(text, YearRule::TwentyFirstCentury) {
                    Some(d) => d,
                    None => {
                        return reject(
                            Rule::InvalidTransactionDate,
                            Field::TransactionDate,
                            format!("{} is not a valid date", quoted(text)),
                            amount,
                        );
                    }
                },
                None => {
                    return reject(
                        Rule::InvalidTransactionDate,
                        Field::TransactionDate,
                        "missing date".into(),
                        amount,
                    );
                }
            };
            let time = match cell(Field::TransactionTime) {
                Some(text) => match time_format.parse(text) {
                    Some(t) => t,
                    None => {
                        return reject(
                            Rule::InvalidTransactionTime,
                            Field::TransactionTime,
                            format!("{} is not a valid time of day", quoted(text)),
                            amount,
                        );
                    }
                },
                None => {
                    return reject(
                        Rule::InvalidTransactionTime,
                        Field::TransactionTime,
                        "missing time".into(),
                        amount,
                    );
                }
            };
            match DateTime::new(date, time.0, time.1, time.2) {
                Some(at) => at,
                None => {
                    return reject(
                        Rule::InvalidTransactionTime,
                        Field::TransactionTime,
                        "impossible time of day".into(),
                        amount,
                    );
                }
            }
        }
    };

    let amount = match (amount_text, amount_error, amount) {
        (None, _, _) => {
            return reject(
                Rule::MissingAmount,
                Field::Amount,
                "missing amount".into(),
                None,
            );
        }
        (Some(text), Some(e), _) => {
            let why = match e {
                AmountError::NotPlainDecimal => "is not a plain decimal",
                AmountError::TooPrecise => "has more decimals than the currency allows",
                AmountError::TooLarge => "is too large",
            };
            return reject(
                Rule::InvalidAmount,
                Field::Amount,
                format!("{} {why}", quoted(text)),
                None,
            );
        }
        (Some(_), None, Some(a)) => a,
        (Some(_), None, None) => unreachable!("amount text present but not parsed"),
    };
    if amount.is_negative() {
        return reject(
            Rule::NegativeAmount,
            Field::Amount,
            format!("{} is negative", shortened(&amount.to_text())),
            Some(amount),
        );
    }
    let amount = match amount {
        ParsedAmount::Fits(a) if a.minor <= profile.max_amount.minor => a,
        above => {
            return reject(
                Rule::AmountAboveMax,
                Field::Amount,
                format!(
                    "{} exceeds the maximum {}",
                    shortened(&above.to_text()),
                    profile.max_amount
                ),
                Some(above),
            );
        }
    };

    let currency = match profile.currency {
        CurrencySource::Fixed(c) => c,
        CurrencySource::Column => match cell(Field::Currency).and_then(Currency::parse) {
            Some(c) => c,
            None => {
                return reject(
                    Rule::InvalidCurrency,
                    Field::Currency,
                    format!(
                        "{} is not a currency code",
                        quoted(cell(Field::Currency).unwrap_or(""))
                    ),
                    Some(ParsedAmount::Fits(amount)),
                );
            }
        },
    };

    let mut warnings = Warnings::default();
    let customer_dob = birth_date(profile, cell(Field::CustomerDob), transaction_at.date)
        .map_err(|rule| warnings.add(rule))
        .ok();
    let gender = match cell(Field::Gender) {
        None => {
            warnings.add(Rule::MissingGender);
            None
        }
        Some(text) => {
            let g = Gender::parse(text);
            if g.is_none() {
                warnings.add(Rule::InvalidGender);
            }
            g
        }
    };
    let location = match cell(Field::Location) {
        Some(text) => Some(Text::from(text)),
        None => {
            warnings.add(Rule::MissingLocation);
            None
        }
    };
    let account_balance = match cell(Field::AccountBalance) {
        None => {
            warnings.add(Rule::MissingBalance);
            None
        }
        Some(text) => {
            let b = Amount::parse(text, profile.scale).ok();
            if b.is_none() {
                warnings.add(Rule::InvalidBalance);
            }
            b
        }
    };

    Verdict::Valid(
        Transaction {
            transaction_id: Text::from(transaction_id),
            customer_id: Text::from(customer_id),
            customer_dob,
            gender,
            location,
            account_balance,
            transaction_at,
            amount,
            currency,
        },
        warnings,
    )
}

/// Resolves a birth date against the transaction date, or says which warning applies.
fn birth_date(profile: &Profile, text: Option<&str>, on: Date) -> Result<Date, Rule> {
    let text = text.ok_or(Rule::MissingDob)?;
    let dob = profile
        .dob_format
        .parse(text, YearRule::NotAfter(on.year))
        .ok_or(Rule::InvalidDob)?;
    if Some(dob) == profile.dob_placeholder {
        return Err(Rule::PlaceholderDob);
    }
    if dob > on {
        return Err(Rule::DobAfterTransaction);
    }
    let mut age = on.year - dob.year;
    if (on.month, on.day) < (dob.month, dob.day) {
        age -= 1;
    }
    if age > profile.max_age_years as i32 {
        return Err(Rule::DobTooOld);
    }
    Ok(dob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Profile, builtin_specs};

    fn kaggle() -> Profile {
        Profile::from_spec(&builtin_specs()[0]).unwrap()
    }

    fn canonical() -> Profile {
        Profile::from_spec(&builtin_specs()[1]).unwrap()
    }

    /// Cells of a Kaggle row, in the column order of the Kaggle header.
    fn row(values: [&str; 9]) -> [Option<&str>; FIELD_COUNT] {
        let p = kaggle();
        let order = [
            Field::TransactionId,
            Field::CustomerId,
            Field::CustomerDob,
            Field::Gender,
            Field::Location,
            Field::AccountBalance,
            Field::TransactionDate,
            Field::TransactionTime,
            Field::Amount,
        ];
        let mut cells = [None; FIELD_COUNT];
        for (f, v) in order.into_iter().zip(values) {
            cells[f.slot()] = (!p.is_null(v)).then_some(v);
        }
        cells
    }

    const GOOD: [&str; 9] = [
        "T1",
        "C5841053",
        "10/1/94",
        "F",
        "JAMSHEDPUR",
        "17819.05",
        "2/8/16",
        "143207",
        "25.0",
    ];

    fn with(index: usize, value: &'static str) -> [&'static str; 9] {
        let mut v = GOOD;
        v[index] = value;
        v
    }

    fn rejected_rule(values: [&str; 9]) -> Rule {
        match validate(&kaggle(), &row(values)) {
            Verdict::Rejected(r) => r.rule,
            Verdict::Valid(..) => panic!("expected a rejection for {values:?}"),
        }
    }

    fn warnings_of(values: [&str; 9]) -> (Transaction, Vec<Rule>) {
        match validate(&kaggle(), &row(values)) {
            Verdict::Valid(t, w) => (t, w.rules().collect()),
            Verdict::Rejected(r) => panic!("unexpected rejection {r:?}"),
        }
    }

    #[test]
    fn good_row_loads_with_every_attribute() {
        let (t, w) = warnings_of(GOOD);
        assert!(w.is_empty());
        assert_eq!(t.transaction_id, "T1");
        assert_eq!(t.customer_dob.unwrap().to_string(), "1994-01-10");
        assert_eq!(t.gender, Some(Gender::Female));
        assert_eq!(t.account_balance.unwrap().to_text(), "17819.05");
        assert_eq!(t.transaction_at.to_string(), "2016-08-02 14:32:07");
        assert_eq!(t.amount.to_text(), "25.00");
        assert_eq!(t.currency.as_str(), "INR");
    }

    #[test]
    fn missing_transaction_id() {
        assert_eq!(rejected_rule(with(0, "")), Rule::MissingTransactionId);
    }

    #[test]
    fn missing_customer_id() {
        assert_eq!(rejected_rule(with(1, "")), Rule::MissingCustomerId);
    }

    #[test]
    fn impossible_or_missing_dates() {
        for bad in ["31/2/16", "0/8/16", "", "2016-08-02", "1/13/16"] {
            assert_eq!(
                rejected_rule(with(6, bad)),
                Rule::InvalidTransactionDate,
                "{bad}"
            );
        }
    }

    #[test]
    fn impossible_or_missing_times() {
        for bad in ["246000", "1261", "", "12:00:00", "9999999"] {
            assert_eq!(
                rejected_rule(with(7, bad)),
                Rule::InvalidTransactionTime,
                "{bad}"
            );
        }
    }

    #[test]
    fn amounts() {
        assert_eq!(rejected_rule(with(8, "")), Rule::MissingAmount);
        for bad in ["1,000.50", "1e3", "abc", "1.234"] {
            assert_eq!(rejected_rule(with(8, bad)), Rule::InvalidAmount, "{bad}");
        }
        assert_eq!(rejected_rule(with(8, "-5")), Rule::NegativeAmount);
        assert_eq!(rejected_rule(with(8, "100000000.01")), Rule::AmountAboveMax);
        // Issue 8 §6: too large for 64 bits is still above the maximum, and counted.
        for (huge, text) in [
            ("92233720368547758.08", "92233720368547758.08"),
            ("12345678901234567890", "12345678901234567890.00"),
            (
                "1234567890123456789012345678901234567890",
                "1234567890123456789012345678901234567890.00",
            ),
        ] {
            let Verdict::Rejected(r) = validate(&kaggle(), &row(with(8, huge))) else {
                panic!("{huge}")
            };
            assert_eq!(r.rule, Rule::AmountAboveMax, "{huge}: {}", r.detail);
            assert_eq!(r.amount.unwrap().to_text(), text);
        }
        assert_eq!(
            rejected_rule(with(8, "-12345678901234567890")),
            Rule::NegativeAmount
        );
        let (t, _) = warnings_of(with(8, "100000000"));
        assert_eq!(t.amount.to_text(), "100000000.00");
    }

    #[test]
    fn rejected_rows_keep_their_parsed_amount() {
        let Verdict::Rejected(r) = validate(&kaggle(), &row(with(1, ""))) else {
            panic!()
        };
        assert_eq!(r.amount.unwrap().to_text(), "25.00");
        let Verdict::Rejected(r) = validate(&kaggle(), &row(with(8, "-5"))) else {
            panic!()
        };
        assert_eq!(r.amount.unwrap().to_text(), "-5.00");
    }

    #[test]
    fn birth_date_warnings() {
        assert_eq!(warnings_of(with(2, "1/1/1800")).1, [Rule::PlaceholderDob]);
        assert_eq!(warnings_of(with(2, "")).1, [Rule::MissingDob]);
        assert_eq!(warnings_of(with(2, "nan")).1, [Rule::MissingDob]);
        assert_eq!(warnings_of(with(2, "32/1/94")).1, [Rule::InvalidDob]);
        // Same year as the transaction but a later day.
        assert_eq!(
            warnings_of(with(2, "3/8/16")).1,
            [Rule::DobAfterTransaction]
        );
        assert_eq!(warnings_of(with(2, "1/8/1895")).1, [Rule::DobTooOld]);
        let (t, w) = warnings_of(with(2, "2/8/1896"));
        assert!(w.is_empty(), "exactly 120 years is plausible");
        assert_eq!(t.customer_dob.unwrap().year, 1896);
        let (t, _) = warnings_of(with(2, "10/1/17"));
        assert_eq!(t.customer_dob.unwrap().year, 1917, "17 > 16 so 1917");
    }

    #[test]
    fn attribute_warnings_null_the_attribute() {
        let (t, w) = warnings_of(with(3, "X"));
        assert_eq!((t.gender, w), (None, vec![Rule::InvalidGender]));
        let (t, w) = warnings_of(with(3, ""));
        assert_eq!((t.gender, w), (None, vec![Rule::MissingGender]));
        let (t, w) = warnings_of(with(4, ""));
        assert_eq!((t.location, w), (None, vec![Rule::MissingLocation]));
        let (t, w) = warnings_of(with(5, "abc"));
        assert_eq!((t.account_balance, w), (None, vec![Rule::InvalidBalance]));
        let (t, w) = warnings_of(with(5, ""));
        assert_eq!((t.account_balance, w), (None, vec![Rule::MissingBalance]));
        let (t, w) = warnings_of(with(5, "-12.5"));
        assert!(w.is_empty(), "an overdraft is a valid balance");
        assert_eq!(t.account_balance.unwrap().to_text(), "-12.50");
    }

    #[test]
    fn canonical_rows_need_a_currency() {
        let p = canonical();
        let mut cells = [None; FIELD_COUNT];
        cells[Field::TransactionId.slot()] = Some("X1");
        cells[Field::CustomerId.slot()] = Some("C1");
        cells[Field::TransactionAt.slot()] = Some("2016-08-02T10:00:00");
        cells[Field::Amount.slot()] = Some("12.5");
        assert!(matches!(
            validate(&p, &cells),
            Verdict::Rejected(Rejection {
                rule: Rule::InvalidCurrency,
                ..
            })
        ));
        cells[Field::Currency.slot()] = Some("eur");
        let Verdict::Valid(t, _) = validate(&p, &cells) else {
            panic!()
        };
        assert_eq!(t.currency.as_str(), "EUR");
    }

    #[test]
    fn rule_names_are_unique_and_round_trip() {
        let mut names: Vec<_> = Rule::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL.len());
        for r in Rule::ALL {
            assert_eq!(Rule::from_name(r.name()), Some(r));
        }
        assert!(
            Rule::WARNINGS
                .iter()
                .all(|r| r.severity() == Severity::Warning)
        );
    }

    #[test]
    fn warning_counts_add_up() {
        let mut w = Warnings::default();
        w.add(Rule::InvalidGender);
        w.add(Rule::MissingBalance);
        let mut c = WarningCounts::default();
        c.add(w);
        c.add(w);
        let got: Vec<_> = c.iter().collect();
        assert_eq!(got, [(Rule::InvalidGender, 2), (Rule::MissingBalance, 2)]);
    }
}
