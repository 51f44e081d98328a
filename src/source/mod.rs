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

/// Wraps `reader` in the decompressor for `compression`.
///
/// # Errors
/// When the zstd decoder cannot be set up.
pub fn decoder<R: Read + Send + 'static>(
    reader: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + Send>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 16, reader),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
    })
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
        decoder(io::Cursor::new(gz), Compression::Gzip)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, text);
        let zs = zstd::encode_all(&text[..], 1).unwrap();
        let mut out = Vec::new();
        decoder(io::Cursor::new(zs), Compression::Zstd)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, text);
    }
}
