//! Cuts a decompressed byte stream into records and groups them into chunks that
//! worker threads can parse independently.
//!
//! The splitter is the only sequential step of parsing, so it only finds boundaries:
//! newlines outside quotes (CSV), newlines (NDJSON), or top-level elements (JSON array),
//! using `memchr` to skip over plain bytes. It also owns the recovery rules that keep one
//! broken record from swallowing the rest of a file:
//! - a record longer than [`MAX_ROW_BYTES`] is cut at its line end and flagged
//!   [`Flaw::TooLong`], keeping only its first 64 KiB so memory stays bounded;
//! - a CSV quote left open (at end of file, or past 64 KiB) makes only its first physical
//!   line a [`Flaw::Malformed`] record, and scanning resumes on the next line;
//! - a CSV record that spans several physical lines (a quoted field holding a newline)
//!   is kept only if it parses: every closing quote followed by a delimiter, blanks or
//!   the end of the record, and exactly the header's number of fields
//!   ([`Splitter::expect_columns`]). Otherwise it is a stray quote swallowing the lines
//!   after it, so the record is re-read line by line: its first line becomes a
//!   [`Flaw::Malformed`] record and scanning resumes on the next line, which is parsed
//!   as a record of its own. A real multi-line field (`"NEW\nDELHI"`) in a row of the
//!   right width is therefore kept whole; a row that is *also* the wrong width is split
//!   into several rejected lines instead of one.
//!
//! The check runs only on multi-line records (rare), on bytes already in the buffer
//! (at most 64 KiB), so the common path costs nothing more. The lines a resync re-reads
//! hold no unpaired quote (the first one would have ended the quoted field), so they
//! cannot open a quote again: each byte is scanned at most twice, and memory stays
//! bounded by the 64 KiB cap.

use std::io::{self, Read};

use memchr::{memchr, memchr2};

use super::Format;

/// Longest record accepted; longer ones are rejected as `row_too_long`.
pub const MAX_ROW_BYTES: usize = 64 * 1024;

/// Why the first line of a multi-line record that does not parse is rejected.
const SWALLOWING_QUOTE: &str = "quote opened on this line does not close into a valid record";

/// Bytes a CSV/NDJSON record may span before its line end: the record and a `\r`.
const SCAN_LIMIT: usize = MAX_ROW_BYTES + 1;

/// Most records in one chunk. A chunk is cut at about its target size in bytes, but each
/// record costs a worker more memory than its bytes (its span here, then its parsed
/// cells, row or rejection), so a file of tiny records (a JSON array of a million `{}`)
/// would hold tens of times its chunk size in flight: measured 350 MB at the plateau
/// before this cap, for files of 3 bytes a record. Files of real rows (about 100 bytes)
/// reach the byte target first.
const MAX_RECORDS: usize = 16 * 1024;

/// Bytes asked of the reader at a time.
const READ_SIZE: usize = 256 * 1024;

/// Why a record cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Longer than [`MAX_ROW_BYTES`]; the record holds only its first 64 KiB.
    TooLong,
    /// Broken structure (unterminated quote, truncated JSON, text after the array).
    Malformed(&'static str),
}

/// One record: a span of its chunk's bytes, without the line terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Offset of the first byte in the chunk.
    pub start: u32,
    /// Offset past the last byte.
    pub end: u32,
    /// 1-based line of the file where the record starts.
    pub line: u64,
    /// Set when the record cannot be parsed.
    pub flaw: Option<Flaw>,
}

/// Whole records and the bytes they live in.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Position of the chunk in the file, from 0.
    pub seq: u64,
    /// Bytes; records are spans of it.
    pub data: Vec<u8>,
    /// Records in file order.
    pub records: Vec<Record>,
}

impl Chunk {
    /// The bytes of a record.
    pub fn bytes(&self, record: &Record) -> &[u8] {
        &self.data[record.start as usize..record.end as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonPhase {
    Before,
    Inside,
    After,
}

/// Streaming record splitter over a decompressed reader.
#[derive(Debug)]
pub struct Splitter<R> {
    reader: R,
    format: Format,
    buf: Vec<u8>,
    pos: usize,
    line: u64,
    eof: bool,
    started: bool,
    json: JsonPhase,
    seq: u64,
    target: usize,
    columns: Option<usize>,
    read_size: usize,
    delimiter: u8,
    /// End of the bytes the current chunk must keep: past its last record so far.
    kept: usize,
}

impl<R: Read> Splitter<R> {
    /// A splitter emitting chunks of about `target` bytes.
    pub fn new(reader: R, format: Format, target: usize) -> Splitter<R> {
        Splitter {
            reader,
            format,
            buf: Vec::with_capacity(target + READ_SIZE),
            pos: 0,
            line: 1,
            eof: false,
            started: false,
            json: JsonPhase::Before,
            seq: 0,
            target: target.max(1),
            columns: None,
            read_size: READ_SIZE,
            delimiter: b',',
            kept: 0,
        }
    }

    /// Sets the number of fields every CSV record must have (the header's). From then
    /// on, a record spanning several lines with another field count is re-read line by
    /// line (see the module doc). Before it is known, such a record is only required to
    /// parse. Call it before the records it should apply to are cut: `scan::start` reads
    /// the header alone (a first chunk with a target of one byte) for that reason.
    pub fn expect_columns(&mut self, columns: usize) {
        self.columns = Some(columns);
    }

    /// Changes the size of the chunks emitted from now on.
    pub fn set_target(&mut self, target: usize) {
        self.target = target.max(1);
    }

    /// Sets how many bytes are asked of the reader at a time (default 256 KiB). Unit
    /// tests and the splitter fuzz target (`fuzz/`) read a few bytes at a time, so that
    /// records cross the buffer's end at every position: the records must not change.
    #[doc(hidden)]
    #[must_use]
    pub fn with_read_size(mut self, bytes: usize) -> Splitter<R> {
        self.read_size = bytes.max(1);
        self
    }

    /// Sets the CSV field separator (default `,`): a quote opens a field only at the
    /// start of a record or right after a separator.
    #[must_use]
    pub fn with_delimiter(mut self, delimiter: u8) -> Splitter<R> {
        self.delimiter = delimiter;
        self
    }

    /// The next chunk, or `None` at the end of the input.
    ///
    /// # Errors
    /// Read and decompression errors, and a JSON file that is not an array.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        let mut records = Vec::new();
        while self.pos < self.target && records.len() < MAX_RECORDS {
            match self.next_record()? {
                Some(r) => {
                    records.push(r);
                    self.kept = self.pos;
                }
                None => break,
            }
        }
        if records.is_empty() {
            return Ok(None);
        }
        let rest = self.buf[self.pos..].to_vec();
        let mut data =
            std::mem::replace(&mut self.buf, Vec::with_capacity(self.target + READ_SIZE));
        data.truncate(self.pos);
        self.buf.extend_from_slice(&rest);
        self.pos = 0;
        self.kept = 0;
        let chunk = Chunk {
            seq: self.seq,
            data,
            records,
        };
        self.seq += 1;
        Ok(Some(chunk))
    }

    fn fill(&mut self) -> io::Result<()> {
        // `read_to_end` reads into spare capacity without zeroing it first.
        let n = (&mut self.reader)
            .take(self.read_size as u64)
            .read_to_end(&mut self.buf)?;
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    fn next_record(&mut self) -> io::Result<Option<Record>> {
        if !self.started {
            self.started = true;
            while self.buf.len() < 3 && !self.eof {
                self.fill()?;
            }
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.pos = 3;
            }
        }
        match self.format {
            Format::Csv => self.line_record(true),
            Format::Ndjson => self.line_record(false),
            Format::JsonArray => self.json_record(),
        }
    }

    /// Drops the bytes skipped since the chunk's last record (blank lines, whitespace
    /// between JSON elements) once they reach [`READ_SIZE`]: they belong to no record,
    /// and a file of nothing else (10 GB of newlines) must not be held in memory waiting
    /// for one. Only called where no scan position is outstanding.
    fn forget_gap(&mut self) {
        if self.pos - self.kept >= READ_SIZE {
            self.buf.drain(self.kept..self.pos);
            self.pos = self.kept;
        }
    }

    /// Drops the scanned tail of an over-long record (keeping its first 64 KiB) before
    /// reading more, so a gigabyte-long line costs 64 KiB of memory.
    fn compact(&mut self, start: usize, scanned: usize) -> usize {
        let keep = start + MAX_ROW_BYTES;
        if scanned > keep {
            self.buf.truncate(keep);
            return keep;
        }
        scanned
    }

    /// A record ended by a newline; with `quotes`, newlines inside double quotes do not
    /// end it. Blank lines are skipped.
    fn line_record(&mut self, quotes: bool) -> io::Result<Option<Record>> {
        loop {
            let start = self.pos;
            let line = self.line;
            let mut i = start;
            let mut in_quotes = false;
            let mut inner_newlines = 0u64;
            let mut too_long = false;
            // (end of record, next position, newlines consumed, flaw)
            let (end, next, consumed, flaw) = loop {
                if i >= self.buf.len() {
                    if self.eof {
                        if start >= self.buf.len() {
                            return Ok(None);
                        }
                        if in_quotes && !too_long {
                            let (e, n, c) = self.first_line(start);
                            break (e, n, c, Some(Flaw::Malformed("unterminated quote")));
                        }
                        let len = self.buf.len();
                        if quotes && inner_newlines > 0 && !too_long && !self.parses(start, len) {
                            let (e, n, c) = self.first_line(start);
                            break (e, n, c, Some(Flaw::Malformed(SWALLOWING_QUOTE)));
                        }
                        break (len, len, inner_newlines, too_long.then_some(Flaw::TooLong));
                    }
                    if too_long {
                        i = self.compact(start, i);
                    }
                    self.fill()?;
                    continue;
                }
                let hay = &self.buf[i..];
                let found = if quotes && !too_long {
                    memchr2(b'"', b'\n', hay)
                } else {
                    memchr(b'\n', hay)
                };
                match found {
                    None => i = self.buf.len(),
                    Some(off) if !too_long && i + off - start > SCAN_LIMIT => {
                        // A quote or newline past the limit: decide with the state the
                        // scan had at the limit, as a smaller read would have.
                        i = start + SCAN_LIMIT + 1;
                    }
                    Some(off) => {
                        let at = i + off;
                        i = at + 1;
                        if self.buf[at] == b'"' {
                            if in_quotes {
                                // `""` inside quotes is an escaped quote; anything else
                                // after a quote closes the field.
                                if at + 1 == self.buf.len() && !self.eof {
                                    i = at;
                                    self.fill()?;
                                    continue;
                                }
                                if self.buf.get(at + 1) == Some(&b'"') {
                                    i = at + 2;
                                } else {
                                    in_quotes = false;
                                }
                            } else if self.at_field_start(start, at) {
                                in_quotes = true;
                            }
                            // Else a stray quote inside an unquoted field: it does not
                            // change the record's extent; the cell parser rejects the row.
                        } else if in_quotes {
                            inner_newlines += 1;
                        } else if inner_newlines > 0 && !too_long && !self.parses(start, at) {
                            let (e, n, c) = self.first_line(start);
                            break (e, n, c, Some(Flaw::Malformed(SWALLOWING_QUOTE)));
                        } else {
                            break (
                                at,
                                at + 1,
                                inner_newlines + 1,
                                too_long.then_some(Flaw::TooLong),
                            );
                        }
                    }
                }
                if !too_long && i - start > SCAN_LIMIT {
                    if in_quotes && memchr(b'\n', &self.buf[start..start + MAX_ROW_BYTES]).is_some()
                    {
                        let (e, n, c) = self.first_line(start);
                        break (e, n, c, Some(Flaw::Malformed("unterminated quote")));
                    }
                    // Too long: the record is its first physical line, wherever that
                    // line ends (possibly already scanned while inside quotes).
                    if let Some(nl) = memchr(b'\n', &self.buf[start..]) {
                        break (start + nl, start + nl + 1, 1, Some(Flaw::TooLong));
                    }
                    too_long = true;
                    in_quotes = false;
                }
            };
            self.pos = next;
            self.line += consumed;
            let mut end = end;
            if flaw.is_none() && end > start && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            let (end, flaw) = if end - start > MAX_ROW_BYTES {
                (start + MAX_ROW_BYTES, Some(Flaw::TooLong))
            } else {
                (end, flaw)
            };
            if end == start && flaw.is_none() {
                // A blank line holds no row; the empty lines right after it are skipped
                // in one pass (a file of nothing else must not cost a record search per
                // byte).
                let run = newline_run(&self.buf[self.pos..]);
                self.pos += run;
                self.line += run as u64;
                self.forget_gap();
                continue;
            }
            return Ok(Some(Record {
                start: start as u32,
                end: end as u32,
                line,
                flaw,
            }));
        }
    }

    /// Whether the multi-line record `buf[start..end]` (without its line end) is a
    /// record: it parses as CSV, with the expected number of fields when known.
    fn parses(&self, start: usize, end: usize) -> bool {
        let mut record = &self.buf[start..end];
        if let Some(rest) = record.strip_suffix(b"\r") {
            record = rest;
        }
        match super::csv::count_fields(record, self.delimiter) {
            Ok(n) => self.columns.is_none_or(|c| c == n),
            Err(_) => false,
        }
    }

    /// Whether the quote at `at` opens a field: only blanks since the record start or
    /// the previous separator.
    fn at_field_start(&self, start: usize, at: usize) -> bool {
        let mut k = at;
        while k > start && matches!(self.buf[k - 1], b' ' | b'\t') {
            k -= 1;
        }
        k == start || self.buf[k - 1] == self.delimiter
    }

    /// The first physical line from `start`: (end, next, newlines consumed).
    fn first_line(&self, start: usize) -> (usize, usize, u64) {
        match memchr(b'\n', &self.buf[start..]) {
            Some(nl) => (start + nl, start + nl + 1, 1),
            None => (self.buf.len(), self.buf.len(), 0),
        }
    }

    /// Skips whitespace (and commas, between array elements), counting newlines.
    /// Returns false at end of input.
    fn skip_json_gap(&mut self, commas: bool) -> io::Result<bool> {
        loop {
            while self.pos < self.buf.len() {
                match self.buf[self.pos] {
                    b'\n' => self.line += 1,
                    b' ' | b'\t' | b'\r' => {}
                    b',' if commas => {}
                    _ => return Ok(true),
                }
                self.pos += 1;
            }
            if self.eof {
                return Ok(false);
            }
            self.forget_gap();
            self.fill()?;
        }
    }

    /// The next element of a top-level JSON array.
    fn json_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            match self.json {
                JsonPhase::Before => {
                    if !self.skip_json_gap(false)? {
                        return Ok(None);
                    }
                    if self.buf[self.pos] != b'[' {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a .json file must hold one JSON array of objects (use .ndjson for one object per line)",
                        ));
                    }
                    self.pos += 1;
                    self.json = JsonPhase::Inside;
                }
                JsonPhase::Inside => {
                    if !self.skip_json_gap(true)? {
                        return Ok(None);
                    }
                    if self.buf[self.pos] == b']' {
                        self.pos += 1;
                        self.json = JsonPhase::After;
                        continue;
                    }
                    return self.json_element().map(Some);
                }
                JsonPhase::After => {
                    if !self.skip_json_gap(false)? {
                        return Ok(None);
                    }
                    // Text after the closing bracket: one malformed record per line.
                    let start = self.pos;
                    let line = self.line;
                    let rec = self.line_record(false)?;
                    return Ok(rec.map(|r| Record {
                        start: start as u32,
                        line,
                        flaw: Some(
                            r.flaw
                                .unwrap_or(Flaw::Malformed("text after the closing ]")),
                        ),
                        ..r
                    }));
                }
            }
        }
    }

    /// Scans one array element starting at `self.pos` (not whitespace, not `,` or `]`).
    fn json_element(&mut self) -> io::Result<Record> {
        let start = self.pos;
        let line = self.line;
        let mut i = start;
        let mut depth = 0u32;
        let mut in_string = false;
        let mut escaped = false;
        let mut newlines = 0u64;
        let mut too_long = false;
        let (end, next, flaw) = loop {
            if i >= self.buf.len() {
                if self.eof {
                    let len = self.buf.len();
                    let flaw = if too_long {
                        Flaw::TooLong
                    } else {
                        Flaw::Malformed("JSON element cut short by the end of the file")
                    };
                    break (len, len, Some(flaw));
                }
                if too_long {
                    i = self.compact(start, i);
                }
                self.fill()?;
                continue;
            }
            let b = self.buf[i];
            if b == b'\n' {
                newlines += 1;
            }
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    // A closing bracket where an element should start (`[1,}]`,
                    // `[{"a":1}}]`) is an element of its own, malformed: ending the
                    // element before it would leave the splitter there for ever,
                    // cutting empty records (a hang, found by fuzzing).
                    b'}' | b']' if depth == 0 && i == start => {
                        break (
                            i + 1,
                            i + 1,
                            Some(Flaw::Malformed("a closing bracket that closes nothing")),
                        );
                    }
                    b'}' | b']' if depth == 0 => break (i, i, None),
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            break (i + 1, i + 1, None);
                        }
                    }
                    b',' | b' ' | b'\t' | b'\r' | b'\n' if depth == 0 => {
                        if b == b'\n' {
                            newlines -= 1; // counted again by the gap skipper
                        }
                        break (i, i, None);
                    }
                    _ => {}
                }
            }
            i += 1;
            if !too_long && i - start > MAX_ROW_BYTES {
                too_long = true;
            }
        };
        self.pos = next;
        self.line += newlines;
        let (end, flaw) = if end - start > MAX_ROW_BYTES {
            (start + MAX_ROW_BYTES, Some(Flaw::TooLong))
        } else {
            (end, flaw)
        };
        Ok(Record {
            start: start as u32,
            end: end as u32,
            line,
            flaw,
        })
    }
}

/// How many `\n` bytes `bytes` starts with, eight at a time.
fn newline_run(bytes: &[u8]) -> usize {
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut n = 0;
    for word in bytes.chunks_exact(8) {
        if u64::from_ne_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]) != NEWLINES
        {
            break;
        }
        n += 8;
    }
    n + bytes[n..].iter().take_while(|b| **b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per call, to cross every boundary.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// (line, text, flaw) of every record, for every read size and a tiny chunk target.
    fn records(format: Format, input: &[u8]) -> Vec<(u64, String, Option<Flaw>)> {
        records_of(format, input, None)
    }

    /// As [`records`], with the header's field count known to the splitter.
    fn records_of(
        format: Format,
        input: &[u8],
        columns: Option<usize>,
    ) -> Vec<(u64, String, Option<Flaw>)> {
        let mut reference = None;
        for (step, target) in [
            (usize::MAX, 1 << 20),
            (1, 1),
            (7, 10),
            (4096, 100),
            (65_537, 3),
        ] {
            let mut s = Splitter::new(Trickle { data: input, step }, format, target);
            // Each fill reads `step` bytes, so records cross buffer ends everywhere.
            s.read_size = step.min(READ_SIZE);
            if let Some(c) = columns {
                s.expect_columns(c);
            }
            let mut out = Vec::new();
            while let Some(chunk) = s.next_chunk().unwrap() {
                for r in &chunk.records {
                    let text = String::from_utf8_lossy(chunk.bytes(r)).into_owned();
                    out.push((r.line, text, r.flaw));
                }
            }
            match &reference {
                None => reference = Some(out),
                Some(expected) => assert_eq!(&out, expected, "step {step} target {target}"),
            }
        }
        reference.unwrap()
    }

    fn ok(line: u64, text: &str) -> (u64, String, Option<Flaw>) {
        (line, text.to_owned(), None)
    }

    #[test]
    fn csv_lines_quotes_bom_crlf_blank_lines() {
        let input = b"\xEF\xBB\xBFa,b\r\n1,\"x\r\ny\"\r\n\r\n2,\"q\"\"\"\n\n\n3,z";
        assert_eq!(
            records(Format::Csv, input),
            [
                ok(1, "a,b"),
                ok(2, "1,\"x\r\ny\""),
                ok(5, "2,\"q\"\"\""),
                ok(8, "3,z")
            ]
        );
    }

    /// 20 MiB of newlines (or of whitespace between JSON elements) around a few
    /// records: the same records, lines and chunks as ever, and a buffer that never
    /// holds the skipped bytes (it once grew to the size of the gap).
    #[test]
    fn long_runs_of_blank_lines_are_not_kept_in_memory() {
        const GAP: usize = 20 << 20;
        let mut csv = b"h\n1,a\n".to_vec();
        csv.extend(std::iter::repeat_n(b'\n', GAP));
        csv.extend_from_slice(b"2,b\r\n");
        csv.extend(std::iter::repeat_n(b'\n', GAP));
        let mut json = b"[{\"a\":1},".to_vec();
        json.extend(std::iter::repeat_n(b'\n', GAP));
        json.extend_from_slice(b" {\"a\":2} ]");
        json.extend(std::iter::repeat_n(b' ', GAP));
        for (format, input, expected) in [
            (
                Format::Csv,
                &csv,
                vec![(1, "h"), (2, "1,a"), (GAP as u64 + 3, "2,b")],
            ),
            (
                Format::JsonArray,
                &json,
                vec![(1, "{\"a\":1}"), (GAP as u64 + 1, "{\"a\":2}")],
            ),
        ] {
            let mut s = Splitter::new(&input[..], format, 1 << 20);
            let mut got = Vec::new();
            while let Some(chunk) = s.next_chunk().unwrap() {
                assert!(chunk.data.len() < 1 << 20, "{}", chunk.data.len());
                for r in &chunk.records {
                    let text = String::from_utf8_lossy(chunk.bytes(r)).into_owned();
                    got.push((r.line, text));
                }
                assert!(s.buf.capacity() < 4 << 20, "{}", s.buf.capacity());
            }
            assert!(s.buf.capacity() < 4 << 20, "{}", s.buf.capacity());
            let expected: Vec<(u64, String)> = expected
                .into_iter()
                .map(|(l, t)| (l, t.to_owned()))
                .collect();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn newline_runs() {
        assert_eq!(newline_run(b""), 0);
        assert_eq!(newline_run(b"x\n"), 0);
        assert_eq!(newline_run(b"\n\n\nx\n"), 3);
        let mut v = vec![b'\n'; 17];
        v.push(b'a');
        assert_eq!(newline_run(&v), 17);
        assert_eq!(newline_run(&[b'\n'; 24]), 24);
        assert_eq!(newline_run(b"\n\n\n\n\n\n\n\r\n"), 7);
    }

    #[test]
    fn empty_and_blank_inputs_have_no_records() {
        assert!(records(Format::Csv, b"").is_empty());
        assert!(records(Format::Csv, b"\n\r\n\n").is_empty());
        assert!(records(Format::Ndjson, b"\xEF\xBB\xBF").is_empty());
    }

    #[test]
    fn unterminated_quote_only_spoils_its_line() {
        let input = b"h\n1,\"open\n2,b\n3,c\n";
        assert_eq!(
            records(Format::Csv, input),
            [
                ok(1, "h"),
                (
                    2,
                    "1,\"open".into(),
                    Some(Flaw::Malformed("unterminated quote"))
                ),
                ok(3, "2,b"),
                ok(4, "3,c")
            ]
        );
    }

    #[test]
    fn unterminated_quote_past_the_limit_resyncs() {
        let mut input = b"h\n1,\"open\n".to_vec();
        for i in 0..10_000 {
            input.extend_from_slice(format!("{i},row\n").as_bytes());
        }
        let recs = records(Format::Csv, &input);
        assert_eq!(recs.len(), 10_002);
        assert_eq!(recs[1].2, Some(Flaw::Malformed("unterminated quote")));
        assert_eq!(recs[2], ok(3, "0,row"));
        assert_eq!(recs[10_001], ok(10_002, "9999,row"));
    }

    #[test]
    fn long_lines_are_cut_and_truncated() {
        let mut input = b"h\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 200_000));
        input.extend_from_slice(b"\"\nnext,1\n");
        let recs = records(Format::Csv, &input);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].0, 2);
        assert_eq!(recs[1].1.len(), MAX_ROW_BYTES);
        assert_eq!(recs[1].2, Some(Flaw::TooLong));
        assert_eq!(recs[2], ok(3, "next,1"));
    }

    #[test]
    fn a_record_of_exactly_the_limit_is_fine() {
        let mut input = vec![b'y'; MAX_ROW_BYTES];
        input.extend_from_slice(b"\r\n");
        let recs = records(Format::Csv, &input);
        assert_eq!(recs[0].2, None);
        assert_eq!(recs[0].1.len(), MAX_ROW_BYTES);
    }

    #[test]
    fn ndjson_ignores_quotes_for_boundaries() {
        let input = b"{\"a\":\"x\\\"\"}\n\n{\"a\":2}";
        assert_eq!(
            records(Format::Ndjson, input),
            [ok(1, "{\"a\":\"x\\\"\"}"), ok(3, "{\"a\":2}")]
        );
    }

    #[test]
    fn json_array_elements() {
        let input =
            b" [\n {\"a\": \"]}[{\", \"b\": [1,{\"c\":2}]},\n{\"a\":\"\\\"\"} ,5,\n\"s\"]\n";
        assert_eq!(
            records(Format::JsonArray, input),
            [
                ok(2, "{\"a\": \"]}[{\", \"b\": [1,{\"c\":2}]}"),
                ok(3, "{\"a\":\"\\\"\"}"),
                ok(3, "5"),
                ok(4, "\"s\"")
            ]
        );
    }

    #[test]
    fn json_array_truncated_and_trailing_text() {
        let recs = records(Format::JsonArray, b"[{\"a\":1},{\"a\":");
        assert_eq!(recs[0], ok(1, "{\"a\":1}"));
        assert!(matches!(recs[1].2, Some(Flaw::Malformed(_))));
        let recs = records(Format::JsonArray, b"[{\"a\":1}]\nextra\n");
        assert_eq!(recs[1].0, 2);
        assert!(matches!(recs[1].2, Some(Flaw::Malformed(_))));
        assert!(records(Format::JsonArray, b"[]").is_empty());
    }

    /// A `}` where an element should start once made the splitter cut empty records
    /// at the same place for ever (a file that never finished loading); now it is one
    /// malformed record and the elements after it are read.
    #[test]
    fn a_closing_bracket_where_an_element_should_start_is_one_malformed_record() {
        let closes_nothing = Some(Flaw::Malformed("a closing bracket that closes nothing"));
        assert_eq!(
            records(Format::JsonArray, b"[}"),
            [(1, "}".into(), closes_nothing)]
        );
        assert_eq!(
            records(Format::JsonArray, b"[{\"a\":1}},\n5}{\"a\":2}]"),
            [
                ok(1, "{\"a\":1}"),
                (1, "}".into(), closes_nothing),
                ok(2, "5"),
                (2, "}".into(), closes_nothing),
                ok(2, "{\"a\":2}"),
            ]
        );
    }

    #[test]
    fn json_that_is_not_an_array_is_an_error() {
        let mut s = Splitter::new(&b"{\"a\":1}"[..], Format::JsonArray, 100);
        assert_eq!(
            s.next_chunk().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn a_stray_quote_in_an_unquoted_field_spoils_only_its_row() {
        let input = b"h\n1,12\" ROAD,x\n2,ok,y\n3,5\" LANE,z\n4,ok,w\n";
        let recs = records(Format::Csv, input);
        assert_eq!(
            recs,
            [
                ok(1, "h"),
                ok(2, "1,12\" ROAD,x"),
                ok(3, "2,ok,y"),
                ok(4, "3,5\" LANE,z"),
                ok(5, "4,ok,w")
            ]
        );
    }

    #[test]
    fn a_quote_opens_a_field_after_the_configured_delimiter() {
        let input = b"a;\"x\ny\";b\nc;d\n";
        let mut s = Splitter::new(&input[..], Format::Csv, 1 << 20).with_delimiter(b';');
        let chunk = s.next_chunk().unwrap().unwrap();
        let got: Vec<&[u8]> = chunk.records.iter().map(|r| chunk.bytes(r)).collect();
        assert_eq!(got, [&b"a;\"x\ny\";b"[..], b"c;d"]);
    }

    #[test]
    fn escaped_quotes_keep_the_field_open() {
        let input = b"h\n1,\"a\"\"\nb\",c\n2,\"\"\"\"\n";
        assert_eq!(
            records(Format::Csv, input),
            [ok(1, "h"), ok(2, "1,\"a\"\"\nb\",c"), ok(4, "2,\"\"\"\"")]
        );
    }

    #[test]
    fn a_long_line_with_an_open_quote_ends_at_its_own_newline() {
        let mut input = b"h\n\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 70_000));
        input.extend_from_slice(b"\nnext,1\nlast,2\n");
        let recs = records(Format::Csv, &input);
        assert_eq!(
            recs.len(),
            4,
            "{:?}",
            recs.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>()
        );
        assert_eq!(recs[1].2, Some(Flaw::TooLong));
        assert_eq!(recs[2], ok(3, "next,1"));
        assert_eq!(recs[3], ok(4, "last,2"));
    }

    #[test]
    fn a_stray_quote_does_not_swallow_the_rows_after_it() {
        let input = b"a,b,c\n1,\"open,x\n2,b,c\n3,\"q, r\",z\n4,d,e\n";
        let swallowed = Some(Flaw::Malformed(SWALLOWING_QUOTE));
        let expected = [
            ok(1, "a,b,c"),
            (2, "1,\"open,x".into(), swallowed),
            ok(3, "2,b,c"),
            ok(4, "3,\"q, r\",z"),
            ok(5, "4,d,e"),
        ];
        assert_eq!(records_of(Format::Csv, input, Some(3)), expected);
        // Without the field count, the text after the closing quote gives it away.
        assert_eq!(records(Format::Csv, input), expected);
    }

    #[test]
    fn a_multi_line_record_of_the_wrong_width_is_reread_line_by_line() {
        // Parses (the closing quote ends a field), but with 4 fields instead of 3.
        let input = b"a,b,c\n1,\"open,x\n2,x\",c,d\n3,d,e\r\n";
        assert_eq!(
            records_of(Format::Csv, input, Some(3)),
            [
                ok(1, "a,b,c"),
                (
                    2,
                    "1,\"open,x".into(),
                    Some(Flaw::Malformed(SWALLOWING_QUOTE))
                ),
                ok(3, "2,x\",c,d"),
                ok(4, "3,d,e"),
            ]
        );
    }

    #[test]
    fn a_real_multi_line_field_is_one_record() {
        let input = b"a,b,c\n1,\"NEW\nDELHI\",x\n2,\"A\r\n\"\"B\"\"\",y\r\n3,z,w";
        assert_eq!(
            records_of(Format::Csv, input, Some(3)),
            [
                ok(1, "a,b,c"),
                ok(2, "1,\"NEW\nDELHI\",x"),
                ok(4, "2,\"A\r\n\"\"B\"\"\",y"),
                ok(6, "3,z,w"),
            ]
        );
    }

    #[test]
    fn a_stray_quote_at_the_end_of_a_file_spoils_only_its_line() {
        let input = b"a,b\n1,2\n3,\"x\n4,5\n6,7";
        let recs = records_of(Format::Csv, input, Some(2));
        assert_eq!(recs.len(), 5);
        assert_eq!(recs[2].2, Some(Flaw::Malformed("unterminated quote")));
        assert_eq!((&recs[3], &recs[4]), (&ok(4, "4,5"), &ok(5, "6,7")));
    }

    #[test]
    fn a_quoted_field_ending_past_the_limit_is_cut_the_same_at_every_read_size() {
        let mut input = b"h\n\"a\nb\",".to_vec();
        input.extend(std::iter::repeat_n(b'x', 70_000));
        input.extend_from_slice(b"\nnext,1\n");
        let recs = records(Format::Csv, &input);
        assert_eq!(recs[1], (2, "\"a".into(), Some(Flaw::TooLong)));
        assert_eq!(recs[2].0, 3);
        assert_eq!(recs[2].2, Some(Flaw::TooLong));
        assert_eq!(recs[3], ok(4, "next,1"));
    }
}
