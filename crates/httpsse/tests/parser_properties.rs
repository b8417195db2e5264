//! Properties of the parser on random and large input: agreement with the
//! plain reference model under any split, no panic on a million random
//! chunks, linear work on a huge event fed byte by byte, and the size limit.

mod common;

use std::time::{Duration, Instant};

use common::{
    Rng, TOKENS, parse_chunks, parse_every_way, random_lines, random_split, random_stream,
    reference,
};
use httpsse::{Error, Event, Parser};

#[test]
fn random_streams_match_the_reference_model_under_any_split() {
    let mut rng = Rng::new(0x5EED_0001);
    let mut events_seen = 0;
    for _ in 0..3000 {
        let size = rng.below(40);
        let input = if rng.below(4) == 0 {
            random_stream(&mut rng, size)
        } else {
            random_lines(&mut rng, size)
        };
        let expected = reference(&input);
        let got = parse_every_way(&input, 6, &mut rng);
        assert_eq!(got, expected, "input {input:?}");
        events_seen += got.events.len();
    }
    // The generator must produce streams that dispatch, or the test shows little.
    assert!(
        events_seen > 1000,
        "only {events_seen} events in the random streams"
    );
}

#[test]
fn a_million_random_chunks_do_not_panic() {
    let mut rng = Rng::new(0x5EED_0002);
    // A pool of random stream bytes, cut into a million small chunks.
    let pool = random_lines(&mut rng, 500_000);
    let mut parser = Parser::new();
    let mut tiny_limit = Parser::with_limit(16);
    let (mut events, mut tiny_events, mut errors) = (0usize, 0usize, 0usize);
    let mut at = 0;
    for _ in 0..1_000_000 {
        let len = rng.below(9);
        if at + len > pool.len() {
            at = 0;
        }
        let chunk = &pool[at..at + len];
        at += len;
        parser.feed(chunk, |_| events += 1);
        if tiny_limit.try_feed(chunk, |_| tiny_events += 1).is_err() {
            errors += 1;
        }
    }
    assert!(events > 10_000, "{events} events");
    assert!(
        tiny_events > 0 && errors > 0,
        "{tiny_events} events, {errors} errors"
    );
}

#[test]
fn random_raw_bytes_do_not_panic_and_split_the_same() {
    let mut rng = Rng::new(0x5EED_0003);
    for _ in 0..500 {
        let len = rng.below(200);
        let input: Vec<u8> = (0..len)
            .map(|_| match rng.below(4) {
                0 => b"\r\n:"[rng.below(3)],
                _ => rng.next_u64() as u8,
            })
            .collect();
        assert_eq!(parse_every_way(&input, 3, &mut rng), reference(&input));
    }
}

/// A 10 MB event fed one byte at a time: with any rescanning of the buffered
/// line this would take hours; linear work takes about a second in debug mode.
#[test]
fn ten_megabyte_event_fed_byte_by_byte_is_linear() {
    const SIZE: usize = 10 * 1024 * 1024;
    let mut input = b"data: ".to_vec();
    input.extend(std::iter::repeat_n(b'x', SIZE));
    input.extend_from_slice(b"\n\n");
    let started = Instant::now();
    let mut parser = Parser::new();
    let mut got = Vec::new();
    for byte in input.chunks(1) {
        parser.feed(byte, |e| got.push(e));
    }
    let took = started.elapsed();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data.len(), SIZE);
    assert!(got[0].data.bytes().all(|b| b == b'x'));
    // A generous bound (quadratic work would take hours), not a speed target.
    assert!(took < Duration::from_secs(120), "took {took:?}");
}

#[test]
fn ten_megabytes_of_short_data_lines_fed_byte_by_byte() {
    let line = b"data: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n";
    let lines = 10 * 1024 * 1024 / line.len();
    let mut input = Vec::with_capacity(lines * line.len() + 2);
    for _ in 0..lines {
        input.extend_from_slice(line);
    }
    input.extend_from_slice(b"\r\n");
    let mut parser = Parser::new();
    let mut got = Vec::new();
    for byte in input.chunks(1) {
        parser.feed(byte, |e| got.push(e));
    }
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data.lines().count(), lines);
}

#[test]
fn a_line_over_the_limit_is_an_error_and_is_dropped() {
    let input = b"data: ok1\n\ndata: 0123456789\n\ndata: ok2\n\n";
    // "data: 0123456789" is 16 bytes; the limit is 15.
    let mut rng = Rng::new(7);
    for chunks in [
        vec![&input[..]],
        input.chunks(1).collect(),
        random_split(input, &mut rng),
    ] {
        let mut parser = Parser::with_limit(15);
        let mut got = Vec::new();
        let mut errors = Vec::new();
        for chunk in chunks {
            if let Err(e) = parser.try_feed(chunk, |e| got.push(e.data)) {
                errors.push(e);
            }
        }
        assert_eq!(got, ["ok1", "ok2"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(matches!(errors[0], Error::LineTooLong { limit: 15 }));
        assert!(errors[0].to_string().contains("15 bytes"), "{}", errors[0]);
    }
    // Exactly at the limit is fine.
    let mut parser = Parser::with_limit(16);
    let mut got = Vec::new();
    parser.try_feed(input, |e| got.push(e.data)).unwrap();
    assert_eq!(got, ["ok1", "0123456789", "ok2"]);
}

#[test]
fn an_event_over_the_limit_is_an_error_and_is_dropped_whole() {
    let input = b"data: 12345\nevent: big\nid: 1\ndata: 12345\ndata: 12345\n\ndata: after\n\n";
    let mut rng = Rng::new(8);
    for chunks in [
        vec![&input[..]],
        input.chunks(1).collect(),
        random_split(input, &mut rng),
    ] {
        let mut parser = Parser::with_limit(16);
        let mut got: Vec<Event> = Vec::new();
        let mut errors = Vec::new();
        for chunk in chunks {
            if let Err(e) = parser.try_feed(chunk, |e| got.push(e)) {
                errors.push(e);
            }
        }
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].event.as_str(), got[0].data.as_str()),
            ("message", "after")
        );
        // Only the data is dropped: the event's id counts as in any event.
        assert_eq!(got[0].id, "1");
        assert_eq!(parser.last_event_id(), "1");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(matches!(errors[0], Error::EventTooLarge { limit: 16 }));
    }
}

#[test]
fn a_line_longer_than_the_default_limit_is_an_error_not_an_allocation() {
    let mut parser = Parser::new();
    let chunk = vec![b'x'; 1024 * 1024];
    let mut errors = 0;
    parser.feed(b"data: ", |_| unreachable!());
    for _ in 0..20 {
        if let Err(e) = parser.try_feed(&chunk, |_| unreachable!()) {
            assert!(matches!(e, Error::LineTooLong { limit } if limit == 16 * 1024 * 1024));
            errors += 1;
        }
    }
    assert_eq!(errors, 1);
    let mut got = Vec::new();
    parser.feed(b"\ndata: next\n\n", |e| got.push(e.data));
    assert_eq!(got, ["next"]);
}

#[test]
fn feed_drops_over_limit_input_silently_and_goes_on() {
    let mut parser = Parser::with_limit(8);
    let mut got = Vec::new();
    parser.feed(b"data: far too long\n\ndata: ok\n\n", |e| got.push(e.data));
    assert_eq!(got, ["ok"]);
    assert_eq!(parser.limit(), 8);
}

#[test]
fn a_resumed_parser_carries_the_last_event_id_until_the_stream_sets_one() {
    let mut parser = Parser::new();
    parser.set_last_event_id("41");
    assert_eq!(parser.last_event_id(), "41");
    let mut got = Vec::new();
    parser.feed(b"data: a\n\nid: 42\ndata: b\n\n", |e| got.push(e.id));
    assert_eq!(got, ["41", "42"]);
    assert_eq!(parser.last_event_id(), "42");
}

#[test]
fn the_captured_opencode_streams_parse_the_same_in_any_split() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/opencode");
    for name in ["event-stream-prompt.sse", "global-event-stream.sse"] {
        let path = dir.join(name);
        // The shared folder sits beside the repository (also in CI): a missing
        // capture is a broken checkout, not a reason to pass.
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read the captured OpenCode stream {}: {e}; the shared folder must sit beside the repository",
                path.display()
            )
        });
        let mut rng = Rng::new(9);
        let got = parse_every_way(&bytes, 20, &mut rng);
        assert_eq!(got, reference(&bytes));
        assert!(!got.events.is_empty());
        for (kind, data, _) in &got.events {
            assert_eq!(kind, "message");
            assert!(data.starts_with('{') && data.ends_with('}'), "{data}");
        }
    }
}

#[test]
fn tokens_cover_every_field_and_line_end() {
    // Guards the random generator against losing its important pieces.
    for needed in [
        &b"data:"[..],
        b"event:",
        b"id:",
        b"retry:",
        b"\r",
        b"\n",
        b"\r\n",
        b"\xEF\xBB\xBF",
    ] {
        assert!(TOKENS.contains(&needed), "{needed:?}");
    }
    assert_eq!(parse_chunks([&b"data: x\n\n"[..]]).events.len(), 1);
}
