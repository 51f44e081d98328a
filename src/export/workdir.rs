//! The export's working folders `DATA_DIR/.export-*` (sort runs, staged Parquet files,
//! about 150 bytes of disk per row read): one per quarter, removed when the quarter's
//! export ends, on SIGINT/SIGTERM of `bankpipe export` ([`remove_live`], called by the
//! command's signal handler), and — for a folder left by a process that was killed
//! (`kill -9`, a crash, a power cut) — by the next export ([`remove_stale`]).
//!
//! Whether a folder is still in use is told by a lock, not by a pid or an age: pids are
//! reused and an export may run for many minutes. Each folder holds a file `lock` on
//! which its export holds an exclusive advisory lock (`flock`) for as long as the folder
//! lives; the operating system releases it when the process ends, however it ends. So
//! a folder whose `lock` another process can lock is stale. The lock file is created
//! under another name, locked, then renamed to `lock`, so a `lock` that exists was
//! locked from its first instant. A folder without `lock` is either being made right
//! now or was left by a bankpipe before this scheme: it is removed only once it is
//! older than [`UNLOCKED_GRACE`].
//!
//! Not here: what goes into the folder (`sort`, `build`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Prefix of every working folder's name in the data folder.
pub const PREFIX: &str = ".export-";

/// Name of the lock file inside a working folder.
const LOCK: &str = "lock";

/// Age after which a working folder without a lock file is taken for stale: far more
/// than the instant between creating a folder and its lock.
pub const UNLOCKED_GRACE: Duration = Duration::from_secs(3600);

/// The working folders of this process, for [`remove_live`]. A folder is made and
/// listed, and removed and unlisted, while this is held, so the signal handler never
/// misses one that exists; once it has removed them, no other is made.
static LIVE: Mutex<Live> = Mutex::new(Live {
    dirs: Vec::new(),
    stopping: false,
});

struct Live {
    dirs: Vec<PathBuf>,
    /// Set by [`remove_live`]: the process is about to exit.
    stopping: bool,
}

/// A working folder, locked for as long as it lives; removed on drop.
#[derive(Debug)]
pub(super) struct WorkDir {
    /// Removed first (in `drop`), while still locked, so no other export takes it for
    /// stale in between.
    dir: Option<tempfile::TempDir>,
    _lock: File,
}

impl WorkDir {
    /// Makes a new locked working folder `data_dir/.export-XXXXXX` (and `data_dir` if
    /// need be).
    ///
    /// # Errors
    /// The folder or its lock file cannot be made; the export was interrupted.
    pub(super) fn create(data_dir: &Path) -> std::io::Result<WorkDir> {
        std::fs::create_dir_all(data_dir)?;
        let mut live = live();
        if live.stopping {
            return Err(std::io::Error::other("the export was interrupted"));
        }
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(data_dir)?;
        let aside = dir.path().join(".lock.new");
        let lock = File::options().write(true).create_new(true).open(&aside)?;
        lock.lock()?;
        std::fs::rename(&aside, dir.path().join(LOCK))?;
        live.dirs.push(dir.path().to_owned());
        Ok(WorkDir {
            dir: Some(dir),
            _lock: lock,
        })
    }

    /// The folder.
    pub(super) fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new(""), tempfile::TempDir::path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let mut live = live();
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(e) = dir.close() {
                tracing::warn!(dir = %path.display(), error = %e, "Could not remove the export's working folder; the next export will.");
            }
            live.dirs.retain(|p| *p != path);
        }
    }
}

fn live() -> std::sync::MutexGuard<'static, Live> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes every working folder of this process, and makes any later
/// `WorkDir::create` fail: for the signal handler of `bankpipe export`, which then
/// ends the process (the export thread is not told; whatever it writes next fails, and
/// the process exits first). Returns how many were removed.
pub fn remove_live() -> usize {
    let mut live = live();
    live.stopping = true;
    remove_each(&live.dirs)
}

fn remove_each(dirs: &[PathBuf]) -> usize {
    let mut removed = 0;
    for dir in dirs {
        match remove(dir) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "Could not remove the export's working folder.");
            }
        }
    }
    removed
}

/// `remove_dir_all`, again if a file appeared meanwhile (the export thread still
/// writing while a signal removes its folder).
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
    /// Its lock is held: an export (of any process) is using it.
    InUse,
    /// Nobody holds its lock, or it has none and is older than [`UNLOCKED_GRACE`].
    Stale,
    /// No lock file yet and young: being made right now, or too recent to tell.
    Young,
}

fn state(dir: &Path) -> std::io::Result<(State, Option<File>)> {
    match File::options().write(true).open(dir.join(LOCK)) {
        Ok(lock) => match lock.try_lock() {
            // Held until the folder is gone, so that two sweepers never race.
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

/// Removes the working folders in `data_dir` that no running export uses (left by an
/// export that was killed), and returns them. Folders in use, and folders it cannot
/// judge or remove, are left (with a warning for the latter): cleaning up never stops
/// an export.
pub fn remove_stale(data_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_work = entry.file_name().to_string_lossy().starts_with(PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_work {
            continue;
        }
        match state(&dir) {
            Ok((State::Stale, _lock)) => match remove(&dir) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "Removed the working folder of an export that did not finish.");
                    removed.push(dir);
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "Could not remove a stale export working folder.");
                }
            },
            Ok((State::InUse | State::Young, _)) => {
                tracing::debug!(dir = %dir.display(), "Export working folder in use; left alone.");
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "Could not tell whether an export working folder is in use; left alone.");
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work_dirs(data: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(data)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(PREFIX))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_live_folder_is_kept_a_dropped_one_is_gone() {
        let data = tempfile::tempdir().unwrap();
        let w = WorkDir::create(data.path()).unwrap();
        std::fs::write(w.path().join("run-0"), b"x").unwrap();
        assert!(w.path().join(LOCK).exists());
        assert!(!w.path().join(".lock.new").exists());
        // Another handle to the lock (as another process would open it) cannot take it.
        assert_eq!(state(w.path()).unwrap().0, State::InUse);
        assert!(remove_stale(data.path()).is_empty());
        assert!(w.path().exists());
        let path = w.path().to_owned();
        drop(w);
        assert!(!path.exists());
        assert!(!live().dirs.contains(&path));
    }

    #[test]
    fn a_folder_whose_lock_is_free_is_removed() {
        let data = tempfile::tempdir().unwrap();
        // As a killed export leaves it: the folder, its lock file, no holder.
        let dead = data.path().join(".export-dead01");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(LOCK), b"").unwrap();
        std::fs::write(dead.join("source-0.run"), vec![0u8; 1000]).unwrap();
        let alive = WorkDir::create(data.path()).unwrap();
        // Not a working folder: other names are never touched.
        std::fs::create_dir(data.path().join("exports")).unwrap();
        std::fs::write(data.path().join(".export-file"), b"").unwrap();
        let removed = remove_stale(data.path());
        assert_eq!(removed, std::slice::from_ref(&dead));
        assert!(!dead.exists());
        assert!(alive.path().exists());
        assert!(data.path().join("exports").exists());
        assert!(data.path().join(".export-file").exists());
        assert_eq!(work_dirs(data.path()).len(), 2, "the live one and the file");
    }

    #[test]
    fn a_young_folder_without_a_lock_is_kept() {
        let data = tempfile::tempdir().unwrap();
        let young = data.path().join(".export-young1");
        std::fs::create_dir(&young).unwrap();
        assert_eq!(state(&young).unwrap().0, State::Young);
        assert!(remove_stale(data.path()).is_empty());
        assert!(young.exists());
    }

    #[test]
    fn live_folders_are_listed_for_the_signal_handler() {
        let data = tempfile::tempdir().unwrap();
        let w = WorkDir::create(data.path()).unwrap();
        std::fs::write(w.path().join("x"), b"x").unwrap();
        // `remove_live` itself would also remove other tests' folders (one process):
        // the list it removes, and the removal, are checked apart.
        let listed = live().dirs.iter().find(|p| *p == w.path()).cloned();
        assert_eq!(listed.as_deref(), Some(w.path()));
        assert_eq!(remove_each(&[w.path().to_owned()]), 1);
        assert!(!w.path().exists());
        drop(w);
    }

    #[test]
    fn a_missing_data_folder_is_nothing_to_clean() {
        assert!(remove_stale(Path::new("/no/such/bankpipe/folder")).is_empty());
    }
}
