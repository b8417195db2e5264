//! Server-Sent Events for a synchronous program: a conformant event-stream
//! parser, and a reader thread that keeps a stream open and reconnects.
//!
//! OpenCode reports everything through one event stream, so a stream that is
//! mis-split, stalls or drops means lost turns and hung callers. This crate
//! has two parts:
//!
//! - [`Parser`]: bytes in, [`Event`]s out, no I/O. It implements the WHATWG
//!   HTML rules for parsing and interpreting an event stream exactly (UTF-8
//!   decoding with U+FFFD, one leading BOM, CRLF/LF/CR line ends even when a CR
//!   and its LF arrive in different chunks, `data`/`event`/`id`/`retry`, the
//!   last event ID). Any split of the same bytes gives the same events, the
//!   work is linear in the input, and a line or event over a limit (16 MiB by
//!   default) is an error, not an out-of-memory.
//! - [`Reader`]: connects to a URL with [`ureq`] on a thread it owns and
//!   delivers [`ReaderItem`]s on a channel. It reconnects with exponential
//!   backoff and jitter (never sooner than [`MIN_RECONNECT_DELAY`]), sends
//!   `Last-Event-ID`, treats a silent connection as dead, counts a stream
//!   that ends at once without an event as a failure, can give up after a
//!   number of failures, and stops promptly (even in the middle of a blocked
//!   read) when dropped.
//!
//! # Example
//!
//! Parsing bytes, in whatever chunks they come:
//!
//! ```
//! use httpsse::Parser;
//!
//! let mut parser = Parser::new();
//! let mut events = Vec::new();
//! for chunk in [&b"data: {\"type\":\"server.connected\"}\r"[..], b"\n\r\nda", b"ta: 2\n\n"] {
//!     parser.feed(chunk, |event| events.push(event));
//! }
//! assert_eq!(events.len(), 2);
//! assert_eq!(events[0].event, "message");
//! assert_eq!(events[0].data, r#"{"type":"server.connected"}"#);
//! assert_eq!(events[1].data, "2");
//! ```
//!
//! Following a server's stream:
//!
//! ```no_run
//! use std::time::Duration;
//! use httpsse::{Reader, ReaderConfig, ReaderItem};
//!
//! let config = ReaderConfig::new("http://127.0.0.1:4096/event")
//!     .header("x-opencode-directory", "%2Fhome%2Fme%2Fproject")
//!     .stall_timeout(Duration::from_secs(30));
//! let reader = Reader::start(config)?;
//! while let Ok(item) = reader.recv_timeout(Duration::from_secs(60)) {
//!     match item {
//!         ReaderItem::Event(event) => println!("{}", event.data),
//!         ReaderItem::GaveUp { reason } => { eprintln!("{reason}"); break; }
//!         other => eprintln!("{other:?}"),
//!     }
//! }
//! reader.stop(); // also on drop: closes the connection and joins the thread
//! # Ok::<(), httpsse::Error>(())
//! ```

mod error;
mod parser;
mod reader;

pub use error::Error;
pub use parser::{DEFAULT_MAX_BYTES, Event, ParseError, Parser};
pub use reader::{MIN_RECONNECT_DELAY, Notify, Reader, ReaderConfig, ReaderItem};
