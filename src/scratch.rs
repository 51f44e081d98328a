//! Working folders in `DATA_DIR` that belong to one process: an export's sort runs and
//! staged files (`DATA_DIR/.export-*`, about 150 bytes a row) and an object-store
//! inbox's spool (`DATA_DIR/.spool/run-*`).
//!
//! Each is removed when its owner is done with it, but a process that is killed
//! (`kill -9`, a crash, the OOM killer, a power cut) removes nothing, and before this
//! module every such death left its folder for good: an export killed late leaves
//! gigabytes. So the owner holds an exclusive `flock` on a lock file inside its folder
//! for the folder's whole life (the kernel releases it when the process dies, however it
//! dies), and whoever creates a folder of the same kind first sweeps the folders whose
//! lock is free. A folder without a lock file (its process died between making the
//! folder and locking it, or an older bankpipe made it) is swept once it is older than
//! [`UNLOCKED_GRACE`], so a folder being made right now is never taken for a dead one.
//!
//! Not for folders shared by several hosts on a network file system whose locks do not
//! reach across hosts: there a folder of a live process on another host could look
//! free. `DATA_DIR` is per host (README: Configuration).

use std::fs::File;
use std::path::Path;
use std::time::Duration;

/// The lock file inside each working folder.
const LOCK: &str = ".owner.lock";

/// Age after which a working folder without a lock file is taken for a dead one.
pub const UNLOCKED_GRACE: Duration = Duration::from_secs(600);

/// A working folder `parent/<prefix>XXXXXX`, locked by this process and removed when
/// dropped.
#[derive(Debug)]
pub struct Scratch {
    /// Declared first: dropped (removed, lock file included) before the lock is let go.
    dir: tempfile::TempDir,
    _lock: File,
}

impl Scratch {
    /// Sweeps the folders `parent/<prefix>*` of processes that are gone, then makes and
    /// locks a new one (`parent` is created if missing).
    ///
    /// # Errors
    /// When `parent` or the folder cannot be made, or the lock file written.
    pub fn create(parent: &Path, prefix: &str) -> std::io::Result<Scratch> {
        std::fs::create_dir_all(parent)?;
        sweep(parent, prefix);
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
        let lock = File::create(dir.path().join(LOCK))?;
        // Nobody else can hold it: the folder's name is new.
        lock.lock()?;
        Ok(Scratch { dir, _lock: lock })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Removes the folders `parent/<prefix>*` whose owner is gone (lock free, or no lock
/// file and older than [`UNLOCKED_GRACE`]); returns how many. Best effort: a folder
/// that cannot be removed is logged and left.
pub fn sweep(parent: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        // Held while removing, so that no other sweeper races this one.
        let lock = match File::open(dir.join(LOCK)) {
            Ok(f) => match f.try_lock() {
                Ok(()) => Some(f),
                Err(_) => continue, // its owner is alive (or the lock cannot be taken)
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > UNLOCKED_GRACE);
                if !old {
                    continue;
                }
                None
            }
            Err(_) => continue,
        };
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(folder = %dir.display(), "Removed the working folder of a process that is gone.");
                removed += 1;
            }
            Err(e) => {
                tracing::warn!(folder = %dir.display(), error = %e, "Could not remove the working folder of a process that is gone.");
            }
        }
        drop(lock);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_folder_is_kept_and_a_dead_ones_is_swept() {
        let parent = tempfile::tempdir().unwrap();
        let live = Scratch::create(parent.path(), ".export-").unwrap();
        std::fs::write(live.path().join("run-0"), b"sorted rows").unwrap();
        // A dead process's folder: its lock file exists but nobody holds the lock.
        let dead = parent.path().join(".export-dead01");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(LOCK), b"").unwrap();
        std::fs::write(dead.join("run-0"), b"sorted rows").unwrap();
        // A folder made a moment ago, not locked yet: kept.
        let young = parent.path().join(".export-young1");
        std::fs::create_dir(&young).unwrap();
        // Another kind of folder: never touched.
        let other = parent.path().join(".spool");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join(LOCK), b"").unwrap();

        assert_eq!(sweep(parent.path(), ".export-"), 1);
        assert!(!dead.exists());
        assert!(live.path().join("run-0").exists() && young.exists() && other.exists());

        // A second process's create sweeps too, and keeps the first one's folder.
        let second = Scratch::create(parent.path(), ".export-").unwrap();
        assert!(live.path().exists() && second.path().exists());
        let (a, b) = (live.path().to_owned(), second.path().to_owned());
        drop(live);
        drop(second);
        assert!(!a.exists() && !b.exists(), "removed when dropped");
    }
}
