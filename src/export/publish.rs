//! Step 10 of an export, and the check that makes a rerun "up to date": the
//! destination side. Every object is uploaded whole with its digest checked on the way;
//! the version's manifest goes after its files, and the quarter's marker last.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::build::Built;
use super::manifest::{self, ColumnDoc, FileDoc, Manifest};
use super::quarter::Quarter;
use super::{ExportError, layout, parquet};
use crate::lake::Lake;
use crate::warehouse::{ExportEntry, Warehouse};

/// Whether version `version` of `q` is complete at the destination and recorded in the
/// warehouse; if so, makes sure the marker names it (a run that stopped between the
/// version's manifest and the marker, or a warehouse back to an earlier state).
pub(super) fn is_current(
    warehouse: &mut Warehouse,
    destination: &Lake,
    q: Quarter,
    version: &str,
) -> Result<Option<ExportEntry>, ExportError> {
    let Some(manifest) =
        destination.get_if_present(&layout::version_file(q, version, layout::MANIFEST))?
    else {
        return Ok(None);
    };
    let recorded = warehouse.exports()?.into_iter().find(|e| {
        e.quarter == q.to_string() && e.version == version && e.destination == destination.url()
    });
    let Some(recorded) = recorded else {
        return Ok(None);
    };
    let marker = destination.get_if_present(&layout::marker(q))?;
    let names = marker
        .and_then(|m| serde_json::from_slice::<manifest::Published>(&m).ok())
        .is_some_and(|p| p.version == version);
    if !names {
        tracing::info!(quarter = %q, %version, "The marker does not name the current version; rewriting it.");
        put_bytes(destination, &layout::marker(q), &manifest)?;
    }
    Ok(Some(recorded))
}

fn sha256_of(path: &Path) -> std::io::Result<(String, u64)> {
    crate::lake::fingerprint(std::fs::File::open(path)?)
}

pub(super) fn file_docs(
    q: Quarter,
    version: &str,
    built: &Built,
) -> Result<Vec<FileDoc>, ExportError> {
    built
        .files
        .iter()
        .map(|f| {
            let (sha256, bytes) = sha256_of(&f.path).map_err(|source| ExportError::Local {
                dir: f.path.clone(),
                source,
            })?;
            let columns = match f.name {
                "customers.parquet" => parquet::CUSTOMERS,
                "transactions.parquet" => parquet::TRANSACTIONS,
                _ => parquet::DAILY,
            };
            Ok(FileDoc {
                name: f.name.to_owned(),
                path: layout::version_file(q, version, f.name),
                rows: f.rows,
                bytes,
                sha256,
                schema: ColumnDoc::of(columns),
            })
        })
        .collect()
}

fn put_bytes(destination: &Lake, key: &str, bytes: &[u8]) -> Result<(), ExportError> {
    let sha = crate::hex::encode(&Sha256::digest(bytes));
    destination.land(key, key, bytes, &sha, None)?;
    Ok(())
}

/// Step 10: the data files and the report, then the version's manifest, then the
/// marker. Each object is uploaded whole and its digest checked on the way.
pub(super) fn publish(
    destination: &Lake,
    q: Quarter,
    version: &str,
    built: &Built,
    html: &str,
    manifest: &Manifest,
) -> Result<(), ExportError> {
    for f in &built.files {
        // The digest the manifest states; `land` checks the bytes it uploads against it.
        let sha = manifest
            .files
            .iter()
            .find(|d| d.name == f.name)
            .map(|d| d.sha256.clone())
            .unwrap_or_default();
        let file = std::fs::File::open(&f.path).map_err(|source| ExportError::Local {
            dir: f.path.clone(),
            source,
        })?;
        destination.land(
            &layout::version_file(q, version, f.name),
            &f.path.display().to_string(),
            file,
            &sha,
            None,
        )?;
    }
    put_bytes(
        destination,
        &layout::version_file(q, version, layout::DRIFT_HTML),
        html.as_bytes(),
    )?;
    let mut text = serde_json::to_vec_pretty(manifest).map_err(ExportError::Manifest)?;
    text.push(b'\n');
    put_bytes(
        destination,
        &layout::version_file(q, version, layout::MANIFEST),
        &text,
    )?;
    put_bytes(destination, &layout::marker(q), &text)
}
