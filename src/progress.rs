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
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        bars().suspend(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
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
        bar.set_prefix(name.to_owned());
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
            bar.finish_with_message(summary.to_owned());
            self.done.push(bar);
        }
    }

    fn fork(&self) -> Box<dyn Progress + Send> {
        Box::new(Bars::default())
    }
}
