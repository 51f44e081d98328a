//! What a person sees while an export runs (a spinner naming the step, on a terminal
//! only), and the step log: elapsed time and memory at each step, at debug level.

use super::quarter::Quarter;

/// Progress of one quarter on a terminal (a spinner with the step), nothing otherwise.
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quarter: String,
    started: std::time::Instant,
}

/// Resident and peak memory of this process in MiB (Linux; 0 elsewhere), for the step
/// log: the issue bounds the export's peak RSS.
fn memory_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

impl Progress {
    pub(super) fn new(enabled: bool, quarter: Quarter) -> Progress {
        let bar = enabled.then(|| {
            let bar = crate::progress::spinner();
            bar.set_message(format!("{quarter}: starting"));
            bar
        });
        Progress {
            bar,
            quarter: quarter.to_string(),
            started: std::time::Instant::now(),
        }
    }

    pub(crate) fn step(&mut self, what: &str) {
        let (rss_mib, peak_mib) = memory_mib();
        tracing::debug!(
            quarter = %self.quarter,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            rss_mib,
            peak_mib,
            "Export step: {what}."
        );
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {what}", self.quarter));
        }
    }

    pub(crate) fn rows(&mut self, what: &str, n: u64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {what} ({n} rows)", self.quarter));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
