//! What the client sends: new sessions, prompts, model references.

use crate::Error;
use crate::ids::{MessageId, SessionId};
use crate::types::ModelRef;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

impl ModelRef {
    /// Makes a reference from its two halves.
    pub fn new(provider_id: impl Into<String>, model_id: impl Into<String>) -> ModelRef {
        ModelRef {
            provider_id: provider_id.into(),
            model_id: model_id.into(),
        }
    }

    /// Parses `provider/model`. The model part may contain further slashes
    /// (`openrouter/anthropic/claude-sonnet-4`); both parts must be non-empty.
    ///
    /// ```
    /// use opencode_api::ModelRef;
    /// let m = ModelRef::parse("fake/echo").unwrap();
    /// assert_eq!((m.provider_id.as_str(), m.model_id.as_str()), ("fake", "echo"));
    /// assert!(ModelRef::parse("echo").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<ModelRef, Error> {
        Self::parse_inner(input, None)
    }

    /// Like [`parse`](Self::parse), but a string without a slash names a
    /// model of `default_provider`.
    pub fn parse_with_default(input: &str, default_provider: &str) -> Result<ModelRef, Error> {
        Self::parse_inner(input, Some(default_provider))
    }

    fn parse_inner(input: &str, default_provider: Option<&str>) -> Result<ModelRef, Error> {
        let invalid = |reason: &str| Error::InvalidModel {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = input.trim();
        if trimmed.chars().any(char::is_whitespace) {
            return Err(invalid("contains white space"));
        }
        let (provider, model) = match trimmed.split_once('/') {
            Some(pair) => pair,
            None => match default_provider {
                Some(p) if !p.trim().is_empty() => (p.trim(), trimmed),
                _ => {
                    return Err(invalid(
                        "expected provider/model, e.g. anthropic/claude-sonnet-4",
                    ));
                }
            },
        };
        if provider.is_empty() {
            return Err(invalid("the provider (before the first slash) is empty"));
        }
        if model.is_empty() {
            return Err(invalid("the model (after the first slash) is empty"));
        }
        Ok(ModelRef::new(provider, model))
    }
}

impl FromStr for ModelRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelRef::parse(s)
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider_id, self.model_id)
    }
}

/// The body of `POST /session`. All fields are optional.
///
/// ```
/// use opencode_api::{ModelRef, NewSession};
/// let s = NewSession::titled("refactor").model(ModelRef::new("fake", "echo"));
/// assert_eq!(s.title.as_deref(), Some("refactor"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSession {
    /// The title; the server makes one up when absent.
    pub title: Option<String>,
    /// Make it a child of this session.
    pub parent_id: Option<SessionId>,
    /// The agent, e.g. `build` or `plan`.
    pub agent: Option<String>,
    /// The model.
    pub model: Option<ModelRef>,
}

impl NewSession {
    /// A session with nothing chosen.
    pub fn new() -> NewSession {
        NewSession::default()
    }

    /// A session with a title.
    pub fn titled(title: impl Into<String>) -> NewSession {
        NewSession {
            title: Some(title.into()),
            ..NewSession::default()
        }
    }

    /// Sets the parent session.
    pub fn parent(mut self, parent_id: impl Into<SessionId>) -> Self {
        self.parent_id = Some(parent_id.into());
        self
    }

    /// Sets the agent.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Sets the model.
    pub fn model(mut self, model: ModelRef) -> Self {
        self.model = Some(model);
        self
    }
}

impl Serialize for NewSession {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Sessions spell the model {id, providerID}, unlike prompts.
        #[derive(Serialize)]
        struct SessionModelBody<'a> {
            id: &'a str,
            #[serde(rename = "providerID")]
            provider_id: &'a str,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            title: Option<&'a str>,
            #[serde(rename = "parentID", skip_serializing_if = "Option::is_none")]
            parent_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            agent: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            model: Option<SessionModelBody<'a>>,
        }
        Body {
            title: self.title.as_deref(),
            parent_id: self.parent_id.as_ref().map(SessionId::as_str),
            agent: self.agent.as_deref(),
            model: self.model.as_ref().map(|m| SessionModelBody {
                id: &m.model_id,
                provider_id: &m.provider_id,
            }),
        }
        .serialize(s)
    }
}

/// One input part of a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PartInput {
    /// Text.
    Text {
        /// A client-made part ID (`prt_...`), see
        /// [`PromptRequest::with_part_ids`].
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The text.
        text: String,
    },
    /// A file by URL (`file://...` or `data:...`).
    File {
        /// A client-made part ID (`prt_...`), see
        /// [`PromptRequest::with_part_ids`].
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// MIME type, e.g. `text/plain`.
        mime: String,
        /// Where the content is.
        url: String,
        /// The name shown to the model.
        #[serde(skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
    },
}

/// The body of `POST /session/{id}/message` and `/prompt_async`.
///
/// ```
/// use opencode_api::{new_message_id, PromptRequest};
/// let p = PromptRequest::text("say hi").message_id(new_message_id()).agent("build");
/// let json = serde_json::to_value(&p).unwrap();
/// assert_eq!(json["parts"][0]["text"], "say hi");
/// assert!(json["messageID"].as_str().unwrap().starts_with("msg_"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PromptRequest {
    /// A client-made ID for the user message (see
    /// [`new_message_id`](crate::new_message_id)); the same ID twice does
    /// not start a second turn.
    #[serde(rename = "messageID", skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    /// The model; the session's or the configured default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// The agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Store the prompt without asking the model.
    #[serde(rename = "noReply", skip_serializing_if = "Option::is_none")]
    pub no_reply: Option<bool>,
    /// An extra system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Turn tools on or off by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<BTreeMap<String, bool>>,
    /// The content.
    pub parts: Vec<PartInput>,
}

impl PromptRequest {
    /// A prompt of one text part.
    pub fn text(text: impl Into<String>) -> PromptRequest {
        PromptRequest {
            parts: vec![PartInput::Text {
                id: None,
                text: text.into(),
            }],
            ..PromptRequest::default()
        }
    }

    /// Gives each part without an ID a client-made one (ascending, in
    /// order). OpenCode stores a prompt sent again with the same message ID
    /// in the same message and adds its parts again unless they carry the
    /// same IDs (measured with 1.18.33: the text twice): a prompt that may
    /// be sent more than once gets its part IDs before the first send.
    ///
    /// ```
    /// use opencode_api::PromptRequest;
    /// let p = PromptRequest::text("hi").with_part_ids();
    /// let json = serde_json::to_value(&p).unwrap();
    /// let id = json["parts"][0]["id"].as_str().unwrap().to_string();
    /// assert!(id.starts_with("prt_"));
    /// // Kept when given again.
    /// let again = serde_json::to_value(p.with_part_ids()).unwrap();
    /// assert_eq!(again["parts"][0]["id"], id.as_str());
    /// ```
    pub fn with_part_ids(mut self) -> Self {
        for part in &mut self.parts {
            let (PartInput::Text { id, .. } | PartInput::File { id, .. }) = part;
            id.get_or_insert_with(crate::new_part_id);
        }
        self
    }

    /// Sets the client-made message ID (a [`MessageId`], `&MessageId` or
    /// string).
    pub fn message_id(mut self, id: impl Into<MessageId>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Sets the model.
    pub fn model(mut self, model: ModelRef) -> Self {
        self.model = Some(model);
        self
    }

    /// Sets the agent.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Sets an extra system prompt.
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// Stores the prompt without a reply when true.
    pub fn no_reply(mut self, no_reply: bool) -> Self {
        self.no_reply = Some(no_reply);
        self
    }

    /// Turns a tool on or off.
    pub fn tool(mut self, name: impl Into<String>, enabled: bool) -> Self {
        self.tools
            .get_or_insert_with(BTreeMap::new)
            .insert(name.into(), enabled);
        self
    }

    /// Appends a part.
    pub fn part(mut self, part: PartInput) -> Self {
        self.parts.push(part);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn model_strings() {
        let m = ModelRef::parse("openrouter/anthropic/claude").unwrap();
        assert_eq!(m, ModelRef::new("openrouter", "anthropic/claude"));
        assert_eq!(m.to_string(), "openrouter/anthropic/claude");
        assert_eq!(
            ModelRef::parse_with_default("echo", "fake").unwrap(),
            ModelRef::new("fake", "echo")
        );
        assert_eq!(
            ModelRef::parse_with_default("a/b", "fake").unwrap(),
            ModelRef::new("a", "b")
        );
        for bad in ["echo", "", "/echo", "fake/", "fa ke/echo"] {
            let err = ModelRef::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidModel { .. }), "{bad}: {err}");
        }
        assert!(ModelRef::parse_with_default("echo", " ").is_err());
        assert_eq!("p/m".parse::<ModelRef>().unwrap(), ModelRef::new("p", "m"));
    }

    #[test]
    fn new_session_body_spells_model_as_sessions_do() {
        let body = serde_json::to_value(
            NewSession::titled("t")
                .parent("ses_1")
                .agent("plan")
                .model(ModelRef::new("fake", "echo")),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"title":"t","parentID":"ses_1","agent":"plan","model":{"id":"echo","providerID":"fake"}})
        );
        assert_eq!(serde_json::to_value(NewSession::new()).unwrap(), json!({}));
    }

    #[test]
    fn prompt_body_matches_the_schema() {
        let body = serde_json::to_value(
            PromptRequest::text("hi")
                .message_id("msg_x")
                .model(ModelRef::new("fake", "echo"))
                .no_reply(true)
                .tool("bash", false)
                .part(PartInput::File {
                    id: None,
                    mime: "text/plain".into(),
                    url: "file:///tmp/a".into(),
                    filename: None,
                }),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({
                "messageID": "msg_x",
                "model": {"providerID": "fake", "modelID": "echo"},
                "noReply": true,
                "tools": {"bash": false},
                "parts": [
                    {"type": "text", "text": "hi"},
                    {"type": "file", "mime": "text/plain", "url": "file:///tmp/a"}
                ]
            })
        );
    }
}
