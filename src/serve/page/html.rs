//! The status page's HTML, from a [`View`] of what was read: pure, so it is tested
//! without a server. Every value that comes from data (file names, errors, rule names,
//! URLs, expressions...) goes through [`Esc`]; numbers are formatted here. The page
//! references nothing outside itself: inline CSS, inline SVG, links only to this
//! server's own paths.
//!
//! Each section has an `id` (`state`, `runs`, `files`, `rejects`, `quarters`,
//! `schedule`), and each figure a `data-figure` attribute with its exact value, so
//! that tools (and `tests/page.rs`) read them without parsing display text.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Write};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::report::needs_escape;
use crate::schedule::{JobStatus, Schedule};
use crate::serve::jobs::JobFigures;
use crate::serve::runs::{ActiveRun, RunOrigin};
use crate::warehouse::FileEntry;
use crate::warehouse::figures::CatalogFigures;
use crate::warehouse::listing::{ExportedQuarter, RunRecord};

/// Everything the page shows.
pub(super) struct View<'a> {
    /// When it is rendered.
    pub now: DateTime<Utc>,
    /// Warehouse URL, password removed.
    pub warehouse: String,
    /// Lake URL, password removed.
    pub lake: String,
    /// Whether the warehouse answered its last check.
    pub warehouse_up: Option<bool>,
    /// Whether the lake answered its last check.
    pub lake_up: Option<bool>,
    /// The catalog figures and their age.
    pub figures: Option<(&'a CatalogFigures, Duration)>,
    /// The details, fresh or last read.
    pub details: Option<Details<'a>>,
    /// Why the details are not fresh.
    pub details_problem: Option<String>,
    /// The configured schedule.
    pub schedule: &'a Schedule,
    /// The scheduler's figures in this process.
    pub jobs: BTreeMap<String, JobFigures>,
    /// The run in progress in this process (started through the API or by the
    /// scheduled `ingest`).
    pub run_here: Option<ActiveRun>,
    /// Seconds between reloads.
    pub refresh_seconds: u32,
}

/// What was read from the warehouse besides the catalog figures.
pub(super) struct Details<'a> {
    /// Recent runs, newest first.
    pub runs: &'a [RunRecord],
    /// Latest files, newest first.
    pub files: &'a [FileEntry],
    /// Exported quarter versions.
    pub quarters: &'a [ExportedQuarter],
    /// Each scheduled job with its slots in the warehouse.
    pub schedule: &'a [JobStatus],
    /// How long ago they were read.
    pub age: Duration,
}

/// HTML-escapes text from data for element content and quoted attribute values.
/// Control characters are written as the text outputs write them (`\n`, `\u{1b}`,
/// [`crate::report::printable`]): a browser would show a file name's newline as a space
/// and its escape character not at all, so two names could look the same, and the page
/// fetched to a terminal (`curl /`) would let a name drive it.
pub(super) struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) =
            rest.find(|c: char| matches!(c, '&' | '<' | '>' | '"' | '\'') || needs_escape(c))
        {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().expect("found at i");
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                _ => {
                    for e in c.escape_default() {
                        f.write_char(e)?;
                    }
                }
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// The page's `Content-Security-Policy`: nothing may be loaded, run, framed or
/// submitted; the one thing allowed is the page's own inline style sheet, named by the
/// SHA-256 of its text, so that no other inline style (injected markup that escaping
/// missed) would apply either. The page uses no script, image, font, style attribute or
/// form, and its inline SVG needs no source.
pub(super) fn content_security_policy() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(STYLE.as_bytes());
        format!(
            "default-src 'none'; style-src 'sha256-{}'; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    })
}

const STYLE: &str = "
:root { color-scheme: light; --ok: #1b7f3b; --bad: #b3261e; --warn: #a15c00; --muted: #5f6368;
  --line: #dadce0; --bar: #3367d6; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0;
  color: #202124; background: #f8f9fa; }
header { background: #202124; color: #fff; padding: 12px 24px; display: flex;
  align-items: baseline; gap: 16px; flex-wrap: wrap; }
header h1 { font-size: 20px; margin: 0; }
header p { margin: 0; color: #c8cbd0; }
main { padding: 16px 24px; display: grid; gap: 16px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
h2 { font-size: 16px; margin: 0 0 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
#state th { width: 13em; }
.ok { color: var(--ok); font-weight: 600; }
.bad, .failed, .aborted, .down { color: var(--bad); font-weight: 600; }
.unknown, .running, .landing, .interrupted, .skipped { color: var(--warn); font-weight: 600; }
.loaded { color: var(--ok); }
.muted, .age { color: var(--muted); }
.note { color: var(--warn); }
.err { color: var(--bad); font-size: 12px; word-break: break-word; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 8px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; min-width: 130px; }
.card b { display: block; font-size: 18px; font-variant-numeric: tabular-nums; }
.flag { display: inline-block; background: #fce8e6; color: var(--bad); border-radius: 4px;
  padding: 0 6px; margin: 0 4px 2px 0; font-size: 12px; }
svg text { font: 12px system-ui, sans-serif; fill: #202124; }
svg rect.bar { fill: var(--bar); }
footer { padding: 8px 24px 24px; color: var(--muted); }
footer a { color: var(--muted); }
";

/// The whole page.
pub(super) fn render(v: &View<'_>) -> String {
    let mut out = String::with_capacity(32 * 1024);
    // Writing to a String cannot fail.
    let _ = write_page(&mut out, v);
    out
}

fn write_page(out: &mut String, v: &View<'_>) -> fmt::Result {
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>bankpipe status</title><style>{STYLE}</style></head><body>\
         <header><h1>bankpipe status</h1><p>at <time datetime=\"{now}\">{now}</time> · \
         refreshes every {} s</p></header><main>",
        v.refresh_seconds,
        v.refresh_seconds,
        now = Esc(&v.now.to_rfc3339_opts(SecondsFormat::Secs, true)),
    )?;
    state(out, v)?;
    runs(out, v)?;
    files(out, v)?;
    rejects(out, v)?;
    quarters(out, v)?;
    schedule(out, v)?;
    out.push_str(
        "</main><footer>Also: <a href=\"/api/openapi.json\">read API (OpenAPI)</a> · \
         <a href=\"/metrics\">Prometheus metrics</a> · <a href=\"/ready\">readiness</a>\
         </footer></body></html>\n",
    );
    Ok(())
}

/// `up`, `down` or `unknown` with its class.
fn up_down(out: &mut String, what: &str, up: Option<bool>) -> fmt::Result {
    let (class, text) = match up {
        Some(true) => ("ok", "up"),
        Some(false) => ("down", "down"),
        None => ("unknown", "not checked yet"),
    };
    write!(
        out,
        "<span class=\"{class}\" data-state=\"{what}\">{text}</span>"
    )
}

fn state(out: &mut String, v: &View<'_>) -> fmt::Result {
    out.push_str("<section id=\"state\"><h2>Warehouse and lake</h2><table><tbody>");
    out.push_str("<tr><th>warehouse</th><td>");
    up_down(out, "warehouse", v.warehouse_up)?;
    write!(out, " <code>{}</code></td></tr>", Esc(&v.warehouse))?;
    out.push_str("<tr><th>lake</th><td>");
    up_down(out, "lake", v.lake_up)?;
    write!(out, " <code>{}</code></td></tr>", Esc(&v.lake))?;
    out.push_str("<tr><th>catalog figures</th><td>");
    match &v.figures {
        Some((_, age)) => write!(
            out,
            "<span class=\"age\" data-figure=\"catalog_age_seconds\" data-value=\"{:.1}\">read {}</span>",
            age.as_secs_f64(),
            ago(*age)
        )?,
        None => out.push_str(
            "<span class=\"note\">not read yet (the warehouse has not answered since this \
             server started)</span>",
        ),
    }
    out.push_str("</td></tr><tr><th>runs, files, quarters</th><td>");
    match (&v.details, &v.details_problem) {
        (Some(d), None) => write!(out, "<span class=\"age\">read {}</span>", ago(d.age))?,
        (Some(d), Some(why)) => write!(
            out,
            "<span class=\"note\" id=\"stale\">shown as read {}: {}</span>",
            ago(d.age),
            Esc(why)
        )?,
        (None, Some(why)) => write!(
            out,
            "<span class=\"note\" id=\"stale\">not read yet: {}</span>",
            Esc(why)
        )?,
        (None, None) => {}
    }
    out.push_str("</td></tr>");
    if let Some(run) = &v.run_here {
        let by = match &run.origin {
            RunOrigin::Api => "started through POST /api/runs".to_owned(),
            RunOrigin::Schedule { slot } => format!("scheduled ingest, slot {slot}"),
        };
        write!(
            out,
            "<tr><th>run started here</th><td><code>{}</code> <span class=\"running\">running</span> ({})</td></tr>",
            Esc(&run.run_id),
            Esc(&by)
        )?;
    }
    out.push_str("</tbody></table>");
    if let Some((f, _)) = v.figures {
        out.push_str("<div class=\"cards\">");
        card(out, "rows_loaded", "rows loaded", f.rows_loaded)?;
        card(out, "rows_rejected", "rows rejected", f.rows_rejected)?;
        card(out, "rows_duplicate", "duplicate rows", f.rows_duplicate)?;
        card(out, "bytes_landed", "bytes landed", f.bytes_landed)?;
        card(
            out,
            "runs_in_progress",
            "runs in progress",
            f.runs_in_progress,
        )?;
        for (status, n) in &f.runs {
            card(
                out,
                &format!("runs_{status}"),
                &format!("runs {status}"),
                *n,
            )?;
        }
        out.push_str("</div>");
        if !f.amount_loaded.is_empty() {
            out.push_str("<p>amount loaded: ");
            for (i, (currency, amount)) in f.amount_loaded.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write!(
                    out,
                    "<span data-figure=\"amount_loaded_{c}\" data-value=\"{a}\">{a} {c}</span>",
                    a = Esc(amount),
                    c = Esc(currency)
                )?;
            }
            out.push_str("</p>");
        }
    }
    out.push_str("</section>");
    Ok(())
}

fn card(out: &mut String, key: &str, label: &str, n: u64) -> fmt::Result {
    write!(
        out,
        "<div class=\"card\"><b data-figure=\"{k}\" data-value=\"{n}\">{g}</b>{l}</div>",
        k = Esc(key),
        g = grouped(n),
        l = Esc(label)
    )
}

fn runs(out: &mut String, v: &View<'_>) -> fmt::Result {
    out.push_str("<section id=\"runs\"><h2>Recent runs</h2>");
    let Some(d) = &v.details else {
        out.push_str("<p class=\"note\">Not read yet.</p></section>");
        return Ok(());
    };
    if d.runs.is_empty() {
        out.push_str("<p class=\"muted\">No run yet.</p></section>");
        return Ok(());
    }
    out.push_str(
        "<table><thead><tr><th>run</th><th>started</th><th>finished</th><th>status</th>\
         <th class=\"n\">files</th><th class=\"n\">rows loaded</th><th class=\"n\">rows rejected</th>\
         <th>host</th></tr></thead><tbody>",
    );
    for r in d.runs {
        let count = |k: &str| {
            r.counts
                .as_ref()
                .and_then(|c| c.get(k))
                .and_then(serde_json::Value::as_u64)
                .map_or_else(|| "–".to_owned(), grouped)
        };
        write!(
            out,
            "<tr data-run-id=\"{id}\"><td><code>{id}</code></td><td>{}</td><td>{}</td>\
             <td class=\"{s}\">{s}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            Esc(&r.run.started_at),
            Esc(r.run.finished_at.as_deref().unwrap_or("–")),
            count("files"),
            count("rows_loaded"),
            count("rows_rejected"),
            Esc(r.host.as_deref().unwrap_or("")),
            id = Esc(&r.run.run_id),
            s = Esc(&r.run.status),
        )?;
    }
    out.push_str("</tbody></table></section>");
    Ok(())
}

fn files(out: &mut String, v: &View<'_>) -> fmt::Result {
    out.push_str("<section id=\"files\"><h2>Files</h2>");
    if let Some((f, _)) = v.figures {
        out.push_str("<div class=\"cards\">");
        for (status, n) in &f.files {
            card(out, &format!("files_{status}"), status, *n)?;
        }
        out.push_str("</div>");
    }
    let Some(d) = &v.details else {
        out.push_str("<p class=\"note\">The latest files are not read yet.</p></section>");
        return Ok(());
    };
    if d.files.is_empty() {
        out.push_str("<p class=\"muted\">No file yet.</p></section>");
        return Ok(());
    }
    write!(
        out,
        "<p class=\"muted\">The latest {} (all of them: <code>bankpipe files</code> or \
         <a href=\"/api/files\">/api/files</a>).</p>",
        d.files.len()
    )?;
    out.push_str(
        "<table><thead><tr><th class=\"n\">id</th><th>name</th><th>status</th><th>profile</th>\
         <th class=\"n\">read</th><th class=\"n\">loaded</th><th class=\"n\">rejected</th>\
         <th class=\"n\">duplicate</th><th>processed</th></tr></thead><tbody>",
    );
    let n = |v: Option<u64>| v.map_or_else(|| "–".to_owned(), grouped);
    for f in d.files {
        write!(
            out,
            "<tr data-file-id=\"{}\"><td class=\"n\">{}</td><td>{}",
            f.file_id,
            f.file_id,
            Esc(&f.original_name)
        )?;
        if let Some(e) = &f.error {
            write!(out, "<div class=\"err\">{}</div>", Esc(e))?;
        }
        write!(
            out,
            "</td><td class=\"{s}\">{s}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            Esc(f.profile.as_deref().unwrap_or("–")),
            n(f.rows_read),
            n(f.rows_loaded),
            n(f.rows_rejected),
            n(f.rows_duplicate),
            Esc(f.processed_at.as_deref().unwrap_or("–")),
            s = Esc(&f.status),
        )?;
    }
    out.push_str("</tbody></table></section>");
    Ok(())
}

/// Width of the rule names' column of the chart, and of its bars' area.
const LABEL_WIDTH: u32 = 220;
const BAR_AREA: u32 = 420;
const ROW_HEIGHT: u32 = 24;

fn rejects(out: &mut String, v: &View<'_>) -> fmt::Result {
    out.push_str("<section id=\"rejects\"><h2 id=\"rejects-title\">Rejected rows by rule</h2>");
    let Some((f, _)) = v.figures else {
        out.push_str("<p class=\"note\">Not read yet.</p></section>");
        return Ok(());
    };
    let mut rules: Vec<(&String, &u64)> =
        f.rejected_by_rule.iter().filter(|(_, n)| **n > 0).collect();
    if rules.is_empty() {
        out.push_str("<p class=\"muted\">No rejected row.</p></section>");
        return Ok(());
    }
    rules.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let max = rules.iter().map(|(_, n)| **n).max().unwrap_or(1).max(1);
    let width = LABEL_WIDTH + BAR_AREA + 90;
    let height = ROW_HEIGHT * rules.len() as u32 + 4;
    write!(
        out,
        "<svg id=\"rejects-chart\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-labelledby=\"rejects-title\">"
    )?;
    for (i, (rule, n)) in rules.iter().enumerate() {
        let y = ROW_HEIGHT * i as u32;
        // At least one pixel, so that a rule with one row still shows a bar.
        let w = ((**n as f64 / max as f64) * f64::from(BAR_AREA))
            .round()
            .max(1.0);
        write!(
            out,
            "<g><text x=\"0\" y=\"{ty}\">{r}</text>\
             <rect class=\"bar\" data-rule=\"{r}\" data-count=\"{n}\" x=\"{LABEL_WIDTH}\" y=\"{by}\" \
             width=\"{w}\" height=\"16\"><title>{r}: {n}</title></rect>\
             <text x=\"{tx}\" y=\"{ty}\">{g}</text></g>",
            ty = y + 16,
            by = y + 4,
            tx = f64::from(LABEL_WIDTH) + w + 6.0,
            r = Esc(rule),
            g = grouped(**n),
        )?;
    }
    write!(
        out,
        "</svg><p class=\"muted\">{} rejected rows over every file (<code>bankpipe rejects \
         --rule RULE</code> or <a href=\"/api/rejects\">/api/rejects</a> lists them).</p></section>",
        grouped(f.rows_rejected)
    )
}

fn quarters(out: &mut String, v: &View<'_>) -> fmt::Result {
    out.push_str("<section id=\"quarters\"><h2>Exported quarters</h2>");
    let Some(d) = &v.details else {
        out.push_str("<p class=\"note\">Not read yet.</p></section>");
        return Ok(());
    };
    if d.quarters.is_empty() {
        out.push_str(
            "<p class=\"muted\">No exported quarter (<code>bankpipe export</code> writes them).</p></section>",
        );
        return Ok(());
    }
    out.push_str(
        "<table><thead><tr><th>quarter</th><th>version</th><th>written</th><th class=\"n\">rows</th>\
         <th class=\"n\">amount</th><th>partial</th><th>drift flags</th></tr></thead><tbody>",
    );
    for q in d.quarters {
        write!(
            out,
            "<tr data-quarter=\"{qn}\" data-flagged=\"{}\"><td>{qn}</td><td><code>{}</code></td>\
             <td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>",
            q.flagged_features.len(),
            Esc(&q.version),
            Esc(&q.created_at),
            grouped(q.rows),
            Esc(&q.amount_sum),
            if q.partial { "partial" } else { "complete" },
            qn = Esc(&q.quarter),
        )?;
        if q.flagged_features.is_empty() {
            out.push_str("<span class=\"ok\">none</span>");
        }
        for feature in &q.flagged_features {
            write!(out, "<span class=\"flag\">{}</span>", Esc(feature))?;
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table></section>");
    Ok(())
}

fn schedule(out: &mut String, v: &View<'_>) -> fmt::Result {
    out.push_str("<section id=\"schedule\"><h2>Schedule</h2>");
    if v.schedule.jobs.is_empty() {
        out.push_str(
            "<p class=\"muted\">No <code>[schedule]</code> in the configuration: this server \
             runs no job.</p></section>",
        );
        return Ok(());
    }
    write!(
        out,
        "<p class=\"muted\">Times in UTC; expressions read in {}.</p>",
        Esc(v.schedule.timezone.name())
    )?;
    out.push_str(
        "<table><thead><tr><th>job</th><th>expression</th><th>next slot</th>\
         <th>last outcome</th></tr></thead><tbody>",
    );
    let overview = v.details.as_ref().map_or(&[][..], |d| d.schedule);
    for job in &v.schedule.jobs {
        let name = job.job.as_str();
        let here = v.jobs.get(name);
        let next = here.and_then(|j| j.next_run).map(rfc3339).or_else(|| {
            job.next_after(v.now)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        });
        write!(
            out,
            "<tr data-job=\"{name}\"><td>{name}</td><td><code>{}</code></td><td>{}</td><td>",
            Esc(&job.expression),
            Esc(next
                .as_deref()
                .unwrap_or("none (the expression matches no later time)")),
        )?;
        let recorded = overview.iter().find(|s| s.job == job.job);
        match (
            recorded.and_then(|s| s.last_finished.as_ref()),
            here.and_then(|j| j.last.as_ref()),
        ) {
            (Some(slot), _) => {
                write!(
                    out,
                    "<span class=\"{s}\" data-outcome=\"{s}\">{s}</span> slot {} (finished {})",
                    Esc(&slot.slot_at),
                    Esc(slot.finished_at.as_deref().unwrap_or("–")),
                    s = Esc(&slot.status),
                )?;
                if let Some(e) = &slot.error {
                    write!(out, "<div class=\"err\">{}</div>", Esc(e))?;
                }
            }
            (None, Some((status, at))) => write!(
                out,
                "<span class=\"{s}\" data-outcome=\"{s}\">{s}</span> at {}",
                Esc(&rfc3339(*at)),
                s = Esc(status),
            )?,
            (None, None) => out.push_str("<span class=\"muted\">not run yet</span>"),
        }
        if let Some(slot) = recorded
            .and_then(|s| s.last.as_ref())
            .filter(|s| s.status == "running")
        {
            write!(
                out,
                "<div><span class=\"running\">running</span> slot {} on {}</div>",
                Esc(&slot.slot_at),
                Esc(&slot.claimed_by)
            )?;
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table></section>");
    Ok(())
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `1,048,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `now`, `12 s ago`, `3 min ago`, `2 h ago`.
fn ago(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0 => "just now".to_owned(),
        1..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(
        figures: Option<(&'a CatalogFigures, Duration)>,
        schedule: &'a Schedule,
    ) -> View<'a> {
        View {
            now: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            warehouse: "sqlite:///data/<w>.db".into(),
            lake: "/data/lake".into(),
            warehouse_up: Some(true),
            lake_up: None,
            figures,
            details: None,
            details_problem: Some("the warehouse did not answer within 0.6 s".into()),
            schedule,
            jobs: BTreeMap::new(),
            run_here: None,
            refresh_seconds: 30,
        }
    }

    #[test]
    fn text_from_data_is_escaped() {
        assert_eq!(
            Esc("<a href=\"x\">'&'</a>").to_string(),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(Esc("plain").to_string(), "plain");
        // Control characters of a file name are shown, not passed raw: a newline would
        // look like a space, an escape sequence would drive a terminal reading the page.
        assert_eq!(
            Esc("new\nline\u{1b}[2J<é>.csv").to_string(),
            "new\\nline\\u{1b}[2J&lt;é&gt;.csv"
        );
        let mut f = CatalogFigures::zeroed();
        f.rejected_by_rule.insert("<script>x</script>".into(), 2);
        let schedule = Schedule::default();
        let page = render(&view(Some((&f, Duration::from_secs(3))), &schedule));
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(page.contains("sqlite:///data/&lt;w&gt;.db"));
    }

    #[test]
    fn the_run_in_progress_here_says_who_started_it() {
        let schedule = Schedule::default();
        let mut v = view(None, &schedule);
        assert!(!render(&v).contains("run started here"));
        v.run_here = Some(ActiveRun {
            run_id: "01abc".into(),
            origin: RunOrigin::Schedule {
                slot: "2026-12-01T06:00:00.000Z".into(),
            },
        });
        let page = render(&v);
        assert!(
            page.contains("<code>01abc</code> <span class=\"running\">running</span> (scheduled ingest, slot 2026-12-01T06:00:00.000Z)"),
            "{page}"
        );
        v.run_here = Some(ActiveRun {
            run_id: "01<d>".into(),
            origin: RunOrigin::Api,
        });
        let page = render(&v);
        assert!(
            page.contains("<code>01&lt;d&gt;</code> <span class=\"running\">running</span> (started through POST /api/runs)"),
            "{page}"
        );
    }

    #[test]
    fn one_bar_per_rule_scaled_to_the_largest() {
        let mut f = CatalogFigures::zeroed();
        f.rejected_by_rule.insert("invalid_amount".into(), 10);
        f.rejected_by_rule.insert("malformed_row".into(), 1);
        f.rejected_by_rule.insert("missing_amount".into(), 0);
        let schedule = Schedule::default();
        let page = render(&view(Some((&f, Duration::ZERO)), &schedule));
        assert_eq!(page.matches("<rect class=\"bar\"").count(), 2, "{page}");
        assert!(page.contains(
            "data-rule=\"invalid_amount\" data-count=\"10\" x=\"220\" y=\"4\" width=\"420\""
        ));
        assert!(page.contains(
            "data-rule=\"malformed_row\" data-count=\"1\" x=\"220\" y=\"28\" width=\"42\""
        ));
    }

    #[test]
    fn the_page_refreshes_itself_and_references_nothing_outside() {
        let schedule = Schedule::default();
        let page = render(&view(None, &schedule));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        for section in ["state", "runs", "files", "rejects", "quarters", "schedule"] {
            assert!(
                page.contains(&format!("<section id=\"{section}\">")),
                "{section}"
            );
        }
        for external in [
            "http:", "https:", "src=", "<script", "<link", "url(", "@import", "//",
        ] {
            let hits: Vec<_> = page.match_indices(external).collect();
            // `//` appears in the redacted sqlite URL shown as text.
            let allowed =
                external == "//" && hits.iter().all(|(i, _)| page[..*i].ends_with("sqlite:"));
            assert!(hits.is_empty() || allowed, "{external} in {page}");
        }
        assert!(page.contains("not read yet: the warehouse did not answer"));
    }

    #[test]
    fn the_policy_allows_exactly_the_pages_style_sheet() {
        use base64::Engine as _;
        use sha2::Digest as _;
        let schedule = Schedule::default();
        let page = render(&view(None, &schedule));
        // One style element; no style attribute, which a hash does not allow.
        assert_eq!(page.matches("<style").count(), 1);
        assert!(!page.contains(" style="), "{page}");
        let css = page
            .split_once("<style>")
            .and_then(|(_, rest)| rest.split_once("</style>"))
            .unwrap()
            .0;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(css));
        let csp = content_security_policy();
        assert!(
            csp.contains(&format!("style-src 'sha256-{hash}';")),
            "{csp}"
        );
        assert!(csp.starts_with("default-src 'none';") && !csp.contains("unsafe"));
    }

    #[test]
    fn numbers_and_ages_read_well() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_048_567), "1,048,567");
        assert_eq!(ago(Duration::from_millis(300)), "just now");
        assert_eq!(ago(Duration::from_secs(42)), "42 s ago");
        assert_eq!(ago(Duration::from_secs(600)), "10 min ago");
    }
}
