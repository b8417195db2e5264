//! The turn engine of one server: exactly-once prompts, one shared event
//! stream, one in-flight turn per session, and the [`Turn`] handle.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use manager::Manager;
use opencode_api::{
    Client, EventKind, MessageError, MessageId, MessageWithParts, PermissionReply, PromptRequest,
    SessionId, SessionStatus, StreamConfig, new_message_id, new_message_id_after,
};

use crate::Error;
use crate::deliver::{Delivery, RetryPolicy, Sending, ServerSource, deliver};
use crate::demux::{Demux, Routed};
use crate::error::FailReason;
use crate::registry::{Registry, SessionState, TurnLock};
use crate::tracker::{Check, Settled, Tracker, TurnDone, TurnEvent, reason_of, settle};
use crate::usage::Usage;
use crate::waiter::Waiter;

/// How many event latencies a turn keeps.
const MAX_LATENCIES: usize = 10_000;

/// How often a turn reads its session's messages while the event stream
/// is down.
const POLL_WHILE_DOWN: Duration = Duration::from_secs(1);

/// How long an abort may take in all (its request and the reads that see
/// the turn end): a server that hangs does not hold up a Ctrl-C longer.
const ABORT_WITHIN: Duration = Duration::from_secs(5);

/// How long a turn whose send was answered with its final reply waits for
/// the stream to tell that reply before it reads the messages instead.
const FINAL_TOLD_WITHIN: Duration = Duration::from_millis(500);

/// Settings of an [`Engine`].
#[derive(Debug, Clone)]
pub struct TurnOptions {
    /// A turn with no event for this long is reconciled, then failed (and
    /// its session marked crashed). Paused while a permission or question
    /// waits. Default 180 s.
    pub watchdog: Duration,
    /// Delivery retries.
    pub retry: RetryPolicy,
    /// How long to wait for the event stream to connect. Default 10 s.
    pub connect_within: Duration,
    /// The event stream's settings (reconnect backoff, stall window).
    pub stream: StreamConfig,
}

impl Default for TurnOptions {
    fn default() -> Self {
        TurnOptions {
            watchdog: Duration::from_secs(180),
            retry: RetryPolicy::default(),
            connect_within: Duration::from_secs(10),
            // Heartbeats come every 10 s. A TCP connect, and the wait for
            // the answer to the stream's request, are given up after 3 s: a
            // connection made while a restarted server binds its port can
            // hang (FACTS.md); meanwhile turns read their messages every
            // second.
            stream: StreamConfig::new()
                .initial_delay(Duration::from_millis(100))
                .max_delay(Duration::from_secs(1))
                .stall_timeout(Duration::from_secs(25))
                .connect_timeout(Duration::from_secs(3)),
        }
    }
}

#[derive(Debug)]
enum Server {
    Fixed(Client),
    Managed {
        manager: Arc<Manager>,
        project: PathBuf,
    },
}

#[derive(Debug, Default)]
struct Current {
    client: Option<Client>,
    demux: Option<Arc<Demux>>,
    /// The recorded server's stream, connecting since
    /// [`Engine::preconnect`]; taken by the first connection.
    early: Option<(Client, Arc<Demux>)>,
}

#[derive(Debug)]
struct Inner {
    server: Server,
    options: TurnOptions,
    registry: OnceLock<Registry>,
    current: Mutex<Current>,
    /// Sessions with a turn in flight, and its prompt.
    active: Mutex<HashMap<SessionId, MessageId>>,
}

/// How long a recorded server's event stream may take to say
/// `server.connected` before the server is ensured instead (a hung server
/// is then found and repaired by `ensure`). Through an event relay
/// the proof is weaker: a frame of the server at most 12 s old (a server
/// that hung since is found by the supervisor, or by the prompt's send).
const RECORDED_CONNECT: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// The server's client and demultiplexer; `fresh`: ensure the server
    /// again (it may have restarted, on another port).
    fn connection(&self, fresh: bool) -> Result<(Client, Arc<Demux>), Error> {
        let mut current = lock(&self.current);
        let early = current.early.take();
        if current.client.is_none()
            && !fresh
            && let Server::Managed { manager, project } = &self.server
            && let Some((client, demux)) = early
                .or_else(|| self.recorded_stream(manager, project))
                .filter(|(_, demux)| demux.wait_connected(RECORDED_CONNECT).is_ok())
        {
            current.client = Some(client.clone());
            current.demux = Some(Arc::clone(&demux));
            return Ok((client, demux));
        }
        let client = match (&current.client, fresh, &self.server) {
            (Some(client), false, _) => client.clone(),
            (_, _, Server::Fixed(client)) => client.clone(),
            (_, _, Server::Managed { manager, project }) => manager.ensure(project)?.client()?,
        };
        let demux = match &current.demux {
            Some(d) if d.url() == client.base_url() => Arc::clone(d),
            _ => {
                let d = Arc::new(Demux::start(&client, &self.options.stream)?);
                d.wait_connected(self.options.connect_within)?;
                current.demux = Some(Arc::clone(&d));
                d
            }
        };
        current.client = Some(client.clone());
        Ok((client, demux))
    }

    /// The first connection of a managed engine to a server that runs as
    /// recorded: its event stream, whose `server.connected` (waited for by
    /// the caller, at most [`RECORDED_CONNECT`]) proves it serves, which
    /// spares `ensure`'s health request (and its lock). `None` (and
    /// `ensure` does the rest) when no such server is recorded.
    fn recorded_stream(
        &self,
        manager: &Manager,
        project: &std::path::Path,
    ) -> Option<(Client, Arc<Demux>)> {
        let client = manager.running_server(project).ok()??.client().ok()?;
        let relay = manager.relay_socket(project).ok();
        let demux = Demux::start_relayed(&client, &self.options.stream, relay.as_deref());
        Some((client, Arc::new(demux.ok()?)))
    }

    fn release(&self, session: &SessionId, message: &MessageId) {
        let mut active = lock(&self.active);
        if active.get(session) == Some(message) {
            active.remove(session);
        }
    }

    fn record(&self, session: &SessionId, usage: &Usage, state: Option<SessionState>) {
        if let Some(registry) = self.registry.get() {
            // The registry is bookkeeping: a failure to write it must not
            // turn a done turn into a failed one. The usage is written
            // without fsyncs, a state that changes with them.
            let _ = registry.end_turn(session, usage, state);
        }
    }
}

impl ServerSource for Inner {
    fn client(&self, fresh: bool) -> Result<Client, Error> {
        Ok(self.connection(fresh)?.0)
    }
}

/// Runs turns on one server: one `/global/event` connection shared by
/// every session, at most one turn in flight per session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine for the server `client` talks to (its directory is the
    /// one sessions are made in). Connects on first use.
    pub fn new(client: Client, options: TurnOptions) -> Engine {
        Engine::build(Server::Fixed(client), options, None)
    }

    /// An engine for `project`'s server, which the manager ensures (starts
    /// or restarts) when needed; usage and session states go to the
    /// project's registry.
    pub fn managed(
        manager: Arc<Manager>,
        project: impl Into<PathBuf>,
        options: TurnOptions,
    ) -> Result<Engine, Error> {
        let project = project.into();
        let registry = Registry::open(&manager, &project)?;
        Ok(Engine::build(
            Server::Managed { manager, project },
            options,
            Some(registry),
        ))
    }

    /// Records usage and session states in `registry` (unless the engine
    /// has one already).
    pub fn with_registry(self, registry: Registry) -> Engine {
        let _ = self.inner.registry.set(registry);
        self
    }

    fn build(server: Server, options: TurnOptions, registry: Option<Registry>) -> Engine {
        let cell = OnceLock::new();
        if let Some(registry) = registry {
            let _ = cell.set(registry);
        }
        Engine {
            inner: Arc::new(Inner {
                server,
                options,
                registry: cell,
                current: Mutex::new(Current::default()),
                active: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Starts connecting to the event stream of a managed engine's
    /// recorded server, without waiting: the first call that needs the
    /// server then finds it connecting (or connected), and what the caller
    /// does meanwhile (its registry, its locks) costs no time of its own.
    /// Nothing when the engine is connected, or no server is recorded
    /// running (the first call ensures one). Blocks for reading the record.
    pub fn preconnect(&self) {
        let mut current = lock(&self.inner.current);
        if current.client.is_none()
            && current.early.is_none()
            && let Server::Managed { manager, project } = &self.inner.server
        {
            current.early = self.inner.recorded_stream(manager, project);
        }
    }

    /// Whether the engine's events came from an event relay (see
    /// [`manager::connect_relay`]) since it connected: `false` before it
    /// connected, and when it follows the server's own stream.
    pub fn relayed(&self) -> bool {
        lock(&self.inner.current)
            .demux
            .as_ref()
            .is_some_and(|demux| demux.relayed())
    }

    /// The server's client (ensuring the server for a managed engine) and
    /// connects the event stream. Blocks at most the start of a server
    /// plus `connect_within`.
    pub fn client(&self) -> Result<Client, Error> {
        Ok(self.inner.connection(false)?.0)
    }

    /// Calls `call` with the server's client; when the server does not
    /// answer, ensures it again (a managed engine restarts it) and calls
    /// once more.
    pub fn with_client<T>(
        &self,
        call: impl Fn(&Client) -> Result<T, opencode_api::Error>,
    ) -> Result<T, Error> {
        match call(&self.inner.connection(false)?.0) {
            Err(e) if e.is_unreachable() => Ok(call(&self.inner.connection(true)?.0)?),
            other => Ok(other?),
        }
    }

    /// The registry, when the engine has one.
    pub fn registry(&self) -> Option<&Registry> {
        self.inner.registry.get()
    }

    /// Sends `request` to `session` exactly once and returns the running
    /// turn. The request's message ID is used when it has one (a retry:
    /// it is looked up first, and an answered prompt gives its stored
    /// reply), else one is made from the clock, after the session's
    /// newest message when the event stream told it (nothing is read for
    /// it: OpenCode 1.18 runs a prompt whose ID sorts before its
    /// session's messages all the same, measured).
    /// Refused with [`Error::Busy`] while the session has a turn in flight.
    /// Blocks for the delivery (see [`RetryPolicy`]).
    pub fn prompt(&self, session: &SessionId, request: PromptRequest) -> Result<Turn, Error> {
        let given = request.message_id.clone();
        let (client, demux) = self.inner.connection(false)?;
        let message_id = match (&given, demux.seen(session)) {
            (Some(id), _) => id.clone(),
            (None, Some(newest)) => new_message_id_after(&newest),
            (None, None) => new_message_id(),
        };
        {
            let mut active = lock(&self.inner.active);
            if let Some(running) = active.get(session) {
                return Err(Error::Busy {
                    session_id: session.clone(),
                    message_id: running.clone(),
                });
            }
            active.insert(session.clone(), message_id.clone());
        }
        // The same across the project's processes, when there is a
        // registry (its folder holds the locks).
        let turn_lock = match self.inner.registry.get().map(|r| r.try_turn_lock(session)) {
            None => None,
            Some(Ok(Some(held))) => Some(held),
            Some(taken) => {
                self.inner.release(session, &message_id);
                return Err(taken.err().unwrap_or(Error::BusyElsewhere {
                    session_id: session.clone(),
                }));
            }
        };
        let mut turn = Turn {
            inner: Arc::clone(&self.inner),
            session_id: session.clone(),
            message_id: message_id.clone(),
            rx: demux.register(session),
            demux,
            client,
            tracker: Tracker::new(session.clone(), message_id.clone()),
            queue: VecDeque::new(),
            last_activity: Instant::now(),
            steps: Usage::default(),
            finished: false,
            last_poll: Instant::now(),
            latencies: Vec::new(),
            backlog: VecDeque::new(),
            sent_at: None,
            waiter: None,
            sends: 0,
            turn_lock,
            busy: false,
            start_checked: false,
            session_error: None,
            error_ended: false,
            send_error: None,
            final_due: None,
            until: Instant::now(),
            reconcile_due: None,
            read_floor: READ_FLOOR,
        };
        // Part IDs too: a send made twice (one given up on that the server
        // still stores) then stores its parts once.
        let request = request.message_id(message_id.clone()).with_part_ids();
        let delivering = Instant::now();
        let delivery = deliver(
            &*self.inner,
            &self.inner.options.retry,
            session,
            &message_id,
            &request,
            given.is_some(),
            &mut turn,
        )?;
        // A retry may have met a restarted server on another port.
        turn.follow()?;
        // No send (the prompt's turn was running already, or answered):
        // what came during the delivery may be about it.
        turn.sent_at.get_or_insert(delivering);
        // The prompt is on the server: the turn hears of its death from now.
        turn.demux.watch(session);
        if let Delivery::Answered(done, messages) = delivery {
            turn.settled(&messages, TurnEvent::Done(done));
        }
        turn.last_activity = Instant::now();
        Ok(turn)
    }

    /// The newest message of `session` (a new prompt's ID sorts after
    /// it): known from the event stream when a read was made in the same
    /// connection (every message stored since was told), else read.
    pub(crate) fn newest_message(&self, session: &SessionId) -> Result<Option<MessageId>, Error> {
        let (_, demux) = self.inner.connection(false)?;
        if let Some(newest) = demux.newest(session) {
            return Ok(newest);
        }
        let epoch = demux.learning(session);
        // A server that died since the last call is ensured again.
        let read = self.with_client(|c| c.list_messages(session, Some(1)))?;
        let newest = read.last().map(|m| m.info.id().clone());
        if let Some(epoch) = epoch {
            demux.learned(session, newest.as_ref(), epoch);
        }
        Ok(newest)
    }

    /// Takes a prompt back from `session` before it is sent elsewhere (a
    /// retry by ID whose session was replaced): its reply when it was
    /// answered, else `None` once it and any partial reply are deleted
    /// (a turn still running is aborted first) or when it is not there.
    pub fn withdraw(
        &self,
        session: &SessionId,
        message_id: &MessageId,
    ) -> Result<Option<TurnDone>, Error> {
        let messages = match self.with_client(|c| c.list_messages(session, None)) {
            Err(Error::Api(e)) if e.is_not_found() => return Ok(None),
            other => other?,
        };
        let partial = match settle(session, message_id, &messages) {
            Settled::Done(done) => return Ok(Some(*done)),
            Settled::NotStored => return Ok(None),
            Settled::Unanswered { partial } => partial,
            Settled::Failed(_) => messages
                .iter()
                .filter_map(|m| m.info.as_assistant())
                .filter(|a| a.parent_id.as_ref() == Some(message_id))
                .map(|a| a.id.clone())
                .collect(),
        };
        let client = self.client()?;
        if client
            .session_status()?
            .get(session)
            .is_some_and(|s| s.is_active())
        {
            client.abort(session)?;
        }
        for id in partial.iter().rev().chain(std::iter::once(message_id)) {
            match client.delete_message(session, id) {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// Answers a pending permission ([`TurnEvent::Permission`]); the turn's
    /// tool then runs (or gets an error, for [`PermissionReply::Reject`]).
    pub fn reply_permission(&self, request_id: &str, reply: PermissionReply) -> Result<(), Error> {
        Ok(self.client()?.reply_permission(request_id, reply)?)
    }

    /// Answers a pending question ([`TurnEvent::Question`]): one answer per
    /// question of the request, each the labels chosen (or a text of one's
    /// own where the question allows it).
    pub fn reply_question(&self, request_id: &str, answers: &[Vec<String>]) -> Result<(), Error> {
        Ok(self.client()?.reply_question(request_id, answers)?)
    }

    /// Declines a pending question: the tool that asked gets an error and
    /// the turn goes on.
    pub fn reject_question(&self, request_id: &str) -> Result<(), Error> {
        Ok(self.client()?.reject_question(request_id)?)
    }
}

/// A turn in flight: its events in order, the last `Done` or `Failed`.
/// Dropping it before the end stops following it (the server's turn goes
/// on; call [`abort`](Turn::abort) to stop that).
#[derive(Debug)]
pub struct Turn {
    inner: Arc<Inner>,
    session_id: SessionId,
    message_id: MessageId,
    client: Client,
    demux: Arc<Demux>,
    rx: Receiver<Routed>,
    tracker: Tracker,
    queue: VecDeque<TurnEvent>,
    last_activity: Instant,
    steps: Usage,
    finished: bool,
    /// When the messages were last read because the stream was down.
    last_poll: Instant,
    /// Marks the turn in flight to the project's other processes.
    turn_lock: Option<TurnLock>,
    /// Per routed event: from the demultiplexer getting it to this turn.
    latencies: Vec<Duration>,
    /// Items taken off the channel while the delivery waited, in order.
    backlog: VecDeque<Routed>,
    /// When the prompt was first sent: a terminal event of the session
    /// routed before is the tail of an earlier turn (its `session.idle`
    /// comes after its last message), not about this prompt.
    sent_at: Option<Instant>,
    /// The blocking send of the prompt, waiting for the server's answer.
    waiter: Option<Waiter>,
    /// Sends made (the number of the newest).
    sends: u64,
    /// The session said `busy` after the send: what it tells from then
    /// on is about this prompt (an earlier turn's tail comes before).
    busy: bool,
    /// Whether the read of [`Turn::check_start`] was made.
    start_checked: bool,
    /// The session's last `session.error` after the send, and whether it
    /// came once busy: why the server failed the prompt when no reply
    /// carries the error.
    session_error: Option<(MessageError, bool)>,
    /// An idle came after an error of this turn: the server stopped with
    /// it (OpenCode also tells errors it recovers from, staying busy).
    error_ended: bool,
    /// The send was answered with an error status: the server failed the
    /// prompt (the stream's `session.error` says why better, and is
    /// waited for up to [`POLL_WHILE_DOWN`]).
    send_error: Option<String>,
    /// The send was answered with the final reply before the stream told
    /// it ([`Check::AwaitFinal`]): the messages are read at this time
    /// unless the stream told it first.
    final_due: Option<Instant>,
    /// The deadline of the [`Turn::next`] call running: its reads of the
    /// messages are bounded by it.
    until: Instant,
    /// A read of the messages the deadline cut short (with whether the
    /// watchdog asked for it): made again at the next call.
    reconcile_due: Option<bool>,
    /// The least time a read of the messages is given, past the deadline
    /// when need be: [`READ_FLOOR`], doubled for each read cut short, up
    /// to the client's own bound (so a server that is only slow is read
    /// in the end).
    read_floor: Duration,
}

/// The least time a first read of the messages is given.
const READ_FLOOR: Duration = Duration::from_secs(1);

impl Turn {
    /// The session.
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// For each frame routed to this turn after its prompt was sent that
    /// gave it events to hand out (the first 10 000): the time from the
    /// demultiplexer receiving it off the stream to this turn taking it.
    /// A frame that came while [`Engine::prompt`] still waited for the
    /// delivery counts from its arrival.
    pub fn event_latencies(&self) -> &[Duration] {
        &self.latencies
    }

    /// The permission and question requests handed out (this turn's and
    /// its sub-agents') that still wait for an answer, as far as the turn
    /// has been read: closed by their reply, the end of the tool call that
    /// asked, or the end of its step or session.
    pub fn open_asks(&self) -> Vec<String> {
        self.tracker.open_asks().map(str::to_string).collect()
    }

    /// The prompt's message ID (give it back to retry without a duplicate).
    pub fn message_id(&self) -> &MessageId {
        &self.message_id
    }

    /// The next event, or `None` at `deadline` or after the terminal
    /// event. Blocks until `deadline` at most, but for a read of the
    /// session's messages (after a gap in the stream, or for the
    /// watchdog), which is given at least 1 s: a read the deadline cut
    /// short is made again at the next call, given twice as long (up to
    /// the client's own bound), so a server that is only slow is read in
    /// the end. The watchdog may end the turn meanwhile.
    pub fn next(&mut self, deadline: Instant) -> Result<Option<TurnEvent>, Error> {
        self.until = deadline;
        loop {
            if let Some(event) = self.queue.pop_front() {
                if event.is_terminal() {
                    self.finish(&event);
                }
                if let TurnEvent::Usage(u) = &event {
                    self.steps.add(u);
                }
                return Ok(Some(event));
            }
            if self.finished {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if let Some(watchdog) = self.reconcile_due.take() {
                self.reconcile(watchdog);
                continue;
            }
            // Also while other events keep coming.
            if self.final_due.is_some_and(|f| now >= f) {
                self.final_due = None;
                self.reconcile(false);
                continue;
            }
            let watchdog_at =
                (!self.tracker.waiting()).then(|| self.last_activity + self.inner.options.watchdog);
            // While the stream is down, events are lost: read the messages
            // now and then instead.
            let poll_at = (!self.demux.is_connected() || self.send_error.is_some())
                .then(|| self.last_poll + POLL_WHILE_DOWN);
            let wake = [watchdog_at, poll_at, self.final_due]
                .into_iter()
                .flatten()
                .fold(deadline, Instant::min);
            let routed = match self.backlog.pop_front() {
                Some(item) => Ok(item),
                None => self.rx.recv_timeout(wake.saturating_duration_since(now)),
            };
            match routed {
                Ok(Routed::Event(event, at)) => {
                    self.last_activity = Instant::now();
                    // An earlier turn's tail (routed before the send) is
                    // not this turn's.
                    let ours = self.sent_at.is_some_and(|sent| at >= sent);
                    // The turn's own session, not a sub-agent's.
                    if ours && event.session_id() == Some(&self.session_id) {
                        self.note_state(&event.kind);
                        self.check_start(&event.kind);
                    }
                    let mut out = Vec::new();
                    let check = self.tracker.on_event(&event, &mut out);
                    // Only frames the subscriber gets something of.
                    if ours && !out.is_empty() && self.latencies.len() < MAX_LATENCIES {
                        self.latencies
                            .push(self.last_activity.saturating_duration_since(at));
                    }
                    self.queue.extend(out);
                    // An earlier turn's tail: nothing to read.
                    if check != Check::Reconcile || ours {
                        self.act_on(check);
                    }
                }
                Ok(Routed::Answered(send)) => {
                    let answer = self.waiter.as_ref().filter(|w| w.send == send);
                    // A send that failed on the way: the stream, the
                    // server's health and the watchdog tell how the turn
                    // goes. One the server answered with an error status:
                    // it failed the prompt, which the stream tells soon.
                    match answer.and_then(Waiter::take) {
                        Some(Ok(reply)) => {
                            let mut out = Vec::new();
                            let check = self.tracker.on_answer(&reply, &mut out);
                            self.queue.extend(out);
                            self.act_on(check);
                        }
                        Some(Err(e @ opencode_api::Error::Http { .. })) => {
                            self.send_error = Some(e.to_string());
                            self.last_poll = Instant::now();
                        }
                        _ => {}
                    }
                }
                // Polled from the next round on (`poll_at`).
                Ok(Routed::Down) => {}
                Ok(Routed::Reconnected) => {
                    self.last_activity = Instant::now();
                    self.tracker.gap = true;
                    self.reconcile(false);
                }
                Ok(Routed::ServerLost(why)) => self.fail(FailReason::ServerCrashed(why)),
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(FailReason::ServerCrashed("the event stream ended".into()));
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    if watchdog_at.is_some_and(|w| now >= w) {
                        self.reconcile(true);
                    } else if poll_at.is_some_and(|p| now >= p) {
                        self.last_poll = now;
                        self.tracker.gap = true;
                        self.reconcile(false);
                    }
                }
            }
        }
    }

    /// What a [`Check`] of the tracker asks for: the turn's end from its
    /// events, or a read of the session's messages.
    fn act_on(&mut self, check: Check) {
        match check {
            Check::Final(id) => match self.tracker.done_from_events(&id) {
                Some(done) => self.queue.push_back(TurnEvent::Done(Box::new(done))),
                None => self.reconcile(false),
            },
            Check::Reconcile => self.reconcile(false),
            Check::AwaitFinal => {
                self.final_due
                    .get_or_insert(Instant::now() + FINAL_TOLD_WITHIN);
            }
            Check::None => {}
        }
    }

    /// Follows the server the engine uses now (a retry may have met a
    /// restarted server on another port): its stream, its client.
    fn follow(&mut self) -> Result<(), Error> {
        let (client, demux) = self.inner.connection(false)?;
        if !Arc::ptr_eq(&demux, &self.demux) {
            self.demux.unregister(&self.session_id);
            self.rx = demux.register(&self.session_id);
            self.demux = demux;
        }
        self.client = client;
        Ok(())
    }

    /// Follows the turn to its end: the reply, or [`Error::TurnFailed`]
    /// (also when `deadline` passes first; the turn is then aborted, and
    /// its reply returned when it completed first).
    pub fn wait(mut self, deadline: Instant) -> Result<TurnDone, Error> {
        loop {
            match self.next(deadline)? {
                Some(TurnEvent::Done(done)) => return Ok(*done),
                Some(TurnEvent::Failed { message_id, reason }) => {
                    return Err(Error::TurnFailed {
                        session_id: self.session_id.clone(),
                        message_id,
                        reason,
                    });
                }
                Some(_) => {}
                None => {
                    // The abort queues the turn's end: `Done` when it
                    // completed first.
                    let _ = self.abort();
                    while let Some(event) = self.next(Instant::now())? {
                        match event {
                            TurnEvent::Done(done) => return Ok(*done),
                            TurnEvent::Failed { .. } => break,
                            _ => {}
                        }
                    }
                    return Err(Error::TurnFailed {
                        session_id: self.session_id.clone(),
                        message_id: self.message_id.clone(),
                        reason: FailReason::Deadline,
                    });
                }
            }
        }
    }

    /// Aborts the turn on the server (`POST .../abort`); the stray terminal
    /// events this causes are swallowed so they never end the session's
    /// next turn. The turn then ends `Failed(Aborted)`, or `Done` when it
    /// completed first: [`Turn::next`] hands that out (and any reply text
    /// not handed out yet), and records the turn. Does nothing when the
    /// turn has ended. Blocks for the abort call and up to 2 s of reading
    /// the session's messages, at most 5 s in all (a server that does not
    /// answer in time: its error, and the turn runs on).
    pub fn abort(&mut self) -> Result<(), Error> {
        // Ended already (its terminal event taken, or queued behind events
        // the caller has yet to take): nothing to abort.
        if self.finished || self.queue.iter().any(TurnEvent::is_terminal) {
            return Ok(());
        }
        self.demux.guard_abort(&self.session_id);
        let given_up = Instant::now() + ABORT_WITHIN;
        let within = |client: &Client| {
            let left = given_up.saturating_duration_since(Instant::now());
            client.with_timeout(left.max(Duration::from_millis(100)))
        };
        within(&self.client).abort(&self.session_id)?;
        let deadline = (Instant::now() + Duration::from_secs(2)).min(given_up);
        while Instant::now() < deadline {
            let messages = within(&self.client).list_messages(&self.session_id, None)?;
            match settle(&self.session_id, &self.message_id, &messages) {
                Settled::Done(done) => {
                    self.settled(&messages, TurnEvent::Done(done));
                    return Ok(());
                }
                Settled::Failed(_) => break,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        self.fail(FailReason::Aborted);
        Ok(())
    }

    /// Reads the session's messages: the turn may have ended unseen. After
    /// the watchdog fired, a turn that has not ended is failed, aborted on
    /// the server, and its session marked crashed.
    fn reconcile(&mut self, watchdog: bool) {
        // Bounded by the caller's deadline: a read it cuts short is made
        // again at the next call, with more time.
        let (client, cut_short) = self.bounded_client();
        // The turn's messages are the session's newest (one turn per
        // session): read those first, the whole session only when the
        // prompt is not among them.
        let newest = self.tracker.assistants_seen() + 4;
        let read = |limit: Option<usize>| client.list_messages(&self.session_id, limit);
        let listed = match read(Some(newest)) {
            Ok(messages) if !messages.iter().any(|m| m.info.id() == &self.message_id) => read(None),
            other => other,
        };
        // A failed read settles nothing; a session not found has lost
        // the prompt too.
        let (messages, read_ok) = match listed {
            Ok(messages) => (messages, true),
            Err(opencode_api::Error::Timeout { .. }) if cut_short => {
                self.reconcile_due = Some(watchdog);
                self.read_floor = (self.read_floor * 2).min(self.client.request_timeout());
                return;
            }
            Err(e) => (Vec::new(), e.is_not_found()),
        };
        match settle(&self.session_id, &self.message_id, &messages) {
            Settled::Done(done) => self.settled(&messages, TurnEvent::Done(done)),
            Settled::Failed(reason) => self.settled(&messages, self.failed(reason)),
            // Delivered (a turn exists only then), and gone since: deleted
            // by another client, or with its session.
            Settled::NotStored if read_ok => self.fail(FailReason::MessageGone),
            // The server failed the prompt before any reply could say so:
            // it stopped after an error of this turn, or answered the send
            // with an error status (the error told since says why).
            Settled::Unanswered { .. } if self.error_ended || self.send_error.is_some() => {
                // The stream's error says why only when it came once the
                // session was busy with this prompt (an earlier turn's
                // comes before).
                let reason = match (self.session_error.take(), self.send_error.take()) {
                    (Some((error, true)), _) => reason_of(&error),
                    (_, why) => FailReason::Rejected(why.unwrap_or_default()),
                };
                self.settled(&messages, self.failed(reason));
            }
            _ if watchdog => {
                self.demux.guard_abort(&self.session_id);
                let _ = client.abort(&self.session_id);
                self.fail(FailReason::Watchdog(self.inner.options.watchdog));
            }
            _ => {}
        }
    }

    /// A stream subscribed after the prompt was stored (OpenCode 1.18
    /// subscribes it lazily, see `demux.rs`; a third of `ocm prompt`'s
    /// turns, measured) did not tell the turn from its start, and its end
    /// would be read (about 10 ms while the server works after a turn).
    /// When the stream's first word of the turn is the session going busy,
    /// before any reply was heard of, one read now (the stream is live)
    /// tells what began before: when the replies it shows have no part and
    /// did not complete, everything of them from here on is told (their
    /// parts, their completion), and so is every later reply.
    fn check_start(&mut self, kind: &EventKind) {
        let busy = matches!(kind, EventKind::SessionStatus(s) if s.status == SessionStatus::Busy);
        if !busy
            || self.start_checked
            || self.tracker.started
            || self.tracker.gap
            || self.tracker.assistants_seen() > 0
        {
            return;
        }
        self.start_checked = true;
        let (client, _) = self.bounded_client();
        let Ok(newest) = client.list_messages(&self.session_id, Some(4)) else {
            return;
        };
        let stored = newest.iter().any(|m| m.info.id() == &self.message_id);
        let replies: Vec<_> = newest
            .iter()
            .filter_map(|m| Some((m.info.as_assistant()?, &m.parts)))
            .filter(|(a, _)| a.parent_id.as_ref() == Some(&self.message_id))
            .collect();
        if stored
            && replies
                .iter()
                .all(|(a, parts)| parts.is_empty() && a.time.completed.is_none())
        {
            for (reply, _) in replies {
                self.tracker.begun(reply);
            }
            self.tracker.started = true;
        }
    }

    /// The turn's client bounded by the running [`Turn::next`]'s deadline
    /// (given at least the read floor), and whether that cut its own bound
    /// short.
    fn bounded_client(&self) -> (Client, bool) {
        let left = self.until.saturating_duration_since(Instant::now());
        let bound = left.max(self.read_floor);
        if bound < self.client.request_timeout() {
            (self.client.with_timeout(bound), true)
        } else {
            (self.client.clone(), false)
        }
    }

    /// Follows the state the turn's own session tells after the send:
    /// busy, an error, and idle after an error of this turn.
    fn note_state(&mut self, kind: &EventKind) {
        match kind {
            EventKind::SessionStatus(s) if s.status == SessionStatus::Busy => self.busy = true,
            EventKind::SessionError(failed) => {
                if let Some(error) = &failed.error {
                    self.session_error = Some((error.clone(), self.busy));
                    self.error_ended = false;
                }
            }
            EventKind::SessionIdle(_) => self.error_ended = self.error_of_this_turn(),
            EventKind::SessionStatus(s) if s.status == SessionStatus::Idle => {
                self.error_ended = self.error_of_this_turn();
            }
            _ => {}
        }
    }

    fn error_of_this_turn(&self) -> bool {
        self.session_error.as_ref().is_some_and(|(_, busy)| *busy)
    }

    /// Ends the turn with `terminal`, settled from the session's
    /// `messages`: first what they hold that the events did not hand out
    /// (a cut stream, a retry that found the prompt answered), so the
    /// text events always add up to the reply.
    fn settled(&mut self, messages: &[MessageWithParts], terminal: TurnEvent) {
        let mut out = Vec::new();
        self.tracker.catch_up(messages, &mut out);
        self.queue.extend(out);
        self.queue.push_back(terminal);
    }

    fn fail(&mut self, reason: FailReason) {
        let failed = self.failed(reason);
        self.queue.push_back(failed);
    }

    fn failed(&self, reason: FailReason) -> TurnEvent {
        TurnEvent::Failed {
            message_id: self.message_id.clone(),
            reason,
        }
    }

    /// Stops following, frees the session for its next turn, and records
    /// the turn in the registry.
    fn finish(&mut self, terminal: &TurnEvent) {
        self.finished = true;
        self.waiter = None;
        self.demux.unregister(&self.session_id);
        self.inner.release(&self.session_id, &self.message_id);
        let (usage, state) = match terminal {
            TurnEvent::Done(done) => (done.usage, Some(SessionState::Active)),
            TurnEvent::Failed { reason, .. } => (
                self.steps,
                match reason {
                    FailReason::Watchdog(_) => Some(SessionState::Crashed),
                    FailReason::ServerCrashed(_) => Some(SessionState::Interrupted),
                    _ => None,
                },
            ),
            _ => (Usage::default(), None),
        };
        self.inner.record(&self.session_id, &usage, state);
        // After the record: another process's prompt to the session then
        // reads the state this turn left (crashed after the watchdog).
        if let Some(held) = self.turn_lock.take() {
            held.release();
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.finished {
            self.demux.unregister(&self.session_id);
            self.inner.release(&self.session_id, &self.message_id);
        }
    }
}

impl Sending for Turn {
    fn send(
        &mut self,
        client: &Client,
        session: &SessionId,
        request: &PromptRequest,
    ) -> Result<(), Error> {
        // An earlier send (not stored in time) is given up.
        self.waiter = None;
        self.follow()?;
        // What the stream told before this send is kept for `next`, and
        // is not this send stored.
        while let Ok(item) = self.rx.try_recv() {
            self.backlog.push_back(item);
        }
        self.sent_at.get_or_insert_with(Instant::now);
        // Subscribed before the send: every event of the turn is told.
        self.tracker.started |= self.demux.subscribed();
        self.sends += 1;
        let started = self.demux.sender(session).and_then(|wake| {
            Waiter::start(
                client.clone(),
                session.clone(),
                request.clone(),
                self.sends,
                wake,
            )
            .ok()
        });
        match started {
            Some(waiter) => self.waiter = Some(waiter),
            // No thread for it: sent without an answer to wait for; the
            // stream ends the turn.
            None => client.prompt_async(session, request)?,
        }
        Ok(())
    }

    fn stored(&mut self, until: Instant) -> Result<bool, Error> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let Ok(item) = self.rx.recv_timeout(left) else {
                return Ok(false);
            };
            let found = match &item {
                Routed::Event(e, _) => {
                    matches!(&e.kind, EventKind::MessageUpdated(u) if u.info.id() == &self.message_id)
                }
                // Answered: stored; failed: the send's error.
                Routed::Answered(send) => match self.waiter.as_ref().filter(|w| w.send == *send) {
                    Some(waiter) => match waiter.take_error() {
                        Some(e) => return Err(e.into()),
                        None => true,
                    },
                    None => false,
                },
                _ => false,
            };
            self.backlog.push_back(item);
            if found {
                return Ok(true);
            }
        }
    }
}
