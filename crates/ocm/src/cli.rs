//! Command-line parsing: what the user asked for, or a usage error (exit 2).
//!
//! Global options (`--json`, `-q`, `--state-dir`, `-h`, `-V`) are accepted
//! before and after the command name; command options only after it.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::Arg;
use lexopt::prelude::*;
use manager::PortPolicy;

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
    /// Print the version.
    Version,
    /// Run a command.
    Run(Command),
}

/// The commands, by name (for help texts and error hints).
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
}

impl Name {
    /// Every command, in the order the overview lists them.
    pub const ALL: [Name; 11] = [
        Name::Up,
        Name::Down,
        Name::Restart,
        Name::Status,
        Name::Ls,
        Name::Logs,
        Name::Port,
        Name::Url,
        Name::Exec,
        Name::Gc,
        Name::Destroy,
    ];

    /// The name as typed; `start`, `stop` and `list` are aliases.
    pub fn parse(word: &str) -> Option<Name> {
        Some(match word {
            "up" | "start" => Name::Up,
            "down" | "stop" => Name::Down,
            "restart" => Name::Restart,
            "status" => Name::Status,
            "ls" | "list" => Name::Ls,
            "logs" | "log" => Name::Logs,
            "port" => Name::Port,
            "url" => Name::Url,
            "exec" => Name::Exec,
            "gc" => Name::Gc,
            "destroy" => Name::Destroy,
            _ => return None,
        })
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Name::Up => "up",
            Name::Down => "down",
            Name::Restart => "restart",
            Name::Status => "status",
            Name::Ls => "ls",
            Name::Logs => "logs",
            Name::Port => "port",
            Name::Url => "url",
            Name::Exec => "exec",
            Name::Gc => "gc",
            Name::Destroy => "destroy",
        }
    }

    /// The command's usage line.
    pub fn usage(self) -> &'static str {
        match self {
            Name::Up => "ocm up [DIR] [START OPTIONS]",
            Name::Down => "ocm down [DIR]",
            Name::Restart => "ocm restart [DIR] [START OPTIONS]",
            Name::Status => "ocm status [DIR]",
            Name::Ls => "ocm ls",
            Name::Logs => "ocm logs [DIR] [-n N] [-f]",
            Name::Port => "ocm port [DIR]",
            Name::Url => "ocm url [DIR]",
            Name::Exec => "ocm exec [DIR] [START OPTIONS] -- CMD [ARGS...]",
            Name::Gc => "ocm gc",
            Name::Destroy => "ocm destroy [DIR]",
        }
    }

    fn takes_dir(self) -> bool {
        !matches!(self, Name::Ls | Name::Gc)
    }

    fn takes_start_options(self) -> bool {
        matches!(self, Name::Up | Name::Restart | Name::Exec)
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
    let mut cli = Cli {
        json: false,
        quiet: false,
        state_dir: None,
        action: Action::Help(None),
    };
    let lex = |e: lexopt::Error| UsageError::new(e.to_string(), None);
    // Global options, then the command name.
    let name = loop {
        let Some(arg) = parser.next().map_err(lex)? else {
            return Err(UsageError::new(
                "no command given (try `ocm up`, or `ocm --help` for the list)",
                None,
            ));
        };
        match arg {
            Short('h') | Long("help") => return Ok(help(cli, None)),
            Short('V') | Long("version") => {
                cli.action = Action::Version;
                return Ok(cli);
            }
            Value(word) => {
                let word = word.to_string_lossy().into_owned();
                if word == "help" {
                    return parse_help_topic(cli, &mut parser);
                }
                match Name::parse(&word) {
                    Some(name) => break name,
                    None => {
                        return Err(UsageError::new(
                            format!(
                                "unknown command '{word}' (commands: {})",
                                Name::ALL.map(Name::as_str).join(", ")
                            ),
                            None,
                        ));
                    }
                }
            }
            other => {
                let other = OwnedArg::from(other);
                if !global_option(&mut cli, &other, &mut parser, None)? {
                    return Err(UsageError::new(other.unexpected(), None));
                }
            }
        }
    };
    parse_command(cli, name, &mut parser)
}

fn help(mut cli: Cli, name: Option<Name>) -> Cli {
    cli.action = Action::Help(name);
    cli
}

/// `ocm help [COMMAND]`.
fn parse_help_topic(cli: Cli, parser: &mut lexopt::Parser) -> Result<Cli, UsageError> {
    let lex = |e: lexopt::Error| UsageError::new(e.to_string(), None);
    let topic = match parser.next().map_err(lex)? {
        None => None,
        Some(Value(word)) => {
            let word = word.to_string_lossy().into_owned();
            Some(Name::parse(&word).ok_or_else(|| {
                UsageError::new(format!("no help for unknown command '{word}'"), None)
            })?)
        }
        Some(other) => return Err(UsageError::new(OwnedArg::from(other).unexpected(), None)),
    };
    if let Some(extra) = parser.next().map_err(lex)? {
        return Err(UsageError::new(OwnedArg::from(extra).unexpected(), None));
    }
    Ok(help(cli, topic))
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
}

/// Handles a global option; `Ok(false)` when `arg` is not one.
fn global_option(
    cli: &mut Cli,
    arg: &OwnedArg,
    parser: &mut lexopt::Parser,
    command: Option<Name>,
) -> Result<bool, UsageError> {
    let OwnedArg::Long(long) = arg else {
        if let OwnedArg::Short('q') = arg {
            cli.quiet = true;
            return Ok(true);
        }
        return Ok(false);
    };
    match long.as_str() {
        "json" => cli.json = true,
        "quiet" => cli.quiet = true,
        "state-dir" => {
            let value = parser
                .value()
                .map_err(|e| UsageError::new(e.to_string(), command))?;
            if value.is_empty() {
                return Err(UsageError::new("--state-dir must not be empty", command));
            }
            cli.state_dir = Some(PathBuf::from(value));
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse_command(mut cli: Cli, name: Name, parser: &mut lexopt::Parser) -> Result<Cli, UsageError> {
    let usage = |message: String| UsageError::new(message, Some(name));
    let lex = |e: lexopt::Error| UsageError::new(e.to_string(), Some(name));
    let mut dir: Option<PathBuf> = None;
    let mut start = StartOptions::default();
    let mut port_given: Option<&'static str> = None;
    let mut lines = DEFAULT_LOG_LINES;
    let mut follow = false;
    let mut exec_command: Option<Vec<OsString>> = None;
    loop {
        // `--` ends ocm's own arguments for `exec`: the rest is the command,
        // even when it looks like an option.
        if name == Name::Exec
            && let Some(mut raw) = parser.try_raw_args()
            && raw.next_if(|a| a == "--").is_some()
        {
            exec_command = Some(raw.collect());
            break;
        }
        let Some(arg) = parser.next().map_err(lex)? else {
            break;
        };
        match arg {
            Short('h') | Long("help") => return Ok(help(cli, Some(name))),
            Short('V') | Long("version") => {
                cli.action = Action::Version;
                return Ok(cli);
            }
            Value(value) if name.takes_dir() => {
                if dir.is_some() {
                    let hint = if name == Name::Exec {
                        " (put the command after `--`: ocm exec [DIR] -- CMD...)"
                    } else {
                        ""
                    };
                    return Err(usage(format!(
                        "unexpected argument '{}': {name} takes one folder{hint}",
                        value.to_string_lossy()
                    )));
                }
                if value.is_empty() {
                    return Err(usage("the folder must not be empty".into()));
                }
                dir = Some(PathBuf::from(value));
            }
            Long("port") if name.takes_start_options() => {
                check_once(&mut port_given, "--port", name)?;
                let value = parser.value().map_err(lex)?;
                let port = parse_port(&value.to_string_lossy())
                    .map_err(|m| usage(format!("--port: {m}")))?;
                start.port_policy = Some(PortPolicy::Fixed(port));
            }
            Long("port-policy") if name.takes_start_options() => {
                check_once(&mut port_given, "--port-policy", name)?;
                let value = parser.value().map_err(lex)?;
                start.port_policy = Some(
                    parse_port_policy(&value.to_string_lossy())
                        .map_err(|m| usage(format!("--port-policy: {m}")))?,
                );
            }
            Long("hostname") | Long("host") if name.takes_start_options() => {
                let value = parser.value().map_err(lex)?;
                // `[::1]` as in a URL: opencode wants the bare address.
                let host = value
                    .to_string_lossy()
                    .trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                if host.is_empty() {
                    return Err(usage("--hostname must not be empty".into()));
                }
                start.hostname = Some(host);
            }
            Long("password-generate") if name.takes_start_options() => {
                start.password_generate = true;
            }
            Long("timeout") if name.takes_start_options() => {
                let value = parser.value().map_err(lex)?;
                start.timeout = Some(
                    parse_timeout(&value.to_string_lossy())
                        .map_err(|m| usage(format!("--timeout: {m}")))?,
                );
            }
            Short('n') | Long("lines") if name == Name::Logs => {
                let value = parser.value().map_err(lex)?;
                let text = value.to_string_lossy();
                lines = text.trim().parse().map_err(|_| {
                    usage(format!(
                        "-n: '{text}' is not a number of lines (a whole number >= 0)"
                    ))
                })?;
            }
            Short('f') | Long("follow") if name == Name::Logs => follow = true,
            other => {
                let other = OwnedArg::from(other);
                if !global_option(&mut cli, &other, parser, Some(name))? {
                    return Err(usage(describe_unexpected(other, name)));
                }
            }
        }
    }
    let command = match name {
        Name::Up => Command::Up { dir, start },
        Name::Down => Command::Down { dir },
        Name::Restart => Command::Restart { dir, start },
        Name::Status => Command::Status { dir },
        Name::Ls => Command::Ls,
        Name::Logs => {
            if follow && cli.json {
                return Err(usage("--json cannot be combined with --follow".into()));
            }
            Command::Logs { dir, lines, follow }
        }
        Name::Port => Command::Port { dir },
        Name::Url => Command::Url { dir },
        Name::Exec => {
            let mut words = exec_command
                .ok_or_else(|| usage("no command given: ocm exec [DIR] -- CMD [ARGS...]".into()))?
                .into_iter();
            let program = words
                .next()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| usage("no command after `--`".into()))?;
            Command::Exec {
                dir,
                start,
                program,
                args: words.collect(),
            }
        }
        Name::Gc => Command::Gc,
        Name::Destroy => Command::Destroy { dir },
    };
    cli.action = Action::Run(command);
    Ok(cli)
}

/// An option or argument the command does not take, said helpfully.
fn describe_unexpected(arg: OwnedArg, name: Name) -> String {
    match arg {
        OwnedArg::Value(value) => format!(
            "unexpected argument '{}': {name} takes no folder",
            value.to_string_lossy()
        ),
        OwnedArg::Long(option)
            if matches!(
                option.as_str(),
                "port" | "port-policy" | "hostname" | "host" | "password-generate" | "timeout"
            ) =>
        {
            format!("--{option} is a start option: only up, restart and exec take it")
        }
        other => format!("{} for {name}", other.unexpected()),
    }
}

fn check_once(
    given: &mut Option<&'static str>,
    option: &'static str,
    name: Name,
) -> Result<(), UsageError> {
    if let Some(earlier) = given.replace(option) {
        let message = if earlier == option {
            format!("{option} given twice")
        } else {
            format!("{earlier} and {option} cannot be combined (give one)")
        };
        return Err(UsageError::new(message, Some(name)));
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

/// The overview printed by `ocm --help`.
pub fn overview() -> String {
    format!(
        "\
ocm {version}: one OpenCode server per project, found again from any shell

Usage: ocm [--json] [-q] <COMMAND> [DIR] [OPTIONS]

Commands:
  up [DIR]             Start the project's server, or reuse the healthy one
  down [DIR]           Stop the project's server
  restart [DIR]        Stop the project's server and start a fresh one
  status [DIR]         Show the server (never starts one; exit 3 unless running)
  ls                   List every project ocm knows, with live status
  logs [DIR]           Print the end of the server log (-n N, -f to follow)
  port [DIR]           Print the project's deterministic port
  url [DIR]            Print the server's URL (never starts one; exit 3 unless running)
  exec [DIR] -- CMD    Run CMD with OPENCODE_SERVER set (starts the server if needed)
  gc                   Remove the state of stopped projects, stop unrecorded servers
  destroy [DIR]        Stop the server and delete the project's state and logs
  help [COMMAND]       Show a command's help

DIR defaults to the current folder.

Global options:
      --json           Print one JSON object on stdout (an array for ls)
  -q, --quiet          No progress and no notes on stderr
      --state-dir DIR  Where ocm keeps its state (default $OCM_STATE_DIR,
                       else $XDG_STATE_HOME/ocm, else ~/.local/state/ocm)
  -h, --help           Show help (also after a command: ocm up --help)
  -V, --version        Show the version

{start}
Environment:
  OPENCODE_BIN              The opencode binary (default: PATH, then the
                            `cargo xtask opencode` cache)
  OCM_STATE_DIR             The state folder
  OPENCODE_SERVER_PASSWORD  Protect the server with this password (HTTP Basic,
                            user \"opencode\")

Exit status:
  0  success
  1  error
  2  bad usage, or the project folder does not exist (up, restart, exec)
  3  not running, or no such project (status, url)
  4  the server failed to start (up, restart, exec): opencode missing, the
     port taken, the spawn or the start-up failed, the state not writable
  exec exits with CMD's status (128+N when a signal N ended it)
",
        version = env!("CARGO_PKG_VERSION"),
        start = START_OPTIONS_HELP,
    )
}

const START_OPTIONS_HELP: &str = "\
Start options (up, restart, exec):
      --port N             Use exactly port N (fails when it is taken)
      --port-policy P      project: the project's port, else the next free one
                           in 28000-28999 (default); auto: opencode picks;
                           fixed:N; range:A-B: the first free port of A-B
      --hostname HOST      Address to bind (default 127.0.0.1; any other
                           address needs a password)
      --password-generate  Protect the server with a generated password,
                           kept in the project's state folder (mode 0600)
      --timeout SECS       Start-up timeout per attempt (default 30)
";

/// The help of one command.
pub fn command_help(name: Name) -> String {
    let about = match name {
        Name::Up => {
            "Starts the project's OpenCode server, or reuses it when the recorded one is alive and \
             healthy. A dead, hung or foreign process in the record, a corrupt record or a taken \
             port is repaired on the way (said on stderr). Any number of `ocm up` at once get \
             one server.\n\nPrints one line: `ready at URL (pid N) in 1.31 s`, or `running at \
             URL (pid N), up 5m` for a reused server. Exit 4 when it fails to start, 2 when the \
             folder does not exist."
        }
        Name::Down => {
            "Stops the project's server: SIGTERM to its process group, SIGKILL after 5 s. A \
             stopped project is fine (exit 0, says it was not running). A recorded pid that is \
             not this project's server is never signalled."
        }
        Name::Restart => "Stops the project's server (if any) and starts a fresh one.",
        Name::Status => {
            "Shows the project's server: status (running, stopped, unhealthy, dead), URL, pid, \
             uptime, memory, version and log. Never starts anything. Exit 0 when it is running \
             and healthy, 3 otherwise (also when the folder does not exist and ocm has no \
             server recorded for it; a server whose folder was deleted is shown, with a note)."
        }
        Name::Ls => "Lists every project recorded in the state folder, with a live health check.",
        Name::Logs => {
            "Prints the last lines of the server log (the server's stdout and stderr). With \
             --json: the project's status (as `ocm status --json`) plus `lines`.\n\n  \
             -n, --lines N   How many lines (default 50)\n  \
             -f, --follow    Keep printing what is appended (across rotation) until Ctrl-C"
        }
        Name::Port => {
            "Prints the project's deterministic port: 28000 + md5(absolute path) % 1000, the \
             port `ocm up` tries first. `ocm status` shows the port actually in use.\n\n\
             With --json: the project's status as `ocm status --json` prints it (there, as \
             everywhere, `port` is the port the server listens on, null when none runs), \
             with `projectPort` (the deterministic port printed without --json) and \
             `projectHash`."
        }
        Name::Url => {
            "Prints the URL of the project's running server. Never starts anything: exit 3 \
             when it is not running (or not healthy), or when the folder does not exist and \
             ocm has no server recorded for it."
        }
        Name::Exec => {
            "Makes sure the project's server is up, then runs CMD with OPENCODE_SERVER=<url> \
             (and OPENCODE_SERVER_USERNAME/PASSWORD when the server has a password) in its \
             environment, in the current folder. Exits with CMD's exit status; 127 when CMD \
             is not found, 126 when it cannot be run, 4 when the server fails to start."
        }
        Name::Gc => {
            "Removes the state folders of projects whose server is not running, stops servers \
             ocm started that have no record any more, and reports running servers whose \
             project folder is gone (they are left running) and records it cannot read (left \
             alone).\n\nWith --json: {removed, projectGone, orphansStopped, busy, unreadable}; \
             each project in them is a status object (as `ocm status --json`, as it was before \
             gc ran) with its `stateDir` (and, in unreadable, `recordPath`)."
        }
        Name::Destroy => {
            "Stops the project's server and deletes its state folder (record, lock, logs)."
        }
    };
    let mut text = format!("Usage: {}\n\n{about}\n", name.usage());
    if name.takes_dir() {
        text.push_str("\nDIR is the project folder (default: the current folder).\n");
    }
    if name.takes_start_options() {
        text.push('\n');
        text.push_str(START_OPTIONS_HELP);
    }
    text.push_str(
        "\nGlobal options: --json, -q/--quiet, --state-dir DIR, -h/--help (see ocm --help)\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Cli, UsageError> {
        parse(args.iter().copied())
    }

    fn command(args: &[&str]) -> Command {
        match run(args) {
            Ok(Cli {
                action: Action::Run(command),
                ..
            }) => command,
            other => panic!("{args:?}: expected a command, got {other:?}"),
        }
    }

    fn usage_error(args: &[&str]) -> UsageError {
        match run(args) {
            Err(e) => e,
            Ok(cli) => panic!("{args:?}: expected a usage error, got {cli:?}"),
        }
    }

    #[test]
    fn every_command_parses_with_and_without_a_folder() {
        assert_eq!(
            command(&["up"]),
            Command::Up {
                dir: None,
                start: StartOptions::default()
            }
        );
        assert_eq!(
            command(&["down", "/p"]),
            Command::Down {
                dir: Some("/p".into())
            }
        );
        assert_eq!(command(&["ls"]), Command::Ls);
        assert_eq!(command(&["list"]), Command::Ls);
        assert_eq!(command(&["gc"]), Command::Gc);
        assert_eq!(command(&["stop"]), Command::Down { dir: None });
        for name in Name::ALL {
            if name.takes_dir() && name != Name::Exec {
                assert!(run(&[name.as_str(), "some/dir"]).is_ok(), "{name}");
            }
        }
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let before = run(&["--json", "-q", "status", "/p"]).unwrap();
        let after = run(&["status", "/p", "--json", "--quiet"]).unwrap();
        assert_eq!(before, after);
        assert!(before.json && before.quiet);
        let dir = run(&["--state-dir", "/s", "ls"]).unwrap();
        assert_eq!(dir.state_dir, Some(PathBuf::from("/s")));
        let dir = run(&["ls", "--state-dir=/t"]).unwrap();
        assert_eq!(dir.state_dir, Some(PathBuf::from("/t")));
    }

    #[test]
    fn start_options() {
        let Command::Up { dir, start } = command(&[
            "up",
            ".",
            "--port",
            "9000",
            "--hostname",
            "[::1]",
            "--password-generate",
            "--timeout",
            "2.5",
        ]) else {
            panic!("not up");
        };
        assert_eq!(dir, Some(PathBuf::from(".")));
        assert_eq!(start.port_policy, Some(PortPolicy::Fixed(9000)));
        assert_eq!(start.hostname.as_deref(), Some("::1"));
        assert!(start.password_generate);
        assert_eq!(start.timeout, Some(Duration::from_millis(2500)));
        let Command::Restart { start, .. } = command(&["restart", "--port-policy", "range:1-5"])
        else {
            panic!("not restart");
        };
        assert_eq!(start.port_policy, Some(PortPolicy::Range(1..=5)));
    }

    #[test]
    fn port_policies() {
        assert_eq!(parse_port_policy("project"), Ok(PortPolicy::Project));
        assert_eq!(parse_port_policy("auto"), Ok(PortPolicy::Auto));
        assert_eq!(parse_port_policy("fixed:80"), Ok(PortPolicy::Fixed(80)));
        assert_eq!(
            parse_port_policy("range:28000-28010"),
            Ok(PortPolicy::Range(28000..=28010))
        );
        for bad in [
            "",
            "fixed",
            "fixed:0",
            "fixed:70000",
            "range:5-1",
            "range:5",
            "ports",
            "range:a-b",
        ] {
            assert!(parse_port_policy(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn logs_options() {
        assert_eq!(
            command(&["logs"]),
            Command::Logs {
                dir: None,
                lines: DEFAULT_LOG_LINES,
                follow: false
            }
        );
        assert_eq!(
            command(&["logs", "/p", "-n", "5", "-f"]),
            Command::Logs {
                dir: Some("/p".into()),
                lines: 5,
                follow: true
            }
        );
        assert_eq!(
            command(&["logs", "-n5", "--lines=7"]),
            Command::Logs {
                dir: None,
                lines: 7,
                follow: false
            }
        );
    }

    #[test]
    fn exec_takes_everything_after_the_double_dash() {
        assert_eq!(
            command(&["exec", "/p", "--port", "9", "--", "sh", "-c", "echo --json"]),
            Command::Exec {
                dir: Some("/p".into()),
                start: StartOptions {
                    port_policy: Some(PortPolicy::Fixed(9)),
                    ..StartOptions::default()
                },
                program: "sh".into(),
                args: vec!["-c".into(), "echo --json".into()],
            }
        );
        let Command::Exec { dir, program, .. } = command(&["exec", "--", "--weird", "--"]) else {
            panic!("not exec");
        };
        assert_eq!(dir, None);
        assert_eq!(program, OsString::from("--weird"));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(run(&["--help"]).unwrap().action, Action::Help(None));
        assert_eq!(run(&["-h"]).unwrap().action, Action::Help(None));
        assert_eq!(run(&["help"]).unwrap().action, Action::Help(None));
        assert_eq!(
            run(&["help", "logs"]).unwrap().action,
            Action::Help(Some(Name::Logs))
        );
        assert_eq!(
            run(&["up", "-h"]).unwrap().action,
            Action::Help(Some(Name::Up))
        );
        // Help wins over a bad option after it, as in most tools.
        assert_eq!(
            run(&["exec", "--help", "--bogus"]).unwrap().action,
            Action::Help(Some(Name::Exec))
        );
        assert_eq!(run(&["--version"]).unwrap().action, Action::Version);
        assert_eq!(run(&["-V"]).unwrap().action, Action::Version);
        for name in Name::ALL {
            let text = command_help(name);
            assert!(
                text.starts_with(&format!("Usage: {}", name.usage())),
                "{text}"
            );
        }
        assert!(overview().contains("Exit status"));
    }

    #[test]
    fn bad_usage_is_explained() {
        let cases: &[(&[&str], &str, Option<Name>)] = &[
            (&[], "no command given", None),
            (&["frobnicate"], "unknown command 'frobnicate'", None),
            (&["--bogus"], "--bogus", None),
            (&["up", "--bogus"], "--bogus", Some(Name::Up)),
            (&["up", "a", "b"], "unexpected argument 'b'", Some(Name::Up)),
            (&["up", "--port"], "missing argument", Some(Name::Up)),
            (&["up", "--port", "0"], "not a port", Some(Name::Up)),
            (&["up", "--port", "x"], "not a port number", Some(Name::Up)),
            (
                &["up", "--port", "1", "--port-policy", "auto"],
                "cannot be combined",
                Some(Name::Up),
            ),
            (
                &["up", "--port", "1", "--port", "2"],
                "twice",
                Some(Name::Up),
            ),
            (&["up", "--timeout", "0"], "out of range", Some(Name::Up)),
            (&["up", "--timeout", "soon"], "not a number", Some(Name::Up)),
            (
                &["up", "--hostname", ""],
                "must not be empty",
                Some(Name::Up),
            ),
            (&["up", ""], "must not be empty", Some(Name::Up)),
            (&["down", "--port", "1"], "start option", Some(Name::Down)),
            (
                &["status", "a", "b"],
                "unexpected argument 'b'",
                Some(Name::Status),
            ),
            (&["ls", "/p"], "takes no folder", Some(Name::Ls)),
            (&["gc", "-f"], "'-f'", Some(Name::Gc)),
            (
                &["logs", "-n", "many"],
                "not a number of lines",
                Some(Name::Logs),
            ),
            (
                &["logs", "-n", "-3"],
                "not a number of lines",
                Some(Name::Logs),
            ),
            (&["logs", "-f", "--json"], "--follow", Some(Name::Logs)),
            (&["exec"], "no command given", Some(Name::Exec)),
            (&["exec", "/p"], "no command given", Some(Name::Exec)),
            (&["exec", "/p", "sh"], "after `--`", Some(Name::Exec)),
            (&["exec", "--"], "no command after", Some(Name::Exec)),
            (&["help", "nope"], "unknown command 'nope'", None),
            (&["--state-dir"], "missing argument", None),
            (
                &["url", "--state-dir", ""],
                "must not be empty",
                Some(Name::Url),
            ),
        ];
        for (args, needle, command) in cases {
            let error = usage_error(args);
            assert!(
                error.message.contains(needle),
                "{args:?}: {:?} does not mention {needle:?}",
                error.message
            );
            assert_eq!(error.command, *command, "{args:?}");
        }
    }
}
