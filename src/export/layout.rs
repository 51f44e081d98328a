//! Where a quarter's files go and what names its version (issue #10).
//!
//! ```text
//! <out>/quarter=2016Q3/version=<V>/customers.parquet
//!                                 /transactions.parquet
//!                                 /daily.parquet
//!                                 /drift.html
//!                                 /manifest.json     written after the files above
//! <out>/quarter=2016Q3/manifest.json                 written last: the commit marker
//! ```
//!
//! Hive-style names, so Polars, DuckDB, Spark and pyarrow read `quarter` and `version` as
//! columns. Every object is uploaded whole (multipart, visible only once complete), and
//! the marker is written only after the version's own manifest, so a reader that follows
//! the marker never sees a half-written version, on S3 too, where there is no rename.
//!
//! `V` is the first 16 hex digits of a SHA-256 over everything the quarter's rows depend
//! on ([`version`]); an existing `V` is not written again.

use sha2::{Digest, Sha256};

use super::features::FEATURE_VERSION;
use super::quarter::Quarter;
use crate::warehouse::SourceFile;

/// The three data files, in the order they are written and listed.
pub const DATA_FILES: [&str; 3] = ["customers.parquet", "transactions.parquet", "daily.parquet"];

/// The drift report's name.
pub const DRIFT_HTML: &str = "drift.html";

/// The manifest's name (in the version folder and, as the marker, in the quarter's).
pub const MANIFEST: &str = "manifest.json";

/// `quarter=2016Q3`.
pub fn quarter_dir(q: Quarter) -> String {
    format!("quarter={q}")
}

/// `quarter=2016Q3/version=<V>`.
pub fn version_dir(q: Quarter, version: &str) -> String {
    format!("{}/version={version}", quarter_dir(q))
}

/// Key of a file of a version.
pub fn version_file(q: Quarter, version: &str, name: &str) -> String {
    format!("{}/{name}", version_dir(q, version))
}

/// Key of the commit marker: `quarter=2016Q3/manifest.json`.
pub fn marker(q: Quarter) -> String {
    format!("{}/{MANIFEST}", quarter_dir(q))
}

/// The version `V` of a quarter: SHA-256 over, one line each, the quarter, the feature
/// definitions version, the pseudonym key id, whether the export is partial, and, for
/// every loaded source file holding rows dated up to the quarter's end (sorted by its
/// sha256): its sha256, its catalog totals (`rows_loaded`, `amount_loaded`, which a
/// `reprocess` changes) and its rows dated up to the quarter's end. First 16 hex digits.
///
/// A later month's file holds no row dated up to the end, so it leaves `V` unchanged;
/// an older late file changes it (history features look back).
pub fn version(q: Quarter, sources: &[SourceFile], key_id: &str, partial: bool) -> String {
    let mut sorted: Vec<&SourceFile> = sources.iter().filter(|s| s.rows > 0).collect();
    sorted.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    let mut h = Sha256::new();
    h.update(format!(
        "bankpipe-quarterly\nquarter {q}\nfeature_version {FEATURE_VERSION}\nkey_id {key_id}\npartial {partial}\n"
    ));
    for s in sorted {
        h.update(format!(
            "source {} {} {} {}\n",
            s.sha256, s.rows_loaded, s.amount_loaded, s.rows
        ));
    }
    crate::hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(sha: &str, rows: u64) -> SourceFile {
        SourceFile {
            file_id: 1,
            original_name: "a.csv".into(),
            sha256: sha.into(),
            rows_loaded: rows,
            amount_loaded: "10.00".into(),
            rows,
            rows_in_quarter: rows,
        }
    }

    #[test]
    fn version_depends_on_inputs_not_their_order() {
        let q = Quarter::parse("2016Q3").unwrap();
        let a = [source("aa", 1), source("bb", 2)];
        let b = [source("bb", 2), source("aa", 1)];
        let v = version(q, &a, "k1", false);
        assert_eq!(v.len(), 16);
        assert_eq!(v, version(q, &b, "k1", false));
        assert_ne!(v, version(q, &a, "k2", false), "key id");
        assert_ne!(v, version(q, &a, "k1", true), "partial");
        assert_ne!(v, version(q.next(), &a, "k1", false), "quarter");
        assert_ne!(v, version(q, &a[..1], "k1", false), "a source");
        let mut reprocessed = a.clone();
        reprocessed[0].amount_loaded = "9.00".into();
        assert_ne!(v, version(q, &reprocessed, "k1", false), "catalog totals");
        let mut with_later = a.to_vec();
        with_later.push(source("cc", 0));
        assert_eq!(
            v,
            version(q, &with_later, "k1", false),
            "a file without rows up to the end"
        );
    }

    #[test]
    fn paths() {
        let q = Quarter::parse("2016Q3").unwrap();
        assert_eq!(
            version_file(q, "0123456789abcdef", "daily.parquet"),
            "quarter=2016Q3/version=0123456789abcdef/daily.parquet"
        );
        assert_eq!(marker(q), "quarter=2016Q3/manifest.json");
    }
}
