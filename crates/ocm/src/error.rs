//! What can end an ocm command, with its exit status and a hint.

use std::path::PathBuf;

use crate::cli::UsageError;

/// Exit status: success.
pub const EXIT_OK: i32 = 0;
/// Exit status: an error not covered by the others.
pub const EXIT_ERROR: i32 = 1;
/// Exit status: the command line is wrong.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: the project's server is not running (`status`, `url`).
pub const EXIT_NOT_RUNNING: i32 = 3;
/// Exit status: the server failed to start.
pub const EXIT_START_FAILED: i32 = 4;
/// Exit status of `exec` when the command cannot be run.
pub const EXIT_CANNOT_RUN: i32 = 126;
/// Exit status of `exec` when the command is not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(#[from] UsageError),
    /// The manager failed (boxed: its error is large).
    #[error("{0}")]
    Manager(Box<manager::Error>),
    /// The project's server is not running (or not healthy).
    #[error("no server is running for {}{}", project.display(), state_text(state, detail.as_deref()))]
    NotRunning {
        /// The project.
        project: PathBuf,
        /// What `status` found.
        state: manager::ServerState,
        /// Why, when known.
        detail: Option<String>,
    },
    /// The log does not exist yet.
    #[error("no server log for {} yet (looked at {})", project.display(), log.display())]
    NoLog {
        /// The project.
        project: PathBuf,
        /// The log path.
        log: PathBuf,
    },
    /// `exec` could not run the command.
    #[error("cannot run {program}: {source}")]
    Exec {
        /// The command as given.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Reading or writing a file or the terminal failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl From<manager::Error> for CliError {
    fn from(error: manager::Error) -> Self {
        CliError::Manager(Box::new(error))
    }
}

fn state_text(state: &manager::ServerState, detail: Option<&str>) -> String {
    match (state, detail) {
        (manager::ServerState::Stopped, _) => String::new(),
        (state, Some(detail)) => format!(" (it is {state}: {detail})"),
        (state, None) => format!(" (it is {state})"),
    }
}

impl CliError {
    /// The exit status this error ends ocm with.
    pub fn exit_code(&self) -> i32 {
        use manager::Error as M;
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::NotRunning { .. } => EXIT_NOT_RUNNING,
            CliError::Exec { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                EXIT_NOT_FOUND
            }
            CliError::Exec { .. } => EXIT_CANNOT_RUN,
            CliError::Manager(e) => match e.as_ref() {
                M::NotRunning { .. } => EXIT_NOT_RUNNING,
                M::StartFailed { .. }
                | M::OpencodeNotFound { .. }
                | M::PortInUse { .. }
                | M::NoFreePort { .. } => EXIT_START_FAILED,
                M::Config(_) | M::NonLoopbackWithoutPassword { .. } => EXIT_USAGE,
                _ => EXIT_ERROR,
            },
            CliError::NoLog { .. } | CliError::Io { .. } => EXIT_ERROR,
        }
    }

    /// What the user can do about it, when there is something to say that
    /// the message does not already say.
    pub fn hint(&self) -> Option<String> {
        use manager::Error as M;
        match self {
            CliError::Usage(usage) => Some(match usage.command {
                Some(name) => format!("usage: {}\nsee `ocm {name} --help`", name.usage()),
                None => "see `ocm --help`".to_string(),
            }),
            CliError::NotRunning { project, .. } => Some(format!(
                "start it with `ocm up {}`",
                shell_word(&project.display().to_string())
            )),
            CliError::NoLog { project, .. } => Some(format!(
                "the log appears when the server starts: `ocm up {}`, or follow it with \
                 `ocm logs -f` to wait for it",
                shell_word(&project.display().to_string())
            )),
            CliError::Exec { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Some("check the command name and PATH".into())
            }
            CliError::Manager(e) => match e.as_ref() {
                M::StartFailed { project, .. } => Some(format!(
                    "the whole log: `ocm logs {}`; a slow machine may need --timeout",
                    shell_word(&project.display().to_string())
                )),
                M::PortInUse { .. } => Some(
                    "choose another with --port N, or let ocm pick with --port-policy project"
                        .into(),
                ),
                M::NoFreePort { .. } => {
                    Some("free a port, or choose another range with --port-policy range:A-B".into())
                }
                M::State(statefile::Error::LockTimeout { .. }) => Some(
                    "another ocm is starting or stopping this project; try again when it is done"
                        .into(),
                ),
                M::NonLoopbackWithoutPassword { .. } => Some(
                    "add --password-generate (or set OPENCODE_SERVER_PASSWORD), or bind 127.0.0.1"
                        .into(),
                ),
                M::ProjectNotFound { .. } => {
                    Some("give an existing folder, or run ocm inside the project".into())
                }
                _ => None,
            },
            CliError::Io { .. } => None,
            CliError::Exec { .. } => None,
        }
    }
}

/// `text` quoted for a POSIX shell when it needs quoting.
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_per_kind() {
        let usage = CliError::Usage(crate::cli::parse(["frob"]).unwrap_err());
        assert_eq!(usage.exit_code(), EXIT_USAGE);
        assert!(usage.hint().unwrap().contains("ocm --help"));
        let not_running = CliError::NotRunning {
            project: "/p q".into(),
            state: manager::ServerState::Dead,
            detail: Some("process 7 is gone".into()),
        };
        assert_eq!(not_running.exit_code(), EXIT_NOT_RUNNING);
        assert!(not_running.to_string().contains("dead: process 7 is gone"));
        assert!(not_running.hint().unwrap().contains("ocm up '/p q'"));
        let not_found = CliError::from(manager::Error::OpencodeNotFound {
            detail: "nowhere".into(),
        });
        assert_eq!(not_found.exit_code(), EXIT_START_FAILED);
        assert!(
            not_found
                .to_string()
                .starts_with("opencode not found: nowhere")
        );
        let exposed = CliError::from(manager::Error::NonLoopbackWithoutPassword {
            hostname: "0.0.0.0".into(),
        });
        assert_eq!(exposed.exit_code(), EXIT_USAGE);
        assert!(exposed.hint().unwrap().contains("--password-generate"));
        let missing = CliError::Exec {
            program: "nope".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(missing.exit_code(), EXIT_NOT_FOUND);
        let denied = CliError::Exec {
            program: "nope".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(denied.exit_code(), EXIT_CANNOT_RUN);
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("/a/b-c.d"), "/a/b-c.d");
        assert_eq!(shell_word("/a b"), "'/a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
