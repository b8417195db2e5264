//! The crate's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// Errors of this crate. Every variant names the file or folder concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation failed (including "unreadable": permissions,
    /// a folder where a file should be, ...).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder the operation was about.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file exists but holds nothing (or only whitespace), as left by a
    /// crash of a writer that did not write atomically.
    #[error("{} is empty", path.display())]
    Empty {
        /// The empty file.
        path: PathBuf,
    },
    /// The file is not valid JSON (garbage, or truncated).
    #[error("{} is not valid JSON: {detail}", path.display())]
    Corrupt {
        /// The corrupt file.
        path: PathBuf,
        /// What is wrong, with the line and column where serde_json saw it.
        detail: String,
    },
    /// The file is valid JSON but not the expected record (missing or
    /// mistyped fields, wrong top-level type, no schema version).
    #[error("{} does not hold the expected record: {detail}", path.display())]
    WrongShape {
        /// The file.
        path: PathBuf,
        /// Which field or type did not match.
        detail: String,
    },
    /// The record was written by a newer ocm with a schema this one does not
    /// know.
    #[error(
        "{} has schema version {found}, newer than the supported {supported}; upgrade ocm",
        path.display()
    )]
    FutureVersion {
        /// The file.
        path: PathBuf,
        /// The `schemaVersion` found in the file.
        found: u64,
        /// The newest version this build reads.
        supported: u32,
    },
    /// Another process (or another handle in this one) held the lock for the
    /// whole timeout.
    #[error(
        "timed out after {waited:?} waiting for the lock {} (another ocm process is working on this project)",
        path.display()
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// Something other than a regular file of the user's own is where ocm
    /// keeps a file (a FIFO, a socket, a device, a symlink, a file of another
    /// user), or a symlink is where it keeps a project folder. ocm neither
    /// opens nor follows it, so it cannot hang on it or write elsewhere.
    #[error(
        "{} is {found}, where ocm expects {expected}; ocm does not open or follow it: \
         remove it (or move it away) and try again",
        path.display()
    )]
    Refused {
        /// What is there.
        path: PathBuf,
        /// What it is: "a FIFO", "a symlink (to ...)", "owned by uid N ...".
        found: String,
        /// What ocm expects there.
        expected: &'static str,
    },
    /// The caller gave up waiting for the lock (an interrupted command).
    #[error("stopped waiting for the lock {}", path.display())]
    LockCancelled {
        /// The lock file.
        path: PathBuf,
    },
    /// A value could not be turned into JSON (e.g. a path that is not UTF-8).
    #[error("cannot serialize the record for {}: {source}", path.display())]
    Serialize {
        /// The file that was to be written.
        path: PathBuf,
        /// The serde_json error.
        source: serde_json::Error,
    },
    /// `OCM_STATE_DIR` is set to a relative path, which would put state in a
    /// different place for every working directory.
    #[error("OCM_STATE_DIR must be an absolute path, got {}", value.display())]
    RelativeStateDir {
        /// The value of `OCM_STATE_DIR`.
        value: PathBuf,
    },
    /// None of `OCM_STATE_DIR`, `XDG_STATE_HOME` or `HOME` gives an absolute
    /// folder.
    #[error(
        "cannot find a state directory: set OCM_STATE_DIR (or XDG_STATE_HOME or HOME) to an absolute path"
    )]
    NoStateDir,
    /// A file name is needed but the path has none (e.g. `/` or `..`).
    #[error("{} does not name a file", path.display())]
    NotAFilePath {
        /// The path.
        path: PathBuf,
    },
}

impl Error {
    /// True for the errors that mean "the file is there but its content is
    /// not a usable record" (`Empty`, `Corrupt`, `WrongShape`,
    /// `FutureVersion`): the file may be moved aside with
    /// [`quarantine`](crate::quarantine). An I/O error is not: the content
    /// was never seen.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            Error::Empty { .. }
                | Error::Corrupt { .. }
                | Error::WrongShape { .. }
                | Error::FutureVersion { .. }
        )
    }

    /// True when the file (or a folder on its path) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// The file or folder this error is about, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path, .. }
            | Error::Empty { path }
            | Error::Corrupt { path, .. }
            | Error::WrongShape { path, .. }
            | Error::FutureVersion { path, .. }
            | Error::LockTimeout { path, .. }
            | Error::Serialize { path, .. }
            | Error::Refused { path, .. }
            | Error::LockCancelled { path }
            | Error::NotAFilePath { path } => Some(path),
            Error::RelativeStateDir { value } => Some(value),
            Error::NoStateDir => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
