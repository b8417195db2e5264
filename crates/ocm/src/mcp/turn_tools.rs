//! The prompt tools of `ocm mcp` on the `turns` crate: `opencode_prompt`
//! (exactly once, with a client-made message ID), `opencode_turn`,
//! `opencode_abort`, `opencode_sessions` and `opencode_answer` (the
//! permission or question a turn waits for, in its `pending`).
//!
//! A turn started here is followed by its own thread until it ends, so a
//! call that returns `running` can be picked up by `opencode_turn`; a
//! turn this process did not start is read from the server by its
//! message ID. Every call returns within [`MAX_WAIT`] plus a few seconds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use manager::Manager;
use opencode_api::{Message, MessageId, ModelRef, PromptRequest, SessionId};
use serde_json::{Map, Value, json};
use turns::{
    Engine, FailReason, Registry, SessionKey, Sessions, Turn, TurnEvent, TurnOptions, Usage,
};

use super::answer::{self, Permissions, Waiting};
use super::sandbox_tools::{Target, config_for, target};
use super::tools::{Context, Failure};
use crate::commands::start_error;

/// The longest a call waits for a turn (clients often give up at 60 s).
pub const MAX_WAIT: Duration = Duration::from_secs(50);
/// How long a call waits without `wait_s`.
const DEFAULT_WAIT: f64 = 30.0;
/// Turns kept in memory before the ended ones are let go.
const MAX_FOLLOWED: usize = 256;
/// How often a waiting call looks for a cancellation.
const SLICE: Duration = Duration::from_millis(100);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The engines and turns of this `ocm mcp` process.
#[derive(Debug, Default)]
pub struct Live {
    engines: Mutex<HashMap<PathBuf, (Arc<Manager>, Engine)>>,
    turns: Mutex<HashMap<String, Arc<Followed>>>,
}

/// A turn followed by its thread.
#[derive(Debug)]
struct Followed {
    session: SessionId,
    message: MessageId,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Clone, Default)]
struct State {
    /// running, done, failed or aborted.
    status: &'static str,
    text: String,
    usage: Usage,
    reply: Option<String>,
    error: Option<String>,
    abort: bool,
    /// Events seen, and the last one's description (progress).
    events: u64,
    activity: String,
    /// The requests the turn waits for, oldest first.
    pending: Vec<Waiting>,
}

impl Followed {
    fn json(&self) -> Value {
        let state = lock(&self.state).clone();
        turn_json(&self.session, &self.message, &state)
    }

    fn ended(&self) -> bool {
        lock(&self.state).status != "running"
    }

    /// Ended without a reply (failed or aborted).
    fn failed(&self) -> bool {
        matches!(lock(&self.state).status, "failed" | "aborted")
    }

    /// Waits until the turn ends, `deadline`, or `stop()`; reports
    /// activity. With `or_asks`, also until the turn waits for an answer
    /// (`pending`): only the caller can move it on.
    fn wait(
        &self,
        deadline: Instant,
        or_asks: bool,
        stop: &dyn Fn() -> bool,
        progress: &dyn Fn(String),
    ) {
        let mut seen = 0;
        // The request last told: events coming together are told as the
        // last one, and a request must not be lost among them.
        let mut told: Option<String> = None;
        let mut state = lock(&self.state);
        loop {
            // Until no event is left unreported (one may come meanwhile).
            while state.events > seen {
                seen = state.events;
                let mut said = vec![state.activity.clone()];
                if let Some(waiting) = state.pending.first()
                    && told.as_deref() != Some(waiting.id())
                {
                    told = Some(waiting.id().to_string());
                    if said[0] != waiting.describe() {
                        said.push(waiting.describe());
                    }
                }
                drop(state);
                said.into_iter().for_each(progress);
                state = lock(&self.state);
            }
            let now = Instant::now();
            let asks = or_asks && !state.pending.is_empty();
            if state.status != "running" || asks || now >= deadline || stop() {
                return;
            }
            let slice = SLICE.min(deadline - now);
            state = self
                .changed
                .wait_timeout(state, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn request_abort(&self) {
        lock(&self.state).abort = true;
        self.changed.notify_all();
    }
}

/// A turn's JSON: `pending` is the oldest request it waits for.
fn turn_json(session: &SessionId, message: &MessageId, state: &State) -> Value {
    json!({
        "status": state.status,
        "sessionId": session.to_string(),
        "messageId": message.to_string(),
        "text": state.text,
        "reply": state.reply,
        "usage": serde_json::to_value(state.usage).unwrap_or(Value::Null),
        "error": state.error,
        "pending": state.pending.first().map_or(Value::Null, Waiting::json),
    })
}

/// The output schema of a turn.
pub fn turn_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "status": {"type": "string", "description": "running, done, failed or aborted"},
            "sessionId": {"type": "string"},
            "messageId": {"type": "string", "description": "the prompt's ID: give it to opencode_turn"},
            "text": {"type": "string", "description": "the reply text so far"},
            "reply": {"type": ["string", "null"], "description": "the final reply, once done"},
            "usage": {"type": ["object", "null"]},
            "error": {"type": ["string", "null"]},
            "pending": {
                "type": ["object", "null"],
                "description": "what the turn waits for: {kind: permission, id, permission} or \
                                {kind: question, id, questions}; answer it with opencode_answer",
            },
        },
        "required": ["status", "sessionId", "messageId"],
    })
}

/// The output schema of `opencode_abort` and `opencode_sessions`.
pub fn other_schema(name: &str) -> Value {
    match name {
        "opencode_sessions" => json!({
            "type": "object",
            "properties": {
                "sessions": {"type": "array", "items": {"type": "object"}},
                "usage": {"type": "object", "description": "totals of the sessions ocm recorded"},
            },
            "required": ["sessions"],
        }),
        "opencode_answer" => json!({
            "type": "object",
            "properties": {
                "answered": {"type": "boolean"},
                "requestId": {"type": "string"},
            },
            "required": ["answered", "requestId"],
        }),
        _ => json!({
            "type": "object",
            "properties": {
                "sessionId": {"type": "string"},
                "aborted": {"type": "boolean"},
                "turn": {"type": ["object", "null"]},
            },
            "required": ["sessionId", "aborted"],
        }),
    }
}

/// The arguments each tool takes: name, JSON type, description, required.
pub fn inputs(name: &str) -> &'static [(&'static str, &'static str, &'static str, bool)] {
    match name {
        "opencode_prompt" => &[
            ("text", "string", "The prompt.", true),
            (
                "session",
                "string",
                "A session ID (ses_...) to continue; default: the project's default session, or the one titled `title`.",
                false,
            ),
            (
                "title",
                "string",
                "A session title: the session with this title, made when missing.",
                false,
            ),
            (
                "model",
                "string",
                "PROVIDER/MODEL, e.g. anthropic/claude-sonnet-4-5.",
                false,
            ),
            (
                "message_id",
                "string",
                "The prompt's message ID (msg_...): give the one a `running` or failed call returned to retry without a duplicate.",
                false,
            ),
            (
                "wait_s",
                "number",
                "How long to wait for the reply, in seconds (default 30, at most 50).",
                false,
            ),
            (
                "permissions",
                "string",
                "What to do when a tool asks for a permission: ask (default: the turn waits, \
                 shown in `pending`, until opencode_answer), allow (each once) or deny.",
                false,
            ),
        ],
        "opencode_turn" => &[
            (
                "message_id",
                "string",
                "The prompt's message ID, as opencode_prompt returned it.",
                true,
            ),
            (
                "session",
                "string",
                "The session ID, when known (faster for a turn another process started).",
                false,
            ),
            (
                "wait_s",
                "number",
                "How long to wait for the turn to end, in seconds (default 30, at most 50; 0: now).",
                false,
            ),
        ],
        "opencode_abort" => &[
            (
                "session",
                "string",
                "The session whose turn to abort.",
                false,
            ),
            (
                "message_id",
                "string",
                "The prompt whose turn to abort.",
                false,
            ),
        ],
        "opencode_answer" => &[
            (
                "request_id",
                "string",
                "The request's ID, the `id` of the turn's `pending` (per_... or que_...).",
                true,
            ),
            (
                "reply",
                "string",
                "A permission's answer: once (allow this call), always (and calls like it), \
                 reject.",
                false,
            ),
            (
                "answers",
                "array",
                "A question's answer: one array per question, of the labels chosen (or a \
                 text of your own where the question allows it), e.g. [[\"blue\"]].",
                false,
            ),
            (
                "reject",
                "boolean",
                "true: decline the question (the tool gets an error, the turn goes on).",
                false,
            ),
        ],
        _ => &[],
    }
}

/// Checks the arguments beyond `project` against [`inputs`].
fn check(name: &str, arguments: &Map<String, Value>) -> Result<(), Failure> {
    let inputs = inputs(name);
    let names: Vec<String> = ["`project`".to_string(), "`project_name`".to_string()]
        .into_iter()
        .chain(inputs.iter().map(|i| format!("`{}`", i.0)))
        .collect();
    for (key, value) in arguments {
        if key == "project" || key == "project_name" {
            if !value.is_string() {
                return Err(input(format!(
                    "`{key}` must be a string ({})",
                    if key == "project" {
                        "a folder path"
                    } else {
                        "a sandbox's name"
                    }
                )));
            }
            continue;
        }
        let Some((_, kind, _, _)) = inputs.iter().find(|i| i.0 == key) else {
            return Err(input(format!(
                "unknown argument `{key}` for {name} (it takes {})",
                names.join(", ")
            )));
        };
        let ok = match *kind {
            "number" => value.as_f64().is_some_and(|n| n >= 0.0),
            // Their shape: answer::check.
            "array" | "boolean" => true,
            _ => value.as_str().is_some_and(|s| !s.trim().is_empty()),
        };
        if !ok {
            return Err(input(format!("`{key}` must be a non-empty {kind}")));
        }
    }
    for (key, ..) in inputs.iter().filter(|i| i.3) {
        if !arguments.contains_key(*key) {
            return Err(input(format!("`{key}` is required for {name}")));
        }
    }
    if !arguments.contains_key("project") && !arguments.contains_key("project_name") {
        return Err(input(format!(
            "`project` (a folder) or `project_name` (a sandbox) is required for {name}"
        )));
    }
    if name == "opencode_abort"
        && !arguments.contains_key("session")
        && !arguments.contains_key("message_id")
    {
        return Err(input("give `session` or `message_id`: the turn to abort"));
    }
    answer::check(name, arguments)
}

fn input(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        details: Vec::new(),
        hint: None,
    }
}

fn arg<'a>(arguments: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    arguments.get(key).and_then(Value::as_str)
}

fn wait_of(arguments: &Map<String, Value>) -> Duration {
    let secs = arguments
        .get("wait_s")
        .and_then(Value::as_f64)
        .unwrap_or(DEFAULT_WAIT);
    Duration::from_secs_f64(secs.max(0.0)).min(MAX_WAIT)
}

/// A `turns` error as a tool failure.
fn failure(error: turns::Error, manager: &Manager, dir: &Path) -> Failure {
    match error {
        turns::Error::Manager(e) => Failure::from(start_error(e, manager, dir)),
        other => {
            let hint = other
                .message_id()
                .map(|id| format!("retry with message_id {id}: it is not sent twice"));
            Failure {
                message: other.to_string(),
                details: Vec::new(),
                hint,
            }
        }
    }
}

/// Runs one of the prompt tools.
pub fn run(
    name: &str,
    ctx: &Context,
    arguments: &Map<String, Value>,
    progress: &dyn Fn(String),
    cancelled: &dyn Fn() -> bool,
) -> Result<Value, Failure> {
    let began = Instant::now();
    check(name, arguments)?;
    // A sandbox's prompts go to the server of its clone.
    let target = target(ctx, arguments)?;
    if let Target::Sandbox {
        name: sandbox,
        repo,
    } = &target
        && !repo.join(".git").exists()
    {
        return Err(Failure {
            message: format!(
                "sandbox {sandbox} has no clone ({} does not exist)",
                repo.display()
            ),
            details: Vec::new(),
            hint: Some(format!(
                "opencode_start with project_name {sandbox} (and git_url the first time) \
                 creates it"
            )),
        });
    }
    let dir = target.dir().to_path_buf();
    if crate::error::folder_problem(&dir).is_some() {
        return Err(Failure::from(crate::error::CliError::NoProject {
            project: dir,
        }));
    }
    let (manager, engine) = ctx.turns.engine(ctx, &dir)?;
    let fail = |e: turns::Error| failure(e, &manager, &dir);
    // A session ID must be one of this project's: --allow holds for it too.
    if let Some(id) = arg(arguments, "session") {
        own_session(&engine, &dir, id, &fail)?;
    }
    match name {
        "opencode_prompt" => {
            let model = match arg(arguments, "model") {
                Some(m) => Some(ModelRef::parse(m).map_err(|e| input(format!("`model`: {e}")))?),
                None => None,
            };
            let mut request = PromptRequest::text(arg(arguments, "text").unwrap_or_default());
            if let Some(model) = &model {
                request = request.model(model.clone());
            }
            if let Some(id) = arg(arguments, "message_id") {
                request = request.message_id(MessageId::from(id));
            }
            // The wait counts from the call's start: a server start is in it.
            let deadline = began + wait_of(arguments);
            let key = arg(arguments, "title")
                .map_or(SessionKey::Default, |t| SessionKey::Title(t.to_string()));
            let registry = Registry::open(&manager, &dir).map_err(fail)?;
            // A retry of a prompt this process follows, running or done,
            // in the session the retry goes to: that turn is the answer. A
            // failed one is sent again, and one whose title has a new
            // session since (it hung) is taken back and sent there.
            if let Some(id) = arg(arguments, "message_id")
                && let Some(followed) = ctx.turns.get(&MessageId::from(id))
                && !followed.failed()
            {
                let target = match arg(arguments, "session") {
                    Some(session) => Some(SessionId::from(session)),
                    None => registry
                        .get(&key.title())
                        .map_err(fail)?
                        .map(|e| e.session_id),
                };
                if target.as_ref() == Some(&followed.session) {
                    followed.wait(deadline, true, cancelled, progress);
                    return Ok(followed.json());
                }
            }
            // The server is started (when it is not running) before the
            // last look: cancelled meanwhile, nothing is sent.
            engine.client().map_err(fail)?;
            if cancelled() {
                return Err(Failure {
                    message: "cancelled before the prompt was sent".into(),
                    details: Vec::new(),
                    hint: None,
                });
            }
            let turn = match arg(arguments, "session") {
                Some(id) => engine.prompt(&SessionId::from(id), request),
                None => Sessions::new(engine.clone(), registry)
                    .prompt(&key, model.as_ref(), request)
                    .map(|(_, turn)| turn),
            }
            .map_err(fail)?;
            let followed = ctx
                .turns
                .follow(turn, engine.clone(), Permissions::of(arguments));
            followed.wait(deadline, true, cancelled, progress);
            if cancelled() && !followed.ended() {
                // Nobody waits for this reply: stop the model.
                followed.request_abort();
                followed.wait(
                    Instant::now() + Duration::from_secs(5),
                    false,
                    &|| false,
                    &|_| {},
                );
            }
            Ok(followed.json())
        }
        "opencode_turn" => {
            let id = MessageId::from(arg(arguments, "message_id").unwrap_or_default());
            if let Some(followed) = ctx.turns.get(&id) {
                followed.wait(
                    Instant::now() + wait_of(arguments),
                    true,
                    cancelled,
                    progress,
                );
                return Ok(followed.json());
            }
            let deadline = Instant::now() + wait_of(arguments);
            loop {
                let value = find_turn(&engine, arguments, &id, &fail)?;
                if value["status"] != "running" || Instant::now() >= deadline || cancelled() {
                    return Ok(value);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        "opencode_answer" => {
            let id = arg(arguments, "request_id").unwrap_or_default();
            let answered = answer::give(&engine, id, &answer::answer_of(arguments), &fail)?;
            ctx.turns.answered(id);
            Ok(answered)
        }
        "opencode_abort" => {
            if let Some(id) = arg(arguments, "message_id")
                && let Some(followed) = ctx.turns.get(&MessageId::from(id))
            {
                let running = !followed.ended();
                followed.request_abort();
                followed.wait(
                    Instant::now() + Duration::from_secs(10),
                    false,
                    &|| false,
                    &|_| {},
                );
                let turn = followed.json();
                return Ok(json!({
                    "sessionId": followed.session.to_string(),
                    "aborted": running && turn["status"] == "aborted",
                    "turn": turn,
                }));
            }
            let session = match arg(arguments, "session") {
                Some(s) => SessionId::from(s),
                None => {
                    let id = MessageId::from(arg(arguments, "message_id").unwrap_or_default());
                    let turn = find_turn(&engine, arguments, &id, &fail)?;
                    SessionId::from(turn["sessionId"].as_str().unwrap_or_default())
                }
            };
            let aborted = engine.with_client(|c| c.abort(&session)).map_err(fail)?;
            Ok(json!({"sessionId": session.to_string(), "aborted": aborted, "turn": null}))
        }
        _ => {
            let registry = Registry::open(&manager, &dir).map_err(fail)?;
            let totals = registry.totals().map_err(fail)?;
            let sessions = Sessions::new(engine.clone(), registry);
            let list: Vec<Value> = sessions
                .list()
                .map_err(fail)?
                .into_iter()
                .map(|view| {
                    let id = view
                        .entry
                        .as_ref()
                        .map(|e| e.session_id.clone())
                        .or_else(|| view.session.as_ref().map(|s| s.id.clone()));
                    let title = view
                        .session
                        .as_ref()
                        .map(|s| s.title.clone())
                        .or_else(|| view.entry.as_ref().map(|e| e.title.clone()));
                    json!({
                        "sessionId": id.map(|i| i.to_string()),
                        "title": title,
                        "key": view.entry.as_ref().map(|e| e.key.clone()),
                        "status": view.entry.as_ref().map(|e| json!(e.status)),
                        "onServer": view.session.is_some(),
                        "turns": view.entry.as_ref().map(|e| e.turns),
                        "model": view.entry.as_ref().and_then(|e| e.model.clone()),
                        "usage": view.entry.as_ref().map(|e| json!(e.usage)),
                    })
                })
                .collect();
            Ok(json!({"sessions": list, "usage": totals}))
        }
    }
}

/// Checks that session `id` is one of the project's (its folder is `dir`).
fn own_session(
    engine: &Engine,
    dir: &Path,
    id: &str,
    fail: &dyn Fn(turns::Error) -> Failure,
) -> Result<(), Failure> {
    let session = match engine.with_client(|c| c.get_session(&SessionId::from(id))) {
        Err(turns::Error::Api(e)) if e.is_not_found() => None,
        other => Some(other.map_err(fail)?),
    };
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    match session {
        Some(s) if real(Path::new(&s.directory)) == real(dir) => Ok(()),
        found => Err(Failure {
            message: match found {
                Some(s) => format!(
                    "session {id} belongs to {}, not to this project",
                    s.directory
                ),
                None => format!("no session {id} on this project's server"),
            },
            details: Vec::new(),
            hint: Some("opencode_sessions lists the project's sessions".into()),
        }),
    }
}

/// A turn read from the server: its session's messages answering `id`.
fn stored_turn(
    engine: &Engine,
    arguments: &Map<String, Value>,
    id: &MessageId,
) -> Result<Option<Value>, turns::Error> {
    let sessions: Vec<SessionId> = match arg(arguments, "session") {
        Some(s) => vec![SessionId::from(s)],
        None => engine
            .with_client(opencode_api::Client::list_sessions)?
            .into_iter()
            .map(|s| s.id)
            .collect(),
    };
    for session in sessions {
        let messages = match engine.with_client(|c| c.list_messages(&session, None)) {
            Ok(m) => m,
            Err(turns::Error::Api(e)) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        if !messages.iter().any(|m| m.info.id() == id) {
            continue;
        }
        let mut text = String::new();
        let mut last_text = String::new();
        let mut usage = Usage::default();
        let mut status = "running";
        let mut error = None;
        // A prompt after this one: this turn is over, whatever the
        // session does now.
        let later = messages
            .iter()
            .any(|m| matches!(m.info, Message::User(_)) && m.info.id() > id);
        for m in &messages {
            let Message::Assistant(a) = &m.info else {
                continue;
            };
            if a.parent_id.as_ref() != Some(id) {
                continue;
            }
            last_text = m.text();
            text.push_str(&last_text);
            usage.add(&Usage::from_tokens(&a.tokens, a.cost));
            if let Some(e) = &a.error {
                status = if e.name == "MessageAbortedError" {
                    "aborted"
                } else {
                    "failed"
                };
                error = Some(e.to_string());
            } else if a.time.completed.is_some() && a.finish.as_deref() != Some("tool-calls") {
                status = "done";
            } else {
                status = "running";
            }
        }
        if status == "done" && !later {
            let idle = engine
                .with_client(|c| c.session_status())?
                .get(&session)
                .is_none_or(|s| !s.is_active());
            if !idle {
                status = "running";
            }
        }
        // Done: the reply is the last message's text, as for a turn
        // followed live.
        let done = status == "done";
        let state = State {
            status,
            reply: done.then(|| last_text.clone()),
            text: if done { last_text } else { text },
            usage,
            error,
            ..State::default()
        };
        return Ok(Some(turn_json(&session, id, &state)));
    }
    Ok(None)
}

/// [`stored_turn`], a failure when the prompt is nowhere.
fn find_turn(
    engine: &Engine,
    arguments: &Map<String, Value>,
    id: &MessageId,
    fail: &dyn Fn(turns::Error) -> Failure,
) -> Result<Value, Failure> {
    stored_turn(engine, arguments, id)
        .map_err(fail)?
        .ok_or_else(|| Failure {
            message: format!("no prompt {id} in this project's sessions"),
            details: Vec::new(),
            hint: Some(
                "give the message_id opencode_prompt returned, with the same project".into(),
            ),
        })
}

impl Live {
    /// The engine of `dir`'s server (made once per project).
    fn engine(&self, ctx: &Context, dir: &Path) -> Result<(Arc<Manager>, Engine), Failure> {
        let mut engines = lock(&self.engines);
        if let Some(found) = engines.get(dir) {
            return Ok(found.clone());
        }
        let manager = Arc::new(
            Manager::new(config_for(ctx, dir)?)
                .map_err(|e| Failure::from(crate::error::CliError::from(e).starting()))?,
        );
        let engine = Engine::managed(Arc::clone(&manager), dir, TurnOptions::default())
            .map_err(|e| failure(e, &manager, dir))?;
        engines.insert(dir.to_path_buf(), (Arc::clone(&manager), engine.clone()));
        Ok((manager, engine))
    }

    fn get(&self, id: &MessageId) -> Option<Arc<Followed>> {
        lock(&self.turns).get(id.as_str()).cloned()
    }

    /// Keeps `followed` for `opencode_turn` and retries. Past
    /// [`MAX_FOLLOWED`] turns the ended ones are let go (the server still
    /// has them: `opencode_turn` reads them from there), so a long-lived
    /// server does not grow with every prompt.
    fn remember(&self, followed: Arc<Followed>) {
        let mut turns = lock(&self.turns);
        if turns.len() >= MAX_FOLLOWED {
            turns.retain(|_, f| !f.ended());
        }
        turns.insert(followed.message.to_string(), followed);
    }

    /// Request `id` was answered: no turn waits for it any more.
    fn answered(&self, id: &str) {
        let turns: Vec<Arc<Followed>> = lock(&self.turns).values().cloned().collect();
        for followed in turns {
            let mut state = lock(&followed.state);
            let before = state.pending.len();
            state.pending.retain(|w| w.id() != id);
            if state.pending.len() != before {
                state.events += 1;
                state.activity = format!("request {id} answered");
                drop(state);
                followed.changed.notify_all();
            }
        }
    }

    /// Follows `turn` on its own thread until it ends; its permission
    /// requests are answered as `permissions` says.
    fn follow(&self, mut turn: Turn, engine: Engine, permissions: Permissions) -> Arc<Followed> {
        let followed = Arc::new(Followed {
            session: turn.session_id().clone(),
            message: turn.message_id().clone(),
            state: Mutex::new(State {
                status: "running",
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        self.remember(Arc::clone(&followed));
        let shared = Arc::clone(&followed);
        std::thread::spawn(move || {
            let f = shared;
            let mut abort_sent = false;
            loop {
                if !abort_sent && lock(&f.state).abort {
                    abort_sent = true;
                    if let Err(e) = turn.abort() {
                        eprintln!(
                            "ocm mcp: aborting {}: {}",
                            f.message,
                            crate::escape::escape(&e.to_string())
                        );
                    }
                }
                let event = turn.next(Instant::now() + SLICE);
                // A permission answered by the policy is never pending.
                let policy = match &event {
                    Ok(Some(TurnEvent::Permission(request))) => permissions
                        .reply()
                        .map(|reply| (reply, engine.reply_permission(&request.id, reply))),
                    _ => None,
                };
                let mut state = lock(&f.state);
                match event {
                    // An answer given elsewhere closes an ask without an
                    // event to hand out.
                    Ok(None) => {
                        let before = state.pending.len();
                        keep_open(&mut state.pending, &turn.open_asks());
                        let changed = state.pending.len() != before;
                        drop(state);
                        if changed {
                            f.changed.notify_all();
                        }
                        continue;
                    }
                    Ok(Some(event)) => {
                        state.events += 1;
                        state.activity = activity(&event);
                        // What the turn still waits for: an answered ask
                        // goes, one still open stays whatever else happens.
                        keep_open(&mut state.pending, &turn.open_asks());
                        if event.is_terminal() {
                            state.pending.clear();
                        }
                        match event {
                            TurnEvent::Permission(request) => match policy {
                                Some((reply, Ok(()))) => {
                                    state.activity = format!(
                                        "permission `{}` answered {}",
                                        request.permission.as_deref().unwrap_or("?"),
                                        reply.as_str()
                                    );
                                }
                                Some((_, Err(e))) => {
                                    let waiting = Waiting::Permission(request);
                                    state.activity = format!(
                                        "{} (answering it failed: {e})",
                                        waiting.describe()
                                    );
                                    state.pending.push(waiting);
                                }
                                None => {
                                    let waiting = Waiting::Permission(request);
                                    state.activity = waiting.describe();
                                    state.pending.push(waiting);
                                }
                            },
                            TurnEvent::Question(request) => {
                                let waiting = Waiting::Question(request);
                                state.activity = waiting.describe();
                                state.pending.push(waiting);
                            }
                            TurnEvent::Text { delta, .. } => state.text.push_str(&delta),
                            TurnEvent::Usage(u) => state.usage.add(&u),
                            TurnEvent::Done(done) => {
                                state.status = "done";
                                state.usage = done.usage;
                                state.text = done.text.clone();
                                state.reply = Some(done.text);
                            }
                            TurnEvent::Failed { reason, .. } => {
                                state.status = if matches!(reason, FailReason::Aborted) {
                                    "aborted"
                                } else {
                                    "failed"
                                };
                                state.error = Some(reason.to_string());
                            }
                            _ => {}
                        }
                    }
                    Err(e) => {
                        state.status = "failed";
                        state.error = Some(e.to_string());
                    }
                }
                let ended = state.status != "running";
                drop(state);
                f.changed.notify_all();
                if ended {
                    return;
                }
            }
        });
        followed
    }
}

/// Keeps the requests of `pending` that are still `open`.
fn keep_open(pending: &mut Vec<Waiting>, open: &[String]) {
    pending.retain(|w| open.iter().any(|id| id == w.id()));
}

/// A progress message for a turn event.
fn activity(event: &TurnEvent) -> String {
    match event {
        TurnEvent::Text { .. } => "writing the reply".into(),
        TurnEvent::Reasoning { .. } => "reasoning".into(),
        TurnEvent::ToolCall(t) => format!("calling tool {}", t.tool),
        TurnEvent::ToolUpdate(t) => format!("tool {}: {:?}", t.tool, t.status),
        TurnEvent::Permission(_) => "a tool waits for a permission".into(),
        TurnEvent::Question(_) => "a tool waits for an answer".into(),
        TurnEvent::Usage(u) => format!("step done ({} tokens out)", u.output),
        TurnEvent::Done(_) => "done".into(),
        TurnEvent::Failed { reason, .. } => format!("failed: {reason}"),
        _ => "working".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let e = check("opencode_prompt", &args(json!({"project": "/x"}))).unwrap_err();
        assert!(e.message.contains("`text` is required"), "{e:?}");
        let e = check(
            "opencode_prompt",
            &args(json!({"project": "/x", "text": "hi", "wait": 3})),
        );
        assert!(e.unwrap_err().message.contains("unknown argument `wait`"));
        let e = check(
            "opencode_prompt",
            &args(json!({"project": "/x", "text": "hi", "wait_s": -1})),
        );
        assert!(e.is_err());
        let ok = args(json!({"project": "/x", "text": "hi", "wait_s": 2.5, "title": "t"}));
        assert!(check("opencode_prompt", &ok).is_ok());
        let e = check("opencode_abort", &args(json!({"project": "/x"}))).unwrap_err();
        assert!(e.message.contains("session"), "{e:?}");
        assert!(check("opencode_sessions", &args(json!({"project": "/x"}))).is_ok());
        let e = check(
            "opencode_answer",
            &args(json!({"project": "/x", "reply": "once"})),
        );
        assert!(e.unwrap_err().message.contains("`request_id` is required"));
        let e = check(
            "opencode_answer",
            &args(json!({"project": "/x", "request_id": "per_1"})),
        );
        assert!(e.unwrap_err().message.contains("exactly one of"));
        let ok = args(json!({"project_name": "s", "request_id": "que_1", "answers": [["blue"]]}));
        assert!(check("opencode_answer", &ok).is_ok());
        let e = check(
            "opencode_prompt",
            &args(json!({"project": "/x", "text": "hi", "permissions": "always"})),
        );
        assert!(
            e.unwrap_err()
                .message
                .contains("`permissions` must be one of")
        );
    }

    /// A request stays pending while the turn still waits for it, whatever
    /// else the turn does (another tool finishing, text); it goes once
    /// answered.
    #[test]
    fn pending_follows_the_turns_open_asks() {
        let request = |id: &str| {
            serde_json::from_value::<opencode_api::PendingRequest>(
                json!({"id": id, "sessionID": "ses_1", "permission": "bash"}),
            )
            .unwrap()
        };
        let mut pending = vec![
            Waiting::Permission(request("per_1")),
            Waiting::Question(request("que_2")),
        ];
        keep_open(&mut pending, &["per_1".into(), "que_2".into()]);
        assert_eq!(pending.len(), 2);
        keep_open(&mut pending, &["per_1".into()]);
        let ids: Vec<&str> = pending.iter().map(Waiting::id).collect();
        assert_eq!(ids, ["per_1"]);
    }

    #[test]
    fn ended_turns_are_let_go_past_the_cap_running_ones_never() {
        let live = Live::default();
        let turn = |i: usize, status: &'static str| {
            Arc::new(Followed {
                session: SessionId::from("ses_1"),
                message: MessageId::from(format!("msg_{i:04}").as_str()),
                state: Mutex::new(State {
                    status,
                    ..State::default()
                }),
                changed: Condvar::new(),
            })
        };
        live.remember(turn(0, "running"));
        for i in 1..MAX_FOLLOWED + 50 {
            live.remember(turn(i, "done"));
        }
        let kept = lock(&live.turns).len();
        assert!(kept <= MAX_FOLLOWED, "{kept}");
        assert!(live.get(&MessageId::from("msg_0000")).is_some());
        assert!(
            live.get(&MessageId::from("msg_0299")).is_some(),
            "the newest"
        );
    }

    #[test]
    fn waits_are_capped() {
        assert_eq!(wait_of(&args(json!({"wait_s": 500}))), MAX_WAIT);
        assert_eq!(wait_of(&args(json!({}))), Duration::from_secs(30));
        assert_eq!(wait_of(&args(json!({"wait_s": 0}))), Duration::ZERO);
    }
}
