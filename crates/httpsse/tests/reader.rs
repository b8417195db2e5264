//! The reader against a scripted local server: events, headers, reconnection
//! after a close, a stall, a 500 and a wrong content type, the backoff and its
//! floor, streams that end without an event counting as failures, giving up,
//! and stopping promptly wherever the thread is blocked.

mod server;

use std::time::{Duration, Instant};

use httpsse::{Error, Event, MIN_RECONNECT_DELAY, Reader, ReaderConfig, ReaderItem};
use server::{Reply, TestServer};

/// The longest any single step may take before the test fails (an upper
/// bound against hangs, not a speed target).
const PATIENCE: Duration = Duration::from_secs(10);

fn next(reader: &Reader) -> ReaderItem {
    match reader.recv_timeout(PATIENCE) {
        Ok(item) => item,
        Err(e) => panic!("no item from the reader within {PATIENCE:?}: {e:?}"),
    }
}

fn expect_connected(reader: &Reader) {
    match next(reader) {
        ReaderItem::Connected => {}
        other => panic!("expected Connected, got {other:?}"),
    }
}

fn expect_event(reader: &Reader) -> Event {
    match next(reader) {
        ReaderItem::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn expect_disconnected(reader: &Reader) -> String {
    match next(reader) {
        ReaderItem::Disconnected { reason } => reason,
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

fn expect_reconnecting(reader: &Reader) -> (u32, Duration) {
    match next(reader) {
        ReaderItem::Reconnecting { attempt, delay } => (attempt, delay),
        other => panic!("expected Reconnecting, got {other:?}"),
    }
}

/// The delay of attempt `attempt` from `base` (at least the floor): doubled
/// per attempt, then jittered down by at most a quarter, but never under the
/// floor.
fn assert_delay(delay: Duration, base_ms: u64, attempt: u32) {
    assert!(Duration::from_millis(base_ms) >= MIN_RECONNECT_DELAY);
    let full = Duration::from_millis(base_ms << (attempt - 1));
    let low = full.mul_f64(0.75).max(MIN_RECONNECT_DELAY);
    assert!(
        delay <= full && delay >= low,
        "attempt {attempt}: delay {delay:?} outside [{low:?}, {full:?}]"
    );
}

/// The shortest delays the reader allows.
fn quick(url: String) -> ReaderConfig {
    ReaderConfig::new(url)
        .initial_delay(MIN_RECONNECT_DELAY)
        .max_delay(Duration::from_secs(5))
}

/// Every item the reader reports within `window` from now.
fn items_during(reader: &Reader, window: Duration) -> Vec<ReaderItem> {
    let deadline = Instant::now() + window;
    let mut items = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return items;
        }
        match reader.recv_timeout(left) {
            Ok(item) => items.push(item),
            Err(_) => return items,
        }
    }
}

fn count_connected(items: &[ReaderItem]) -> usize {
    items
        .iter()
        .filter(|item| matches!(item, ReaderItem::Connected))
        .count()
}

/// The (attempt, delay) of every Reconnecting item.
fn reconnections(items: &[ReaderItem]) -> Vec<(u32, Duration)> {
    items
        .iter()
        .filter_map(|item| match item {
            ReaderItem::Reconnecting { attempt, delay } => Some((*attempt, *delay)),
            _ => None,
        })
        .collect()
}

#[test]
fn delivers_events_and_sends_the_configured_headers() {
    let server = TestServer::start(vec![Reply::StreamThenHold(
        b": welcome\n\nevent: update\nid: 1\ndata: {\"a\":1}\n\ndata: two\ndata: lines\n\n"
            .to_vec(),
    )]);
    let reader = Reader::start(
        quick(server.url())
            .header("Authorization", "Basic b3BlbmNvZGU6c2VjcmV0")
            .header("x-opencode-directory", "%2Ftmp%2Fproject"),
    )
    .unwrap();
    assert_eq!(reader.url(), server.url());
    expect_connected(&reader);
    let first = expect_event(&reader);
    assert_eq!(
        (first.event.as_str(), first.data.as_str(), first.id.as_str()),
        ("update", "{\"a\":1}", "1")
    );
    let second = expect_event(&reader);
    assert_eq!(
        (
            second.event.as_str(),
            second.data.as_str(),
            second.id.as_str()
        ),
        ("message", "two\nlines", "1")
    );
    let request = server.next_request();
    assert!(
        request.head.starts_with("GET /event HTTP/1.1\r\n"),
        "{}",
        request.head
    );
    assert_eq!(
        request.header("accept").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(
        request.header("authorization").as_deref(),
        Some("Basic b3BlbmNvZGU6c2VjcmV0")
    );
    assert_eq!(
        request.header("x-opencode-directory").as_deref(),
        Some("%2Ftmp%2Fproject")
    );
    assert_eq!(request.header("last-event-id"), None);
    assert!(reader.try_recv().is_none());
}

#[test]
fn reconnects_after_the_server_closes_and_resumes_from_the_last_event_id() {
    let server = TestServer::start(vec![
        Reply::StreamThenClose(b"id: 5\ndata: a\n\n".to_vec()),
        Reply::StreamThenHold(b"data: b\n\n".to_vec()),
    ]);
    let reader = Reader::start(quick(server.url())).unwrap();
    expect_connected(&reader);
    assert_eq!(expect_event(&reader).data, "a");
    let reason = expect_disconnected(&reader);
    assert!(reason.contains("closed the stream"), "{reason}");
    let (attempt, delay) = expect_reconnecting(&reader);
    assert_eq!(attempt, 1);
    assert_delay(delay, 100, 1);
    expect_connected(&reader);
    let b = expect_event(&reader);
    // The new stream sent no id: the event carries the one from before.
    assert_eq!((b.data.as_str(), b.id.as_str()), ("b", "5"));
    assert_eq!(server.next_request().header("last-event-id"), None);
    assert_eq!(
        server.next_request().header("last-event-id").as_deref(),
        Some("5")
    );
}

#[test]
fn a_configured_last_event_id_goes_with_the_first_request() {
    let server = TestServer::start(vec![Reply::StreamThenHold(Vec::new())]);
    let reader = Reader::start(quick(server.url()).last_event_id("evt_41")).unwrap();
    expect_connected(&reader);
    assert_eq!(
        server.next_request().header("last-event-id").as_deref(),
        Some("evt_41")
    );
}

#[test]
fn a_stalled_connection_is_dropped_and_opened_again() {
    let server = TestServer::start(vec![
        Reply::StreamThenHold(b"data: a\n\n".to_vec()),
        Reply::StreamThenHold(b"data: b\n\n".to_vec()),
    ]);
    let reader =
        Reader::start(quick(server.url()).stall_timeout(Duration::from_millis(300))).unwrap();
    expect_connected(&reader);
    assert_eq!(expect_event(&reader).data, "a");
    let reason = expect_disconnected(&reader);
    assert!(
        reason.contains("no data") && reason.contains("300ms"),
        "{reason}"
    );
    assert_eq!(expect_reconnecting(&reader).0, 1);
    expect_connected(&reader);
    assert_eq!(expect_event(&reader).data, "b");
    // The reader closed the stalled connection rather than leaving it open.
    assert!(server.held_connection_closes(0));
}

#[test]
fn a_server_that_never_answers_counts_as_a_failure() {
    let server = TestServer::start(vec![Reply::NoAnswer, Reply::StreamThenHold(Vec::new())]);
    let reader =
        Reader::start(quick(server.url()).stall_timeout(Duration::from_millis(300))).unwrap();
    let reason = expect_disconnected(&reader);
    assert!(reason.contains("no response"), "{reason}");
    assert_eq!(expect_reconnecting(&reader).0, 1);
    expect_connected(&reader);
}

#[test]
fn reconnects_after_a_500_and_reports_the_status() {
    let server = TestServer::start(vec![
        Reply::Status(500, "database on fire"),
        Reply::StreamThenHold(b"data: ok\n\n".to_vec()),
    ]);
    let reader = Reader::start(quick(server.url())).unwrap();
    let reason = expect_disconnected(&reader);
    assert!(
        reason.contains("500") && reason.contains("database on fire"),
        "{reason}"
    );
    assert!(reason.contains(&server.url()), "{reason}");
    assert_eq!(expect_reconnecting(&reader).0, 1);
    expect_connected(&reader);
    assert_eq!(expect_event(&reader).data, "ok");
}

#[test]
fn a_401_is_reported_with_its_status() {
    let server = TestServer::start(vec![Reply::Status(401, "")]);
    let reader = Reader::start(quick(server.url()).max_failures(Some(1))).unwrap();
    let reason = expect_disconnected(&reader);
    assert!(reason.contains("401"), "{reason}");
    match next(&reader) {
        ReaderItem::GaveUp { reason } => assert!(reason.contains("401"), "{reason}"),
        other => panic!("expected GaveUp, got {other:?}"),
    }
}

#[test]
fn a_wrong_content_type_is_a_failure_with_the_status() {
    let server = TestServer::start(vec![
        Reply::ContentType("application/json", "{\"healthy\":true}"),
        Reply::StreamThenHold(Vec::new()),
    ]);
    let reader = Reader::start(quick(server.url())).unwrap();
    let reason = expect_disconnected(&reader);
    assert!(
        reason.contains("200") && reason.contains("application/json"),
        "{reason}"
    );
    assert_eq!(expect_reconnecting(&reader).0, 1);
    expect_connected(&reader);
}

#[test]
fn backoff_grows_with_each_failure_and_resets_after_a_success() {
    let server = TestServer::start(vec![
        Reply::Status(500, ""),
        Reply::Status(503, ""),
        Reply::Status(500, ""),
        Reply::StreamThenClose(b"data: up\n\n".to_vec()),
        Reply::Status(500, ""),
        Reply::StreamThenHold(b"data: up again\n\n".to_vec()),
    ]);
    let reader = Reader::start(
        ReaderConfig::new(server.url())
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(10)),
    )
    .unwrap();
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        expect_disconnected(&reader);
        let (n, delay) = expect_reconnecting(&reader);
        assert_eq!(n, attempt);
        assert_delay(delay, 100, attempt);
        delays.push(delay);
    }
    assert!(delays[0] < delays[1] && delays[1] < delays[2], "{delays:?}");
    expect_connected(&reader);
    assert_eq!(expect_event(&reader).data, "up");
    expect_disconnected(&reader);
    // The success reset the count: back to the first delay.
    let (n, delay) = expect_reconnecting(&reader);
    assert_eq!(n, 1);
    assert_delay(delay, 100, 1);
    expect_disconnected(&reader);
    let (n, delay) = expect_reconnecting(&reader);
    assert_eq!(n, 2);
    assert_delay(delay, 100, 2);
    expect_connected(&reader);
    assert_eq!(expect_event(&reader).data, "up again");
}

#[test]
fn the_delay_never_exceeds_the_cap() {
    let server = TestServer::start(vec![Reply::Status(500, "")]);
    let reader = Reader::start(
        ReaderConfig::new(server.url())
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(300))
            .max_failures(Some(5)),
    )
    .unwrap();
    for attempt in 1..=4u32 {
        expect_disconnected(&reader);
        let (n, delay) = expect_reconnecting(&reader);
        assert_eq!(n, attempt);
        let full = Duration::from_millis((100u64 << (attempt - 1)).min(300));
        assert!(
            delay <= full && delay >= full.mul_f64(0.75).max(MIN_RECONNECT_DELAY),
            "{attempt}: {delay:?}"
        );
    }
    expect_disconnected(&reader);
    assert!(matches!(next(&reader), ReaderItem::GaveUp { .. }));
}

#[test]
fn a_server_retry_field_sets_the_base_delay() {
    let server = TestServer::start(vec![
        Reply::StreamThenClose(b"retry: 150\n\n".to_vec()),
        Reply::Status(500, ""),
        Reply::StreamThenHold(Vec::new()),
    ]);
    // An initial delay of a minute would make the test hang if retry were ignored.
    let reader = Reader::start(
        ReaderConfig::new(server.url())
            .initial_delay(Duration::from_secs(60))
            .max_delay(Duration::from_secs(120)),
    )
    .unwrap();
    expect_connected(&reader);
    expect_disconnected(&reader);
    let (n, delay) = expect_reconnecting(&reader);
    assert_eq!(n, 1);
    assert_delay(delay, 150, 1);
    expect_disconnected(&reader);
    let (n, delay) = expect_reconnecting(&reader);
    assert_eq!(n, 2);
    assert_delay(delay, 150, 2);
    expect_connected(&reader);
}

#[test]
fn gives_up_after_the_configured_number_of_failures() {
    // A port with nothing listening: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/event");
    let reader = Reader::start(quick(url).max_failures(Some(3))).unwrap();
    for attempt in 1..=2 {
        let reason = expect_disconnected(&reader);
        assert!(reason.contains(&port.to_string()), "{reason}");
        assert_eq!(expect_reconnecting(&reader).0, attempt);
    }
    expect_disconnected(&reader);
    match next(&reader) {
        ReaderItem::GaveUp { reason } => {
            assert!(reason.contains("3 consecutive"), "{reason}");
            assert!(reason.contains(&port.to_string()), "{reason}");
        }
        other => panic!("expected GaveUp, got {other:?}"),
    }
    // The thread has ended: the channel says so.
    assert_eq!(reader.recv(), None);
}

#[test]
fn retry_zero_and_an_immediate_close_back_off_instead_of_spinning() {
    // The server sets retry: 0 and ends every stream before any event.
    let server = TestServer::start(vec![Reply::StreamThenClose(b"retry: 0\n\n".to_vec())]);
    let reader = Reader::start(ReaderConfig::new(server.url())).unwrap();
    let window = Duration::from_secs(1);
    let mut items = items_during(&reader, window);
    let in_window = server.connections();
    // The floor and the backoff allow 4 (at 0, 0.1, 0.3, 0.7 s); a tight
    // loop made hundreds. The bound is generous on purpose.
    assert!(
        in_window <= 10,
        "{in_window} connections within {window:?}: {items:#?}"
    );
    // It does keep trying (waiting for events, not for the clock).
    while count_connected(&items) < 3 {
        items.push(next(&reader));
    }
    let waits = reconnections(&items);
    assert!(waits.len() >= 2, "{items:#?}");
    for (i, &(attempt, delay)) in waits.iter().enumerate() {
        // No stream delivered an event, so nothing reset the backoff.
        assert_eq!(attempt, i as u32 + 1, "{waits:?}");
        assert_delay(delay, 100, attempt);
    }
    let reasons: Vec<&String> = items
        .iter()
        .filter_map(|item| match item {
            ReaderItem::Disconnected { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("closed the stream") && r.contains("no event")),
        "{reasons:#?}"
    );
}

#[test]
fn retry_zero_and_an_immediate_close_give_up_after_max_failures() {
    let server = TestServer::start(vec![Reply::StreamThenClose(b"retry: 0\n\n".to_vec())]);
    let reader = Reader::start(ReaderConfig::new(server.url()).max_failures(Some(3))).unwrap();
    for attempt in 1..=2 {
        expect_connected(&reader);
        let reason = expect_disconnected(&reader);
        assert!(reason.contains("no event"), "{reason}");
        let (n, delay) = expect_reconnecting(&reader);
        assert_eq!(n, attempt);
        assert!(delay >= MIN_RECONNECT_DELAY, "{delay:?}");
    }
    expect_connected(&reader);
    expect_disconnected(&reader);
    match next(&reader) {
        ReaderItem::GaveUp { reason } => {
            assert!(reason.contains("3 consecutive"), "{reason}");
            assert!(reason.contains("no event"), "{reason}");
        }
        other => panic!("expected GaveUp, got {other:?}"),
    }
    assert_eq!(reader.recv(), None);
    assert_eq!(server.connections(), 3);
}

#[test]
fn a_server_that_always_closes_at_once_is_given_up_on() {
    let server = TestServer::start(vec![Reply::StreamThenClose(Vec::new())]);
    // A stream must last the initial delay to count as working without
    // events; this one is long enough that a busy machine cannot stretch an
    // immediate close past it.
    let reader = Reader::start(
        ReaderConfig::new(server.url())
            .initial_delay(Duration::from_millis(250))
            .max_failures(Some(3)),
    )
    .unwrap();
    let mut items = Vec::new();
    // Three attempts make 11 items; a reader that never gives up must not
    // keep the test going forever.
    while !matches!(items.last(), Some(ReaderItem::GaveUp { .. })) {
        assert!(items.len() < 100, "no GaveUp after 100 items: {items:#?}");
        items.push(next(&reader));
    }
    assert_eq!(count_connected(&items), 3, "{items:#?}");
    assert_eq!(
        reconnections(&items)
            .iter()
            .map(|w| w.0)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    let Some(ReaderItem::GaveUp { reason }) = items.last() else {
        unreachable!()
    };
    assert!(
        reason.contains("3 consecutive") && reason.contains("closed the stream"),
        "{reason}"
    );
    assert_eq!(reader.recv(), None);
}

#[test]
fn a_server_that_always_sends_an_oversized_event_is_given_up_on() {
    let server = TestServer::start(vec![Reply::StreamThenHold(
        b"data: 0123456789abcdef0123456789\n\n".to_vec(),
    )]);
    let reader = Reader::start(
        ReaderConfig::new(server.url())
            .initial_delay(Duration::from_millis(250))
            .max_event_size(24)
            .max_failures(Some(2)),
    )
    .unwrap();
    expect_connected(&reader);
    let reason = expect_disconnected(&reader);
    assert!(
        reason.contains("limit of 24 bytes") && reason.contains("no event"),
        "{reason}"
    );
    assert_eq!(expect_reconnecting(&reader).0, 1);
    expect_connected(&reader);
    expect_disconnected(&reader);
    match next(&reader) {
        ReaderItem::GaveUp { reason } => {
            assert!(
                reason.contains("2 consecutive") && reason.contains("limit of 24 bytes"),
                "{reason}"
            );
        }
        other => panic!("expected GaveUp, got {other:?}"),
    }
    assert_eq!(reader.recv(), None);
}

#[test]
fn retry_zero_with_an_event_per_stream_reconnects_no_faster_than_the_floor() {
    // Each stream delivers an event, so each one worked: the count resets and
    // the reader never gives up, but the floor still spaces the attempts.
    let server = TestServer::start(vec![Reply::StreamThenClose(
        b"retry: 0\ndata: x\n\n".to_vec(),
    )]);
    let reader = Reader::start(ReaderConfig::new(server.url()).max_failures(Some(1))).unwrap();
    let window = Duration::from_secs(1);
    let mut items = items_during(&reader, window);
    let in_window = server.connections();
    // At most 11 at one every 100 ms; a tight loop made hundreds.
    assert!(
        in_window <= 20,
        "{in_window} connections within {window:?}: {items:#?}"
    );
    while count_connected(&items) < 3 {
        items.push(next(&reader));
    }
    assert!(
        !items
            .iter()
            .any(|item| matches!(item, ReaderItem::GaveUp { .. })),
        "{items:#?}"
    );
    let waits = reconnections(&items);
    assert!(waits.len() >= 2, "{items:#?}");
    for &(attempt, delay) in &waits {
        assert_eq!(attempt, 1, "{waits:?}");
        assert_eq!(delay, MIN_RECONNECT_DELAY, "{waits:?}");
    }
}

#[test]
fn a_stream_that_stays_open_without_events_resets_the_count() {
    let server = TestServer::start(vec![
        Reply::Status(500, ""),
        // Only a comment, then silence until the stall timeout drops it,
        // well after the initial delay.
        Reply::StreamThenHold(b": hello\n\n".to_vec()),
        Reply::StreamThenHold(b"data: ok\n\n".to_vec()),
    ]);
    let reader = Reader::start(
        quick(server.url())
            .stall_timeout(Duration::from_millis(400))
            .max_failures(Some(2)),
    )
    .unwrap();
    expect_disconnected(&reader);
    assert_eq!(expect_reconnecting(&reader).0, 1);
    expect_connected(&reader);
    let reason = expect_disconnected(&reader);
    assert!(
        reason.contains("no data") && !reason.contains("no event"),
        "{reason}"
    );
    // Reset: had it counted, this would have been the second failure and the
    // reader would have given up.
    assert_eq!(expect_reconnecting(&reader).0, 1);
    expect_connected(&reader);
    assert_eq!(expect_event(&reader).data, "ok");
}

#[test]
fn an_event_over_the_limit_drops_the_connection() {
    let server = TestServer::start(vec![
        Reply::StreamThenHold(b"data: small\n\ndata: 0123456789abcdef0123456789\n\n".to_vec()),
        Reply::StreamThenHold(b"data: fine\n\n".to_vec()),
    ]);
    let reader = Reader::start(quick(server.url()).max_event_size(24)).unwrap();
    expect_connected(&reader);
    assert_eq!(expect_event(&reader).data, "small");
    let reason = expect_disconnected(&reader);
    assert!(reason.contains("limit of 24 bytes"), "{reason}");
    expect_reconnecting(&reader);
    expect_connected(&reader);
    assert_eq!(expect_event(&reader).data, "fine");
}

#[test]
fn stop_while_blocked_in_a_read_returns_within_100_ms() {
    let server = TestServer::start(vec![Reply::StreamThenHold(b"data: a\n\n".to_vec())]);
    let reader =
        Reader::start(ReaderConfig::new(server.url()).stall_timeout(Duration::from_secs(600)))
            .unwrap();
    expect_connected(&reader);
    expect_event(&reader);
    // The thread is now blocked reading a silent socket.
    let started = Instant::now();
    reader.stop();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(100), "stop took {took:?}");
    assert!(server.held_connection_closes(0));
}

#[test]
fn drop_while_waiting_for_the_response_returns_within_100_ms() {
    let server = TestServer::start(vec![Reply::NoAnswer]);
    let reader =
        Reader::start(ReaderConfig::new(server.url()).stall_timeout(Duration::from_secs(600)))
            .unwrap();
    server.next_request();
    let started = Instant::now();
    drop(reader);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(100), "drop took {took:?}");
    assert!(server.held_connection_closes(0));
}

#[test]
fn stop_during_the_backoff_wait_returns_within_100_ms() {
    let server = TestServer::start(vec![Reply::Status(500, "")]);
    let reader = Reader::start(
        ReaderConfig::new(server.url())
            .initial_delay(Duration::from_secs(600))
            .max_delay(Duration::from_secs(600)),
    )
    .unwrap();
    expect_disconnected(&reader);
    let (_, delay) = expect_reconnecting(&reader);
    assert!(delay >= Duration::from_secs(450));
    let started = Instant::now();
    reader.stop();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(100), "stop took {took:?}");
}

#[test]
fn a_malformed_url_or_header_is_refused_at_start() {
    for url in [
        "not a url",
        "ftp://127.0.0.1/event",
        "/event",
        "http:///event",
    ] {
        match Reader::start(ReaderConfig::new(url)) {
            Err(Error::InvalidUrl { url: got, .. }) => assert_eq!(got, url),
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
    let config = ReaderConfig::new("http://127.0.0.1:1/event").header("bad name", "x");
    match Reader::start(config) {
        Err(e @ Error::InvalidHeader { .. }) => {
            assert!(e.to_string().contains("bad name"), "{e}");
        }
        other => panic!("expected InvalidHeader, got {other:?}"),
    }
    let config = ReaderConfig::new("http://127.0.0.1:1/event").header("x-ok", "line\nbreak");
    assert!(matches!(
        Reader::start(config),
        Err(Error::InvalidHeader { .. })
    ));
}

#[test]
fn the_notify_hook_runs_after_each_item_is_queued() {
    let server = TestServer::start(vec![Reply::StreamThenHold(b"data: one\n\n".to_vec())]);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = Reader::start(quick(server.url()).notify(httpsse::Notify::new(move || {
        let _ = tx.send(());
    })))
    .unwrap();
    // Each notification finds its item already queued.
    rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(reader.try_recv(), Some(ReaderItem::Connected));
    rx.recv_timeout(PATIENCE).unwrap();
    assert!(matches!(reader.try_recv(), Some(ReaderItem::Event(e)) if e.data == "one"));
    assert!(rx.try_recv().is_err());
}
