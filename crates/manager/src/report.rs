//! What the manager reports about a project's server: its state, a running
//! server ([`ServerInfo`]), a status with live checks, and what stop and gc
//! did.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use procutil::Termination;
use serde::Serialize;

use crate::USERNAME;
use crate::record::ServerRecord;

/// What a project's server is doing, as `ocm status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ServerState {
    /// Its process is the recorded one and it answers health checks.
    Running,
    /// No server: never started, or stopped by ocm.
    Stopped,
    /// Its process is alive but does not answer (hung, stopped, or refusing).
    Unhealthy,
    /// The record says running but the process is gone (or is now another
    /// program).
    Dead,
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerState::Running => "running",
            ServerState::Stopped => "stopped",
            ServerState::Unhealthy => "unhealthy",
            ServerState::Dead => "dead",
        })
    }
}

/// A running, healthy server, as [`Manager::ensure`](crate::Manager::ensure) returns it.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    /// The project folder (absolute, normalized).
    pub project: PathBuf,
    /// `http://HOST:PORT`.
    pub url: String,
    /// The address it binds.
    pub hostname: String,
    /// Its port.
    pub port: u16,
    /// Its pid (and process group).
    pub pid: u32,
    /// Always [`ServerState::Running`] here.
    pub status: ServerState,
    /// Always true here.
    pub healthy: bool,
    /// When it was started (RFC 3339).
    pub started_at: String,
    /// Its log file.
    pub log_path: PathBuf,
    /// The version its health check reported.
    pub version: Option<String>,
    /// True when an existing server was reused, false when one was started.
    pub reused: bool,
    #[serde(skip)]
    pub(crate) password: Option<String>,
}

impl std::fmt::Debug for ServerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerInfo")
            .field("project", &self.project)
            .field("url", &self.url)
            .field("port", &self.port)
            .field("pid", &self.pid)
            .field("started_at", &self.started_at)
            .field("version", &self.version)
            .field("reused", &self.reused)
            .field("auth", &self.password.is_some())
            .finish()
    }
}

impl ServerInfo {
    /// True when the server requires a password.
    pub fn has_auth(&self) -> bool {
        self.password.is_some()
    }

    /// The password, when the server has one.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The environment to hand to programs that talk to this server:
    /// `OPENCODE_SERVER=<url>`, plus the user name and password when auth
    /// is on.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("OPENCODE_SERVER".to_string(), self.url.clone())];
        if let Some(password) = &self.password {
            env.push(("OPENCODE_SERVER_USERNAME".into(), USERNAME.into()));
            env.push(("OPENCODE_SERVER_PASSWORD".into(), password.clone()));
        }
        env
    }

    /// How long it has run, from its recorded start time.
    pub fn uptime(&self) -> Option<Duration> {
        uptime_since(&self.started_at)
    }

    /// A client of this server's HTTP API, with its credentials.
    pub fn client(&self) -> Result<opencode_api::Client, opencode_api::Error> {
        let mut builder = opencode_api::Client::builder(&self.url).directory(&self.project);
        if let Some(password) = &self.password {
            builder = builder.basic_auth(USERNAME, password);
        }
        builder.build()
    }
}

/// A project's server as recorded, with live checks, as [`Manager::status`](crate::Manager::status)
/// and [`Manager::list`](crate::Manager::list) report it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatus {
    /// The project folder.
    pub project: PathBuf,
    /// The project's deterministic port (what `ocm port` prints), whatever
    /// port its server has.
    #[serde(skip)]
    pub project_port: Option<u16>,
    /// What the server is doing.
    pub status: ServerState,
    /// True when it answered a health check just now.
    pub healthy: bool,
    /// Its URL (from the record).
    pub url: Option<String>,
    /// Its port (from the record).
    pub port: Option<u16>,
    /// Its pid (from the record).
    pub pid: Option<u32>,
    /// When it was started (RFC 3339).
    pub started_at: Option<String>,
    /// Its log file.
    pub log_path: PathBuf,
    /// The version its health check reported.
    pub version: Option<String>,
    /// Seconds since it started, while it runs.
    pub uptime_seconds: Option<u64>,
    /// Resident memory of its process, while it runs.
    pub resident_memory_bytes: Option<u64>,
    /// Why it is in this state, when that needs saying.
    pub detail: Option<String>,
    /// The project's state folder.
    #[serde(skip)]
    pub state_dir: PathBuf,
    /// What the supervisor watching the project says (absent when none
    /// does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<crate::SupervisorInfo>,
}

impl ServerStatus {
    /// A project with no server: stopped, nothing recorded, its paths and
    /// its deterministic port.
    pub fn stopped(project: PathBuf, paths: &statefile::ProjectPaths) -> ServerStatus {
        ServerStatus {
            project_port: portmap::port_for_project(&project).ok(),
            project,
            status: ServerState::Stopped,
            healthy: false,
            url: None,
            port: None,
            pid: None,
            started_at: None,
            log_path: paths.log.clone(),
            version: None,
            uptime_seconds: None,
            resident_memory_bytes: None,
            detail: None,
            state_dir: paths.dir.clone(),
            supervisor: None,
        }
    }
}

impl ServerStatus {
    /// Where a generated password of this project is kept, whether or not
    /// there is one (the same file the manager writes).
    pub fn password_file(&self) -> PathBuf {
        self.state_dir.join("password")
    }
}

/// What [`Manager::stop`](crate::Manager::stop) did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopReport {
    /// The project.
    pub project: PathBuf,
    /// The URL of the server that was stopped (from its record), when one
    /// was recorded as running.
    #[serde(skip)]
    pub url: Option<String>,
    /// The recorded server's pid, when there was a live one of ours.
    pub pid: Option<u32>,
    /// How it ended: `None` when nothing of ours was running.
    #[serde(serialize_with = "serialize_termination")]
    pub stopped: Option<Termination>,
    /// Unrecorded servers of this project that were stopped too.
    pub orphans_stopped: Vec<u32>,
    /// Other processes carrying the project's markers (what its servers
    /// started, such as the agent's commands) that were stopped.
    pub leftovers_stopped: Vec<u32>,
    /// A recorded pid that is alive but not this project's server: left alone.
    pub left_alone: Option<u32>,
}

fn serialize_termination<S: serde::Serializer>(
    t: &Option<Termination>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        None => s.serialize_none(),
        Some(Termination::AlreadyGone) => s.serialize_str("already-gone"),
        Some(Termination::ExitedOnTerm) => s.serialize_str("terminated"),
        Some(Termination::Killed) => s.serialize_str("killed"),
    }
}

/// What [`Manager::gc`](crate::Manager::gc) did and found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    /// State folders of servers that are not running, removed.
    pub removed: Vec<PathBuf>,
    /// Running servers whose project folder is gone (left running).
    pub project_gone: Vec<ServerStatus>,
    /// Servers of ours with no record at all, stopped.
    pub orphans_stopped: Vec<u32>,
    /// Processes that servers of removed (or unrecorded) projects started
    /// and left running, stopped.
    pub leftovers_stopped: Vec<u32>,
    /// State folders skipped because another process holds their lock.
    pub busy: Vec<PathBuf>,
    /// Records that cannot be read, left in place for a person to look at.
    pub unreadable: Vec<PathBuf>,
    /// Project folders gc could not work on, with why; gc went on with the
    /// others.
    pub failed: Vec<GcFailure>,
}

/// A project folder [`Manager::gc`](crate::Manager::gc) could not work on.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcFailure {
    /// The project's state folder.
    pub path: PathBuf,
    /// What went wrong.
    pub error: String,
}

/// The time since an RFC 3339 start time, when it parses and is past.
pub(crate) fn uptime_since(started_at: &str) -> Option<Duration> {
    let started = statefile::parse_rfc3339(started_at)?;
    SystemTime::now().duration_since(started).ok()
}

/// A [`ServerInfo`] for a healthy recorded server.
pub(crate) fn info_from(
    project: &Path,
    record: &ServerRecord,
    version: Option<String>,
    reused: bool,
    password: Option<String>,
) -> ServerInfo {
    ServerInfo {
        project: project.to_path_buf(),
        url: record.url.clone(),
        hostname: record.hostname.clone(),
        port: record.port,
        pid: record.pid,
        status: ServerState::Running,
        healthy: true,
        started_at: record.started_at.clone(),
        log_path: record.log_path.clone(),
        version,
        reused,
        password,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_is_the_one_the_manager_writes() {
        let paths =
            statefile::ProjectPaths::new(Path::new("/state"), "0123456789abcdef0123456789abcdef");
        let status = ServerStatus::stopped("/p".into(), &paths);
        assert_eq!(
            status.password_file(),
            crate::password::password_file(&paths)
        );
    }

    #[test]
    fn server_info_hides_the_password() {
        let info = ServerInfo {
            project: "/p".into(),
            url: "http://127.0.0.1:1".into(),
            hostname: "127.0.0.1".into(),
            port: 1,
            pid: 1,
            status: ServerState::Running,
            healthy: true,
            started_at: String::new(),
            log_path: "/p/log".into(),
            version: None,
            reused: false,
            password: Some("s3cret".into()),
        };
        assert!(!format!("{info:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&info).unwrap().contains("s3cret"));
        assert!(
            info.child_env()
                .contains(&("OPENCODE_SERVER_PASSWORD".into(), "s3cret".into()))
        );
    }
}
