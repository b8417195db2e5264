//! `companion.json`: what is recorded of a project's companion, and its
//! paths in the project's state folder.

use std::path::PathBuf;

use procutil::ProcessIdentity;
use serde::{Deserialize, Serialize};
use statefile::ProjectPaths;

use super::CompanionInfo;
use crate::Error;

/// The schema version of `companion.json` this build writes and reads.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// `companion.json` in the project's state folder. No environment values:
/// secrets never reach the disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CompanionRecord {
    pub schema_version: u32,
    /// 0 between the write before the spawn and the one after it.
    pub pid: u32,
    pub start_time: u64,
    pub boot_id: String,
    pub port: u16,
    pub url: String,
    pub command: Vec<String>,
    pub started_at: String,
    pub log: PathBuf,
    /// The value of [`COMPANION_VAR`] in its environment.
    pub nonce: String,
    /// Fields this build does not know, kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl CompanionRecord {
    pub(crate) fn identity(&self) -> ProcessIdentity {
        ProcessIdentity {
            pid: self.pid,
            start_time: self.start_time,
            boot_id: self.boot_id.clone(),
        }
    }

    pub(crate) fn info(&self) -> CompanionInfo {
        CompanionInfo {
            pid: self.pid,
            port: self.port,
            url: self.url.clone(),
            command: self.command.clone(),
            started_at: self.started_at.clone(),
            log: self.log.clone(),
        }
    }
}

/// `companion.json` of a project.
pub(crate) fn record_path(paths: &ProjectPaths) -> PathBuf {
    paths.dir.join("companion.json")
}

/// `companion.log` of a project.
pub(crate) fn log_path(paths: &ProjectPaths) -> PathBuf {
    paths.dir.join("companion.log")
}

/// Reads `companion.json`; `Ok(None)` when there is none.
pub(crate) fn read_record(
    paths: &ProjectPaths,
) -> Result<Option<CompanionRecord>, statefile::Error> {
    statefile::read_json_versioned(&record_path(paths), SCHEMA_VERSION)
}

pub(crate) fn write_record(paths: &ProjectPaths, record: &CompanionRecord) -> Result<(), Error> {
    Ok(statefile::write_atomic(&record_path(paths), record)?)
}

pub(crate) fn remove_record(paths: &ProjectPaths) -> Result<(), Error> {
    let path = record_path(paths);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            action: "cannot remove",
            path,
            source,
        }),
    }
}
