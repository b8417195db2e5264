//! The option groups of the command table (see `defs.rs`): which options
//! go together in help texts and in command rows.

use super::defs::Group;

/// Options every command takes, before or after its name.
pub(crate) const GLOBAL: Group = Group {
    id: "global",
    heading: "Global options",
    usage: None,
    noun: None,
    in_overview: true,
};

/// How `up`, `restart` and `exec` start a server.
pub(crate) const START: Group = Group {
    id: "start",
    heading: "Start options",
    usage: Some("START OPTIONS"),
    noun: Some("a start option"),
    in_overview: true,
};

/// `ocm logs`'s own options.
pub(crate) const LOGS: Group = Group {
    id: "logs",
    heading: "Options",
    usage: None,
    noun: None,
    in_overview: false,
};

/// `ocm prompt`'s own options.
pub(crate) const PROMPT: Group = Group {
    id: "prompt",
    heading: "Prompt options",
    usage: Some("PROMPT OPTIONS"),
    noun: Some("a prompt option"),
    in_overview: false,
};

/// Which session: `ocm prompt` and `ocm session new`.
pub(crate) const SESSION_KEY: Group = Group {
    id: "session-key",
    heading: "Session options",
    usage: Some("KEY OPTIONS"),
    noun: Some("a session option"),
    in_overview: false,
};

/// `ocm events`' own options.
pub(crate) const EVENTS: Group = Group {
    id: "events",
    heading: "Options",
    usage: None,
    noun: None,
    in_overview: false,
};

/// `ocm mcp`'s own options.
pub(crate) const MCP: Group = Group {
    id: "mcp",
    heading: "Options",
    usage: None,
    noun: None,
    in_overview: false,
};
