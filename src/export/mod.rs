//! `bankpipe export` (issue #10): each quarter's ML-ready datasets, with point-in-time
//! features, pseudonymised ids, reconciled to the cent against the warehouse, with drift
//! against the previous quarter, written as Hive-style Parquet to a folder or `s3://`.
//!
//! [`export_quarter`] is the table of contents; its steps are numbered in the code:
//!
//! 1. inputs: the source files and months of the quarter (one read snapshot from here
//!    to step 5);
//! 2. completeness: a month without loaded transactions refuses the quarter unless
//!    `--allow-partial`; rows in more than one currency refuse it (2b);
//! 3. version `V` (`layout::version`): an existing `V` is up to date, nothing written;
//! 4. control totals from the warehouse's own SQL;
//! 5. every row dated before the quarter's end, sorted by customer (`build`);
//! 6. features, customer by customer (`features`);
//! 7. the three Parquet files, staged locally (`build`, `parquet`);
//! 8. reconciliation (`reconcile`): any mismatch and nothing is published;
//! 9. drift against the previous quarter (`sample`, `drift`);
//! 10. publish: data files, `drift.html`, the version's manifest, then the quarter's
//!     manifest (the commit marker) last (`layout`);
//! 11. the warehouse's quarter tables and `exports` row, in one transaction.
//!
//! Alongside: the pseudonymisation key (`pseudonym`, also behind `bankpipe pseudonymise`),
//! the drift statistics and page (`drift`), and the working folders in `DATA_DIR`
//! (`crate::workdir`, prefix [`WORK_PREFIX`]: locked while in use, removed on a signal
//! and, when stale, by the next export). Not here: the SQL (`warehouse::quarters`).

mod build;
pub mod drift;
pub mod features;
pub mod layout;
pub mod manifest;
pub mod parquet;
mod progress;
pub mod pseudonym;
mod publish;
pub mod quarter;
pub mod reconcile;
mod record;
mod records;
pub mod sample;
mod sort;
pub mod source;

use std::path::{Path, PathBuf};

use serde::Serialize;

use self::build::HmacKeys;
use self::features::{QuarterContext, Scale};
use self::manifest::{Control, DriftDoc, Manifest, MonthRows, Pseudonymisation, SourceDoc};
use self::progress::Progress;
pub use self::pseudonym::{KeyError, PseudonymKey};
use self::quarter::Quarter;
use self::reconcile::Totals;
use crate::lake::{Lake, LakeError};
use crate::warehouse::{QuarterInputs, Warehouse, WarehouseError};
use crate::workdir::{self, WorkDir};

/// Prefix of the export's working folders in the data folder (`DATA_DIR/.export-*`).
pub const WORK_PREFIX: &str = ".export-";

/// Why an export failed, and so its exit status ([`ExportError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A month of the quarter has no loaded transaction.
    #[error(
        "{quarter} is incomplete: no loaded transaction in {months}; nothing written (export it \
         anyway with --allow-partial)"
    )]
    Incomplete {
        /// The quarter.
        quarter: String,
        /// The empty months, `YYYY-MM`, joined.
        months: String,
    },
    /// No loaded transaction in the quarter at all: refused even with
    /// `--allow-partial` (there is no row to export), and reported `partial`.
    #[error(
        "nothing to export: no loaded transaction is dated in {0} (all three months are \
         empty; --allow-partial exports a quarter with at least one month of data)"
    )]
    EmptyQuarter(String),
    /// The rows the export reads (the quarter and its history) are in more than one
    /// currency: money features would add amounts of different currencies.
    #[error(
        "{quarter} cannot be exported: its transactions and their history are in more than \
         one currency ({detail}); amounts, sums, means and percentiles would add different \
         currencies together, so nothing is written (an export holds one currency)"
    )]
    Currencies {
        /// The quarter.
        quarter: String,
        /// Each currency with its rows in the quarter and before it.
        detail: String,
    },
    /// The warehouse holds no transactions (`--quarter latest`, `--all`).
    #[error("nothing to export: the warehouse holds no transactions")]
    NoData,
    /// The files do not add up to the warehouse's totals.
    #[error("{quarter}: reconciliation failed, nothing published: {detail}")]
    Reconciliation {
        /// The quarter.
        quarter: String,
        /// Every mismatch.
        detail: String,
    },
    /// An amount cannot be represented at the export's scale.
    #[error("{quarter}: {detail}")]
    Amounts {
        /// The quarter.
        quarter: String,
        /// What.
        detail: String,
    },
    /// No usable pseudonymisation key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The warehouse failed.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// The destination failed.
    #[error(transparent)]
    Destination(#[from] LakeError),
    /// A working file in the data folder failed (disk full, folder not writable).
    #[error("working files in {dir}: {source}")]
    Local {
        /// The working folder.
        dir: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The manifest could not be serialised.
    #[error("writing manifest.json: {0}")]
    Manifest(serde_json::Error),
    /// A Parquet file could not be written.
    #[error(transparent)]
    Write(#[from] parquet::WriteError),
}

impl ExportError {
    /// Exit status: 1 the export failed (incomplete, reconciliation, local files), 2 a
    /// setting (key, URL, credentials), 3 warehouse or destination unreachable.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExportError::Key(_) => 2,
            ExportError::Warehouse(e) => match e.fault() {
                crate::warehouse::Fault::Setup => 2,
                _ => 3,
            },
            ExportError::Destination(e) if e.is_setup() => 2,
            ExportError::Destination(_) => 3,
            _ => 1,
        }
    }
}

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// One quarter.
    One(Quarter),
    /// The latest quarter with loaded transactions.
    Latest,
    /// Every quarter with data, oldest first.
    All,
}

/// The options of one export.
#[derive(Debug, Clone)]
pub struct Options {
    /// Export a quarter with an empty month.
    pub allow_partial: bool,
    /// Write even when the version exists.
    pub force: bool,
    /// Folder for working files (sort runs, staged files): `DATA_DIR`.
    pub data_dir: PathBuf,
    /// Progress on stderr.
    pub progress: bool,
}

/// What happened to one quarter.
#[derive(Debug, Clone, Serialize)]
pub struct QuarterReport {
    /// e.g. `2016Q3`.
    pub quarter: String,
    /// `exported`, `up_to_date` or `failed`.
    pub status: &'static str,
    /// The version `V` (when it got that far).
    pub version: Option<String>,
    /// A month was empty.
    pub partial: bool,
    /// Transactions in the quarter.
    pub rows: Option<u64>,
    /// Their exact sum.
    pub amount_sum: Option<String>,
    /// Key of the quarter's commit marker under the destination.
    pub manifest: Option<String>,
    /// The months without transactions.
    pub empty_months: Vec<String>,
    /// Flagged drift features.
    pub flagged: Vec<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Seconds spent.
    pub elapsed_s: f64,
}

impl QuarterReport {
    fn new(q: Quarter) -> QuarterReport {
        QuarterReport {
            quarter: q.to_string(),
            status: "failed",
            version: None,
            partial: false,
            rows: None,
            amount_sum: None,
            manifest: None,
            empty_months: Vec::new(),
            flagged: Vec::new(),
            error: None,
            elapsed_s: 0.0,
        }
    }
}

/// The quarters `which` names, oldest first.
///
/// # Errors
/// [`ExportError::NoData`] for `Latest`/`All` on an empty warehouse; SQL failures.
pub fn quarters(warehouse: &mut Warehouse, which: Which) -> Result<Vec<Quarter>, ExportError> {
    if let Which::One(q) = which {
        return Ok(vec![q]);
    }
    let mut quarters: Vec<Quarter> = Vec::new();
    for (month, _) in warehouse.months_with_data()? {
        let date = source::parse_date(&format!("{month}-01"));
        if let Some(q) = date.map(Quarter::of)
            && quarters.last() != Some(&q)
        {
            quarters.push(q);
        }
    }
    match (which, quarters.last()) {
        (_, None) => Err(ExportError::NoData),
        (Which::Latest, Some(&q)) => Ok(vec![q]),
        _ => Ok(quarters),
    }
}

/// The empty months of `q` given its months with rows.
fn empty_months(q: Quarter, inputs: &QuarterInputs) -> Vec<String> {
    q.months()
        .iter()
        .map(|(y, m)| format!("{y:04}-{m:02}"))
        .filter(|m| !inputs.months.contains_key(m))
        .collect()
}

/// Exports one quarter (steps 1-11, see the module doc). Fills `report` as it goes, so
/// a failure still says what was known.
///
/// # Errors
/// [`ExportError`]; nothing is published unless every step up to 9 succeeded.
pub fn export_quarter(
    warehouse: &mut Warehouse,
    destination: &Lake,
    key: &PseudonymKey,
    q: Quarter,
    options: &Options,
    report: &mut QuarterReport,
) -> Result<(), ExportError> {
    let started = std::time::Instant::now();
    let mut progress = Progress::new(options.progress, q);
    warehouse.begin_snapshot()?;
    let result = steps(
        warehouse,
        destination,
        key,
        q,
        options,
        report,
        &mut progress,
    );
    report.elapsed_s = started.elapsed().as_secs_f64();
    if let Err(e) = &result {
        report.error = Some(e.to_string());
    }
    result
}

/// The one currency of the rows an export of `q` reads.
///
/// # Errors
/// [`ExportError::Currencies`] naming each currency and its rows.
fn one_currency(q: Quarter, inputs: &QuarterInputs) -> Result<String, ExportError> {
    let mut codes = inputs.currencies.iter();
    match (codes.next(), codes.next()) {
        (Some((code, _)), None) => Ok(code.clone()),
        // No rows at all: refused earlier as an empty quarter.
        (None, _) => Ok(String::new()),
        (Some(_), Some(_)) => Err(ExportError::Currencies {
            quarter: q.to_string(),
            detail: inputs
                .currencies
                .iter()
                .map(|(code, n)| {
                    format!(
                        "{code}: {} rows in {q}, {} before it",
                        n.in_quarter, n.before
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

/// What steps 1-5 read inside the snapshot.
struct Read {
    currency: String,
    inputs: QuarterInputs,
    version: String,
    ctx: QuarterContext,
    control: Totals,
    /// The working folder (sort runs, staged files); removed when dropped.
    work: WorkDir,
    sorted: sort::Sorted<features::SourceRow>,
    unreadable: source::Unreadable,
}

/// Steps 1-5, in the read snapshot the caller opened; `None` when the version is up to
/// date. Ends the snapshot once the rows are read (an error leaves that to the caller).
fn read(
    warehouse: &mut Warehouse,
    destination: &Lake,
    key: &PseudonymKey,
    q: Quarter,
    options: &Options,
    report: &mut QuarterReport,
    progress: &mut Progress,
) -> Result<Option<Read>, ExportError> {
    // 1. Inputs.
    progress.step("reading the quarter's inputs");
    let (start, end) = (q.start_text(), q.end_text());
    let inputs = warehouse.quarter_inputs(&start, &end)?;
    report.rows = Some(inputs.months.values().sum());
    // 2. Completeness.
    report.empty_months = empty_months(q, &inputs);
    // A quarter without data is not a complete quarter of data: `partial`, whatever
    // else happens to it.
    report.partial = !report.empty_months.is_empty();
    if report.empty_months.len() == 3 {
        return Err(ExportError::EmptyQuarter(q.to_string()));
    }
    if report.partial && !options.allow_partial {
        return Err(ExportError::Incomplete {
            quarter: q.to_string(),
            months: report.empty_months.join(", "),
        });
    }
    // 2b. One currency, in the quarter and in the history its features read.
    let currency = one_currency(q, &inputs)?;
    // 3. Version.
    let version = layout::version(q, &inputs.sources, &key.key_id(), report.partial);
    report.version = Some(version.clone());
    report.manifest = Some(layout::marker(q));
    if !options.force
        && let Some(entry) = publish::is_current(warehouse, destination, q, &version)?
    {
        report.status = "up_to_date";
        report.amount_sum = Some(entry.amount_sum);
        report.flagged = entry.flagged_features;
        return Ok(None);
    }
    // 4. Control totals, at the scale of every amount up to the quarter's end.
    progress.step("summing the quarter in the warehouse");
    let scale = Scale(inputs.max_scale);
    let control = control_totals(warehouse, q, &inputs, scale, &start, &end)?;
    report.amount_sum = Some(scale.text(control.amount));
    // 5. The rows, sorted by customer, in a working folder of DATA_DIR.
    let ctx = QuarterContext::new(q, scale);
    let work =
        WorkDir::create(&options.data_dir, WORK_PREFIX).map_err(|source| ExportError::Local {
            dir: options.data_dir.clone(),
            source,
        })?;
    progress.step("reading the rows");
    let (sorted, unreadable) = build::read_sorted(warehouse, &ctx, work.path(), progress)?;
    warehouse.end_snapshot()?;
    Ok(Some(Read {
        currency,
        inputs,
        version,
        ctx,
        control,
        work,
        sorted,
        unreadable,
    }))
}

/// Steps 1-11 of [`export_quarter`] (see the module doc).
fn steps(
    warehouse: &mut Warehouse,
    destination: &Lake,
    key: &PseudonymKey,
    q: Quarter,
    options: &Options,
    report: &mut QuarterReport,
    progress: &mut Progress,
) -> Result<(), ExportError> {
    let read = match read(warehouse, destination, key, q, options, report, progress) {
        Ok(Some(read)) => read,
        other => {
            // Up to date, or failed before the rows were all read: the outcome matters
            // more than closing the read.
            if let Err(e) = warehouse.end_snapshot() {
                tracing::warn!(error = %e, "Could not end the export's read transaction.");
            }
            if let Ok(None) = other {
                tracing::info!(quarter = %q, version = report.version.as_deref().unwrap_or(""), "Quarter is up to date; nothing written.");
            }
            return other.map(|_| ());
        }
    };
    let Read {
        currency,
        inputs,
        version,
        ctx,
        control,
        work,
        sorted,
        unreadable,
    } = read;
    // 6-7. Features and staged files.
    let keys = HmacKeys(key);
    let mut built = build::build(&ctx, &sorted, unreadable, &keys, work.path(), progress)?;
    drop(sorted);
    // 8. Reconciliation.
    progress.step("reconciling");
    if let Err(detail) = reconcile::reconcile(control, &built.totals, ctx.scale) {
        let detail = match &built.unreadable.first {
            Some(first) => format!(
                "{detail} ({} stored rows could not be read, first {first})",
                built.unreadable.rows
            ),
            None => detail,
        };
        tracing::error!(quarter = %q, %detail, "Reconciliation failed; nothing published.");
        return Err(ExportError::Reconciliation {
            quarter: q.to_string(),
            detail,
        });
    }
    // 9. Drift.
    progress.step("comparing with the previous quarter");
    let drift_doc = drift_against_previous(
        q,
        std::mem::take(&mut built.current),
        std::mem::take(&mut built.previous),
    );
    report.flagged.clone_from(&drift_doc.flagged);
    let html = drift::render_html(
        &q.to_string(),
        drift_doc.previous_quarter.as_deref(),
        &drift_doc.features,
    );
    // 10. Publish, marker last.
    progress.step("publishing");
    let manifest = Manifest {
        dataset: manifest::DATASET,
        quarter: q.to_string(),
        version: version.clone(),
        feature_version: features::FEATURE_VERSION,
        created_at: crate::clock::now_rfc3339(),
        partial: report.partial,
        currency,
        months: q
            .months()
            .iter()
            .map(|(y, m)| {
                let month = format!("{y:04}-{m:02}");
                MonthRows {
                    rows: inputs.months.get(&month).copied().unwrap_or(0),
                    month,
                }
            })
            .collect(),
        pseudonymisation: Pseudonymisation {
            method: "HMAC-SHA256",
            key_id: key.key_id(),
        },
        files: publish::file_docs(q, &version, &built)?,
        sources: inputs
            .sources
            .iter()
            .map(|s| SourceDoc {
                file_id: s.file_id,
                original_name: s.original_name.clone(),
                sha256: s.sha256.clone(),
                rows: s.rows,
                rows_in_quarter: s.rows_in_quarter,
            })
            .collect(),
        control: Control {
            rows: control.rows,
            amount_sum: ctx.scale.text(control.amount),
        },
        drift: drift_doc,
    };
    publish::publish(destination, q, &version, &built, &html, &manifest)?;
    report.status = "exported";
    // 11. Warehouse tables.
    progress.step("recording in the warehouse");
    record::record(warehouse, destination, &ctx, &built, &manifest)?;
    progress.step("done");
    tracing::info!(quarter = %q, %version, rows = control.rows, partial = report.partial, flagged = ?report.flagged, "Quarter exported.");
    Ok(())
}

/// The warehouse's count and exact sum of the quarter, at `scale`.
fn control_totals(
    warehouse: &mut Warehouse,
    q: Quarter,
    inputs: &QuarterInputs,
    scale: Scale,
    start: &str,
    end: &str,
) -> Result<Totals, ExportError> {
    let mut control = Totals::default();
    for t in warehouse.quarter_control(start, end, &inputs.quarter_scales)? {
        let factor = 10i128.pow(u32::from(scale.0.saturating_sub(t.scale)));
        let minor = t
            .sum
            .minor()
            .and_then(|m| m.checked_mul(factor))
            .ok_or_else(|| ExportError::Amounts {
                quarter: q.to_string(),
                detail: "the quarter's amounts sum beyond 128 bits of minor units".into(),
            })?;
        control.rows += t.rows;
        control.amount += minor;
    }
    Ok(control)
}

fn drift_against_previous(
    q: Quarter,
    current: sample::QuarterSample,
    previous: sample::QuarterSample,
) -> DriftDoc {
    if previous.amounts.is_empty() {
        return DriftDoc {
            previous_quarter: None,
            note: format!(
                "{} has no loaded transactions: nothing to compare",
                q.previous()
            ),
            flagged: Vec::new(),
            features: Vec::new(),
        };
    }
    let (n_prev, n_cur) = (previous.amounts.len(), current.amounts.len());
    let features: Vec<drift::FeatureDrift> = sample::features(previous)
        .into_iter()
        .zip(sample::features(current))
        .map(|((name, prev), (_, cur))| drift::compare(name, &prev, &cur))
        .collect();
    DriftDoc {
        previous_quarter: Some(q.previous().to_string()),
        note: format!(
            "population stability index against {}, on at most {} transactions and customers \
             per quarter (those with the smallest keys; here {n_prev} and {n_cur} transactions)",
            q.previous(),
            sample::SAMPLE
        ),
        flagged: features
            .iter()
            .filter(|f| f.flagged)
            .map(|f| f.feature.clone())
            .collect(),
        features,
    }
}

/// Opens the destination and loads the pseudonymisation key: what every export needs
/// besides the warehouse. The path is `Some` when the key was generated now (the
/// command tells the user: exports made with another key have other keys).
///
/// # Errors
/// [`ExportError::Key`] (exit 2), [`ExportError::Destination`].
pub fn prepare(
    url: &str,
    runtime: tokio::runtime::Handle,
    data_dir: &Path,
    embedded: bool,
) -> Result<(Lake, PseudonymKey, Option<PathBuf>), ExportError> {
    let (key, generated) = PseudonymKey::load(data_dir, embedded)?;
    if let Some(path) = &generated {
        tracing::info!(path = %path.display(), key_id = %key.key_id(), "Generated a pseudonymisation key.");
    }
    let destination = Lake::open_destination(url, runtime)?;
    destination.check_listable()?;
    Ok((destination, key, generated))
}

/// Exports the quarters `which` names, oldest first. A quarter that fails for its data
/// (incomplete, reconciliation) does not stop the others; a setting or an unreachable
/// warehouse or destination does. First removes the working folders of exports that
/// were killed (`workdir::sweep`; never one a running export holds).
///
/// # Errors
/// Only what stops every quarter: finding the quarters ([`ExportError::NoData`], SQL).
pub fn export(
    warehouse: &mut Warehouse,
    destination: &Lake,
    key: &PseudonymKey,
    which: Which,
    options: &Options,
) -> Result<(Vec<QuarterReport>, Option<ExportError>), ExportError> {
    // Working folders left by an export that was killed (none of a running one).
    workdir::sweep(&options.data_dir, WORK_PREFIX);
    let mut reports = Vec::new();
    let mut first_error = None;
    for q in quarters(warehouse, which)? {
        let mut report = QuarterReport::new(q);
        let result = export_quarter(warehouse, destination, key, q, options, &mut report);
        reports.push(report);
        if let Err(e) = result {
            let stop = e.exit_code() != 1;
            if first_error.is_none() {
                first_error = Some(e);
            }
            if stop {
                break;
            }
        }
    }
    Ok((reports, first_error))
}
