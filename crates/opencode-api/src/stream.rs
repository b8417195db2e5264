//! Typed event streams: `GET /event` and `GET /global/event` decoded into
//! events, with the connection's ups and downs reported in the same order,
//! on one reader thread per stream.
//!
//! Built on [`httpsse::Reader`], which owns the thread, reconnects with
//! backoff and treats a silent connection as dead; this layer decodes the
//! frames, turns `server.connected` into [`StreamItem::Connected`] and keeps
//! the counts a supervisor reads as health signals.

use crate::Error;
use crate::events::{Event, EventKind, GlobalEvent};
use httpsse::{Reader, ReaderConfig, ReaderItem};
use std::collections::VecDeque;
use std::fmt;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// Settings of an event stream: reconnection backoff, the stall window,
/// when to give up. The URL, credentials and directory come from the
/// [`Client`](crate::Client) that opens the stream.
///
/// ```
/// use std::time::Duration;
/// let config = opencode_api::StreamConfig::new()
///     .stall_timeout(Duration::from_secs(25))
///     .initial_delay(Duration::from_millis(200))
///     .max_failures(Some(5));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    notify: Option<httpsse::Notify>,
    initial_delay: Duration,
    max_delay: Duration,
    stall_timeout: Duration,
    connect_timeout: Option<Duration>,
    max_failures: Option<u32>,
    max_event_size: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig::new()
    }
}

impl StreamConfig {
    /// The defaults: reconnect after 1 s, doubling up to 30 s; a connection
    /// with no byte for 30 s is dead (OpenCode sends a heartbeat every 10 s);
    /// the client's connect timeout; never give up; frames up to 16 MiB.
    pub fn new() -> StreamConfig {
        StreamConfig {
            notify: None,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(30),
            connect_timeout: None,
            max_failures: None,
            max_event_size: httpsse::DEFAULT_MAX_BYTES,
        }
    }

    /// The delay before the first reconnection attempt; each failed attempt
    /// doubles it (with jitter). At least 100 ms.
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }

    /// The longest delay between attempts.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// How long a connection may go without a byte before it counts as dead
    /// ([`DisconnectKind::Stalled`]); it also bounds the wait for the
    /// response head. Keep it above OpenCode's 10 s heartbeat.
    pub fn stall_timeout(mut self, d: Duration) -> Self {
        self.stall_timeout = d;
        self
    }

    /// The limit on establishing a connection (default: the client's), and
    /// on the wait for the response once connected: OpenCode answers at
    /// once, so a server that accepts but does not answer is given up (and
    /// reconnected to) after this long, not after the stall window.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = Some(d);
        self
    }

    /// Give up after this many consecutive failed attempts (`None`, the
    /// default: never). A stream that gave up fails every later call with
    /// [`Error::EventStream`] carrying the last failure.
    pub fn max_failures(mut self, n: Option<u32>) -> Self {
        self.max_failures = n;
        self
    }

    /// The largest frame accepted; a bigger one drops the connection
    /// ([`DisconnectKind::Broken`]) and the stream reconnects.
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// Calls `notify` on the stream's reader thread after each item is
    /// queued, so that one thread can follow many streams in one poll(2)
    /// (for example by waking a `procutil::waker::Waker`) and then take
    /// what is there with [`EventStream::next`] and a deadline that has
    /// passed. Keep it short and non-blocking.
    pub fn notify(mut self, notify: impl Fn() + Send + Sync + 'static) -> Self {
        self.notify = Some(httpsse::Notify::new(notify));
        self
    }

    pub(crate) fn reader_config(&self, url: String, client_connect: Duration) -> ReaderConfig {
        let connect = self.connect_timeout.unwrap_or(client_connect);
        let config = match &self.notify {
            Some(notify) => ReaderConfig::new(url).notify(notify.clone()),
            None => ReaderConfig::new(url),
        };
        config
            .initial_delay(self.initial_delay)
            .max_delay(self.max_delay)
            .stall_timeout(self.stall_timeout)
            .connect_timeout(connect)
            // OpenCode answers the stream's request at once: no answer
            // within the connect timeout is a server that accepted the
            // connection but does not serve it (one still binding its port
            // after a restart, FACTS.md), not a slow one.
            .response_timeout(connect)
            .max_failures(self.max_failures)
            .max_event_size(self.max_event_size)
    }
}

/// What a stream reports, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem<E> {
    /// The server's `server.connected` frame arrived: the stream is live.
    /// After a [`Disconnected`](StreamItem::Disconnected), events of the gap
    /// are lost (OpenCode sends no event IDs to resume from): re-read what
    /// matters (messages, session status).
    Connected,
    /// A decoded event.
    Event(E),
    /// The connection ended or an attempt to open one failed; the stream
    /// reconnects by itself (unless it gives up, see
    /// [`StreamConfig::max_failures`]).
    Disconnected {
        /// What kind of failure, for a supervisor to act on.
        kind: DisconnectKind,
        /// What happened, for a person to read.
        reason: String,
    },
}

/// Why a connection of an event stream ended or could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectKind {
    /// No connection: nothing listens, refused, unreachable.
    Connect,
    /// Connected, but no response head in time: a hung server.
    Timeout,
    /// The server answered this status instead of a stream (401, 503, ...).
    Status(u16),
    /// A success that is not `text/event-stream`.
    NotEventStream,
    /// The server ended the stream (after `server.instance.disposed`, or it
    /// exited).
    Ended,
    /// No byte for the stall window: the connection is considered dead.
    Stalled,
    /// Anything else: a read failed, a frame was over the size limit.
    Broken,
}

impl DisconnectKind {
    /// Reads the kind from the reader's reason. `httpsse` reports reasons as
    /// text only; the unit tests pin every wording this relies on.
    fn classify(url: &str, reason: &str) -> DisconnectKind {
        let after_url = reason.strip_prefix(url).unwrap_or("");
        if let Some(status) = after_url.strip_prefix(" answered HTTP ") {
            if status.contains(" with content type ") {
                return DisconnectKind::NotEventStream;
            }
            let digits: String = status.chars().take_while(char::is_ascii_digit).collect();
            return digits
                .parse()
                .map_or(DisconnectKind::Broken, DisconnectKind::Status);
        }
        if after_url.starts_with(" closed the stream") {
            DisconnectKind::Ended
        } else if reason.starts_with("cannot connect to ") {
            DisconnectKind::Connect
        } else if reason.starts_with("no response from ") {
            DisconnectKind::Timeout
        } else if reason.starts_with("no data from ") {
            DisconnectKind::Stalled
        } else {
            DisconnectKind::Broken
        }
    }
}

/// What an [`EventStream`] decodes each frame into: [`Event`] for
/// `GET /event`, [`GlobalEvent`] for `GET /global/event`.
pub trait StreamEvent: Sized + sealed::Sealed {
    /// Decodes the `data` of one frame.
    fn decode(data: &str) -> Result<Self, Error>;
    /// The event itself.
    fn event(&self) -> &Event;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Event {}
    impl Sealed for crate::GlobalEvent {}
}

impl StreamEvent for Event {
    fn decode(data: &str) -> Result<Self, Error> {
        Event::parse(data)
    }
    fn event(&self) -> &Event {
        self
    }
}

impl StreamEvent for GlobalEvent {
    fn decode(data: &str) -> Result<Self, Error> {
        GlobalEvent::parse(data)
    }
    fn event(&self) -> &Event {
        &self.payload
    }
}

/// The events of every directory of a server (`GET /global/event`), each
/// with its directory, from
/// [`Client::global_event_stream`](crate::Client::global_event_stream).
pub type GlobalEventStream = EventStream<GlobalEvent>;

/// A live, typed event stream with its own reader thread, which reconnects
/// by itself: `EventStream` (of [`Event`]s) follows `GET /event` of one
/// directory, [`GlobalEventStream`] `GET /global/event`.
///
/// [`next`](EventStream::next) gives events and connection changes in
/// order; [`next_event`](EventStream::next_event) only events. Both take a
/// deadline and return `Ok(None)` when it passes. A frame that does not
/// decode is skipped and counted ([`skipped_frames`](EventStream::skipped_frames)),
/// never the end of the stream; events of unknown types decode as
/// [`EventKind::Unknown`]. Dropping the stream (or
/// [`stop`](EventStream::stop)) closes the connection at once, also in the
/// middle of a blocked read, and joins the thread.
///
/// The counts and the connection state reflect what this handle has
/// received from its thread, in [`next`](EventStream::next) and
/// [`wait_connected`](EventStream::wait_connected).
///
/// ```no_run
/// use std::time::{Duration, Instant};
/// use opencode_api::{Client, StreamItem};
///
/// let client = Client::builder("http://127.0.0.1:4096").directory("/home/me/project").build()?;
/// let mut events = client.event_stream()?;
/// events.wait_connected(Instant::now() + Duration::from_secs(5))?;
/// while let Some(item) = events.next(Instant::now() + Duration::from_secs(60))? {
///     match item {
///         StreamItem::Event(event) => println!("{} {:?}", event.kind_name(), event.session_id()),
///         StreamItem::Disconnected { kind, reason } => eprintln!("{kind:?}: {reason}"),
///         StreamItem::Connected => eprintln!("(re)connected, {} reconnects", events.reconnects()),
///     }
/// }
/// # Ok::<(), opencode_api::Error>(())
/// ```
pub struct EventStream<E = Event> {
    url: String,
    reader: Option<Reader>,
    /// Items received by `wait_connected`, for `next` to hand out in order.
    pending: VecDeque<StreamItem<E>>,
    connected: bool,
    /// `server.connected` frames received.
    connections: u64,
    events: u64,
    skipped: u64,
    last_decode_error: Option<Error>,
    last_event_at: Option<Instant>,
    last_disconnect: Option<String>,
    /// Why the stream ended for good (gave up, stopped).
    ended: Option<String>,
}

impl<E: StreamEvent> EventStream<E> {
    /// Starts the reader thread; it connects at once.
    pub(crate) fn start(config: ReaderConfig, url: String) -> Result<Self, Error> {
        let reader = Reader::start(config).map_err(|e| Error::EventStream {
            url: url.clone(),
            reason: format!("cannot start the reader: {e}"),
        })?;
        Ok(EventStream {
            url,
            reader: Some(reader),
            pending: VecDeque::new(),
            connected: false,
            connections: 0,
            events: 0,
            skipped: 0,
            last_decode_error: None,
            last_event_at: None,
            last_disconnect: None,
            ended: None,
        })
    }

    /// Blocks until the server's `server.connected` frame arrived (at once
    /// if the stream is connected already), or `deadline`. Items that
    /// arrive meanwhile, that frame included, stay queued for
    /// [`next`](Self::next). Fails with [`Error::EventStream`] at the
    /// deadline (naming the last failure, e.g. a 401) or when the stream
    /// gave up.
    pub fn wait_connected(&mut self, deadline: Instant) -> Result<(), Error> {
        let started = Instant::now();
        while !self.connected {
            match self.receive(deadline)? {
                Some(item) => self.pending.push_back(item),
                None => {
                    let last = match &self.last_disconnect {
                        Some(reason) => format!("; last failure: {reason}"),
                        None => String::new(),
                    };
                    return Err(Error::EventStream {
                        url: self.url.clone(),
                        reason: format!(
                            "no server.connected within {:?}{last}",
                            deadline.saturating_duration_since(started)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Blocks until the next item or `deadline` (`Ok(None)`); a deadline
    /// that has passed takes only what is already there. Fails with
    /// [`Error::EventStream`] once the stream gave up or was stopped.
    pub fn next(&mut self, deadline: Instant) -> Result<Option<StreamItem<E>>, Error> {
        match self.pending.pop_front() {
            Some(item) => Ok(Some(item)),
            None => self.receive(deadline),
        }
    }

    /// Like [`next`](Self::next), skipping connection changes: the next
    /// event, or `Ok(None)` at `deadline`.
    pub fn next_event(&mut self, deadline: Instant) -> Result<Option<E>, Error> {
        loop {
            match self.next(deadline)? {
                Some(StreamItem::Event(event)) => return Ok(Some(event)),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// Takes one item from the reader, keeping the counts.
    fn receive(&mut self, deadline: Instant) -> Result<Option<StreamItem<E>>, Error> {
        loop {
            let Some(reader) = &self.reader else {
                return Err(Error::EventStream {
                    url: self.url.clone(),
                    reason: self.ended.clone().unwrap_or_default(),
                });
            };
            let wait = deadline.saturating_duration_since(Instant::now());
            let item = match reader.recv_timeout(wait) {
                Ok(item) => item,
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {
                    self.end("the reader thread ended".into());
                    continue;
                }
            };
            match item {
                // The HTTP answer alone is not the server's word yet.
                ReaderItem::Connected | ReaderItem::Reconnecting { .. } => {}
                ReaderItem::Event(frame) => match E::decode(&frame.data) {
                    Ok(event) => {
                        self.events += 1;
                        self.last_event_at = Some(Instant::now());
                        if event.event().kind == EventKind::ServerConnected {
                            self.connected = true;
                            self.connections += 1;
                            return Ok(Some(StreamItem::Connected));
                        }
                        return Ok(Some(StreamItem::Event(event)));
                    }
                    Err(e) => {
                        self.skipped += 1;
                        self.last_decode_error = Some(e);
                    }
                },
                ReaderItem::Disconnected { reason } => {
                    self.connected = false;
                    self.last_disconnect = Some(reason.clone());
                    let kind = DisconnectKind::classify(&self.url, &reason);
                    return Ok(Some(StreamItem::Disconnected { kind, reason }));
                }
                ReaderItem::GaveUp { reason } => self.end(reason),
            }
        }
    }

    fn end(&mut self, reason: String) {
        self.connected = false;
        self.ended.get_or_insert(reason);
        // The thread has ended or is about to: joining is quick.
        self.reader = None;
    }
}

impl<E> EventStream<E> {
    /// The stream's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// True between a `server.connected` frame and the next disconnection.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// How many times the stream connected again after its first
    /// `server.connected`.
    pub fn reconnects(&self) -> u64 {
        self.connections.saturating_sub(1)
    }

    /// How many frames decoded, heartbeats and `server.connected` included.
    pub fn events_received(&self) -> u64 {
        self.events
    }

    /// How many frames did not decode and were skipped.
    pub fn skipped_frames(&self) -> u64 {
        self.skipped
    }

    /// Why the last skipped frame did not decode.
    pub fn last_decode_error(&self) -> Option<&Error> {
        self.last_decode_error.as_ref()
    }

    /// When the last frame that decoded was received; with OpenCode's
    /// heartbeat, a live stream has one at least every 10 s.
    pub fn last_event_at(&self) -> Option<Instant> {
        self.last_event_at
    }

    /// Closes the connection and joins the reader thread; items not yet
    /// handed out are dropped, and later calls fail with
    /// [`Error::EventStream`]. Also done on drop.
    pub fn stop(&mut self) {
        self.connected = false;
        self.pending.clear();
        if self.reader.take().is_some() {
            self.ended.get_or_insert_with(|| "stopped".into());
        }
    }
}

impl<E> Drop for EventStream<E> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<E> fmt::Debug for EventStream<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only what is safe to print: the reader's configuration holds the
        // credentials.
        f.debug_struct("EventStream")
            .field("url", &self.url)
            .field("connected", &self.connected)
            .field("reconnects", &self.reconnects())
            .field("events_received", &self.events)
            .field("skipped_frames", &self.skipped)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
