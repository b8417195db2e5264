//! An offline OpenAI-compatible model server for tests and the demo.
//!
//! OpenCode talks to any OpenAI-compatible endpoint. `mock-llm` is one that
//! needs no account and no network: it serves `GET /v1/models` and
//! `POST /v1/chat/completions` (streaming and not) on `127.0.0.1` with an
//! OS-assigned port, answers from a [`Script`], and records every request it
//! received so tests can assert on them. [`MockLlm::opencode_config`] gives the
//! `OPENCODE_CONFIG_CONTENT` JSON that points opencode at it.
//!
//! ```
//! use mock_llm::{MockLlm, Reply, Script};
//!
//! let script = Script::new().when("weather", Reply::text("Sunny."));
//! let mock = MockLlm::start(script).expect("bind a loopback port");
//! assert!(mock.base_url().starts_with("http://127.0.0.1:"));
//! assert!(mock.opencode_config().contains("\"model\":\"fake/echo\""));
//! assert!(mock.requests().is_empty());
//! // Dropping `mock` stops the server and joins its threads.
//! ```
//!
//! The script is consulted per chat request: the first rule whose substring
//! occurs in the text of the request's last user message answers it, else the
//! default reply does. The default default echoes: `echo: <last user text>`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The provider id and model id the generated opencode config declares.
pub const PROVIDER_ID: &str = "fake";
/// The model id (under [`PROVIDER_ID`]) the generated opencode config declares.
pub const MODEL_ID: &str = "echo";

/// Longest request head or body the mock accepts, so a broken client cannot
/// make it allocate without bound.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
/// How long a connection may stay silent before the mock gives up on it.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// A tool call the model asks for instead of answering with text.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The tool's name, e.g. `bash`.
    pub name: String,
    /// The arguments, as a JSON text.
    pub arguments: String,
}

/// How the mock answers one chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    kind: ReplyText,
    chunk_delay: Duration,
    stall_after: Option<usize>,
    status: Option<u16>,
    tool_call: Option<ToolCall>,
}

#[derive(Debug, Clone, PartialEq)]
enum ReplyText {
    Fixed(String),
    Echo,
}

impl Reply {
    /// Answer with this text.
    pub fn text(text: impl Into<String>) -> Self {
        Reply {
            kind: ReplyText::Fixed(text.into()),
            chunk_delay: Duration::ZERO,
            stall_after: None,
            status: None,
            tool_call: None,
        }
    }

    /// Answer with `echo: <text of the last user message>`.
    pub fn echo() -> Self {
        Reply {
            kind: ReplyText::Echo,
            ..Reply::text("")
        }
    }

    /// Wait this long before each streamed chunk.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Send `chunks` chunks, then hold the connection open without sending
    /// anything more until the mock is dropped.
    pub fn stall_after(mut self, chunks: usize) -> Self {
        self.stall_after = Some(chunks);
        self
    }

    /// Answer with this HTTP error status and an OpenAI-style error body.
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// When the last message of the request is the user's, ask for this tool
    /// call instead of answering; the follow-up request (which ends with the
    /// tool's result) is answered with the reply's text.
    pub fn tool_call(mut self, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        self.tool_call = Some(ToolCall {
            name: name.into(),
            arguments: arguments.into(),
        });
        self
    }

    fn render_text(&self, last_user_text: &str) -> String {
        match &self.kind {
            ReplyText::Fixed(text) => text.clone(),
            ReplyText::Echo => format!("echo: {last_user_text}"),
        }
    }
}

/// The rules the mock answers chat requests with.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    rules: Vec<(String, Reply)>,
    default: Reply,
}

impl Default for Script {
    fn default() -> Self {
        Script::new()
    }
}

impl Script {
    /// A script whose default reply echoes the last user message.
    pub fn new() -> Self {
        Script {
            rules: Vec::new(),
            default: Reply::echo(),
        }
    }

    /// A script that answers every request with `text`.
    pub fn reply(text: impl Into<String>) -> Self {
        Script::new().default_reply(Reply::text(text))
    }

    /// Answer requests whose last user message contains `needle` with `reply`.
    /// Rules are tried in the order they were added.
    pub fn when(mut self, needle: impl Into<String>, reply: Reply) -> Self {
        self.rules.push((needle.into(), reply));
        self
    }

    /// Answer requests that match no rule with `reply`.
    pub fn default_reply(mut self, reply: Reply) -> Self {
        self.default = reply;
        self
    }

    fn choose(&self, last_user_text: &str) -> &Reply {
        self.rules
            .iter()
            .find(|(needle, _)| last_user_text.contains(needle.as_str()))
            .map(|(_, reply)| reply)
            .unwrap_or(&self.default)
    }
}

/// One request the mock received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// The request target, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The headers, names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as JSON, or `Value::Null` when it was empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// True for `POST /v1/chat/completions`.
    pub fn is_chat(&self) -> bool {
        self.method == "POST" && self.path.starts_with("/v1/chat/completions")
    }

    /// The text of the last message with role `user`, parts joined.
    pub fn last_user_text(&self) -> String {
        last_user_text(&self.body)
    }

    /// The value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// State shared by the accept thread, the connection threads and the handle.
#[derive(Debug)]
struct Shared {
    script: Mutex<Script>,
    requests: Mutex<Vec<RecordedRequest>>,
    stopping: Mutex<bool>,
    stop_signal: Condvar,
    connections: Mutex<Vec<(TcpStream, JoinHandle<()>)>>,
    next_id: AtomicU64,
}

impl Shared {
    fn is_stopping(&self) -> bool {
        *lock(&self.stopping)
    }

    /// Sleeps for `duration` unless the mock stops first. Returns false when
    /// the mock is stopping.
    fn pause(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut stopping = lock(&self.stopping);
        loop {
            if *stopping {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            stopping = self
                .stop_signal
                .wait_timeout(stopping, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    /// Blocks until the mock stops.
    fn wait_for_stop(&self) {
        let mut stopping = lock(&self.stopping);
        while !*stopping {
            stopping = self
                .stop_signal
                .wait(stopping)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// Locks a mutex, carrying on with the data if another thread panicked while
/// holding it (a test's assertion failing must not hide the requests).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running mock model server. Stops, closing every connection and joining
/// every thread, when dropped.
#[derive(Debug)]
pub struct MockLlm {
    addr: SocketAddr,
    /// A handle on the listening socket, to wake the accept thread on drop.
    listener: TcpListener,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl MockLlm {
    /// Starts the server on `127.0.0.1` with an OS-assigned port.
    pub fn start(script: Script) -> io::Result<MockLlm> {
        MockLlm::start_on(script, 0)
    }

    /// Starts the server on `127.0.0.1:port` (0 for an OS-assigned port).
    pub fn start_on(script: Script, port: u16) -> io::Result<MockLlm> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            requests: Mutex::new(Vec::new()),
            stopping: Mutex::new(false),
            stop_signal: Condvar::new(),
            connections: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        });
        let wake = listener.try_clone()?;
        let accept_shared = Arc::clone(&shared);
        let accept_thread = std::thread::Builder::new()
            .name("mock-llm-accept".into())
            .spawn(move || accept_loop(listener, accept_shared))?;
        Ok(MockLlm {
            addr,
            listener: wake,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/v1`, the OpenAI-compatible base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Replaces the script for requests that arrive from now on.
    pub fn set_script(&self, script: Script) {
        *lock(&self.shared.script) = script;
    }

    /// The `OPENCODE_CONFIG_CONTENT` JSON that makes opencode use this server
    /// as its only model (`fake/echo`), with updates and sharing off.
    pub fn opencode_config(&self) -> String {
        opencode_config(&self.base_url())
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The chat completion requests received so far.
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(RecordedRequest::is_chat)
            .collect()
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        *lock(&self.shared.stopping) = true;
        self.shared.stop_signal.notify_all();
        // Wake the accept thread, which is blocked in accept(): on Linux,
        // shutting down a listening socket makes accept() fail at once.
        // SAFETY: shutdown(2) on a socket this handle owns a clone of.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RD) };
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for (stream, thread) in connections {
            let _ = stream.shutdown(Shutdown::Both);
            let _ = thread.join();
        }
    }
}

/// The `OPENCODE_CONFIG_CONTENT` JSON pointing opencode at an
/// OpenAI-compatible server at `base_url` (ending in `/v1`).
pub fn opencode_config(base_url: &str) -> String {
    json!({
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": false,
        "share": "disabled",
        "model": format!("{PROVIDER_ID}/{MODEL_ID}"),
        "small_model": format!("{PROVIDER_ID}/{MODEL_ID}"),
        "provider": {
            PROVIDER_ID: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Fake",
                "options": { "baseURL": base_url, "apiKey": "x" },
                "models": { MODEL_ID: { "name": "Echo" } }
            }
        }
    })
    .to_string()
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut failures = 0u32;
    for stream in listener.incoming() {
        if shared.is_stopping() {
            return;
        }
        let stream = match stream {
            Ok(stream) => {
                failures = 0;
                stream
            }
            Err(_) => {
                // E.g. out of descriptors: back off instead of spinning.
                failures = failures.saturating_add(1);
                shared.pause(Duration::from_millis(u64::from(failures.min(100))));
                continue;
            }
        };
        let Ok(handle_stream) = stream.try_clone() else {
            continue;
        };
        let conn_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("mock-llm-conn".into())
            .spawn(move || {
                // Errors on one connection concern only that client.
                let _ = serve_connection(handle_stream, &conn_shared);
            });
        if let Ok(thread) = spawned {
            let mut connections = lock(&shared.connections);
            connections.retain(|(_, t)| !t.is_finished());
            connections.push((stream, thread));
        }
    }
}

struct HttpRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_CONNECTION_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some(request) = read_request(&mut reader)? else {
            return Ok(());
        };
        if shared.is_stopping() {
            return Ok(());
        }
        let body_json = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let recorded = RecordedRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            headers: request.headers.clone(),
            body: body_json,
        };
        lock(&shared.requests).push(recorded.clone());
        let keep_open = respond(&mut writer, &recorded, shared)?;
        if !(keep_open && request.keep_alive) {
            return Ok(());
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<HttpRequest>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let http10 = line.contains("HTTP/1.0");
    let mut headers = Vec::new();
    let mut head_bytes = line.len();
    loop {
        let mut header = String::new();
        let n = reader.read_line(&mut header)?;
        head_bytes += n;
        if n == 0 || head_bytes > MAX_REQUEST_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad header"));
        }
        let header = header.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let chunked = find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        read_chunked_body(reader)?
    } else {
        let length: usize = find("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if length > MAX_REQUEST_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    let connection = find("connection").map(str::to_ascii_lowercase);
    let keep_alive = match connection.as_deref() {
        Some("close") => false,
        Some("keep-alive") => true,
        _ => !http10,
    };
    Ok(Some(HttpRequest {
        method,
        path,
        headers,
        body,
        keep_alive,
    }))
}

fn read_chunked_body(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size_text = size_line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if body.len().saturating_add(size) > MAX_REQUEST_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer)? == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// Writes the response. Returns whether the connection may serve another
/// request (streamed replies are delimited by closing the connection).
fn respond(out: &mut TcpStream, request: &RecordedRequest, shared: &Shared) -> io::Result<bool> {
    let route = request.path.split('?').next().unwrap_or("");
    match (request.method.as_str(), route) {
        ("GET", "/v1/models") => {
            let body = json!({
                "object": "list",
                "data": [{ "id": MODEL_ID, "object": "model", "created": 0, "owned_by": "mock-llm" }]
            });
            write_json(out, 200, &body)?;
            Ok(true)
        }
        ("POST", "/v1/chat/completions") => chat_completion(out, request, shared),
        _ => {
            let body = json!({ "error": { "message": format!("mock-llm: no route {} {}", request.method, route), "type": "not_found" } });
            write_json(out, 404, &body)?;
            Ok(true)
        }
    }
}

fn write_json(out: &mut TcpStream, status: u16, body: &Value) -> io::Result<()> {
    let body = body.to_string();
    write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        reason(status),
        body.len()
    )?;
    out.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn chat_completion(
    out: &mut TcpStream,
    request: &RecordedRequest,
    shared: &Shared,
) -> io::Result<bool> {
    let user_text = request.last_user_text();
    let reply = lock(&shared.script).choose(&user_text).clone();
    if let Some(status) = reply.status {
        let body = json!({ "error": { "message": format!("mock-llm: scripted error {status}"), "type": "mock_error", "code": status } });
        write_json(out, status, &body)?;
        return Ok(true);
    }
    let ends_with_user = last_message_role(&request.body) == Some("user");
    let tool_call = reply.tool_call.clone().filter(|_| ends_with_user);
    let text = reply.render_text(&user_text);
    let id = format!(
        "chatcmpl-mock-{}",
        shared.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let usage = json!({
        "prompt_tokens": estimate_tokens(&request.body.to_string()),
        "completion_tokens": estimate_tokens(&text),
        "total_tokens": estimate_tokens(&request.body.to_string()) + estimate_tokens(&text),
    });
    let streaming = request.body.get("stream").and_then(Value::as_bool) == Some(true);
    if !streaming {
        let message = match &tool_call {
            Some(call) => json!({
                "role": "assistant", "content": null,
                "tool_calls": [{ "id": "call_mock_1", "type": "function",
                                 "function": { "name": call.name, "arguments": call.arguments } }]
            }),
            None => json!({ "role": "assistant", "content": text }),
        };
        let finish = if tool_call.is_some() {
            "tool_calls"
        } else {
            "stop"
        };
        let body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": MODEL_ID,
            "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
            "usage": usage,
        });
        write_json(out, 200, &body)?;
        return Ok(true);
    }

    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
    )?;
    out.flush()?;
    let chunk = |delta: Value, finish: Option<&str>, usage: Option<&Value>| {
        let mut frame = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        });
        if let Some(usage) = usage {
            frame["usage"] = usage.clone();
        }
        format!("data: {frame}\n\n")
    };
    let mut frames = vec![chunk(
        json!({ "role": "assistant", "content": "" }),
        None,
        None,
    )];
    let finish = match &tool_call {
        Some(call) => {
            frames.push(chunk(
                json!({ "tool_calls": [{ "index": 0, "id": "call_mock_1", "type": "function",
                                         "function": { "name": call.name, "arguments": call.arguments } }] }),
                None,
                None,
            ));
            "tool_calls"
        }
        None => {
            for piece in split_words(&text) {
                frames.push(chunk(json!({ "content": piece }), None, None));
            }
            "stop"
        }
    };
    frames.push(chunk(json!({}), Some(finish), Some(&usage)));
    frames.push("data: [DONE]\n\n".to_string());

    for (sent, frame) in frames.iter().enumerate() {
        if reply.stall_after == Some(sent) {
            shared.wait_for_stop();
            return Ok(false);
        }
        if !reply.chunk_delay.is_zero() && !shared.pause(reply.chunk_delay) {
            return Ok(false);
        }
        out.write_all(frame.as_bytes())?;
        out.flush()?;
    }
    let _ = out.shutdown(Shutdown::Write);
    Ok(false)
}

/// Splits text into word-sized pieces that concatenate back to it.
fn split_words(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' && i > start {
            pieces.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

fn last_message_role(body: &Value) -> Option<&str> {
    body.get("messages")?
        .as_array()?
        .last()?
        .get("role")?
        .as_str()
}

fn last_user_text(body: &Value) -> String {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return String::new();
    };
    let Some(message) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post_chat(mock: &MockLlm, body: Value) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut response = agent
            .post(format!("{}/chat/completions", mock.base_url()))
            .send_json(body)
            .expect("request");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().expect("body"))
    }

    fn stream_text(sse: &str) -> String {
        sse.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    fn user(text: &str) -> Value {
        json!({ "model": "echo", "stream": true, "messages": [
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": [{ "type": "text", "text": text }] }
        ]})
    }

    #[test]
    fn streams_echo_and_records_the_request() {
        let mock = MockLlm::start(Script::new()).unwrap();
        let (status, body) = post_chat(&mock, user("hello there world"));
        assert_eq!(status, 200);
        assert_eq!(stream_text(&body), "echo: hello there world");
        assert!(body.contains("\"finish_reason\":\"stop\""));
        assert!(body.trim_end().ends_with("data: [DONE]"));
        let requests = mock.chat_requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].last_user_text(), "hello there world");
    }

    #[test]
    fn rules_match_by_substring_and_errors_use_status() {
        let script = Script::reply("default")
            .when("weather", Reply::text("Sunny today."))
            .when("fail", Reply::text("").status(503));
        let mock = MockLlm::start(script).unwrap();
        assert_eq!(
            stream_text(&post_chat(&mock, user("what weather?")).1),
            "Sunny today."
        );
        assert_eq!(stream_text(&post_chat(&mock, user("other")).1), "default");
        let (status, body) = post_chat(&mock, user("please fail"));
        assert_eq!(status, 503);
        assert!(body.contains("scripted error 503"));
    }

    #[test]
    fn non_streaming_and_models() {
        let mock = MockLlm::start(Script::reply("plain")).unwrap();
        let mut body = user("x");
        body["stream"] = json!(false);
        let (status, text) = post_chat(&mock, body);
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "plain");
        let models: Value = ureq::get(format!("{}/models", mock.base_url()))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        assert_eq!(models["data"][0]["id"], MODEL_ID);
    }

    #[test]
    fn tool_call_then_text_after_the_tool_result() {
        let script = Script::new().when(
            "run",
            Reply::text("ran it").tool_call("bash", r#"{"command":"true"}"#),
        );
        let mock = MockLlm::start(script).unwrap();
        let (_, first) = post_chat(&mock, user("run it"));
        assert!(first.contains("\"tool_calls\""));
        assert!(first.contains("\"finish_reason\":\"tool_calls\""));
        let mut follow_up = user("run it");
        follow_up["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "role": "tool", "tool_call_id": "call_mock_1", "content": "" }));
        assert_eq!(stream_text(&post_chat(&mock, follow_up).1), "ran it");
    }

    #[test]
    fn stall_holds_the_connection_until_drop() {
        let mock = MockLlm::start(Script::new().default_reply(Reply::text("a b c").stall_after(2)))
            .unwrap();
        let mut stream = TcpStream::connect(("127.0.0.1", mock.port())).unwrap();
        let body = user("x").to_string();
        write!(
            stream,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // Read until the two frames before the stall have arrived ...
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut received = Vec::new();
        let mut buf = [0; 4096];
        while String::from_utf8_lossy(&received).matches("data: ").count() < 2 {
            match stream.read(&mut buf) {
                Ok(0) => panic!("connection closed instead of stalling"),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => panic!("no two frames within 10 s: {e}"),
            }
        }
        // ... then nothing more comes while the mock lives.
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => panic!("connection closed instead of stalling"),
            Ok(n) => panic!(
                "sent more after the stall: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ),
                "{e}"
            ),
        }
        let text = String::from_utf8_lossy(&received);
        assert_eq!(text.matches("data: ").count(), 2, "{text}");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        drop(mock);
        // After drop the connection is closed.
        assert_eq!(stream.read(&mut buf).unwrap_or(0), 0);
    }

    #[test]
    fn chunk_delay_spaces_the_chunks() {
        let mock = MockLlm::start(
            Script::new()
                .default_reply(Reply::text("one two").chunk_delay(Duration::from_millis(30))),
        )
        .unwrap();
        let started = Instant::now();
        let (_, body) = post_chat(&mock, user("x"));
        assert_eq!(stream_text(&body), "one two");
        // Role chunk, two words, finish and [DONE]: five delays at least.
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn config_points_at_the_mock() {
        let mock = MockLlm::start(Script::new()).unwrap();
        let config: Value = serde_json::from_str(&mock.opencode_config()).unwrap();
        assert_eq!(config["model"], "fake/echo");
        assert_eq!(
            config["provider"]["fake"]["options"]["baseURL"],
            mock.base_url()
        );
        assert_eq!(config["autoupdate"], false);
    }

    #[test]
    fn split_words_round_trips() {
        for text in ["", "a", "a b", " lead", "trail ", "a  b", "ünï cödé"] {
            assert_eq!(split_words(text).concat(), text);
        }
    }
}
