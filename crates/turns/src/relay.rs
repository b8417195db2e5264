//! A client of a server's event relay (the supervisor's, or `ocm relay`'s;
//! see [`manager::RELAY_HELLO`]): the server's `/global/event` frames from a
//! stream the server subscribed long ago, so a prompt sent at once is
//! told from its start, without the wait of a stream of one's own (the
//! server subscribes a new stream only after its first frame).
//!
//! The relay ends the connection when its own stream breaks; the
//! demultiplexer then reads the server's stream itself.

use std::io::BufRead;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use opencode_api::{DisconnectKind, GlobalEvent, StreamItem};

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
    /// Connects to the relay at `socket` when it follows `url` (see
    /// [`manager::connect_relay`] for when it does not); `notify` is
    /// called after each item is queued.
    pub(crate) fn connect(
        socket: &Path,
        url: &str,
        notify: impl Fn() + Send + 'static,
    ) -> Option<RelayStream> {
        let mut lines = manager::connect_relay(socket, url)?;
        let stream = lines.get_ref().try_clone().ok()?;
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
                        Ok(0) => break "the event relay closed".to_string(),
                        Ok(_) => {
                            // A frame that does not decode is skipped, as
                            // the server's own stream does.
                            if let Ok(event) = GlobalEvent::parse(line.trim_end()) {
                                let _ = tx.send(StreamItem::Event(event));
                                notify();
                            }
                        }
                        Err(e) => break format!("reading the event relay: {e}"),
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
