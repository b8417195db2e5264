//! `ocm mcp` spoken to in raw lines: JSON-RPC strictness (malformed JSON,
//! invalid requests, batches, ids of every kind echoed, CRLF and blank
//! lines), both protocol eras, requests answered while a call runs,
//! cancellation, progress ordering, EOF, and nothing but protocol on
//! stdout; then the lifecycle tools against the real opencode.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::{TestBed, e2e_skipped, ocm_bin, opencode_bin};
use serde_json::{Value, json};

/// The longest any single answer may take (a start, retried once).
const ANSWER_DEADLINE: Duration = Duration::from_secs(120);
/// What the protocol promises for an answer that does no work.
const QUICK: Duration = Duration::from_secs(5);

const MODERN: &str = "2026-07-28";

/// A running `ocm mcp` with its stdout read line by line.
struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Mcp {
    fn start(bed: &TestBed, args: &[&str]) -> Mcp {
        Mcp::start_with(bed, args, &[])
    }

    fn start_with(bed: &TestBed, args: &[&str], env: &[(&str, &str)]) -> Mcp {
        let mut child = bed
            .command(ocm_bin())
            .arg("mcp")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ocm mcp");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err = child.stderr.take().expect("stderr");
        let (etx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if etx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Mcp {
            child,
            stdin,
            lines,
            stderr,
        }
    }

    /// Writes raw bytes (one or more lines, or less).
    fn send_raw(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(text.as_bytes()).expect("write to ocm mcp");
        stdin.flush().expect("flush");
    }

    fn send(&mut self, message: &Value) {
        self.send_raw(&format!("{message}\n"));
    }

    /// The next line on stdout, which must be one JSON object.
    fn next(&self, within: Duration) -> Value {
        let line = self
            .lines
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("no message from ocm mcp within {within:?}: {e}"));
        assert!(!line.is_empty(), "a blank line on stdout");
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a line that is not JSON ({e}): {line:?}"));
        assert!(value.is_object(), "not an object on stdout: {line}");
        assert_eq!(value["jsonrpc"], "2.0", "{line}");
        value
    }

    /// Sends a request and returns its response, checking that nothing
    /// else (but progress for `progress_token`) came first.
    fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let response = self.next(ANSWER_DEADLINE);
        assert_eq!(response["id"], id, "{response}");
        response
    }

    fn call(&mut self, id: i64, tool: &str, arguments: Value) -> Value {
        let response = self.request(
            json!(id),
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        );
        response["result"].clone()
    }

    fn initialize(&mut self, version: &str) -> Value {
        let response = self.request(
            json!(0),
            "initialize",
            json!({"protocolVersion": version, "capabilities": {},
                   "clientInfo": {"name": "conformance", "version": "1"}}),
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        response
    }

    /// Waits for a line on stderr that contains `needle`.
    fn wait_stderr(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {needle:?} on stderr within {within:?}: {e}"),
            }
        }
    }

    /// Closes stdin and checks that ocm exits with 0 within 2 s, leaving
    /// nothing more on stdout. Returns its stderr.
    fn close(mut self) -> String {
        drop(self.stdin.take());
        let began = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for ocm mcp") {
                break status;
            }
            assert!(
                began.elapsed() < Duration::from_secs(2),
                "ocm mcp did not exit within 2 s of EOF"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(0), "ocm mcp exit status");
        // The stderr thread ends with the process: collect what it read.
        let mut stderr = String::new();
        while let Ok(line) = self.stderr.recv_timeout(QUICK) {
            stderr.push_str(&line);
            stderr.push('\n');
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        if let Some(line) = self.lines.try_iter().next() {
            panic!("unexpected output after the last answer: {line}");
        }
        stderr
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "conformance", "version": "1"},
    })
}

#[test]
fn json_rpc_is_strict_and_the_server_lives_on() {
    let bed = TestBed::new();
    let mut mcp = Mcp::start(&bed, &[]);
    // Malformed JSON: -32700 with a null id.
    mcp.send_raw("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \n");
    let e = mcp.next(QUICK);
    assert_eq!(
        (e["error"]["code"].clone(), e["id"].clone()),
        (json!(-32700), Value::Null)
    );
    // A batch, a null id, no jsonrpc, a non-object: -32600.
    mcp.send_raw("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]\n");
    assert_eq!(mcp.next(QUICK)["error"]["code"], -32600);
    mcp.send_raw("{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}\n");
    let e = mcp.next(QUICK);
    assert_eq!(
        (e["error"]["code"].clone(), e["id"].clone()),
        (json!(-32600), Value::Null)
    );
    mcp.send_raw("{\"id\":9,\"method\":\"ping\"}\n");
    let e = mcp.next(QUICK);
    assert_eq!(
        (e["error"]["code"].clone(), e["id"].clone()),
        (json!(-32600), json!(9))
    );
    mcp.send_raw("\"ping\"\n");
    assert_eq!(mcp.next(QUICK)["error"]["code"], -32600);
    // Unknown method: -32601; unknown tool: -32602.
    let r = mcp.request(json!(2), "no/such/method", json!({}));
    assert_eq!(r["error"]["code"], -32601);
    let r = mcp.request(json!(3), "tools/call", json!({"name": "no_such_tool"}));
    assert_eq!(r["error"]["code"], -32602);
    let r = mcp.request(json!(4), "tools/call", json!({"arguments": {}}));
    assert_eq!(r["error"]["code"], -32602);
    // Notifications, known or not, are never answered: the next line is
    // the ping's answer.
    mcp.send_raw("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/whatever\"}\n");
    mcp.send_raw("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":77}}\n");
    // CRLF line endings and blank lines.
    mcp.send_raw("\r\n\n   \n{\"jsonrpc\":\"2.0\",\"id\":\"crlf\",\"method\":\"ping\"}\r\n");
    let r = mcp.next(QUICK);
    assert_eq!(r["id"], "crlf", "{r}");
    assert_eq!(r["result"], json!({}));
    // Ids of every kind, echoed exactly as written.
    for raw in [
        "0",
        "-1",
        "42",
        "9007199254740993",
        "123456789012345678901234567890",
        "1.5",
        "1e3",
        "\"\"",
        "\"x\"",
        "\"\\u00e9t\\u00e9 \\\"quoted\\\"\"",
    ] {
        mcp.send_raw(&format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{raw},\"method\":\"ping\"}}\n"
        ));
        let line = mcp.lines.recv_timeout(QUICK).expect("an answer");
        assert!(
            line.starts_with(&format!("{{\"jsonrpc\":\"2.0\",\"id\":{raw},")),
            "id {raw} not echoed as written: {line}"
        );
    }
    // Still alive and well.
    assert_eq!(
        mcp.request(json!(5), "ping", json!({}))["result"],
        json!({})
    );
    mcp.close();
}

#[test]
fn both_protocol_eras() {
    let bed = TestBed::new();
    // Legacy: each handshake revision is echoed; tools are shaped for it.
    for version in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let mut mcp = Mcp::start(&bed, &[]);
        let init = mcp.initialize(version);
        assert_eq!(init["result"]["protocolVersion"], version, "{init}");
        assert!(init["result"]["capabilities"]["tools"].is_object());
        assert_eq!(init["result"]["serverInfo"]["name"], "ocm");
        let list = mcp.request(json!(1), "tools/list", json!({}));
        let tools = list["result"]["tools"].as_array().expect("tools").clone();
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        for name in [
            "opencode_start",
            "opencode_status",
            "opencode_stop",
            "opencode_restart",
            "opencode_destroy",
            "opencode_list",
            "opencode_answer",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        for tool in &tools {
            assert_eq!(tool["inputSchema"]["additionalProperties"], false, "{tool}");
            assert_eq!(tool.get("outputSchema").is_some(), version >= "2025-06-18");
            assert_eq!(tool.get("annotations").is_some(), version >= "2025-03-26");
        }
        assert!(list["result"].get("resultType").is_none());
        mcp.close();
    }
    // An unknown handshake version is answered with the latest.
    let mut mcp = Mcp::start(&bed, &[]);
    assert_eq!(
        mcp.initialize("2099-01-01")["result"]["protocolVersion"],
        "2025-11-25"
    );
    mcp.close();
    // Modern: no handshake, the version in every request's _meta.
    let mut mcp = Mcp::start(&bed, &[]);
    let d = mcp.request(
        json!("d"),
        "server/discover",
        json!({"_meta": modern_meta()}),
    );
    let result = &d["result"];
    assert_eq!(result["resultType"], "complete", "{d}");
    assert!(
        result["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!(MODERN))
    );
    assert!(result["capabilities"]["tools"].is_object());
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "ocm"
    );
    assert!(result["ttlMs"].is_u64() && result["cacheScope"].is_string());
    let list = mcp.request(json!(1), "tools/list", json!({"_meta": modern_meta()}));
    assert_eq!(list["result"]["resultType"], "complete");
    assert!(list["result"]["ttlMs"].is_u64());
    assert!(["public", "private"].contains(&list["result"]["cacheScope"].as_str().unwrap()));
    let status = mcp.request(
        json!(2),
        "tools/call",
        json!({"name": "opencode_list", "arguments": {}, "_meta": modern_meta()}),
    );
    assert_eq!(status["result"]["resultType"], "complete");
    assert_eq!(status["result"]["isError"], false);
    assert!(status["result"]["structuredContent"]["projects"].is_array());
    // An unsupported version: -32022 with what is supported.
    let mut meta = modern_meta();
    meta["io.modelcontextprotocol/protocolVersion"] = json!("1900-01-01");
    let e = mcp.request(json!(3), "tools/list", json!({"_meta": meta}));
    assert_eq!(e["error"]["code"], -32022, "{e}");
    assert_eq!(e["error"]["data"]["requested"], "1900-01-01");
    assert!(
        e["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!(MODERN))
    );
    // Missing capabilities: malformed, -32602.
    let e = mcp.request(
        json!(4),
        "tools/list",
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN}}),
    );
    assert_eq!(e["error"]["code"], -32602);
    mcp.close();
}

#[test]
fn tool_failures_are_results_with_the_cli_message_and_hint() {
    let bed = TestBed::new();
    let allowed = bed.new_project("allowed");
    let mut mcp = Mcp::start(&bed, &["--allow", allowed.to_str().unwrap()]);
    mcp.initialize("2025-06-18");
    let missing = allowed.join("missing");
    let r = mcp.call(1, "opencode_start", json!({"project": missing}));
    assert_eq!(r["isError"], true, "{r}");
    let text = r["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("does not exist") && text.contains("hint:"),
        "{text}"
    );
    let r = mcp.call(2, "opencode_status", json!({"project": bed.project}));
    assert_eq!(r["isError"], true);
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("outside the allowed folders")
    );
    let r = mcp.call(3, "opencode_destroy", json!({"project": allowed}));
    assert_eq!(r["isError"], true);
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("confirm")
    );
    let r = mcp.call(
        4,
        "opencode_status",
        json!({"project": allowed, "extra": 1}),
    );
    assert_eq!(r["isError"], true);
    let r = mcp.call(5, "opencode_status", json!({"project": "relative/path"}));
    assert_eq!(r["isError"], true);
    mcp.close();
}

/// An `OPENCODE_BIN` that takes `delay` before it becomes opencode (the
/// wrapper execs it: same process, same arguments and environment).
fn slow_opencode(bed: &TestBed, delay: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = bed.root().join("slow-opencode");
    let script = format!(
        "#!/bin/sh\nsleep {delay}\nexec '{}' \"$@\"\n",
        opencode_bin().display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn progress_of(message: &Value) -> Option<f64> {
    (message["method"] == "notifications/progress")
        .then(|| message["params"]["progress"].as_f64().unwrap())
}

#[test]
fn a_running_call_does_not_block_ping_and_progress_comes_in_order() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let slow = slow_opencode(&bed, "2");
    let mut mcp = Mcp::start_with(&bed, &[], &[("OPENCODE_BIN", slow.to_str().unwrap())]);
    mcp.initialize("2025-11-25");
    mcp.send(
        &json!({"jsonrpc": "2.0", "id": "start", "method": "tools/call",
        "params": {"name": "opencode_start", "arguments": {"project": bed.project},
                   "_meta": {"progressToken": "tok"}}}),
    );
    // Five requests without waiting, answered while the start runs.
    for n in 0..5 {
        mcp.send(&json!({"jsonrpc": "2.0", "id": 100 + n, "method": "ping"}));
    }
    let mut pings = Vec::new();
    let mut progress = Vec::new();
    let began = Instant::now();
    let response = loop {
        let message = mcp.next(ANSWER_DEADLINE);
        if let Some(p) = progress_of(&message) {
            assert_eq!(message["params"]["progressToken"], "tok");
            assert!(message["params"]["message"].is_string());
            progress.push(p);
        } else if message["id"] == "start" {
            break message;
        } else {
            assert_eq!(message["result"], json!({}), "{message}");
            pings.push((message["id"].as_i64().unwrap(), began.elapsed()));
        }
    };
    assert_eq!(
        pings.len(),
        5,
        "the pings were answered before the start: {pings:?}"
    );
    let ids: Vec<i64> = pings.iter().map(|p| p.0).collect();
    assert_eq!(ids, vec![100, 101, 102, 103, 104]);
    assert!(!progress.is_empty(), "no progress for a progressToken");
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "progress not increasing: {progress:?}"
    );
    let result = &response["result"];
    assert_eq!(result["isError"], false, "{response}");
    let server = &result["structuredContent"];
    assert_eq!(server["status"], "running");
    assert!(
        server["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(&text, server, "the text block carries the same JSON");
    assert!(!result.to_string().to_lowercase().contains("password\":\""));
    // Nothing after the response: the next line is this ping's answer.
    let r = mcp.request(json!("after"), "ping", json!({}));
    assert_eq!(r["result"], json!({}));
    let r = mcp.call(7, "opencode_stop", json!({"project": bed.project}));
    assert_eq!(r["structuredContent"]["wasRunning"], true, "{r}");
    mcp.close();
}

#[test]
fn a_cancelled_start_gets_no_answer_and_its_server_is_stopped() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let slow = slow_opencode(&bed, "2");
    let mut mcp = Mcp::start_with(&bed, &[], &[("OPENCODE_BIN", slow.to_str().unwrap())]);
    mcp.initialize("2025-11-25");
    mcp.send(&json!({"jsonrpc": "2.0", "id": 41, "method": "tools/call",
        "params": {"name": "opencode_start", "arguments": {"project": bed.project},
                   "_meta": {"progressToken": 7}}}));
    // Cancelled once it has started working.
    let first = mcp.next(ANSWER_DEADLINE);
    assert_eq!(progress_of(&first), Some(1.0), "{first}");
    mcp.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 41, "reason": "test"}}),
    );
    let r = mcp.request(json!(42), "ping", json!({}));
    assert_eq!(r["result"], json!({}));
    // The start ends (the wrapper sleeps 2 s), nothing is said about it
    // on stdout, and the server it started is stopped.
    let line = mcp.wait_stderr("was cancelled", ANSWER_DEADLINE);
    assert!(line.contains("the server it started was stopped"), "{line}");
    let r = mcp.call(43, "opencode_status", json!({"project": bed.project}));
    assert_eq!(r["structuredContent"]["status"], "stopped", "{r}");
    assert!(bed.opencode_pids().is_empty());
    let r = mcp.request(json!(44), "ping", json!({}));
    assert_eq!(r["id"], 44);
    mcp.close();
}

#[test]
fn the_lifecycle_tools_against_the_real_opencode() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let mut mcp = Mcp::start(&bed, &["--allow", bed.root().to_str().unwrap()]);
    let meta = modern_meta();
    let call = |mcp: &mut Mcp, id: i64, tool: &str, arguments: Value| {
        mcp.request(
            json!(id),
            "tools/call",
            json!({"name": tool, "arguments": arguments, "_meta": meta.clone()}),
        )["result"]
            .clone()
    };
    let started = call(
        &mut mcp,
        1,
        "opencode_start",
        json!({"project": bed.project}),
    );
    assert_eq!(started["isError"], false, "{started}");
    assert_eq!(started["structuredContent"]["reused"], false);
    let pid = started["structuredContent"]["pid"].as_u64().unwrap();
    let again = call(
        &mut mcp,
        2,
        "opencode_start",
        json!({"project": bed.project}),
    );
    assert_eq!(again["structuredContent"]["reused"], true);
    assert_eq!(again["structuredContent"]["pid"].as_u64(), Some(pid));
    let status = call(
        &mut mcp,
        3,
        "opencode_status",
        json!({"project": bed.project}),
    );
    assert_eq!(status["structuredContent"]["status"], "running", "{status}");
    assert_eq!(status["structuredContent"]["healthy"], true);
    let list = call(&mut mcp, 4, "opencode_list", json!({}));
    assert_eq!(
        list["structuredContent"]["projects"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let restarted = call(
        &mut mcp,
        5,
        "opencode_restart",
        json!({"project": bed.project}),
    );
    assert_eq!(
        restarted["structuredContent"]["replaced"]["pid"].as_u64(),
        Some(pid),
        "{restarted}"
    );
    let stopped = call(
        &mut mcp,
        6,
        "opencode_stop",
        json!({"project": bed.project}),
    );
    assert_eq!(
        stopped["structuredContent"]["wasRunning"], true,
        "{stopped}"
    );
    let status = call(
        &mut mcp,
        7,
        "opencode_status",
        json!({"project": bed.project}),
    );
    assert_eq!(status["structuredContent"]["status"], "stopped");
    let destroyed = call(
        &mut mcp,
        8,
        "opencode_destroy",
        json!({"project": bed.project, "confirm": true}),
    );
    assert!(
        destroyed["structuredContent"]["removed"].is_string(),
        "{destroyed}"
    );
    assert!(bed.opencode_pids().is_empty());
    mcp.close();
}

#[test]
fn eof_leaves_started_servers_running() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let mut mcp = Mcp::start(&bed, &[]);
    mcp.initialize("2025-06-18");
    let r = mcp.call(1, "opencode_start", json!({"project": bed.project}));
    let pid = r["structuredContent"]["pid"].as_u64().unwrap() as u32;
    mcp.close();
    assert!(
        bed.opencode_pids().contains(&pid),
        "the server died with ocm mcp"
    );
    let out = bed
        .command(ocm_bin())
        .args(["down", bed.project.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn no_password_in_any_result_or_on_stderr() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let password = "pw-7d41c0ffee-never-shown";
    let mut mcp = Mcp::start_with(&bed, &[], &[("OPENCODE_SERVER_PASSWORD", password)]);
    mcp.initialize("2025-11-25");
    let mut seen = Vec::new();
    let project = json!({"project": bed.project});
    for (id, tool, arguments) in [
        (1, "opencode_start", project.clone()),
        (2, "opencode_status", project.clone()),
        (3, "opencode_list", json!({})),
        (4, "opencode_restart", project.clone()),
        (5, "opencode_destroy", project.clone()),
        (6, "opencode_stop", project.clone()),
    ] {
        seen.push(mcp.call(id, tool, arguments).to_string());
    }
    assert!(seen[0].contains(r#""auth":"env""#), "{}", seen[0]);
    for text in &seen {
        assert!(!text.contains(password), "the password appeared: {text}");
    }
    let stderr = mcp.close();
    assert!(!stderr.contains(password), "{stderr}");
}
