//! Feeds arbitrary bytes to the parser, whole and in chunks chosen by the
//! input itself, and with a tiny size limit. It must never panic, and every
//! split must give the same events, last event ID and retry.
//!
//! Run: `cargo +nightly fuzz run parse` in crates/httpsse.

#![no_main]

use httpsse::{Event, Parser};
use libfuzzer_sys::fuzz_target;

type Outcome = (Vec<Event>, String, Option<u64>);

fn parse<'a>(parser: &mut Parser, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut events = Vec::new();
    for chunk in chunks {
        // Over-limit input is reported and dropped; parsing goes on either way.
        let _ = parser.try_feed(chunk, |e| events.push(e));
    }
    (events, parser.last_event_id().to_owned(), parser.retry())
}

/// Cuts `input` into chunks whose sizes come from `seed` (1 to 16 bytes, and
/// now and then an empty chunk).
fn split(input: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 0x100;
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let take = ((state % 17) as usize).min(rest.len());
        chunks.push(&rest[..take]);
        rest = &rest[take..];
    }
    chunks
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = parse(&mut Parser::new(), [input]);
    let bytewise = parse(&mut Parser::new(), input.chunks(1));
    let chunked = parse(&mut Parser::new(), split(input, seed));
    assert_eq!(whole, bytewise);
    assert_eq!(whole, chunked);

    let limit = usize::from(seed % 32);
    let small_whole = parse(&mut Parser::with_limit(limit), [input]);
    let small_chunked = parse(
        &mut Parser::with_limit(limit),
        split(input, seed.rotate_left(3)),
    );
    assert_eq!(small_whole, small_chunked);
});
