//! No thread is left behind by a reader, whichever way it ends.
//!
//! This file holds a single test so that nothing else runs in the process
//! while it counts the process's threads in /proc/self/task.

mod server;

use std::time::{Duration, Instant};

use httpsse::{Reader, ReaderConfig, ReaderItem};
use server::{Reply, TestServer};

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .count()
}

/// Waits (at most 5 s) until the process has `expected` threads, then
/// asserts it has. A joined thread can stay listed in /proc/self/task for a
/// moment after join() returns (join wakes when the thread clears its ID,
/// before the kernel has reaped it), and nothing signals the end of that, so
/// this polls.
fn assert_thread_count(expected: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut count = thread_count();
    while count != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
        count = thread_count();
    }
    assert_eq!(count, expected, "{what}");
}

fn wait_for(reader: &Reader, wanted: fn(&ReaderItem) -> bool) {
    loop {
        let item = reader
            .recv_timeout(Duration::from_secs(10))
            .expect("no item from the reader within 10 s");
        if wanted(&item) {
            return;
        }
    }
}

#[test]
fn readers_leave_no_thread_behind() {
    let before = thread_count();
    {
        let server = TestServer::start(vec![
            Reply::StreamThenClose(b"data: a\n\n".to_vec()),
            Reply::StreamThenHold(b"data: b\n\n".to_vec()),
        ]);
        let with_server = before + 1;
        assert_thread_count(with_server, "the test server runs one thread");

        // Stopped while blocked in a read, after a reconnection.
        let reader =
            Reader::start(ReaderConfig::new(server.url()).initial_delay(Duration::from_millis(5)))
                .unwrap();
        assert_thread_count(with_server + 1, "a reader runs one thread");
        wait_for(
            &reader,
            |item| matches!(item, ReaderItem::Event(e) if e.data == "b"),
        );
        assert_thread_count(with_server + 1, "reconnecting adds no thread");
        reader.stop();
        assert_thread_count(with_server, "a stopped reader leaves no thread");

        // Dropped while waiting between attempts.
        let reader = Reader::start(
            ReaderConfig::new("http://127.0.0.1:1/event").initial_delay(Duration::from_secs(600)),
        )
        .unwrap();
        wait_for(&reader, |item| {
            matches!(item, ReaderItem::Reconnecting { .. })
        });
        drop(reader);
        assert_thread_count(
            with_server,
            "a reader dropped between attempts leaves no thread",
        );

        // Ended by itself after giving up, then dropped.
        let reader = Reader::start(
            ReaderConfig::new("http://127.0.0.1:1/event")
                .initial_delay(Duration::from_millis(1))
                .max_failures(Some(2)),
        )
        .unwrap();
        wait_for(&reader, |item| matches!(item, ReaderItem::GaveUp { .. }));
        assert_eq!(reader.recv(), None);
        drop(reader);
        assert_thread_count(with_server, "a reader that gave up leaves no thread");
    }
    assert_thread_count(before, "the dropped test server leaves no thread");
}
