//! Reads one file into ordered batches of validated rows, using every core.
//!
//! One reader thread decompresses and splits the stream into chunks of whole records
//! (`source::split`); worker threads parse and validate chunks independently; the
//! consumer (a warehouse load, or `check`) receives the resulting [`Batch`]es strictly in
//! file order, which matters because the first occurrence of a transaction id wins.
//! Channels are bounded, so memory does not grow with the file.
//!
//! Not here: duplicates against the warehouse (the warehouse decides) and landing.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::model::{Amount, Total, Transaction};
use crate::profile::{self, Binding, DetectError, FIELD_COUNT, Field, Profile};
use crate::source::split::{Chunk, Flaw, Splitter};
use crate::source::{Format, csv, json};
use crate::validate::{FormatCounts, Rejection, Rule, Verdict, Warnings, validate};

/// Target size of a chunk handed to a worker.
const CHUNK_BYTES: usize = 512 * 1024;

/// Why a whole file cannot be read (nothing of it is loaded).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// No records at all.
    #[error("file is empty")]
    Empty,
    /// A header but no data rows.
    #[error("file has a header but no data rows")]
    NoRows,
    /// The header record cannot be read.
    #[error("header unreadable: {0}")]
    BadHeader(String),
    /// No profile fits the header.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// Reading or decompressing failed part-way.
    #[error("reading failed: {0}")]
    Read(#[source] io::Error),
    /// A worker thread died (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// How the rows of a file map onto the contract.
#[derive(Debug)]
pub struct Layout {
    /// Record syntax.
    pub format: Format,
    /// The detected profile.
    pub profile: Profile,
    /// Where each field comes from.
    pub binding: Binding,
    /// Number of CSV columns (0 for JSON).
    pub columns: usize,
    /// CSV field separator (given by the profile or detected from the header).
    pub delimiter: u8,
    /// Per field slot, whether a CSV row may lack the field ("missing" warnings): the
    /// header's columns ([`Binding::mapped`]). A JSON record says it for itself: the
    /// profile's keys it holds, whatever their value.
    pub mapped: [bool; FIELD_COUNT],
    /// Whether workers keep full rows for loading ([`Batch::rows`]) or only digests
    /// ([`Batch::digests`]).
    pub prepare_load: bool,
}

/// The canonical text of a row's formatted columns, made on a worker thread so the
/// loader only binds slices.
#[derive(Debug, Default)]
pub struct LoadText {
    buf: String,
    dob: Option<(u16, u16)>,
    balance: Option<(u16, u16)>,
    at: (u16, u16),
    amount: (u16, u16),
}

impl LoadText {
    fn new(t: &Transaction) -> LoadText {
        let mut buf = String::with_capacity(64);
        let mark = |buf: &mut String, write: &dyn Fn(&mut String)| {
            let start = buf.len() as u16;
            write(buf);
            (start, buf.len() as u16)
        };
        let dob = t.customer_dob.map(|d| mark(&mut buf, &|b| d.write_to(b)));
        let balance = t
            .account_balance
            .map(|a| mark(&mut buf, &|b| a.write_to(b)));
        let at = mark(&mut buf, &|b| t.transaction_at.write_to(b));
        let amount = mark(&mut buf, &|b| t.amount.write_to(b));
        LoadText {
            buf,
            dob,
            balance,
            at,
            amount,
        }
    }

    fn slice(&self, r: (u16, u16)) -> &str {
        &self.buf[r.0 as usize..r.1 as usize]
    }

    /// `customer_dob` as `YYYY-MM-DD`.
    pub fn dob(&self) -> Option<&str> {
        self.dob.map(|r| self.slice(r))
    }

    /// `account_balance` as canonical decimal.
    pub fn balance(&self) -> Option<&str> {
        self.balance.map(|r| self.slice(r))
    }

    /// `transaction_at` as `YYYY-MM-DD HH:MM:SS`.
    pub fn at(&self) -> &str {
        self.slice(self.at)
    }

    /// `amount` as canonical decimal.
    pub fn amount(&self) -> &str {
        self.slice(self.amount)
    }
}

/// A row that passed validation.
#[derive(Debug)]
pub struct ValidRow {
    /// 1-based line in the file.
    pub line: u64,
    /// Span of the raw text in the batch's data.
    pub span: (u32, u32),
    /// The values to load.
    pub txn: Transaction,
    /// Attributes set to NULL.
    pub warnings: Warnings,
    /// Formatted columns.
    pub text: LoadText,
}

/// What `check` keeps of a valid row: enough to find duplicates and add up totals.
#[derive(Debug, Clone, Copy)]
pub struct RowDigest {
    /// Hash of the transaction id.
    pub id: u64,
    /// Hash of the rest of the loaded content.
    pub content: u64,
    /// The amount.
    pub amount: Amount,
    /// Attributes set to NULL.
    pub warnings: Warnings,
}

/// A fixed-seed, fast, well-mixed 64-bit hash: digests must be the same on every
/// thread and every run.
fn hash_of(value: &impl std::hash::Hash) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6261_6e6b_7069_7065).hash_one(value)
}

/// (hash of the transaction id, hash of everything else that is loaded).
pub fn row_digest(t: &Transaction) -> (u64, u64) {
    (
        hash_of(&t.transaction_id),
        hash_of(&(
            &t.customer_id,
            t.customer_dob,
            t.gender,
            &t.location,
            t.account_balance,
            t.transaction_at,
            t.amount,
            t.currency,
        )),
    )
}

/// A row that failed validation.
#[derive(Debug)]
pub struct RejectedRow {
    /// 1-based line in the file.
    pub line: u64,
    /// Span of the raw text in the batch's data.
    pub span: (u32, u32),
    /// What was wrong.
    pub rejection: Rejection,
}

/// The validated rows of one chunk, with its raw bytes.
#[derive(Debug, Default)]
pub struct Batch {
    /// Chunk sequence number.
    pub seq: u64,
    /// Raw bytes of the chunk.
    pub data: Vec<u8>,
    /// Valid rows in file order (when the scan prepares rows for loading).
    pub rows: Vec<ValidRow>,
    /// Digests of valid rows in file order (when it does not: `check`).
    pub digests: Vec<RowDigest>,
    /// Rejected rows in file order.
    pub rejects: Vec<RejectedRow>,
    /// Records read (valid + rejected).
    pub rows_read: u64,
    /// Sum of every amount that parsed, valid or not.
    pub amount_read: Total,
    /// Valid rows per matched date/time format.
    pub formats: FormatCounts,
}

impl Batch {
    /// Raw text of a row.
    pub fn raw(&self, span: (u32, u32)) -> &[u8] {
        &self.data[span.0 as usize..span.1 as usize]
    }
}

/// Ordered batches of one file, produced in the background.
#[derive(Debug)]
pub struct Scanner {
    /// What the file was detected as.
    pub layout: Arc<Layout>,
    results: Receiver<Batch>,
    pending: BTreeMap<u64, Batch>,
    next_seq: u64,
    reader: Option<JoinHandle<io::Result<()>>>,
    workers: Vec<JoinHandle<()>>,
}

/// Opens a decompressed stream: reads the header (or first JSON object), picks the
/// profile, and starts the reader and `workers` worker threads.
///
/// # Errors
/// [`FileError`] when the file is empty, its header is unreadable or matches no profile,
/// or reading fails before the first chunk.
pub fn start(
    input: Box<dyn Read + Send>,
    format: Format,
    profiles: &[Profile],
    workers: usize,
    prepare_load: bool,
) -> Result<Scanner, FileError> {
    let (input, delimiter) = match format {
        Format::Csv => {
            let (input, line) = peek_first_line(input).map_err(FileError::Read)?;
            let delimiter = pick_delimiter(profiles, &line);
            (input, delimiter)
        }
        Format::Ndjson | Format::JsonArray => (input, b','),
    };
    // A CSV header is cut alone (a one-byte target) so that its field count is known
    // to the splitter before any data record is cut: see `Splitter::expect_columns`.
    let first_target = if format == Format::Csv {
        1
    } else {
        CHUNK_BYTES
    };
    let mut splitter = Splitter::new(input, format, first_target).with_delimiter(delimiter);
    let mut first = splitter
        .next_chunk()
        .map_err(FileError::Read)?
        .ok_or(FileError::Empty)?;
    // Lines of only spaces and tabs are blank lines, before the header too.
    while let Some(r) = first.records.first()
        && r.flaw.is_none()
        && is_blank(first.bytes(r))
    {
        first.records.remove(0);
        if first.records.is_empty() {
            first = splitter
                .next_chunk()
                .map_err(FileError::Read)?
                .ok_or(FileError::Empty)?;
        }
    }
    let head = first.records[0];
    match head.flaw {
        Some(Flaw::TooLong) => {
            return Err(FileError::BadHeader(format!(
                "line {} is longer than 64 KiB",
                head.line
            )));
        }
        Some(Flaw::Malformed(why)) => {
            return Err(FileError::BadHeader(format!(
                "line {} is malformed: {why}",
                head.line
            )));
        }
        None => {}
    }
    let head_bytes = first.bytes(&head);
    let head_text = std::str::from_utf8(head_bytes)
        .map_err(|e| FileError::BadHeader(not_text(head_bytes, e.valid_up_to())))?;
    if let Some(at) = memchr::memchr(0, head_bytes) {
        return Err(FileError::BadHeader(not_text(head_bytes, at)));
    }
    let (names, columns) = match format {
        Format::Csv => {
            let mut cells = Vec::new();
            csv::split(head_text, delimiter, &mut cells)
                .map_err(|e| FileError::BadHeader(e.message().into()))?;
            let names: Vec<String> = cells.iter().map(|c| c.trim().to_owned()).collect();
            let n = names.len();
            (names, n)
        }
        Format::Ndjson | Format::JsonArray => {
            let keys = json::keys(head_text)
                .map_err(|e| FileError::BadHeader(format!("first element: {}", e.message())))?;
            if keys.iter().any(|k| k.contains('\0')) {
                return Err(FileError::BadHeader(
                    "first element: a key holds a NUL character (\\u0000)".into(),
                ));
            }
            (keys, 0)
        }
    };
    let binding = match profile::detect(
        profiles,
        &names,
        (format == Format::Csv).then_some(delimiter),
    ) {
        Ok(b) => b,
        Err(e) if format == Format::Csv => {
            return Err(FileError::Detect(
                wrong_delimiter(profiles, head_text).unwrap_or(e),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if format == Format::Csv {
        profile::check_duplicates(&profiles[binding.profile], &names, &binding)?;
    }
    splitter.set_target(CHUNK_BYTES);
    if format == Format::Csv {
        splitter.expect_columns(columns);
    }
    if format == Format::Csv {
        first.records.remove(0);
        if first.records.is_empty() {
            // The header may be alone in the first chunk of a larger file.
            match splitter.next_chunk().map_err(FileError::Read)? {
                None => return Err(FileError::NoRows),
                Some(mut second) => {
                    second.seq = 0;
                    first = second;
                }
            }
        }
    }
    let layout = Arc::new(Layout {
        format,
        profile: profiles[binding.profile].clone(),
        mapped: binding.mapped(),
        binding,
        columns,
        delimiter,
        prepare_load,
    });

    let workers = workers.max(1);
    let (work_tx, work_rx) = sync_channel::<Chunk>(workers * 2);
    let (result_tx, results) = sync_channel::<Batch>(workers * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let reader = std::thread::Builder::new()
        .name("bankpipe-read".into())
        .spawn(move || read_chunks(splitter, first, &work_tx))
        .map_err(|e| FileError::Internal(e.to_string()))?;
    let mut handles = Vec::with_capacity(workers);
    for n in 0..workers {
        let work_rx = Arc::clone(&work_rx);
        let result_tx = result_tx.clone();
        let layout = Arc::clone(&layout);
        let handle = std::thread::Builder::new()
            .name(format!("bankpipe-validate-{n}"))
            .spawn(move || validate_chunks(&work_rx, &result_tx, &layout))
            .map_err(|e| FileError::Internal(e.to_string()))?;
        handles.push(handle);
    }
    Ok(Scanner {
        layout,
        results,
        pending: BTreeMap::new(),
        next_seq: 0,
        reader: Some(reader),
        workers: handles,
    })
}

/// Why a header line is not text, at byte `at` (not UTF-8 there, or a NUL byte), and
/// what to do: the usual causes are a file saved as UTF-16 ("Unicode text" in
/// spreadsheets: a NUL after every ASCII letter) or in a legacy 8-bit encoding
/// (Latin-1, Windows-1252: `é` as the single byte 0xE9).
fn not_text(line: &[u8], at: usize) -> String {
    let utf16 = line.starts_with(b"\xFF\xFE")
        || line.starts_with(b"\xFE\xFF")
        || (line.len() >= 2 && (line[0] == 0 || line[1] == 0));
    let byte = line.get(at).copied().unwrap_or(0);
    if utf16 {
        format!(
            "not UTF-8: it looks like UTF-16 (byte 0x{byte:02X} at position {}); save the \
             file as UTF-8",
            at + 1
        )
    } else if byte == 0 {
        format!(
            "holds a NUL byte (0x00) at position {}: not a text header (a binary file?)",
            at + 1
        )
    } else {
        format!(
            "not valid UTF-8: byte 0x{byte:02X} at position {} (a Latin-1 or Windows-1252 \
             file?); save the file as UTF-8",
            at + 1
        )
    }
}

/// The longest first line read to choose a delimiter.
const PEEK_LIMIT: usize = crate::source::split::MAX_ROW_BYTES;

/// Reads the stream up to the end of its first non-blank line (at most 64 KiB) and
/// gives back a stream that replays those bytes, with that line's text (BOM and line
/// terminator removed; empty when there is none).
///
/// # Errors
/// Read or decompression errors.
fn peek_first_line(mut input: Box<dyn Read + Send>) -> io::Result<(Box<dyn Read + Send>, String)> {
    let mut head = Vec::with_capacity(8 * 1024);
    let mut piece = [0u8; 8 * 1024];
    let line = loop {
        let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head);
        let mut from = 0;
        let mut found = None;
        while let Some(nl) = memchr::memchr(b'\n', &text[from..]) {
            let line = &text[from..from + nl];
            if !is_blank(line) {
                found = Some(line);
                break;
            }
            from += nl + 1;
        }
        if let Some(line) = found {
            break line.to_vec();
        }
        let n = if head.len() >= PEEK_LIMIT {
            0
        } else {
            loop {
                match input.read(&mut piece) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    read => break read?,
                }
            }
        };
        if n == 0 {
            break text[from..].to_vec();
        }
        head.extend_from_slice(&piece[..n]);
    };
    let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(&line)).into_owned();
    Ok((Box::new(io::Cursor::new(head).chain(input)), line))
}

/// Whether a record holds only spaces and tabs (or nothing).
fn is_blank(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| *b == b' ' || *b == b'\t' || *b == b'\r')
}

/// The CSV delimiter of a file, from its header line: for each candidate (`,` `;` tab
/// `|`, in that order) the header is split and matched against the profiles that allow
/// that delimiter; the candidate whose best profile matches the most columns wins, ties
/// going to the earlier profile, then the earlier candidate. When no candidate fits
/// any profile, the one that splits the header into the most fields (for the error
/// message), `,` on ties.
fn pick_delimiter(profiles: &[Profile], header: &str) -> u8 {
    let mut best: Option<(usize, usize, u8)> = None; // (matched, profile, delimiter)
    let mut widest = (0, b',');
    let mut cells = Vec::new();
    for d in profile::DELIMITERS {
        if csv::split(header, d, &mut cells).is_err() {
            continue;
        }
        if cells.len() > widest.0 {
            widest = (cells.len(), d);
        }
        let names: Vec<String> = cells.iter().map(|c| c.trim().to_owned()).collect();
        if let Ok(b) = profile::detect(profiles, &names, Some(d)) {
            let better =
                best.is_none_or(|(m, p, _)| b.matched() > m || (b.matched() == m && b.profile < p));
            if better {
                best = Some((b.matched(), b.profile, d));
            }
        }
    }
    best.map_or(widest.1, |(_, _, d)| d)
}

/// When no profile fits a CSV header: the first profile that names a delimiter and
/// whose columns the header has when split at another one (a `;` profile meeting a
/// `,` file), as the error to report instead of missing columns.
fn wrong_delimiter(profiles: &[Profile], header: &str) -> Option<DetectError> {
    let mut cells = Vec::new();
    for p in profiles {
        let Some(expected) = p.delimiter else {
            continue;
        };
        let mut unbound = p.clone();
        unbound.delimiter = None;
        for found in profile::DELIMITERS {
            if found == expected || csv::split(header, found, &mut cells).is_err() {
                continue;
            }
            let names: Vec<String> = cells.iter().map(|c| c.trim().to_owned()).collect();
            if profile::detect(std::slice::from_ref(&unbound), &names, Some(found)).is_ok() {
                return Some(DetectError::WrongDelimiter {
                    profile: p.name.clone(),
                    expected,
                    found,
                });
            }
        }
    }
    None
}

fn read_chunks<R: Read>(
    mut splitter: Splitter<R>,
    first: Chunk,
    work: &SyncSender<Chunk>,
) -> io::Result<()> {
    let mut next = Some(first);
    let mut seq = 0;
    while let Some(mut chunk) = next {
        chunk.seq = seq;
        seq += 1;
        if work.send(chunk).is_err() {
            return Ok(()); // the consumer stopped early; it knows why
        }
        next = splitter.next_chunk()?;
    }
    Ok(())
}

fn validate_chunks(work: &Mutex<Receiver<Chunk>>, results: &SyncSender<Batch>, layout: &Layout) {
    loop {
        let chunk = {
            let Ok(rx) = work.lock() else { return };
            match rx.recv() {
                Ok(c) => c,
                Err(_) => return,
            }
        };
        if results.send(validate_chunk(chunk, layout)).is_err() {
            return;
        }
    }
}

/// Parses and validates every record of a chunk.
pub fn validate_chunk(chunk: Chunk, layout: &Layout) -> Batch {
    let mut batch = Batch {
        seq: chunk.seq,
        ..Batch::default()
    };
    if layout.prepare_load {
        batch.rows.reserve(chunk.records.len());
    } else {
        batch.digests.reserve(chunk.records.len());
    }
    let mut csv_cells: Vec<Cow<'_, str>> = Vec::with_capacity(layout.columns);
    // Rows of a file nearly always match the same formats: count runs, not rows.
    let (mut matched_last, mut matched_run) = (crate::validate::Matched::default(), 0u64);
    for record in &chunk.records {
        if record.flaw.is_none() && is_blank(chunk.bytes(record)) {
            continue; // a line of only spaces is a blank line, like an empty one
        }
        batch.rows_read += 1;
        let span = (record.start, record.end);
        let malformed = |rule: Rule, detail: String| RejectedRow {
            line: record.line,
            span,
            rejection: Rejection {
                rule,
                field: None,
                detail,
                amount: None,
            },
        };
        match record.flaw {
            Some(Flaw::TooLong) => {
                batch.rejects.push(malformed(
                    Rule::RowTooLong,
                    "row longer than 64 KiB (raw text truncated)".into(),
                ));
                continue;
            }
            Some(Flaw::Malformed(why)) => {
                batch
                    .rejects
                    .push(malformed(Rule::MalformedRow, why.into()));
                continue;
            }
            None => {}
        }
        let Ok(text) = std::str::from_utf8(chunk.bytes(record)) else {
            batch
                .rejects
                .push(malformed(Rule::InvalidEncoding, "not valid UTF-8".into()));
            continue;
        };
        // Valid UTF-8, but not text: PostgreSQL cannot store it, and SQLite's text
        // functions stop at it. (A JSON `\u0000` escape is checked per value below.)
        if let Some(at) = memchr::memchr(0, text.as_bytes()) {
            batch.rejects.push(malformed(
                Rule::InvalidEncoding,
                format!("holds a NUL byte (0x00) at position {}", at + 1),
            ));
            continue;
        }
        let verdict = match layout.format {
            Format::Csv => {
                if let Err(e) = csv::split(text, layout.delimiter, &mut csv_cells) {
                    batch
                        .rejects
                        .push(malformed(Rule::MalformedRow, e.message().into()));
                    continue;
                }
                if csv_cells.len() != layout.columns {
                    batch.rejects.push(malformed(
                        Rule::MalformedRow,
                        format!(
                            "expected {} fields, found {}",
                            layout.columns,
                            csv_cells.len()
                        ),
                    ));
                    continue;
                }
                let mut cells: [Option<&str>; FIELD_COUNT] = [None; FIELD_COUNT];
                for (slot, column) in layout.binding.column_of.iter().enumerate() {
                    if let Some(c) = column {
                        let v = trimmed(slot, &csv_cells[*c]);
                        if !layout.profile.is_null(v) {
                            cells[slot] = Some(v);
                        }
                    }
                }
                validate(&layout.profile, &layout.mapped, &cells)
            }
            Format::Ndjson | Format::JsonArray => match json::parse(text) {
                Err(e) => {
                    batch
                        .rejects
                        .push(malformed(Rule::MalformedRow, e.message()));
                    continue;
                }
                Ok(pairs) => {
                    // `json::parse` gives the keys in hash order, which changes from one
                    // process to the next: everything here is decided in field order
                    // instead, so a record always gets the same verdict and detail.
                    // Which key feeds each field; more than one is a guess (keys that
                    // differ only in case or surrounding spaces, `amount` and `Amount`:
                    // the loaded value once depended on hash order, found by fuzzing),
                    // refused like a CSV header naming a read column twice.
                    let mut source: [Option<&(String, json::JsonCell)>; FIELD_COUNT] =
                        [None; FIELD_COUNT];
                    let mut twice = None;
                    for pair in &pairs {
                        for field in Field::ALL {
                            let Some(name) = &layout.profile.columns[field.slot()] else {
                                continue;
                            };
                            if !pair.0.trim().eq_ignore_ascii_case(name) {
                                continue;
                            }
                            if source[field.slot()].is_some() {
                                twice = Some(twice.map_or(field, |t: Field| t.min(field)));
                            }
                            source[field.slot()] = Some(pair);
                        }
                    }
                    if let Some(field) = twice {
                        let name = layout.profile.columns[field.slot()].as_deref();
                        let mut keys: Vec<&str> = pairs
                            .iter()
                            .map(|(k, _)| k.as_str())
                            .filter(|k| name.is_some_and(|n| k.trim().eq_ignore_ascii_case(n)))
                            .collect();
                        keys.sort_unstable();
                        batch.rejects.push(malformed(
                            Rule::MalformedRow,
                            format!(
                                "keys {keys:?} all name field {} of profile {}: which one \
                                 holds it would be a guess",
                                field.name(),
                                layout.profile.name
                            ),
                        ));
                        continue;
                    }
                    // Only a key the profile uses must hold a scalar.
                    let nested = Field::ALL.into_iter().find_map(|f| match source[f.slot()] {
                        Some((key, json::JsonCell::Nested)) => Some(key),
                        _ => None,
                    });
                    if let Some(key) = nested {
                        batch.rejects.push(malformed(
                            Rule::MalformedRow,
                            format!("value of {key:?} is not a scalar"),
                        ));
                        continue;
                    }
                    let nul = Field::ALL.into_iter().find_map(|f| match source[f.slot()] {
                        Some((key, json::JsonCell::Text(v))) if v.contains('\0') => Some(key),
                        _ => None,
                    });
                    if let Some(key) = nul {
                        batch.rejects.push(malformed(
                            Rule::InvalidEncoding,
                            format!("value of {key:?} holds a NUL character (\\u0000)"),
                        ));
                        continue;
                    }
                    // Every field the profile maps is read from every record (not only
                    // the keys of the first one). An absent key is a field this record
                    // does not carry, like a column a CSV header lacks: NULL, no warning;
                    // a key holding null or an empty string is a missing value.
                    let mut cells: [Option<&str>; FIELD_COUNT] = [None; FIELD_COUNT];
                    let mut present = [false; FIELD_COUNT];
                    for field in Field::ALL {
                        let Some((_, value)) = source[field.slot()] else {
                            continue;
                        };
                        present[field.slot()] = true;
                        if let json::JsonCell::Text(v) = value {
                            let v = trimmed(field.slot(), v);
                            if !layout.profile.is_null(v) {
                                cells[field.slot()] = Some(v);
                            }
                        }
                    }
                    validate(&layout.profile, &present, &cells)
                }
            },
        };
        match verdict {
            Verdict::Valid(txn, warnings, matched) => {
                batch.amount_read.add(txn.amount);
                if matched != matched_last {
                    batch.formats.add_n(matched_last, matched_run);
                    (matched_last, matched_run) = (matched, 0);
                }
                matched_run += 1;
                if layout.prepare_load {
                    batch.rows.push(ValidRow {
                        line: record.line,
                        span,
                        text: LoadText::new(&txn),
                        txn,
                        warnings,
                    });
                } else {
                    let (id, content) = row_digest(&txn);
                    batch.digests.push(RowDigest {
                        id,
                        content,
                        amount: txn.amount,
                        warnings,
                    });
                }
            }
            Verdict::Rejected(rejection) => {
                if let Some(a) = &rejection.amount {
                    batch.amount_read.add_parsed(a);
                }
                batch.rejects.push(RejectedRow {
                    line: record.line,
                    span,
                    rejection,
                });
            }
        }
    }
    batch.formats.add_n(matched_last, matched_run);
    batch.data = chunk.data;
    batch
}

/// A cell as the contract sees it: ids, dates, times, amounts and codes are trimmed of
/// surrounding whitespace even when quoted (`" T1 "` is `T1`, `"  "` is empty); a
/// location keeps what its quotes hold, unless that is only whitespace.
#[inline]
fn trimmed(slot: usize, cell: &str) -> &str {
    let t = cell.trim_ascii();
    if slot == Field::Location.slot() && !t.is_empty() {
        cell
    } else {
        t
    }
}

/// Where a load gets its batches from.
pub trait BatchSource {
    /// The next batch in file order, `None` at the end.
    fn next_batch(&mut self) -> Option<Batch>;
    /// After the last batch: whether the stream ended cleanly (no read error).
    ///
    /// # Errors
    /// The read error, as text.
    fn finish(&mut self) -> Result<(), String>;
    /// Starts again from the first row. The PostgreSQL backend does this when its
    /// optimistic `COPY` meets an id that is already loaded.
    ///
    /// # Errors
    /// When the source cannot be read again.
    fn restart(&mut self) -> Result<(), String>;
}

/// A file opened again from the start whenever asked: a [`BatchSource`] that can
/// restart.
pub struct Reopening<'a> {
    open: Box<dyn FnMut() -> Result<Scanner, FileError> + 'a>,
    current: Option<Scanner>,
}

impl<'a> Reopening<'a> {
    /// Wraps an already started scanner and the way to start it again.
    pub fn new(first: Scanner, open: impl FnMut() -> Result<Scanner, FileError> + 'a) -> Self {
        Reopening {
            open: Box::new(open),
            current: Some(first),
        }
    }
}

impl BatchSource for Reopening<'_> {
    fn next_batch(&mut self) -> Option<Batch> {
        self.current.as_mut().and_then(Scanner::next_batch)
    }

    fn finish(&mut self) -> Result<(), String> {
        match self.current.take() {
            Some(s) => s.finish().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    fn restart(&mut self) -> Result<(), String> {
        // The abandoned scan's threads stop when its channels are dropped.
        drop(self.current.take());
        self.current = Some((self.open)().map_err(|e| e.to_string())?);
        Ok(())
    }
}

impl BatchSource for Scanner {
    fn next_batch(&mut self) -> Option<Batch> {
        Scanner::next_batch(self)
    }

    fn finish(&mut self) -> Result<(), String> {
        while Scanner::next_batch(self).is_some() {}
        self.join().map_err(|e| e.to_string())
    }

    fn restart(&mut self) -> Result<(), String> {
        Err("this scan cannot start over".into())
    }
}

impl Scanner {
    /// The next batch in file order, or `None` when the file is done (then call
    /// [`Scanner::finish`] to learn whether it ended cleanly).
    pub fn next_batch(&mut self) -> Option<Batch> {
        loop {
            if let Some(batch) = self.pending.remove(&self.next_seq) {
                self.next_seq += 1;
                return Some(batch);
            }
            match self.results.recv() {
                Ok(batch) => {
                    self.pending.insert(batch.seq, batch);
                }
                Err(_) => return None,
            }
        }
    }

    /// Waits for the threads and reports a read error that cut the file short.
    ///
    /// # Errors
    /// [`FileError::Read`] when reading or decompressing failed part-way, or
    /// [`FileError::Internal`] when a thread panicked.
    pub fn finish(mut self) -> Result<(), FileError> {
        while self.next_batch().is_some() {}
        self.join()
    }

    fn join(&mut self) -> Result<(), FileError> {
        let read = match self.reader.take().map(JoinHandle::join) {
            Some(Ok(r)) => r.map_err(FileError::Read),
            Some(Err(_)) => Err(FileError::Internal("reader thread panicked".into())),
            None => Ok(()),
        };
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                return Err(FileError::Internal("validator thread panicked".into()));
            }
        }
        if !self.pending.is_empty() {
            return Err(FileError::Internal("batches lost in reordering".into()));
        }
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::builtin_specs;

    fn profiles() -> Vec<Profile> {
        builtin_specs()
            .iter()
            .map(|s| Profile::from_spec(s).unwrap())
            .collect()
    }

    const HEADER: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)\n";

    fn scan_all(text: &[u8], format: Format) -> Result<Vec<Batch>, FileError> {
        let mut s = start(
            Box::new(io::Cursor::new(text.to_vec())),
            format,
            &profiles(),
            2,
            true,
        )?;
        let mut out = Vec::new();
        while let Some(b) = s.next_batch() {
            out.push(b);
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn batches_arrive_in_order_and_every_row_is_accounted_for() {
        let mut text = HEADER.as_bytes().to_vec();
        for i in 0..30_000u32 {
            if i % 1000 == 7 {
                text.extend_from_slice(
                    format!("T{i},C1,1/1/80,M,X,1.00,31/2/16,10,5.0\n").as_bytes(),
                );
            } else {
                text.extend_from_slice(
                    format!("T{i},C1,1/1/80,M,X,1.00,2/8/16,10,5.0\n").as_bytes(),
                );
            }
        }
        let batches = scan_all(&text, Format::Csv).unwrap();
        assert!(batches.len() > 1, "several chunks");
        let mut last_line = 1;
        let (mut read, mut valid, mut rejected) = (0, 0, 0);
        let mut amount = Total::default();
        for b in &batches {
            read += b.rows_read;
            valid += b.rows.len() as u64;
            rejected += b.rejects.len() as u64;
            amount.merge(&b.amount_read);
            for r in &b.rows {
                assert!(r.line > last_line);
                last_line = r.line;
            }
        }
        assert_eq!((read, valid, rejected), (30_000, 29_970, 30));
        assert_eq!(amount.minor(), Some(30_000 * 500));
        assert_eq!(last_line, 30_001);
    }

    #[test]
    fn row_level_failures() {
        let text = format!(
            "{HEADER}T1,C1,1/1/80,M,X,1,2/8/16,10,5.0\nT2,C1\nT3,C\u{ff},1/1/80,M,X,1,2/8/16,10,5.0\nT4,\"C1\"x,1/1/80,M,X,1,2/8/16,10,5.0\n"
        );
        let mut bytes = text.into_bytes();
        // Make line 4 invalid UTF-8.
        let pos = bytes.windows(2).position(|w| w == b"\xc3\xbf").unwrap();
        bytes[pos] = 0xff;
        bytes.remove(pos + 1);
        let batches = scan_all(&bytes, Format::Csv).unwrap();
        let rules: Vec<(u64, Rule)> = batches[0]
            .rejects
            .iter()
            .map(|r| (r.line, r.rejection.rule))
            .collect();
        assert_eq!(
            rules,
            [
                (3, Rule::MalformedRow),
                (4, Rule::InvalidEncoding),
                (5, Rule::MalformedRow)
            ]
        );
        assert_eq!(batches[0].raw(batches[0].rejects[0].span), b"T2,C1");
    }

    #[test]
    fn file_level_failures() {
        assert!(matches!(scan_all(b"", Format::Csv), Err(FileError::Empty)));
        assert!(matches!(
            scan_all(b"\n\n", Format::Csv),
            Err(FileError::Empty)
        ));
        assert!(matches!(
            scan_all(HEADER.as_bytes(), Format::Csv),
            Err(FileError::NoRows)
        ));
        assert!(matches!(
            scan_all(b"a,b\n1,2\n", Format::Csv),
            Err(FileError::Detect(DetectError::NoProfile { .. }))
        ));
        assert!(matches!(
            scan_all(
                b"TransactionID,CustomerID,TransactionDate,TransactionAmount (INR)\n1,2,3,4\n",
                Format::Csv
            ),
            Err(FileError::Detect(DetectError::MissingColumns { .. }))
        ));
        assert!(matches!(
            scan_all(b"{\"a\":1}", Format::JsonArray),
            Err(FileError::Read(_))
        ));
    }

    #[test]
    fn json_rows_use_exact_numbers() {
        let text = br#"[{"transaction_id":"X1","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":25.10,"currency":"INR"},
{"transaction_id":"X2","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":1e3,"currency":"INR"}]"#;
        let batches = scan_all(text, Format::JsonArray).unwrap();
        assert_eq!(batches[0].rows[0].txn.amount.minor, 2510);
        assert_eq!(batches[0].rejects[0].rejection.rule, Rule::InvalidAmount);
        assert_eq!(batches[0].rejects[0].line, 2);
    }

    #[test]
    fn the_delimiter_is_detected_from_the_header() {
        for d in [";", "\t", "|"] {
            let text = format!(
                "\n{}\nT1{d}C1{d}1/1/80{d}M{d}\"A{d}B\"{d}1.00{d}2/8/16{d}10{d}5,0\n",
                HEADER.trim_end().replace(',', d)
            );
            let batches = scan_all(text.as_bytes(), Format::Csv).unwrap();
            let b = &batches[0];
            assert_eq!(b.rows_read, 1, "{d:?}");
            // `5,0` is not a plain decimal: the comma stayed inside the cell.
            assert_eq!(b.rejects[0].rejection.rule, Rule::InvalidAmount, "{d:?}");
        }
        // A profile that names its delimiter is only matched with it.
        let mut specs = builtin_specs();
        specs[0].delimiter = Some("|".into());
        let profiles: Vec<Profile> = specs
            .iter()
            .map(|s| Profile::from_spec(s).unwrap())
            .collect();
        let semi = format!("{}\n", HEADER.trim_end().replace(',', ";"));
        assert_eq!(
            pick_delimiter(&profiles, semi.trim_end()),
            b';',
            "widest split"
        );
        let pipe = HEADER.trim_end().replace(',', "|");
        assert_eq!(pick_delimiter(&profiles, &pipe), b'|');
        // Ties between delimiters go to the first candidate.
        assert_eq!(pick_delimiter(&profiles, "a"), b',');
    }

    #[test]
    fn a_column_the_profile_reads_twice_refuses_the_file_other_duplicates_do_not() {
        let twice = HEADER.replace("CustGender", "customerid ");
        let text = format!("{twice}T1,C1,1/1/80,C2,X,1.00,2/8/16,10,5.0\n");
        let Err(e) = scan_all(text.as_bytes(), Format::Csv) else {
            panic!("which CustomerID is the customer?")
        };
        assert_eq!(
            e.to_string(),
            "column \"CustomerID\" appears 2 times in the header (columns 2 and 4) and profile \
             kaggle-bank reads it: rename or remove all but one"
        );
        let extra = format!(
            "Note,{},Note\nx,T1,C1,1/1/80,M,X,1.00,2/8/16,10,5.0,y\n",
            HEADER.trim_end()
        );
        let batches = scan_all(extra.as_bytes(), Format::Csv).unwrap();
        assert_eq!(batches[0].rows[0].txn.transaction_id, "T1");
    }

    #[test]
    fn a_header_split_by_another_delimiter_than_the_profiles_says_so() {
        let mut specs = builtin_specs();
        specs[0].delimiter = Some(";".into());
        let profiles: Vec<Profile> = specs
            .iter()
            .map(|s| Profile::from_spec(s).unwrap())
            .collect();
        let text = format!("{HEADER}T1,C1,1/1/80,M,X,1.00,2/8/16,10,5.0\n");
        let Err(e) = start(
            Box::new(io::Cursor::new(text.into_bytes())),
            Format::Csv,
            &profiles,
            1,
            false,
        ) else {
            panic!("a `;` profile must not read a `,` file")
        };
        assert_eq!(
            e.to_string(),
            "the header does not split at \";\" (profile kaggle-bank says delimiter = \";\"): \
             it looks \",\"-separated; set delimiter = \",\" in the profile, or remove \
             delimiter to have it detected"
        );
        // A header that fits no profile at any delimiter still lists its columns.
        let Err(e) = start(
            Box::new(io::Cursor::new(b"a,b\n1,2\n".to_vec())),
            Format::Csv,
            &profiles,
            1,
            false,
        ) else {
            panic!()
        };
        assert!(
            matches!(e, FileError::Detect(DetectError::NoProfile { .. })),
            "{e}"
        );
    }

    #[test]
    fn blank_lines_of_spaces_are_skipped_and_ids_trimmed_even_when_quoted() {
        let text = format!(
            "   \n{HEADER}  \t \n\" T1 \",\" C1\",1/1/80,M,X,1,\" 2/8/16 \",\"10 \",\" 5.0\"\n \t\r\n\"  \",C2,1/1/80,M,X,1,2/8/16,10,5.0\n"
        );
        let batches = scan_all(text.as_bytes(), Format::Csv).unwrap();
        let b = &batches[0];
        assert_eq!(b.rows_read, 2, "the blank line is not a row");
        assert_eq!(b.rows[0].txn.transaction_id, "T1");
        assert_eq!(b.rows[0].txn.customer_id, "C1");
        assert_eq!(b.rows[0].txn.amount.minor, 500);
        assert_eq!(
            b.rejects[0].rejection.rule,
            Rule::MissingTransactionId,
            "a whitespace-only id is missing"
        );
        assert_eq!(b.rejects[0].line, 6);
    }

    /// Keys that differ only in case or spaces both name one field: which value was
    /// loaded once depended on hash order (different from one process to the next).
    /// Such a record is refused, naming the keys; the verdict and the detail of every
    /// record depend on field order only.
    #[test]
    fn json_keys_naming_one_field_twice_refuse_the_record_whatever_the_hash_order() {
        let text = br#"{"transaction_id":"X1","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"1.00","currency":"INR"}
{"transaction_id":"X2","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"1.00"," Amount":"900.00","currency":"INR"}
{"transaction_id":"X3","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"1.00","AMOUNT":"1.00","currency":"INR"}
{"transaction_id":"X4","customer_id":[1],"transaction_at":"2016-08-02T10:00:00","amount":{},"currency":"INR"}
"#;
        for _ in 0..20 {
            let batches = scan_all(text, Format::Ndjson).unwrap();
            let b = &batches[0];
            assert_eq!(b.rows.len(), 1);
            let rejects: Vec<(u64, Rule, &str)> = b
                .rejects
                .iter()
                .map(|r| (r.line, r.rejection.rule, r.rejection.detail.as_str()))
                .collect();
            assert_eq!(
                rejects,
                [
                    (
                        2,
                        Rule::MalformedRow,
                        "keys [\" Amount\", \"amount\"] all name field amount of profile \
                         canonical: which one holds it would be a guess"
                    ),
                    (
                        3,
                        Rule::MalformedRow,
                        "keys [\"AMOUNT\", \"amount\"] all name field amount of profile \
                         canonical: which one holds it would be a guess"
                    ),
                    (
                        4,
                        Rule::MalformedRow,
                        "value of \"customer_id\" is not a scalar"
                    ),
                ]
            );
        }
    }

    #[test]
    fn json_keys_the_profile_does_not_use_may_hold_anything() {
        let text = br#"{"transaction_id":"X1","customer_id":"C1","transaction_at":"2016-08-02T10:00:00","amount":"1","currency":"EUR","meta":{"a":[1,{"b":2}]},"tags":[]}
{"transaction_id":"X2","customer_id":{"id":"C1"},"transaction_at":"2016-08-02T10:00:00","amount":"1","currency":"EUR"}
"#;
        let batches = scan_all(text, Format::Ndjson).unwrap();
        let b = &batches[0];
        assert_eq!(b.rows.len(), 1, "{:?}", b.rejects);
        assert_eq!(b.rows[0].warnings.rules().count(), 0, "no such keys");
        assert_eq!(b.rejects[0].rejection.rule, Rule::MalformedRow);
        assert!(b.rejects[0].rejection.detail.contains("customer_id"));
    }
}
