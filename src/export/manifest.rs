//! `manifest.json`: what a quarter's version holds, how it was made, and the control
//! totals it was reconciled against (issue #10 names every field). The same document is
//! written twice: in the version's folder, and, last, as `quarter=…/manifest.json`, the
//! commit marker that names the current version.

use serde::{Deserialize, Serialize};

use super::drift::FeatureDrift;
use super::parquet::Column;

/// The `dataset` value.
pub const DATASET: &str = "bankpipe-quarterly";

/// The whole manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// Always [`DATASET`].
    pub dataset: &'static str,
    /// e.g. `2016Q3`.
    pub quarter: String,
    /// The version `V` (16 hex digits).
    pub version: String,
    /// Version of the feature definitions.
    pub feature_version: u32,
    /// When this version was written (RFC 3339, UTC).
    pub created_at: String,
    /// Whether a month of the quarter had no loaded transaction (`--allow-partial`).
    pub partial: bool,
    /// The ISO 4217 code of every amount (`amount`, `amount_*`, `control.amount_sum`):
    /// an export never mixes currencies.
    pub currency: String,
    /// Loaded transactions per month of the quarter.
    pub months: Vec<MonthRows>,
    /// How ids were pseudonymised.
    pub pseudonymisation: Pseudonymisation,
    /// The data files.
    pub files: Vec<FileDoc>,
    /// The loaded source files holding rows dated up to the quarter's end.
    pub sources: Vec<SourceDoc>,
    /// The warehouse's own totals for the quarter, which every file was reconciled to.
    pub control: Control,
    /// Drift against the previous quarter.
    pub drift: DriftDoc,
}

/// Rows of one month.
#[derive(Debug, Clone, Serialize)]
pub struct MonthRows {
    /// `YYYY-MM`.
    pub month: String,
    /// Loaded transactions dated in it.
    pub rows: u64,
}

/// Pseudonymisation of ids.
#[derive(Debug, Clone, Serialize)]
pub struct Pseudonymisation {
    /// `HMAC-SHA256`.
    pub method: &'static str,
    /// A hash of the key (never the key).
    pub key_id: String,
}

/// One data file.
#[derive(Debug, Clone, Serialize)]
pub struct FileDoc {
    /// File name, e.g. `transactions.parquet`.
    pub name: String,
    /// Path relative to the export root (`quarter=…/version=…/name`): what readers open.
    pub path: String,
    /// Rows.
    pub rows: u64,
    /// Size.
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Its columns.
    pub schema: Vec<ColumnDoc>,
}

/// One column of a data file.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnDoc {
    /// Name.
    pub name: &'static str,
    /// Type (`string`, `int32`, `int64`, `double`, `bool`, `timestamp[us]`, `date32`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Whether it may be null.
    pub nullable: bool,
    /// One line.
    pub description: &'static str,
}

impl ColumnDoc {
    /// The documentation of a dataset's columns.
    pub fn of(columns: &[Column]) -> Vec<ColumnDoc> {
        columns
            .iter()
            .map(|c| ColumnDoc {
                name: c.name,
                kind: c.kind.name(),
                nullable: c.nullable,
                description: c.description,
            })
            .collect()
    }
}

/// One loaded source file the quarter was computed from.
#[derive(Debug, Clone, Serialize)]
pub struct SourceDoc {
    /// Catalog id.
    pub file_id: i64,
    /// Name as received.
    pub original_name: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Its loaded rows dated up to the quarter's end (every one feeds some history).
    pub rows: u64,
    /// Of those, the rows dated in the quarter.
    pub rows_in_quarter: u64,
}

/// Control totals read from the warehouse.
#[derive(Debug, Clone, Serialize)]
pub struct Control {
    /// Loaded transactions dated in the quarter.
    pub rows: u64,
    /// Their exact sum, as a decimal text.
    pub amount_sum: String,
}

/// Drift section.
#[derive(Debug, Clone, Serialize)]
pub struct DriftDoc {
    /// The quarter compared against; `None` when there was no earlier data.
    pub previous_quarter: Option<String>,
    /// What the comparison covers, or why there is none.
    pub note: String,
    /// Names of flagged features.
    pub flagged: Vec<String>,
    /// Per feature.
    pub features: Vec<FeatureDrift>,
}

/// The few fields read back from a published manifest (to tell which version is
/// current).
#[derive(Debug, Clone, Deserialize)]
pub struct Published {
    /// The version it names.
    pub version: String,
}
