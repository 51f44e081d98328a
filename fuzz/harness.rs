//! The bodies of bankpipe's fuzz targets, in one place shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`, nightly, libFuzzer) and the stable replay test
//! (`tests/fuzz_replay.rs`, part of `cargo test`). Plain Rust: no libFuzzer here.
//!
//! Each target takes arbitrary bytes and panics (an `assert!`) when a property fails;
//! a panic is a finding. What each one checks is said on it and in
//! `docs/RELIABILITY.md` ("Fuzzing").

use std::io::{self, Read};
use std::path::Path;

use bankpipe::config::Config;
use bankpipe::crypt::{self, DataKey, MasterKey, Opener, Sealed, Sealer};
use bankpipe::model::{
    Amount, AmountError, Currency, Date, DateTime, Gender, ISO_4217, MAX_SCALE, ParsedAmount, Total,
};
use bankpipe::profile::{
    self, DateFormat, DateTimeFormat, FIELD_COUNT, Field, NumericDate, Profile, TimeFormat,
    YearDigits, YearRule, builtin_specs,
};
use bankpipe::scan::{self, Batch, FileError};
use bankpipe::source::split::{Flaw, MAX_ROW_BYTES, Splitter};
use bankpipe::source::{Format, csv, json};
use bankpipe::validate::{Rule, Severity, Verdict, validate};

/// A target's body: arbitrary bytes in, a panic when a property fails.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("splitter", splitter),
    ("cells", cells),
    ("row_contract", row_contract),
    ("encrypted_reader", encrypted_reader),
    ("config", config),
];

// ---------------------------------------------------------------------------------
// 1. The record splitter
// ---------------------------------------------------------------------------------

/// One record as the splitter gave it: (line, bytes, flaw).
type Cut = (u64, Vec<u8>, Option<Flaw>);

/// Read sizes and chunk targets the splitter is run with besides its defaults.
const READ_SIZES: [usize; 8] = [1, 2, 3, 7, 64, 4096, 65_537, 300_000];
const TARGET_SIZES: [usize; 4] = [1, 10, 100, 1 << 20];

/// `source::split::Splitter` over arbitrary bytes (control bytes choose the format,
/// delimiter, field count, read size and chunk size). Checks:
/// - the records (line, bytes, flaw) and the outcome are the same at the default read
///   size and at a tiny one, whatever the chunk size: records crossing buffer ends at
///   every position change nothing;
/// - chunks are numbered in order, hold at most 16,384 records, whose spans lie in the
///   chunk and follow each other;
/// - CSV and NDJSON: every record is the text at the start of its line (at most 64 KiB
///   of it); an unflawed record ends at a line end or the end of the input, holds no
///   newline in NDJSON, and in CSV spans several lines only if it parses into the
///   expected number of fields; a flawed one is one line; every line no record covers
///   is blank (`""` or `"\r"`), so no byte of text is lost;
/// - JSON arrays: every record is found in order at its line, separated from the
///   previous one only by whitespace, commas and brackets; a file whose first
///   non-blank byte is not `[` is an error, and only such a file.
pub fn splitter(data: &[u8]) {
    let [format_byte, shape, sizes, input @ ..] = data else {
        return;
    };
    let format = match format_byte % 3 {
        0 => Format::Csv,
        1 => Format::Ndjson,
        _ => Format::JsonArray,
    };
    let delimiter = profile::DELIMITERS[usize::from(format_byte / 3 % 4)];
    let columns = (shape & 0x80 != 0).then_some(usize::from(shape & 0x1f) + 1);
    let read_size = READ_SIZES[usize::from(sizes % 8)];
    let target = TARGET_SIZES[usize::from(sizes / 8 % 4)];

    let reference = cut(input, format, delimiter, columns, None, 1 << 20);
    let other = cut(input, format, delimiter, columns, Some(read_size), target);
    assert_eq!(
        reference, other,
        "records differ at read size {read_size}, chunk target {target}"
    );
    let body = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let first = body.iter().find(|b| !b" \t\r\n".contains(b));
    let (records, error) = reference;
    if format == Format::JsonArray {
        assert_eq!(
            error.is_some(),
            first.is_some_and(|b| *b != b'['),
            "only a file that does not start with [ is refused: {error:?}"
        );
    } else {
        assert!(error.is_none(), "in-memory reads cannot fail: {error:?}");
    }
    match format {
        Format::Csv | Format::Ndjson => check_lines(body, format, delimiter, columns, &records),
        Format::JsonArray if error.is_none() => check_json_elements(body, &records),
        Format::JsonArray => assert!(records.is_empty(), "records before the refusal"),
    }
}

/// Every record of `input`, and the error that ended the stream if one did.
fn cut(
    input: &[u8],
    format: Format,
    delimiter: u8,
    columns: Option<usize>,
    read_size: Option<usize>,
    target: usize,
) -> (Vec<Cut>, Option<io::ErrorKind>) {
    let mut s = Splitter::new(input, format, target).with_delimiter(delimiter);
    if let Some(n) = read_size {
        s = s.with_read_size(n);
    }
    if let Some(c) = columns {
        s.expect_columns(c);
    }
    let mut out = Vec::new();
    let mut seq = 0;
    loop {
        match s.next_chunk() {
            Ok(Some(chunk)) => {
                assert_eq!(chunk.seq, seq, "chunks numbered in order");
                seq += 1;
                assert!(!chunk.records.is_empty(), "a chunk holds records");
                assert!(chunk.records.len() <= 16 * 1024, "{}", chunk.records.len());
                let mut end = 0;
                for r in &chunk.records {
                    assert!(r.start >= end && r.start <= r.end, "{r:?} after {end}");
                    assert!(r.end as usize <= chunk.data.len(), "{r:?}");
                    end = r.end;
                    out.push((r.line, chunk.bytes(r).to_vec(), r.flaw));
                }
            }
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e.kind())),
        }
    }
}

/// Whether a line (without its `\n`) is one the splitter skips.
fn blank_line(line: &[u8]) -> bool {
    line.is_empty() || line == b"\r"
}

fn check_lines(
    body: &[u8],
    format: Format,
    delimiter: u8,
    columns: Option<usize>,
    records: &[Cut],
) {
    // starts[k] is where line k + 1 starts.
    let mut starts = vec![0];
    starts.extend(memchr_all(b'\n', body).map(|i| i + 1));
    let line_end = |k: usize| starts.get(k + 1).map_or(body.len(), |s| s - 1);
    let lines = starts.len();
    let mut next = 1usize; // first line not yet covered by a record
    let mut unknown_until_next_record = false;
    for (line, bytes, flaw) in records {
        let l = usize::try_from(*line).expect("line fits usize");
        assert!(l >= next, "record at line {l} overlaps lines before {next}");
        assert!(l <= lines, "line {l} of {lines}");
        if !unknown_until_next_record {
            for k in next..l {
                let text = &body[starts[k - 1]..line_end(k - 1)];
                assert!(blank_line(text), "line {k} is in no record: {text:?}");
            }
        }
        unknown_until_next_record = false;
        let at = starts[l - 1];
        assert!(bytes.len() <= MAX_ROW_BYTES, "{} bytes", bytes.len());
        assert!(
            body[at..].starts_with(bytes),
            "record of line {l} is not the text there"
        );
        let newlines = memchr_all(b'\n', bytes).count();
        match flaw {
            None => {
                assert!(!bytes.is_empty(), "an empty record at line {l}");
                let rest = &body[at + bytes.len()..];
                assert!(
                    rest.is_empty()
                        || rest.starts_with(b"\n")
                        || rest.starts_with(b"\r\n")
                        || rest == b"\r",
                    "record of line {l} does not end at a line end: {:?}",
                    &rest[..rest.len().min(8)]
                );
                if format == Format::Ndjson {
                    assert_eq!(newlines, 0, "an NDJSON record spans lines");
                } else if newlines > 0 {
                    let n = csv::count_fields(bytes, delimiter);
                    assert!(n.is_ok(), "multi-line record at {l} does not parse: {n:?}");
                    if let Some(c) = columns {
                        assert_eq!(n, Ok(c), "multi-line record at {l}");
                    }
                }
                next = l + newlines + 1;
            }
            Some(Flaw::Malformed(why)) => {
                assert_eq!(newlines, 0, "a malformed record is one line");
                assert_eq!(
                    &bytes[..],
                    &body[at..line_end(l - 1)],
                    "malformed record ({why}) is not its whole line"
                );
                next = l + 1;
            }
            Some(Flaw::TooLong) => {
                // Cut to 64 KiB: the lines its tail held are not known from here.
                next = l + 1;
                unknown_until_next_record = true;
            }
        }
    }
    if !unknown_until_next_record {
        for k in next..=lines {
            let text = &body[starts[k - 1]..line_end(k - 1)];
            assert!(blank_line(text), "line {k} is in no record: {text:?}");
        }
    }
}

fn check_json_elements(body: &[u8], records: &[Cut]) {
    let gap = |b: &u8| b" \t\r\n,[]".contains(b);
    let line_at = |p: usize| 1 + memchr_all(b'\n', &body[..p]).count() as u64;
    let mut cursor = 0;
    let mut after_cut = false;
    for (line, bytes, flaw) in records {
        let found = (cursor..=body.len().saturating_sub(bytes.len())).find(|&p| {
            (after_cut || body[cursor..p].iter().all(gap))
                && body[p..].starts_with(bytes)
                && line_at(p) == *line
        });
        let Some(p) = found else {
            panic!("element of line {line} ({flaw:?}) is not where the input holds it");
        };
        if flaw.is_none() {
            assert!(!bytes.is_empty(), "an empty element at line {line}");
        }
        cursor = p + bytes.len();
        after_cut = *flaw == Some(Flaw::TooLong);
    }
    if !after_cut {
        assert!(
            body[cursor..].iter().all(gap),
            "text after the last element is in no record"
        );
    }
}

fn memchr_all(needle: u8, hay: &[u8]) -> impl Iterator<Item = usize> + '_ {
    hay.iter()
        .enumerate()
        .filter(move |(_, b)| **b == needle)
        .map(|(i, _)| i)
}

// ---------------------------------------------------------------------------------
// 2. Cells: CSV and JSON records, amounts, dates, times, codes
// ---------------------------------------------------------------------------------

/// The cell parsers, the first byte choosing which. Checks:
/// - CSV (`source::csv`): `count_fields` agrees with `split`; the cells of a record
///   that splits, written back quoted, split into the same cells;
/// - JSON (`source::json`): `parse` accepts exactly the objects `serde_json` does, with
///   the same keys, strings, nulls and nested values, and numbers as their exact source
///   text;
/// - amounts (`model::Amount`, `ParsedAmount`, `Total`): exactly what an independent
///   decimal reading of the text says (value, or which error), at any size, with the
///   canonical text round-tripping; sums of them equal an independent digit-by-digit
///   sum. No float anywhere: 30-digit amounts must come back digit for digit;
/// - dates and times (`profile::DateFormat`, `TimeFormat`, `DateTimeFormat`): the
///   numeric and ISO layouts accept exactly what an independent reading accepts, and
///   every date or timestamp any format returns is a valid one (`Date::new` accepts
///   it, year 1 to 9999, seconds within the day);
/// - gender and currency codes: only their documented spellings.
pub fn cells(data: &[u8]) {
    let [which, control, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 6 {
        0 => csv_cells(rest, &text, profile::DELIMITERS[usize::from(control % 4)]),
        1 => json_cells(&text),
        2 => amounts(&text, control % (MAX_SCALE + 1)),
        3 => dates(&text, *control),
        4 => times(&text, *control),
        _ => codes(&text),
    }
}

fn csv_cells(bytes: &[u8], text: &str, delimiter: u8) {
    let mut cells = Vec::new();
    let split = csv::split(text, delimiter, &mut cells).map(|()| cells.len());
    if let Ok(text_bytes) = std::str::from_utf8(bytes).map(str::as_bytes) {
        assert_eq!(csv::count_fields(text_bytes, delimiter), split, "{text:?}");
    } else {
        let _ = csv::count_fields(bytes, delimiter);
    }
    if split.is_err() {
        return;
    }
    let d = char::from(delimiter);
    let quoted: Vec<String> = cells
        .iter()
        .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
        .collect();
    let again_text = quoted.join(&d.to_string());
    let mut again = Vec::new();
    csv::split(&again_text, delimiter, &mut again).expect("quoted cells split");
    assert_eq!(again, cells, "quoted round trip of {text:?}");
}

fn json_cells(text: &str) {
    let ours = json::parse(text);
    let theirs = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text);
    let (cells, map) = match (&ours, &theirs) {
        (Ok(cells), Ok(map)) => (cells, map),
        (Err(_), Err(_)) => return,
        // serde_json's own values refuse numbers beyond an f64 (`1e400`), which
        // bankpipe keeps as their text: not a disagreement about the syntax.
        (Ok(_), Err(e)) if e.to_string().starts_with("number out of range") => return,
        _ => panic!("json::parse and serde_json disagree on {text:?}: {ours:?} / {theirs:?}"),
    };
    assert_eq!(cells.len(), map.len(), "keys of {text:?}");
    for (key, cell) in cells {
        let value = map.get(key).expect("same keys");
        match (cell, value) {
            (json::JsonCell::Null, serde_json::Value::Null) => {}
            (
                json::JsonCell::Nested,
                serde_json::Value::Array(_) | serde_json::Value::Object(_),
            ) => {}
            (json::JsonCell::Text(t), serde_json::Value::String(s)) => assert_eq!(t, s),
            (json::JsonCell::Text(t), serde_json::Value::Bool(b)) => assert_eq!(*t, b.to_string()),
            (json::JsonCell::Text(t), serde_json::Value::Number(_)) => {
                // The exact source text, which is a JSON number on its own.
                assert!(text.contains(t.as_str()), "{t:?} not in {text:?}");
                assert!(
                    t.parse::<serde_json::Number>().is_ok(),
                    "{t:?} is not a number"
                );
            }
            (cell, value) => panic!("{key:?}: {cell:?} but serde_json reads {value:?}"),
        }
    }
}

/// A decimal read independently of `model`: sign and minor-unit digits (no leading
/// zeros, `"0"` for zero, never `-0`), or the error `Amount::parse` documents.
fn reference_amount(text: &str, scale: u8) -> Result<(bool, String), AmountError> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(AmountError::NotPlainDecimal);
    }
    let frac = frac.unwrap_or("");
    let scale = usize::from(scale);
    if frac.bytes().skip(scale).any(|b| b != b'0') {
        return Err(AmountError::TooPrecise);
    }
    let kept = &frac[..frac.len().min(scale)];
    let mut minor = format!("{int}{kept}{}", "0".repeat(scale - kept.len()));
    let zeros = minor.bytes().take_while(|b| *b == b'0').count();
    minor.drain(..zeros.min(minor.len() - 1));
    let negative = negative && minor != "0";
    Ok((negative, minor))
}

/// The canonical text of minor-unit digits at `scale` (`-12.30`).
fn canonical(negative: bool, minor: &str, scale: u8) -> String {
    let scale = usize::from(scale);
    let padded = format!("{minor:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if negative { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// Whether minor-unit digits fit an `i64` in magnitude (what `Amount` holds).
fn fits_i64(minor: &str) -> bool {
    minor.len() < 19 || (minor.len() == 19 && minor <= "9223372036854775807")
}

fn amounts(text: &str, scale: u8) {
    let mut total = Total::default();
    let mut reference_total = (false, "0".to_owned());
    for piece in text.split('\n') {
        let expected = reference_amount(piece, scale);
        let parsed = ParsedAmount::parse(piece, scale);
        match (&parsed, &expected) {
            (Ok(p), Ok((negative, minor))) => {
                let text_form = canonical(*negative, minor, scale);
                assert_eq!(p.to_text(), text_form, "{piece:?} at scale {scale}");
                assert_eq!(p.is_negative(), *negative, "{piece:?}");
                match p {
                    ParsedAmount::Fits(a) => {
                        assert!(fits_i64(minor), "{piece:?}: {a:?}");
                        assert_eq!(a.scale, scale);
                        assert_eq!(Amount::parse(&text_form, scale), Ok(*a), "round trip");
                        assert_eq!(Amount::parse(piece, scale), Ok(*a));
                    }
                    ParsedAmount::Huge { scale: s, .. } => {
                        assert!(!fits_i64(minor), "{piece:?} fits an i64 but is Huge");
                        assert_eq!(*s, scale);
                        assert_eq!(Amount::parse(piece, scale), Err(AmountError::TooLarge));
                    }
                }
                assert_eq!(
                    ParsedAmount::parse(&text_form, scale).as_ref(),
                    Ok(p),
                    "canonical text of {piece:?} reads back"
                );
                total.add_parsed(p);
                reference_total = add_signed(&reference_total, &(*negative, minor.clone()));
            }
            (Err(e), Err(r)) => {
                assert_eq!(e, r, "{piece:?} at scale {scale}");
                assert_ne!(*e, AmountError::TooLarge, "ParsedAmount is never TooLarge");
            }
            _ => panic!("{piece:?} at scale {scale}: {parsed:?}, expected {expected:?}"),
        }
    }
    let (negative, minor) = &reference_total;
    assert_eq!(
        total.to_text(scale),
        canonical(*negative, minor, scale),
        "sum of {text:?}"
    );
    assert_eq!(
        Total::parse(&total.to_text(scale), scale),
        Some(total.clone())
    );
}

/// Adds two signed decimal integers given as (negative, digits), digit by digit.
fn add_signed(a: &(bool, String), b: &(bool, String)) -> (bool, String) {
    let digits = |s: &str| s.bytes().rev().map(|c| c - b'0').collect::<Vec<u8>>();
    let (x, y) = (digits(&a.1), digits(&b.1));
    let tidy = |mut v: Vec<u8>, negative: bool| {
        while v.len() > 1 && v.last() == Some(&0) {
            v.pop();
        }
        let s: String = v.iter().rev().map(|d| char::from(b'0' + d)).collect();
        let negative = negative && s != "0";
        (negative, s)
    };
    if a.0 == b.0 {
        let mut out = Vec::new();
        let mut carry = 0;
        for i in 0..x.len().max(y.len()) {
            let s = x.get(i).unwrap_or(&0) + y.get(i).unwrap_or(&0) + carry;
            out.push(s % 10);
            carry = s / 10;
        }
        out.push(carry);
        return tidy(out, a.0);
    }
    let x_bigger = (x.len(), x.iter().rev().collect::<Vec<_>>())
        >= (y.len(), y.iter().rev().collect::<Vec<_>>());
    let (big, small, negative) = if x_bigger { (x, y, a.0) } else { (y, x, b.0) };
    let mut out = Vec::new();
    let mut borrow = 0i8;
    for (i, d) in big.iter().enumerate() {
        let mut v = *d as i8 - *small.get(i).unwrap_or(&0) as i8 - borrow;
        borrow = i8::from(v < 0);
        if v < 0 {
            v += 10;
        }
        out.push(v as u8);
    }
    tidy(out, negative)
}

/// A date that `Date::new` itself would make: the type's invariant.
fn assert_valid_date(d: Date, what: &str) {
    assert_eq!(
        Date::new(d.year, d.month, d.day),
        Some(d),
        "{what} gave an invalid date"
    );
    assert_eq!(
        Date::from_days_since_epoch(d.days_since_epoch()),
        d,
        "{what}: day count round trip"
    );
}

fn assert_valid_timestamp(t: DateTime, what: &str) {
    assert_valid_date(t.date, what);
    assert!(t.seconds < 86_400, "{what}: {} seconds", t.seconds);
}

/// Patterns of the kind profiles give (`formats` in `bankpipe.toml`).
const PATTERNS: [&str; 6] = [
    "%d.%m.%Y",
    "%Y%m%d",
    "%d/%m/%y %H:%M",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%b %d %Y",
    "%s",
];

fn small(text: &str, max: usize) -> Option<u32> {
    (!text.is_empty() && text.len() <= max && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().expect("digits"))
}

/// `d/m/yy` and friends read independently.
fn reference_numeric(text: &str, f: NumericDate, years: YearRule) -> Option<Date> {
    let parts: Vec<&str> = text.split(char::from(f.separator)).collect();
    let [a, b, y] = parts[..] else {
        return None;
    };
    let (a, b) = (small(a, 2)?, small(b, 2)?);
    let (day, month) = if f.month_first { (b, a) } else { (a, b) };
    let year = match (y.len(), f.year) {
        (1 | 2, YearDigits::Two | YearDigits::Any) => {
            let yy = small(y, 2)? as i32;
            match years {
                YearRule::TwentyFirstCentury => 2000 + yy,
                YearRule::NotAfter(limit) if 2000 + yy <= limit => 2000 + yy,
                YearRule::NotAfter(_) => 1900 + yy,
            }
        }
        (4, YearDigits::Four | YearDigits::Any) => small(y, 4)? as i32,
        _ => return None,
    };
    Date::new(year, u8::try_from(month).ok()?, u8::try_from(day).ok()?)
}

/// `YYYY-MM-DD` read independently.
fn reference_iso(text: &str) -> Option<Date> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    Date::new(
        small(&text[0..4], 4)? as i32,
        u8::try_from(small(&text[5..7], 2)?).ok()?,
        u8::try_from(small(&text[8..10], 2)?).ok()?,
    )
}

fn dates(text: &str, control: u8) {
    let years = if control & 0x80 == 0 {
        YearRule::TwentyFirstCentury
    } else {
        YearRule::NotAfter(1900 + i32::from(control & 0x7f) * 2)
    };
    for month_first in [false, true] {
        for separator in [b'/', b'-', b'.'] {
            for year in [YearDigits::Two, YearDigits::Four, YearDigits::Any] {
                let f = NumericDate {
                    month_first,
                    separator,
                    year,
                };
                let got = DateFormat::Numeric(f).parse(text, years);
                assert_eq!(got, reference_numeric(text, f, years), "{f:?} {text:?}");
                if let Some(d) = got {
                    assert_valid_date(d, "a numeric date");
                }
            }
        }
    }
    let iso = DateFormat::Iso.parse(text, years);
    assert_eq!(iso, reference_iso(text), "ISO date {text:?}");
    if let Some(d) = iso {
        assert_valid_date(d, "an ISO date");
        assert_eq!(d.to_string(), text, "an ISO date is its own canonical text");
    }
    let pattern = PATTERNS[usize::from(control % 6)];
    if let Some(d) = DateFormat::Pattern(pattern.to_owned()).parse(text, years) {
        assert_valid_date(d, pattern);
    }
    // The text as a pattern of its own, as a profile could give it.
    let _ = DateFormat::Pattern(text.to_owned()).parse("2016-08-02", years);
    for f in [
        DateTimeFormat::Iso,
        DateTimeFormat::Pattern(pattern.to_owned()),
    ] {
        if let Some(t) = f.parse(text) {
            assert_valid_timestamp(t, &format!("{f:?} of {text:?}"));
        }
    }
}

fn times(text: &str, control: u8) {
    let integer = TimeFormat::IntegerHhmmss.parse(text);
    let reference = small(text, 6)
        .map(|v| (v / 10_000, v / 100 % 100, v % 100))
        .filter(|(h, m, s)| *h <= 23 && *m <= 59 && *s <= 59);
    assert_eq!(integer, reference, "hhmmss of {text:?}");
    let iso = TimeFormat::Iso.parse(text);
    let b = text.as_bytes();
    let reference = (b.len() == 8 && b[2] == b':' && b[5] == b':')
        .then(|| {
            Some((
                small(&text[0..2], 2)?,
                small(&text[3..5], 2)?,
                small(&text[6..8], 2)?,
            ))
        })
        .flatten()
        .filter(|(h, m, s)| *h <= 23 && *m <= 59 && *s <= 59);
    assert_eq!(iso, reference, "hh:mm:ss of {text:?}");
    let pattern = ["%H%M%S", "%I:%M %p", "%H:%M:%S%.f"][usize::from(control % 3)];
    if let Some((h, m, s)) = TimeFormat::Pattern(pattern.to_owned()).parse(text) {
        assert!(h <= 23 && m <= 59 && s <= 59, "{pattern} of {text:?}");
    }
    let _ = TimeFormat::Pattern(text.to_owned()).parse("10:11:12");
}

fn codes(text: &str) {
    match Gender::parse(text) {
        Some(g) => assert!(g.code().eq_ignore_ascii_case(text), "{text:?}"),
        None => assert!(!["M", "F", "T", "m", "f", "t"].contains(&text), "{text:?}"),
    }
    match Currency::parse(text) {
        Some(c) => {
            assert_eq!(text.len(), 3);
            assert!(text.bytes().all(|b| b.is_ascii_alphabetic()));
            assert_eq!(c.as_str(), text.to_ascii_uppercase());
            let listed = ISO_4217
                .iter()
                .any(|(code, _)| &code[..] == c.as_str().as_bytes());
            assert_eq!(c.iso4217().is_some(), listed, "{text:?}");
            assert!(!c.anagrams().contains(&c), "{text:?}");
        }
        None => assert!(
            text.len() != 3 || !text.bytes().all(|b| b.is_ascii_alphabetic()),
            "{text:?}"
        ),
    }
}

// ---------------------------------------------------------------------------------
// 3. The row contract
// ---------------------------------------------------------------------------------

const KAGGLE_HEADER: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,\
CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)\n";
const CANONICAL_HEADER: &str = "transaction_id,customer_id,customer_dob,gender,location,account_balance,transaction_at,amount,currency\n";
const CANONICAL_FIRST: &str = r#"{"transaction_id":"T0","customer_id":"C0","transaction_at":"2016-08-02T10:00:00","amount":"1.00","currency":"INR","customer_dob":"1990-01-01","gender":"F","location":"X","account_balance":"5"}"#;
const EURO_HEADER: &str = "Ref;Kunde;Datum;Zeit;Betrag;Waehrung;Geburt\n";

/// The built-in profiles and one declared as a `bankpipe.toml` would (day-first dotted
/// dates by strftime pattern, ISO times, a currency column, `;`).
fn row_profiles() -> Vec<Profile> {
    use bankpipe::profile::{ColumnSpec, FormatChoice, FormatSpec};
    let many = |names: &[&str]| FormatChoice::Many(names.iter().map(|n| (*n).to_owned()).collect());
    let mut euro = builtin_specs().remove(0);
    euro.name = "fuzz-euro".to_owned();
    euro.delimiter = Some(";".to_owned());
    euro.currency = None;
    euro.max_amount = "1000000.00".to_owned();
    euro.columns = ColumnSpec {
        transaction_id: "Ref".to_owned(),
        customer_id: "Kunde".to_owned(),
        customer_dob: Some("Geburt".to_owned()),
        transaction_date: Some("Datum".to_owned()),
        transaction_time: Some("Zeit".to_owned()),
        amount: "Betrag".to_owned(),
        currency: Some("Waehrung".to_owned()),
        ..ColumnSpec::default()
    };
    euro.formats = FormatSpec {
        transaction_date: Some(many(&["%d.%m.%Y", "iso"])),
        transaction_time: Some(FormatChoice::One("iso".to_owned())),
        customer_dob: Some(many(&["%d.%m.%Y", "d.m.yy"])),
        transaction_at: None,
    };
    std::iter::once(euro)
        .chain(builtin_specs())
        .map(|s| Profile::from_spec(&s).expect("fuzz profiles are valid"))
        .collect()
}

/// What one scan of a file gave, in a form two scans can be compared by.
#[derive(Debug, PartialEq)]
enum Scanned {
    /// The file failed as a whole.
    File(String),
    /// Per record, in file order: line and outcome.
    Rows(Vec<(u64, String)>),
}

/// A whole file through `scan::start` (header, profile detection, splitting, cells,
/// the contract), as `run` and `check` read one, on the built-in profiles and a declared
/// one. The first byte puts a real header before the fuzzed rows (Kaggle `,` or `;`,
/// canonical CSV, NDJSON, JSON array, the declared `;` profile) or takes the input as
/// the whole file. Checks:
/// - no panic, and no `internal error` (a worker thread that died);
/// - per batch: rows read = loaded + rejected; the amount read is exactly the sum of
///   the loaded amounts and the parseable rejected ones;
/// - every loaded row: ids present, amount at the profile's scale, not negative, at
///   most its maximum, and equal to an independent decimal reading of the row's own
///   amount cell; canonical load texts that read back to the same values; valid
///   dates (birth date not after the transaction, year of the transaction at least
///   1000);
/// - every rejection names a rejecting rule (never a warning rule, never
///   `conflicting_duplicate`, which only the warehouse decides) and a detail;
/// - lines increase through the file;
/// - the same file scanned twice gives the same rows, rejections and values.
pub fn row_contract(data: &[u8]) {
    let [mode, rest @ ..] = data else {
        return;
    };
    let (format, file) = match mode % 7 {
        0 => (Format::Csv, [KAGGLE_HEADER.as_bytes(), rest].concat()),
        1 => (
            Format::Csv,
            [KAGGLE_HEADER.replace(',', ";").as_bytes(), rest].concat(),
        ),
        2 => (Format::Csv, [CANONICAL_HEADER.as_bytes(), rest].concat()),
        3 => (
            Format::Ndjson,
            [CANONICAL_FIRST.as_bytes(), b"\n", rest].concat(),
        ),
        4 => (
            Format::JsonArray,
            [b"[", CANONICAL_FIRST.as_bytes(), b",\n", rest].concat(),
        ),
        5 => (Format::Csv, [EURO_HEADER.as_bytes(), rest].concat()),
        _ => match rest.split_first() {
            Some((f, file)) => (
                [Format::Csv, Format::Ndjson, Format::JsonArray][usize::from(f % 3)],
                file.to_vec(),
            ),
            None => return,
        },
    };
    let profiles = row_profiles();
    let first = scan_file(&file, format, &profiles);
    let second = scan_file(&file, format, &profiles);
    assert_eq!(first, second, "two scans of one file differ");
}

fn scan_file(file: &[u8], format: Format, profiles: &[Profile]) -> Scanned {
    let scanner = match scan::start(
        Box::new(io::Cursor::new(file.to_vec())),
        format,
        profiles,
        2,
        true,
    ) {
        Ok(s) => s,
        Err(e) => return Scanned::File(file_error(&e)),
    };
    let layout = std::sync::Arc::clone(&scanner.layout);
    let mut scanner = scanner;
    let mut rows = Vec::new();
    let mut seq = 0;
    while let Some(batch) = scanner.next_batch() {
        assert_eq!(batch.seq, seq, "batches in order");
        seq += 1;
        check_batch(&batch, &layout, &mut rows);
    }
    if let Err(e) = scanner.finish() {
        return Scanned::File(file_error(&e));
    }
    for pair in rows.windows(2) {
        let (a, b) = (pair[0].0, pair[1].0);
        if format == Format::JsonArray {
            assert!(a <= b, "lines go back: {a} then {b}");
        } else {
            assert!(a < b, "lines do not increase: {a} then {b}");
        }
    }
    Scanned::Rows(rows)
}

fn file_error(e: &FileError) -> String {
    assert!(!matches!(e, FileError::Internal(_)), "{e}");
    let text = e.to_string();
    assert!(!text.is_empty());
    text
}

fn check_batch(batch: &Batch, layout: &scan::Layout, out: &mut Vec<(u64, String)>) {
    let profile = &layout.profile;
    assert_eq!(
        batch.rows_read,
        (batch.rows.len() + batch.rejects.len()) as u64,
        "rows read = loaded + rejected"
    );
    let mut sum = Total::default();
    for row in &batch.rows {
        let t = &row.txn;
        assert!(!t.transaction_id.is_empty() && !t.customer_id.is_empty());
        assert_eq!(t.amount.scale, profile.scale);
        assert!(t.amount.minor >= 0, "negative amount loaded");
        assert!(
            t.amount.minor <= profile.max_amount.minor,
            "above the maximum"
        );
        assert_eq!(row.text.amount(), t.amount.to_text());
        assert_eq!(
            Amount::parse(row.text.amount(), profile.scale),
            Ok(t.amount)
        );
        assert_eq!(row.text.at(), t.transaction_at.to_string());
        assert_valid_timestamp(t.transaction_at, "a loaded transaction");
        assert!(t.transaction_at.date.year >= 1000, "{}", t.transaction_at);
        if let Some(dob) = t.customer_dob {
            assert_valid_date(dob, "a loaded birth date");
            assert!(dob <= t.transaction_at.date, "born after the transaction");
            assert_eq!(row.text.dob(), Some(dob.to_string().as_str()));
        }
        if let Some(b) = t.account_balance {
            assert_eq!(b.scale, profile.scale);
            assert_eq!(row.text.balance(), Some(b.to_text().as_str()));
        }
        let raw = batch.raw(row.span);
        assert_eq!(
            amount_cell(raw, layout).map(|c| reference_amount(c.trim_ascii(), profile.scale)),
            Some(Ok((false, t.amount.minor.to_string()))),
            "the loaded amount is not the row's amount cell: {:?}",
            String::from_utf8_lossy(raw)
        );
        sum.add(t.amount);
        out.push((row.line, format!("{t:?} {:?}", row.warnings)));
    }
    for r in &batch.rejects {
        let rule = r.rejection.rule;
        assert_eq!(rule.severity(), Severity::Reject, "{rule:?} rejects a row");
        assert_ne!(rule, Rule::ConflictingDuplicate);
        assert!(!r.rejection.detail.is_empty(), "{rule:?} without a detail");
        assert!(r.span.0 <= r.span.1 && r.span.1 as usize <= batch.data.len());
        if let Some(a) = &r.rejection.amount {
            sum.add_parsed(a);
        }
        out.push((r.line, format!("{:?}", r.rejection)));
    }
    assert_eq!(
        sum, batch.amount_read,
        "amount read = loaded + rejected amounts"
    );
    out.sort_by_key(|(line, _)| *line);
}

/// The text of a row's amount cell, read again from its raw bytes.
fn amount_cell(raw: &[u8], layout: &scan::Layout) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    match layout.format {
        Format::Csv => {
            let mut cells = Vec::new();
            csv::split(text, layout.delimiter, &mut cells).ok()?;
            let column = layout.binding.column_of[Field::Amount.slot()]?;
            Some(cells.get(column)?.to_string())
        }
        Format::Ndjson | Format::JsonArray => {
            let name = layout.profile.columns[Field::Amount.slot()].as_ref()?;
            let values: Vec<String> = json::parse(text)
                .ok()?
                .into_iter()
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .filter_map(|(_, v)| match v {
                    json::JsonCell::Text(t) => Some(t),
                    _ => None,
                })
                .collect();
            let values: Vec<String> = values
                .into_iter()
                .filter(|v| !layout.profile.is_null(v.trim_ascii()))
                .collect();
            let first = values.first()?;
            assert!(
                values.iter().all(|v| v == first),
                "{} keys name the amount field ({name:?}) with different values in {text:?}: \
                 which one is loaded depends on hash order",
                values.len()
            );
            Some(first.clone())
        }
    }
}

// ---------------------------------------------------------------------------------
// 4. The encrypted-object reader
// ---------------------------------------------------------------------------------

/// The fuzz targets' master key: a test key, not a secret (it protects nothing).
pub const TEST_MASTER_KEY: [u8; 32] = *b"bankpipe fuzz key: not a secret!";
/// The object the test data key belongs to.
pub const TEST_OBJECT: &str = "fuzz-object";
/// A data key made and wrapped under [`TEST_MASTER_KEY`] by bankpipe's own writer
/// (`MasterKey::new_data_key`, for [`TEST_OBJECT`]), once: `tests/fuzz_replay.rs`'s
/// ignored `make_test_data_key` prints a new one.
pub const TEST_WRAPPED_KEY: &str =
    "XmI68yOkkNd5GiwIueh9iu7IHtoxNhkll4JyMjzOEVANYScmf1TU8+VqrsdtN/M6XA85MMxyHCz5p0sp";

/// The data key of the seeds and of every structured input.
pub fn test_data_key() -> DataKey {
    let master = MasterKey::from_bytes(&TEST_MASTER_KEY, "the fuzz test key").expect("32 bytes");
    let sealed = Sealed {
        key_id: master.id().to_owned(),
        wrapped: TEST_WRAPPED_KEY.to_owned(),
    };
    master
        .unwrap(&sealed, TEST_OBJECT)
        .expect("the test data key opens")
}

/// The stored bytes of `plain` as the lake writes them (`crypt::Sealer`), fed in
/// pieces of `piece` bytes.
pub fn seal(key: &DataKey, plain: &[u8], piece: usize) -> Vec<u8> {
    let mut s = Sealer::new(key, plain.len() as u64);
    let mut out = Vec::new();
    for part in plain.chunks(piece.max(1)) {
        s.update(part, &mut out);
    }
    s.finish(&mut out);
    out
}

/// The plaintext an `Opener` gives for `stored`, read in pieces, and how it ended.
fn open(key: &DataKey, stored: &[u8], with_len: bool) -> (Vec<u8>, io::Result<()>) {
    let len = with_len.then_some(stored.len() as u64);
    let mut opener = Opener::new(stored, key, TEST_OBJECT, len);
    let mut out = Vec::new();
    let mut piece = [0u8; 8192];
    loop {
        match opener.read(&mut piece) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&piece[..n]),
            Err(e) => return (out, Err(e)),
        }
    }
}

/// `crypt::Opener` (what `lake::open_read` and `verify` decrypt through). The first
/// byte chooses: arbitrary bytes as a stored object (with or without its stored
/// length), or a real object sealed by `crypt::Sealer` from fuzzed plaintext (up to
/// three chunks) and then edited by fuzzed operations (flip, cut, insert, drop,
/// swap, rewrite the header's length). Checks:
/// - bytes open completely only if they are exactly what the writer makes of the
///   plaintext they give (sealing is deterministic for a data key, so this is
///   checkable): any edit of a real object is refused, and a real object opens to its
///   plaintext;
/// - before a failure, only whole chunks are returned, and only chunks the writer made
///   (compared with the writer's output for that plaintext and the header's length):
///   never garbage, never a forged chunk;
/// - every failure is `InvalidData` naming the object as corrupt; never a panic.
///
/// Allocation is bounded by the format (one chunk, 64 KiB, at a time whatever the
/// header claims), which the fuzz runs check with `-malloc_limit_mb`.
pub fn encrypted_reader(data: &[u8]) {
    let [mode, rest @ ..] = data else {
        return;
    };
    let key = test_data_key();
    if mode % 2 == 0 {
        let with_len = mode & 2 != 0;
        let (plain, outcome) = open(&key, rest, with_len);
        check_opened(&key, rest, &plain, &outcome);
        return;
    }
    // A real object, then edits.
    let [len_hi, len_lo, fill, piece, ops @ ..] = rest else {
        return;
    };
    let len = (usize::from(*len_hi) << 8 | usize::from(*len_lo)) * 3 % (3 * crypt::CHUNK + 7);
    let plain: Vec<u8> = (0..len)
        .map(|i| fill.wrapping_add((i * 31 % 251) as u8))
        .collect();
    let original = seal(&key, &plain, usize::from(*piece) * 509 + 1);
    let mut stored = original.clone();
    for op in ops.chunks(4) {
        edit(&mut stored, op);
    }
    let with_len = mode & 2 != 0;
    let (opened, outcome) = open(&key, &stored, with_len);
    check_opened(&key, &stored, &opened, &outcome);
    if stored == original {
        assert!(outcome.is_ok(), "a real object does not open: {outcome:?}");
        assert_eq!(opened, plain, "a real object opens to other bytes");
    } else {
        assert!(outcome.is_err(), "an edited object opened");
        assert!(
            plain.starts_with(&opened),
            "returned bytes not of the plaintext"
        );
    }
}

/// One edit of a stored object, from four fuzzed bytes.
fn edit(stored: &mut Vec<u8>, op: &[u8]) {
    let [kind, a, b, c] = *op else {
        return;
    };
    if stored.is_empty() {
        stored.push(a);
        return;
    }
    let at = (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)) % stored.len();
    match kind % 6 {
        0 => stored[at] ^= 1 << (c % 8),
        1 => stored.truncate(at),
        2 => stored.insert(at, b),
        3 => {
            stored.remove(at);
        }
        4 => {
            // Swap two runs of a chunk's size: reordered chunks.
            let stride = 8 + crypt::CHUNK + 16;
            let first = crypt::HEADER_LEN + usize::from(b % 3) * stride;
            let second = first + stride;
            if second + stride <= stored.len() {
                let (x, y) = stored.split_at_mut(second);
                x[first..first + stride].swap_with_slice(&mut y[..stride]);
            }
        }
        _ => {
            // Rewrite the header's plaintext length.
            if stored.len() >= 20 {
                let len = u64::from_be_bytes(stored[12..20].try_into().expect("8 bytes"));
                let new = match b % 4 {
                    0 => len.wrapping_add(u64::from(c)),
                    1 => len.wrapping_sub(u64::from(c)),
                    2 => u64::MAX - u64::from(c),
                    _ => u64::from(a) << 16 | u64::from(c),
                };
                stored[12..20].copy_from_slice(&new.to_be_bytes());
            }
        }
    }
}

fn check_opened(key: &DataKey, stored: &[u8], plain: &[u8], outcome: &io::Result<()>) {
    match outcome {
        Ok(()) => assert!(
            seal(key, plain, crypt::CHUNK) == stored,
            "bytes the writer did not make opened ({} bytes of plaintext)",
            plain.len()
        ),
        Err(e) => {
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("lake object {TEST_OBJECT} is corrupt: ")),
                "{text}"
            );
            if plain.is_empty() {
                return;
            }
            // Whole chunks only (or all of it, when what follows is wrong), each the
            // writer's own for this header.
            let declared = u64::from_be_bytes(stored[12..20].try_into().expect("a header"));
            let whole = plain.len() as u64 == declared;
            assert!(
                whole || plain.len().is_multiple_of(crypt::CHUNK),
                "part of a chunk returned"
            );
            let mut sealer = Sealer::new(key, declared);
            let mut out = Vec::new();
            sealer.update(plain, &mut out);
            if whole {
                sealer.finish(&mut out);
            } else {
                sealer.update(&[0], &mut out); // seals the last whole chunk
            }
            assert!(
                stored.starts_with(&out),
                "returned chunks are not the writer's"
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// 5. The config parser
// ---------------------------------------------------------------------------------

/// `bankpipe.toml` text through `Config::from_text` (the parser, relative paths,
/// every check of `Config::resolve`: profiles, sizes, ages, workers, the schedule's
/// cron expressions and time zone, the listen address). Checks:
/// - a typed `ConfigError` with a message, or a `Config` whose values are within their
///   documented ranges; never a panic;
/// - every profile of an accepted config is usable: a header of its own column names
///   binds a profile, and rows through it (valid and broken ones) get a verdict.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let config =
        match Config::from_text(&text, Path::new("/nonexistent-bankpipe-fuzz/bankpipe.toml")) {
            Ok(c) => c,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return;
            }
        };
    assert!((0.0..=1.0).contains(&config.max_reject_share));
    assert!(config.max_decompressed_bytes > 0);
    assert!((1..=256).contains(&config.workers));
    assert!((1..=64).contains(&config.parallel));
    assert!(
        config.profiles.len() >= 2,
        "the built-in profiles are always there"
    );
    for p in &config.profiles {
        assert!(p.scale <= MAX_SCALE, "{}: scale {}", p.name, p.scale);
        assert!(p.max_amount.minor >= 0 && p.max_amount.scale == p.scale);
        let header: Vec<String> = p.columns.iter().flatten().cloned().collect();
        assert!(
            profile::detect(&config.profiles, &header, None).is_ok(),
            "profile {} does not bind a header of its own columns {header:?}",
            p.name
        );
        for row in SAMPLE_ROWS {
            let mut cells = [None; FIELD_COUNT];
            for (slot, value) in row.iter().enumerate() {
                cells[slot] = *value;
            }
            match validate(p, &[true; FIELD_COUNT], &cells) {
                Verdict::Valid(t, _, _) => {
                    assert_valid_timestamp(t.transaction_at, &p.name);
                    assert!(t.amount.minor >= 0 && t.amount.minor <= p.max_amount.minor);
                }
                Verdict::Rejected(r) => assert_eq!(r.rule.severity(), Severity::Reject),
            }
        }
    }
}

/// Rows in field-slot order (`Field::ALL`), valid under one profile or another, or not.
const SAMPLE_ROWS: [[Option<&str>; FIELD_COUNT]; 3] = [
    [
        Some("T1"),
        Some("C1"),
        Some("1/1/1800"),
        Some("M"),
        Some("PUNE"),
        Some("17819.05"),
        Some("2/8/16"),
        Some("143207"),
        Some("2016-08-02T14:32:07"),
        Some("25"),
        Some("INR"),
    ],
    [
        Some("T2"),
        Some("C2"),
        Some("1990-01-01"),
        Some("f"),
        None,
        Some("x"),
        Some("2016-08-02"),
        Some("10:00:00"),
        Some("0001-01-01T00:00:00+01:00"),
        Some("99999999999999999999999.999"),
        Some("JPY"),
    ],
    [
        Some("T3"),
        Some("C3"),
        Some("31.12.1899"),
        None,
        Some("  "),
        None,
        Some("29.02.2016"),
        Some("235959"),
        Some("9999-12-31T23:59:59-01:00"),
        Some("0.000001"),
        Some("KWD"),
    ],
];
