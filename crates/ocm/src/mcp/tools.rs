//! The tools `ocm mcp` serves: their definitions (names, descriptions
//! written for a model, input and output schemas, annotations) and how
//! each runs on the [`manager::Manager`], the way the CLI runs the same
//! command, reporting the same JSON and, on failure, the same message and
//! hint.
//!
//! Arguments that break a tool's input schema are tool execution errors
//! (`isError`), as the specification asks, so a model can correct them; a
//! malformed call (no name, an unknown tool) is a JSON-RPC error, decided
//! by the caller before a tool runs.

use crate::commands::start_error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use manager::{Config, Manager, ServerState};
use serde_json::{Map, Value, json};

use super::protocol::Era;
use super::sandbox_tools::{self, Target};
use crate::cli::Cli;
use crate::error::CliError;
use crate::render::json as render_json;
use crate::state::Store;
use crate::view::ProjectView;

/// What a tool may touch: the folders `--allow` gave (canonical), or any
/// existing folder when none were given.
#[derive(Debug, Clone)]
pub struct Context {
    /// The CLI's global options (`--state-dir`).
    pub cli: Cli,
    /// Canonical allowed folders; empty: any folder.
    pub allow: Vec<PathBuf>,
    /// The turns this process started, and its engines.
    pub turns: std::sync::Arc<super::turn_tools::Live>,
    /// Variables of this process the servers it starts must not inherit
    /// (the bearer token's, `--token-env`).
    pub hide_env: Vec<String>,
}

/// One tool.
#[derive(Debug)]
pub struct ToolDef {
    pub name: &'static str,
    pub title: &'static str,
    description: &'static str,
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    /// Whether it takes `confirm: true`.
    confirm: bool,
    /// Whether it takes a project.
    project: bool,
    /// The keys of its output beyond a project's (`None`: a list).
    extra_output: Option<&'static [&'static str]>,
}

pub const TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "opencode_start",
        title: "Start an OpenCode server",
        description: "Start the OpenCode server (`opencode serve`) of a project folder, or reuse \
                      its running server when it is healthy. Returns the server's URL, port, pid \
                      and status; give that URL to an OpenCode client. Safe to call again: a \
                      healthy server is reused (`reused: true`). Progress notifications report \
                      the start-up steps. A start usually takes a few seconds and gives up after about 45. \
                      With `project_name` (and `git_url` the first time) instead of `project`: \
                      brings up that sandbox (clone, server and companion) and returns its \
                      status, or `waiting_for_key` with a public key for the user to add as a \
                      deploy key of the repository before calling again.",
        read_only: false,
        destructive: false,
        idempotent: true,
        confirm: false,
        project: true,
        extra_output: Some(&["reused", "hostname", "elapsedMs"]),
    },
    ToolDef {
        name: "opencode_status",
        title: "Show an OpenCode server",
        description: "Show the OpenCode server of a project folder: status (running, stopped, \
                      unhealthy, dead), healthy, URL, port, pid, uptime, version and log path. \
                      Never starts anything.",
        read_only: true,
        destructive: false,
        idempotent: true,
        confirm: false,
        project: true,
        extra_output: Some(&[]),
    },
    ToolDef {
        name: "opencode_stop",
        title: "Stop an OpenCode server",
        description: "Stop the OpenCode server of a project folder and every process it started. \
                      Stopping a project that is not running is fine (nothing happens). Unsaved \
                      work in running OpenCode sessions is interrupted.",
        read_only: false,
        destructive: true,
        idempotent: true,
        confirm: false,
        project: true,
        extra_output: Some(&[
            "wasRunning",
            "stopped",
            "stoppedPid",
            "orphansStopped",
            "leftoversStopped",
            "leftAlone",
        ]),
    },
    ToolDef {
        name: "opencode_restart",
        title: "Restart an OpenCode server",
        description: "Stop the OpenCode server of a project folder (if one runs) and start a fresh \
                      one. Returns the new server as opencode_start does, with `replaced`: the \
                      server it stopped ({pid, url}) or null.",
        read_only: false,
        destructive: true,
        idempotent: false,
        confirm: false,
        project: true,
        extra_output: Some(&["reused", "hostname", "elapsedMs", "replaced"]),
    },
    ToolDef {
        name: "opencode_destroy",
        title: "Destroy a project's OpenCode state",
        description: "Stop the OpenCode server of a project folder and delete what ocm keeps for \
                      it (its record and server logs; the project folder itself is not \
                      touched). Requires `confirm: true`.",
        read_only: false,
        destructive: true,
        idempotent: true,
        confirm: true,
        project: true,
        extra_output: Some(&[
            "wasRunning",
            "stopped",
            "stoppedPid",
            "orphansStopped",
            "leftoversStopped",
            "leftAlone",
            "removed",
        ]),
    },
    ToolDef {
        name: "opencode_list",
        title: "List OpenCode servers",
        description: "List every project ocm knows, with a live status of its OpenCode server \
                      (as opencode_status shows it).",
        read_only: true,
        destructive: false,
        idempotent: true,
        confirm: false,
        project: false,
        extra_output: None,
    },
    ToolDef {
        name: "opencode_prompt",
        title: "Send a prompt to OpenCode",
        description: "Send a prompt to a session of a project's OpenCode server (started when \
                      needed), exactly once, and wait up to `wait_s` seconds (default 30, at most \
                      50) for the reply. Returns `status: done` with `reply` and `usage`, or \
                      `status: running` with `sessionId` and `messageId`: then call \
                      opencode_turn with that messageId to follow it. Retrying with the same \
                      `message_id` never sends the prompt twice. Progress notifications report \
                      the turn's activity; cancelling the call aborts the turn. When a tool asks \
                      for a permission or asks a question, the turn waits and the call returns \
                      at once with it in `pending` (answer with opencode_answer); \
                      `permissions: allow` or `deny` answers permissions without asking.",
        read_only: false,
        destructive: false,
        idempotent: false,
        confirm: false,
        project: true,
        extra_output: Some(&[]),
    },
    ToolDef {
        name: "opencode_turn",
        title: "Follow an OpenCode turn",
        description: "The state of a prompt's turn by its message ID: status (running, done, \
                      failed, aborted), the reply text so far, usage, and the final reply once \
                      done, and `pending`: the permission or question it waits for (answer with \
                      opencode_answer). Waits up to `wait_s` seconds (default 30, at most 50) \
                      for the turn to end.",
        read_only: true,
        destructive: false,
        idempotent: true,
        confirm: false,
        project: true,
        extra_output: Some(&[]),
    },
    ToolDef {
        name: "opencode_abort",
        title: "Abort an OpenCode turn",
        description: "Abort the running turn of a session (by `session`, or by the prompt's \
                      `message_id`). The reply written so far is kept; aborting an idle session \
                      does nothing.",
        read_only: false,
        destructive: true,
        idempotent: true,
        confirm: false,
        project: true,
        extra_output: Some(&[]),
    },
    ToolDef {
        name: "opencode_sessions",
        title: "List OpenCode sessions",
        description: "List the sessions of a project's OpenCode server (started when needed) \
                      with what ocm recorded of them: title, key, status, turns and token and \
                      cost usage, and the project's usage totals.",
        read_only: false,
        destructive: false,
        idempotent: true,
        confirm: false,
        project: true,
        extra_output: Some(&[]),
    },
    ToolDef {
        name: "opencode_answer",
        title: "Answer what an OpenCode turn waits for",
        description: "Answer the request a turn waits for (its `pending`, as opencode_prompt or \
                      opencode_turn return it) by `request_id`, with exactly one of: `reply` \
                      for a permission (once, always or reject), `answers` for a question (one \
                      array of chosen labels per question, e.g. [[\"blue\"]]), or \
                      `reject: true` to decline a question. Then follow the turn with \
                      opencode_turn. A request answered already, or unknown, is an error.",
        read_only: false,
        destructive: false,
        idempotent: false,
        confirm: false,
        project: true,
        extra_output: Some(&[]),
    },
];

/// The tool named `name`.
pub fn lookup(name: &str) -> Option<&'static ToolDef> {
    TOOLS.iter().find(|t| t.name == name)
}

/// The JSON schema of a project object (the CLI's `--json` shape).
fn project_schema(extra: &[&str]) -> Value {
    let nullable = |t: &str| json!({"type": [t, "null"]});
    let mut properties = Map::new();
    properties.insert("project".into(), json!({"type": "string"}));
    properties.insert("projectExists".into(), json!({"type": "boolean"}));
    properties.insert("projectPort".into(), nullable("integer"));
    properties.insert("stateDir".into(), json!({"type": "string"}));
    properties.insert(
        "status".into(),
        json!({"type": "string", "description": "running, stopped, unhealthy, dead or starting"}),
    );
    properties.insert("healthy".into(), json!({"type": "boolean"}));
    properties.insert("detail".into(), nullable("string"));
    properties.insert("url".into(), nullable("string"));
    properties.insert("port".into(), nullable("integer"));
    properties.insert("pid".into(), nullable("integer"));
    properties.insert("startedAt".into(), json!({}));
    properties.insert("uptimeSeconds".into(), nullable("integer"));
    properties.insert("version".into(), nullable("string"));
    properties.insert("residentMemoryBytes".into(), nullable("integer"));
    properties.insert("logPath".into(), json!({"type": "string"}));
    properties.insert(
        "auth".into(),
        json!({"type": ["string", "null"], "description": "where the server's password is \
               (generated: in passwordFile; env: OPENCODE_SERVER_PASSWORD); never the password"}),
    );
    properties.insert("passwordFile".into(), nullable("string"));
    for key in extra {
        properties.insert((*key).into(), json!({}));
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": ["project", "status", "url", "port", "pid"],
    })
}

impl ToolDef {
    /// Its entry in `tools/list` for a client speaking `era`.
    pub fn definition(&self, ctx: &Context, era: &Era) -> Value {
        let mut properties = Map::new();
        let mut required: Vec<&str> = Vec::new();
        if self.project {
            let folders = if ctx.allow.is_empty() {
                "Any existing folder is allowed.".to_string()
            } else {
                let list: Vec<String> = ctx.allow.iter().map(|d| d.display().to_string()).collect();
                format!("Only folders inside {} are allowed.", list.join(", "))
            };
            properties.insert(
                "project".into(),
                json!({
                    "type": "string",
                    "description": format!(
                        "The project folder, an absolute path (one OpenCode server per \
                         folder). {folders} Give `project` or `project_name`, not both."
                    ),
                }),
            );
            properties.insert(
                "project_name".into(),
                json!({
                    "type": "string",
                    "description": format!("{} {folders}", sandbox_tools::PROJECT_NAME),
                }),
            );
        }
        if self.name == "opencode_start" {
            for (key, kind, description) in sandbox_tools::start_inputs() {
                properties.insert(
                    (*key).into(),
                    json!({"type": kind, "description": description}),
                );
            }
        }
        for (key, kind, description, needed) in super::turn_tools::inputs(self.name) {
            let mut schema = json!({"type": kind, "description": description});
            super::answer::refine(key, &mut schema);
            properties.insert((*key).into(), schema);
            if *needed {
                required.push(*key);
            }
        }
        if self.confirm {
            properties.insert(
                "confirm".into(),
                json!({"type": "boolean", "const": true,
                       "description": "Must be true: the state is deleted for good."}),
            );
            required.push("confirm");
        }
        let mut tool = json!({
            "name": self.name,
            "description": self.description,
            "inputSchema": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            },
        });
        if era.has("2025-03-26") {
            tool["annotations"] = json!({
                "title": self.title,
                "readOnlyHint": self.read_only,
                "destructiveHint": self.destructive,
                "idempotentHint": self.idempotent,
                "openWorldHint": false,
            });
        }
        if era.has("2025-06-18") {
            tool["title"] = json!(self.title);
            tool["outputSchema"] = match self.extra_output {
                _ if self.is_turn_tool() => match self.name {
                    "opencode_prompt" | "opencode_turn" => super::turn_tools::turn_schema(),
                    other => super::turn_tools::other_schema(other),
                },
                Some(extra) => json!({
                    "type": "object",
                    "anyOf": [project_schema(extra), match self.name {
                        "opencode_stop" | "opencode_destroy" => sandbox_tools::other_schema(self.name),
                        _ => sandbox_tools::status_schema(),
                    }],
                }),
                None => json!({
                    "type": "object",
                    "properties": {"projects": {"type": "array", "items": project_schema(&[])}},
                    "required": ["projects"],
                }),
            };
        }
        tool
    }

    /// Runs the tool. `progress` is told each step (a start's). Blocks
    /// for as long as the manager call (a start: its timeout, twice).
    pub fn run(
        &self,
        ctx: &Context,
        arguments: &Map<String, Value>,
        progress: impl Fn(String) + Send + Sync + 'static,
        cancelled: impl Fn() -> bool,
    ) -> Result<Value, Failure> {
        if self.is_turn_tool() {
            return super::turn_tools::run(self.name, ctx, arguments, &progress, &cancelled);
        }
        self.check_arguments(arguments)?;
        if !self.project {
            let store = store(ctx)?;
            let all = store.list().map_err(Failure::from)?;
            let projects: Vec<Value> = all
                .into_iter()
                .filter(|s| ctx.allows(&s.project))
                .map(|s| render_json::project_json(&store.view_of(s)))
                .collect();
            return Ok(json!({ "projects": projects }));
        }
        let dir = match sandbox_tools::target(ctx, arguments)? {
            Target::Folder(dir) => dir,
            Target::Sandbox { name, .. } => {
                return sandbox_tools::run(self.name, ctx, &name, arguments);
            }
        };
        if let Some(key) = ["git_url", "user_ssh_key"]
            .into_iter()
            .find(|key| arguments.contains_key(*key))
        {
            return Err(Failure::input(format!(
                "`{key}` is for a sandbox: give it with `project_name`, not `project`"
            )));
        }
        match self.name {
            "opencode_start" | "opencode_restart" => {
                let began = Instant::now();
                let manager = Manager::new(sandbox_tools::config_for(ctx, &dir)?)
                    .map_err(|e| Failure::from(CliError::from(e).starting()))?
                    .with_progress(move |p: &manager::Progress| {
                        if let Some(step) = step_text(p) {
                            progress(step);
                        }
                    });
                let restart = self.name == "opencode_restart";
                let before = restart.then(|| manager.status(&dir).ok());
                let info = if restart {
                    manager.restart(&dir)
                } else {
                    manager.ensure(&dir)
                }
                .map_err(|e| Failure::from(start_error(e, &manager, &dir)))?;
                let view = ProjectView::of_server(&info, &manager).map_err(Failure::from)?;
                let mut value = render_json::server_json(&view, &info, began.elapsed());
                if let Some(before) = before {
                    let replaced = before
                        .filter(|b| {
                            matches!(b.status, ServerState::Running | ServerState::Unhealthy)
                        })
                        .map_or(Value::Null, |b| render_json::replaced_json(&b));
                    value["replaced"] = replaced;
                }
                Ok(value)
            }
            "opencode_status" => {
                let store = store(ctx)?;
                // As `ocm status`: a path that is not a folder is an error
                // unless ocm has a record for it.
                let record = store.paths(&dir).map_err(Failure::from)?.record;
                if crate::error::folder_problem(&dir).is_some()
                    && !record.try_exists().unwrap_or(true)
                {
                    return Err(Failure::from(CliError::NoProject { project: dir }));
                }
                let status = store.status(&dir).map_err(Failure::from)?;
                Ok(render_json::project_json(&store.view_of(status)))
            }
            "opencode_stop" => {
                let store = store(ctx)?;
                let report = store.stop(&dir).map_err(Failure::from)?;
                let after = store.view(&dir).map_err(Failure::from)?;
                Ok(render_json::stop_json(&after, &report))
            }
            "opencode_destroy" => {
                let store = store(ctx)?;
                let state_dir = store.paths(&dir).map_err(Failure::from)?.dir;
                let existed = state_dir.exists();
                let report = store.destroy(&dir).map_err(Failure::from)?;
                let after = store.view(&dir).map_err(Failure::from)?;
                let removed = existed.then_some(state_dir.as_path());
                Ok(render_json::destroy_json(&after, &report, removed))
            }
            other => Err(Failure::input(format!("no tool {other}"))),
        }
    }

    /// Whether it is one of the prompt tools (`turn_tools`).
    fn is_turn_tool(&self) -> bool {
        !super::turn_tools::inputs(self.name).is_empty() || self.name == "opencode_sessions"
    }

    /// Undoes what a cancelled call did, where that means something: a
    /// server a start (or restart) started is stopped again; a reused one
    /// is left running, as it was.
    pub fn undo(&self, ctx: &Context, arguments: &Map<String, Value>, result: &Value) {
        let started = matches!(self.name, "opencode_start" | "opencode_restart")
            && result.get("reused") == Some(&Value::Bool(false));
        if !started {
            return;
        }
        let stopped = project_argument(ctx, arguments)
            .and_then(|dir| store(ctx)?.stop(&dir).map_err(Failure::from));
        match stopped {
            Ok(_) => eprintln!(
                "ocm mcp: {} was cancelled; the server it started was stopped",
                self.name
            ),
            Err(e) => eprintln!(
                "ocm mcp: {} was cancelled; stopping its server failed: {}",
                self.name,
                crate::escape::escape(&e.message)
            ),
        }
    }

    /// The input schema, checked: unknown keys, wrong types, a missing
    /// project or confirmation.
    fn check_arguments(&self, arguments: &Map<String, Value>) -> Result<(), Failure> {
        for (key, value) in arguments {
            match key.as_str() {
                "project" if self.project => {
                    if !value.is_string() {
                        return Err(Failure::input("`project` must be a string (a folder path)"));
                    }
                }
                "project_name" if self.project => {
                    if !value.is_string() {
                        return Err(Failure::input(
                            "`project_name` must be a string (a sandbox's name)",
                        ));
                    }
                }
                "git_url" | "user_ssh_key" if self.name == "opencode_start" => {
                    if value.as_str().is_none_or(|v| v.trim().is_empty()) {
                        return Err(Failure::input(format!(
                            "`{key}` must be a non-empty string"
                        )));
                    }
                }
                "confirm" if self.confirm => {
                    if value != &Value::Bool(true) {
                        return Err(Failure::input(
                            "`confirm` must be true: destroying deletes the project's ocm state",
                        ));
                    }
                }
                other => {
                    return Err(Failure::input(format!(
                        "unknown argument `{other}` for {} (it takes {})",
                        self.name,
                        self.argument_names()
                    )));
                }
            }
        }
        if self.project
            && !arguments.contains_key("project")
            && !arguments.contains_key("project_name")
        {
            return Err(Failure::input(format!(
                "`project` (the project folder, an absolute path) or `project_name` (a \
                 sandbox's name) is required ({} takes {})",
                self.name,
                self.argument_names()
            )));
        }
        if self.confirm && !arguments.contains_key("confirm") {
            return Err(Failure::input(
                "`confirm: true` is required: destroying deletes the project's ocm state",
            ));
        }
        Ok(())
    }

    fn argument_names(&self) -> String {
        match (self.project, self.confirm) {
            (true, true) => "`project` or `project_name`, and `confirm`".into(),
            (true, false) if self.name == "opencode_start" => {
                "`project`, or `project_name` with `git_url` and `user_ssh_key`".into()
            }
            (true, false) => "`project` or `project_name`".into(),
            _ => "no arguments".into(),
        }
    }
}

/// A tool that failed: the message and hint the CLI would print.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub message: String,
    pub details: Vec<String>,
    pub hint: Option<String>,
}

impl Failure {
    pub(super) fn input(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            details: Vec::new(),
            hint: None,
        }
    }

    /// The text block of the `isError` result.
    pub fn text(&self) -> String {
        let mut text = format!("error: {}", self.message);
        for line in &self.details {
            text.push('\n');
            text.push_str(line);
        }
        if let Some(hint) = &self.hint {
            for line in hint.lines() {
                text.push_str("\nhint: ");
                text.push_str(line);
            }
        }
        text
    }
}

impl From<CliError> for Failure {
    fn from(error: CliError) -> Failure {
        let report = error.report();
        Failure {
            message: report.message,
            details: report.details,
            hint: report.hint,
        }
    }
}

impl Context {
    /// Whether `project` (absolute) is inside an allowed folder.
    pub fn allows(&self, project: &Path) -> bool {
        if self.allow.is_empty() {
            return true;
        }
        // The real folder when it exists (a symlink cannot lead out), else
        // the path as written (a deleted project can still be stopped).
        let real = std::fs::canonicalize(project).unwrap_or_else(|_| project.to_path_buf());
        self.allow.iter().any(|dir| real.starts_with(dir))
    }
}

/// The `project` argument: absolute, and allowed.
pub(super) fn project_argument(
    ctx: &Context,
    arguments: &Map<String, Value>,
) -> Result<PathBuf, Failure> {
    let text = arguments
        .get("project")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let path = PathBuf::from(text);
    if !path.is_absolute() {
        return Err(Failure {
            message: format!("the project must be an absolute path, got `{text}`"),
            details: Vec::new(),
            hint: Some("give the project folder's full path, e.g. /home/me/src/app".into()),
        });
    }
    let path = manager::project(&path).map(|p| p.path).unwrap_or(path);
    if !ctx.allows(&path) {
        let list: Vec<String> = ctx.allow.iter().map(|d| d.display().to_string()).collect();
        return Err(Failure {
            message: format!("{} is outside the allowed folders", path.display()),
            details: Vec::new(),
            hint: Some(format!(
                "this ocm mcp only manages projects inside {} (its --allow folders)",
                list.join(", ")
            )),
        });
    }
    Ok(path)
}

/// The longest a start attempt, and a wait for another ocm's lock, may
/// take: a call must end well within the 60 s many clients allow (worst
/// case: the lock, two attempts, a stop).
const START_ATTEMPT_LIMIT: Duration = Duration::from_secs(15);
const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(10);

pub(super) fn config(ctx: &Context) -> Config {
    let mut config = Config::from_env();
    config.state_root = ctx.cli.state_dir.clone();
    config.env_remove.extend(ctx.hide_env.iter().cloned());
    config.start_timeout = config.start_timeout.min(START_ATTEMPT_LIMIT);
    config.lock_timeout = config.lock_timeout.min(LOCK_WAIT_LIMIT);
    config
}

fn store(ctx: &Context) -> Result<Store, Failure> {
    Store::open(&ctx.cli, || Ok(Manager::new(config(ctx))?)).map_err(Failure::from)
}

/// A start-up step for a progress notification.
fn step_text(progress: &manager::Progress) -> Option<String> {
    use manager::Progress as P;
    Some(match progress {
        P::Reused { pid, url } => format!("reusing the running server (pid {pid}) at {url}"),
        P::Repaired(repair) => repair.to_string(),
        P::PortTaken { port, .. } => format!("port {port} is taken; trying the next one"),
        P::Starting { port, attempt, .. } => {
            let on = port.map(|p| format!(" on port {p}")).unwrap_or_default();
            let again = if *attempt > 1 {
                " (second attempt)"
            } else {
                ""
            };
            format!("starting opencode{on}{again}")
        }
        P::WaitingForListen { pid } => format!("waiting for opencode (pid {pid}) to listen"),
        P::Listening { port, .. } => format!("listening on port {port}; checking health"),
        P::Healthy { url, .. } => format!("healthy at {url}"),
        P::Retrying { reason } => format!("start failed ({reason}); trying once more"),
        P::Stopping { pid } => format!("stopping opencode (pid {pid})"),
        P::WaitingForLock { .. } => "waiting for another ocm working on this project".into(),
        _ => return None,
    })
}

/// The `tools/call` result for a tool's outcome, shaped for `era`.
pub fn call_result(outcome: Result<Value, Failure>, era: &Era) -> Map<String, Value> {
    let mut result = Map::new();
    match outcome {
        Ok(value) => {
            let text = serde_json::to_string(&value).unwrap_or_default();
            result.insert("content".into(), json!([{"type": "text", "text": text}]));
            if era.has("2025-06-18") {
                result.insert("structuredContent".into(), value);
            }
            result.insert("isError".into(), json!(false));
        }
        Err(failure) => {
            result.insert(
                "content".into(),
                json!([{"type": "text", "text": failure.text()}]),
            );
            result.insert("isError".into(), json!(true));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(allow: Vec<PathBuf>) -> Context {
        Context {
            cli: crate::cli::parse(["ls"]).unwrap(),
            allow,
            turns: Default::default(),
            hide_env: Vec::new(),
        }
    }

    #[test]
    fn every_tool_refuses_unknown_arguments_in_its_schema() {
        for tool in TOOLS {
            let def = tool.definition(&ctx(Vec::new()), &Era::Modern);
            assert_eq!(def["inputSchema"]["additionalProperties"], false);
            assert!(def["outputSchema"]["type"] == "object", "{}", tool.name);
            assert!(def["annotations"]["readOnlyHint"].is_boolean());
            let legacy = tool.definition(&ctx(Vec::new()), &Era::Legacy("2024-11-05"));
            assert!(legacy.get("outputSchema").is_none() && legacy.get("annotations").is_none());
        }
    }

    #[test]
    fn bad_arguments_are_tool_errors() {
        let destroy = lookup("opencode_destroy").unwrap();
        let args = |v: Value| v.as_object().cloned().unwrap();
        let e = destroy.check_arguments(&args(json!({"project": "/x"})));
        assert!(e.unwrap_err().message.contains("confirm"));
        let e = destroy.check_arguments(&args(json!({"project": "/x", "confirm": false})));
        assert!(e.is_err());
        assert!(
            destroy
                .check_arguments(&args(json!({"project": "/x", "confirm": true})))
                .is_ok()
        );
        let status = lookup("opencode_status").unwrap();
        let e = status.check_arguments(&args(json!({"project": "/x", "force": 1})));
        assert!(e.unwrap_err().message.contains("unknown argument `force`"));
        let e = status.check_arguments(&args(json!({"project": 3})));
        assert!(e.is_err());
    }

    #[test]
    fn projects_outside_the_allowed_folders_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let allowed = std::fs::canonicalize(root.path()).unwrap().join("ok");
        std::fs::create_dir(&allowed).unwrap();
        let c = ctx(vec![allowed.clone()]);
        let args = |p: &Path| json!({"project": p}).as_object().cloned().unwrap();
        assert!(project_argument(&c, &args(&allowed.join("app"))).is_ok());
        let outside = root.path().join("other");
        let e = project_argument(&c, &args(&outside)).unwrap_err();
        assert!(e.message.contains("outside the allowed folders"), "{e:?}");
        // A symlink inside that leads out is judged by where it leads.
        std::os::unix::fs::symlink(root.path(), allowed.join("escape")).unwrap();
        assert!(project_argument(&c, &args(&allowed.join("escape"))).is_err());
        let e = project_argument(&c, &args(Path::new("relative/dir"))).unwrap_err();
        assert!(e.message.contains("absolute"));
    }
}
