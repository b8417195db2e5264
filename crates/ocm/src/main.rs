//! `ocm`: one OpenCode server per project, found again from any shell.
//!
//! The binary is thin: [`cli`] parses the command line, [`commands`] runs
//! it with a [`manager::Manager`] (or a [`state::Store`] when the state
//! folder does not exist yet), [`view`] is a project as every command
//! reports it, [`render`] formats it (human or the one `--json` shape),
//! [`escape`] makes foreign text safe to print, [`progress`] shows what
//! happens on stderr, [`follow`] tails the server log, and [`error`] maps
//! failures to exit statuses (0 success, 1 error, 2 bad usage, 3 not
//! running, 4 failed to start, 6 waiting for a deploy key) and shows
//! them; [`sandbox`] is `ocm sandbox ...`.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod error;
mod escape;
mod follow;
// The JSON keys the README promises; only tests read them (the binary
// writes the keys where it builds each object; the end-to-end tests read
// the per-command additions, hence the allow).
#[cfg(test)]
#[allow(dead_code)]
mod json_keys;
mod mcp;
mod progress;
mod prompt;
mod render;
mod sandbox;
mod sessions;
mod state;
mod supervise;
mod view;

fn main() {
    let code = commands::main(std::env::args_os().skip(1).collect());
    std::process::exit(code);
}
