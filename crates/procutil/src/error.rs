//! The crate's one error type.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything that can go wrong in this crate.
///
/// Every variant names the process, program or file concerned, so that the
/// message alone tells a user what failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The program could not be executed: missing, not executable, not a
    /// valid executable, or an exec-time resource problem.
    #[error("cannot start {}{}: {source}{}", .program.display(), in_dir(.cwd.as_deref()), exec_hint(.program, .source))]
    Exec {
        /// The program as given to [`SpawnSpec::new`](crate::SpawnSpec::new).
        program: PathBuf,
        /// The working directory the child was to run in, if one was set.
        cwd: Option<PathBuf>,
        /// What exec (or the setup before it) reported.
        source: io::Error,
    },

    /// The working directory for the child does not exist, is not a
    /// directory, or cannot be entered.
    #[error("cannot start {}: working directory {}: {source}", .program.display(), .cwd.display())]
    Cwd {
        /// The program that was to be started.
        program: PathBuf,
        /// The working directory that could not be used.
        cwd: PathBuf,
        /// Why it could not be used.
        source: io::Error,
    },

    /// The file for the child's stdout and stderr could not be opened.
    #[error("cannot start {}: cannot open output file {}: {source}", .program.display(), .path.display())]
    OutputFile {
        /// The program that was to be started.
        program: PathBuf,
        /// The output file.
        path: PathBuf,
        /// Why it could not be opened.
        source: io::Error,
    },

    /// No such process: it never existed, has exited (a zombie counts as
    /// exited) or has been reaped.
    #[error("process {pid} does not exist or has exited")]
    NoSuchProcess {
        /// The process id that was looked up.
        pid: u32,
    },

    /// The pid is in use, but by a different process than the one that was
    /// identified (different start time or a different boot): the identified
    /// process is gone and its pid was reused. Nothing was signalled.
    #[error("process {pid} is not the expected process ({detail}); it was not signalled")]
    IdentityMismatch {
        /// The process id.
        pid: u32,
        /// What differs, e.g. the expected and the found start time.
        detail: String,
    },

    /// The process does not lead its own process group, so signalling "its
    /// group" would hit other processes. Nothing was signalled.
    #[error(
        "process {pid} does not lead its own process group (its group is {pgid}); the group was not signalled"
    )]
    NotGroupLeader {
        /// The process id.
        pid: u32,
        /// The process group it belongs to.
        pgid: u32,
    },

    /// Signalling this process group is refused because it would hit init or
    /// the calling process itself. Nothing was signalled.
    #[error("refusing to signal process group {pid}: {reason}")]
    Protected {
        /// The process id.
        pid: u32,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A file under /proc could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    ProcRead {
        /// The file.
        path: PathBuf,
        /// The error from the read.
        source: io::Error,
    },

    /// A file under /proc did not have the expected format.
    #[error("unexpected contents in {}: {detail}", .path.display())]
    ProcFormat {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },

    /// Sending a signal failed for another reason than the target being gone.
    #[error("cannot send signal {signal} to process group {pgid}: {source}")]
    Signal {
        /// The process group (the pid of its leader).
        pgid: u32,
        /// The signal number.
        signal: i32,
        /// The error from the kernel.
        source: io::Error,
    },

    /// Sending a signal to one process failed for another reason than the
    /// process being gone.
    #[error("cannot send signal {signal} to process {pid}: {source}")]
    SignalProcess {
        /// The process id.
        pid: u32,
        /// The signal number.
        signal: i32,
        /// The error from the kernel.
        source: io::Error,
    },

    /// A pidfd could not be opened for another reason than the process
    /// being gone or the kernel lacking pidfd support (e.g. too many open
    /// files).
    #[error("cannot open a pidfd for process {pid}: {source}")]
    Pidfd {
        /// The process id.
        pid: u32,
        /// The error from the kernel.
        source: io::Error,
    },

    /// A file or folder could not be watched with inotify.
    #[error("cannot watch {}: {source}", .path.display())]
    WatchPath {
        /// The file or folder.
        path: PathBuf,
        /// The error from the kernel (`NotFound` when it does not exist;
        /// too many watches or inotify instances: the user's inotify limits).
        source: io::Error,
    },

    /// Waiting for events (inotify, poll) failed.
    #[error("cannot wait for events: {source}")]
    Watch {
        /// The error from the kernel.
        source: io::Error,
    },

    /// A signal handler could not be installed or removed.
    #[error("cannot handle signal {signal}: {reason}")]
    SignalHandler {
        /// The signal number.
        signal: i32,
        /// Why not.
        reason: String,
    },

    /// Waiting for a process failed for another reason than it not being our
    /// child.
    #[error("cannot wait for process {pid}: {source}")]
    Wait {
        /// The process id.
        pid: u32,
        /// The error from the kernel.
        source: io::Error,
    },

    /// The process survived SIGKILL for longer than the bounded wait, which
    /// happens when it is stuck in the kernel (state D, e.g. a hung network
    /// file system).
    #[error("process {pid} is still running {waited:?} after SIGKILL")]
    StillRunning {
        /// The process id.
        pid: u32,
        /// How long we waited after SIGKILL.
        waited: Duration,
    },

    /// A bounded run ([`output_within`](crate::output_within)) did not end
    /// in time: its process group was killed.
    #[error("{} did not finish within {after:?}; it and everything it started were killed", .program.display())]
    TimedOut {
        /// The program that was run.
        program: PathBuf,
        /// How long it had run when it was killed.
        after: Duration,
    },

    /// A bounded run ([`output_within_unless`](crate::output_within_unless))
    /// was interrupted by a signal: its process group was killed.
    #[error("{} was interrupted (signal {signal}); it and everything it started were killed", .program.display())]
    RunInterrupted {
        /// The program that was run.
        program: PathBuf,
        /// The signal that arrived.
        signal: i32,
    },

    /// Members of the process group survived SIGKILL for longer than the
    /// bounded wait.
    #[error(
        "processes {pids:?} of process group {pgid} are still running {waited:?} after SIGKILL"
    )]
    GroupSurvivors {
        /// The process group.
        pgid: u32,
        /// The members still running.
        pids: Vec<u32>,
        /// How long we waited after SIGKILL.
        waited: Duration,
    },
}

impl Error {
    /// True when the error says the identified process no longer exists:
    /// [`Error::NoSuchProcess`] or [`Error::IdentityMismatch`] (its pid now
    /// belongs to another process).
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            Error::NoSuchProcess { .. } | Error::IdentityMismatch { .. }
        )
    }
}

fn in_dir(cwd: Option<&Path>) -> String {
    match cwd {
        Some(dir) => format!(" in {}", dir.display()),
        None => String::new(),
    }
}

fn exec_hint(program: &Path, source: &io::Error) -> &'static str {
    let bare_name = !program.as_os_str().is_empty()
        && program.components().count() == 1
        && !program.as_os_str().as_encoded_bytes().contains(&b'/');
    match source.kind() {
        io::ErrorKind::NotFound if bare_name => " (not found in PATH)",
        io::ErrorKind::PermissionDenied => " (is it executable?)",
        _ => "",
    }
}
