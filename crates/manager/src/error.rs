//! The manager's error type.

use std::path::PathBuf;

/// Everything that can go wrong managing a project's server. Messages carry
/// what a user needs to act: the project, the port, the pid, the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The opencode binary could not be found.
    #[error(
        "opencode not found: {detail}; install it (`npm install -g opencode-ai@{version}`, or \
         `cargo xtask opencode` in the ocm workspace) or set OPENCODE_BIN",
        version = crate::OPENCODE_VERSION
    )]
    OpencodeNotFound {
        /// Where it was looked for.
        detail: String,
    },
    /// A non-loopback address without a password would expose the server.
    #[error(
        "refusing to bind {hostname}: a server on a non-loopback address needs a password \
         (set OPENCODE_SERVER_PASSWORD or ask for a generated one)"
    )]
    NonLoopbackWithoutPassword {
        /// The refused address.
        hostname: String,
    },
    /// The configuration is inconsistent.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The project folder does not exist or is not a folder.
    #[error("project folder {path} does not exist or is not a folder")]
    ProjectNotFound {
        /// The project path as given, made absolute.
        path: PathBuf,
    },
    /// No server is running for the project.
    #[error("no server is running for {project}")]
    NotRunning {
        /// The project.
        project: PathBuf,
    },
    /// A fixed port is held by something else.
    #[error("port {port} on {hostname} is in use{}", holder_text(*holder))]
    PortInUse {
        /// The address.
        hostname: String,
        /// The port.
        port: u16,
        /// The holder's pid when /proc tells.
        holder: Option<u32>,
    },
    /// Every port the policy allows is taken.
    #[error("no free port on {hostname} in {first}-{last}")]
    NoFreePort {
        /// The address.
        hostname: String,
        /// The first port tried.
        first: u16,
        /// The last port tried.
        last: u16,
    },
    /// The server would not start (after the retry).
    #[error(
        "opencode failed to start for {project} after {attempts} attempt(s): {reason}{}\n\
         log: {log_path}\n{}",
        exit.as_ref().map(|e| format!(" ({e})")).unwrap_or_default(),
        if log_tail.is_empty() { "(the log is empty)".to_string() } else {
            format!("last lines of the log:\n{}", log_tail.join("\n"))
        },
        log_path = log_path.display()
    )]
    StartFailed {
        /// The project.
        project: PathBuf,
        /// How many starts were tried.
        attempts: u32,
        /// What went wrong on the last attempt.
        reason: String,
        /// The exit status when the server exited.
        exit: Option<String>,
        /// The server's log.
        log_path: PathBuf,
        /// Its last lines (at most 20) from the last attempt.
        log_tail: Vec<String>,
    },
    /// The server answers but refuses ocm's credentials.
    #[error(
        "the server for {project} at {url} (pid {pid}) refuses ocm's credentials (401): it was \
         started with a password ocm does not have; set OPENCODE_SERVER_PASSWORD to that \
         password, or `ocm restart` the project to start it with the current one"
    )]
    Unauthorized {
        /// The project.
        project: PathBuf,
        /// The server's URL.
        url: String,
        /// The server's pid.
        pid: u32,
    },
    /// The project's record was written by a newer ocm; it is left alone.
    #[error(
        "{path} was written by a newer ocm (record version {found}, this ocm reads up to \
         {supported}); use that ocm for this project, or move the record away to let this \
         one take over"
    )]
    RecordFromNewerOcm {
        /// The record.
        path: PathBuf,
        /// Its schema version.
        found: u64,
        /// The newest this ocm reads.
        supported: u32,
    },
    /// The state folder or a record failed.
    #[error(transparent)]
    State(#[from] statefile::Error),
    /// A process operation failed.
    #[error(transparent)]
    Process(#[from] procutil::Error),
    /// A project path could not be mapped to a port or hash.
    #[error(transparent)]
    Port(#[from] portmap::Error),
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn holder_text(holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!(
            " by pid {pid}{}",
            procutil::cmdline(pid)
                .ok()
                .filter(|c| !c.is_empty())
                .map(|c| format!(" ({})", c.join(" ")))
                .unwrap_or_default()
        ),
        None => String::new(),
    }
}
