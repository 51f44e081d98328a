//! Progress of a run as a person sees it: a bar per file on a terminal (rows/s, bytes,
//! ETA), nothing extra otherwise (the per-file log line says it all).

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives progress events from the pipeline.
pub trait Progress {
    /// A file starts; `bytes` is its size on disk.
    fn file_started(&mut self, name: &str, bytes: u64);
    /// Raw bytes consumed and rows read so far in the current file.
    fn advanced(&mut self, bytes: u64, rows: u64);
    /// The current file is done; `summary` is a short outcome.
    fn file_finished(&mut self, summary: &str);
}

/// No output (not a terminal, or `--json`).
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn file_started(&mut self, _: &str, _: u64) {}
    fn advanced(&mut self, _: u64, _: u64) {}
    fn file_finished(&mut self, _: &str) {}
}

/// Bars on stderr.
#[derive(Debug, Default)]
pub struct Bars {
    bar: Option<ProgressBar>,
    started: Option<Instant>,
}

impl Progress for Bars {
    fn file_started(&mut self, name: &str, bytes: u64) {
        let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
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
        }
    }
}
