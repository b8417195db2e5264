//! `ocm sandbox ...`'s rows of the command and option tables, kept apart
//! so that `defs.rs` stays small; `defs.rs` lists them.

use std::path::PathBuf;

use super::defs::{CommandDef, Group, Kind, OptionDef, Parsed};
use super::{Command, Name, SandboxAction, SandboxCommand};

/// `ocm sandbox up`'s options.
pub(crate) const SANDBOX_UP: Group = Group {
    id: "sandbox-up",
    heading: "Options",
    usage: None,
    noun: Some("an option of sandbox up"),
    in_overview: false,
};

/// `ocm sandbox destroy`'s option.
pub(crate) const SANDBOX_DESTROY: Group = Group {
    id: "sandbox-destroy",
    heading: "Options",
    usage: None,
    noun: Some("an option of sandbox destroy"),
    in_overview: false,
};

/// The sandbox options a command line gave.
#[derive(Debug, Default)]
pub(crate) struct SandboxOptions {
    pub git: Option<String>,
    pub ssh_key: Option<PathBuf>,
    pub yes: bool,
}

pub(crate) const GIT: OptionDef = OptionDef {
    long: "git",
    short: None,
    aliases: &[],
    kind: Kind::Value {
        name: "URL",
        store: |p, value| {
            let text = value
                .into_string()
                .map_err(|_| "--git: the URL is not valid UTF-8".to_string())?;
            // Refused here, before anything is touched: the user's input.
            sandbox::GitUrl::parse(&text).map_err(|e| format!("--git: {e}"))?;
            p.sandbox.git = Some(text);
            Ok(())
        },
    },
    help: "The repository (ssh://, git@host:path, https://, file://): needed the first \
           time, it goes into the sandbox's .env; later it must match it",
    group: &SANDBOX_UP,
};

pub(crate) const SSH_KEY: OptionDef = OptionDef {
    long: "ssh-key",
    short: None,
    aliases: &[],
    kind: Kind::Value {
        name: "PATH",
        store: |p, value| {
            if value.is_empty() {
                return Err("--ssh-key must not be empty".into());
            }
            let path = PathBuf::from(value);
            // As the key's path goes into .env, it must not depend on the
            // folder ocm runs in.
            let path = if path.is_absolute() {
                path
            } else {
                std::env::current_dir()
                    .map_err(|e| format!("--ssh-key: cannot tell the current folder: {e}"))?
                    .join(path)
            };
            p.sandbox.ssh_key = Some(path);
            Ok(())
        },
    },
    help: "Your own private key (not readable by others) instead of a generated deploy \
           key; destroy never deletes it",
    group: &SANDBOX_UP,
};

pub(crate) const YES: OptionDef = OptionDef {
    long: "yes",
    short: None,
    aliases: &[],
    kind: Kind::Switch(|p| p.sandbox.yes = true),
    help: "Really delete the sandbox folder (the clone, .env) and the generated key",
    group: &SANDBOX_DESTROY,
};

/// The sandbox name operand, checked before anything is touched.
fn name_of(p: &mut Parsed) -> Result<sandbox::SandboxName, String> {
    let given = p.operands.pop().unwrap_or_default();
    let text = given
        .into_string()
        .map_err(|v| format!("sandbox name {:?} is not valid UTF-8", v))?;
    sandbox::SandboxName::parse(&text).map_err(|e| e.to_string())
}

fn sandbox_command(mut p: Parsed, action: SandboxAction) -> Result<Command, String> {
    let name = name_of(&mut p)?;
    Ok(Command::Sandbox(SandboxCommand::One { name, action }))
}

pub(crate) const UP: CommandDef = CommandDef {
    name: Name::SandboxUp,
    word: "sandbox up",
    aliases: &[],
    summary: "Bring a sandbox up: .env, deploy key, clone, server and companion",
    help: "Brings the sandbox NAME up from where it stopped: its folder and .env \
           ($XDG_DATA_HOME/ocm/sandboxes/NAME), a deploy key (generated unless --ssh-key), \
           access to the repository, the clone (a fetch later), the OpenCode server \
           (password from .env) and the companion (`ocm mcp` over HTTP, with the token \
           from .env), both health-checked.\n\n\
           When the git server does not accept the key yet, prints the public key on \
           stdout, says on stderr where to add it, and exits 6; run the same command again \
           once it is added. Without .env: an error naming the keys to write (production, \
           the default), or a generated .env with a warning (OCM_ENV=development). Exit 2 \
           for a bad name, URL or key, 4 when the server or companion fails to start.\n\n\
           .env keys: GIT_URL, SSH_KEY_PATH (the private key; ocm generates \
           $XDG_DATA_HOME/ocm/keys/NAME-deploy when it names that path), \
           OPENCODE_SERVER_PASSWORD, MCP_TOOL_BEARER_TOKEN; optional OPENCODE_PORT \
           (default: the first free in 4100-4199), MCP_TOOL_PORT (5100-5199), OPENCODE_BIN, \
           COMPANION_COMMAND (instead of `ocm mcp` over HTTP; {port} is its port).",
    dir: false,
    operands: &["NAME"],
    rest: None,
    groups: &[&SANDBOX_UP],
    build: |mut p| {
        let options = std::mem::take(&mut p.sandbox);
        sandbox_command(
            p,
            SandboxAction::Up {
                git: options.git,
                ssh_key: options.ssh_key,
            },
        )
    },
};

pub(crate) const STATUS: CommandDef = CommandDef {
    name: Name::SandboxStatus,
    word: "sandbox status",
    aliases: &[],
    summary: "Show a sandbox: server, companion, health (never starts anything)",
    help: "Shows the sandbox NAME: status (success, waiting_for_key, error), folder, git \
           URL, the server and the companion (URL, pid) health-checked now, and \
           warnings. Never starts anything. Exit 0 for success, 6 while waiting for the \
           deploy key, 3 otherwise.",
    dir: false,
    operands: &["NAME"],
    rest: None,
    groups: &[],
    build: |p| sandbox_command(p, SandboxAction::Status),
};

pub(crate) const DOWN: CommandDef = CommandDef {
    name: Name::SandboxDown,
    word: "sandbox down",
    aliases: &[],
    summary: "Stop a sandbox's server and companion (the clone stays)",
    help: "Stops the sandbox's companion and OpenCode server. The folder, .env, the clone \
           and the key stay; `ocm sandbox up NAME` brings it back.",
    dir: false,
    operands: &["NAME"],
    rest: None,
    groups: &[],
    build: |p| sandbox_command(p, SandboxAction::Down),
};

pub(crate) const RESTART: CommandDef = CommandDef {
    name: Name::SandboxRestart,
    word: "sandbox restart",
    aliases: &[],
    summary: "Restart a sandbox's server and companion",
    help: "Stops and starts the sandbox's OpenCode server and companion (no git access; \
           `ocm sandbox up` fetches). Prints the sandbox as `ocm sandbox status` does.",
    dir: false,
    operands: &["NAME"],
    rest: None,
    groups: &[],
    build: |p| sandbox_command(p, SandboxAction::Restart),
};

pub(crate) const DESTROY: CommandDef = CommandDef {
    name: Name::SandboxDestroy,
    word: "sandbox destroy",
    aliases: &[],
    summary: "Stop a sandbox and delete its folder and generated key (--yes)",
    help: "Stops the sandbox's server and companion, deletes its state folder, the sandbox \
           folder (the clone and .env) and the deploy key ocm generated for it. A key of \
           your own (given to sandbox up) is never deleted. Needs --yes: without it, says what would \
           be deleted and exits 2.",
    dir: false,
    operands: &["NAME"],
    rest: None,
    groups: &[&SANDBOX_DESTROY],
    build: |p| {
        let yes = p.sandbox.yes;
        sandbox_command(p, SandboxAction::Destroy { yes })
    },
};

pub(crate) const LS: CommandDef = CommandDef {
    name: Name::SandboxLs,
    word: "sandbox ls",
    aliases: &["sandbox list"],
    summary: "List the sandboxes and how their last `up` ended",
    help: "Lists every sandbox under $XDG_DATA_HOME/ocm/sandboxes: name, the outcome of its \
           last `up` (success, waiting_for_key, error), whether it is cloned, and its folder. \
           No process is checked: `ocm sandbox status NAME` does that.",
    dir: false,
    operands: &[],
    rest: None,
    groups: &[],
    build: |_| Ok(Command::Sandbox(SandboxCommand::Ls)),
};
