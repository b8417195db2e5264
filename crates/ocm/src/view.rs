//! One project's server as every command reports it: a [`ServerStatus`]
//! (from `status`, `list`, `gc`, or made from the [`ServerInfo`] that
//! `ensure`/`restart` return) plus where its password is. `render` turns a
//! [`ProjectView`] into the one JSON shape and the human lines, so no
//! command can report a project differently.

use std::path::PathBuf;

use manager::{Manager, PasswordPolicy, ProjectPaths, ServerInfo, ServerState, ServerStatus};

use crate::error::CliError;

/// Where the server's password is, when it requires one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No password (or no server).
    None,
    /// A generated password, kept in this file (mode 0600).
    Generated(PathBuf),
    /// The `OPENCODE_SERVER_PASSWORD` it was started with.
    Env,
}

impl Auth {
    /// `auth` in JSON.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Auth::None => None,
            Auth::Generated(_) => Some("generated"),
            Auth::Env => Some("env"),
        }
    }

    /// `passwordFile` in JSON.
    pub fn file(&self) -> Option<&PathBuf> {
        match self {
            Auth::Generated(file) => Some(file),
            _ => None,
        }
    }
}

/// A project's server as ocm reports it.
#[derive(Debug, Clone)]
pub struct ProjectView {
    pub status: ServerStatus,
    pub auth: Auth,
}

impl ProjectView {
    /// A status with where its password is (read from the record: a
    /// status does not say; nothing for a stopped project).
    pub fn of_status(status: ServerStatus, manager: Option<&Manager>) -> ProjectView {
        let auth = match manager {
            Some(manager) if status.status != ServerState::Stopped => {
                recorded_auth(&status, manager)
            }
            _ => Auth::None,
        };
        ProjectView { status, auth }
    }

    /// The server `ensure` or `restart` returned, as a status.
    pub fn of_server(info: &ServerInfo, manager: &Manager) -> Result<ProjectView, CliError> {
        let project = manager::project(&info.project)?;
        let state_dir = manager.paths(&info.project)?.dir;
        let status = ServerStatus {
            project: info.project.clone(),
            project_port: Some(project.port),
            status: info.status,
            healthy: info.healthy,
            url: Some(info.url.clone()),
            port: Some(info.port),
            pid: Some(info.pid),
            started_at: Some(info.started_at.clone()),
            log_path: info.log_path.clone(),
            version: info.version.clone(),
            uptime_seconds: info.uptime().map(|d| d.as_secs()),
            // Not measured on the way up; `ocm status` has it.
            resident_memory_bytes: None,
            detail: None,
            state_dir,
            supervisor: None,
        };
        let auth = match info.password() {
            None => Auth::None,
            Some(password) => match &manager.config().password {
                PasswordPolicy::Fixed(fixed) if fixed == password => Auth::Env,
                _ => generated_or_env(&status),
            },
        };
        Ok(ProjectView { status, auth })
    }

    /// The project as stopped, when nothing is recorded for it.
    pub fn stopped(project: &manager::Project, paths: &ProjectPaths) -> ProjectView {
        ProjectView {
            status: ServerStatus::stopped(project.path.clone(), paths),
            auth: Auth::None,
        }
    }
}

/// Where the password of a recorded server is. The record says whether it
/// has one, not where from: the configured `OPENCODE_SERVER_PASSWORD` is
/// what ocm would use to talk to it, else the generated file when there is
/// one, else the environment of whoever started it.
fn recorded_auth(status: &ServerStatus, manager: &Manager) -> Auth {
    let Some(hash) = status.state_dir.file_name().and_then(|n| n.to_str()) else {
        return Auth::None;
    };
    let record = ProjectPaths::new(manager.state_root(), hash).record;
    match manager::read_record(&record) {
        Ok(Some(record)) if record.auth => {
            if matches!(manager.config().password, PasswordPolicy::Fixed(_)) {
                Auth::Env
            } else {
                generated_or_env(status)
            }
        }
        _ => Auth::None,
    }
}

fn generated_or_env(status: &ServerStatus) -> Auth {
    let file = status.password_file();
    if file.is_file() {
        Auth::Generated(file)
    } else {
        Auth::Env
    }
}
