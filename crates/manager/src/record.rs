//! The project's record (`server.json`): what ocm knows about its server and
//! what the user last asked for, read and repaired under the project's lock.

use std::fmt;
use std::path::{Path, PathBuf};

use procutil::ProcessIdentity;
use serde::{Deserialize, Serialize};

use crate::progress::Repair;
use crate::{Error, Manager, ProjectPaths, scan};

/// The schema version this build writes and the newest it reads. Version 1
/// (no `desired`) is still read.
pub const SCHEMA_VERSION: u32 = 2;

/// What ocm knows about a project's server: `servers/<hash>/server.json`.
///
/// Serialized in camelCase. The process is identified by pid, start time and
/// boot id together, so a reused pid is not mistaken for the server. Fields
/// this build does not know (written by a newer build of the same schema)
/// are kept in `extra` and written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerRecord {
    /// [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// The resolved project folder the server serves.
    pub project_path: PathBuf,
    /// MD5 hex of the project path (the name of the project folder).
    pub project_hash: String,
    /// Pid of the `opencode serve` process.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
    /// The boot id the start time belongs to.
    pub boot_id: String,
    /// The port it listens on.
    pub port: u16,
    /// The host it listens on, e.g. `127.0.0.1`.
    pub hostname: String,
    /// The base URL, e.g. `http://127.0.0.1:28123`.
    pub url: String,
    /// Lifecycle state as last written.
    pub status: RecordStatus,
    /// Where the server's output goes.
    pub log_path: PathBuf,
    /// When it was started, RFC 3339 UTC.
    pub started_at: String,
    /// When a health check last succeeded, RFC 3339 UTC.
    pub last_health_check: Option<String>,
    /// The version the server reported, if known.
    pub opencode_version: Option<String>,
    /// The `opencode` binary that was started.
    pub opencode_bin: PathBuf,
    /// True when the server was started with a password (HTTP Basic auth on
    /// every route). Absent in a record means false.
    #[serde(default)]
    pub auth: bool,
    /// What the user last asked for: the contract between the user and a
    /// supervisor. Absent in a schema-1 record: derived from `status`.
    #[serde(default)]
    pub desired: Desired,
    /// The random value this start put in its server's environment
    /// (`OCM_SERVER_NONCE`), written before the spawn: a server whose
    /// starter died before recording its pid is still this start's server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Fields this build does not know, kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ServerRecord {
    /// True when `pid` is a leftover of this record's start: it carries the
    /// start's nonce but is not the recorded server (something the server
    /// started, perhaps a nested `opencode serve`).
    pub(crate) fn is_leftover(&self, pid: u32, nonce: Option<&str>) -> bool {
        self.nonce.is_some() && self.nonce.as_deref() == nonce && self.pid != 0 && self.pid != pid
    }

    /// The recorded process's identity.
    pub fn identity(&self) -> ProcessIdentity {
        ProcessIdentity {
            pid: self.pid,
            start_time: self.start_time,
            boot_id: self.boot_id.clone(),
        }
    }
}

/// Lifecycle state of a recorded server (lowercase in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Spawned, not yet seen healthy.
    Starting,
    /// Seen healthy.
    Running,
    /// Stopped on purpose.
    Stopped,
}

impl fmt::Display for RecordStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordStatus::Starting => "starting",
            RecordStatus::Running => "running",
            RecordStatus::Stopped => "stopped",
        })
    }
}

/// What the user last asked of a project's server (lowercase in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    /// Keep it running (`ocm up`, `ocm restart`).
    #[default]
    Up,
    /// Keep it stopped (`ocm down`).
    Down,
}

/// Reads a record, `Ok(None)` when there is none. A schema-1 record gets its
/// `desired` from its status. Errors are statefile's: corrupt, newer, I/O.
pub fn read_record(path: &Path) -> Result<Option<ServerRecord>, statefile::Error> {
    let record: Option<ServerRecord> = statefile::read_json_versioned(path, SCHEMA_VERSION)?;
    Ok(record.map(|mut record| {
        if record.schema_version < 2 && record.status == RecordStatus::Stopped {
            record.desired = Desired::Down;
        }
        record
    }))
}

/// Writes a record atomically, as this build's schema.
pub(crate) fn write_record(path: &Path, record: &ServerRecord) -> Result<(), Error> {
    let mut record = record.clone();
    record.schema_version = SCHEMA_VERSION;
    Ok(statefile::write_atomic(path, &record)?)
}

impl Manager {
    /// The project's record as it is on disk, without a lock or live
    /// checks; `Ok(None)` when there is none.
    pub fn record(&self, project: &Path) -> Result<Option<ServerRecord>, Error> {
        Ok(read_record(&self.paths(project)?.record)?)
    }

    /// Reads the project's record under its lock. A corrupt record is moved
    /// aside (and said). A record written by a newer ocm is refused
    /// untouched while a server of this project runs (that ocm's server is
    /// not ours to judge); with none running it is moved aside, so this ocm
    /// can take over without losing it.
    pub(crate) fn read_record_repairing(
        &self,
        hash: &str,
        paths: &ProjectPaths,
    ) -> Result<Option<ServerRecord>, Error> {
        match read_record(&paths.record) {
            Ok(record) => Ok(record),
            Err(statefile::Error::FutureVersion {
                path,
                found,
                supported,
            }) => {
                let live = scan::our_servers(self.state_root())
                    .iter()
                    .any(|m| m.hash == hash);
                if live {
                    return Err(Error::RecordFromNewerOcm {
                        path,
                        found,
                        supported,
                    });
                }
                let moved_to = statefile::move_aside(&paths.record, "newer")?;
                self.repaired(Repair::NewerRecordMovedAside { found, moved_to });
                Ok(None)
            }
            Err(e) if e.is_corrupt() => {
                let moved_to = statefile::quarantine(&paths.record)?;
                self.repaired(Repair::CorruptRecord {
                    problem: e.to_string(),
                    moved_to,
                });
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ServerRecord {
        ServerRecord {
            schema_version: SCHEMA_VERSION,
            project_path: "/p".into(),
            project_hash: "0123456789abcdef0123456789abcdef".into(),
            pid: 42,
            start_time: 7,
            boot_id: "b".into(),
            port: 28001,
            hostname: "127.0.0.1".into(),
            url: "http://127.0.0.1:28001".into(),
            status: RecordStatus::Running,
            log_path: "/s/server.log".into(),
            started_at: "2026-11-21T10:00:00.123Z".into(),
            last_health_check: None,
            opencode_version: Some("1.18.33".into()),
            opencode_bin: "/bin/opencode".into(),
            auth: true,
            desired: Desired::Up,
            nonce: None,
            extra: serde_json::Map::new(),
        }
    }

    #[test]
    fn json_field_names_are_camel_case() {
        let record = sample();
        let value = serde_json::to_value(&record).unwrap();
        let expected = serde_json::json!({
            "schemaVersion": 2, "projectPath": "/p",
            "projectHash": "0123456789abcdef0123456789abcdef",
            "pid": 42, "startTime": 7, "bootId": "b", "port": 28001,
            "hostname": "127.0.0.1", "url": "http://127.0.0.1:28001",
            "status": "running", "logPath": "/s/server.log",
            "startedAt": "2026-11-21T10:00:00.123Z", "lastHealthCheck": null,
            "opencodeVersion": "1.18.33", "opencodeBin": "/bin/opencode",
            "auth": true, "desired": "up"
        });
        assert_eq!(value, expected);
        let back: ServerRecord = serde_json::from_value(value).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn a_schema_1_record_reads_with_desired_from_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.json");
        let fixture = include_str!("../tests/fixtures/server-schema-1.json");
        std::fs::write(&path, fixture).unwrap();
        let record = read_record(&path).unwrap().unwrap();
        assert_eq!(record.schema_version, 1);
        assert_eq!(record.pid, 41733);
        assert_eq!(record.desired, Desired::Up);
        let stopped = fixture.replace("\"running\"", "\"stopped\"");
        std::fs::write(&path, stopped).unwrap();
        assert_eq!(read_record(&path).unwrap().unwrap().desired, Desired::Down);
    }

    #[test]
    fn unknown_fields_are_kept_when_written_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.json");
        let mut value = serde_json::to_value(sample()).unwrap();
        value["supervisorPid"] = serde_json::json!(77);
        std::fs::write(&path, value.to_string()).unwrap();
        let record = read_record(&path).unwrap().unwrap();
        assert_eq!(record.extra["supervisorPid"], 77);
        write_record(&path, &record).unwrap();
        let again: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(again["supervisorPid"], 77);
    }

    fn manager_with_newer_record(root: &Path) -> (Manager, PathBuf, ProjectPaths) {
        let project = root.join("project");
        std::fs::create_dir(&project).unwrap();
        let manager = Manager::new(crate::Config {
            state_root: Some(root.join("state")),
            opencode_bin: Some(PathBuf::from("/bin/true")),
            ..crate::Config::default()
        })
        .unwrap();
        let paths = manager.paths(&project).unwrap();
        statefile::ensure_dir(&paths.dir).unwrap();
        std::fs::write(&paths.record, NEWER).unwrap();
        (manager, project, paths)
    }

    const NEWER: &[u8] = br#"{"schemaVersion": 99, "pid": 1, "anything": "new"}"#;

    #[test]
    fn a_record_from_a_newer_ocm_is_refused_and_left_untouched_while_its_server_runs() {
        let root = tempfile::tempdir().unwrap();
        let (manager, project, paths) = manager_with_newer_record(root.path());
        // A live server of this project, as the newer ocm would have left
        // it: a session leader running `serve --hostname H --port P` with
        // the markers.
        let hash = portmap::project_hash(&project).unwrap();
        let server = procutil::spawn_detached(
            &procutil::SpawnSpec::new("sh")
                .args(["-c", "sleep 300; :", "sh", "serve"])
                .args(["--hostname", "127.0.0.1", "--port", "1"])
                .env(crate::PROJECT_HASH_VAR, &hash)
                .env(crate::STATE_ROOT_VAR, manager.state_root().as_os_str()),
        )
        .unwrap();
        for err in [
            manager.ensure(&project).unwrap_err(),
            manager.stop(&project).unwrap_err(),
        ] {
            assert!(
                matches!(err, Error::RecordFromNewerOcm { found: 99, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("newer ocm"), "{err}");
        }
        assert_eq!(std::fs::read(&paths.record).unwrap(), NEWER);
        let status = manager.status(&project).unwrap();
        assert_eq!(status.status, crate::ServerState::Dead);
        assert!(
            server.identity().is_alive(),
            "the newer ocm's server was signalled"
        );
        server.terminate(std::time::Duration::from_secs(2)).unwrap();
    }

    #[test]
    fn a_record_from_a_newer_ocm_without_a_live_server_is_moved_aside() {
        let root = tempfile::tempdir().unwrap();
        let (manager, project, paths) = manager_with_newer_record(root.path());
        let (tx, rx) = std::sync::mpsc::channel();
        let manager = manager.with_progress(move |p| {
            let _ = tx.send(p.clone());
        });
        // `/bin/true` never listens: what matters is that the start was
        // tried, with the newer record out of the way.
        let err = manager.ensure(&project).unwrap_err();
        assert!(matches!(err, Error::StartFailed { .. }), "{err}");
        let moved: Vec<_> = std::fs::read_dir(&paths.dir)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("server.json.newer-")
            })
            .collect();
        assert_eq!(moved.len(), 1);
        assert_eq!(std::fs::read(moved[0].path()).unwrap(), NEWER);
        let said = rx.try_iter().any(|p| {
            matches!(
                p,
                crate::Progress::Repaired(Repair::NewerRecordMovedAside { found: 99, .. })
            )
        });
        assert!(said, "the move was not reported");
    }
}
