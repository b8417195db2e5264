//! Looking without touching: a project's status with live checks, and the
//! list of every recorded project. Takes no lock, never starts anything.

use std::path::{Path, PathBuf};

use statefile::ProjectPaths;

use crate::health::Liveness;
use crate::record::{Desired, RecordStatus, ServerRecord, read_record};
use crate::report::{ServerInfo, ServerState, ServerStatus, info_from, uptime_since};
use crate::{Error, Manager, scan};

impl Manager {
    /// The project's recorded server when its process is still the one
    /// recorded, is ocm's, and the user wants it up, found without asking
    /// it anything (no health request, no lock): for callers that prove it
    /// serves by other means (an event stream's `server.connected`) and
    /// call [`Manager::ensure`] when it does not. `Ok(None)`: no such
    /// server (stopped, dead, not ours, down, or no readable record).
    pub fn running_server(&self, project: &Path) -> Result<Option<ServerInfo>, Error> {
        let (project, hash, paths) = self.project(project)?;
        let Ok(Some(record)) = read_record(&paths.record) else {
            return Ok(None);
        };
        if record.status != RecordStatus::Running
            || record.pid == 0
            || record.desired != Desired::Up
            || !record.identity().is_alive()
            || !scan::is_our_server(record.pid, &hash, self.state_root())
        {
            return Ok(None);
        }
        let password = self.password_of(&record, &paths)?;
        Ok(Some(info_from(&project, &record, None, true, password)))
    }

    /// The project's record with live checks: alive, healthy, version,
    /// uptime, resident memory. Takes no lock; never starts anything.
    /// A record that cannot be read (empty, corrupt, another schema) is
    /// reported as [`ServerState::Dead`] with the reason in `detail`, as
    /// [`Manager::list`] does; it is left where it is (`ensure` and `stop`
    /// move it aside under the lock).
    pub fn status(&self, project: &Path) -> Result<ServerStatus, Error> {
        self.reap_children();
        let (project, hash, paths) = self.project(project)?;
        match read_record(&paths.record) {
            Ok(record) => Ok(self.status_of(project, &hash, &paths, record.as_ref())),
            Err(e) if e.is_corrupt() => {
                let mut status = self.status_of(project, &hash, &paths, None);
                status.status = ServerState::Dead;
                status.detail = Some(format!("the record is unreadable: {e}"));
                Ok(status)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn status_of(
        &self,
        project: PathBuf,
        hash: &str,
        paths: &ProjectPaths,
        record: Option<&ServerRecord>,
    ) -> ServerStatus {
        let mut status = self.recorded_status_of(project, hash, paths, record);
        if matches!(status.status, ServerState::Stopped | ServerState::Dead) {
            self.note_unrecorded_server(&mut status, hash, record);
        }
        status
    }

    /// A server of the project that no record names (its `ocm up` was
    /// killed before it recorded the pid): found by its markers, so that
    /// `status`, `ls` and `gc` see it.
    fn note_unrecorded_server(
        &self,
        status: &mut ServerStatus,
        hash: &str,
        record: Option<&ServerRecord>,
    ) {
        let Some(server) = scan::our_servers(self.state_root()).into_iter().find(|m| {
            m.hash == hash
                && !record.is_some_and(|r| {
                    (r.pid == m.pid() && r.status != RecordStatus::Stopped)
                        || r.is_leftover(m.pid(), m.nonce.as_deref())
                })
        }) else {
            return;
        };
        status.status = ServerState::Unhealthy;
        status.pid = Some(server.pid());
        status.detail = Some(format!(
            "an unrecorded server of this project runs (pid {}): the start that made it was \
             interrupted before recording it; `ocm up` replaces it, `ocm down` stops it",
            server.pid()
        ));
    }

    fn recorded_status_of(
        &self,
        project: PathBuf,
        hash: &str,
        paths: &ProjectPaths,
        record: Option<&ServerRecord>,
    ) -> ServerStatus {
        let mut status = ServerStatus::stopped(project, paths);
        status.supervisor = crate::supervise::read_info(paths);
        let Some(record) = record else {
            return status;
        };
        status.log_path = record.log_path.clone();
        // A stopped server has no pid, URL or port any more: a script that
        // checks them must not find the last run's values.
        if record.status == RecordStatus::Stopped {
            return status;
        }
        if record.pid == 0 {
            status.status = ServerState::Dead;
            status.detail =
                Some("a start was interrupted before it recorded its server's pid".to_string());
            return status;
        }
        status.url = (!record.url.is_empty()).then(|| record.url.clone());
        status.port = (record.port != 0).then_some(record.port);
        status.pid = Some(record.pid);
        status.started_at = Some(record.started_at.clone());
        status.version = record.opencode_version.clone();
        // A record written at spawn, before the server listened: another
        // process is starting it (or was killed while it did). There is no
        // URL to ask yet.
        if record.status == RecordStatus::Starting
            && record.identity().is_alive()
            && scan::is_our_server(record.pid, hash, self.state_root())
        {
            status.status = ServerState::Unhealthy;
            status.detail = Some(format!(
                "pid {} is starting (not healthy yet, or its start was interrupted)",
                record.pid
            ));
            return status;
        }
        let password = self.password_of(record, paths).ok().flatten();
        match self.liveness(record, hash, password.as_deref()) {
            Liveness::Healthy { version } => {
                status.status = ServerState::Running;
                status.healthy = true;
                status.version = Some(version);
            }
            Liveness::Unauthorized => {
                status.status = ServerState::Unhealthy;
                status.detail = Some("the server refuses ocm's credentials (401)".into());
            }
            Liveness::Unhealthy { reason } => {
                status.status = ServerState::Unhealthy;
                status.detail = Some(reason);
            }
            Liveness::Dead => {
                status.status = ServerState::Dead;
                status.detail = Some(format!("process {} is gone", record.pid));
                return status;
            }
            Liveness::NotOurs => {
                status.status = ServerState::Dead;
                status.detail = Some(format!(
                    "pid {} is now another program, not this project's server",
                    record.pid
                ));
                return status;
            }
        }
        status.resident_memory_bytes = procutil::resident_memory(record.pid).ok();
        status.uptime_seconds = uptime_since(&record.started_at).map(|d| d.as_secs());
        status
    }

    /// Every project recorded under the state root, with live checks.
    /// A record that cannot be read is listed as dead with the reason.
    pub fn list(&self) -> Result<Vec<ServerStatus>, Error> {
        self.reap_children();
        let mut all = Vec::new();
        for (hash, paths) in self.recorded_projects()? {
            match read_record(&paths.record) {
                Ok(Some(record)) => {
                    let project = record.project_path.clone();
                    all.push(self.status_of(project, &hash, &paths, Some(&record)));
                }
                Ok(None) => {}
                Err(e) => all.push(self.unreadable_status(&hash, &paths, &e)),
            }
        }
        // Servers of projects that have no folder at all (deleted by hand,
        // or a start killed before it made one): listed by their markers.
        for server in scan::our_servers(self.state_root()) {
            let paths = ProjectPaths::new(self.state_root(), &server.hash);
            if paths.dir.exists() {
                continue;
            }
            let mut status = self.recorded_status_of(paths.dir.clone(), &server.hash, &paths, None);
            status.project = procutil::cwd(server.pid()).unwrap_or(paths.dir.clone());
            status.project_port = portmap::port_for_project(&status.project).ok();
            status.status = ServerState::Unhealthy;
            status.pid = Some(server.pid());
            status.detail = Some(format!(
                "pid {} is a server of ocm's that no record names; `ocm gc` stops it",
                server.pid()
            ));
            all.push(status);
        }
        all.sort_by(|a, b| a.project.cmp(&b.project));
        Ok(all)
    }

    /// The status of a project whose record cannot be read: dead, with the
    /// reason, and the project path recovered from the raw JSON if it can be.
    fn unreadable_status(
        &self,
        hash: &str,
        paths: &ProjectPaths,
        error: &statefile::Error,
    ) -> ServerStatus {
        let project = statefile::read_json::<serde_json::Value>(&paths.record)
            .ok()
            .flatten()
            .and_then(|v| v.get("projectPath")?.as_str().map(PathBuf::from))
            .unwrap_or_else(|| paths.dir.clone());
        let mut status = self.status_of(project, hash, paths, None);
        status.status = ServerState::Dead;
        status.detail = Some(format!("the record is unreadable: {error}"));
        status
    }

    /// The hash and paths of every project folder under the state root.
    pub(crate) fn recorded_projects(&self) -> Result<Vec<(String, ProjectPaths)>, Error> {
        let servers = ProjectPaths::servers_dir(self.state_root());
        let entries = match std::fs::read_dir(&servers) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    action: "cannot list",
                    path: servers,
                    source,
                });
            }
        };
        Ok(entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|hash| statefile::is_project_hash(hash))
            .map(|hash| {
                let paths = ProjectPaths::new(self.state_root(), &hash);
                (hash, paths)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    use super::*;

    #[test]
    fn status_of_an_unknown_project_is_stopped() {
        let root = tempfile::tempdir().unwrap();
        let manager = Manager::new(Config {
            state_root: Some(root.path().to_path_buf()),
            ..Config::default()
        })
        .unwrap();
        let status = manager.status(root.path()).unwrap();
        assert_eq!(status.status, ServerState::Stopped);
        assert!(manager.list().unwrap().is_empty());
        let report = manager.stop(root.path()).unwrap();
        assert!(report.stopped.is_none());
    }

    #[test]
    fn status_reports_an_unreadable_record_as_dead_and_leaves_it() {
        let root = tempfile::tempdir().unwrap();
        let manager = Manager::new(Config {
            state_root: Some(root.path().to_path_buf()),
            ..Config::default()
        })
        .unwrap();
        let paths = manager.paths(root.path()).unwrap();
        statefile::ensure_dir(&paths.dir).unwrap();
        std::fs::write(&paths.record, b"{\"schemaVersion\": 1, \"pid\": ").unwrap();
        let status = manager.status(root.path()).unwrap();
        assert_eq!(status.status, ServerState::Dead);
        let detail = status.detail.unwrap();
        assert!(detail.contains("unreadable"), "{detail}");
        assert!(paths.record.exists());
    }
}
