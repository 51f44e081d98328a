//! Drift of a feature between the previous quarter and the current one (issue #10):
//! population stability index (PSI) over bins fixed by the previous quarter, null
//! rates then and now, and the self-contained `drift.html` page.
//!
//! Definitions (contract: they are documented in the README and the manifest carries
//! their results):
//!
//! - **Numeric bins.** The cut points are the previous quarter's deciles of its
//!   non-null values: the quantiles at 0.1, 0.2, …, 0.9 by linear interpolation
//!   between closest ranks, as numpy's default `quantile(method="linear")` and
//!   DuckDB's `quantile_cont` (sorted values `x[0..n]`, `h = (n-1)·q`,
//!   `x[⌊h⌋] + (h-⌊h⌋)·(x[⌊h⌋+1] - x[⌊h⌋])`, with numpy's two-sided form of that
//!   interpolation, so the edges are numpy's to the bit). Equal cut points are merged,
//!   so there are at most 10 bins: `(-inf, e1]`, `(e1, e2]`, …, `(ek, +inf)`, closed on
//!   the right (a value equal to an edge falls in the bin the edge closes). A previous
//!   quarter without non-null values gives one bin, `(-inf, +inf)`.
//!   Shares are over the non-null values of each side: **nulls are not a PSI bin for
//!   numeric features** (there is no place for them on the axis); the null rates
//!   cover them. NaN counts as null.
//! - **Categorical bins.** The previous quarter's 20 most frequent non-null values
//!   (count descending, ties by the value's bytes ascending), then `other` (every other
//!   non-null value, also values the previous quarter never had), then `null`. Shares
//!   are over all rows: **null is a PSI bin for categorical features**, because for a
//!   model a missing category is one more level (one-hot encoders give it a column),
//!   and the issue lists it among the bins. `other` and `null` are always present,
//!   even when empty on both sides (then they add nothing to the PSI).
//! - **PSI** = Σ over bins (c − p)·ln(c / p), where p and c are the previous and
//!   current shares, each floored at 0.0001 (not renormalised). A side without rows
//!   in its denominator has every share 0, so floored.
//! - **Null rate** = null rows / rows, 0 for a side without rows.
//! - **Flagged** when PSI ≥ 0.2, or when the null rate moved by ≥ 0.05; the latter is
//!   decided exactly on the counts (`20·|n_c·N_p − n_p·N_c| ≥ N_p·N_c`), so a move of
//!   exactly 5 points flags although `0.15 - 0.10 < 0.05` in floating point.
//!
//! Deterministic: the same inputs give the same [`FeatureDrift`] and the same page,
//! byte for byte (ordered maps only, fixed number formatting).
//!
//! This module does not read the warehouse or the datasets: the caller hands it the
//! values of each side.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Number of bins of a numeric feature before merging equal cut points.
pub const BINS: usize = 10;
/// Number of previous-quarter values that get their own categorical bin.
pub const TOP_VALUES: usize = 20;
/// Lowest share a bin counts with in the PSI (an empty bin would be infinite).
pub const SHARE_FLOOR: f64 = 0.0001;
/// PSI at or above which a feature is flagged.
pub const PSI_FLAG: f64 = 0.2;
/// Move of the null rate at or above which a feature is flagged (decided exactly, see
/// the module documentation).
pub const NULL_RATE_FLAG: f64 = 0.05;

/// The values of one feature in one quarter, one per row (`None`: null).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// A numeric feature.
    Numeric(Vec<Option<f64>>),
    /// A categorical feature.
    Categorical(Vec<Option<String>>),
}

/// What a bin holds.
#[derive(serde::Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BinKind {
    /// Numeric values in an interval (the label).
    Range,
    /// One categorical value (the label is the value).
    Value,
    /// Categorical values outside the previous quarter's top 20.
    Other,
    /// Null (categorical features only).
    Null,
}

/// One bin of a feature, with what each quarter put in it.
#[derive(serde::Serialize, Clone, Debug, PartialEq)]
pub struct Bin {
    /// `(a, b]` for a numeric bin, the value itself, `other` or `null`.
    pub label: String,
    /// What the bin holds (tells a value spelt `other` from the `other` bin).
    pub kind: BinKind,
    /// Rows of the previous quarter in the bin.
    pub prev_count: u64,
    /// Rows of the current quarter in the bin.
    pub cur_count: u64,
    /// Share of the previous quarter (before the PSI floor): of its non-null values for
    /// a numeric feature, of all its rows for a categorical one.
    pub prev_share: f64,
    /// Share of the current quarter, likewise.
    pub cur_share: f64,
}

/// The drift of one feature.
#[derive(serde::Serialize, Clone, Debug)]
pub struct FeatureDrift {
    /// Feature (column) name.
    pub feature: String,
    /// `numeric` or `categorical`.
    pub kind: String,
    /// Population stability index.
    pub psi: f64,
    /// Share of null rows in the previous quarter (0 without rows).
    pub null_rate_prev: f64,
    /// Share of null rows in the current quarter (0 without rows).
    pub null_rate_cur: f64,
    /// PSI ≥ 0.2 or null rate moved by ≥ 0.05.
    pub flagged: bool,
    /// Rows of the previous quarter (null or not).
    pub rows_prev: u64,
    /// Rows of the current quarter (null or not).
    pub rows_cur: u64,
    /// The bins, in axis order (numeric) or rank order then `other`, `null`.
    pub bins: Vec<Bin>,
}

/// Compares the current quarter's values of `feature` with the previous quarter's.
///
/// # Panics
/// Panics when `prev` and `cur` are not the same kind of [`Values`] (a caller bug).
pub fn compare(feature: &str, prev: &Values, cur: &Values) -> FeatureDrift {
    let (kind, rows, nulls, bins) = match (prev, cur) {
        (Values::Numeric(p), Values::Numeric(c)) => {
            let (nulls, bins) = numeric_bins(p, c);
            ("numeric", (p.len(), c.len()), nulls, bins)
        }
        (Values::Categorical(p), Values::Categorical(c)) => {
            let (nulls, bins) = categorical_bins(p, c);
            ("categorical", (p.len(), c.len()), nulls, bins)
        }
        _ => panic!("drift of {feature}: the two quarters hold different kinds of values"),
    };
    let rows = (rows.0 as u64, rows.1 as u64);
    let psi = bins
        .iter()
        .map(|b| {
            let p = b.prev_share.max(SHARE_FLOOR);
            let c = b.cur_share.max(SHARE_FLOOR);
            (c - p) * (c / p).ln()
        })
        .sum::<f64>();
    FeatureDrift {
        feature: feature.to_owned(),
        kind: kind.to_owned(),
        psi,
        null_rate_prev: share(nulls.0, rows.0),
        null_rate_cur: share(nulls.1, rows.1),
        flagged: psi >= PSI_FLAG || null_rate_moved(nulls, rows),
        rows_prev: rows.0,
        rows_cur: rows.1,
        bins,
    }
}

/// `part / whole`, 0 when `whole` is 0.
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Whether |nulls.1/rows.1 − nulls.0/rows.0| ≥ 1/20, exactly (a rate over no rows is 0).
fn null_rate_moved(nulls: (u64, u64), rows: (u64, u64)) -> bool {
    let rate = |n: u64, r: u64| {
        if r == 0 {
            (0, 1)
        } else {
            (i128::from(n), i128::from(r))
        }
    };
    let (np, rp) = rate(nulls.0, rows.0);
    let (nc, rc) = rate(nulls.1, rows.1);
    20 * (nc * rp - np * rc).abs() >= rp * rc
}

/// The null counts of each side and the numeric bins.
fn numeric_bins(prev: &[Option<f64>], cur: &[Option<f64>]) -> ((u64, u64), Vec<Bin>) {
    let present = |v: &Option<f64>| v.filter(|x| !x.is_nan());
    let mut sorted: Vec<f64> = prev.iter().filter_map(present).collect();
    sorted.sort_unstable_by(f64::total_cmp);
    let edges = decile_edges(&sorted);
    let mut prev_counts = vec![0u64; edges.len() + 1];
    let mut cur_counts = vec![0u64; edges.len() + 1];
    for x in &sorted {
        prev_counts[bin_of(&edges, *x)] += 1;
    }
    for x in cur.iter().filter_map(present) {
        cur_counts[bin_of(&edges, x)] += 1;
    }
    let present_prev = sorted.len() as u64;
    let present_cur: u64 = cur_counts.iter().sum();
    let labels = range_labels(&edges);
    let bins = labels
        .into_iter()
        .zip(prev_counts.into_iter().zip(cur_counts))
        .map(|(label, (p, c))| Bin {
            label,
            kind: BinKind::Range,
            prev_count: p,
            cur_count: c,
            prev_share: share(p, present_prev),
            cur_share: share(c, present_cur),
        })
        .collect();
    let nulls = (
        prev.len() as u64 - present_prev,
        cur.len() as u64 - present_cur,
    );
    (nulls, bins)
}

/// The strictly increasing cut points: deciles of `sorted`, equal ones merged.
fn decile_edges(sorted: &[f64]) -> Vec<f64> {
    let mut edges: Vec<f64> = Vec::with_capacity(BINS - 1);
    if sorted.is_empty() {
        return edges;
    }
    for k in 1..BINS {
        let e = quantile(sorted, k as f64 / BINS as f64);
        // `>` rather than `!=`: also drops an edge one ulp below the last, should the
        // interpolation ever give one.
        if edges.last().is_none_or(|last| e > *last) {
            edges.push(e);
        }
    }
    edges
}

/// Quantile `q` of non-empty `sorted` by linear interpolation, computed as numpy's
/// `quantile(..., method="linear")` does (`_lerp`: from the upper value when the
/// fraction is at least one half).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let h = (n - 1) as f64 * q;
    let lo = h.floor();
    let t = h - lo;
    let i = lo as usize;
    let (a, b) = (sorted[i], sorted[(i + 1).min(n - 1)]);
    if t == 0.0 || a == b {
        // Also keeps infinite values from making NaN (inf · 0).
        return a;
    }
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// Index of the bin of `x`: bins are closed on the right.
fn bin_of(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|e| *e < x)
}

/// `(-inf, e1]`, `(e1, e2]`, …, `(ek, +inf)`; numbers with 6 significant digits, or
/// in full where that would make two edges look equal.
fn range_labels(edges: &[f64]) -> Vec<String> {
    let short: Vec<String> = edges.iter().map(|e| number(*e, true)).collect();
    let distinct = short.windows(2).all(|w| w[0] != w[1]);
    let texts: Vec<String> = if distinct {
        short
    } else {
        edges.iter().map(|e| number(*e, false)).collect()
    };
    let mut labels = Vec::with_capacity(texts.len() + 1);
    let mut lower = "-inf".to_owned();
    for t in texts {
        labels.push(format!("({lower}, {t}]"));
        lower = t;
    }
    labels.push(format!("({lower}, +inf)"));
    labels
}

/// A number as text: the shortest text that reads back as `x` (after rounding to 6
/// significant digits when `round`); an exponent only below 1e-6 or from 1e15 on.
fn number(x: f64, round: bool) -> String {
    if !x.is_finite() {
        return if x > 0.0 { "+inf" } else { "-inf" }.to_owned();
    }
    let x = if round {
        format!("{x:.5e}").parse::<f64>().unwrap_or(x)
    } else {
        x
    };
    if x == 0.0 {
        return "0".to_owned();
    }
    // `{}` never uses an exponent: 1e300 would be 301 digits.
    if x.abs() >= 1e15 || x.abs() < 1e-6 {
        return format!("{x:e}");
    }
    format!("{x}")
}

/// The null counts of each side and the categorical bins.
fn categorical_bins(prev: &[Option<String>], cur: &[Option<String>]) -> ((u64, u64), Vec<Bin>) {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut prev_nulls = 0u64;
    for v in prev {
        match v {
            Some(v) => *counts.entry(v.as_str()).or_default() += 1,
            None => prev_nulls += 1,
        }
    }
    let mut ranked: Vec<(&str, u64)> = counts.iter().map(|(v, n)| (*v, *n)).collect();
    // The map iterates in byte order, and the sort is stable: ties stay in byte order.
    ranked.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let top: Vec<(&str, u64)> = ranked.iter().take(TOP_VALUES).copied().collect();
    let prev_other: u64 = ranked.iter().skip(TOP_VALUES).map(|(_, n)| n).sum();
    let index: BTreeMap<&str, usize> = top.iter().enumerate().map(|(i, (v, _))| (*v, i)).collect();
    // Bins: the top values, then other, then null.
    let other = top.len();
    let null = other + 1;
    let mut cur_counts = vec![0u64; top.len() + 2];
    for v in cur {
        let bin = match v {
            Some(v) => index.get(v.as_str()).copied().unwrap_or(other),
            None => null,
        };
        cur_counts[bin] += 1;
    }
    let rows = (prev.len() as u64, cur.len() as u64);
    let bin = |label: String, kind: BinKind, p: u64, c: u64| Bin {
        label,
        kind,
        prev_count: p,
        cur_count: c,
        prev_share: share(p, rows.0),
        cur_share: share(c, rows.1),
    };
    let mut bins: Vec<Bin> = top
        .iter()
        .zip(&cur_counts)
        .map(|((v, p), c)| bin((*v).to_owned(), BinKind::Value, *p, *c))
        .collect();
    bins.push(bin(
        "other".into(),
        BinKind::Other,
        prev_other,
        cur_counts[other],
    ));
    bins.push(bin(
        "null".into(),
        BinKind::Null,
        prev_nulls,
        cur_counts[null],
    ));
    ((prev_nulls, cur_counts[null]), bins)
}

/// `drift.html`: a self-contained page (inline CSS and SVG; no script, font, style
/// sheet or image from elsewhere) titled with `quarter` against `previous`; a table of
/// every feature's PSI and null rates, then each feature's previous-vs-current
/// histogram, flagged features first (otherwise in the order given). Without a
/// previous quarter the page says there is nothing to compare, and `features` is not
/// shown. Every text is HTML-escaped (categorical values come from the data).
pub fn render_html(quarter: &str, previous: Option<&str>, features: &[FeatureDrift]) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let title = match previous {
        Some(p) => format!("Drift: {quarter} vs {p}"),
        None => format!("Drift: {quarter}"),
    };
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(h, "<title>{}</title>", esc(&title));
    h.push_str(STYLE);
    h.push_str("</head>\n<body>\n");
    let _ = writeln!(h, "<h1>{}</h1>", esc(&title));
    let Some(previous) = previous else {
        let _ = writeln!(
            h,
            "<p>Nothing to compare: {} is the first quarter exported, there is no previous \
             quarter.</p>\n</body>\n</html>",
            esc(quarter)
        );
        return h;
    };
    let mut order: Vec<&FeatureDrift> = features.iter().collect();
    order.sort_by_key(|f| !f.flagged);
    let flagged = order.iter().filter(|f| f.flagged).count();
    let _ = writeln!(
        h,
        "<p>{flagged} of {} features flagged. Population stability index (PSI) over bins set \
         by {p}: 10 bins at its deciles for numeric features (nulls excluded), its 20 most \
         frequent values, <i>other</i> and <i>null</i> for categorical ones; shares floored \
         at 0.0001. A feature is flagged when PSI &ge; 0.2 or its null rate moved by &ge; \
         0.05.</p>",
        order.len(),
        p = esc(previous)
    );
    if order.is_empty() {
        h.push_str("<p>No features.</p>\n</body>\n</html>\n");
        return h;
    }
    h.push_str(
        "<table>\n<thead><tr><th>Feature</th><th>Kind</th><th>PSI</th>\
         <th>Null rate then</th><th>Null rate now</th><th>Flagged</th></tr></thead>\n<tbody>\n",
    );
    for (i, f) in order.iter().enumerate() {
        let _ = writeln!(
            h,
            "<tr{cls}><td><a href=\"#f{i}\">{name}</a></td><td>{kind}</td><td>{psi:.4}</td>\
             <td>{np}</td><td>{nc}</td><td>{flag}</td></tr>",
            cls = if f.flagged { " class=\"flag\"" } else { "" },
            name = esc(&f.feature),
            kind = esc(&f.kind),
            psi = f.psi,
            np = percent(f.null_rate_prev),
            nc = percent(f.null_rate_cur),
            flag = if f.flagged { "yes" } else { "no" },
        );
    }
    h.push_str("</tbody>\n</table>\n");
    for (i, f) in order.iter().enumerate() {
        let _ = writeln!(
            h,
            "<section id=\"f{i}\">\n<h2>{name}{mark}</h2>\n<p>{kind}; PSI {psi:.4}; null rate \
             {np} &rarr; {nc}; rows {rp} &rarr; {rc}; bars: share of {of}</p>",
            name = esc(&f.feature),
            mark = if f.flagged {
                " <span class=\"flag\">flagged</span>"
            } else {
                ""
            },
            kind = esc(&f.kind),
            psi = f.psi,
            np = percent(f.null_rate_prev),
            nc = percent(f.null_rate_cur),
            rp = f.rows_prev,
            rc = f.rows_cur,
            of = if f.kind == "numeric" {
                "non-null values"
            } else {
                "rows"
            },
        );
        histogram(&mut h, f, quarter, previous);
        h.push_str("</section>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}

const STYLE: &str = "<style>\n\
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}\n\
table{border-collapse:collapse}\n\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}\n\
th:first-child,td:first-child{text-align:left}\n\
tr.flag td,span.flag{color:#b00020;font-weight:bold}\n\
svg text{font-size:11px;fill:#222}\n\
.prev{fill:#8da0cb}.cur{fill:#fc8d62}\n\
</style>\n";

/// Width of the label column, the bar area and the share text of a histogram (px).
const LABEL_W: f64 = 200.0;
const BAR_W: f64 = 360.0;
const TEXT_W: f64 = 60.0;
/// Height of one bar, and of one bin's row (two bars and a gap).
const BAR_H: f64 = 10.0;
const ROW_H: f64 = 2.0 * BAR_H + 8.0;
const LEGEND_H: f64 = 22.0;
/// Characters of a label shown before it is shortened (the whole label is the bar's
/// tooltip).
const LABEL_CHARS: usize = 30;

/// One horizontal bar chart: a row per bin, the previous quarter's share above the
/// current one's, bars scaled to the largest share.
fn histogram(h: &mut String, f: &FeatureDrift, quarter: &str, previous: &str) {
    let width = LABEL_W + BAR_W + TEXT_W;
    let height = LEGEND_H + ROW_H * f.bins.len() as f64;
    let max = f
        .bins
        .iter()
        .flat_map(|b| [b.prev_share, b.cur_share])
        .fold(0.0f64, f64::max);
    let _ = writeln!(
        h,
        "<svg width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" \
         role=\"img\" aria-label=\"{name}: share per bin, {p} and {q}\">",
        name = esc(&f.feature),
        p = esc(previous),
        q = esc(quarter),
    );
    let _ = writeln!(
        h,
        "<rect class=\"prev\" x=\"{LABEL_W:.0}\" y=\"4\" width=\"{BAR_H:.0}\" height=\"{BAR_H:.0}\"/>\
         <text x=\"{:.0}\" y=\"13\">{}</text>\
         <rect class=\"cur\" x=\"{:.0}\" y=\"4\" width=\"{BAR_H:.0}\" height=\"{BAR_H:.0}\"/>\
         <text x=\"{:.0}\" y=\"13\">{}</text>",
        LABEL_W + BAR_H + 4.0,
        esc(previous),
        LABEL_W + 120.0,
        LABEL_W + 120.0 + BAR_H + 4.0,
        esc(quarter),
    );
    for (i, b) in f.bins.iter().enumerate() {
        let y = LEGEND_H + ROW_H * i as f64;
        let shown = shorten(&b.label);
        let label = match b.kind {
            BinKind::Other | BinKind::Null => {
                format!("<tspan font-style=\"italic\">({})</tspan>", esc(&shown))
            }
            BinKind::Range | BinKind::Value => esc(&shown),
        };
        let _ = writeln!(
            h,
            "<g><title>{title}</title><text x=\"{tx:.0}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>",
            title = esc(&b.label),
            tx = LABEL_W - 6.0,
            ty = y + BAR_H + 4.0,
        );
        for (row, (class, s)) in [("prev", b.prev_share), ("cur", b.cur_share)]
            .into_iter()
            .enumerate()
        {
            let by = y + BAR_H * row as f64;
            let w = if max > 0.0 { BAR_W * s / max } else { 0.0 };
            let _ = writeln!(
                h,
                "<rect class=\"{class}\" x=\"{LABEL_W:.0}\" y=\"{by:.1}\" width=\"{w:.1}\" height=\"{BAR_H:.0}\"/>\
                 <text x=\"{tx:.1}\" y=\"{ty:.1}\">{pct}</text>",
                tx = LABEL_W + w + 4.0,
                ty = by + BAR_H - 1.0,
                pct = percent(s),
            );
        }
        h.push_str("</g>\n");
    }
    h.push_str("</svg>\n");
}

/// A share as a percentage with two decimals.
fn percent(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

/// The label, cut to [`LABEL_CHARS`] characters with an ellipsis.
fn shorten(label: &str) -> String {
    match label.char_indices().nth(LABEL_CHARS) {
        Some((cut, _)) => format!("{}…", &label[..cut]),
        None => label.to_owned(),
    }
}

/// `text` escaped for HTML text and attribute values; control characters (which data
/// may hold and HTML may not) become U+FFFD.
fn esc(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&#39;"),
            '\t' | '\n' => s.push(ch),
            c if c.is_control() => s.push('\u{FFFD}'),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: &[f64]) -> Values {
        Values::Numeric(v.iter().copied().map(Some).collect())
    }

    fn cat(v: &[Option<&str>]) -> Values {
        Values::Categorical(v.iter().map(|x| x.map(str::to_owned)).collect())
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn deciles_interpolate_like_numpy() {
        // 1..=10: h = 9q, so the deciles are 1.9, 2.8, …, 9.1.
        let x: Vec<f64> = (1..=10).map(f64::from).collect();
        let e = decile_edges(&x);
        let want = [1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1];
        assert_eq!(e.len(), 9);
        for (a, b) in e.iter().zip(want) {
            assert!(close(*a, b), "{e:?}");
        }
        // Eleven values 0..=10: the deciles are the integers 1..=9 exactly.
        let x: Vec<f64> = (0..=10).map(f64::from).collect();
        assert_eq!(
            decile_edges(&x),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
        );
        // One value: every decile is that value.
        assert_eq!(decile_edges(&[4.5]), [4.5]);
        assert!(decile_edges(&[]).is_empty());
    }

    #[test]
    fn duplicate_edges_are_merged() {
        // Eleven zeros then 1..=10 (21 values, h = 20q = 2, 4, …, 18): the deciles are
        // x[2], x[4], …, x[18] = 0, 0, 0, 0, 0, 2, 4, 6, 8, so five edges and six bins.
        let mut x = vec![0.0; 11];
        x.extend((1..=10).map(f64::from));
        let e = decile_edges(&x);
        assert_eq!(e.len(), 5, "{e:?}");
        for (a, b) in e.iter().zip([0.0, 2.0, 4.0, 6.0, 8.0]) {
            assert!(close(*a, b), "{e:?}");
        }
        let d = compare("x", &num(&x), &num(&x));
        let labels: Vec<&str> = d.bins.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "(-inf, 0]",
                "(0, 2]",
                "(2, 4]",
                "(4, 6]",
                "(6, 8]",
                "(8, +inf)"
            ]
        );
        let counts: Vec<u64> = d.bins.iter().map(|b| b.prev_count).collect();
        assert_eq!(counts, [11, 2, 2, 2, 2, 2]);
        assert_eq!(d.psi, 0.0);
        assert!(!d.flagged);
        // Ten zeros then 1..=10 (h = 19q): 0, 0, 0, 0, 0.5, 2.4, 4.3, 6.2, 8.1; the
        // bin (0, 0.5] is empty.
        let mut x = vec![0.0; 10];
        x.extend((1..=10).map(f64::from));
        let e = decile_edges(&x);
        assert_eq!(e.len(), 6, "{e:?}");
        for (a, b) in e.iter().zip([0.0, 0.5, 2.4, 4.3, 6.2, 8.1]) {
            assert!(close(*a, b), "{e:?}");
        }
        let d = compare("x", &num(&x), &num(&x));
        let counts: Vec<u64> = d.bins.iter().map(|b| b.prev_count).collect();
        assert_eq!(counts, [10, 0, 2, 2, 2, 2, 2]);
        assert_eq!(d.psi, 0.0);
    }

    #[test]
    fn psi_by_hand() {
        // Previous 0..=10 (11 values): edges 1..=9, bins (-inf,1] holds 0 and 1 (2/11),
        // each next bin one value (1/11), (9,+inf) holds 10 (1/11).
        let prev: Vec<f64> = (0..=10).map(f64::from).collect();
        // Current: four values, all in (-inf, 1] and (9, +inf): 2 each.
        let cur = [0.5, 1.0, 9.5, 100.0];
        let d = compare("amount", &num(&prev), &num(&cur));
        assert_eq!(d.bins.len(), 10);
        let p: Vec<f64> = d.bins.iter().map(|b| b.prev_share).collect();
        let c: Vec<f64> = d.bins.iter().map(|b| b.cur_share).collect();
        assert!(close(p[0], 2.0 / 11.0) && close(p[9], 1.0 / 11.0));
        assert!(close(c[0], 0.5) && close(c[9], 0.5) && c[1..9].iter().all(|s| *s == 0.0));
        // Σ (c − p)·ln(c/p), empty current bins floored at 0.0001:
        let want = (0.5 - 2.0 / 11.0) * (0.5f64 / (2.0 / 11.0)).ln()
            + 8.0 * (0.0001 - 1.0 / 11.0) * (0.0001f64 / (1.0 / 11.0)).ln()
            + (0.5 - 1.0 / 11.0) * (0.5f64 / (1.0 / 11.0)).ln();
        assert!(close(d.psi, want), "{} vs {want}", d.psi);
        // ≈ 0.32187 + 4.94906 + 0.69740 (Python, math.log).
        assert!((d.psi - 5.968_325_534_772_483).abs() < 1e-12, "{}", d.psi);
        assert!(d.flagged);
    }

    #[test]
    fn nulls_are_rates_not_bins_for_numbers() {
        let prev = Values::Numeric(vec![Some(1.0), Some(2.0), None, Some(f64::NAN)]);
        let cur = Values::Numeric(vec![Some(1.0), Some(2.0), Some(1.0), Some(2.0)]);
        let d = compare("balance_last", &prev, &cur);
        assert_eq!((d.null_rate_prev, d.null_rate_cur), (0.5, 0.0));
        assert!(d.bins.iter().all(|b| b.kind == BinKind::Range));
        let total: f64 = d.bins.iter().map(|b| b.prev_share).sum();
        assert!(close(total, 1.0));
        assert!(d.flagged, "null rate moved by 0.5");
    }

    #[test]
    fn null_rate_move_of_exactly_five_points_flags() {
        // 0.15 - 0.10 is 0.04999999999999999 in floating point.
        let values = |nulls: usize| {
            let mut v = vec![Some(1.0); 100 - nulls];
            v.extend(std::iter::repeat_n(None, nulls));
            Values::Numeric(v)
        };
        assert!(compare("x", &values(10), &values(15)).flagged);
        assert!(compare("x", &values(15), &values(10)).flagged);
        assert!(!compare("x", &values(10), &values(14)).flagged);
        // 1 null in 20 rows, then no rows at all (rate 0): moved by exactly 0.05.
        assert!(null_rate_moved((1, 0), (20, 0)));
        assert!(!null_rate_moved((0, 0), (0, 0)));
    }

    #[test]
    fn edge_cases() {
        // Single distinct value: one edge, two bins; the same data does not drift, a
        // shift above it does.
        let same = compare("x", &num(&[3.0; 5]), &num(&[3.0; 7]));
        assert_eq!(same.bins.len(), 2);
        assert_eq!(same.psi, 0.0);
        assert!(!same.flagged);
        assert!(compare("x", &num(&[3.0; 5]), &num(&[4.0; 5])).flagged);
        // Empty sides.
        let empty = compare("x", &num(&[]), &num(&[]));
        assert_eq!(
            (empty.psi, empty.flagged, empty.null_rate_cur),
            (0.0, false, 0.0)
        );
        assert_eq!(empty.bins.len(), 1);
        assert_eq!(empty.bins[0].label, "(-inf, +inf)");
        let appeared = compare("x", &num(&[]), &num(&[1.0]));
        assert!(appeared.flagged && appeared.psi.is_finite() && appeared.psi > 9.0);
        let vanished = compare("x", &num(&[1.0, 2.0]), &num(&[]));
        assert!(vanished.flagged && vanished.psi.is_finite());
        // All null on both sides: nothing moved.
        let nulls = Values::Numeric(vec![None; 3]);
        let d = compare("x", &nulls, &nulls);
        assert_eq!((d.psi, d.flagged, d.null_rate_prev), (0.0, false, 1.0));
        let nulls = Values::Categorical(vec![None; 3]);
        let d = compare("x", &nulls, &nulls);
        assert_eq!((d.psi, d.flagged), (0.0, false));
        // Infinite values are values, never NaN edges.
        let d = compare(
            "x",
            &num(&[f64::NEG_INFINITY, 1.0, f64::INFINITY]),
            &num(&[0.0]),
        );
        assert!(d.psi.is_finite() && d.bins.iter().all(|b| !b.label.contains("NaN")));
    }

    #[test]
    fn categorical_top_values_other_and_null() {
        // 25 distinct values: v00 ×30, then v01..v24 ×5 each (ties by bytes); 10 nulls.
        let mut prev: Vec<Option<String>> = vec![Some("v00".into()); 30];
        for i in (1..25).rev() {
            prev.extend(std::iter::repeat_n(Some(format!("v{i:02}")), 5));
        }
        prev.extend(std::iter::repeat_n(None, 10));
        let rows = prev.len() as f64; // 160
        let cur = prev.clone();
        let d = compare(
            "home_location",
            &Values::Categorical(prev),
            &Values::Categorical(cur),
        );
        assert_eq!(d.kind, "categorical");
        assert_eq!(d.bins.len(), 22);
        let labels: Vec<&str> = d.bins.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels[0], "v00");
        assert_eq!(
            labels[1..20],
            (1..20).map(|i| format!("v{i:02}")).collect::<Vec<_>>()
        );
        assert_eq!((labels[20], d.bins[20].kind), ("other", BinKind::Other));
        assert_eq!((labels[21], d.bins[21].kind), ("null", BinKind::Null));
        // v20..v24 are other: 25 rows.
        assert_eq!(d.bins[20].prev_count, 25);
        assert!(close(d.bins[21].prev_share, 10.0 / rows));
        assert!(close(d.null_rate_prev, 10.0 / rows));
        assert_eq!(d.psi, 0.0);
    }

    #[test]
    fn categorical_psi_counts_null_and_new_values() {
        let prev = cat(&[Some("F"), Some("F"), Some("M"), Some("M")]);
        // A value never seen goes to other; null is its own bin.
        let cur = cat(&[Some("F"), Some("M"), Some("other"), None]);
        let d = compare("gender", &prev, &cur);
        let got: Vec<(&str, BinKind, u64, u64)> = d
            .bins
            .iter()
            .map(|b| (b.label.as_str(), b.kind, b.prev_count, b.cur_count))
            .collect();
        assert_eq!(
            got,
            [
                ("F", BinKind::Value, 2, 1),
                ("M", BinKind::Value, 2, 1),
                ("other", BinKind::Other, 0, 1),
                ("null", BinKind::Null, 0, 1),
            ]
        );
        // F, M: (0.25 − 0.5)·ln(0.5) each; other, null: (0.25 − 0.0001)·ln(2500) each.
        let want = 2.0 * (-0.25) * 0.5f64.ln() + 2.0 * (0.25 - 0.0001) * 2500f64.ln();
        assert!(close(d.psi, want), "{} vs {want}", d.psi);
        assert!(d.flagged);
        assert_eq!((d.null_rate_prev, d.null_rate_cur), (0.0, 0.25));
    }

    #[test]
    fn same_inputs_same_bytes() {
        let prev = cat(&[Some("b"), Some("a"), Some("c"), Some("a"), None]);
        let cur = cat(&[Some("c"), Some("c"), Some("a")]);
        let a = compare("g", &prev, &cur);
        let b = compare("g", &prev.clone(), &cur.clone());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_eq!(
            render_html("2016Q3", Some("2016Q2"), std::slice::from_ref(&a)),
            render_html("2016Q3", Some("2016Q2"), &[b])
        );
        // Ties by bytes: a (2) first, then b and c (1 each) in byte order.
        let labels: Vec<&str> = a.bins.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["a", "b", "c", "other", "null"]);
    }

    #[test]
    fn labels_stay_distinct() {
        assert_eq!(
            range_labels(&[1.0, 2.5]),
            ["(-inf, 1]", "(1, 2.5]", "(2.5, +inf)"]
        );
        assert_eq!(range_labels(&[]), ["(-inf, +inf)"]);
        assert_eq!(number(0.1 + 0.2, true), "0.3");
        assert_eq!(number(0.1 + 0.2, false), "0.30000000000000004");
        assert_eq!(number(1234567.891, true), "1234570");
        assert_eq!(number(1e300, false), "1e300");
        assert_eq!(number(-2.5e-9, true), "-2.5e-9");
        assert_eq!(number(-0.0, true), "0");
        // Edges equal at 6 digits are written in full.
        let l = range_labels(&[1.0000001, 1.0000002]);
        assert_eq!(l[1], "(1.0000001, 1.0000002]");
    }

    #[test]
    fn html_is_self_contained_escaped_and_ordered() {
        let quiet = compare("amount", &num(&[1.0, 2.0, 3.0]), &num(&[1.0, 2.0, 3.0]));
        let evil = "<script>alert('x')</script>&\"";
        let loud = compare(
            "home_location",
            &cat(&[Some(evil), Some("PUNE")]),
            &cat(&[Some("PUNE"), None, None, None]),
        );
        assert!(loud.flagged && !quiet.flagged);
        let page = render_html("2016Q3", Some("2016Q2"), &[quiet, loud]);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<title>Drift: 2016Q3 vs 2016Q2</title>"));
        let lower = page.to_lowercase();
        for banned in ["<script", "http", "src=", "@import", "url(", "<link"] {
            assert!(!lower.contains(banned), "{banned} in the page");
        }
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
        // Flagged first: in the table and in the sections.
        let loud_at = page.find("home_location").unwrap();
        let quiet_at = page.find("amount").unwrap();
        assert!(loud_at < quiet_at);
        assert_eq!(page.matches("<svg").count(), 2);
        // Two bars a bin.
        // 10 numeric bins (deciles of 1, 2, 3 are all distinct) and 4 categorical ones.
        assert_eq!(
            page.matches("<rect class=\"cur\" x=\"200\" y=\"").count(),
            10 + 4
        );
        assert!(page.contains("<td>0.0000</td>"));
        assert!(page.ends_with("</html>\n"));
    }

    #[test]
    fn first_quarter_has_nothing_to_compare() {
        let page = render_html("2016Q1", None, &[]);
        assert!(page.contains("<h1>Drift: 2016Q1</h1>"));
        assert!(page.contains("Nothing to compare"));
        assert!(!page.contains("<svg"));
        let page = render_html("<b>", None, &[]);
        assert!(page.contains("Drift: &lt;b&gt;") && !page.contains("<b>"));
    }

    #[test]
    fn control_characters_do_not_reach_the_page() {
        assert_eq!(esc("a\u{0}b\u{7}"), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(shorten(&"é".repeat(40)).chars().count(), LABEL_CHARS + 1);
    }
}
