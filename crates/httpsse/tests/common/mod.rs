//! Helpers shared by the parser tests: a tiny deterministic PRNG, ways of
//! splitting a stream into chunks, and a straightforward reference model of
//! the WHATWG rules to compare the parser against.

#![allow(dead_code)]

use httpsse::{Event, Parser};

/// A fixed-seed generator (splitmix64) so that every run tests the same splits.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// What a whole stream produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub events: Vec<(String, String, String)>,
    pub last_event_id: String,
    pub retry: Option<u64>,
}

fn tuple(e: Event) -> (String, String, String) {
    (e.event, e.data, e.id)
}

/// Feeds `chunks` to a fresh parser.
pub fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut parser = Parser::new();
    let mut events = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |e| events.push(tuple(e)));
    }
    Outcome {
        events,
        last_event_id: parser.last_event_id().to_owned(),
        retry: parser.retry(),
    }
}

/// Splits `input` at random places (also into empty chunks).
pub fn random_split<'a>(input: &'a [u8], rng: &mut Rng) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let take = match rng.below(8) {
            0 => 0,
            1..=5 => 1 + rng.below(4),
            _ => 1 + rng.below(rest.len()),
        }
        .min(rest.len());
        chunks.push(&rest[..take]);
        rest = &rest[take..];
    }
    chunks
}

/// Parses `input` whole, byte by byte, and in `splits` random splits; asserts
/// that all agree and returns the outcome.
pub fn parse_every_way(input: &[u8], splits: usize, rng: &mut Rng) -> Outcome {
    let whole = parse_chunks([input]);
    let bytewise = parse_chunks(input.chunks(1));
    assert_eq!(bytewise, whole, "byte by byte differs for {input:?}");
    for _ in 0..splits {
        let chunks = random_split(input, rng);
        let split = parse_chunks(chunks.iter().copied());
        assert_eq!(split, whole, "split {chunks:?} differs");
    }
    whole
}

/// The rules of the standard written as plainly as possible: decode the whole
/// stream, strip one BOM, cut complete lines, interpret them.
pub fn reference(input: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(input);
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut current));
            }
            '\n' => lines.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    // `current` is an unterminated last line: the end of the stream drops it.
    let mut out = Outcome {
        events: Vec::new(),
        last_event_id: String::new(),
        retry: None,
    };
    let (mut data, mut event_type, mut id_buffer) = (String::new(), String::new(), String::new());
    for line in lines {
        if line.is_empty() {
            out.last_event_id = id_buffer.clone();
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            let kind = if event_type.is_empty() {
                "message".to_owned()
            } else {
                event_type.clone()
            };
            out.events
                .push((kind, std::mem::take(&mut data), out.last_event_id.clone()));
            event_type.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => id_buffer = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                out.retry = Some(value.parse().unwrap_or(u64::MAX));
            }
            _ => {}
        }
    }
    out
}

/// Pieces that random streams are made of: the interesting bytes of the format.
pub const TOKENS: &[&[u8]] = &[
    b"data",
    b"data:",
    b"data: ",
    b"event",
    b"event:",
    b"event: ",
    b"id",
    b"id:",
    b"id: ",
    b"retry:",
    b"retry: ",
    b":",
    b" ",
    b"  ",
    b"\n",
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"x",
    b"ab",
    b"0",
    b"42",
    b"-1",
    b"\0",
    b"\t",
    b"\xEF\xBB\xBF",
    b"\xEF\xBB",
    b"\xEF",
    b"\xFF",
    b"\xC3",
    b"\xA9",
    b"\xC3\xA9",
    b"\xE2\x82\xAC",
    b"\xF0\x9F\x98\x80",
    b"\xF0\x9F",
    b"\xED\xA0\x80",
    b"Data",
    b"{\"type\":\"server.heartbeat\"}",
];

/// A random stream of `pieces` tokens.
pub fn random_stream(rng: &mut Rng, pieces: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..pieces {
        out.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
    }
    out
}

const FIELDS: &[&[u8]] = &[
    b"data",
    b"data",
    b"data",
    b"event",
    b"id",
    b"retry",
    b"",
    b"Data",
    b"\xEF\xBB\xBFdata",
];
const SEPARATORS: &[&[u8]] = &[b": ", b": ", b":", b":  ", b"", b" : "];
const LINE_ENDS: &[&[u8]] = &[b"\n", b"\n", b"\r\n", b"\r"];

/// A random stream made of field lines and blank lines (with some noise),
/// so that most streams dispatch events.
pub fn random_lines(rng: &mut Rng, lines: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..lines {
        match rng.below(10) {
            0..=2 => {}
            3 => out.extend_from_slice(TOKENS[rng.below(TOKENS.len())]),
            _ => {
                out.extend_from_slice(FIELDS[rng.below(FIELDS.len())]);
                out.extend_from_slice(SEPARATORS[rng.below(SEPARATORS.len())]);
                for _ in 0..rng.below(4) {
                    out.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
                }
            }
        }
        out.extend_from_slice(LINE_ENDS[rng.below(LINE_ENDS.len())]);
    }
    out
}
