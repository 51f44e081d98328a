//! What a run or a check tells its caller: per-file outcomes with counts and exact
//! totals, as one JSON object (`--json`) or a human summary table.
//!
//! The JSON field names are a user-facing contract (issue #2): `run_id`, `status`,
//! `elapsed_s`, and per file `name`, `sha256`, `status`, `rows_*`, `amount_*` (decimal
//! strings), `warnings` by rule, `error`, and `claimed_by` (who holds the claim of a
//! `claimed_elsewhere` file).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::warehouse::{Claimant, Tally};

/// Outcome of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Rows committed.
    Loaded,
    /// Same content as an earlier file; skipped.
    DuplicateFile,
    /// Failed as a whole; nothing loaded.
    Failed,
    /// Skipped: another live session holds the file's claim (a worker is loading it
    /// now, or, [`Claimant::process_gone`], the session of a process of this host that
    /// is gone and that the server has not ended yet); see [`FileReport::claimed_by`].
    /// Neither loaded nor a duplicate: if that worker dies, a later run loads the file.
    ClaimedElsewhere,
    /// `check` only: would load.
    Checked,
    /// Modified less than `min_file_age` ago: left for a later run (not a failure).
    TooRecent,
}

impl Outcome {
    /// Name as printed.
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Loaded => "loaded",
            Outcome::DuplicateFile => "duplicate_file",
            Outcome::Failed => "failed",
            Outcome::ClaimedElsewhere => "claimed_elsewhere",
            Outcome::Checked => "checked",
            Outcome::TooRecent => "too_recent",
        }
    }
}

/// The earlier catalog entry a skipped file's content belongs to (`run --json`
/// `duplicate_of`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateOf {
    /// Its catalog id (what `bankpipe reprocess` takes).
    pub file_id: i64,
    /// Its name as first received.
    pub name: String,
    /// Its catalog status (`loaded` or `failed`).
    pub status: String,
}

/// Amount scale of a file whose profile is not known (it matched none, or the run
/// stopped before its header was read): 2, as for a profile with a currency column.
pub const DEFAULT_SCALE: u8 = 2;

/// One file's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// File name as found in the inbox (or as given to `check`).
    pub name: String,
    /// Content digest, when the file could be read.
    pub sha256: Option<String>,
    /// What happened.
    pub status: Outcome,
    /// Catalog id (for a duplicate: the earlier file's id).
    pub file_id: Option<i64>,
    /// For a file skipped because its content was seen before: that earlier file. Set
    /// for every such skip, whether the earlier file loaded (this one is then
    /// `duplicate_file`) or failed (this one is then `failed` again).
    pub duplicate_of: Option<DuplicateOf>,
    /// Detected profile.
    pub profile: Option<String>,
    /// Where the raw copy is.
    pub lake_key: Option<String>,
    /// Size in bytes.
    pub bytes: u64,
    /// Records read.
    pub rows_read: u64,
    /// Rows loaded.
    pub rows_loaded: u64,
    /// Rows rejected.
    pub rows_rejected: u64,
    /// Rows that were duplicates of loaded rows.
    pub rows_duplicate: u64,
    /// Sum of every amount that parsed.
    pub amount_read: String,
    /// Sum over loaded rows.
    pub amount_loaded: String,
    /// Sum over rejected rows.
    pub amount_rejected: String,
    /// Sum over duplicate rows.
    pub amount_duplicate: String,
    /// Warnings (attributes set to NULL) by rule.
    pub warnings: BTreeMap<String, u64>,
    /// Rejections by rule.
    pub rejects: BTreeMap<String, u64>,
    /// Rows that passed validation per matched date/time format: field → format →
    /// rows (a file whose dates switch layout shows it here).
    pub formats: BTreeMap<String, BTreeMap<String, u64>>,
    /// Why the file failed, or what else went wrong.
    pub error: Option<String>,
    /// For `claimed_elsewhere`: who holds the claim (`host`, `pid`, `run_id`, `since`,
    /// `backend_pid`); `null` otherwise.
    pub claimed_by: Option<Claimant>,
    /// Why a file was skipped without being read: `too_recent` (its age), or
    /// `claimed_elsewhere` (who holds the claim and what that means,
    /// [`Claimant::describe`]).
    pub reason: Option<String>,
    /// Seconds spent on the file.
    pub elapsed_s: f64,
}

impl FileReport {
    /// A report with no rows yet: zero counts, zero amounts at [`DEFAULT_SCALE`] (see
    /// [`FileReport::zero_amounts`] once the file's scale is known).
    pub fn new(name: &str, status: Outcome) -> FileReport {
        let zero = crate::model::Total::default().to_text(DEFAULT_SCALE);
        FileReport {
            name: name.to_owned(),
            sha256: None,
            status,
            file_id: None,
            duplicate_of: None,
            profile: None,
            lake_key: None,
            bytes: 0,
            rows_read: 0,
            rows_loaded: 0,
            rows_rejected: 0,
            rows_duplicate: 0,
            amount_read: zero.clone(),
            amount_loaded: zero.clone(),
            amount_rejected: zero.clone(),
            amount_duplicate: zero,
            warnings: BTreeMap::new(),
            rejects: BTreeMap::new(),
            formats: BTreeMap::new(),
            error: None,
            claimed_by: None,
            reason: None,
            elapsed_s: 0.0,
        }
    }

    /// Writes the four amounts as zero at `scale`, the file's once its profile is known,
    /// so a file skipped or stopped before any row was counted still reports its amounts
    /// at its own scale (`0.000` for a KWD file). A later [`FileReport::set_tally`]
    /// replaces them.
    pub fn zero_amounts(&mut self, scale: u8) {
        let zero = crate::model::Total::default().to_text(scale);
        self.amount_read.clone_from(&zero);
        self.amount_loaded.clone_from(&zero);
        self.amount_rejected.clone_from(&zero);
        self.amount_duplicate = zero;
    }

    /// Records the outcome of a load: counts, totals, and `loaded` or `failed` with the
    /// reason.
    pub fn record_load(&mut self, t: &Tally, scale: u8) {
        self.set_tally(t, scale);
        self.status = if t.failure.is_some() {
            Outcome::Failed
        } else {
            Outcome::Loaded
        };
        self.error = t.failure.clone();
    }

    /// Copies the per-format row counts of a tally, named with the profile's formats.
    pub fn set_formats(&mut self, t: &Tally, names: &crate::profile::FormatNames) {
        self.formats = t
            .formats
            .named(names)
            .into_iter()
            .map(|(field, per)| (field.to_owned(), per))
            .collect();
    }

    /// Copies counts and totals from a tally, at the file's amount scale.
    pub fn set_tally(&mut self, t: &Tally, scale: u8) {
        self.rows_read = t.rows_read;
        self.rows_loaded = if t.failure.is_some() {
            0
        } else {
            t.rows_loaded
        };
        self.rows_rejected = t.rows_rejected;
        self.rows_duplicate = t.rows_duplicate;
        self.amount_read = t.amount_read.to_text(scale);
        self.amount_loaded = if t.failure.is_some() {
            crate::model::Total::default().to_text(scale)
        } else {
            t.amount_loaded.to_text(scale)
        };
        self.amount_rejected = t.amount_rejected.to_text(scale);
        self.amount_duplicate = t.amount_duplicate.to_text(scale);
        self.warnings = t
            .warnings
            .iter()
            .map(|(r, n)| (r.name().to_owned(), n))
            .collect();
        self.rejects = t
            .rejects
            .iter()
            .map(|(r, n)| (r.name().to_owned(), *n))
            .collect();
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Run id (UUIDv7), also in the `runs` table.
    pub run_id: String,
    /// `ok` when every file loaded or was a duplicate; `failed` otherwise.
    pub status: String,
    /// Start (UTC).
    pub started_at: String,
    /// End (UTC).
    pub finished_at: String,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
    /// One entry per file, in processing order.
    pub files: Vec<FileReport>,
    /// Why the run stopped part-way (exit status 2 or 3; `status` is then `failed` and
    /// `files` lists what was processed before); `null` for a run that went to the end.
    pub error: Option<String>,
}

impl RunReport {
    /// Whether any file failed or any error was recorded (exit status 1).
    pub fn has_failures(&self) -> bool {
        self.files.iter().any(|f| {
            f.status == Outcome::Failed || f.error.is_some() && f.status != Outcome::DuplicateFile
        })
    }

    /// A human summary: one line per file and a total.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let name_width = self
            .files
            .iter()
            .map(|f| printable(&f.name).chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, 48);
        let _ = writeln!(
            out,
            "{:<name_width$}  {:<14}  {:>10}  {:>10}  {:>9}  {:>9}  {:>18}",
            "file", "status", "read", "loaded", "rejected", "duplicate", "amount loaded"
        );
        let (mut read, mut loaded, mut rejected, mut dup) = (0, 0, 0, 0);
        for f in &self.files {
            let name = shorten(&f.name, name_width);
            let _ = writeln!(
                out,
                "{name:<name_width$}  {:<14}  {:>10}  {:>10}  {:>9}  {:>9}  {:>18}",
                f.status.name(),
                f.rows_read,
                f.rows_loaded,
                f.rows_rejected,
                f.rows_duplicate,
                f.amount_loaded
            );
            read += f.rows_read;
            loaded += f.rows_loaded;
            rejected += f.rows_rejected;
            dup += f.rows_duplicate;
        }
        let _ = writeln!(
            out,
            "{:<name_width$}  {:<14}  {read:>10}  {loaded:>10}  {rejected:>9}  {dup:>9}",
            "total", self.status
        );
        for f in self.files.iter().filter(|f| f.error.is_some()) {
            let _ = writeln!(
                out,
                "{}: {}",
                printable(&f.name),
                printable(f.error.as_deref().unwrap_or_default())
            );
        }
        for f in &self.files {
            // A claimed_elsewhere file's reason is its claimant's description.
            if let Some(c) = &f.claimed_by {
                let _ = writeln!(out, "{}: {}", printable(&f.name), c.describe());
            } else if let Some(reason) = &f.reason {
                let _ = writeln!(out, "{}: {}: {reason}", printable(&f.name), f.status.name());
            }
        }
        let count = |o: Outcome| self.files.iter().filter(|f| f.status == o).count();
        // `check` loads nothing and has no run: its footer counts what it can say
        // (a file `checked` is missing from the run's list of outcomes).
        if self.run_id == CHECK_RUN_ID {
            let _ = writeln!(
                out,
                "files: {} checked, {} failed",
                count(Outcome::Checked),
                count(Outcome::Failed)
            );
            let _ = writeln!(out, "check finished in {:.2}s", self.elapsed_s);
            return out;
        }
        let _ = writeln!(
            out,
            "files: {} loaded, {} duplicate_file, {} claimed_elsewhere, {} too_recent, {} failed",
            count(Outcome::Loaded),
            count(Outcome::DuplicateFile),
            count(Outcome::ClaimedElsewhere),
            count(Outcome::TooRecent),
            count(Outcome::Failed)
        );
        let _ = writeln!(
            out,
            "run {} finished in {:.2}s",
            self.run_id, self.elapsed_s
        );
        out
    }
}

impl Claimant {
    /// One sentence for the table, the log and `reason`: who holds the claim and what
    /// that means.
    pub fn describe(&self) -> String {
        let or = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        let meaning = if self.process_gone {
            "that process is no longer running on this host, but its server session has not \
             ended yet; the next run loads the file"
        } else {
            "that worker is loading it (if it died, a later run loads the file once the server \
             has noticed)"
        };
        format!(
            "claimed by host {} pid {} (run {}, server pid {}) since {}; {meaning}",
            or(self.host.clone()),
            or(self.pid.map(|p| p.to_string())),
            or(self.run_id.clone()),
            or(self.backend_pid.map(|p| p.to_string())),
            or(self.since.clone()),
        )
    }
}

/// The `run_id` of `check`'s report (`check --json` prints it): it loads nothing and
/// records no run.
pub const CHECK_RUN_ID: &str = "check";

/// `text` for a terminal or a line-oriented log: control characters (a newline, a
/// carriage return, an escape sequence, Unicode's line separators) written as Rust-style
/// escapes (`\n`, `\u{1b}`), so that text from a file, such as its name, cannot start a
/// forged line or drive the terminal. Everything else is kept, non-ASCII letters too.
/// For text outputs only: JSON keeps the exact text (its encoding escapes what it must).
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether [`printable`] escapes `c`: control characters, and the line and paragraph
/// separators some log viewers break lines at.
pub fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `text` in at most `width` characters: a longer one keeps its start and its end
/// (where a path's file name and extension are) around an ellipsis, so names stay
/// recognisable and table columns stay aligned. Control characters are escaped first
/// ([`printable`]).
pub fn shorten(text: &str, width: usize) -> String {
    let text = &*printable(text);
    let count = text.chars().count();
    if count <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let keep = width - 1;
    let tail = keep / 2;
    let head = keep - tail;
    let mut out: String = text.chars().take(head).collect();
    out.push('…');
    out.extend(text.chars().skip(count - tail));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_printable_in_text_outputs() {
        assert_eq!(printable("jan.csv"), "jan.csv");
        assert_eq!(printable("zürich-€-日本.csv"), "zürich-€-日本.csv");
        assert_eq!(
            printable("a\n2026-01-01 ERROR forged\r.csv"),
            "a\\n2026-01-01 ERROR forged\\r.csv"
        );
        assert_eq!(
            printable("e\x1b[31mred\u{2028}"),
            "e\\u{1b}[31mred\\u{2028}"
        );
        assert_eq!(shorten("a\nb", 10), "a\\nb");
        let mut r = FileReport::new("x\ny.csv", Outcome::Failed);
        r.error = Some("no profile matches the columns: a\u{1b}[2J".into());
        let run = RunReport {
            run_id: "r".into(),
            status: "failed".into(),
            started_at: String::new(),
            finished_at: String::new(),
            elapsed_s: 0.0,
            files: vec![r],
            error: None,
        };
        let table = run.table();
        assert!(!table.contains('\u{1b}'), "{table}");
        assert!(table.contains("x\\ny.csv: no profile matches the columns: a\\u{1b}[2J"));
        assert_eq!(
            table.lines().filter(|l| l.starts_with("x\\ny.csv")).count(),
            2
        );
    }

    #[test]
    fn long_names_are_shortened_in_the_middle_to_the_width() {
        assert_eq!(shorten("short.csv", 12), "short.csv");
        let long = "/data/exports/2016/very_long_folder_name/bank_transactions_2016_08.csv";
        let s = shorten(long, 24);
        assert_eq!(s.chars().count(), 24);
        assert!(
            s.starts_with("/data/export") && s.ends_with("2016_08.csv"),
            "{s}"
        );
        assert!(s.contains('…'));
        assert_eq!(shorten("ééééé", 3), "é…é");
    }

    #[test]
    fn the_table_stays_aligned_with_long_names() {
        let mut a = FileReport::new(&"x".repeat(100), Outcome::Checked);
        a.rows_read = 1;
        let b = FileReport::new("b.csv", Outcome::Checked);
        let report = RunReport {
            run_id: "check".into(),
            status: "ok".into(),
            started_at: String::new(),
            finished_at: String::new(),
            elapsed_s: 0.0,
            files: vec![a, b],
            error: None,
        };
        let table = report.table();
        // The status column starts at the same character on every line.
        let at = |line: &str, word: &str| line[..line.find(word).unwrap()].chars().count();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(at(lines[0], "status"), 50, "{table}");
        assert_eq!(at(lines[1], "checked"), 50, "{table}");
        assert_eq!(at(lines[2], "checked"), 50, "{table}");
        assert!(table.contains('…'), "{table}");
        // check's footer counts checked files, not the outcomes of a run it is not.
        assert!(
            table.contains("files: 2 checked, 0 failed\ncheck finished in"),
            "{table}"
        );
    }
}
