//! Conformance of the parser to the WHATWG HTML event-stream rules.
//!
//! Each case is written from the rules, gives the events, the final last event
//! ID and the final reconnection time, and is parsed whole, byte by byte and in
//! 40 random splits; all must give exactly the expected outcome. The plain
//! reference model used by the randomized tests must agree with every case too.

mod common;

use common::{Outcome, Rng, parse_every_way, reference};

fn check(
    name: &str,
    input: &[u8],
    events: &[(&str, &str, &str)],
    last_id: &str,
    retry: Option<u64>,
) {
    let expected = Outcome {
        events: events
            .iter()
            .map(|(e, d, i)| ((*e).to_owned(), (*d).to_owned(), (*i).to_owned()))
            .collect(),
        last_event_id: last_id.to_owned(),
        retry,
    };
    let seed = name.bytes().fold(0xC0FFEE_u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(b.into())
    });
    let mut rng = Rng::new(seed);
    assert_eq!(
        parse_every_way(input, 40, &mut rng),
        expected,
        "parser, case {name}"
    );
    assert_eq!(reference(input), expected, "reference model, case {name}");
}

/// `case!(name, input, [(type, data, id), ...])` with last ID "" and no retry,
/// or `case!(name, input, [...], last_id, retry)`.
macro_rules! case {
    ($name:ident, $input:expr, [$(($e:expr, $d:expr, $i:expr)),* $(,)?]) => {
        case!($name, $input, [$(($e, $d, $i)),*], "", None);
    };
    ($name:ident, $input:expr, [$(($e:expr, $d:expr, $i:expr)),* $(,)?], $last:expr, $retry:expr) => {
        #[test]
        fn $name() {
            check(stringify!($name), $input, &[$(($e, $d, $i)),*], $last, $retry);
        }
    };
}

// Dispatch and the data buffer.
case!(
    one_data_line,
    b"data: hello\n\n",
    [("message", "hello", "")]
);
case!(
    two_data_lines_join_with_lf,
    b"data: a\ndata: b\n\n",
    [("message", "a\nb", "")]
);
case!(
    three_events,
    b"data: 1\n\ndata: 2\n\ndata: 3\n\n",
    [
        ("message", "1", ""),
        ("message", "2", ""),
        ("message", "3", "")
    ]
);
case!(
    data_without_colon_is_an_empty_line_of_data,
    b"data\n\n",
    [("message", "", "")]
);
case!(data_with_empty_value, b"data:\n\n", [("message", "", "")]);
case!(
    two_empty_data_lines_give_one_lf,
    b"data\ndata\n\n",
    [("message", "\n", "")]
);
case!(
    only_the_last_lf_is_removed,
    b"data: a\ndata:\n\n",
    [("message", "a\n", "")]
);
case!(blank_lines_alone_dispatch_nothing, b"\n\n\n\n", []);
case!(
    extra_blank_lines_between_events,
    b"data: a\n\n\n\ndata: b\n\n",
    [("message", "a", ""), ("message", "b", "")]
);
case!(
    json_payload,
    b"data: {\"id\":\"evt_1\",\"type\":\"server.connected\",\"properties\":{}}\n\n",
    [(
        "message",
        "{\"id\":\"evt_1\",\"type\":\"server.connected\",\"properties\":{}}",
        ""
    )]
);
case!(
    nul_in_data_is_kept,
    b"data: a\0b\n\n",
    [("message", "a\0b", "")]
);
case!(
    data_value_keeps_its_colons,
    b"data: a:b: c\n\n",
    [("message", "a:b: c", "")]
);

// Field and value split.
case!(no_space_after_colon, b"data:x\n\n", [("message", "x", "")]);
case!(
    only_one_leading_space_removed,
    b"data:  x\n\n",
    [("message", " x", "")]
);
case!(
    trailing_spaces_kept,
    b"data: x  \n\n",
    [("message", "x  ", "")]
);
case!(
    tab_is_not_a_space,
    b"data:\tx\n\n",
    [("message", "\tx", "")]
);
case!(field_names_are_case_sensitive, b"Data: x\nDATA: y\n\n", []);
case!(space_before_colon_makes_another_field, b"data : x\n\n", []);
case!(leading_space_makes_another_field, b" data: x\n\n", []);
case!(
    unknown_fields_are_ignored,
    b"foo: bar\ndata: x\nbaz\n\n",
    [("message", "x", "")]
);
case!(unknown_field_alone_dispatches_nothing, b"foo: bar\n\n", []);

// Comments.
case!(
    comment_line_ignored,
    b": hello\ndata: x\n\n",
    [("message", "x", "")]
);
case!(comments_only, b": a\n: b\n:\n\n", []);
case!(comment_that_looks_like_a_field, b":data: x\n\n", []);
case!(
    comment_between_data_lines,
    b"data: a\n: note\ndata: b\n\n",
    [("message", "a\nb", "")]
);

// The event type.
case!(
    event_type_is_used,
    b"event: add\ndata: 1\n\n",
    [("add", "1", "")]
);
case!(
    event_type_resets_after_dispatch,
    b"event: add\ndata: 1\n\ndata: 2\n\n",
    [("add", "1", ""), ("message", "2", "")]
);
case!(
    last_event_field_wins,
    b"event: a\nevent: b\ndata: x\n\n",
    [("b", "x", "")]
);
case!(
    empty_event_type_means_message,
    b"event:\ndata: x\n\n",
    [("message", "x", "")]
);
case!(
    event_without_colon_means_message,
    b"event: a\nevent\ndata: x\n\n",
    [("message", "x", "")]
);
case!(
    explicit_message_type,
    b"event: message\ndata: x\n\n",
    [("message", "x", "")]
);
case!(
    empty_data_resets_event_type,
    b"event: a\n\ndata: x\n\n",
    [("message", "x", "")]
);
case!(
    unicode_event_type,
    b"event: caf\xC3\xA9\ndata: x\n\n",
    [("caf\u{e9}", "x", "")]
);
case!(
    event_after_data_counts,
    b"data: x\nevent: late\n\n",
    [("late", "x", "")]
);

// The last event ID.
case!(
    id_is_given_to_the_event,
    b"id: 1\ndata: x\n\n",
    [("message", "x", "1")],
    "1",
    None
);
case!(
    id_persists_across_events,
    b"id: 1\ndata: a\n\ndata: b\n\n",
    [("message", "a", "1"), ("message", "b", "1")],
    "1",
    None
);
case!(
    id_changes,
    b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n",
    [("message", "a", "1"), ("message", "b", "2")],
    "2",
    None
);
case!(
    id_with_nul_is_ignored,
    b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
    [("message", "a", "1"), ("message", "b", "1")],
    "1",
    None
);
case!(
    empty_id_resets,
    b"id: 1\ndata: a\n\nid\ndata: b\n\n",
    [("message", "a", "1"), ("message", "b", "")],
    "",
    None
);
case!(
    empty_id_with_colon_resets,
    b"id: 1\ndata: a\n\nid:\ndata: b\n\n",
    [("message", "a", "1"), ("message", "b", "")],
    "",
    None
);
case!(
    id_without_data_still_sets_last_id,
    b"id: 7\n\n",
    [],
    "7",
    None
);
case!(
    id_of_an_incomplete_event_is_not_committed,
    b"id: 1\ndata: a\n\nid: 2\ndata: b\n",
    [("message", "a", "1")],
    "1",
    None
);
case!(
    id_keeps_inner_spaces,
    b"id:  a b \ndata: x\n\n",
    [("message", "x", " a b ")],
    " a b ",
    None
);
case!(
    id_after_data_in_same_event_counts,
    b"data: x\nid: 9\n\n",
    [("message", "x", "9")],
    "9",
    None
);
case!(
    id_with_invalid_utf8,
    b"id: \xFF\ndata: x\n\n",
    [("message", "x", "\u{FFFD}")],
    "\u{FFFD}",
    None
);

// The reconnection time.
case!(
    retry_sets_reconnection_time,
    b"retry: 2500\n\n",
    [],
    "",
    Some(2500)
);
case!(retry_without_space, b"retry:10\n\n", [], "", Some(10));
case!(retry_zero, b"retry: 0\n\n", [], "", Some(0));
case!(retry_with_letters_ignored, b"retry: 1a\n\n", [], "", None);
case!(retry_negative_ignored, b"retry: -1\n\n", [], "", None);
case!(
    retry_with_trailing_space_ignored,
    b"retry: 10 \n\n",
    [],
    "",
    None
);
case!(
    retry_with_two_leading_spaces_ignored,
    b"retry:  10\n\n",
    [],
    "",
    None
);
case!(retry_empty_ignored, b"retry:\n\nretry\n\n", [], "", None);
case!(retry_decimal_point_ignored, b"retry: 1.5\n\n", [], "", None);
case!(
    retry_invalid_keeps_previous,
    b"retry: 100\nretry: x\n\n",
    [],
    "",
    Some(100)
);
case!(
    retry_latest_wins,
    b"retry: 100\nretry: 200\n\n",
    [],
    "",
    Some(200)
);
case!(
    retry_huge_saturates,
    b"retry: 99999999999999999999999\n\n",
    [],
    "",
    Some(u64::MAX)
);
case!(retry_applies_without_blank_line, b"retry: 30", [], "", None);
case!(
    retry_applies_at_its_line_end,
    b"retry: 30\n",
    [],
    "",
    Some(30)
);
case!(
    retry_does_not_dispatch,
    b"retry: 5\ndata: x\n\n",
    [("message", "x", "")],
    "",
    Some(5)
);

// Line ends.
case!(
    crlf_line_ends,
    b"data: a\r\ndata: b\r\n\r\n",
    [("message", "a\nb", "")]
);
case!(
    cr_line_ends,
    b"data: a\rdata: b\r\r",
    [("message", "a\nb", "")]
);
case!(
    mixed_line_ends,
    b"data: a\rdata: b\ndata: c\r\n\n",
    [("message", "a\nb\nc", "")]
);
case!(
    cr_cr_is_two_lines,
    b"data: a\r\rdata: b\r\r",
    [("message", "a", ""), ("message", "b", "")]
);
case!(
    lf_then_crlf_is_two_lines,
    b"data: a\n\r\n",
    [("message", "a", "")]
);
case!(
    crlf_then_lf_is_two_lines,
    b"data: a\r\n\n",
    [("message", "a", "")]
);
case!(lf_cr_is_two_lines, b"data: a\n\r", [("message", "a", "")]);
case!(
    cr_at_end_ends_the_line,
    b"data: a\r\r",
    [("message", "a", "")]
);
case!(
    crlf_crlf_events,
    b"event: x\r\nid: 3\r\ndata: y\r\n\r\ndata: z\r\n\r\n",
    [("x", "y", "3"), ("message", "z", "3")],
    "3",
    None
);
case!(
    lf_cr_lf_is_two_lines_not_three,
    b"data: a\n\r\ndata: b\n\n",
    [("message", "a", ""), ("message", "b", "")]
);

// The end of the stream.
case!(
    incomplete_event_is_discarded,
    b"data: a\n\ndata: b\n",
    [("message", "a", "")]
);
case!(
    unterminated_last_line_is_discarded,
    b"data: a\n\ndata: b",
    [("message", "a", "")]
);
case!(unterminated_blank_line_never_comes, b"data: a\n", []);
case!(empty_stream, b"", []);

// The byte order mark.
case!(
    leading_bom_is_stripped,
    b"\xEF\xBB\xBFdata: a\n\n",
    [("message", "a", "")]
);
case!(
    only_one_bom_is_stripped,
    b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n",
    []
);
case!(
    bom_after_start_is_content,
    b"data: a\n\n\xEF\xBB\xBFdata: b\n\n",
    [("message", "a", "")]
);
case!(
    bom_in_a_value_is_kept,
    b"data: \xEF\xBB\xBFa\n\n",
    [("message", "\u{FEFF}a", "")]
);
case!(stream_of_just_a_bom, b"\xEF\xBB\xBF", []);
case!(partial_bom_is_content, b"\xEF\xBBdata: a\n\n", []);
case!(
    partial_bom_line_then_event,
    b"\xEF\xBB\ndata: a\n\n",
    [("message", "a", "")]
);
case!(
    bom_then_blank_line,
    b"\xEF\xBB\xBF\ndata: a\n\n",
    [("message", "a", "")]
);
case!(
    bom_then_comment,
    b"\xEF\xBB\xBF: hi\ndata: a\n\n",
    [("message", "a", "")]
);

// UTF-8 decoding.
case!(
    multibyte_characters,
    b"data: \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\n\n",
    [("message", "\u{e9}\u{20ac}\u{1F600}", "")]
);
case!(
    invalid_byte_is_replaced,
    b"data: a\xFFb\n\n",
    [("message", "a\u{FFFD}b", "")]
);
case!(
    truncated_sequence_is_one_replacement,
    b"data: a\xE2\x82b\n\n",
    [("message", "a\u{FFFD}b", "")]
);
case!(
    truncated_sequence_before_line_end,
    b"data: a\xE2\x82\ndata: b\n\n",
    [("message", "a\u{FFFD}\nb", "")]
);
case!(
    overlong_encoding_is_two_replacements,
    b"data: \xC0\x80\n\n",
    [("message", "\u{FFFD}\u{FFFD}", "")]
);
case!(
    surrogate_is_three_replacements,
    b"data: \xED\xA0\x80\n\n",
    [("message", "\u{FFFD}\u{FFFD}\u{FFFD}", "")]
);
case!(
    lone_continuation_bytes,
    b"data: \x80\x80\n\n",
    [("message", "\u{FFFD}\u{FFFD}", "")]
);
case!(
    truncated_four_byte_then_ascii,
    b"data: \xF0\x9F\x98x\n\n",
    [("message", "\u{FFFD}x", "")]
);
case!(invalid_bytes_in_field_name, b"da\xFFta: x\n\n", []);
case!(
    invalid_event_type_bytes,
    b"event: \xFE\ndata: x\n\n",
    [("\u{FFFD}", "x", "")]
);
