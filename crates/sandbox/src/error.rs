//! The crate's one error type: every variant says what to fix, and none
//! carries a secret (a secret is only ever "stored in .env" and the path).

use std::path::PathBuf;
use std::time::Duration;

use crate::dotenv::ParseError;
use crate::name::NAME_RULE;

/// Everything that can go wrong with a sandbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name breaks the rule; nothing was touched.
    #[error("sandbox name \"{}\" is not allowed: {problem}; {NAME_RULE}", .given.escape_debug())]
    BadName {
        /// The name as given.
        given: String,
        /// What is wrong with it.
        problem: String,
    },

    /// The git URL was refused; nothing was touched.
    #[error("git URL \"{}\" is refused: {problem}", .url.escape_debug())]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: String,
    },

    /// `OCM_ENV` has a value that is neither `production` nor `development`.
    #[error("OCM_ENV=\"{}\" is not understood: use production (the default) or development", .value.escape_debug())]
    BadMode {
        /// The value found.
        value: String,
    },

    /// The `.env` file could not be parsed.
    #[error("{}: {source}", .path.display())]
    Dotenv {
        /// The file.
        path: PathBuf,
        /// Line, key and problem (never the value).
        source: ParseError,
    },

    /// The `.env` file is not one ocm will read secrets from.
    #[error("{}: {problem}", .path.display())]
    UnsafeEnvFile {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },

    /// Required keys are missing (or there is no `.env` at all) in
    /// production mode; nothing was written.
    #[error("{}{}: missing {}; write them there (mode 0600){}{}", .path.display(), if *.file_missing { " does not exist" } else { "" }, .keys.join(", "), hint_text(.key_hint.as_deref()), if *.file_missing { ", or run with OCM_ENV=development to have one generated" } else { "" })]
    MissingKeys {
        /// The `.env` file.
        path: PathBuf,
        /// Whether the file itself is missing.
        file_missing: bool,
        /// The missing keys, in the order of the list of required keys.
        keys: Vec<&'static str>,
        /// When `SSH_KEY_PATH` is missing: the path where ocm generates a
        /// deploy key when `SSH_KEY_PATH` names it.
        key_hint: Option<PathBuf>,
    },

    /// There is no `.env` and no git URL to generate one from.
    #[error("{} does not exist and no git URL was given: give one (--git URL) to create the sandbox", .path.display())]
    NoGitUrl {
        /// The `.env` file that would be generated.
        path: PathBuf,
    },

    /// A key of `.env` has a value ocm cannot use (a port that is not a
    /// number, a command with an unclosed quote...). The value is not
    /// repeated unless it is harmless (ports).
    #[error("{} ({key}): {problem}", .path.display())]
    BadSetting {
        /// The `.env` file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },

    /// A value given on the command line differs from the one in `.env`.
    #[error("{key} differs: \"{}\" was given, but {} has \"{}\"; edit {} or give the same value", .given.escape_debug(), .path.display(), .in_file.escape_debug(), .path.display())]
    Conflict {
        /// The key (`GIT_URL`, `SSH_KEY_PATH`).
        key: &'static str,
        /// What the caller gave.
        given: String,
        /// What `.env` says.
        in_file: String,
        /// The `.env` file.
        path: PathBuf,
    },

    /// The SSH key cannot be used.
    #[error("SSH key {}: {problem}", .path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },

    /// A program (git, ssh-keygen) failed.
    #[error("{action} failed ({status}){}", stderr_block(.stderr))]
    Command {
        /// What was being done, e.g. "git clone of URL".
        action: String,
        /// How it ended.
        status: String,
        /// The last lines of its stderr, control characters escaped.
        stderr: String,
    },

    /// Ctrl-C (or another interrupt) arrived while a program ran: it and
    /// everything it started were stopped.
    #[error(
        "interrupted (signal {signal}) during {action}; it and everything it started were stopped"
    )]
    Interrupted {
        /// What was being done.
        action: String,
        /// The signal.
        signal: i32,
    },

    /// A program did not finish in time and was killed.
    #[error(
        "{action} did not finish within {timeout:?} and was killed; check that the host answers, or raise the timeout"
    )]
    TimedOut {
        /// What was being done.
        action: String,
        /// The limit.
        timeout: Duration,
    },

    /// Neither `XDG_DATA_HOME` nor `HOME` says where user data goes.
    #[error("cannot tell where sandboxes go: set XDG_DATA_HOME or HOME (or give a data root)")]
    NoDataRoot,

    /// The sandbox folder is not a folder ocm made (a symlink, a file).
    #[error("{}: {problem}", .path.display())]
    BadFolder {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },

    /// No sandbox of that name exists.
    #[error("no sandbox named {name}: {} does not exist (create it with up)", .folder.display())]
    NotFound {
        /// The name.
        name: String,
        /// Where it would be.
        folder: PathBuf,
    },

    /// A file operation failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done ("cannot create", "cannot read"...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },

    /// The manager failed (the server or the companion).
    #[error(transparent)]
    Manager(#[from] manager::Error),
}

fn hint_text(path: Option<&std::path::Path>) -> String {
    match path {
        Some(path) => format!(
            " (SSH_KEY_PATH={} has ocm generate a deploy key there)",
            path.display()
        ),
        None => String::new(),
    }
}

fn stderr_block(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", stderr.trim_end())
    }
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
