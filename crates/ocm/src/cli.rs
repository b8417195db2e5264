//! Command-line parsing: what the user asked for, or a usage error (exit 2).
//!
//! Global options (`--json`, `-q`, `--state-dir`, `-h`, `-V`) are accepted
//! before and after the command name; command options only after it.
//!
//! Every command and option is one row of the tables in [`defs`]; the
//! parser here and the help texts in [`help`] only read them, so what
//! `--help` says and what the parser accepts cannot drift apart.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use lexopt::Arg;
use lexopt::prelude::*;
use manager::PortPolicy;

mod defs;
mod groups;
mod help;
mod mcp_defs;
mod sandbox_defs;
mod supervise_defs;
#[cfg(test)]
mod tests;

use defs::{COMMANDS, CommandDef, GLOBAL, Kind, OPTIONS, OptionDef, Parsed};
pub use help::{command_help, group_help, overview};

/// The longest start-up timeout `--timeout` accepts.
const MAX_TIMEOUT_SECS: f64 = 3600.0;

/// The default of `ocm logs -n`.
pub const DEFAULT_LOG_LINES: usize = 50;

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Cli {
    /// `--json`: one JSON object (an array for `ls`) on stdout.
    pub json: bool,
    /// `-q`: no progress, notes or summary chatter on stderr.
    pub quiet: bool,
    /// `--state-dir`: overrides `OCM_STATE_DIR`.
    pub state_dir: Option<PathBuf>,
    /// What to do.
    pub action: Action,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Print help: the overview, or one command's.
    Help(Option<Name>),
    /// Print the help of a command with subcommands (`ocm help sandbox`,
    /// `ocm sandbox --help`): the word.
    GroupHelp(&'static str),
    /// Print the version.
    Version,
    /// Run a command.
    Run(Command),
}

/// The commands, by name (for help texts and error hints). Each has one row
/// in [`defs::COMMANDS`] with everything else about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Up,
    Down,
    Restart,
    Status,
    Ls,
    Logs,
    Port,
    Url,
    Exec,
    Gc,
    Destroy,
    Supervise,
    Unit,
    Prompt,
    SessionLs,
    SessionNew,
    SessionShow,
    SessionRm,
    Events,
    Relay,
    Mcp,
    SandboxUp,
    SandboxStatus,
    SandboxDown,
    SandboxRestart,
    SandboxDestroy,
    SandboxLs,
}

impl Name {
    /// Every command, in the order the overview lists them (the table's).
    pub const ALL: [Name; COMMANDS.len()] = {
        let mut all = [Name::Up; COMMANDS.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = COMMANDS[i].name;
            i += 1;
        }
        all
    };

    /// The name as typed, or one of its aliases (`start`, `stop`, `list`).
    pub fn parse(word: &str) -> Option<Name> {
        COMMANDS
            .iter()
            .find(|def| def.spellings().any(|spelling| spelling == word))
            .map(|def| def.name)
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        self.def().word
    }

    /// The command's usage line, made from its row of the table.
    pub fn usage(self) -> &'static str {
        // Made once: callers want a `&'static str` to put in messages.
        static USAGES: OnceLock<Vec<String>> = OnceLock::new();
        let usages = USAGES.get_or_init(|| COMMANDS.iter().map(help::usage_line).collect());
        // `ALL` is in the table's order.
        let index = Name::ALL
            .iter()
            .position(|name| *name == self)
            .expect("every Name has a row in COMMANDS (tested)");
        &usages[index]
    }

    fn takes_dir(self) -> bool {
        self.def().dir
    }

    fn def(self) -> &'static CommandDef {
        COMMANDS
            .iter()
            .find(|def| def.name == self)
            .expect("every Name has a row in COMMANDS (tested)")
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a server is started (`up`, `restart`, `exec`); `None`: the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartOptions {
    /// `--port N` or `--port-policy`.
    pub port_policy: Option<PortPolicy>,
    /// `--hostname H`.
    pub hostname: Option<String>,
    /// `--password-generate`.
    pub password_generate: bool,
    /// `--no-password`.
    pub no_password: bool,
    /// `--timeout SECS`: start-up timeout per attempt.
    pub timeout: Option<Duration>,
}

/// A command with its arguments. `dir` is `None` for the current folder.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Up {
        dir: Option<PathBuf>,
        start: StartOptions,
    },
    Down {
        dir: Option<PathBuf>,
    },
    Restart {
        dir: Option<PathBuf>,
        start: StartOptions,
    },
    Status {
        dir: Option<PathBuf>,
    },
    Ls,
    Logs {
        dir: Option<PathBuf>,
        lines: usize,
        follow: bool,
    },
    Port {
        dir: Option<PathBuf>,
    },
    Url {
        dir: Option<PathBuf>,
    },
    Exec {
        dir: Option<PathBuf>,
        start: StartOptions,
        program: OsString,
        args: Vec<OsString>,
    },
    Gc,
    Destroy {
        dir: Option<PathBuf>,
    },
    Supervise(crate::supervise::SuperviseArgs),
    Unit(crate::supervise::SuperviseArgs),
    Prompt(Box<crate::prompt::PromptArgs>),
    Session(Box<SessionCommand>),
    Events {
        dir: Option<PathBuf>,
        all: bool,
    },
    /// `ocm relay`: the project's event relay, in the foreground.
    Relay {
        dir: Option<PathBuf>,
    },
    /// `ocm mcp`: serve the tools to agents.
    Mcp(McpOptions),
    /// `ocm sandbox ...`.
    Sandbox(SandboxCommand),
}

/// `ocm sandbox up|status|down|restart|destroy NAME` and `ocm sandbox ls`.
#[derive(Debug, Clone, PartialEq)]
pub enum SandboxCommand {
    /// A command about one sandbox.
    One {
        /// Its name (checked: letters, digits, `-`, `_`, 1-64).
        name: sandbox::SandboxName,
        /// What to do with it.
        action: SandboxAction,
    },
    /// `ocm sandbox ls`.
    Ls,
}

/// What `ocm sandbox` does with one sandbox.
#[derive(Debug, Clone, PartialEq)]
pub enum SandboxAction {
    /// `up [--git URL] [--ssh-key PATH]` (the URL checked, the key path
    /// absolute).
    Up {
        git: Option<String>,
        ssh_key: Option<PathBuf>,
    },
    Status,
    Down,
    Restart,
    /// `destroy [--yes]`: without `yes`, only says what would be deleted.
    Destroy {
        yes: bool,
    },
}

/// `ocm session ls|new|show|rm`.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionCommand {
    Ls {
        dir: Option<PathBuf>,
    },
    /// The key options (title, team) in a [`crate::prompt::PromptArgs`].
    New(Box<crate::prompt::PromptArgs>),
    Show {
        dir: Option<PathBuf>,
        session: OsString,
    },
    Rm {
        dir: Option<PathBuf>,
        session: OsString,
    },
}

/// `ocm mcp`'s options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct McpOptions {
    /// `--allow DIR` (repeatable): the folders projects must be in.
    pub allow: Vec<PathBuf>,
    /// `--http ADDR:PORT`: Streamable HTTP instead of stdio.
    pub http: Option<String>,
    /// `--token-env NAME`: the variable holding the bearer token.
    pub token_env: Option<String>,
}

/// A command line ocm cannot make sense of: exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    /// What is wrong.
    pub message: String,
    /// The command it is about, for the usage line and the help hint.
    pub command: Option<Name>,
}

impl UsageError {
    fn new(message: impl Into<String>, command: Option<Name>) -> Self {
        UsageError {
            message: message.into(),
            command,
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Cli, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut parser = lexopt::Parser::from_args(args);
    let mut parsed = Parsed::default();
    let lex = |e: lexopt::Error| UsageError::new(e.to_string(), None);
    // Global options, then the command name.
    let def = loop {
        let Some(arg) = parser.next().map_err(lex)? else {
            return Err(UsageError::new(
                "no command given (try `ocm up`, or `ocm --help` for the list)",
                None,
            ));
        };
        match arg {
            Value(word) => {
                let word = word.to_string_lossy().into_owned();
                if word == "help" {
                    return parse_help_topic(parsed, &mut parser);
                }
                // `ocm session --help`: the overview, which lists the
                // subcommands.
                let mut asked_help = false;
                let mut next_word = || match parser.next() {
                    Ok(Some(Value(sub))) => Some(sub.to_string_lossy().into_owned()),
                    Ok(Some(Long("help") | Short('h'))) => {
                        asked_help = true;
                        None
                    }
                    _ => None,
                };
                let found = defs::lookup(COMMANDS, &word, &mut next_word);
                match found {
                    Ok(def) => break def,
                    Err(_) if asked_help => {
                        let action = match help::group_word(&word) {
                            Some(word) => Action::GroupHelp(word),
                            None => Action::Help(None),
                        };
                        return Ok(parsed.into_cli(action));
                    }
                    Err(message) => return Err(UsageError::new(message, None)),
                }
            }
            other => {
                let other = OwnedArg::from(other);
                apply_option(&mut parsed, &other, &mut parser, None)?;
                if let Some(action) = parsed.early_action(None) {
                    return Ok(parsed.into_cli(action));
                }
            }
        }
    };
    parse_command(parsed, def, &mut parser)
}

/// `ocm help [COMMAND]`.
fn parse_help_topic(parsed: Parsed, parser: &mut lexopt::Parser) -> Result<Cli, UsageError> {
    let lex = |e: lexopt::Error| UsageError::new(e.to_string(), None);
    // All the words, so that `ocm help session ls` finds a subcommand.
    let mut words = Vec::new();
    while let Some(arg) = parser.next().map_err(lex)? {
        match arg {
            Value(word) => words.push(word.to_string_lossy().into_owned()),
            other => return Err(UsageError::new(OwnedArg::from(other).unexpected(), None)),
        }
    }
    let topic = if words.is_empty() {
        None
    } else {
        let topic = words.join(" ");
        if let Some(word) = help::group_word(&topic) {
            return Ok(parsed.into_cli(Action::GroupHelp(word)));
        }
        Some(Name::parse(&topic).ok_or_else(|| {
            UsageError::new(format!("no help for unknown command '{topic}'"), None)
        })?)
    };
    Ok(parsed.into_cli(Action::Help(topic)))
}

/// An argument lexopt returned, no longer borrowing the parser.
enum OwnedArg {
    Short(char),
    Long(String),
    Value(OsString),
}

impl From<Arg<'_>> for OwnedArg {
    fn from(arg: Arg<'_>) -> Self {
        match arg {
            Short(c) => OwnedArg::Short(c),
            Long(s) => OwnedArg::Long(s.to_string()),
            Value(v) => OwnedArg::Value(v),
        }
    }
}

impl OwnedArg {
    /// Why it is not accepted, in lexopt's words.
    fn unexpected(&self) -> String {
        match self {
            OwnedArg::Short(c) => format!("invalid option '-{c}'"),
            OwnedArg::Long(s) => format!("invalid option '--{s}'"),
            OwnedArg::Value(v) => format!("unexpected argument '{}'", v.to_string_lossy()),
        }
    }

    /// The option row it spells among `options`.
    fn find<'t>(&self, mut options: impl Iterator<Item = &'t OptionDef>) -> Option<&'t OptionDef> {
        match self {
            OwnedArg::Short(c) => options.find(|o| o.short == Some(*c)),
            OwnedArg::Long(s) => options.find(|o| o.long == s || o.aliases.contains(&s.as_str())),
            OwnedArg::Value(_) => None,
        }
    }
}

/// Applies the option `arg` names: a global one, or (after the command
/// name) one of `command`'s.
fn apply_option(
    parsed: &mut Parsed,
    arg: &OwnedArg,
    parser: &mut lexopt::Parser,
    command: Option<&CommandDef>,
) -> Result<(), UsageError> {
    let name = command.map(|def| def.name);
    let accepted = OPTIONS.iter().filter(|option| match command {
        Some(def) => def.accepts(option),
        None => option.group.id == GLOBAL.id,
    });
    let Some(option) = arg.find(accepted) else {
        return Err(UsageError::new(describe_unexpected(arg, command), name));
    };
    match option.kind {
        Kind::Switch(set) => set(parsed),
        Kind::Value { store, .. } => {
            let value = parser
                .value()
                .map_err(|e| UsageError::new(e.to_string(), name))?;
            store(parsed, value).map_err(|message| UsageError::new(message, name))?;
        }
    }
    Ok(())
}

fn parse_command(
    mut parsed: Parsed,
    def: &'static CommandDef,
    parser: &mut lexopt::Parser,
) -> Result<Cli, UsageError> {
    let name = def.name;
    let usage = |message: String| UsageError::new(message, Some(name));
    let lex = |e: lexopt::Error| UsageError::new(e.to_string(), Some(name));
    let mut values: Vec<OsString> = Vec::new();
    let most_values = if supervise_defs::MANY_DIRS.contains(&name) {
        usize::MAX
    } else {
        usize::from(def.dir) + def.operands.len()
    };
    loop {
        // `--` ends ocm's own arguments for `exec`: the rest is the command,
        // even when it looks like an option.
        if def.rest.is_some()
            && let Some(mut raw) = parser.try_raw_args()
            && raw.next_if(|a| a == "--").is_some()
        {
            parsed.rest = Some(raw.collect());
            break;
        }
        let Some(arg) = parser.next().map_err(lex)? else {
            break;
        };
        match OwnedArg::from(arg) {
            OwnedArg::Value(value) => {
                if values.len() == most_values {
                    return Err(usage(describe_extra_value(&value, def)));
                }
                values.push(value);
            }
            other => {
                apply_option(&mut parsed, &other, parser, Some(def))?;
                if let Some(action) = parsed.early_action(Some(name)) {
                    return Ok(parsed.into_cli(action));
                }
            }
        }
    }
    // DIR is optional and comes first: it is there when there are more
    // values than the required operands.
    if def.dir && values.len() > def.operands.len() {
        let dir = values.remove(0);
        if dir.is_empty() {
            return Err(usage("the folder must not be empty".into()));
        }
        parsed.dir = Some(PathBuf::from(dir));
    }
    if let Some(missing) = def.operands.get(values.len()) {
        return Err(usage(format!("{missing} missing: {}", name.usage())));
    }
    parsed.operands = values;
    let mut cli = parsed.cli_fields();
    let command = (def.build)(parsed).map_err(usage)?;
    cli.action = Action::Run(command);
    Ok(cli)
}

/// A value after the command takes all the values it has room for.
fn describe_extra_value(value: &OsString, def: &CommandDef) -> String {
    let value = value.to_string_lossy();
    if !def.operands.is_empty() {
        return format!("unexpected argument '{value}': {}", def.name.usage());
    }
    if !def.dir {
        return format!(
            "unexpected argument '{value}': {} takes no folder",
            def.word
        );
    }
    let hint = match def.rest {
        Some(rest) => {
            let first = rest.split(' ').next().unwrap_or(rest);
            format!(" (put {first} after `--`)")
        }
        None => String::new(),
    };
    format!(
        "unexpected argument '{value}': {} takes one folder{hint}",
        def.word
    )
}

/// An option the command (or, before the command, ocm) does not take, said
/// helpfully: which commands do take it.
fn describe_unexpected(arg: &OwnedArg, command: Option<&CommandDef>) -> String {
    let Some(def) = command else {
        return arg.unexpected();
    };
    let Some(option) = arg.find(OPTIONS.iter()) else {
        return format!("{} for {}", arg.unexpected(), def.word);
    };
    let takers: Vec<&str> = COMMANDS
        .iter()
        .filter(|other| other.accepts(option))
        .map(|other| other.word)
        .collect();
    let takes = if takers.len() == 1 { "takes" } else { "take" };
    let takers = help::and_list(&takers);
    match (option.group.noun, arg) {
        (Some(noun), OwnedArg::Long(spelled)) => {
            format!("--{spelled} is {noun}: only {takers} {takes} it")
        }
        _ => format!(
            "{} for {} (only {takers} {takes} it)",
            arg.unexpected(),
            def.word
        ),
    }
}

/// Notes that `option` was given, failing when it or its rival
/// (`--port` and `--port-policy`) already was.
fn check_once(given: &mut Option<&'static str>, option: &'static str) -> Result<(), String> {
    if let Some(earlier) = given.replace(option) {
        return Err(if earlier == option {
            format!("{option} given twice")
        } else {
            format!("{earlier} and {option} cannot be combined (give one)")
        });
    }
    Ok(())
}

/// A port number 1-65535.
pub fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u32>() {
        Ok(port) if (1..=65535).contains(&port) => Ok(port as u16),
        Ok(_) => Err(format!("'{text}' is not a port (1-65535)")),
        Err(_) => Err(format!("'{text}' is not a port number")),
    }
}

/// `project`, `auto`, `fixed:N` or `range:A-B`.
pub fn parse_port_policy(text: &str) -> Result<PortPolicy, String> {
    let text = text.trim();
    if text == "project" {
        return Ok(PortPolicy::Project);
    }
    if text == "auto" {
        return Ok(PortPolicy::Auto);
    }
    if let Some(port) = text.strip_prefix("fixed:") {
        return parse_port(port).map(PortPolicy::Fixed);
    }
    if let Some(range) = text.strip_prefix("range:") {
        let (first, last) = range
            .split_once('-')
            .ok_or_else(|| format!("'{range}' is not a range A-B"))?;
        let (first, last) = (parse_port(first)?, parse_port(last)?);
        if first > last {
            return Err(format!("the range {first}-{last} is empty"));
        }
        return Ok(PortPolicy::Range(first..=last));
    }
    Err(format!(
        "'{text}' is not a port policy (project, auto, fixed:N or range:A-B)"
    ))
}

/// Seconds, fractions allowed: more than 0, at most an hour.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !seconds.is_finite() || seconds <= 0.0 || seconds > MAX_TIMEOUT_SECS {
        return Err(format!(
            "'{text}' is out of range (more than 0, at most {MAX_TIMEOUT_SECS} seconds)"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}
