//! Splits one CSV record (RFC 4180) into cells.
//!
//! Written by hand rather than with the `csv` crate because the contract needs two
//! things that crate does not expose: whether a cell was quoted (surrounding whitespace
//! is trimmed only from unquoted cells) and strictness about stray quotes (`a"b` or
//! `"a"b` are malformed rows, not silently repaired values). Record boundaries were
//! already found by `split`.

use std::borrow::Cow;

/// Why a record's cells cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellError {
    /// A `"` inside an unquoted cell.
    StrayQuote,
    /// Text between a closing quote and the next comma.
    TextAfterQuote,
    /// A quoted cell with no closing quote.
    Unterminated,
}

impl CellError {
    /// Human explanation for the quarantine.
    pub const fn message(self) -> &'static str {
        match self {
            CellError::StrayQuote => "stray quote inside an unquoted field",
            CellError::TextAfterQuote => "text after the closing quote of a field",
            CellError::Unterminated => "unterminated quoted field",
        }
    }
}

/// Splits `record` into `cells` (cleared first) at `delimiter` (`,`, `;`, tab, `|`).
/// Unquoted cells are trimmed of surrounding spaces and tabs; quoted cells keep their
/// content with `""` unescaped (the contract trims the fields it needs trimmed).
///
/// # Errors
/// See [`CellError`].
pub fn split<'a>(
    record: &'a str,
    delimiter: u8,
    cells: &mut Vec<Cow<'a, str>>,
) -> Result<(), CellError> {
    cells.clear();
    let bytes = record.as_bytes();
    let mut pos = 0;
    loop {
        let mut i = pos;
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') && bytes[i] != delimiter {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'"' {
            let open = i + 1;
            let mut j = open;
            let mut escaped = false;
            let close = loop {
                match memchr::memchr(b'"', &bytes[j..]) {
                    None => return Err(CellError::Unterminated),
                    Some(off) => {
                        let q = j + off;
                        if bytes.get(q + 1) == Some(&b'"') {
                            escaped = true;
                            j = q + 2;
                        } else {
                            break q;
                        }
                    }
                }
            };
            let inner = &record[open..close];
            cells.push(if escaped {
                Cow::Owned(inner.replace("\"\"", "\""))
            } else {
                Cow::Borrowed(inner)
            });
            let mut k = close + 1;
            while k < bytes.len()
                && (bytes[k] == b' ' || bytes[k] == b'\t')
                && bytes[k] != delimiter
            {
                k += 1;
            }
            match bytes.get(k) {
                None => return Ok(()),
                Some(&b) if b == delimiter => pos = k + 1,
                Some(_) => return Err(CellError::TextAfterQuote),
            }
        } else {
            let end = memchr::memchr(delimiter, &bytes[pos..]).map_or(bytes.len(), |o| pos + o);
            let cell = &record[pos..end];
            if memchr::memchr(b'"', cell.as_bytes()).is_some() {
                return Err(CellError::StrayQuote);
            }
            cells.push(Cow::Borrowed(trim_blanks(cell)));
            if end == bytes.len() {
                return Ok(());
            }
            pos = end + 1;
        }
    }
}

/// The number of cells [`split`] would make of `record`, without building them: the
/// splitter uses it to decide whether a record that spans several lines is real (see
/// `split::Splitter::expect_columns`). Works on bytes because the record may not be
/// UTF-8 yet (that is the worker's rejection to make).
///
/// # Errors
/// The same [`CellError`] as [`split`].
pub fn count_fields(record: &[u8], delimiter: u8) -> Result<usize, CellError> {
    let mut fields = 1;
    let mut pos = 0;
    loop {
        let mut i = pos;
        while i < record.len() && (record[i] == b' ' || (record[i] == b'\t' && delimiter != b'\t'))
        {
            i += 1;
        }
        let end = if i < record.len() && record[i] == b'"' {
            let mut j = i + 1;
            let close = loop {
                match memchr::memchr(b'"', &record[j..]) {
                    None => return Err(CellError::Unterminated),
                    Some(off) if record.get(j + off + 1) == Some(&b'"') => j += off + 2,
                    Some(off) => break j + off,
                }
            };
            let mut k = close + 1;
            while k < record.len()
                && (record[k] == b' ' || (record[k] == b'\t' && delimiter != b'\t'))
            {
                k += 1;
            }
            match record.get(k) {
                None => k,
                Some(&c) if c == delimiter => k,
                Some(_) => return Err(CellError::TextAfterQuote),
            }
        } else {
            let end = memchr::memchr(delimiter, &record[pos..]).map_or(record.len(), |o| pos + o);
            if memchr::memchr(b'"', &record[pos..end]).is_some() {
                return Err(CellError::StrayQuote);
            }
            end
        };
        if end == record.len() {
            return Ok(fields);
        }
        fields += 1;
        pos = end + 1;
    }
}

/// Strips spaces and tabs from both ends (ASCII only, so slicing stays on char
/// boundaries). An unquoted cell never holds its delimiter, so a tab delimiter needs
/// no care here.
fn trim_blanks(cell: &str) -> &str {
    let b = cell.as_bytes();
    let mut start = 0;
    let mut end = b.len();
    while start < end && (b[start] == b' ' || b[start] == b'\t') {
        start += 1;
    }
    while end > start && (b[end - 1] == b' ' || b[end - 1] == b'\t') {
        end -= 1;
    }
    &cell[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(record: &str) -> Result<Vec<String>, CellError> {
        cells_at(record, b',')
    }

    fn cells_at(record: &str, delimiter: u8) -> Result<Vec<String>, CellError> {
        let mut out = Vec::new();
        split(record, delimiter, &mut out)?;
        Ok(out.into_iter().map(Cow::into_owned).collect())
    }

    #[test]
    fn other_delimiters() {
        assert_eq!(
            cells_at("a;b ; \"c;d\" ;", b';').unwrap(),
            ["a", "b", "c;d", ""]
        );
        assert_eq!(
            cells_at("a\t\tb\t\"c\"", b'\t').unwrap(),
            ["a", "", "b", "c"]
        );
        assert_eq!(cells_at("1|2,5|x", b'|').unwrap(), ["1", "2,5", "x"]);
        assert_eq!(cells_at("a,b;c", b';').unwrap(), ["a,b", "c"]);
    }

    #[test]
    fn plain_and_trimmed() {
        assert_eq!(cells("a, b ,\tc").unwrap(), ["a", "b", "c"]);
        assert_eq!(cells("").unwrap(), [""]);
        assert_eq!(cells("a,,").unwrap(), ["a", "", ""]);
    }

    #[test]
    fn quoted_cells_keep_whitespace_and_commas() {
        assert_eq!(
            cells(r#"1," NAVI MUMBAI, MH ",x"#).unwrap(),
            ["1", " NAVI MUMBAI, MH ", "x"]
        );
        assert_eq!(cells(r#" "a" ,"b""c""""#).unwrap(), ["a", "b\"c\""]);
        assert_eq!(
            cells("\"line\r\nbreak\",2").unwrap(),
            ["line\r\nbreak", "2"]
        );
        assert_eq!(cells(r#""""#).unwrap(), [""]);
    }

    #[test]
    fn count_fields_agrees_with_split() {
        for record in [
            "a, b ,\tc",
            "",
            "a,,",
            r#"1," NAVI MUMBAI, MH ",x"#,
            r#" "a" ,"b""c""""#,
            "\"line\r\nbreak\",2",
            r#""""#,
            r#"a"b,c"#,
            r#""a"b,c"#,
            r#""abc"#,
            "T991,C1,1/1/1800,M,\"YATA,1.0\nT992,C2,\"X, Y\",3",
        ] {
            assert_eq!(
                count_fields(record.as_bytes(), b','),
                cells(record).map(|c| c.len()),
                "{record:?}"
            );
        }
    }

    #[test]
    fn stray_quotes_are_errors() {
        assert_eq!(cells(r#"a"b,c"#), Err(CellError::StrayQuote));
        assert_eq!(cells(r#""a"b,c"#), Err(CellError::TextAfterQuote));
        assert_eq!(cells(r#""abc"#), Err(CellError::Unterminated));
    }
}
