//! What can end an ocm command, with its exit status and a hint; how it
//! is shown (one line plus details for people, one JSON object with
//! structured fields for scripts) is in [`report`].

use std::path::{Path, PathBuf};

use crate::cli::UsageError;

mod report;

pub use report::{io_failure, path_json};

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
/// Exit status: a sandbox waits for its deploy key to be added to the git
/// server (`ocm sandbox up`, `ocm sandbox status`); the public key is on
/// stdout.
pub const EXIT_WAITING_FOR_KEY: i32 = 6;
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
    /// `up`, `restart` or `exec` could not get a running server: anything
    /// but bad usage ends these with exit 4 (see [`CliError::starting`]).
    #[error("{0}")]
    Start(Box<manager::Error>),
    /// The project folder does not exist (or is not a folder) and ocm has
    /// nothing recorded for it (`status`, `url`).
    #[error(
        "project folder {} {} (and ocm has no server recorded for it)",
        project.display(),
        folder_problem(project).unwrap_or("is not a project folder")
    )]
    NoProject {
        /// The project path, made absolute.
        project: PathBuf,
    },
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
    /// `session show` or `session rm` of a session the project does not
    /// have (by id or title).
    #[error("no session {} in this project", shell_word(wanted))]
    NoSession {
        /// The id or title given.
        wanted: String,
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
    /// The server did not start: the manager's `StartFailed`, with the
    /// binary that ran (from the record, else found as the manager finds
    /// it), which the manager's error does not carry.
    #[error("{error}")]
    StartFailed {
        /// `manager::Error::StartFailed`.
        error: Box<manager::Error>,
        /// The opencode binary that was run, when known.
        binary: Option<PathBuf>,
    },
    /// A sandbox operation failed (not in the manager: those are
    /// [`CliError::Manager`] and [`CliError::Start`]).
    #[error("{error}")]
    Sandbox {
        /// What went wrong (never a secret: only "stored in .env").
        error: Box<sandbox::Error>,
        /// It is about what the user typed (the name, `--git`,
        /// `--ssh-key`, `OCM_ENV`): exit 2.
        bad_input: bool,
    },
    /// A file operation in the state folder failed: says which folder, what
    /// ocm was doing and (hint) how to choose another.
    #[error(
        "cannot use the state folder {} ({doing}): {error}",
        root.display()
    )]
    InStateDir {
        /// The state folder as configured.
        root: PathBuf,
        /// What ocm was doing (`starting the server for /p`).
        doing: String,
        /// The file or folder the operation failed on.
        path: PathBuf,
        /// The failure, with its exit status.
        error: Box<CliError>,
    },
}

/// What is wrong with `path` as a project folder: `None` when it is a
/// folder.
pub fn folder_problem(path: &Path) -> Option<&'static str> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => None,
        Ok(meta) if meta.is_file() => Some("is a file, not a folder"),
        Ok(_) => Some("is not a folder"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist"),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Some("does not exist (a file is in its path)")
        }
        Err(_) => Some("cannot be read"),
    }
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

/// True for manager errors that mean the command line (or the folder it
/// names, or the configuration) is wrong: exit 2 whatever the command.
fn is_bad_usage(error: &manager::Error) -> bool {
    use manager::Error as M;
    matches!(
        error,
        M::Config(_)
            | M::NonLoopbackWithoutPassword { .. }
            | M::ProjectNotFound { .. }
            | M::NonUtf8Path { .. }
            | M::PasswordNeeded { .. }
            | M::BadStateDir(_)
    )
}

impl CliError {
    /// Marks a failure of `up`, `restart` or `exec` on their way to a
    /// running server: every manager error there (opencode missing, the
    /// spawn failing, the port taken, the state folder not lockable...)
    /// means the server could not be started, exit 4, unless it is bad
    /// usage. Other errors are returned as they are.
    pub fn starting(self) -> CliError {
        match self {
            CliError::Manager(error) => CliError::Start(error),
            other => other,
        }
    }

    /// The exit status this error ends ocm with.
    pub fn exit_code(&self) -> i32 {
        use manager::Error as M;
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::NotRunning { .. } | CliError::NoProject { .. } => EXIT_NOT_RUNNING,
            CliError::Exec { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                EXIT_NOT_FOUND
            }
            CliError::Exec { .. } => EXIT_CANNOT_RUN,
            CliError::Start(e) | CliError::Manager(e) if is_bad_usage(e) => EXIT_USAGE,
            // As a shell reports a command a signal ended.
            CliError::Start(e) | CliError::Manager(e)
                if matches!(e.as_ref(), M::Interrupted { .. }) =>
            {
                match e.as_ref() {
                    M::Interrupted { signal } => 128 + signal,
                    _ => EXIT_ERROR,
                }
            }
            // Not a failed start: this ocm must not judge a newer one's
            // server, so it did not try.
            CliError::Start(e) if matches!(e.as_ref(), M::RecordFromNewerOcm { .. }) => EXIT_ERROR,
            CliError::Start(_) => EXIT_START_FAILED,
            CliError::Manager(e) => match e.as_ref() {
                M::StartFailed { .. }
                | M::OpencodeNotFound { .. }
                | M::PortInUse { .. }
                | M::CannotBind { .. }
                | M::NoFreePort { .. } => EXIT_START_FAILED,
                _ => EXIT_ERROR,
            },
            CliError::StartFailed { .. } => EXIT_START_FAILED,
            CliError::InStateDir { error, .. } => error.exit_code(),
            CliError::NoLog { .. } | CliError::Io { .. } | CliError::NoSession { .. } => EXIT_ERROR,
            CliError::Sandbox {
                bad_input: true, ..
            } => EXIT_USAGE,
            CliError::Sandbox { error, .. } => match error.as_ref() {
                sandbox::Error::Interrupted { signal, .. } => 128 + signal,
                _ => EXIT_ERROR,
            },
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
            // Only a server recorded for a folder deleted since gets here.
            CliError::NotRunning { project, .. } if !project.is_dir() => Some(format!(
                "the project folder no longer exists; `ocm destroy {}` removes what ocm kept \
                 for it",
                shell_word(&project.display().to_string())
            )),
            CliError::NoLog { project, .. } if !project.is_dir() => Some(format!(
                "the project folder {} does not exist; check the path (`ocm ls` lists the \
                 projects ocm knows)",
                project.display()
            )),
            CliError::NotRunning { project, .. } => Some(format!(
                "start it with `ocm up {}`",
                shell_word(&project.display().to_string())
            )),
            CliError::NoLog { project, .. } => Some(format!(
                "the log appears when the server starts: `ocm up {}`, or follow it with \
                 `ocm logs -f` to wait for it",
                shell_word(&project.display().to_string())
            )),
            CliError::NoProject { project } if project.exists() => Some(format!(
                "give the project's folder (perhaps {}), or run ocm inside it; `ocm ls` lists \
                 the projects ocm knows",
                shell_word(
                    &project
                        .parent()
                        .unwrap_or(Path::new("/"))
                        .display()
                        .to_string()
                )
            )),
            CliError::NoProject { .. } => {
                Some("check the path; `ocm ls` lists the projects ocm knows".into())
            }
            CliError::NoSession { .. } => Some(
                "give a session's id or title; `ocm session ls` lists the project's sessions"
                    .into(),
            ),
            CliError::StartFailed { error, binary } => report::start_failed_hint(error, binary),
            CliError::InStateDir { root, .. } => Some(format!(
                "ocm keeps its records and logs in the state folder; make {} a folder ocm can \
                 write to, or choose another with OCM_STATE_DIR=DIR or --state-dir DIR (an \
                 absolute path)",
                shell_word(&root.display().to_string())
            )),
            CliError::Exec { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Some("check the command name and PATH".into())
            }
            CliError::Manager(e) | CliError::Start(e) => match e.as_ref() {
                M::StartFailed { .. } => report::start_failed_hint(e, &None),
                M::BadStateDir(_) => Some(
                    "give the state folder as an absolute path: OCM_STATE_DIR=/path/to/state or \
                     --state-dir /path/to/state"
                        .into(),
                ),
                M::PortInUse { .. } => Some(
                    "choose another with --port N, or let ocm pick with --port-policy project"
                        .into(),
                ),
                // The message names the cause and the fix; the hint, the flags
                // that change the address and the port.
                M::CannotBind { .. } => Some(
                    "by default ocm binds 127.0.0.1 on a port in 28000-28999; --hostname takes \
                     an address of this machine, --port N a port above 1023 unless ocm runs as \
                     root"
                        .into(),
                ),
                M::NoFreePort { .. } => {
                    Some("free a port, or choose another range with --port-policy range:A-B".into())
                }
                M::LockTimeout { .. } => Some(
                    "another ocm is starting or stopping this project; try again when it is done"
                        .into(),
                ),
                M::NonLoopbackWithoutPassword { .. } => Some(
                    "add --password-generate (or set OPENCODE_SERVER_PASSWORD), or bind 127.0.0.1"
                        .into(),
                ),
                M::RecordFromNewerOcm { path, .. } => {
                    let record = shell_word(&path.display().to_string());
                    let aside = shell_word(&format!("{}.newer", path.display()));
                    Some(format!(
                        "manage this project with the newer ocm that wrote it; to let this one \
                         start a new server instead, move the record away: `mv {record} {aside}`"
                    ))
                }
                M::ProjectNotFound { path } if path.exists() => Some(
                    "give the project's folder, not a file in it, or run ocm inside the \
                     project"
                        .into(),
                ),
                M::ProjectNotFound { .. } => Some(
                    "give an existing folder, or run ocm inside the project (`ocm ls` lists \
                     the projects ocm knows)"
                        .into(),
                ),
                _ => None,
            },
            CliError::Io { .. } => None,
            CliError::Exec { .. } => None,
            CliError::Sandbox { error, bad_input } => sandbox_hint(error, *bad_input),
        }
    }
}

/// What to do about a sandbox error the message does not already say.
fn sandbox_hint(error: &sandbox::Error, bad_input: bool) -> Option<String> {
    use sandbox::Error as S;
    match error {
        S::NotFound { .. } => Some("`ocm sandbox ls` lists the sandboxes".into()),
        S::Key { .. } if bad_input => Some(
            "give a private key only you can read (chmod 600 KEY), or leave out --ssh-key to \
             have ocm generate a deploy key"
                .into(),
        ),
        _ if bad_input => Some("see `ocm sandbox up --help`".into()),
        S::MissingKeys { .. } | S::Dotenv { .. } | S::BadSetting { .. } => Some(
            "the sandbox's .env holds its secrets; `ocm sandbox up --help` says which keys it \
             takes"
                .into(),
        ),
        _ => None,
    }
}

/// `text` quoted for a shell when it needs quoting: `'...'`, or `$'...'`
/// (bash, zsh, ksh) with escapes when it has control characters, so a
/// hint never carries a raw one.
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        text.to_string()
    } else if text.chars().any(crate::escape::needs_escape) {
        let mut quoted = String::from("$'");
        for c in text.chars() {
            match c {
                '\\' | '\'' => {
                    quoted.push('\\');
                    quoted.push(c);
                }
                '\n' => quoted.push_str("\\n"),
                '\t' => quoted.push_str("\\t"),
                '\r' => quoted.push_str("\\r"),
                c if crate::escape::needs_escape(c) && (c as u32) < 0x80 => {
                    quoted.push_str(&format!("\\x{:02x}", c as u32));
                }
                c if crate::escape::needs_escape(c) => {
                    quoted.push_str(&format!("\\u{:04x}", c as u32));
                }
                c => quoted.push(c),
            }
        }
        quoted.push('\'');
        quoted
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
        let folder = tempfile::Builder::new()
            .prefix("p q")
            .tempdir()
            .expect("a temp folder");
        let not_running = CliError::NotRunning {
            project: folder.path().to_path_buf(),
            state: manager::ServerState::Dead,
            detail: Some("process 7 is gone".into()),
        };
        assert_eq!(not_running.exit_code(), EXIT_NOT_RUNNING);
        assert!(not_running.to_string().contains("dead: process 7 is gone"));
        let hint = not_running.hint().unwrap();
        assert!(
            hint.contains(&format!("ocm up '{}'", folder.path().display())),
            "{hint}"
        );
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

    /// A real [`manager::Error::CannotBind`]: ocm cannot name the problem's
    /// type (it lives below the manager), so a manager makes one. A restart
    /// with a fixed port checks the port before anything else.
    fn cannot_bind() -> manager::Error {
        let root = tempfile::tempdir().expect("a temp folder");
        let manager = manager::Manager::new(manager::Config {
            state_root: Some(root.path().to_path_buf()),
            opencode_bin: Some("/bin/sh".into()),
            hostname: "no-such-host.invalid".into(),
            password: manager::PasswordPolicy::Generate,
            port_policy: manager::PortPolicy::Fixed(28001),
            ..manager::Config::default()
        })
        .expect("a manager");
        let error = manager
            .restart(root.path())
            .expect_err("the name does not resolve");
        assert!(
            matches!(error, manager::Error::CannotBind { port: None, .. }),
            "{error:?}"
        );
        error
    }

    #[test]
    fn every_failure_on_the_way_to_a_server_is_exit_4_unless_it_is_bad_usage() {
        let spawn_failed = || manager::Error::Io {
            action: "cannot open",
            path: "/state/servers/h/server.log".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let lock_timeout = || manager::Error::LockTimeout {
            path: "/state/servers/h/server.lock".into(),
            waited: std::time::Duration::from_secs(90),
        };
        let missing_folder = || manager::Error::ProjectNotFound {
            path: "/no/such/folder".into(),
        };
        // The same errors outside a start: a plain error, or bad usage.
        assert_eq!(CliError::from(spawn_failed()).exit_code(), EXIT_ERROR);
        assert_eq!(CliError::from(lock_timeout()).exit_code(), EXIT_ERROR);
        assert_eq!(CliError::from(missing_folder()).exit_code(), EXIT_USAGE);
        let starting = |e: manager::Error| CliError::from(e).starting();
        assert_eq!(starting(spawn_failed()).exit_code(), EXIT_START_FAILED);
        let locked = starting(lock_timeout());
        assert_eq!(locked.exit_code(), EXIT_START_FAILED);
        assert!(locked.hint().unwrap().contains("another ocm"), "{locked}");
        assert_eq!(
            starting(manager::Error::OpencodeNotFound {
                detail: "nowhere".into()
            })
            .exit_code(),
            EXIT_START_FAILED
        );
        let port_taken = starting(manager::Error::PortInUse {
            hostname: "127.0.0.1".into(),
            port: 28001,
            holder: None,
        });
        assert_eq!(port_taken.exit_code(), EXIT_START_FAILED);
        assert!(port_taken.hint().unwrap().contains("--port"));
        let unbindable = starting(cannot_bind());
        assert_eq!(unbindable.exit_code(), EXIT_START_FAILED);
        let hint = unbindable.hint().unwrap();
        assert!(
            hint.contains("--hostname") && hint.contains("--port"),
            "{hint}"
        );
        assert_eq!(CliError::from(cannot_bind()).exit_code(), EXIT_START_FAILED);
        let no_folder = starting(missing_folder());
        assert_eq!(no_folder.exit_code(), EXIT_USAGE);
        assert!(no_folder.to_string().contains("/no/such/folder"));
        assert!(no_folder.hint().unwrap().contains("existing folder"));
        assert_eq!(
            starting(manager::Error::Config("bad".into())).exit_code(),
            EXIT_USAGE
        );
        let newer = starting(manager::Error::RecordFromNewerOcm {
            path: "/state/servers/h/server.json".into(),
            found: 99,
            supported: 1,
        });
        assert_eq!(newer.exit_code(), EXIT_ERROR, "not a failed start");
        assert!(
            newer
                .hint()
                .unwrap()
                .contains("mv /state/servers/h/server.json /state/servers/h/server.json.newer"),
            "{newer:?}"
        );
        // Only manager errors change: the command's own stay as they are.
        let denied = CliError::Exec {
            program: "x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(denied.starting().exit_code(), EXIT_CANNOT_RUN);
    }

    #[test]
    fn a_folder_that_does_not_exist_is_said_so() {
        let gone = std::env::temp_dir().join("ocm-error-test-no-such-folder");
        assert!(!gone.exists());
        let unknown = CliError::NoProject {
            project: gone.clone(),
        };
        assert_eq!(unknown.exit_code(), EXIT_NOT_RUNNING);
        assert!(unknown.to_string().contains("does not exist"), "{unknown}");
        assert!(!unknown.hint().unwrap().contains("ocm up"));
        let deleted = CliError::NotRunning {
            project: gone.clone(),
            state: manager::ServerState::Dead,
            detail: None,
        };
        let hint = deleted.hint().unwrap();
        assert!(
            hint.contains("no longer exists") && hint.contains("ocm destroy"),
            "{hint}"
        );
        let no_log = CliError::NoLog {
            project: gone.clone(),
            log: "/state/servers/h/server.log".into(),
        };
        let hint = no_log.hint().unwrap();
        assert!(
            hint.contains("does not exist") && !hint.contains("ocm up"),
            "{hint}"
        );
        let here = CliError::NoLog {
            project: std::env::temp_dir(),
            log: "/state/servers/h/server.log".into(),
        };
        assert!(here.hint().unwrap().contains("ocm up"));
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("/a/b-c.d"), "/a/b-c.d");
        assert_eq!(shell_word("/a b"), "'/a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("/a\nb's"), r"$'/a\nb\'s'");
        assert_eq!(shell_word("/a\\b\t"), r"$'/a\\b\t'");
        assert_eq!(shell_word("/x\u{1b}\u{202e}"), r"$'/x\x1b\u202e'");
    }
}
