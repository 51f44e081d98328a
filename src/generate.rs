//! Deterministic synthetic data in the layout of the public Kaggle `bank_transactions.csv`.
//!
//! The pipeline needs realistic input of any size without shipping (or downloading) the real
//! file, so this module synthesises rows with the same columns, formats and rough value
//! distributions: skewed city names, lognormal balances and amounts, `1/1/1800` placeholder
//! birth dates, missing fields, and repeat customers that keep their DOB, gender and location.
//!
//! Output is a pure function of [`GenerateOptions`]: a ChaCha8 stream seeded with `seed` drives
//! every choice, and nothing depends on the clock, the platform or hash-map order. That makes a
//! generated file a reproducible test fixture: the same options always give the same bytes.
//!
//! A share of rows (`defects`) carries exactly one injected defect, counted per kind in
//! [`GenerateStats`] so that validators can be checked against known numbers. The kinds are
//! listed in [`DEFECT_KINDS`]. Only fresh ids advance the `T{n}` counter: the distinct ids of a
//! file are exactly `first_id..first_id + rows - exact_duplicate - conflicting_duplicate -
//! missing_transaction_id`. Defects never break the record structure (quotes always close, every
//! record ends in LF, JSON stays valid), so one bad row cannot swallow the rows after it.

use std::collections::BTreeMap;
use std::io::{self, Write};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// CSV header line of the Kaggle file (without the trailing LF); its names are also the JSON keys.
pub const HEADER: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,\
CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)";

/// Every defect kind that [`generate`] can inject: the keys of [`GenerateStats::defects`].
///
/// What each looks like: `malformed_row` drops TransactionDate or TransactionTime or appends a
/// 10th field (`""` or `X`; in JSON an `"Extra"` key); `impossible_date` is `0/m/yy`, `32/m/yy`,
/// `d/13/yy` or `31/2/yy`; `impossible_time` has hour 24, minute or second 60–99, or is `999999`;
/// `bad_amount` is `1,000.50`-style (quoted in CSV), `1e3`-style, words, or empty (JSON `null`);
/// `negative_amount` negates a clean amount; the `missing_*` kinds empty an id; duplicates copy
/// one of the last 256 clean rows, `conflicting_duplicate` with the amount raised by 1–500 INR.
/// Duplicates need an earlier clean row: before the first one they fall back to
/// `negative_amount`.
pub const DEFECT_KINDS: [&str; 9] = [
    "malformed_row",
    "impossible_date",
    "impossible_time",
    "bad_amount",
    "negative_amount",
    "missing_customer_id",
    "missing_transaction_id",
    "exact_duplicate",
    "conflicting_duplicate",
];

/// Serialisation of the generated rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// RFC 4180 CSV with the Kaggle header and LF line ends.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// A single JSON array, one object per line.
    JsonArray,
}

/// What to generate; the output is a pure function of these values.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Data rows to write (header excluded); duplicates count as rows.
    pub rows: u64,
    /// Seed of the ChaCha8 stream behind every random choice.
    pub seed: u64,
    /// Share of rows (0.0..=1.0) that get exactly one injected defect.
    pub defects: f64,
    /// Serialisation of the rows.
    pub format: OutputFormat,
    /// Number of the first TransactionID (`T{n}`); ids are consecutive from here.
    pub first_id: u64,
    /// Restrict transaction dates to this (year, month);
    /// None = 1 Aug – 31 Oct 2016 like the Kaggle file.
    pub month: Option<(i32, u32)>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            rows: 1000,
            seed: 42,
            defects: 0.005,
            format: OutputFormat::Csv,
            first_id: 1,
            month: None,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerateStats {
    /// Data rows written (header excluded), always equal to `GenerateOptions::rows`.
    pub rows: u64,
    /// Injected defects by kind (names from [`DEFECT_KINDS`]); kinds that did not occur are absent.
    pub defects: BTreeMap<&'static str, u64>,
}

/// Share of rows whose customer is drawn from earlier customers: Kaggle has ~884k distinct
/// customers in 1,048,567 rows.
const REPEAT_SHARE: f64 = 0.157;
/// Customers remembered for repeats; bounded so memory does not grow with `rows`.
const POOL: usize = 1 << 15;
/// Recent clean rows kept as the source of duplicate defects.
const RING: usize = 256;
/// Output is handed to the writer in chunks of about this size.
const CHUNK: usize = 1 << 16;
const NO_LOC: u32 = u32::MAX;

/// Head of the location distribution as `NAME=weight` per million rows, roughly as in Kaggle.
const CITIES: &str = "MUMBAI=99000;NEW DELHI=81000;BANGALORE=78000;GURGAON=70000;DELHI=68000;\
NOIDA=31000;CHENNAI=28500;PUNE=24000;HYDERABAD=21800;THANE=20500;KOLKATA=19600;AHMEDABAD=15000;\
NAVI MUMBAI=13000;CHANDIGARH=11000;JAIPUR=10500;GHAZIABAD=9000;FARIDABAD=8500;\
LUCKNOW=8000;MOHALI=6000;INDORE=5500;SURAT=5000;VADODARA=4800;LUDHIANA=4600;NAGPUR=4400;\
GREATER NOIDA=4000;COIMBATORE=3800;BHOPAL=3500;DEHRADUN=3300;KOCHI=3200;PATNA=3000;\
VISAKHAPATNAM=2800;JAMSHEDPUR=2600;GOA=2500;MYSORE=2300;NASHIK=2200;RANCHI=2100;\
AMRITSAR=2000;BHUBANESWAR=1900;KANPUR=1800;RAIPUR=1700;GUWAHATI=1600;\
NAVI MUMBAI, MAHARASHTRA=700;NEW DELHI, DELHI=400;BANGALORE, KARNATAKA=300;\
GURGAON, HARYANA=200";
/// Number of synthesised long-tail place names, sharing about 22% of rows Zipf-style.
const TAIL: u64 = 3000;
const SYLLABLES: [&str; 32] = [
    "RA", "MA", "KA", "NA", "PA", "LA", "SHI", "VA", "DA", "GA", "BHA", "CHA", "JA", "TA", "HA",
    "SA", "KO", "BI", "RU", "NE", "MO", "DHA", "THI", "PU", "GO", "LI", "YA", "SU", "VI", "TI",
    "KHE", "RE",
];
const SUFFIXES: [&str; 16] = [
    "PUR", "ABAD", "NAGAR", "GARH", "GANJ", "PALLI", "PET", "KOT", "WADI", "GAON", "ERI", "HALLI",
    "PURAM", "", "", "",
];
const STATES: [&str; 4] = ["MAHARASHTRA", "UTTAR PRADESH", "TAMIL NADU", "KARNATAKA"];
/// Relative transaction volume per hour of day: quiet nights, busy evenings.
const HOURS: [u64; 24] = [
    3, 2, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 7, 8, 9, 10, 10, 9, 7, 5,
];

#[derive(Clone, Copy)]
enum Dob {
    Missing,
    Placeholder,
    Date(u8, u8, u16),
}

#[derive(Clone, Copy)]
struct Customer {
    /// `0` when missing (a `missing_customer_id` defect).
    id: u32,
    dob: Dob,
    /// `0` when missing.
    gender: u8,
    /// Index into the location table, [`NO_LOC`] when missing.
    loc: u32,
}

#[derive(Clone, Copy, PartialEq)]
enum Amount {
    /// Written as a number (`25.0`, `-250.0`, `133.25`).
    Paise(i64),
    /// Written with thousands separators (`1,000.50`), a string in JSON.
    Grouped(u64),
    /// Literal text such as `1e3`, a string in JSON.
    Text(&'static str),
    /// Empty in CSV, `null` in JSON.
    Empty,
}

/// One record, with any defect already folded into its values, so that re-serialising a copy
/// gives byte-identical output (exact duplicates).
#[derive(Clone, Copy)]
struct Row {
    id: Option<u64>,
    cust: Customer,
    balance: Option<u64>,
    day: u8,
    month: u8,
    year: i32,
    time: u32,
    amount: Amount,
    /// Column to drop (`malformed_row`), or 9 for none.
    drop: u8,
    /// Extra trailing field (`malformed_row`).
    extra: Option<&'static str>,
    /// JSON only: bit `c` set means an empty column `c` is omitted rather than written as `""`.
    omit: u16,
}

/// What a rendered field is, for choosing how to write it.
enum Val {
    Str,
    Num,
    Null,
    Empty,
}

/// Writes `opts.rows` synthetic rows to `out` in `opts.format` and reports what was injected.
///
/// Output is buffered internally in 64 KiB chunks, so `out` need not be buffered. Fails with
/// `InvalidInput` if `defects` is outside `0.0..=1.0` or `month` is not a valid month.
pub fn generate(opts: &GenerateOptions, out: &mut dyn Write) -> io::Result<GenerateStats> {
    let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned());
    if !(0.0..=1.0).contains(&opts.defects) {
        return Err(invalid("defects must be within 0.0..=1.0"));
    }
    let (year, dates) = match opts.month {
        None => (2016, (8..=10u8).flat_map(|m| month_days(2016, m)).collect()),
        Some((y, m)) if (1..=12).contains(&m) => (y, month_days(y, m as u8).collect()),
        Some(_) => return Err(invalid("month must be within 1..=12")),
    };
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(opts.seed),
        id_key: mix(opts.seed ^ 0xC057_0AE5),
        locs: Vec::new(),
        loc_cum: Vec::new(),
        hour_cum: cumulative(HOURS.iter().copied()),
        dates,
        year,
        pool: Vec::new(),
        customers: 0,
        buf: Vec::with_capacity(CHUNK + 4096),
        scratch: Vec::new(),
        keys: HEADER.split(',').collect(),
    };
    g.build_locations();
    let mut ring: Vec<Row> = Vec::with_capacity(RING);
    let mut stats = GenerateStats::default();
    let mut next_id = opts.first_id;
    // Framing per format: (start, between rows, after each row, end).
    let (start, between, after, end): (&[u8], &[u8], &[u8], &[u8]) = match opts.format {
        OutputFormat::Csv => (HEADER.as_bytes(), b"", b"\n", b""),
        OutputFormat::Ndjson => (b"", b"", b"\n", b""),
        OutputFormat::JsonArray => (b"[", b",\n", b"", b"]\n"),
    };
    g.buf.extend_from_slice(start);
    if opts.format == OutputFormat::Csv {
        g.buf.push(b'\n');
    }
    for n in 0..opts.rows {
        let row = if opts.defects > 0.0 && g.rng.random_bool(opts.defects) {
            let mut kind = g.rng.random_range(0..DEFECT_KINDS.len() as u32) as usize;
            if kind >= 7 && ring.is_empty() {
                kind = 4; // nothing to duplicate yet
            }
            *stats.defects.entry(DEFECT_KINDS[kind]).or_insert(0) += 1;
            g.defective(kind, &ring, &mut next_id)
        } else {
            let row = g.fresh(Some(next_id));
            next_id += 1;
            if ring.len() < RING {
                ring.push(row);
            } else {
                ring[(n % RING as u64) as usize] = row;
            }
            row
        };
        if n > 0 {
            g.buf.extend_from_slice(between);
        }
        match opts.format {
            OutputFormat::Csv => g.csv(&row),
            _ => g.json(&row),
        }
        g.buf.extend_from_slice(after);
        if g.buf.len() >= CHUNK {
            out.write_all(&g.buf)?;
            g.buf.clear();
        }
    }
    g.buf.extend_from_slice(end);
    out.write_all(&g.buf)?;
    out.flush()?;
    stats.rows = opts.rows;
    Ok(stats)
}

struct Gen {
    rng: ChaCha8Rng,
    /// Key of the permutation that turns customer ordinals into unique 7-digit ids.
    id_key: u64,
    locs: Vec<String>,
    loc_cum: Vec<u64>,
    hour_cum: Vec<u64>,
    dates: Vec<(u8, u8)>,
    year: i32,
    pool: Vec<Customer>,
    customers: u64,
    /// Output not yet handed to the writer.
    buf: Vec<u8>,
    /// One rendered field.
    scratch: Vec<u8>,
    keys: Vec<&'static str>,
}

impl Gen {
    /// Location names and their cumulative weights: the fixed head, then a synthesised tail.
    /// The tail does not depend on the seed, so place names are stable across files.
    fn build_locations(&mut self) {
        let head: Vec<(&str, &str)> = CITIES
            .split(';')
            .filter_map(|c| c.split_once('='))
            .collect();
        self.locs = head.iter().map(|&(name, _)| name.to_owned()).collect();
        self.locs.extend((0..TAIL).map(place_name));
        let head = head
            .iter()
            .map(|&(_, w)| w.parse::<u64>().unwrap_or(0) * 1000);
        let tail = (0..TAIL).map(|i| 44_000_000 / (i + 20));
        self.loc_cum = cumulative(head.chain(tail));
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }

    /// Standard normal deviate (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.rng.random::<f64>();
        let u2 = self.rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn customer(&mut self) -> Customer {
        if !self.pool.is_empty() && self.chance(REPEAT_SHARE) {
            let i = self.rng.random_range(0..self.pool.len() as u64) as usize;
            return self.pool[i];
        }
        let id = customer_number(self.customers, self.id_key);
        let r = self.rng.random::<f64>();
        let dob = if r < 0.003 {
            Dob::Missing
        } else if r < 0.057 {
            Dob::Placeholder
        } else {
            let r = self.rng.random::<f64>();
            let year: u16 = if r < 0.03 {
                self.rng.random_range(1940..=1959)
            } else if r < 0.06 {
                self.rng.random_range(2000..=2010)
            } else if r < 0.35 {
                self.rng.random_range(1960..=2000)
            } else {
                self.rng.random_range(1980..=1996)
            };
            let month = self.rng.random_range(1..=12u8);
            let day = self.rng.random_range(1..=days_in(i32::from(year), month));
            Dob::Date(day, month, year)
        };
        let r = self.rng.random::<f64>();
        let gender = match r {
            _ if r < 0.001 => 0,
            _ if r < 0.001_01 => b'T',
            _ if r < 0.271 => b'F',
            _ => b'M',
        };
        let loc = if self.chance(0.0001) {
            NO_LOC
        } else {
            pick(&mut self.rng, &self.loc_cum) as u32
        };
        let c = Customer {
            id,
            dob,
            gender,
            loc,
        };
        if self.pool.len() < POOL {
            self.pool.push(c);
        } else {
            self.pool[(self.customers % POOL as u64) as usize] = c;
        }
        self.customers += 1;
        c
    }

    /// A clean row with the given id.
    fn fresh(&mut self, id: Option<u64>) -> Row {
        let cust = self.customer();
        let balance = if self.chance(0.002) {
            None
        } else if self.chance(0.003) {
            Some(0)
        } else {
            let b = (16_000f64.ln() + 1.9 * self.normal()).exp().min(1.2e8);
            Some((b * 100.0).round() as u64)
        };
        let (day, month) = self.dates[self.rng.random_range(0..self.dates.len() as u32) as usize];
        let hour = pick(&mut self.rng, &self.hour_cum) as u32;
        let time =
            hour * 10_000 + self.rng.random_range(0..60u32) * 100 + self.rng.random_range(0..60u32);
        let rupees = if self.chance(0.0002) {
            self.rng.random_range(100_000..=1_560_034) // the rare very large transfer
        } else {
            (460f64.ln() + 1.55 * self.normal()).exp().clamp(1.0, 1e6) as i64
        };
        let r = self.rng.random::<f64>();
        let paise = match r {
            _ if r < 0.04 => 50,
            _ if r < 0.06 => 25,
            _ if r < 0.14 => self.rng.random_range(1..100),
            _ => 0,
        };
        Row {
            id,
            cust,
            balance,
            day,
            month,
            year: self.year,
            time,
            amount: Amount::Paise(rupees * 100 + paise),
            drop: 9,
            extra: None,
            omit: self.rng.random::<u16>(),
        }
    }

    /// A row carrying defect `DEFECT_KINDS[kind]`; `ring` must be non-empty for kinds 7 and 8.
    fn defective(&mut self, kind: usize, ring: &[Row], next_id: &mut u64) -> Row {
        if kind >= 7 {
            let mut row = ring[self.rng.random_range(0..ring.len() as u32) as usize];
            if let (8, Amount::Paise(p)) = (kind, row.amount) {
                row.amount = Amount::Paise(p + self.rng.random_range(1..=500i64) * 100);
            }
            return row;
        }
        let mut row = if kind == 6 {
            self.fresh(None)
        } else {
            *next_id += 1;
            self.fresh(Some(*next_id - 1))
        };
        let variant = self.rng.random_range(0..4u32);
        let Amount::Paise(paise) = row.amount else {
            unreachable!("fresh rows have amounts")
        };
        match kind {
            0 => match variant {
                0 => row.drop = 6,
                1 => row.drop = 7,
                2 => row.extra = Some(""),
                _ => row.extra = Some("X"),
            },
            1 => {
                (row.day, row.month) = match variant {
                    0 => (0, row.month),
                    1 => (32, row.month),
                    2 => (row.day.min(28), 13),
                    _ => (31, 2),
                }
            }
            2 => {
                let (h, m, s) = (row.time / 10_000, row.time / 100 % 100, row.time % 100);
                row.time = match variant {
                    0 => 240_000 + m * 100 + s,
                    1 => h * 10_000 + self.rng.random_range(60..100u32) * 100 + s,
                    2 => h * 10_000 + m * 100 + self.rng.random_range(60..100u32),
                    _ => 999_999,
                }
            }
            3 => {
                row.amount = match variant {
                    0 => Amount::Grouped(paise.max(100_000) as u64),
                    1 => Amount::Text(["1e3", "2.5e4", "4.6E2"][(paise % 3) as usize]),
                    2 => Amount::Text(["abc", "12O.50", "twelve"][(paise % 3) as usize]),
                    _ => Amount::Empty,
                }
            }
            4 => row.amount = Amount::Paise(-paise),
            5 => row.cust.id = 0,
            _ => {} // 6: missing_transaction_id, already without id
        }
        row
    }
}

impl Gen {
    fn csv(&mut self, row: &Row) {
        for col in (0..9u8).filter(|&c| c != row.drop) {
            render(row, col, &self.locs, &mut self.scratch);
            csv_field(&mut self.buf, &self.scratch);
            self.buf.push(b',');
        }
        self.buf.pop(); // the last separator
        if let Some(extra) = row.extra {
            self.buf.push(b',');
            csv_field(&mut self.buf, extra.as_bytes());
        }
    }

    fn json(&mut self, row: &Row) {
        self.buf.push(b'{');
        for col in (0..9u8).filter(|&c| c != row.drop) {
            let val = render(row, col, &self.locs, &mut self.scratch);
            if matches!(val, Val::Empty) && row.omit & (1 << col) != 0 {
                continue;
            }
            json_str(&mut self.buf, self.keys[col as usize].as_bytes());
            self.buf.push(b':');
            match val {
                Val::Str | Val::Empty => json_str(&mut self.buf, &self.scratch),
                Val::Num => self.buf.extend_from_slice(&self.scratch),
                Val::Null => self.buf.extend_from_slice(b"null"),
            }
            self.buf.push(b',');
        }
        if let Some(extra) = row.extra {
            self.buf.extend_from_slice(b"\"Extra\":");
            json_str(&mut self.buf, extra.as_bytes());
            self.buf.push(b',');
        }
        // Date and time are never both dropped, so this pops a separator, never the `{`.
        self.buf.pop();
        self.buf.push(b'}');
    }
}

/// Renders column `col` of `row` into `s` (cleared first) and says what kind of value it is.
fn render(row: &Row, col: u8, locs: &[String], s: &mut Vec<u8>) -> Val {
    s.clear();
    let c = &row.cust;
    match col {
        0 => match row.id {
            Some(id) => put_id(s, b'T', id),
            None => return Val::Empty,
        },
        1 if c.id == 0 => return Val::Empty,
        1 => put_id(s, b'C', u64::from(c.id)),
        2 => match c.dob {
            Dob::Missing => return Val::Empty,
            Dob::Placeholder => s.extend_from_slice(b"1/1/1800"),
            Dob::Date(d, m, y) => put_date(s, d, m, i32::from(y)),
        },
        3 if c.gender == 0 => return Val::Empty,
        3 => s.push(c.gender),
        4 if c.loc == NO_LOC => return Val::Empty,
        4 => s.extend_from_slice(locs[c.loc as usize].as_bytes()),
        5 => match row.balance {
            Some(b) => put_money(s, b as i64),
            None => return Val::Empty,
        },
        6 => put_date(s, row.day, row.month, row.year),
        7 => put_u64(s, u64::from(row.time)),
        _ => match row.amount {
            Amount::Paise(p) => {
                put_money(s, p);
                return Val::Num;
            }
            Amount::Grouped(p) => put_grouped(s, p),
            Amount::Text(t) => s.extend_from_slice(t.as_bytes()),
            Amount::Empty => return Val::Null,
        },
    }
    Val::Str
}

fn put_id(s: &mut Vec<u8>, prefix: u8, n: u64) {
    s.push(prefix);
    put_u64(s, n);
}

/// Writes a CSV field, quoted per RFC 4180 when it contains a delimiter, quote or line break.
fn csv_field(buf: &mut Vec<u8>, v: &[u8]) {
    if v.iter().any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        buf.push(b'"');
        for &b in v {
            if b == b'"' {
                buf.push(b'"');
            }
            buf.push(b);
        }
        buf.push(b'"');
    } else {
        buf.extend_from_slice(v);
    }
}

/// Writes `v` (UTF-8) as a JSON string literal.
fn json_str(buf: &mut Vec<u8>, v: &[u8]) {
    buf.push(b'"');
    for &b in v {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0..0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 15)]);
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

/// Decimal digits without allocation or `fmt` machinery (this is the hot path).
fn put_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// `d/m/yy` without leading zeros on day and month, like the Kaggle file.
fn put_date(buf: &mut Vec<u8>, d: u8, m: u8, year: i32) {
    put_u64(buf, u64::from(d));
    buf.push(b'/');
    put_u64(buf, u64::from(m));
    buf.push(b'/');
    let yy = year.rem_euclid(100) as u8;
    buf.extend_from_slice(&[b'0' + yy / 10, b'0' + yy % 10]);
}

/// Money the way a float's shortest repr prints it: `25.0`, `1762.5`, `133.25`.
fn put_money(buf: &mut Vec<u8>, paise: i64) {
    if paise < 0 {
        buf.push(b'-');
    }
    let p = paise.unsigned_abs();
    put_u64(buf, p / 100);
    let f = (p % 100) as u8;
    buf.extend_from_slice(&[b'.', b'0' + f / 10]);
    if !f.is_multiple_of(10) {
        buf.push(b'0' + f % 10);
    }
}

/// `1,234,567.50`: thousands separators and two decimals, the `bad_amount` spelling.
fn put_grouped(buf: &mut Vec<u8>, paise: u64) {
    fn thousands(buf: &mut Vec<u8>, n: u64) {
        if n < 1000 {
            return put_u64(buf, n);
        }
        thousands(buf, n / 1000);
        let r = n % 1000;
        buf.extend_from_slice(&[b',', b'0' + (r / 100) as u8, b'0' + (r / 10 % 10) as u8]);
        buf.push(b'0' + (r % 10) as u8);
    }
    thousands(buf, paise / 100);
    let f = (paise % 100) as u8;
    buf.extend_from_slice(&[b'.', b'0' + f / 10, b'0' + f % 10]);
}

fn month_days(year: i32, m: u8) -> impl Iterator<Item = (u8, u8)> {
    (1..=days_in(year, m)).map(move |d| (d, m))
}

fn days_in(year: i32, month: u8) -> u8 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Index drawn with probability proportional to its weight, given cumulative weights.
fn pick(rng: &mut ChaCha8Rng, cum: &[u64]) -> usize {
    let r = rng.random_range(0..cum[cum.len() - 1]);
    cum.partition_point(|&c| c <= r)
}

fn cumulative(weights: impl Iterator<Item = u64>) -> Vec<u64> {
    weights
        .scan(0, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect()
}

/// SplitMix64 finaliser: a fixed, platform-independent bit mixer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `ordinal`-th customer's 7-digit id. A keyed 24-bit Feistel permutation with cycle
/// walking maps ordinals one-to-one onto 1,000,000..=9,999,999, so new customers never collide
/// with earlier ones (until 9 million customers) and ids still look random.
fn customer_number(ordinal: u64, key: u64) -> u32 {
    const SPAN: u32 = 9_000_000;
    let mut x = (ordinal % u64::from(SPAN)) as u32;
    loop {
        let (mut l, mut r) = (x >> 12, x & 0xFFF);
        for round in 0..4u32 {
            let f = mix(u64::from(r) ^ key.rotate_left(round * 16) ^ u64::from(round)) as u32;
            (l, r) = (r, l ^ (f & 0xFFF));
        }
        x = (l << 12) | r;
        if x < SPAN {
            return 1_000_000 + x;
        }
    }
}

/// The `i`-th synthesised long-tail place name, built from syllables and a suffix; a few get a
/// second word and a few a `, STATE` part (which forces CSV quoting).
fn place_name(i: u64) -> String {
    let h = mix(i ^ 0x9E37_79B9_7F4A_7C15);
    let mut s = String::new();
    if h.is_multiple_of(25) {
        s.push_str("NEW ");
    }
    for k in 0..2 + (h >> 5 & 1) {
        s.push_str(SYLLABLES[(h >> (6 + 5 * k) & 31) as usize]);
    }
    s.push_str(SUFFIXES[(h >> 21 & 15) as usize]);
    if (h >> 25).is_multiple_of(16) {
        s.push_str([" NAGAR", " ROAD", " CITY", " CANTT"][(h >> 29 & 3) as usize]);
    }
    if (h >> 32).is_multiple_of(150) {
        s.push_str(", ");
        s.push_str(STATES[(h >> 40 & 3) as usize]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::{BTreeSet, HashMap};

    fn opts(rows: u64, defects: f64, format: OutputFormat) -> GenerateOptions {
        let mut o = GenerateOptions::default();
        (o.rows, o.defects, o.format) = (rows, defects, format);
        o
    }

    fn run(opts: &GenerateOptions) -> (String, GenerateStats) {
        let mut out = Vec::new();
        let stats = generate(opts, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), stats)
    }

    /// Data records of a CSV text (asserting the header), split per RFC 4180.
    fn records(text: &str) -> Vec<Vec<String>> {
        let mut lines = text.split_terminator('\n');
        assert_eq!(lines.next(), Some(HEADER));
        lines.map(fields).collect()
    }

    fn fields(line: &str) -> Vec<String> {
        let (mut out, mut quoted, mut chars) = (vec![String::new()], false, line.chars());
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (false, ',') => out.push(String::new()),
                (false, '"') => quoted = true,
                (true, '"') if chars.clone().next() == Some('"') => {
                    chars.next();
                    out.last_mut().unwrap().push('"');
                }
                (true, '"') => quoted = false,
                (_, c) => out.last_mut().unwrap().push(c),
            }
        }
        assert!(!quoted, "unterminated quote in {line}");
        out
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        for format in [
            OutputFormat::Csv,
            OutputFormat::Ndjson,
            OutputFormat::JsonArray,
        ] {
            let mut o = opts(3000, 0.1, format);
            let first = run(&o);
            assert_eq!(first, run(&o));
            o.seed = 43;
            assert_ne!(first.0, run(&o).0);
        }
    }

    #[test]
    fn csv_header_and_record_count() {
        for defects in [0.0, 0.2] {
            let (text, stats) = run(&opts(5000, defects, OutputFormat::Csv));
            assert!(text.ends_with('\n') && !text.contains('\r'));
            let recs = records(&text);
            assert_eq!((recs.len(), stats.rows), (5000, 5000));
            // Only malformed_row changes the field count; everything else stays 9 fields.
            let odd = recs.iter().filter(|r| r.len() != 9).count() as u64;
            assert_eq!(
                Some(&odd).filter(|&&n| n > 0),
                stats.defects.get("malformed_row")
            );
        }
        assert_eq!(
            run(&opts(0, 0.5, OutputFormat::Csv)).0,
            format!("{HEADER}\n")
        );
    }

    #[test]
    fn defect_rate_kinds_and_id_accounting() {
        let (text, stats) = run(&opts(20_000, 0.05, OutputFormat::Csv));
        let total: u64 = stats.defects.values().sum();
        assert!((850..=1150).contains(&total), "{total} defects");
        for kind in DEFECT_KINDS {
            assert!(
                stats.defects.get(kind).is_some_and(|&n| n > 50),
                "{kind}: {stats:?}"
            );
        }
        // Fresh ids are exactly first_id.. with no gaps; duplicates reuse earlier ids.
        let lines: Vec<&str> = text.lines().skip(1).collect();
        let ids: BTreeSet<u64> = (lines.iter())
            .filter_map(|l| l.split(',').next()?.strip_prefix('T')?.parse().ok())
            .collect();
        let reused = [
            "exact_duplicate",
            "conflicting_duplicate",
            "missing_transaction_id",
        ];
        let fresh = 20_000 - reused.iter().map(|k| stats.defects[k]).sum::<u64>();
        assert_eq!(ids, (1..=fresh).collect());
        let mut seen = BTreeSet::new();
        let repeats = lines.iter().filter(|l| !seen.insert(**l)).count() as u64;
        assert_eq!(repeats, stats.defects["exact_duplicate"]);
    }

    #[test]
    fn ndjson_lines_are_objects_with_header_keys() {
        let keys: BTreeSet<&str> = HEADER.split(',').chain(["Extra"]).collect();
        for defects in [0.0, 0.2] {
            let (text, _) = run(&opts(3000, defects, OutputFormat::Ndjson));
            assert_eq!(text.lines().count(), 3000);
            for line in text.lines() {
                let obj: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
                assert!(obj.keys().all(|k| keys.contains(k.as_str())), "{line}");
                for (k, v) in obj.iter().filter(|_| defects == 0.0) {
                    let amount = k == "TransactionAmount (INR)";
                    let ok = if amount {
                        v.as_f64().is_some_and(|a| a > 0.0)
                    } else {
                        v.is_string()
                    };
                    assert!(ok, "{line}");
                }
            }
        }
    }

    #[test]
    fn json_array_parses_and_strings_are_escaped() {
        let (text, _) = run(&opts(2500, 0.1, OutputFormat::JsonArray));
        let v: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&text).unwrap();
        assert_eq!(v.len(), 2500);
        assert_eq!(run(&opts(0, 0.0, OutputFormat::JsonArray)).0, "[]\n");
        let mut buf = Vec::new();
        json_str(&mut buf, "a\"b\\c\n\u{1}é".as_bytes());
        assert_eq!(String::from_utf8(buf).unwrap(), r#""a\"b\\c\n\u0001é""#);
    }

    #[test]
    fn clean_dates_and_times_are_valid() {
        for (month, yy, months) in [(Some((2020, 2)), "20", 2..=2), (None, "16", 8..=10)] {
            let mut o = opts(5000, 0.0, OutputFormat::Csv);
            o.month = month;
            let (mut days, mut hours) = (BTreeSet::new(), BTreeSet::new());
            for rec in records(&run(&o).0) {
                let parts: Vec<&str> = rec[6].split('/').collect();
                let (d, m): (u8, u8) = (parts[0].parse().unwrap(), parts[1].parse().unwrap());
                assert!(months.contains(&m) && parts[2] == yy, "{}", rec[6]);
                assert!(
                    d >= 1 && d <= days_in(month.map_or(2016, |(y, _)| y), m),
                    "{}",
                    rec[6]
                );
                assert!(!parts[0].starts_with('0') && !parts[1].starts_with('0'));
                let t = &rec[7];
                assert!(t == "0" || !t.starts_with('0'), "{t}");
                let t: u32 = t.parse().unwrap();
                assert!(t / 10_000 < 24 && t / 100 % 100 < 60 && t % 100 < 60, "{t}");
                days.insert((d, m));
                hours.insert(t / 10_000);
            }
            assert!(
                days.len() >= 29 && hours.len() == 24,
                "dates and times should spread"
            );
        }
    }

    #[test]
    fn value_shares_look_like_kaggle() {
        let recs = records(&run(&opts(20_000, 0.0, OutputFormat::Csv)).0);
        let share = |col: usize, v: &str| {
            recs.iter().filter(|r| r[col] == v).count() as f64 / recs.len() as f64
        };
        assert!((0.046..0.062).contains(&share(2, "1/1/1800")));
        assert!((0.70..0.76).contains(&share(3, "M")));
        assert!((0.08..0.12).contains(&share(4, "MUMBAI")));
        assert!(
            recs.iter().any(|r| r[4].contains(',')),
            "some quoted locations"
        );
        let places: BTreeSet<&str> = recs.iter().map(|r| r[4].as_str()).collect();
        assert!(places.len() > 1000, "{} places", places.len());
        let mut amounts: Vec<f64> = recs.iter().map(|r| r[8].parse().unwrap()).collect();
        amounts.sort_by(f64::total_cmp);
        assert!((350.0..600.0).contains(&amounts[amounts.len() / 2]));
        // Repeat customers keep DOB, gender and location; ~84% of ids are distinct.
        let mut by_id: HashMap<&str, &[String]> = HashMap::new();
        for r in &recs {
            assert!(r[1].len() == 8 && r[1].starts_with('C'), "{}", r[1]);
            assert_eq!(*by_id.entry(&r[1]).or_insert(&r[2..5]), &r[2..5]);
        }
        let distinct = by_id.len() as f64 / recs.len() as f64;
        assert!((0.80..0.88).contains(&distinct), "{distinct}");
    }

    #[test]
    fn invalid_options_are_rejected() {
        let mut bad = [
            GenerateOptions::default(),
            Default::default(),
            Default::default(),
        ];
        (bad[0].defects, bad[1].defects, bad[2].month) = (1.5, f64::NAN, Some((2016, 13)));
        for o in bad {
            let err = generate(&o, &mut Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }
}
