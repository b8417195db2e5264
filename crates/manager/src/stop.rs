//! Stopping a project's server (and unrecorded servers of the project), and
//! restarting it.

use std::path::{Path, PathBuf};

use statefile::ProjectPaths;

use crate::progress::{Progress, Repair};
use crate::record::{Desired, RecordStatus, ServerRecord, write_record};
use crate::report::{ServerInfo, StopReport};
use crate::{Error, Manager, find_opencode, scan};

impl Manager {
    /// Stops the project's server: SIGTERM to its process group, SIGKILL
    /// after the grace period, confirmed gone; the record is marked stopped
    /// and `desired: down`. Unrecorded servers of the project are stopped
    /// too. A recorded pid that is not this project's server is never
    /// signalled.
    pub fn stop(&self, project: &Path) -> Result<StopReport, Error> {
        self.reap_children();
        let (project, hash, paths) = self.project(project)?;
        if !paths.dir.exists() {
            // Nothing recorded; a server of ours may still run unrecorded.
            let mut report = StopReport {
                project,
                ..StopReport::default()
            };
            for server in scan::our_servers(self.state_root())
                .into_iter()
                .filter(|m| m.hash == hash)
            {
                if self.stop_unrecorded(server.pid(), &hash)? {
                    report.orphans_stopped.push(server.pid());
                }
            }
            report.leftovers_stopped = self.sweep_folderless(&hash, &paths.dir);
            // No record, so every companion of the project is an orphan.
            self.sweep_companions(&hash, |_| false);
            return Ok(report);
        }
        let _lock = self.lock(&paths)?;
        self.stop_locked(project, &hash, &paths, Desired::Down)
    }

    /// Stops the recorded server under the lock and records `desired`.
    pub(crate) fn stop_locked(
        &self,
        project: PathBuf,
        hash: &str,
        paths: &ProjectPaths,
        desired: Desired,
    ) -> Result<StopReport, Error> {
        let mut report = StopReport {
            project,
            ..StopReport::default()
        };
        let record = self.read_record_repairing(hash, paths)?;
        if let Some(mut record) = record.clone() {
            let identity = record.identity();
            if record.status != RecordStatus::Stopped {
                report.url = (!record.url.is_empty()).then(|| record.url.clone());
            }
            if record.status != RecordStatus::Stopped && identity.is_alive() {
                if scan::is_our_server(record.pid, hash, self.state_root()) {
                    self.report(Progress::Stopping { pid: record.pid });
                    let how = procutil::terminate(&identity, self.config.stop_grace)?;
                    report.pid = Some(record.pid);
                    report.stopped = Some(how);
                } else {
                    report.left_alone = Some(record.pid);
                    self.repaired(Repair::NotOurs { pid: record.pid });
                }
            }
            if record.status != RecordStatus::Stopped || record.desired != desired {
                record.status = RecordStatus::Stopped;
                record.desired = desired;
                if let Err(e) = write_record(&paths.record, &record) {
                    return Err(match report.pid {
                        Some(pid) => Error::StoppedButNotRecorded {
                            project: report.project,
                            pid,
                            record: paths.record.clone(),
                            source: Box::new(e),
                        },
                        None => e,
                    });
                }
            }
        }
        report.orphans_stopped = self.stop_orphans(hash, record.as_ref())?;
        // The recorded companion keeps running: stop is the server's.
        self.stop_orphan_companions(hash, paths);
        report.leftovers_stopped = self.sweep_project(hash, None);
        self.reap_children();
        Ok(report)
    }

    /// Stops the project's server (if any) and starts a fresh one. The
    /// opencode binary is looked up first: a restart that cannot start
    /// leaves the running server alone.
    pub fn restart(&self, project: &Path) -> Result<ServerInfo, Error> {
        self.reap_children();
        let (project, hash, paths) = self.project(project)?;
        if !project.is_dir() {
            return Err(Error::ProjectNotFound { path: project });
        }
        find_opencode(self.config.opencode_bin.as_deref())?;
        let _lock = self.lock(&paths)?;
        self.check_fixed_port_for_restart(&paths)?;
        self.stop_locked(project.clone(), &hash, &paths, Desired::Up)?;
        self.clear_for_start(&hash, &paths)?;
        self.start(&project, &hash, &paths)
    }

    /// Stops servers of this project that carry our markers but are not
    /// the recorded one (left by a crash between spawn and record), leaving
    /// alone what the recorded start's server started (those go with the
    /// project's other leftovers, never counted as servers).
    pub(crate) fn stop_orphans(
        &self,
        hash: &str,
        record: Option<&ServerRecord>,
    ) -> Result<Vec<u32>, Error> {
        let mut stopped = Vec::new();
        for server in scan::our_servers(self.state_root())
            .into_iter()
            .filter(|m| m.hash == hash)
        {
            let pid = server.pid();
            if record.is_some_and(|r| r.pid == pid || r.is_leftover(pid, server.nonce.as_deref())) {
                continue;
            }
            // Pinned by the scan; terminate refuses a pid whose start time
            // changed since.
            if !scan::is_our_server(pid, hash, self.state_root()) {
                continue;
            }
            let how = procutil::terminate(&server.identity, self.config.stop_grace)?;
            self.repaired(Repair::OrphanStopped { pid, how });
            stopped.push(pid);
        }
        Ok(stopped)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Config, PROJECT_HASH_VAR, STATE_ROOT_VAR};

    use super::*;

    #[test]
    fn restart_without_opencode_stops_nothing() {
        let root = tempfile::tempdir().unwrap();
        let manager = Manager::new(Config {
            state_root: Some(root.path().to_path_buf()),
            opencode_bin: Some(root.path().join("no-opencode")),
            ..Config::default()
        })
        .unwrap();
        let err = manager.restart(root.path()).unwrap_err();
        assert!(matches!(err, Error::OpencodeNotFound { .. }), "{err}");
        // Nothing was touched: not even the project's state folder.
        assert!(!manager.paths(root.path()).unwrap().dir.exists());
    }

    #[test]
    fn a_tool_that_leads_its_own_session_with_the_markers_is_not_a_server_but_is_stopped() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("project");
        std::fs::create_dir(&project).unwrap();
        let manager = Manager::new(Config {
            state_root: Some(root.path().join("state")),
            ..Config::default()
        })
        .unwrap();
        let hash = portmap::project_hash(&project).unwrap();
        // What a tool run by the server could do: setsid, inheriting the
        // server's markers.
        let tool = procutil::spawn_detached(
            &procutil::SpawnSpec::new("sleep")
                .arg("300")
                .env(PROJECT_HASH_VAR, &hash)
                .env(STATE_ROOT_VAR, manager.state_root().as_os_str()),
        )
        .unwrap();
        assert!(!scan::is_our_server(
            tool.pid(),
            &hash,
            manager.state_root()
        ));
        assert!(scan::our_servers(manager.state_root()).is_empty());
        // Not a server; but something a server of the project started, so
        // stopping the project stops it too (as a leftover, not an orphan).
        let report = manager.stop(&project).unwrap();
        assert!(report.orphans_stopped.is_empty());
        assert_eq!(report.leftovers_stopped, vec![tool.pid()]);
        assert!(!tool.identity().is_alive(), "the tool still runs");
        let _ = tool.wait_timeout(Duration::from_secs(5));
    }
}
