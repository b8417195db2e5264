//! Advisory locks on a project's lock file, with a deadline, that follow the
//! file when it is replaced while a waiter waits.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Error;
use crate::paths::{FILE_MODE, ensure_dir};

/// First pause between attempts while the lock is held by someone else.
const FIRST_BACKOFF: Duration = Duration::from_millis(1);
/// Longest pause between attempts: bounds the extra wait after a release.
const MAX_BACKOFF: Duration = Duration::from_millis(25);

/// An exclusive advisory lock (flock(2)) on a lock file, held until dropped.
///
/// The lock belongs to this open file: it is released on drop, when the
/// process exits or is killed, and it is not inherited by spawned children
/// (the file is opened close-on-exec). Two guards on the same file exclude
/// each other also within one process.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
}

impl LockGuard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first makes
        // the release independent of any duplicated descriptor.
        let _ = self.file.unlock();
    }
}

fn open_lock_file(path: &Path) -> Result<File, Error> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(path)
    };
    match open() {
        Ok(file) => Ok(file),
        Err(err) if err.kind() == ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                ensure_dir(parent)?;
            }
            open().map_err(|e| Error::io(path, e))
        }
        Err(err) => Err(Error::io(path, err)),
    }
}

/// True when `file` is still the file at `path` (same device and inode).
///
/// A holder may remove the lock file (for example when it deletes a
/// project's whole state folder). Whoever then wins the lock on the old,
/// unlinked inode must not count it: a later process would lock a new file
/// at the same path, and both would think they own the project. So a lock is
/// only taken once the locked file is verified to still be the path's file.
fn still_at_path(file: &File, path: &Path) -> Result<bool, Error> {
    use std::os::unix::fs::MetadataExt;
    let held = file.metadata().map_err(|e| Error::io(path, e))?;
    match std::fs::metadata(path) {
        Ok(current) => Ok(current.dev() == held.dev() && current.ino() == held.ino()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Takes the lock if it is free right now, `Ok(None)` if someone holds it.
/// Creates the lock file (0600) and its folder (0700) if missing.
pub fn try_lock(path: &Path) -> Result<Option<LockGuard>, Error> {
    loop {
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) if still_at_path(&file, path)? => {
                return Ok(Some(LockGuard {
                    file,
                    path: path.to_path_buf(),
                }));
            }
            // Removed while we locked it: lock the file now at the path.
            Ok(()) => continue,
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(err)) => return Err(Error::io(path, err)),
        }
    }
}

/// Takes the exclusive lock on `path`, waiting at most `timeout`; blocks.
///
/// Creates the lock file (0600) and its folder (0700) if missing. The lock
/// file may be deleted by its holder (with the folder around it): a waiter
/// that then wins the lock on the deleted file notices, and locks the file
/// now at the path instead, so two processes never both hold "the" lock.
///
/// Waiting is done by retrying a non-blocking flock with a pause of 1 ms
/// doubling up to 25 ms, until the deadline. The kernel has no flock with a
/// timeout, and the alternatives are worse for a library: interrupting a
/// blocking flock with a signal (SIGALRM) is process-wide, and a helper
/// thread blocked in flock cannot be cancelled and would take the lock after
/// we gave up. The cost is at most 25 ms of extra latency after a release
/// and a few dozen wake-ups per second while waiting. Like flock itself it
/// is not fair: a holder that releases and at once locks again usually wins
/// over a sleeping waiter, so keep critical sections short and infrequent.
///
/// On timeout: [`Error::LockTimeout`] with the path and the time waited.
pub fn lock(path: &Path, timeout: Duration) -> Result<LockGuard, Error> {
    let mut file = open_lock_file(path)?;
    let start = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        match file.try_lock() {
            Ok(()) if still_at_path(&file, path)? => {
                return Ok(LockGuard {
                    file,
                    path: path.to_path_buf(),
                });
            }
            Ok(()) => {
                // Removed while we waited: lock the file now at the path.
                file = open_lock_file(path)?;
                continue;
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(err)) => return Err(Error::io(path, err)),
        }
        let waited = start.elapsed();
        let Some(left) = timeout.checked_sub(waited).filter(|d| !d.is_zero()) else {
            return Err(Error::LockTimeout {
                path: path.to_path_buf(),
                waited,
            });
        };
        std::thread::sleep(backoff.min(left));
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_never_keeps_a_lock_on_a_deleted_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("project");
        let path = dir.join("server.lock");
        let holder = lock(&path, Duration::from_secs(1)).unwrap();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| lock(&path, Duration::from_secs(10)));
            // Let the waiter open the current file and start waiting on it.
            while std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| target == &path)
                .nth(1)
                .is_none()
            {
                std::thread::yield_now();
            }
            // The holder deletes the whole folder, lock file included.
            std::fs::remove_dir_all(&dir).unwrap();
            drop(holder);
            let guard = waiter.join().unwrap().unwrap();
            // The waiter holds the file now at the path, so nobody else can
            // take it there.
            assert!(try_lock(&path).unwrap().is_none());
            drop(guard);
            assert!(try_lock(&path).unwrap().is_some());
        });
    }
}
