//! `ocm mcp`: the manager's lifecycle as MCP tools, for agents.
//!
//! A small, strict JSON-RPC loop over serde_json with std threads (the
//! official Rust SDK needs tokio, which ocm rules out). Over stdio: one
//! reader thread turns stdin into lines, the main thread handles each
//! ([`server::Server`]), one writer thread owns stdout and writes one
//! compact JSON message per line, flushed; `tools/call`s run on a bounded
//! pool of workers. Logs go to stderr only. End of input ends the server
//! within 2 s with status 0, leaving the OpenCode servers it started
//! running (they are detached, as always).
//!
//! [`protocol`] is JSON-RPC and the two MCP eras, [`tools`] the tools,
//! [`http`] the Streamable HTTP transport.

use std::io::{BufRead, Read, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cli::{Cli, McpOptions};
use crate::error::{CliError, EXIT_OK};

mod answer;
mod http;
mod protocol;
mod sandbox_tools;
mod server;
mod tools;
mod turn_tools;

use server::{Server, Session};
use tools::Context;

/// How many tool calls run at once.
const WORKERS: usize = 4;
/// The longest line read; a longer one is answered with a parse error.
const MAX_LINE: usize = 4 << 20;
/// How long the end of input may take to end the server.
const EXIT_WITHIN: Duration = Duration::from_millis(1500);
/// How long the prompts cancelled then have to end (an abort takes 5 s at
/// most).
const CANCELLED_WITHIN: Duration = Duration::from_secs(6);

/// Runs `ocm mcp` until its input ends (stdio) or it is stopped (HTTP).
pub fn run(cli: &Cli, options: &McpOptions) -> Result<i32, CliError> {
    let ctx = context(cli, options)?;
    match &options.http {
        Some(address) => http::serve(ctx, address, options.token_env.as_deref()),
        None => serve_stdio(ctx),
    }
}

/// The tools' context: the allowed folders made canonical (they must
/// exist, so that what is allowed is a real folder, not a spelling).
fn context(cli: &Cli, options: &McpOptions) -> Result<Context, CliError> {
    let mut allow = Vec::new();
    for dir in &options.allow {
        let real = std::fs::canonicalize(dir)
            .ok()
            .filter(|real| real.is_dir())
            .ok_or_else(|| {
                CliError::Usage(crate::cli::UsageError {
                    message: format!("--allow {}: not an existing folder", dir.display()),
                    command: Some(crate::cli::Name::Mcp),
                })
            })?;
        allow.push(real);
    }
    Ok(Context {
        cli: cli.clone(),
        allow,
        turns: Default::default(),
        // The token is for the clients of `ocm mcp`, not for the agent's
        // shell commands in the servers it starts.
        hide_env: options.token_env.iter().cloned().collect(),
    })
}

/// What the reader and the writer tell the main loop.
enum Event {
    Line(Vec<u8>),
    TooLong,
    /// The end of input (or a read error).
    Eof,
    /// stdout is closed: the client is gone.
    OutputClosed,
}

fn serve_stdio(ctx: Context) -> Result<i32, CliError> {
    describe(&ctx, "stdio");
    let server = Server::new(ctx, WORKERS);
    let session = Session::new(protocol::LATEST_LEGACY);
    let (events_tx, events) = mpsc::channel::<Event>();
    let (out, lines) = mpsc::channel::<String>();
    let writer = spawn_owned("mcp-writer", {
        let events_tx = events_tx.clone();
        move || write_lines(lines, events_tx)
    });
    let reader = spawn_owned("mcp-reader", move || {
        read_lines(&events_tx);
        let _ = events_tx.send(Event::Eof);
    });
    // Until the end of input, or the client stops reading.
    while let Ok(event) = events.recv() {
        match event {
            Event::Line(bytes) => {
                let Some(line) = message_text(&bytes, &out) else {
                    continue;
                };
                server.handle(&line, &session, &out);
            }
            Event::TooLong => {
                let _ = out.send(protocol::error_line(
                    None,
                    protocol::PARSE_ERROR,
                    &format!("Parse error: message longer than {MAX_LINE} bytes"),
                    None,
                ));
            }
            Event::Eof | Event::OutputClosed => break,
        }
    }
    let (cancelled, busy) = server.shut_down(Instant::now() + EXIT_WITHIN, CANCELLED_WITHIN);
    if cancelled > 0 {
        eprintln!(
            "ocm mcp: input closed with {cancelled} prompt(s) still running: cancelled, their \
             turns aborted"
        );
    }
    if busy > 0 {
        eprintln!(
            "ocm mcp: input closed with {busy} tool call(s) still running; exiting without \
             waiting (servers it started keep running)"
        );
    }
    let deadline = Instant::now() + EXIT_WITHIN;
    drop(server);
    drop(out);
    writer.join_by(deadline);
    reader.join_by(deadline);
    Ok(EXIT_OK)
}

/// Says on stderr what is served.
fn describe(ctx: &Context, transport: &str) {
    let folders = if ctx.allow.is_empty() {
        "any existing folder".to_string()
    } else {
        let list: Vec<String> = ctx.allow.iter().map(|d| d.display().to_string()).collect();
        list.join(", ")
    };
    eprintln!(
        "ocm mcp: serving {} tools over {transport}; projects allowed: {folders}",
        tools::TOOLS.len()
    );
}

/// The message in a line: without its line ending, `None` for a blank
/// line (skipped) or one that is not UTF-8 (answered with a parse error).
fn message_text(bytes: &[u8], out: &server::Out) -> Option<String> {
    let mut bytes = bytes;
    while let [rest @ .., b'\n' | b'\r'] = bytes {
        bytes = rest;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if text.trim().is_empty() => None,
        Ok(text) => Some(text.to_string()),
        Err(_) => {
            let _ = out.send(protocol::error_line(
                None,
                protocol::PARSE_ERROR,
                "Parse error: the message is not UTF-8",
                None,
            ));
            None
        }
    }
}

/// Reads stdin line by line until its end (or a read error, which ends
/// it too). Blocks on stdin: it ends when the input does.
fn read_lines(events: &mpsc::Sender<Event>) {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf);
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) if buf.len() > MAX_LINE && !buf.ends_with(b"\n") => {
                // Skip the rest of the line.
                loop {
                    buf.clear();
                    match (&mut input).take(1 << 16).read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if buf.ends_with(b"\n") => break,
                        Ok(_) => {}
                    }
                }
                if events.send(Event::TooLong).is_err() {
                    return;
                }
            }
            Ok(_) => {
                if events.send(Event::Line(std::mem::take(&mut buf))).is_err() {
                    return;
                }
            }
        }
    }
}

/// Writes each message as one line and flushes it: stdout carries the
/// protocol and nothing else.
fn write_lines(lines: mpsc::Receiver<String>, events: mpsc::Sender<Event>) {
    let stdout = std::io::stdout();
    for line in lines {
        let mut stdout = stdout.lock();
        let written = stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush());
        if written.is_err() {
            let _ = events.send(Event::OutputClosed);
            return;
        }
    }
}

/// A thread that says when it ends, to be joined by a deadline.
struct Owned {
    handle: JoinHandle<()>,
    ended: mpsc::Receiver<()>,
}

fn spawn_owned(name: &str, work: impl FnOnce() + Send + 'static) -> Owned {
    let (ended_tx, ended) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ended = ended_tx;
            work();
        })
        .expect("spawning a thread");
    Owned { handle, ended }
}

impl Owned {
    /// Joins the thread if it ends by `deadline`; else leaves it to end
    /// with the process (a read of stdin cannot be interrupted).
    fn join_by(self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        // The sender is dropped when the thread ends: `Disconnected`.
        if let Err(mpsc::RecvTimeoutError::Disconnected) = self.ended.recv_timeout(left) {
            let _ = self.handle.join();
        }
    }
}
