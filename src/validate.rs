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
use std::collections::BTreeMap;

use crate::profile::{
    CurrencySource, DateFormat, FIELD_COUNT, FORMATTED_FIELDS, Field, FormatNames, MAX_FORMATS,
    Profile, When, YearRule,
};

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
    /// Currency missing, not a three-letter code, or not an ISO 4217 code.
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

/// Which format of its list parsed each formatted field of one row
/// ([`FORMATTED_FIELDS`] order, 4 bits each: 0 none, else position + 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Matched(pub u16);

impl Matched {
    fn set(&mut self, which: usize, format: usize) {
        self.0 |= ((format as u16 + 1) & 0xf) << (which * 4);
    }

    /// The position of the format that parsed `FORMATTED_FIELDS[which]`.
    pub fn get(self, which: usize) -> Option<usize> {
        match (self.0 >> (which * 4)) & 0xf {
            0 => None,
            n => Some(usize::from(n) - 1),
        }
    }
}

/// Rows per matched format, per formatted field, for a batch or a file: a file whose
/// dates silently switch layout shows it here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatCounts(pub [[u64; MAX_FORMATS]; FORMATTED_FIELDS.len()]);

impl Default for FormatCounts {
    fn default() -> Self {
        FormatCounts([[0; MAX_FORMATS]; FORMATTED_FIELDS.len()])
    }
}

impl FormatCounts {
    /// Counts one row.
    #[inline]
    pub fn add(&mut self, m: Matched) {
        self.add_n(m, 1);
    }

    /// Counts `n` rows that matched alike.
    pub fn add_n(&mut self, m: Matched, n: u64) {
        for (which, counts) in self.0.iter_mut().enumerate() {
            if let Some(i) = m.get(which) {
                counts[i] += n;
            }
        }
    }

    /// Adds another set of counters.
    pub fn merge(&mut self, other: &FormatCounts) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }

    /// Non-zero counts as `field name → format name → rows`, with the profile's format
    /// names ([`Profile::all_format_names`]).
    pub fn named(&self, names: &FormatNames) -> BTreeMap<&'static str, BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for (which, field) in FORMATTED_FIELDS.iter().enumerate() {
            let per: BTreeMap<String, u64> = names[which]
                .iter()
                .cloned()
                .zip(self.0[which])
                .filter(|(_, n)| *n > 0)
                .collect();
            if !per.is_empty() {
                out.insert(field.name(), per);
            }
        }
        out
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
    /// Load it; warnings say which attributes were set to NULL, `Matched` which format
    /// parsed each date and time.
    Valid(Transaction, Warnings, Matched),
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

/// Shortens a canonical amount of more than 24 digits before the point (`-123…789.00`)
/// quoted in a detail message (the raw row keeps all of it): the middle of the integer
/// part gives way, the sign and the decimals at the file's scale stay, and the digit
/// count says how large it was. A cut
/// never lands inside the decimals (`…789.` or `…789.0` would misstate the scale).
fn shortened(value: &str) -> String {
    let (sign, unsigned) = match value.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", value),
    };
    let (int_part, decimals) = match unsigned.find('.') {
        Some(dot) => unsigned.split_at(dot),
        None => (unsigned, ""),
    };
    if int_part.len() <= 24 {
        return value.to_owned();
    }
    format!(
        "{sign}{}…{}{decimals} ({} digits before the point)",
        &int_part[..12],
        &int_part[int_part.len() - 8..],
        int_part.len()
    )
}

/// The earliest year of a transaction. `%Y` reads any number of digits (`0024` is the
/// year 24, `16` the year 16), and so does `yyyy` with leading zeros: such a year is a
/// mistyped or mis-formatted date, never a transaction, so that format does not match
/// and the next one of the list is tried. One comparison per row: the parsers stay as
/// they are.
const MIN_TRANSACTION_YEAR: i32 = 1000;

/// The detail of a transaction date (or timestamp) no format accepts; `early` is what
/// a format made of it when only its year was refused.
fn not_a_date(text: &str, what: &str, early: Option<Date>) -> String {
    match early {
        Some(d) => format!(
            "{} is in the year {}: a transaction {what} before the year \
             {MIN_TRANSACTION_YEAR} is refused",
            quoted(text),
            d.year
        ),
        None => format!("{} is not a valid {what}", quoted(text)),
    }
}

/// Validates one row. `cells` holds, per field slot, the trimmed cell text or `None`
/// when the column is absent or the value is one of the profile's null values;
/// `mapped` says which fields the file carries at all (an optional field it does not
/// carry is never "missing").
pub fn validate(
    profile: &Profile,
    mapped: &[bool; FIELD_COUNT],
    cells: &[Option<&str>; FIELD_COUNT],
) -> Verdict {
    let cell = |f: Field| cells[f.slot()];
    let mut matched = Matched::default();

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

    let Some(transaction_id) = cell(Field::TransactionId).filter(|t| !t.is_empty()) else {
        return reject(
            Rule::MissingTransactionId,
            Field::TransactionId,
            "empty transaction id".into(),
            amount,
        );
    };
    let Some(customer_id) = cell(Field::CustomerId).filter(|t| !t.is_empty()) else {
        return reject(
            Rule::MissingCustomerId,
            Field::CustomerId,
            "empty customer id".into(),
            amount,
        );
    };

    let transaction_at = match &profile.when {
        When::At(formats) => match cell(Field::TransactionAt) {
            Some(text) => match formats.first(|f| {
                f.parse(text)
                    .filter(|at| at.date.year >= MIN_TRANSACTION_YEAR)
            }) {
                Some((at, i)) => {
                    matched.set(2, i);
                    at
                }
                None => {
                    let early = formats.first(|f| f.parse(text)).map(|(at, _)| at.date);
                    return reject(
                        Rule::InvalidTransactionDate,
                        Field::TransactionAt,
                        not_a_date(text, "timestamp", early),
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
        When::DateAndTime(date_formats, time_formats) => {
            let date = match cell(Field::TransactionDate) {
                Some(text) => {
                    let parse = |f: &DateFormat| f.parse(text, YearRule::TwentyFirstCentury);
                    match date_formats
                        .first(|f| parse(f).filter(|d| d.year >= MIN_TRANSACTION_YEAR))
                    {
                        Some((d, i)) => {
                            matched.set(0, i);
                            d
                        }
                        None => {
                            let early = date_formats.first(parse).map(|(d, _)| d);
                            return reject(
                                Rule::InvalidTransactionDate,
                                Field::TransactionDate,
                                not_a_date(text, "date", early),
                                amount,
                            );
                        }
                    }
                }
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
                Some(text) => match time_formats.first(|f| f.parse(text)) {
                    Some((t, i)) => {
                        matched.set(1, i);
                        t
                    }
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
            let detail = match e {
                AmountError::NotPlainDecimal => format!("{} is not a plain decimal", quoted(text)),
                AmountError::TooPrecise => too_precise(profile, text, cell(Field::Currency)),
                AmountError::TooLarge => format!("{} is too large", quoted(text)),
            };
            return reject(Rule::InvalidAmount, Field::Amount, detail, None);
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
        // A row's code must be one ISO 4217 lists, whatever the profile's amount_scale:
        // a typo in one row is that row's error, not a new currency.
        CurrencySource::Column => match cell(Field::Currency).map(|t| (t, Currency::parse(t))) {
            Some((_, Some(c))) if c.iso4217().is_some() => c,
            Some((text, Some(c))) => {
                let close: Vec<String> =
                    c.anagrams().iter().map(|a| a.as_str().to_owned()).collect();
                let hint = if close.is_empty() {
                    String::new()
                } else {
                    format!(" (did you mean {}?)", close.join(" or "))
                };
                return reject(
                    Rule::InvalidCurrency,
                    Field::Currency,
                    format!("{} is not an ISO 4217 currency code{hint}", quoted(text)),
                    Some(ParsedAmount::Fits(amount)),
                );
            }
            Some((text, None)) => {
                return reject(
                    Rule::InvalidCurrency,
                    Field::Currency,
                    format!("{} is not a currency code", quoted(text)),
                    Some(ParsedAmount::Fits(amount)),
                );
            }
            None => {
                return reject(
                    Rule::InvalidCurrency,
                    Field::Currency,
                    "missing currency".into(),
                    Some(ParsedAmount::Fits(amount)),
                );
            }
        },
    };

    if profile.per_row_currency_scale
        && let Some(units) = currency.minor_units()
        && units < profile.scale
    {
        let step = 10i64.pow(u32::from(profile.scale - units));
        if amount.minor % step != 0 {
            return reject(
                Rule::InvalidAmount,
                Field::Amount,
                format!(
                    "{} has more decimals than {} allows ({units})",
                    quoted(amount_text.unwrap_or_default()),
                    currency.as_str()
                ),
                None,
            );
        }
    }

    let mut warnings = Warnings::default();
    let customer_dob = if mapped[Field::CustomerDob.slot()] {
        birth_date(
            profile,
            cell(Field::CustomerDob),
            transaction_at.date,
            &mut matched,
        )
        .map_err(|rule| warnings.add(rule))
        .ok()
    } else {
        None
    };
    let gender = match cell(Field::Gender) {
        None => {
            if mapped[Field::Gender.slot()] {
                warnings.add(Rule::MissingGender);
            }
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
            if mapped[Field::Location.slot()] {
                warnings.add(Rule::MissingLocation);
            }
            None
        }
    };
    let account_balance = match cell(Field::AccountBalance) {
        None => {
            if mapped[Field::AccountBalance.slot()] {
                warnings.add(Rule::MissingBalance);
            }
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
        matched,
    )
}

/// Why a well-formed amount has too many decimals, naming what sets the limit: the
/// profile's `amount_scale`, or the (row's) currency and its ISO 4217 minor units.
fn too_precise(profile: &Profile, text: &str, currency_cell: Option<&str>) -> String {
    let scale = profile.scale;
    if profile.scale_given {
        return format!(
            "{} has more decimals than the profile's amount_scale allows ({scale})",
            quoted(text)
        );
    }
    let currency = match profile.currency {
        CurrencySource::Fixed(c) => Some(c),
        CurrencySource::Column => currency_cell.and_then(Currency::parse),
    };
    let decimals = text
        .split_once('.')
        .map_or(0, |(_, frac)| frac.trim_end_matches('0').len());
    match currency.and_then(|c| c.minor_units().map(|units| (c, units))) {
        // Within the currency's minor units but beyond the file's scale: the default
        // scale of a currency column (2) cannot hold KWD's third decimal.
        Some((c, units)) if usize::from(units) >= decimals => format!(
            "{} has {decimals} decimals, which {} allows ({units}), but profile {} keeps \
             amounts at {scale} (give it amount_scale = {units})",
            quoted(text),
            c.as_str(),
            profile.name
        ),
        Some((c, units)) => format!(
            "{} has more decimals than {} allows ({units})",
            quoted(text),
            c.as_str()
        ),
        None => format!(
            "{} has more decimals than profile {} keeps ({scale})",
            quoted(text),
            profile.name
        ),
    }
}

/// Resolves a birth date against the transaction date, or says which warning applies.
fn birth_date(
    profile: &Profile,
    text: Option<&str>,
    on: Date,
    matched: &mut Matched,
) -> Result<Date, Rule> {
    let text = text.ok_or(Rule::MissingDob)?;
    let (dob, i) = profile
        .dob_format
        .first(|f| f.parse(text, YearRule::NotAfter(on.year)))
        .ok_or(Rule::InvalidDob)?;
    matched.set(3, i);
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

    /// Every field present in the file.
    const ALL: [bool; FIELD_COUNT] = [true; FIELD_COUNT];

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
        match validate(&kaggle(), &ALL, &row(values)) {
            Verdict::Rejected(r) => r.rule,
            Verdict::Valid(..) => panic!("expected a rejection for {values:?}"),
        }
    }

    fn warnings_of(values: [&str; 9]) -> (Transaction, Vec<Rule>) {
        match validate(&kaggle(), &ALL, &row(values)) {
            Verdict::Valid(t, w, _) => (t, w.rules().collect()),
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
    fn transaction_years_before_1000_are_refused_and_the_next_format_tried() {
        use crate::profile::FormatChoice;
        let mut spec = builtin_specs().remove(0);
        spec.formats.transaction_date = Some(FormatChoice::One("%d/%m/%Y".into()));
        let p = Profile::from_spec(&spec).unwrap();
        for (date, year) in [("02/08/0024", 24), ("2/8/16", 16), ("1/1/0999", 999)] {
            let mut cells = row(GOOD);
            cells[Field::TransactionDate.slot()] = Some(date);
            let r = rejection(&p, &cells);
            assert_eq!(r.rule, Rule::InvalidTransactionDate, "{date}");
            assert_eq!(
                r.detail,
                format!(
                    "{date:?} is in the year {year}: a transaction date before the year 1000 \
                     is refused"
                )
            );
        }
        let Verdict::Valid(t, ..) = validate(&p, &ALL, &row(with(6, "02/08/1000"))) else {
            panic!()
        };
        assert_eq!(t.transaction_at.date.year, 1000);
        // `%Y` before `%y`: `16` is not the year 16 but falls through to `%y`.
        spec.formats.transaction_date = Some(FormatChoice::Many(vec![
            "%d/%m/%Y".into(),
            "%d/%m/%y".into(),
        ]));
        let p = Profile::from_spec(&spec).unwrap();
        let Verdict::Valid(t, _, m) = validate(&p, &ALL, &row(with(6, "2/8/16"))) else {
            panic!()
        };
        assert_eq!((t.transaction_at.date.year, m.get(0)), (2016, Some(1)));
        // The built-in numeric formats and ISO dates and timestamps too.
        assert_eq!(
            rejected_rule(with(6, "2/8/0016")),
            Rule::InvalidTransactionDate
        );
        let c = canonical();
        let mut cells = canonical_cells("1", "EUR");
        cells[Field::TransactionAt.slot()] = Some("0024-08-02T10:00:00");
        assert_eq!(
            rejection(&c, &cells).detail,
            "\"0024-08-02T10:00:00\" is in the year 24: a transaction timestamp before the \
             year 1000 is refused"
        );
        // Birth dates are not transactions: an early year is still `dob_too_old`.
        assert_eq!(warnings_of(with(2, "1/1/0994")).1, [Rule::DobTooOld]);
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
            let Verdict::Rejected(r) = validate(&kaggle(), &ALL, &row(with(8, huge))) else {
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
    fn amounts_above_the_maximum_print_at_every_scale() {
        for scale in 0..=crate::model::MAX_SCALE {
            let mut spec = builtin_specs().remove(0);
            spec.currency = Some("JPY".into());
            spec.amount_scale = (scale > 0).then_some(scale);
            spec.max_amount = "1000000".into();
            let p = Profile::from_spec(&spec).unwrap();
            assert_eq!(p.scale, scale);
            let decimals = if scale == 0 {
                String::new()
            } else {
                format!(".{}", "0".repeat(usize::from(scale)))
            };
            let max = format!("1000000{decimals}");
            let digits = |n: usize| "1234567890".repeat(5)[..n].to_owned();
            for (amount, shown) in [
                ("2000000".to_owned(), format!("2000000{decimals}")),
                (digits(20), format!("{}{decimals}", digits(20))),
                (
                    digits(39),
                    format!("123456789012…23456789{decimals} (39 digits before the point)"),
                ),
                (
                    format!("{}.5", digits(45)),
                    if scale == 0 {
                        String::new()
                    } else {
                        format!(
                            "123456789012…89012345.5{} (45 digits before the point)",
                            "0".repeat(usize::from(scale) - 1)
                        )
                    },
                ),
            ] {
                let mut cells = row(GOOD);
                cells[Field::Amount.slot()] = Some(&amount);
                let Verdict::Rejected(r) = validate(&p, &ALL, &cells) else {
                    panic!("{amount} at scale {scale}")
                };
                if shown.is_empty() {
                    assert_eq!(r.rule, Rule::InvalidAmount, "a decimal at scale 0");
                    continue;
                }
                assert_eq!(r.rule, Rule::AmountAboveMax, "{amount}");
                assert_eq!(
                    r.detail,
                    format!("{shown} exceeds the maximum {max}"),
                    "scale {scale}"
                );
            }
        }
        let negative = format!("-{}", "9".repeat(41));
        let mut cells = row(GOOD);
        cells[Field::Amount.slot()] = Some(&negative);
        let Verdict::Rejected(r) = validate(&kaggle(), &ALL, &cells) else {
            panic!()
        };
        assert_eq!(
            r.detail,
            "-999999999999…99999999.00 (41 digits before the point) is negative"
        );
    }

    #[test]
    fn rejected_rows_keep_their_parsed_amount() {
        let Verdict::Rejected(r) = validate(&kaggle(), &ALL, &row(with(1, ""))) else {
            panic!()
        };
        assert_eq!(r.amount.unwrap().to_text(), "25.00");
        let Verdict::Rejected(r) = validate(&kaggle(), &ALL, &row(with(8, "-5"))) else {
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
            validate(&p, &ALL, &cells),
            Verdict::Rejected(Rejection {
                rule: Rule::InvalidCurrency,
                ..
            })
        ));
        cells[Field::Currency.slot()] = Some("eur");
        let Verdict::Valid(t, _, _) = validate(&p, &ALL, &cells) else {
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

    fn canonical_cells<'a>(amount: &'a str, currency: &'a str) -> [Option<&'a str>; FIELD_COUNT] {
        let mut cells = [None; FIELD_COUNT];
        cells[Field::TransactionId.slot()] = Some("X1");
        cells[Field::CustomerId.slot()] = Some("C1");
        cells[Field::TransactionAt.slot()] = Some("2016-08-02T10:00:00");
        cells[Field::Amount.slot()] = Some(amount);
        cells[Field::Currency.slot()] = Some(currency);
        cells
    }

    fn verdict_rule(v: &Verdict) -> Option<Rule> {
        match v {
            Verdict::Rejected(r) => Some(r.rule),
            Verdict::Valid(..) => None,
        }
    }

    #[test]
    fn fields_the_file_does_not_carry_give_no_warnings() {
        let p = canonical();
        let mut mapped = [false; FIELD_COUNT];
        for f in [
            Field::TransactionId,
            Field::CustomerId,
            Field::TransactionAt,
            Field::Amount,
            Field::Currency,
        ] {
            mapped[f.slot()] = true;
        }
        let Verdict::Valid(_, w, _) = validate(&p, &mapped, &canonical_cells("1", "EUR")) else {
            panic!()
        };
        assert_eq!(
            w.rules().count(),
            0,
            "no dob, gender, location or balance column"
        );
        // A column the file has but a row leaves empty is still a warning.
        mapped[Field::Gender.slot()] = true;
        let Verdict::Valid(_, w, _) = validate(&p, &mapped, &canonical_cells("1", "EUR")) else {
            panic!()
        };
        assert_eq!(w.rules().collect::<Vec<_>>(), [Rule::MissingGender]);
    }

    #[test]
    fn an_empty_id_is_missing_even_when_empty_is_not_a_null_value() {
        let mut spec = builtin_specs().remove(0);
        spec.null_values = vec!["NULL".into()];
        let p = Profile::from_spec(&spec).unwrap();
        let mut cells = row(with(0, "X"));
        cells[Field::TransactionId.slot()] = Some("");
        assert_eq!(
            verdict_rule(&validate(&p, &ALL, &cells)),
            Some(Rule::MissingTransactionId)
        );
    }

    #[test]
    fn amounts_follow_the_currency_minor_units() {
        // A fixed currency sets the scale: JPY has none.
        let mut spec = builtin_specs().remove(0);
        spec.currency = Some("JPY".into());
        let jpy = Profile::from_spec(&spec).unwrap();
        assert_eq!(jpy.scale, 0);
        assert_eq!(
            verdict_rule(&validate(&jpy, &ALL, &row(with(8, "100.5")))),
            Some(Rule::InvalidAmount)
        );
        let Verdict::Valid(t, ..) = validate(&jpy, &ALL, &row(with(8, "100"))) else {
            panic!()
        };
        assert_eq!(t.amount.to_text(), "100");
        // KWD has three.
        spec.currency = Some("KWD".into());
        let kwd = Profile::from_spec(&spec).unwrap();
        let Verdict::Valid(t, ..) = validate(&kwd, &ALL, &row(with(8, "1.234"))) else {
            panic!()
        };
        assert_eq!(t.amount.to_text(), "1.234");
        // An explicit amount_scale overrides the currency.
        spec.currency = Some("JPY".into());
        spec.amount_scale = Some(2);
        let jpy2 = Profile::from_spec(&spec).unwrap();
        let Verdict::Valid(t, ..) = validate(&jpy2, &ALL, &row(with(8, "100.5"))) else {
            panic!()
        };
        assert_eq!(t.amount.to_text(), "100.50");
        // A currency column: each row's amount must fit its own currency.
        let c = canonical();
        assert!(c.per_row_currency_scale);
        assert_eq!(
            verdict_rule(&validate(&c, &ALL, &canonical_cells("100.5", "JPY"))),
            Some(Rule::InvalidAmount)
        );
        assert_eq!(
            verdict_rule(&validate(&c, &ALL, &canonical_cells("100", "JPY"))),
            None
        );
        assert_eq!(
            verdict_rule(&validate(&c, &ALL, &canonical_cells("100.5", "EUR"))),
            None
        );
    }

    fn rejection(p: &Profile, cells: &[Option<&str>; FIELD_COUNT]) -> Rejection {
        match validate(p, &ALL, cells) {
            Verdict::Rejected(r) => r,
            Verdict::Valid(..) => panic!("expected a rejection for {cells:?}"),
        }
    }

    #[test]
    fn row_currency_codes_must_be_iso_4217() {
        let c = canonical();
        let r = rejection(&c, &canonical_cells("12.5", "JYP"));
        assert_eq!(
            (r.rule, r.field),
            (Rule::InvalidCurrency, Some(Field::Currency))
        );
        assert_eq!(
            r.detail,
            "\"JYP\" is not an ISO 4217 currency code (did you mean JPY?)"
        );
        assert_eq!(r.amount.unwrap().to_text(), "12.50", "still counted");
        assert_eq!(
            rejection(&c, &canonical_cells("1", "QQQ")).detail,
            "\"QQQ\" is not an ISO 4217 currency code"
        );
        assert_eq!(
            rejection(&c, &canonical_cells("1", "EURO")).rule,
            Rule::InvalidCurrency
        );
        for known in ["usd", "XAU", "HRK", "KWD"] {
            assert_eq!(
                verdict_rule(&validate(&c, &ALL, &canonical_cells("1", known))),
                None,
                "{known}"
            );
        }
    }

    #[test]
    fn an_explicit_amount_scale_is_every_rows_scale_but_codes_are_still_checked() {
        let mut spec = builtin_specs().remove(1);
        spec.amount_scale = Some(3);
        let p = Profile::from_spec(&spec).unwrap();
        let Verdict::Valid(t, ..) = validate(&p, &ALL, &canonical_cells("100.5", "JPY")) else {
            panic!("amount_scale overrides the row's currency")
        };
        assert_eq!(t.amount.to_text(), "100.500");
        let Verdict::Valid(t, ..) = validate(&p, &ALL, &canonical_cells("1.234", "KWD")) else {
            panic!()
        };
        assert_eq!(t.amount.to_text(), "1.234");
        assert_eq!(
            rejection(&p, &canonical_cells("1", "JYP")).rule,
            Rule::InvalidCurrency
        );
        assert_eq!(
            rejection(&p, &canonical_cells("1.2345", "KWD")).detail,
            "\"1.2345\" has more decimals than the profile's amount_scale allows (3)"
        );
    }

    #[test]
    fn a_too_precise_amount_names_the_currency_and_its_minor_units() {
        let c = canonical();
        // More decimals than the row's currency has.
        assert_eq!(
            rejection(&c, &canonical_cells("1.2345", "KWD")).detail,
            "\"1.2345\" has more decimals than KWD allows (3)"
        );
        assert_eq!(
            rejection(&c, &canonical_cells("100.5", "JPY")).detail,
            "\"100.5\" has more decimals than JPY allows (0)"
        );
        assert_eq!(
            rejection(&c, &canonical_cells("1.255", "EUR")).detail,
            "\"1.255\" has more decimals than EUR allows (2)"
        );
        // Right for KWD, but beyond the 2 decimals a currency column keeps by default.
        let r = rejection(&c, &canonical_cells("1.234", "KWD"));
        assert_eq!(r.rule, Rule::InvalidAmount);
        assert_eq!(
            r.detail,
            "\"1.234\" has 3 decimals, which KWD allows (3), but profile canonical keeps \
             amounts at 2 (give it amount_scale = 3)"
        );
        // A fixed currency.
        let mut spec = builtin_specs().remove(0);
        spec.currency = Some("KWD".into());
        let kwd = Profile::from_spec(&spec).unwrap();
        let Verdict::Rejected(r) = validate(&kwd, &ALL, &row(with(8, "1.2345"))) else {
            panic!()
        };
        assert_eq!(r.detail, "\"1.2345\" has more decimals than KWD allows (3)");
    }

    #[test]
    fn format_lists_record_which_format_parsed() {
        let p = kaggle();
        for (date, index) in [("2/8/16", 0), ("2/8/2016", 1), ("21-10-2016", 2)] {
            let Verdict::Valid(t, _, m) = validate(&p, &ALL, &row(with(6, date))) else {
                panic!("{date}")
            };
            assert_eq!(t.transaction_at.date.year, 2016, "{date}");
            assert_eq!(m.get(0), Some(index), "{date}");
            assert_eq!(m.get(1), Some(0), "hhmmss");
            assert_eq!(m.get(3), Some(0), "dob d/m/yy");
        }
        let mut counts = FormatCounts::default();
        for date in ["2/8/16", "3/8/16", "2/8/2016"] {
            let Verdict::Valid(_, _, m) = validate(&p, &ALL, &row(with(6, date))) else {
                panic!()
            };
            counts.add(m);
        }
        let named = counts.named(&p.all_format_names());
        assert_eq!(named["transaction_date"]["d/m/yy"], 2);
        assert_eq!(named["transaction_date"]["d/m/yyyy"], 1);
        assert!(!named["transaction_date"].contains_key("d-m-yyyy"));
        assert_eq!(named["transaction_time"]["hhmmss"], 3);
        // Month-first is never guessed: 13/1/16 is day 13 of January.
        let Verdict::Valid(t, ..) = validate(&p, &ALL, &row(with(6, "13/1/16"))) else {
            panic!()
        };
        assert_eq!(t.transaction_at.date.month, 1);
        assert_eq!(
            verdict_rule(&validate(&p, &ALL, &row(with(6, "1/13/16")))),
            Some(Rule::InvalidTransactionDate)
        );
    }
}
