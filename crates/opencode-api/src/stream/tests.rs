//! Unit tests of the event stream against scripted event-stream servers on
//! loopback: connecting, order, deadlines, reconnecting, the kinds of
//! failure, giving up and stopping.

use super::*;
use crate::fake_server::{Answer, FakeServer, Stream, header, json_response};
use crate::{Client, SessionStatus};
use std::net::TcpListener;

const CONNECTED: &str =
    "data: {\"id\":\"evt_0\",\"type\":\"server.connected\",\"properties\":{}}\n\n";

/// What every test waits for at most; the tests end far sooner.
const PATIENCE: Duration = Duration::from_secs(10);

fn soon() -> Instant {
    Instant::now() + PATIENCE
}

/// A config that reconnects at the shortest delay the reader allows.
fn quick() -> StreamConfig {
    StreamConfig::new()
        .initial_delay(Duration::from_millis(100))
        .max_delay(Duration::from_millis(100))
}

fn client(fake: &FakeServer) -> Client {
    Client::builder(&fake.url())
        .basic_auth("opencode", "pw")
        .directory("/srv/project one")
        .build()
        .unwrap()
}

fn next<E: StreamEvent>(stream: &mut EventStream<E>) -> StreamItem<E> {
    stream
        .next(soon())
        .expect("the stream works")
        .expect("an item within the patience")
}

#[test]
fn connects_and_delivers_decoded_events_in_order() {
    let fake = FakeServer::event_stream(vec![Stream::Hold(concat!(
        "data: {\"id\":\"evt_0\",\"type\":\"server.connected\",\"properties\":{}}\n\n",
        "data: {\"id\":\"evt_1\",\"type\":\"session.status\",\"properties\":{\"sessionID\":\"ses_1\",\"status\":{\"type\":\"busy\"}}}\n\n",
        "data: {\"id\":\"evt_2\",\"type\":\"session.idle\",\"properties\":{}}\n\n",
        "data: not json\n\n",
        "data: {\"id\":\"evt_3\",\"type\":\"todo.updated\",\"properties\":{\"sessionID\":\"ses_1\"}}\n\n",
        "data: {\"id\":\"evt_4\",\"type\":\"session.idle\",\"properties\":{\"sessionID\":\"ses_1\"}}\n\n",
    ))]);
    let mut stream = client(&fake).event_stream().unwrap();
    assert!(!stream.is_connected());
    stream.wait_connected(soon()).unwrap();
    assert!(stream.is_connected());
    let request = fake.next_request();
    assert!(request.starts_with("GET /event HTTP/1.1"), "{request}");
    assert_eq!(
        header(&request, crate::DIRECTORY_HEADER),
        Some("/srv/project%20one")
    );
    assert!(header(&request, "authorization").is_some_and(|v| v.starts_with("Basic ")));

    // The frame wait_connected waited for is handed out first.
    assert_eq!(next(&mut stream), StreamItem::Connected);
    match next(&mut stream) {
        StreamItem::Event(e) => assert!(
            matches!(&e.kind, EventKind::SessionStatus(s) if s.session_id == "ses_1" && s.status == SessionStatus::Busy),
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
    // Two frames do not decode (a known type without its session, and not
    // JSON): skipped and counted, the stream goes on.
    let unknown = stream.next_event(soon()).unwrap().unwrap();
    assert_eq!(unknown.kind_name(), "todo.updated");
    assert_eq!(unknown.session_id().unwrap(), "ses_1");
    let idle = stream.next_event(soon()).unwrap().unwrap();
    assert_eq!(idle.id, "evt_4");
    assert_eq!(stream.skipped_frames(), 2);
    assert!(matches!(
        stream.last_decode_error(),
        Some(Error::Decode { .. })
    ));
    assert_eq!(stream.events_received(), 4);
    assert!(stream.last_event_at().is_some());
    assert_eq!(stream.reconnects(), 0);
}

#[test]
fn the_global_stream_decodes_envelopes_and_sends_no_directory() {
    let fake = FakeServer::event_stream(vec![Stream::Hold(concat!(
        "data: {\"payload\":{\"id\":\"evt_0\",\"type\":\"server.connected\",\"properties\":{}}}\n\n",
        "data: {\"directory\":\"/p\",\"project\":\"global\",\"payload\":{\"id\":\"evt_1\",\"type\":\"session.idle\",\"properties\":{\"sessionID\":\"ses_9\"}}}\n\n",
    ))]);
    let mut stream = client(&fake).global_event_stream().unwrap();
    stream.wait_connected(soon()).unwrap();
    let request = fake.next_request();
    assert!(
        request.starts_with("GET /global/event HTTP/1.1"),
        "{request}"
    );
    assert_eq!(header(&request, crate::DIRECTORY_HEADER), None);
    let event = stream.next_event(soon()).unwrap().unwrap();
    assert_eq!(event.directory.as_deref(), Some("/p"));
    assert_eq!(event.payload.session_id().unwrap(), "ses_9");
}

#[test]
fn next_returns_none_at_the_deadline_promptly() {
    let fake = FakeServer::event_stream(vec![Stream::Hold(CONNECTED)]);
    let mut stream = client(&fake).event_stream().unwrap();
    assert_eq!(next(&mut stream), StreamItem::Connected);

    let wait = Duration::from_millis(200);
    let started = Instant::now();
    assert_eq!(stream.next(started + wait).unwrap(), None);
    let took = started.elapsed();
    assert!(took >= wait && took < wait * 3, "{took:?}");

    // A deadline that has passed only takes what is there.
    let started = Instant::now();
    assert_eq!(stream.next_event(Instant::now()).unwrap(), None);
    assert!(started.elapsed() < Duration::from_millis(50));
}

#[test]
fn a_stream_the_server_closes_reconnects_and_counts_it() {
    let fake = FakeServer::event_stream(vec![
        Stream::Close(concat!(
            "data: {\"id\":\"evt_0\",\"type\":\"server.connected\",\"properties\":{}}\n\n",
            "data: {\"id\":\"evt_1\",\"type\":\"server.heartbeat\",\"properties\":{}}\n\n",
        )),
        Stream::Hold(CONNECTED),
    ]);
    let mut stream = client(&fake).event_stream_with(&quick()).unwrap();
    assert_eq!(next(&mut stream), StreamItem::Connected);
    assert!(
        matches!(next(&mut stream), StreamItem::Event(e) if e.kind == EventKind::ServerHeartbeat)
    );
    match next(&mut stream) {
        StreamItem::Disconnected { kind, reason } => {
            assert_eq!(kind, DisconnectKind::Ended, "{reason}");
            assert!(reason.contains("closed the stream"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!stream.is_connected());
    assert_eq!(stream.reconnects(), 0);
    assert_eq!(next(&mut stream), StreamItem::Connected);
    assert!(stream.is_connected());
    assert_eq!(stream.reconnects(), 1);
    assert_eq!(stream.events_received(), 3);
}

/// The first disconnection of a stream from a server that answers with
/// `script`.
fn first_disconnect(fake: &FakeServer, config: StreamConfig) -> (DisconnectKind, String) {
    let mut stream = client(fake).event_stream_with(&config).unwrap();
    loop {
        match next(&mut stream) {
            StreamItem::Disconnected { kind, reason } => return (kind, reason),
            StreamItem::Connected => {}
            StreamItem::Event(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn failures_say_what_kind_they_are() {
    let refused_port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let nobody = Client::new(&format!("http://127.0.0.1:{refused_port}")).unwrap();
    let mut stream = nobody.event_stream_with(&quick()).unwrap();
    assert!(
        matches!(
            next(&mut stream),
            StreamItem::Disconnected {
                kind: DisconnectKind::Connect,
                ..
            }
        ),
        "nothing listens"
    );

    let unavailable = FakeServer::event_stream(vec![Stream::Respond(json_response(
        "503 Service Unavailable",
        r#"{"message":"starting"}"#,
    ))]);
    let (kind, reason) = first_disconnect(&unavailable, quick());
    assert_eq!(kind, DisconnectKind::Status(503), "{reason}");
    assert!(reason.contains("starting"), "{reason}");

    let not_sse = FakeServer::event_stream(vec![Stream::Respond(json_response("200 OK", "{}"))]);
    let (kind, reason) = first_disconnect(&not_sse, quick());
    assert_eq!(kind, DisconnectKind::NotEventStream, "{reason}");

    let stall = Duration::from_millis(300);
    let silent = FakeServer::event_stream(vec![Stream::Hold(CONNECTED)]);
    let started = Instant::now();
    let (kind, reason) = first_disconnect(&silent, quick().stall_timeout(stall));
    assert_eq!(kind, DisconnectKind::Stalled, "{reason}");
    assert!(started.elapsed() >= stall);

    // A server that accepts and never answers is given up after the connect
    // timeout, well before the stall window.
    let hung = FakeServer::start(Answer::Never);
    let started = Instant::now();
    let (kind, reason) = first_disconnect(
        &hung,
        quick()
            .stall_timeout(Duration::from_secs(30))
            .connect_timeout(stall),
    );
    assert_eq!(kind, DisconnectKind::Timeout, "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn classify_reads_the_reader_reasons() {
    let url = "http://127.0.0.1:1/event";
    for (reason, kind) in [
        (
            format!("{url} answered HTTP 401 Unauthorized"),
            DisconnectKind::Status(401),
        ),
        (
            format!("{url} closed the stream; no event arrived in the 1.0ms it was open"),
            DisconnectKind::Ended,
        ),
        (
            format!("reading the stream from {url} failed: reset"),
            DisconnectKind::Broken,
        ),
        (
            format!("the stream from {url} was dropped: too long"),
            DisconnectKind::Broken,
        ),
        ("something new".to_string(), DisconnectKind::Broken),
    ] {
        assert_eq!(DisconnectKind::classify(url, &reason), kind, "{reason}");
    }
}

#[test]
fn a_stream_that_gives_up_says_why_and_stays_ended() {
    let fake = FakeServer::event_stream(vec![Stream::Respond(
        "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic\r\ncontent-length: 0\r\n\r\n",
    )]);
    let mut stream = client(&fake)
        .event_stream_with(&quick().max_failures(Some(1)))
        .unwrap();
    let err = stream.wait_connected(soon()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::EventStream { .. }), "{err:?}");
    assert!(text.contains("401") && text.contains("gave up"), "{text}");
    // The disconnection it received is still handed out, then the end.
    assert!(matches!(
        stream.next(soon()),
        Ok(Some(StreamItem::Disconnected {
            kind: DisconnectKind::Status(401),
            ..
        }))
    ));
    assert!(stream.next(soon()).is_err());
    for shown in [text, format!("{stream:?}")] {
        assert!(!shown.contains("Basic "), "{shown}");
    }
}

#[test]
fn wait_connected_names_the_deadline_and_the_last_failure() {
    let unavailable = FakeServer::event_stream(vec![Stream::Respond(json_response(
        "503 Service Unavailable",
        "{}",
    ))]);
    let mut stream = client(&unavailable).event_stream_with(&quick()).unwrap();
    let err = stream
        .wait_connected(Instant::now() + Duration::from_millis(300))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no server.connected within"), "{err}");
    assert!(err.contains("503"), "{err}");
}

#[test]
fn stop_and_drop_join_the_reader_at_once() {
    let fake = FakeServer::event_stream(vec![Stream::Hold(CONNECTED)]);
    let api = client(&fake);
    let mut stream = api.event_stream().unwrap();
    stream.wait_connected(soon()).unwrap();
    // The reader is now blocked reading a silent connection.
    let started = Instant::now();
    stream.stop();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(100), "stop took {took:?}");
    assert!(!stream.is_connected());
    let err = stream.next(soon()).unwrap_err().to_string();
    assert!(err.ends_with("stopped"), "{err}");

    let mut dropped = api.event_stream().unwrap();
    dropped.wait_connected(soon()).unwrap();
    let started = Instant::now();
    drop(dropped);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(100), "drop took {took:?}");
}
