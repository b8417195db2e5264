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

/// Takes the lock if it is free right now, `Ok(None)` if someone holds it.
/// Creates the lock file (0600) and its folder (0700) if missing.
pub fn try_lock(path: &Path) -> Result<Option<LockGuard>, Error> {
    let file = open_lock_file(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(LockGuard {
            file,
            path: path.to_path_buf(),
        })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(err)) => Err(Error::io(path, err)),
    }
}

/// Takes the exclusive lock on `path`, waiting at most `timeout`; blocks.
///
/// Creates the lock file (0600) and its folder (0700) if missing. Never
/// delete a lock file that others may use: a process holding the old inode
/// and one locking a new file would both think they own the project.
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
    let file = open_lock_file(path)?;
    let start = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        match file.try_lock() {
            Ok(()) => {
                return Ok(LockGuard {
                    file,
                    path: path.to_path_buf(),
                });
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
