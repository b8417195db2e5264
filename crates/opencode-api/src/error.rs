//! The one error type of this crate.

use crate::decode::DecodeFailure;
use crate::ids::{MessageId, SessionId};
use crate::types::MessageError;
use std::time::Duration;

/// Everything a call can fail with. `request` is the method and URL, e.g.
/// `GET http://127.0.0.1:4096/session`; it never contains credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 404: the session or message does not exist (yet).
    #[error("{request}: not found: {message}")]
    NotFound {
        /// The request.
        request: String,
        /// The server's message, e.g. `Session not found: ses_...`.
        message: String,
    },
    /// 401: the server has a password and the request had none or a wrong one.
    #[error("{request}: 401 unauthorized: {}", if *.credentials_sent {
        "the server rejected the username or password"
    } else {
        "the server requires a password (OPENCODE_SERVER_PASSWORD) and none was sent"
    })]
    Unauthorized {
        /// The request.
        request: String,
        /// Whether Basic credentials were sent.
        credentials_sent: bool,
    },
    /// Any other status that is not a success.
    #[error("{request}: HTTP {status}: {body}")]
    Http {
        /// The request.
        request: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// No complete answer within the limit (a hung server accepts the
    /// connection through the kernel's backlog and never answers).
    #[error("{request}: no answer within {limit:?}")]
    Timeout {
        /// The request.
        request: String,
        /// The limit that ran out.
        limit: Duration,
    },
    /// The connection could not be made (nothing listens, refused, no route).
    #[error("{request}: cannot connect: {reason}")]
    Connect {
        /// The request.
        request: String,
        /// What the OS or the HTTP client said.
        reason: String,
    },
    /// The connection broke or the answer was not valid HTTP.
    #[error("{request}: connection failed: {reason}")]
    Transport {
        /// The request.
        request: String,
        /// What went wrong.
        reason: String,
    },
    /// The answer was not of the expected shape.
    #[error("{context}: cannot decode {target} at {path}: {message}")]
    Decode {
        /// The request, or `event frame` for a stream frame.
        context: String,
        /// The Rust type expected, e.g. `Vec<Session>`.
        target: String,
        /// Where in the JSON it failed, e.g. `$[3].time.created`.
        path: String,
        /// serde's message.
        message: String,
    },
    /// The call was cancelled through a [`CancelToken`](crate::CancelToken).
    #[error("{request}: cancelled")]
    Cancelled {
        /// The request.
        request: String,
    },
    /// The base URL cannot be used.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, with any credentials in it removed.
        url: String,
        /// Why.
        reason: String,
    },
    /// A model string is not `provider/model`.
    #[error("invalid model {input:?}: {reason}")]
    InvalidModel {
        /// The string given.
        input: String,
        /// Why.
        reason: String,
    },
    /// An event stream could not be started, gave up reconnecting, was
    /// stopped, or did not connect in time.
    #[error("event stream {url}: {reason}")]
    EventStream {
        /// The stream's URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server ran the turn and it failed: the assistant message carries
    /// an error (see [`PromptReply::into_result`](crate::PromptReply::into_result)).
    #[error(
        "session {session_id}: the turn failed (assistant message {message_id}): {error}{}",
        turn_hint(error)
    )]
    TurnFailed {
        /// The session.
        session_id: SessionId,
        /// The assistant message that carries the error.
        message_id: MessageId,
        /// What the server said.
        error: MessageError,
    },
}

/// What a person can do about a failed turn, for the errors that say it.
fn turn_hint(error: &MessageError) -> &'static str {
    match error.name.as_str() {
        "MessageAbortedError" => {
            " (it was aborted: by an abort call, or by a newer prompt in the same session)"
        }
        "ProviderAuthError" => {
            " (the model provider refused the credentials: check its API key in the opencode config)"
        }
        "APIError" => " (the model provider's API failed: see the message; it may work if retried)",
        _ => "",
    }
}

impl Error {
    pub(crate) fn decode(
        context: impl Into<String>,
        target: impl Into<String>,
        failure: DecodeFailure,
    ) -> Error {
        Error::Decode {
            context: context.into(),
            target: target.into(),
            path: failure.path,
            message: failure.message,
        }
    }

    /// True when the server could not be reached or did not answer in time:
    /// [`Connect`](Error::Connect), [`Timeout`](Error::Timeout) or
    /// [`Transport`](Error::Transport). A supervisor treats these as "the
    /// server may be down or hung"; every other error means it answered.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::Timeout { .. } | Error::Transport { .. }
        )
    }

    /// True for [`NotFound`](Error::NotFound).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// At most this many characters of a body go into an error.
const EXCERPT_CHARS: usize = 300;

/// The start of a response body for an error message, on one line.
pub(crate) fn excerpt(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "(empty body)".to_string();
    }
    let mut out: String = body
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_short_and_one_line() {
        assert_eq!(excerpt("  \n"), "(empty body)");
        assert_eq!(excerpt("a\nb"), "a b");
        let long = "x".repeat(1000);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn unauthorized_says_whether_credentials_were_sent() {
        let without = Error::Unauthorized {
            request: "GET http://127.0.0.1:1/global/health".into(),
            credentials_sent: false,
        };
        assert!(without.to_string().contains("OPENCODE_SERVER_PASSWORD"));
        let with = Error::Unauthorized {
            request: "GET http://127.0.0.1:1/global/health".into(),
            credentials_sent: true,
        };
        assert!(with.to_string().contains("rejected"));
    }

    #[test]
    fn a_failed_turn_names_the_session_message_error_and_what_to_do() {
        let error: MessageError = serde_json::from_str(
            r#"{"name":"ProviderAuthError","data":{"providerID":"fake","message":"bad key"}}"#,
        )
        .unwrap();
        let err = Error::TurnFailed {
            session_id: "ses_1".into(),
            message_id: "msg_2".into(),
            error,
        };
        assert_eq!(
            err.to_string(),
            "session ses_1: the turn failed (assistant message msg_2): ProviderAuthError: bad key \
             (the model provider refused the credentials: check its API key in the opencode config)"
        );
        assert!(!err.is_unreachable());
    }
}
