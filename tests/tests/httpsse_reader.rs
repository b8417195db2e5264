//! The httpsse reader against the real opencode: it receives
//! `server.connected` and a heartbeat, and it comes back by itself after the
//! server is killed and started again on the same port.

use std::time::{Duration, Instant};

use e2e::{ServeOptions, TestBed, e2e_skipped};
use httpsse::{Reader, ReaderConfig, ReaderItem};
use serde_json::Value;

/// opencode sends `server.heartbeat` every 10 s; this leaves room for a slow
/// machine without letting a hung test go on for long.
const HEARTBEAT_WAIT: Duration = Duration::from_secs(30);

/// Percent-encodes a path the way opencode expects it in
/// `x-opencode-directory` (every byte but unreserved ones).
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The reader's items until one matches `wanted`, within `within`; returns
/// the items seen, the match last. Panics with what was seen on a timeout.
fn until(
    reader: &Reader,
    within: Duration,
    what: &str,
    wanted: impl Fn(&ReaderItem) -> bool,
) -> Vec<ReaderItem> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match reader.recv_timeout(left) {
            Ok(item) => {
                let done = wanted(&item);
                seen.push(item);
                if done {
                    return seen;
                }
            }
            Err(e) => panic!("no {what} within {within:?} ({e:?}); items seen: {seen:#?}"),
        }
    }
}

/// The `type` of an OpenCode event frame, if the item is one.
fn frame_type(item: &ReaderItem) -> Option<String> {
    let ReaderItem::Event(event) = item else {
        return None;
    };
    let frame: Value = serde_json::from_str(&event.data).ok()?;
    frame["type"].as_str().map(str::to_owned)
}

fn is_frame(item: &ReaderItem, kind: &str) -> bool {
    frame_type(item).as_deref() == Some(kind)
}

fn reader_for(bed: &TestBed, base_url: &str) -> Reader {
    let directory = percent_encode(&bed.project.display().to_string());
    Reader::start(
        ReaderConfig::new(format!("{base_url}/event"))
            .header("x-opencode-directory", directory)
            .initial_delay(Duration::from_millis(200))
            .max_delay(Duration::from_secs(1))
            // Above the 10 s heartbeat, below the test's patience.
            .stall_timeout(Duration::from_secs(15)),
    )
    .expect("start the reader")
}

#[test]
fn receives_server_connected_and_a_heartbeat_from_real_opencode() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let server = bed.start_opencode();
    let reader = reader_for(&bed, &server.url);

    let seen = until(
        &reader,
        Duration::from_secs(30),
        "server.connected",
        |item| is_frame(item, "server.connected"),
    );
    assert_eq!(
        seen[0],
        ReaderItem::Connected,
        "the first item is the connection; log:\n{}",
        server.log()
    );
    let ReaderItem::Event(connected) = seen.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(connected.event, "message");
    // OpenCode's frames carry their id inside the JSON, not in an SSE `id:`.
    assert_eq!(connected.id, "");

    let seen = until(&reader, HEARTBEAT_WAIT, "server.heartbeat", |item| {
        is_frame(item, "server.heartbeat")
    });
    for item in &seen {
        assert!(
            matches!(item, ReaderItem::Event(_)),
            "the connection held until the heartbeat: {seen:#?}"
        );
    }

    // Connected to a live server, the thread is blocked in a read: stopping
    // must not wait for the next heartbeat (a generous bound).
    let started = Instant::now();
    reader.stop();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
}

#[test]
fn reconnects_after_real_opencode_is_killed_and_started_again_on_the_same_port() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    // A free port of our choosing, so the restart can ask for the same one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port();
    let options = ServeOptions {
        port: Some(port),
        ..ServeOptions::default()
    };
    let mut first = bed.start_opencode_with(options.clone());
    assert_eq!(first.port, port);
    let reader = reader_for(&bed, &first.url);
    until(
        &reader,
        Duration::from_secs(30),
        "server.connected",
        |item| is_frame(item, "server.connected"),
    );

    first.kill();
    let seen = until(
        &reader,
        Duration::from_secs(10),
        "a disconnection",
        |item| matches!(item, ReaderItem::Disconnected { .. }),
    );
    let ReaderItem::Disconnected { reason } = seen.last().unwrap() else {
        unreachable!()
    };
    assert!(reason.contains(&port.to_string()), "{reason}");
    // While the server is down, attempts fail and the reader keeps trying.
    let seen = until(
        &reader,
        Duration::from_secs(10),
        "a failed attempt",
        |item| matches!(item, ReaderItem::Disconnected { .. }),
    );
    assert!(
        seen.iter()
            .any(|item| matches!(item, ReaderItem::Reconnecting { .. })),
        "{seen:#?}"
    );

    let second = bed.start_opencode_with(options);
    assert_eq!(second.port, port);
    let seen = until(
        &reader,
        Duration::from_secs(60),
        "server.connected from the restarted server",
        |item| is_frame(item, "server.connected"),
    );
    assert!(
        seen.contains(&ReaderItem::Connected),
        "{seen:#?}\nlog:\n{}",
        second.log()
    );
    assert!(
        !seen
            .iter()
            .any(|item| matches!(item, ReaderItem::GaveUp { .. })),
        "{seen:#?}"
    );
}
