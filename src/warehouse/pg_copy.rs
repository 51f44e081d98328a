//! PostgreSQL binary `COPY` encoding, written into large buffers by hand.
//!
//! tokio-postgres' `BinaryCopyInWriter` goes through `ToSql` per value and is several
//! times slower than pre-encoded bytes (rust-postgres issue 1114); the format is small
//! and stable (PostgreSQL docs, "COPY — Binary Format"), so rows are encoded here.

use crate::model::{Amount, Date, DateTime, ParsedAmount};

/// Days from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// Starts a binary COPY stream.
pub fn header(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
}

/// Ends a binary COPY stream.
pub fn trailer(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

/// Starts a row of `fields` values.
pub fn row(out: &mut Vec<u8>, fields: i16) {
    out.extend_from_slice(&fields.to_be_bytes());
}

/// A NULL.
pub fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i32).to_be_bytes());
}

/// A `text` value. PostgreSQL text cannot hold a NUL character (the server refuses the
/// whole COPY: `22021`), so each NUL is written as U+FFFD, the same replacement the raw
/// text of a row that is not UTF-8 gets ([`no_nul`]). Rows holding one are rejected
/// before they are loaded (`invalid_encoding`): only their raw text and detail get here.
pub fn text(out: &mut Vec<u8>, s: &str) {
    let s = no_nul(s);
    out.extend_from_slice(&(s.len() as i32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// `s` with every NUL character replaced by U+FFFD: what a PostgreSQL `text` value (a
/// COPY field or a statement parameter) can hold.
pub fn no_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if memchr::memchr(0, s.as_bytes()).is_some() {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// An optional `text` value.
pub fn opt_text(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => text(out, s),
        None => null(out),
    }
}

/// A `bigint`.
pub fn int8(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&v.to_be_bytes());
}

/// An `integer`.
pub fn int4(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&4i32.to_be_bytes());
    out.extend_from_slice(&v.to_be_bytes());
}

/// A `date`.
pub fn date(out: &mut Vec<u8>, d: Date) {
    out.extend_from_slice(&4i32.to_be_bytes());
    out.extend_from_slice(&((d.days_since_epoch() - PG_EPOCH_DAYS) as i32).to_be_bytes());
}

/// An optional `date`.
pub fn opt_date(out: &mut Vec<u8>, d: Option<Date>) {
    match d {
        Some(d) => date(out, d),
        None => null(out),
    }
}

/// A `timestamp` (no zone).
pub fn timestamp(out: &mut Vec<u8>, t: DateTime) {
    let micros =
        ((t.date.days_since_epoch() - PG_EPOCH_DAYS) * 86_400 + i64::from(t.seconds)) * 1_000_000;
    int8(out, micros);
}

/// A `numeric` equal to the amount, with its scale as display scale.
pub fn numeric(out: &mut Vec<u8>, a: Amount) {
    let scale = u32::from(a.scale);
    let pad = (4 - scale % 4) % 4;
    let frac_groups = ((scale + pad) / 4) as i32;
    let mut abs = u128::from(a.minor.unsigned_abs()) * 10u128.pow(pad);
    let mut groups: Vec<i16> = Vec::with_capacity(8); // least significant first
    while abs > 0 {
        groups.push((abs % 10_000) as i16);
        abs /= 10_000;
    }
    let weight = groups.len() as i32 - frac_groups - 1;
    let first_nonzero = groups.iter().position(|g| *g != 0).unwrap_or(groups.len());
    let digits = &groups[first_nonzero..];
    let (weight, sign) = if digits.is_empty() {
        (0, 0u16)
    } else if a.minor < 0 {
        (weight, 0x4000)
    } else {
        (weight, 0)
    };
    out.extend_from_slice(&((8 + 2 * digits.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(a.scale as u16).to_be_bytes());
    for g in digits.iter().rev() {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

/// An optional `numeric`.
pub fn opt_numeric(out: &mut Vec<u8>, a: Option<Amount>) {
    match a {
        Some(a) => numeric(out, a),
        None => null(out),
    }
}

/// An optional `numeric` for a rejected row's amount, whatever its size.
pub fn opt_parsed_numeric(out: &mut Vec<u8>, a: Option<&ParsedAmount>) {
    match a {
        Some(ParsedAmount::Fits(a)) => numeric(out, *a),
        Some(huge @ ParsedAmount::Huge { scale, .. }) => numeric_text(out, &huge.to_text(), *scale),
        None => null(out),
    }
}

/// A `numeric` from canonical decimal text (`-123.40` at scale 2), of any length: only
/// for amounts beyond 64-bit minor units, which rows are never loaded with. A 64 KiB row
/// cap keeps it far inside `numeric`'s 131072 digits.
pub fn numeric_text(out: &mut Vec<u8>, text: &str, scale: u8) {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (int_part, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let int_part = int_part.trim_start_matches('0');
    // Base-10000 groups aligned on the decimal point.
    let lead = (4 - int_part.len() % 4) % 4;
    let trail = (4 - frac.len() % 4) % 4;
    let digits: Vec<u8> = std::iter::repeat_n(b'0', lead)
        .chain(int_part.bytes())
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', trail))
        .map(|b| b - b'0')
        .collect();
    let int_groups = (lead + int_part.len()) / 4;
    let mut groups: Vec<i16> = digits
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |g, d| g * 10 + i16::from(*d)))
        .collect();
    let mut weight = int_groups as i32 - 1;
    let leading_zeros = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading_zeros);
    weight -= leading_zeros as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let (weight, sign) = match (groups.is_empty(), negative) {
        (true, _) => (0, 0u16),
        (false, true) => (weight, 0x4000),
        (false, false) => (weight, 0),
    };
    out.extend_from_slice(&((8 + 2 * groups.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&u16::from(scale).to_be_bytes());
    for g in &groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_parts(minor: i64, scale: u8) -> (i16, i16, u16, u16, Vec<i16>) {
        let mut out = Vec::new();
        numeric(&mut out, Amount { minor, scale });
        let len = i32::from_be_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 4);
        let p = &out[4..];
        let r16 = |i: usize| i16::from_be_bytes([p[i], p[i + 1]]);
        let n = r16(0);
        let digits = (0..n as usize).map(|k| r16(8 + 2 * k)).collect();
        (n, r16(2), r16(4) as u16, r16(6) as u16, digits)
    }

    #[test]
    fn numerics_in_base_10000() {
        assert_eq!(numeric_parts(2500, 2), (1, 0, 0, 2, vec![25]));
        assert_eq!(numeric_parts(5, 2), (1, -1, 0, 2, vec![500]));
        assert_eq!(
            numeric_parts(1_781_905, 2),
            (3, 1, 0, 2, vec![1, 7819, 500])
        );
        assert_eq!(numeric_parts(-50, 2), (1, -1, 0x4000, 2, vec![5000]));
        assert_eq!(numeric_parts(0, 2), (0, 0, 0, 2, vec![]));
        assert_eq!(numeric_parts(10_000_000_000, 2), (1, 2, 0, 2, vec![1]));
        assert_eq!(numeric_parts(7, 0), (1, 0, 0, 0, vec![7]));
        assert_eq!(numeric_parts(123_456, 6), (2, -1, 0, 6, vec![1234, 5600]));
    }

    #[test]
    fn numerics_from_text_match_the_amount_encoding() {
        for (minor, scale) in [
            (2500i64, 2u8),
            (5, 2),
            (1_781_905, 2),
            (-50, 2),
            (0, 2),
            (10_000_000_000, 2),
            (7, 0),
            (123_456, 6),
            (i64::MAX, 2),
        ] {
            let a = Amount { minor, scale };
            let (mut by_amount, mut by_text) = (Vec::new(), Vec::new());
            numeric(&mut by_amount, a);
            numeric_text(&mut by_text, &a.to_text(), scale);
            assert_eq!(by_amount, by_text, "{a}");
        }
        let mut out = Vec::new();
        numeric_text(&mut out, "1234567890123456789012345678901234567890.00", 2);
        let p = &out[4..];
        let r16 = |i: usize| i16::from_be_bytes([p[i], p[i + 1]]);
        assert_eq!((r16(0), r16(2), r16(4), r16(6)), (10, 9, 0, 2));
        let groups: Vec<i16> = (0..10).map(|k| r16(8 + 2 * k)).collect();
        assert_eq!(
            groups,
            [1234, 5678, 9012, 3456, 7890, 1234, 5678, 9012, 3456, 7890]
        );
    }

    #[test]
    fn dates_and_timestamps_count_from_2000() {
        let mut out = Vec::new();
        date(&mut out, Date::new(2000, 1, 2).unwrap());
        assert_eq!(out, [0, 0, 0, 4, 0, 0, 0, 1]);
        out.clear();
        let t = DateTime::new(Date::new(2000, 1, 1).unwrap(), 0, 0, 1).unwrap();
        timestamp(&mut out, t);
        assert_eq!(&out[4..], 1_000_000i64.to_be_bytes());
    }
}
