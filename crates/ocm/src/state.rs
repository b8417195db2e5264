//! The state folder from the CLI's side: where it is, opening it, and
//! errors in it said with their context.
//!
//! Commands that only look or clean up (`status`, `url`, `port`, `logs`,
//! `ls`, `down`, `destroy`, `gc`) must not need to create the state
//! folder: when it does not exist yet, nothing is recorded, so every
//! project is stopped and there is nothing to stop or remove. `Manager::new`
//! creates the folder, so a [`Store`] does not make a manager then.

use std::path::{Path, PathBuf};

use manager::{GcReport, Manager, ProjectPaths, ServerStatus, StopReport};

use crate::cli::Cli;
use crate::error::{CliError, io_failure};
use crate::view::ProjectView;

/// The state folder the manager will use, worked out as it does but
/// without touching anything. `None` when the configuration gives none (a
/// relative `OCM_STATE_DIR`, no `HOME`): the manager then says why.
pub fn expected_root(cli: &Cli) -> Option<PathBuf> {
    manager::Config {
        state_root: cli.state_dir.clone(),
        ..manager::Config::default()
    }
    .named_state_root()
    .ok()
}

/// What the looking commands read: the state folder through a manager, or
/// nothing at all when it does not exist yet.
// One per process: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Store {
    Open(Manager),
    Missing(PathBuf),
}

impl Store {
    /// Opens the state folder when it exists; `make` makes the manager.
    pub fn open(
        cli: &Cli,
        make: impl FnOnce() -> Result<Manager, CliError>,
    ) -> Result<Store, CliError> {
        match expected_root(cli) {
            Some(root) if is_missing(&root) => Ok(Store::Missing(root)),
            _ => make().map(Store::Open),
        }
    }

    pub fn manager(&self) -> Option<&Manager> {
        match self {
            Store::Open(manager) => Some(manager),
            Store::Missing(_) => None,
        }
    }

    /// The project's state paths.
    pub fn paths(&self, dir: &Path) -> Result<ProjectPaths, CliError> {
        match self {
            Store::Open(manager) => Ok(manager.paths(dir)?),
            Store::Missing(root) => Ok(ProjectPaths::new(root, &manager::project(dir)?.hash)),
        }
    }

    /// The project's status (never starts anything).
    pub fn status(&self, dir: &Path) -> Result<ServerStatus, CliError> {
        match self {
            Store::Open(manager) => Ok(manager.status(dir)?),
            Store::Missing(_) => {
                let project = manager::project(dir)?;
                Ok(ProjectView::stopped(&project, &self.paths(dir)?).status)
            }
        }
    }

    /// The project's status with where its password is.
    pub fn view(&self, dir: &Path) -> Result<ProjectView, CliError> {
        Ok(self.view_of(self.status(dir)?))
    }

    pub fn view_of(&self, status: ServerStatus) -> ProjectView {
        ProjectView::of_status(status, self.manager())
    }

    /// Every recorded project.
    pub fn list(&self) -> Result<Vec<ServerStatus>, CliError> {
        match self {
            Store::Open(manager) => Ok(manager.list()?),
            Store::Missing(_) => Ok(Vec::new()),
        }
    }

    pub fn stop(&self, dir: &Path) -> Result<StopReport, CliError> {
        match self {
            Store::Open(manager) => Ok(manager.stop(dir)?),
            Store::Missing(_) => Ok(nothing_stopped(dir)?),
        }
    }

    pub fn destroy(&self, dir: &Path) -> Result<StopReport, CliError> {
        match self {
            Store::Open(manager) => Ok(manager.destroy(dir)?),
            Store::Missing(_) => Ok(nothing_stopped(dir)?),
        }
    }

    pub fn gc(&self) -> Result<GcReport, CliError> {
        match self {
            Store::Open(manager) => Ok(manager.gc()?),
            Store::Missing(_) => Ok(GcReport::default()),
        }
    }
}

/// True when `root` does not exist (a path through a file cannot exist
/// either); an unreadable parent is not known to be missing.
fn is_missing(root: &Path) -> bool {
    use std::io::ErrorKind;
    match std::fs::metadata(root) {
        Ok(_) => false,
        Err(e) => matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory),
    }
}

fn nothing_stopped(dir: &Path) -> Result<StopReport, manager::Error> {
    Ok(StopReport {
        project: manager::project(dir)?.path,
        ..StopReport::default()
    })
}

/// `error` with the state folder named, when it is a failed file operation
/// in it (or on the way to it): which folder, what ocm was `doing`.
pub fn in_context(error: CliError, cli: &Cli, doing: impl FnOnce() -> String) -> CliError {
    let Some(root) = expected_root(cli) else {
        return error;
    };
    let failed = match &error {
        CliError::Manager(e) | CliError::Start(e) => io_failure(e).map(Path::to_path_buf),
        _ => None,
    };
    let Some(path) = failed else {
        return error;
    };
    // The manager names the folder by its canonical path.
    let canonical = std::fs::canonicalize(&root).ok();
    // In it, or a folder on the way to it that could not be made or read
    // (an existing folder above it, such as the project's, is not).
    let related =
        |root: &Path| path.starts_with(root) || (root.starts_with(&path) && !path.is_dir());
    if related(&root) || canonical.as_deref().is_some_and(related) {
        CliError::InStateDir {
            root,
            doing: doing(),
            path,
            error: Box::new(error),
        }
    } else {
        error
    }
}
