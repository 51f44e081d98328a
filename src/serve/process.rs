//! The standard `process_*` metrics of this process, read from `/proc` at scrape time
//! (the names and meanings the Prometheus client libraries use). Linux only; elsewhere
//! nothing is written.

use crate::metrics::{Exposition, Kind};

/// Clock ticks per second of the times in `/proc/self/stat` (`USER_HZ`): 100 on every
/// Linux architecture bankpipe builds for (it is part of the kernel's ABI, unlike the
/// internal `HZ`).
#[cfg(target_os = "linux")]
const USER_HZ: f64 = 100.0;

/// Figures of this process.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProcessFigures {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    start_time_seconds: Option<f64>,
    threads: Option<f64>,
}

impl ProcessFigures {
    /// Reads `/proc/self`; a figure that cannot be read is left out.
    #[cfg(target_os = "linux")]
    pub(crate) fn read() -> ProcessFigures {
        let mut f = ProcessFigures::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name, which is in parentheses and may hold
            // spaces: state is field 3, utime 14, stime 15, starttime 22.
            if let Some((_, rest)) = stat.rsplit_once(')') {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
                if let (Some(u), Some(s)) = (field(14), field(15)) {
                    f.cpu_seconds = Some((u + s) / USER_HZ);
                }
                if let (Some(start), Some(boot)) = (field(22), boot_time()) {
                    f.start_time_seconds = Some(boot + start / USER_HZ);
                }
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            for line in status.lines() {
                let value = |l: &str| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<f64>().ok())
                };
                if line.starts_with("VmRSS:") {
                    f.resident_bytes = value(line).map(|kb| kb * 1024.0);
                } else if line.starts_with("VmSize:") {
                    f.virtual_bytes = value(line).map(|kb| kb * 1024.0);
                } else if line.starts_with("Threads:") {
                    f.threads = value(line);
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The listing holds its own descriptor open while it runs: not counted.
            f.open_fds = Some(dir.count().saturating_sub(1) as f64);
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            f.max_fds = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l["Max open files".len()..].split_whitespace().next())
                .and_then(|soft| soft.parse().ok());
        }
        f
    }

    /// Nothing outside Linux.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn read() -> ProcessFigures {
        ProcessFigures::default()
    }

    /// Writes the `process_*` families that were read.
    pub(crate) fn write(&self, e: &mut Exposition) {
        let families: [(&str, Kind, &str, Option<f64>); 7] = [
            (
                "process_cpu_seconds_total",
                Kind::Counter,
                "Total user and system CPU time spent in seconds.",
                self.cpu_seconds,
            ),
            (
                "process_resident_memory_bytes",
                Kind::Gauge,
                "Resident memory size in bytes.",
                self.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                Kind::Gauge,
                "Virtual memory size in bytes.",
                self.virtual_bytes,
            ),
            (
                "process_open_fds",
                Kind::Gauge,
                "Number of open file descriptors.",
                self.open_fds,
            ),
            (
                "process_max_fds",
                Kind::Gauge,
                "Maximum number of open file descriptors.",
                self.max_fds,
            ),
            (
                "process_start_time_seconds",
                Kind::Gauge,
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds,
            ),
            (
                "process_threads",
                Kind::Gauge,
                "Number of OS threads in the process.",
                self.threads,
            ),
        ];
        for (name, kind, help, value) in families {
            if let Some(v) = value {
                e.single(name, kind, help, v);
            }
        }
    }
}

/// The boot time in seconds since the Unix epoch (`btime` of `/proc/stat`).
#[cfg(target_os = "linux")]
fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let f = ProcessFigures::read();
        assert!(f.resident_bytes.unwrap() > 0.0);
        assert!(f.virtual_bytes.unwrap() >= f.resident_bytes.unwrap());
        assert!(f.threads.unwrap() >= 1.0);
        assert!(f.open_fds.unwrap() >= 1.0);
        assert!(f.max_fds.unwrap() >= f.open_fds.unwrap());
        assert!(f.cpu_seconds.unwrap() >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = f.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
        let mut e = Exposition::new();
        f.write(&mut e);
        assert_eq!(e.finish().matches("# TYPE process_").count(), 7);
    }
}
