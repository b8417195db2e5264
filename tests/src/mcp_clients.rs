//! The real MCP clients the end-to-end tests drive `ocm mcp` with, pinned,
//! and where `cargo xtask mcp-clients` installs them: next to opencode in
//! the cache (`~/.cache/ocm/mcp-clients/`), each in its own folder, renamed
//! into place only once complete.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The official Python SDK, new major (both its default and legacy mode).
pub const PYTHON_SDK: &str = "2.3.0";
/// The official Python SDK, the last 1.x.
pub const PYTHON_SDK_1: &str = "1.30.0";
/// The MCP Inspector (its CLI mode).
pub const INSPECTOR: &str = "0.15.0";

/// The file an install writes last: a folder without it is not used.
pub const COMPLETE_MARKER: &str = ".ocm-complete";

/// Where the clients are cached.
pub fn cache_dir() -> Option<PathBuf> {
    crate::opencode_cache_dir().and_then(|dir| dir.parent().map(|p| p.join("mcp-clients")))
}

/// The venv holding `mcp==version`.
pub fn python_venv(version: &str) -> Option<PathBuf> {
    cache_dir().map(|dir| dir.join(format!("python-mcp-{version}")))
}

/// The npm prefix holding the Inspector.
pub fn inspector_prefix() -> Option<PathBuf> {
    cache_dir().map(|dir| dir.join(format!("inspector-{INSPECTOR}")))
}

/// The Python of the venv with `mcp==version`, or how to install it.
pub fn python_with_sdk(version: &str) -> Result<PathBuf, String> {
    let venv = python_venv(version).ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    if venv.join(COMPLETE_MARKER).is_file() {
        Ok(venv.join("bin").join("python"))
    } else {
        Err(missing(
            &format!("the Python MCP SDK mcp=={version}"),
            &venv,
        ))
    }
}

/// The Inspector's CLI entry point (`cli/build/cli.js`, run with node), or
/// how to install it.
pub fn inspector_cli() -> Result<PathBuf, String> {
    let prefix = inspector_prefix().ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    let bin = prefix
        .join("node_modules")
        .join(".bin")
        .join("mcp-inspector");
    if prefix.join(COMPLETE_MARKER).is_file() && bin.exists() {
        Ok(bin)
    } else {
        Err(missing(
            &format!("the MCP Inspector @modelcontextprotocol/inspector@{INSPECTOR}"),
            &prefix,
        ))
    }
}

fn missing(what: &str, place: &std::path::Path) -> String {
    format!(
        "{what} is not installed in {}: run `cargo xtask mcp-clients` (pip and npm fetch the \
         pinned clients from PyPI and npm); `cargo xtask ci` does it before the tests",
        place.display()
    )
}

/// Runs a client to its end with no input, killing it after `deadline`
/// (a client that hangs fails the test instead of blocking it).
pub fn run_client(mut command: Command, deadline: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(deadline) {
        Ok(output) => output.expect("wait for the client"),
        Err(_) => {
            crate::send_signal(pid as i32, libc::SIGKILL);
            let _ = waiter.join();
            panic!("{command:?} did not finish within {deadline:?}");
        }
    };
    waiter.join().expect("the waiter thread");
    output
}
