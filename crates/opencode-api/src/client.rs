//! The blocking HTTP client.

use crate::cancel::CancelToken;
use crate::decode::{self, short_type_name};
use crate::encoding::{base64, percent_encode};
use crate::error::{Error, excerpt};
use crate::requests::{NewSession, PromptRequest};
use crate::types::{Health, MessageWithParts, PromptReply, Session, SessionStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use ureq::{Agent, RequestExt, http};

/// Default limit on establishing a TCP connection. Loopback connects at once
/// or is refused at once; a full backlog is the only slow case.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default limit on a whole health check.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// Default limit on a whole ordinary call (everything but the blocking prompt).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The user name OpenCode expects when `OPENCODE_SERVER_USERNAME` is unset.
pub const DEFAULT_USERNAME: &str = "opencode";
/// Default limit on the size of one response body.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;
/// The header that names the project directory of a request.
pub const DIRECTORY_HEADER: &str = "x-opencode-directory";

/// A secret that never shows in `Debug` output.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Debug)]
struct Credentials {
    username: String,
    /// `Basic base64(user:password)`, the only form the password is kept in.
    header: Secret,
}

impl Credentials {
    fn new(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_string(),
            header: Secret(format!(
                "Basic {}",
                base64(format!("{username}:{password}").as_bytes())
            )),
        }
    }
}

/// Builds a [`Client`]: credentials, directory, timeouts.
///
/// ```
/// use std::time::Duration;
/// let client = opencode_api::Client::builder("http://127.0.0.1:4096")
///     .basic_auth("opencode", "s3cret")
///     .directory("/home/me/project")
///     .health_timeout(Duration::from_millis(500))
///     .build()?;
/// assert!(!format!("{client:?}").contains("s3cret"));
/// # Ok::<(), opencode_api::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    credentials: Option<Credentials>,
    directory: Option<PathBuf>,
    connect_timeout: Duration,
    health_timeout: Duration,
    timeout: Duration,
    max_body_bytes: u64,
}

impl ClientBuilder {
    /// Sends HTTP Basic credentials with every request.
    pub fn basic_auth(mut self, username: &str, password: &str) -> Self {
        self.credentials = Some(Credentials::new(username, password));
        self
    }

    /// Takes credentials from the environment now, the way the server does:
    /// when `OPENCODE_SERVER_PASSWORD` is set and not empty, Basic auth with
    /// `OPENCODE_SERVER_USERNAME` (default `opencode`); otherwise none.
    pub fn auth_from_env(self) -> Self {
        self.auth_from_lookup(|name| std::env::var(name).ok())
    }

    fn auth_from_lookup(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name| lookup(name).filter(|v: &String| !v.is_empty());
        self.credentials = var("OPENCODE_SERVER_PASSWORD").map(|password| {
            let username = var("OPENCODE_SERVER_USERNAME");
            Credentials::new(username.as_deref().unwrap_or(DEFAULT_USERNAME), &password)
        });
        self
    }

    /// The project directory every request is about (sent percent-encoded as
    /// `x-opencode-directory`; without it the server uses its own cwd). Give
    /// an absolute path: the server resolves a relative one against its cwd.
    pub fn directory(mut self, dir: impl AsRef<Path>) -> Self {
        self.directory = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The limit on establishing a connection (default 2 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The limit on a whole health check (default 3 s).
    pub fn health_timeout(mut self, d: Duration) -> Self {
        self.health_timeout = d;
        self
    }

    /// The limit on a whole ordinary call (default 30 s). The blocking prompt
    /// has no overall limit: a turn takes as long as it takes; cancel it with
    /// a [`CancelToken`] or abort the session.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// The largest response body accepted (default 256 MiB).
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Checks the URL and makes the client.
    pub fn build(self) -> Result<Client, Error> {
        let base_url = validate_base_url(&self.base_url)?;
        let agent = new_agent(self.connect_timeout);
        let directory_header = self.directory.as_deref().map(directory_header);
        Ok(Client {
            shared: Arc::new(Shared {
                base_url,
                agent,
                credentials: self.credentials,
                connect_timeout: self.connect_timeout,
                health_timeout: self.health_timeout,
                timeout: self.timeout,
                max_body_bytes: self.max_body_bytes,
            }),
            directory: self.directory,
            directory_header,
        })
    }
}

/// A blocking client of one OpenCode server.
///
/// Cheap to clone; clones share one pooled connection agent. Every call
/// blocks the calling thread and is bounded in time, except
/// [`prompt`](Client::prompt), which waits for the turn to end.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    directory: Option<PathBuf>,
    directory_header: Option<String>,
}

struct Shared {
    base_url: String,
    agent: Agent,
    credentials: Option<Credentials>,
    connect_timeout: Duration,
    health_timeout: Duration,
    timeout: Duration,
    max_body_bytes: u64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.shared.base_url)
            .field("directory", &self.directory)
            .field(
                "username",
                &self.shared.credentials.as_ref().map(|c| &c.username),
            )
            .field("connect_timeout", &self.shared.connect_timeout)
            .field("health_timeout", &self.shared.health_timeout)
            .field("timeout", &self.shared.timeout)
            .finish_non_exhaustive()
    }
}

/// How long a call may take in total.
#[derive(Clone, Copy)]
enum Limit {
    Health,
    Normal,
    /// Only the connect timeout: the blocking prompt.
    Unbounded,
}

/// One request to make.
struct Call<'a> {
    method: &'static str,
    /// Path and query, starting with `/`.
    path: String,
    body: Option<Vec<u8>>,
    limit: Limit,
    cancel: Option<&'a CancelToken>,
}

impl Client {
    /// A client with the defaults and no credentials.
    pub fn new(base_url: &str) -> Result<Client, Error> {
        Client::builder(base_url).build()
    }

    /// A builder for a client of the server at `base_url`
    /// (`http://127.0.0.1:4096`).
    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_string(),
            credentials: None,
            directory: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The project directory requests are about, if one is set.
    pub fn directory(&self) -> Option<&Path> {
        self.directory.as_deref()
    }

    /// The same client (same connections and credentials) for another
    /// project directory.
    pub fn with_directory(&self, dir: &Path) -> Client {
        Client {
            shared: Arc::clone(&self.shared),
            directory: Some(dir.to_path_buf()),
            directory_header: Some(directory_header(dir)),
        }
    }

    /// `GET /global/health`, bounded by the health timeout. A server that
    /// accepts the connection but does not answer gives
    /// [`Error::Timeout`].
    pub fn health(&self) -> Result<Health, Error> {
        self.get_json("/global/health".into(), Limit::Health)
    }

    /// `GET /session`: the sessions of the client's directory, most recently
    /// updated first. Without a directory: every session of the server's own
    /// project.
    pub fn list_sessions(&self) -> Result<Vec<Session>, Error> {
        // The header picks the server's instance but does not filter the
        // list (non-git directories all share the "global" project); only
        // the query parameter does.
        let path = match &self.directory {
            Some(dir) => format!(
                "/session?directory={}",
                percent_encode(dir.as_os_str().as_bytes(), false)
            ),
            None => "/session".to_string(),
        };
        self.get_json(path, Limit::Normal)
    }

    /// `POST /session`: creates a session in the client's directory.
    pub fn create_session(&self, new: &NewSession) -> Result<Session, Error> {
        self.send_json("POST", "/session".into(), new, Limit::Normal)
    }

    /// `GET /session/{id}`.
    pub fn get_session(&self, session_id: &str) -> Result<Session, Error> {
        self.get_json(format!("/session/{}", segment(session_id)), Limit::Normal)
    }

    /// `PATCH /session/{id}` with a new title.
    pub fn update_session_title(&self, session_id: &str, title: &str) -> Result<Session, Error> {
        self.send_json(
            "PATCH",
            format!("/session/{}", segment(session_id)),
            &serde_json::json!({ "title": title }),
            Limit::Normal,
        )
    }

    /// `DELETE /session/{id}`: removes the session and its messages.
    pub fn delete_session(&self, session_id: &str) -> Result<bool, Error> {
        let text = self.execute(Call {
            method: "DELETE",
            path: format!("/session/{}", segment(session_id)),
            body: None,
            limit: Limit::Normal,
            cancel: None,
        })?;
        self.decode_answer(
            "DELETE",
            &format!("/session/{}", segment(session_id)),
            &text,
        )
    }

    /// `GET /session/{id}/children`: sessions created with this one as parent.
    pub fn session_children(&self, session_id: &str) -> Result<Vec<Session>, Error> {
        self.get_json(
            format!("/session/{}/children", segment(session_id)),
            Limit::Normal,
        )
    }

    /// `GET /session/{id}/message`: the messages with their parts, oldest
    /// first; with `limit`, only the newest `limit` of them.
    pub fn list_messages(
        &self,
        session_id: &str,
        limit: Option<usize>,
    ) -> Result<Vec<MessageWithParts>, Error> {
        let mut path = format!("/session/{}/message", segment(session_id));
        if let Some(limit) = limit {
            path.push_str(&format!("?limit={limit}"));
        }
        self.get_json(path, Limit::Normal)
    }

    /// `GET /session/{id}/message/{messageID}`. [`Error::NotFound`] until
    /// the server has stored it (a `prompt_async` returns before that).
    pub fn get_message(
        &self,
        session_id: &str,
        message_id: &str,
    ) -> Result<MessageWithParts, Error> {
        self.get_json(
            format!(
                "/session/{}/message/{}",
                segment(session_id),
                segment(message_id)
            ),
            Limit::Normal,
        )
    }

    /// `POST /session/{id}/message`: sends a prompt and blocks until the turn
    /// ends, with no overall time limit (only the connect timeout). Returns
    /// the last assistant message; check its `error`: a turn aborted by
    /// [`abort`](Client::abort) returns `Ok` with a `MessageAbortedError`.
    pub fn prompt(&self, session_id: &str, request: &PromptRequest) -> Result<PromptReply, Error> {
        self.prompt_inner(session_id, request, None)
    }

    /// Like [`prompt`](Client::prompt), on a connection of its own that
    /// `cancel` can shut down from another thread; then this returns
    /// [`Error::Cancelled`]. Cancelling does not stop the turn on the server:
    /// call [`abort`](Client::abort) for that.
    pub fn prompt_with_cancel(
        &self,
        session_id: &str,
        request: &PromptRequest,
        cancel: &CancelToken,
    ) -> Result<PromptReply, Error> {
        self.prompt_inner(session_id, request, Some(cancel))
    }

    fn prompt_inner(
        &self,
        session_id: &str,
        request: &PromptRequest,
        cancel: Option<&CancelToken>,
    ) -> Result<PromptReply, Error> {
        let path = format!("/session/{}/message", segment(session_id));
        let text = self.execute(Call {
            method: "POST",
            path: path.clone(),
            body: Some(to_body(request)),
            limit: Limit::Unbounded,
            cancel,
        })?;
        self.decode_answer("POST", &path, &text)
    }

    /// `POST /session/{id}/prompt_async`: starts a turn and returns at once
    /// (204), before the user message is even stored. Give the request a
    /// `message_id` (see [`new_message_id`](crate::new_message_id)) to find
    /// the message later and to make a retry harmless.
    pub fn prompt_async(&self, session_id: &str, request: &PromptRequest) -> Result<(), Error> {
        self.execute(Call {
            method: "POST",
            path: format!("/session/{}/prompt_async", segment(session_id)),
            body: Some(to_body(request)),
            limit: Limit::Normal,
            cancel: None,
        })
        .map(drop)
    }

    /// `POST /session/{id}/abort`: stops the running turn. The server answers
    /// `true` even for an unknown session.
    pub fn abort(&self, session_id: &str) -> Result<bool, Error> {
        let path = format!("/session/{}/abort", segment(session_id));
        let text = self.execute(Call {
            method: "POST",
            path: path.clone(),
            body: None,
            limit: Limit::Normal,
            cancel: None,
        })?;
        self.decode_answer("POST", &path, &text)
    }

    /// `GET /session/status`: the sessions of the client's directory that are
    /// busy or retrying; idle sessions are absent, and so are the sessions of
    /// other directories served by the same server.
    pub fn session_status(&self) -> Result<BTreeMap<String, SessionStatus>, Error> {
        let path = "/session/status";
        let text = self.execute(Call {
            method: "GET",
            path: path.into(),
            body: None,
            limit: Limit::Normal,
            cancel: None,
        })?;
        decode::from_str(&text).map_err(|failure| {
            Error::decode(
                self.label("GET", path),
                short_type_name::<BTreeMap<String, SessionStatus>>(),
                failure,
            )
        })
    }

    /// Any other call: `method` on `path` (with its query), an optional JSON
    /// body, bounded by the normal timeout, decoded as `T` (use
    /// [`serde_json::Value`] for anything).
    pub fn call_json<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, Error> {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let text = self.execute(Call {
            method,
            path: path.clone(),
            body: body.map(to_body),
            limit: Limit::Normal,
            cancel: None,
        })?;
        self.decode_answer(method, &path, &text)
    }

    /// The URL of `GET /event` (the events of one directory).
    pub fn event_url(&self) -> String {
        format!("{}/event", self.shared.base_url)
    }

    /// The URL of `GET /global/event` (the events of every directory).
    pub fn global_event_url(&self) -> String {
        format!("{}/global/event", self.shared.base_url)
    }

    /// Starts an [`httpsse::Reader`] on `GET /event` for the client's
    /// directory, with its credentials. Decode each event's data with
    /// [`Event::parse`](crate::Event::parse).
    pub fn open_events(&self) -> Result<httpsse::Reader, Error> {
        self.open_events_with(|config| config)
    }

    /// Like [`open_events`](Client::open_events), letting `configure` change
    /// the reader's settings (stall timeout, backoff, ...). The credentials
    /// and directory are added after `configure` runs, so they never pass
    /// through code that might print the configuration.
    pub fn open_events_with(
        &self,
        configure: impl FnOnce(httpsse::ReaderConfig) -> httpsse::ReaderConfig,
    ) -> Result<httpsse::Reader, Error> {
        let url = self.event_url();
        let mut config = configure(self.reader_config(url.clone()));
        if let Some(dir) = &self.directory_header {
            config = config.header(DIRECTORY_HEADER, dir.clone());
        }
        self.start_reader(config, url)
    }

    /// Starts an [`httpsse::Reader`] on `GET /global/event` with the client's
    /// credentials: one stream for every directory of the server. Decode each
    /// event's data with [`GlobalEvent::parse`](crate::GlobalEvent::parse).
    pub fn open_global_events(&self) -> Result<httpsse::Reader, Error> {
        self.open_global_events_with(|config| config)
    }

    /// Like [`open_global_events`](Client::open_global_events) with settings;
    /// see [`open_events_with`](Client::open_events_with).
    pub fn open_global_events_with(
        &self,
        configure: impl FnOnce(httpsse::ReaderConfig) -> httpsse::ReaderConfig,
    ) -> Result<httpsse::Reader, Error> {
        let url = self.global_event_url();
        let config = configure(self.reader_config(url.clone()));
        self.start_reader(config, url)
    }

    fn reader_config(&self, url: String) -> httpsse::ReaderConfig {
        httpsse::ReaderConfig::new(url).connect_timeout(self.shared.connect_timeout)
    }

    fn start_reader(
        &self,
        mut config: httpsse::ReaderConfig,
        url: String,
    ) -> Result<httpsse::Reader, Error> {
        if let Some(credentials) = &self.shared.credentials {
            config = config.header("authorization", credentials.header.0.clone());
        }
        httpsse::Reader::start(config).map_err(|e| Error::EventStream {
            url,
            reason: e.to_string(),
        })
    }

    fn get_json<T: DeserializeOwned>(&self, path: String, limit: Limit) -> Result<T, Error> {
        let text = self.execute(Call {
            method: "GET",
            path: path.clone(),
            body: None,
            limit,
            cancel: None,
        })?;
        self.decode_answer("GET", &path, &text)
    }

    fn send_json<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: String,
        body: &impl Serialize,
        limit: Limit,
    ) -> Result<T, Error> {
        let text = self.execute(Call {
            method,
            path: path.clone(),
            body: Some(to_body(body)),
            limit,
            cancel: None,
        })?;
        self.decode_answer(method, &path, &text)
    }

    fn decode_answer<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        text: &str,
    ) -> Result<T, Error> {
        decode::from_str(text).map_err(|failure| {
            Error::decode(self.label(method, path), short_type_name::<T>(), failure)
        })
    }

    fn label(&self, method: &str, path: &str) -> String {
        format!("{method} {}{path}", self.shared.base_url)
    }

    fn limit(&self, limit: Limit) -> Option<Duration> {
        match limit {
            Limit::Health => Some(self.shared.health_timeout),
            Limit::Normal => Some(self.shared.timeout),
            Limit::Unbounded => None,
        }
    }

    /// Makes the request; returns the body of a 2xx answer.
    fn execute(&self, call: Call<'_>) -> Result<String, Error> {
        let label = self.label(call.method, &call.path);
        let Some(cancel) = call.cancel else {
            return self.execute_on(&self.shared.agent, &call, &label);
        };
        // A call that can be cancelled gets an agent of its own, so shutting
        // it down closes only this call's connection.
        let agent = new_agent(self.shared.connect_timeout);
        let Some(_registration) = cancel.register(&agent) else {
            return Err(Error::Cancelled { request: label });
        };
        let result = self.execute_on(&agent, &call, &label);
        match result {
            Err(_) if cancel.is_cancelled() => Err(Error::Cancelled { request: label }),
            other => other,
        }
    }

    fn execute_on(&self, agent: &Agent, call: &Call<'_>, label: &str) -> Result<String, Error> {
        let url = format!("{}{}", self.shared.base_url, call.path);
        let mut builder = http::Request::builder()
            .method(call.method)
            .uri(&url)
            .header("accept", "application/json");
        if let Some(credentials) = &self.shared.credentials {
            builder = builder.header("authorization", &credentials.header.0);
        }
        if let Some(dir) = &self.directory_header {
            builder = builder.header(DIRECTORY_HEADER, dir);
        }
        let limit = self.limit(call.limit);
        let invalid = |e: http::Error| Error::InvalidUrl {
            url: url.clone(),
            reason: e.to_string(),
        };
        let sent = match &call.body {
            Some(body) => {
                let request = builder
                    .header("content-type", "application/json")
                    .body(body.as_slice())
                    .map_err(invalid)?;
                request
                    .with_agent(agent)
                    .configure()
                    .timeout_global(limit)
                    .build()
                    .run()
            }
            None => {
                let request = builder.body(()).map_err(invalid)?;
                request
                    .with_agent(agent)
                    .configure()
                    .timeout_global(limit)
                    .build()
                    .run()
            }
        };
        let mut response = sent.map_err(|e| self.transport_error(e, label, limit))?;
        let status = response.status().as_u16();
        if status == 401 {
            return Err(Error::Unauthorized {
                request: label.to_string(),
                credentials_sent: self.shared.credentials.is_some(),
            });
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(self.shared.max_body_bytes)
            .read_to_string()
            .map_err(|e| self.transport_error(e, label, limit))?;
        match status {
            200..=299 => Ok(text),
            404 => Err(Error::NotFound {
                request: label.to_string(),
                message: server_message(&text).unwrap_or_else(|| excerpt(&text)),
            }),
            _ => Err(Error::Http {
                request: label.to_string(),
                status,
                body: excerpt(&text),
            }),
        }
    }

    fn transport_error(&self, e: ureq::Error, label: &str, limit: Option<Duration>) -> Error {
        let request = label.to_string();
        let connect = self.shared.connect_timeout;
        match e {
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
                Error::Timeout {
                    request,
                    limit: limit.map_or(connect, |l| l.min(connect)),
                }
            }
            ureq::Error::Timeout(_) => Error::Timeout {
                request,
                limit: limit.unwrap_or(connect),
            },
            ureq::Error::Io(io) => match io.kind() {
                ErrorKind::ConnectionRefused
                | ErrorKind::AddrNotAvailable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::HostUnreachable => Error::Connect {
                    request,
                    reason: io.to_string(),
                },
                ErrorKind::TimedOut | ErrorKind::WouldBlock => Error::Timeout {
                    request,
                    limit: limit.unwrap_or(connect),
                },
                _ => Error::Transport {
                    request,
                    reason: io.to_string(),
                },
            },
            ureq::Error::HostNotFound => Error::Connect {
                request,
                reason: "host not found".into(),
            },
            ureq::Error::ConnectionFailed => Error::Connect {
                request,
                reason: "connection failed".into(),
            },
            ureq::Error::BodyExceedsLimit(n) => Error::Transport {
                request,
                reason: format!("the answer is larger than the limit of {n} bytes"),
            },
            other => Error::Transport {
                request,
                reason: other.to_string(),
            },
        }
    }
}

fn new_agent(connect_timeout: Duration) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .no_delay(true)
        .timeout_connect(Some(connect_timeout))
        .timeout_resolve(Some(connect_timeout))
        .user_agent(concat!("opencode-api/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn to_body(value: &impl Serialize) -> Vec<u8> {
    // Our request types serialize to JSON infallibly (strings, maps with
    // string keys); a failure would be a bug, so send `null` and let the
    // server's 400 say so rather than panic.
    serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
}

fn segment(id: &str) -> String {
    percent_encode(id.as_bytes(), false)
}

fn directory_header(dir: &Path) -> String {
    percent_encode(dir.as_os_str().as_bytes(), true)
}

/// The human message of an error body: `{"data":{"message":...}}` (named
/// errors) or `{"message":...}` (request validation).
fn server_message(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    value
        .pointer("/data/message")
        .or_else(|| value.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Checks and normalizes a base URL: `http://host[:port][/prefix]`, no
/// credentials, query or fragment, no trailing slash.
fn validate_base_url(input: &str) -> Result<String, Error> {
    let trimmed = input.trim().trim_end_matches('/');
    let invalid = |reason: &str| Error::InvalidUrl {
        url: redact_userinfo(trimmed),
        reason: reason.to_string(),
    };
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(invalid("expected http://HOST:PORT"));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(invalid(
            "https needs TLS, which this client is built without; OpenCode on loopback speaks http",
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(invalid("only http:// is supported"));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err(invalid(
            "credentials in the URL are not supported; use basic_auth or auth_from_env",
        ));
    }
    if authority.is_empty() {
        return Err(invalid("no host"));
    }
    if rest.contains(['?', '#']) {
        return Err(invalid("a base URL has no query or fragment"));
    }
    let uri: http::Uri = trimmed
        .parse()
        .map_err(|e: http::uri::InvalidUri| Error::InvalidUrl {
            url: trimmed.to_string(),
            reason: e.to_string(),
        })?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    let after_host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or("", |(_, rest)| rest),
        None => authority.find(':').map_or("", |i| &authority[i..]),
    };
    if let Some(port) = after_host.strip_prefix(':')
        && port.parse::<u16>().is_err()
    {
        return Err(invalid("the port is not a number from 0 to 65535"));
    }
    Ok(format!("http://{rest}"))
}

fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            validate_base_url("http://127.0.0.1:4096/").unwrap(),
            "http://127.0.0.1:4096"
        );
        assert_eq!(
            validate_base_url(" HTTP://[::1]:4096/prefix/ ").unwrap(),
            "http://[::1]:4096/prefix"
        );
        for bad in [
            "127.0.0.1:4096",
            "https://127.0.0.1:4096",
            "ftp://x",
            "http://",
            "http://h:1/?q=1",
            "http://h:99999999",
            "http://[::1]:x",
        ] {
            assert!(
                matches!(validate_base_url(bad), Err(Error::InvalidUrl { .. })),
                "{bad}: {:?}",
                validate_base_url(bad)
            );
        }
    }

    #[test]
    fn credentials_in_a_url_are_refused_without_echoing_them() {
        let err = validate_base_url("http://opencode:hunter2@127.0.0.1:4096").unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("basic_auth"), "{text}");
    }

    #[test]
    fn auth_from_env_follows_the_server_rules() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let b = Client::builder("http://127.0.0.1:1")
            .auth_from_lookup(env(&[("OPENCODE_SERVER_PASSWORD", "pw-from-env")]));
        let c = b.credentials.clone().expect("credentials");
        assert_eq!(c.username, "opencode");
        assert_eq!(
            c.header.0,
            format!("Basic {}", base64(b"opencode:pw-from-env"))
        );
        assert!(!format!("{b:?}").contains("pw-from-env"));
        let c = Client::builder("http://127.0.0.1:1")
            .auth_from_lookup(env(&[
                ("OPENCODE_SERVER_PASSWORD", "pw"),
                ("OPENCODE_SERVER_USERNAME", "me"),
            ]))
            .credentials
            .expect("credentials");
        assert_eq!(c.username, "me");
        for empty in [&[("OPENCODE_SERVER_PASSWORD", "")][..], &[]] {
            assert!(
                Client::builder("http://127.0.0.1:1")
                    .basic_auth("x", "y")
                    .auth_from_lookup(env(empty))
                    .credentials
                    .is_none()
            );
        }
    }

    #[test]
    fn server_messages() {
        assert_eq!(
            server_message(r#"{"name":"NotFoundError","data":{"message":"Session not found"}}"#)
                .as_deref(),
            Some("Session not found")
        );
        assert_eq!(
            server_message(r#"{"_tag":"InvalidRequestError","message":"bad"}"#).as_deref(),
            Some("bad")
        );
        assert_eq!(server_message("oops"), None);
    }
}

/// Tests against tiny fake servers on loopback: the shapes of timeouts,
/// statuses, headers and cancellation.
#[cfg(test)]
mod fake_server_tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::thread::JoinHandle;
    use std::time::Instant;

    /// What the fake does with each request.
    #[derive(Clone, Copy)]
    enum Answer {
        /// Writes this whole HTTP response.
        With(&'static str),
        /// Reads the request and never answers.
        Never,
    }

    /// A loopback server that records each request (head and body) and
    /// answers it the same way. Dropping it stops and joins its thread.
    struct FakeServer {
        port: u16,
        requests: mpsc::Receiver<String>,
        stop: Arc<AtomicBool>,
        release: mpsc::Sender<()>,
        thread: Option<JoinHandle<()>>,
    }

    impl FakeServer {
        fn start(answer: Answer) -> FakeServer {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let (tx, requests) = mpsc::channel();
            let (release, released) = mpsc::channel::<()>();
            let stop = Arc::new(AtomicBool::new(false));
            let stopping = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                let mut held = Vec::new();
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let Some(request) = read_request(&stream) else {
                        continue;
                    };
                    let _ = tx.send(request);
                    match answer {
                        Answer::With(response) => {
                            let _ = (&stream).write_all(response.as_bytes());
                        }
                        Answer::Never => held.push(stream),
                    }
                }
                // Keep held connections open until the test is done.
                let _ = released.recv();
            });
            FakeServer {
                port,
                requests,
                stop,
                release,
                thread: Some(thread),
            }
        }

        fn url(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        fn next_request(&self) -> String {
            self.requests
                .recv_timeout(Duration::from_secs(10))
                .expect("the fake server got no request within 10 s")
        }
    }

    impl Drop for FakeServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = self.release.send(());
            // Wake the accept() so the thread sees the flag.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    fn read_request(stream: &TcpStream) -> Option<String> {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some(head + &String::from_utf8_lossy(&body))
    }

    fn json_response(status: &str, body: &str) -> &'static str {
        Box::leak(
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        )
    }

    fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
        request.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[test]
    fn a_server_that_never_answers_makes_health_time_out() {
        let fake = FakeServer::start(Answer::Never);
        let limit = Duration::from_millis(300);
        let client = Client::builder(&fake.url())
            .health_timeout(limit)
            .build()
            .unwrap();
        let started = Instant::now();
        let err = client.health().unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(&err, Error::Timeout { limit: l, .. } if *l == limit),
            "{err:?}"
        );
        assert!(err.is_unreachable());
        assert!(took >= limit, "returned before the limit: {took:?}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(
            fake.next_request()
                .starts_with("GET /global/health HTTP/1.1")
        );
    }

    #[test]
    fn a_listener_that_never_accepts_makes_health_time_out() {
        // The kernel completes the handshake into the backlog; nobody reads.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let client = Client::builder(&url)
            .health_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let started = Instant::now();
        let err = client.health().unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    #[test]
    fn nothing_listening_is_a_connect_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = client.health().unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains(&port.to_string()), "{err}");
    }

    #[test]
    fn unauthorized_without_and_with_credentials_and_the_password_stays_secret() {
        let fake = FakeServer::start(Answer::With(
            "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic\r\ncontent-length: 0\r\n\r\n",
        ));
        let err = Client::new(&fake.url()).unwrap().health().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unauthorized {
                    credentials_sent: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(header(&fake.next_request(), "authorization"), None);

        let password = "correct horse battery staple";
        let client = Client::builder(&fake.url())
            .basic_auth("opencode", password)
            .build()
            .unwrap();
        let err = client.health().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unauthorized {
                    credentials_sent: true,
                    ..
                }
            ),
            "{err:?}"
        );
        let request = fake.next_request();
        let sent = header(&request, "authorization").expect("an authorization header");
        assert_eq!(
            sent,
            format!(
                "Basic {}",
                base64(format!("opencode:{password}").as_bytes())
            )
        );
        let encoded = base64(password.as_bytes());
        for shown in [err.to_string(), format!("{err:?}"), format!("{client:?}")] {
            assert!(
                !shown.contains(password) && !shown.contains(&encoded),
                "{shown}"
            );
            assert!(!shown.contains(&sent[6..]), "{shown}");
        }
    }

    #[test]
    fn not_found_carries_the_server_message() {
        let fake = FakeServer::start(Answer::With(json_response(
            "404 Not Found",
            r#"{"name":"NotFoundError","data":{"message":"Session not found: ses_x"}}"#,
        )));
        let client = Client::new(&fake.url()).unwrap();
        let err = client.get_session("ses_x").unwrap_err();
        match &err {
            Error::NotFound { request, message } => {
                assert_eq!(message, "Session not found: ses_x");
                assert_eq!(request, &format!("GET {}/session/ses_x", fake.url()));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.is_not_found());
    }

    #[test]
    fn other_statuses_carry_an_excerpt_of_the_body() {
        let fake = FakeServer::start(Answer::With(json_response(
            "500 Internal Server Error",
            r#"{"name":"UnknownError","data":{"message":"boom"}}"#,
        )));
        let err = Client::new(&fake.url())
            .unwrap()
            .list_sessions()
            .unwrap_err();
        match err {
            Error::Http { status, body, .. } => {
                assert_eq!(status, 500);
                assert!(body.contains("boom"), "{body}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wrong_shape_is_a_decode_error_with_the_path() {
        let body = r#"[{"info":{"id":"msg_1","sessionID":"ses_1","role":"user","time":{"created":1}},
            "parts":[{"id":"prt_1","type":"text","text":"ok"},{"id":"prt_2","type":"text","text":7}]}]"#;
        let fake = FakeServer::start(Answer::With(json_response("200 OK", body)));
        let err = Client::new(&fake.url())
            .unwrap()
            .list_messages("ses_1", Some(5))
            .unwrap_err();
        match &err {
            Error::Decode {
                context,
                target,
                path,
                message,
            } => {
                assert!(
                    context.ends_with("/session/ses_1/message?limit=5"),
                    "{context}"
                );
                assert_eq!(target, "Vec<MessageWithParts>");
                assert_eq!(path, "$[0].parts[1].text");
                assert!(message.contains("invalid type"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_directory_goes_percent_encoded_in_its_header() {
        let fake = FakeServer::start(Answer::With(json_response("200 OK", "[]")));
        let client = Client::builder(&fake.url())
            .directory("/tmp/a dir/ü")
            .build()
            .unwrap();
        assert!(client.list_sessions().unwrap().is_empty());
        let request = fake.next_request();
        assert_eq!(
            header(&request, DIRECTORY_HEADER),
            Some("/tmp/a%20dir/%C3%BC")
        );
        let other = client.with_directory(Path::new("/srv/b"));
        assert!(other.list_sessions().unwrap().is_empty());
        assert_eq!(
            header(&fake.next_request(), DIRECTORY_HEADER),
            Some("/srv/b")
        );
        // Without a directory no header is sent.
        Client::new(&fake.url()).unwrap().list_sessions().unwrap();
        assert_eq!(header(&fake.next_request(), DIRECTORY_HEADER), None);
    }

    #[test]
    fn ids_are_percent_encoded_in_paths() {
        let fake = FakeServer::start(Answer::With(json_response("200 OK", "true")));
        let client = Client::new(&fake.url()).unwrap();
        assert!(client.abort("ses_a/../b?c").unwrap());
        assert!(
            fake.next_request()
                .starts_with("POST /session/ses_a%2F..%2Fb%3Fc/abort HTTP/1.1")
        );
    }

    #[test]
    fn a_blocked_prompt_is_cancelled_from_another_thread() {
        let fake = FakeServer::start(Answer::Never);
        let client = Client::builder(&fake.url())
            .timeout(Duration::from_millis(100))
            .health_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let token = CancelToken::new();
        let call = {
            let client = client.clone();
            let token = token.clone();
            std::thread::spawn(move || {
                client.prompt_with_cancel("ses_1", &PromptRequest::text("hi"), &token)
            })
        };
        // The request reached the server: the call is blocked on the answer
        // (and stays blocked: the prompt has no overall limit, unlike the
        // 100 ms of ordinary calls).
        let request = fake.next_request();
        assert!(request.starts_with("POST /session/ses_1/message HTTP/1.1"));
        assert!(request.contains(r#""parts":[{"type":"text","text":"hi"}]"#));
        let cancelled_at = Instant::now();
        token.cancel();
        let result = call.join().unwrap();
        assert!(
            matches!(&result, Err(Error::Cancelled { request }) if request.contains("/session/ses_1/message")),
            "{result:?}"
        );
        assert!(cancelled_at.elapsed() < Duration::from_secs(5));
        // A cancelled token fails later calls at once, without a request.
        let again = client.prompt_with_cancel("ses_1", &PromptRequest::text("x"), &token);
        assert!(matches!(again, Err(Error::Cancelled { .. })), "{again:?}");
        assert!(fake.requests.try_recv().is_err());
        // The shared client is unaffected.
        assert!(matches!(client.health(), Err(Error::Timeout { .. })));
    }
}
