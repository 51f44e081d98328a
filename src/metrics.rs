//! The Prometheus text exposition format (version 0.0.4), written by hand: every
//! family with its `# HELP` and `# TYPE`, label values escaped, one family at a time.
//!
//! Used by `serve`'s `/metrics` and by `run --pushgateway` / `--metrics-file`. Metric
//! names are not written here: each caller names its families in one place
//! (`serve::metrics`, `push`).
//!
//! Why no metrics crate: every figure bankpipe exposes is a snapshot read at scrape
//! time (the warehouse catalog, `/proc`, the scheduler's board), not an in-process
//! counter bumped on a hot path. A registry crate (`prometheus-client`,
//! `metrics-exporter-prometheus`) would only add a custom-collector layer between those
//! reads and this text; the format itself is a few rules, tested here and checked with
//! `promtool check metrics` in `tests/serve.rs`.

use std::fmt::Write;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a family measures, as `# TYPE` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up, except on a reset (its name ends in `_total`).
    Counter,
    /// Any value.
    Gauge,
    /// Observations counted into cumulative buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A histogram's figures: cumulative counts per upper bound, plus the sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(le, observations <= le)`, ascending; `+Inf` is added from `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending).
    pub fn with_bounds(bounds: &[f64]) -> Histogram {
        Histogram {
            buckets: bounds.iter().map(|&b| (b, 0)).collect(),
            sum: 0.0,
            count: 0,
        }
    }

    /// Adds one observation.
    pub fn observe(&mut self, value: f64) {
        for (le, n) in &mut self.buckets {
            if value <= *le {
                *n += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }
}

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// One family being written: its samples follow its `# HELP` and `# TYPE`.
#[derive(Debug)]
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts family `name` of `kind` described by `help` (one line; `\` and line
    /// breaks are escaped). Write every sample of a family before starting the next:
    /// the format wants a family's lines together.
    pub fn family<'a>(&'a mut self, name: &'a str, kind: Kind, help: &str) -> Family<'a> {
        let _ = writeln!(
            self.out,
            "# HELP {name} {}\n# TYPE {name} {}",
            help.replace('\\', "\\\\").replace('\n', "\\n"),
            kind.name()
        );
        Family {
            out: &mut self.out,
            name,
        }
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help).sample(&[], value);
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

impl Family<'_> {
    /// Writes one sample of this family with these labels.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        write_sample(self.out, self.name, "", labels, None, value);
        self
    }

    /// Writes a histogram's `_bucket` (with `le`), `_sum` and `_count` samples.
    pub fn histogram(&mut self, labels: &[(&str, &str)], h: &Histogram) -> &mut Self {
        for (le, n) in &h.buckets {
            let le = format_value(*le);
            write_sample(self.out, self.name, "_bucket", labels, Some(&le), *n as f64);
        }
        write_sample(
            self.out,
            self.name,
            "_bucket",
            labels,
            Some("+Inf"),
            h.count as f64,
        );
        write_sample(self.out, self.name, "_sum", labels, None, h.sum);
        write_sample(self.out, self.name, "_count", labels, None, h.count as f64);
        self
    }
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
    let mut first = true;
    for (k, v) in all {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_value(value));
    out.push('\n');
}

/// A sample value as the format writes it: integers without a point, `NaN`, `+Inf`,
/// `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        // Shortest text that reads back as the same f64.
        format!("{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_type_and_escaped_labels() {
        let mut e = Exposition::new();
        e.family("x_total", Kind::Counter, "Things.\nMore")
            .sample(&[("rule", "a\"b\\c\nd")], 3.0)
            .sample(&[], 0.5);
        e.single("y_seconds", Kind::Gauge, "Age.", f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP x_total Things.\\nMore\n# TYPE x_total counter\n\
             x_total{rule=\"a\\\"b\\\\c\\nd\"} 3\nx_total 0.5\n\
             # HELP y_seconds Age.\n# TYPE y_seconds gauge\ny_seconds NaN\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let mut h = Histogram::with_bounds(&[0.5, 1.0]);
        for v in [0.2, 0.7, 3.0] {
            h.observe(v);
        }
        let mut e = Exposition::new();
        e.family("d_seconds", Kind::Histogram, "D.")
            .histogram(&[("k", "v")], &h);
        let text = e.finish();
        assert!(
            text.contains("d_seconds_bucket{k=\"v\",le=\"0.5\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{k=\"v\",le=\"1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{k=\"v\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("d_seconds_sum{k=\"v\"} 3.9\n"), "{text}");
        assert!(text.contains("d_seconds_count{k=\"v\"} 3\n"), "{text}");
    }

    #[test]
    fn values() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(-2.0), "-2");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e20), "1e20");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1_700_000_000.123), "1700000000.123");
    }
}
