//! The command and option tables: every command and option of `ocm`, once.
//!
//! As in ripgrep's flag definitions, one row holds everything about one
//! command or option: its names, its help, and how it is parsed (a plain
//! `fn` that stores an option's value in [`Parsed`], and for a command one
//! that builds its [`Command`]). The parser (`cli.rs`) and the help texts
//! (`help.rs`) only read these tables, so they cannot disagree.
//!
//! Adding a command: its [`Name`] and [`Command`] variants (cli.rs), a row
//! in [`COMMANDS`] with a `build` step, and, for options of its own, a
//! [`Group`], its rows in [`OPTIONS`] and the [`Parsed`] fields they fill.
//! A subcommand is a row whose `word` has two words (`"session ls"`).

use std::ffi::OsString;
use std::path::PathBuf;

use manager::PortPolicy;

use super::{
    Action, Cli, Command, DEFAULT_LOG_LINES, McpOptions, Name, SessionCommand, StartOptions,
    check_once, parse_port, parse_port_policy, parse_timeout,
};

pub(crate) use super::groups::{EVENTS, GLOBAL, LOGS, MCP, PROMPT, SESSION_KEY, START};

/// One command: everything the parser and the help texts need.
#[derive(Debug)]
pub(crate) struct CommandDef {
    pub name: Name,
    /// The canonical spelling; two words for a subcommand (`"session ls"`).
    pub word: &'static str,
    /// Other spellings that run it.
    pub aliases: &'static [&'static str],
    /// Its line in `ocm --help`.
    pub summary: &'static str,
    /// Its `ocm COMMAND --help` text, wrapped when printed; a blank line
    /// separates paragraphs.
    pub help: &'static str,
    /// Whether it takes the optional project folder `DIR` (before any
    /// operands).
    pub dir: bool,
    /// Required positional values after `DIR`, by their usage names.
    pub operands: &'static [&'static str],
    /// What follows `--`, all of it taken as is (`exec`'s `CMD [ARGS...]`).
    pub rest: Option<&'static str>,
    /// The option groups it takes besides [`GLOBAL`].
    pub groups: &'static [&'static Group],
    /// Makes the [`Command`] from what was parsed; `Err` is a usage error.
    pub build: fn(Parsed) -> Result<Command, String>,
}

impl CommandDef {
    /// Its word and its aliases.
    pub fn spellings(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.word).chain(self.aliases.iter().copied())
    }

    /// Whether it takes `option`: global options and its groups'.
    pub fn accepts(&self, option: &OptionDef) -> bool {
        option.group.id == GLOBAL.id || self.groups.iter().any(|g| g.id == option.group.id)
    }
}

/// Options that go together in help texts and in command rows.
#[derive(Debug)]
pub(crate) struct Group {
    /// What rows compare (a `&'static Group` is not one address).
    pub id: &'static str,
    /// The heading of its section in help texts.
    pub heading: &'static str,
    /// Its stand-in in a usage line (`[START OPTIONS]`); `None`: each
    /// option is listed there.
    pub usage: Option<&'static str>,
    /// What one of its options is called when a command that does not take
    /// it is given it ("--port is a start option: ...").
    pub noun: Option<&'static str>,
    /// Whether `ocm --help` shows its section (else only its commands' help).
    pub in_overview: bool,
}

/// One option.
#[derive(Debug)]
pub(crate) struct OptionDef {
    pub long: &'static str,
    pub short: Option<char>,
    /// Other long spellings, kept working for those who type them.
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    /// Its help line(s), wrapped when printed.
    pub help: &'static str,
    pub group: &'static Group,
}

/// Whether an option takes a value, and where it goes.
#[derive(Debug)]
pub(crate) enum Kind {
    Switch(fn(&mut Parsed)),
    Value {
        /// Its name in help texts (`--port N`).
        name: &'static str,
        /// Checks and stores it; `Err` is the usage error's message.
        store: fn(&mut Parsed, OsString) -> Result<(), String>,
    },
}

/// Everything the command line said, filled by the option rows and the
/// parser, read by the commands' `build` steps.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub json: bool,
    pub quiet: bool,
    pub state_dir: Option<PathBuf>,
    pub help: bool,
    pub version: bool,
    pub dir: Option<PathBuf>,
    /// The values after `DIR` (as many as the row's `operands`).
    pub operands: Vec<OsString>,
    /// Everything after `--`, when the command takes it and it was given.
    pub rest: Option<Vec<OsString>>,
    pub start: StartOptions,
    /// Which of `--port`/`--port-policy` was given, to refuse a second.
    pub port_given: Option<&'static str>,
    pub lines: Option<usize>,
    pub follow: bool,
    /// `ocm supervise`'s and `ocm unit`'s options.
    pub supervise: crate::supervise::SuperviseOptions,
    /// `ocm prompt`'s options.
    pub prompt: crate::prompt::PromptArgs,
    /// `ocm events --all`.
    pub all: bool,
    pub mcp: McpOptions,
    /// `ocm sandbox`'s options.
    pub sandbox: super::sandbox_defs::SandboxOptions,
}

impl Parsed {
    /// Help or version, when asked for: they win over anything after them.
    pub fn early_action(&self, command: Option<Name>) -> Option<Action> {
        if self.help {
            Some(Action::Help(command))
        } else if self.version {
            Some(Action::Version)
        } else {
            None
        }
    }

    /// The global options, with a placeholder action.
    pub fn cli_fields(&mut self) -> Cli {
        Cli {
            json: self.json,
            quiet: self.quiet,
            state_dir: self.state_dir.take(),
            action: Action::Help(None),
        }
    }

    pub fn into_cli(mut self, action: Action) -> Cli {
        Cli {
            action,
            ..self.cli_fields()
        }
    }
}

/// Finds the command `first` names; for a command with subcommands, the
/// next word (`next_word`) picks one.
pub(crate) fn lookup<'t>(
    table: &'t [CommandDef],
    first: &str,
    next_word: &mut dyn FnMut() -> Option<String>,
) -> Result<&'t CommandDef, String> {
    let head = |spelling: &'static str| spelling.split(' ').next().unwrap_or(spelling);
    if let Some(def) = table.iter().find(|d| d.spellings().any(|s| s == first)) {
        return Ok(def);
    }
    let subcommands: Vec<&str> = table
        .iter()
        .flat_map(|d| d.spellings())
        .filter_map(|s| s.strip_prefix(first)?.strip_prefix(' '))
        .collect();
    if subcommands.is_empty() {
        let mut heads: Vec<&str> = table.iter().map(|d| head(d.word)).collect();
        heads.dedup();
        return Err(format!(
            "unknown command '{first}' (commands: {})",
            heads.join(", ")
        ));
    }
    let Some(sub) = next_word() else {
        return Err(format!(
            "{first} needs a subcommand: {}",
            subcommands.join(", ")
        ));
    };
    let wanted = format!("{first} {sub}");
    table
        .iter()
        .find(|d| d.spellings().any(|s| s == wanted))
        .ok_or_else(|| {
            format!(
                "unknown subcommand '{sub}' of {first} (subcommands: {})",
                subcommands.join(", ")
            )
        })
}

/// Stores a non-empty text value of `ocm prompt`.
fn text_value(option: &str, value: OsString) -> Result<String, String> {
    let text = value
        .into_string()
        .map_err(|_| format!("--{option} is not valid UTF-8"))?;
    if text.trim().is_empty() {
        return Err(format!("--{option} must not be empty"));
    }
    Ok(text)
}

/// Every option; within a group, in the order help texts list them.
pub(crate) const OPTIONS: &[OptionDef] = &[
    OptionDef {
        long: "json",
        short: None,
        aliases: &[],
        kind: Kind::Switch(|p| p.json = true),
        help: "Print one JSON object on stdout (an array for ls)",
        group: &GLOBAL,
    },
    OptionDef {
        long: "quiet",
        short: Some('q'),
        aliases: &[],
        kind: Kind::Switch(|p| p.quiet = true),
        help: "No progress and no notes on stderr",
        group: &GLOBAL,
    },
    OptionDef {
        long: "state-dir",
        short: None,
        aliases: &[],
        kind: Kind::Value {
            name: "DIR",
            store: |p, value| {
                if value.is_empty() {
                    return Err("--state-dir must not be empty".into());
                }
                // As OCM_STATE_DIR: a relative folder would be another one
                // from every working folder.
                let dir = PathBuf::from(value);
                if !dir.is_absolute() {
                    return Err(format!(
                        "--state-dir must be an absolute path, got {}",
                        dir.display()
                    ));
                }
                p.state_dir = Some(dir);
                Ok(())
            },
        },
        help: "Where ocm keeps its state, an absolute path (default \
               $OCM_STATE_DIR, else $XDG_STATE_HOME/ocm, else ~/.local/state/ocm)",
        group: &GLOBAL,
    },
    OptionDef {
        long: "help",
        short: Some('h'),
        aliases: &[],
        kind: Kind::Switch(|p| p.help = true),
        help: "Show help (also after a command: ocm up --help)",
        group: &GLOBAL,
    },
    OptionDef {
        long: "version",
        short: Some('V'),
        aliases: &[],
        kind: Kind::Switch(|p| p.version = true),
        help: "Show the version",
        group: &GLOBAL,
    },
    OptionDef {
        long: "port",
        short: None,
        aliases: &[],
        kind: Kind::Value {
            name: "N",
            store: |p, value| {
                check_once(&mut p.port_given, "--port")?;
                let port =
                    parse_port(&value.to_string_lossy()).map_err(|m| format!("--port: {m}"))?;
                p.start.port_policy = Some(PortPolicy::Fixed(port));
                Ok(())
            },
        },
        help: "Use exactly port N (fails when it is taken)",
        group: &START,
    },
    OptionDef {
        long: "port-policy",
        short: None,
        aliases: &[],
        kind: Kind::Value {
            name: "P",
            store: |p, value| {
                check_once(&mut p.port_given, "--port-policy")?;
                let policy = parse_port_policy(&value.to_string_lossy())
                    .map_err(|m| format!("--port-policy: {m}"))?;
                p.start.port_policy = Some(policy);
                Ok(())
            },
        },
        help: "project: the project's port, else the next free one in \
               28000-28999 (default); auto: opencode picks; fixed:N; \
               range:A-B: the first free port of A-B",
        group: &START,
    },
    OptionDef {
        long: "hostname",
        short: None,
        aliases: &["host"],
        kind: Kind::Value {
            name: "HOST",
            store: |p, value| {
                // `[::1]` as in a URL: opencode wants the bare address.
                let host = value
                    .to_string_lossy()
                    .trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                if host.is_empty() {
                    return Err("--hostname must not be empty".into());
                }
                p.start.hostname = Some(host);
                Ok(())
            },
        },
        help: "Address to bind (default 127.0.0.1; any other address needs a \
               password)",
        group: &START,
    },
    OptionDef {
        long: "password-generate",
        short: None,
        aliases: &[],
        kind: Kind::Switch(|p| p.start.password_generate = true),
        help: "Protect the server with a generated password, kept in the \
               project's state folder (mode 0600)",
        group: &START,
    },
    OptionDef {
        long: "no-password",
        short: None,
        aliases: &[],
        kind: Kind::Switch(|p| p.start.no_password = true),
        help: "Start the server without a password even when the project's \
               last server had one (otherwise a replacement keeps it)",
        group: &START,
    },
    OptionDef {
        long: "timeout",
        short: None,
        aliases: &[],
        kind: Kind::Value {
            name: "SECS",
            store: |p, value| {
                let timeout = parse_timeout(&value.to_string_lossy())
                    .map_err(|m| format!("--timeout: {m}"))?;
                p.start.timeout = Some(timeout);
                Ok(())
            },
        },
        help: "Start-up timeout per attempt (default 30; for prompt, the turn's bound)",
        group: &START,
    },
    OptionDef {
        long: "lines",
        short: Some('n'),
        aliases: &[],
        kind: Kind::Value {
            name: "N",
            store: |p, value| {
                let text = value.to_string_lossy();
                let lines = text.trim().parse().map_err(|_| {
                    format!("-n: '{text}' is not a number of lines (a whole number >= 0)")
                })?;
                p.lines = Some(lines);
                Ok(())
            },
        },
        help: "How many lines (default 50)",
        group: &LOGS,
    },
    OptionDef {
        long: "follow",
        short: Some('f'),
        aliases: &[],
        kind: Kind::Switch(|p| p.follow = true),
        help: "Keep printing what is appended (across rotation) until Ctrl-C",
        group: &LOGS,
    },
    OptionDef {
        long: "session",
        short: None,
        aliases: &[],
        kind: Kind::Value {
            name: "ID",
            store: |p, v| {
                p.prompt.session = Some(text_value("session", v)?);
                Ok(())
            },
        },
        help: "Prompt this OpenCode session (ses_...)",
        group: &PROMPT,
    },
    OptionDef {
        long: "title",
        short: None,
        aliases: &[],
        kind: Kind::Value {
            name: "TITLE",
            store: |p, v| {
                p.prompt.title = Some(text_value("title", v)?);
                Ok(())
            },
        },
        help: "The session with this title (created on first use, resumed after)",
        group: &SESSION_KEY,
    },
    OptionDef {
        long: "team",
        short: None,
        aliases: &[],
        kind: Kind::Value {
            name: "TEAM",
            store: |p, v| {
                p.prompt.team = Some(text_value("team", v)?);
                Ok(())
            },
        },
        help: "With --agent and --role: the session titled \
               teams::TEAM::agent::AGENT::role::ROLE",
        group: &SESSION_KEY,
    },
    OptionDef {
        long: "agent",
        short: None,
        aliases: &[],
        kind: Kind::Value {
            name: "AGENT",
            store: |p, v| {
                p.prompt.agent = Some(text_value("agent", v)?);
                Ok(())
            },
        },
        help: "The team's agent id with --team; else the OpenCode agent to run",
        group: &SESSION_KEY,
    },
    OptionDef {
        long: "role",
        short: None,
        aliases: &[],
        kind: Kind::Value {
            name: "ROLE",
            store: |p, v| {
                p.prompt.role = Some(text_value("role", v)?);
                Ok(())
            },
        },
        help: "The team member's role (with --team)",
        group: &SESSION_KEY,
    },
    OptionDef {
        long: "new",
        short: None,
        aliases: &[],
        kind: Kind::Switch(|p| p.prompt.new = true),
        help: "A fresh session (it becomes the project's default)",
        group: &PROMPT,
    },
    OptionDef {
        long: "model",
        short: None,
        aliases: &[],
        kind: Kind::Value {
            name: "PROVIDER/MODEL",
            store: |p, v| {
                p.prompt.model = Some(text_value("model", v)?);
                Ok(())
            },
        },
        help: "The model (a session made for another model is replaced)",
        group: &SESSION_KEY,
    },
    OptionDef {
        long: "message-id",
        short: None,
        aliases: &[],
        kind: Kind::Value {
            name: "ID",
            store: |p, v| {
                p.prompt.message_id = Some(text_value("message-id", v)?);
                Ok(())
            },
        },
        help: "Retry the prompt with this message ID (msg_..., printed when a turn \
               fails): never a duplicate; a prompt already answered prints its reply",
        group: &PROMPT,
    },
    OptionDef {
        long: "permissions",
        short: None,
        aliases: &[],
        kind: Kind::Value {
            name: "MODE",
            store: |p, v| {
                let mode = text_value("permissions", v)?;
                if !["ask", "allow", "deny"].contains(&mode.as_str()) {
                    return Err(format!("--permissions: '{mode}' is not ask, allow or deny"));
                }
                p.prompt.permissions = Some(mode);
                Ok(())
            },
        },
        help: "What to answer a tool's permission request: ask (default: wait for \
               an answer given elsewhere), allow (once) or deny",
        group: &PROMPT,
    },
    super::supervise_defs::ALL,
    super::mcp_defs::ALLOW,
    super::mcp_defs::HTTP,
    super::mcp_defs::TOKEN_ENV,
    super::sandbox_defs::GIT,
    super::sandbox_defs::SSH_KEY,
    super::sandbox_defs::YES,
    super::supervise_defs::RESTART,
    super::supervise_defs::MAX_RESTARTS,
    super::supervise_defs::WITHIN,
    super::supervise_defs::STALL,
    super::supervise_defs::MAX_DELAY,
    super::supervise_defs::MAX_MEMORY,
    super::supervise_defs::STOP_ON_EXIT,
    super::supervise_defs::VERBOSE,
];

/// Every command, in the order `ocm --help` lists them.
pub(crate) const COMMANDS: &[CommandDef] = &[
    CommandDef {
        name: Name::Up,
        word: "up",
        aliases: &["start"],
        summary: "Start the project's server, or reuse the healthy one",
        help: "Starts the project's OpenCode server, or reuses it when the recorded one \
               is alive and healthy. A dead, hung or foreign process in the record, a \
               corrupt record or a taken port is repaired on the way (said on stderr). \
               Any number of `ocm up` at once get one server.\n\n\
               Prints one line: `ready at URL (pid N) in 1.31 s`, or `running at URL \
               (pid N), up 5m` for a reused server. Exit 4 when it fails to start, 2 \
               when the folder does not exist.",
        dir: true,
        operands: &[],
        rest: None,
        groups: &[&START],
        build: |p| {
            Ok(Command::Up {
                dir: p.dir,
                start: p.start,
            })
        },
    },
    CommandDef {
        name: Name::Down,
        word: "down",
        aliases: &["stop"],
        summary: "Stop the project's server",
        help: "Stops the project's server: SIGTERM to its process group, SIGKILL after \
               5 s. A stopped project is fine (exit 0, says it was not running, and \
               when the path is not a folder, that too). A recorded pid that is not \
               this project's server is never signalled.",
        dir: true,
        operands: &[],
        rest: None,
        groups: &[],
        build: |p| Ok(Command::Down { dir: p.dir }),
    },
    CommandDef {
        name: Name::Restart,
        word: "restart",
        aliases: &[],
        summary: "Stop the project's server and start a fresh one",
        help: "Stops the project's server (if any) and starts a fresh one. Prints \
               `ocm up`'s line, with the pid it replaced.\n\n\
               With --json: `ocm up --json`'s object plus `replaced`: the server it \
               stopped ({pid, url}), or null when none was running.",
        dir: true,
        operands: &[],
        rest: None,
        groups: &[&START],
        build: |p| {
            Ok(Command::Restart {
                dir: p.dir,
                start: p.start,
            })
        },
    },
    CommandDef {
        name: Name::Status,
        word: "status",
        aliases: &[],
        summary: "Show the server (never starts one; exit 3 unless running)",
        help: "Shows the project's server: status (running, stopped, unhealthy, dead), \
               URL, pid, uptime, memory, version and log. Never starts anything. Exit 0 \
               when it is running and healthy, 3 otherwise (also when the folder does \
               not exist, or is a file, and ocm has no server recorded for it; a server \
               whose folder was deleted is shown, with a note).",
        dir: true,
        operands: &[],
        rest: None,
        groups: &[],
        build: |p| Ok(Command::Status { dir: p.dir }),
    },
    CommandDef {
        name: Name::Ls,
        word: "ls",
        aliases: &["list"],
        summary: "List every project ocm knows, with live status",
        help: "Lists every project recorded in the state folder, with a live health \
               check. A dead server shows the port and pid it was recorded with. \
               Before the first `ocm up` the state folder need not exist: nothing is \
               listed.",
        dir: false,
        operands: &[],
        rest: None,
        groups: &[],
        build: |_| Ok(Command::Ls),
    },
    CommandDef {
        name: Name::Logs,
        word: "logs",
        aliases: &["log"],
        summary: "Print the end of the server log (-n N, -f to follow)",
        help: "Prints the last lines of the server log (the server's stdout and \
               stderr). With --json: the project's status (as `ocm status --json`) \
               plus `lines`.",
        dir: true,
        operands: &[],
        rest: None,
        groups: &[&LOGS],
        build: |p| {
            if p.follow && p.json {
                return Err("--json cannot be combined with --follow".into());
            }
            Ok(Command::Logs {
                dir: p.dir,
                lines: p.lines.unwrap_or(DEFAULT_LOG_LINES),
                follow: p.follow,
            })
        },
    },
    CommandDef {
        name: Name::Port,
        word: "port",
        aliases: &[],
        summary: "Print the project's deterministic port",
        help: "Prints the project's deterministic port: 28000 + md5(absolute path) % \
               1000, the port `ocm up` tries first. `ocm status` shows the port \
               actually in use.\n\n\
               With --json: the project's status as `ocm status --json` prints it \
               (there, as everywhere, `port` is the port the server listens on, null \
               when none runs), with `projectPort` (the deterministic port printed \
               without --json) and `projectHash`.",
        dir: true,
        operands: &[],
        rest: None,
        groups: &[],
        build: |p| Ok(Command::Port { dir: p.dir }),
    },
    CommandDef {
        name: Name::Url,
        word: "url",
        aliases: &[],
        summary: "Print the server's URL (never starts one; exit 3 unless running)",
        help: "Prints the URL of the project's running server. Never starts anything: \
               exit 3 when it is not running (or not healthy), or when the folder does \
               not exist and ocm has no server recorded for it.",
        dir: true,
        operands: &[],
        rest: None,
        groups: &[],
        build: |p| Ok(Command::Url { dir: p.dir }),
    },
    CommandDef {
        name: Name::Exec,
        word: "exec",
        aliases: &[],
        summary: "Run CMD with OPENCODE_SERVER set (starts the server if needed)",
        help: "Makes sure the project's server is up, then runs CMD with \
               OPENCODE_SERVER=<url> (and OPENCODE_SERVER_USERNAME/PASSWORD when the \
               server has a password) in its environment, in the current folder. Exits \
               with CMD's exit status; 127 when CMD is not found, 126 when it cannot be \
               run, 4 when the server fails to start. --json is refused: CMD owns \
               stdout (`ocm up --json` describes the server).",
        dir: true,
        operands: &[],
        rest: Some("CMD [ARGS...]"),
        groups: &[&START],
        build: |p| {
            if p.json {
                return Err(
                    "--json cannot be combined with exec: the command's output is on \
                            stdout (`ocm up --json` describes the server)"
                        .into(),
                );
            }
            let mut words = p
                .rest
                .ok_or("no command given: ocm exec [DIR] -- CMD [ARGS...]")?
                .into_iter();
            let program = words
                .next()
                .filter(|program| !program.is_empty())
                .ok_or("no command after `--`")?;
            Ok(Command::Exec {
                dir: p.dir,
                start: p.start,
                program,
                args: words.collect(),
            })
        },
    },
    CommandDef {
        name: Name::Gc,
        word: "gc",
        aliases: &[],
        summary: "Remove the state of stopped projects, stop unrecorded servers",
        help: "Removes the state folders of projects whose server is not running, stops \
               servers ocm started that have no record any more, and reports running \
               servers whose project folder is gone (they are left running) and records \
               it cannot read (left alone).\n\n\
               Says which projects it removed (by their folder; a state folder \
               without a record by its path).\n\n\
               With --json: {removed, projectGone, orphansStopped, busy, unreadable}; \
               each project in them is a project object (as `ocm status --json`, as it \
               was before gc ran) plus `recordPath` (the unreadable record, else \
               null).",
        dir: false,
        operands: &[],
        rest: None,
        groups: &[],
        build: |_| Ok(Command::Gc),
    },
    CommandDef {
        name: Name::Destroy,
        word: "destroy",
        aliases: &[],
        summary: "Stop the server and delete the project's state and logs",
        help: "Stops the project's server and deletes its state folder (record, lock, \
               logs).",
        dir: true,
        operands: &[],
        rest: None,
        groups: &[],
        build: |p| Ok(Command::Destroy { dir: p.dir }),
    },
    super::supervise_defs::SUPERVISE_COMMAND,
    super::supervise_defs::UNIT_COMMAND,
    CommandDef {
        name: Name::Prompt,
        word: "prompt",
        aliases: &[],
        summary: "Send a prompt exactly once and stream the reply",
        help: "Ensures the project's server and a session (default: the project's \
               default session), sends TEXT (`-`: read stdin) exactly once and streams \
               the reply text to stdout; reasoning and tool activity go to stderr when \
               it is a terminal.\n\n\
               Exit 0 done, 4 when the server could not be started, 5 when the turn \
               failed (model or tool error, watchdog, server crash, --timeout): the \
               prompt's message ID is printed, and `--message-id ID` retries it without \
               a duplicate; 1 for an error before the prompt was sent (the session has \
               a turn in flight, here or in another process); 2 bad usage; 130 Ctrl-C, \
               which aborts the turn. With --json: one JSON object per line (`type`: \
               text, reasoning, tool, permission, question, usage), the last `done` \
               (sessionId, messageId, text, usage, cost) or `failed` (error, hint, \
               exitCode, messageId); stderr has only `ocm:` notes.\n\n\
               Here --timeout SECS bounds the turn (default 3600; the turn is aborted \
               and the exit is 5); the server's start-up keeps its default.\n\n\
               A prompt that found no event relay beside the server starts `ocm relay` \
               there when it ends, so later prompts need not wait for a stream of \
               their own (OCM_NO_RELAY=1: it starts none).",
        dir: true,
        operands: &["TEXT"],
        rest: None,
        groups: &[&SESSION_KEY, &PROMPT, &START],
        build: |mut p| {
            crate::prompt::check(&p.prompt)?;
            p.prompt.dir = p.dir.take();
            // Here --timeout bounds the turn; the start-up keeps its default.
            p.prompt.timeout = p.start.timeout.take();
            p.prompt.start = p.start;
            p.prompt.text = p.operands.pop().unwrap_or_default();
            Ok(Command::Prompt(Box::new(p.prompt)))
        },
    },
    CommandDef {
        name: Name::SessionLs,
        word: "session ls",
        aliases: &["session list"],
        summary: "List the project's sessions: the registry and the server's",
        help: "Lists the project's sessions: those ocm recorded (title, status \
               active/crashed/interrupted/closed, turns, usage) merged with what the \
               server has. Starts the server when needed.",
        dir: true,
        operands: &[],
        rest: None,
        groups: &[],
        build: |p| {
            Ok(Command::Session(Box::new(SessionCommand::Ls {
                dir: p.dir,
            })))
        },
    },
    CommandDef {
        name: Name::SessionNew,
        word: "session new",
        aliases: &[],
        summary: "Create a session (by title or team key) and record it",
        help: "Creates a session titled after --title, or --team/--agent/--role \
               (teams::TEAM::agent::AGENT::role::ROLE), or the project's default \
               session, and records it; an older session of that key is marked \
               crashed. Prints its id.",
        dir: true,
        operands: &[],
        rest: None,
        groups: &[&SESSION_KEY],
        build: |mut p| {
            p.prompt.new = false;
            crate::prompt::check(&p.prompt)?;
            p.prompt.dir = p.dir.take();
            Ok(Command::Session(Box::new(SessionCommand::New(Box::new(
                p.prompt,
            )))))
        },
    },
    CommandDef {
        name: Name::SessionShow,
        word: "session show",
        aliases: &[],
        summary: "Show a session (id or title) with its usage totals",
        help: "Shows one session, by id (ses_...) or by the title it was recorded \
               under: status, turns, usage totals (tokens in, out, reasoning, cache; \
               cost), and the server's view of it.",
        dir: true,
        operands: &["SESSION"],
        rest: None,
        groups: &[],
        build: |mut p| {
            Ok(Command::Session(Box::new(SessionCommand::Show {
                dir: p.dir,
                session: p.operands.pop().unwrap_or_default(),
            })))
        },
    },
    CommandDef {
        name: Name::SessionRm,
        word: "session rm",
        aliases: &["session delete"],
        summary: "Delete a session (id or title) on the server and in the registry",
        help: "Deletes one session, by id (ses_...) or by the title it was recorded \
               under, on the server, and marks it closed in the registry.",
        dir: true,
        operands: &["SESSION"],
        rest: None,
        groups: &[],
        build: |mut p| {
            Ok(Command::Session(Box::new(SessionCommand::Rm {
                dir: p.dir,
                session: p.operands.pop().unwrap_or_default(),
            })))
        },
    },
    CommandDef {
        name: Name::Events,
        word: "events",
        aliases: &[],
        summary: "Follow the server's event stream, one event per line",
        help: "Follows the project's server's event stream (one connection to \
               /global/event) and prints one decoded event per line until Ctrl-C: \
               the project's directory only, or with --all every directory. With \
               --json: one JSON object per line (directory, type, sessionId).",
        dir: true,
        operands: &[],
        rest: None,
        groups: &[&EVENTS],
        build: |p| {
            Ok(Command::Events {
                dir: p.dir,
                all: p.all,
            })
        },
    },
    CommandDef {
        name: Name::Relay,
        word: "relay",
        aliases: &[],
        summary: "Relay the server's events to local prompts (ocm prompt starts it)",
        help: "Follows the project's running server's event stream and hands it, \
               already subscribed, to `ocm prompt`s over the socket events.sock in \
               the project's state folder, so a prompt is sent without first waiting \
               for a stream of its own (the server subscribes a new stream only \
               after its first frame: one request's time). Runs in the foreground \
               until the server stops, dies or hangs (25 s without a frame), or \
               another relay takes the socket; says why on one line. `ocm prompt` \
               starts one detached (output in relay.log in the state folder) when \
               none answered it; `ocm supervise` has its own. Never starts the \
               server: exit 3 when it is not running. --json is refused: the relay \
               prints one line.",
        dir: true,
        operands: &[],
        rest: None,
        groups: &[],
        build: |p| {
            if p.json {
                return Err(
                    "--json cannot be combined with relay: it prints one line when it \
                            ends"
                        .into(),
                );
            }
            Ok(Command::Relay { dir: p.dir })
        },
    },
    CommandDef {
        name: Name::Mcp,
        word: "mcp",
        aliases: &[],
        summary: "Serve the server lifecycle to agents over MCP (stdio or HTTP)",
        help: "Runs an MCP server (Model Context Protocol) on stdin/stdout with the tools \
               opencode_start, opencode_status, opencode_stop, opencode_restart, \
               opencode_destroy and opencode_list. stdout carries protocol messages only; \
               logs go to stderr. It ends when its input ends; the OpenCode servers it \
               started keep running.\n\n\
               --allow DIR (repeatable) limits the projects to folders inside DIR. With \
               --http ADDR:PORT it serves MCP's Streamable HTTP transport instead, on a \
               loopback address unless --token-env NAME names the variable holding the \
               bearer token every request must carry.",
        dir: false,
        operands: &[],
        rest: None,
        groups: &[&MCP],
        build: |p| {
            if p.json {
                return Err(
                    "--json cannot be combined with mcp: stdout carries the protocol".into(),
                );
            }
            if p.mcp.token_env.is_some() && p.mcp.http.is_none() {
                return Err("--token-env needs --http (stdio needs no token)".into());
            }
            Ok(Command::Mcp(p.mcp))
        },
    },
    super::sandbox_defs::UP,
    super::sandbox_defs::STATUS,
    super::sandbox_defs::DOWN,
    super::sandbox_defs::RESTART,
    super::sandbox_defs::DESTROY,
    super::sandbox_defs::LS,
];
