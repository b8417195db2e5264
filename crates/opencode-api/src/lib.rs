//! A blocking, typed client of the OpenCode HTTP API (`opencode serve`).
//!
//! For synchronous programs: no async runtime, every call blocks the calling
//! thread and is bounded in time (short for [`Client::health`], longer for
//! ordinary calls); the blocking [`Client::prompt`] waits for the turn to end
//! and can be cancelled from another thread with a [`CancelToken`].
//!
//! - [`Client`] / [`ClientBuilder`]: Basic auth (also from
//!   `OPENCODE_SERVER_PASSWORD`), the project directory (sent as the
//!   percent-encoded `x-opencode-directory` header), timeouts, and the calls:
//!   health, sessions, messages, prompts, abort, status, event streams.
//! - [`EventStream`] (`GET /event`, one directory) and [`GlobalEventStream`]
//!   (`GET /global/event`, every directory): typed events and connection
//!   changes ([`StreamItem`]) from a reader thread that reconnects, with
//!   deadlines on every wait; no SSE code needed in the embedder.
//! - Types with serde for what the server sends: [`Session`], [`Message`],
//!   [`Part`], [`Event`], [`GlobalEvent`], with [`SessionId`] and
//!   [`MessageId`] as types of their own. Decoding is forward-compatible:
//!   unknown fields are ignored and unknown part, role and event types are
//!   kept as raw JSON.
//! - [`new_message_id`]: message IDs in OpenCode's own format, so a prompt
//!   can be found afterwards and retried without a duplicate turn.
//! - [`Error`]: one enum; decode errors say which field failed, a failed
//!   turn is [`Error::TurnFailed`] (see [`PromptReply::into_result`]), and
//!   no message or `Debug` output ever contains the password.
//!
//! # Example
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use opencode_api::{Client, EventKind, NewSession, PromptRequest, new_message_id};
//!
//! let client = Client::builder("http://127.0.0.1:4096")
//!     .auth_from_env()
//!     .directory("/home/me/project")
//!     .build()?;
//! println!("opencode {}", client.health()?.version);
//! let mut events = client.event_stream()?;
//! events.wait_connected(Instant::now() + Duration::from_secs(5))?;
//!
//! let session = client.create_session(&NewSession::titled("demo"))?;
//! let reply = client.prompt(&session.id, &PromptRequest::text("say hi"))?.into_result()?;
//! println!("{}", reply.text());
//!
//! // Fire and forget, then follow the turn on the stream.
//! let id = new_message_id();
//! client.prompt_async(&session.id, &PromptRequest::text("again").message_id(&id))?;
//! while let Some(event) = events.next_event(Instant::now() + Duration::from_secs(60))? {
//!     if matches!(&event.kind, EventKind::SessionIdle(e) if e.session_id == session.id) {
//!         break;
//!     }
//! }
//! # Ok::<(), opencode_api::Error>(())
//! ```
//!
//! Decoding needs no server:
//!
//! ```
//! use opencode_api::{Event, EventKind};
//! let frame = r#"{"id":"evt_1","type":"session.idle","properties":{"sessionID":"ses_1"}}"#;
//! let event = Event::parse(frame)?;
//! assert!(matches!(event.kind, EventKind::SessionIdle(ref e) if e.session_id == "ses_1"));
//! let other = Event::parse(r#"{"id":"evt_2","type":"plugin.added","properties":{}}"#)?;
//! assert_eq!(other.kind_name(), "plugin.added");
//! # Ok::<(), opencode_api::Error>(())
//! ```

#![forbid(unsafe_code)]

mod cancel;
mod client;
mod decode;
mod encoding;
mod error;
mod events;
mod ids;
mod requests;
mod resolve;
mod stream;
mod types;

#[cfg(test)]
mod captures;
#[cfg(test)]
mod fake_server;

pub use cancel::CancelToken;
pub use client::{
    Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEALTH_TIMEOUT, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TIMEOUT, DEFAULT_USERNAME, DIRECTORY_HEADER,
};
pub use error::Error;
pub use events::{
    AskingTool, Event, EventKind, GlobalEvent, InstanceDisposed, MessageRemoved, MessageUpdated,
    NextError, NextReasoningDelta, NextStepEnded, NextStepFailed, NextStepStarted, NextTextDelta,
    NextTextEnded, NextToolCalled, NextToolFailed, NextToolInputDelta, NextToolSuccess, PartDelta,
    PartRemoved, PartUpdated, PendingRequest, Question, QuestionOption, SessionFailed, SessionInfo,
    SessionRef, SessionStatusChanged,
};
/// The undecoded frames of a stream
/// ([`Client::global_event_frames_with`]): the reader thread and what it
/// reports, from `httpsse`.
pub use httpsse::{Reader as FrameReader, ReaderItem as FrameItem};
pub use ids::{
    MessageId, SessionId, ascending_id, id_value, new_message_id, new_message_id_after, new_part_id,
};
pub use requests::{NewSession, PartInput, PromptRequest};
pub use stream::{
    DisconnectKind, EventStream, GlobalEventStream, StreamConfig, StreamEvent, StreamItem,
};
pub use types::{
    AssistantMessage, AssistantMessageTime, CacheTokens, FilePart, Health, Message, MessageError,
    MessagePath, MessageWithParts, ModelRef, Part, PartTime, PermissionReply, PromptReply,
    ReasoningPart, Session, SessionModel, SessionStatus, SessionTime, StepFinishPart,
    StepStartPart, TextPart, Tokens, ToolPart, ToolState, ToolStatus, ToolTime, UserMessage,
    UserMessageTime,
};
