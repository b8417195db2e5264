//! The project lock between threads and between real processes.

mod common;

use std::fs;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::{CHILD_DEADLINE, ChildProc};
use statefile::{Error, lock, try_lock};

#[test]
#[ignore = "child process role, started by the other tests in this file"]
fn child_role() {
    common::child_main();
}

#[test]
fn a_held_lock_times_out_with_the_path_and_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("servers/h/server.lock");
    let held = lock(&path, Duration::from_secs(5)).unwrap();
    assert_eq!(held.path(), path);

    let timeout = Duration::from_millis(150);
    let err = lock(&path, timeout).unwrap_err();
    match &err {
        Error::LockTimeout { path: p, waited } => {
            assert_eq!(p, &path);
            assert!(*waited >= timeout, "gave up after {waited:?}");
        }
        other => panic!("expected LockTimeout, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(!err.is_corrupt());
    assert!(try_lock(&path).unwrap().is_none());
    // A zero timeout is one attempt.
    assert!(matches!(
        lock(&path, Duration::ZERO),
        Err(Error::LockTimeout { .. })
    ));

    drop(held);
    let again = try_lock(&path).unwrap().expect("free after drop");
    drop(again);
    lock(&path, Duration::ZERO).expect("free lock with zero timeout");
}

#[test]
fn a_waiter_gets_the_lock_when_the_holder_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.lock");
    let held = lock(&path, Duration::from_secs(5)).unwrap();
    let (tx, rx) = channel();
    let waiter = {
        let path = path.clone();
        std::thread::spawn(move || {
            tx.send("waiting").unwrap();
            let guard = lock(&path, Duration::from_secs(60));
            tx.send("acquired").unwrap();
            guard.map(|_| ())
        })
    };
    assert_eq!(rx.recv().unwrap(), "waiting");
    // While we hold it, the waiter cannot have it.
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    let released = Instant::now();
    drop(held);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)).unwrap(),
        "acquired"
    );
    println!(
        "waiter got the lock {:?} after the release",
        released.elapsed()
    );
    waiter.join().unwrap().expect("waiter locked");
}

#[test]
fn four_processes_serialize_on_one_lock() {
    let dir = tempfile::tempdir().unwrap();
    let lock_path = dir.path().join("servers/h/server.lock");
    let counter = dir.path().join("counter");
    let journal = dir.path().join("journal");
    fs::write(&counter, "0\n").unwrap();

    const PROCESSES: u64 = 4;
    const ITERATIONS: u64 = 100;
    let children: Vec<ChildProc> = (1..=PROCESSES)
        .map(|id| {
            ChildProc::spawn(
                "lock-counter",
                &[
                    ("LOCK", lock_path.display().to_string()),
                    ("COUNTER", counter.display().to_string()),
                    ("JOURNAL", journal.display().to_string()),
                    ("ID", id.to_string()),
                    ("ITER", ITERATIONS.to_string()),
                ],
            )
        })
        .collect();
    for child in children {
        let (status, output) = child.finish(CHILD_DEADLINE);
        assert!(status.success(), "child failed: {status}; {output:?}");
    }
    // No lost update of the read-modify-write counter...
    let total: u64 = fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(total, PROCESSES * ITERATIONS);
    // ...and no two critical sections overlapped: the journal is strictly
    // "B id" followed by "E id" of the same process.
    let journal = fs::read_to_string(&journal).unwrap();
    let lines: Vec<&str> = journal.lines().collect();
    assert_eq!(lines.len() as u64, 2 * PROCESSES * ITERATIONS);
    let mut switches = 0;
    let mut previous_id = "";
    for pair in lines.chunks(2) {
        let begin = pair[0].strip_prefix("B ").expect("begin line");
        let end = pair[1].strip_prefix("E ").expect("end line");
        assert_eq!(begin, end, "critical sections overlapped: {pair:?}");
        if begin != previous_id {
            switches += 1;
            previous_id = begin;
        }
    }
    println!(
        "{} critical sections in {PROCESSES} processes, the lock changed hands {switches} times",
        PROCESSES * ITERATIONS
    );
}

#[test]
fn a_lock_held_by_another_process_times_out_there_with_the_right_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("servers/h/server.lock");
    let held = lock(&path, Duration::from_secs(5)).unwrap();
    let child = ChildProc::spawn(
        "lock-expect-timeout",
        &[
            ("LOCK", path.display().to_string()),
            ("TIMEOUT_MS", "200".to_string()),
        ],
    );
    let (status, output) = child.finish(CHILD_DEADLINE);
    assert!(status.success(), "child failed: {status}; {output:?}");
    let line = output
        .iter()
        .find(|l| l.contains("TIMEOUT-ERROR"))
        .expect("the child reports the error");
    assert!(line.contains(&path.display().to_string()), "{line}");
    drop(held);
}

#[test]
fn the_lock_is_released_when_its_process_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("servers/h/server.lock");
    let mut holder = ChildProc::spawn("lock-hold", &[("LOCK", path.display().to_string())]);
    holder.wait_for_line("LOCKED", CHILD_DEADLINE);
    assert!(try_lock(&path).unwrap().is_none(), "the child holds it");
    assert!(matches!(
        lock(&path, Duration::from_millis(50)),
        Err(Error::LockTimeout { .. })
    ));
    holder.kill();
    // The kernel dropped the lock with the process: free at once.
    let guard = try_lock(&path)
        .unwrap()
        .expect("free after the holder died");
    drop(guard);
}
