//! The server record (`server.json`): what ocm knows about a project's
//! server, and its schema version.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// What ocm knows about a project's server: `servers/<hash>/server.json`.
///
/// Serialized in camelCase. The process is identified by pid, start time and
/// boot id together, so a reused pid is not mistaken for the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_field_names_are_camel_case() {
        let record = ServerRecord {
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
        };
        let value = serde_json::to_value(&record).unwrap();
        let expected = serde_json::json!({
            "schemaVersion": 1, "projectPath": "/p",
            "projectHash": "0123456789abcdef0123456789abcdef",
            "pid": 42, "startTime": 7, "bootId": "b", "port": 28001,
            "hostname": "127.0.0.1", "url": "http://127.0.0.1:28001",
            "status": "running", "logPath": "/s/server.log",
            "startedAt": "2026-11-21T10:00:00.123Z", "lastHealthCheck": null,
            "opencodeVersion": "1.18.33", "opencodeBin": "/bin/opencode",
            "auth": true
        });
        assert_eq!(value, expected);
        let back: ServerRecord = serde_json::from_value(value).unwrap();
        assert_eq!(back, record);
    }
}
