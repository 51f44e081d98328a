//! `bankpipe check`: the whole contract applied to files without loading them.
//!
//! Same parse, validation and report as a run. Duplicates are detected within each file
//! only (there is no warehouse to compare with), by a map from a 64-bit hash of the
//! transaction id to a hash of its content. Past [`SPILL_AFTER_IDS`] distinct ids the
//! map is spilled to temporary files partitioned by id hash and the rest of the file is
//! classified partition by partition at the end, so memory stays bounded (~40 MB for
//! the map) whatever the file size.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::config::Config;
use crate::lake;
use crate::pipeline::{detect_kind, open_decoded};
use crate::progress::Progress;
use crate::report::{FileReport, Outcome};
use crate::scan;
use crate::validate::Rule;
use crate::warehouse::Tally;

/// Distinct ids kept in memory before spilling to disk.
pub const SPILL_AFTER_IDS: usize = 1_500_000;

/// Partitions of the spill.
const PARTITIONS: u64 = 32;

type IdMap = HashMap<u64, u64, BuildHasherDefault<Identity>>;

/// In-file duplicate detection with bounded memory: first occurrence of an id is
/// loaded, a later identical one is a duplicate, a later different one a conflict.
struct Dedup {
    seen: IdMap,
    limit: usize,
    scale: u8,
    spill: Option<Vec<std::io::BufWriter<std::fs::File>>>,
}

/// One spilled row: id, content, amount (minor units), warnings, and whether it was
/// already counted (ids known before the spill).
const RECORD: usize = 8 + 8 + 8 + 2 + 1;

impl Dedup {
    fn new(limit: usize, scale: u8) -> Dedup {
        Dedup {
            seen: IdMap::with_capacity_and_hasher(1 << 16, BuildHasherDefault::default()),
            limit,
            scale,
            spill: None,
        }
    }

    fn classify(
        seen: &mut IdMap,
        id: u64,
        content: u64,
        amount: crate::model::Amount,
        warnings: crate::validate::Warnings,
        t: &mut Tally,
    ) {
        match seen.get(&id) {
            None => {
                seen.insert(id, content);
                t.rows_loaded += 1;
                t.amount_loaded.add(amount);
                t.warnings.add(warnings);
            }
            Some(c) if *c == content => {
                t.rows_duplicate += 1;
                t.amount_duplicate.add(amount);
            }
            Some(_) => {
                t.rows_rejected += 1;
                t.amount_rejected.add(amount);
                *t.rejects.entry(Rule::ConflictingDuplicate).or_default() += 1;
            }
        }
    }

    fn write(
        parts: &mut [std::io::BufWriter<std::fs::File>],
        id: u64,
        content: u64,
        minor: i64,
        warnings: u16,
        counted: bool,
    ) -> std::io::Result<()> {
        use std::io::Write;
        let mut rec = [0u8; RECORD];
        rec[0..8].copy_from_slice(&id.to_le_bytes());
        rec[8..16].copy_from_slice(&content.to_le_bytes());
        rec[16..24].copy_from_slice(&minor.to_le_bytes());
        rec[24..26].copy_from_slice(&warnings.to_le_bytes());
        rec[26] = u8::from(counted);
        parts[(id % PARTITIONS) as usize].write_all(&rec)
    }

    fn add(&mut self, row: &scan::RowDigest, t: &mut Tally) -> std::io::Result<()> {
        if let Some(parts) = &mut self.spill {
            return Self::write(
                parts,
                row.id,
                row.content,
                row.amount.minor,
                row.warnings.0,
                false,
            );
        }
        Self::classify(
            &mut self.seen,
            row.id,
            row.content,
            row.amount,
            row.warnings,
            t,
        );
        if self.seen.len() >= self.limit {
            let mut parts = (0..PARTITIONS)
                .map(|_| tempfile::tempfile().map(std::io::BufWriter::new))
                .collect::<std::io::Result<Vec<_>>>()?;
            for (id, content) in std::mem::take(&mut self.seen) {
                Self::write(&mut parts, id, content, 0, 0, true)?;
            }
            self.spill = Some(parts);
        }
        Ok(())
    }

    fn finish(self, t: &mut Tally) -> std::io::Result<()> {
        use std::io::{Read, Seek};
        let Some(parts) = self.spill else {
            return Ok(());
        };
        for part in parts {
            let mut file = part
                .into_inner()
                .map_err(std::io::IntoInnerError::into_error)?;
            file.seek(std::io::SeekFrom::Start(0))?;
            let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
            let mut seen = IdMap::default();
            let mut rec = [0u8; RECORD];
            loop {
                match reader.read_exact(&mut rec) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
                let word = |r: std::ops::Range<usize>| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&rec[r]);
                    b
                };
                let id = u64::from_le_bytes(word(0..8));
                let content = u64::from_le_bytes(word(8..16));
                if rec[26] == 1 {
                    seen.insert(id, content);
                    continue;
                }
                let amount = crate::model::Amount {
                    minor: i64::from_le_bytes(word(16..24)),
                    scale: self.scale,
                };
                let warnings = crate::validate::Warnings(u16::from_le_bytes([rec[24], rec[25]]));
                Self::classify(&mut seen, id, content, amount, warnings, t);
            }
        }
        Ok(())
    }
}

/// Passes a `u64` key through unchanged.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Checks one file against the contract.
pub fn check_file(config: &Config, path: &Path, progress: &mut dyn Progress) -> FileReport {
    let clock = Instant::now();
    let name = path.display().to_string();
    let mut report = FileReport::new(&name, Outcome::Checked);
    let fail = |mut report: FileReport, e: String| {
        report.status = Outcome::Failed;
        report.error = Some(e);
        report.elapsed_s = clock.elapsed().as_secs_f64();
        report
    };
    // The digest is computed on its own thread while the rows are checked.
    let digest = {
        let path = path.to_owned();
        std::thread::spawn(move || std::fs::File::open(path).and_then(lake::fingerprint))
    };
    let (format, compression) = match detect_kind(path) {
        Ok(k) => k,
        Err(e) => return fail(report, format!("cannot read {}: {e}", path.display())),
    };
    let counter = Arc::new(AtomicU64::new(0));
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    progress.file_started(&name, size);
    let scanner = open_decoded(
        path,
        compression,
        Arc::clone(&counter),
        config.max_decompressed_bytes,
    )
    .map_err(scan::FileError::Read)
    .and_then(|input| scan::start(input, format, &config.profiles, config.workers, false));
    let mut scanner = match scanner {
        Ok(s) => s,
        Err(e) => {
            let r = fail(report, e.to_string());
            progress.file_finished(r.status.name());
            return r;
        }
    };
    let scale = scanner.layout.profile.scale;
    let scanner_formats = scanner.layout.profile.all_format_names();
    report.profile = Some(scanner.layout.profile.name.clone());
    // Keys are already well-mixed hashes: hashing them again would only cost time.
    let mut dedup = Dedup::new(SPILL_AFTER_IDS, scale);
    let mut t = Tally::default();
    while let Some(batch) = scanner.next_batch() {
        t.rows_read += batch.rows_read;
        t.amount_read.merge(&batch.amount_read);
        t.formats.merge(&batch.formats);
        for row in &batch.digests {
            if let Err(e) = dedup.add(row, &mut t) {
                return fail(report, format!("duplicate detection spill file: {e}"));
            }
        }
        for r in &batch.rejects {
            t.rows_rejected += 1;
            if let Some(a) = &r.rejection.amount {
                t.amount_rejected.add_parsed(a);
            }
            *t.rejects.entry(r.rejection.rule).or_default() += 1;
        }
        progress.advanced(counter.load(Ordering::Relaxed), t.rows_read);
    }
    if let Err(e) = scanner.finish() {
        let r = fail(report, e.to_string());
        progress.file_finished(r.status.name());
        return r;
    }
    if let Err(e) = dedup.finish(&mut t) {
        return fail(report, format!("duplicate detection spill file: {e}"));
    }
    t.judge(config.max_reject_share);
    report.set_tally(&t, scale);
    report.set_formats(&t, &scanner_formats);
    match digest.join() {
        Ok(Ok((sha, bytes))) => {
            report.sha256 = Some(sha);
            report.bytes = bytes;
        }
        Ok(Err(e)) => t.failure = Some(format!("cannot read {}: {e}", path.display())),
        Err(_) => t.failure = Some("digest thread panicked".into()),
    }
    if let Some(f) = t.failure {
        report.status = Outcome::Failed;
        report.error = Some(f);
    }
    report.elapsed_s = clock.elapsed().as_secs_f64();
    progress.file_finished(report.status.name());
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Amount;
    use crate::validate::Warnings;

    fn tally_with(limit: usize, rows: &[(u64, u64, i64)]) -> Tally {
        let mut d = Dedup::new(limit, 2);
        let mut t = Tally::default();
        for (id, content, minor) in rows {
            let row = scan::RowDigest {
                id: *id,
                content: *content,
                amount: Amount {
                    minor: *minor,
                    scale: 2,
                },
                warnings: Warnings(u16::from(*minor % 2 == 0)),
            };
            d.add(&row, &mut t).unwrap();
        }
        d.finish(&mut t).unwrap();
        t
    }

    #[test]
    fn spilling_gives_the_same_answer_as_memory() {
        // Ids repeat before and after the spill point, identical and changed.
        let mut rows = Vec::new();
        for i in 0..500u64 {
            let id = i * 7919 % 211;
            let content = if i % 2 == 0 { id } else { 1000 + i % 3 };
            rows.push((id, content, i as i64));
        }
        let in_memory = tally_with(usize::MAX, &rows);
        for limit in [1, 2, 17, 100, 210] {
            assert_eq!(tally_with(limit, &rows), in_memory, "limit {limit}");
        }
        assert!(in_memory.rows_duplicate > 0 && in_memory.rows_rejected > 0);
        assert_eq!(
            in_memory.rows_loaded + in_memory.rows_duplicate + in_memory.rows_rejected,
            500
        );
    }
}
