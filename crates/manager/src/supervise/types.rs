//! The supervisor's public vocabulary: its configuration, the states of a
//! supervised project, the typed reasons of transitions, and the notices
//! subscribers receive.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// When a server that ended is started again (systemd's `Restart=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// After a crash, a hang or a start that failed; not after a clean exit
    /// (status 0).
    #[default]
    OnFailure,
    /// Whenever it ends, unless the user stopped it.
    Always,
    /// Never: the project stays `crashed`.
    Never,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "always" => Ok(RestartPolicy::Always),
            "never" => Ok(RestartPolicy::Never),
            other => Err(format!(
                "unknown restart policy {other:?} (on-failure, always or never)"
            )),
        }
    }
}

/// The supervisor's knobs; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperviseConfig {
    /// When to restart (default on-failure).
    pub restart: RestartPolicy,
    /// At most this many starts within [`start_window`](Self::start_window)
    /// (default 5); one more moves the project to `failed`. 0: no limit.
    pub start_limit: u32,
    /// The window of the start limit (default 60 s).
    pub start_window: Duration,
    /// No frame on the event stream for this long is a stream failure
    /// (default 15 s; OpenCode's heartbeat comes every 10 s).
    pub stall: Duration,
    /// No `server.connected` this long after connecting is a stream failure
    /// (default 2 s).
    pub connect_window: Duration,
    /// Consecutive stream failures before the health check (default 3).
    pub failures_before_check: u32,
    /// The health check's timeout (default 2 s).
    pub health_timeout: Duration,
    /// The first restart delay and the stream's reconnection floor (100 ms).
    pub delay_floor: Duration,
    /// The longest restart delay (30 s).
    pub delay_cap: Duration,
    /// Healthy this long, the delay goes back to the floor (30 s).
    pub reset_after: Duration,
    /// Resident memory above which a planned restart is due (none).
    pub max_memory: Option<u64>,
    /// How long a planned restart waits for busy sessions (5 min).
    pub busy_wait: Duration,
    /// How often metrics are written between transitions (10 s).
    pub metrics_interval: Duration,
    /// Stop the watched servers when the supervisor stops (default false).
    pub stop_on_exit: bool,
}

impl Default for SuperviseConfig {
    fn default() -> Self {
        SuperviseConfig {
            restart: RestartPolicy::OnFailure,
            start_limit: 5,
            start_window: Duration::from_secs(60),
            stall: Duration::from_secs(15),
            connect_window: Duration::from_secs(2),
            failures_before_check: 3,
            health_timeout: Duration::from_secs(2),
            delay_floor: Duration::from_millis(100),
            delay_cap: Duration::from_secs(30),
            reset_after: Duration::from_secs(30),
            max_memory: None,
            busy_wait: Duration::from_secs(300),
            metrics_interval: Duration::from_secs(10),
            stop_on_exit: false,
        }
    }
}

impl SuperviseConfig {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |reason: &str| {
            Err(Error::Supervise {
                reason: reason.to_string(),
            })
        };
        if self.stall < Duration::from_millis(200) {
            return bad("the stall window must be at least 200 ms");
        }
        if self.delay_floor < Duration::from_millis(100) {
            return bad("the restart delay floor is at least 100 ms");
        }
        if self.delay_cap < self.delay_floor {
            return bad("the longest restart delay is below the first");
        }
        if self.metrics_interval.is_zero() || self.start_window.is_zero() {
            return bad("intervals must be longer than zero");
        }
        Ok(())
    }
}

/// The state of a supervised project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SupervisorState {
    /// A server is being started (or adopted).
    Starting,
    /// Its server runs and its stream is followed.
    Running,
    /// Its server stopped answering; it is being replaced.
    Unhealthy,
    /// Its server exited unexpectedly, or a start failed.
    Crashed,
    /// Waiting before the next start.
    Backoff,
    /// Its server is being stopped on purpose (a planned restart, the end of
    /// supervision with `stop_on_exit`).
    Stopping,
    /// Stopped, and meant to be (by the user, by the policy).
    Stopped,
    /// The start limit was hit: no more starts until the user acts.
    Failed,
}

impl fmt::Display for SupervisorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SupervisorState::Starting => "starting",
            SupervisorState::Running => "running",
            SupervisorState::Unhealthy => "unhealthy",
            SupervisorState::Crashed => "crashed",
            SupervisorState::Backoff => "backoff",
            SupervisorState::Stopping => "stopping",
            SupervisorState::Stopped => "stopped",
            SupervisorState::Failed => "failed",
        })
    }
}

/// Why a transition happened (JSON: `{"kind": ..., ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Reason {
    /// Supervision began.
    Watching,
    /// A running server was taken over as it was (same pid, no restart).
    Adopted,
    /// A start began (`restart` false for the first one).
    Start {
        /// Whether it replaces a server that ended.
        restart: bool,
    },
    /// A start succeeded.
    Started,
    /// A start failed.
    StartFailed {
        /// What went wrong, with the last lines of the server log.
        message: String,
    },
    /// The server exited.
    Exited {
        /// Its exit code, when known.
        code: Option<i32>,
        /// The signal that killed it, when known.
        signal: Option<i32>,
        /// Said when the status cannot be known.
        detail: Option<String>,
    },
    /// The stream failed repeatedly and the health check failed too.
    Hung {
        /// Consecutive stream failures.
        failures: u32,
        /// The last stream failure.
        stream: String,
        /// Why the health check failed.
        health: String,
    },
    /// The user stopped it (`ocm down`).
    StoppedByUser,
    /// Another `ocm` replaced or started the server (`ocm restart`, `ocm up`).
    ReplacedByUser,
    /// Waiting before the next start.
    Delay {
        /// The delay in milliseconds.
        ms: u64,
    },
    /// Too many starts.
    StartLimit {
        /// Starts counted.
        starts: u32,
        /// Within this many seconds.
        within_secs: u64,
    },
    /// The policy does not restart it.
    Policy {
        /// The policy.
        restart: RestartPolicy,
    },
    /// Over the memory limit, and no session busy (or the wait ran out).
    MemoryLimit {
        /// Resident memory seen.
        rss: u64,
        /// The limit.
        limit: u64,
    },
    /// The supervisor stopped and stops the servers (`stop_on_exit`).
    SupervisorExit,
    /// Something the supervisor could not do.
    Error {
        /// What.
        message: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Watching => f.write_str("supervision began"),
            Reason::Adopted => f.write_str("adopted the running server"),
            Reason::Start { restart: false } => f.write_str("starting"),
            Reason::Start { restart: true } => f.write_str("restarting"),
            Reason::Started => f.write_str("healthy"),
            Reason::StartFailed { message } => write!(f, "start failed: {message}"),
            Reason::Exited {
                code,
                signal,
                detail,
                ..
            } => match (code, signal, detail) {
                (Some(code), _, _) => write!(f, "exited with status {code}"),
                (None, Some(signal), _) => write!(f, "killed by signal {signal}"),
                (None, None, Some(detail)) => write!(f, "exited ({detail})"),
                (None, None, None) => f.write_str("exited (status unknown)"),
            },
            Reason::Hung {
                failures,
                stream,
                health,
            } => write!(
                f,
                "hung: {failures} stream failures (last: {stream}); health check: {health}"
            ),
            Reason::StoppedByUser => f.write_str("stopped by the user"),
            Reason::ReplacedByUser => f.write_str("replaced by another ocm (up or restart)"),
            Reason::Delay { ms } => write!(f, "next start in {ms} ms"),
            Reason::StartLimit {
                starts,
                within_secs,
            } => write!(
                f,
                "start limit hit: {starts} starts within {within_secs} s; `ocm up` or `ocm restart` to try again"
            ),
            Reason::Policy { restart } => write!(f, "not restarted (restart={restart:?})"),
            Reason::MemoryLimit { rss, limit } => {
                write!(f, "resident memory {rss} bytes over the limit {limit}")
            }
            Reason::SupervisorExit => f.write_str("the supervisor stops (stop on exit)"),
            Reason::Error { message } => f.write_str(message),
        }
    }
}

/// One change of a supervised project's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The project folder.
    pub project: PathBuf,
    /// The new state.
    pub state: SupervisorState,
    /// The state before.
    pub previous: SupervisorState,
    /// When, RFC 3339 UTC with milliseconds.
    pub at: String,
    /// Why.
    pub reason: Reason,
    /// The reason for people.
    pub message: String,
    /// The server's pid, when there is one.
    pub pid: Option<u32>,
    /// Restarts so far by this supervisor.
    pub restarts: u32,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} -> {}",
            self.at,
            self.project.display(),
            self.previous,
            self.state
        )?;
        if let Some(pid) = self.pid {
            write!(f, " pid {pid}")?;
        }
        write!(f, " restarts {}: {}", self.restarts, self.message)
    }
}

/// What subscribers receive.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A state change.
    Transition(Transition),
    /// An event received from a watched server (only for subscribers that
    /// asked for events).
    Event {
        /// The project folder.
        project: PathBuf,
        /// The event's type, e.g. `server.heartbeat`.
        kind: String,
    },
    /// Something that is not a transition, for people (a project held by
    /// another supervisor, a project the supervisor picked up).
    Note {
        /// The project folder.
        project: PathBuf,
        /// What happened.
        message: String,
    },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Transition(t) => t.fmt(f),
            Notice::Event { project, kind } => write!(f, "{} event {kind}", project.display()),
            Notice::Note { project, message } => write!(f, "{} {message}", project.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_bad_settings_are_refused() {
        assert_eq!("always".parse(), Ok(RestartPolicy::Always));
        assert_eq!("on-failure".parse(), Ok(RestartPolicy::OnFailure));
        assert_eq!("never".parse(), Ok(RestartPolicy::Never));
        assert!("sometimes".parse::<RestartPolicy>().is_err());
        assert!(SuperviseConfig::default().validate().is_ok());
        let too_fast = SuperviseConfig {
            delay_floor: Duration::from_millis(10),
            ..SuperviseConfig::default()
        };
        assert!(too_fast.validate().is_err());
    }

    #[test]
    fn reasons_say_what_happened() {
        let unknown = Reason::Exited {
            code: None,
            signal: None,
            detail: Some("status unknown: not ocm's child".into()),
        };
        assert_eq!(
            unknown.to_string(),
            "exited (status unknown: not ocm's child)"
        );
        assert_eq!(Reason::StoppedByUser.to_string(), "stopped by the user");
        let json = serde_json::to_value(Reason::StartLimit {
            starts: 5,
            within_secs: 60,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "start-limit", "starts": 5, "withinSecs": 60})
        );
    }
}
