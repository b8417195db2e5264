//! The one error type of the turns crate.

use std::time::Duration;

use opencode_api::{MessageError, MessageId, SessionId};

/// Why a turn failed: what the terminal `failed` event carries.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FailReason {
    /// The model or a tool failed: the assistant message's error.
    Model(MessageError),
    /// The turn was aborted.
    Aborted,
    /// Nothing happened for this long (the watchdog), and reading the
    /// session's messages did not show the turn ended.
    Watchdog(Duration),
    /// The server died (its event stream broke and health failed).
    ServerCrashed(String),
    /// The prompt's message disappeared from the session.
    MessageGone,
    /// The server answered the prompt with an error and no reply (and the
    /// stream did not say why).
    Rejected(String),
    /// The caller's deadline passed.
    Deadline,
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailReason::Model(e) => write!(f, "the turn failed: {e}"),
            FailReason::Aborted => f.write_str("the turn was aborted"),
            FailReason::Watchdog(d) => write!(
                f,
                "no activity for {}s (watchdog); the session is marked crashed",
                d.as_secs_f64()
            ),
            FailReason::ServerCrashed(why) => write!(f, "server crashed mid-turn ({why})"),
            FailReason::MessageGone => {
                f.write_str("the prompt's message disappeared from the session")
            }
            FailReason::Deadline => f.write_str("the turn did not end before the deadline"),
            FailReason::Rejected(why) => write!(f, "the server failed the prompt: {why}"),
        }
    }
}

/// Everything the turns crate can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A call to the server failed.
    #[error(transparent)]
    Api(#[from] opencode_api::Error),
    /// The manager failed (starting the server, the state folder).
    #[error(transparent)]
    Manager(#[from] manager::Error),
    /// The project's session registry (`sessions.json`, its lock, the
    /// turn locks) could not be read or written.
    #[error("the session registry: {0}")]
    Registry(Box<manager::Error>),
    /// The session already has a turn in flight.
    #[error(
        "session {session_id} already has a turn in flight (prompt {message_id}): wait for it to end or abort it"
    )]
    Busy {
        /// The session.
        session_id: SessionId,
        /// The prompt of the turn in flight.
        message_id: MessageId,
    },
    /// The session has a turn in flight in another process of the project
    /// (another `ocm prompt`, an `ocm mcp` server).
    #[error(
        "session {session_id} already has a turn in flight in another process: wait for it to end, or stop it there (Ctrl-C ends an `ocm prompt` and aborts its turn)"
    )]
    BusyElsewhere {
        /// The session.
        session_id: SessionId,
    },
    /// The prompt could not be delivered.
    #[error(
        "prompt {message_id} was not delivered to session {session_id} after {attempts} tries: {last}; retry it with message ID {message_id}"
    )]
    Undelivered {
        /// The session.
        session_id: SessionId,
        /// The prompt's message ID (retry with it: no duplicate).
        message_id: MessageId,
        /// Tries made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The turn ended in failure.
    #[error("prompt {message_id} in session {session_id}: {reason}")]
    TurnFailed {
        /// The session.
        session_id: SessionId,
        /// The prompt's message ID.
        message_id: MessageId,
        /// Why.
        reason: FailReason,
    },
    /// The event stream did not connect in time.
    #[error("the event stream of {url} did not connect within {waited:?}")]
    NotConnected {
        /// The server.
        url: String,
        /// How long it waited.
        waited: Duration,
    },
    /// A session key is not usable.
    #[error("bad session key: {0}")]
    BadKey(String),
    /// No session is recorded under this key.
    #[error("no session recorded as {0:?}")]
    UnknownSession(String),
}

impl Error {
    /// The prompt's message ID when the error concerns one prompt: print it
    /// so that the prompt can be retried by it without a duplicate.
    pub fn message_id(&self) -> Option<&MessageId> {
        match self {
            Error::Busy { .. } | Error::BusyElsewhere { .. } => None,
            Error::Undelivered { message_id, .. } | Error::TurnFailed { message_id, .. } => {
                Some(message_id)
            }
            _ => None,
        }
    }
}
