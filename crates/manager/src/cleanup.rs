//! Removing state: `destroy` (one project) and `gc` (every project whose
//! server is not running, and servers of ours that have no record).

use std::path::Path;

use procutil::ProcessIdentity;
use statefile::ProjectPaths;

use crate::record::read_record;
use crate::report::{GcFailure, GcReport, ServerState, StopReport};
use crate::{Error, Manager, scan};

impl Manager {
    /// Stops the project's server and its companion, then deletes its state
    /// folder and logs.
    pub fn destroy(&self, project: &Path) -> Result<StopReport, Error> {
        self.reap_children();
        let (project, hash, paths) = self.project(project)?;
        if !paths.dir.exists() {
            return self.stop(&project);
        }
        let lock = self.lock(&paths)?;
        let report = self.stop_locked(project, &hash, &paths, crate::record::Desired::Down)?;
        self.stop_companion_locked(&hash, &paths)?;
        self.remove_project_dir(&paths)?;
        drop(lock);
        Ok(report)
    }

    /// Removes the state folders (record, logs, moved-aside records) of
    /// projects whose server is not running, stops servers of ours that have
    /// no record at all, and reports running servers whose project folder is
    /// gone (they are left running). Folders whose record cannot be read are
    /// left for a person to look at, and so are folders another process is
    /// working on; both are listed.
    pub fn gc(&self) -> Result<GcReport, Error> {
        self.reap_children();
        let mut report = GcReport::default();
        self.remove_stale_tombstones();
        let marked = scan::marked(self.state_root());
        let mut recorded = Vec::new();
        for (hash, paths) in self.recorded_projects()? {
            recorded.push(hash.clone());
            // One project that cannot be worked on (a folder of another
            // user's, an I/O error) is reported; gc goes on with the others.
            if let Err(e) = self.gc_project(&hash, &paths, &mut report) {
                report.failed.push(GcFailure {
                    path: paths.dir.clone(),
                    error: e.to_string(),
                });
            }
        }
        // Servers and leftovers of projects that have no folder at all.
        let mut unrecorded: Vec<&str> = Vec::new();
        for process in &marked {
            if !recorded.contains(&process.hash) && !unrecorded.contains(&process.hash.as_str()) {
                unrecorded.push(&process.hash);
            }
        }
        for process in marked.iter().filter(|m| m.is_server()) {
            if recorded.contains(&process.hash) {
                continue;
            }
            match self.stop_unrecorded(process.pid(), &process.hash) {
                Ok(true) => report.orphans_stopped.push(process.pid()),
                Ok(false) => {}
                Err(e) => report.failed.push(GcFailure {
                    path: ProjectPaths::new(self.state_root(), &process.hash).dir,
                    error: e.to_string(),
                }),
            }
        }
        for hash in unrecorded {
            let dir = ProjectPaths::new(self.state_root(), hash).dir;
            if !dir.exists() {
                report
                    .leftovers_stopped
                    .extend(self.sweep_folderless(hash, &dir));
                report
                    .leftovers_stopped
                    .extend(self.sweep_companions(hash, |_| false));
            }
        }
        Ok(report)
    }

    /// `gc` of one project folder, under its lock.
    fn gc_project(
        &self,
        hash: &str,
        paths: &ProjectPaths,
        report: &mut GcReport,
    ) -> Result<(), Error> {
        let Some(lock) = statefile::try_lock(&paths.lock)? else {
            report.busy.push(paths.dir.clone());
            return Ok(());
        };
        let record = match read_record(&paths.record) {
            Ok(record) => record,
            Err(_) => {
                report.unreadable.push(paths.record.clone());
                return Ok(());
            }
        };
        let project = record
            .as_ref()
            .map(|r| r.project_path.clone())
            .unwrap_or_else(|| paths.dir.clone());
        let status = self.status_of(project, hash, paths, record.as_ref());
        if matches!(status.status, ServerState::Running | ServerState::Unhealthy) {
            if !status.project.is_dir() {
                report.project_gone.push(status);
            }
            return Ok(());
        }
        // Not running; an unrecorded server of this project (its starter
        // died before recording it) keeps the folder for `ensure` to find.
        let unrecorded_server = scan::our_servers(self.state_root()).iter().any(|m| {
            m.hash == hash
                && !record
                    .as_ref()
                    .is_some_and(|r| r.is_leftover(m.pid(), m.nonce.as_deref()))
        });
        if unrecorded_server {
            return Ok(());
        }
        // What its servers started and left running goes with it, and so
        // does its companion.
        report
            .leftovers_stopped
            .extend(self.sweep_project(hash, None));
        self.stop_companion_locked(hash, paths)?;
        self.remove_project_dir(paths)?;
        drop(lock);
        report.removed.push(paths.dir.clone());
        Ok(())
    }

    /// Removes a project's state folder while its lock is held. The folder is
    /// first renamed out of the way (to a name no project has), so nobody
    /// arriving meanwhile can lock or record anything in what is being
    /// deleted: they make a fresh folder, and lock a fresh file, at the
    /// project's path.
    pub(crate) fn remove_project_dir(&self, paths: &ProjectPaths) -> Result<(), Error> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tombstone = ProjectPaths::servers_dir(self.state_root()).join(format!(
            ".removing-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        match std::fs::rename(&paths.dir, &tombstone) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(Error::Io {
                    action: "cannot move away",
                    path: paths.dir.clone(),
                    source,
                });
            }
        }
        std::fs::remove_dir_all(&tombstone).map_err(|source| Error::Io {
            action: "cannot remove",
            path: tombstone,
            source,
        })
    }

    /// Deletes folders that a removal renamed out of the way but did not
    /// finish deleting (its process died meanwhile).
    fn remove_stale_tombstones(&self) {
        let servers = ProjectPaths::servers_dir(self.state_root());
        let Ok(entries) = std::fs::read_dir(&servers) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(".removing-")) else {
                continue;
            };
            let owner_alive = rest
                .split('-')
                .next()
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| ProcessIdentity::of(pid).is_ok());
            if !owner_alive {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Stops a server of ours whose project had no state folder when `gc`
    /// looked, unless, under that project's lock, it turns out to be
    /// recorded by now (an `ensure` that ran meanwhile) or the lock is busy.
    pub(crate) fn stop_unrecorded(&self, pid: u32, hash: &str) -> Result<bool, Error> {
        let paths = ProjectPaths::new(self.state_root(), hash);
        let Some(lock) = statefile::try_lock(&paths.lock)? else {
            return Ok(false);
        };
        let recorded = read_record(&paths.record);
        if matches!(&recorded, Ok(Some(r)) if r.pid == pid) || recorded.is_err() {
            return Ok(false);
        }
        let stopped = match ProcessIdentity::of(pid) {
            Ok(identity) if scan::is_our_server(pid, hash, self.state_root()) => {
                procutil::terminate(&identity, self.config.stop_grace)?;
                true
            }
            _ => false,
        };
        // The lock file was made just now for this check: leave no folder.
        if matches!(recorded, Ok(None)) {
            self.remove_project_dir(&paths)?;
        }
        drop(lock);
        Ok(stopped)
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    use super::*;

    #[test]
    fn one_project_gc_cannot_work_on_is_reported_and_the_others_are_cleaned() {
        let root = tempfile::tempdir().unwrap();
        let manager = Manager::new(Config {
            state_root: Some(root.path().join("state")),
            ..Config::default()
        })
        .unwrap();
        let mut dirs = Vec::new();
        for name in ["a", "b", "c"] {
            let project = root.path().join(name);
            std::fs::create_dir(&project).unwrap();
            let paths = manager.paths(&project).unwrap();
            statefile::ensure_dir(&paths.dir).unwrap();
            dirs.push(paths);
        }
        // Project b's lock cannot be opened (a folder where the file should
        // be): gc says so and goes on with a and c.
        std::fs::create_dir(&dirs[1].lock).unwrap();
        let report = manager.gc().unwrap();
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(report.failed[0].path, dirs[1].dir);
        assert!(report.failed[0].error.contains("server.lock"), "{report:?}");
        assert!(report.removed.contains(&dirs[0].dir), "{report:?}");
        assert!(report.removed.contains(&dirs[2].dir), "{report:?}");
        assert!(dirs[1].dir.exists());
    }
}
