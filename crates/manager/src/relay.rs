//! The event relay of a running server: its `/global/event` frames,
//! already subscribed, to local clients over a unix socket in the
//! project's state folder (`events.sock`, see [`relay_socket`]). The
//! supervisor runs one for each server it watches; beside a server with no
//! supervisor, `ocm relay` runs one as a process of its own
//! ([`Manager::run_relay`](crate::Manager::run_relay), started by `ocm
//! prompt` through [`Manager::start_relay`](crate::Manager::start_relay)).
//!
//! OpenCode 1.18.33 subscribes an event stream to its events only after it
//! has sent the stream's first frame (`server.connected`), so a process
//! that must hear a prompt's every event waits one whole request before it
//! may send (2.5 to 5 ms on two cores). A client of the relay hears from a
//! stream that was subscribed long before: the relay says so only once a
//! frame after `server.connected` came (the heartbeat, 10 s after the
//! connection at the latest).
//!
//! Protocol, one JSON document a line: the relay answers a new client with
//! `{"relay":"ocm-events","url":URL,"ageMs":N}` (the server it follows, how
//! old its newest frame is) when its stream is subscribed (else it closes
//! the connection at once), then sends every frame's `data` as it
//! came. It closes every client when its stream breaks (events may be lost
//! then: the client reconnects on its own, to the server). A client that
//! stopped reading is closed once its socket's buffer stayed full for
//! [`CLIENT_WRITE`]. The socket is the owner's only: the state folder is
//! `0700`. [`connect_relay`] is the client's side.
//!
//! Threads: the stream's reader (`httpsse`), and one that waits in a poll
//! on the listener and a waker the reader rings, takes clients and hands
//! them the frames; dropping the relay stops and joins both and removes
//! the socket.

mod process;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opencode_api::{FrameItem as ReaderItem, FrameReader as Reader, StreamConfig};
use procutil::waker::Waker;
use procutil::watch::{Watch, WatchEvent};

use crate::{ProjectPaths, USERNAME};

pub use process::{RELAY_VAR, RelayEnd};

/// The relay socket's name in the project's state folder.
const RELAY_SOCKET: &str = "events.sock";
/// The relay's first line to a client is
/// `{"relay":RELAY_HELLO,"url":URL,"ageMs":N}` (the server it follows,
/// how old its newest frame is); every frame's `data` follows, a line each.
pub const RELAY_HELLO: &str = "ocm-events";
/// How long a write to a client may wait (its socket's buffer full: it
/// stopped reading) before the client is closed.
const CLIENT_WRITE: Duration = Duration::from_millis(500);
/// No frame for this long ends the relay's connection (the server sends a
/// heartbeat every 10 s).
const STALL: Duration = Duration::from_secs(25);
/// How long the relay's stream may take to connect.
const CONNECT: Duration = Duration::from_secs(2);

/// Where the relay of `paths`'s project listens.
pub(crate) fn relay_socket(paths: &ProjectPaths) -> PathBuf {
    paths.dir.join(RELAY_SOCKET)
}

/// How long the relay may take to greet a client.
const HELLO_WITHIN: Duration = Duration::from_millis(500);
/// A client takes a relay whose newest frame is at most this old (the
/// server sends a heartbeat every 10 s): an older one may follow a server
/// that hangs.
const MAX_AGE_MS: u64 = 12_000;

/// Connects to the relay at `socket` as a client: the connection past the
/// hello, the frames to come (a line each, every frame's `data`; the end
/// of the stream when the relay's own stream broke). `None` when no relay
/// takes clients there at once (none listens, or its queue is full: a
/// stopped supervisor), or it follows another server than `url`, or its
/// newest frame is over 12 s old, or it says nothing within 500 ms.
/// The read timeout is left at 500 ms.
pub fn connect_relay(socket: &Path, url: &str) -> Option<BufReader<UnixStream>> {
    let stream = procutil::connect_unix_now(socket).ok()?;
    stream.set_read_timeout(Some(HELLO_WITHIN)).ok()?;
    let mut lines = BufReader::new(stream);
    let mut hello = String::new();
    lines.read_line(&mut hello).ok()?;
    let hello: serde_json::Value = serde_json::from_str(&hello).ok()?;
    let fresh = hello["ageMs"].as_u64().is_some_and(|age| age <= MAX_AGE_MS);
    (hello["relay"] == RELAY_HELLO && hello["url"] == url && fresh).then_some(lines)
}

/// What the relay's thread and its owner share.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Clients taken since the relay started.
    served: AtomicU64,
}

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub(crate) struct Relay {
    path: PathBuf,
    /// The socket's inode: a later relay's socket at the same path is left.
    inode: u64,
    /// Rung by the reader for each item, and to stop.
    wake: Arc<Waker>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on `path` (a socket left there by an earlier relay is
    /// replaced; any other file is an error) and follows `url`'s stream.
    /// `ended`, when given, is told once the stream first breaks (the
    /// relay's clients are closed then, as always).
    pub(crate) fn start(
        path: &Path,
        url: &str,
        password: Option<&str>,
        ended: Option<std::sync::mpsc::Sender<()>>,
    ) -> std::io::Result<Relay> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(path)?;
        let inode = std::fs::symlink_metadata(path)?.ino();
        let gone = |e: std::io::Error| {
            let _ = std::fs::remove_file(path);
            e
        };
        listener.set_nonblocking(true).map_err(gone)?;
        let wake = Arc::new(Waker::new().map_err(std::io::Error::other).map_err(gone)?);
        let rung = Arc::clone(&wake);
        let mut client = opencode_api::Client::builder(url).connect_timeout(CONNECT);
        if let Some(password) = password {
            client = client.basic_auth(USERNAME, password);
        }
        let config = StreamConfig::new()
            .stall_timeout(STALL)
            .connect_timeout(CONNECT)
            .max_delay(Duration::from_secs(5))
            .notify(move || rung.wake());
        let reader = client
            .build()
            .and_then(|client| client.global_event_frames_with(&config))
            .map_err(std::io::Error::other)
            .map_err(gone)?;
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            listener,
            url: url.to_string(),
            clients: Vec::new(),
            frames: 0,
            last_frame: None,
            ended,
        };
        let (thread_wake, thread_shared) = (Arc::clone(&wake), Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("ocm-relay".into())
            .spawn(move || worker.run(reader, &thread_wake, &thread_shared))
            .map_err(gone)?;
        Ok(Relay {
            path: path.to_path_buf(),
            inode,
            wake,
            shared,
            thread: Some(thread),
        })
    }

    /// The clients the relay has taken.
    pub(crate) fn clients_served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// Whether its socket is still the one at its path (a later relay
    /// replaces it).
    pub(crate) fn still_listens(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.wake.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if self.still_listens() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The relay's thread.
struct Worker {
    listener: UnixListener,
    url: String,
    clients: Vec<UnixStream>,
    /// Frames on the stream's current connection; the first is
    /// `server.connected`, and the stream is subscribed once it has been
    /// read on, which a later frame proves.
    frames: u64,
    /// When the newest frame came.
    last_frame: Option<Instant>,
    /// Told when the stream breaks.
    ended: Option<std::sync::mpsc::Sender<()>>,
}

impl Worker {
    /// Until the relay is dropped: one poll on the waker and the listener.
    fn run(mut self, reader: Reader, wake: &Waker, shared: &Shared) {
        let mut watch = Watch::new();
        let incoming = match (watch.add_fd(wake), watch.add_fd(&self.listener)) {
            (Ok(_), Ok(token)) => token,
            _ => return reader.stop(),
        };
        loop {
            if shared.stop.load(Ordering::SeqCst) {
                return reader.stop();
            }
            match watch.wait(Instant::now() + Duration::from_secs(3600)) {
                Ok(WatchEvent::Readable { token }) if token == incoming => self.accept(shared),
                Ok(_) => {
                    // Drained before the items are taken: an item queued
                    // after this rings again.
                    wake.drain();
                    while let Some(item) = reader.try_recv() {
                        self.forward(item);
                    }
                }
                // Not expected; a pause keeps a broken poll from spinning.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Takes the waiting clients: a hello and a place among the clients
    /// when the stream is subscribed, else a closed connection.
    fn accept(&mut self, shared: &Shared) {
        loop {
            let mut client = match self.listener.accept() {
                Ok((client, _)) => client,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // Out of descriptors, say: the connection waits, and the
                // poll would say so again at once; a pause, not a spin.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(100));
                    return;
                }
            };
            let Some(last_frame) = self.last_frame.filter(|_| self.frames > 1) else {
                continue;
            };
            let age = last_frame.elapsed().as_millis() as u64;
            let hello = serde_json::json!({ "relay": RELAY_HELLO, "url": self.url, "ageMs": age });
            // Accepted connections block (with a write timeout), whatever
            // the listener is.
            if client.set_nonblocking(false).is_ok()
                && client.set_write_timeout(Some(CLIENT_WRITE)).is_ok()
                && client.write_all(format!("{hello}\n").as_bytes()).is_ok()
            {
                self.clients.push(client);
                shared.served.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One item of the stream: a frame to every client, in order.
    fn forward(&mut self, item: ReaderItem) {
        match item {
            ReaderItem::Connected => {
                self.frames = 0;
                self.last_frame = None;
            }
            ReaderItem::Event(event) => {
                self.frames += 1;
                self.last_frame = Some(Instant::now());
                // One document a line: a frame's `data` lines are joined
                // by newlines, which JSON takes as spaces.
                let line = format!("{}\n", event.data.replace('\n', " "));
                self.clients
                    .retain_mut(|client| client.write_all(line.as_bytes()).is_ok());
            }
            ReaderItem::Disconnected { .. }
            | ReaderItem::Reconnecting { .. }
            | ReaderItem::GaveUp { .. } => {
                // Frames are lost until the next connection: the clients
                // go back to the server.
                self.frames = 0;
                self.last_frame = None;
                self.clients.clear();
                if let Some(ended) = &self.ended {
                    let _ = ended.send(());
                }
            }
        }
    }
}
