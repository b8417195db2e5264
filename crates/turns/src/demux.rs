//! One `/global/event` connection per server, shared by every session of
//! every directory on it: a thread reads it and routes each event to the
//! active turn of its session.
//!
//! When the stream goes down every turn is told (it reads its session's
//! messages until the stream is back), and after a reconnect every turn is
//! told to reconcile (events of the gap are lost: OpenCode sends no event
//! IDs). When the stream breaks (or fails to
//! connect) and the server's health fails too, every turn whose prompt is on
//! the server and has not been told yet is told the server is gone: whether
//! the stream ever reached that server or not (a server restarted and
//! killed again before the stream reconnected). After an abort, the stray
//! terminal events it causes are swallowed.
//!
//! A connection's `server.connected` is no proof that the server tells it
//! its events: OpenCode 1.18.33 sends that frame first and subscribes the
//! stream when it is read on, which a busy server does late (measured: a
//! prompt stored 9 ms after the frame arrived was not told). A later frame
//! is the proof ([`Demux::subscribed`]); a turn sent before it learns from
//! its own events whether they tell it from its start (see the tracker).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::relay::RelayStream;
use opencode_api::{
    Client, DisconnectKind, Event, EventKind, MessageId, SessionId, SessionStatus, StreamConfig,
    StreamItem,
};

use crate::Error;

/// How long the thread sleeps at most while the stream is quiet: it is
/// woken at once by an item on the stream or by the stop, so this only
/// bounds the wait (a reader that ends without a last item).
const IDLE_BOUND: Duration = Duration::from_secs(1);
/// How long after an abort its stray terminal events are swallowed.
const ABORT_GUARD: Duration = Duration::from_secs(5);

/// What the demultiplexer sends a turn.
#[derive(Debug, Clone)]
pub(crate) enum Routed {
    /// An event of the turn's session, and when the demultiplexer got it.
    Event(Box<Event>, Instant),
    /// The stream went down: until it is back, events are lost (the turn
    /// reads its session's messages meanwhile).
    Down,
    /// The stream reconnected: events may have been lost.
    Reconnected,
    /// The server is gone (stream broken, health failing).
    ServerLost(String),
    /// The server answered the turn's send with this number (not from the
    /// stream: the turn's [`Waiter`](crate::waiter::Waiter) keeps it).
    Answered(u64),
}

/// Where one session's events go.
#[derive(Debug)]
struct Route {
    tx: Sender<Routed>,
    /// The turn's prompt is on the server and the turn has not been told
    /// the server is gone: a failing server must be reported to it.
    watched: bool,
}

/// What the stream told of a session's newest message since a read of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Newest {
    /// The highest message ID seen (read or told), `None`: no message.
    id: Option<MessageId>,
    /// A read finished in the same connection: `id` is the session's
    /// newest (until the stream goes down).
    known: bool,
}

#[derive(Debug, Default)]
struct Routes {
    turns: HashMap<SessionId, Route>,
    /// Sub-agent sessions (the task tool's) and the session that made
    /// each, learned from `session.created`/`session.updated`: a turn is
    /// routed its descendants' events too.
    parents: HashMap<SessionId, SessionId>,
    /// Sessions whose newest message is followed (see [`Demux::newest`]).
    newest: HashMap<SessionId, Newest>,
    /// Counts the times the stream went down: a read made in one
    /// connection says nothing of what the gap after it lost.
    epoch: u64,
    /// Sessions recently aborted: until when their terminal events are
    /// swallowed.
    guards: HashMap<SessionId, Instant>,
    connected: bool,
    /// A frame came after this connection's `server.connected`: the
    /// server's subscription of the stream to its events is live. OpenCode
    /// 1.18.33 sends `server.connected` first and subscribes after, when
    /// the stream is read on (measured: a prompt stored 9 ms after that
    /// frame arrived was not told), so only a later frame proves it.
    subscribed: bool,
    ever_connected: bool,
    /// Events routed to turns, for tests and metrics.
    routed: u64,
}

#[derive(Debug, Default)]
struct Shared {
    routes: Mutex<Routes>,
    changed: Condvar,
    stop: AtomicBool,
    /// Set when the stream queued an item or the demultiplexer stops.
    woken: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    /// Wakes the thread (an item is queued on the stream, or stop).
    fn wake(&self) {
        *self.woken.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Sleeps until woken, at most `bound`; takes the wake-up.
    fn sleep(&self, bound: Duration) {
        let mut woken = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        if !*woken {
            woken = self
                .wake
                .wait_timeout(woken, bound)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *woken = false;
    }
}

impl Routes {
    /// The stream went down: what it told of newest messages is no proof
    /// any more (messages of the gap are unseen).
    fn went_down(&mut self) {
        self.connected = false;
        self.subscribed = false;
        self.epoch += 1;
        self.newest.clear();
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Routes> {
    shared
        .routes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The demultiplexer of one server; dropping it stops and joins its thread.
#[derive(Debug)]
pub(crate) struct Demux {
    url: String,
    /// Started on an event relay.
    relayed: bool,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Demux {
    /// Opens the server's global stream and starts the thread. The
    /// stream's [`notify`](StreamConfig::notify) is the demultiplexer's
    /// own (it wakes the thread for each item).
    pub(crate) fn start(client: &Client, config: &StreamConfig) -> Result<Demux, Error> {
        Demux::start_relayed(client, config, None)
    }

    /// [`start`](Demux::start), through the event relay at
    /// `relay` when one listens there and follows this server (its stream
    /// is subscribed at once, see `relay.rs`); the server's own stream
    /// when not, and after the relay closed.
    pub(crate) fn start_relayed(
        client: &Client,
        config: &StreamConfig,
        relay: Option<&std::path::Path>,
    ) -> Result<Demux, Error> {
        let shared = Arc::new(Shared::default());
        let notified = Arc::clone(&shared);
        let config = config.clone().notify(move || notified.wake());
        let relayed = relay.and_then(|socket| {
            let notified = Arc::clone(&shared);
            RelayStream::connect(socket, client.base_url(), move || notified.wake())
        });
        let on_relay = relayed.is_some();
        let source = match relayed {
            Some(relay) => Source::Relay(relay),
            None => Source::Server(Box::new(client.global_event_stream_with(&config)?)),
        };
        let thread_shared = Arc::clone(&shared);
        let health = client.clone();
        let thread = std::thread::Builder::new()
            .name("turns-demux".into())
            .spawn(move || run(source, &config, &thread_shared, &health))
            .map_err(|e| opencode_api::Error::EventStream {
                url: client.base_url().to_string(),
                reason: format!("cannot start the demultiplexer thread: {e}"),
            })?;
        Ok(Demux {
            url: client.base_url().to_string(),
            relayed: on_relay,
            shared,
            thread: Some(thread),
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Whether it was started on an event relay.
    pub(crate) fn relayed(&self) -> bool {
        self.relayed
    }

    /// Blocks until the stream is connected, at most `timeout`.
    pub(crate) fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut routes = lock(&self.shared);
        while !routes.connected {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::NotConnected {
                    url: self.url.clone(),
                    waited: timeout,
                });
            }
            routes = self
                .shared
                .changed
                .wait_timeout(routes, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }

    /// Whether the stream is connected now (events flow).
    pub(crate) fn is_connected(&self) -> bool {
        lock(&self.shared).connected
    }

    /// Whether every event published from now on is told: the stream is
    /// connected and a frame after its `server.connected` proved the
    /// server's subscription live (see `Routes::subscribed`).
    pub(crate) fn subscribed(&self) -> bool {
        let routes = lock(&self.shared);
        routes.connected && routes.subscribed
    }

    /// Routes the events of `session` to the returned receiver until
    /// [`unregister`](Demux::unregister).
    pub(crate) fn register(&self, session: &SessionId) -> Receiver<Routed> {
        let (tx, rx) = channel();
        let route = Route { tx, watched: false };
        let mut routes = lock(&self.shared);
        routes.turns.insert(session.clone(), route);
        // Its messages are followed from now on (see `seen`).
        routes.newest.entry(session.clone()).or_default();
        rx
    }

    /// The highest message ID of `session` read or told in this
    /// connection of the stream, once a turn or a read of it began.
    pub(crate) fn seen(&self, session: &SessionId) -> Option<MessageId> {
        lock(&self.shared).newest.get(session)?.id.clone()
    }

    /// Where `session`'s turn is sent its items, while it is registered.
    pub(crate) fn sender(&self, session: &SessionId) -> Option<Sender<Routed>> {
        lock(&self.shared)
            .turns
            .get(session)
            .map(|route| route.tx.clone())
    }

    /// The prompt of `session`'s turn is on the server (delivered): from
    /// now on, the server failing is reported to the turn (once), even
    /// when the stream is down or never reached this server.
    pub(crate) fn watch(&self, session: &SessionId) {
        if let Some(route) = lock(&self.shared).turns.get_mut(session) {
            route.watched = true;
        }
    }

    /// The newest message of `session`, when it is known without a read:
    /// a read of it was made (see [`learning`](Demux::learning)) and the
    /// stream has stayed up since, telling every message stored after it.
    /// `Some(None)`: the session has no message.
    pub(crate) fn newest(&self, session: &SessionId) -> Option<Option<MessageId>> {
        let routes = lock(&self.shared);
        let newest = routes.newest.get(session)?;
        (routes.connected && newest.known).then(|| newest.id.clone())
    }

    /// Before a read of `session`'s newest message: from now on the stream
    /// tells of its messages. Gives the connection's epoch for
    /// [`learned`](Demux::learned); `None` while the stream is down or not
    /// proven [`subscribed`](Demux::subscribed) (a message stored before
    /// the subscription would never be told).
    pub(crate) fn learning(&self, session: &SessionId) -> Option<u64> {
        let mut routes = lock(&self.shared);
        if !(routes.connected && routes.subscribed) {
            return None;
        }
        routes.newest.entry(session.clone()).or_default();
        Some(routes.epoch)
    }

    /// The read begun at `epoch` found `newest`: known from now on, unless
    /// the stream went down since.
    pub(crate) fn learned(&self, session: &SessionId, newest: Option<&MessageId>, epoch: u64) {
        let mut routes = lock(&self.shared);
        if !routes.connected || routes.epoch != epoch {
            return;
        }
        if let Some(entry) = routes.newest.get_mut(session) {
            if newest > entry.id.as_ref() {
                entry.id = newest.cloned();
            }
            entry.known = true;
        }
    }

    pub(crate) fn unregister(&self, session: &SessionId) {
        lock(&self.shared).turns.remove(session);
    }

    /// Swallows the stray terminal events an abort of `session` causes.
    pub(crate) fn guard_abort(&self, session: &SessionId) {
        lock(&self.shared)
            .guards
            .insert(session.clone(), Instant::now() + ABORT_GUARD);
    }
}

impl Drop for Demux {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// True for the events an abort leaves behind: the aborted error and idle.
fn is_stray_terminal(kind: &EventKind) -> bool {
    match kind {
        EventKind::SessionIdle(_) => true,
        EventKind::SessionStatus(s) => s.status == SessionStatus::Idle,
        EventKind::SessionError(e) => e.error.as_ref().is_none_or(|e| e.is_aborted()),
        _ => false,
    }
}

/// Routes one event (received at `at`); pure enough to test without a
/// server.
fn route(routes: &mut Routes, event: Event, at: Instant) {
    let Some(session) = event.session_id().cloned() else {
        return;
    };
    if let EventKind::MessageUpdated(update) = &event.kind
        && let Some(newest) = routes.newest.get_mut(&session)
        && Some(update.info.id()) > newest.id.as_ref()
    {
        newest.id = Some(update.info.id().clone());
    }
    if let Some(until) = routes.guards.get(&session).copied() {
        let busy =
            matches!(&event.kind, EventKind::SessionStatus(s) if s.status == SessionStatus::Busy);
        if Instant::now() > until || busy {
            routes.guards.remove(&session);
        } else if is_stray_terminal(&event.kind) {
            return;
        }
    }
    learn_parent(routes, &event.kind);
    // The session's turn, else the turn of its nearest ancestor (a
    // sub-agent's requests are the turn's to answer).
    let mut target = session;
    for _ in 0..MAX_SUB_AGENT_DEPTH {
        if routes.turns.contains_key(&target) {
            break;
        }
        match routes.parents.get(&target) {
            Some(parent) => target = parent.clone(),
            None => return,
        }
    }
    if let Some(route) = routes.turns.get(&target) {
        if route.tx.send(Routed::Event(Box::new(event), at)).is_err() {
            routes.turns.remove(&target);
        } else {
            routes.routed += 1;
        }
    }
}

/// How many sessions up a sub-agent's event looks for a turn.
const MAX_SUB_AGENT_DEPTH: usize = 16;
/// Sub-agent sessions followed at most (the oldest are forgotten first
/// when there are more: all of them, which only costs routing the events
/// of a long-running sub-agent made before).
const MAX_SUB_AGENTS: usize = 10_000;

/// Follows which session made which (the task tool's sub-agents).
fn learn_parent(routes: &mut Routes, kind: &EventKind) {
    match kind {
        EventKind::SessionCreated(s) | EventKind::SessionUpdated(s) => {
            if let Some(parent) = &s.info.parent_id {
                if routes.parents.len() >= MAX_SUB_AGENTS {
                    routes.parents.clear();
                }
                routes.parents.insert(s.info.id.clone(), parent.clone());
            }
        }
        EventKind::SessionDeleted(s) => {
            routes.parents.remove(&s.info.id);
        }
        _ => {}
    }
}

fn broadcast(routes: &mut Routes, message: &Routed) {
    routes
        .turns
        .retain(|_, route| route.tx.send(message.clone()).is_ok());
}

/// Whether a turn waits to be told when the server fails.
fn any_watched(routes: &Routes) -> bool {
    routes.turns.values().any(|route| route.watched)
}

/// Tells every watched turn the server is gone, once.
fn report_lost(routes: &mut Routes, reason: &str) {
    let message = Routed::ServerLost(reason.to_string());
    routes.turns.retain(|_, route| {
        !route.watched || {
            route.watched = false;
            route.tx.send(message.clone()).is_ok()
        }
    });
}

/// The demultiplexer has no stream any more: every turn is told, once.
fn stream_ended(shared: &Shared) {
    let mut routes = lock(shared);
    routes.went_down();
    broadcast(
        &mut routes,
        &Routed::ServerLost("event stream ended".into()),
    );
    drop(routes);
    shared.changed.notify_all();
}

/// Where the frames come from.
enum Source {
    /// The server's own stream.
    Server(Box<opencode_api::GlobalEventStream>),
    /// An event relay, until it closes.
    Relay(RelayStream),
}

impl Source {
    fn next(&mut self) -> Result<Option<StreamItem<opencode_api::GlobalEvent>>, Error> {
        match self {
            Source::Server(stream) => Ok(stream.next(Instant::now())?),
            Source::Relay(relay) => Ok(relay.next()),
        }
    }
}

fn run(mut source: Source, config: &StreamConfig, shared: &Shared, client: &Client) {
    while !shared.stop.load(Ordering::SeqCst) {
        // What is queued, without waiting; then sleep until the stream's
        // notify or the stop wakes the thread (no fixed tick: a stop is
        // seen at once, so dropping the demultiplexer is quick).
        let item = match source.next() {
            Ok(Some(item)) => item,
            Ok(None) => {
                shared.sleep(IDLE_BOUND);
                continue;
            }
            Err(_) => {
                // The stream gave up or was stopped: tell the turns once.
                stream_ended(shared);
                return;
            }
        };
        match item {
            StreamItem::Connected => {
                let mut routes = lock(shared);
                let again = routes.ever_connected;
                if again {
                    routes.went_down();
                }
                routes.connected = true;
                // The relay's stream was subscribed before it said hello.
                routes.subscribed = matches!(source, Source::Relay(_));
                routes.ever_connected = true;
                if again {
                    broadcast(&mut routes, &Routed::Reconnected);
                }
                drop(routes);
                shared.changed.notify_all();
            }
            StreamItem::Event(global) => {
                let mut routes = lock(shared);
                routes.subscribed = routes.connected;
                route(&mut routes, global.payload, Instant::now());
            }
            StreamItem::Disconnected { kind, reason } => {
                let watched = {
                    let mut routes = lock(shared);
                    if routes.connected {
                        // Wake the turns: they poll while the stream is down.
                        broadcast(&mut routes, &Routed::Down);
                    }
                    routes.went_down();
                    any_watched(&routes)
                };
                let gone = matches!(
                    kind,
                    DisconnectKind::Connect
                        | DisconnectKind::Ended
                        | DisconnectKind::Broken
                        | DisconnectKind::Stalled
                );
                // A broken stream alone is no proof (opencode closes streams
                // mid-turn, #38458): the server is gone when health fails too.
                // Asked on every failure while a turn waits to be told, not
                // once per connection of the stream: a turn retried onto a
                // restarted server the stream never reached must hear of
                // that server's death too.
                if gone && watched && client.health().is_err() {
                    report_lost(&mut lock(shared), &reason);
                }
                // The relay closed: the server's own stream from now on.
                if let Source::Relay(_) = source {
                    match client.global_event_stream_with(config) {
                        Ok(stream) => source = Source::Server(Box::new(stream)),
                        Err(_) => {
                            stream_ended(shared);
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake server and a client of it.
    fn fake() -> (crate::fake_server::FakeServer, Client) {
        let server = crate::fake_server::FakeServer::start();
        let client = Client::builder(&server.url)
            .directory("/p")
            .build()
            .unwrap();
        (server, client)
    }

    /// Whether `demux` is proven subscribed within `bound`.
    fn subscribed_within(demux: &Demux, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if demux.subscribed() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn routes_each_event_of_the_captured_global_stream_to_its_session_only() {
        let sse = crate::tracker::tests::capture("global-event-stream.sse");
        let events: Vec<Event> = sse
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| opencode_api::GlobalEvent::parse(d).ok())
            .map(|g| g.payload)
            .collect();
        let sessions: std::collections::BTreeSet<SessionId> = events
            .iter()
            .filter_map(|e| e.session_id().cloned())
            .collect();
        assert!(sessions.len() >= 2, "{sessions:?}");
        let mut routes = Routes::default();
        let mut receivers = Vec::new();
        for s in &sessions {
            let (tx, rx) = channel();
            routes.turns.insert(s.clone(), Route { tx, watched: true });
            receivers.push((s.clone(), rx));
        }
        for e in events.iter().cloned() {
            route(&mut routes, e, Instant::now());
        }
        let mut total = 0;
        for (session, rx) in receivers {
            let got: Vec<_> = rx.try_iter().collect();
            assert!(!got.is_empty());
            for r in &got {
                let Routed::Event(e, _) = r else { panic!() };
                assert_eq!(e.session_id(), Some(&session));
            }
            total += got.len();
        }
        let expected = events.iter().filter(|e| e.session_id().is_some()).count();
        assert_eq!(total, expected);
        assert_eq!(routes.routed as usize, expected);
    }

    /// A sub-agent's session (made by the task tool, its `parentID` the
    /// turn's session or a descendant of it) is routed to the turn: its
    /// permission requests are the turn's to answer.
    #[test]
    fn a_sub_agent_sessions_events_go_to_the_turn_of_its_root() {
        let mut routes = Routes::default();
        let (tx, rx) = channel();
        routes
            .turns
            .insert(SessionId::from("ses_1"), Route { tx, watched: true });
        let parse = |t: &str| Event::parse(t).unwrap();
        let created = |id: &str, parent: &str| {
            parse(&format!(
                r#"{{"id":"e","type":"session.created","properties":{{"sessionID":"{id}","info":{{"id":"{id}","parentID":"{parent}","title":"sub","directory":"/p","time":{{"created":1,"updated":1}}}}}}}}"#
            ))
        };
        let asked = |id: &str| {
            parse(&format!(
                r#"{{"id":"e","type":"permission.asked","properties":{{"id":"per_{id}","sessionID":"{id}","permission":"bash","patterns":[],"metadata":{{}},"always":[]}}}}"#
            ))
        };
        route(&mut routes, created("ses_2", "ses_1"), Instant::now());
        route(&mut routes, created("ses_3", "ses_2"), Instant::now());
        route(&mut routes, created("ses_9", "ses_8"), Instant::now());
        let _ = rx.try_iter().count();
        route(&mut routes, asked("ses_2"), Instant::now());
        route(&mut routes, asked("ses_3"), Instant::now());
        route(&mut routes, asked("ses_9"), Instant::now());
        let got: Vec<String> = rx
            .try_iter()
            .map(|r| match r {
                Routed::Event(e, _) => e.session_id().unwrap().to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, ["ses_2", "ses_3"]);
    }

    #[test]
    fn an_abort_guard_swallows_stray_terminal_events_until_busy() {
        let mut routes = Routes::default();
        let (tx, rx) = channel();
        let s = SessionId::from("ses_1");
        routes.turns.insert(s.clone(), Route { tx, watched: true });
        routes
            .guards
            .insert(s.clone(), Instant::now() + ABORT_GUARD);
        let parse = |t: &str| Event::parse(t).unwrap();
        let idle = r#"{"id":"e","type":"session.idle","properties":{"sessionID":"ses_1"}}"#;
        let error = r#"{"id":"e","type":"session.error","properties":{"sessionID":"ses_1","error":{"name":"MessageAbortedError","data":{}}}}"#;
        let busy = r#"{"id":"e","type":"session.status","properties":{"sessionID":"ses_1","status":{"type":"busy"}}}"#;
        route(&mut routes, parse(error), Instant::now());
        route(&mut routes, parse(idle), Instant::now());
        route(&mut routes, parse(idle), Instant::now());
        assert_eq!(rx.try_iter().count(), 0);
        route(&mut routes, parse(busy), Instant::now());
        route(&mut routes, parse(idle), Instant::now());
        assert_eq!(rx.try_iter().count(), 2);
    }

    #[test]
    fn a_lost_server_is_reported_once_to_each_delivered_turn_only() {
        let mut routes = Routes::default();
        let (delivered, told) = channel();
        let (delivering, not_told) = channel();
        let route = |tx, watched| Route { tx, watched };
        routes
            .turns
            .insert(SessionId::from("ses_1"), route(delivered, true));
        routes
            .turns
            .insert(SessionId::from("ses_2"), route(delivering, false));
        assert!(any_watched(&routes));
        report_lost(&mut routes, "gone");
        report_lost(&mut routes, "gone again");
        let got: Vec<_> = told.try_iter().collect();
        assert!(
            matches!(got.as_slice(), [Routed::ServerLost(why)] if why == "gone"),
            "{got:?}"
        );
        assert_eq!(not_told.try_iter().count(), 0);
        assert!(!any_watched(&routes), "told once");
        assert_eq!(routes.turns.len(), 2);
    }

    #[test]
    fn a_quiet_demultiplexer_stops_at_once_when_dropped() {
        // The thread sleeps until the stream or the stop wakes it: a drop
        // does not wait for a tick (a 200 ms tick made five drops take
        // about half a second).
        let (_server, client) = fake();
        let config = StreamConfig::new();
        let mut dropping = Duration::ZERO;
        for _ in 0..5 {
            let demux = Demux::start(&client, &config).unwrap();
            demux.wait_connected(Duration::from_secs(10)).unwrap();
            // Quiet: the thread sleeps now.
            std::thread::sleep(Duration::from_millis(20));
            let began = Instant::now();
            drop(demux);
            dropping += began.elapsed();
        }
        assert!(
            dropping < Duration::from_millis(150),
            "five drops took {dropping:?}"
        );
    }

    #[test]
    fn only_a_frame_after_server_connected_proves_the_subscription() {
        let (server, client) = fake();
        let config = StreamConfig::new().initial_delay(Duration::from_millis(50));
        let demux = Demux::start(&client, &config).unwrap();
        demux.wait_connected(Duration::from_secs(10)).unwrap();
        assert!(!subscribed_within(&demux, Duration::from_millis(100)));
        server.event(r#"{"id":"h","type":"server.heartbeat","properties":{}}"#);
        assert!(subscribed_within(&demux, Duration::from_secs(5)));
        // A new connection proves nothing until a frame after its own
        // `server.connected`.
        server.cut();
        let deadline = Instant::now() + Duration::from_secs(5);
        while demux.subscribed() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!demux.subscribed());
        demux.wait_connected(Duration::from_secs(10)).unwrap();
        assert!(!subscribed_within(&demux, Duration::from_millis(100)));
    }

    /// A stand-in of an event relay at `socket`: it greets one
    /// client with `hello`, sends it each frame given on the returned
    /// sender, and closes when the sender is dropped.
    fn relay(socket: &std::path::Path, hello: String) -> (Sender<String>, JoinHandle<()>) {
        use std::io::Write;
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        let (frames, to_send) = channel::<String>();
        let thread = std::thread::spawn(move || {
            let (mut client, _) = listener.accept().unwrap();
            writeln!(client, "{hello}").unwrap();
            for frame in to_send {
                writeln!(client, "{frame}").unwrap();
            }
        });
        (frames, thread)
    }

    fn hello(url: &str, age_ms: u64) -> String {
        serde_json::json!({"relay": manager::RELAY_HELLO, "url": url, "ageMs": age_ms}).to_string()
    }

    #[test]
    fn a_relay_of_this_server_is_subscribed_at_once_and_the_servers_stream_follows_it() {
        let (server, client) = fake();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("events.sock");
        let (frames, relay) = relay(&socket, hello(client.base_url(), 10));
        let config = StreamConfig::new().initial_delay(Duration::from_millis(50));
        let demux = Demux::start_relayed(&client, &config, Some(&socket)).unwrap();
        demux.wait_connected(Duration::from_secs(10)).unwrap();
        assert!(demux.subscribed(), "subscribed before any frame");
        let rx = demux.register(&SessionId::from("ses_1"));
        // The relay's frames reach the turn.
        let idle = r#"{"directory":"/p","payload":{"id":"e","type":"session.idle","properties":{"sessionID":"ses_1"}}}"#;
        frames.send(idle.into()).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            matches!(&got, Routed::Event(e, _) if matches!(e.kind, EventKind::SessionIdle(_))),
            "{got:?}"
        );
        let none = server.requests();
        assert!(
            !none.iter().any(|r| r.contains("/global/event")),
            "{none:?}"
        );
        drop(frames);
        relay.join().unwrap();
        // The relay is gone: the turn hears the stream went down, and the
        // server's own stream takes over (not subscribed until its frame).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while !got.iter().any(|r| matches!(r, Routed::Reconnected)) {
            let left = deadline.saturating_duration_since(Instant::now());
            got.push(rx.recv_timeout(left).expect("a reconnect"));
        }
        assert!(got.iter().any(|r| matches!(r, Routed::Down)), "{got:?}");
        assert!(!demux.subscribed());
        assert!(
            server
                .requests()
                .iter()
                .any(|r| r.contains("/global/event"))
        );
        server.event(r#"{"id":"e","type":"session.idle","properties":{"sessionID":"ses_1"}}"#);
        assert!(subscribed_within(&demux, Duration::from_secs(5)));
    }

    #[test]
    fn a_relay_of_another_server_or_a_stale_one_is_not_used() {
        let (_server, client) = fake();
        let dir = tempfile::tempdir().unwrap();
        for (name, hello) in [
            ("other", hello("http://127.0.0.1:1", 10)),
            ("stale", hello(client.base_url(), 60_000)),
        ] {
            let socket = dir.path().join(name);
            let (frames, relay) = relay(&socket, hello);
            let demux = Demux::start_relayed(&client, &StreamConfig::new(), Some(&socket)).unwrap();
            demux.wait_connected(Duration::from_secs(10)).unwrap();
            assert!(
                !demux.subscribed(),
                "{name}: the server's stream, not proven yet"
            );
            drop(frames);
            relay.join().unwrap();
        }
        // No relay listening: the server's stream.
        let demux = Demux::start_relayed(
            &client,
            &StreamConfig::new(),
            Some(&dir.path().join("none")),
        )
        .unwrap();
        demux.wait_connected(Duration::from_secs(10)).unwrap();
        assert!(!demux.subscribed());
    }

    #[test]
    fn events_reach_a_turn_while_the_thread_sleeps_between_them() {
        // Woken by the stream's notify, not by a tick: each event is
        // routed although the thread sleeps in between.
        let (server, client) = fake();
        let demux = Demux::start(&client, &StreamConfig::new()).unwrap();
        demux.wait_connected(Duration::from_secs(10)).unwrap();
        let rx = demux.register(&SessionId::from("ses_1"));
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(30));
            server.event(r#"{"id":"e","type":"session.idle","properties":{"sessionID":"ses_1"}}"#);
            let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert!(
                matches!(got, Routed::Event(e, _) if matches!(e.kind, EventKind::SessionIdle(_)))
            );
        }
    }

    #[test]
    fn a_newest_message_is_known_only_while_the_stream_stays_up_after_a_read() {
        let (server, client) = fake();
        let demux = Demux::start(&client, &StreamConfig::new()).unwrap();
        demux.wait_connected(Duration::from_secs(10)).unwrap();
        let s = SessionId::from("ses_1");
        assert_eq!(demux.newest(&s), None, "never read");
        // Not subscribed yet: what is stored between a read now and the
        // subscription would never be told.
        assert_eq!(demux.learning(&s), None);
        server.event(r#"{"id":"h","type":"server.heartbeat","properties":{}}"#);
        assert!(subscribed_within(&demux, Duration::from_secs(10)));
        let epoch = demux.learning(&s).unwrap();
        assert_eq!(demux.newest(&s), None, "the read is not done");
        let read = MessageId::from("msg_000000000001AAAAAAAAAAAAAA");
        demux.learned(&s, Some(&read), epoch);
        assert_eq!(demux.newest(&s), Some(Some(read.clone())));
        // A message stored after the read, told by the stream.
        let rx = demux.register(&s);
        let later = "msg_000000000009AAAAAAAAAAAAAA";
        server.event(&format!(
            r#"{{"id":"e","type":"message.updated","properties":{{"sessionID":"ses_1","info":{{"id":"{later}","role":"user","sessionID":"ses_1","time":{{"created":1}}}}}}}}"#
        ));
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(demux.newest(&s), Some(Some(MessageId::from(later))));
        // The stream goes down: what a gap may have lost is unknown.
        server.cut();
        let deadline = Instant::now() + Duration::from_secs(10);
        while demux.newest(&s).is_some() {
            assert!(Instant::now() < deadline, "still known after the cut");
            std::thread::sleep(Duration::from_millis(10));
        }
        demux.wait_connected(Duration::from_secs(10)).unwrap();
        assert_eq!(demux.newest(&s), None, "a reconnect does not bring it back");
        // A read begun before the cut does not count after it.
        demux.learned(&s, Some(&read), epoch);
        assert_eq!(demux.newest(&s), None);
    }

    #[test]
    fn a_dropped_receiver_is_forgotten() {
        let mut routes = Routes::default();
        let (tx, rx) = channel();
        routes
            .turns
            .insert(SessionId::from("ses_1"), Route { tx, watched: true });
        drop(rx);
        let idle = r#"{"id":"e","type":"session.idle","properties":{"sessionID":"ses_1"}}"#;
        route(&mut routes, Event::parse(idle).unwrap(), Instant::now());
        assert!(routes.turns.is_empty());
    }
}
