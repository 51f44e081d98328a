//! Progress of a run as a person sees it: a bar per file on a terminal (rows/s, bytes,
//! ETA), nothing extra otherwise (the per-file log line says it all).

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// All bars draw through this, so log lines can be printed above them without tearing.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// A `tracing` writer for stderr that hides the progress bars while a log line is
/// written and redraws them after.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    /// `tracing` writes each log line whole; control characters inside it (from a file
    /// name, a header cell, any text from a file) are escaped here, once for every log
    /// line, so no value can forge a line or drive the terminal ([`escape_log_line`]).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = escape_log_line(buf);
        bars().suspend(|| std::io::stderr().lock().write_all(&line))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A log line as written: control characters escaped as [`crate::report::printable`]
/// does, but for its final newline, tabs, and the colour sequences (`ESC [ … m`) the
/// formatter itself writes on a terminal. A colour sequence from a value can at worst
/// colour the rest of a line; it cannot move the cursor, erase, or end the line.
pub fn escape_log_line(buf: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    let Ok(text) = std::str::from_utf8(buf) else {
        return Cow::Borrowed(buf);
    };
    let body = text.strip_suffix('\n').unwrap_or(text);
    let colour_at = |i: usize| -> Option<usize> {
        let rest = body[i..].strip_prefix("\u{1b}[")?;
        let len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b';')
            .count();
        (rest.as_bytes().get(len) == Some(&b'm')).then_some(2 + len + 1)
    };
    if !body
        .char_indices()
        .any(|(i, c)| crate::report::needs_escape(c) && c != '\t' && colour_at(i).is_none())
    {
        return Cow::Borrowed(buf);
    }
    let mut out = String::with_capacity(buf.len() + 16);
    let mut skip_to = 0;
    for (i, c) in body.char_indices() {
        if i < skip_to {
            continue;
        }
        if c == '\u{1b}'
            && let Some(len) = colour_at(i)
        {
            out.push_str(&body[i..i + len]);
            skip_to = i + len;
        } else if crate::report::needs_escape(c) && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if body.len() < text.len() {
        out.push('\n');
    }
    Cow::Owned(out.into_bytes())
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// A spinner whose message tells the current step (`bankpipe export`); drawn with the
/// other bars, so log lines do not tear it.
pub fn spinner() -> ProgressBar {
    let bar = bars().add(ProgressBar::new_spinner());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Receives progress events from the pipeline.
pub trait Progress {
    /// A file starts; `bytes` is its size on disk.
    fn file_started(&mut self, name: &str, bytes: u64);
    /// Raw bytes consumed and rows read so far in the current file.
    fn advanced(&mut self, bytes: u64, rows: u64);
    /// The current file is done; `summary` is a short outcome.
    fn file_finished(&mut self, summary: &str);
    /// Another receiver of the same kind, for a worker processing other files at once.
    fn fork(&self) -> Box<dyn Progress + Send>;
}

/// No output (not a terminal, or `--json`).
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn file_started(&mut self, _: &str, _: u64) {}
    fn advanced(&mut self, _: u64, _: u64) {}
    fn file_finished(&mut self, _: &str) {}
    fn fork(&self) -> Box<dyn Progress + Send> {
        Box::new(Silent)
    }
}

/// Bars on stderr.
#[derive(Debug, Default)]
pub struct Bars {
    bar: Option<ProgressBar>,
    started: Option<Instant>,
    /// Finished bars stay on screen only while they are alive.
    done: Vec<ProgressBar>,
}

impl Progress for Bars {
    fn file_started(&mut self, name: &str, bytes: u64) {
        let bar = bars().add(ProgressBar::new(bytes));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        // The name comes from whoever dropped the file: a newline or an escape sequence
        // in it must not move the cursor or draw a line of its own.
        bar.set_prefix(crate::report::printable(name).into_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some(bar);
        self.started = Some(Instant::now());
    }

    fn advanced(&mut self, bytes: u64, rows: u64) {
        if let (Some(bar), Some(started)) = (&self.bar, self.started) {
            bar.set_position(bytes);
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("{rows} rows ({:.0} rows/s)", rows as f64 / secs));
        }
    }

    fn file_finished(&mut self, summary: &str) {
        if let Some(bar) = self.bar.take() {
            // The outcome may quote the file (a header cell, a name): escaped as well.
            bar.finish_with_message(crate::report::printable(summary).into_owned());
            self.done.push(bar);
        }
    }

    fn fork(&self) -> Box<dyn Progress + Send> {
        Box::new(Bars::default())
    }
}

#[cfg(test)]
mod tests {
    use super::{Bars, Progress, escape_log_line};

    fn escaped(line: &str) -> String {
        String::from_utf8(escape_log_line(line.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn log_lines_cannot_be_forged_by_values() {
        // Plain lines, tabs and the formatter's own colours pass unchanged.
        for line in [
            "2026-12-02T02:39:02Z  INFO File done. file=jan.csv status=\"loaded\"\n",
            "a\tb zürich-€\n",
            "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[3mfile\u{1b}[0m\u{1b}[2m=\u{1b}[0mx\n",
        ] {
            assert_eq!(escaped(line), line);
        }
        // A newline, a carriage return or a cursor-moving sequence inside the line does not
        // start another line.
        assert_eq!(
            escaped("INFO File done. file=a\n2026-01-01 ERROR forged.csv status=x\n"),
            "INFO File done. file=a\\n2026-01-01 ERROR forged.csv status=x\n"
        );
        assert_eq!(
            escaped("file=x\r\u{1b}[2K\u{1b}[1Afake\u{2028}\n"),
            "file=x\\r\\u{1b}[2K\\u{1b}[1Afake\\u{2028}\n"
        );
        assert_eq!(escaped("no final newline\n\n"), "no final newline\\n\n");
    }

    #[test]
    fn bars_show_names_and_outcomes_with_control_characters_escaped() {
        let mut bars = Bars::default();
        bars.file_started("a\n2026-01-01 ERROR forged\r\u{1b}[2J\u{1b}[1Ab.csv", 10);
        let bar = bars.bar.clone().unwrap();
        assert_eq!(
            bar.prefix(),
            "a\\n2026-01-01 ERROR forged\\r\\u{1b}[2J\\u{1b}[1Ab.csv"
        );
        bars.file_finished("failed: column \"x\u{1b}]0;title\u{7}\" unknown\u{2028}");
        assert_eq!(
            bars.done[0].message(),
            "failed: column \"x\\u{1b}]0;title\\u{7}\" unknown\\u{2028}"
        );
        // Plain names and non-ASCII letters are shown as they are.
        bars.file_started("zürich-€.csv", 1);
        assert_eq!(bars.bar.as_ref().unwrap().prefix(), "zürich-€.csv");
    }
}
