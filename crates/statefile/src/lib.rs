//! The ocm state directory, atomic JSON files and advisory locks; generic:
//! it knows nothing of what the files hold.
//!
//! State lives under `$OCM_STATE_DIR`, else `$XDG_STATE_HOME/ocm`, else
//! `~/.local/state/ocm` ([`state_root`]). Each project has a folder
//! `servers/<md5 of the project path>/` ([`ProjectPaths`]) holding
//! `server.json` (the record, whose type belongs to the crate that writes
//! it), `server.lock` (the advisory lock that serializes processes working
//! on that project, [`lock`], with its waiters' queue `server.lock.queue`)
//! and `server.log` with its rotated copies. Folders are created 0700,
//! files 0600.
//!
//! Every file is opened with [`open_file`]: without blocking and without
//! following a symlink, and only when it is a regular file of the user's
//! own; anything else (a FIFO, a socket, a symlink, another user's file, a
//! symlinked project folder) is refused with [`Error::Refused`], which names
//! it and says to remove it. Reads are bounded.
//!
//! Files are written atomically ([`write_atomic`]: temp file, fsync, rename,
//! fsync of the folder), so a reader or a crash sees the old file or the new
//! one, never a mix; the temp files of a killed writer go with the next
//! write. Bookkeeping that each new line supersedes is appended instead
//! ([`append_line`], [`read_last_line`]): no file is created or renamed. Reading ([`read_json_versioned`]) tells a missing file
//! (`Ok(None)`) from an unusable one (a typed [`Error`] naming the file); an
//! unusable one is moved aside with [`quarantine`], never deleted.
//!
//! The lock is fair: waiters get it in the order they asked, so no process
//! waits out its timeout while others take the lock again and again.
//!
//! ```
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use statefile::ProjectPaths;
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! struct Note {
//!     schema_version: u32,
//!     text: String,
//! }
//!
//! # let tmp = tempfile::tempdir().unwrap();
//! # let root = tmp.path().to_path_buf();
//! // let root = statefile::state_root()?;
//! let paths = ProjectPaths::new(&root, "0123456789abcdef0123456789abcdef");
//! statefile::ensure_dir(&paths.dir)?;
//!
//! // Serialize with other processes working on the same project.
//! let _guard = statefile::lock(&paths.lock, Duration::from_secs(5))?;
//! assert!(statefile::read_json_versioned::<Note>(&paths.record, 1)?.is_none());
//!
//! let note = Note { schema_version: 1, text: "hello".into() };
//! statefile::write_atomic(&paths.record, &note)?;
//!
//! match statefile::read_json_versioned::<Note>(&paths.record, 1) {
//!     Ok(Some(read)) => assert_eq!(read, note),
//!     Ok(None) => unreachable!("just written"),
//!     // A corrupt file is moved aside, not deleted.
//!     Err(err) if err.is_corrupt() => {
//!         statefile::quarantine(&paths.record)?;
//!     }
//!     Err(err) => return Err(err),
//! }
//! # Ok::<(), statefile::Error>(())
//! ```

mod atomic;
mod error;
mod lines;
mod lock;
mod open;
mod paths;
mod read;
mod time;

pub use atomic::{
    STALE_TEMP_AGE, remove_stale_temp_files, temp_file_writer, write_atomic, write_private,
};
pub use error::Error;
pub use lines::{LAST_LINE_WINDOW, append_line, read_last_line};
pub use lock::{LockGuard, lock, lock_unless, try_lock};
pub use open::{OpenMode, open_file};
pub use paths::{
    DIR_MODE, FILE_MODE, ProjectPaths, ensure_dir, is_project_hash, project_hashes, rotate_file,
    state_root, state_root_from,
};
pub use read::{MAX_FILE_BYTES, move_aside, quarantine, read_json, read_json_versioned};
pub use time::{parse_rfc3339, rfc3339, rfc3339_now};
