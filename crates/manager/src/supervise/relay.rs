//! The event relay of a supervised server: the server's `/global/event`
//! frames, already subscribed, to local clients over a unix socket in the
//! project's state folder (`events.sock`, see [`relay_socket`]).
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
//! does not take its frames within [`CLIENT_WRITE`] is closed. The socket
//! is the owner's only: the state folder is `0700`.
//!
//! Threads: one reading the server's stream (an `httpsse` reader), one forwarding its
//! frames, one accepting clients; dropping the relay stops and joins them
//! and removes the socket.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opencode_api::{FrameItem as ReaderItem, FrameReader as Reader, StreamConfig};
use procutil::waker::Waker;
use procutil::watch::{Watch, WatchEvent};

use crate::{ProjectPaths, USERNAME};

/// The relay socket's name in the project's state folder.
const RELAY_SOCKET: &str = "events.sock";
/// The relay's first line to a client is
/// `{"relay":RELAY_HELLO,"url":URL,"ageMs":N}` (the server it follows,
/// how old its newest frame is); every frame's `data` follows, a line each.
pub const RELAY_HELLO: &str = "ocm-events";
/// How long a client may leave a frame untaken before it is closed.
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

#[derive(Debug, Default)]
struct State {
    clients: Vec<UnixStream>,
    /// A frame after `server.connected` came on the current connection.
    subscribed: bool,
    /// Frames on the current connection.
    frames: u64,
    /// The reader queued something, or the relay stops.
    woken: bool,
    /// When the last frame came.
    last_frame: Option<Instant>,
    /// Clients taken since the relay started.
    served: u64,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub(crate) struct Relay {
    path: PathBuf,
    /// The socket's inode: a later relay's socket at the same path is left.
    inode: u64,
    /// Wakes the accepting thread.
    stop: Arc<Waker>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Listens on `path` (a socket left there by an earlier relay is
    /// replaced; any other file is an error) and follows `url`'s stream.
    pub(crate) fn start(path: &Path, url: &str, password: Option<&str>) -> std::io::Result<Relay> {
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
        let shared = Arc::new(Shared::default());
        let woken = Arc::clone(&shared);
        let mut client = opencode_api::Client::builder(url).connect_timeout(CONNECT);
        if let Some(password) = password {
            client = client.basic_auth(USERNAME, password);
        }
        let config = StreamConfig::new()
            .stall_timeout(STALL)
            .connect_timeout(CONNECT)
            .max_delay(Duration::from_secs(5))
            .notify(move || {
                lock(&woken).woken = true;
                woken.changed.notify_all();
            });
        let reader = client
            .build()
            .and_then(|client| client.global_event_frames_with(&config))
            .map_err(std::io::Error::other)?;
        let url = url.to_string();
        let stop = Arc::new(Waker::new().map_err(std::io::Error::other)?);
        let accept_stop = Arc::clone(&stop);
        let mut relay = Relay {
            path: path.to_path_buf(),
            inode,
            stop,
            shared: Arc::clone(&shared),
            threads: Vec::new(),
        };
        let forward_shared = Arc::clone(&shared);
        relay.threads.push(
            std::thread::Builder::new()
                .name("ocm-relay-forward".into())
                .spawn(move || forward(reader, &forward_shared))?,
        );
        relay.threads.push(
            std::thread::Builder::new()
                .name("ocm-relay-accept".into())
                .spawn(move || accept(listener, &shared, &url, &accept_stop))?,
        );
        Ok(relay)
    }

    /// The clients the relay has taken.
    pub(crate) fn clients_served(&self) -> u64 {
        lock(&self.shared).served
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        lock(&self.shared).woken = true;
        self.shared.changed.notify_all();
        self.stop.wake();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Takes clients: a hello (the server's URL, the age of the newest frame)
/// and a place among the clients when the stream is subscribed, else a
/// closed connection. Waits in a poll on the listener and `stop` (not on
/// the socket's path, which may have been deleted).
fn accept(listener: UnixListener, shared: &Shared, url: &str, stop: &Waker) {
    let mut watch = Watch::new();
    let incoming = match (
        listener.set_nonblocking(true),
        watch.add_fd(stop),
        watch.add_fd(&listener),
    ) {
        (Ok(()), Ok(_), Ok(token)) => token,
        _ => return,
    };
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        match watch.wait(Instant::now() + Duration::from_secs(3600)) {
            Ok(WatchEvent::Readable { token }) if token == incoming => {}
            Ok(_) => continue,
            // Not expected; a pause keeps a broken poll from spinning.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        // Accepted connections block (with a write timeout), whatever the
        // listener is.
        while let Ok((mut client, _)) = listener.accept() {
            let mut state = lock(shared);
            if !state.subscribed || client.set_nonblocking(false).is_err() {
                continue;
            }
            let age = state
                .last_frame
                .map_or(u128::MAX, |t| t.elapsed().as_millis());
            let hello =
                serde_json::json!({ "relay": RELAY_HELLO, "url": url, "ageMs": age as u64 });
            if client.set_write_timeout(Some(CLIENT_WRITE)).is_ok()
                && client.write_all(format!("{hello}\n").as_bytes()).is_ok()
            {
                state.clients.push(client);
                state.served += 1;
            }
        }
    }
}

/// Hands every frame of the stream to every client, in order.
fn forward(reader: Reader, shared: &Shared) {
    loop {
        {
            let mut state = lock(shared);
            while !state.woken && !shared.stop.load(Ordering::SeqCst) {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            state.woken = false;
        }
        if shared.stop.load(Ordering::SeqCst) {
            reader.stop();
            return;
        }
        while let Some(item) = reader.try_recv() {
            let mut state = lock(shared);
            match item {
                ReaderItem::Connected => {
                    state.frames = 0;
                    state.subscribed = false;
                }
                ReaderItem::Event(event) => {
                    state.frames += 1;
                    state.last_frame = Some(Instant::now());
                    // The first frame is `server.connected`; the stream is
                    // subscribed once it has been read on, which a later
                    // frame proves.
                    state.subscribed = state.frames > 1;
                    // One document a line: a frame's `data` lines are
                    // joined by newlines, which JSON takes as spaces.
                    let line = format!("{}\n", event.data.replace('\n', " "));
                    state
                        .clients
                        .retain_mut(|client| client.write_all(line.as_bytes()).is_ok());
                }
                ReaderItem::Disconnected { .. }
                | ReaderItem::Reconnecting { .. }
                | ReaderItem::GaveUp { .. } => {
                    // Frames are lost until the next connection: the
                    // clients go back to the server.
                    state.subscribed = false;
                    state.clients.clear();
                }
            }
        }
    }
}
