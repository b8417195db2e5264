//! The [`Manager`] itself: its configuration, state root, progress sink and
//! the project lock every change goes through.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use statefile::ProjectPaths;

use crate::progress::{Progress, Repair};
use crate::{Config, Error};

type ProgressFn = dyn Fn(&Progress) + Send + Sync;

/// Starts, finds, checks and stops one OpenCode server per project.
pub struct Manager {
    pub(crate) config: Config,
    state_root: PathBuf,
    progress: Option<Arc<ProgressFn>>,
    /// Servers this process spawned, kept so that they are reaped (no zombie)
    /// when they exit while this process lives on.
    pub(crate) children: Mutex<Vec<procutil::Child>>,
    /// Signals that cancel a start ([`Manager::with_interrupts`]).
    pub(crate) interrupts: Option<Arc<procutil::signals::Signals>>,
    /// Whether a start an interrupt cancelled leaves the record saying
    /// `desired: down` (the user's Ctrl-C of `ocm up`), or keeps what the
    /// user wanted (a supervisor that stops: the user did not ask for the
    /// server to go down).
    pub(crate) interrupt_means_down: bool,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("config", &self.config)
            .field("state_root", &self.state_root)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager with `config`. Fails on a bad configuration or when no
    /// state root can be determined; the opencode binary is looked up only
    /// when a server is started.
    pub fn new(config: Config) -> Result<Manager, Error> {
        config.validate()?;
        let given = config.named_state_root()?;
        // One name for the state root, whatever path led to it (symlinks,
        // `..`): servers are recognised by the root in their environment, so
        // two spellings of one folder must not look like two roots.
        statefile::ensure_dir(&given)?;
        let state_root = std::fs::canonicalize(&given).map_err(|source| Error::Io {
            action: "cannot resolve the state folder",
            path: given.clone(),
            source,
        })?;
        Ok(Manager {
            config,
            state_root,
            progress: None,
            children: Mutex::new(Vec::new()),
            interrupts: None,
            interrupt_means_down: true,
        })
    }

    /// Reports progress to `report` (called on the calling thread).
    pub fn with_progress(mut self, report: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(report));
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The state root.
    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    pub(crate) fn report(&self, progress: Progress) {
        if let Some(report) = &self.progress {
            report(&progress);
        }
    }

    pub(crate) fn repaired(&self, repair: Repair) {
        self.report(Progress::Repaired(repair));
    }

    /// The project's absolute path, its hash and its state paths.
    pub(crate) fn project(&self, project: &Path) -> Result<(PathBuf, String, ProjectPaths), Error> {
        let project = portmap::resolve_path(project)?;
        let hash = portmap::project_hash(&project)?;
        let paths = ProjectPaths::new(&self.state_root, &hash);
        Ok((project, hash, paths))
    }

    /// The state paths of a project (record, lock, log).
    pub fn paths(&self, project: &Path) -> Result<ProjectPaths, Error> {
        Ok(self.project(project)?.2)
    }

    /// Takes the project's lock, saying so when another process holds it.
    pub(crate) fn lock(&self, paths: &ProjectPaths) -> Result<statefile::LockGuard, Error> {
        statefile::ensure_dir(&paths.dir)?;
        if let Some(guard) = statefile::try_lock(&paths.lock)? {
            return Ok(guard);
        }
        self.report(Progress::WaitingForLock {
            path: paths.lock.clone(),
        });
        // An interrupt ends the wait (keeping the place in the queue until
        // then).
        match statefile::lock_unless(&paths.lock, self.config.lock_timeout, &|| {
            self.interrupted()
        }) {
            Ok(guard) => Ok(guard),
            Err(statefile::Error::LockCancelled { .. }) => {
                self.check_interrupt()?;
                Err(Error::Interrupted {
                    signal: libc::SIGINT,
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_held_lock_is_reported_then_waited_for() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("project");
        std::fs::create_dir(&project).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let manager = Manager::new(Config {
            state_root: Some(root.path().join("state")),
            ..Config::default()
        })
        .unwrap()
        .with_progress(move |p| {
            let _ = tx.send(p.clone());
        });
        let paths = manager.paths(&project).unwrap();
        statefile::ensure_dir(&paths.dir).unwrap();
        let held = statefile::lock(&paths.lock, Duration::from_secs(5)).unwrap();
        std::thread::scope(|scope| {
            let stopper = scope.spawn(|| manager.stop(&project));
            let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(
                first,
                Progress::WaitingForLock {
                    path: paths.lock.clone()
                }
            );
            assert!(!stopper.is_finished());
            drop(held);
            let report = stopper.join().unwrap().unwrap();
            assert!(report.stopped.is_none());
        });
    }
}
