//! `ocm mcp`'s rows of the option table, kept apart so that `defs.rs`
//! stays small; `defs.rs` lists them.

use std::path::PathBuf;

use super::defs::{Kind, MCP, OptionDef};

pub(crate) const ALLOW: OptionDef = OptionDef {
    long: "allow",
    short: None,
    aliases: &[],
    kind: Kind::Value {
        name: "DIR",
        store: |p, value| {
            if value.is_empty() {
                return Err("--allow must not be empty".into());
            }
            p.mcp.allow.push(PathBuf::from(value));
            Ok(())
        },
    },
    help: "Only manage projects inside DIR (repeatable; default: any existing folder)",
    group: &MCP,
};

pub(crate) const HTTP: OptionDef = OptionDef {
    long: "http",
    short: None,
    aliases: &[],
    kind: Kind::Value {
        name: "ADDR:PORT",
        store: |p, value| {
            let text = value.to_string_lossy().trim().to_string();
            if text.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!(
                    "--http: '{text}' is not an address and port (127.0.0.1:8765, \
                     [::1]:8765)"
                ));
            }
            p.mcp.http = Some(text);
            Ok(())
        },
    },
    help: "Serve MCP's Streamable HTTP transport on ADDR:PORT instead of stdio \
           (loopback unless --token-env is given)",
    group: &MCP,
};

pub(crate) const TOKEN_ENV: OptionDef = OptionDef {
    long: "token-env",
    short: None,
    aliases: &[],
    kind: Kind::Value {
        name: "NAME",
        store: |p, value| {
            let name = value.to_string_lossy().to_string();
            if name.is_empty() || name.contains('=') {
                return Err(format!("--token-env: '{name}' is not a variable name"));
            }
            p.mcp.token_env = Some(name);
            Ok(())
        },
    },
    help: "With --http: every request must carry `Authorization: Bearer TOKEN`, TOKEN \
           being the value of the environment variable NAME (never on the command line)",
    group: &MCP,
};
