//! A stdio `ocm mcp` driven line by line by a test: initialized on start,
//! `tools/call` with its progress notifications, every line sent and read
//! kept in a transcript (for the no-secret checks), and the process ended
//! (stdin closed, then killed) on drop.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running stdio `ocm mcp`.
#[derive(Debug)]
pub struct StdioMcp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    transcript: Arc<Mutex<Vec<String>>>,
    deadline: Duration,
}

impl StdioMcp {
    /// Spawns `command` (an `ocm mcp ...`) with piped stdin and stdout and
    /// initializes the session as `client`; every wait for a message is
    /// bounded by `deadline`.
    pub fn start(mut command: Command, client: &str, deadline: Duration) -> StdioMcp {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ocm mcp");
        let stdout = child.stdout.take().expect("stdout");
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        let seen = Arc::clone(&transcript);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                seen.lock().unwrap().push(line.clone());
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut mcp = StdioMcp {
            child,
            stdin,
            lines,
            transcript,
            deadline,
        };
        mcp.send(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": client, "version": "1"}}}));
        let init = mcp.next();
        assert_eq!(init["id"], 0, "{init}");
        mcp.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        mcp
    }

    /// Writes one message (a line).
    pub fn send(&mut self, message: &Value) {
        let line = message.to_string();
        self.transcript.lock().unwrap().push(line.clone());
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to ocm mcp");
        stdin.flush().expect("flush");
    }

    /// The next message, within the deadline given at start.
    pub fn next(&self) -> Value {
        self.next_within(self.deadline)
    }

    /// The next message, within `within`.
    pub fn next_within(&self, within: Duration) -> Value {
        self.lines
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("no message from ocm mcp within {within:?}: {e}"))
    }

    /// Sends a `tools/call` (with a progress token), returns its progress
    /// notifications and its result. A successful result's text block must
    /// be its structured content.
    pub fn call(&mut self, id: i64, tool: &str, arguments: Value) -> (Vec<Value>, Value) {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments,
                       "_meta": {"progressToken": format!("p{id}")}}}));
        let mut progress = Vec::new();
        loop {
            let message = self.next();
            if message.get("id").is_none() {
                if message["method"] == "notifications/progress" {
                    progress.push(message);
                }
                continue;
            }
            assert_eq!(message["id"], id, "{message}");
            let result = message["result"].clone();
            if result["isError"] == false {
                let text = result["content"][0]["text"].as_str().unwrap_or_default();
                let parsed: Value = serde_json::from_str(text).expect("the text block is JSON");
                assert_eq!(parsed, result["structuredContent"]);
            }
            return (progress, result);
        }
    }

    /// A successful call's structured content.
    pub fn ok(&mut self, id: i64, tool: &str, arguments: Value) -> Value {
        let (_, result) = self.call(id, tool, arguments);
        assert_eq!(result["isError"], false, "{tool}: {result}");
        result["structuredContent"].clone()
    }

    /// A failed call's text.
    pub fn fails(&mut self, id: i64, tool: &str, arguments: Value) -> String {
        let (_, result) = self.call(id, tool, arguments);
        assert_eq!(result["isError"], true, "{tool}: {result}");
        result["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Closes its input and waits at most `within` for it to exit: its
    /// exit status, `None` when it still runs.
    pub fn close_input(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        drop(self.stdin.take());
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Every line sent and read so far.
    pub fn transcript(&self) -> String {
        self.transcript.lock().unwrap().join("\n")
    }
}

impl Drop for StdioMcp {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
