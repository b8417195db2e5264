//! A client of the supervisor's event relay (`ocm supervise`, see
//! [`manager::RELAY_HELLO`]): the server's `/global/event` frames from a
//! stream the server subscribed long ago, so a prompt sent at once is
//! told from its start, without the wait of a stream of one's own (the
//! server subscribes a new stream only after its first frame).
//!
//! The relay ends the connection when its own stream breaks; the
//! demultiplexer then reads the server's stream itself.

use std::io::{BufRead, BufReader};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use opencode_api::{DisconnectKind, GlobalEvent, StreamItem};

/// How long the relay may take to say which server it follows.
const HELLO_WITHIN: Duration = Duration::from_millis(500);
/// The relay's newest frame may be this old (the server sends a heartbeat
/// every 10 s): an older one may follow a server that hangs.
const MAX_AGE_MS: u64 = 12_000;
/// No line for this long: the relay is taken for gone (the server's
/// heartbeat comes every 10 s).
const STALL: Duration = Duration::from_secs(25);

/// Frames from the relay, read by a thread of its own; dropping it closes
/// the connection and joins the thread.
#[derive(Debug)]
pub(crate) struct RelayStream {
    items: Receiver<StreamItem<GlobalEvent>>,
    socket: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl RelayStream {
    /// Connects to the relay at `socket` when it follows `url`; `notify`
    /// is called after each item is queued. `None` when no relay listens
    /// there, or it follows another server, or its stream is not
    /// subscribed (it closes the connection then), or heard nothing for
    /// [`MAX_AGE_MS`], or it says nothing within [`HELLO_WITHIN`].
    pub(crate) fn connect(
        socket: &Path,
        url: &str,
        notify: impl Fn() + Send + 'static,
    ) -> Option<RelayStream> {
        let stream = UnixStream::connect(socket).ok()?;
        stream.set_read_timeout(Some(HELLO_WITHIN)).ok()?;
        let mut lines = BufReader::new(stream.try_clone().ok()?);
        let mut hello = String::new();
        lines.read_line(&mut hello).ok()?;
        let hello: serde_json::Value = serde_json::from_str(&hello).ok()?;
        let fresh = hello["ageMs"].as_u64().is_some_and(|age| age <= MAX_AGE_MS);
        if hello["relay"] != manager::RELAY_HELLO || hello["url"] != url || !fresh {
            return None;
        }
        stream.set_read_timeout(Some(STALL)).ok()?;
        let (tx, items) = channel();
        // Subscribed: the relay says hello only then.
        tx.send(StreamItem::Connected).ok()?;
        let thread = std::thread::Builder::new()
            .name("turns-relay".into())
            .spawn(move || {
                let mut line = String::new();
                let reason = loop {
                    line.clear();
                    match lines.read_line(&mut line) {
                        Ok(0) => break "the supervisor's event relay closed".to_string(),
                        Ok(_) => {
                            // A frame that does not decode is skipped, as
                            // the server's own stream does.
                            if let Ok(event) = GlobalEvent::parse(line.trim_end()) {
                                let _ = tx.send(StreamItem::Event(event));
                                notify();
                            }
                        }
                        Err(e) => break format!("reading the supervisor's event relay: {e}"),
                    }
                };
                let _ = tx.send(StreamItem::Disconnected {
                    kind: DisconnectKind::Ended,
                    reason,
                });
                notify();
            })
            .ok()?;
        Some(RelayStream {
            items,
            socket: stream,
            thread: Some(thread),
        })
    }

    /// The next item, when one is queued.
    pub(crate) fn next(&self) -> Option<StreamItem<GlobalEvent>> {
        self.items.try_recv().ok()
    }
}

impl Drop for RelayStream {
    fn drop(&mut self) {
        // Wakes the blocked read.
        let _ = self.socket.shutdown(Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
