//! `bankpipe check`: the whole contract applied to files without loading them.
//!
//! Same parse, validation and report as a run. Duplicates are detected within each file
//! only (there is no warehouse to compare with), by a map from a 64-bit hash of the
//! transaction id to a hash of its content: memory grows by ~32 bytes per distinct id.

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
    let scanner = open_decoded(path, compression, Arc::clone(&counter))
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
    report.profile = Some(scanner.layout.profile.name.clone());
    // Keys are already well-mixed hashes: hashing them again would only cost time.
    let mut seen: HashMap<u64, u64, BuildHasherDefault<Identity>> =
        HashMap::with_capacity_and_hasher(1 << 16, BuildHasherDefault::default());
    let mut t = Tally::default();
    while let Some(batch) = scanner.next_batch() {
        t.rows_read += batch.rows_read;
        t.amount_read.merge(batch.amount_read);
        for row in &batch.digests {
            match seen.get(&row.id) {
                None => {
                    seen.insert(row.id, row.content);
                    t.rows_loaded += 1;
                    t.amount_loaded.add(row.amount);
                    t.warnings.add(row.warnings);
                }
                Some(c) if *c == row.content => {
                    t.rows_duplicate += 1;
                    t.amount_duplicate.add(row.amount);
                }
                Some(_) => {
                    t.rows_rejected += 1;
                    t.amount_rejected.add(row.amount);
                    *t.rejects.entry(Rule::ConflictingDuplicate).or_default() += 1;
                }
            }
        }
        for r in &batch.rejects {
            t.rows_rejected += 1;
            if let Some(a) = r.rejection.amount {
                t.amount_rejected.add(a);
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
    t.judge(config.max_reject_share);
    report.set_tally(&t, scale);
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
