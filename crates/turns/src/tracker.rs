//! What one turn makes of its session's events: typed turn events with no
//! duplicates, and when to look at the session's messages to settle it.
//!
//! Pure (no I/O), so it is tested with the captured streams.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use opencode_api::{
    AssistantMessage, Event, EventKind, Message, MessageError, MessageId, MessageWithParts, Part,
    PendingRequest, PromptReply, SessionId, SessionStatus, ToolStatus,
};
use serde_json::Value;

use crate::error::FailReason;
use crate::usage::Usage;

/// A tool call as the turn sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolActivity {
    /// The part id.
    pub part_id: String,
    /// The model's call id.
    pub call_id: String,
    /// The tool's name, e.g. `bash`.
    pub tool: String,
    /// Where it is.
    pub status: ToolStatus,
    /// Its input.
    pub input: Value,
    /// Its output, once completed.
    pub output: Option<String>,
    /// Its error, once failed.
    pub error: Option<String>,
}

/// How a turn ended well.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnDone {
    /// The session.
    pub session_id: SessionId,
    /// The prompt's message ID.
    pub message_id: MessageId,
    /// The final assistant message.
    pub assistant: AssistantMessage,
    /// Its text.
    pub text: String,
    /// Tokens and cost of the whole turn (every step).
    pub usage: Usage,
}

/// What an active turn receives, in order; the last is `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TurnEvent {
    /// Reply text, appended.
    Text {
        /// The text part that grows.
        part_id: String,
        /// The new text.
        delta: String,
    },
    /// Reasoning text, appended.
    Reasoning {
        /// The reasoning part that grows.
        part_id: String,
        /// The new text.
        delta: String,
    },
    /// A tool call was seen for the first time.
    ToolCall(ToolActivity),
    /// A tool call changed status.
    ToolUpdate(ToolActivity),
    /// A tool waits for a permission (answer it, e.g. with
    /// [`Engine::reply_permission`](crate::Engine::reply_permission)); the
    /// watchdog pauses.
    Permission(PendingRequest),
    /// A tool waits for an answer to a question (its `questions`; answer
    /// with [`Engine::reply_question`](crate::Engine::reply_question) or
    /// decline with [`Engine::reject_question`](crate::Engine::reject_question));
    /// the watchdog pauses.
    Question(PendingRequest),
    /// One model step ended, with its usage.
    Usage(Usage),
    /// The turn ended well.
    Done(Box<TurnDone>),
    /// The turn failed.
    Failed {
        /// The prompt's message ID.
        message_id: MessageId,
        /// Why.
        reason: FailReason,
    },
}

impl TurnEvent {
    /// True for `Done` and `Failed`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, TurnEvent::Done(_) | TurnEvent::Failed { .. })
    }
}

/// What the caller should do after an event, besides handing out events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// Nothing.
    None,
    /// This assistant message ended the turn (completed, no tool calls).
    Final(MessageId),
    /// Read the session's messages: the turn may have ended.
    Reconcile,
    /// The send was answered with this final reply before the stream told
    /// it: the stream, which tells every event of the turn, is about to
    /// (read the messages only if it does not soon).
    AwaitFinal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    Reasoning,
}

/// The state of one turn's event handling.
#[derive(Debug)]
pub(crate) struct Tracker {
    session_id: SessionId,
    message_id: MessageId,
    /// Assistant messages of this turn.
    assistants: BTreeSet<MessageId>,
    /// Text and reasoning parts: kind and how many bytes were handed out.
    parts: HashMap<String, (PartKind, usize)>,
    /// Tool parts and the last status handed out.
    tools: HashMap<String, String>,
    /// Step-finish parts already counted.
    steps: HashSet<String>,
    /// The permissions and questions asked and not yet answered (request
    /// id → the asking session and tool call), in this turn's session or a
    /// sub-agent's: while any is open the watchdog pauses.
    asks: BTreeMap<String, (SessionId, Option<String>)>,
    /// The newest state of each assistant message of this turn.
    infos: Vec<AssistantMessage>,
    /// Text parts of this turn, in the order first seen: (message, part,
    /// text so far).
    texts: Vec<(MessageId, String, String)>,
    /// Events may have been lost (a reconnect): settle from the messages,
    /// and hand text out only from whole parts.
    pub(crate) gap: bool,
    /// The events tell this turn from its start: the stream was subscribed
    /// before the prompt was sent (see `Demux::subscribed`), or it told the
    /// prompt's own part, which is stored before the reply begins. Until
    /// then a delta is handed out only for a part seen from its start, and
    /// the end is read from the messages (a step may have been missed).
    pub(crate) started: bool,
}

impl Tracker {
    pub(crate) fn new(session_id: SessionId, message_id: MessageId) -> Tracker {
        Tracker {
            session_id,
            message_id,
            assistants: BTreeSet::new(),
            parts: HashMap::new(),
            tools: HashMap::new(),
            steps: HashSet::new(),
            asks: BTreeMap::new(),
            infos: Vec::new(),
            texts: Vec::new(),
            gap: false,
            started: false,
        }
    }

    /// The turn's end as the events told it, when they tell all of it: the
    /// final assistant message completed, with its text, and no gap.
    pub(crate) fn done_from_events(&self, final_id: &MessageId) -> Option<TurnDone> {
        if self.gap || !self.started {
            return None;
        }
        let assistant = self.infos.iter().find(|a| &a.id == final_id)?;
        let text: String = self
            .texts
            .iter()
            .filter(|(m, _, _)| m == final_id)
            .map(|(_, _, t)| t.as_str())
            .collect();
        if text.is_empty() {
            return None;
        }
        let mut usage = Usage::default();
        for a in &self.infos {
            usage.add(&Usage::from_tokens(&a.tokens, a.cost));
        }
        Some(TurnDone {
            session_id: self.session_id.clone(),
            message_id: self.message_id.clone(),
            assistant: assistant.clone(),
            text,
            usage,
        })
    }

    fn text_entry(&mut self, message: &MessageId, part: &str) -> &mut String {
        let index = match self.texts.iter().position(|(_, p, _)| p == part) {
            Some(i) => i,
            None => {
                self.texts
                    .push((message.clone(), part.to_string(), String::new()));
                self.texts.len() - 1
            }
        };
        &mut self.texts[index].2
    }

    /// Hands out what the session's `messages` hold of this turn's reply
    /// that the events did not: the rest of each text, tool changes, step
    /// usage, in the messages' order.
    pub(crate) fn catch_up(&mut self, messages: &[MessageWithParts], out: &mut Vec<TurnEvent>) {
        for message in messages {
            let Some(a) = message.info.as_assistant() else {
                continue;
            };
            if a.parent_id.as_ref() == Some(&self.message_id) {
                for part in &message.parts {
                    self.on_part(part, out);
                }
            }
        }
    }

    /// How many assistant messages of this turn were seen.
    pub(crate) fn assistants_seen(&self) -> usize {
        self.assistants.len()
    }

    /// Whether `id` is an assistant message of this turn: seen with our
    /// prompt as parent, or made after our prompt (one turn per session).
    fn is_ours(&self, id: &MessageId) -> bool {
        self.assistants.contains(id) || id > &self.message_id
    }

    /// A reply of this turn that a read found begun, with no part yet.
    pub(crate) fn begun(&mut self, a: &AssistantMessage) {
        self.note(a);
    }

    /// The newest state of an assistant message of this turn.
    fn note(&mut self, a: &AssistantMessage) {
        self.assistants.insert(a.id.clone());
        match self.infos.iter_mut().find(|i| i.id == a.id) {
            Some(info) => *info = a.clone(),
            None => self.infos.push(a.clone()),
        }
    }

    /// The server's answer to the prompt's blocking send: the turn's last
    /// assistant message, whole; pushes what it holds that the events did
    /// not hand out. `Final` only when the stream had told of that message
    /// already: the stream is in order, so every earlier message of the
    /// turn (a tool step's, with its usage) was told too; else `Reconcile`
    /// (read them all).
    pub(crate) fn on_answer(&mut self, reply: &PromptReply, out: &mut Vec<TurnEvent>) -> Check {
        let a = &reply.info;
        let told = self.assistants.contains(&a.id);
        self.note(a);
        for part in &reply.parts {
            self.on_part(part, out);
        }
        match (a.error.is_none() && is_final(a), told) {
            (true, true) => Check::Final(a.id.clone()),
            (true, false) if self.started && !self.gap => Check::AwaitFinal,
            _ => Check::Reconcile,
        }
    }

    /// Handles one event of the session; pushes turn events to `out`.
    pub(crate) fn on_event(&mut self, event: &Event, out: &mut Vec<TurnEvent>) -> Check {
        if event.session_id() != Some(&self.session_id) {
            // A sub-agent's session (the demultiplexer routes a turn its
            // descendants' events): its asks are this turn's; the rest is
            // its own work, which only keeps the turn alive.
            match &event.kind {
                EventKind::PermissionAsked(request) => {
                    self.ask(request);
                    out.push(TurnEvent::Permission(request.clone()));
                }
                EventKind::QuestionAsked(request) => {
                    self.ask(request);
                    out.push(TurnEvent::Question(request.clone()));
                }
                _ => {}
            }
            self.answered(event);
            return Check::None;
        }
        let mut check = Check::None;
        match &event.kind {
            EventKind::MessageUpdated(update) => {
                if let Message::Assistant(a) = &update.info {
                    let parent_ours = a.parent_id.as_ref() == Some(&self.message_id);
                    if parent_ours || self.is_ours(&a.id) {
                        self.note(a);
                        if a.error.is_some() {
                            check = Check::Reconcile;
                        } else if is_final(a) {
                            check = Check::Final(a.id.clone());
                        }
                    }
                }
            }
            // After a gap the deltas are not handed out: those lost in it
            // cannot be placed back in the middle, so the rest of each part
            // comes from its whole text (its update, the answer, a read),
            // after what was handed out before the gap.
            // Before the turn is heard from its start, a part first met in
            // a delta began unheard: its deltas cannot be placed either.
            EventKind::MessagePartDelta(delta)
                if self.is_ours(&delta.message_id)
                    && delta.field == "text"
                    && !self.gap
                    && (self.started || self.parts.contains_key(&delta.part_id)) =>
            {
                let entry = self
                    .parts
                    .entry(delta.part_id.clone())
                    .or_insert((PartKind::Text, 0));
                entry.1 += delta.delta.len();
                let kind = entry.0;
                out.push(text_event(kind, &delta.part_id, delta.delta.clone()));
                if kind == PartKind::Text {
                    self.text_entry(&delta.message_id, &delta.part_id)
                        .push_str(&delta.delta);
                }
            }
            EventKind::MessagePartUpdated(update) if self.is_ours(update.part.message_id()) => {
                self.on_part(&update.part, out);
            }
            // The prompt's own part: stored before its reply begins.
            EventKind::MessagePartUpdated(update)
                if update.part.message_id() == &self.message_id =>
            {
                self.started = true;
            }
            EventKind::PermissionAsked(request) => {
                self.ask(request);
                out.push(TurnEvent::Permission(request.clone()));
            }
            EventKind::QuestionAsked(request) => {
                self.ask(request);
                out.push(TurnEvent::Question(request.clone()));
            }
            EventKind::SessionIdle(_) | EventKind::SessionError(_) => check = Check::Reconcile,
            EventKind::SessionStatus(s) if s.status == SessionStatus::Idle => {
                check = Check::Reconcile;
            }
            _ => {}
        }
        self.answered(event);
        check
    }

    /// Whether a permission or question waits for its answer (the
    /// watchdog pauses meanwhile).
    pub(crate) fn waiting(&self) -> bool {
        !self.asks.is_empty()
    }

    /// The permission and question requests still waiting for an answer.
    pub(crate) fn open_asks(&self) -> impl Iterator<Item = &str> {
        self.asks.keys().map(String::as_str)
    }

    fn ask(&mut self, request: &PendingRequest) {
        let call = request.tool.as_ref().map(|t| t.call_id.clone());
        self.asks
            .insert(request.id.clone(), (request.session_id.clone(), call));
    }

    /// Closes the asks an event of the session answers: its reply
    /// (`permission.replied`, `question.replied`, `question.rejected`),
    /// the asking tool call ending (answered where the stream did not
    /// hear it), or the step or the turn ending (no tool waits then).
    fn answered(&mut self, event: &Event) {
        let Some(session) = event.session_id() else {
            return;
        };
        let mut close_session = || self.asks.retain(|_, (s, _)| s != session);
        match &event.kind {
            EventKind::Unknown { kind, raw, .. }
                if matches!(
                    kind.as_str(),
                    "permission.replied" | "question.replied" | "question.rejected"
                ) =>
            {
                if let Some(id) = raw["properties"]["requestID"].as_str() {
                    self.asks.remove(id);
                }
            }
            EventKind::MessagePartUpdated(update) => match &update.part {
                Part::Tool(tool) if tool.state.status.is_finished() => {
                    self.asks.retain(|_, (s, call)| {
                        s != session || call.as_deref() != Some(tool.call_id.as_str())
                    });
                }
                Part::StepFinish(_) => close_session(),
                _ => {}
            },
            EventKind::SessionIdle(_) | EventKind::SessionError(_) => close_session(),
            EventKind::SessionStatus(s) if s.status == SessionStatus::Idle => close_session(),
            _ => {}
        }
    }

    fn on_part(&mut self, part: &Part, out: &mut Vec<TurnEvent>) {
        match part {
            Part::Text(p) => {
                self.on_full_text(PartKind::Text, &p.id, &p.text, out);
                let text = if p.synthetic || p.ignored {
                    String::new()
                } else {
                    p.text.clone()
                };
                *self.text_entry(&p.message_id, &p.id) = text;
            }
            Part::Reasoning(p) => self.on_full_text(PartKind::Reasoning, &p.id, &p.text, out),
            Part::Tool(p) => {
                let status = p.state.status.as_str().to_string();
                let activity = ToolActivity {
                    part_id: p.id.clone(),
                    call_id: p.call_id.clone(),
                    tool: p.tool.clone(),
                    status: p.state.status.clone(),
                    input: p.state.input.clone(),
                    output: p.state.output.clone(),
                    error: p.state.error.clone(),
                };
                match self.tools.insert(p.id.clone(), status.clone()) {
                    None => out.push(TurnEvent::ToolCall(activity)),
                    Some(old) if old != status => out.push(TurnEvent::ToolUpdate(activity)),
                    Some(_) => {}
                }
            }
            Part::StepFinish(p) if self.steps.insert(p.id.clone()) => {
                out.push(TurnEvent::Usage(Usage::from_tokens(&p.tokens, p.cost)));
            }
            _ => {}
        }
    }

    /// A part's whole text: hand out only what the deltas did not.
    fn on_full_text(&mut self, kind: PartKind, id: &str, text: &str, out: &mut Vec<TurnEvent>) {
        let entry = self.parts.entry(id.to_string()).or_insert((kind, 0));
        entry.0 = kind;
        if text.len() > entry.1 && text.is_char_boundary(entry.1) {
            let rest = text[entry.1..].to_string();
            entry.1 = text.len();
            out.push(text_event(kind, id, rest));
        }
    }
}

fn text_event(kind: PartKind, part_id: &str, delta: String) -> TurnEvent {
    let part_id = part_id.to_string();
    match kind {
        PartKind::Text => TurnEvent::Text { part_id, delta },
        PartKind::Reasoning => TurnEvent::Reasoning { part_id, delta },
    }
}

/// An assistant message that ends its turn: completed and not asking for
/// tool calls (a tool step is followed by another message).
fn is_final(a: &AssistantMessage) -> bool {
    a.is_completed() && a.finish.as_deref() != Some("tool-calls")
}

/// What the session's messages say of a prompt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Settled {
    /// The prompt is not stored.
    NotStored,
    /// Stored, its reply is not finished (running, or cut by a crash).
    Unanswered {
        /// Assistant messages of the prompt (a partial reply).
        partial: Vec<MessageId>,
    },
    /// The reply completed.
    Done(Box<TurnDone>),
    /// The reply failed.
    Failed(FailReason),
}

/// Settles a prompt from its session's messages (oldest first).
pub(crate) fn settle(
    session_id: &SessionId,
    message_id: &MessageId,
    messages: &[MessageWithParts],
) -> Settled {
    if !messages.iter().any(|m| m.info.id() == message_id) {
        return Settled::NotStored;
    }
    let ours: Vec<(&AssistantMessage, &MessageWithParts)> = messages
        .iter()
        .filter_map(|m| m.info.as_assistant().map(|a| (a, m)))
        .filter(|(a, _)| a.parent_id.as_ref() == Some(message_id))
        .collect();
    let Some((last, with_parts)) = ours.last() else {
        return Settled::Unanswered {
            partial: Vec::new(),
        };
    };
    if let Some(error) = &last.error {
        return Settled::Failed(reason_of(error));
    }
    if is_final(last) {
        let mut usage = Usage::default();
        for (a, _) in &ours {
            usage.add(&Usage::from_tokens(&a.tokens, a.cost));
        }
        return Settled::Done(Box::new(TurnDone {
            session_id: session_id.clone(),
            message_id: message_id.clone(),
            assistant: (*last).clone(),
            text: with_parts.text(),
            usage,
        }));
    }
    Settled::Unanswered {
        partial: ours.iter().map(|(a, _)| a.id.clone()).collect(),
    }
}

pub(crate) fn reason_of(error: &MessageError) -> FailReason {
    if error.is_aborted() {
        FailReason::Aborted
    } else {
        FailReason::Model(error.clone())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A capture of opencode 1.18.33 in `shared/opencode/` beside the checkout.
    pub(crate) fn capture(name: &str) -> String {
        let path = format!(
            "{}/../../../shared/opencode/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read the captured stream {path}: {e}"))
    }
    /// The text the turn events hand out, in order.
    pub(crate) fn texts(events: &[TurnEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                TurnEvent::Text { delta, .. } => Some(delta.as_str()),
                _ => None,
            })
            .collect()
    }

    const SESSION: &str = "ses_e0290bec1ffezh7lDYGQZkkAfL";
    const MESSAGE: &str = "msg_1fd6f4c87001R00IywqJ6U962Z";

    fn events(sse: &str) -> Vec<Event> {
        sse.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| Event::parse(d).unwrap())
            .collect()
    }

    #[test]
    fn the_captured_prompt_gives_each_delta_once_and_settles_at_the_end() {
        let mut tracker = Tracker::new(SESSION.into(), MESSAGE.into());
        let mut out = Vec::new();
        let mut checks = 0;
        for event in events(&capture("event-stream-prompt.sse")) {
            match tracker.on_event(&event, &mut out) {
                Check::Reconcile => checks += 1,
                Check::Final(id) => {
                    let done = tracker.done_from_events(&id).expect("all told by events");
                    assert_eq!(done.text, "Hello from the fake model.");
                    assert_eq!((done.usage.input, done.usage.output), (10, 5));
                    checks += 1;
                }
                Check::None => {}
                Check::AwaitFinal => panic!("an event is not an answer"),
            }
        }
        let text = texts(&out);
        assert_eq!(text, "Hello from the fake model.");
        let deltas = out
            .iter()
            .filter(|e| matches!(e, TurnEvent::Text { .. }))
            .count();
        assert_eq!(deltas, 5, "the final part update repeats nothing");
        let usage: Vec<_> = out
            .iter()
            .filter_map(|e| match e {
                TurnEvent::Usage(u) => Some(*u),
                _ => None,
            })
            .collect();
        assert_eq!(usage.len(), 1);
        assert_eq!((usage[0].input, usage[0].output), (10, 5));
        // completed message, status idle, session.idle
        assert!(checks >= 2, "{checks}");
    }

    #[test]
    fn other_sessions_and_older_messages_are_ignored() {
        let mut tracker = Tracker::new("ses_other".into(), MESSAGE.into());
        let mut out = Vec::new();
        for event in events(&capture("event-stream-prompt.sse")) {
            assert_eq!(tracker.on_event(&event, &mut out), Check::None);
        }
        assert!(out.is_empty());
        // A later prompt of the same session sees nothing of this turn.
        let mut tracker = Tracker::new(SESSION.into(), "msg_ffffffffffffZZZZ".into());
        for event in events(&capture("event-stream-prompt.sse")) {
            tracker.on_event(&event, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_missed_delta_is_filled_from_the_part_update() {
        let mut tracker = Tracker::new(SESSION.into(), MESSAGE.into());
        let mut out = Vec::new();
        for event in events(&capture("event-stream-prompt.sse"))
            .into_iter()
            .filter(|e| !matches!(&e.kind, EventKind::MessagePartDelta(d) if d.delta == " fake"))
        {
            tracker.on_event(&event, &mut out);
        }
        let text = texts(&out);
        // The gap cannot be placed back in the middle; the text is complete
        // in `Done` (from the messages), and no byte is handed out twice.
        assert_eq!(text.len(), "Hello from the fake model.".len());
    }

    /// Deltas lost in a gap (the stream reconnected) cannot be placed back
    /// in the middle: after it, the text is handed out from the parts'
    /// whole texts, so what is handed out is the reply, in order.
    #[test]
    fn after_a_gap_the_text_is_handed_out_in_order_from_the_whole_part() {
        let mut tracker = Tracker::new("ses_1".into(), "msg_1".into());
        let mut out = Vec::new();
        let event = |json: &str| Event::parse(json).unwrap();
        let delta = |text: &str| {
            event(&format!(
                r#"{{"id":"e","type":"message.part.delta","properties":{{"sessionID":"ses_1","messageID":"msg_2","partID":"prt_1","field":"text","delta":"{text}"}}}}"#
            ))
        };
        tracker.on_event(&delta("Hel"), &mut out);
        // The stream reconnected: "lo wor" was lost.
        tracker.gap = true;
        tracker.on_event(&delta("ld"), &mut out);
        tracker.on_event(
            &event(
                r#"{"id":"e","type":"message.part.updated","properties":{"sessionID":"ses_1","part":{"id":"prt_1","sessionID":"ses_1","messageID":"msg_2","type":"text","text":"Hello world"}}}"#,
            ),
            &mut out,
        );
        let text = texts(&out);
        assert_eq!(text, "Hello world");
    }

    /// OpenCode 1.18.33 sends `server.connected` before it subscribes the
    /// stream to its events (measured: a prompt stored 9 ms after that
    /// frame arrived was not told), so a turn may hear of its reply from
    /// the middle. A part whose start was missed is handed out from its
    /// whole text; one seen from its start streams; the end is read.
    #[test]
    fn a_turn_heard_from_the_middle_hands_out_only_what_it_can_place() {
        let mut tracker = Tracker::new("ses_1".into(), "msg_1".into());
        let mut out = Vec::new();
        let event = |json: &str| Event::parse(json).unwrap();
        let delta = |part: &str, text: &str| {
            event(&format!(
                r#"{{"id":"e","type":"message.part.delta","properties":{{"sessionID":"ses_1","messageID":"msg_2","partID":"{part}","field":"text","delta":"{text}"}}}}"#
            ))
        };
        let part = |part: &str, text: &str| {
            event(&format!(
                r#"{{"id":"e","type":"message.part.updated","properties":{{"sessionID":"ses_1","part":{{"id":"{part}","sessionID":"ses_1","messageID":"msg_2","type":"text","text":"{text}"}}}}}}"#
            ))
        };
        // The part's start and "Hel" came before the stream was subscribed.
        tracker.on_event(&delta("prt_1", "lo"), &mut out);
        tracker.on_event(&part("prt_1", "Hello"), &mut out);
        // A second part, seen from its start, streams.
        tracker.on_event(&part("prt_2", ""), &mut out);
        tracker.on_event(&delta("prt_2", " wor"), &mut out);
        tracker.on_event(&delta("prt_2", "ld"), &mut out);
        assert_eq!(texts(&out), "Hello world");
        let deltas = out
            .iter()
            .filter(|e| matches!(e, TurnEvent::Text { .. }))
            .count();
        assert_eq!(deltas, 3, "{out:?}");
        let completed = event(
            r#"{"id":"e","type":"message.updated","properties":{"info":{"id":"msg_2","parentID":"msg_1","role":"assistant","sessionID":"ses_1","finish":"stop","time":{"created":2,"completed":3}}}}"#,
        );
        let Check::Final(id) = tracker.on_event(&completed, &mut out) else {
            panic!("the completed reply is final");
        };
        // An earlier step may have been missed whole: the end is read.
        assert_eq!(tracker.done_from_events(&id), None);
        // Heard from its start (its prompt's part told), the events tell all.
        let mut tracker = Tracker::new("ses_1".into(), "msg_1".into());
        let mut out = Vec::new();
        tracker.on_event(
            &event(
                r#"{"id":"e","type":"message.part.updated","properties":{"sessionID":"ses_1","part":{"id":"prt_0","sessionID":"ses_1","messageID":"msg_1","type":"text","text":"hi"}}}"#,
            ),
            &mut out,
        );
        tracker.on_event(&delta("prt_1", "Hel"), &mut out);
        tracker.on_event(&delta("prt_1", "lo"), &mut out);
        tracker.on_event(&completed, &mut out);
        assert_eq!(texts(&out), "Hello");
        assert_eq!(
            tracker.done_from_events(&id).map(|d| d.text),
            Some("Hello".into())
        );
    }

    #[test]
    fn a_question_pauses_while_its_own_tool_runs_until_it_is_answered() {
        let mut tracker = Tracker::new("ses_1".into(), "msg_1".into());
        let mut out = Vec::new();
        let event = |json: &str| Event::parse(json).unwrap();
        tracker.on_event(
            &event(
                r#"{"id":"e","type":"question.asked","properties":{"id":"que_1","sessionID":"ses_1","questions":[{"question":"Which?","header":"Pick","options":[{"label":"red","description":"r"}]}]}}"#,
            ),
            &mut out,
        );
        assert!(tracker.waiting());
        match &out[0] {
            TurnEvent::Question(request) => {
                assert_eq!(request.questions[0].options[0].label, "red")
            }
            other => panic!("{other:?}"),
        }
        // The question tool's own part goes to `running` after the ask, and
        // the session says busy: still waiting.
        tracker.on_event(
            &event(
                r#"{"id":"e","type":"message.part.updated","properties":{"sessionID":"ses_1","part":{"id":"prt_1","sessionID":"ses_1","messageID":"msg_2","type":"tool","callID":"c1","tool":"question","state":{"status":"running","input":{},"time":{"start":1}}}}}"#,
            ),
            &mut out,
        );
        tracker.on_event(
            &event(
                r#"{"id":"e","type":"session.status","properties":{"sessionID":"ses_1","status":{"type":"busy"}}}"#,
            ),
            &mut out,
        );
        assert!(
            tracker.waiting(),
            "the pending tool's own update ended the pause"
        );
        tracker.on_event(
            &event(
                r#"{"id":"e","type":"question.replied","properties":{"sessionID":"ses_1","requestID":"que_1","answers":[["red"]]}}"#,
            ),
            &mut out,
        );
        assert!(!tracker.waiting());
    }

    #[test]
    fn a_permission_pauses_until_it_is_answered() {
        let mut tracker = Tracker::new("ses_1".into(), "msg_1".into());
        let mut out = Vec::new();
        let asked = Event::parse(
            r#"{"id":"e","type":"permission.asked","properties":{"id":"per_1","sessionID":"ses_1","permission":"bash","patterns":[],"metadata":{},"always":[]}}"#,
        )
        .unwrap();
        tracker.on_event(&asked, &mut out);
        assert!(tracker.waiting());
        assert!(matches!(out[0], TurnEvent::Permission(_)));
        let busy = Event::parse(
            r#"{"id":"e","type":"session.status","properties":{"sessionID":"ses_1","status":{"type":"busy"}}}"#,
        )
        .unwrap();
        tracker.on_event(&busy, &mut out);
        assert!(tracker.waiting(), "busy is no answer");
        let replied = Event::parse(
            r#"{"id":"e","type":"permission.replied","properties":{"sessionID":"ses_1","requestID":"per_1","reply":"once"}}"#,
        )
        .unwrap();
        tracker.on_event(&replied, &mut out);
        assert!(!tracker.waiting());
    }

    /// Parallel tools: one asks for permission, another finishes, and a
    /// second ask is answered; the pause lasts while any ask is open.
    #[test]
    fn the_pause_lasts_while_any_ask_is_open_whatever_else_the_session_does() {
        let mut tracker = Tracker::new("ses_1".into(), "msg_1".into());
        let mut out = Vec::new();
        let mut on = |tracker: &mut Tracker, json: &str| {
            tracker.on_event(&Event::parse(json).unwrap(), &mut out);
        };
        on(
            &mut tracker,
            r#"{"id":"e","type":"permission.asked","properties":{"id":"per_1","sessionID":"ses_1","permission":"bash","patterns":[],"metadata":{},"always":[],"tool":{"messageID":"msg_2","callID":"c1"}}}"#,
        );
        on(
            &mut tracker,
            r#"{"id":"e","type":"message.part.updated","properties":{"sessionID":"ses_1","part":{"id":"prt_2","sessionID":"ses_1","messageID":"msg_2","type":"tool","callID":"c2","tool":"read","state":{"status":"completed","input":{},"output":"x","title":"","metadata":{},"time":{"start":1,"end":2}}}}}"#,
        );
        assert!(tracker.waiting(), "another tool finished: still asked");
        on(
            &mut tracker,
            r#"{"id":"e","type":"permission.asked","properties":{"id":"per_2","sessionID":"ses_1","permission":"edit","patterns":[],"metadata":{},"always":[],"tool":{"messageID":"msg_2","callID":"c3"}}}"#,
        );
        on(
            &mut tracker,
            r#"{"id":"e","type":"permission.replied","properties":{"sessionID":"ses_1","requestID":"per_2","reply":"once"}}"#,
        );
        assert!(tracker.waiting(), "per_1 is still open");
        // The asking tool itself ends (answered where this stream did not
        // hear it): nothing is open.
        on(
            &mut tracker,
            r#"{"id":"e","type":"message.part.updated","properties":{"sessionID":"ses_1","part":{"id":"prt_1","sessionID":"ses_1","messageID":"msg_2","type":"tool","callID":"c1","tool":"bash","state":{"status":"error","input":{},"error":"rejected","time":{"start":1,"end":2}}}}}"#,
        );
        assert!(!tracker.waiting());
    }

    /// A sub-agent's session asks: the request is handed out and pauses
    /// the watchdog; the sub-agent's own end does not end this turn.
    #[test]
    fn a_sub_agents_ask_is_handed_out_and_its_end_is_not_the_turns() {
        let mut tracker = Tracker::new("ses_1".into(), "msg_1".into());
        let mut out = Vec::new();
        let mut on = |tracker: &mut Tracker, json: &str| {
            tracker.on_event(&Event::parse(json).unwrap(), &mut out)
        };
        on(
            &mut tracker,
            r#"{"id":"e","type":"permission.asked","properties":{"id":"per_1","sessionID":"ses_2","permission":"bash","patterns":[],"metadata":{},"always":[],"tool":{"messageID":"msg_7","callID":"c1"}}}"#,
        );
        assert!(tracker.waiting());
        // The same call id in the turn's own session is another call.
        on(
            &mut tracker,
            r#"{"id":"e","type":"message.part.updated","properties":{"sessionID":"ses_1","part":{"id":"prt_2","sessionID":"ses_1","messageID":"msg_2","type":"tool","callID":"c1","tool":"read","state":{"status":"completed","input":{},"output":"x","title":"","metadata":{},"time":{"start":1,"end":2}}}}}"#,
        );
        assert!(tracker.waiting());
        let idle = on(
            &mut tracker,
            r#"{"id":"e","type":"session.idle","properties":{"sessionID":"ses_2"}}"#,
        );
        assert_eq!(idle, Check::None, "the sub-agent's end");
        assert!(!tracker.waiting(), "the sub-agent ended: nothing waits");
        assert!(
            matches!(out.first(), Some(TurnEvent::Permission(r)) if r.id == "per_1"),
            "{out:?}"
        );
    }

    #[test]
    fn settle_reads_the_messages() {
        let user = r#"{"info":{"id":"msg_1","role":"user","sessionID":"ses_1","time":{"created":1}},"parts":[]}"#;
        let running = r#"{"info":{"id":"msg_2","parentID":"msg_1","role":"assistant","sessionID":"ses_1","time":{"created":2}},"parts":[]}"#;
        let done = r#"{"info":{"id":"msg_2","parentID":"msg_1","role":"assistant","sessionID":"ses_1","finish":"stop","tokens":{"input":4,"output":2},"cost":0.1,"time":{"created":2,"completed":3}},"parts":[{"id":"prt_1","type":"text","text":"hi","messageID":"msg_2","sessionID":"ses_1"}]}"#;
        let failed = r#"{"info":{"id":"msg_2","parentID":"msg_1","role":"assistant","sessionID":"ses_1","error":{"name":"APIError","data":{"message":"no"}},"time":{"created":2}},"parts":[]}"#;
        let parse = |s: &str| -> MessageWithParts { serde_json::from_str(s).unwrap() };
        let (s, m) = (SessionId::from("ses_1"), MessageId::from("msg_1"));
        assert_eq!(settle(&s, &m, &[]), Settled::NotStored);
        assert_eq!(
            settle(&s, &m, &[parse(user)]),
            Settled::Unanswered { partial: vec![] }
        );
        assert_eq!(
            settle(&s, &m, &[parse(user), parse(running)]),
            Settled::Unanswered {
                partial: vec!["msg_2".into()]
            }
        );
        match settle(&s, &m, &[parse(user), parse(done)]) {
            Settled::Done(d) => {
                assert_eq!(d.text, "hi");
                assert_eq!(d.usage.input, 4);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            settle(&s, &m, &[parse(user), parse(failed)]),
            Settled::Failed(FailReason::Model(_))
        ));
    }
}
