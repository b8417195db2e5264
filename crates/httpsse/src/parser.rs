//! The event-stream parser: bytes in, events out, no I/O.
//!
//! It follows the WHATWG HTML standard, section "Server-sent events", the
//! parts "Parsing an event stream" and "Interpreting an event stream".

use crate::Error;

/// The error a [`Parser`] reports: a line or an event over its size limit.
///
/// It is the crate's one error enum; the parser only ever returns its
/// [`Error::LineTooLong`] and [`Error::EventTooLarge`] variants.
pub type ParseError = Error;

/// The default limit on the length of one line and on the data of one event:
/// 16 MiB.
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The most buffer capacity kept after a large line or event is done with.
const KEPT_BUFFER_BYTES: usize = 64 * 1024;

/// The UTF-8 byte order mark, stripped once at the very start of a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Event {
    /// The event type: the last `event:` field of the event, else `"message"`.
    pub event: String,
    /// The `data:` fields joined by `"\n"` (without a trailing newline).
    pub data: String,
    /// The stream's last event ID when the event was dispatched: the value of
    /// the latest `id:` field seen in this event or an earlier one.
    pub id: String,
}

/// Where the parser stands with the byte order mark at the start of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BomState {
    /// At the start of the stream, after this many bytes that match the BOM
    /// (held back until it is known whether they are one).
    Pending(usize),
    /// Past the start of the stream.
    Done,
}

/// An incremental event-stream parser.
///
/// Feed it the bytes of one stream in chunks of any size; it calls back with
/// each event as soon as its blank line arrives. Every split of the same
/// bytes gives the same events, and the work is linear in the input: each
/// byte is looked at a bounded number of times, whatever the chunk sizes.
///
/// Memory is bounded: a line longer than the limit is dropped, an event whose
/// data grows past it is not dispatched (its `id` and `retry` fields still
/// count), and [`Parser::try_feed`] reports both (the limit defaults to
/// [`DEFAULT_MAX_BYTES`]).
///
/// At the end of a stream simply stop feeding: an incomplete event (one whose
/// blank line never came) is discarded, as the standard says.
///
/// ```
/// let mut parser = httpsse::Parser::new();
/// let mut events = Vec::new();
/// parser.feed(b"event: greeting\r\nid: 1\r\ndata: hel", |e| events.push(e));
/// parser.feed(b"lo\r\n\r\n", |e| events.push(e));
/// assert_eq!(events[0].event, "greeting");
/// assert_eq!(events[0].data, "hello");
/// assert_eq!(parser.last_event_id(), "1");
/// ```
#[derive(Debug, Clone)]
pub struct Parser {
    max_bytes: usize,
    bom: BomState,
    /// The start of a line whose end has not arrived yet (raw bytes, so that a
    /// character split between chunks is decoded whole).
    line: Vec<u8>,
    /// The last line ended in a CR at the very end of the input so far: an LF
    /// that starts the next chunk belongs to it.
    after_cr: bool,
    /// The current line went over the limit: its bytes are dropped until its end.
    discarding_line: bool,
    /// The current event went over the limit: its data lines are dropped
    /// until the blank line that ends it, and it is not dispatched.
    discarding_event: bool,
    data: String,
    event_type: String,
    last_event_id_buffer: String,
    /// An `id` field was read since the last dispatch (so the buffer may
    /// differ from `last_event_id`).
    id_seen: bool,
    last_event_id: String,
    retry: Option<u64>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser for a new stream, with the default limit of 16 MiB.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_BYTES)
    }

    /// A parser whose limit on the length of one line, and on the data of one
    /// event, is `max_bytes`.
    pub fn with_limit(max_bytes: usize) -> Self {
        Parser {
            max_bytes,
            bom: BomState::Pending(0),
            line: Vec::new(),
            after_cr: false,
            discarding_line: false,
            discarding_event: false,
            data: String::new(),
            event_type: String::new(),
            last_event_id_buffer: String::new(),
            id_seen: false,
            last_event_id: String::new(),
            retry: None,
        }
    }

    /// The limit on the length of one line and on the data of one event.
    pub fn limit(&self) -> usize {
        self.max_bytes
    }

    /// Starts from a known last event ID, as when a stream resumes after a
    /// reconnection: events dispatched before the stream sends its own `id:`
    /// carry this one.
    pub fn set_last_event_id(&mut self, id: impl Into<String>) {
        self.last_event_id = id.into();
        self.last_event_id_buffer.clone_from(&self.last_event_id);
    }

    /// The reconnection time in milliseconds that the stream asked for with
    /// its latest valid `retry:` field, if any.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The last event ID as of the last dispatch (the last blank line): what a
    /// client sends as `Last-Event-ID` when it reconnects. Empty if none.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Parses the next chunk of the stream and calls `on_event` for each event
    /// it completes.
    ///
    /// A line or event over the limit is dropped without a word; use
    /// [`Parser::try_feed`] to hear about it.
    pub fn feed(&mut self, chunk: &[u8], on_event: impl FnMut(Event)) {
        // The error only reports what was dropped; parsing went on past it.
        let _ = self.try_feed(chunk, on_event);
    }

    /// Parses the next chunk of the stream and calls `on_event` for each event
    /// it completes; reports a line or an event over the limit.
    ///
    /// Parsing does not stop at such an error: the offending line or event is
    /// dropped, the rest of the chunk is parsed, and the parser stays usable.
    /// The error returned is the first one met in this chunk.
    pub fn try_feed(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(Event),
    ) -> Result<(), ParseError> {
        let mut first_error = None;
        let mut rest = chunk;
        if let BomState::Pending(matched) = self.bom {
            let mut matched = matched;
            while matched < BOM.len() {
                match rest.first() {
                    None => {
                        self.bom = BomState::Pending(matched);
                        return Ok(());
                    }
                    Some(&b) if b == BOM[matched] => {
                        matched += 1;
                        rest = &rest[1..];
                    }
                    Some(_) => break,
                }
            }
            self.bom = BomState::Done;
            if matched < BOM.len() {
                // Not a BOM after all: the held bytes are ordinary input.
                self.parse(&BOM[..matched], &mut on_event, &mut first_error);
            }
        }
        self.parse(rest, &mut on_event, &mut first_error);
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Splits `input` into lines and interprets each complete one.
    fn parse(
        &mut self,
        mut input: &[u8],
        on_event: &mut impl FnMut(Event),
        first_error: &mut Option<ParseError>,
    ) {
        while !input.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if input[0] == b'\n' {
                    input = &input[1..];
                    continue;
                }
            }
            let Some(end) = memchr::memchr2(b'\n', b'\r', input) else {
                self.append_partial_line(input, first_error);
                return;
            };
            self.after_cr = input[end] == b'\r';
            let (head, tail) = (&input[..end], &input[end + 1..]);
            input = tail;
            if self.discarding_line {
                self.discarding_line = false;
                continue;
            }
            if self.line.is_empty() {
                // The whole line is in this chunk: interpret it in place.
                if head.len() > self.max_bytes {
                    record(first_error, self.line_too_long());
                    continue;
                }
                self.interpret_line(head, on_event, first_error);
            } else {
                if self.line.len() + head.len() > self.max_bytes {
                    self.line.clear();
                    record(first_error, self.line_too_long());
                    continue;
                }
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                self.interpret_line(&line, on_event, first_error);
                let used = line.len();
                line.clear();
                // Keep the allocation for lines of this size, but not one
                // far larger than the lines the stream now sends.
                if line.capacity() > (2 * used).max(KEPT_BUFFER_BYTES) {
                    line.shrink_to(used.max(KEPT_BUFFER_BYTES));
                }
                self.line = line;
            }
        }
    }

    /// Keeps the start of a line whose end is in a later chunk.
    fn append_partial_line(&mut self, bytes: &[u8], first_error: &mut Option<ParseError>) {
        if self.discarding_line {
            return;
        }
        if self.line.len() + bytes.len() > self.max_bytes {
            self.line.clear();
            self.line.shrink_to(KEPT_BUFFER_BYTES);
            self.discarding_line = true;
            record(first_error, self.line_too_long());
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn line_too_long(&self) -> ParseError {
        Error::LineTooLong {
            limit: self.max_bytes,
        }
    }

    /// Interprets one complete line (without its terminator).
    fn interpret_line(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(Event),
        first_error: &mut Option<ParseError>,
    ) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" if self.discarding_event => {}
            b"data" => {
                // One allocation of the right size for the common one-line event.
                self.data.reserve(value.len() + 1);
                push_lossy(&mut self.data, value);
                self.data.push('\n');
                if self.data.len() > self.max_bytes {
                    self.data.clear();
                    self.data.shrink_to(KEPT_BUFFER_BYTES);
                    self.event_type.clear();
                    self.discarding_event = true;
                    record(
                        first_error,
                        Error::EventTooLarge {
                            limit: self.max_bytes,
                        },
                    );
                }
            }
            b"event" => {
                self.event_type.clear();
                push_lossy(&mut self.event_type, value);
            }
            b"id" if memchr::memchr(0, value).is_none() => {
                self.last_event_id_buffer.clear();
                push_lossy(&mut self.last_event_id_buffer, value);
                self.id_seen = true;
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let millis = value.iter().fold(0u64, |n, &d| {
                    n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                self.retry = Some(millis);
            }
            _ => {}
        }
    }

    /// The blank line: "dispatch the event" of the standard.
    fn dispatch(&mut self, on_event: &mut impl FnMut(Event)) {
        if self.id_seen {
            self.id_seen = false;
            self.last_event_id.clone_from(&self.last_event_id_buffer);
        }
        if self.discarding_event {
            // The end of an event dropped for its size: its data never comes
            // out, while its `id` and `retry` count as in any other event.
            self.discarding_event = false;
            self.data.clear();
            self.event_type.clear();
            return;
        }
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        // Every data line appended an LF; the standard removes the last one.
        self.data.pop();
        let event = if self.event_type.is_empty() {
            String::from("message")
        } else {
            std::mem::take(&mut self.event_type)
        };
        on_event(Event {
            event,
            data: std::mem::take(&mut self.data),
            id: self.last_event_id.clone(),
        });
    }
}

/// Appends `bytes` decoded as UTF-8, with U+FFFD for each maximal invalid
/// subpart (the rule of the WHATWG "UTF-8 decode" and `String::from_utf8_lossy`).
fn push_lossy(dst: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => dst.push_str(text),
        Err(_) => {
            for chunk in bytes.utf8_chunks() {
                dst.push_str(chunk.valid());
                if !chunk.invalid().is_empty() {
                    dst.push(char::REPLACEMENT_CHARACTER);
                }
            }
        }
    }
}

fn record(first_error: &mut Option<ParseError>, error: ParseError) {
    if first_error.is_none() {
        *first_error = Some(error);
    }
}
