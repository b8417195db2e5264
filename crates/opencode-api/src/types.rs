//! The server's data: sessions, messages and their parts.
//!
//! Field names follow the OpenAPI document of opencode 1.18.33 (camelCase on
//! the wire, snake_case here). Decoding is forward-compatible: unknown fields
//! are ignored, unknown part types and roles are kept as raw JSON, and only
//! the fields that give a value its meaning (its id, a text's text) are
//! required. Numbers the schema calls "number" accept floats and null.

use crate::Error;
use crate::decode::{self, nested_error, num};
use crate::ids::{MessageId, SessionId};
use serde::de::{self, Deserializer};
use serde::ser::{self, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /global/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always true when the server answers at all.
    pub healthy: bool,
    /// The server's version, e.g. `1.18.33`.
    pub version: String,
}

/// Token counts of a message, a step or a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Sum of all counts, when the server reports it.
    #[serde(
        default,
        deserialize_with = "num::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub total: Option<u64>,
    /// Prompt tokens.
    #[serde(default, deserialize_with = "num::u64")]
    pub input: u64,
    /// Completion tokens.
    #[serde(default, deserialize_with = "num::u64")]
    pub output: u64,
    /// Reasoning tokens.
    #[serde(default, deserialize_with = "num::u64")]
    pub reasoning: u64,
    /// Prompt cache use.
    #[serde(default)]
    pub cache: CacheTokens,
}

/// Prompt cache token counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheTokens {
    /// Tokens read from the cache.
    #[serde(default, deserialize_with = "num::u64")]
    pub read: u64,
    /// Tokens written to the cache.
    #[serde(default, deserialize_with = "num::u64")]
    pub write: u64,
}

/// The model a session uses: `{id, providerID, variant}` (note: `id`, where
/// messages and prompts say `modelID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionModel {
    /// The model id within its provider.
    pub id: String,
    /// The provider id.
    #[serde(rename = "providerID")]
    pub provider_id: String,
    /// A model variant, e.g. `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Times of a session, ms since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTime {
    /// When it was created.
    #[serde(default, deserialize_with = "num::u64")]
    pub created: u64,
    /// When it last changed.
    #[serde(default, deserialize_with = "num::u64")]
    pub updated: u64,
    /// Set while the session is being compacted.
    #[serde(
        default,
        deserialize_with = "num::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub compacting: Option<u64>,
    /// Set when the session was archived.
    #[serde(
        default,
        deserialize_with = "num::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub archived: Option<u64>,
}

/// A session (`ses_...`): one conversation in one directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// `ses_...`
    pub id: SessionId,
    /// A readable name such as `swift-cactus`.
    #[serde(default)]
    pub slug: String,
    /// The project the directory belongs to (`global` outside a repository).
    #[serde(rename = "projectID", default)]
    pub project_id: String,
    /// The directory the session works in.
    #[serde(default)]
    pub directory: String,
    /// The parent session of a child (sub-agent) session.
    #[serde(rename = "parentID", default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<SessionId>,
    /// The title.
    #[serde(default)]
    pub title: String,
    /// The opencode version that created it.
    #[serde(default)]
    pub version: String,
    /// The agent chosen at creation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The model chosen at creation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<SessionModel>,
    /// Total cost so far.
    #[serde(default, deserialize_with = "num::f64")]
    pub cost: f64,
    /// Total tokens so far.
    #[serde(default)]
    pub tokens: Tokens,
    /// Creation and update times.
    #[serde(default)]
    pub time: SessionTime,
    /// The workspace (`wrk_...`) when the session lives in one.
    #[serde(
        rename = "workspaceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub workspace_id: Option<String>,
}

/// A model reference as messages and prompts spell it:
/// `{providerID, modelID}`. Parse one from `provider/model` with
/// [`ModelRef::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelRef {
    /// The provider id, e.g. `anthropic`.
    #[serde(rename = "providerID")]
    pub provider_id: String,
    /// The model id within the provider; may itself contain slashes.
    #[serde(rename = "modelID")]
    pub model_id: String,
}

/// Why an assistant message or a session failed: `{name, data: {message, ...}}`,
/// e.g. `MessageAbortedError`, `APIError`, `ProviderAuthError`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageError {
    /// The error's name, e.g. `MessageAbortedError`.
    #[serde(default)]
    pub name: String,
    /// Its details; `data.message` is the human text.
    #[serde(default)]
    pub data: Value,
}

impl MessageError {
    /// The human-readable message, if the server gave one.
    pub fn message(&self) -> Option<&str> {
        self.data.get("message").and_then(Value::as_str)
    }

    /// True when the turn was aborted (by an abort call or a new prompt).
    pub fn is_aborted(&self) -> bool {
        self.name == "MessageAbortedError"
    }
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.message() {
            Some(m) => write!(f, "{}: {m}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Creation time of a user message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMessageTime {
    /// ms since the Unix epoch.
    #[serde(default, deserialize_with = "num::u64")]
    pub created: u64,
}

/// A prompt as stored by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserMessage {
    /// `msg_...`
    pub id: MessageId,
    /// The session it belongs to.
    #[serde(rename = "sessionID", default)]
    pub session_id: SessionId,
    /// When it was stored.
    #[serde(default)]
    pub time: UserMessageTime,
    /// The agent that answers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The model that answers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// An extra system prompt sent with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

/// Times of an assistant message, ms since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistantMessageTime {
    /// When the answer started.
    #[serde(default, deserialize_with = "num::u64")]
    pub created: u64,
    /// When it ended (successfully or not); absent while it runs.
    #[serde(
        default,
        deserialize_with = "num::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub completed: Option<u64>,
}

/// Working directories recorded with an assistant message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePath {
    /// The current directory.
    #[serde(default)]
    pub cwd: String,
    /// The project root.
    #[serde(default)]
    pub root: String,
}

/// An answer of the model (one per step of a turn).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// `msg_...`
    pub id: MessageId,
    /// The session it belongs to.
    #[serde(rename = "sessionID", default)]
    pub session_id: SessionId,
    /// The user message it answers.
    #[serde(rename = "parentID", default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<MessageId>,
    /// Start and completion times.
    #[serde(default)]
    pub time: AssistantMessageTime,
    /// Set when the answer failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<MessageError>,
    /// The model id.
    #[serde(rename = "modelID", default)]
    pub model_id: String,
    /// The provider id.
    #[serde(rename = "providerID", default)]
    pub provider_id: String,
    /// The mode (agent) it ran in.
    #[serde(default)]
    pub mode: String,
    /// The agent.
    #[serde(default)]
    pub agent: String,
    /// Working directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<MessagePath>,
    /// Cost of this message.
    #[serde(default, deserialize_with = "num::f64")]
    pub cost: f64,
    /// Tokens of this message.
    #[serde(default)]
    pub tokens: Tokens,
    /// The finish reason, e.g. `stop` or `tool-calls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<String>,
}

impl AssistantMessage {
    /// True once the server set `time.completed` (also on failure).
    pub fn is_completed(&self) -> bool {
        self.time.completed.is_some()
    }

    /// The model that wrote it.
    pub fn model(&self) -> ModelRef {
        ModelRef {
            provider_id: self.provider_id.clone(),
            model_id: self.model_id.clone(),
        }
    }
}

/// A message: a prompt, an answer, or a role this version does not know.
// Most messages of a session are assistant messages: boxing the large
// variant would add an allocation each without saving memory.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `role: "user"`.
    User(UserMessage),
    /// `role: "assistant"`.
    Assistant(AssistantMessage),
    /// Another role, kept as the server sent it.
    Unknown {
        /// The `role` field.
        role: String,
        /// The `id` field; empty when it is not a string.
        id: MessageId,
        /// The `sessionID` field; empty when it is not a string.
        session_id: SessionId,
        /// The whole message object.
        raw: Value,
    },
}

impl Message {
    /// The message id (`msg_...`); empty if the server sent none.
    pub fn id(&self) -> &MessageId {
        match self {
            Message::User(m) => &m.id,
            Message::Assistant(m) => &m.id,
            Message::Unknown { id, .. } => id,
        }
    }

    /// The session id; empty if the server sent none.
    pub fn session_id(&self) -> &SessionId {
        match self {
            Message::User(m) => &m.session_id,
            Message::Assistant(m) => &m.session_id,
            Message::Unknown { session_id, .. } => session_id,
        }
    }

    /// `user`, `assistant` or the unknown role.
    pub fn role(&self) -> &str {
        match self {
            Message::User(_) => "user",
            Message::Assistant(_) => "assistant",
            Message::Unknown { role, .. } => role,
        }
    }

    /// The assistant message, if it is one.
    pub fn as_assistant(&self) -> Option<&AssistantMessage> {
        match self {
            Message::Assistant(m) => Some(m),
            _ => None,
        }
    }

    /// The user message, if it is one.
    pub fn as_user(&self) -> Option<&UserMessage> {
        match self {
            Message::User(m) => Some(m),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        decode::buffered(d, |raw| {
            let role = tag(&raw, "role")?;
            Ok(match role.as_str() {
                "user" => Message::User(typed(&raw)?),
                "assistant" => Message::Assistant(typed(&raw)?),
                _ => Message::Unknown {
                    role,
                    id: raw_str(&raw, "id").into(),
                    session_id: raw_str(&raw, "sessionID").into(),
                    raw,
                },
            })
        })
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Message::User(m) => with_tag(m, "role", "user", s),
            Message::Assistant(m) => with_tag(m, "role", "assistant", s),
            Message::Unknown { raw, .. } => raw.serialize(s),
        }
    }
}

/// Start and end of a text or reasoning part, ms since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartTime {
    /// When the part started.
    #[serde(default, deserialize_with = "num::u64")]
    pub start: u64,
    /// When it ended; absent while it streams.
    #[serde(
        default,
        deserialize_with = "num::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<u64>,
}

/// Text written by the user or the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPart {
    /// `prt_...`
    pub id: String,
    /// The session.
    #[serde(rename = "sessionID", default)]
    pub session_id: SessionId,
    /// The message it belongs to.
    #[serde(rename = "messageID", default)]
    pub message_id: MessageId,
    /// The text (complete in a message; growing in `message.part.updated`).
    pub text: String,
    /// Added by opencode rather than written by the user or model.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub synthetic: bool,
    /// Kept in the history but not sent to the model.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
    /// Start and end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<PartTime>,
}

/// The model's reasoning text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasoningPart {
    /// `prt_...`
    pub id: String,
    /// The session.
    #[serde(rename = "sessionID", default)]
    pub session_id: SessionId,
    /// The message it belongs to.
    #[serde(rename = "messageID", default)]
    pub message_id: MessageId,
    /// The reasoning text.
    #[serde(default)]
    pub text: String,
    /// Start and end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<PartTime>,
}

/// Where a tool call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolStatus {
    /// Its input is still streaming.
    Pending,
    /// It runs.
    Running,
    /// It finished; `output` is set.
    Completed,
    /// It failed; `error` is set.
    Error,
    /// A status this version does not know.
    Other(String),
}

impl ToolStatus {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            ToolStatus::Pending => "pending",
            ToolStatus::Running => "running",
            ToolStatus::Completed => "completed",
            ToolStatus::Error => "error",
            ToolStatus::Other(s) => s,
        }
    }

    /// True for `completed` and `error`.
    pub fn is_finished(&self) -> bool {
        matches!(self, ToolStatus::Completed | ToolStatus::Error)
    }
}

impl<'de> Deserialize<'de> for ToolStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "pending" => ToolStatus::Pending,
            "running" => ToolStatus::Running,
            "completed" => ToolStatus::Completed,
            "error" => ToolStatus::Error,
            _ => ToolStatus::Other(s),
        })
    }
}

impl Serialize for ToolStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Start and end of a tool call, ms since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolTime {
    /// When it started running.
    #[serde(
        default,
        deserialize_with = "num::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub start: Option<u64>,
    /// When it finished.
    #[serde(
        default,
        deserialize_with = "num::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<u64>,
}

/// The state of a tool call. One struct for all statuses: the fields a
/// status does not have are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolState {
    /// pending, running, completed, error.
    pub status: ToolStatus,
    /// The arguments.
    #[serde(default)]
    pub input: Value,
    /// The result text (completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The failure text (error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A short description of the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Tool-specific details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Start and end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<ToolTime>,
}

/// A tool call and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolPart {
    /// `prt_...`
    pub id: String,
    /// The session.
    #[serde(rename = "sessionID", default)]
    pub session_id: SessionId,
    /// The message it belongs to.
    #[serde(rename = "messageID", default)]
    pub message_id: MessageId,
    /// The model's id of the call.
    #[serde(rename = "callID", default)]
    pub call_id: String,
    /// The tool's name, e.g. `bash`.
    #[serde(default)]
    pub tool: String,
    /// Where the call is.
    pub state: ToolState,
}

/// The start of one model step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStartPart {
    /// `prt_...`
    pub id: String,
    /// The session.
    #[serde(rename = "sessionID", default)]
    pub session_id: SessionId,
    /// The message it belongs to.
    #[serde(rename = "messageID", default)]
    pub message_id: MessageId,
    /// The file snapshot taken at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// The end of one model step, with its cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFinishPart {
    /// `prt_...`
    pub id: String,
    /// The session.
    #[serde(rename = "sessionID", default)]
    pub session_id: SessionId,
    /// The message it belongs to.
    #[serde(rename = "messageID", default)]
    pub message_id: MessageId,
    /// The finish reason, e.g. `stop` or `tool-calls`.
    #[serde(default)]
    pub reason: String,
    /// The file snapshot taken at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Cost of the step.
    #[serde(default, deserialize_with = "num::f64")]
    pub cost: f64,
    /// Tokens of the step.
    #[serde(default)]
    pub tokens: Tokens,
}

/// An attached file (`url` is often a `data:` or `file:` URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePart {
    /// `prt_...`
    pub id: String,
    /// The session.
    #[serde(rename = "sessionID", default)]
    pub session_id: SessionId,
    /// The message it belongs to.
    #[serde(rename = "messageID", default)]
    pub message_id: MessageId,
    /// MIME type.
    #[serde(default)]
    pub mime: String,
    /// The file name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Where the content is.
    #[serde(default)]
    pub url: String,
    /// Where it came from (a file, a symbol, a resource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// `text`
    Text(TextPart),
    /// `reasoning`
    Reasoning(ReasoningPart),
    /// `tool`
    Tool(ToolPart),
    /// `step-start`
    StepStart(StepStartPart),
    /// `step-finish`
    StepFinish(StepFinishPart),
    /// `file`
    File(FilePart),
    /// Any other type (`subtask`, `patch`, `agent`, `retry`, ...), kept raw.
    Unknown {
        /// The `type` field.
        kind: String,
        /// The `sessionID` field; empty when it is not a string.
        session_id: SessionId,
        /// The `messageID` field; empty when it is not a string.
        message_id: MessageId,
        /// The whole part object.
        raw: Value,
    },
}

impl Part {
    /// The wire type, e.g. `step-finish`.
    pub fn kind(&self) -> &str {
        match self {
            Part::Text(_) => "text",
            Part::Reasoning(_) => "reasoning",
            Part::Tool(_) => "tool",
            Part::StepStart(_) => "step-start",
            Part::StepFinish(_) => "step-finish",
            Part::File(_) => "file",
            Part::Unknown { kind, .. } => kind,
        }
    }

    /// The part id (`prt_...`).
    pub fn id(&self) -> &str {
        match self {
            Part::Text(p) => &p.id,
            Part::Reasoning(p) => &p.id,
            Part::Tool(p) => &p.id,
            Part::StepStart(p) => &p.id,
            Part::StepFinish(p) => &p.id,
            Part::File(p) => &p.id,
            Part::Unknown { raw, .. } => raw_str(raw, "id"),
        }
    }

    /// The message it belongs to.
    pub fn message_id(&self) -> &MessageId {
        match self {
            Part::Text(p) => &p.message_id,
            Part::Reasoning(p) => &p.message_id,
            Part::Tool(p) => &p.message_id,
            Part::StepStart(p) => &p.message_id,
            Part::StepFinish(p) => &p.message_id,
            Part::File(p) => &p.message_id,
            Part::Unknown { message_id, .. } => message_id,
        }
    }

    /// The session it belongs to.
    pub fn session_id(&self) -> &SessionId {
        match self {
            Part::Text(p) => &p.session_id,
            Part::Reasoning(p) => &p.session_id,
            Part::Tool(p) => &p.session_id,
            Part::StepStart(p) => &p.session_id,
            Part::StepFinish(p) => &p.session_id,
            Part::File(p) => &p.session_id,
            Part::Unknown { session_id, .. } => session_id,
        }
    }
}

fn raw_str<'a>(raw: &'a Value, key: &str) -> &'a str {
    raw.get(key).and_then(Value::as_str).unwrap_or("")
}

impl<'de> Deserialize<'de> for Part {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        decode::buffered(d, |raw| {
            let kind = tag(&raw, "type")?;
            Ok(match kind.as_str() {
                "text" => Part::Text(typed(&raw)?),
                "reasoning" => Part::Reasoning(typed(&raw)?),
                "tool" => Part::Tool(typed(&raw)?),
                "step-start" => Part::StepStart(typed(&raw)?),
                "step-finish" => Part::StepFinish(typed(&raw)?),
                "file" => Part::File(typed(&raw)?),
                _ => Part::Unknown {
                    kind,
                    session_id: raw_str(&raw, "sessionID").into(),
                    message_id: raw_str(&raw, "messageID").into(),
                    raw,
                },
            })
        })
    }
}

impl Serialize for Part {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Part::Text(p) => with_tag(p, "type", "text", s),
            Part::Reasoning(p) => with_tag(p, "type", "reasoning", s),
            Part::Tool(p) => with_tag(p, "type", "tool", s),
            Part::StepStart(p) => with_tag(p, "type", "step-start", s),
            Part::StepFinish(p) => with_tag(p, "type", "step-finish", s),
            Part::File(p) => with_tag(p, "type", "file", s),
            Part::Unknown { raw, .. } => raw.serialize(s),
        }
    }
}

/// A message with its parts, as `GET /session/{id}/message` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageWithParts {
    /// The message.
    pub info: Message,
    /// Its parts in order.
    #[serde(default)]
    pub parts: Vec<Part>,
}

impl MessageWithParts {
    /// The concatenated text parts that are neither synthetic nor ignored.
    pub fn text(&self) -> String {
        text_of(&self.parts)
    }
}

/// The answer of a blocking prompt: the last assistant message and its parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptReply {
    /// The assistant message (check `error` and `time.completed`).
    pub info: AssistantMessage,
    /// Its parts in order.
    #[serde(default)]
    pub parts: Vec<Part>,
}

impl PromptReply {
    /// The concatenated text parts that are neither synthetic nor ignored.
    pub fn text(&self) -> String {
        text_of(&self.parts)
    }

    /// Why the turn failed, when it did: the assistant message's `error`.
    /// The server answers a failed turn (aborted, the provider refused, ...)
    /// with 200 like a good one, so this is the only place it shows.
    pub fn error(&self) -> Option<&MessageError> {
        self.info.error.as_ref()
    }

    /// The reply when the turn succeeded, else [`Error::TurnFailed`] with
    /// the assistant message's error.
    ///
    /// ```
    /// use opencode_api::{Error, PromptReply};
    /// let reply: PromptReply = serde_json::from_str(r#"{"info":{"id":"msg_2","sessionID":"ses_1",
    ///     "error":{"name":"MessageAbortedError","data":{"message":"Aborted"}}},"parts":[]}"#)?;
    /// let err = reply.into_result().unwrap_err();
    /// assert!(matches!(&err, Error::TurnFailed { error, .. } if error.is_aborted()));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn into_result(self) -> Result<PromptReply, Error> {
        match self.info.error {
            None => Ok(self),
            Some(error) => Err(Error::TurnFailed {
                session_id: self.info.session_id,
                message_id: self.info.id,
                error,
            }),
        }
    }
}

fn text_of(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) if !t.synthetic && !t.ignored => Some(t.text.as_str()),
            _ => None,
        })
        .collect()
}

/// What a session is doing (`GET /session/status`, `session.status`).
#[derive(Debug, Clone, PartialEq)]
pub enum SessionStatus {
    /// Nothing runs.
    Idle,
    /// A turn runs.
    Busy,
    /// The model call failed and will be retried.
    Retry {
        /// Attempt number.
        attempt: u64,
        /// Why it is retrying.
        message: String,
        /// When the next attempt starts, ms since the Unix epoch.
        next: u64,
    },
    /// A status this version does not know, kept raw.
    Unknown {
        /// The `type` field.
        kind: String,
        /// The whole status object.
        raw: Value,
    },
}

impl SessionStatus {
    /// The wire name: idle, busy, retry or the unknown type.
    pub fn kind(&self) -> &str {
        match self {
            SessionStatus::Idle => "idle",
            SessionStatus::Busy => "busy",
            SessionStatus::Retry { .. } => "retry",
            SessionStatus::Unknown { kind, .. } => kind,
        }
    }

    /// True for anything but idle.
    pub fn is_active(&self) -> bool {
        !matches!(self, SessionStatus::Idle)
    }
}

#[derive(Deserialize)]
struct RetryFields {
    #[serde(default, deserialize_with = "num::u64")]
    attempt: u64,
    #[serde(default)]
    message: String,
    #[serde(default, deserialize_with = "num::u64")]
    next: u64,
}

impl<'de> Deserialize<'de> for SessionStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        decode::buffered(d, |raw| {
            let kind = tag(&raw, "type")?;
            Ok(match kind.as_str() {
                "idle" => SessionStatus::Idle,
                "busy" => SessionStatus::Busy,
                "retry" => {
                    let r: RetryFields = typed(&raw)?;
                    SessionStatus::Retry {
                        attempt: r.attempt,
                        message: r.message,
                        next: r.next,
                    }
                }
                _ => SessionStatus::Unknown { kind, raw },
            })
        })
    }
}

impl Serialize for SessionStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let value = match self {
            SessionStatus::Idle => serde_json::json!({"type": "idle"}),
            SessionStatus::Busy => serde_json::json!({"type": "busy"}),
            SessionStatus::Retry {
                attempt,
                message,
                next,
            } => {
                serde_json::json!({"type": "retry", "attempt": attempt, "message": message, "next": next})
            }
            SessionStatus::Unknown { raw, .. } => raw.clone(),
        };
        value.serialize(s)
    }
}

/// Decodes a variant's fields from the buffered object, passing the inner
/// path of a failure up to the enclosing decoder.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(raw: &Value) -> Result<T, serde_json::Error> {
    decode::from_value(raw).map_err(nested_error)
}

/// Reads the string tag of a tagged object; a missing tag is an error (the
/// object is not of any known version's shape).
pub(crate) fn tag(raw: &Value, field: &'static str) -> Result<String, serde_json::Error> {
    match raw.get(field) {
        Some(value) => decode::from_value(value)
            .map_err(|f| nested_error(decode::prefixed(&format!(".{field}"), f))),
        None => Err(de::Error::missing_field(field)),
    }
}

/// Serializes `inner` (a struct) with a tag field added in front.
pub(crate) fn with_tag<T: Serialize, S: Serializer>(
    inner: &T,
    field: &str,
    name: &str,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut value = serde_json::to_value(inner).map_err(ser::Error::custom)?;
    if let Value::Object(map) = &mut value {
        map.insert(field.to_string(), Value::String(name.to_string()));
    }
    value.serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_types_and_roles_never_fail() {
        let parts: Vec<Part> = serde_json::from_value(json!([
            {"id":"prt_1","sessionID":"ses_1","messageID":"msg_1","type":"text","text":"hi",
             "brandNew":{"x":1}},
            {"id":"prt_2","sessionID":"ses_1","messageID":"msg_1","type":"subtask",
             "prompt":"p","description":"d","agent":"general"},
            {"id":"prt_3","sessionID":"ses_1","messageID":"msg_1","type":"tool","callID":"c",
             "tool":"bash","state":{"status":"queued","input":{}}}
        ]))
        .unwrap();
        assert!(matches!(&parts[0], Part::Text(t) if t.text == "hi"));
        assert!(
            matches!(&parts[1], Part::Unknown { kind, raw, .. } if kind == "subtask" && raw["agent"] == "general")
        );
        assert_eq!(parts[1].id(), "prt_2");
        assert_eq!(parts[1].message_id(), "msg_1");
        assert_eq!(parts[1].session_id(), "ses_1");
        match &parts[2] {
            Part::Tool(t) => assert_eq!(t.state.status, ToolStatus::Other("queued".into())),
            other => panic!("{other:?}"),
        }

        let message: Message =
            serde_json::from_value(json!({"id":"msg_9","sessionID":"ses_1","role":"system"}))
                .unwrap();
        assert_eq!((message.role(), message.id().as_str()), ("system", "msg_9"));
        assert_eq!(message.session_id(), "ses_1");

        let status: SessionStatus =
            serde_json::from_value(json!({"type":"paused","until":5})).unwrap();
        assert_eq!(status.kind(), "paused");
        let retry: SessionStatus = serde_json::from_value(
            json!({"type":"retry","attempt":2,"message":"rate limited","next":99}),
        )
        .unwrap();
        assert_eq!(
            retry,
            SessionStatus::Retry {
                attempt: 2,
                message: "rate limited".into(),
                next: 99
            }
        );
    }

    #[test]
    fn a_part_without_a_type_is_an_error() {
        let err = crate::decode::from_str::<Vec<Part>>(r#"[{"id":"prt_1"}]"#).unwrap_err();
        assert_eq!(err.message, "missing field `type`");
    }

    #[test]
    fn typed_values_serialize_back_to_the_wire_shape() {
        let raw = json!({"id":"prt_1","sessionID":"ses_1","messageID":"msg_1",
            "type":"step-finish","reason":"stop","cost":0.5,
            "tokens":{"total":15,"input":10,"output":5,"reasoning":0,"cache":{"read":0,"write":0}}});
        let part: Part = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(serde_json::to_value(&part).unwrap(), raw);
        let unknown = json!({"type":"patch","id":"prt_2","files":["a"]});
        let part: Part = serde_json::from_value(unknown.clone()).unwrap();
        assert_eq!(serde_json::to_value(&part).unwrap(), unknown);
        let user = json!({"id":"msg_1","sessionID":"ses_1","role":"user","time":{"created":1},
            "agent":"build","model":{"providerID":"fake","modelID":"echo"}});
        let message: Message = serde_json::from_value(user.clone()).unwrap();
        assert_eq!(serde_json::to_value(&message).unwrap(), user);
    }

    #[test]
    fn message_errors_read_their_message() {
        let info: AssistantMessage = serde_json::from_value(json!({
            "id":"msg_1","sessionID":"ses_1","role":"assistant","time":{"created":1,"completed":2},
            "error":{"name":"MessageAbortedError","data":{"message":"Aborted"}},
            "modelID":"echo","providerID":"fake","mode":"build","agent":"build",
            "path":{"cwd":"/","root":"/"},"cost":0,"tokens":{"input":0,"output":0,"reasoning":0,"cache":{"read":0,"write":0}}
        }))
        .unwrap();
        let error = info.error.as_ref().unwrap();
        assert!(error.is_aborted() && info.is_completed());
        assert_eq!(error.to_string(), "MessageAbortedError: Aborted");
    }

    /// A blocking prompt's answer as the server sends it, with `error` set
    /// when given.
    fn reply_fixture(error: Option<Value>) -> PromptReply {
        let mut info = json!({
            "id":"msg_2","sessionID":"ses_1","role":"assistant","parentID":"msg_1",
            "time":{"created":1,"completed":2},"modelID":"echo","providerID":"fake",
            "mode":"build","agent":"build","cost":0,
            "tokens":{"input":1,"output":2,"reasoning":0,"cache":{"read":0,"write":0}}
        });
        if let Some(error) = error {
            info["error"] = error;
        }
        let text = json!({"info": info, "parts": [
            {"id":"prt_1","sessionID":"ses_1","messageID":"msg_2","type":"text","text":"half an answer"}
        ]})
        .to_string();
        decode::from_str(&text).unwrap()
    }

    #[test]
    fn a_good_reply_has_no_error_and_is_ok() {
        let reply = reply_fixture(None);
        assert!(reply.error().is_none());
        let ok = reply.clone().into_result().unwrap();
        assert_eq!(ok, reply);
        assert_eq!(ok.info.parent_id.as_ref().unwrap(), "msg_1");
    }

    #[test]
    fn a_failed_reply_says_why_and_turns_into_an_error() {
        let reply = reply_fixture(Some(json!({
            "name":"APIError","data":{"message":"rate limited","statusCode":429,"isRetryable":true}
        })));
        let error = reply.error().expect("the error");
        assert_eq!(
            (error.name.as_str(), error.message()),
            ("APIError", Some("rate limited"))
        );
        assert_eq!(reply.text(), "half an answer");
        match reply.into_result() {
            Err(Error::TurnFailed {
                session_id,
                message_id,
                error,
            }) => {
                assert_eq!(
                    (session_id.as_str(), message_id.as_str()),
                    ("ses_1", "msg_2")
                );
                assert_eq!(error.data["statusCode"], 429);
            }
            other => panic!("{other:?}"),
        }
        let aborted = reply_fixture(Some(
            json!({"name":"MessageAbortedError","data":{"message":"Aborted"}}),
        ));
        let message = aborted.into_result().unwrap_err().to_string();
        assert!(
            message.starts_with("session ses_1: the turn failed (assistant message msg_2): MessageAbortedError: Aborted"),
            "{message}"
        );
        assert!(message.contains("abort call"), "{message}");
    }
}

/// An answer to a tool's permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionReply {
    /// Allow this one call.
    Once,
    /// Allow it, and calls like it, from now on.
    Always,
    /// Refuse: the tool gets an error and the turn goes on.
    Reject,
}

impl PermissionReply {
    /// What the server expects: `once`, `always`, `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionReply::Once => "once",
            PermissionReply::Always => "always",
            PermissionReply::Reject => "reject",
        }
    }
}
