//! The domain values a validated row is made of: exact money, calendar dates and
//! timestamps, gender and currency codes.
//!
//! Money is an integer count of minor units with a scale (2 for INR paise), never a
//! float: control totals must add up to the last paisa. Dates are small hand-checked
//! structs rather than a general date library because the hot path parses a million of
//! them per second and only needs the proleptic Gregorian calendar.

use std::fmt;

/// Largest scale (digits after the decimal point) an amount may have.
pub const MAX_SCALE: u8 = 6;

/// An exact decimal amount: `minor / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Amount {
    /// Value in minor units (paise for INR at scale 2).
    pub minor: i64,
    /// Digits after the decimal point.
    pub scale: u8,
}

/// Why a text is not an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not of the form `[-]digits[.digits]`: grouping commas, exponents, letters, signs.
    NotPlainDecimal,
    /// More digits after the point than the currency's scale allows.
    TooPrecise,
    /// More digits than fit in 64-bit minor units.
    TooLarge,
}

impl Amount {
    /// Parses a plain decimal (`123`, `123.4`, `-0.50`) into minor units at `scale`.
    ///
    /// Only ASCII digits, one optional leading `-` and one optional `.` followed by at
    /// least one digit are accepted: `1,000.50`, `1e3`, `+5`, `.5` and `5.` are not plain
    /// decimals. Trailing zeros beyond the scale are accepted (`25.000` at scale 2).
    ///
    /// # Errors
    /// See [`AmountError`].
    pub fn parse(text: &str, scale: u8) -> Result<Amount, AmountError> {
        let bytes = text.as_bytes();
        let (negative, digits) = match bytes.first() {
            Some(b'-') => (true, &bytes[1..]),
            _ => (false, bytes),
        };
        let (int_part, frac_part) = match memchr::memchr(b'.', digits) {
            Some(dot) => (&digits[..dot], Some(&digits[dot + 1..])),
            None => (digits, None),
        };
        if int_part.is_empty() || !int_part.iter().all(u8::is_ascii_digit) {
            return Err(AmountError::NotPlainDecimal);
        }
        let mut minor: i64 = 0;
        for &b in int_part {
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(b - b'0')))
                .ok_or(AmountError::TooLarge)?;
        }
        let mut used = 0u8;
        if let Some(frac) = frac_part {
            if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
                return Err(AmountError::NotPlainDecimal);
            }
            for (i, &b) in frac.iter().enumerate() {
                if i >= usize::from(scale) {
                    if b != b'0' {
                        return Err(AmountError::TooPrecise);
                    }
                    continue;
                }
                minor = minor
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(i64::from(b - b'0')))
                    .ok_or(AmountError::TooLarge)?;
                used += 1;
            }
        }
        for _ in used..scale {
            minor = minor.checked_mul(10).ok_or(AmountError::TooLarge)?;
        }
        Ok(Amount {
            minor: if negative { -minor } else { minor },
            scale,
        })
    }

    /// Writes the canonical text (`25.00`, `-0.50`, `7` at scale 0) into `buf`.
    pub fn write_to(self, buf: &mut String) {
        write_minor(i128::from(self.minor), self.scale, buf);
    }

    /// The canonical text, e.g. `25.00`.
    pub fn to_text(self) -> String {
        let mut s = String::with_capacity(24);
        self.write_to(&mut s);
        s
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Formats `minor / 10^scale` exactly, for amounts and for 128-bit control totals.
pub fn write_minor(minor: i128, scale: u8, buf: &mut String) {
    use std::fmt::Write;
    let negative = minor < 0;
    let abs = minor.unsigned_abs();
    let pow = 10u128.pow(u32::from(scale));
    if negative {
        buf.push('-');
    }
    // u64 formatting is much faster than u128; amounts of one row always fit.
    match u64::try_from(abs / pow) {
        Ok(int) => push_num(buf, int, 1),
        Err(_) => {
            let _ = write!(buf, "{}", abs / pow);
        }
    }
    if scale > 0 {
        buf.push('.');
        push_num(buf, (abs % pow) as u64, usize::from(scale));
    }
}

/// A control total: the exact sum of many amounts of one scale, of any size.
///
/// Sums stay in an `i128` (fast, and enough for any realistic file); a sum that would
/// overflow it, or a single amount too large for an [`Amount`] (rejected
/// `amount_above_max`, but still counted, issue 8 §6), moves to exact decimal digits.
/// Never a float, never an overflow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Total {
    /// The sum in minor units while it fits; 0 when `wide` holds it.
    minor: i128,
    /// The sum when it does not fit an `i128` (and only then: equal sums compare equal).
    wide: Option<Box<Wide>>,
}

impl Total {
    /// A total of `minor` minor units.
    pub const fn from_minor(minor: i128) -> Total {
        Total { minor, wide: None }
    }

    /// The sum in minor units, when it fits an `i128`.
    pub fn minor(&self) -> Option<i128> {
        self.wide.is_none().then_some(self.minor)
    }

    /// Adds one amount (the caller keeps scales uniform per file).
    pub fn add(&mut self, amount: Amount) {
        self.add_minor(i128::from(amount.minor));
    }

    /// Adds a row's parsed amount, whatever its size.
    pub fn add_parsed(&mut self, amount: &ParsedAmount) {
        match amount {
            ParsedAmount::Fits(a) => self.add(*a),
            ParsedAmount::Huge { minor, .. } => self.merge(minor),
        }
    }

    fn add_minor(&mut self, minor: i128) {
        if self.wide.is_none()
            && let Some(sum) = self.minor.checked_add(minor)
        {
            self.minor = sum;
            return;
        }
        self.add_wide(&Wide::from_i128(minor));
    }

    fn add_wide(&mut self, other: &Wide) {
        let mut sum = match self.wide.take() {
            Some(w) => *w,
            None => Wide::from_i128(self.minor),
        };
        sum.add(other);
        *self = Total::from_wide(sum);
    }

    /// Back to an `i128` when the value fits again, so equal sums compare equal.
    fn from_wide(w: Wide) -> Total {
        match w.to_i128() {
            Some(minor) => Total::from_minor(minor),
            None => Total {
                minor: 0,
                wide: Some(Box::new(w)),
            },
        }
    }

    /// Adds another total.
    pub fn merge(&mut self, other: &Total) {
        match &other.wide {
            None => self.add_minor(other.minor),
            Some(w) => self.add_wide(w),
        }
    }

    /// Canonical decimal text at `scale`.
    pub fn to_text(&self, scale: u8) -> String {
        let mut s = String::new();
        match &self.wide {
            None => write_minor(self.minor, scale, &mut s),
            Some(w) => w.write_scaled(scale, &mut s),
        }
        s
    }

    /// Parses the canonical text back (for totals read from the warehouse).
    pub fn parse(text: &str, scale: u8) -> Option<Total> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (int_part, frac) = rest.split_once('.').unwrap_or((rest, ""));
        if frac.len() != usize::from(scale) && !(scale == 0 && frac.is_empty()) {
            return None;
        }
        if int_part.is_empty()
            || !int_part
                .bytes()
                .chain(frac.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Some(Total::from_wide(Wide::from_digits(
            negative,
            int_part.bytes().chain(frac.bytes()),
        )))
    }
}

/// An exact signed integer of any size, as little-endian decimal digits: only for the
/// rare sums and amounts beyond an `i128`, so simplicity beats speed here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wide {
    negative: bool,
    /// Least significant first, no trailing (most significant) zeros; empty for 0.
    digits: Vec<u8>,
}

impl Wide {
    fn from_i128(v: i128) -> Wide {
        let mut digits = Vec::new();
        let mut m = v.unsigned_abs();
        while m > 0 {
            digits.push((m % 10) as u8);
            m /= 10;
        }
        Wide {
            negative: v < 0,
            digits,
        }
    }

    /// From ASCII digits, most significant first.
    fn from_digits(negative: bool, ascii: impl DoubleEndedIterator<Item = u8>) -> Wide {
        let mut w = Wide {
            negative,
            digits: ascii.rev().map(|b| b - b'0').collect(),
        };
        w.trim();
        w
    }

    fn trim(&mut self) {
        while self.digits.last() == Some(&0) {
            self.digits.pop();
        }
        if self.digits.is_empty() {
            self.negative = false;
        }
    }

    fn to_i128(&self) -> Option<i128> {
        let mut m: i128 = 0;
        for &d in self.digits.iter().rev() {
            m = m.checked_mul(10)?.checked_add(i128::from(d))?;
        }
        Some(if self.negative { -m } else { m })
    }

    fn add(&mut self, other: &Wide) {
        if self.negative == other.negative {
            let mut carry = 0u8;
            for i in 0..self.digits.len().max(other.digits.len()) {
                let d = self.digits.get(i).copied().unwrap_or(0)
                    + other.digits.get(i).copied().unwrap_or(0)
                    + carry;
                if i < self.digits.len() {
                    self.digits[i] = d % 10;
                } else {
                    self.digits.push(d % 10);
                }
                carry = d / 10;
            }
            if carry > 0 {
                self.digits.push(carry);
            }
            return;
        }
        // Opposite signs: the larger magnitude minus the smaller, with its sign.
        let (big, small, negative) = if magnitude_cmp(&self.digits, &other.digits).is_ge() {
            (self.digits.clone(), &other.digits, self.negative)
        } else {
            (other.digits.clone(), &self.digits, other.negative)
        };
        let mut digits = big;
        let mut borrow = 0i8;
        for (i, d) in digits.iter_mut().enumerate() {
            let mut v = *d as i8 - small.get(i).copied().unwrap_or(0) as i8 - borrow;
            borrow = i8::from(v < 0);
            if v < 0 {
                v += 10;
            }
            *d = v as u8;
        }
        self.digits = digits;
        self.negative = negative;
        self.trim();
    }

    fn write_scaled(&self, scale: u8, buf: &mut String) {
        let scale = usize::from(scale);
        if self.negative {
            buf.push('-');
        }
        let len = self.digits.len().max(scale + 1);
        for i in (0..len).rev() {
            if i + 1 == scale {
                buf.push('.');
            }
            buf.push(char::from(b'0' + self.digits.get(i).copied().unwrap_or(0)));
        }
    }
}

fn magnitude_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.iter().rev().cmp(b.iter().rev()))
}

/// A row's amount as parsed: exact whatever its size. Every amount a valid row carries
/// fits an [`Amount`] (it is at most the profile's maximum); a well-formed amount too
/// large for 64-bit minor units can only be rejected `amount_above_max` (or
/// `negative_amount`), and still counts in the control totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedAmount {
    /// Fits 64-bit minor units.
    Fits(Amount),
    /// Beyond 64-bit minor units.
    Huge {
        /// The value in minor units.
        minor: Box<Total>,
        /// Digits after the decimal point.
        scale: u8,
    },
}

impl ParsedAmount {
    /// Parses a plain decimal as [`Amount::parse`] does, but with no size limit.
    ///
    /// # Errors
    /// [`AmountError::NotPlainDecimal`] or [`AmountError::TooPrecise`]; never
    /// `TooLarge`.
    pub fn parse(text: &str, scale: u8) -> Result<ParsedAmount, AmountError> {
        match Amount::parse(text, scale) {
            Ok(a) => Ok(ParsedAmount::Fits(a)),
            Err(AmountError::TooLarge) => {
                let (negative, rest) = match text.strip_prefix('-') {
                    Some(r) => (true, r),
                    None => (false, text),
                };
                let (int_part, frac) = rest.split_once('.').unwrap_or((rest, ""));
                let well_formed = !int_part.is_empty()
                    && int_part.bytes().all(|b| b.is_ascii_digit())
                    && (!rest.contains('.') || !frac.is_empty())
                    && frac.bytes().all(|b| b.is_ascii_digit());
                if !well_formed {
                    return Err(AmountError::NotPlainDecimal);
                }
                let cut = frac.len().min(usize::from(scale));
                if frac.bytes().skip(cut).any(|b| b != b'0') {
                    return Err(AmountError::TooPrecise);
                }
                let pad = usize::from(scale) - cut;
                let digits = int_part
                    .bytes()
                    .chain(frac.bytes().take(cut))
                    .chain(std::iter::repeat_n(b'0', pad));
                let digits: Vec<u8> = digits.collect();
                Ok(ParsedAmount::Huge {
                    minor: Box::new(Total::from_wide(Wide::from_digits(
                        negative,
                        digits.into_iter(),
                    ))),
                    scale,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Whether it is below zero.
    pub fn is_negative(&self) -> bool {
        match self {
            ParsedAmount::Fits(a) => a.minor < 0,
            ParsedAmount::Huge { minor, .. } => minor.to_text(0).starts_with('-'),
        }
    }

    /// The canonical text at its scale, e.g. `25.00`.
    pub fn to_text(&self) -> String {
        match self {
            ParsedAmount::Fits(a) => a.to_text(),
            ParsedAmount::Huge { minor, scale } => minor.to_text(*scale),
        }
    }
}

impl fmt::Display for ParsedAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A calendar date (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, e.g. 2016.
    pub year: i32,
    /// Month 1-12.
    pub month: u8,
    /// Day 1-31.
    pub day: u8,
}

/// True for leap years of the Gregorian calendar.
pub const fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Number of days in `month` of `year`, 0 for a month outside 1-12.
pub const fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// A checked date: `None` for 31/2, day 0, month 13 and the like.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        if !(1..=9999).contains(&year) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// Days since 1970-01-01 (negative before), for offset arithmetic.
    pub fn days_since_epoch(self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// Inverse of [`Date::days_since_epoch`].
    pub fn from_days_since_epoch(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    /// Writes `YYYY-MM-DD`.
    pub fn write_to(self, buf: &mut String) {
        push_num(buf, self.year as u32, 4);
        buf.push('-');
        push_num(buf, u32::from(self.month), 2);
        buf.push('-');
        push_num(buf, u32::from(self.day), 2);
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(10);
        self.write_to(&mut s);
        f.write_str(&s)
    }
}

/// A wall-clock timestamp without zone, to the second (the sources carry no zone; ISO
/// inputs with an offset are converted to UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    /// The calendar date.
    pub date: Date,
    /// Seconds since midnight, 0..86400.
    pub seconds: u32,
}

impl DateTime {
    /// A checked timestamp.
    pub fn new(date: Date, hour: u32, minute: u32, second: u32) -> Option<DateTime> {
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        Some(DateTime {
            date,
            seconds: hour * 3600 + minute * 60 + second,
        })
    }

    /// Shifts by a number of seconds (used to normalise offsets to UTC).
    pub fn shift_seconds(self, delta: i64) -> DateTime {
        let total = self.date.days_since_epoch() * 86_400 + i64::from(self.seconds) + delta;
        DateTime {
            date: Date::from_days_since_epoch(total.div_euclid(86_400)),
            seconds: total.rem_euclid(86_400) as u32,
        }
    }

    /// Writes `YYYY-MM-DD HH:MM:SS`.
    pub fn write_to(self, buf: &mut String) {
        self.date.write_to(buf);
        buf.push(' ');
        push_num(buf, self.seconds / 3600, 2);
        buf.push(':');
        push_num(buf, self.seconds / 60 % 60, 2);
        buf.push(':');
        push_num(buf, self.seconds % 60, 2);
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(19);
        self.write_to(&mut s);
        f.write_str(&s)
    }
}

/// Appends `value` zero-padded to `width` digits.
fn push_num(buf: &mut String, value: impl Into<u64>, width: usize) {
    let mut digits = [b'0'; 20];
    let value: u64 = value.into();
    let mut v = value;
    let mut n = 0;
    while v > 0 || n == 0 {
        digits[n] = b'0' + (v % 10) as u8;
        v /= 10;
        n += 1;
    }
    for _ in n..width {
        buf.push('0');
    }
    for i in (0..n).rev() {
        buf.push(digits[i] as char);
    }
}

/// Customer gender as the source codes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gender {
    /// `M`.
    Male,
    /// `F`.
    Female,
    /// `T` (transgender, as coded in the Kaggle source).
    Transgender,
}

impl Gender {
    /// Parses `M`, `F` or `T`, case-insensitively.
    pub fn parse(text: &str) -> Option<Gender> {
        match text {
            "M" | "m" => Some(Gender::Male),
            "F" | "f" => Some(Gender::Female),
            "T" | "t" => Some(Gender::Transgender),
            _ => None,
        }
    }

    /// The one-letter code stored in the warehouse.
    pub const fn code(self) -> &'static str {
        match self {
            Gender::Male => "M",
            Gender::Female => "F",
            Gender::Transgender => "T",
        }
    }
}

/// An ISO 4217 alphabetic currency code, stored inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Three ASCII letters, upper-cased.
    pub fn parse(text: &str) -> Option<Currency> {
        let b = text.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        Some(Currency([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ]))
    }

    /// The code, e.g. `INR`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// What ISO 4217 says of the code: its minor units, or `None` when the code is not
    /// in [`ISO_4217`] (a typo such as `JYP`, or a private code).
    pub fn iso4217(self) -> Option<MinorUnits> {
        ISO_4217
            .binary_search_by(|(code, _)| code.cmp(&&self.0))
            .ok()
            .map(|i| ISO_4217[i].1)
    }

    /// Digits after the decimal point of the currency's minor unit (ISO 4217): 0 for
    /// JPY, 3 for KWD, 2 for most, so `100.5` yen is not a valid amount. `None` for a
    /// code ISO 4217 does not list, or lists without a minor unit (`XAU`).
    pub fn minor_units(self) -> Option<u8> {
        match self.iso4217() {
            Some(MinorUnits::Digits(d)) => Some(d),
            Some(MinorUnits::NotApplicable) | None => None,
        }
    }

    /// Listed codes made of the same letters in another order (`JYP` → `JPY`), for a
    /// message about a mistyped code.
    pub fn anagrams(self) -> Vec<Currency> {
        let mut letters = self.0;
        letters.sort_unstable();
        ISO_4217
            .iter()
            .filter(|(code, _)| {
                let mut l = **code;
                l.sort_unstable();
                l == letters && **code != self.0
            })
            .map(|(code, _)| Currency(**code))
            .collect()
    }
}

/// The minor unit of an ISO 4217 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinorUnits {
    /// Digits after the decimal point (JPY 0, EUR 2, KWD 3, CLF 4).
    Digits(u8),
    /// Listed without a minor unit ("N.A."): precious metals, SDR, test and "no
    /// currency" codes.
    NotApplicable,
}

/// ISO 4217 alphabetic codes and their minor units, sorted by code (binary-searched per
/// row). The current list (as of 2025, with `XCG`, `ZWG`, `VED` and `SLE`) plus
/// codes withdrawn since 2010 that older exports still hold (`HRK`, `LTL`, `LVL`,
/// `EEK`, `BYR`, `MRO`, `STD`, `VEF`, `ZMK`, `CUC`, `ANG`, `SLL`, `ZWL`), so a
/// re-loaded archive is not rejected row by row.
#[rustfmt::skip]
pub const ISO_4217: &[(&[u8; 3], MinorUnits)] = {
    use MinorUnits::{Digits as D, NotApplicable as NA};
    &[
        (b"AED", D(2)), (b"AFN", D(2)), (b"ALL", D(2)), (b"AMD", D(2)), (b"ANG", D(2)),
        (b"AOA", D(2)), (b"ARS", D(2)), (b"AUD", D(2)), (b"AWG", D(2)), (b"AZN", D(2)),
        (b"BAM", D(2)), (b"BBD", D(2)), (b"BDT", D(2)), (b"BGN", D(2)), (b"BHD", D(3)),
        (b"BIF", D(0)), (b"BMD", D(2)), (b"BND", D(2)), (b"BOB", D(2)), (b"BOV", D(2)),
        (b"BRL", D(2)), (b"BSD", D(2)), (b"BTN", D(2)), (b"BWP", D(2)), (b"BYN", D(2)),
        (b"BYR", D(0)), (b"BZD", D(2)), (b"CAD", D(2)), (b"CDF", D(2)), (b"CHE", D(2)),
        (b"CHF", D(2)), (b"CHW", D(2)), (b"CLF", D(4)), (b"CLP", D(0)), (b"CNY", D(2)),
        (b"COP", D(2)), (b"COU", D(2)), (b"CRC", D(2)), (b"CUC", D(2)), (b"CUP", D(2)),
        (b"CVE", D(2)), (b"CZK", D(2)), (b"DJF", D(0)), (b"DKK", D(2)), (b"DOP", D(2)),
        (b"DZD", D(2)), (b"EEK", D(2)), (b"EGP", D(2)), (b"ERN", D(2)), (b"ETB", D(2)),
        (b"EUR", D(2)), (b"FJD", D(2)), (b"FKP", D(2)), (b"GBP", D(2)), (b"GEL", D(2)),
        (b"GHS", D(2)), (b"GIP", D(2)), (b"GMD", D(2)), (b"GNF", D(0)), (b"GTQ", D(2)),
        (b"GYD", D(2)), (b"HKD", D(2)), (b"HNL", D(2)), (b"HRK", D(2)), (b"HTG", D(2)),
        (b"HUF", D(2)), (b"IDR", D(2)), (b"ILS", D(2)), (b"INR", D(2)), (b"IQD", D(3)),
        (b"IRR", D(2)), (b"ISK", D(0)), (b"JMD", D(2)), (b"JOD", D(3)), (b"JPY", D(0)),
        (b"KES", D(2)), (b"KGS", D(2)), (b"KHR", D(2)), (b"KMF", D(0)), (b"KPW", D(2)),
        (b"KRW", D(0)), (b"KWD", D(3)), (b"KYD", D(2)), (b"KZT", D(2)), (b"LAK", D(2)),
        (b"LBP", D(2)), (b"LKR", D(2)), (b"LRD", D(2)), (b"LSL", D(2)), (b"LTL", D(2)),
        (b"LVL", D(2)), (b"LYD", D(3)), (b"MAD", D(2)), (b"MDL", D(2)), (b"MGA", D(2)),
        (b"MKD", D(2)), (b"MMK", D(2)), (b"MNT", D(2)), (b"MOP", D(2)), (b"MRO", D(2)),
        (b"MRU", D(2)), (b"MUR", D(2)), (b"MVR", D(2)), (b"MWK", D(2)), (b"MXN", D(2)),
        (b"MXV", D(2)), (b"MYR", D(2)), (b"MZN", D(2)), (b"NAD", D(2)), (b"NGN", D(2)),
        (b"NIO", D(2)), (b"NOK", D(2)), (b"NPR", D(2)), (b"NZD", D(2)), (b"OMR", D(3)),
        (b"PAB", D(2)), (b"PEN", D(2)), (b"PGK", D(2)), (b"PHP", D(2)), (b"PKR", D(2)),
        (b"PLN", D(2)), (b"PYG", D(0)), (b"QAR", D(2)), (b"RON", D(2)), (b"RSD", D(2)),
        (b"RUB", D(2)), (b"RWF", D(0)), (b"SAR", D(2)), (b"SBD", D(2)), (b"SCR", D(2)),
        (b"SDG", D(2)), (b"SEK", D(2)), (b"SGD", D(2)), (b"SHP", D(2)), (b"SLE", D(2)),
        (b"SLL", D(2)), (b"SOS", D(2)), (b"SRD", D(2)), (b"SSP", D(2)), (b"STD", D(2)),
        (b"STN", D(2)), (b"SVC", D(2)), (b"SYP", D(2)), (b"SZL", D(2)), (b"THB", D(2)),
        (b"TJS", D(2)), (b"TMT", D(2)), (b"TND", D(3)), (b"TOP", D(2)), (b"TRY", D(2)),
        (b"TTD", D(2)), (b"TWD", D(2)), (b"TZS", D(2)), (b"UAH", D(2)), (b"UGX", D(0)),
        (b"USD", D(2)), (b"USN", D(2)), (b"UYI", D(0)), (b"UYU", D(2)), (b"UYW", D(4)),
        (b"UZS", D(2)), (b"VED", D(2)), (b"VEF", D(2)), (b"VES", D(2)), (b"VND", D(0)),
        (b"VUV", D(0)), (b"WST", D(2)), (b"XAF", D(0)), (b"XAG", NA), (b"XAU", NA),
        (b"XBA", NA), (b"XBB", NA), (b"XBC", NA), (b"XBD", NA), (b"XCD", D(2)),
        (b"XCG", D(2)), (b"XDR", NA), (b"XOF", D(0)), (b"XPD", NA), (b"XPF", D(0)),
        (b"XPT", NA), (b"XSU", NA), (b"XTS", NA), (b"XUA", NA), (b"XXX", NA),
        (b"YER", D(2)), (b"ZAR", D(2)), (b"ZMK", D(2)), (b"ZMW", D(2)), (b"ZWG", D(2)),
        (b"ZWL", D(2)),
    ]
};

/// Short text kept inline (up to 24 bytes) instead of on the heap: ids and city names
/// fit, so validating a row allocates nothing.
pub type Text = compact_str::CompactString;

/// One validated transaction, ready to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Business key, globally unique in the warehouse.
    pub transaction_id: Text,
    /// Customer key.
    pub customer_id: Text,
    /// Date of birth, `None` when missing or implausible (a warning was counted).
    pub customer_dob: Option<Date>,
    /// Gender, `None` when missing or not M/F/T.
    pub gender: Option<Gender>,
    /// Customer location, `None` when empty.
    pub location: Option<Text>,
    /// Account balance, `None` when missing or not a decimal.
    pub account_balance: Option<Amount>,
    /// When the transaction happened.
    pub transaction_at: DateTime,
    /// Transaction amount, non-negative.
    pub amount: Amount,
    /// Currency of `amount` and `account_balance`.
    pub currency: Currency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_parses_plain_decimals_exactly() {
        assert_eq!(Amount::parse("25.0", 2).unwrap().minor, 2500);
        assert_eq!(Amount::parse("17819.05", 2).unwrap().minor, 1_781_905);
        assert_eq!(Amount::parse("7", 2).unwrap().minor, 700);
        assert_eq!(Amount::parse("-0.5", 2).unwrap().minor, -50);
        assert_eq!(Amount::parse("25.000", 2).unwrap().minor, 2500);
        assert_eq!(Amount::parse("0.1", 2).unwrap().to_text(), "0.10");
    }

    #[test]
    fn amount_rejects_everything_else() {
        for bad in [
            "1,000.50", "1e3", "abc", "", "-", "+5", ".5", "5.", "1.2.3", " 5", "٣",
        ] {
            assert_eq!(
                Amount::parse(bad, 2),
                Err(AmountError::NotPlainDecimal),
                "{bad}"
            );
        }
        assert_eq!(Amount::parse("1.234", 2), Err(AmountError::TooPrecise));
        assert_eq!(
            Amount::parse("99999999999999999999", 2),
            Err(AmountError::TooLarge)
        );
    }

    #[test]
    fn totals_format_and_parse_round_trip() {
        for (minor, scale, text) in [
            (0i128, 2u8, "0.00"),
            (5, 2, "0.05"),
            (-5, 2, "-0.05"),
            (123_456_789_012_345_678_901, 2, "1234567890123456789.01"),
            (7, 0, "7"),
        ] {
            let t = Total::from_minor(minor);
            assert_eq!(t.to_text(scale), text);
            assert_eq!(Total::parse(text, scale), Some(t));
        }
    }

    #[test]
    fn huge_amounts_parse_exactly_and_totals_never_overflow() {
        let forty = "1234567890123456789012345678901234567890";
        let huge = ParsedAmount::parse(forty, 2).unwrap();
        assert!(matches!(huge, ParsedAmount::Huge { .. }));
        assert_eq!(huge.to_text(), format!("{forty}.00"));
        assert!(!huge.is_negative());
        let neg = ParsedAmount::parse("-99999999999999999999.5", 2).unwrap();
        assert_eq!(neg.to_text(), "-99999999999999999999.50");
        assert!(neg.is_negative());
        assert_eq!(
            ParsedAmount::parse("99999999999999999999.001", 2),
            Err(AmountError::TooPrecise)
        );
        assert_eq!(
            ParsedAmount::parse("99999999999999999999.", 2),
            Err(AmountError::NotPlainDecimal)
        );
        assert_eq!(
            ParsedAmount::parse("9999999999999999999x9", 2),
            Err(AmountError::NotPlainDecimal)
        );
        assert_eq!(
            ParsedAmount::parse("25.5", 2),
            Ok(ParsedAmount::Fits(Amount::parse("25.5", 2).unwrap()))
        );

        // Two 20-digit amounts overflow i64 minor units; i128 holds them; a 40-digit one
        // needs more, and subtracting it again comes back to the i128 value exactly.
        let mut t = Total::default();
        let twenty = ParsedAmount::parse("98765432109876543210", 2).unwrap();
        t.add_parsed(&twenty);
        t.add_parsed(&twenty);
        assert_eq!(t.to_text(2), "197530864219753086420.00");
        assert_eq!(t.minor(), Some(19_753_086_421_975_308_642_000));
        t.add_parsed(&huge);
        assert_eq!(t.minor(), None);
        assert_eq!(t.to_text(2), "1234567890123456789209876543120987654310.00");
        assert_eq!(Total::parse(&t.to_text(2), 2), Some(t.clone()));
        let mut back = t.clone();
        back.add_parsed(&ParsedAmount::parse(&format!("-{forty}"), 2).unwrap());
        assert_eq!(back, Total::from_minor(19_753_086_421_975_308_642_000));
        let mut small = Total::default();
        small.add(Amount::parse("0.05", 2).unwrap());
        small.merge(&Total::parse("-1.00", 2).unwrap());
        assert_eq!(small.to_text(2), "-0.95");
        let mut max = Total::from_minor(i128::MAX);
        max.add(Amount::parse("0.01", 2).unwrap());
        assert_eq!(max.minor(), None);
        assert_eq!(max.to_text(0), "170141183460469231731687303715884105728");
        let mut w = Total::parse("-0.01", 2).unwrap();
        w.merge(&max);
        assert_eq!(w, Total::from_minor(i128::MAX));
        assert_eq!(Total::parse("0.5", 0), None);
        assert_eq!(Total::parse("12a", 0), None);
    }

    #[test]
    fn dates_are_checked() {
        assert!(Date::new(2016, 2, 29).is_some());
        assert!(Date::new(2015, 2, 29).is_none());
        assert!(Date::new(2016, 2, 31).is_none());
        assert!(Date::new(2016, 8, 0).is_none());
        assert!(Date::new(2016, 13, 1).is_none());
        assert!(Date::new(1900, 2, 29).is_none());
        assert!(Date::new(2000, 2, 29).is_some());
    }

    #[test]
    fn epoch_days_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 16_000, 17_000, 2_000_000] {
            let d = Date::from_days_since_epoch(days);
            assert_eq!(d.days_since_epoch(), days, "{d}");
        }
        assert_eq!(Date::new(1970, 1, 1).unwrap().days_since_epoch(), 0);
        assert_eq!(Date::new(2016, 8, 2).unwrap().days_since_epoch(), 17_015);
    }

    #[test]
    fn timestamps_format_and_shift() {
        let d = Date::new(2016, 8, 2).unwrap();
        let t = DateTime::new(d, 0, 36, 7).unwrap();
        assert_eq!(t.to_string(), "2016-08-02 00:36:07");
        assert_eq!(t.shift_seconds(-3600).to_string(), "2016-08-01 23:36:07");
        assert!(DateTime::new(d, 24, 0, 0).is_none());
        assert!(DateTime::new(d, 0, 12, 61).is_none());
    }

    #[test]
    fn currency_minor_units_follow_iso_4217() {
        for (code, units) in [
            ("JPY", 0),
            ("KRW", 0),
            ("INR", 2),
            ("EUR", 2),
            ("usd", 2),
            ("KWD", 3),
            ("BHD", 3),
            ("OMR", 3),
            ("JOD", 3),
            ("TND", 3),
            ("LYD", 3),
            ("IQD", 3),
            ("CLF", 4),
        ] {
            assert_eq!(
                Currency::parse(code).unwrap().minor_units(),
                Some(units),
                "{code}"
            );
        }
    }

    #[test]
    fn the_iso_4217_table_is_sorted_and_knows_typos_from_codes() {
        assert!(
            ISO_4217.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, unique"
        );
        let code = |c: &str| Currency::parse(c).unwrap();
        assert_eq!(code("JYP").iso4217(), None);
        assert_eq!(code("JYP").minor_units(), None);
        assert_eq!(code("JYP").anagrams(), [code("JPY")]);
        assert_eq!(code("XAU").iso4217(), Some(MinorUnits::NotApplicable));
        assert_eq!(code("XAU").minor_units(), None);
        for known in ["AED", "ZWL", "HRK", "XCG", "eur"] {
            assert!(code(known).iso4217().is_some(), "{known}");
        }
    }

    #[test]
    fn gender_and_currency_codes() {
        assert_eq!(Gender::parse("f"), Some(Gender::Female));
        assert_eq!(Gender::parse("X"), None);
        assert_eq!(Currency::parse("inr").unwrap().as_str(), "INR");
        assert!(Currency::parse("RUPEE").is_none());
    }
}
