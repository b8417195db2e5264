//! `ocm mcp --http`: the Streamable HTTP transport. The token is checked
//! (none or a wrong one: 401), a foreign `Origin` is refused (403), so is
//! a foreign `Host` without a token (DNS rebinding), a
//! non-loopback address without a token is refused at start, a call with
//! progress is answered as an event stream, and the official Python SDK
//! (2.3.0 in both modes, 1.30.0) drives the lifecycle tools over HTTP with
//! the token, against the real opencode.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use e2e::mcp_clients::{self, PYTHON_SDK, PYTHON_SDK_1};
use e2e::{TestBed, e2e_skipped, ocm_bin};
use serde_json::{Value, json};

const TOKEN_VAR: &str = "OCM_TEST_MCP_TOKEN";
const TOKEN: &str = "test-token-4f1c9a7e2b";
const QUICK: Duration = Duration::from_secs(10);

/// A running `ocm mcp --http 127.0.0.1:0 --token-env ...`.
struct HttpMcp {
    child: Child,
    address: String,
}

impl HttpMcp {
    fn start(bed: &TestBed) -> HttpMcp {
        HttpMcp::start_with(bed, true)
    }

    /// With `--token-env` (`token`) or without.
    fn start_with(bed: &TestBed, token: bool) -> HttpMcp {
        let mut command = bed.command(ocm_bin());
        command.args(["mcp", "--http", "127.0.0.1:0"]);
        if token {
            command.args(["--token-env", TOKEN_VAR]);
        }
        let mut child = command
            .env(TOKEN_VAR, TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ocm mcp --http");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                assert!(
                    !line.contains(TOKEN),
                    "the token appeared on stderr: {line}"
                );
                let _ = tx.send(line);
            }
        });
        let address = loop {
            let line = rx
                .recv_timeout(QUICK)
                .expect("ocm mcp --http says where it listens");
            if let Some(rest) = line.split("http://").nth(1) {
                break rest.split('/').next().unwrap().to_string();
            }
        };
        HttpMcp { child, address }
    }

    /// One raw HTTP exchange: (status, headers, body).
    fn post(&self, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
        self.post_as(&self.address, headers, body)
    }

    /// The same with `host` as the Host header.
    fn post_as(&self, host: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(&self.address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let mut request = format!(
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            host,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read the response");
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head.to_string(), body.to_string())
    }
}

impl Drop for HttpMcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

/// DNS rebinding: a page at `evil.example` whose name was rebound to
/// 127.0.0.1 posts to its own origin, so its Origin matches its Host.
/// Without a token only loopback host names are answered.
#[test]
fn a_token_less_server_refuses_a_page_rebound_to_loopback() {
    let bed = TestBed::new();
    let mcp = HttpMcp::start_with(&bed, false);
    let port = mcp.address.rsplit(':').next().unwrap().to_string();
    let evil = format!("evil.example:{port}");
    let origin = format!("http://{evil}");
    let (status, head, _) = mcp.post_as(&evil, &[("Origin", &origin)], PING);
    assert_eq!(status, 403, "{head}");
    let (status, head, _) = mcp.post_as(&evil, &[], PING);
    assert_eq!(status, 403, "{head}");
    let (status, head, _) = mcp.post_as(&format!("localhost:{port}"), &[], PING);
    assert_eq!(status, 200, "{head}");
    let (status, head, _) = mcp.post(&[], PING);
    assert_eq!(status, 200, "{head}");
}

#[test]
fn no_token_or_a_wrong_one_is_401_and_a_foreign_origin_403() {
    let bed = TestBed::new();
    let mcp = HttpMcp::start(&bed);
    let (status, head, _) = mcp.post(&[], PING);
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
    let (status, ..) = mcp.post(&[("Authorization", "Bearer wrong-token")], PING);
    assert_eq!(status, 401);
    let (status, ..) = mcp.post(&[("Authorization", &format!("Bearer {TOKEN}x"))], PING);
    assert_eq!(status, 401);
    let (status, ..) = mcp.post(&[("Authorization", TOKEN)], PING);
    assert_eq!(status, 401, "the token without `Bearer`");
    // Refused on its head: the body a client without the token says it
    // sends is not waited for.
    let mut raw = TcpStream::connect(&mcp.address).unwrap();
    raw.set_read_timeout(Some(QUICK)).unwrap();
    write!(
        raw,
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Length: 100000\r\n\r\n",
        mcp.address
    )
    .unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let lower = format!("bearer {TOKEN}");
    let (status, ..) = mcp.post(&[("Authorization", &lower)], PING);
    assert_eq!(status, 200, "the scheme in lower case");
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = mcp.post(&[("Authorization", &bearer)], PING);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["result"],
        json!({})
    );
    let (status, ..) = mcp.post(
        &[
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ],
        PING,
    );
    assert_eq!(status, 403);
    let (status, ..) = mcp.post(
        &[
            ("Authorization", &bearer),
            ("Origin", "http://localhost:6274"),
        ],
        PING,
    );
    assert_eq!(status, 200);
    // A notification: 202, no body.
    let (status, _, body) = mcp.post(
        &[("Authorization", &bearer)],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!((status, body.as_str()), (202, ""));
    // Malformed JSON: 400 with a JSON-RPC parse error.
    let (status, _, body) = mcp.post(&[("Authorization", &bearer)], "{oops");
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32700
    );
}

#[test]
fn modern_requests_are_checked_against_their_headers() {
    let bed = TestBed::new();
    let mcp = HttpMcp::start(&bed);
    let bearer = format!("Bearer {TOKEN}");
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}});
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                      "params": {"_meta": meta}})
    .to_string();
    let base = [
        ("Authorization", bearer.as_str()),
        ("MCP-Protocol-Version", "2026-07-28"),
    ];
    // No Mcp-Method: -32020.
    let (status, _, body) = mcp.post(&base, &list);
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32020
    );
    let mut headers = base.to_vec();
    headers.push(("Mcp-Method", "tools/list"));
    let (status, _, body) = mcp.post(&headers, &list);
    assert_eq!(status, 200, "{body}");
    let result = &serde_json::from_str::<Value>(&body).unwrap()["result"];
    assert_eq!(result["resultType"], "complete");
    assert!(result["ttlMs"].is_u64());
    // A header that disagrees with the body: -32020.
    let (status, _, body) = mcp.post(
        &[
            ("Authorization", bearer.as_str()),
            ("MCP-Protocol-Version", "2025-11-25"),
            ("Mcp-Method", "tools/list"),
        ],
        &list,
    );
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32020
    );
    // tools/call needs Mcp-Name, Base64 allowed.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "opencode_list", "arguments": {}, "_meta": meta}})
    .to_string();
    let mut headers = base.to_vec();
    headers.push(("Mcp-Method", "tools/call"));
    let (status, ..) = mcp.post(&headers, &call);
    assert_eq!(status, 400);
    headers.push(("Mcp-Name", "=?base64?b3BlbmNvZGVfbGlzdA==?="));
    let (status, _, body) = mcp.post(&headers, &call);
    assert_eq!(status, 200, "{body}");
    // An unknown method: 404 with -32601; an unknown version: 400, -32022.
    let unknown = json!({"jsonrpc": "2.0", "id": 3, "method": "no/such",
                         "params": {"_meta": meta}})
    .to_string();
    let mut headers = base.to_vec();
    headers.push(("Mcp-Method", "no/such"));
    let (status, _, body) = mcp.post(&headers, &unknown);
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32601
    );
    let old = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "1900-01-01",
        "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let (status, _, body) = mcp.post(
        &[
            ("Authorization", bearer.as_str()),
            ("MCP-Protocol-Version", "1900-01-01"),
            ("Mcp-Method", "tools/list"),
        ],
        &old,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32022
    );
}

#[test]
fn a_non_loopback_address_without_a_token_is_refused_at_start() {
    let bed = TestBed::new();
    for address in ["0.0.0.0:0", "[::]:0"] {
        let output = bed
            .command(ocm_bin())
            .args(["mcp", "--http", address])
            .stdin(Stdio::null())
            .output()
            .expect("run ocm mcp --http");
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("needs a token"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
    // A token variable that is not set is refused too.
    let output = bed
        .command(ocm_bin())
        .args([
            "mcp",
            "--http",
            "127.0.0.1:0",
            "--token-env",
            "OCM_NO_SUCH_VAR",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_call_with_progress_is_answered_as_an_event_stream() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let mcp = HttpMcp::start(&bed);
    let bearer = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2025-11-25"),
    ];
    let call = |id: i64, tool: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": tool, "arguments": {"project": bed.project},
            "_meta": {"progressToken": "p"}}})
        .to_string()
    };
    let (status, head, body) = mcp.post(&headers, &call(1, "opencode_start"));
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(head.contains("Content-Type: text/event-stream"), "{head}");
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let (last, progress) = events.split_last().expect("events");
    assert_eq!(last["id"], 1, "the response comes last: {body}");
    assert_eq!(last["result"]["structuredContent"]["status"], "running");
    assert!(!progress.is_empty());
    assert!(
        progress
            .iter()
            .all(|p| p["method"] == "notifications/progress")
    );
    let (_, _, body) = mcp.post(&headers, &call(2, "opencode_stop"));
    assert!(body.contains("wasRunning"), "{body}");
    assert!(bed.opencode_pids().is_empty());
}

fn python_over_http(bed: &TestBed, version: &str, mode: &[&str]) -> Value {
    let python = mcp_clients::python_with_sdk(version).unwrap_or_else(|m| panic!("{m}"));
    let mcp = HttpMcp::start(bed);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp/py_client.py");
    let mut command = bed.command(&python);
    command
        .arg(script)
        .args(["--ocm", "unused", "--project"])
        .arg(&bed.project)
        .args([
            "--url",
            &format!("http://{}/mcp", mcp.address),
            "--token-env",
            TOKEN_VAR,
        ])
        .args(mode)
        .env(TOKEN_VAR, TOKEN);
    let output = mcp_clients::run_client(command, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim()).expect("a JSON summary");
    assert_eq!(
        summary["start"]["structured"]["status"], "running",
        "{summary}"
    );
    assert!(
        !summary["progress"].as_array().unwrap().is_empty(),
        "{summary}"
    );
    assert_eq!(summary["status"]["structured"]["healthy"], true);
    assert_eq!(
        summary["prompt"]["structured"]["reply"], "echo: hello from python",
        "{summary}"
    );
    assert_eq!(summary["stop"]["structured"]["wasRunning"], true);
    assert!(bed.opencode_pids().is_empty());
    summary
}

#[test]
fn python_sdk_2_over_http_in_both_modes() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let modern = python_over_http(&bed, PYTHON_SDK, &["--mode", "auto"]);
    assert_eq!(modern["protocolVersion"], "2026-07-28");
    let legacy = python_over_http(&bed, PYTHON_SDK, &["--mode", "legacy"]);
    assert_eq!(legacy["protocolVersion"], "2025-11-25");
}

#[test]
fn python_sdk_1_over_http() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let summary = python_over_http(&bed, PYTHON_SDK_1, &[]);
    assert_eq!(summary["protocolVersion"], "2025-11-25");
}
