//! Help texts and usage lines, made from the command and option tables.
//!
//! Everything is wrapped at [`WIDTH`] columns, continuation lines indented
//! under the text they continue, so a new row needs no layout work.

use super::Name;
use super::defs::{COMMANDS, CommandDef, GLOBAL, Group, Kind, OPTIONS, OptionDef};

/// The widest a help line may be (a terminal's 80 columns, less a margin).
pub(crate) const WIDTH: usize = 78;

/// The overview printed by `ocm --help`.
pub fn overview() -> String {
    let mut text = format!(
        "ocm {}: one OpenCode server per project, found again from any shell\n\n\
         Usage: ocm [--json] [-q] <COMMAND> [DIR] [OPTIONS]\n\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut commands: Vec<(String, &str)> = COMMANDS
        .iter()
        .map(|def| (format!("  {}", overview_words(def)), def.summary))
        .collect();
    commands.push(("  help [COMMAND]".into(), "Show a command's help"));
    let globals = option_rows(OPTIONS.iter().filter(|o| o.group.id == GLOBAL.id));
    // The commands and the global options line up in one column.
    let column = column_for(&commands).max(column_for(&globals));
    text.push_str("Commands:\n");
    push_rows(&mut text, &commands, column);
    text.push_str("\nDIR defaults to the current folder.\n\n");
    text.push_str(&format!("{}:\n", GLOBAL.heading));
    push_rows(&mut text, &globals, column);
    for group in groups() {
        if group.id != GLOBAL.id && group.in_overview {
            text.push('\n');
            text.push_str(&group_section(group));
        }
    }
    text.push_str(ENVIRONMENT_AND_EXIT_STATUS);
    text
}

/// The rest of `ocm --help`: what no table row says.
const ENVIRONMENT_AND_EXIT_STATUS: &str = "
Environment:
  OPENCODE_BIN              The opencode binary (default: PATH, then the
                            `cargo xtask opencode` cache)
  OCM_STATE_DIR             The state folder
  XDG_DATA_HOME             Where sandboxes and their keys go (ocm/sandboxes,
                            ocm/keys; default ~/.local/share)
  OCM_ENV                   production (default) or development: whether a
                            sandbox's missing .env is generated
  OPENCODE_SERVER_PASSWORD  Protect the server with this password (HTTP Basic,
                            user \"opencode\")

Exit status:
  0  success
  1  error
  2  bad usage, or the project folder does not exist (up, restart, exec)
  3  not running, or no such project (status, url)
  4  the server failed to start (up, restart, exec): opencode missing, the
     port taken, the spawn or the start-up failed, the state not writable
  5  the turn failed (prompt): model or tool error, watchdog, server crash
  6  waiting for the deploy key (sandbox up, sandbox status): add the public
     key printed on stdout to the git server, then run the same command again
  exec exits with CMD's status (128+N when a signal N ended it)
";

/// The first word of commands with subcommands (`session`, `sandbox`)
/// when `word` is one, as the table spells it.
pub(crate) fn group_word(word: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .filter_map(|def| def.word.split_once(' ').map(|(head, _)| head))
        .find(|head| *head == word)
}

/// The help of a command with subcommands: each one's usage and summary,
/// and for `sandbox` what a sandbox is.
pub fn group_help(word: &str) -> String {
    let rows: Vec<(String, &str)> = COMMANDS
        .iter()
        .filter(|def| {
            def.word
                .split_once(' ')
                .is_some_and(|(head, _)| head == word)
        })
        .map(|def| (format!("  {}", usage_line(def)), def.summary))
        .collect();
    let mut text = format!(
        "Usage: ocm {word} <COMMAND> ...

"
    );
    if word == "sandbox" {
        push_wrapped(&mut text, SANDBOX_ABOUT);
        text.push('\n');
    }
    text.push_str("Commands:\n");
    for (usage, summary) in &rows {
        text.push_str(usage);
        text.push('\n');
        push_wrapped(&mut text, &format!("    {summary}"));
    }
    text.push_str(&format!("\nSee `ocm {word} COMMAND --help` for each.\n"));
    text
}

/// What `ocm help sandbox` says before the commands.
const SANDBOX_ABOUT: &str = "A sandbox is a named project made from a git URL: a folder \
    $XDG_DATA_HOME/ocm/sandboxes/NAME with its secrets in .env (0600), the clone in repo/, \
    its OpenCode server and a companion (`ocm mcp --http` on a port in 5100-5199, with a \
    bearer token), managed together. .env keys: GIT_URL, SSH_KEY_PATH, \
    OPENCODE_SERVER_PASSWORD, MCP_TOOL_BEARER_TOKEN; optional OPENCODE_PORT, MCP_TOOL_PORT, \
    OPENCODE_BIN, COMPANION_COMMAND. Without .env, production (the default) stops with the \
    missing keys; OCM_ENV=development generates it with random secrets.\n";

/// The help of one command.
pub fn command_help(name: Name) -> String {
    let def = name.def();
    let mut text = format!("Usage: {}\n\n", name.usage());
    push_wrapped(&mut text, def.help);
    if name.takes_dir() {
        text.push_str("\nDIR is the project folder (default: the current folder).\n");
    }
    for group in def.groups {
        text.push('\n');
        text.push_str(&group_section(group));
    }
    let globals: Vec<String> = OPTIONS
        .iter()
        .filter(|o| o.group.id == GLOBAL.id)
        .map(|o| {
            let long = format!("--{}{}", o.long, value_suffix(o));
            match o.short {
                Some(short) => format!("-{short}/{long}"),
                None => long,
            }
        })
        .collect();
    text.push('\n');
    push_wrapped(
        &mut text,
        &format!("Global options: {} (see ocm --help)", globals.join(", ")),
    );
    text
}

/// `ocm WORD [DIR] OPERANDS [OPTIONS...] -- REST`.
pub(crate) fn usage_line(def: &CommandDef) -> String {
    let mut line = format!("ocm {}", def.word);
    if def.dir {
        line.push_str(" [DIR]");
    }
    for operand in def.operands {
        line.push(' ');
        line.push_str(operand);
    }
    for group in def.groups {
        match group.usage {
            Some(label) => line.push_str(&format!(" [{label}]")),
            None => {
                for option in OPTIONS.iter().filter(|o| o.group.id == group.id) {
                    let spelled = match option.short {
                        Some(short) => format!("-{short}"),
                        None => format!("--{}", option.long),
                    };
                    line.push_str(&format!(" [{spelled}{}]", value_suffix(option)));
                }
            }
        }
    }
    if let Some(rest) = def.rest {
        line.push_str(&format!(" -- {rest}"));
    }
    line
}

/// `a`, `a and b`, `a, b and c`.
pub(crate) fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The command's words in the overview: `exec [DIR] -- CMD`.
fn overview_words(def: &CommandDef) -> String {
    let mut words = def.word.to_string();
    if def.dir {
        words.push_str(" [DIR]");
    }
    for operand in def.operands {
        words.push(' ');
        words.push_str(operand);
    }
    if let Some(rest) = def.rest {
        let first = rest.split(' ').next().unwrap_or(rest);
        words.push_str(&format!(" -- {first}"));
    }
    words
}

/// Every group some option belongs to, in the order of first use.
fn groups() -> Vec<&'static Group> {
    let mut groups: Vec<&'static Group> = Vec::new();
    for option in OPTIONS {
        if !groups.iter().any(|g| g.id == option.group.id) {
            groups.push(option.group);
        }
    }
    groups
}

/// `Start options (up, restart, exec):` and one row per option.
fn group_section(group: &Group) -> String {
    let takers: Vec<&str> = COMMANDS
        .iter()
        .filter(|def| def.groups.iter().any(|g| g.id == group.id))
        .map(|def| def.word)
        .collect();
    let mut text = if takers.len() > 1 {
        format!("{} ({}):\n", group.heading, takers.join(", "))
    } else {
        format!("{}:\n", group.heading)
    };
    let rows = option_rows(OPTIONS.iter().filter(|o| o.group.id == group.id));
    push_rows(&mut text, &rows, column_for(&rows));
    text
}

/// ` N` for an option that takes a value named N.
fn value_suffix(option: &OptionDef) -> String {
    match option.kind {
        Kind::Value { name, .. } => format!(" {name}"),
        Kind::Switch(_) => String::new(),
    }
}

/// `  -n, --lines N` / `      --json`, with the help (and aliases).
fn option_rows<'t>(options: impl Iterator<Item = &'t OptionDef>) -> Vec<(String, String)> {
    options
        .map(|option| {
            let short = match option.short {
                Some(short) => format!("-{short}, "),
                None => "    ".into(),
            };
            let left = format!("  {short}--{}{}", option.long, value_suffix(option));
            let mut help = option.help.to_string();
            if !option.aliases.is_empty() {
                let aliases: Vec<String> =
                    option.aliases.iter().map(|a| format!("--{a}")).collect();
                help.push_str(&format!(" (also {})", aliases.join(", ")));
            }
            (left, help)
        })
        .collect()
}

/// Where the right column starts: two spaces after the widest left cell.
fn column_for<L: AsRef<str>, R>(rows: &[(L, R)]) -> usize {
    rows.iter()
        .map(|(left, _)| left.as_ref().len())
        .max()
        .unwrap_or(0)
        + 2
}

/// Rows of `left  right`, the right side wrapped under itself.
fn push_rows<L: AsRef<str>, R: AsRef<str>>(text: &mut String, rows: &[(L, R)], column: usize) {
    for (left, right) in rows {
        let left = left.as_ref();
        let prefix = format!("{left:column$}");
        wrap_into(text, right.as_ref(), &prefix, column);
    }
}

/// Wraps each line of `text` on its own, continuation lines indented like
/// the line; blank lines stay.
fn push_wrapped(out: &mut String, text: &str) {
    for line in text.lines() {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        if body.is_empty() {
            out.push('\n');
        } else {
            wrap_into(out, body, &line[..indent], indent);
        }
    }
}

/// Appends `prefix` and the words of `text`, breaking lines before
/// [`WIDTH`] (a word longer than that gets its own line) with `indent`
/// spaces in front of each continuation line.
fn wrap_into(out: &mut String, text: &str, prefix: &str, indent: usize) {
    let mut line = prefix.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = " ".repeat(indent);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
}
