//! The crate's one error type.

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A line of the event stream is longer than the parser's limit; it was dropped.
    #[error("an event-stream line is longer than the limit of {limit} bytes; it was dropped")]
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The data of one event grew past the parser's limit; the event was dropped.
    #[error("an event's data is larger than the limit of {limit} bytes; the event was dropped")]
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The reader was given a URL it cannot connect to.
    #[error("invalid event-stream URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The reader was given a header that cannot be sent.
    #[error("invalid header {name:?} for the event stream at {url}: {reason}")]
    InvalidHeader {
        /// The URL of the stream.
        url: String,
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The reader's thread could not be started.
    #[error("cannot start the reader thread for the event stream at {url}: {source}")]
    Spawn {
        /// The URL of the stream.
        url: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}
