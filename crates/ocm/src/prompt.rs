//! `ocm prompt`: sends one prompt to a session of the project's server,
//! exactly once, and streams the reply (text on stdout; reasoning and tool
//! activity on stderr when it is a terminal; `--json`: one object a line).
//!
//! Exit 0 done, 2 bad usage, 4 the server could not be started, 5 the turn
//! failed (its message ID is printed: `--message-id ID` retries it without
//! a duplicate).

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use manager::Manager;
use opencode_api::{MessageId, ModelRef, PromptRequest, SessionId};
use serde_json::{Value, json};
use turns::{Engine, Registry, SessionKey, Sessions, TurnEvent, TurnOptions};

use crate::cli::{Cli, Name, UsageError};
use crate::error::{CliError, EXIT_ERROR, EXIT_OK};

/// Exit status of a turn that failed (model or tool error, watchdog,
/// server crash, timeout).
pub const EXIT_TURN_FAILED: i32 = 5;
/// How often a running turn looks for Ctrl-C.
const INTERRUPT_CHECK: Duration = Duration::from_millis(200);
/// The longest prompt read from stdin.
const MAX_STDIN: u64 = 16 << 20;
/// How long a turn may take without `--timeout`.
const DEFAULT_TURN_TIMEOUT: Duration = Duration::from_secs(3600);

/// What `ocm prompt` was asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptArgs {
    /// The project folder.
    pub dir: Option<PathBuf>,
    /// `--session ID`.
    pub session: Option<String>,
    /// `--title T`.
    pub title: Option<String>,
    /// `--team T`.
    pub team: Option<String>,
    /// `--agent A`: the team's agent with `--team`, else the OpenCode agent.
    pub agent: Option<String>,
    /// `--role R`.
    pub role: Option<String>,
    /// `--new`: a fresh default session.
    pub new: bool,
    /// `--model PROVIDER/MODEL`.
    pub model: Option<String>,
    /// `--message-id ID`.
    pub message_id: Option<String>,
    /// `--permissions ask|allow|deny`.
    pub permissions: Option<String>,
    /// `--timeout SECS`: the turn's bound.
    pub timeout: Option<Duration>,
    /// How the server is started when it is not running.
    pub start: crate::cli::StartOptions,
    /// TEXT, or `-` for stdin.
    pub text: OsString,
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(UsageError {
        message: message.into(),
        command: Some(Name::Prompt),
    })
}

/// Checks the options that exclude each other; called by the parser.
pub fn check(args: &PromptArgs) -> Result<(), String> {
    let chosen = [
        args.session.is_some(),
        args.title.is_some(),
        args.team.is_some(),
        args.new,
    ];
    if chosen.iter().filter(|c| **c).count() > 1 {
        return Err("give one of --session, --title, --team and --new".into());
    }
    if args.team.is_some() != args.role.is_some() || (args.team.is_some() && args.agent.is_none()) {
        return Err("--team needs --agent and --role (and --role needs --team)".into());
    }
    if let (Some(team), Some(agent), Some(role)) = (&args.team, &args.agent, &args.role) {
        SessionKey::team(team, agent, role).map_err(|e| e.to_string())?;
    }
    if args.new && args.message_id.is_some() {
        return Err("--message-id retries a prompt of an existing session: not with --new".into());
    }
    Ok(())
}

/// Runs `ocm prompt`.
pub fn run(cli: &Cli, args: &PromptArgs) -> Result<i32, CliError> {
    let text = read_text(&args.text)?;
    let model = match &args.model {
        Some(m) => Some(ModelRef::parse(m).map_err(|e| usage(format!("--model: {e}")))?),
        None => None,
    };
    let project = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let config = crate::commands::config(cli, Some(&args.start))?;
    // Ctrl-C (SIGTERM, a hang-up) cancels a start, and aborts a turn.
    let signals = manager::catch_interrupts()?;
    let manager = Arc::new(Manager::new(config)?.with_interrupts(Arc::clone(&signals)));
    let mut out = Output::new(cli.json);
    let interrupted = || signals.try_next();
    // The server is ensured (started when it is not running) by the first
    // call that needs it; a recorded server's event stream connects while
    // the session is looked up.
    let ended = Engine::managed(Arc::clone(&manager), &project, TurnOptions::default()).and_then(
        |engine| {
            engine.preconnect();
            let ended = Registry::open(&manager, &project).and_then(|registry| {
                let sessions = Sessions::new(engine.clone(), registry);
                prompt(
                    &engine,
                    &sessions,
                    args,
                    &text,
                    model.as_ref(),
                    &mut out,
                    &interrupted,
                )
            });
            if !engine.relayed() {
                keep_relay(&manager, &project);
            }
            ended
        },
    );
    match ended {
        Ok(code) => Ok(code),
        Err(turns::Error::Manager(e)) => Err(CliError::Start(Box::new(e))),
        Err(e) => Ok(out.failed(&e.to_string(), e.message_id())),
    }
}

/// Set (not empty, not `0`), `ocm prompt` starts no relay.
const NO_RELAY_VAR: &str = "OCM_NO_RELAY";

/// After a prompt that heard its events from a stream of its own: starts
/// `ocm relay` beside the server, so that later prompts need not wait for
/// one (see `manager::Manager::run_relay`), unless [`NO_RELAY_VAR`] says
/// not to. A relay that cannot be started costs only that wait: said on
/// stderr, not an error of the prompt.
fn keep_relay(manager: &Manager, project: &std::path::Path) {
    if std::env::var_os(NO_RELAY_VAR).is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    let started = std::env::current_exe()
        .map_err(|e| e.to_string())
        .and_then(|ocm| {
            let project = manager::project(project).map_err(|e| e.to_string())?.path;
            manager
                .start_relay(&project, &ocm, &["relay".as_ref(), project.as_os_str()])
                .map_err(|e| e.to_string())
        });
    if let Err(e) = started {
        eprintln!(
            "ocm: no event relay started ({}); prompts wait for a stream of their own",
            crate::escape::escape(&e)
        );
    }
}

fn prompt(
    engine: &Engine,
    sessions: &Sessions,
    args: &PromptArgs,
    text: &str,
    model: Option<&ModelRef>,
    out: &mut Output,
    interrupted: &dyn Fn() -> Option<i32>,
) -> Result<i32, turns::Error> {
    let key = if let Some(title) = &args.title {
        SessionKey::Title(title.clone())
    } else if let (Some(team), Some(agent), Some(role)) = (&args.team, &args.agent, &args.role) {
        SessionKey::team(team, agent, role)?
    } else {
        SessionKey::Default
    };
    let mut request = PromptRequest::text(text);
    if let Some(model) = model {
        request = request.model(model.clone());
    }
    if let (Some(agent), None) = (&args.agent, &args.team) {
        request = request.agent(agent.clone());
    }
    if let Some(id) = &args.message_id {
        request = request.message_id(MessageId::from(id.as_str()));
    }
    let (session, mut turn) = match &args.session {
        Some(id) => {
            let session = SessionId::from(id.as_str());
            let turn = engine.prompt(&session, request)?;
            (session, turn)
        }
        None => {
            let (entry, turn) = if args.new {
                sessions.prompt_in(&key, sessions.create(&key, model)?, request)?
            } else {
                sessions.prompt(&key, model, request)?
            };
            (entry.session_id, turn)
        }
    };
    let deadline = Instant::now() + args.timeout.unwrap_or(DEFAULT_TURN_TIMEOUT);
    loop {
        // Short waits, to see an interrupt between them.
        let slice = deadline.min(Instant::now() + INTERRUPT_CHECK);
        if let Some(signal) = interrupted() {
            let id = turn.message_id().clone();
            let why = format!("prompt {id}: interrupted, the turn was aborted");
            // A turn that completed before the abort still prints its
            // reply; the exit status says the command was interrupted.
            aborted(&mut turn, out, &session, &why, Some(128 + signal));
            return Ok(128 + signal);
        }
        match turn.next(slice)? {
            Some(TurnEvent::Permission(request)) => {
                out.event(&TurnEvent::Permission(request.clone()));
                let reply = match args.permissions.as_deref() {
                    Some("allow") => Some(opencode_api::PermissionReply::Once),
                    Some("deny") => Some(opencode_api::PermissionReply::Reject),
                    _ => None,
                };
                // A reply that fails (answered elsewhere meanwhile, the
                // server restarting) leaves the request to other clients:
                // the turn goes on.
                if let Some(reply) = reply
                    && let Err(e) = engine.reply_permission(&request.id, reply)
                {
                    eprintln!(
                        "ocm: answering permission {} failed: {}",
                        request.id,
                        crate::escape::escape(&e.to_string())
                    );
                }
            }
            Some(event) => {
                if let Some(code) = out.show(&event, &session) {
                    return Ok(code);
                }
            }
            None if Instant::now() < deadline => {}
            None => {
                let id = turn.message_id().clone();
                let why = format!("prompt {id} in session {session}: no end within the timeout");
                return Ok(aborted(&mut turn, out, &session, &why, None));
            }
        }
    }
}

/// Aborts `turn` and prints how it ended: its reply when it completed
/// first, else `why` (with `exit` as its exit status, when it is not the
/// failed turn's 5). Returns the exit status.
fn aborted(
    turn: &mut turns::Turn,
    out: &mut Output,
    session: &SessionId,
    why: &str,
    exit: Option<i32>,
) -> i32 {
    let _ = turn.abort();
    // The abort queued the turn's end (nothing when the server could not
    // be reached): no wait.
    while let Ok(Some(event)) = turn.next(Instant::now()) {
        if let TurnEvent::Done(_) = event {
            return out.show(&event, session).unwrap_or(EXIT_OK);
        }
        if !event.is_terminal() {
            out.event(&event);
        }
    }
    out.failed_with(why, Some(turn.message_id()), exit)
}

/// TEXT, or stdin for `-` (at most 16 MiB).
fn read_text(text: &OsString) -> Result<String, CliError> {
    if text != "-" {
        return text
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| usage("TEXT is not valid UTF-8"));
    }
    let mut buffer = String::new();
    std::io::stdin()
        .take(MAX_STDIN + 1)
        .read_to_string(&mut buffer)
        .map_err(|source| CliError::Io {
            context: "reading the prompt from stdin".into(),
            source,
        })?;
    if buffer.len() as u64 > MAX_STDIN {
        return Err(usage(format!(
            "the prompt read from stdin is over {} MiB; send a shorter one",
            MAX_STDIN >> 20
        )));
    }
    if buffer.trim().is_empty() {
        return Err(usage("the prompt read from stdin is empty"));
    }
    Ok(buffer)
}

/// Where the turn's events go.
struct Output {
    json: bool,
    stderr_tty: bool,
    /// Whether the last text printed ended a line.
    at_line_start: bool,
    /// Whether any reply text was printed.
    streamed: bool,
}

impl Output {
    fn new(json: bool) -> Output {
        Output {
            json,
            stderr_tty: std::io::stderr().is_terminal(),
            at_line_start: true,
            streamed: false,
        }
    }

    fn line(&self, value: Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{value}").and_then(|()| stdout.flush());
    }

    fn text(&mut self, delta: &str) {
        if delta.is_empty() {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(delta.as_bytes())
            .and_then(|()| stdout.flush());
        self.at_line_start = delta.ends_with('\n');
        self.streamed = true;
    }

    fn note(&self, text: &str) {
        if self.stderr_tty {
            eprintln!("{text}");
        }
    }

    fn event(&mut self, event: &TurnEvent) {
        match event {
            TurnEvent::Text { delta, part_id } => {
                if self.json {
                    self.line(json!({"type": "text", "partId": part_id, "delta": delta}));
                } else {
                    self.text(delta);
                }
            }
            TurnEvent::Reasoning { delta, part_id } => {
                if self.json {
                    self.line(json!({"type": "reasoning", "partId": part_id, "delta": delta}));
                } else if self.stderr_tty {
                    eprint!("{delta}");
                }
            }
            TurnEvent::ToolCall(tool) | TurnEvent::ToolUpdate(tool) => {
                if self.json {
                    self.line(json!({
                        "type": "tool", "tool": tool.tool, "callId": tool.call_id,
                        "status": tool.status.as_str(), "input": tool.input,
                        "output": tool.output, "error": tool.error,
                    }));
                } else {
                    self.note(&format!("[{} {}]", tool.tool, tool.status.as_str()));
                }
            }
            TurnEvent::Permission(request) => {
                if self.json {
                    self.line(json!({
                        "type": "permission", "id": request.id,
                        "permission": request.permission,
                    }));
                } else {
                    self.note(&format!(
                        "[waiting for permission {} ({})]",
                        request.id,
                        request.permission.as_deref().unwrap_or("?")
                    ));
                }
            }
            TurnEvent::Question(request) => {
                if self.json {
                    self.line(json!({
                        "type": "question", "id": request.id,
                        "questions": request.questions,
                    }));
                } else {
                    let asked: Vec<&str> = request
                        .questions
                        .iter()
                        .map(|q| q.question.as_str())
                        .collect();
                    self.note(&format!(
                        "[waiting for an answer to {} ({})]",
                        request.id,
                        asked.join(" / ")
                    ));
                }
            }
            TurnEvent::Usage(usage) if self.json => {
                self.line(json!({"type": "usage", "usage": usage, "cost": usage.cost}));
            }
            _ => {}
        }
    }

    /// Prints one event; the exit status after a terminal one.
    fn show(&mut self, event: &TurnEvent, session: &SessionId) -> Option<i32> {
        match event {
            TurnEvent::Done(done) => Some(self.done(done)),
            TurnEvent::Failed { message_id, reason } => {
                let message = format!("prompt {message_id} in session {session}: {reason}");
                Some(self.failed(&message, Some(message_id)))
            }
            other => {
                self.event(other);
                None
            }
        }
    }

    fn done(&mut self, done: &turns::TurnDone) -> i32 {
        if self.json {
            self.line(json!({
                "type": "done", "sessionId": done.session_id, "messageId": done.message_id,
                "text": done.text, "usage": done.usage, "cost": done.usage.cost,
            }));
        } else if !self.streamed && !done.text.is_empty() {
            // Answered before (a retry by ID): nothing was streamed.
            self.text(&done.text);
            self.text("\n");
        } else if !self.at_line_start {
            self.text("\n");
        }
        EXIT_OK
    }

    /// Prints the failure: with `--json` one `failed` object (with the
    /// `hint` and `exitCode` every error object has) and no error lines on stderr,
    /// else `ocm: error:` and `hint:` lines on stderr. Returns the exit
    /// status: 5 for a turn whose message ID retries it, else 1.
    fn failed(&mut self, error: &str, message_id: Option<&MessageId>) -> i32 {
        self.failed_with(error, message_id, None)
    }

    /// [`failed`](Output::failed) with another exit status (Ctrl-C's).
    fn failed_with(
        &mut self,
        error: &str,
        message_id: Option<&MessageId>,
        exit: Option<i32>,
    ) -> i32 {
        let (code, hint) = match message_id {
            Some(id) => (
                EXIT_TURN_FAILED,
                Some(format!(
                    "retry it without a duplicate: ocm prompt --message-id {id} ..."
                )),
            ),
            None => (EXIT_ERROR, None),
        };
        let code = exit.unwrap_or(code);
        if self.json {
            self.line(json!({
                "type": "failed", "error": error, "hint": hint, "exitCode": code,
                "messageId": message_id,
            }));
            return code;
        }
        if !self.at_line_start {
            self.text("\n");
        }
        eprintln!("ocm: error: {}", crate::escape::escape(error));
        if let Some(hint) = hint {
            eprintln!("hint: {}", crate::escape::escape(&hint));
        }
        code
    }
}
