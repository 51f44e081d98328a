//! Reading input files: what format and compression a file is in, decompressing it as a
//! stream, cutting the stream into records ([`split`]) and records into cells ([`csv`],
//! [`json`]).
//!
//! Nothing here knows about profiles or rules; it only guarantees that every byte of the
//! input ends up in exactly one record (or is a blank line, a line terminator or JSON
//! punctuation) and that memory stays bounded whatever the file size.

pub mod csv;
pub mod json;
pub mod split;

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The record syntax of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON object per line (`.ndjson`, `.jsonl`).
    Ndjson,
    /// One JSON array of objects (`.json`).
    JsonArray,
}

impl Format {
    /// Name used in the catalog and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::JsonArray => "json",
        }
    }
}

/// The compression wrapped around a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip (`.gz`), possibly multi-member.
    Gzip,
    /// Zstandard (`.zst`).
    Zstd,
}

impl Compression {
    /// Detects compression from the first bytes (magic numbers), so a mislabelled
    /// extension does not matter.
    pub fn sniff(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// Name used in the catalog and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// What the extension says about the format, after removing `.gz`/`.zst`.
pub fn format_from_name(name: &str) -> Option<Format> {
    let lower = name.to_ascii_lowercase();
    let stem = lower
        .strip_suffix(".gz")
        .or_else(|| lower.strip_suffix(".gzip"))
        .or_else(|| lower.strip_suffix(".zst"))
        .or_else(|| lower.strip_suffix(".zstd"))
        .unwrap_or(&lower);
    let ext = stem.rsplit_once('.').map(|(_, e)| e)?;
    match ext {
        "csv" => Some(Format::Csv),
        "ndjson" | "jsonl" => Some(Format::Ndjson),
        "json" => Some(Format::JsonArray),
        _ => None,
    }
}

/// The extension a landed object keeps: the format bankpipe read it as (`csv`,
/// `ndjson`, `json`), then the suffix of the compression detected from the bytes
/// (`.gz`, `.zst`). The key says what the object holds whatever the name says or
/// lacks: a gzip file named `x.csv` lands as `….csv.gz`, a plain file named `x.csv.gz`
/// as `….csv`, a gzip file named `c.gz` as `….csv.gz`, `x.jsonl` as `….ndjson`.
pub fn lake_extension(format: Format, compression: Compression) -> String {
    let inner = format.name();
    match compression {
        Compression::None => inner.to_owned(),
        Compression::Gzip => format!("{inner}.gz"),
        Compression::Zstd => format!("{inner}.zst"),
    }
}

/// Decides the format from the extension, or from the first non-blank decompressed byte
/// when the extension says nothing (`[` JSON array, `{` NDJSON, else CSV). A `.json`
/// file that starts with `{` is read as NDJSON.
pub fn sniff_format(name: &str, decoded_head: &[u8]) -> Format {
    let first = decoded_head
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(decoded_head)
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .copied();
    match (format_from_name(name), first) {
        (Some(Format::JsonArray), Some(b'{')) => Format::Ndjson,
        (Some(f), _) => f,
        (None, Some(b'[')) => Format::JsonArray,
        (None, Some(b'{')) => Format::Ndjson,
        (None, _) => Format::Csv,
    }
}

/// Default of `max_decompressed_bytes`: 16 GiB, about 190 million rows of the Kaggle
/// layout in one file, 19 times the largest file measured in `docs/BENCHMARKS.md`
/// (10M rows, under 1 GB), while a compression bomb is cut after a minute or so of
/// decompressing instead of running for as long as it expands (a gzip file of 50 MB
/// can expand to 50 GB, a zstd one of 2 MB to as much).
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 16 << 30;

/// Wraps `reader` in the decompressor for `compression`. A compressed stream stops
/// with an [`io::ErrorKind::InvalidData`] error naming the limit once it would give
/// more than `max_decompressed_bytes` ([`TooLarge`]); a plain file is not limited (its
/// size on disk is its size: nothing expands).
///
/// # Errors
/// When the zstd decoder cannot be set up.
pub fn decoder<R: Read + Send + 'static>(
    reader: R,
    compression: Compression,
    max_decompressed_bytes: u64,
) -> io::Result<Box<dyn Read + Send>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(Limited::new(
            flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(
                1 << 16,
                Marked(reader),
            )),
            compression,
            max_decompressed_bytes,
        )),
        Compression::Zstd => Box::new(Limited::new(
            zstd::stream::read::Decoder::new(Marked(reader))?,
            compression,
            max_decompressed_bytes,
        )),
    })
}

/// Why a compressed file was not read to its end: it decompresses to more than the
/// limit (carried as the source of an [`io::ErrorKind::InvalidData`] error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The compression of the file.
    pub compression: Compression,
    /// The limit, in bytes.
    pub limit: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} content decompresses to more than {} (max_decompressed_bytes, \
             --max-decompressed-bytes, BANKPIPE_MAX_DECOMPRESSED_BYTES); not read further: a \
             compression bomb, or a file larger than the limit allows (then raise it)",
            self.compression.name(),
            human_bytes(self.limit)
        )
    }
}

impl std::error::Error for TooLarge {}

/// An error of the reader under a decompressor (the file, or the lake's decrypting
/// reader), marked so that [`Limited`] passes it on as it was instead of blaming the
/// compressed data.
#[derive(Debug)]
struct Underneath(io::Error);

impl std::fmt::Display for Underneath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Underneath {}

/// Marks the errors of the reader under a decompressor ([`Underneath`]).
#[derive(Debug)]
struct Marked<R>(R);

impl<R: Read> Read for Marked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), Underneath(e)))
    }
}

/// A decompressed stream that gives at most `limit` bytes, and an error rather than
/// a silent end when there are more. The decompressor's own errors say that the
/// compressed data is truncated or damaged (its messages alone, such as "incomplete
/// deflate stream", do not say which file format they are about); errors of the
/// reader under it pass as they were.
#[derive(Debug)]
struct Limited<R> {
    inner: R,
    left: u64,
    exceeded: TooLarge,
}

impl<R> Limited<R> {
    fn new(inner: R, compression: Compression, limit: u64) -> Limited<R> {
        Limited {
            inner,
            left: limit,
            exceeded: TooLarge { compression, limit },
        }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // Exactly at the limit: fine if the stream ends here.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(io::ErrorKind::InvalidData, self.exceeded)),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want]).map_err(|e| {
            let kind = e.kind();
            if e.get_ref().is_some_and(|inner| inner.is::<Underneath>()) {
                return match e.into_inner().map(|inner| inner.downcast::<Underneath>()) {
                    Some(Ok(under)) => under.0,
                    Some(Err(other)) => io::Error::new(kind, other),
                    None => io::Error::from(kind),
                };
            }
            io::Error::new(
                kind,
                format!(
                    "the {} data is truncated or damaged: {e}",
                    self.exceeded.compression.name()
                ),
            )
        })?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// A byte count as people write it: `16 GiB`, `256 MiB`, `1.5 KiB`, `512 bytes`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut unit = 0;
    let mut whole = 1024u64;
    while unit + 1 < UNITS.len() && bytes >= whole * 1024 {
        whole *= 1024;
        unit += 1;
    }
    if bytes.is_multiple_of(whole) {
        format!("{} {}", bytes / whole, UNITS[unit])
    } else {
        // Tenths, rounded down: never more than the exact value.
        let tenths = u128::from(bytes) * 10 / u128::from(whole);
        format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
    }
}

/// Parses a size: a whole number of bytes (`1000000`), or a number with a unit,
/// decimal (`kB`/`KB`, `MB`, `GB`, `TB`: powers of 1000) or binary (`KiB`, `MiB`, `GiB`,
/// `TiB`: powers of 1024), case-insensitive, with or without a space (`16GiB`,
/// `500 MB`). Fractions are refused (`1.5GB`): a size is whole bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let number: u64 = text[..digits].parse().ok()?;
    let unit = text[digits..].trim().to_ascii_lowercase();
    let factor: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000u64.pow(2),
        "g" | "gb" => 1000u64.pow(3),
        "t" | "tb" => 1000u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Where a [`Counting`] reader leaves the SHA-256 (hex) and size of everything it
/// read, once it reached the end.
pub type DigestSlot = Arc<std::sync::Mutex<Option<(String, u64)>>>;

/// A reader that counts the bytes it passes (for progress, across threads) and hashes
/// them, so the bytes actually parsed can be checked against the file's fingerprint.
#[derive(Debug)]
pub struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
    hasher: sha2::Sha256,
    bytes: u64,
    digest: Option<DigestSlot>,
}

impl<R> Counting<R> {
    /// Wraps `inner`; `count` grows by every byte read.
    pub fn new(inner: R, count: Arc<AtomicU64>) -> Counting<R> {
        Counting {
            inner,
            count,
            hasher: sha2::Digest::new(),
            bytes: 0,
            digest: None,
        }
    }

    /// Also hashes the bytes; the digest lands in `slot` at the end of the stream.
    pub fn with_digest(mut self, slot: DigestSlot) -> Counting<R> {
        self.digest = Some(slot);
        self
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(slot) = &self.digest {
            if n == 0 {
                let digest = crate::hex::encode(&sha2::Digest::finalize(self.hasher.clone()));
                if let Ok(mut s) = slot.lock() {
                    *s = Some((digest, self.bytes));
                }
            } else {
                sha2::Digest::update(&mut self.hasher, &buf[..n]);
                self.bytes += n as u64;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_names() {
        assert_eq!(format_from_name("a.CSV"), Some(Format::Csv));
        assert_eq!(format_from_name("a.csv.gz"), Some(Format::Csv));
        assert_eq!(format_from_name("a.jsonl.zst"), Some(Format::Ndjson));
        assert_eq!(format_from_name("a.json"), Some(Format::JsonArray));
        assert_eq!(format_from_name("a.txt"), None);
        assert_eq!(format_from_name("noext"), None);
    }

    #[test]
    fn lake_extensions_are_the_detected_format_and_compression() {
        let ext = |name: &str, head: &[u8], compression| {
            lake_extension(sniff_format(name, head), compression)
        };
        assert_eq!(ext("x.csv", b"a,b", Compression::None), "csv");
        assert_eq!(ext("x.CSV.GZ", b"a,b", Compression::Gzip), "csv.gz");
        assert_eq!(ext("x.ndjson.zst", b"{}", Compression::Zstd), "ndjson.zst");
        assert_eq!(ext("x.jsonl", b"{}", Compression::None), "ndjson");
        assert_eq!(ext("x.json", b"{}", Compression::None), "ndjson");
        assert_eq!(ext("x.json", b"[{}]", Compression::None), "json");
        // No usable extension in the name: the bytes decide.
        assert_eq!(ext("noext", b"a,b", Compression::None), "csv");
        assert_eq!(ext("c.gz", b"a,b", Compression::Gzip), "csv.gz");
        assert_eq!(ext("j.gz", b" [{}]", Compression::Gzip), "json.gz");
        assert_eq!(ext("n.zst", b"{}", Compression::Zstd), "ndjson.zst");
        assert_eq!(ext("we ird.c$v", b"a,b", Compression::None), "csv");
        // The compression comes from the bytes, not the name.
        assert_eq!(ext("x.csv", b"a,b", Compression::Gzip), "csv.gz");
        assert_eq!(ext("x.csv.gz", b"a,b", Compression::None), "csv");
        assert_eq!(ext("x.csv.gz", b"a,b", Compression::Zstd), "csv.zst");
    }

    #[test]
    fn sniffing() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"a,b"), Compression::None);
        assert_eq!(sniff_format("x.json", b"  {\"a\":1}\n"), Format::Ndjson);
        assert_eq!(sniff_format("x.json", b"[{}]"), Format::JsonArray);
        assert_eq!(
            sniff_format("x.dat", b"\xEF\xBB\xBF[{}]"),
            Format::JsonArray
        );
        assert_eq!(sniff_format("x.dat", b"a,b\n"), Format::Csv);
    }

    #[test]
    fn decoders_round_trip() {
        use std::io::Write;
        let text = b"a,b\n1,2\n".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let mut out = Vec::new();
        decoder(io::Cursor::new(gz), Compression::Gzip, u64::MAX)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, text);
        let zs = zstd::encode_all(&text[..], 1).unwrap();
        let mut out = Vec::new();
        decoder(io::Cursor::new(zs), Compression::Zstd, u64::MAX)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, text);
    }

    /// Reads `compressed` through a decoder limited to `limit` bytes.
    fn read_limited(compressed: Vec<u8>, c: Compression, limit: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decoder(io::Cursor::new(compressed), c, limit)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decompression_stops_past_the_limit_with_the_reason() {
        use std::io::Write;
        let text = vec![b'\n'; 100_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&text[..], 1).unwrap();
        for (c, bytes) in [(Compression::Gzip, gz), (Compression::Zstd, zs)] {
            // Exactly the limit: read whole.
            assert_eq!(
                read_limited(bytes.clone(), c, 100_000).unwrap().len(),
                100_000
            );
            // One byte more than the limit: an error naming it, never a short read.
            let e = read_limited(bytes, c, 99_999).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            let too_large = e
                .get_ref()
                .and_then(|e| e.downcast_ref::<TooLarge>())
                .copied()
                .unwrap();
            assert_eq!(too_large.limit, 99_999);
            let message = e.to_string();
            assert!(message.contains("more than 97.6 KiB"), "{message}");
            assert!(
                message.contains("BANKPIPE_MAX_DECOMPRESSED_BYTES"),
                "{message}"
            );
            assert!(message.contains(c.name()), "{message}");
        }
        // A plain stream is not limited.
        assert_eq!(
            read_limited(vec![b'x'; 10], Compression::None, 1)
                .unwrap()
                .len(),
            10
        );
    }

    #[test]
    fn damaged_compressed_data_is_named_and_errors_underneath_pass_as_they_were() {
        use std::io::Write;
        let text: String = (0..20_000u64)
            .map(|i| format!("{i},{}\n", i * 7919 % 10_007))
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(text.as_bytes(), 1).unwrap();
        for (c, bytes) in [(Compression::Gzip, gz), (Compression::Zstd, zs)] {
            assert!(bytes.len() > 1000, "{}", bytes.len());
            let cut = bytes[..bytes.len() / 2].to_vec();
            let e = read_limited(cut, c, u64::MAX).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("the {} data is truncated or damaged: ", c.name())),
                "{e}"
            );
            /// A reader that fails after its first bytes, as a damaged lake object does.
            struct Failing(Vec<u8>);
            impl Read for Failing {
                fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                    if self.0.is_empty() {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "tampered"));
                    }
                    let n = buf.len().min(self.0.len()).min(100);
                    buf[..n].copy_from_slice(&self.0[..n]);
                    self.0.drain(..n);
                    Ok(n)
                }
            }
            let mut out = Vec::new();
            let e = decoder(Failing(bytes[..200].to_vec()), c, u64::MAX)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap_err();
            assert_eq!(e.to_string(), "tampered");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
    }

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("0", 0),
            ("1000000", 1_000_000),
            ("16GiB", 16 << 30),
            ("16 gib", 16 << 30),
            ("500MB", 500_000_000),
            ("2 TB", 2_000_000_000_000),
            ("64KiB", 65_536),
            ("3k", 3000),
            ("12 b", 12),
        ] {
            assert_eq!(parse_size(text), Some(bytes), "{text}");
        }
        for bad in [
            "",
            "GiB",
            "1.5GB",
            "-1",
            "10 parsecs",
            "99999999999999999999",
            "20000000TiB",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(human_bytes(16 << 30), "16 GiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
        assert_eq!(human_bytes(256 << 20), "256 MiB");
        assert_eq!(human_bytes(500_000_000), "476.8 MiB");
    }
}
