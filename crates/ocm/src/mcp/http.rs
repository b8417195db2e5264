//! `ocm mcp --http ADDR:PORT [--token-env NAME]`: MCP's Streamable HTTP
//! transport, with `httparse` over std sockets (no async runtime, no
//! server framework: one POST endpoint, `/mcp`, is all MCP needs).
//!
//! Each POST carries one JSON-RPC message. A notification is answered
//! `202 Accepted`; a request with its JSON-RPC response, as
//! `application/json`, or as `text/event-stream` (progress notifications,
//! then the response) when the client accepts it and the call reports
//! progress. Closing that stream cancels the call. No sessions: the
//! handshake revision comes from the `MCP-Protocol-Version` header (absent:
//! 2025-03-26, as the specification allows), the modern one from `_meta`.
//!
//! Security: a non-loopback address needs a token. With `--token-env NAME`
//! every request needs `Authorization: Bearer <the value of $NAME>`,
//! compared in constant time, else 401. An `Origin` that is neither a
//! loopback origin nor the request's own host gets 403 (DNS rebinding).
//! One thread per connection, at most [`MAX_CONNECTIONS`], each joined
//! when it ends; every read and write has a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::protocol::{self, LEGACY_VERSIONS, META_VERSION};
use super::server::{Server, Session};
use super::tools::Context;
use crate::cli::{Name, UsageError};
use crate::error::{CliError, EXIT_OK};

/// Connections served at once; more get 503.
const MAX_CONNECTIONS: usize = 64;
/// The largest request head and body.
const MAX_HEAD: usize = 64 << 10;
const MAX_BODY: usize = 4 << 20;
/// Socket read and write timeouts.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a whole request (head and body) may take to arrive.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// The longest a call may take before the request is answered 504.
const CALL_DEADLINE: Duration = Duration::from_secs(600);
/// How often an event stream with nothing to say sends a comment, which
/// also finds out that the client went away.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The version of a request without `MCP-Protocol-Version`.
const DEFAULT_VERSION: &str = "2025-03-26";

fn usage(message: String) -> CliError {
    CliError::Usage(UsageError {
        message,
        command: Some(Name::Mcp),
    })
}

/// Serves until the process is stopped.
pub fn serve(ctx: Context, address: &str, token_env: Option<&str>) -> Result<i32, CliError> {
    let address: SocketAddr = address
        .parse()
        .map_err(|_| usage(format!("--http {address}: not an address and port")))?;
    let token = match token_env {
        Some(name) => {
            let token = std::env::var(name).unwrap_or_default();
            if token.trim().is_empty() {
                return Err(usage(format!(
                    "--token-env {name}: the environment variable {name} is not set or empty"
                )));
            }
            Some(token)
        }
        None if !address.ip().is_loopback() => {
            return Err(usage(format!(
                "--http {address}: a non-loopback address needs a token (--token-env NAME); \
                 without one ocm mcp only binds a loopback address such as 127.0.0.1"
            )));
        }
        None => None,
    };
    let listener = TcpListener::bind(address).map_err(|source| CliError::Io {
        context: format!("cannot listen on {address}"),
        source,
    })?;
    let bound = listener.local_addr().unwrap_or(address);
    let auth = if token.is_some() {
        "bearer token required"
    } else {
        "loopback, no token"
    };
    super::describe(&ctx, &format!("http://{bound}/mcp ({auth})"));
    let shared = Arc::new(Shared {
        server: Server::new(ctx, super::WORKERS),
        token,
    });
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        // Join the connections that ended.
        let (ended, running): (Vec<_>, Vec<_>) =
            connections.drain(..).partition(JoinHandle::is_finished);
        for handle in ended {
            let _ = handle.join();
        }
        connections = running;
        if connections.len() >= MAX_CONNECTIONS {
            let mut stream = stream;
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            let _ = respond(
                &mut stream,
                503,
                "text/plain",
                b"too many connections\n",
                &[],
            );
            continue;
        }
        let shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("mcp-http".into())
            .spawn(move || shared.connection(stream));
        if let Ok(handle) = spawned {
            connections.push(handle);
        }
    }
    Ok(EXIT_OK)
}

struct Shared {
    server: Server,
    token: Option<String>,
}

/// A request as read: what the endpoint needs of it.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl Shared {
    fn connection(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        // The head is checked (path, token, Host, Origin) before the body
        // is read: a client without the token cannot make ocm hold a
        // connection or a body for it.
        let request = match read_request(&mut stream, &|request| self.check(request)) {
            Ok(request) => request,
            Err((status, message)) => {
                let extra: &[(&str, &str)] = if status == 401 {
                    &[("WWW-Authenticate", "Bearer")]
                } else {
                    &[]
                };
                let _ = respond(&mut stream, status, "text/plain", message.as_bytes(), extra);
                drain(&mut stream);
                return;
            }
        };
        if request.method != "POST" {
            let _ = respond(
                &mut stream,
                405,
                "text/plain",
                b"only POST is served: MCP messages go in the body of a POST\n",
                &[("Allow", "POST")],
            );
            return;
        }
        self.post(&mut stream, &request);
    }

    /// Path, token and origin: 404, 401 or 403.
    fn check(&self, request: &Request) -> Result<(), (u16, String)> {
        if request.path.split('?').next() != Some("/mcp") {
            return Err((404, "the MCP endpoint is /mcp\n".into()));
        }
        if let Some(token) = &self.token {
            // The scheme's case does not matter (RFC 9110).
            let given = request
                .header("authorization")
                .and_then(|value| value.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map_or("", |(_, token)| token);
            if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
                return Err((401, "a valid bearer token is required\n".into()));
            }
        }
        // DNS rebinding: a page whose name now points at 127.0.0.1 sends
        // that name as the Host, and as its Origin, which then matches.
        // Without a token the server listens on loopback only, so a Host
        // must be a loopback name.
        if self.token.is_none()
            && let Some(host) = request.header("host")
            && !is_loopback_authority(host)
        {
            return Err((
                403,
                "this server answers loopback host names only (127.0.0.1, ::1, localhost)\n".into(),
            ));
        }
        if let Some(origin) = request.header("origin")
            && !origin_allowed(origin, request.header("host"))
        {
            return Err((403, "this Origin may not use this server\n".into()));
        }
        Ok(())
    }

    fn post(&self, stream: &mut TcpStream, request: &Request) {
        let Ok(text) = std::str::from_utf8(&request.body) else {
            let body = protocol::error_line(
                None,
                protocol::PARSE_ERROR,
                "Parse error: the body is not UTF-8",
                None,
            );
            let _ = respond(stream, 400, "application/json", body.as_bytes(), &[]);
            return;
        };
        let message: Option<Value> = serde_json::from_str(text).ok();
        let is_request = message
            .as_ref()
            .is_some_and(|m| m.get("method").is_some() && m.get("id").is_some());
        let modern = message
            .as_ref()
            .and_then(|m| m.pointer("/params/_meta"))
            .and_then(|meta| meta.get(META_VERSION))
            .and_then(Value::as_str)
            .map(str::to_string);
        let header_version = request.header("mcp-protocol-version");
        // A modern request's headers must agree with its body.
        if let (Some(body_version), Some(message)) = (&modern, &message)
            && let Err(problem) = check_modern_headers(request, body_version, message)
        {
            let body = json!({"jsonrpc": "2.0", "id": message.get("id"), "error": {
                "code": HEADER_MISMATCH,
                "message": format!("Header mismatch: {problem}"),
            }});
            let _ = respond(
                stream,
                400,
                "application/json",
                body.to_string().as_bytes(),
                &[],
            );
            return;
        }
        let legacy = match header_version {
            None => DEFAULT_VERSION,
            Some(v) => match LEGACY_VERSIONS.iter().find(|known| **known == v) {
                Some(known) => known,
                // A modern body says its version itself (and gets -32022
                // with its id when ocm does not speak it).
                None if v == protocol::MODERN_VERSION || modern.is_some() => {
                    protocol::LATEST_LEGACY
                }
                None => {
                    let body = protocol::error_line(
                        None,
                        protocol::UNSUPPORTED_VERSION,
                        "Unsupported protocol version",
                        Some(json!({"supported": protocol::supported_versions(), "requested": v})),
                    );
                    let _ = respond(stream, 400, "application/json", body.as_bytes(), &[]);
                    return;
                }
            },
        };
        let session = Session::new(legacy);
        let (out, lines) = mpsc::channel::<String>();
        let answered = self.server.handle(text, &session, &out);
        drop(out);
        if !answered {
            // A notification (or a response): accepted, no body.
            let _ = respond(stream, 202, "text/plain", b"", &[]);
            return;
        }
        let streaming = is_request
            && request
                .header("accept")
                .is_some_and(|accept| accept.contains("text/event-stream"))
            && message
                .as_ref()
                .is_some_and(|m| m.get("method") == Some(&json!("tools/call")));
        if streaming {
            self.stream_events(stream, &lines, message.as_ref(), &session);
        } else {
            answer_json(stream, &lines, modern.is_some());
        }
    }

    /// Progress notifications, then the response, as server-sent events.
    /// A write that fails means the client closed the stream: the call is
    /// cancelled.
    fn stream_events(
        &self,
        stream: &mut TcpStream,
        lines: &mpsc::Receiver<String>,
        message: Option<&Value>,
        session: &Session,
    ) {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
                    X-Accel-Buffering: no\r\nConnection: close\r\n\r\n";
        let mut ok = stream.write_all(head.as_bytes()).is_ok();
        let deadline = Instant::now() + CALL_DEADLINE;
        while ok {
            let wait = KEEP_ALIVE.min(deadline.saturating_duration_since(Instant::now()));
            match lines.recv_timeout(wait) {
                Ok(line) => {
                    let last = serde_json::from_str::<Value>(&line)
                        .map_or(true, |m| m.get("method").is_none());
                    ok = stream
                        .write_all(format!("event: message\ndata: {line}\n\n").as_bytes())
                        .and_then(|()| stream.flush())
                        .is_ok();
                    if last && ok {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    ok = stream
                        .write_all(b": keep-alive\n\n")
                        .and_then(|()| stream.flush())
                        .is_ok();
                }
                Err(_) => break,
            }
        }
        // The client went away (or the call outlived the deadline).
        if let Some(id) = message.and_then(|m| m.get("id")) {
            let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": id, "reason": "the HTTP response stream was closed"}});
            let (out, _) = mpsc::channel();
            // In the request's own session: its call, not another
            // client's with the same id.
            self.server.handle(&cancel.to_string(), session, &out);
        }
    }
}

/// The modern revision's `HeaderMismatch`.
const HEADER_MISMATCH: i64 = -32020;

/// `MCP-Protocol-Version`, `Mcp-Method` and (for `tools/call`) `Mcp-Name`
/// must be there and say what the body says.
fn check_modern_headers(request: &Request, version: &str, message: &Value) -> Result<(), String> {
    let expect = |header: &str, body: Option<&str>| -> Result<(), String> {
        let Some(body) = body else { return Ok(()) };
        match request.header(header) {
            None => Err(format!("the {header} header is required")),
            Some(value) => {
                let decoded = decode_header_value(value)
                    .ok_or_else(|| format!("the {header} header is not valid Base64"))?;
                if decoded == body {
                    Ok(())
                } else {
                    Err(format!("{header} is {value:?}, the body says {body:?}"))
                }
            }
        }
    };
    expect("MCP-Protocol-Version", Some(version))?;
    let method = message.get("method").and_then(Value::as_str);
    expect("Mcp-Method", method)?;
    if method == Some("tools/call") {
        expect(
            "Mcp-Name",
            message.pointer("/params/name").and_then(Value::as_str),
        )?;
    }
    Ok(())
}

/// A header value, Base64-decoded when it is `=?base64?...?=`.
fn decode_header_value(value: &str) -> Option<String> {
    let Some(encoded) = value
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    else {
        return Some(value.to_string());
    };
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in encoded.bytes().filter(|c| *c != b'=') {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(sextet);
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The response as one JSON body (progress, if any, is dropped).
fn answer_json(stream: &mut TcpStream, lines: &mpsc::Receiver<String>, modern: bool) {
    let deadline = Instant::now() + CALL_DEADLINE;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(wait) else {
            let _ = respond(
                stream,
                504,
                "text/plain",
                b"the call did not finish in time\n",
                &[],
            );
            return;
        };
        let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if value.get("method").is_some() {
            continue;
        }
        let code = value.pointer("/error/code").and_then(Value::as_i64);
        let status = match code {
            Some(protocol::PARSE_ERROR | protocol::INVALID_REQUEST) => 400,
            Some(protocol::UNSUPPORTED_VERSION) => 400,
            Some(protocol::INVALID_PARAMS) if modern => 400,
            Some(protocol::METHOD_NOT_FOUND) if modern => 404,
            _ => 200,
        };
        let _ = respond(stream, status, "application/json", line.as_bytes(), &[]);
        return;
    }
}

/// Reads one request: its head (bounded) and its `Content-Length` body.
/// After a refusal sent before the body was read: says no more, and reads
/// (for at most 1 s, 64 KiB) what the client still sends, so closing does
/// not reset the connection before the client has read the refusal.
fn drain(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 8192];
    let mut left = 64usize << 10;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// An HTTP status and its message, for a request refused.
type Refusal = (u16, String);

/// Reads one request: its head, which `check` may refuse before the body
/// is read, then its body; all of it within [`REQUEST_DEADLINE`] (each
/// read also within [`IO_TIMEOUT`]), so a peer sending a byte now and
/// then cannot hold a connection slot.
fn read_request(
    stream: &mut TcpStream,
    check: &dyn Fn(&Request) -> Result<(), Refusal>,
) -> Result<Request, Refusal> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let read = |stream: &mut TcpStream, chunk: &mut [u8]| {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err((408, "the request took too long\n".to_string()));
        }
        let _ = stream.set_read_timeout(Some(left.min(IO_TIMEOUT)));
        stream
            .read(chunk)
            .map_err(|e| (408, format!("reading the request: {e}\n")))
    };
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_len = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => break len,
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err((400, format!("bad request: {e}\n"))),
        }
        if buf.len() > MAX_HEAD {
            return Err((431, "request head too large\n".into()));
        }
        let n = read(stream, &mut chunk)?;
        if n == 0 {
            return Err((400, "the connection closed mid-request\n".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let _ = parsed.parse(&buf);
    let method = parsed.method.unwrap_or("").to_string();
    let path = parsed.path.unwrap_or("").to_string();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|te| !te.eq_ignore_ascii_case("identity"))
    {
        return Err((411, "send the body with Content-Length\n".into()));
    }
    let length: usize = match request.header("content-length") {
        None => 0,
        Some(text) => text
            .parse()
            .map_err(|_| (400, "bad Content-Length\n".to_string()))?,
    };
    if length > MAX_BODY {
        return Err((413, "request body too large\n".into()));
    }
    check(&request)?;
    let mut body = buf.split_off(head_len);
    while body.len() < length {
        let n = read(stream, &mut chunk)?;
        if n == 0 {
            return Err((400, "the connection closed mid-body\n".into()));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    request.body = body;
    Ok(request)
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// Equal, in a time that depends on the lengths only.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for i in 0..given.len().max(expected.len()) {
        let a = given.get(i).copied().unwrap_or(0);
        let b = expected.get(i).copied().unwrap_or(0);
        difference |= usize::from(a ^ b);
    }
    std::hint::black_box(difference) == 0
}

/// A loopback origin (any port), or the request's own host.
fn origin_allowed(origin: &str, host: Option<&str>) -> bool {
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = authority.trim_end_matches('/');
    if host.is_some_and(|host| host.eq_ignore_ascii_case(authority)) {
        return true;
    }
    is_loopback_authority(authority)
}

/// Whether `authority` (`host[:port]`, `[v6][:port]`) names this machine's
/// loopback: `localhost` or a loopback address.
fn is_loopback_authority(authority: &str) -> bool {
    let name = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_decoded_from_base64() {
        assert_eq!(
            decode_header_value("tools/call").as_deref(),
            Some("tools/call")
        );
        assert_eq!(
            decode_header_value("=?base64?b3BlbmNvZGVfc3RhcnQ=?=").as_deref(),
            Some("opencode_start")
        );
        assert_eq!(
            decode_header_value("=?base64?w6l0w6k=?=").as_deref(),
            Some("été")
        );
        assert_eq!(decode_header_value("=?base64?!!?="), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-tokex", b"secret-token"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"", b"secret-token"));
    }

    /// Without a token the server listens on loopback only, and a browser
    /// page whose name was rebound to 127.0.0.1 still sends its own name
    /// as the Host (and as its Origin): such a request is refused.
    #[test]
    fn a_token_less_server_answers_loopback_host_names_only() {
        for host in [
            "127.0.0.1:8765",
            "localhost:8765",
            "[::1]:8765",
            "LOCALHOST",
            "127.0.0.2",
        ] {
            assert!(is_loopback_authority(host), "{host}");
        }
        for host in ["evil.example:8765", "127.0.0.1.evil.example", "", "[::2]:1"] {
            assert!(!is_loopback_authority(host), "{host}");
        }
    }

    #[test]
    fn only_loopback_or_same_host_origins() {
        assert!(origin_allowed("http://localhost:6274", Some("127.0.0.1:9")));
        assert!(origin_allowed("http://127.0.0.1", None));
        assert!(origin_allowed("http://[::1]:8080", None));
        assert!(origin_allowed(
            "https://box.example:8443",
            Some("box.example:8443")
        ));
        assert!(!origin_allowed(
            "http://evil.example",
            Some("127.0.0.1:8765")
        ));
        assert!(!origin_allowed("http://127.0.0.1.evil.example", None));
        assert!(!origin_allowed("null", None));
    }
}
