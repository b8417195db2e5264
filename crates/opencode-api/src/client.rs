//! The blocking HTTP client: its configuration, one method per route, and
//! the one request path every call goes through.

use crate::cancel::CancelToken;
use crate::decode::{self, short_type_name};
use crate::encoding::{base64, percent_encode};
use crate::error::{Error, excerpt};
use crate::events::Event;
use crate::ids::{MessageId, SessionId};
use crate::requests::{NewSession, PromptRequest};
use crate::stream::{EventStream, GlobalEventStream, StreamConfig};
use crate::types::{
    Health, MessageWithParts, PermissionReply, PromptReply, Session, SessionStatus,
};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
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

#[derive(Clone)]
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

/// One request, as the public methods describe it to [`Client::request`].
struct Call<'a> {
    method: &'static str,
    /// Path and query, starting with `/`.
    path: String,
    body: Option<Vec<u8>>,
    limit: Limit,
    cancel: Option<&'a CancelToken>,
}

impl<'a> Call<'a> {
    fn new(method: &'static str, path: impl Into<String>) -> Call<'a> {
        Call {
            method,
            path: path.into(),
            body: None,
            limit: Limit::Normal,
            cancel: None,
        }
    }

    fn get(path: impl Into<String>) -> Call<'a> {
        Call::new("GET", path)
    }

    fn json(mut self, body: &impl Serialize) -> Self {
        // Our request types serialize to JSON infallibly (strings, maps with
        // string keys); a failure would be a bug, so send `null` and let the
        // server's 400 say so rather than panic.
        self.body = Some(serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec()));
        self
    }

    fn limit(mut self, limit: Limit) -> Self {
        self.limit = limit;
        self
    }

    fn cancel(mut self, token: Option<&'a CancelToken>) -> Self {
        self.cancel = token;
        self
    }
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

    /// The bound on each call (the blocking prompt excepted).
    pub fn request_timeout(&self) -> Duration {
        self.shared.timeout
    }

    /// The same client with another bound on each call (the blocking
    /// prompt excepted), sharing its connections: for calls that must
    /// give up sooner than the others (an abort on Ctrl-C).
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        let mut shared = (*self.shared).clone();
        shared.timeout = timeout;
        Client {
            shared: Arc::new(shared),
            directory: self.directory.clone(),
            directory_header: self.directory_header.clone(),
        }
    }

    /// `GET /global/health`, bounded by the health timeout. A server that
    /// accepts the connection but does not answer gives
    /// [`Error::Timeout`].
    pub fn health(&self) -> Result<Health, Error> {
        self.request(Call::get("/global/health").limit(Limit::Health))
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
        self.request(Call::get(path))
    }

    /// `POST /session`: creates a session in the client's directory.
    pub fn create_session(&self, new: &NewSession) -> Result<Session, Error> {
        self.request(Call::new("POST", "/session").json(new))
    }

    /// `GET /session/{id}`.
    pub fn get_session(&self, session_id: &SessionId) -> Result<Session, Error> {
        self.request(Call::get(session_path(session_id, "")))
    }

    /// `PATCH /session/{id}` with a new title.
    pub fn update_session_title(
        &self,
        session_id: &SessionId,
        title: &str,
    ) -> Result<Session, Error> {
        let body = serde_json::json!({ "title": title });
        self.request(Call::new("PATCH", session_path(session_id, "")).json(&body))
    }

    /// `DELETE /session/{id}`: removes the session and its messages.
    pub fn delete_session(&self, session_id: &SessionId) -> Result<bool, Error> {
        self.request(Call::new("DELETE", session_path(session_id, "")))
    }

    /// `GET /session/{id}/children`: sessions created with this one as parent.
    pub fn session_children(&self, session_id: &SessionId) -> Result<Vec<Session>, Error> {
        self.request(Call::get(session_path(session_id, "/children")))
    }

    /// `GET /session/{id}/message`: the messages with their parts, oldest
    /// first; with `limit`, only the newest `limit` of them.
    pub fn list_messages(
        &self,
        session_id: &SessionId,
        limit: Option<usize>,
    ) -> Result<Vec<MessageWithParts>, Error> {
        let mut path = session_path(session_id, "/message");
        if let Some(limit) = limit {
            path.push_str(&format!("?limit={limit}"));
        }
        self.request(Call::get(path))
    }

    /// `GET /session/{id}/message/{messageID}`. [`Error::NotFound`] until
    /// the server has stored it (a `prompt_async` returns before that).
    pub fn get_message(
        &self,
        session_id: &SessionId,
        message_id: &MessageId,
    ) -> Result<MessageWithParts, Error> {
        let message = format!("/message/{}", segment(message_id.as_str()));
        self.request(Call::get(session_path(session_id, &message)))
    }

    /// `DELETE /session/{id}/message/{messageID}`: removes the message and
    /// its parts (to clear an unanswered prompt before sending it again).
    pub fn delete_message(
        &self,
        session_id: &SessionId,
        message_id: &MessageId,
    ) -> Result<bool, Error> {
        let message = format!("/message/{}", segment(message_id.as_str()));
        self.request(Call::new("DELETE", session_path(session_id, &message)))
    }

    /// `POST /session/{id}/message`: sends a prompt and blocks until the turn
    /// ends, with no overall time limit (only the connect timeout). Returns
    /// the last assistant message, also when the turn failed (an abort gives
    /// a `MessageAbortedError`): see [`PromptReply::error`] and
    /// [`PromptReply::into_result`].
    pub fn prompt(
        &self,
        session_id: &SessionId,
        request: &PromptRequest,
    ) -> Result<PromptReply, Error> {
        self.prompt_with(session_id, request, None)
    }

    /// Like [`prompt`](Client::prompt), on a connection of its own that
    /// `cancel` can shut down from another thread; then this returns
    /// [`Error::Cancelled`]. Cancelling does not stop the turn on the server:
    /// call [`abort`](Client::abort) for that.
    pub fn prompt_with_cancel(
        &self,
        session_id: &SessionId,
        request: &PromptRequest,
        cancel: &CancelToken,
    ) -> Result<PromptReply, Error> {
        self.prompt_with(session_id, request, Some(cancel))
    }

    fn prompt_with(
        &self,
        session_id: &SessionId,
        request: &PromptRequest,
        cancel: Option<&CancelToken>,
    ) -> Result<PromptReply, Error> {
        let call = Call::new("POST", session_path(session_id, "/message"));
        self.request(call.json(request).limit(Limit::Unbounded).cancel(cancel))
    }

    /// `POST /session/{id}/prompt_async`: starts a turn and returns at once
    /// (204), before the user message is even stored. Give the request a
    /// `message_id` (see [`new_message_id`](crate::new_message_id)) to find
    /// the message later and to make a retry harmless.
    pub fn prompt_async(
        &self,
        session_id: &SessionId,
        request: &PromptRequest,
    ) -> Result<(), Error> {
        let call = Call::new("POST", session_path(session_id, "/prompt_async"));
        self.request::<IgnoredAny>(call.json(request)).map(drop)
    }

    /// `POST /session/{id}/abort`: stops the running turn. The server answers
    /// `true` even for an unknown session.
    pub fn abort(&self, session_id: &SessionId) -> Result<bool, Error> {
        self.request(Call::new("POST", session_path(session_id, "/abort")))
    }

    /// `POST /permission/{id}/reply`: answers a tool's permission request
    /// ([`EventKind::PermissionAsked`](crate::EventKind::PermissionAsked)).
    pub fn reply_permission(&self, request_id: &str, reply: PermissionReply) -> Result<(), Error> {
        let body = serde_json::json!({ "reply": reply.as_str() });
        let call = Call::new("POST", format!("/permission/{}/reply", segment(request_id)));
        self.request::<IgnoredAny>(call.json(&body)).map(drop)
    }

    /// `POST /question/{id}/reply`: answers a question request
    /// ([`EventKind::QuestionAsked`](crate::EventKind::QuestionAsked)), one
    /// answer per question, each the labels chosen (or a text of one's own
    /// where the question allows it).
    pub fn reply_question(&self, request_id: &str, answers: &[Vec<String>]) -> Result<(), Error> {
        let body = serde_json::json!({ "answers": answers });
        let call = Call::new("POST", format!("/question/{}/reply", segment(request_id)));
        self.request::<IgnoredAny>(call.json(&body)).map(drop)
    }

    /// `POST /question/{id}/reject`: declines a question request; the tool
    /// that asked gets an error and the turn goes on.
    pub fn reject_question(&self, request_id: &str) -> Result<(), Error> {
        let call = Call::new("POST", format!("/question/{}/reject", segment(request_id)));
        self.request::<IgnoredAny>(call).map(drop)
    }

    /// `GET /session/status`: the sessions of the client's directory that are
    /// busy or retrying; idle sessions are absent, and so are the sessions of
    /// other directories served by the same server.
    pub fn session_status(&self) -> Result<BTreeMap<SessionId, SessionStatus>, Error> {
        self.request(Call::get("/session/status"))
    }

    /// Any other call: `method` on `path` (with its query), an optional JSON
    /// body, bounded by the normal timeout, decoded as `T` (use
    /// [`serde_json::Value`] for anything; an empty 204 answer decodes as
    /// `null`).
    pub fn call_json<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, Error> {
        let path = match path.starts_with('/') {
            true => path.to_string(),
            false => format!("/{path}"),
        };
        let call = Call::new(method, path);
        self.request(match body {
            Some(body) => call.json(body),
            None => call,
        })
    }

    /// Opens `GET /event`: the events of the client's directory, typed, on a
    /// thread of its own that reconnects (see [`EventStream`]). Returns at
    /// once; wait for the server's first frame with
    /// [`EventStream::wait_connected`].
    pub fn event_stream(&self) -> Result<EventStream<Event>, Error> {
        self.event_stream_with(&StreamConfig::new())
    }

    /// [`event_stream`](Client::event_stream) with other settings (backoff,
    /// stall window, giving up).
    pub fn event_stream_with(&self, config: &StreamConfig) -> Result<EventStream<Event>, Error> {
        self.open_stream("/event", config)
    }

    /// Opens `GET /global/event`: the events of every directory of the
    /// server, each with its directory; one such stream follows all
    /// sessions of a server.
    pub fn global_event_stream(&self) -> Result<GlobalEventStream, Error> {
        self.global_event_stream_with(&StreamConfig::new())
    }

    /// [`global_event_stream`](Client::global_event_stream) with other
    /// settings.
    pub fn global_event_stream_with(
        &self,
        config: &StreamConfig,
    ) -> Result<GlobalEventStream, Error> {
        self.open_stream("/global/event", config)
    }

    /// The frames of `GET /global/event` as they come, not decoded: the
    /// reader that [`global_event_stream_with`](Client::global_event_stream_with)
    /// decodes, for a program that passes the frames on.
    pub fn global_event_frames_with(
        &self,
        config: &StreamConfig,
    ) -> Result<crate::FrameReader, Error> {
        let (url, reader) = self.stream_reader("/global/event", config);
        httpsse::Reader::start(reader).map_err(|e| Error::EventStream {
            url,
            reason: format!("cannot start the reader: {e}"),
        })
    }

    fn open_stream<E: crate::StreamEvent>(
        &self,
        path: &str,
        config: &StreamConfig,
    ) -> Result<EventStream<E>, Error> {
        let (url, reader) = self.stream_reader(path, config);
        EventStream::start(reader, url)
    }

    /// The URL of the stream at `path` and its reader's configuration.
    fn stream_reader(&self, path: &str, config: &StreamConfig) -> (String, httpsse::ReaderConfig) {
        let url = format!("{}{path}", self.shared.base_url);
        let mut reader = config.reader_config(url.clone(), self.shared.connect_timeout);
        if let Some(credentials) = &self.shared.credentials {
            reader = reader.header("authorization", credentials.header.0.clone());
        }
        // The global stream covers every directory; the header would only
        // pick an instance it does not need.
        if let (Some(dir), "/event") = (&self.directory_header, path) {
            reader = reader.header(DIRECTORY_HEADER, dir.clone());
        }
        (url, reader)
    }

    /// The one way a call is made: the connection (the shared agent, or one
    /// of its own that `call.cancel` can shut down), the headers, the time
    /// limit, the status, the body limit and the decoding of a success as
    /// `T`.
    fn request<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, Error> {
        let label = format!("{} {}{}", call.method, self.shared.base_url, call.path);
        let (status, text) = match call.cancel {
            None => self.exchange(&self.shared.agent, &call, &label)?,
            Some(token) => {
                // An agent of its own, so shutting it down closes only this
                // call's connection.
                let agent = new_agent(self.shared.connect_timeout);
                let Some(_registration) = token.register(&agent) else {
                    return Err(Error::Cancelled { request: label });
                };
                match self.exchange(&agent, &call, &label) {
                    Err(_) if token.is_cancelled() => {
                        return Err(Error::Cancelled { request: label });
                    }
                    other => other?,
                }
            }
        };
        match status {
            // No content is no value: `null` is what `()`, `Option` and
            // `IgnoredAny` accept.
            204 => decode_answer(&label, "null"),
            200..=299 => decode_answer(&label, &text),
            401 => Err(Error::Unauthorized {
                request: label,
                credentials_sent: self.shared.credentials.is_some(),
            }),
            404 => Err(Error::NotFound {
                message: server_message(&text).unwrap_or_else(|| excerpt(&text)),
                request: label,
            }),
            _ => Err(Error::Http {
                request: label,
                status,
                body: excerpt(&text),
            }),
        }
    }

    /// Sends the request on `agent` and reads the answer's status and body.
    fn exchange(
        &self,
        agent: &Agent,
        call: &Call<'_>,
        label: &str,
    ) -> Result<(u16, String), Error> {
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
        let limit = match call.limit {
            Limit::Health => Some(self.shared.health_timeout),
            Limit::Normal => Some(self.shared.timeout),
            Limit::Unbounded => None,
        };
        let invalid = |e: http::Error| Error::InvalidUrl {
            url: url.clone(),
            reason: e.to_string(),
        };
        // Two request types: a call without a body sends no content-length.
        let sent = match &call.body {
            Some(body) => {
                let builder = builder.header("content-type", "application/json");
                send(
                    builder.body(body.as_slice()).map_err(invalid)?,
                    agent,
                    limit,
                )
            }
            None => send(builder.body(()).map_err(invalid)?, agent, limit),
        };
        let fail = |e| self.transport_error(e, label, limit);
        let mut response = sent.map_err(fail)?;
        let status = response.status().as_u16();
        if status == 401 {
            // Nothing in the body of a 401 is worth waiting for.
            return Ok((status, String::new()));
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(self.shared.max_body_bytes)
            .read_to_string()
            .map_err(fail)?;
        Ok((status, text))
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
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .no_delay(true)
        .timeout_connect(Some(connect_timeout))
        .timeout_resolve(Some(connect_timeout))
        .user_agent(concat!("opencode-api/", env!("CARGO_PKG_VERSION")))
        .build();
    Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        crate::resolve::LiteralFirst::default(),
    )
}

fn send<B: ureq::AsSendBody>(
    request: http::Request<B>,
    agent: &Agent,
    limit: Option<Duration>,
) -> Result<http::Response<ureq::Body>, ureq::Error> {
    let request = request.with_agent(agent).configure().timeout_global(limit);
    request.build().run()
}

/// Decodes a success's body as `T`, naming the request in a failure.
fn decode_answer<T: DeserializeOwned>(label: &str, text: &str) -> Result<T, Error> {
    decode::from_str(text).map_err(|failure| Error::decode(label, short_type_name::<T>(), failure))
}

/// `/session/{id}` followed by `rest`.
fn session_path(session_id: &SessionId, rest: &str) -> String {
    format!("/session/{}{rest}", segment(session_id.as_str()))
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
mod tests;
