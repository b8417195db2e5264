//! The ocm state directory, atomic JSON records and advisory locks.
//!
//! State lives under `$OCM_STATE_DIR`, else `$XDG_STATE_HOME/ocm`, else
//! `~/.local/state/ocm` ([`state_root`]). Each project has a folder
//! `servers/<md5 of the project path>/` ([`ProjectPaths`]) holding
//! `server.json` (a [`ServerRecord`]), `server.lock` (the advisory lock that
//! serializes processes working on that project, [`lock`]) and `server.log`
//! with its rotated copies. Folders are created 0700, files 0600.
//!
//! Records are written atomically ([`write_atomic`]: temp file, fsync,
//! rename, fsync of the folder), so a reader or a crash sees the old record
//! or the new one, never a mix. Reading ([`read_record`]) tells a missing
//! record (`Ok(None)`) from an unusable one (a typed [`Error`] naming the
//! file); an unusable one is moved aside with [`quarantine`], never deleted.
//!
//! ```
//! use std::time::Duration;
//! use statefile::{ProjectPaths, RecordStatus, ServerRecord, SCHEMA_VERSION};
//!
//! # let tmp = tempfile::tempdir().unwrap();
//! # let root = tmp.path().to_path_buf();
//! // let root = statefile::state_root()?;
//! let paths = ProjectPaths::new(&root, "0123456789abcdef0123456789abcdef");
//! statefile::ensure_dir(&paths.dir)?;
//!
//! // Serialize with other processes working on the same project.
//! let _guard = statefile::lock(&paths.lock, Duration::from_secs(5))?;
//! assert!(statefile::read_record(&paths.record)?.is_none());
//!
//! let record = ServerRecord {
//!     schema_version: SCHEMA_VERSION,
//!     project_path: "/home/user/project".into(),
//!     project_hash: "0123456789abcdef0123456789abcdef".into(),
//!     pid: 4242,
//!     start_time: 123_456,
//!     boot_id: "5f1c...".into(),
//!     port: 28123,
//!     hostname: "127.0.0.1".into(),
//!     url: "http://127.0.0.1:28123".into(),
//!     status: RecordStatus::Starting,
//!     log_path: paths.log.clone(),
//!     started_at: statefile::rfc3339_now(),
//!     last_health_check: None,
//!     opencode_version: None,
//!     opencode_bin: "/usr/local/bin/opencode".into(),
//!     auth: false,
//! };
//! statefile::write_atomic(&paths.record, &record)?;
//!
//! match statefile::read_record(&paths.record) {
//!     Ok(Some(read)) => assert_eq!(read, record),
//!     Ok(None) => unreachable!("just written"),
//!     // A corrupt record is moved aside, not deleted.
//!     Err(err) if err.is_corrupt() => {
//!         statefile::quarantine(&paths.record)?;
//!     }
//!     Err(err) => return Err(err),
//! }
//! # Ok::<(), statefile::Error>(())
//! ```

mod atomic;
mod error;
mod lock;
mod paths;
mod read;
mod record;
mod time;

pub use atomic::{
    STALE_TEMP_AGE, remove_stale_temp_files, temp_file_writer, write_atomic, write_private,
};
pub use error::Error;
pub use lock::{LockGuard, lock, try_lock};
pub use paths::{
    DIR_MODE, FILE_MODE, ProjectPaths, ensure_dir, is_project_hash, project_hashes, rotate_file,
    state_root, state_root_from,
};
pub use read::{MAX_FILE_BYTES, quarantine, read_json, read_json_versioned, read_record};
pub use record::{RecordStatus, SCHEMA_VERSION, ServerRecord};
pub use time::{parse_rfc3339, rfc3339, rfc3339_now};
