//! What a [`Manager`](crate::Manager) call reports while it works: typed
//! progress, repairs and start failures, each with a `Display` for people.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use procutil::{ExitStatus, Termination};

use crate::error::PortHolder;

/// Progress of a [`Manager`](crate::Manager) call, for embedders and the
/// CLI to show.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Progress {
    /// A healthy recorded server was found and is reused.
    Reused {
        /// Its URL.
        url: String,
        /// Its pid.
        pid: u32,
    },
    /// Something was wrong and was repaired (or left alone, said why).
    Repaired(Repair),
    /// The running server has no password while one is configured: the
    /// password applies from its next start.
    PasswordNotApplied {
        /// The running server's pid.
        pid: u32,
    },
    /// The project's last server had a generated password: the new one
    /// gets the same (kept in this file).
    PasswordKept {
        /// Where it is kept.
        file: PathBuf,
    },
    /// The project's last server had a password; the new one has none, as
    /// asked ([`PasswordPolicy::Off`](crate::PasswordPolicy::Off)).
    PasswordTurnedOff,
    /// The chosen port is held by another program; the next is tried.
    PortTaken {
        /// The port.
        port: u16,
        /// Its holder, when /proc tells.
        holder: Option<PortHolder>,
    },
    /// A server is being started.
    Starting {
        /// The project.
        project: PathBuf,
        /// The port (`None`: opencode picks).
        port: Option<u16>,
        /// 1 for the first attempt, 2 for the retry.
        attempt: u32,
    },
    /// The server was spawned; waiting for its listening line.
    WaitingForListen {
        /// Its pid.
        pid: u32,
    },
    /// The server printed its listening line.
    Listening {
        /// The port it listens on.
        port: u16,
        /// Since the spawn.
        elapsed: Duration,
    },
    /// The server answered its first health check.
    Healthy {
        /// Its URL.
        url: String,
        /// Since the spawn.
        elapsed: Duration,
    },
    /// A start failed and is tried once more.
    Retrying {
        /// Why the first attempt failed.
        reason: StartFailure,
    },
    /// A server is being stopped.
    Stopping {
        /// Its pid.
        pid: u32,
    },
    /// Another process holds the project's lock (it is starting or stopping
    /// the server); waiting for it, at most the lock timeout.
    WaitingForLock {
        /// The lock file.
        path: PathBuf,
    },
}

/// Something found wrong with a project's server or record, and what was
/// done about it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Repair {
    /// The recorded server did not answer its health check; it was stopped.
    Unhealthy {
        /// Its pid.
        pid: u32,
        /// What the health check said.
        reason: String,
        /// How it ended.
        how: Termination,
    },
    /// The recorded server had died.
    Died {
        /// Its pid.
        pid: u32,
    },
    /// The recorded pid is alive but is not this project's server.
    NotOurs {
        /// The pid, left alone.
        pid: u32,
    },
    /// The record could not be read; it was moved aside.
    CorruptRecord {
        /// Why it could not be read.
        problem: String,
        /// Where it is now.
        moved_to: PathBuf,
    },
    /// The record was written by a newer ocm whose server no longer runs;
    /// it was moved aside so that this ocm can take over.
    NewerRecordMovedAside {
        /// Its schema version.
        found: u64,
        /// Where it is now.
        moved_to: PathBuf,
    },
    /// A start was interrupted (its `ocm` killed) before it recorded its
    /// server's pid; that start's server, if any, is stopped next.
    InterruptedStart,
    /// Processes the project's earlier servers started (the agent's
    /// commands, which opencode runs in sessions of their own) were still
    /// running; they were stopped.
    LeftoversStopped {
        /// Their pids.
        pids: Vec<u32>,
    },
    /// A server of this project that no record pointed to was stopped.
    OrphanStopped {
        /// Its pid.
        pid: u32,
        /// How it ended.
        how: Termination,
    },
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repair::Unhealthy { pid, reason, how } => write!(
                f,
                "server pid {pid} was unhealthy ({reason}); {}",
                describe_termination(*how)
            ),
            Repair::Died { pid } => write!(f, "server pid {pid} had died"),
            Repair::NotOurs { pid } => write!(
                f,
                "recorded pid {pid} is not this project's server; left it alone"
            ),
            Repair::CorruptRecord { problem, moved_to } => {
                write!(f, "{problem}; moved it to {}", moved_to.display())
            }
            Repair::NewerRecordMovedAside { found, moved_to } => write!(
                f,
                "the record was written by a newer ocm (version {found}) whose server no \
                 longer runs; moved it to {}",
                moved_to.display()
            ),
            Repair::InterruptedStart => {
                f.write_str("an earlier start was interrupted before it recorded its server")
            }
            Repair::LeftoversStopped { pids } => write!(
                f,
                "stopped {} process(es) an earlier server started and left running (pid {})",
                pids.len(),
                pids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Repair::OrphanStopped { pid, how } => write!(
                f,
                "unrecorded server pid {pid} of this project; {}",
                describe_termination(*how)
            ),
        }
    }
}

/// Why a start attempt failed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StartFailure {
    /// The server exited before it printed its listening line.
    Exited {
        /// How it ended, when its status could be read.
        status: Option<ExitStatus>,
    },
    /// No listening line within the start-up timeout.
    NoListeningLine {
        /// The timeout.
        waited: Duration,
    },
    /// It listened but did not answer a health check in time.
    Unhealthy {
        /// Its URL.
        url: String,
        /// What the last health check said.
        reason: String,
    },
    /// It answers, but ocm would not recognise it as this project's server
    /// (a wrapper that changes its arguments or environment), so it was
    /// stopped rather than leaked.
    Unrecognised {
        /// The process ocm started.
        pid: u32,
        /// Where it answered.
        url: String,
        /// The binary ocm ran.
        bin: PathBuf,
    },
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFailure::Exited { .. } => f.write_str("opencode exited before listening"),
            StartFailure::NoListeningLine { waited } => {
                write!(f, "no listening line within {:.0} s", waited.as_secs_f64())
            }
            StartFailure::Unhealthy { url, reason } => {
                write!(f, "listening on {url} but unhealthy: {reason}")
            }
            StartFailure::Unrecognised { pid, url, bin } => write!(
                f,
                "the process ocm started (pid {pid}) answers on {url} but would not be \
                 recognised as this project's server (its arguments must end in \
                 `serve --hostname H --port P` and it must keep ocm's environment \
                 markers); if {} is a wrapper, make it pass both on (or use the \
                 opencode binary itself)",
                bin.display()
            ),
        }
    }
}

/// How ocm stopped a process, for people.
pub(crate) fn describe_termination(how: Termination) -> &'static str {
    match how {
        Termination::AlreadyGone => "it was already gone",
        Termination::ExitedOnTerm => "stopped it with SIGTERM",
        Termination::Killed => "killed it with SIGKILL after the grace period",
    }
}
