//! A bounded pool of warehouse sessions, shared by the threads of one process.
//!
//! A file is claimed, loaded and read back on one session (PostgreSQL claims are
//! session-level advisory locks), so a worker checks a session out for a whole file and
//! checks it back in after; sessions are reused across files, at most `max` are open,
//! and a worker that finds none free waits for one. A session that comes back broken
//! (its connection closed, or an error the pipeline judged transient) is dropped — the
//! server then releases whatever it held — and the next checkout opens a fresh one.
//!
//! Written here rather than with `r2d2`/`deadpool` because what a session is (a
//! [`Warehouse`] of either backend, migrations checked at open, typed errors whose
//! transience the pipeline's retry policy decides) does not fit their connection
//! managers without losing those types; the pool itself is the small part.

use std::sync::{Condvar, Mutex};

use super::{Result, Warehouse};

/// At most `max` sessions to the warehouse at `url`.
#[derive(Debug)]
pub struct Pool {
    url: String,
    max: usize,
    /// How a new session is opened: [`Warehouse::open`] (creates and migrates, for
    /// writers) or [`Warehouse::open_read_only`].
    opener: fn(&str) -> Result<Warehouse>,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    idle: Vec<Warehouse>,
    open: usize,
}

impl Pool {
    /// An empty pool; sessions are opened on demand.
    pub fn new(url: &str, max: usize) -> Pool {
        Pool {
            url: url.to_owned(),
            max: max.max(1),
            opener: Warehouse::open,
            state: Mutex::default(),
            freed: Condvar::new(),
        }
    }

    /// An empty pool of read-only sessions ([`Warehouse::open_read_only`]): opening one
    /// never creates, migrates or takes a write lock, so readers (`serve`) open sessions
    /// while a load holds the SQLite write lock.
    pub fn read_only(url: &str, max: usize) -> Pool {
        Pool {
            url: url.to_owned(),
            max: max.max(1),
            opener: Warehouse::open_read_only,
            state: Mutex::default(),
            freed: Condvar::new(),
        }
    }

    /// A session for this thread's exclusive use until [`Pool::checkin`]: an idle one
    /// that still answers, or a new one while fewer than `max` are open, or the next
    /// one checked in.
    ///
    /// # Errors
    /// As [`Warehouse::open`] (which retries transient connection failures itself), or
    /// [`Warehouse::open_read_only`] for a [`Pool::read_only`] pool.
    pub fn checkout(&self) -> Result<Warehouse> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(mut w) = state.idle.pop() {
                drop(state);
                if w.is_alive() {
                    return Ok(w);
                }
                tracing::debug!("Dropped a dead warehouse session from the pool.");
                state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                state.open -= 1;
                continue;
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return (self.opener)(&self.url).inspect_err(|_| {
                    let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                    state.open -= 1;
                    self.freed.notify_one();
                });
            }
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Gives a session back; `broken` ones are closed instead of reused.
    pub fn checkin(&self, w: Warehouse, broken: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if broken {
            state.open -= 1;
            drop(w);
        } else {
            state.idle.push(w);
        }
        self.freed.notify_one();
    }

    /// Sessions open now (idle or checked out).
    pub fn open_sessions(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).open
    }
}

/// Closing a PostgreSQL session blocks on a runtime of the driver's own, which panics
/// on a thread that drives async tasks: `serve` drops its pool (in `AppState`) inside
/// its runtime, and the process then exited 101 instead of 0 on SIGTERM. Idle sessions
/// of a pool dropped within a runtime are closed on a thread of their own.
impl Drop for Pool {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let idle = std::mem::take(&mut state.idle);
        if idle.is_empty() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let closing = std::thread::Builder::new()
            .name("bankpipe-close".into())
            .spawn(move || drop(idle));
        if let Err(e) = closing {
            // No thread to close them on: the process exit closes their sockets.
            tracing::warn!(error = %e, "Cannot close idle warehouse sessions; leaving them open.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_sessions_and_never_opens_more_than_max() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::new(&format!("sqlite://{}/w.db", dir.path().display()), 2);
        let a = pool.checkout().unwrap();
        let b = pool.checkout().unwrap();
        assert_eq!(pool.open_sessions(), 2);
        std::thread::scope(|s| {
            // A third checkout waits until one is checked in.
            let waiter = s.spawn(|| pool.checkout());
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!waiter.is_finished());
            pool.checkin(a, false);
            pool.checkin(waiter.join().unwrap().unwrap(), false);
        });
        assert_eq!(pool.open_sessions(), 2);
        pool.checkin(b, true);
        assert_eq!(pool.open_sessions(), 1);
        let c = pool.checkout().unwrap();
        assert_eq!(pool.open_sessions(), 1, "the idle session is reused");
        pool.checkin(c, false);
    }

    #[test]
    fn a_failed_open_frees_its_slot() {
        // A database "inside" a regular file cannot be created.
        let file = tempfile::NamedTempFile::new().unwrap();
        let pool = Pool::new(&format!("sqlite://{}/w.db", file.path().display()), 1);
        assert!(pool.checkout().is_err());
        assert_eq!(pool.open_sessions(), 0);
        assert!(pool.checkout().is_err(), "no deadlock after a failure");
    }
}
