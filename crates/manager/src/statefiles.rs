//! Small files of a project's state folder that crates above the manager
//! keep (the session registry): atomic writes, bounded reads, a lock.
//!
//! Wrappers of `statefile`, so that no crate above the manager reaches past
//! it (see ARCHITECTURE.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// A held advisory lock on a state file; released on drop.
pub use statefile::LockGuard as StateLock;

/// Writes `value` as JSON to `path` atomically (temp file, fsync, rename),
/// mode 0600, creating the folder (0700) when missing.
pub fn write_state_file<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), Error> {
    Ok(statefile::write_atomic(path, value)?)
}

/// Appends `value` as one JSON line to `path`, without fsync (see
/// `statefile::append_line`): bookkeeping each line supersedes, which a
/// power loss may set back. Returns the file's length after it.
pub fn append_state_line<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<u64, Error> {
    Ok(statefile::append_line(path, value)?)
}

/// The last whole line of `path` that `accept` takes (see
/// `statefile::read_last_line`); `Ok(None)` when there is none.
pub fn read_last_state_line<T: DeserializeOwned>(
    path: &Path,
    accept: impl Fn(&T) -> bool,
) -> Result<Option<T>, Error> {
    Ok(statefile::read_last_line(path, accept)?)
}

/// Removes a state file; a missing one is fine.
pub fn remove_state_file(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            action: "removing",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Reads a JSON state file: `Ok(None)` when it does not exist. A file that
/// is corrupt or of another shape is moved aside (`<name>.corrupt-<time>`,
/// never deleted) and also gives `Ok(None)`, with the new path in the
/// second field.
pub fn read_state_file<T: DeserializeOwned>(
    path: &Path,
) -> Result<(Option<T>, Option<PathBuf>), Error> {
    corrupt_aside(path, statefile::read_json::<T>(path))
}

/// [`read_state_file`] for a file that carries a `schemaVersion`: one
/// above `supported`, a newer ocm's, is an error and is left where it is
/// (this ocm would lose what it does not know by rewriting it).
pub fn read_versioned_state_file<T: DeserializeOwned>(
    path: &Path,
    supported: u32,
) -> Result<(Option<T>, Option<PathBuf>), Error> {
    match statefile::read_json_versioned::<T>(path, supported) {
        Err(e @ statefile::Error::FutureVersion { .. }) => Err(e.into()),
        read => corrupt_aside(path, read),
    }
}

/// What a read of `path` gave, with a corrupt file moved aside.
fn corrupt_aside<T>(
    path: &Path,
    read: Result<Option<T>, statefile::Error>,
) -> Result<(Option<T>, Option<PathBuf>), Error> {
    match read {
        Ok(value) => Ok((value, None)),
        Err(e) if e.is_corrupt() => {
            let aside = statefile::quarantine(path)?;
            Ok((None, Some(aside)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Takes the advisory lock on `path` (created when missing), waiting at
/// most `timeout`; [`Error::LockTimeout`] after that.
pub fn lock_state_file(path: &Path, timeout: Duration) -> Result<StateLock, Error> {
    if let Some(dir) = path.parent() {
        statefile::ensure_dir(dir)?;
    }
    Ok(statefile::lock(path, timeout)?)
}

/// Takes the advisory lock on `path` (created when missing, with its
/// folder) if it is free right now; `None` when another holds it.
pub fn try_lock_state_file(path: &Path) -> Result<Option<StateLock>, Error> {
    Ok(statefile::try_lock(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/sessions.json");
        assert!(read_state_file::<Vec<u32>>(&path).unwrap().0.is_none());
        write_state_file(&path, &vec![1u32, 2]).unwrap();
        assert_eq!(
            read_state_file::<Vec<u32>>(&path).unwrap().0,
            Some(vec![1, 2])
        );
        std::fs::write(&path, b"{not json").unwrap();
        let (value, aside) = read_state_file::<Vec<u32>>(&path).unwrap();
        assert!(value.is_none());
        assert!(aside.unwrap().exists());
        let _guard = lock_state_file(
            &dir.path().join("sub/sessions.lock"),
            Duration::from_secs(1),
        )
        .unwrap();
    }
}
