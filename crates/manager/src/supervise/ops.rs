//! What the supervisor asks of the [`Manager`]: a start that respects the
//! user's `desired` state under the project lock, a server's exit status
//! when it is this process's child, and ending a server's group.

use std::path::Path;
use std::time::Duration;

use procutil::{ExitStatus, ProcessIdentity, Termination};

use crate::health::Liveness;
use crate::record::{Desired, RecordStatus};
use crate::report::{ServerInfo, info_from};
use crate::{Error, Manager};

impl Manager {
    /// Like [`Manager::ensure`], but under the lock it first reads what the
    /// user wants: `Ok(None)`, and nothing started, when the record says
    /// `desired: down`. A healthy recorded server is returned as it is
    /// (`reused`).
    pub(crate) fn supervised_start(&self, project: &Path) -> Result<Option<ServerInfo>, Error> {
        let (project, hash, paths) = self.project(project)?;
        if !project.is_dir() {
            return Err(Error::ProjectNotFound { path: project });
        }
        let _lock = self.lock(&paths)?;
        let record = self.read_record_repairing(&hash, &paths)?;
        if let Some(record) = &record {
            if record.desired == Desired::Down {
                return Ok(None);
            }
            if record.status != RecordStatus::Stopped && record.pid != 0 {
                let password = self.password_of(record, &paths)?;
                match self.liveness(record, &hash, password.as_deref()) {
                    Liveness::Healthy { version } => {
                        return Ok(Some(info_from(
                            &project,
                            record,
                            Some(version),
                            true,
                            password,
                        )));
                    }
                    Liveness::Unhealthy { .. } => {
                        self.end_server(&record.identity(), Duration::ZERO);
                    }
                    _ => {}
                }
            }
        }
        self.clear_for_start(&hash, &paths)?;
        self.start(&project, &hash, &paths).map(Some)
    }

    /// The exit status of `pid` when it is a server this process spawned
    /// (reaping it); `None` for a server another process started.
    pub(crate) fn take_exit_status(&self, pid: u32) -> Option<ExitStatus> {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let index = children.iter().position(|c| c.pid() == pid)?;
        match children[index].try_wait() {
            Ok(Some(status)) => {
                children.swap_remove(index);
                Some(status)
            }
            _ => None,
        }
    }

    /// The pidfd of a server this process spawned.
    pub(crate) fn child_pidfd(&self, pid: u32) -> Option<procutil::Pidfd> {
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let child = children.iter().find(|c| c.pid() == pid)?;
        // A second pidfd of the same process: the Watch duplicates it anyway.
        child
            .pidfd()
            .and_then(|_| procutil::Pidfd::open(pid).ok().flatten())
    }

    /// Ends a server and its group (SIGTERM, SIGKILL after `grace`), reaping
    /// it when it is this process's child. Returns how it ended.
    pub(crate) fn end_server(
        &self,
        identity: &ProcessIdentity,
        grace: Duration,
    ) -> (Option<Termination>, Option<ExitStatus>) {
        let child = {
            let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
            children
                .iter()
                .position(|c| c.pid() == identity.pid)
                .map(|index| children.swap_remove(index))
        };
        match child {
            Some(child) => {
                let how = child.terminate(grace).ok();
                (how, child.try_wait().ok().flatten())
            }
            None => (procutil::terminate(identity, grace).ok(), None),
        }
    }
}
