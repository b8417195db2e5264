//! The reader: one thread that holds an event stream open, parses it and
//! reconnects with backoff, delivering what happens on a channel.

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ureq::Agent;
use ureq::http::{HeaderName, HeaderValue, Uri};

use crate::Error;
use crate::parser::{DEFAULT_MAX_BYTES, Event, Parser};

/// How much the reader reads from the socket at a time.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How much of the body of a failed response goes into the failure's reason.
const ERROR_BODY_BYTES: u64 = 300;

/// The shortest wait before any reconnection attempt, whatever the
/// configuration or the server's `retry:` field says.
///
/// A server that answers `retry: 0` and closes at once would otherwise be
/// called again in a tight loop; with this floor the reader makes at most ten
/// attempts a second, and fewer as the backoff grows. The base delay (the
/// initial delay or `retry:`) is raised to it before the backoff doubles it,
/// and so is the result after the jitter and the cap.
pub const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// What to connect to and how to behave when the connection fails.
///
/// Built from [`ReaderConfig::new`] and the builder methods; handed to
/// [`Reader::start`].
///
/// Proxies named in the environment are not used: the reader is made for
/// servers on this machine.
///
/// Its `Debug` output names the headers but never shows their values, so a
/// printed configuration does not leak an `Authorization` header.
#[derive(Clone)]
pub struct ReaderConfig {
    url: String,
    headers: Vec<(String, String)>,
    initial_delay: Duration,
    max_delay: Duration,
    stall_timeout: Duration,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
    max_failures: Option<u32>,
    last_event_id: String,
    max_event_size: usize,
    notify: Option<Notify>,
}

/// A function the reader thread calls after it queued an item, so that a
/// caller multiplexing many readers in one thread (a supervisor in one
/// poll(2)) is woken instead of waiting on each channel in turn. It runs on
/// the reader thread: keep it short and non-blocking (write a byte to a
/// pipe).
#[derive(Clone)]
pub struct Notify(Arc<dyn Fn() + Send + Sync>);

impl Notify {
    /// Wraps `f`.
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Notify {
        Notify(Arc::new(f))
    }

    /// Calls the function.
    pub fn call(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notify(..)")
    }
}

/// Two hooks are equal when they are the same function (the same `Arc`).
impl PartialEq for Notify {
    fn eq(&self, other: &Notify) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Notify {}

impl std::fmt::Debug for ReaderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ReaderConfig")
            .field("url", &self.url)
            .field("headers", &header_names)
            .field("initial_delay", &self.initial_delay)
            .field("max_delay", &self.max_delay)
            .field("stall_timeout", &self.stall_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("max_failures", &self.max_failures)
            .field("last_event_id", &self.last_event_id)
            .field("max_event_size", &self.max_event_size)
            .field("notify", &self.notify.is_some())
            .finish()
    }
}

impl ReaderConfig {
    /// A configuration for the stream at `url` (`http://...`), with the defaults:
    /// first reconnection delay 1 s, at most 30 s, a connection with no bytes for
    /// 30 s is dead, connect timeout 5 s, never give up, lines and events up to
    /// 16 MiB.
    pub fn new(url: impl Into<String>) -> Self {
        ReaderConfig {
            url: url.into(),
            headers: Vec::new(),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            response_timeout: None,
            max_failures: None,
            last_event_id: String::new(),
            max_event_size: DEFAULT_MAX_BYTES,
            notify: None,
        }
    }

    /// Calls `notify` on the reader thread after each item is queued (see
    /// [`Notify`]); the item is there to receive when it runs.
    pub fn notify(mut self, notify: Notify) -> Self {
        self.notify = Some(notify);
        self
    }

    /// Sends this header with every request (e.g. `Authorization`,
    /// `x-opencode-directory`). The reader sets `Accept: text/event-stream`
    /// itself.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The delay before the first reconnection attempt after a connection was
    /// lost (default 1 s); each further failed attempt doubles it. A `retry:`
    /// field from the server replaces it. Either is raised to
    /// [`MIN_RECONNECT_DELAY`] (100 ms) if shorter.
    ///
    /// It is also how long a stream that delivers no event must stay open to
    /// count as working (see [`ReaderConfig::max_failures`]).
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }

    /// The longest delay between attempts (default 30 s). A cap below
    /// [`MIN_RECONNECT_DELAY`] is raised to it.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// How long a connection may go without a single byte before it counts as
    /// dead (default 30 s; OpenCode sends a heartbeat every 10 s). It also bounds
    /// the wait for the response headers, unless
    /// [`ReaderConfig::response_timeout`] says otherwise.
    pub fn stall_timeout(mut self, d: Duration) -> Self {
        self.stall_timeout = d;
        self
    }

    /// The limit on the wait for the response headers once the request is
    /// sent (default: the stall timeout). A server known to answer at once
    /// (OpenCode does) can be given a short one, so that a connection a
    /// server accepted but never serves is given up quickly.
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = Some(d);
        self
    }

    /// The limit on establishing a TCP connection (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Give up after this many consecutive failed attempts (`None`, the default:
    /// never).
    ///
    /// An attempt fails when it does not reach a `2xx` response of type
    /// `text/event-stream`, and also when the stream it opens ends before it
    /// delivered a single event and before it was open for the initial delay
    /// (at least [`MIN_RECONNECT_DELAY`]): a server that accepts and closes at
    /// once, or that always sends an event over the size limit, is not
    /// working. A stream that delivered an event, or stayed open that long,
    /// resets the count and the backoff.
    pub fn max_failures(mut self, n: Option<u32>) -> Self {
        self.max_failures = n;
        self
    }

    /// The last event ID to send as `Last-Event-ID` on the first connection
    /// (e.g. one saved by an earlier run). Later connections send the stream's
    /// own last event ID.
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = id.into();
        self
    }

    /// The limit on the length of one line and on the data of one event
    /// (default 16 MiB). A stream that goes over it is closed, reported as
    /// [`ReaderItem::Disconnected`] with the limit in the reason, and opened
    /// again.
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }
}

/// What the reader reports, in the order it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderItem {
    /// A connection is open: the server answered `2xx` with `text/event-stream`.
    Connected,
    /// An event arrived.
    Event(Event),
    /// A connection ended, or an attempt to open one failed; the reason says
    /// which and why (with the HTTP status for a response that was refused).
    Disconnected {
        /// What happened, for a person to read.
        reason: String,
    },
    /// The reader waits `delay` before attempt number `attempt` (counted from
    /// the last connection that worked, that is delivered an event or stayed
    /// open for the initial delay; it starts at 1).
    Reconnecting {
        /// The attempt that comes after the delay.
        attempt: u32,
        /// How long the reader waits first.
        delay: Duration,
    },
    /// Too many consecutive attempts failed; the thread has ended.
    GaveUp {
        /// The number of failures and the last one's reason.
        reason: String,
    },
}

/// A running event-stream reader: a thread that owns one connection at a time.
///
/// Dropping it (or [`Reader::stop`]) stops the thread promptly, also while it
/// waits for the response, for bytes or between attempts, and joins it: it
/// shuts down the reader's own ureq [`Agent`], which closes the socket under a
/// blocked read. Only a TCP connect in progress cannot be cut short; it is
/// bounded by [`ReaderConfig::connect_timeout`] (and is immediate on loopback).
///
/// Items wait in an unbounded channel until received: a caller that stops
/// receiving should drop the reader.
#[derive(Debug)]
pub struct Reader {
    items: Receiver<ReaderItem>,
    stop: Arc<StopSignal>,
    agent: Agent,
    thread: Option<JoinHandle<()>>,
    url: String,
}

impl Reader {
    /// Starts the reader thread. It connects at once; what happens is reported
    /// through [`Reader::recv`] and its siblings, starting with
    /// [`ReaderItem::Connected`] or [`ReaderItem::Disconnected`].
    ///
    /// Fails only on a configuration that can never work (a malformed URL or
    /// header) or when the thread cannot be started.
    pub fn start(config: ReaderConfig) -> Result<Reader, Error> {
        validate(&config)?;
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_send_request(Some(config.connect_timeout))
            .timeout_recv_response(Some(
                config.response_timeout.unwrap_or(config.stall_timeout),
            ))
            .timeout_per_read(Some(config.stall_timeout))
            // Every attempt opens a fresh connection: one the server closed
            // just after ending a stream must not be picked up again.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build()
            .into();
        let stop = Arc::new(StopSignal::default());
        let (sender, items) = mpsc::channel();
        let url = config.url.clone();
        let worker = Worker {
            agent: agent.clone(),
            stop: Arc::clone(&stop),
            items: sender,
            config,
        };
        let thread = std::thread::Builder::new()
            .name("httpsse-reader".into())
            .spawn(move || worker.run())
            .map_err(|source| Error::Spawn {
                url: url.clone(),
                source,
            })?;
        Ok(Reader {
            items,
            stop,
            agent,
            thread: Some(thread),
            url,
        })
    }

    /// The URL this reader follows.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Waits for the next item; `None` once the thread has ended (after
    /// [`ReaderItem::GaveUp`]). Blocks without a deadline: use
    /// [`Reader::recv_timeout`] to bound the wait.
    pub fn recv(&self) -> Option<ReaderItem> {
        self.items.recv().ok()
    }

    /// Waits at most `t` for the next item.
    pub fn recv_timeout(&self, t: Duration) -> Result<ReaderItem, RecvTimeoutError> {
        self.items.recv_timeout(t)
    }

    /// The next item if one is waiting.
    pub fn try_recv(&self) -> Option<ReaderItem> {
        self.items.try_recv().ok()
    }

    /// Stops the thread and waits for it to end. Items not yet received are
    /// dropped.
    pub fn stop(self) {
        // Drop does the work.
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.raise();
        // Closes the connection in use, which ends a blocked read at once.
        self.agent.clone().shutdown();
        if let Some(thread) = self.thread.take() {
            // A panic in the thread would be a bug here; it has nothing to report.
            let _ = thread.join();
        }
    }
}

/// Tells the thread to stop, and wakes it when it waits between attempts.
#[derive(Debug, Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    fn raise(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    fn is_raised(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits `delay` unless stopped first; true if stopped.
    fn wait(&self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *stopped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

fn validate(config: &ReaderConfig) -> Result<(), Error> {
    let invalid_url = |reason: String| Error::InvalidUrl {
        url: config.url.clone(),
        reason,
    };
    let uri: Uri = config
        .url
        .parse()
        .map_err(|e: ureq::http::uri::InvalidUri| invalid_url(e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(invalid_url(format!("unsupported scheme {other:?}"))),
        None => return Err(invalid_url("no scheme (expected http://)".into())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid_url("no host".into()));
    }
    for (name, value) in &config.headers {
        let invalid_header = |reason: String| Error::InvalidHeader {
            url: config.url.clone(),
            name: name.clone(),
            reason,
        };
        HeaderName::try_from(name.as_str()).map_err(|e| invalid_header(e.to_string()))?;
        HeaderValue::try_from(value.as_str()).map_err(|e| invalid_header(e.to_string()))?;
    }
    Ok(())
}

/// The reader thread's state.
struct Worker {
    agent: Agent,
    stop: Arc<StopSignal>,
    items: Sender<ReaderItem>,
    config: ReaderConfig,
}

/// Why a connection ended.
enum Ended {
    /// The reader was stopped, or nobody listens any more: end the thread.
    Stop,
    /// The attempt never reached an open stream.
    Failed(String),
    /// An open stream ended.
    Lost {
        /// Why, for a person to read.
        reason: String,
        /// Whether the stream delivered at least one event.
        delivered: bool,
        /// How long the stream was open.
        open_for: Duration,
    },
}

impl Worker {
    fn run(self) {
        let mut stream = StreamState {
            last_event_id: self.config.last_event_id.clone(),
            retry: None,
        };
        let mut rng = Jitter::seeded();
        let mut failures: u32 = 0;
        let mut attempt: u32 = 0;
        loop {
            if self.stop.is_raised() {
                return;
            }
            let reason = match self.connect_and_read(&mut stream) {
                Ended::Stop => return,
                Ended::Lost {
                    reason,
                    delivered,
                    open_for,
                } if delivered || open_for >= self.working_uptime() => {
                    failures = 0;
                    attempt = 0;
                    reason
                }
                // Opened and ended at once with nothing to show: as good as
                // refused, or every such server would be called in a loop
                // forever.
                Ended::Lost {
                    reason, open_for, ..
                } => {
                    failures = failures.saturating_add(1);
                    format!("{reason}; no event arrived in the {open_for:.1?} it was open")
                }
                Ended::Failed(reason) => {
                    failures = failures.saturating_add(1);
                    reason
                }
            };
            if self.stop.is_raised()
                || !self.send(ReaderItem::Disconnected {
                    reason: reason.clone(),
                })
            {
                return;
            }
            if let Some(max) = self.config.max_failures
                && failures >= max.max(1)
            {
                let plural = if failures == 1 { "" } else { "s" };
                self.send(ReaderItem::GaveUp {
                    reason: format!(
                        "gave up on {} after {failures} consecutive failed attempt{plural}; last: {reason}",
                        self.config.url
                    ),
                });
                return;
            }
            attempt = attempt.saturating_add(1);
            let base = stream
                .retry
                .map(Duration::from_millis)
                .unwrap_or(self.config.initial_delay);
            let delay = backoff(base, self.config.max_delay, attempt, &mut rng);
            if !self.send(ReaderItem::Reconnecting { attempt, delay }) || self.stop.wait(delay) {
                return;
            }
        }
    }

    /// How long a stream without events must stay open to count as working.
    fn working_uptime(&self) -> Duration {
        self.config.initial_delay.max(MIN_RECONNECT_DELAY)
    }

    /// Sends an item; false if nobody listens any more.
    fn send(&self, item: ReaderItem) -> bool {
        let sent = self.items.send(item).is_ok();
        if sent && let Some(notify) = &self.config.notify {
            notify.call();
        }
        sent
    }

    /// One connection, from the request to the end of the stream.
    fn connect_and_read(&self, stream: &mut StreamState) -> Ended {
        let url = &self.config.url;
        let mut request = self
            .agent
            .get(url)
            .header("Accept", "text/event-stream")
            .header("Cache-Control", "no-cache");
        for (name, value) in &self.config.headers {
            request = request.header(name, value);
        }
        // An ID with bytes a header cannot carry is not sent rather than
        // failing every attempt.
        if !stream.last_event_id.is_empty()
            && let Ok(id) = HeaderValue::try_from(stream.last_event_id.as_str())
        {
            request = request.header("Last-Event-ID", id);
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(_) if self.stop.is_raised() => return Ended::Stop,
            Err(ureq::Error::Timeout(_)) => {
                return Ended::Failed(format!(
                    "no response from {url} within the timeout (connect {:?}, response {:?})",
                    self.config.connect_timeout,
                    self.config
                        .response_timeout
                        .unwrap_or(self.config.stall_timeout)
                ));
            }
            Err(e) => return Ended::Failed(format!("cannot connect to {url}: {e}")),
        };
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let mut text = String::new();
            // Best effort: the body only adds detail to the reason.
            let _ = body
                .as_reader()
                .take(ERROR_BODY_BYTES)
                .read_to_string(&mut text);
            let text = text.trim();
            let detail = if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            };
            return Ended::Failed(format!("{url} answered HTTP {status}{detail}"));
        }
        let mime = body.mime_type().unwrap_or("").to_owned();
        if !mime.eq_ignore_ascii_case("text/event-stream") {
            let shown = if mime.is_empty() { "none" } else { &mime };
            return Ended::Failed(format!(
                "{url} answered HTTP {status} with content type {shown}, not text/event-stream"
            ));
        }
        if !self.send(ReaderItem::Connected) {
            return Ended::Stop;
        }
        let opened = Instant::now();
        let mut delivered = false;
        let lost = |reason: String, delivered: bool| Ended::Lost {
            reason,
            delivered,
            open_for: opened.elapsed(),
        };
        let mut parser = Parser::with_limit(self.config.max_event_size);
        parser.set_last_event_id(stream.last_event_id.clone());
        let mut reader = body.into_reader();
        let mut buffer = vec![0u8; READ_BUFFER_BYTES];
        loop {
            let read = match reader.read(&mut buffer) {
                Ok(0) => return lost(format!("{url} closed the stream"), delivered),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) if self.stop.is_raised() => return Ended::Stop,
                Err(e) if is_timeout(&e) => {
                    return lost(
                        format!(
                            "no data from {url} for {:?}: the connection is considered dead",
                            self.config.stall_timeout
                        ),
                        delivered,
                    );
                }
                Err(e) => {
                    return lost(
                        format!("reading the stream from {url} failed: {e}"),
                        delivered,
                    );
                }
            };
            let mut listening = true;
            let fed = parser.try_feed(&buffer[..read], |event| {
                delivered = true;
                listening = listening && self.send(ReaderItem::Event(event));
            });
            stream.last_event_id.clear();
            stream.last_event_id.push_str(parser.last_event_id());
            stream.retry = parser.retry().or(stream.retry);
            if !listening {
                return Ended::Stop;
            }
            if let Err(e) = fed {
                return lost(format!("the stream from {url} was dropped: {e}"), delivered);
            }
        }
    }
}

/// What outlives one connection.
struct StreamState {
    last_event_id: String,
    retry: Option<u64>,
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) || e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(_)))
}

/// The delay before attempt `attempt` (1 for the first): `base` doubled for
/// each attempt after the first, at most `cap`, then lowered by up to a
/// quarter at random so that many clients do not all come back at once; never
/// less than [`MIN_RECONNECT_DELAY`], which also stands in for a shorter base
/// so that a zero base still grows.
fn backoff(base: Duration, cap: Duration, attempt: u32, jitter: &mut Jitter) -> Duration {
    let base = base.max(MIN_RECONNECT_DELAY);
    let doublings = attempt.saturating_sub(1).min(32);
    let full = base
        .checked_mul(1u32 << doublings.min(31))
        .unwrap_or(cap)
        .min(cap);
    let fraction = jitter.next_unit();
    full.mul_f64(1.0 - 0.25 * fraction).max(MIN_RECONNECT_DELAY)
}

/// A small xorshift generator for the jitter; no cryptographic needs here.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let place = &clock as *const u64 as u64;
        Jitter((clock ^ place.rotate_left(32)) | 1)
    }

    /// A number in [0, 1).
    fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_header_values() {
        let config = ReaderConfig::new("http://127.0.0.1:1/event")
            .header("Authorization", "Basic c2VjcmV0")
            .header("x-opencode-directory", "/p");
        let text = format!("{config:?}");
        assert!(text.contains("Authorization"), "{text}");
        assert!(!text.contains("c2VjcmV0"), "{text}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_down_by_at_most_a_quarter() {
        let mut jitter = Jitter(12345);
        let base = Duration::from_millis(100);
        let cap = Duration::from_millis(1000);
        for _ in 0..1000 {
            for (attempt, full) in [
                (1, 100),
                (2, 200),
                (3, 400),
                (4, 800),
                (5, 1000),
                (40, 1000),
            ] {
                let d = backoff(base, cap, attempt, &mut jitter);
                let full = Duration::from_millis(full);
                assert!(d <= full && d >= full.mul_f64(0.75), "{attempt}: {d:?}");
            }
        }
        assert_eq!(
            backoff(Duration::MAX, cap, u32::MAX, &mut jitter).max(cap),
            cap
        );
    }

    #[test]
    fn backoff_never_goes_below_the_floor_and_grows_from_a_zero_base() {
        let mut jitter = Jitter(777);
        let floor = MIN_RECONNECT_DELAY;
        for _ in 0..1000 {
            for attempt in 1..=40 {
                let capped = backoff(
                    Duration::ZERO,
                    Duration::from_secs(30),
                    attempt,
                    &mut jitter,
                );
                assert!(capped >= floor, "{attempt}: {capped:?}");
                // A cap under the floor does not win against it.
                assert_eq!(
                    backoff(Duration::ZERO, Duration::ZERO, attempt, &mut jitter),
                    floor
                );
                assert_eq!(
                    backoff(
                        Duration::from_millis(1),
                        Duration::from_millis(50),
                        attempt,
                        &mut jitter
                    ),
                    floor
                );
            }
            // A zero base backs off like the floor itself: 100, 200, 400 ms.
            for (attempt, full) in [(2, 200), (3, 400)] {
                let d = backoff(
                    Duration::ZERO,
                    Duration::from_secs(30),
                    attempt,
                    &mut jitter,
                );
                let full = Duration::from_millis(full);
                assert!(d <= full && d >= full.mul_f64(0.75), "{attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn stop_signal_wakes_a_waiter() {
        let signal = Arc::new(StopSignal::default());
        assert!(!signal.wait(Duration::from_millis(1)));
        let waiter = {
            let signal = Arc::clone(&signal);
            std::thread::spawn(move || signal.wait(Duration::from_secs(600)))
        };
        signal.raise();
        assert!(waiter.join().unwrap());
    }
}
