//! The transport-independent part of `ocm mcp`: one message in, its
//! answers out. Quick requests (`initialize`, `ping`, `tools/list`,
//! `server/discover`) are answered at once on the caller's thread; a
//! `tools/call` runs on a worker of a bounded [`Pool`], so the reader
//! stays free to answer `ping` and to take `notifications/cancelled`
//! while it runs.
//!
//! Every message for one request (its progress notifications, then its
//! response) goes through its [`Call`], under one lock: after the
//! response or a cancellation nothing more is sent for it, and progress
//! values strictly increase.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::protocol::{self, Era, INTERNAL_ERROR, INVALID_PARAMS, Id, Incoming, METHOD_NOT_FOUND};
use super::tools::{self, Context, TOOLS};

/// Where the lines for one client go (the stdio writer, or one HTTP
/// response).
pub type Out = mpsc::Sender<String>;

/// How long a list result may be cached: the tools never change while
/// the process runs.
const LIST_TTL_MS: u64 = 3_600_000;

/// What the server tells a model about itself.
const INSTRUCTIONS: &str = "ocm runs one OpenCode server (`opencode serve`) per project folder. \
    Use opencode_start with the project's absolute path to get a running server's URL (it reuses \
    a healthy one), opencode_status to look without starting anything, opencode_list to see every \
    project, opencode_stop / opencode_restart to manage one, and opencode_destroy (confirm: true) \
    to delete what ocm keeps for a project. Instead of a folder, `project_name` names a sandbox: \
    opencode_start with project_name and git_url clones the repository and starts its server and \
    companion (or answers waiting_for_key with a public key for the user to add as a deploy \
    key); the other tools then act on it by project_name. Servers keep running after this MCP \
    server exits.";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The protocol state of one client connection: the handshake revision
/// negotiated by `initialize` (stdio), or given by a header (HTTP).
#[derive(Debug)]
pub struct Session {
    version: Mutex<&'static str>,
    /// Tells this session's calls from another's with the same request
    /// ids (each HTTP request is a session of its own).
    scope: u64,
}

static SCOPES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Session {
    /// A session speaking `version` until `initialize` says otherwise.
    pub fn new(version: &'static str) -> Session {
        Session {
            version: Mutex::new(version),
            scope: SCOPES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn legacy(&self) -> Era {
        Era::Legacy(*lock(&self.version))
    }
}

/// One `tools/call` in flight.
#[derive(Debug)]
struct Call {
    id: Id,
    out: Out,
    era: Era,
    progress_token: Option<Value>,
    /// A turn (`opencode_prompt`): cancelled when the input ends, as no
    /// one is left to take its reply (a start or a stop runs to its end).
    turn: bool,
    state: Mutex<CallState>,
}

#[derive(Debug, Default)]
struct CallState {
    /// Answered or cancelled: nothing more is sent.
    closed: bool,
    cancelled: bool,
    progress: u64,
}

impl Call {
    fn progress(&self, message: String) {
        let Some(token) = &self.progress_token else {
            return;
        };
        let mut state = lock(&self.state);
        if state.closed {
            return;
        }
        state.progress += 1;
        let mut params = json!({"progressToken": token, "progress": state.progress});
        if self.era.has("2025-03-26") {
            params["message"] = json!(message);
        }
        let _ = self.out.send(protocol::notification_line(
            "notifications/progress",
            params,
        ));
    }

    fn respond(&self, line: String) {
        let mut state = lock(&self.state);
        if !state.closed {
            state.closed = true;
            let _ = self.out.send(line);
        }
    }

    fn cancelled(&self) -> bool {
        lock(&self.state).cancelled
    }

    fn cancel(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        state.cancelled = true;
    }

    /// Nothing more is sent for it; it runs on.
    fn close(&self) {
        lock(&self.state).closed = true;
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed number of worker threads taking jobs from a bounded queue.
/// Dropping it (or [`Pool::shut_down`]) closes the queue and joins the
/// workers that finish by the deadline.
#[derive(Debug)]
pub struct Pool {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    exited: Receiver<()>,
    /// Workers that said they ended.
    ended: usize,
}

impl Pool {
    /// `workers` threads, and room for `queue` waiting jobs.
    pub fn new(workers: usize, queue: usize) -> Pool {
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(queue);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (exited_tx, exited) = mpsc::channel();
        let workers = (0..workers)
            .map(|n| {
                let job_rx = Arc::clone(&job_rx);
                let exited_tx = exited_tx.clone();
                std::thread::Builder::new()
                    .name(format!("mcp-worker-{n}"))
                    .spawn(move || {
                        // Says so when the thread ends, also by a panic.
                        let _exit = Signal(exited_tx);
                        loop {
                            let job = lock(&job_rx).recv();
                            match job {
                                Ok(job) => job(),
                                Err(_) => break,
                            }
                        }
                    })
                    .expect("spawning a worker thread")
            })
            .collect();
        Pool {
            jobs: Some(jobs),
            workers,
            exited,
            ended: 0,
        }
    }

    /// Queues `job`; `false` when the queue is full.
    fn submit(&self, job: Job) -> bool {
        self.jobs
            .as_ref()
            .is_some_and(|jobs| jobs.try_send(job).is_ok())
    }

    /// Closes the queue and waits until `deadline` for every worker to
    /// end. Returns how many still run.
    pub fn wait_ended(&mut self, deadline: Instant) -> usize {
        self.jobs = None;
        while self.ended < self.workers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.exited.recv_timeout(left) {
                Ok(()) => self.ended += 1,
                Err(_) => break,
            }
        }
        self.workers.len() - self.ended
    }

    /// Closes the queue and joins the workers that end by `deadline`
    /// (a manager call cannot be interrupted: a worker still in one is
    /// left to end with the process). Returns how many were left.
    pub fn shut_down(&mut self, deadline: Instant) -> usize {
        let left = self.wait_ended(deadline);
        if left == 0 {
            for worker in self.workers.drain(..) {
                let _ = worker.join();
            }
        } else {
            // Joining would block: the finished ones are joined, the rest
            // detached (they hold no lock a shutdown needs).
            let (done, busy): (Vec<_>, Vec<_>) =
                self.workers.drain(..).partition(JoinHandle::is_finished);
            for worker in done {
                let _ = worker.join();
            }
            drop(busy);
        }
        self.ended = 0;
        left
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.shut_down(Instant::now() + Duration::from_secs(1));
        }
    }
}

/// Sends on drop.
struct Signal(mpsc::Sender<()>);

impl Drop for Signal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// The calls in flight, by the session's scope and the request id: two
/// HTTP clients may use the same ids at once.
type InFlight = HashMap<(u64, String), Arc<Call>>;

/// The call a `notifications/cancelled` of `session` for `key` means: its
/// own, else the only call with that id (a stateless HTTP client sends
/// its cancellation in a request of its own); never one of two others.
fn cancelled_call(in_flight: &mut InFlight, scope: u64, key: &str) -> Option<Arc<Call>> {
    let own = (scope, key.to_string());
    if let Some(call) = in_flight.remove(&own) {
        return Some(call);
    }
    let mut matching = in_flight.keys().filter(|(_, k)| k == key);
    match (matching.next().cloned(), matching.next()) {
        (Some(only), None) => in_flight.remove(&only),
        _ => None,
    }
}

/// The server: the tools' context, the calls in flight, the workers.
#[derive(Debug)]
pub struct Server {
    ctx: Arc<Context>,
    in_flight: Arc<Mutex<InFlight>>,
    pool: Mutex<Pool>,
}

impl Server {
    /// A server with `workers` tool threads.
    pub fn new(ctx: Context, workers: usize) -> Server {
        Server {
            ctx: Arc::new(ctx),
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            pool: Mutex::new(Pool::new(workers, workers * 4)),
        }
    }

    /// Handles one message (a line without its ending); its answers go to
    /// `out`, now or later (a `tools/call`). Returns whether a request
    /// was answered or queued (`false`: a notification or a response).
    pub fn handle(&self, line: &str, session: &Session, out: &Out) -> bool {
        match protocol::classify(line) {
            Incoming::Invalid(error) => {
                let _ = out.send(error);
                true
            }
            Incoming::Response => false,
            Incoming::Notification { method, params } => {
                self.notification(&method, &params, session);
                false
            }
            Incoming::Request { id, method, params } => {
                self.request(id, &method, params, session, out);
                true
            }
        }
    }

    fn notification(&self, method: &str, params: &Map<String, Value>, session: &Session) {
        if method == "notifications/cancelled"
            && let Some(request) = params.get("requestId")
        {
            let call = cancelled_call(
                &mut lock(&self.in_flight),
                session.scope,
                &protocol::id_key(request),
            );
            if let Some(call) = call {
                call.cancel();
            }
        }
        // notifications/initialized and any other: nothing to do.
    }

    fn request(
        &self,
        id: Id,
        method: &str,
        params: Map<String, Value>,
        session: &Session,
        out: &Out,
    ) {
        let era = match protocol::request_era(&id, &params) {
            Ok(Some(era)) => era,
            Ok(None) => session.legacy(),
            Err(error) => {
                let _ = out.send(error);
                return;
            }
        };
        let answer = |result: Map<String, Value>| {
            let _ = out.send(protocol::result_line(
                &id,
                &protocol::finish_result(result, &era),
            ));
        };
        let error = |code: i64, message: &str| {
            let _ = out.send(protocol::error_line(Some(&id), code, message, None));
        };
        match method {
            "initialize" => {
                let requested = params.get("protocolVersion").and_then(Value::as_str);
                let version = protocol::negotiate(requested);
                *lock(&session.version) = version;
                let client = params.get("clientInfo");
                let field = |key: &str| {
                    client
                        .and_then(|c| c.get(key))
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string()
                };
                eprintln!(
                    "ocm mcp: {} {} asked for {}; speaking {version}",
                    crate::escape::escape(&field("name")),
                    crate::escape::escape(&field("version")),
                    crate::escape::escape(requested.unwrap_or("no version")),
                );
                let era = Era::Legacy(version);
                let result = json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": protocol::server_info(&era),
                    "instructions": INSTRUCTIONS,
                });
                let _ = out.send(protocol::result_line(&id, &as_map(result)));
            }
            "ping" => answer(Map::new()),
            "server/discover" => {
                if era != Era::Modern {
                    return error(
                        INVALID_PARAMS,
                        "Invalid params: server/discover needs _meta with \
                         io.modelcontextprotocol/protocolVersion and clientCapabilities",
                    );
                }
                answer(as_map(json!({
                    "supportedVersions": protocol::supported_versions(),
                    "capabilities": {"tools": {}},
                    "instructions": INSTRUCTIONS,
                    "ttlMs": LIST_TTL_MS,
                    "cacheScope": "private",
                })));
            }
            "tools/list" => {
                let tools: Vec<Value> = TOOLS
                    .iter()
                    .map(|t| t.definition(&self.ctx, &era))
                    .collect();
                let mut result = Map::new();
                result.insert("tools".into(), Value::Array(tools));
                if era == Era::Modern {
                    // The descriptions name the allowed folders: this
                    // user's, not to be shared.
                    result.insert("ttlMs".into(), json!(LIST_TTL_MS));
                    result.insert("cacheScope".into(), json!("private"));
                }
                answer(result);
            }
            "tools/call" => self.call(id, era, params, session.scope, out),
            _ => error(METHOD_NOT_FOUND, &format!("Method not found: {method}")),
        }
    }

    fn call(&self, id: Id, era: Era, params: Map<String, Value>, scope: u64, out: &Out) {
        let error = |code: i64, message: &str| {
            let _ = out.send(protocol::error_line(Some(&id), code, message, None));
        };
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return error(
                INVALID_PARAMS,
                "Invalid params: tools/call needs a tool name",
            );
        };
        let Some(tool) = tools::lookup(name) else {
            return error(INVALID_PARAMS, &format!("Unknown tool: {name}"));
        };
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(arguments)) => arguments.clone(),
            Some(_) => {
                return error(
                    INVALID_PARAMS,
                    "Invalid params: arguments must be an object",
                );
            }
        };
        let progress_token = params
            .get("_meta")
            .and_then(|meta| meta.get("progressToken"))
            .filter(|token| token.is_string() || token.is_number())
            .cloned();
        let key = (scope, id.key());
        let call = Arc::new(Call {
            id,
            out: out.clone(),
            era,
            progress_token,
            turn: name == "opencode_prompt",
            state: Mutex::new(CallState::default()),
        });
        lock(&self.in_flight).insert(key.clone(), Arc::clone(&call));
        let ctx = Arc::clone(&self.ctx);
        let in_flight = Arc::clone(&self.in_flight);
        let job_call = Arc::clone(&call);
        let job: Job = Box::new(move || {
            let call = job_call;
            // Cancelled while it queued: it never runs.
            if call.cancelled() {
                return;
            }
            let reporter = Arc::clone(&call);
            let watcher = Arc::clone(&call);
            let outcome = tool.run(
                &ctx,
                &arguments,
                move |step| reporter.progress(step),
                move || watcher.cancelled(),
            );
            if call.cancelled() {
                // Nobody wants the server a cancelled start made.
                if let Ok(value) = &outcome {
                    tool.undo(&ctx, &arguments, value);
                }
                return;
            }
            let result = protocol::finish_result(tools::call_result(outcome, &call.era), &call.era);
            call.respond(protocol::result_line(&call.id, &result));
            let mut in_flight = lock(&in_flight);
            if in_flight
                .get(&key)
                .is_some_and(|current| Arc::ptr_eq(current, &call))
            {
                in_flight.remove(&key);
            }
        });
        if !lock(&self.pool).submit(job) {
            lock(&self.in_flight).remove(&(scope, call.id.key()));
            call.respond(protocol::error_line(
                Some(&call.id),
                INTERNAL_ERROR,
                "Server busy: too many tool calls at once; retry when one has finished",
                None,
            ));
        }
    }

    #[cfg(test)]
    fn in_flight_count(&self) -> usize {
        lock(&self.in_flight).len()
    }

    /// Ends: calls already taken may finish and answer until `deadline`;
    /// then the prompts still running are cancelled (their turns aborted
    /// on the server, as a client's cancellation does) and given
    /// `cancelled_within` to end, and every call left is closed (nothing
    /// more is sent for it; a start or a stop runs on until the process
    /// exits). Returns how many prompts were cancelled, and how many calls
    /// still ran at the end.
    pub fn shut_down(&self, deadline: Instant, cancelled_within: Duration) -> (usize, usize) {
        let mut pool = lock(&self.pool);
        let mut running = pool.wait_ended(deadline);
        let calls: Vec<Arc<Call>> = lock(&self.in_flight).drain().map(|(_, c)| c).collect();
        let turns: Vec<&Arc<Call>> = calls.iter().filter(|c| c.turn).collect();
        let cancelled = if running > 0 { turns.len() } else { 0 };
        if cancelled > 0 {
            for call in &turns {
                call.cancel();
            }
            running = pool.wait_ended(Instant::now() + cancelled_within);
        }
        for call in &calls {
            call.close();
        }
        pool.shut_down(Instant::now());
        (cancelled, running)
    }
}

fn as_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Server {
        let cli = crate::cli::parse(["ls"]).unwrap();
        Server::new(
            Context {
                cli,
                allow: Vec::new(),
                turns: Default::default(),
                hide_env: Vec::new(),
            },
            2,
        )
    }

    fn exchange(server: &Server, session: &Session, line: &str) -> Vec<Value> {
        let (out, rx) = mpsc::channel();
        server.handle(line, session, &out);
        drop(out);
        rx.iter()
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect()
    }

    #[test]
    fn initialize_then_list_in_the_negotiated_version() {
        let server = server();
        let session = Session::new(protocol::LATEST_LEGACY);
        let r = exchange(
            &server,
            &session,
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        );
        assert_eq!(r[0]["result"]["protocolVersion"], "2024-11-05");
        let r = exchange(
            &server,
            &session,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        );
        let tools = r[0]["result"]["tools"].as_array().unwrap();
        assert_eq!(tools.len(), TOOLS.len());
        assert!(tools[0].get("outputSchema").is_none());
        assert!(r[0]["result"].get("resultType").is_none());
    }

    #[test]
    fn modern_requests_get_result_type_and_cache_hints() {
        let server = server();
        let session = Session::new(protocol::LATEST_LEGACY);
        let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
        let r = exchange(
            &server,
            &session,
            &format!(
                r#"{{"jsonrpc":"2.0","id":"d","method":"server/discover","params":{{{meta}}}}}"#
            ),
        );
        assert_eq!(r[0]["result"]["resultType"], "complete");
        assert_eq!(r[0]["result"]["supportedVersions"][0], "2026-07-28");
        assert_eq!(
            r[0]["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            "ocm"
        );
        let r = exchange(
            &server,
            &session,
            &format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{{{meta}}}}}"#),
        );
        assert_eq!(r[0]["result"]["ttlMs"], LIST_TTL_MS);
        assert_eq!(r[0]["result"]["cacheScope"], "private");
        assert!(r[0]["result"]["tools"][0]["outputSchema"].is_object());
        // Without _meta, discover is malformed.
        let r = exchange(
            &server,
            &session,
            r#"{"jsonrpc":"2.0","id":4,"method":"server/discover"}"#,
        );
        assert_eq!(r[0]["error"]["code"], INVALID_PARAMS);
    }

    #[test]
    fn unknown_methods_and_tools_are_errors_and_notifications_are_not_answered() {
        let server = server();
        let session = Session::new(protocol::LATEST_LEGACY);
        let r = exchange(
            &server,
            &session,
            r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#,
        );
        assert_eq!(r[0]["error"]["code"], METHOD_NOT_FOUND);
        let r = exchange(
            &server,
            &session,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}"#,
        );
        assert_eq!(r[0]["error"]["code"], INVALID_PARAMS);
        let r = exchange(&server, &session, r#"{"jsonrpc":"2.0","method":"nope"}"#);
        assert!(r.is_empty());
        assert_eq!(server.in_flight_count(), 0);
    }

    #[test]
    fn a_cancellation_takes_its_sessions_call_or_the_only_one_with_that_id() {
        let call = || {
            Arc::new(Call {
                id: Id::for_test("2"),
                out: mpsc::channel().0,
                era: Era::Modern,
                progress_token: None,
                turn: false,
                state: Mutex::new(CallState::default()),
            })
        };
        let (a, b) = (call(), call());
        let mut in_flight = InFlight::new();
        in_flight.insert((1, "2".into()), Arc::clone(&a));
        in_flight.insert((2, "2".into()), Arc::clone(&b));
        // From a third request: two calls have that id, neither is taken.
        assert!(cancelled_call(&mut in_flight, 3, "2").is_none());
        let taken = cancelled_call(&mut in_flight, 1, "2").unwrap();
        assert!(Arc::ptr_eq(&taken, &a));
        // Now the only one with that id.
        let taken = cancelled_call(&mut in_flight, 3, "2").unwrap();
        assert!(Arc::ptr_eq(&taken, &b));
        assert!(in_flight.is_empty());
    }

    #[test]
    fn a_cancelled_call_is_not_answered_and_progress_stops() {
        let call = Call {
            id: Id::for_test("5"),
            out: mpsc::channel().0,
            era: Era::Modern,
            progress_token: Some(json!("t")),
            turn: true,
            state: Mutex::new(CallState::default()),
        };
        let (out, rx) = mpsc::channel();
        let call = Call { out, ..call };
        call.progress("one".into());
        call.progress("two".into());
        call.cancel();
        call.progress("three".into());
        call.respond("late".into());
        let lines: Vec<String> = rx.try_iter().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains(r#""progress":2"#));
    }
}
