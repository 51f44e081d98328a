//! Processes of this host, as far as a claim needs to know them: whether the process
//! that recorded a claim (`files.claim_pid`) is still running.
//!
//! A claim lives as long as its server session, and the server notices a client killed
//! with `kill -9` only at its next check (`client_connection_check_interval`, 1 s). A
//! run started right after such a kill on the same host can tell from `/proc` that the
//! claimant is gone, and wait for the server instead of skipping the file.
//!
//! Linux only (`/proc`); elsewhere the state is [`State::Unknown`] and callers treat
//! the claimant as running, as before. Never asked about another host: its process ids
//! mean nothing here. A wrong answer costs a wait, never a double load: the claim's
//! lock, not this module, decides who loads a file (with `/proc` mounted `hidepid`,
//! another user's claimant looks gone; a worker then waits for a lock that stays held
//! and reports the file `claimed_elsewhere`).

use std::path::Path;
use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`): 100 on every
/// architecture Linux runs bankpipe on (the kernel fixes it for user space, whatever
/// its own tick rate).
const USER_HZ: f64 = 100.0;

/// Slack when comparing a process's age with a claim's: both are read with 10 ms
/// resolution, at slightly different moments. A process that started more than this
/// after the claim was made cannot be the claimant.
const AGE_SLACK: Duration = Duration::from_secs(1);

/// What `/proc` says about a process id of this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A live process with that id, old enough to be the one asked about.
    Running,
    /// No such process, only its unreaped remains (a zombie), or a process that
    /// started after the claim was made (the id was reused).
    Gone,
    /// No `/proc` to ask (not Linux): callers assume running.
    Unknown,
}

/// The state of process `pid` of this host, which, to be the process asked about, must
/// have been running for at least `held_for` (how long ago it made its claim; `None`:
/// not checked).
pub fn state(pid: u32, held_for: Option<Duration>) -> State {
    state_in(Path::new("/proc"), pid, held_for)
}

/// [`state`] with `/proc` at `proc`.
fn state_in(proc: &Path, pid: u32, held_for: Option<Duration>) -> State {
    if !proc.join("self").exists() {
        return State::Unknown;
    }
    let dir = proc.join(pid.to_string());
    let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
        // Gone, or gone between the two reads.
        return if dir.exists() {
            State::Running
        } else {
            State::Gone
        };
    };
    let Some((process_state, started_ticks)) = parse_stat(&stat) else {
        return State::Running;
    };
    // A killed process stays a zombie until its parent reaps it: it runs nothing.
    if matches!(process_state, 'Z' | 'X' | 'x') {
        return State::Gone;
    }
    let uptime = std::fs::read_to_string(proc.join("uptime"))
        .ok()
        .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok());
    match (held_for, uptime) {
        (Some(held_for), Some(uptime)) => {
            let age = (uptime - started_ticks as f64 / USER_HZ).max(0.0);
            if Duration::from_secs_f64(age) + AGE_SLACK < held_for {
                State::Gone
            } else {
                State::Running
            }
        }
        _ => State::Running,
    }
}

/// The state letter and the start time (clock ticks after boot) of a
/// `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself: the fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 (state) is fields[0], field 22 (starttime) fields[19].
    let state = fields.first()?.chars().next()?;
    let started = fields.get(19)?.parse().ok()?;
    Some((state, started))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_running() {
        assert_eq!(state(std::process::id(), None), State::Running);
        assert_eq!(
            state(std::process::id(), Some(Duration::ZERO)),
            State::Running
        );
    }

    #[test]
    fn a_process_younger_than_the_claim_reuses_the_pid() {
        // This test process started well after a claim made a day ago.
        assert_eq!(
            state(std::process::id(), Some(Duration::from_secs(86_400))),
            State::Gone
        );
    }

    #[test]
    fn an_exited_process_is_gone_reaped_or_not() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: a zombie once it exits.
        let mut zombie = false;
        for _ in 0..200 {
            if state(pid, None) == State::Gone {
                zombie = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(zombie, "an exited, unreaped child is gone");
        child.wait().unwrap();
        assert_eq!(state(pid, None), State::Gone);
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0";
        assert_eq!(parse_stat(line), Some(('S', 987_654)));
        assert_eq!(parse_stat("4242 (x) Z"), None);
    }

    #[test]
    fn without_proc_the_state_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(state_in(dir.path(), 1, None), State::Unknown);
    }
}
