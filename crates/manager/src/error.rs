//! The manager's error type: one enum, each message with what a user needs
//! to act (the project, the port, the pid, the log).

use std::path::PathBuf;
use std::time::Duration;

use portmap::PortProblem;
use procutil::{ExitStatus, Termination};

use crate::progress::{StartFailure, describe_termination};

/// Everything that can go wrong managing a project's server. Messages carry
/// what a user needs to act: the project, the port, the pid, the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The supervisor could not do what was asked (bad settings, its
    /// thread or waker could not be made, it ended).
    #[error("supervisor: {reason}")]
    Supervise {
        /// What went wrong.
        reason: String,
    },
    /// The project folder does not exist or is not a folder.
    #[error("project folder {path} does not exist or is not a folder")]
    ProjectNotFound {
        /// The project path as given, made absolute.
        path: PathBuf,
    },
    /// A fixed port is held by something else.
    #[error("port {port} on {hostname} is in use{}", holder_text(holder.as_ref()))]
    PortInUse {
        /// The address.
        hostname: String,
        /// The port.
        port: u16,
        /// The holder, when /proc tells (read when the error is made, so
        /// printing it later reads nothing).
        holder: Option<PortHolder>,
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
    /// The host or port cannot be bound for another reason than the port
    /// being taken: the address is not this machine's, the port needs
    /// privileges, the name does not resolve. Trying other ports would not
    /// help, so none is tried.
    #[error("{}", bind_text(hostname, *port, problem))]
    CannotBind {
        /// The host as configured.
        hostname: String,
        /// The port tried (`None`: the host itself failed, or opencode was
        /// to pick the port).
        port: Option<u16>,
        /// Why (never [`PortProblem::InUse`] from ocm's own checks, which
        /// report that as [`Error::PortInUse`] or [`Error::NoFreePort`]).
        problem: PortProblem,
    },
    /// The server would not start (after the retry).
    #[error(
        "opencode failed to start for {project} after {attempts} attempt(s): {failure}{}\n\
         log: {log_path}\n{}",
        ending_text(exit.as_ref(), stopped.as_ref()),
        if log_tail.is_empty() { "(the log is empty)".to_string() } else {
            format!("last lines of the log:\n{}", log_tail.join("\n"))
        },
        project = project.display(),
        log_path = log_path.display()
    )]
    StartFailed {
        /// The project.
        project: PathBuf,
        /// How many starts were tried.
        attempts: u32,
        /// What went wrong on the last attempt (boxed: the error stays small
        /// on the common paths).
        failure: Box<StartFailure>,
        /// How the server of the last attempt exited, when it did and its
        /// status could be read.
        exit: Option<ExitStatus>,
        /// How ocm stopped it, when it was still running.
        stopped: Option<Termination>,
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
    /// The server was stopped, but its record could not be updated to say
    /// so (a full disk, a read-only state folder).
    #[error(
        "the server of {} (pid {pid}) is stopped, but its record {} could not be updated: \
         {source}",
        project.display(),
        record.display()
    )]
    StoppedButNotRecorded {
        /// The project.
        project: PathBuf,
        /// The stopped server's pid.
        pid: u32,
        /// The record that still says running.
        record: PathBuf,
        /// Why the write failed.
        source: Box<Error>,
    },
    /// The project's server had a password given from outside
    /// (`OPENCODE_SERVER_PASSWORD`) that is not given now: a replacement
    /// would silently be open.
    #[error(
        "the server of {} was started with a password (OPENCODE_SERVER_PASSWORD) that is \
         not set now; set it again to start the server with it, or start it without a \
         password explicitly (`--no-password`)",
        project.display()
    )]
    PasswordNeeded {
        /// The project.
        project: PathBuf,
    },
    /// A signal interrupted the call; what it had started was stopped.
    #[error(
        "interrupted (signal {signal}); the start was cancelled and nothing of it is left running"
    )]
    Interrupted {
        /// The signal.
        signal: i32,
    },
    /// Another process held the project's lock for the whole lock timeout.
    #[error(
        "timed out after {waited:?} waiting for the lock {} (another ocm process is working on \
         this project)",
        path.display()
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long ocm waited.
        waited: Duration,
    },
    /// No usable state folder: `OCM_STATE_DIR` is relative, or none of
    /// `OCM_STATE_DIR`, `XDG_STATE_HOME` and `HOME` gives one.
    #[error("{0}")]
    BadStateDir(String),
    /// A project path that is not UTF-8: no hash or port can be derived.
    #[error(
        "path is not valid UTF-8, so no project hash or port can be derived from it: {}",
        path.display()
    )]
    NonUtf8Path {
        /// The path (lossily displayed).
        path: PathBuf,
    },
    /// A companion was asked for with a port policy it cannot use.
    #[error(
        "a companion's port must be fixed or a range (PortPolicy::Fixed or PortPolicy::Range), \
         not {policy:?}"
    )]
    CompanionPortPolicy {
        /// The refused policy.
        policy: crate::PortPolicy,
    },
    /// A companion was asked for without a program to run.
    #[error("a companion needs a command: the program to run is missing")]
    CompanionCommandEmpty,
    /// The companion exited before it answered HTTP on its port.
    #[error(
        "the companion of {} ({program}) exited ({status}) before answering on port {port}\n\
         log: {}\n{}",
        project.display(),
        log.display(),
        tail_text(log_tail)
    )]
    CompanionExited {
        /// The project.
        project: PathBuf,
        /// The program that was run (its arguments are in `companion.json`).
        program: String,
        /// The port it was to answer on.
        port: u16,
        /// How it exited.
        status: ExitStatus,
        /// Its log.
        log: PathBuf,
        /// The log's last lines of this start (at most 20), control characters escaped.
        log_tail: Vec<String>,
    },
    /// The companion did not answer HTTP on its port in time; it was stopped.
    #[error(
        "the companion of {} ({program}) did not answer on port {port} within {waited:?}{}\n\
         log: {}\n{}",
        project.display(),
        ending_text(None, stopped.as_ref()),
        log.display(),
        tail_text(log_tail)
    )]
    CompanionNotReady {
        /// The project.
        project: PathBuf,
        /// The program that was run.
        program: String,
        /// The port it was to answer on.
        port: u16,
        /// How long ocm waited.
        waited: Duration,
        /// How ocm stopped it.
        stopped: Option<Termination>,
        /// Its log.
        log: PathBuf,
        /// The log's last lines of this start (at most 20), control characters escaped.
        log_tail: Vec<String>,
    },
    /// The state folder or a record failed.
    #[error(transparent)]
    State(statefile::Error),
    /// A process operation failed.
    #[error(transparent)]
    Process(#[from] procutil::Error),
    /// A project path could not be resolved.
    #[error(transparent)]
    Port(portmap::Error),
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

/// The process holding a port, as /proc told when the error was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    /// Its pid.
    pub pid: u32,
    /// Its command line (empty when unreadable).
    pub cmdline: Vec<String>,
}

impl PortHolder {
    /// The holder of a listening `port`, when /proc tells.
    pub(crate) fn of_port(port: u16) -> Option<PortHolder> {
        crate::scan::port_holder(port).map(PortHolder::of_pid)
    }

    fn of_pid(pid: u32) -> PortHolder {
        PortHolder {
            pid,
            cmdline: procutil::cmdline(pid).unwrap_or_default(),
        }
    }

    /// `pid N (command line)`, the command line cut to `max_chars`.
    pub fn describe(&self, max_chars: usize) -> String {
        if self.cmdline.is_empty() {
            return format!("pid {}", self.pid);
        }
        let mut text = self.cmdline.join(" ");
        if text.chars().count() > max_chars {
            text = text
                .chars()
                .take(max_chars.saturating_sub(3))
                .collect::<String>()
                + "...";
        }
        format!("pid {} ({text})", self.pid)
    }
}

fn holder_text(holder: Option<&PortHolder>) -> String {
    holder
        .map(|h| format!(" by {}", h.describe(usize::MAX)))
        .unwrap_or_default()
}

/// The message of [`Error::CannotBind`]: the cause and what to do, on one
/// line.
fn bind_text(hostname: &str, port: Option<u16>, problem: &PortProblem) -> String {
    let target = match port {
        Some(port) => format!("port {port} on {hostname}"),
        None => hostname.to_string(),
    };
    match problem {
        PortProblem::Unresolvable => format!(
            "no such host {hostname}: the name does not resolve to an address; use an IP address \
             such as 127.0.0.1"
        ),
        PortProblem::ResolveTimedOut => format!(
            "cannot resolve {hostname}: the resolver did not answer in time; use an IP address \
             such as 127.0.0.1"
        ),
        PortProblem::AddressNotAvailable => format!(
            "cannot bind {target}: {hostname} is not an address of this machine; use 127.0.0.1 \
             or an address `ip addr` lists"
        ),
        PortProblem::PermissionDenied if port.is_some_and(|p| (1..1024).contains(&p)) => format!(
            "cannot bind {target}: permission denied: ports below 1024 need root or \
             CAP_NET_BIND_SERVICE; choose a port above 1023"
        ),
        PortProblem::PermissionDenied => format!(
            "cannot bind {target}: permission denied (a security policy refuses it); choose \
             another address or port"
        ),
        other => format!("cannot bind {target}: {other}"),
    }
}

fn tail_text(lines: &[String]) -> String {
    if lines.is_empty() {
        "(the log is empty)".to_string()
    } else {
        format!("last lines of the log:\n{}", lines.join("\n"))
    }
}

fn ending_text(exit: Option<&ExitStatus>, stopped: Option<&Termination>) -> String {
    match (exit, stopped) {
        (Some(status), _) => format!(" ({status})"),
        (None, Some(how)) => format!(" ({})", describe_termination(*how)),
        (None, None) => String::new(),
    }
}

impl From<statefile::Error> for Error {
    fn from(error: statefile::Error) -> Self {
        match error {
            statefile::Error::LockTimeout { path, waited } => Error::LockTimeout { path, waited },
            e @ (statefile::Error::RelativeStateDir { .. } | statefile::Error::NoStateDir) => {
                Error::BadStateDir(e.to_string())
            }
            other => Error::State(other),
        }
    }
}

impl From<portmap::Error> for Error {
    fn from(error: portmap::Error) -> Self {
        match error {
            portmap::Error::NonUtf8Path { path } => Error::NonUtf8Path { path },
            other => Error::Port(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_holder_of_a_port_as_read_when_made() {
        let own = PortHolder::of_pid(std::process::id());
        let text = own.describe(60);
        assert!(
            text.starts_with(&format!("pid {} (", std::process::id())),
            "{text}"
        );
        assert!(text.chars().count() <= 60 + 20, "{text}");
        let gone = PortHolder::of_pid(u32::MAX);
        assert_eq!(gone.describe(60), format!("pid {}", u32::MAX));
        let error = Error::PortInUse {
            hostname: "127.0.0.1".into(),
            port: 1,
            holder: Some(gone),
        };
        assert_eq!(
            error.to_string(),
            format!("port 1 on 127.0.0.1 is in use by pid {}", u32::MAX)
        );
    }

    #[test]
    fn bind_problems_say_the_cause_and_what_to_do_on_one_line() {
        let text = |hostname: &str, port, problem| {
            Error::CannotBind {
                hostname: hostname.into(),
                port,
                problem,
            }
            .to_string()
        };
        let foreign = text("192.0.2.1", Some(28001), PortProblem::AddressNotAvailable);
        assert_eq!(
            foreign,
            "cannot bind port 28001 on 192.0.2.1: 192.0.2.1 is not an address of this machine; \
             use 127.0.0.1 or an address `ip addr` lists"
        );
        let low = text("127.0.0.1", Some(80), PortProblem::PermissionDenied);
        assert!(
            low.contains("port 80 on 127.0.0.1")
                && low.contains("CAP_NET_BIND_SERVICE")
                && low.contains("above 1023"),
            "{low}"
        );
        let policy = text("127.0.0.1", Some(28001), PortProblem::PermissionDenied);
        assert!(
            policy.contains("permission denied") && !policy.contains("1024"),
            "{policy}"
        );
        let unknown = text("no-such-host.invalid", None, PortProblem::Unresolvable);
        assert!(
            unknown.starts_with("no such host no-such-host.invalid"),
            "{unknown}"
        );
        let slow = text("slow.example", None, PortProblem::ResolveTimedOut);
        assert!(slow.contains("did not answer"), "{slow}");
        let other = text(
            "127.0.0.1",
            Some(28001),
            PortProblem::from_io(&std::io::Error::from_raw_os_error(libc::ENOBUFS)),
        );
        assert!(
            other.starts_with("cannot bind port 28001 on 127.0.0.1: "),
            "{other}"
        );
        for message in [foreign, low, policy, unknown, slow, other] {
            assert!(!message.contains('\n'), "{message}");
        }
    }
}
