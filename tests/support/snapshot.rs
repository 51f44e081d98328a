//! A whole warehouse as comparable data, for the crash campaign (`tests/campaign_crash.rs`):
//! every table of a SQLite or PostgreSQL warehouse read back as sorted rows of text, with
//! the values that legitimately differ between two runs over the same files left out, so
//! that "the warehouse equals a clean run's" is one equality.
//!
//! What is left out, and why it may differ:
//!
//! - `runs`: the whole table. Run ids are UUIDv7 (the clock), and a killed run leaves a
//!   row of its own (`aborted`). The campaign checks that no run is left `running`.
//! - `file_id` values everywhere: PostgreSQL draws them from an identity sequence that an
//!   interrupted claim advances (ids 1, 2, 4), and a withdrawn claim frees one on SQLite.
//!   Every column named `file_id` is replaced by that file's `sha256`, so lineage
//!   (`transactions.file_id` + `line_no`, `duplicate_rows`, `rejected_rows`, …) is still
//!   compared exactly, by content instead of by number; so is the file a
//!   `conflicting_duplicate` rejection's `detail` names (`already loaded from file 3 …`).
//! - `files`: `received_at`, `processed_at`, `claimed_at`, `lake_checked_at` (clock),
//!   `run_id`, `claim_host`, `claim_pid`, `claim_backend_pid` (which process did it),
//!   `lake_status` (what the last `verify` found: the campaign runs `verify` itself), and
//!   `wrapped_key` (a data key wrapped under the master key with a fresh nonce each time).
//! - `schema_migrations.applied_at`, `lake_master_key.since`, `exports.created_at`,
//!   `schedule_slots.claimed_by|claimed_at|finished_at`: clock and process.
//!
//! Everything else is compared: every column of `transactions`, `files` (names, digests,
//! lake keys, status, every count and exact amount, error, key id, SQLite's rowid range),
//! `rejected_rows`, `file_warnings`, `file_formats`, `duplicate_rows`, `rehomed_rows`,
//! `file_rejects`, `file_amounts`, `quarter_customers`, `quarter_daily`, `exports`.
//!
//! Values are read as text exactly as the backend renders them (`quote()` on SQLite,
//! `::text` on PostgreSQL), so `25.00` and `25.0` differ and nothing goes through floats.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a warehouse is.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (trust authentication in tests).
    Postgres(String),
}

impl Backend {
    /// The value of `BANKPIPE_WAREHOUSE_URL` for this warehouse.
    pub fn url(&self) -> String {
        match self {
            Backend::Sqlite(p) => format!("sqlite://{}", p.display()),
            Backend::Postgres(u) => u.clone(),
        }
    }

    /// Short name for messages: `sqlite` or `postgres`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Runs one query returning rows of nullable text.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            Backend::Sqlite(path) => sqlite_query(path, sql),
            Backend::Postgres(url) => {
                let mut c = postgres::Client::connect(url, postgres::NoTls)
                    .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
                c.query(sql, &[])
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .into_iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| r.get::<_, Option<String>>(i))
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// One text value (the first column of the first row; `None` for SQL NULL or no
    /// row). Write the query so that it returns text on both backends (`CAST(x AS TEXT)`).
    pub fn scalar(&self, sql: &str) -> Option<String> {
        self.query(sql)
            .into_iter()
            .next()
            .and_then(|mut r| r.remove(0))
    }
}

fn sqlite_query(path: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let c = rusqlite::Connection::open_with_flags(
        path,
        // Read-write without create: a database left by a killed writer may hold a hot
        // journal, which only a writable connection can roll back.
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    c.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
    let mut stmt = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| r.get::<_, Option<String>>(i))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .collect::<Result<Vec<_>, _>>()
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Tables left out entirely (see the module documentation).
const SKIPPED_TABLES: &[&str] = &["runs"];

/// Columns left out, by table (see the module documentation).
const SKIPPED_COLUMNS: &[(&str, &[&str])] = &[
    (
        "files",
        &[
            "file_id",
            "received_at",
            "processed_at",
            "run_id",
            "claim_host",
            "claim_pid",
            "claim_backend_pid",
            "claimed_at",
            "lake_status",
            "lake_checked_at",
            "wrapped_key",
        ],
    ),
    ("schema_migrations", &["applied_at"]),
    ("lake_master_key", &["since"]),
    ("exports", &["created_at"]),
    (
        "schedule_slots",
        &["claimed_by", "claimed_at", "finished_at"],
    ),
];

/// A warehouse's content: per table, its rows (each `column=value` joined by `|`),
/// sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub tables: BTreeMap<String, Vec<String>>,
}

impl Snapshot {
    /// Reads every table of the warehouse.
    pub fn take(backend: &Backend) -> Snapshot {
        let tables: Vec<String> = match backend {
            Backend::Sqlite(_) => backend.query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            ),
            Backend::Postgres(_) => backend.query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
            ),
        }
        .into_iter()
        .filter_map(|mut r| r.remove(0))
        .filter(|t| !SKIPPED_TABLES.contains(&t.as_str()))
        .collect();
        let sha_of: BTreeMap<String, String> = backend
            .query("SELECT CAST(file_id AS TEXT), sha256 FROM files")
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect();
        let mut out = BTreeMap::new();
        for table in tables {
            let columns = columns(backend, &table);
            let skipped = SKIPPED_COLUMNS
                .iter()
                .find(|(t, _)| *t == table)
                .map_or(&[][..], |(_, c)| *c);
            let kept: Vec<&String> = columns
                .iter()
                .filter(|c| !skipped.contains(&c.as_str()))
                .collect();
            if kept.is_empty() {
                continue;
            }
            let select = kept
                .iter()
                .map(|c| match backend {
                    Backend::Sqlite(_) => format!("quote(\"{c}\")"),
                    Backend::Postgres(_) => format!("\"{c}\"::text"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let mut rows: Vec<String> = backend
                .query(&format!("SELECT {select} FROM \"{table}\""))
                .into_iter()
                .map(|values| {
                    kept.iter()
                        .zip(values)
                        .map(|(c, v)| {
                            let v = match (c.as_str(), v) {
                                // Lineage by content: the file's digest, not its number.
                                ("file_id", Some(id)) => {
                                    let id = id.trim_matches('\'').to_owned();
                                    format!(
                                        "sha:{}",
                                        sha_of.get(&id).map_or("<no such file>", |s| s.as_str())
                                    )
                                }
                                // A conflicting duplicate's detail names the file
                                // holding the row by number: by content here too.
                                ("detail", Some(v)) => file_numbers_to_digests(&v, &sha_of),
                                (_, Some(v)) => v,
                                (_, None) => "NULL".to_owned(),
                            };
                            format!("{c}={v}")
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            rows.sort();
            out.insert(table, rows);
        }
        Snapshot { tables: out }
    }

    /// The snapshot without one column of one table (for a comparison that knowingly
    /// leaves it out).
    pub fn without(&self, table: &str, column: &str) -> Snapshot {
        let mut s = self.clone();
        if let Some(rows) = s.tables.get_mut(table) {
            let prefix = format!("{column}=");
            for r in rows.iter_mut() {
                *r = r
                    .split('|')
                    .filter(|v| !v.starts_with(&prefix))
                    .collect::<Vec<_>>()
                    .join("|");
            }
            rows.sort();
        }
        s
    }

    /// The snapshot with every occurrence of `from` in values replaced by `to`: a
    /// site's own folder in paths it records (`exports.destination`), which differs
    /// between two sites and nothing else.
    pub fn replacing(&self, from: &str, to: &str) -> Snapshot {
        let mut s = self.clone();
        for rows in s.tables.values_mut() {
            for r in rows.iter_mut() {
                *r = r.replace(from, to);
            }
            rows.sort();
        }
        s
    }

    /// Rows in a table.
    pub fn rows(&self, table: &str) -> usize {
        self.tables.get(table).map_or(0, Vec::len)
    }

    /// `None` when equal; otherwise what differs: per table, the row counts and the first
    /// rows found on one side only.
    pub fn diff(&self, actual: &Snapshot) -> Option<String> {
        if self == actual {
            return None;
        }
        let mut out = String::new();
        let names: std::collections::BTreeSet<&String> =
            self.tables.keys().chain(actual.tables.keys()).collect();
        for name in names {
            let empty = Vec::new();
            let (e, a) = (
                self.tables.get(name).unwrap_or(&empty),
                actual.tables.get(name).unwrap_or(&empty),
            );
            if e == a {
                continue;
            }
            let only = |x: &Vec<String>, y: &Vec<String>| -> Vec<String> {
                // Multiset difference of two sorted lists.
                let (mut i, mut j, mut d) = (0, 0, Vec::new());
                while i < x.len() {
                    if j < y.len() && x[i] == y[j] {
                        i += 1;
                        j += 1;
                    } else if j < y.len() && y[j] < x[i] {
                        j += 1;
                    } else {
                        d.push(x[i].clone());
                        i += 1;
                    }
                }
                d
            };
            let (missing, extra) = (only(e, a), only(a, e));
            out.push_str(&format!(
                "table {name}: expected {} rows, found {} ({} missing, {} extra)\n",
                e.len(),
                a.len(),
                missing.len(),
                extra.len()
            ));
            for r in missing.iter().take(3) {
                out.push_str(&format!("  missing: {r}\n"));
            }
            for r in extra.iter().take(3) {
                out.push_str(&format!("  extra:   {r}\n"));
            }
        }
        Some(out)
    }
}

/// `… from file 3 line 9878 …` → `… from file sha:<digest> line 9878 …`.
fn file_numbers_to_digests(text: &str, sha_of: &BTreeMap<String, String>) -> String {
    const NEEDLE: &str = "from file ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(NEEDLE) {
        let (head, tail) = rest.split_at(at + NEEDLE.len());
        out.push_str(head);
        let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
        match sha_of.get(&digits) {
            Some(sha) if !digits.is_empty() => out.push_str(&format!("sha:{sha}")),
            _ => out.push_str(&digits),
        }
        rest = &tail[digits.len()..];
    }
    out.push_str(rest);
    out
}

fn columns(backend: &Backend, table: &str) -> Vec<String> {
    match backend {
        Backend::Sqlite(_) => backend
            .query(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid")),
        Backend::Postgres(_) => backend.query(&format!(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = '{table}' ORDER BY ordinal_position"
        )),
    }
    .into_iter()
    .filter_map(|mut r| r.remove(0))
    .collect()
}
