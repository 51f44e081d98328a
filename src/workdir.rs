//! Working folders in `DATA_DIR` that belong to one process: an export's sort runs and
//! staged files (`DATA_DIR/.export-*`, about 150 bytes of disk a row read) and an
//! object-store inbox's spool (`DATA_DIR/.spool/run-*`). One module for both, so that
//! the two kinds are made, locked, judged and removed the same way.
//!
//! Each folder is removed when its owner drops it, and by a signal handler that calls
//! [`remove_live`] (`bankpipe export` on SIGINT/SIGTERM), also one being made at that
//! instant: the list of this process's folders is held while a folder is made, so the
//! handler waits for it to be listed, and no folder is made after. A process that is
//! killed (`kill -9`, a crash, the OOM killer, a power cut) removes nothing: an export
//! killed late leaves gigabytes. So whoever is about to make folders of a kind first
//! removes the ones whose owner is gone ([`sweep`]).
//!
//! Whether a folder is still in use is told by a lock, not by a pid or an age: pids are
//! reused and an export may run for many minutes. Each folder holds a file `lock` on
//! which its owner holds an exclusive advisory lock (`flock`) for as long as the folder
//! lives; the kernel releases it when the process ends, however it ends. So a folder
//! whose `lock` another process can lock is stale. The lock file is created under
//! another name, locked, then renamed to `lock`, so a `lock` that exists was locked from
//! its first instant: a process killed between making the folder and locking it leaves
//! a folder without `lock`, never one whose free `lock` a sweeper could take while its
//! owner is about to lock it. A folder without `lock` is either being made right now or
//! was left that way (or by an older bankpipe, whose spool lock had another name): it
//! is removed only once older than [`UNLOCKED_GRACE`].
//!
//! Not for folders shared by several hosts on a network file system whose locks do not
//! reach across hosts: there a folder of a live process on another host could look
//! free. `DATA_DIR` is per host (README: Configuration).
//!
//! Not here: what goes into the folders (`export::sort`, `export::build`, `pipeline`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Name of the lock file inside a working folder.
const LOCK: &str = "lock";

/// The lock file's name while it is made, before it is locked.
const LOCK_ASIDE: &str = ".lock.new";

/// Age after which a working folder without a lock file is taken for stale: far more
/// than the instant between creating a folder and its lock.
pub const UNLOCKED_GRACE: Duration = Duration::from_secs(3600);

/// The working folders of this process, for [`remove_live`].
static LIVE: Mutex<Live> = Mutex::new(Live::new());

/// The working folders that exist now, and whether the process is ending. Held for a
/// folder's whole making, so a signal handler calling [`remove_live`] at that instant
/// waits for the folder to be made and listed, then removes it; once it has run, no
/// folder is made any more (it would outlive the process).
#[derive(Debug)]
struct Live {
    dirs: Vec<PathBuf>,
    closed: bool,
}

impl Live {
    const fn new() -> Live {
        Live {
            dirs: Vec::new(),
            closed: false,
        }
    }
}

/// A working folder `parent/<prefix>XXXXXX`, locked for as long as it lives; removed
/// when dropped.
#[derive(Debug)]
pub struct WorkDir {
    /// Declared first, so dropped first: the folder is removed while still locked, so
    /// no sweeper takes it for stale in between.
    dir: tempfile::TempDir,
    _lock: File,
}

impl WorkDir {
    /// Makes a new locked working folder `parent/<prefix>XXXXXX` (and `parent` if need
    /// be). Does not sweep: call [`sweep`] once before making folders of a kind.
    ///
    /// # Errors
    /// The folder or its lock file cannot be made; `Interrupted` once [`remove_live`]
    /// has run (the process is ending).
    pub fn create(parent: &Path, prefix: &str) -> std::io::Result<WorkDir> {
        WorkDir::create_listed(&LIVE, parent, prefix)
    }

    fn create_listed(live: &Mutex<Live>, parent: &Path, prefix: &str) -> std::io::Result<WorkDir> {
        let mut live = lock(live);
        if live.closed {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the process is ending: no new working folder",
            ));
        }
        std::fs::create_dir_all(parent)?;
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
        let aside = dir.path().join(LOCK_ASIDE);
        let lock = File::options().write(true).create_new(true).open(&aside)?;
        lock.lock()?;
        std::fs::rename(&aside, dir.path().join(LOCK))?;
        live.dirs.push(dir.path().to_owned());
        Ok(WorkDir { dir, _lock: lock })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let path = self.dir.path();
        // Every folder is listed in `LIVE` (tests list theirs elsewhere, and are not
        // in it: nothing to remove then).
        lock(&LIVE).dirs.retain(|p| p != path);
    }
}

fn lock(live: &Mutex<Live>) -> std::sync::MutexGuard<'_, Live> {
    live.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes every working folder of this process, and makes no new one from then on:
/// for a signal handler that then ends the process (the threads using the folders are
/// not told; whatever they write next fails, and the process exits first). A folder
/// being made at that instant is waited for and removed too. Returns how many were
/// removed.
pub fn remove_live() -> usize {
    close_and_remove(&LIVE)
}

fn close_and_remove(live: &Mutex<Live>) -> usize {
    let mut live = lock(live);
    live.closed = true;
    let removed = remove_each(&live.dirs);
    live.dirs.clear();
    removed
}

fn remove_each(dirs: &[PathBuf]) -> usize {
    let mut removed = 0;
    for dir in dirs {
        match remove(dir) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(folder = %dir.display(), error = %e, "Could not remove a working folder.");
            }
        }
    }
    removed
}

/// `remove_dir_all`, again if a file appeared meanwhile (a thread still writing while
/// a signal removes its folder).
fn remove(dir: &Path) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if tries < 5 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Why a working folder is kept or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its lock is held: a process (this one or another) is using it.
    InUse,
    /// Nobody holds its lock, or it has none and is older than [`UNLOCKED_GRACE`].
    Stale,
    /// No lock file yet and young: being made right now, or too recent to tell.
    Young,
}

/// The folder's [`State`]; for [`State::Stale`], with its lock held, until the folder is
/// gone, so that two sweepers never race.
fn state(dir: &Path) -> std::io::Result<(State, Option<File>)> {
    match File::options().write(true).open(dir.join(LOCK)) {
        Ok(lock) => match lock.try_lock() {
            Ok(()) => Ok((State::Stale, Some(lock))),
            Err(std::fs::TryLockError::WouldBlock) => Ok((State::InUse, None)),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let age = std::fs::metadata(dir)?
                .modified()?
                .elapsed()
                .unwrap_or_default();
            Ok((
                if age >= UNLOCKED_GRACE {
                    State::Stale
                } else {
                    State::Young
                },
                None,
            ))
        }
        Err(e) => Err(e),
    }
}

/// Removes the folders `parent/<prefix>*` whose owner is gone (left by a process that
/// was killed), and returns them. Folders in use, young ones without a lock, other
/// names, and folders it cannot judge or remove are left (with a warning for the
/// latter): cleaning up never stops the work that called it.
pub fn sweep(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let ours = entry.file_name().to_string_lossy().starts_with(prefix)
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if !ours {
            continue;
        }
        match state(&dir) {
            Ok((State::Stale, _lock)) => match remove(&dir) {
                Ok(()) => {
                    tracing::info!(folder = %dir.display(), "Removed the working folder of a process that did not finish.");
                    removed.push(dir);
                }
                Err(e) => {
                    tracing::warn!(folder = %dir.display(), error = %e, "Could not remove the working folder of a process that did not finish.");
                }
            },
            Ok((State::InUse | State::Young, _)) => {
                tracing::debug!(folder = %dir.display(), "Working folder in use; left alone.");
            }
            Err(e) => {
                tracing::warn!(folder = %dir.display(), error = %e, "Could not tell whether a working folder is in use; left alone.");
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = ".export-";

    fn folders(parent: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(PREFIX))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_live_folder_is_kept_a_dropped_one_is_gone() {
        let parent = tempfile::tempdir().unwrap();
        let w = WorkDir::create(&parent.path().join("made"), PREFIX).unwrap();
        std::fs::write(w.path().join("run-0"), b"x").unwrap();
        assert!(w.path().join(LOCK).exists());
        assert!(!w.path().join(LOCK_ASIDE).exists());
        // Another handle to the lock (as another process would open it) cannot take it.
        assert_eq!(state(w.path()).unwrap().0, State::InUse);
        assert!(sweep(&parent.path().join("made"), PREFIX).is_empty());
        assert!(w.path().exists());
        let path = w.path().to_owned();
        drop(w);
        assert!(!path.exists());
        assert!(!lock(&LIVE).dirs.contains(&path));
    }

    #[test]
    fn a_folder_whose_lock_is_free_is_removed_and_nothing_else() {
        let parent = tempfile::tempdir().unwrap();
        // As a killed process leaves it: the folder, its lock file, no holder.
        let dead = parent.path().join(".export-dead01");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(LOCK), b"").unwrap();
        std::fs::write(dead.join("source-0.run"), vec![0u8; 1000]).unwrap();
        let alive = WorkDir::create(parent.path(), PREFIX).unwrap();
        // Not of this kind: other names, and a file of the same prefix, are never touched.
        std::fs::create_dir(parent.path().join("exports")).unwrap();
        std::fs::write(parent.path().join(".export-file"), b"").unwrap();
        let spool = parent.path().join("run-dead02");
        std::fs::create_dir(&spool).unwrap();
        std::fs::write(spool.join(LOCK), b"").unwrap();
        let removed = sweep(parent.path(), PREFIX);
        assert_eq!(removed, std::slice::from_ref(&dead));
        assert!(!dead.exists());
        assert!(alive.path().exists() && spool.exists());
        assert!(parent.path().join("exports").exists());
        assert!(parent.path().join(".export-file").exists());
        assert_eq!(folders(parent.path()).len(), 2, "the live one and the file");
        // The other kind's sweep takes its own dead folder.
        assert_eq!(sweep(parent.path(), "run-"), std::slice::from_ref(&spool));
    }

    #[test]
    fn a_young_folder_without_a_lock_is_kept() {
        let parent = tempfile::tempdir().unwrap();
        // As a process killed between making the folder and locking it leaves it (the
        // lock file still under its other name), or one being made right now.
        let young = parent.path().join(".export-young1");
        std::fs::create_dir(&young).unwrap();
        std::fs::write(young.join(LOCK_ASIDE), b"").unwrap();
        assert_eq!(state(&young).unwrap().0, State::Young);
        assert!(sweep(parent.path(), PREFIX).is_empty());
        assert!(young.exists());
    }

    #[test]
    fn live_folders_are_listed_for_the_signal_handler() {
        let parent = tempfile::tempdir().unwrap();
        let w = WorkDir::create(parent.path(), "run-").unwrap();
        std::fs::write(w.path().join("x"), b"x").unwrap();
        // `remove_live` itself would also remove other tests' folders (one process):
        // the list it removes, and the removal, are checked apart.
        let listed = lock(&LIVE).dirs.iter().find(|p| *p == w.path()).cloned();
        assert_eq!(listed.as_deref(), Some(w.path()));
        assert_eq!(remove_each(&[w.path().to_owned()]), 1);
        assert!(!w.path().exists());
        drop(w);
    }

    #[test]
    fn after_the_signal_handler_no_folder_is_made() {
        static OWN: Mutex<Live> = Mutex::new(Live::new());
        let parent = tempfile::tempdir().unwrap();
        let a = WorkDir::create_listed(&OWN, parent.path(), "run-").unwrap();
        let b = WorkDir::create_listed(&OWN, parent.path(), "run-").unwrap();
        std::fs::write(b.path().join("x"), b"x").unwrap();
        assert_eq!(close_and_remove(&OWN), 2);
        assert!(!a.path().exists() && !b.path().exists());
        // A thread that goes on making folders gets an error and makes nothing.
        let e = WorkDir::create_listed(&OWN, parent.path(), "run-").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted);
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_parent_is_nothing_to_clean() {
        assert!(sweep(Path::new("/no/such/bankpipe/folder"), PREFIX).is_empty());
    }
}
