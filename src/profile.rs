//! Source profiles: how the columns of one kind of export map onto the warehouse's
//! fields, how their dates and times are written, which currency and limits apply.
//!
//! A profile is data, not code: the two built-in ones (`kaggle-bank`, `canonical`) are
//! declared with the same [`ProfileSpec`] a user writes under `[[profile]]` in
//! `bankpipe.toml`. This module resolves specs into [`Profile`]s and picks the profile of
//! a file from its header (CSV) or its first object's keys (JSON). It does not validate
//! values; `validate` does.

use serde::Deserialize;

use crate::model::{Amount, Currency, Date, DateTime, MAX_SCALE, MinorUnits};

/// A warehouse field a source column can feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `transaction_id`.
    TransactionId,
    /// `customer_id`.
    CustomerId,
    /// `customer_dob`.
    CustomerDob,
    /// `gender`.
    Gender,
    /// `location`.
    Location,
    /// `account_balance`.
    AccountBalance,
    /// Date part of the transaction time, when the source splits date and time.
    TransactionDate,
    /// Time-of-day part, when the source splits date and time.
    TransactionTime,
    /// Full timestamp, when the source has one column for it.
    TransactionAt,
    /// `amount`.
    Amount,
    /// `currency`.
    Currency,
}

/// Number of [`Field`] variants.
pub const FIELD_COUNT: usize = 11;

impl Field {
    /// Every field, in slot order.
    pub const ALL: [Field; FIELD_COUNT] = [
        Field::TransactionId,
        Field::CustomerId,
        Field::CustomerDob,
        Field::Gender,
        Field::Location,
        Field::AccountBalance,
        Field::TransactionDate,
        Field::TransactionTime,
        Field::TransactionAt,
        Field::Amount,
        Field::Currency,
    ];

    /// The field's name as recorded in `rejected_rows.field` and used in config files.
    pub const fn name(self) -> &'static str {
        match self {
            Field::TransactionId => "transaction_id",
            Field::CustomerId => "customer_id",
            Field::CustomerDob => "customer_dob",
            Field::Gender => "gender",
            Field::Location => "location",
            Field::AccountBalance => "account_balance",
            Field::TransactionDate => "transaction_date",
            Field::TransactionTime => "transaction_time",
            Field::TransactionAt => "transaction_at",
            Field::Amount => "amount",
            Field::Currency => "currency",
        }
    }

    /// Position in a fields array.
    pub const fn slot(self) -> usize {
        self as usize
    }
}

/// How a date column is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateFormat {
    /// Day, month and year as numbers without leading zeros needed (`2/8/16`, the
    /// Kaggle export), in a fixed order and with one separator. Two-digit years are
    /// resolved by the caller ([`YearRule`]).
    Numeric(NumericDate),
    /// ISO 8601 `YYYY-MM-DD`.
    Iso,
    /// A chrono `strftime` pattern such as `%d.%m.%Y`.
    Pattern(String),
}

/// A numeric date layout such as `d/m/yy`: which comes first, the separator, and how
/// many year digits. Day-first and month-first are separate formats: never guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumericDate {
    /// `m/d/…` rather than `d/m/…`.
    pub month_first: bool,
    /// `/`, `-` or `.`.
    pub separator: u8,
    /// How the year is written.
    pub year: YearDigits,
}

/// Year digits a numeric date format accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YearDigits {
    /// `yy`: one or two digits (`16`, `5`).
    Two,
    /// `yyyy`: four digits.
    Four,
    /// `y`: either (what `d/m/yy` meant before format lists existed).
    Any,
}

/// How a time-of-day column is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// `HHMMSS` as an integer without leading zeros: `3607` is 00:36:07.
    IntegerHhmmss,
    /// `HH:MM:SS`.
    Iso,
    /// A chrono `strftime` pattern.
    Pattern(String),
}

/// How a full timestamp column is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateTimeFormat {
    /// ISO 8601 / RFC 3339: `2016-08-02T14:32:07`, optional fraction, optional `Z` or
    /// `±HH:MM` (converted to UTC).
    Iso,
    /// A chrono `strftime` pattern.
    Pattern(String),
}

/// How two-digit years are placed in a century.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YearRule {
    /// `yy` is `20yy` (transaction dates).
    TwentyFirstCentury,
    /// The latest of `19yy`/`20yy` not after the given year (birth dates).
    NotAfter(i32),
}

impl DateFormat {
    fn from_spec(text: &str) -> Result<DateFormat, ProfileError> {
        Ok(match text {
            "iso" | "yyyy-mm-dd" => DateFormat::Iso,
            p if p.contains('%') => DateFormat::Pattern(p.to_owned()),
            other => DateFormat::Numeric(
                NumericDate::from_name(other)
                    .ok_or_else(|| ProfileError::Format(other.to_owned()))?,
            ),
        })
    }

    /// Parses a date; `None` when malformed or impossible.
    #[inline]
    pub fn parse(&self, text: &str, years: YearRule) -> Option<Date> {
        match self {
            DateFormat::Numeric(n) => parse_numeric(text, *n, years),
            DateFormat::Iso => parse_iso_date(text.as_bytes()),
            DateFormat::Pattern(p) => {
                let d = chrono::NaiveDate::parse_from_str(text, p).ok()?;
                use chrono::Datelike;
                Date::new(d.year(), d.month() as u8, d.day() as u8)
            }
        }
    }
}

impl NumericDate {
    /// `d/m/yy`, `m-d-yyyy`, `d.m.y` and the like: `d` and `m` in either order, one
    /// separator (`/`, `-`, `.`) used twice, then `yy`, `yyyy` or `y`.
    fn from_name(name: &str) -> Option<NumericDate> {
        let b = name.as_bytes();
        if b.len() < 5 || b[1] != b[3] || !matches!(b[1], b'/' | b'-' | b'.') {
            return None;
        }
        let month_first = match (b[0], b[2]) {
            (b'd', b'm') => false,
            (b'm', b'd') => true,
            _ => return None,
        };
        let year = match &name[4..] {
            "yy" => YearDigits::Two,
            "yyyy" => YearDigits::Four,
            "y" => YearDigits::Any,
            _ => return None,
        };
        Some(NumericDate {
            month_first,
            separator: b[1],
            year,
        })
    }
}

/// Parses `a/b/y` (with the format's separator) with 1-2 digit day and month and the
/// format's year digits.
#[inline]
fn parse_numeric(text: &str, format: NumericDate, years: YearRule) -> Option<Date> {
    let b = text.as_bytes();
    let sep = format.separator;
    // Dates are a few bytes: a plain scan beats memchr's dispatch.
    let first = b.iter().position(|&c| c == sep)?;
    let second = first + 1 + b[first + 1..].iter().position(|&c| c == sep)?;
    let a = small_number(&text[..first], 2)?;
    let m = small_number(&text[first + 1..second], 2)?;
    let y_text = &text[second + 1..];
    let (day, month) = if format.month_first { (m, a) } else { (a, m) };
    let year = match (y_text.len(), format.year) {
        (1 | 2, YearDigits::Two | YearDigits::Any) => {
            let yy = small_number(y_text, 2)? as i32;
            match years {
                YearRule::TwentyFirstCentury => 2000 + yy,
                YearRule::NotAfter(limit) => {
                    if 2000 + yy <= limit {
                        2000 + yy
                    } else {
                        1900 + yy
                    }
                }
            }
        }
        (4, YearDigits::Four | YearDigits::Any) => small_number(y_text, 4)? as i32,
        _ => return None,
    };
    Date::new(year, u8::try_from(month).ok()?, u8::try_from(day).ok()?)
}

/// An unsigned number of at most `max_digits` ASCII digits.
fn small_number(text: &str, max_digits: usize) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits {
        return None;
    }
    let mut v = 0u32;
    for b in text.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// `YYYY-MM-DD` exactly.
fn parse_iso_date(b: &[u8]) -> Option<Date> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    Date::new(
        digits(&b[0..4])? as i32,
        digits(&b[5..7])? as u8,
        digits(&b[8..10])? as u8,
    )
}

impl TimeFormat {
    fn from_spec(text: &str) -> Result<TimeFormat, ProfileError> {
        Ok(match text {
            "hhmmss" => TimeFormat::IntegerHhmmss,
            "iso" | "hh:mm:ss" => TimeFormat::Iso,
            p if p.contains('%') => TimeFormat::Pattern(p.to_owned()),
            other => return Err(ProfileError::Format(other.to_owned())),
        })
    }

    /// Parses a time of day into `(hour, minute, second)`; `None` when malformed or
    /// impossible (`246000`, `1261`).
    #[inline]
    pub fn parse(&self, text: &str) -> Option<(u32, u32, u32)> {
        let (h, m, s) = match self {
            TimeFormat::IntegerHhmmss => {
                let v = small_number(text, 6)?;
                (v / 10_000, v / 100 % 100, v % 100)
            }
            TimeFormat::Iso => {
                let b = text.as_bytes();
                if b.len() != 8 || b[2] != b':' || b[5] != b':' {
                    return None;
                }
                (digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?)
            }
            TimeFormat::Pattern(p) => {
                let t = chrono::NaiveTime::parse_from_str(text, p).ok()?;
                use chrono::Timelike;
                (t.hour(), t.minute(), t.second())
            }
        };
        (h <= 23 && m <= 59 && s <= 59).then_some((h, m, s))
    }
}

impl DateTimeFormat {
    fn from_spec(text: &str) -> Result<DateTimeFormat, ProfileError> {
        Ok(match text {
            "iso" | "iso8601" | "rfc3339" => DateTimeFormat::Iso,
            p if p.contains('%') => DateTimeFormat::Pattern(p.to_owned()),
            other => return Err(ProfileError::Format(other.to_owned())),
        })
    }

    /// Parses a timestamp; offsets are applied so the result is UTC.
    pub fn parse(&self, text: &str) -> Option<DateTime> {
        match self {
            DateTimeFormat::Iso => parse_iso_datetime(text.as_bytes()),
            DateTimeFormat::Pattern(p) => {
                let t = chrono::NaiveDateTime::parse_from_str(text, p).ok()?;
                use chrono::{Datelike, Timelike};
                let d = Date::new(t.year(), t.month() as u8, t.day() as u8)?;
                DateTime::new(d, t.hour(), t.minute(), t.second())
            }
        }
    }
}

/// `YYYY-MM-DD[T| ]HH:MM[:SS[.fff]][Z|±HH:MM|±HHMM]`; fractions are truncated.
fn parse_iso_datetime(b: &[u8]) -> Option<DateTime> {
    if b.len() < 16 {
        return None;
    }
    let date = parse_iso_date(&b[..10])?;
    if b[10] != b'T' && b[10] != b' ' && b[10] != b't' {
        return None;
    }
    let rest = &b[11..];
    if rest.len() < 5 || rest[2] != b':' {
        return None;
    }
    let hour = digits(&rest[0..2])?;
    let minute = digits(&rest[3..5])?;
    let mut i = 5;
    let mut second = 0;
    if rest.len() >= 8 && rest[5] == b':' {
        second = digits(&rest[6..8])?;
        i = 8;
        if rest.len() > i && (rest[i] == b'.' || rest[i] == b',') {
            i += 1;
            let start = i;
            while i < rest.len() && rest[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
    }
    let at = DateTime::new(date, hour, minute, second)?;
    let zone = &rest[i..];
    let offset_seconds: i64 = match zone {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let h = i64::from(digits(&[*h1, *h2])?);
            let m = i64::from(digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let s = (h * 3600 + m * 60) * if *sign == b'+' { 1 } else { -1 };
            -s
        }
        _ => return None,
    };
    if offset_seconds == 0 {
        return Some(at);
    }
    // An offset can move a timestamp out of the years 1 to 9999 that `Date` holds
    // (`9999-12-31T23:30:00-01:00` is in the year 10000 in UTC; its text would sort
    // before `2016-…` in SQLite): no date then, like any other impossible one (the
    // cells fuzz target's check that every parsed date is one `Date::new` makes).
    let utc = at.shift_seconds(offset_seconds);
    Date::new(utc.date.year, utc.date.month, utc.date.day)?;
    Some(utc)
}

/// A profile as written in configuration (`[[profile]]` in `bankpipe.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// Name recorded in the catalog and used in lake keys.
    pub name: String,
    /// Source column for each warehouse field (names match case-insensitively).
    pub columns: ColumnSpec,
    /// Formats of date and time columns.
    #[serde(default)]
    pub formats: FormatSpec,
    /// Fixed currency of every row, when the source has no currency column.
    #[serde(default)]
    pub currency: Option<String>,
    /// Digits after the decimal point of amounts. Default: the currency's ISO 4217
    /// minor units (JPY 0, INR 2, KWD 3); with a currency column, 2, and each amount
    /// must also fit its own row's currency. Set it to override both: it is then the
    /// scale of every row, and a fixed currency may be a code ISO 4217 does not list
    /// (a row's code from a currency column never may).
    #[serde(default)]
    pub amount_scale: Option<u8>,
    /// CSV field separator: `","`, `";"`, `"\t"` (or `"tab"`) or `"|"`. Default:
    /// detected from the header line.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Largest accepted amount, a plain decimal (default 100000000).
    #[serde(default = "default_max_amount")]
    pub max_amount: String,
    /// Cell values meaning "no value" (compared after trimming, case-sensitively).
    #[serde(default = "default_null_values")]
    pub null_values: Vec<String>,
    /// Date of birth that sources use as a placeholder for "unknown" (ISO date).
    #[serde(default = "default_dob_placeholder")]
    pub dob_placeholder: Option<String>,
    /// Oldest plausible age in years; older birth dates are set to NULL.
    #[serde(default = "default_max_age")]
    pub max_age_years: u32,
}

fn default_max_amount() -> String {
    "100000000".to_owned()
}
fn default_null_values() -> Vec<String> {
    ["", "nan", "NaN", "NULL", "null", "None", "N/A", "NA"]
        .map(str::to_owned)
        .to_vec()
}
#[allow(clippy::unnecessary_wraps)]
fn default_dob_placeholder() -> Option<String> {
    Some("1800-01-01".to_owned())
}
const fn default_max_age() -> u32 {
    120
}

/// Source column names per field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Required.
    pub transaction_id: String,
    /// Required.
    pub customer_id: String,
    /// Optional.
    pub customer_dob: Option<String>,
    /// Optional.
    pub gender: Option<String>,
    /// Optional.
    pub location: Option<String>,
    /// Optional.
    pub account_balance: Option<String>,
    /// Required unless `transaction_at` is given.
    pub transaction_date: Option<String>,
    /// Required with `transaction_date`.
    pub transaction_time: Option<String>,
    /// A single timestamp column, instead of date + time.
    pub transaction_at: Option<String>,
    /// Required.
    pub amount: String,
    /// Required unless the profile has a fixed `currency`.
    pub currency: Option<String>,
}

/// Formats of the date and time columns; each one format or a list tried in order.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatSpec {
    /// `d/m/yy`, `d/m/yyyy`, `m/d/yy`, `iso` or a strftime pattern (default `iso`).
    pub customer_dob: Option<FormatChoice>,
    /// Same choices (default `iso`).
    pub transaction_date: Option<FormatChoice>,
    /// `hhmmss`, `iso` or a strftime pattern (default `iso`).
    pub transaction_time: Option<FormatChoice>,
    /// `iso8601` or a strftime pattern (default `iso8601`).
    pub transaction_at: Option<FormatChoice>,
}

/// One format, or a list of formats tried in order (`["%d/%m/%y", "%d/%m/%Y"]`):
/// exports re-saved by spreadsheets mix several in one file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum FormatChoice {
    /// A single format.
    One(String),
    /// Formats tried in order; the first that parses a value wins.
    Many(Vec<String>),
}

impl FormatChoice {
    /// A list from literal names (built-in profiles).
    fn of(names: &[&str]) -> FormatChoice {
        match names {
            [one] => FormatChoice::One((*one).to_owned()),
            many => FormatChoice::Many(many.iter().map(|n| (*n).to_owned()).collect()),
        }
    }

    fn names(&self) -> &[String] {
        match self {
            FormatChoice::One(one) => std::slice::from_ref(one),
            FormatChoice::Many(many) => many,
        }
    }
}

/// Most formats one column may list (a row records which one parsed in 4 bits).
pub const MAX_FORMATS: usize = 15;

/// The formats of one column, tried in order, each with its name as written in the
/// profile (the name the per-format row counts are reported under).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formats<F> {
    /// (name, parser), 1 to [`MAX_FORMATS`] of them.
    pub entries: Vec<(String, F)>,
}

impl<F> Formats<F> {
    fn resolve(
        choice: Option<&FormatChoice>,
        default: &str,
        parse: impl Fn(&str) -> Result<F, ProfileError>,
    ) -> Result<Formats<F>, ProfileError> {
        let names = match choice {
            Some(c) => c.names().to_vec(),
            None => vec![default.to_owned()],
        };
        if names.is_empty() || names.len() > MAX_FORMATS {
            return Err(ProfileError::Format(format!(
                "{names:?}: give 1 to {MAX_FORMATS} formats"
            )));
        }
        let entries = names
            .into_iter()
            .map(|n| parse(&n).map(|f| (n, f)))
            .collect::<Result<_, _>>()?;
        Ok(Formats { entries })
    }

    /// The first format whose `parse` succeeds, with its position in the list.
    #[inline]
    pub fn first<T>(&self, mut parse: impl FnMut(&F) -> Option<T>) -> Option<(T, usize)> {
        self.entries
            .iter()
            .enumerate()
            .find_map(|(i, (_, f))| parse(f).map(|v| (v, i)))
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// The fields whose values are parsed with formats, in the order of per-format counts
/// ([`crate::validate::Matched`]).
pub const FORMATTED_FIELDS: [Field; 4] = [
    Field::TransactionDate,
    Field::TransactionTime,
    Field::TransactionAt,
    Field::CustomerDob,
];

/// CSV field separators tried on a header when a profile does not name one, in
/// tie-break order.
pub const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Format names per [`FORMATTED_FIELDS`] entry (empty where the profile has none).
pub type FormatNames = [Vec<String>; FORMATTED_FIELDS.len()];

/// Parses a profile's `delimiter`.
fn delimiter_from_spec(text: &str) -> Option<u8> {
    match text {
        "," => Some(b','),
        ";" => Some(b';'),
        "\t" | "\\t" | "tab" | "TAB" => Some(b'\t'),
        "|" => Some(b'|'),
        _ => None,
    }
}

/// Where a transaction's timestamp comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// One column.
    At(Formats<DateTimeFormat>),
    /// A date column and a time column.
    DateAndTime(Formats<DateFormat>, Formats<TimeFormat>),
}

/// Where the currency comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrencySource {
    /// The same for every row.
    Fixed(Currency),
    /// A column.
    Column,
}

/// A resolved profile, ready for detection and validation.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Profile name.
    pub name: String,
    /// Lower-cased source column name per field slot.
    pub columns: [Option<String>; FIELD_COUNT],
    /// Whether a field's column must be present in the file.
    pub required: [bool; FIELD_COUNT],
    /// Birth-date formats.
    pub dob_format: Formats<DateFormat>,
    /// Transaction timestamp source.
    pub when: When,
    /// Currency source.
    pub currency: CurrencySource,
    /// Scale of amounts: stored, summed and reported at it.
    pub scale: u8,
    /// Whether the profile gave `amount_scale` (it then overrides the minor units of
    /// every row's currency), rather than taking the scale from the currency.
    pub scale_given: bool,
    /// With a currency column and no explicit `amount_scale`: each amount must also fit
    /// its row's currency (no `100.5` yen stored as `100.50`).
    pub per_row_currency_scale: bool,
    /// CSV field separator; `None`: detected from the header line.
    pub delimiter: Option<u8>,
    /// Largest accepted amount.
    pub max_amount: Amount,
    /// Values meaning "no value".
    pub null_values: Vec<String>,
    /// Placeholder birth date.
    pub dob_placeholder: Option<Date>,
    /// Oldest plausible age.
    pub max_age_years: u32,
    /// Length of the longest null value, to skip comparisons for longer cells.
    max_null_len: usize,
}

/// A profile spec that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Unknown date/time format name.
    #[error(
        "unknown date/time format {0:?} (use d/m/yy, m/d/yy, iso, hhmmss or a strftime pattern)"
    )]
    Format(String),
    /// A required column mapping is missing.
    #[error("profile {profile}: {what}")]
    Incomplete {
        /// Profile name.
        profile: String,
        /// What is missing.
        what: String,
    },
    /// A fixed `currency` ISO 4217 does not list (or lists without a minor unit), and
    /// no `amount_scale` says how many decimals its amounts have.
    #[error(
        "profile {profile}: currency {code:?} {why}; fix the code, or give amount_scale to use \
         a code ISO 4217 does not list"
    )]
    Currency {
        /// Profile name.
        profile: String,
        /// The code as written.
        code: String,
        /// What is wrong with it, with a suggestion when one is close.
        why: String,
    },
    /// `max_amount` is not a non-negative plain decimal at the profile's scale.
    #[error(
        "profile {profile}: invalid max_amount {value:?}: give a plain decimal, not negative, \
         with at most {scale} decimals (the profile's amount scale)"
    )]
    MaxAmount {
        /// Profile name.
        profile: String,
        /// The value as written.
        value: String,
        /// The profile's amount scale.
        scale: u8,
    },
    /// A bad value.
    #[error("profile {profile}: invalid {field}: {value:?}")]
    Invalid {
        /// Profile name.
        profile: String,
        /// Which setting.
        field: &'static str,
        /// The value.
        value: String,
    },
}

impl Profile {
    /// Resolves and checks a spec.
    ///
    /// # Errors
    /// When a format is unknown, the timestamp or currency has no source, or a limit does
    /// not parse.
    pub fn from_spec(spec: &ProfileSpec) -> Result<Profile, ProfileError> {
        let invalid = |field: &'static str, value: &str| ProfileError::Invalid {
            profile: spec.name.clone(),
            field,
            value: value.to_owned(),
        };
        if spec.name.is_empty()
            || !spec
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("name (letters, digits, - and _)", &spec.name));
        }
        if let Some(scale) = spec.amount_scale
            && scale > MAX_SCALE
        {
            return Err(invalid("amount_scale", &scale.to_string()));
        }
        let delimiter = match &spec.delimiter {
            Some(text) => Some(
                delimiter_from_spec(text)
                    .ok_or_else(|| invalid("delimiter (\",\", \";\", \"\\t\", \"|\")", text))?,
            ),
            None => None,
        };
        let c = &spec.columns;
        let mut columns: [Option<String>; FIELD_COUNT] = Default::default();
        let mut set = |f: Field, name: Option<&String>| {
            columns[f.slot()] = name.map(|n| n.trim().to_lowercase());
        };
        set(Field::TransactionId, Some(&c.transaction_id));
        set(Field::CustomerId, Some(&c.customer_id));
        set(Field::CustomerDob, c.customer_dob.as_ref());
        set(Field::Gender, c.gender.as_ref());
        set(Field::Location, c.location.as_ref());
        set(Field::AccountBalance, c.account_balance.as_ref());
        set(Field::TransactionDate, c.transaction_date.as_ref());
        set(Field::TransactionTime, c.transaction_time.as_ref());
        set(Field::TransactionAt, c.transaction_at.as_ref());
        set(Field::Amount, Some(&c.amount));
        set(Field::Currency, c.currency.as_ref());

        let f = &spec.formats;
        let date_fmt =
            |s: &Option<FormatChoice>| Formats::resolve(s.as_ref(), "iso", DateFormat::from_spec);
        let when = match (&c.transaction_at, &c.transaction_date, &c.transaction_time) {
            (Some(_), None, None) => When::At(Formats::resolve(
                f.transaction_at.as_ref(),
                "iso8601",
                DateTimeFormat::from_spec,
            )?),
            (None, Some(_), Some(_)) => When::DateAndTime(
                date_fmt(&f.transaction_date)?,
                Formats::resolve(f.transaction_time.as_ref(), "iso", TimeFormat::from_spec)?,
            ),
            _ => {
                return Err(ProfileError::Incomplete {
                    profile: spec.name.clone(),
                    what: "map either transaction_at, or transaction_date and transaction_time"
                        .to_owned(),
                });
            }
        };
        let currency = match (&spec.currency, &c.currency) {
            (Some(code), None) => CurrencySource::Fixed(
                Currency::parse(code).ok_or_else(|| invalid("currency", code))?,
            ),
            (None, Some(_)) => CurrencySource::Column,
            _ => {
                return Err(ProfileError::Incomplete {
                    profile: spec.name.clone(),
                    what: "give either a fixed currency or a currency column".to_owned(),
                });
            }
        };
        // A fixed code must be one ISO 4217 lists, so a typo (`JYP`) is not loaded with
        // a guessed scale; with an explicit `amount_scale` any code is allowed (private
        // or newer codes exist).
        let scale = match (spec.amount_scale, currency) {
            (Some(scale), _) => scale,
            (None, CurrencySource::Fixed(c)) => match c.iso4217() {
                Some(MinorUnits::Digits(d)) => d.min(MAX_SCALE),
                Some(MinorUnits::NotApplicable) => {
                    return Err(ProfileError::Currency {
                        profile: spec.name.clone(),
                        code: c.as_str().to_owned(),
                        why: "has no ISO 4217 minor unit".to_owned(),
                    });
                }
                None => {
                    let suggestions: Vec<String> =
                        c.anagrams().iter().map(|a| a.as_str().to_owned()).collect();
                    let why = if suggestions.is_empty() {
                        "is not an ISO 4217 currency code".to_owned()
                    } else {
                        format!(
                            "is not an ISO 4217 currency code (did you mean {}?)",
                            suggestions.join(" or ")
                        )
                    };
                    return Err(ProfileError::Currency {
                        profile: spec.name.clone(),
                        code: c.as_str().to_owned(),
                        why,
                    });
                }
            },
            (None, CurrencySource::Column) => 2,
        };
        let max_amount = Amount::parse(&spec.max_amount, scale)
            .ok()
            .filter(|a| a.minor >= 0)
            .ok_or_else(|| ProfileError::MaxAmount {
                profile: spec.name.clone(),
                value: spec.max_amount.clone(),
                scale,
            })?;
        let dob_placeholder = match &spec.dob_placeholder {
            Some(text) => Some(
                parse_iso_date(text.as_bytes()).ok_or_else(|| invalid("dob_placeholder", text))?,
            ),
            None => None,
        };
        let mut required = [false; FIELD_COUNT];
        for field in [Field::TransactionId, Field::CustomerId, Field::Amount] {
            required[field.slot()] = true;
        }
        match when {
            When::At(_) => required[Field::TransactionAt.slot()] = true,
            When::DateAndTime(..) => {
                required[Field::TransactionDate.slot()] = true;
                required[Field::TransactionTime.slot()] = true;
            }
        }
        if currency == CurrencySource::Column {
            required[Field::Currency.slot()] = true;
        }
        Ok(Profile {
            name: spec.name.clone(),
            columns,
            required,
            dob_format: date_fmt(&f.customer_dob)?,
            when,
            currency,
            scale,
            scale_given: spec.amount_scale.is_some(),
            per_row_currency_scale: spec.amount_scale.is_none()
                && currency == CurrencySource::Column,
            delimiter,
            max_amount,
            null_values: spec.null_values.clone(),
            dob_placeholder,
            max_age_years: spec.max_age_years,
            max_null_len: spec.null_values.iter().map(String::len).max().unwrap_or(0),
        })
    }

    /// The names of the formats of a formatted field, in the order they are tried
    /// (empty for a field the profile does not parse with formats).
    pub fn format_names(&self, field: Field) -> Vec<String> {
        match (field, &self.when) {
            (Field::TransactionDate, When::DateAndTime(d, _)) => d.names(),
            (Field::TransactionTime, When::DateAndTime(_, t)) => t.names(),
            (Field::TransactionAt, When::At(a)) => a.names(),
            (Field::CustomerDob, _) => self.dob_format.names(),
            _ => Vec::new(),
        }
    }

    /// [`Profile::format_names`] of every formatted field.
    pub fn all_format_names(&self) -> FormatNames {
        FORMATTED_FIELDS.map(|f| self.format_names(f))
    }

    /// True when `text` (already trimmed) means "no value".
    pub fn is_null(&self, text: &str) -> bool {
        text.len() <= self.max_null_len && self.null_values.iter().any(|n| n == text)
    }
}

/// The built-in profile specs, in detection order after user profiles.
pub fn builtin_specs() -> Vec<ProfileSpec> {
    let kaggle = ProfileSpec {
        name: "kaggle-bank".to_owned(),
        columns: ColumnSpec {
            transaction_id: "TransactionID".to_owned(),
            customer_id: "CustomerID".to_owned(),
            customer_dob: Some("CustomerDOB".to_owned()),
            gender: Some("CustGender".to_owned()),
            location: Some("CustLocation".to_owned()),
            account_balance: Some("CustAccountBalance".to_owned()),
            transaction_date: Some("TransactionDate".to_owned()),
            transaction_time: Some("TransactionTime".to_owned()),
            transaction_at: None,
            amount: "TransactionAmount (INR)".to_owned(),
            currency: None,
        },
        // The public copy of the Kaggle file mixes `2/8/16`, `2/8/2016` and `21-10-2016`
        // (re-saved by a spreadsheet); all are day-first.
        formats: FormatSpec {
            customer_dob: Some(FormatChoice::of(&["d/m/yy", "d/m/yyyy", "d-m-yyyy"])),
            transaction_date: Some(FormatChoice::of(&["d/m/yy", "d/m/yyyy", "d-m-yyyy"])),
            transaction_time: Some(FormatChoice::of(&["hhmmss"])),
            transaction_at: None,
        },
        currency: Some("INR".to_owned()),
        amount_scale: None,
        delimiter: None,
        max_amount: default_max_amount(),
        null_values: default_null_values(),
        dob_placeholder: default_dob_placeholder(),
        max_age_years: default_max_age(),
    };
    let canonical = ProfileSpec {
        name: "canonical".to_owned(),
        columns: ColumnSpec {
            transaction_id: "transaction_id".to_owned(),
            customer_id: "customer_id".to_owned(),
            customer_dob: Some("customer_dob".to_owned()),
            gender: Some("gender".to_owned()),
            location: Some("location".to_owned()),
            account_balance: Some("account_balance".to_owned()),
            transaction_date: None,
            transaction_time: None,
            transaction_at: Some("transaction_at".to_owned()),
            amount: "amount".to_owned(),
            currency: Some("currency".to_owned()),
        },
        formats: FormatSpec::default(),
        currency: None,
        amount_scale: None,
        delimiter: None,
        max_amount: default_max_amount(),
        null_values: default_null_values(),
        dob_placeholder: default_dob_placeholder(),
        max_age_years: default_max_age(),
    };
    vec![kaggle, canonical]
}

/// How a header was matched to a profile.
#[derive(Debug, Clone)]
pub struct Binding {
    /// Index into the profile list.
    pub profile: usize,
    /// For each field slot, the index of the source column feeding it.
    pub column_of: [Option<usize>; FIELD_COUNT],
}

impl Binding {
    /// Number of the profile's columns found in the header.
    pub fn matched(&self) -> usize {
        self.column_of.iter().filter(|c| c.is_some()).count()
    }

    /// Per field slot, whether the file carries the field: only those can be "missing"
    /// in a row (a column the profile does not map, or the file lacks, warns nothing).
    pub fn mapped(&self) -> [bool; FIELD_COUNT] {
        self.column_of.map(|c| c.is_some())
    }
}

/// Why no profile fits a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    /// The header looks like a known profile but lacks required columns.
    #[error("required column missing for profile {profile}: {}", missing.join(", "))]
    MissingColumns {
        /// The closest profile.
        profile: String,
        /// Source names of the missing columns.
        missing: Vec<String>,
    },
    /// Nothing resembles the header.
    #[error("no profile matches the columns: {}", columns.join(", "))]
    NoProfile {
        /// The file's column names.
        columns: Vec<String>,
    },
    /// A profile names a delimiter the header does not split at, and the header split
    /// at another delimiter has every column the profile needs.
    #[error(
        "the header does not split at {} (profile {profile} says delimiter = {}): it looks \
         {}-separated; set delimiter = {} in the profile, or remove delimiter to have it \
         detected",
        delimiter_name(*expected),
        delimiter_name(*expected),
        delimiter_name(*found),
        delimiter_name(*found)
    )]
    WrongDelimiter {
        /// The profile that names `expected`.
        profile: String,
        /// The profile's delimiter.
        expected: u8,
        /// The delimiter the header splits at into the profile's columns.
        found: u8,
    },
    /// The header names a column the profile reads more than once.
    #[error(
        "column {column:?} appears {} times in the header (columns {}) and profile {profile} \
         reads it: rename or remove all but one",
        positions.len(),
        positions_text(positions)
    )]
    DuplicateColumn {
        /// The bound profile.
        profile: String,
        /// The column's name, as the header writes it first.
        column: String,
        /// Its 1-based positions in the header.
        positions: Vec<usize>,
    },
}

/// Column positions as a reader counts them: `2 and 5`, `2, 5 and 7` (1-based).
fn positions_text(positions: &[usize]) -> String {
    match positions {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!(
            "{} and {last}",
            init.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A column a bound profile reads that the header names more than once (names compared
/// as [`detect`] does: trimmed, any case): which copy feeds the field would be a guess,
/// so the file is refused. Duplicates among columns the profile does not read are
/// ignored.
///
/// # Errors
/// [`DetectError::DuplicateColumn`] for the first such column, in header order.
pub fn check_duplicates(
    profile: &Profile,
    header: &[String],
    binding: &Binding,
) -> Result<(), DetectError> {
    let lowered: Vec<String> = header.iter().map(|h| h.trim().to_lowercase()).collect();
    let mut read: Vec<usize> = binding.column_of.iter().flatten().copied().collect();
    read.sort_unstable();
    for first in read {
        let positions: Vec<usize> = lowered
            .iter()
            .enumerate()
            .filter(|(_, h)| **h == lowered[first])
            .map(|(i, _)| i + 1)
            .collect();
        if positions.len() > 1 {
            return Err(DetectError::DuplicateColumn {
                profile: profile.name.clone(),
                column: header[first].trim().to_owned(),
                positions,
            });
        }
    }
    Ok(())
}

/// A delimiter as written in a profile: `","`, `";"`, `"\t"`, `"|"`.
pub const fn delimiter_name(delimiter: u8) -> &'static str {
    match delimiter {
        b',' => "\",\"",
        b';' => "\";\"",
        b'\t' => "\"\\t\"",
        b'|' => "\"|\"",
        _ => "\"?\"",
    }
}

/// Picks the profile for a header: the one with all required columns present and the
/// most columns matched; earlier profiles win ties (user profiles come first). For a CSV
/// header split at `delimiter`, profiles that name another delimiter are skipped.
///
/// With no `delimiter` (the keys of a file's first JSON object), when no profile has
/// all its required keys, the profile with at least half of its required keys present
/// and the most keys matched binds (earlier profiles win ties): a record lacking a
/// required key is rejected row by row, not the file.
///
/// # Errors
/// [`DetectError::MissingColumns`] when the best partial match has at least half of a
/// profile's required columns (CSV only), else [`DetectError::NoProfile`].
pub fn detect(
    profiles: &[Profile],
    header: &[String],
    delimiter: Option<u8>,
) -> Result<Binding, DetectError> {
    let lowered: Vec<String> = header.iter().map(|h| h.trim().to_lowercase()).collect();
    let mut best: Option<(usize, usize, Binding)> = None;
    let mut closest: Option<(f64, usize, Vec<String>)> = None;
    let mut partial: Option<(usize, Binding)> = None;
    for (index, profile) in profiles.iter().enumerate() {
        if let (Some(d), Some(own)) = (delimiter, profile.delimiter)
            && d != own
        {
            continue;
        }
        let mut column_of = [None; FIELD_COUNT];
        let mut matched = 0;
        let mut required = 0;
        let mut required_matched = 0;
        let mut missing = Vec::new();
        for field in Field::ALL {
            let Some(name) = &profile.columns[field.slot()] else {
                continue;
            };
            if profile.required[field.slot()] {
                required += 1;
            }
            match lowered.iter().position(|h| h == name) {
                Some(pos) => {
                    column_of[field.slot()] = Some(pos);
                    matched += 1;
                    if profile.required[field.slot()] {
                        required_matched += 1;
                    }
                }
                None if profile.required[field.slot()] => missing.push(name.clone()),
                None => {}
            }
        }
        // JSON keys come from the first object only, and exporters often omit a null
        // field: there a profile with at least half of its required keys present
        // still binds (the rows lacking one are rejected row by row), ranked after
        // every profile whose required keys are all present.
        let partial_json = delimiter.is_none()
            && !missing.is_empty()
            && f64::from(required_matched) >= 0.5 * f64::from(required);
        if partial_json {
            if partial
                .as_ref()
                .is_none_or(|(m, _): &(usize, Binding)| matched > *m)
            {
                partial = Some((
                    matched,
                    Binding {
                        profile: index,
                        column_of,
                    },
                ));
            }
        } else if missing.is_empty() {
            if best.as_ref().is_none_or(|(m, _, _)| matched > *m) {
                best = Some((
                    matched,
                    index,
                    Binding {
                        profile: index,
                        column_of,
                    },
                ));
            }
        } else {
            let share = f64::from(required_matched) / f64::from(required);
            if share >= 0.5 && closest.as_ref().is_none_or(|(s, _, _)| share > *s) {
                closest = Some((share, index, missing));
            }
        }
    }
    if let Some((_, _, binding)) = best.or(partial.map(|(m, b)| (m, b.profile, b))) {
        return Ok(binding);
    }
    match closest {
        Some((_, index, missing)) => Err(DetectError::MissingColumns {
            profile: profiles[index].name.clone(),
            missing,
        }),
        None => Err(DetectError::NoProfile {
            columns: header.to_vec(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtins() -> Vec<Profile> {
        builtin_specs()
            .iter()
            .map(|s| Profile::from_spec(s).unwrap())
            .collect()
    }

    fn header(s: &str) -> Vec<String> {
        s.split(',').map(str::to_owned).collect()
    }

    fn detect_csv(p: &[Profile], h: &[String]) -> Result<Binding, DetectError> {
        detect(p, h, Some(b','))
    }

    #[test]
    fn detects_kaggle_in_any_order_and_case() {
        let p = builtins();
        let b = detect_csv(&p, &header("transactionamount (inr),TransactionID,CUSTOMERID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime")).unwrap();
        assert_eq!(p[b.profile].name, "kaggle-bank");
        assert_eq!(b.column_of[Field::Amount.slot()], Some(0));
        assert_eq!(b.column_of[Field::TransactionId.slot()], Some(1));
    }

    #[test]
    fn detects_canonical() {
        let p = builtins();
        let b = detect_csv(
            &p,
            &header("transaction_id,customer_id,transaction_at,amount,currency"),
        )
        .unwrap();
        assert_eq!(p[b.profile].name, "canonical");
        assert_eq!(b.column_of[Field::Gender.slot()], None);
    }

    #[test]
    fn missing_required_column_is_named() {
        let p = builtins();
        let err = detect_csv(&p, &header("TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionAmount (INR)")).unwrap_err();
        assert_eq!(
            err,
            DetectError::MissingColumns {
                profile: "kaggle-bank".into(),
                missing: vec!["transactiontime".into()]
            }
        );
    }

    #[test]
    fn unrelated_header_matches_nothing() {
        let p = builtins();
        assert!(matches!(
            detect_csv(&p, &header("a,b,c")),
            Err(DetectError::NoProfile { .. })
        ));
    }

    #[test]
    fn kaggle_dates_and_two_digit_years() {
        let f = DateFormat::Numeric(NumericDate::from_name("d/m/y").unwrap());
        let txn = f.parse("2/8/16", YearRule::TwentyFirstCentury).unwrap();
        assert_eq!(txn, Date::new(2016, 8, 2).unwrap());
        assert_eq!(
            f.parse("10/1/94", YearRule::NotAfter(2016)).unwrap().year,
            1994
        );
        assert_eq!(
            f.parse("10/1/05", YearRule::NotAfter(2016)).unwrap().year,
            2005
        );
        assert_eq!(
            f.parse("10/1/16", YearRule::NotAfter(2016)).unwrap().year,
            2016
        );
        assert_eq!(
            f.parse("10/1/17", YearRule::NotAfter(2016)).unwrap().year,
            1917
        );
        assert_eq!(
            f.parse("1/1/1800", YearRule::NotAfter(2016)).unwrap().year,
            1800
        );
        for bad in [
            "31/2/16",
            "0/8/16",
            "12/13/16",
            "1/1",
            "a/b/c",
            "1/1/123",
            "",
            "01/001/16",
        ] {
            assert_eq!(f.parse(bad, YearRule::TwentyFirstCentury), None, "{bad}");
        }
    }

    #[test]
    fn integer_times() {
        let t = TimeFormat::IntegerHhmmss;
        assert_eq!(t.parse("143207"), Some((14, 32, 7)));
        assert_eq!(t.parse("3607"), Some((0, 36, 7)));
        assert_eq!(t.parse("0"), Some((0, 0, 0)));
        for bad in ["246000", "1261", "", "12:00", "-5", "1234567"] {
            assert_eq!(t.parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn iso_timestamps_with_offsets() {
        let f = DateTimeFormat::Iso;
        assert_eq!(
            f.parse("2016-08-02T14:32:07").unwrap().to_string(),
            "2016-08-02 14:32:07"
        );
        assert_eq!(
            f.parse("2016-08-02 14:32").unwrap().to_string(),
            "2016-08-02 14:32:00"
        );
        assert_eq!(
            f.parse("2016-08-02T01:00:00.123+05:30")
                .unwrap()
                .to_string(),
            "2016-08-01 19:30:00"
        );
        assert_eq!(
            f.parse("2016-08-02T01:00:00Z").unwrap().to_string(),
            "2016-08-02 01:00:00"
        );
        for bad in [
            "2016-02-30T00:00:00",
            "2016-08-02",
            "2016-08-02T25:00:00",
            "x",
            // In UTC these are in the years 10000 and 0, which no `Date` holds.
            "9999-12-31T23:30:00-01:00",
            "0001-01-01T00:30:00+01:00",
        ] {
            assert_eq!(f.parse(bad), None, "{bad}");
        }
        // The last and first instants that stay within the years 1 to 9999.
        assert_eq!(
            f.parse("9999-12-31T22:59:59-01:00").unwrap().to_string(),
            "9999-12-31 23:59:59"
        );
        assert_eq!(
            f.parse("0001-01-01T01:00:00+01:00").unwrap().to_string(),
            "0001-01-01 00:00:00"
        );
    }

    #[test]
    fn user_profile_from_toml() {
        let spec: ProfileSpec = toml::from_str(
            r#"
            name = "acme"
            currency = "EUR"
            max_amount = "5000"
            [columns]
            transaction_id = "Ref"
            customer_id = "Client"
            transaction_date = "Day"
            transaction_time = "Time"
            amount = "Amount"
            [formats]
            transaction_date = "%d.%m.%Y"
            transaction_time = "iso"
            "#,
        )
        .unwrap();
        let p = Profile::from_spec(&spec).unwrap();
        assert_eq!(p.max_amount.minor, 500_000);
        let When::DateAndTime(date, _) = &p.when else {
            panic!("date and time expected")
        };
        assert_eq!(
            date.first(|f| f.parse("02.08.2016", YearRule::TwentyFirstCentury)),
            Some((Date::new(2016, 8, 2).unwrap(), 0))
        );
        assert_eq!(p.scale, 2, "EUR has cents");
        assert_eq!(p.delimiter, None);
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut spec = builtin_specs().remove(0);
        spec.formats.transaction_date = Some(FormatChoice::of(&["dd-mm"]));
        assert!(Profile::from_spec(&spec).is_err());
        let mut spec = builtin_specs().remove(0);
        spec.currency = None;
        assert!(Profile::from_spec(&spec).is_err());
    }

    #[test]
    fn a_max_amount_the_scale_cannot_hold_says_why() {
        let mut spec = builtin_specs().remove(0);
        spec.currency = Some("JPY".into());
        spec.max_amount = "1000000.5".into();
        assert_eq!(
            Profile::from_spec(&spec).unwrap_err().to_string(),
            "profile kaggle-bank: invalid max_amount \"1000000.5\": give a plain decimal, not \
             negative, with at most 0 decimals (the profile's amount scale)"
        );
        spec.max_amount = "1000000.0".into();
        assert_eq!(
            Profile::from_spec(&spec).unwrap().max_amount.to_text(),
            "1000000"
        );
    }

    #[test]
    fn a_fixed_currency_must_be_iso_4217_unless_amount_scale_is_given() {
        let mut spec = builtin_specs().remove(0);
        spec.name = "yen".into();
        spec.currency = Some("JYP".into());
        let err = Profile::from_spec(&spec).unwrap_err().to_string();
        assert!(
            err.contains("profile yen")
                && err.contains("\"JYP\" is not an ISO 4217 currency code (did you mean JPY?)")
                && err.contains("amount_scale"),
            "{err}"
        );
        spec.currency = Some("XAU".into());
        let err = Profile::from_spec(&spec).unwrap_err().to_string();
        assert!(err.contains("has no ISO 4217 minor unit"), "{err}");
        // Private or newer codes: the profile says the scale itself.
        spec.currency = Some("QQQ".into());
        spec.amount_scale = Some(3);
        let p = Profile::from_spec(&spec).unwrap();
        assert_eq!(
            (p.scale, p.currency),
            (3, CurrencySource::Fixed(Currency::parse("QQQ").unwrap()))
        );
        spec.currency = Some("jpy".into());
        spec.amount_scale = None;
        assert_eq!(Profile::from_spec(&spec).unwrap().scale, 0, "any case");
    }

    #[test]
    fn numeric_date_names_fix_order_separator_and_year_digits() {
        let f = |name: &str| DateFormat::from_spec(name).unwrap();
        let ty = YearRule::TwentyFirstCentury;
        assert_eq!(f("d/m/yy").parse("2/8/16", ty), Date::new(2016, 8, 2));
        assert_eq!(f("d/m/yy").parse("2/8/2016", ty), None);
        assert_eq!(f("d/m/yyyy").parse("2/8/2016", ty), Date::new(2016, 8, 2));
        assert_eq!(f("d/m/yyyy").parse("2/8/16", ty), None);
        assert_eq!(
            f("d-m-yyyy").parse("21-10-2016", ty),
            Date::new(2016, 10, 21)
        );
        assert_eq!(f("d-m-yyyy").parse("21/10/2016", ty), None);
        assert_eq!(f("m/d/yy").parse("8/2/16", ty), Date::new(2016, 8, 2));
        assert_eq!(f("d.m.y").parse("2.8.2016", ty), Date::new(2016, 8, 2));
        for bad in ["d/m", "dd/mm/yy", "d/m-yy", "y/m/d", "d/d/yy"] {
            assert!(DateFormat::from_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_lists_and_delimiters_from_toml() {
        let spec: ProfileSpec = toml::from_str(
            r#"
            name = "bank-x"
            currency = "JPY"
            delimiter = "\t"
            [columns]
            transaction_id = "Ref"
            customer_id = "Client"
            transaction_date = "Day"
            transaction_time = "Time"
            amount = "Amount"
            [formats]
            transaction_date = ["%d/%m/%y", "%d/%m/%Y", "%d-%m-%Y"]
            transaction_time = "iso"
            "#,
        )
        .unwrap();
        let p = Profile::from_spec(&spec).unwrap();
        assert_eq!(p.delimiter, Some(b'\t'));
        assert_eq!(p.scale, 0, "JPY has no minor unit");
        assert_eq!(
            p.format_names(Field::TransactionDate),
            ["%d/%m/%y", "%d/%m/%Y", "%d-%m-%Y"]
        );
        let When::DateAndTime(date, _) = &p.when else {
            panic!()
        };
        let ty = YearRule::TwentyFirstCentury;
        assert_eq!(date.first(|f| f.parse("2/8/16", ty)).unwrap().1, 0);
        assert_eq!(date.first(|f| f.parse("2/8/2016", ty)).unwrap().1, 1);
        assert_eq!(date.first(|f| f.parse("21-10-2016", ty)).unwrap().1, 2);
        for (d, want) in [(";", b';'), ("tab", b'\t'), ("|", b'|'), (",", b',')] {
            let mut s = spec.clone();
            s.delimiter = Some(d.into());
            assert_eq!(Profile::from_spec(&s).unwrap().delimiter, Some(want));
        }
        let mut s = spec.clone();
        s.delimiter = Some("::".into());
        assert!(Profile::from_spec(&s).is_err());
        let mut s = spec;
        s.formats.transaction_date = Some(FormatChoice::Many(vec![]));
        assert!(Profile::from_spec(&s).is_err());
    }

    #[test]
    fn a_header_is_matched_only_by_profiles_allowing_its_delimiter() {
        let mut specs = builtin_specs();
        specs[1].delimiter = Some(";".into());
        let p: Vec<Profile> = specs
            .iter()
            .map(|s| Profile::from_spec(s).unwrap())
            .collect();
        let h = header("transaction_id,customer_id,transaction_at,amount,currency");
        assert!(detect(&p, &h, Some(b',')).is_err());
        assert_eq!(detect(&p, &h, Some(b';')).unwrap().profile, 1);
        assert_eq!(detect(&p, &h, None).unwrap().profile, 1, "JSON keys");
    }
}
