//! The reader against a scripted local server: events, headers, reconnection
//! after a close, a stall, a 500 and a wrong content type, the backoff, giving
//! up, and stopping promptly wherever the thread is blocked.

mod server;

use std::time::{Duration, Instant};

use httpsse::{Error, Event, Reader, ReaderConfig, ReaderItem};
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

/// The delay of attempt `attempt` from `base`: doubled per attempt, then
/// jittered down by at most a quarter.
fn assert_delay(delay: Duration, base_ms: u64, attempt: u32) {
    let full = Duration::from_millis(base_ms << (attempt - 1));
    assert!(
        delay <= full && delay >= full.mul_f64(0.75),
        "attempt {attempt}: delay {delay:?} outside [{:?}, {full:?}]",
        full.mul_f64(0.75)
    );
}

fn quick(url: String) -> ReaderConfig {
    ReaderConfig::new(url)
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_secs(5))
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
    assert_delay(delay, 10, 1);
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
            .initial_delay(Duration::from_millis(20))
            .max_delay(Duration::from_secs(10)),
    )
    .unwrap();
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        expect_disconnected(&reader);
        let (n, delay) = expect_reconnecting(&reader);
        assert_eq!(n, attempt);
        assert_delay(delay, 20, attempt);
        delays.push(delay);
    }
    assert!(delays[0] < delays[1] && delays[1] < delays[2], "{delays:?}");
    expect_connected(&reader);
    assert_eq!(expect_event(&reader).data, "up");
    expect_disconnected(&reader);
    // The success reset the count: back to the first delay.
    let (n, delay) = expect_reconnecting(&reader);
    assert_eq!(n, 1);
    assert_delay(delay, 20, 1);
    expect_disconnected(&reader);
    let (n, delay) = expect_reconnecting(&reader);
    assert_eq!(n, 2);
    assert_delay(delay, 20, 2);
    expect_connected(&reader);
    assert_eq!(expect_event(&reader).data, "up again");
}

#[test]
fn the_delay_never_exceeds_the_cap() {
    let server = TestServer::start(vec![Reply::Status(500, "")]);
    let reader = Reader::start(
        ReaderConfig::new(server.url())
            .initial_delay(Duration::from_millis(4))
            .max_delay(Duration::from_millis(20))
            .max_failures(Some(7)),
    )
    .unwrap();
    for attempt in 1..=6u32 {
        expect_disconnected(&reader);
        let (n, delay) = expect_reconnecting(&reader);
        assert_eq!(n, attempt);
        let full = Duration::from_millis((4u64 << (attempt - 1)).min(20));
        assert!(
            delay <= full && delay >= full.mul_f64(0.75),
            "{attempt}: {delay:?}"
        );
    }
    expect_disconnected(&reader);
    assert!(matches!(next(&reader), ReaderItem::GaveUp { .. }));
}

#[test]
fn a_server_retry_field_sets_the_base_delay() {
    let server = TestServer::start(vec![
        Reply::StreamThenClose(b"retry: 40\n\n".to_vec()),
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
    assert_delay(delay, 40, 1);
    expect_disconnected(&reader);
    let (n, delay) = expect_reconnecting(&reader);
    assert_eq!(n, 2);
    assert_delay(delay, 40, 2);
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
