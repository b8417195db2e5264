//! `ocm supervise`'s and `ocm unit`'s rows of the command and option
//! tables, kept apart so that `defs.rs` stays small; `defs.rs` lists them.

use std::ffi::OsString;
use std::path::PathBuf;

use super::defs::{CommandDef, EVENTS, Group, Kind, OptionDef, Parsed};
use super::{Command, Name};

/// Commands that take any number of folders (`DIR...`): the first is in
/// `dir`, the others in `operands`.
pub(crate) const MANY_DIRS: &[Name] = &[Name::Supervise, Name::Unit];

/// `ocm supervise`'s and `ocm unit`'s options.
pub(crate) const SUPERVISE: Group = Group {
    id: "supervise",
    heading: "Supervise options",
    usage: Some("SUPERVISE OPTIONS"),
    noun: Some("a supervise option"),
    in_overview: false,
};

fn supervise_dirs(mut p: Parsed) -> crate::supervise::SuperviseArgs {
    let mut dirs: Vec<PathBuf> = p.dir.take().into_iter().collect();
    dirs.extend(p.operands.drain(..).map(PathBuf::from));
    let mut options = p.supervise;
    // `--all` is one row shared with `ocm events` (its group).
    options.all = p.all;
    crate::supervise::SuperviseArgs { dirs, options }
}

fn secs_value(value: &OsString, flag: &str) -> Result<std::time::Duration, String> {
    crate::supervise::parse_secs(&value.to_string_lossy()).map_err(|m| format!("{flag}: {m}"))
}

/// `--all`: shared by `ocm events` (its group) and `ocm supervise`/`unit`.
pub(crate) const ALL: OptionDef = OptionDef {
    long: "all",
    short: None,
    aliases: &[],
    kind: Kind::Switch(|p| p.all = true),
    help: "events: every directory the server serves, not only the project's; \
           supervise, unit: also every project whose desired state is up, including \
           ones brought up later",
    group: &EVENTS,
};

pub(crate) const RESTART: OptionDef = OptionDef {
    long: "restart",
    short: None,
    aliases: &[],
    kind: Kind::Value {
        name: "POLICY",
        store: |p, value| {
            let policy = value
                .to_string_lossy()
                .parse()
                .map_err(|m| format!("--restart: {m}"))?;
            p.supervise.restart = Some(policy);
            Ok(())
        },
    },
    help: "on-failure (default), always or never",
    group: &SUPERVISE,
};

pub(crate) const MAX_RESTARTS: OptionDef = OptionDef {
    long: "max-restarts",
    short: None,
    aliases: &[],
    kind: Kind::Value {
        name: "N",
        store: |p, value| {
            let text = value.to_string_lossy();
            let n = text
                .trim()
                .parse()
                .map_err(|_| format!("--max-restarts: '{text}' is not a whole number"))?;
            p.supervise.max_restarts = Some(n);
            Ok(())
        },
    },
    help: "The start limit: at most N starts within --within SECS (default 5 in \
           60), then the project is failed until `ocm up`; 0: no limit",
    group: &SUPERVISE,
};

pub(crate) const WITHIN: OptionDef = OptionDef {
    long: "within",
    short: None,
    aliases: &[],
    kind: Kind::Value {
        name: "SECS",
        store: |p, value| {
            p.supervise.within = Some(secs_value(&value, "--within")?);
            Ok(())
        },
    },
    help: "The start limit's window (default 60)",
    group: &SUPERVISE,
};

pub(crate) const STALL: OptionDef = OptionDef {
    long: "stall",
    short: None,
    aliases: &[],
    kind: Kind::Value {
        name: "SECS",
        store: |p, value| {
            p.supervise.stall = Some(secs_value(&value, "--stall")?);
            Ok(())
        },
    },
    help: "No event for SECS is a stream failure (default 15; the server sends a \
           heartbeat every 10)",
    group: &SUPERVISE,
};

pub(crate) const MAX_DELAY: OptionDef = OptionDef {
    long: "max-delay",
    short: None,
    aliases: &[],
    kind: Kind::Value {
        name: "SECS",
        store: |p, value| {
            p.supervise.max_delay = Some(secs_value(&value, "--max-delay")?);
            Ok(())
        },
    },
    help: "The longest restart delay (default 30; it starts at 0.1 and doubles)",
    group: &SUPERVISE,
};

pub(crate) const MAX_MEMORY: OptionDef = OptionDef {
    long: "max-memory",
    short: None,
    aliases: &[],
    kind: Kind::Value {
        name: "SIZE",
        store: |p, value| {
            let bytes = crate::supervise::parse_size(&value.to_string_lossy())
                .map_err(|m| format!("--max-memory: {m}"))?;
            p.supervise.max_memory = Some(bytes);
            Ok(())
        },
    },
    help: "Restart a server above this resident memory (800M, 2G) once no session \
           is busy",
    group: &SUPERVISE,
};

pub(crate) const STOP_ON_EXIT: OptionDef = OptionDef {
    long: "stop-on-exit",
    short: None,
    aliases: &[],
    kind: Kind::Switch(|p| p.supervise.stop_on_exit = true),
    help: "Stop the watched servers when supervision ends (default: they keep \
           running)",
    group: &SUPERVISE,
};

pub(crate) const VERBOSE: OptionDef = OptionDef {
    long: "verbose",
    short: Some('v'),
    aliases: &[],
    kind: Kind::Switch(|p| p.supervise.verbose = true),
    help: "Also print every event received from the servers",
    group: &SUPERVISE,
};

pub(crate) const SUPERVISE_COMMAND: CommandDef = CommandDef {
    name: Name::Supervise,
    word: "supervise",
    aliases: &[],
    summary: "Watch servers in the foreground and keep them healthy",
    help: "Brings each DIR up (default: the current folder) and watches it until \
           Ctrl-C or SIGTERM: a crash is seen at once (pidfd), a hang when the \
           server's event stream stays silent (--stall) and its health check \
           fails; either is restarted with a growing delay (100 ms doubling to \
           30 s), up to the start limit. `ocm down` is obeyed (the server stays \
           down), `ocm up` takes it back. One supervisor per project: a second \
           one says who has it and leaves it alone. Servers keep running when \
           supervision ends, unless --stop-on-exit.\n\n\
           Prints one line per transition; with --json one JSON object per line \
           (project, state, previous, at, reason, message, pid, restarts). \
           Speaks sd_notify (READY=1, WATCHDOG=1) under systemd: see `ocm unit`. \
           Settings also come from OCM_SUPERVISE_RESTART, _MAX_RESTARTS, _WITHIN, \
           _STALL, _MAX_DELAY, _MAX_MEMORY and _BUSY_WAIT. DIR may be given many times.",
    dir: true,
    operands: &[],
    rest: None,
    groups: &[&SUPERVISE, &EVENTS],
    build: |p| Ok(Command::Supervise(supervise_dirs(p))),
};

pub(crate) const UNIT_COMMAND: CommandDef = CommandDef {
    name: Name::Unit,
    word: "unit",
    aliases: &[],
    summary: "Print a systemd user unit that runs `ocm supervise`",
    help: "Prints a systemd user unit (Type=notify) that runs `ocm supervise` with \
           this ocm's absolute path, the state folder and the given folders (every \
           project with --all or no DIR), and the supervise options given here. \
           DIR may be given many times.",
    dir: true,
    operands: &[],
    rest: None,
    groups: &[&SUPERVISE, &EVENTS],
    build: |p| Ok(Command::Unit(supervise_dirs(p))),
};
