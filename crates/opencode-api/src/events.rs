//! Events of `GET /event` and `GET /global/event`.
//!
//! Each SSE `data:` field is one JSON object `{id, type, properties}`; the
//! global stream wraps it as `{directory, project, payload}`. The types a
//! manager of turns needs are typed variants of [`EventKind`]; every other
//! type (there are dozens, and `server.heartbeat` and `sync` are not even in
//! the schema) is kept as [`EventKind::Unknown`] with its raw JSON, so a new
//! server version never breaks a stream.

use crate::Error;
use crate::decode::{self, DecodeFailure, nested_error, num};
use crate::ids::{MessageId, SessionId};
use crate::types::{
    Message, MessageError, Part, Session, SessionModel, SessionStatus, Tokens, tag,
};
use serde::de::Deserializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event of `GET /event`: `{"id":"evt_...","type":"...","properties":{...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_...`; empty when the server sent none.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
}

/// What an [`Event`] says happened.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// `server.connected`: the first frame of every stream.
    ServerConnected,
    /// `server.heartbeat`: every 10 s.
    ServerHeartbeat,
    /// `server.instance.disposed`: the stream of this directory ends after it.
    ServerInstanceDisposed(InstanceDisposed),
    /// `session.created`
    SessionCreated(SessionInfo),
    /// `session.updated`
    SessionUpdated(SessionInfo),
    /// `session.deleted`
    SessionDeleted(SessionInfo),
    /// `session.status`: busy, retry, idle.
    SessionStatus(SessionStatusChanged),
    /// `session.idle`: the turn ended (legacy routes only).
    SessionIdle(SessionRef),
    /// `session.error`: a turn failed, e.g. `MessageAbortedError`.
    SessionError(SessionFailed),
    /// `session.compacted`
    SessionCompacted(SessionRef),
    /// `message.updated`: a message was stored or changed.
    MessageUpdated(MessageUpdated),
    /// `message.removed`
    MessageRemoved(MessageRemoved),
    /// `message.part.updated`: a part was stored or changed (text, tool,
    /// step-start, step-finish, ...).
    MessagePartUpdated(PartUpdated),
    /// `message.part.removed`
    MessagePartRemoved(PartRemoved),
    /// `message.part.delta`: streamed text appended to a part's field.
    MessagePartDelta(PartDelta),
    /// `permission.asked`: a tool waits for permission; the turn blocks.
    PermissionAsked(PendingRequest),
    /// `question.asked`: a tool waits for an answer; the turn blocks.
    QuestionAsked(PendingRequest),
    /// `session.next.text.delta` (v2 routes).
    NextTextDelta(NextTextDelta),
    /// `session.next.text.ended` (v2 routes).
    NextTextEnded(NextTextEnded),
    /// `session.next.reasoning.delta` (v2 routes).
    NextReasoningDelta(NextReasoningDelta),
    /// `session.next.tool.input.delta` (v2 routes).
    NextToolInputDelta(NextToolInputDelta),
    /// `session.next.tool.called` (v2 routes).
    NextToolCalled(NextToolCalled),
    /// `session.next.tool.success` (v2 routes).
    NextToolSuccess(NextToolSuccess),
    /// `session.next.tool.failed` (v2 routes).
    NextToolFailed(NextToolFailed),
    /// `session.next.step.started` (v2 routes).
    NextStepStarted(NextStepStarted),
    /// `session.next.step.ended` (v2 routes).
    NextStepEnded(NextStepEnded),
    /// `session.next.step.failed` (v2 routes).
    NextStepFailed(NextStepFailed),
    /// Any other type, kept as sent.
    Unknown {
        /// The `type` field.
        kind: String,
        /// `properties.sessionID`, when it is a string: many untyped events
        /// (`todo.updated`, `session.diff`, ...) still belong to a session.
        session_id: Option<SessionId>,
        /// The whole event object (`id`, `type`, `properties`, ...).
        raw: Value,
    },
}

/// `server.instance.disposed`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceDisposed {
    /// The directory whose instance ended.
    #[serde(default)]
    pub directory: String,
}

/// `session.created`, `session.updated`, `session.deleted`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session id.
    #[serde(rename = "sessionID", default)]
    pub session_id: SessionId,
    /// The session as it is now.
    pub info: Session,
}

/// `session.status`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStatusChanged {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// Its new status.
    pub status: SessionStatus,
}

/// An event that only names a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
}

/// `session.error`; both fields are optional in the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionFailed {
    /// The session id, when the error belongs to one.
    #[serde(rename = "sessionID", default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// What failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<MessageError>,
}

/// `message.updated`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageUpdated {
    /// The session id.
    #[serde(rename = "sessionID", default)]
    pub session_id: SessionId,
    /// The message as it is now.
    pub info: Message,
}

/// `message.removed`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRemoved {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The removed message.
    #[serde(rename = "messageID")]
    pub message_id: MessageId,
}

/// `message.part.updated`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartUpdated {
    /// The session id.
    #[serde(rename = "sessionID", default)]
    pub session_id: SessionId,
    /// The part as it is now.
    pub part: Part,
    /// When it changed, ms since the Unix epoch.
    #[serde(
        default,
        deserialize_with = "num::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub time: Option<u64>,
}

/// `message.part.removed`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRemoved {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The message.
    #[serde(rename = "messageID")]
    pub message_id: MessageId,
    /// The removed part.
    #[serde(rename = "partID")]
    pub part_id: String,
}

/// `message.part.delta`: append `delta` to the part's `field` (`text`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartDelta {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The message.
    #[serde(rename = "messageID")]
    pub message_id: MessageId,
    /// The part that grows.
    #[serde(rename = "partID")]
    pub part_id: String,
    /// The field that grows, e.g. `text`.
    #[serde(default)]
    pub field: String,
    /// The appended text.
    #[serde(default)]
    pub delta: String,
}

/// `permission.asked`, `question.asked`: a tool waits for a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRequest {
    /// The request id (`per_...`, `que_...`), used to reply.
    pub id: String,
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// What is asked, e.g. `bash` for a permission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    /// A question's questions (empty for a permission).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub questions: Vec<Question>,
    /// The tool call that asks, when a tool asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<AskingTool>,
}

/// The tool call behind a [`PendingRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskingTool {
    /// The assistant message of the call.
    #[serde(rename = "messageID")]
    pub message_id: MessageId,
    /// The call's id (a tool part's `callID`).
    #[serde(rename = "callID")]
    pub call_id: String,
}

/// One question of a `question.asked` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// The whole question.
    #[serde(default)]
    pub question: String,
    /// A very short label.
    #[serde(default)]
    pub header: String,
    /// The choices.
    #[serde(default)]
    pub options: Vec<QuestionOption>,
    /// Whether several choices may be picked.
    #[serde(default)]
    pub multiple: bool,
    /// Whether an answer of one's own is allowed.
    #[serde(default)]
    pub custom: bool,
}

/// A choice of a [`Question`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionOption {
    /// What is shown and sent back as the answer.
    pub label: String,
    /// What it means.
    #[serde(default)]
    pub description: String,
}

/// `session.next.text.delta`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextTextDelta {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The assistant message.
    #[serde(rename = "assistantMessageID", default)]
    pub assistant_message_id: MessageId,
    /// The text block that grows.
    #[serde(rename = "textID", default)]
    pub text_id: String,
    /// The appended text.
    #[serde(default)]
    pub delta: String,
}

/// `session.next.text.ended`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextTextEnded {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The assistant message.
    #[serde(rename = "assistantMessageID", default)]
    pub assistant_message_id: MessageId,
    /// The text block.
    #[serde(rename = "textID", default)]
    pub text_id: String,
    /// The whole text.
    #[serde(default)]
    pub text: String,
}

/// `session.next.reasoning.delta`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextReasoningDelta {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The assistant message.
    #[serde(rename = "assistantMessageID", default)]
    pub assistant_message_id: MessageId,
    /// The reasoning block that grows.
    #[serde(rename = "reasoningID", default)]
    pub reasoning_id: String,
    /// The appended text.
    #[serde(default)]
    pub delta: String,
}

/// `session.next.tool.input.delta`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextToolInputDelta {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The assistant message.
    #[serde(rename = "assistantMessageID", default)]
    pub assistant_message_id: MessageId,
    /// The call whose input grows.
    #[serde(rename = "callID", default)]
    pub call_id: String,
    /// The appended input text.
    #[serde(default)]
    pub delta: String,
}

/// `session.next.tool.called`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextToolCalled {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The assistant message.
    #[serde(rename = "assistantMessageID", default)]
    pub assistant_message_id: MessageId,
    /// The call.
    #[serde(rename = "callID", default)]
    pub call_id: String,
    /// The tool's name.
    #[serde(default)]
    pub tool: String,
    /// The arguments.
    #[serde(default)]
    pub input: Value,
}

/// `session.next.tool.success`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextToolSuccess {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The assistant message.
    #[serde(rename = "assistantMessageID", default)]
    pub assistant_message_id: MessageId,
    /// The call.
    #[serde(rename = "callID", default)]
    pub call_id: String,
    /// Structured output.
    #[serde(default)]
    pub structured: Value,
    /// Content blocks for the model.
    #[serde(default)]
    pub content: Value,
    /// The raw result, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// The `{type, message}` error of v2 events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextError {
    /// The error type, e.g. `unknown`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The human text.
    #[serde(default)]
    pub message: String,
}

/// `session.next.tool.failed`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextToolFailed {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The assistant message.
    #[serde(rename = "assistantMessageID", default)]
    pub assistant_message_id: MessageId,
    /// The call.
    #[serde(rename = "callID", default)]
    pub call_id: String,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<NextError>,
}

/// `session.next.step.started`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextStepStarted {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The assistant message of the step.
    #[serde(rename = "assistantMessageID", default)]
    pub assistant_message_id: MessageId,
    /// The agent.
    #[serde(default)]
    pub agent: String,
    /// The model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<SessionModel>,
}

/// `session.next.step.ended`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextStepEnded {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The assistant message of the step.
    #[serde(rename = "assistantMessageID", default)]
    pub assistant_message_id: MessageId,
    /// The finish reason, e.g. `stop`.
    #[serde(default)]
    pub finish: String,
    /// Cost of the step.
    #[serde(default, deserialize_with = "num::f64")]
    pub cost: f64,
    /// Tokens of the step.
    #[serde(default)]
    pub tokens: Tokens,
}

/// `session.next.step.failed`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextStepFailed {
    /// The session id.
    #[serde(rename = "sessionID")]
    pub session_id: SessionId,
    /// The assistant message of the step.
    #[serde(rename = "assistantMessageID", default)]
    pub assistant_message_id: MessageId,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<NextError>,
}

impl Event {
    /// Decodes the `data` of one frame of `GET /event`.
    ///
    /// Unknown types and fields never fail; a known type whose properties
    /// lack what gives them meaning (a session id, a part) does, with the
    /// path of the field.
    pub fn parse(data: &str) -> Result<Event, Error> {
        decode::from_str(data).map_err(|f| Error::decode("event frame", "Event", f))
    }

    /// The wire type, e.g. `message.part.delta`.
    pub fn kind_name(&self) -> &str {
        self.kind.name()
    }

    /// The session the event concerns, if any.
    pub fn session_id(&self) -> Option<&SessionId> {
        self.kind.session_id()
    }
}

impl EventKind {
    /// The wire type, e.g. `message.part.delta`.
    pub fn name(&self) -> &str {
        match self {
            EventKind::ServerConnected => "server.connected",
            EventKind::ServerHeartbeat => "server.heartbeat",
            EventKind::ServerInstanceDisposed(_) => "server.instance.disposed",
            EventKind::SessionCreated(_) => "session.created",
            EventKind::SessionUpdated(_) => "session.updated",
            EventKind::SessionDeleted(_) => "session.deleted",
            EventKind::SessionStatus(_) => "session.status",
            EventKind::SessionIdle(_) => "session.idle",
            EventKind::SessionError(_) => "session.error",
            EventKind::SessionCompacted(_) => "session.compacted",
            EventKind::MessageUpdated(_) => "message.updated",
            EventKind::MessageRemoved(_) => "message.removed",
            EventKind::MessagePartUpdated(_) => "message.part.updated",
            EventKind::MessagePartRemoved(_) => "message.part.removed",
            EventKind::MessagePartDelta(_) => "message.part.delta",
            EventKind::PermissionAsked(_) => "permission.asked",
            EventKind::QuestionAsked(_) => "question.asked",
            EventKind::NextTextDelta(_) => "session.next.text.delta",
            EventKind::NextTextEnded(_) => "session.next.text.ended",
            EventKind::NextReasoningDelta(_) => "session.next.reasoning.delta",
            EventKind::NextToolInputDelta(_) => "session.next.tool.input.delta",
            EventKind::NextToolCalled(_) => "session.next.tool.called",
            EventKind::NextToolSuccess(_) => "session.next.tool.success",
            EventKind::NextToolFailed(_) => "session.next.tool.failed",
            EventKind::NextStepStarted(_) => "session.next.step.started",
            EventKind::NextStepEnded(_) => "session.next.step.ended",
            EventKind::NextStepFailed(_) => "session.next.step.failed",
            EventKind::Unknown { kind, .. } => kind,
        }
    }

    /// The session the event concerns, if any (also for unknown types that
    /// carry `properties.sessionID`).
    pub fn session_id(&self) -> Option<&SessionId> {
        let id = match self {
            EventKind::ServerConnected
            | EventKind::ServerHeartbeat
            | EventKind::ServerInstanceDisposed(_) => return None,
            EventKind::SessionCreated(e)
            | EventKind::SessionUpdated(e)
            | EventKind::SessionDeleted(e) => {
                if e.session_id.is_empty() {
                    &e.info.id
                } else {
                    &e.session_id
                }
            }
            EventKind::SessionStatus(e) => &e.session_id,
            EventKind::SessionIdle(e) | EventKind::SessionCompacted(e) => &e.session_id,
            EventKind::SessionError(e) => return e.session_id.as_ref(),
            EventKind::MessageUpdated(e) => {
                if e.session_id.is_empty() {
                    e.info.session_id()
                } else {
                    &e.session_id
                }
            }
            EventKind::MessageRemoved(e) => &e.session_id,
            EventKind::MessagePartUpdated(e) => {
                if e.session_id.is_empty() {
                    e.part.session_id()
                } else {
                    &e.session_id
                }
            }
            EventKind::MessagePartRemoved(e) => &e.session_id,
            EventKind::MessagePartDelta(e) => &e.session_id,
            EventKind::PermissionAsked(e) | EventKind::QuestionAsked(e) => &e.session_id,
            EventKind::NextTextDelta(e) => &e.session_id,
            EventKind::NextTextEnded(e) => &e.session_id,
            EventKind::NextReasoningDelta(e) => &e.session_id,
            EventKind::NextToolInputDelta(e) => &e.session_id,
            EventKind::NextToolCalled(e) => &e.session_id,
            EventKind::NextToolSuccess(e) => &e.session_id,
            EventKind::NextToolFailed(e) => &e.session_id,
            EventKind::NextStepStarted(e) => &e.session_id,
            EventKind::NextStepEnded(e) => &e.session_id,
            EventKind::NextStepFailed(e) => &e.session_id,
            EventKind::Unknown { session_id, .. } => return session_id.as_ref(),
        };
        (!id.is_empty()).then_some(id)
    }
}

/// Decodes `raw.properties` as `T`, reporting a failure under `$.properties`.
fn props<T: serde::de::DeserializeOwned>(raw: &Value) -> Result<T, serde_json::Error> {
    let properties = raw.get("properties").unwrap_or(&Value::Null);
    decode::from_value(properties)
        .map_err(|f: DecodeFailure| nested_error(decode::prefixed(".properties", f)))
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        decode::buffered(d, Event::from_raw)
    }
}

impl Event {
    fn from_raw(raw: Value) -> Result<Event, serde_json::Error> {
        let name = tag(&raw, "type")?;
        let id = raw
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = match name.as_str() {
            "server.connected" => EventKind::ServerConnected,
            "server.heartbeat" => EventKind::ServerHeartbeat,
            "server.instance.disposed" => EventKind::ServerInstanceDisposed(props(&raw)?),
            "session.created" => EventKind::SessionCreated(props(&raw)?),
            "session.updated" => EventKind::SessionUpdated(props(&raw)?),
            "session.deleted" => EventKind::SessionDeleted(props(&raw)?),
            "session.status" => EventKind::SessionStatus(props(&raw)?),
            "session.idle" => EventKind::SessionIdle(props(&raw)?),
            "session.error" => EventKind::SessionError(props(&raw)?),
            "session.compacted" => EventKind::SessionCompacted(props(&raw)?),
            "message.updated" => EventKind::MessageUpdated(props(&raw)?),
            "message.removed" => EventKind::MessageRemoved(props(&raw)?),
            "message.part.updated" => EventKind::MessagePartUpdated(props(&raw)?),
            "message.part.removed" => EventKind::MessagePartRemoved(props(&raw)?),
            "message.part.delta" => EventKind::MessagePartDelta(props(&raw)?),
            "permission.asked" => EventKind::PermissionAsked(props(&raw)?),
            "question.asked" => EventKind::QuestionAsked(props(&raw)?),
            "session.next.text.delta" => EventKind::NextTextDelta(props(&raw)?),
            "session.next.text.ended" => EventKind::NextTextEnded(props(&raw)?),
            "session.next.reasoning.delta" => EventKind::NextReasoningDelta(props(&raw)?),
            "session.next.tool.input.delta" => EventKind::NextToolInputDelta(props(&raw)?),
            "session.next.tool.called" => EventKind::NextToolCalled(props(&raw)?),
            "session.next.tool.success" => EventKind::NextToolSuccess(props(&raw)?),
            "session.next.tool.failed" => EventKind::NextToolFailed(props(&raw)?),
            "session.next.step.started" => EventKind::NextStepStarted(props(&raw)?),
            "session.next.step.ended" => EventKind::NextStepEnded(props(&raw)?),
            "session.next.step.failed" => EventKind::NextStepFailed(props(&raw)?),
            _ => EventKind::Unknown {
                kind: name,
                session_id: raw
                    .get("properties")
                    .and_then(|p| p.get("sessionID"))
                    .and_then(Value::as_str)
                    .map(SessionId::from),
                raw,
            },
        };
        Ok(Event { id, kind })
    }
}

/// One frame of `GET /global/event`: an [`Event`] and where it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalEvent {
    /// The directory the event belongs to; `global` for server-wide events
    /// and absent on `server.connected` and heartbeats.
    pub directory: Option<String>,
    /// The project id.
    pub project: Option<String>,
    /// The workspace, when the event belongs to one.
    pub workspace: Option<String>,
    /// The event itself.
    pub payload: Event,
}

#[derive(Deserialize)]
struct GlobalEnvelope {
    #[serde(default)]
    directory: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    workspace: Option<String>,
    payload: Event,
}

impl GlobalEvent {
    /// Decodes the `data` of one frame of `GET /global/event`.
    pub fn parse(data: &str) -> Result<GlobalEvent, Error> {
        let envelope: GlobalEnvelope = decode::from_str(data)
            .map_err(|f| Error::decode("global event frame", "GlobalEvent", f))?;
        Ok(GlobalEvent {
            directory: envelope.directory,
            project: envelope.project,
            workspace: envelope.workspace,
            payload: envelope.payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_known_event_names_the_field() {
        let err = Event::parse(
            r#"{"id":"evt_1","type":"session.status","properties":{"sessionID":"ses_1","status":{"type":"retry","attempt":"soon"}}}"#,
        )
        .unwrap_err();
        match err {
            Error::Decode { path, target, .. } => {
                assert_eq!(path, "$.properties.status.attempt");
                assert_eq!(target, "Event");
            }
            other => panic!("{other:?}"),
        }
        let err = GlobalEvent::parse(
            r#"{"directory":"/p","payload":{"type":"message.updated","properties":{"sessionID":"ses_1","info":{"role":"assistant","id":"msg_1","time":{"created":-4}}}}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Decode { path, .. } if path == "$.payload.properties.info.time.created"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("global event frame: cannot decode GlobalEvent at $.payload")
        );
        let err = Event::parse(r#"{"id":"evt_1","type":"message.part.updated","properties":{"sessionID":"s","part":{"type":"text","id":"p"}}}"#)
            .unwrap_err();
        assert!(
            matches!(&err, Error::Decode { path, message, .. }
                if path == "$.properties.part" && message == "missing field `text`"),
            "{err:?}"
        );
        assert!(Event::parse("not json").is_err());
        assert!(Event::parse(r#"{"id":"evt_1"}"#).is_err(), "no type");
    }

    #[test]
    fn unknown_events_keep_their_json_and_session() {
        let e = Event::parse(
            r#"{"id":"evt_9","type":"todo.updated","properties":{"sessionID":"ses_7","todos":[]},"extra":1}"#,
        )
        .unwrap();
        assert_eq!(e.kind_name(), "todo.updated");
        assert_eq!(e.session_id().map(SessionId::as_str), Some("ses_7"));
        match e.kind {
            EventKind::Unknown { raw, .. } => assert_eq!(raw["extra"], 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn v2_deltas_and_step_events_are_typed() {
        let delta = Event::parse(r#"{"id":"evt_1","type":"session.next.text.delta","properties":{"timestamp":1,"sessionID":"ses_1","assistantMessageID":"msg_1","textID":"t","delta":"Hel"}}"#).unwrap();
        assert!(
            matches!(&delta.kind, EventKind::NextTextDelta(d) if d.delta == "Hel" && d.text_id == "t")
        );
        let ended = Event::parse(r#"{"id":"evt_2","type":"session.next.step.ended","properties":{"timestamp":1,"sessionID":"ses_1","assistantMessageID":"msg_1","finish":"stop","cost":0.25,"tokens":{"input":3,"output":4,"reasoning":0,"cache":{"read":0,"write":0}}}}"#).unwrap();
        assert!(
            matches!(&ended.kind, EventKind::NextStepEnded(s) if s.finish == "stop" && s.tokens.output == 4)
        );
        let failed = Event::parse(r#"{"id":"evt_3","type":"session.next.tool.failed","properties":{"timestamp":1,"sessionID":"ses_1","assistantMessageID":"msg_1","callID":"c1","error":{"type":"unknown","message":"boom"},"provider":{"executed":false}}}"#).unwrap();
        assert!(
            matches!(&failed.kind, EventKind::NextToolFailed(f) if f.error.as_ref().is_some_and(|e| e.message == "boom"))
        );
        let called = Event::parse(r#"{"id":"evt_4","type":"session.next.tool.called","properties":{"timestamp":1,"sessionID":"ses_1","assistantMessageID":"msg_1","callID":"c1","tool":"bash","input":{"command":"ls"},"provider":{"executed":false}}}"#).unwrap();
        assert!(
            matches!(&called.kind, EventKind::NextToolCalled(c) if c.tool == "bash" && c.input["command"] == "ls")
        );
        for e in [&delta, &ended, &failed, &called] {
            assert_eq!(e.session_id().map(SessionId::as_str), Some("ses_1"));
        }
        let aborted = Event::parse(r#"{"id":"evt_5","type":"session.error","properties":{"sessionID":"ses_1","error":{"name":"MessageAbortedError","data":{"message":"Aborted"}}}}"#).unwrap();
        assert!(
            matches!(&aborted.kind, EventKind::SessionError(f) if f.error.as_ref().is_some_and(MessageError::is_aborted))
        );
        let bare =
            Event::parse(r#"{"id":"evt_6","type":"session.error","properties":{}}"#).unwrap();
        assert_eq!(bare.session_id(), None);
    }
}
