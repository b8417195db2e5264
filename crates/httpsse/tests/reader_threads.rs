//! No thread is left behind by a reader, whichever way it ends.
//!
//! This file holds a single test so that nothing else runs in the process
//! while it counts the process's threads in /proc/self/task.

mod server;

use std::time::Duration;

use httpsse::{Reader, ReaderConfig, ReaderItem};
use server::{Reply, TestServer};

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .count()
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
        let with_server = thread_count();
        assert_eq!(with_server, before + 1, "the test server runs one thread");

        // Stopped while blocked in a read, after a reconnection.
        let reader =
            Reader::start(ReaderConfig::new(server.url()).initial_delay(Duration::from_millis(5)))
                .unwrap();
        assert_eq!(thread_count(), with_server + 1, "a reader runs one thread");
        wait_for(
            &reader,
            |item| matches!(item, ReaderItem::Event(e) if e.data == "b"),
        );
        assert_eq!(
            thread_count(),
            with_server + 1,
            "reconnecting adds no thread"
        );
        reader.stop();
        assert_eq!(thread_count(), with_server);

        // Dropped while waiting between attempts.
        let reader = Reader::start(
            ReaderConfig::new("http://127.0.0.1:1/event").initial_delay(Duration::from_secs(600)),
        )
        .unwrap();
        wait_for(&reader, |item| {
            matches!(item, ReaderItem::Reconnecting { .. })
        });
        drop(reader);
        assert_eq!(thread_count(), with_server);

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
        assert_eq!(thread_count(), with_server);
    }
    assert_eq!(thread_count(), before);
}
